//! `drover backup copy`: the ciphertext copied as it is, no key; a copy SIGKILLed at any point
//! never leaves a partial backup under the destination's name, and running it again finishes;
//! the copy restores byte-identical and its audit record names both places.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn drover(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .current_dir(dir)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("drover runs")
}

fn ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn a_copy_killed_at_any_point_leaves_no_partial_backup_and_a_rerun_finishes() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    // 24 MiB of data that does not compress: a copy takes long enough to be killed midway.
    let mut data = vec![0u8; 24 << 20];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for b in &mut data {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(d.join("ehr.db"), &data).expect("data");
    ok(&drover(d, &["key", "generate", "file:k"]));
    ok(&drover(
        d,
        &["backup", "create", "ehr.db", "ehr.dbk", "--key", "file:k"],
    ));
    std::fs::create_dir(d.join("offsite")).expect("dir");
    let dst = d.join("offsite/ehr.dbk");
    let mut killed = 0;
    for delay in [5u64, 15, 30, 60, 100, 150, 250, 400] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["backup", "copy", "ehr.dbk", "offsite/ehr.dbk"])
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("copy");
        crate::server::pause(delay);
        let _ = child.kill();
        let status = child.wait().expect("reaped");
        if status.code().is_none() {
            killed += 1;
        }
        // Under the final name: nothing, or the whole backup (it finished before the kill).
        if dst.exists() {
            assert_eq!(
                std::fs::read(&dst).expect("copy"),
                std::fs::read(d.join("ehr.dbk")).expect("source"),
                "a partial backup under the final name after a kill at {delay} ms"
            );
            break;
        }
    }
    assert!(killed > 0, "no copy was killed midway");
    // Run again: it finishes (or finds the copy done), and the copy reads back and restores.
    let out = ok(&drover(
        d,
        &["backup", "copy", "ehr.dbk", "offsite/ehr.dbk"],
    ));
    assert!(out.contains("offsite/ehr.dbk"), "{out}");
    let again = ok(&drover(
        d,
        &["backup", "copy", "ehr.dbk", "offsite/ehr.dbk"],
    ));
    assert!(again.contains("nothing copied"), "{again}");
    ok(&drover(
        d,
        &[
            "backup",
            "restore",
            "offsite/ehr.dbk",
            "restored.db",
            "--key",
            "file:k",
        ],
    ));
    assert!(
        std::fs::read(d.join("restored.db")).expect("restored") == data,
        "the restore from the copy differs"
    );
    // Another backup at the destination is refused, untouched.
    std::fs::write(d.join("small.db"), b"small").expect("small");
    ok(&drover(
        d,
        &[
            "backup",
            "create",
            "small.db",
            "small.dbk",
            "--key",
            "file:k",
        ],
    ));
    let refused = drover(d, &["backup", "copy", "small.dbk", "offsite/ehr.dbk"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("refusing to overwrite"),
        "{}",
        text(&refused.stderr)
    );
    // The audit log names the copy, both places.
    let log = ok(&drover(d, &["audit", "show", "--backups"]));
    assert!(
        log.lines()
            .any(|l| l.contains("backup.copy") && l.contains("offsite/ehr.dbk")),
        "{log}"
    );
    let json = ok(&drover(
        d,
        &[
            "backup",
            "copy",
            "ehr.dbk",
            "offsite/ehr.dbk",
            "--format",
            "json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["already_there"], true);
    assert_eq!(v["source"]["backup_id"], v["destination"]["backup_id"]);
}

#[test]
fn a_runbook_copies_a_backup_off_site_verifies_the_copy_and_a_second_run_copies_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(d.join("ehr.db"), b"patient records, as of 02:45").expect("data");
    ok(&drover(d, &["key", "generate", "file:k"]));
    ok(&drover(
        d,
        &["backup", "create", "ehr.db", "ehr.dbk", "--key", "file:k"],
    ));
    std::fs::write(
        d.join("offsite.drover"),
        r#"runbook "Off-site copy" {
  rto   = 1h
  rpo   = 1h
  modes = [drill]
}

step copy {
  action = backup.copy
  with {
    source      = "ehr.dbk"
    destination = "offsite/ehr.dbk"
  }
}

step check {
  action = backup.verify
  after  = [copy]
  with {
    source = steps.copy.location
    key    = "file:k"
  }
}

milestone done {
  after     = [check]
  stops_rto = true
}
"#,
    )
    .expect("runbook");
    let run = |id: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["run", "offsite.drover", "--mode", "drill", "--run-id", id])
            .current_dir(d)
            .env("USER", "alice")
            .output()
            .expect("run");
        ok(&out);
        let status = drover(d, &["status", id, "--format", "json"]);
        serde_json::from_str::<serde_json::Value>(&ok(&status)).expect("status json")
    };
    let first = run("first");
    assert_eq!(first["outcome"], "succeeded", "{first}");
    assert_eq!(
        std::fs::read(d.join("offsite/ehr.dbk")).expect("copy"),
        std::fs::read(d.join("ehr.dbk")).expect("source")
    );
    let written = std::fs::metadata(d.join("offsite/ehr.dbk"))
        .and_then(|m| m.modified())
        .expect("mtime");
    // The copy is there: the second run's step succeeds without writing (it never overwrites).
    let second = run("second");
    assert_eq!(second["outcome"], "succeeded", "{second}");
    assert_eq!(
        std::fs::metadata(d.join("offsite/ehr.dbk"))
            .and_then(|m| m.modified())
            .expect("mtime"),
        written,
        "the second run wrote the copy again"
    );
}

/// Copies into S3 (moto, started by `.ci/test`): the text always states the copy's lock; a copy
/// asked to be locked carries the lock on the object, read back; a bucket without Object Lock
/// refuses a locked copy before anything is written.
#[cfg(feature = "aws")]
#[test]
fn copies_to_s3_state_their_lock_and_a_locked_copy_reads_it_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let unique = |p: &str| format!("{p}-{:08x}", rand::random::<u32>());
    let (vault, plain) = (unique("copy-worm"), unique("copy-plain"));
    rt.block_on(async {
        let home = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&home)
                .force_path_style(true)
                .build(),
        );
        s3.create_bucket()
            .bucket(&vault)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await
            .expect("bucket");
        s3.create_bucket()
            .bucket(&plain)
            .send()
            .await
            .expect("bucket");
    });
    std::fs::write(d.join("ehr.db"), b"patient records").expect("data");
    ok(&drover(d, &["key", "generate", "file:k"]));
    ok(&drover(
        d,
        &["backup", "create", "ehr.db", "ehr.dbk", "--key", "file:k"],
    ));
    let unlocked = format!("s3://{plain}/ehr.dbk");
    let out = ok(&drover(d, &["backup", "copy", "ehr.dbk", &unlocked]));
    assert!(out.contains(&format!("{unlocked}: lock none")), "{out}");
    let verified = ok(&drover(d, &["backup", "verify", &unlocked]));
    assert!(verified.contains("lock none"), "{verified}");

    let locked = format!("s3://{vault}/ehr/ehr.dbk");
    let out = ok(&drover(
        d,
        &[
            "backup",
            "copy",
            "ehr.dbk",
            &locked,
            "--lock",
            "compliance",
            "--retain",
            "30d",
        ],
    ));
    assert!(
        out.contains(&format!("{locked}: under S3 Object Lock, COMPLIANCE mode")),
        "{out}"
    );
    let verified = ok(&drover(d, &["backup", "verify", &locked]));
    assert!(verified.contains("COMPLIANCE mode"), "{verified}");

    let refused = drover(
        d,
        &[
            "backup",
            "copy",
            "ehr.dbk",
            &format!("s3://{plain}/locked.dbk"),
            "--lock",
            "governance",
            "--retain",
            "6y",
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("does not have Object Lock"),
        "{}",
        text(&refused.stderr)
    );
    let bad = drover(
        d,
        &[
            "backup",
            "copy",
            "ehr.dbk",
            &locked,
            "--lock",
            "compliance",
            "--retain",
            "6w",
        ],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
}

//! `drover posture backups` against real stores: moto (S3 with Object Lock, KMS with rotation),
//! Azurite (Azure Blob) and a local disk. A dataset meeting every part of 3-2-1-1-0 is green;
//! taking each property away in turn turns exactly that check red, with a message that names
//! the copy and says what to change, and exit code 3.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

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

/// Each check's result for the one dataset, and the whole report.
fn posture(dir: &Path, inventory: &str) -> (Option<i32>, BTreeMap<String, bool>, Value) {
    let out = drover(
        dir,
        &[
            "posture",
            "backups",
            "--inventory",
            inventory,
            "--format",
            "json",
        ],
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    let checks = v["datasets"][0]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_owned(),
                c["passed"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    (out.status.code(), checks, v)
}

/// The failed checks' ids.
fn red(checks: &BTreeMap<String, bool>) -> Vec<&str> {
    checks
        .iter()
        .filter(|(_, p)| !**p)
        .map(|(k, _)| k.as_str())
        .collect()
}

fn findings(v: &Value, check: &str) -> String {
    v["datasets"][0]["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["id"] == check)
        .flat_map(|c| c["findings"].as_array().cloned().unwrap_or_default())
        .map(|f| format!("{} / fix: {}", f["message"], f["fix"]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn inventory(dir: &Path, name: &str, rpo: &str, retention: &str, key: &str, copies: &[&str]) {
    let list = copies
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        dir.join(name),
        format!(
            "[datasets.ehr]\nrpo = \"{rpo}\"\nretention = \"{retention}\"\nkey = \"{key}\"\ncopies = [{list}]\n"
        ),
    )
    .expect("inventory");
}

#[test]
fn a_dataset_meeting_3_2_1_1_0_is_green_and_each_property_taken_away_turns_its_check_red() {
    let Ok(conn) = std::env::var("AZURE_STORAGE_CONNECTION_STRING") else {
        assert!(
            std::env::var_os("DROVER_TEST_REQUIRE_AZURITE").is_none(),
            "AZURE_STORAGE_CONNECTION_STRING is not set: run through .ci/test"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let unique = |p: &str| format!("{p}-{:08x}", rand::random::<u32>());
    let (vault, plain, box_name) = (unique("phi-vault"), unique("phi-plain"), unique("drdata"));
    let alias = format!("alias/{}", unique("phi-backup"));
    let kms = rt.block_on(async {
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
            .expect("vault");
        s3.create_bucket()
            .bucket(&plain)
            .send()
            .await
            .expect("plain");
        let kms = aws_sdk_kms::Client::new(&home);
        let key = kms.create_key().send().await.expect("key");
        let id = key
            .key_metadata()
            .map(|m| m.key_id().to_owned())
            .expect("id");
        kms.create_alias()
            .alias_name(&alias)
            .target_key_id(&id)
            .send()
            .await
            .expect("alias");
        kms.enable_key_rotation()
            .key_id(&id)
            .rotation_period_in_days(90)
            .send()
            .await
            .expect("rotation");
        // The Azure copy's container, in Azurite's account.
        let cs = azure_storage::ConnectionString::new(&conn).expect("connection string");
        let account = cs.account_name.expect("account").to_owned();
        let blobs = azure_storage_blobs::prelude::ClientBuilder::with_location(
            azure_storage::CloudLocation::Custom {
                account: account.clone(),
                uri: cs.blob_endpoint.expect("endpoint").to_owned(),
            },
            cs.storage_credentials().expect("credentials"),
        )
        .container_client(&box_name);
        blobs.create().await.expect("container");
        (kms, id, account)
    });
    let (kms, key_id, account) = kms;
    let key = format!("aws-kms:{alias}");
    let s3_copy = format!("s3://{vault}/ehr/");
    let az_copy = format!("azblob://{account}/{box_name}/ehr/");
    let local_copy = "local/ehr/";
    std::fs::create_dir_all(d.join(local_copy)).expect("dir");
    std::fs::write(d.join("ehr.db"), b"protected health information").expect("data");

    // The backup of a snapshot taken ten minutes ago, locked for six years as it is written,
    // copied to Azure and to local disk.
    let first = format!("{s3_copy}ehr-1.dbk");
    let taken = (time::OffsetDateTime::now_utc() - time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    ok(&drover(
        d,
        &[
            "backup",
            "create",
            "ehr.db",
            &first,
            "--key",
            &key,
            "--dataset",
            "ehr",
            "--recovery-point",
            &taken,
            "--lock",
            "compliance",
            "--retain",
            "6y",
        ],
    ));
    ok(&drover(
        d,
        &["backup", "copy", &first, &format!("{az_copy}ehr-1.dbk")],
    ));
    ok(&drover(
        d,
        &["backup", "copy", &first, &format!("{local_copy}ehr-1.dbk")],
    ));
    for copy in [s3_copy.as_str(), az_copy.as_str(), local_copy] {
        let out = ok(&drover(
            d,
            &["backup", "verify", copy, "--key", &key, "--sample", "1"],
        ));
        assert!(out.contains("unresolved verification errors: 0"), "{out}");
    }
    let copies = [s3_copy.as_str(), az_copy.as_str(), local_copy];
    inventory(d, "inv.toml", "1h", "6y", &key, &copies);
    let (code, checks, v) = posture(d, "inv.toml");
    assert_eq!(red(&checks), Vec::<&str>::new(), "{v:#}");
    assert_eq!(code, Some(0));
    assert_eq!(checks.len(), 8);
    // Control ids travel with every check.
    let controls = v["datasets"][0]["checks"][4]["controls"].to_string();
    assert!(controls.contains("HIPAA §164.310(d)(2)(iv)"), "{controls}");
    assert!(v.to_string().contains("NIST CSF 2.0 PR.DS-11"));
    for format in ["md", "html"] {
        let out = ok(&drover(
            d,
            &[
                "posture",
                "backups",
                "--inventory",
                "inv.toml",
                "--format",
                format,
            ],
        ));
        assert!(out.contains("NIST SP 800-53 CP-9"), "{out}");
    }

    // A nightly runbook gates on it: the step passes while the posture holds.
    // It verifies a sample of every copy, then checks the posture: the verifications it just
    // made count (they are read from the run's own journal).
    let verify = |id: &str, copy: &str| {
        format!(
            "step {id} {{\n  action = backup.verify_sample\n  with {{\n    source = \"{copy}\"\n    key    = \"{key}\"\n    sample = 1\n  }}\n}}\n\n"
        )
    };
    std::fs::write(
        d.join("nightly.drover"),
        format!(
            "runbook \"Nightly backup posture\" {{\n  rto   = 1h\n  rpo   = 1h\n  modes = [drill]\n}}\n\n{}{}{}step posture {{\n  action = posture.backups\n  after  = [verify_s3, verify_azure, verify_local]\n  with {{\n    inventory = \"inv.toml\"\n  }}\n}}\n\nmilestone done {{\n  after     = [posture]\n  stops_rto = true\n}}\n",
            verify("verify_s3", &s3_copy),
            verify("verify_azure", &az_copy),
            verify("verify_local", local_copy),
        ),
    )
    .expect("runbook");
    let nightly = |id: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["run", "nightly.drover", "--mode", "drill", "--run-id", id])
            .current_dir(d)
            .env("USER", "alice")
            .output()
            .expect("run");
        let status = drover(d, &["status", id, "--format", "json"]);
        assert_eq!(
            status.status.code(),
            Some(0),
            "the run did not start: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        (
            out,
            serde_json::from_str::<Value>(&ok(&status)).expect("status json"),
        )
    };
    let (out, status) = nightly("green");
    assert_eq!(
        status["outcome"],
        "succeeded",
        "{status}{}",
        text(&out.stdout)
    );

    // Each property taken away in turn: that check, and no other, turns red.
    // 1. The RPO: the newest recovery point (ten minutes old) is older than a 5-minute RPO.
    inventory(d, "rpo.toml", "5m", "6y", &key, &copies);
    let (code, checks, v) = posture(d, "rpo.toml");
    assert_eq!((code, red(&checks)), (Some(3), vec!["rpo"]));
    assert!(findings(&v, "rpo").contains("the RPO is 5m"), "{v:#}");

    // 2. A copy deleted: two copies hold the newest recovery point.
    let local_file = d.join(local_copy).join("ehr-1.dbk");
    let kept = std::fs::read(&local_file).expect("local copy");
    std::fs::remove_file(&local_file).expect("delete");
    let (code, checks, v) = posture(d, "inv.toml");
    assert_eq!((code, red(&checks)), (Some(3), vec!["3-copies"]), "{v:#}");
    let f = findings(&v, "3-copies");
    assert!(
        f.contains(local_copy) && f.contains("drover backup copy"),
        "{f}"
    );
    std::fs::write(&local_file, &kept).expect("put back");

    // 3. Two copies in the same bucket (and a third beside them): one platform, one site.
    for p in ["ehr-b/", "ehr-c/"] {
        ok(&drover(
            d,
            &[
                "backup",
                "copy",
                &first,
                &format!("s3://{vault}/{p}ehr-1.dbk"),
            ],
        ));
        ok(&drover(
            d,
            &[
                "backup",
                "verify",
                &format!("s3://{vault}/{p}"),
                "--key",
                &key,
                "--sample",
                "1",
            ],
        ));
    }
    let same_bucket = [
        s3_copy.clone(),
        format!("s3://{vault}/ehr-b/"),
        format!("s3://{vault}/ehr-c/"),
    ];
    let refs: Vec<&str> = same_bucket.iter().map(String::as_str).collect();
    inventory(d, "bucket.toml", "1h", "6y", &key, &refs);
    let (code, checks, v) = posture(d, "bucket.toml");
    assert_eq!(
        (code, red(&checks)),
        (Some(3), vec!["1-off-site", "2-platforms"]),
        "{v:#}"
    );
    assert!(findings(&v, "2-platforms").contains("s3"), "{v:#}");

    // 4. No Object Lock: the S3 copy in a bucket without it.
    let plain_copy = format!("s3://{plain}/ehr/");
    ok(&drover(
        d,
        &["backup", "copy", &first, &format!("{plain_copy}ehr-1.dbk")],
    ));
    ok(&drover(
        d,
        &[
            "backup",
            "verify",
            &plain_copy,
            "--key",
            &key,
            "--sample",
            "1",
        ],
    ));
    inventory(
        d,
        "unlocked.toml",
        "1h",
        "6y",
        &key,
        &[&plain_copy, &az_copy, local_copy],
    );
    let (code, checks, v) = posture(d, "unlocked.toml");
    assert_eq!(
        (code, red(&checks)),
        (Some(3), vec!["1-immutable"]),
        "{v:#}"
    );
    let f = findings(&v, "1-immutable");
    assert!(
        f.contains("no write-once lock") && f.contains("--lock compliance"),
        "{f}"
    );

    // 5. Retention shortened below the policy's six years.
    inventory(d, "short.toml", "1h", "1y", &key, &copies);
    let (code, checks, v) = posture(d, "short.toml");
    assert_eq!((code, red(&checks)), (Some(3), vec!["retention"]), "{v:#}");
    assert!(
        findings(&v, "retention").contains("the policy asks 6y"),
        "{v:#}"
    );

    // 6. A copy corrupted, and the verification run: 0 errors no longer holds — first by the
    // nightly runbook's verification step, then by hand; a clean nightly run makes it green.
    let mut bad = kept.clone();
    let mid = bad.len() - 40;
    bad[mid] ^= 0x01;
    std::fs::write(&local_file, &bad).expect("corrupt");
    let (_, status) = nightly("corrupted");
    assert_eq!(status["outcome"], "failed", "{status}");
    let (code, checks, v) = posture(d, "inv.toml");
    assert_eq!((code, red(&checks)), (Some(3), vec!["0-errors"]), "{v:#}");
    let f = findings(&v, "0-errors");
    assert!(f.contains(local_copy) && f.contains("failed"), "{f}");
    let out = drover(
        d,
        &[
            "backup", "verify", local_copy, "--key", &key, "--sample", "1",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let (code, checks, _) = posture(d, "inv.toml");
    assert_eq!((code, red(&checks)), (Some(3), vec!["0-errors"]));
    std::fs::write(&local_file, &kept).expect("repair");
    let (_, status) = nightly("repaired");
    assert_eq!(status["outcome"], "succeeded", "{status}");
    let (code, _, _) = posture(d, "inv.toml");
    assert_eq!(code, Some(0), "green again once it verifies");

    // 7. Key rotation stopped.
    rt.block_on(kms.disable_key_rotation().key_id(&key_id).send())
        .expect("disable rotation");
    let (code, checks, v) = posture(d, "inv.toml");
    assert_eq!(
        (code, red(&checks)),
        (Some(3), vec!["key-rotation"]),
        "{v:#}"
    );
    assert!(
        findings(&v, "key-rotation").contains("automatic rotation"),
        "{v:#}"
    );
    // The nightly runbook now fails at the gate, naming the check and its controls.
    let (out, status) = nightly("red");
    assert_eq!(status["outcome"], "failed", "{status}");
    let said = format!("{status}{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        said.contains("ehr/key-rotation") && said.contains("CP-9(8)"),
        "{said}"
    );
    // The run's report carries the failed check with its controls.
    let report = ok(&drover(d, &["report", "red", "--format", "md"]));
    assert!(
        report.contains("ehr/key-rotation") && report.contains("CP-9(8)"),
        "{report}"
    );
    // Stderr names each failure for a cron mail.
    let out = drover(d, &["posture", "backups", "--inventory", "inv.toml"]);
    assert!(
        text(&out.stderr).contains("FAIL ehr/key-rotation"),
        "{}",
        text(&out.stderr)
    );
}

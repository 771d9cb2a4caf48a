//! Backup and key operations outside runs leave audit records: who, what, which backup, under
//! which key, the outcome — hash-chained in the state directory, anchored outside it, signed by
//! a roster operator when a roster is given, and carried in the evidence of a drill that used the
//! backup.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn drover<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .current_dir(dir)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("drover runs")
}

fn ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The `@backups` log, one record per line.
fn records(dir: &Path) -> Vec<serde_json::Value> {
    let out = drover(dir, &["audit", "show", "--backups"]);
    ok(&out);
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record"))
        .collect()
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(format!("{name}_ssh"));
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    (path, public.trim().to_owned())
}

/// Rewrites the backups log as someone with write access to the host would: drops the last
/// records and rehashes the rest, head included.
const REWRITE: &str = r#"
import hashlib, json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
log = "@backups"
rows = db.execute("SELECT seq, record FROM audit WHERE run_id = ? ORDER BY seq", (log,)).fetchall()
keep = rows[:-2]
db.execute("DELETE FROM audit WHERE run_id = ?", (log,))
prev = "0" * 64
for seq, record in keep:
    r = json.loads(record)
    r["prev"] = prev
    text = json.dumps(r, separators=(",", ":"))
    h = hashlib.sha256((prev + "\n" + text).encode()).hexdigest()
    db.execute("INSERT INTO audit (run_id, seq, record, hash) VALUES (?, ?, ?, ?)", (log, seq, text, h))
    prev = h
db.execute("UPDATE logs SET audit_head = ?, audit_count = ? WHERE log_id = ?", (prev, len(keep), log))
db.commit()
"#;

#[test]
fn every_backup_and_key_operation_is_audited_chained_and_anchored() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let anchor_dir = tempfile::tempdir().expect("anchor");
    let anchor = format!("file:{}", anchor_dir.path().display());
    let with = |args: &[&'static str]| -> Vec<String> {
        args.iter()
            .map(|s| (*s).to_owned())
            .chain(["--as".to_owned(), "alice".to_owned()])
            .chain(["--audit-anchor".to_owned(), anchor.clone()])
            .collect()
    };

    ok(&drover(d, &with(&["key", "generate", "file:k1"])));
    ok(&drover(d, &with(&["key", "generate", "file:k2"])));
    std::fs::write(d.join("ehr.db"), "patient rows").expect("data");
    ok(&drover(
        d,
        &with(&["backup", "create", "ehr.db", "ehr.dbk", "--key", "file:k1"]),
    ));
    ok(&drover(
        d,
        &with(&["backup", "verify", "ehr.dbk", "--key", "file:k1"]),
    ));
    ok(&drover(
        d,
        &with(&["backup", "restore", "ehr.dbk", "out.db", "--key", "file:k1"]),
    ));
    ok(&drover(
        d,
        &with(&[
            "backup", "rewrap", "ehr.dbk", "--from", "file:k1", "--to", "file:k2",
        ]),
    ));
    // A restore that fails is recorded with its error.
    let failed = drover(
        d,
        &with(&["backup", "restore", "ehr.dbk", "out.db", "--key", "file:k2"]),
    );
    assert_eq!(failed.status.code(), Some(1));

    let recs = records(d);
    let ends: Vec<(String, String)> = recs
        .iter()
        .filter(|r| r["outcome"] != "started")
        .map(|r| {
            (
                r["action"].as_str().unwrap_or("").to_owned(),
                r["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("key.generate", "ok"),
        ("key.generate", "ok"),
        ("backup.create", "ok"),
        ("backup.verify", "verified"),
        ("backup.restore", "ok"),
        ("backup.rewrap", "ok"),
        ("backup.restore", "failed"),
    ]
    .iter()
    .map(|(a, o)| ((*a).to_owned(), (*o).to_owned()))
    .collect();
    assert_eq!(ends, want);
    assert_eq!(
        recs.iter().filter(|r| r["outcome"] == "started").count(),
        7,
        "every operation's initiation is recorded too"
    );
    let created = recs
        .iter()
        .find(|r| r["action"] == "backup.create" && r["outcome"] == "ok")
        .expect("created");
    let backup_id = created["backup_id"].as_str().expect("backup id").to_owned();
    assert_eq!(created["operator"], "alice");
    assert!(
        created["key_id"]
            .as_str()
            .is_some_and(|k| k.starts_with("file:sha256:"))
    );
    let restored = recs
        .iter()
        .find(|r| r["action"] == "backup.restore" && r["outcome"] == "ok")
        .expect("restored");
    assert_eq!(restored["backup_id"], backup_id.as_str(), "which snapshot");
    assert!(
        restored["error"]
            .as_str()
            .is_some_and(|e| e.contains("fully verified")),
        "the validation result: {restored}"
    );
    let failed = recs.last().expect("records");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("exists")),
        "{failed}"
    );
    // No key material in the log.
    let all = text(&drover(d, &["audit", "show", "--backups"]).stdout);
    for k in ["k1", "k2"] {
        let secret = std::fs::read_to_string(d.join(k)).expect("key");
        assert!(!all.contains(secret.trim()), "key material in the log");
    }

    let good = drover(d, &["audit", "verify", "--backups", "--anchor", &anchor]);
    ok(&good);
    assert!(
        text(&good.stdout)
            .contains("14 records, hash chain intact; agrees with 14 anchored checkpoint(s)"),
        "{}",
        text(&good.stdout)
    );
    // Someone with write access truncates and rehashes the log, head included: the database
    // alone cannot tell, the anchor can.
    let py = Command::new("python3")
        .arg("-c")
        .arg(REWRITE)
        .arg(d.join(".drover/drover.db"))
        .output()
        .expect("python3 with sqlite3");
    assert!(py.status.success(), "{}", text(&py.stderr));
    ok(&drover(d, &["audit", "verify", "--backups"]));
    let bad = drover(d, &["audit", "verify", "--backups", "--anchor", &anchor]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("truncated after the checkpoint was anchored"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn with_a_roster_the_operator_is_whoever_signed_and_anyone_else_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (alice, alice_pub) = keygen(d, "alice");
    let (mallory, _) = keygen(d, "mallory");
    std::fs::write(
        d.join("operators.toml"),
        format!("[operators.alice]\nroles = [\"dba\"]\nkeys = [\"{alice_pub}\"]\n"),
    )
    .expect("roster");
    std::fs::write(d.join("ehr.db"), "patient rows").expect("data");
    ok(&drover(d, &["key", "generate", "file:k1"]));
    let signed = drover(
        d,
        &[
            "backup",
            "create",
            "ehr.db",
            "ehr.dbk",
            "--key",
            "file:k1",
            "--operators",
            "operators.toml",
            "--operator-key",
            alice.to_str().expect("utf-8"),
        ],
    );
    ok(&signed);
    let recs = records(d);
    let started = recs
        .iter()
        .find(|r| r["action"] == "backup.create" && r["outcome"] == "started")
        .expect("started");
    assert_eq!(started["operator"], "alice");
    assert!(
        started["signed"]["signature"]
            .as_str()
            .is_some_and(|s| s.contains("BEGIN SSH SIGNATURE")),
        "{started}"
    );
    // A typed name with a roster: refused before anything is done.
    let typed = drover(
        d,
        &[
            "backup",
            "verify",
            "ehr.dbk",
            "--operators",
            "operators.toml",
            "--as",
            "alice",
        ],
    );
    assert_eq!(typed.status.code(), Some(2), "{}", text(&typed.stderr));
    // A key the roster does not list: refused, and the refusal recorded.
    let m = drover(
        d,
        &[
            "backup",
            "restore",
            "ehr.dbk",
            "out.db",
            "--key",
            "file:k1",
            "--operators",
            "operators.toml",
            "--operator-key",
            mallory.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(m.status.code(), Some(1), "{}", text(&m.stderr));
    assert!(!d.join("out.db").exists(), "nothing was restored");
    let last = records(d).pop().expect("a record");
    assert_eq!(last["outcome"], "refused");
    assert_eq!(last["operator"], "unverified");

    let v = drover(
        d,
        &[
            "audit",
            "verify",
            "--backups",
            "--operators",
            "operators.toml",
        ],
    );
    ok(&v);
    assert!(
        text(&v.stdout).contains("1 signed record(s) verified against the roster"),
        "{}",
        text(&v.stdout)
    );
}

const DRILL: &str = r#"runbook "restore drill" {
  rto   = 1h
  rpo   = 24h
  modes = [drill]
}

step verify_dump {
  action = backup.verify
  with {
    source = "ehr.dbk"
    key    = "file:k1"
  }
}

milestone done {
  after     = [verify_dump]
  stops_rto = true
}
"#;

#[test]
fn the_evidence_of_a_drill_carries_the_records_of_the_backups_it_used() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(d.join("ehr.db"), "patient rows").expect("data");
    ok(&drover(d, &["key", "generate", "file:k1"]));
    ok(&drover(
        d,
        &["backup", "create", "ehr.db", "ehr.dbk", "--key", "file:k1"],
    ));
    ok(&drover(
        d,
        &[
            "backup",
            "create",
            "ehr.db",
            "other.dbk",
            "--key",
            "file:k1",
        ],
    ));
    std::fs::write(d.join("drill.drover"), DRILL).expect("runbook");
    ok(&drover(d, &["run", "drill.drover", "--run-id", "d1"]));
    ok(&drover(d, &["key", "generate", "--signing", "file:ev.key"]));
    ok(&drover(
        d,
        &[
            "evidence",
            "export",
            "d1",
            "d1.tar",
            "--signing-key",
            "file:ev.key",
        ],
    ));
    let v = drover(
        d,
        &["evidence", "verify", "d1.tar", "--public-key", "ev.key.pub"],
    );
    ok(&v);
    // key generate (2 records), the create of ehr.dbk (2, one naming the backup) and of
    // other.dbk: the ok record of the create of the backup the drill verified is about it.
    assert!(
        text(&v.stdout)
            .contains("backup-operation log intact (1 record(s) about the backups the run used)"),
        "{}",
        text(&v.stdout)
    );
    // The bundle's backup log is covered by the signature: an edited record fails.
    let bytes = std::fs::read(d.join("d1.tar")).expect("bundle");
    let needle = b"backup.create";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the log is in the bundle");
    let mut edited = bytes.clone();
    edited[at] = b'B';
    std::fs::write(d.join("edited.tar"), edited).expect("write");
    let bad = drover(
        d,
        &[
            "evidence",
            "verify",
            "edited.tar",
            "--public-key",
            "ev.key.pub",
        ],
    );
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad.stdout));
}

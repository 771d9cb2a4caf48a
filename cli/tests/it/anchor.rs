//! The audit chain anchored outside the host: a log truncated and rehashed with its head
//! rewritten in the database passes the in-database check, and fails against the anchor.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn drover(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("drover runs")
}

pub(crate) const RUNBOOK: &str = r#"runbook "anchored" {
  rto   = 1h
  rpo   = 1h
  modes = [drill]
}

step gate {
  action = approval
  with {
    prompt = "go?"
  }
}

step work {
  action = shell
  after  = [gate]
  with {
    command = "echo work"
  }
}

milestone done {
  after     = [work]
  stops_rto = true
}
"#;

/// Rewrites the run's audit log as someone with write access to the host would: drops the last
/// records, edits one, recomputes every hash and the head so the chain is consistent again.
const REWRITE: &str = r#"
import hashlib, json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
run = sys.argv[2]
rows = db.execute("SELECT seq, record FROM audit WHERE run_id = ? ORDER BY seq", (run,)).fetchall()
keep = rows[:-2]
db.execute("DELETE FROM audit WHERE run_id = ?", (run,))
prev = "0" * 64
for seq, record in keep:
    r = json.loads(record)
    if seq == 2:
        r["operator"] = "mallory"
    r["prev"] = prev
    text = json.dumps(r, separators=(",", ":"))
    h = hashlib.sha256((prev + "\n" + text).encode()).hexdigest()
    db.execute("INSERT INTO audit (run_id, seq, record, hash) VALUES (?, ?, ?, ?)", (run, seq, text, h))
    prev = h
db.execute("UPDATE runs SET audit_head = ?, audit_count = ? WHERE run_id = ?", (prev, len(keep), run))
db.commit()
"#;

#[test]
fn a_rewritten_audit_log_contradicts_its_anchored_checkpoints() {
    let anchor_dir = tempfile::tempdir().expect("anchor");
    let anchor = format!("file:{}", anchor_dir.path().display());
    rewritten_log_contradicts(&anchor);
    let checkpoints = std::fs::read_to_string(anchor_dir.path().join("r1.checkpoints"))
        .expect("the anchor holds the run's checkpoints");
    assert!(
        checkpoints.lines().count() >= 2,
        "after the approval and at the end: {checkpoints}"
    );
}

/// A run anchored at `anchor`, approved, verified, bundled; then its log rewritten with its head
/// in the database: the database alone cannot tell, the anchor and the bundle can.
pub(crate) fn rewritten_log_contradicts(anchor: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(d.join("a.drover"), RUNBOOK).expect("runbook");
    let anchor = anchor.to_owned();
    let child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "run",
            "a.drover",
            "--run-id",
            "r1",
            "--as",
            "alice",
            "--audit-anchor",
            &anchor,
        ])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let mut approved = false;
    for _ in 0..1200 {
        let ok = drover(d, &["approve", "r1", "gate", "--as", "bob"]);
        if ok.status.success() {
            approved = true;
            break;
        }
        #[allow(clippy::disallowed_methods, reason = "polling a real process")]
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(approved, "bob approved");
    let out = child.wait_with_output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Without a roster, approvals are typed names, and the report says so.
    let md = text(&drover(d, &["report", "r1", "--format", "md"]).stdout);
    assert!(
        md.contains("| bob |") && md.contains("unauthenticated (typed name)"),
        "{md}"
    );

    let ok = drover(d, &["audit", "verify", "r1", "--anchor", &anchor]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let said = text(&ok.stdout);
    let n: usize = said
        .split("agrees with ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no checkpoint count: {said}"));
    assert!(n >= 2, "after the approval and at the end: {said}");

    // The evidence bundle carries the checkpoints, and its audit chain agrees with them.
    let made = drover(d, &["key", "generate", "--signing", "file:ev.key"]);
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    let export = |name: &str| {
        let out = drover(
            d,
            &[
                "evidence",
                "export",
                "r1",
                name,
                "--signing-key",
                "file:ev.key",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        drover(
            d,
            &["evidence", "verify", name, "--public-key", "ev.key.pub"],
        )
    };
    let bundled = export("before.tar");
    assert_eq!(bundled.status.code(), Some(0), "{}", text(&bundled.stderr));
    assert!(
        text(&bundled.stdout).contains("in agreement with"),
        "{}",
        text(&bundled.stdout)
    );

    let py = Command::new("python3")
        .arg("-c")
        .arg(REWRITE)
        .arg(d.join(".drover/drover.db"))
        .arg("r1")
        .output()
        .expect("python3 with sqlite3");
    assert!(py.status.success(), "{}", text(&py.stderr));
    // The rewrite is consistent: the database alone cannot tell.
    let inside = drover(d, &["audit", "verify", "r1"]);
    assert_eq!(inside.status.code(), Some(0), "{}", text(&inside.stderr));
    // The anchor can.
    let bad = drover(d, &["audit", "verify", "r1", "--anchor", &anchor]);
    assert_eq!(bad.status.code(), Some(1));
    let err = text(&bad.stderr);
    assert!(
        err.contains("checkpoint 1 ("),
        "names the checkpoint: {err}"
    );
    assert!(
        err.contains("rewritten") || err.contains("truncated"),
        "{err}"
    );
    // A bundle exported from the rewritten log, sealed with the bundle key, fails too: the
    // checkpoints it must carry contradict it.
    let after = export("after.tar");
    assert_eq!(after.status.code(), Some(1), "{}", text(&after.stdout));
    assert!(
        text(&after.stderr).contains("anchored checkpoints"),
        "{}",
        text(&after.stderr)
    );
}

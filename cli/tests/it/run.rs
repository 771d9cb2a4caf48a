//! `drover run | resume | approve | status | audit`: the quickstart end to end, crash-resume at
//! many kill points, two resumes racing, approvals, and audit tampering — with real processes.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_drover")
}

/// `drover` in `dir`: the state is `dir/.drover`, or with `DROVER_TEST_JOURNAL=postgres` a
/// database of the test's own (`DROVER_STATE`): these tests run on both journals.
fn command(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir).env("USER", "alice");
    if drover_journal_pg::testing::on_postgres() {
        c.env(
            "DROVER_STATE",
            drover_journal_pg::testing::database_for(dir),
        );
    }
    c
}

fn drover(dir: &Path, args: &[&str]) -> Output {
    command(dir).args(args).output().expect("drover runs")
}

fn spawn(dir: &Path, args: &[&str]) -> Child {
    command(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drover starts")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls `f` until it holds (real processes need real time; nothing asserts on durations).
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn status_json(dir: &Path, run: &str) -> serde_json::Value {
    let out = drover(dir, &["status", run, "--format", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn succeeded(dir: &Path, run: &str) -> BTreeSet<String> {
    status_json(dir, run)["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| s["state"] == "succeeded")
                .filter_map(|s| s["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_quickstart_runs_end_to_end_and_reports_rto_and_rpo() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::copy(
        super::root().join("runbooks/quickstart.drover"),
        d.join("quickstart.drover"),
    )
    .expect("copy");
    let port = free_port().to_string();
    let out = drover(
        d,
        &[
            "run",
            "quickstart.drover",
            "--mode",
            "drill",
            "--var",
            &format!("port={port}"),
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("outcome: Succeeded"), "{stdout}");
    assert!(
        stdout.contains("RTO ") && stdout.contains("against a target of 5m: MET"),
        "{stdout}"
    );
    assert!(stdout.contains("RPO "), "{stdout}");
    assert!(stdout.contains("MILESTONE service_restored"), "{stdout}");
    let run_id = status_json(d, "latest")["run_id"]
        .as_str()
        .expect("run id")
        .to_owned();
    let restored =
        std::fs::read_to_string(d.join(".drover/runs").join(run_id).join("restored/ehr.csv"))
            .expect("restored file");
    assert!(restored.ends_with("patient-5000\n"));
    let v = drover(d, &["audit", "verify"]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));
    let record = status_json(d, "latest");
    assert_eq!(record["outcome"], "succeeded");
    assert_eq!(record["rto"]["met"], true);
    assert_eq!(record["backups"][0]["dataset"], "ehr-demo");
    let audit = text(&drover(d, &["audit", "show"]).stdout);
    assert!(
        audit.contains("\"action\":\"backup.rehydrate\"") && audit.contains("\"backup_id\":\""),
        "{audit}"
    );
    assert!(audit.contains("\"key_id\":\"file:sha256:"), "{audit}");
}

/// Whether `args` start the run (rather than resume it).
fn first_try(args: &[&str]) -> bool {
    args.first() == Some(&"run")
}

fn chain_runbook(steps: usize, log: &Path) -> String {
    let mut s =
        String::from("runbook \"crash\" {\n  rto   = 1h\n  rpo   = 1h\n  modes = [drill]\n}\n");
    let width = 10;
    for i in 0..steps {
        let after = if i < width {
            String::new()
        } else {
            format!(
                "  after  = [s{}, s{}]\n",
                i - width,
                (i / width - 1) * width + (i * 7) % width
            )
        };
        s.push_str(&format!(
            "\nstep s{i} {{\n  action = shell\n{after}  with {{\n    command = \"echo s{i} >> {}\"\n  }}\n}}\n",
            log.display()
        ));
    }
    s.push_str(&format!(
        "\nmilestone done {{\n  after     = [s{}]\n  stops_rto = true\n}}\n",
        steps - 1
    ));
    s
}

#[test]
fn crash_at_many_points_and_resume_never_reruns_a_journaled_step() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let log = d.join("effects.log");
    // Steps that finish together are journaled in one commit (a group commit): enough steps,
    // and crashes after few enough commits, for many kill points.
    std::fs::write(d.join("crash.drover"), chain_runbook(400, &log)).expect("write");
    let check = drover(d, &["check", "crash.drover"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
    let pattern = [1u64, 2, 3, 1, 2, 4, 1, 3];
    let mut kills = 0usize;
    let mut first = true;
    let mut k = 0usize;
    loop {
        let before = succeeded(d, "crash");
        let lines_before = std::fs::read_to_string(&log)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        let crash_after = pattern[k % pattern.len()].to_string();
        k += 1;
        let args: Vec<&str> = if first {
            vec![
                "run",
                "crash.drover",
                "--mode",
                "drill",
                "--run-id",
                "crash",
            ]
        } else {
            vec!["resume", "crash"]
        };
        first = false;
        let mut sh = Command::new("sh");
        if drover_journal_pg::testing::on_postgres() {
            sh.env("DROVER_STATE", drover_journal_pg::testing::database_for(d));
        }
        let out = sh
            .arg("-c")
            .arg("ulimit -c 0; exec \"$0\" \"$@\"")
            .arg(bin())
            .args(&args)
            .current_dir(d)
            .env("USER", "alice")
            .env("DROVER_CRASH_AFTER_COMMITS", &crash_after)
            .output()
            .expect("runs");
        let effects = std::fs::read_to_string(&log).unwrap_or_default();
        for line in effects.lines().skip(lines_before) {
            assert!(
                !before.contains(line),
                "{line} ran again although its success was journaled before the crash"
            );
        }
        match out.status.code() {
            Some(0) => break,
            None => kills += 1,
            // The crash came right after the run's last commit: it is done.
            Some(1)
                if !first_try(&args)
                    && text(&out.stderr).contains("already finished (Succeeded)") =>
            {
                break;
            }
            Some(c) => panic!("exit {c}: {}\n{}", text(&out.stdout), text(&out.stderr)),
        }
        assert!(kills < 1000, "no progress");
    }
    assert!(kills >= 50, "only {kills} kill points");
    let effects = std::fs::read_to_string(&log).expect("log");
    for i in 0..400 {
        assert!(
            effects.lines().any(|l| l == format!("s{i}")),
            "s{i} never ran"
        );
    }
    let v = drover(d, &["audit", "verify", "crash"]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));
    eprintln!(
        "{kills} crashes, each resumed; {} effect lines for 400 steps",
        effects.lines().count()
    );
}

const GATED: &str = "runbook \"gated\" {\n  rto   = 1h\n  rpo   = 1h\n  modes = [drill]\n}\n\nstep gate {\n  action = approval\n  with {\n    prompt    = \"go?\"\n    approvers = APPROVERS\n    roles     = [\"ic\", \"dba\"]\n  }\n}\n\nstep work {\n  action = shell\n  after  = [gate]\n  with {\n    command = \"true\"\n  }\n}\n\nmilestone done {\n  after     = [work]\n  stops_rto = true\n}\n";

fn waiting(d: &Path, run: &str) -> bool {
    status_json(d, run)["steps"].as_array().is_some_and(|a| {
        a.iter()
            .any(|s| s["id"] == "gate" && s["state"] == "awaiting_approval")
    })
}

#[test]
fn approvals_need_distinct_approvers_with_roles_and_never_the_initiator() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(d.join("gated.drover"), GATED.replace("APPROVERS", "2")).expect("write");
    let run = spawn(
        d,
        &[
            "run",
            "gated.drover",
            "--mode",
            "drill",
            "--run-id",
            "g1",
            "--as",
            "alice",
        ],
    );
    wait_until("the gate to wait", || waiting(d, "g1"));
    let approve =
        |who: &str, role: &str| drover(d, &["approve", "g1", "gate", "--as", who, "--role", role]);
    let own = approve("alice", "ic");
    assert_eq!(own.status.code(), Some(1));
    assert!(
        text(&own.stderr).contains("four eyes"),
        "{}",
        text(&own.stderr)
    );
    // The same person typed differently is still the initiator.
    let shouty = approve(" Alice ", "ic");
    assert_eq!(shouty.status.code(), Some(1));
    assert!(text(&shouty.stderr).contains("four eyes"));
    // Refusals are in the audit log.
    let audit = text(&drover(d, &["audit", "show", "g1"]).stdout);
    assert!(
        audit.contains(
            "\"operator\":\"alice\",\"step\":\"gate\",\"action\":\"approval\",\"backup_id\":null,\"key_id\":null,\"outcome\":\"refused\""
        ),
        "{audit}"
    );
    assert_eq!(drover(d, &["audit", "verify", "g1"]).status.code(), Some(0));
    let intern = approve("bob", "intern");
    assert_eq!(intern.status.code(), Some(1));
    assert!(
        text(&intern.stderr).contains("roles"),
        "{}",
        text(&intern.stderr)
    );
    assert_eq!(approve("bob", "ic").status.code(), Some(0));
    wait_until("bob's approval to be counted", || {
        text(&drover(d, &["audit", "show", "g1"]).stdout)
            .contains("\"operator\":\"bob\",\"step\":\"gate\",\"action\":\"approval\"")
    });
    let twice = approve("bob", "dba");
    assert_eq!(twice.status.code(), Some(1));
    assert!(
        text(&twice.stderr).contains("distinct"),
        "{}",
        text(&twice.stderr)
    );
    assert_eq!(approve("carol", "dba").status.code(), Some(0));
    let out = run.wait_with_output().expect("run ends");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let audit = text(&drover(d, &["audit", "show", "g1"]).stdout);
    for who in ["bob", "carol"] {
        assert!(
            audit.contains(&format!(
                "\"operator\":\"{who}\",\"step\":\"gate\",\"action\":\"approval\""
            )),
            "{audit}"
        );
    }
    assert_eq!(drover(d, &["audit", "verify", "g1"]).status.code(), Some(0));
}

#[test]
fn two_resumes_started_together_exactly_one_proceeds() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(d.join("gated.drover"), GATED.replace("APPROVERS", "1")).expect("write");
    let mut run = spawn(
        d,
        &["run", "gated.drover", "--mode", "drill", "--run-id", "g2"],
    );
    wait_until("the gate to wait", || waiting(d, "g2"));
    run.kill().expect("kill");
    let _ = run.wait();
    let a = spawn(d, &["resume", "g2", "--as", "carol"]);
    let b = spawn(d, &["resume", "g2", "--as", "dave"]);
    let mut children = vec![a, b];
    // The loser exits at once, naming the holder.
    let mut refused = None;
    wait_until("one resume to be refused", || {
        for (i, c) in children.iter_mut().enumerate() {
            if let Ok(Some(_)) = c.try_wait() {
                refused = Some(i);
                return true;
            }
        }
        false
    });
    let loser = children.remove(refused.expect("one exited"));
    let out = loser.wait_with_output().expect("output");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("is driven by") && err.contains("pid"), "{err}");
    assert_eq!(
        drover(d, &["approve", "g2", "gate", "--as", "bob", "--role", "ic"])
            .status
            .code(),
        Some(0)
    );
    let winner = children.remove(0).wait_with_output().expect("output");
    assert_eq!(winner.status.code(), Some(0), "{}", text(&winner.stdout));
}

#[test]
fn audit_verify_detects_tampering_through_the_binary() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let log = d.join("effects.log");
    std::fs::write(d.join("r.drover"), chain_runbook(60, &log)).expect("write");
    // Each tampering on a run of its own, in the journal's own database, by someone with write
    // access to it.
    let tamper = |run: &str, sql: &str| {
        let out = drover(d, &["run", "r.drover", "--mode", "drill", "--run-id", run]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(drover(d, &["audit", "verify", run]).status.code(), Some(0));
        let sql = sql.replace("RUN", run);
        if drover_journal_pg::testing::on_postgres() {
            let url = drover_journal_pg::testing::database_for(d);
            let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            c.batch_execute(&sql).expect("tamper");
        } else {
            let conn = rusqlite::Connection::open(d.join(".drover/drover.db")).expect("open");
            conn.execute_batch(&sql).expect("tamper");
        }
        drover(d, &["audit", "verify", run])
    };
    for (what, sql) in [
        (
            "edit",
            "UPDATE audit SET record = replace(record, '\"outcome\":\"ok\"', '\"outcome\":\"failed\"') WHERE run_id = 'RUN' AND seq = 10",
        ),
        (
            "delete",
            "DELETE FROM audit WHERE run_id = 'RUN' AND seq = 20",
        ),
        (
            "truncate",
            "DELETE FROM audit WHERE run_id = 'RUN' AND seq > 50",
        ),
    ] {
        let out = tamper(&format!("t-{what}"), sql);
        assert_eq!(out.status.code(), Some(1), "{what} not detected");
        assert!(
            text(&out.stderr).contains("audit record"),
            "{what}: {}",
            text(&out.stderr)
        );
    }
}

/// A one-endpoint HTTP server that records each request's path and body and answers 200.
fn collector() -> (String, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let _ = reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\ncontent-type: application/x-protobuf\r\n\r\n");
            let _ = tx.send((path, body));
        }
    });
    (format!("http://{addr}"), rx)
}

#[test]
fn spans_for_the_run_and_each_step_are_exported_over_otlp() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let log = d.join("effects.log");
    std::fs::write(d.join("r.drover"), chain_runbook(3, &log)).expect("write");
    let (endpoint, rx) = collector();
    let out = drover(
        d,
        &[
            "run", "r.drover", "--otlp", &endpoint, "--mode", "drill", "--run-id", "otel",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (path, body) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("an export arrived");
    assert_eq!(path, "/v1/traces");
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    for needle in [
        &b"drover"[..],
        b"run",
        b"step",
        b"s0",
        b"s2",
        b"shell",
        b"otel",
    ] {
        assert!(
            has(needle),
            "the export lacks {:?}",
            String::from_utf8_lossy(needle)
        );
    }
}

#[test]
fn a_drill_is_refused_at_run_time_before_touching_a_production_resource() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    // The destination is only known at run time (a step's output), so the compiler cannot see it;
    // the engine refuses the step before any call is made.
    let rb = "runbook \"guard\" {\n  rto   = 1h\n  rpo   = 1h\n  modes = [drill]\n}\n\nproduction {\n  resources = [\"/srv/prod/ehr.db\"]\n}\n\nstep pick {\n  action = shell\n  with {\n    command = \"printf /srv/prod/ehr.db\"\n  }\n}\n\nstep restore {\n  action = backup.rehydrate\n  with {\n    source = \"ehr.dbk\"\n    key    = \"file:k.key\"\n    dest   = steps.pick.stdout\n  }\n}\n\nmilestone m {\n  after     = [restore]\n  stops_rto = true\n}\n";
    std::fs::write(d.join("guard.drover"), rb).expect("write");
    let out = drover(
        d,
        &[
            "run",
            "guard.drover",
            "--mode",
            "drill",
            "--run-id",
            "guard",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(
            "refused before any call: a drill must not touch production resource /srv/prod/ehr.db"
        ),
        "{}",
        text(&out.stdout)
    );
    let audit = text(&drover(d, &["audit", "show", "guard"]).stdout);
    assert!(audit.contains("refused before any call"), "{audit}");
}

#[test]
fn simulations_can_draw_step_durations_from_past_runs_in_the_journal() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let wait = |id: &str, after: &str, ms: u32| {
        format!(
            "\nstep {id} {{\n  action   = wait\n{after}  estimate = 30m\n  with {{\n    duration = {ms}ms\n  }}\n}}\n"
        )
    };
    let src = format!(
        "runbook \"measured\" {{\n  rto   = 1h\n  rpo   = 1h\n  modes = [drill]\n}}\n{}{}\nmilestone done {{\n  after     = [b]\n  stops_rto = true\n}}\n",
        wait("a", "", 200),
        wait("b", "  after    = [a]\n", 100)
    );
    std::fs::write(d.join("m.drover"), src).expect("write");
    let sim = |extra: &[&str]| {
        let mut args = vec![
            "simulate", "m.drover", "--trials", "200", "--format", "json",
        ];
        args.extend_from_slice(extra);
        let out = drover(d, &args);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    // Before any run there is nothing to measure: a clear error, not a silent fallback.
    let (code, _, err) = sim(&["--durations", "measured"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no journal"), "{err}");
    for _ in 0..2 {
        let out = drover(d, &["run", "m.drover", "--mode", "drill"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let (code, estimated, err) = sim(&[]);
    assert_eq!(code, Some(0), "{err}");
    let estimated: serde_json::Value = serde_json::from_str(&estimated).expect("json");
    assert_eq!(estimated["measured_steps"], 0);
    assert_eq!(estimated["rto"]["p50_ms"], 3_600_000, "two 30m estimates");
    let (code, measured, err) = sim(&["--durations", "measured"]);
    assert_eq!(code, Some(0), "{err}");
    let measured: serde_json::Value = serde_json::from_str(&measured).expect("json");
    assert_eq!(measured["measured_steps"], 2);
    let steps = measured["steps"].as_array().expect("steps");
    for id in ["a", "b"] {
        let s = steps.iter().find(|s| s["id"] == id).expect("step");
        assert_eq!(s["measured"], 2, "two runs measured {id}");
    }
    // Each measured attempt lasted at least its wait; the simulated RTO is built from them, far
    // below the estimates.
    let a = steps.iter().find(|s| s["id"] == "a").expect("a");
    assert!(a["mean_ms"].as_u64().is_some_and(|m| m >= 200), "{a}");
    let p50 = measured["rto"]["p50_ms"].as_u64().expect("p50");
    assert!((300..3_600_000).contains(&p50), "{p50}");
}

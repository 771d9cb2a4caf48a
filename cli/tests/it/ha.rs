//! High availability with real parts: two `drover server` replicas on one PostgreSQL journal
//! (`.ci/pg` starts a real server; `DROVER_TEST_PG` names it). The replica driving a 100-step run
//! is SIGKILLed at random journal boundaries, again and again: the other takes over within its
//! lease, no step journaled as done runs again, and the audit chain verifies. A replica stopped
//! (SIGSTOP) past its lease and continued acts no more and says it lost the lease. PostgreSQL
//! restarted mid-run: the replicas reconnect and the run finishes.
//!
//! Effects are recorded in a ledger file by the steps themselves: `STEP PID MS`, where PID is
//! the replica that ran the step (the shell's parent) and MS the wall time it started.

use crate::server::{free_port, keygen, login, pause, start_run};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The test PostgreSQL, or `None` (then the suite is skipped, unless `.ci/test` requires it).
fn pg_url() -> Option<String> {
    let url = std::env::var("DROVER_TEST_PG").ok();
    assert!(
        url.is_some() || std::env::var("DROVER_TEST_REQUIRE_PG").is_err(),
        "DROVER_TEST_REQUIRE_PG is set but DROVER_TEST_PG is not: the PostgreSQL suite would not run"
    );
    url
}

/// Held by every test of this suite while it uses the server; the test that restarts it holds
/// it alone, so that no other test sees its restart.
static SERVER: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// The test PostgreSQL (see [`pg_url`]), shared with the suite's other tests while held.
fn pg() -> Option<(String, std::sync::RwLockReadGuard<'static, ()>)> {
    let url = pg_url()?;
    Some((
        url,
        SERVER
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    ))
}

/// The test PostgreSQL, for this test alone while held (it restarts the server).
fn pg_alone() -> Option<(String, std::sync::RwLockWriteGuard<'static, ()>)> {
    let url = pg_url()?;
    Some((
        url,
        SERVER
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    ))
}

/// Lease TTL of the replicas under test (short, so that 20 takeovers take a minute).
const TTL: &str = "2s";
const TTL_MS: u64 = 2_000;

struct Replica {
    child: Child,
    id: String,
    port: u16,
    log: PathBuf,
}

impl Replica {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {}", self.pid());
    }
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts replica `id` of the server on `url`, on `port`; returns once it answers.
fn replica(d: &Path, url: &str, id: &str, port: u16) -> Replica {
    replica_with(d, url, id, port, &[])
}

/// [`replica`] with more arguments (`--config FILE`).
fn replica_with(d: &Path, url: &str, id: &str, port: u16, more: &[&str]) -> Replica {
    let log = d.join(format!("{id}.log"));
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "server",
            "--state",
            url,
            "--local-dir",
            &format!("local-{id}"),
            "--replica-id",
            id,
            "--lease-ttl",
            TTL,
            "--no-tls",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--operators",
            "operators.toml",
            "--runbooks",
            "runbooks",
        ])
        .args(more)
        .env("RUST_LOG", "info")
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("drover server");
    let r = Replica {
        child,
        id: id.to_owned(),
        port,
        log,
    };
    let http = reqwest::blocking::Client::new();
    for _ in 0..400 {
        if http
            .get(format!("{}/healthz", r.base()))
            .send()
            .is_ok_and(|x| x.status().is_success())
        {
            return r;
        }
        pause(25);
    }
    panic!("replica {id} did not come up: {}", r.log_text());
}

/// A runbook of `n` shell steps, four wide, each writing `STEP PID MS` to `ledger` when it starts;
/// with `gate`, an approval step first.
fn runbook(n: usize, ledger: &Path, sleep: &str, gate: bool) -> String {
    let mut s =
        String::from("runbook \"ha\" {\n  rto   = 1h\n  rpo   = 1h\n  modes = [drill]\n}\n");
    if gate {
        s.push_str(
            "\nstep gate {\n  action = approval\n  with {\n    prompt    = \"go?\"\n    approvers = 1\n    roles     = [\"dba\"]\n  }\n}\n",
        );
    }
    for i in 0..n {
        let after = match (i, gate) {
            (0..4, false) => String::new(),
            (0..4, true) => "  after  = [gate]\n".to_owned(),
            _ => format!("  after  = [s{}]\n", i - 4),
        };
        s.push_str(&format!(
            "\nstep s{i} {{\n  action = shell\n{after}  with {{\n    command = \"echo s{i} $PPID $(date +%s%3N) >> {}; sleep {sleep}\"\n  }}\n}}\n",
            ledger.display()
        ));
    }
    s.push_str(&format!(
        "\nmilestone done {{\n  after     = [{}]\n  stops_rto = true\n}}\n",
        (n.saturating_sub(4)..n)
            .map(|i| format!("s{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s
}

/// `(step, pid, ms)` of every ledger line.
fn ledger(path: &Path) -> Vec<(String, u32, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut p = l.split(' ');
            Some((
                p.next()?.to_owned(),
                p.next()?.parse().ok()?,
                p.next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// A connection to the test database (for the journal's own view, read as an auditor would).
fn db(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("the test database")
}

fn query_i64(url: &str, sql: &str, run: &str) -> i64 {
    // The server restarts in one test: a read that fails is asked again.
    for _ in 0..200 {
        if let Ok(mut c) = postgres::Client::connect(url, postgres::NoTls)
            && let Ok(row) = c.query_one(sql, &[&run])
        {
            return row.get(0);
        }
        pause(50);
    }
    panic!("the test database does not answer");
}

fn events(url: &str, run: &str) -> i64 {
    query_i64(url, "SELECT count(*) FROM events WHERE run_id = $1", run)
}

fn outcome(url: &str, run: &str) -> String {
    for _ in 0..200 {
        if let Ok(mut c) = postgres::Client::connect(url, postgres::NoTls)
            && let Ok(row) = c.query_one("SELECT status FROM runs WHERE run_id = $1", &[&run])
        {
            return row.get(0);
        }
        pause(50);
    }
    panic!("the test database does not answer");
}

fn wait_finished(url: &str, run: &str, what: &str) {
    for _ in 0..3_000 {
        let s = outcome(url, run);
        if !matches!(s.as_str(), "running" | "waiting") {
            assert_eq!(s, "succeeded", "{what}: the run ended {s}");
            return;
        }
        pause(50);
    }
    panic!("{what}: the run did not finish");
}

/// When each step's success was journaled (ms, the driver's clock).
fn succeeded_at(url: &str, run: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for r in db(url)
        .query(
            "SELECT at, event FROM events WHERE run_id = $1 ORDER BY seq",
            &[&run],
        )
        .expect("events")
    {
        let at: i64 = r.get(0);
        let ev: serde_json::Value =
            serde_json::from_str(&r.get::<_, String>(1)).expect("event json");
        if ev["event"] == "step_succeeded"
            && let Some(step) = ev["step"].as_str()
        {
            out.entry(step.to_owned())
                .or_insert(u64::try_from(at).unwrap_or(0));
        }
    }
    out
}

/// No step whose success was journaled started again afterwards.
fn assert_no_rerun_after_done(url: &str, run: &str, ledger_path: &Path) {
    let done = succeeded_at(url, run);
    for (step, pid, ms) in ledger(ledger_path) {
        if let Some(at) = done.get(&step) {
            assert!(
                ms <= *at,
                "{step} started again (pid {pid} at {ms}) after its success was journaled at {at}"
            );
        }
    }
}

fn audit_verifies(d: &Path, url: &str, run: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["audit", "verify", run, "--state", url])
        .current_dir(d)
        .output()
        .expect("audit verify");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The roster (alice starts, bob approves) and the runbook directory.
fn team(d: &Path, rb: &str) -> (PathBuf, PathBuf) {
    let (alice, a_pub) = keygen(d, "alice");
    let (bob, b_pub) = keygen(d, "bob");
    std::fs::write(
        d.join("operators.toml"),
        format!(
            "[operators.alice]\nroles = [\"incident-commander\"]\nkeys = [\"{a_pub}\"]\n\n[operators.bob]\nroles = [\"dba\"]\nkeys = [\"{b_pub}\"]\n"
        ),
    )
    .expect("roster");
    std::fs::create_dir_all(d.join("runbooks")).expect("dir");
    std::fs::write(d.join("runbooks/ha.drover"), rb).expect("runbook");
    (alice, bob)
}

/// Who owns `run`, as replica `r` sees it.
fn owner(r: &Replica, token: &str, run: &str) -> Option<String> {
    let v: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/replicas", r.base()))
        .bearer_auth(token)
        .send()
        .and_then(reqwest::blocking::Response::json)
        .ok()?;
    v["runs"]
        .as_array()?
        .iter()
        .find(|x| x["run_id"] == run)
        .and_then(|x| x["owner"].as_str())
        .map(str::to_owned)
}

/// A little pseudo-random sequence (the kill points), the same on every run.
fn kill_points(n: usize) -> Vec<i64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + i64::try_from(x % 4).unwrap_or(0)
        })
        .collect()
}

#[test]
fn the_replica_driving_a_run_is_killed_twenty_times_and_the_other_always_takes_over() {
    let Some((admin, _server)) = pg() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let url = drover_journal_pg::testing::database_for(d);
    let _ = admin;
    let ledger_path = d.join("ledger");
    let (alice, _) = team(d, &runbook(100, &ledger_path, "0.3", false));
    let ports = [free_port(), free_port()];
    let mut reps = [
        Some(replica(d, &url, "a", ports[0])),
        Some(replica(d, &url, "b", ports[1])),
    ];
    let base = reps[0].as_ref().map(Replica::base).expect("a");
    let token = login(&base, &alice);
    let tokens = [
        token.clone(),
        login(&reps[1].as_ref().map(Replica::base).expect("b"), &alice),
    ];
    let run = start_run(&base, &token, &alice, "ha.drover");
    let mut takeovers_ms: Vec<u64> = Vec::new();
    let clock = drover_engine::clock::SystemClock;
    use drover_engine::clock::Clock;
    for k in kill_points(20) {
        // The owner, once the run has journaled `k` more events under it.
        let start_events = events(&url, &run);
        let mut victim = None;
        for _ in 0..2_000 {
            if events(&url, &run) >= start_events + k {
                let (i, live) = reps
                    .iter()
                    .enumerate()
                    .find_map(|(i, r)| r.as_ref().map(|r| (i, r)))
                    .expect("a live replica");
                if let Some(o) = owner(live, &tokens[i], &run) {
                    victim = reps
                        .iter()
                        .position(|r| r.as_ref().is_some_and(|r| r.id == o));
                    if victim.is_some() {
                        break;
                    }
                }
            }
            pause(10);
        }
        let v = victim.expect("a replica owns the run");
        assert_ne!(
            outcome(&url, &run),
            "succeeded",
            "the run ended before 20 kills"
        );
        let mut dead = reps[v].take().expect("victim");
        dead.signal("-KILL");
        let _ = dead.child.wait();
        let killed_at = clock.now_ms();
        let survivor_pid = reps[1 - v].as_ref().map(Replica::pid).expect("survivor");
        // Takeover: from the kill to the first step the survivor starts.
        let mut took = None;
        for _ in 0..2_000 {
            if ledger(&ledger_path)
                .iter()
                .any(|(_, pid, ms)| *pid == survivor_pid && *ms >= killed_at)
            {
                took = Some(clock.now_ms().saturating_sub(killed_at));
                break;
            }
            pause(5);
        }
        takeovers_ms.push(took.expect("the other replica took the run over and started a step"));
        // The killed replica comes back (a new process), so there are two again.
        let id = dead.id.clone();
        drop(dead);
        reps[v] = Some(replica(d, &url, &id, ports[v]));
    }
    wait_finished(&url, &run, "after 20 kills");
    let lines = ledger(&ledger_path);
    let ran: BTreeSet<&str> = lines.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(ran.len(), 100, "every step ran");
    assert_no_rerun_after_done(&url, &run, &ledger_path);
    audit_verifies(d, &url, &run);
    let mut sorted = takeovers_ms.clone();
    sorted.sort_unstable();
    let p = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let summary = format!(
        "takeover (SIGKILL -> next step started by the other replica), lease TTL {TTL_MS} ms, {} kills: min {} ms, p50 {} ms, p95 {} ms, max {} ms; {} effect lines for 100 steps",
        sorted.len(),
        sorted[0],
        p(0.5),
        p(0.95),
        sorted[sorted.len() - 1],
        lines.len()
    );
    eprintln!("{summary}");
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ha-takeover.txt");
    let _ = std::fs::write(target, format!("{summary}\nall: {takeovers_ms:?}\n"));
}

#[test]
fn a_replica_stopped_past_its_lease_acts_no_more_when_continued_and_approvals_cross_replicas() {
    let Some((_, _server)) = pg() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let url = drover_journal_pg::testing::database_for(d);
    let ledger_path = d.join("ledger");
    let (alice, bob) = team(d, &runbook(24, &ledger_path, "0.4", true));
    let a = replica(d, &url, "a", free_port());
    let b = replica(d, &url, "b", free_port());
    let token = login(&a.base(), &alice);
    let run = start_run(&a.base(), &token, &alice, "ha.drover");

    // Replica B's event stream follows the run that A drives.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    {
        let (base, run, t) = (b.base(), run.clone(), login(&b.base(), &bob));
        std::thread::spawn(move || {
            use std::io::BufRead;
            let Ok(resp) = reqwest::blocking::Client::builder()
                .timeout(None)
                .build()
                .and_then(|c| {
                    c.get(format!("{base}/api/v1/runs/{run}/events"))
                        .bearer_auth(t)
                        .send()
                })
            else {
                return;
            };
            for line in std::io::BufReader::new(resp).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
    }

    // Bob approves on replica B; A, which drives the run, acts on it.
    let http = reqwest::blocking::Client::new();
    let bob_token = login(&b.base(), &bob);
    let mut statement = None;
    for _ in 0..400 {
        let r = http
            .get(format!(
                "{}/api/v1/runs/{run}/steps/gate/statement?decision=approve",
                b.base()
            ))
            .bearer_auth(&bob_token)
            .send()
            .expect("statement");
        if r.status().is_success() {
            let v: serde_json::Value = r.json().expect("json");
            statement = v["statement"].as_str().map(str::to_owned);
            break;
        }
        pause(25);
    }
    let statement = statement.expect("the statement to sign");
    let signature = drover_identity::sign::with_key_file(&bob, &statement).expect("sign");
    let decided = http
        .post(format!(
            "{}/api/v1/runs/{run}/steps/gate/decisions",
            b.base()
        ))
        .bearer_auth(&bob_token)
        .json(&serde_json::json!({ "statement": statement, "signature": signature }))
        .send()
        .expect("decide");
    assert!(decided.status().is_success(), "{:?}", decided.text());
    // A runs the next steps.
    for _ in 0..1_000 {
        if ledger(&ledger_path)
            .iter()
            .filter(|l| l.1 == a.pid())
            .count()
            >= 6
        {
            break;
        }
        pause(10);
    }
    let by_a = |l: &[(String, u32, u64)]| l.iter().filter(|x| x.1 == a.pid()).count();
    assert!(
        by_a(&ledger(&ledger_path)) >= 6,
        "replica A drives the run after B journaled the approval"
    );
    assert_eq!(owner(&b, &bob_token, &run).as_deref(), Some("a"));
    let metrics = http
        .get(format!("{}/metrics", b.base()))
        .bearer_auth(&bob_token)
        .send()
        .and_then(reqwest::blocking::Response::text)
        .expect("metrics");
    assert!(
        metrics.contains(&format!(
            "drover_run_owner{{run_id=\"{run}\",replica=\"a\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("drover_replica_info{replica=\"b\",shared_journal=\"true\"} 1"),
        "{metrics}"
    );

    // SIGSTOP A for twice its lease: B takes the run over.
    a.signal("-STOP");
    pause(300);
    let a_effects = by_a(&ledger(&ledger_path));
    let mut taken = false;
    for _ in 0..1_000 {
        if ledger(&ledger_path).iter().any(|l| l.1 == b.pid()) {
            taken = true;
            break;
        }
        pause(10);
    }
    assert!(taken, "replica B took the run over");
    pause(2 * TTL_MS);
    // A continues: it must find its lease gone before acting, and act no more.
    a.signal("-CONT");
    wait_finished(&url, &run, "after the split");
    pause(500);
    assert_eq!(
        by_a(&ledger(&ledger_path)),
        a_effects,
        "replica A performed an effect after it lost its lease"
    );
    for _ in 0..200 {
        if a.log_text().contains("lost the lease") {
            break;
        }
        pause(25);
    }
    assert!(
        a.log_text().contains("lost the lease"),
        "replica A did not say it lost the lease: {}",
        a.log_text()
    );
    assert_no_rerun_after_done(&url, &run, &ledger_path);
    audit_verifies(d, &url, &run);
    // B's stream showed A's progress: the approval and A's steps, then B's, to the end.
    let seen: Vec<String> = rx.try_iter().collect();
    let transitions = seen
        .iter()
        .filter(|l| l.starts_with("event: transition"))
        .count();
    assert!(
        transitions >= 24,
        "B's stream showed {transitions} transitions"
    );
    assert!(
        seen.iter().any(|l| l.contains("approval_given")
            || l.contains("\"approved\"")
            || l.contains("gate")),
        "B's stream did not show the approval"
    );
}

#[test]
fn postgres_restarted_mid_run_the_replicas_reconnect_and_the_run_finishes() {
    let Some((_, _server)) = pg_alone() else {
        return;
    };
    let Ok(ctl) = std::env::var("DROVER_TEST_PG_CTL") else {
        assert!(
            std::env::var("DROVER_TEST_REQUIRE_PG").is_err(),
            "DROVER_TEST_PG_CTL is not set"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let url = drover_journal_pg::testing::database_for(d);
    let ledger_path = d.join("ledger");
    let (alice, _) = team(d, &runbook(24, &ledger_path, "0.2", false));
    let a = replica(d, &url, "a", free_port());
    let _b = replica(d, &url, "b", free_port());
    let token = login(&a.base(), &alice);
    let run = start_run(&a.base(), &token, &alice, "ha.drover");
    for _ in 0..1_000 {
        if ledger(&ledger_path).len() >= 6 {
            break;
        }
        pause(10);
    }
    let out = Command::new(&ctl)
        .args(["restart", "-m", "fast", "-w"])
        .output()
        .expect("pg_ctl restart");
    assert!(
        out.status.success(),
        "pg_ctl restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_finished(&url, &run, "after PostgreSQL restarted");
    let ran: BTreeSet<String> = ledger(&ledger_path).into_iter().map(|l| l.0).collect();
    assert_eq!(ran.len(), 24, "every step ran");
    assert_no_rerun_after_done(&url, &run, &ledger_path);
    audit_verifies(d, &url, &run);
    // Nothing stranded: no run is left live.
    let live = query_i64(
        &url,
        "SELECT count(*) FROM runs WHERE status IN ('running', 'waiting') AND run_id <> $1",
        &run,
    );
    assert_eq!(live, 0);
}

#[test]
fn a_schedule_fires_once_per_slot_across_two_replicas() {
    let Some((_, _server)) = pg() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let url = drover_journal_pg::testing::database_for(d);
    let rb = "runbook \"often\" {\n  rto   = 1h\n  rpo   = 1h\n  modes = [drill]\n}\n\nschedule often {\n  every = 2s\n}\n\nstep probe {\n  action = shell\n  with {\n    command = \"true\"\n  }\n}\n\nmilestone done {\n  after     = [probe]\n  stops_rto = true\n}\n";
    team(d, rb);
    let _a = replica(d, &url, "a", free_port());
    let _b = replica(d, &url, "b", free_port());
    let count = |sql: &str| query_i64(&url, sql, "schedule:often");
    let started = "SELECT count(*) FROM fires WHERE decision IN ('fire', 'catch_up') AND state = 'started' AND $1 <> ''";
    for _ in 0..400 {
        if count(started) >= 4 {
            break;
        }
        pause(50);
    }
    // Let the last decided fire start and its run finish.
    pause(1_500);
    let fires = count(started);
    assert!(fires >= 4, "only {fires} fires started");
    let runs = count("SELECT count(*) FROM runs WHERE initiator = $1");
    let orphans = count(
        "SELECT count(*) FROM runs r WHERE r.initiator = $1 AND NOT EXISTS (SELECT 1 FROM fires f WHERE f.run_id = r.run_id)",
    );
    let per_slot = count(
        "SELECT COALESCE(MAX(n), 0) FROM (SELECT count(*) AS n FROM fires WHERE decision IN ('fire', 'catch_up') AND $1 <> '' GROUP BY runbook, schedule, slot_ms) s",
    );
    assert_eq!(orphans, 0, "a run that no journaled fire decided");
    assert_eq!(per_slot, 1, "a slot decided twice");
    let pending = count(
        "SELECT count(*) FROM fires WHERE decision IN ('fire', 'catch_up') AND state IN ('decided', 'queued') AND $1 <> ''",
    );
    assert!(
        fires <= runs && runs <= fires + pending,
        "{runs} runs for {fires} fires started ({pending} being started): a slot ran twice"
    );
}

#[test]
fn a_journal_database_newer_than_the_binary_is_refused_untouched() {
    let Some((_, _server)) = pg() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let url = drover_journal_pg::testing::database_for(d);
    let runs = || {
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["runs", "--state", &url])
            .current_dir(d)
            .output()
            .expect("drover runs")
    };
    // First use migrates the empty database.
    let _ = runs();
    let versions = |c: &mut postgres::Client| -> i64 {
        c.query_one("SELECT count(*) FROM drover_schema", &[])
            .expect("versions")
            .get(0)
    };
    let mut c = db(&url);
    assert_eq!(versions(&mut c), drover_journal_pg::SCHEMA_VERSION);
    c.batch_execute(
        "INSERT INTO drover_schema (version, by_version) VALUES (99, 'a newer drover')",
    )
    .expect("a newer schema");
    let out = runs();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("schema version 99, newer than this drover supports"),
        "{err}"
    );
    assert_eq!(
        versions(&mut c),
        drover_journal_pg::SCHEMA_VERSION + 1,
        "the newer database was changed"
    );
}

#[test]
fn a_version_one_journal_is_migrated_on_first_use_and_runs_on_it() {
    let Some((_, _server)) = pg() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let url = drover_journal_pg::testing::database_for(d);
    // The database as the first PostgreSQL release left it: schema version 1 only.
    let mut c = db(&url);
    c.batch_execute(
        "CREATE TABLE drover_schema (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), by_version TEXT NOT NULL)",
    )
    .expect("schema table");
    c.batch_execute(drover_journal_pg::MIGRATIONS[0].1)
        .expect("version 1");
    c.batch_execute("INSERT INTO drover_schema (version, by_version) VALUES (1, '0.1.0')")
        .expect("version 1 recorded");
    let ledger_path = d.join("ledger");
    std::fs::write(d.join("ha.drover"), runbook(6, &ledger_path, "0", false)).expect("runbook");
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "run",
            "ha.drover",
            "--mode",
            "drill",
            "--as",
            "alice",
            "--run-id",
            "up1",
            "--state",
            &url,
        ])
        .current_dir(d)
        .output()
        .expect("drover run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version: i64 = c
        .query_one("SELECT MAX(version) FROM drover_schema", &[])
        .expect("version")
        .get(0);
    assert_eq!(version, drover_journal_pg::SCHEMA_VERSION);
    assert_eq!(outcome(&url, "up1"), "succeeded");
    assert_eq!(ledger(&ledger_path).len(), 6, "every step ran once");
    audit_verifies(d, &url, "up1");
}

#[test]
fn a_login_on_one_replica_works_on_the_other_and_an_alert_is_delivered_once() {
    let Some((_, _server)) = pg() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let url = drover_journal_pg::testing::database_for(d);
    let (alice, _) = team(
        d,
        "runbook \"Doomed\" {\n  rto   = 1h\n  rpo   = 1h\n  modes = [drill]\n}\n\nstep fails {\n  action = shell\n  with {\n    command = \"exit 3\"\n  }\n}\n\nmilestone done {\n  after     = [fails]\n  stops_rto = true\n}\n",
    );
    // A slow endpoint: each delivery stays in flight while both replicas look again.
    let (hport, hooks) = crate::alerting::slow_receiver(7_000);
    std::fs::write(
        d.join("server.toml"),
        format!(
            "[alerts]\nattempts = 2\nbackoff = \"100ms\"\n\n[[alerts.sink]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{hport}/hook\"\n"
        ),
    )
    .expect("config");
    let a = replica_with(d, &url, "a", free_port(), &["--config", "server.toml"]);
    let b = replica_with(d, &url, "b", free_port(), &["--config", "server.toml"]);
    let http = reqwest::blocking::Client::new();
    let session = |r: &Replica, token: &str| {
        http.get(format!("{}/api/v1/session", r.base()))
            .bearer_auth(token)
            .send()
            .expect("session")
            .status()
            .as_u16()
    };

    // A challenge from A answered to B: one login, good on both.
    let c: serde_json::Value = http
        .post(format!("{}/api/v1/login/challenge", a.base()))
        .send()
        .and_then(reqwest::blocking::Response::json)
        .expect("challenge");
    let challenge = c["challenge"].as_str().expect("text");
    let sig = drover_identity::sign::with_key_file_in(
        drover_identity::LOGIN_NAMESPACE,
        &alice,
        challenge,
    )
    .expect("sign");
    let answer = serde_json::json!({ "challenge": challenge, "signature": sig });
    let login: serde_json::Value = http
        .post(format!("{}/api/v1/login", b.base()))
        .json(&answer)
        .send()
        .and_then(reqwest::blocking::Response::json)
        .expect("login");
    let token = login["token"].as_str().expect("token").to_owned();
    assert_eq!((session(&a, &token), session(&b, &token)), (200, 200));
    // The challenge was answered once, across replicas.
    let again = http
        .post(format!("{}/api/v1/login", a.base()))
        .json(&answer)
        .send()
        .expect("login again");
    assert_eq!(again.status(), 401);
    // A console link made on B opens on A, once.
    let link: serde_json::Value = http
        .post(format!("{}/api/v1/console/link", b.base()))
        .bearer_auth(&token)
        .send()
        .and_then(reqwest::blocking::Response::json)
        .expect("link");
    let path = link["path"].as_str().expect("path").to_owned();
    let no_redirects = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let enter = |r: &Replica| {
        no_redirects
            .get(format!("{}{path}", r.base()))
            .send()
            .expect("enter")
            .status()
            .as_u16()
    };
    assert_eq!(enter(&a), 303);
    assert_eq!(enter(&b), 401, "a console link opens once");

    // A run that fails raises one alert: delivered once, though both replicas look.
    let run = start_run(&b.base(), &token, &alice, "ha.drover");
    for _ in 0..600 {
        if outcome(&url, &run) == "failed" {
            break;
        }
        pause(50);
    }
    assert_eq!(outcome(&url, &run), "failed");
    let triggers = || {
        hooks
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.body["event"] == "trigger" && r.body["run_id"] == run.as_str())
            .count()
    };
    for _ in 0..600 {
        if triggers() > 0 {
            break;
        }
        pause(50);
    }
    assert_eq!(triggers(), 1, "the trigger was not delivered");
    // Both replicas look again (every 5 s) while it is in flight and after: still one.
    pause(15_000);
    assert_eq!(
        triggers(),
        1,
        "delivered by more than one replica: a: {} b: {}",
        a.log_text(),
        b.log_text()
    );

    // Logged out on A: refused on B at once.
    let out = http
        .delete(format!("{}/api/v1/session", a.base()))
        .bearer_auth(&token)
        .send()
        .expect("logout");
    assert_eq!(out.status(), 204);
    assert_eq!(session(&b, &token), 401);
}

//! One cutover at a time, at what cost: creating a run that claims its runbook and 20 production
//! resources — checked against a journal holding 1,000 earlier runs with claims of their own, in
//! the same immediate transaction — next to creating the same run with no claims, measured in the
//! same run on the same disk (every creation is an fsync'd SQLite commit).
//! Run: `cargo bench -p drover-engine --bench claims` (optionally `-- RUNS`).

use drover_engine::journal::{Claims, Journal, RunRow, RunStatus, SqliteJournal};
use drover_engine::scheduler::RunOutcome;

fn row(id: &str) -> RunRow {
    RunRow {
        run_id: id.into(),
        runbook: "EHR failover".into(),
        plan: "{}".into(),
        mode: drover_dsl::Mode::Failover,
        initiator: "bench".into(),
        declared_at: 0,
        created_at: 0,
        status: RunStatus::Running,
        record: None,
        audit_head: drover_engine::audit::GENESIS.into(),
        audit_count: 0,
    }
}

fn claims(n: usize, tag: &str) -> Claims {
    let mut names = vec![format!("runbook:EHR failover {tag}")];
    names.extend((0..n).map(|i| format!("resource:{tag}-res-{i}")));
    Claims {
        names,
        concurrent: None,
    }
}

#[allow(clippy::disallowed_methods, reason = "a benchmark measures wall time")]
fn main() {
    let runs: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(300);
    let dir = tempfile::tempdir_in(".").expect("tmp");
    let mut j = SqliteJournal::open(dir.path()).expect("journal");
    // History: 1,000 finished runs, each having claimed its runbook and 20 resources.
    for i in 0..1_000 {
        let id = format!("old-{i}");
        j.create_run(&row(&id), &claims(20, &format!("old{}", i % 50)))
            .expect("create");
        let lease = j.acquire(&id, "bench", 0, 1_000).expect("lease");
        j.set_status(&lease, RunStatus::Finished(RunOutcome::Succeeded), None)
            .expect("finish");
        j.release(&lease).expect("release");
    }
    let none = Claims::default();
    let t0 = std::time::Instant::now();
    for i in 0..runs {
        j.create_run(&row(&format!("plain-{i}")), &none)
            .expect("create");
    }
    let plain = t0.elapsed().as_secs_f64() / runs as f64;
    let t0 = std::time::Instant::now();
    for i in 0..runs {
        // Each new run's claims are its own, so every check passes (the common case) after
        // looking at the history.
        j.create_run(
            &row(&format!("claiming-{i}")),
            &claims(20, &format!("new{i}")),
        )
        .expect("create");
    }
    let claiming = t0.elapsed().as_secs_f64() / runs as f64;
    println!("create a run, no claims (baseline): {:.2} ms", plain * 1e3);
    println!(
        "create a run claiming its runbook and 20 resources, 1,000 runs of history: {:.2} ms",
        claiming * 1e3
    );
    println!("ratio: {:.2}", claiming / plain);
}

//! Journaled execution throughput: a 10,000-step plan of no-op steps driven through the real
//! driver, scheduler and SQLite journal (WAL, synchronous=FULL: every transition durable before it
//! is acted on), next to the raw SQLite commit rate with the same settings on the same disk,
//! measured in the same run. Prints steps/s, journal commits per step, and the ratio.
//! With `DROVER_BENCH_PG=postgres://…` (a scratch database) the same plan is driven through the
//! PostgreSQL journal too, next to the raw single-row commit rate of that server (autocommitted
//! one-row inserts on the same connection pool), measured in the same run.
//! Run: `cargo bench -p drover-engine --bench journal` (optionally `-- STEPS`).

use drover_engine::clock::{Clock, SystemClock};
use drover_engine::driver::{Adapters, Driver, Observer, RunSpec};
use drover_engine::journal::{Journal, SqliteJournal};
use drover_schema::{
    ActionSchema, Adapter, AdapterError, Effect, Inputs, Outputs, Role, StepContext, ValueType,
};
use std::sync::Arc;

struct Noop;

#[async_trait::async_trait]
impl Adapter for Noop {
    fn schemas(&self) -> Vec<ActionSchema> {
        vec![
            ActionSchema::new("wait", "no-op", Effect::ReadOnly, Role::Plain).required(
                "duration",
                ValueType::Duration,
                "ignored",
            ),
        ]
    }

    async fn execute(&self, _: &str, _: &Inputs, _: &StepContext) -> Result<Outputs, AdapterError> {
        Ok(Outputs::new())
    }
}

struct Quiet;

impl Observer for Quiet {
    fn line(&self, _: &str) {}
}

fn runbook(steps: usize) -> String {
    let mut s = String::from("runbook \"bench\" {\n  rto = 1h\n  rpo = 1h\n  modes = [drill]\n}\n");
    for i in 0..steps {
        let after = if i >= 10 {
            format!("  after = [s{}]\n", i - 10)
        } else {
            String::new()
        };
        s.push_str(&format!(
            "step s{i} {{\n  action = wait\n{after}  with {{\n    duration = 0s\n  }}\n}}\n"
        ));
    }
    s.push_str(&format!(
        "milestone m {{\n  after = [s{}]\n  stops_rto = true\n}}\n",
        steps - 1
    ));
    s
}

#[allow(clippy::disallowed_methods)] // A benchmark measures wall time.
fn main() {
    let steps: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(10_000);
    let catalogue = drover_adapters::builtin_catalogue();
    let opts = drover_dsl::CompileOptions {
        catalogue: &catalogue,
        vars: Vec::new(),
        operators: None,
    };
    let plan = drover_dsl::compile_str("bench.drover", &runbook(steps), &opts)
        .plan
        .expect("plan");
    let dir = tempfile::tempdir_in(".").expect("tmp");

    // Baseline: raw SQLite commits, same pragmas, same disk.
    let raw_n = 2_000;
    let conn = rusqlite::Connection::open(dir.path().join("raw.db")).expect("db");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .expect("table");
    let t0 = std::time::Instant::now();
    for i in 0..raw_n {
        conn.execute(
            "INSERT INTO t (v) VALUES (?1)",
            [format!("{{\"event\":\"step_succeeded\",\"i\":{i}}}")],
        )
        .expect("insert");
    }
    let raw_rate = raw_n as f64 / t0.elapsed().as_secs_f64();

    let state = dir.path().join("state");
    let sqlite = || -> Box<dyn Journal> { Box::new(SqliteJournal::open(&state).expect("journal")) };
    let (took, commits, outcome) = drive(&plan, sqlite(), &state, sqlite);
    let commits_per_step = commits as f64 / steps as f64;
    let steps_per_s = steps as f64 / took;
    println!("outcome {outcome}");
    println!("raw SQLite commits (WAL, synchronous=FULL): {raw_rate:.0}/s");
    println!(
        "drover: {steps} steps in {took:.2} s = {steps_per_s:.0} steps/s, {commits} journal commits = {commits_per_step:.2} commits/step"
    );
    println!(
        "journal commit rate {:.0}/s = {:.2} of the raw commit rate",
        steps_per_s * commits_per_step,
        steps_per_s * commits_per_step / raw_rate
    );
    if let Ok(url) = std::env::var("DROVER_BENCH_PG") {
        let j = drover_journal_pg::PostgresJournal::open(&url).expect("postgres journal");
        let raw_n = 2_000u64;
        let t0 = std::time::Instant::now();
        j.raw_commit(raw_n).expect("raw commits");
        let raw_rate = raw_n as f64 / t0.elapsed().as_secs_f64();
        let pg = || -> Box<dyn Journal> {
            Box::new(drover_journal_pg::PostgresJournal::open(&url).expect("journal"))
        };
        let (took, commits, outcome) = drive(&plan, Box::new(j), &state, pg);
        let steps_per_s = steps as f64 / took;
        let commits_per_step = commits as f64 / steps as f64;
        println!("outcome on PostgreSQL {outcome}");
        println!("raw PostgreSQL single-row commits (autocommit): {raw_rate:.0}/s");
        println!(
            "drover on PostgreSQL: {steps} steps in {took:.2} s = {steps_per_s:.0} steps/s, {commits_per_step:.2} commits/step"
        );
        println!(
            "PostgreSQL journal commit rate {:.0}/s = {:.2} of the raw commit rate",
            steps_per_s * commits_per_step,
            steps_per_s * commits_per_step / raw_rate
        );
    }
}

/// Drives `plan` through `journal` under a fresh run id; returns (seconds, journal commits,
/// outcome), the commits counted by `reopen` (a second handle on the same journal).
#[allow(clippy::disallowed_methods)] // A benchmark measures wall time.
fn drive(
    plan: &drover_dsl::Plan,
    journal: Box<dyn Journal>,
    state: &std::path::Path,
    reopen: impl Fn() -> Box<dyn Journal>,
) -> (f64, usize, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let run_id = format!("bench-{}", clock.now_ms());
    let spec = RunSpec {
        run_id: run_id.clone(),
        mode: drover_dsl::Mode::Drill,
        initiator: "bench".into(),
        state_dir: state.to_path_buf(),
        declared_at: clock.now_ms(),
        sources: Vec::new(),
        concurrent: Some("benchmark".into()),
        preflight_skipped: false,
        start: None,
        anchor: None,
    };
    let t0 = std::time::Instant::now();
    let record = rt
        .block_on(async {
            let d = Driver::start(
                spec,
                Arc::new(plan.clone()),
                journal,
                clock,
                Adapters::default().with(Arc::new(Noop)),
                Arc::new(Quiet),
            )?;
            d.drive(true).await
        })
        .expect("run");
    let took = t0.elapsed().as_secs_f64();
    let commits = reopen().events(&run_id).expect("events").len();
    (took, commits, format!("{:?}", record.outcome))
}

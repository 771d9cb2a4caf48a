//! Journaled execution throughput: a 10,000-step plan of no-op steps driven through the real
//! driver, scheduler and SQLite journal (WAL, synchronous=FULL: every transition durable before it
//! is acted on), next to the raw SQLite commit rate with the same settings on the same disk,
//! measured in the same run. Prints steps/s, journal commits per step, and the ratio.
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

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let state = dir.path().join("state");
    let journal = SqliteJournal::open(&state).expect("journal");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let spec = RunSpec {
        run_id: "bench".into(),
        mode: drover_dsl::Mode::Drill,
        initiator: "bench".into(),
        state_dir: state.clone(),
        declared_at: clock.now_ms(),
        sources: Vec::new(),
        concurrent: None,
        preflight_skipped: false,
        start: None,
        anchor: None,
    };
    let t0 = std::time::Instant::now();
    let record = rt
        .block_on(async {
            let d = Driver::start(
                spec,
                Arc::new(plan),
                Box::new(journal),
                clock,
                Adapters::default().with(Arc::new(Noop)),
                Arc::new(Quiet),
            )?;
            d.drive(true).await
        })
        .expect("run");
    let took = t0.elapsed().as_secs_f64();
    let commits = SqliteJournal::open(&state)
        .expect("journal")
        .events("bench")
        .expect("events")
        .len();
    let steps_per_s = steps as f64 / took;
    let commits_per_step = commits as f64 / steps as f64;
    println!("outcome {:?}", record.outcome);
    println!("raw SQLite commits (WAL, synchronous=FULL): {raw_rate:.0}/s");
    println!(
        "drover: {steps} steps in {took:.2} s = {steps_per_s:.0} steps/s, {commits} journal commits = {commits_per_step:.2} commits/step"
    );
    println!(
        "journal commit rate {:.0}/s = {:.2} of the raw commit rate",
        steps_per_s * commits_per_step,
        steps_per_s * commits_per_step / raw_rate
    );
}

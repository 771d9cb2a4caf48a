//! Journaled execution throughput: no-op steps driven through the real driver, scheduler and
//! journal — SQLite (WAL, synchronous=FULL: every transition durable before it is acted on) and,
//! with `DROVER_BENCH_PG=postgres://…` (a scratch database), PostgreSQL — each next to the raw
//! single-row commit rate of the same store measured in the same run (SQLite: same pragmas, same
//! disk; PostgreSQL: one prepared autocommitted insert per commit on the same connection pool).
//! Two plans each: 10,000 steps ten wide (steps that finish together are journaled in one group
//! commit), and a serial chain of 2,000 steps (one commit per transition: the floor).
//! Prints steps/s, journal transitions per step, and steps/s as a multiple of raw commits/s.
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

/// `steps` no-op steps, `width` wide: step i waits for step i - width.
fn runbook(steps: usize, width: usize) -> String {
    let mut s = String::from("runbook \"bench\" {\n  rto = 1h\n  rpo = 1h\n  modes = [drill]\n}\n");
    for i in 0..steps {
        let after = if i >= width {
            format!("  after = [s{}]\n", i - width)
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

/// The two plans: (name, steps, plan).
fn plans(steps: usize) -> Vec<(String, usize, drover_dsl::Plan)> {
    let catalogue = drover_adapters::builtin_catalogue();
    let opts = drover_dsl::CompileOptions {
        catalogue: &catalogue,
        vars: Vec::new(),
        operators: None,
    };
    let chain = (steps / 5).max(1);
    [
        (format!("{steps} steps, ten wide"), steps, 10),
        (format!("{chain} steps, a serial chain"), chain, 1),
    ]
    .into_iter()
    .map(|(name, n, width)| {
        let plan = drover_dsl::compile_str("bench.drover", &runbook(n, width), &opts)
            .plan
            .expect("plan");
        (name, n, plan)
    })
    .collect()
}

/// Drives each plan through a journal from `open` and prints it against `raw_rate`.
fn measure(
    store: &str,
    raw_rate: f64,
    steps: usize,
    state: &std::path::Path,
    open: impl Fn() -> Box<dyn Journal>,
) {
    println!("raw {store} single-row commits: {raw_rate:.0}/s");
    for (name, n, plan) in plans(steps) {
        let (took, transitions, outcome) = drive(&plan, open(), state, &open);
        let steps_per_s = n as f64 / took;
        println!(
            "drover on {store}, {name}: {took:.2} s = {steps_per_s:.0} steps/s ({outcome}), {:.2} transitions/step; {:.2}x the raw commit rate",
            transitions as f64 / n as f64,
            steps_per_s / raw_rate
        );
    }
}

#[allow(clippy::disallowed_methods)] // A benchmark measures wall time.
fn main() {
    let steps: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(10_000);
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
    measure(
        "SQLite (WAL, synchronous=FULL)",
        raw_rate,
        steps,
        &state,
        || Box::new(SqliteJournal::open(&state).expect("journal")),
    );

    if let Ok(url) = std::env::var("DROVER_BENCH_PG") {
        let j = drover_journal_pg::PostgresJournal::open(&url).expect("postgres journal");
        let raw_n = 2_000u64;
        let t0 = std::time::Instant::now();
        j.raw_commit(raw_n).expect("raw commits");
        let raw_rate = raw_n as f64 / t0.elapsed().as_secs_f64();
        measure("PostgreSQL", raw_rate, steps, &state, || {
            Box::new(drover_journal_pg::PostgresJournal::open(&url).expect("journal"))
        });
    }
}

/// Drives `plan` through `journal` under a fresh run id; returns (seconds, transitions journaled,
/// outcome), the transitions counted by `reopen` (a second handle on the same journal).
#[allow(clippy::disallowed_methods)] // A benchmark measures wall time.
fn drive(
    plan: &drover_dsl::Plan,
    journal: Box<dyn Journal>,
    state: &std::path::Path,
    reopen: &impl Fn() -> Box<dyn Journal>,
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

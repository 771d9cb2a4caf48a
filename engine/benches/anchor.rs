//! What anchoring the audit chain costs, against baselines measured in the same run:
//!
//! 1. a journaled run of no-op steps with `--audit-anchor file:DIR` (a signed checkpoint, appended
//!    and fsynced, every 20 audit records) against the same run without an anchor;
//! 2. `audit verify --anchor` (the chain recomputed and held against every checkpoint, each
//!    signature checked) against the plain chain verification;
//! 3. one audited backup operation record with a checkpoint against one without.
//!
//! Run: `cargo bench -p drover-engine --bench anchor` (optionally `-- STEPS`).

use drover_engine::anchor::{Anchor, Checkpoint};
use drover_engine::audit::AuditRecord;
use drover_engine::clock::{Clock, SystemClock};
use drover_engine::driver::{Adapters, Driver, Observer, RunSpec};
use drover_engine::journal::{Journal, SqliteJournal};
use drover_engine::oplog::{self, Anchoring, BACKUPS_LOG, Operation};
use drover_schema::{
    ActionSchema, Adapter, AdapterError, Effect, Inputs, Outputs, Role, StepContext, ValueType,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

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
        s.push_str(&format!(
            "step s{i} {{\n  action = wait\n  with {{\n    duration = 0s\n  }}\n}}\n"
        ));
    }
    s.push_str("milestone m {\n  after = [s0]\n  stops_rto = true\n}\n");
    s
}

/// Runs the plan once in a fresh state directory; seconds taken.
#[allow(clippy::disallowed_methods)] // A benchmark measures wall time.
fn drive(plan: &drover_dsl::Plan, state: &Path, anchor: Option<Anchor>) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let journal = SqliteJournal::open(state).expect("journal");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let spec = RunSpec {
        run_id: "bench".into(),
        mode: drover_dsl::Mode::Drill,
        initiator: "bench".into(),
        state_dir: state.to_path_buf(),
        declared_at: clock.now_ms(),
        sources: Vec::new(),
        concurrent: None,
        preflight_skipped: false,
        start: None,
        anchor,
    };
    let t0 = Instant::now();
    rt.block_on(async {
        let d = Driver::start(
            spec,
            Arc::new(plan.clone()),
            Box::new(journal),
            clock,
            Adapters::default().with(Arc::new(Noop)),
            Arc::new(Quiet),
        )?;
        d.drive(true).await
    })
    .expect("run");
    t0.elapsed().as_secs_f64()
}

fn record(i: u64) -> AuditRecord {
    AuditRecord {
        seq: 0,
        ts: format!("2026-12-03T03:{:02}:{:02}Z", i / 60 % 60, i % 60),
        run_id: "r".into(),
        operator: "alice".into(),
        step: Some(format!("s{i}")),
        action: "backup.rehydrate".into(),
        backup_id: Some(format!("{i:032x}")),
        key_id: Some("file:sha256:abcd".into()),
        outcome: "ok".into(),
        error: None,
        prev: String::new(),
        signed: None,
    }
}

#[allow(clippy::disallowed_methods)] // A benchmark measures wall time.
fn main() {
    let steps: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(2_000);
    let dir = tempfile::tempdir_in(".").expect("tmp");

    // 1. A run with and without an anchor.
    let catalogue = drover_adapters::builtin_catalogue();
    let opts = drover_dsl::CompileOptions {
        catalogue: &catalogue,
        vars: Vec::new(),
        operators: None,
    };
    let plan = drover_dsl::compile_str("bench.drover", &runbook(steps), &opts)
        .plan
        .expect("plan");
    let plain = drive(&plan, &dir.path().join("plain"), None);
    let anchor = Anchor::Dir(dir.path().join("anchor"));
    let anchored = drive(&plan, &dir.path().join("anchored"), Some(anchor.clone()));
    let checkpoints = anchor.read("bench").expect("checkpoints").len();
    println!(
        "run of {steps} no-op steps: {plain:.2} s without an anchor, {anchored:.2} s with file: ({checkpoints} checkpoints) = {:.2}x",
        anchored / plain
    );

    // 2. Verifying 10,000 records against their checkpoints (one every 20).
    let n = 10_000u64;
    let mut j = SqliteJournal::open(&dir.path().join("verify")).expect("journal");
    let records: Vec<AuditRecord> = (0..n).map(record).collect();
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let mut cps = Vec::new();
    for chunk in records.chunks(20) {
        let (head, count) = j.append_log("r", chunk).expect("append");
        cps.push(Checkpoint::sign(
            "r",
            count,
            &head,
            "2026-12-03T03:00:00Z".into(),
            &key,
        ));
    }
    let rows = j.audit("r").expect("rows");
    let (head, count) = j.log_head("r").expect("head");
    let reps = 5;
    let t0 = Instant::now();
    for _ in 0..reps {
        drover_engine::audit::verify("r", &rows, &head, count).expect("chain");
    }
    let chain = t0.elapsed().as_secs_f64() / f64::from(reps);
    let t0 = Instant::now();
    for _ in 0..reps {
        drover_engine::audit::verify("r", &rows, &head, count).expect("chain");
        drover_engine::anchor::check("r", &rows, &cps).expect("anchored");
    }
    let both = t0.elapsed().as_secs_f64() / f64::from(reps);
    println!(
        "verify {n} records: chain {:.1} ms, chain + {} checkpoints {:.1} ms = {:.2}x",
        chain * 1e3,
        cps.len(),
        both * 1e3,
        both / chain
    );

    // 3. One backup-operation record, with and without a checkpoint.
    let ops = 200u64;
    let op = Operation {
        action: "backup.verify",
        operator: "alice",
        subject: Some("s3://backups/ehr.dbk"),
        backup_id: Some("0123456789abcdef0123456789abcdef"),
        key_id: Some("file:sha256:abcd"),
        outcome: "verified",
        detail: Some("plaintext SHA-256 fully verified"),
        signed: None,
    };
    let mut j = SqliteJournal::open(&dir.path().join("ops")).expect("journal");
    let t0 = Instant::now();
    for i in 0..ops {
        oplog::record(&mut j, "@plain", &op, i, None).expect("record");
    }
    let bare = t0.elapsed().as_secs_f64() / ops as f64;
    let anchoring = Anchoring {
        anchor: Anchor::Dir(dir.path().join("ops-anchor")),
        key,
    };
    let t0 = Instant::now();
    for i in 0..ops {
        oplog::record(&mut j, BACKUPS_LOG, &op, i, Some(&anchoring)).expect("record");
    }
    let with = t0.elapsed().as_secs_f64() / ops as f64;
    println!(
        "one backup-operation record: {:.2} ms, with a checkpoint {:.2} ms = {:.2}x",
        bare * 1e3,
        with * 1e3,
        with / bare
    );
}

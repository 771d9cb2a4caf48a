//! The live driver on a manual clock: retries with backoff, an approval gate and a polling step's
//! default timeout play out in virtual hours with no real sleeping.

use drover_engine::clock::{Clock, ManualClock};
use drover_engine::driver::{Adapters, Driver, Observer, RunSpec};
use drover_engine::journal::{Journal, JournalError, RunStatus};
use drover_engine::scheduler::RunOutcome;
use drover_schema::{Adapter, AdapterError, Inputs, Outputs, StepContext};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// An action that fails transiently until its third attempt.
#[derive(Debug, Default)]
struct Flaky(AtomicU32);

#[async_trait::async_trait]
impl Adapter for Flaky {
    fn schemas(&self) -> Vec<drover_schema::ActionSchema> {
        vec![drover_schema::ActionSchema::new(
            "test.flaky",
            "fails twice",
            drover_schema::Effect::ReadOnly,
            drover_schema::Role::Plain,
        )]
    }

    async fn execute(
        &self,
        _action: &str,
        _inputs: &Inputs,
        _ctx: &StepContext,
    ) -> Result<Outputs, AdapterError> {
        if self.0.fetch_add(1, Ordering::SeqCst) < 2 {
            Err(AdapterError::transient("the service is busy"))
        } else {
            Ok(Outputs::new())
        }
    }
}

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Observer for Lines {
    fn line(&self, text: &str) {
        self.0.lock().expect("lines").push(text.to_owned());
    }
}

const HEAD: &str = r#"runbook "Manual clock" {
  owner = "me@example.org"
  rto   = 4h
  rpo   = 1h
  modes = [drill]
}
"#;

fn compile(body: &str, flaky: &Arc<Flaky>) -> drover_dsl::Plan {
    compile_with(body, &**flaky)
}

/// `body` compiled against the built-in catalogue plus `extra`'s actions.
fn compile_with(body: &str, extra: &dyn Adapter) -> drover_dsl::Plan {
    let mut actions: Vec<drover_schema::ActionSchema> =
        drover_adapters::builtin_catalogue().actions().to_vec();
    actions.extend(extra.schemas());
    let catalogue = drover_schema::StaticCatalogue::new(actions);
    let opts = drover_dsl::CompileOptions {
        catalogue: &catalogue,
        vars: Vec::new(),
        operators: None,
    };
    let c = drover_dsl::compile_str("t.drover", &format!("{HEAD}{body}"), &opts);
    c.plan.unwrap_or_else(|| panic!("{:?}", c.diagnostics))
}

/// Run `r1` of `plan`, started by alice on `clock`, journaled in `dir` by `journal`.
fn start(
    plan: drover_dsl::Plan,
    dir: &std::path::Path,
    journal: Box<dyn Journal>,
    clock: &ManualClock,
    adapters: Adapters,
    observer: Arc<dyn Observer>,
) -> Driver {
    let spec = RunSpec {
        run_id: "r1".into(),
        mode: drover_dsl::Mode::Drill,
        initiator: "alice".into(),
        state_dir: dir.to_path_buf(),
        declared_at: clock.now_ms(),
        sources: Vec::new(),
        concurrent: None,
        preflight_skipped: false,
        start: None,
        anchor: None,
    };
    Driver::start(
        spec,
        Arc::new(plan),
        journal,
        Arc::new(clock.clone()),
        adapters,
        observer,
    )
    .expect("starts")
}

/// Drives `plan` on `clock`, moving it ten seconds at a time once at least `sleepers` tasks wait
/// on it (the driver, and any polling step), and calls `each_tick` after each move. Bounded:
/// fails the test instead of hanging.
async fn drive(
    plan: drover_dsl::Plan,
    flaky: Arc<Flaky>,
    dir: &std::path::Path,
    clock: &ManualClock,
    sleepers: u64,
    mut each_tick: impl FnMut(),
) -> (drover_engine::run_record::RunRecord, Vec<String>) {
    let lines = Arc::new(Lines::default());
    let adapters = Adapters::default()
        .with(Arc::new(drover_adapters::local::LocalAdapter::new(
            Arc::new(|_: &str| {}),
        )))
        .with(flaky);
    let journal = crate::backend::journal(dir);
    let d = start(
        plan,
        dir,
        journal,
        clock,
        adapters,
        Arc::clone(&lines) as Arc<dyn Observer>,
    );
    let task = tokio::spawn(d.drive(true));
    let mut ticks = 0;
    // Real time only bounds the test (it must end, even on a loaded machine); it is never
    // asserted on.
    #[allow(clippy::disallowed_methods)]
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(300);
    #[allow(clippy::disallowed_methods)]
    while !task.is_finished() && ticks <= 24 * 60 * 6 && std::time::Instant::now() < give_up {
        // Move the clock only when everything that waits on it is waiting.
        if clock.sleepers() >= sleepers {
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
            clock.advance(10_000);
            ticks += 1;
            each_tick();
        } else {
            // The driver is busy (a journal commit, a step): let it work.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    if !task.is_finished() {
        task.abort();
        let so_far = lines.0.lock().expect("lines").clone();
        panic!("the run did not finish within its bound: {so_far:#?}");
    }
    let record = task.await.expect("joins").expect("drives");
    let lines = lines.0.lock().expect("lines").clone();
    (record, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_approval_gated_run_plays_out_on_a_manual_clock() {
    let dir = tempfile::tempdir().expect("tmp");
    let flaky = Arc::new(Flaky::default());
    let plan = compile(
        r#"
step busy {
  action = test.flaky
  retry {
    attempts = 3
    backoff  = 10m
  }
}

step go {
  action = approval
  after  = [busy]
  with {
    prompt = "go?"
  }
}

step cool_down {
  action = wait
  after  = [go]
  with {
    duration = 30m
  }
}

milestone done {
  after     = [cool_down]
  stops_rto = true
}
"#,
        &flaky,
    );
    let clock = ManualClock::new(1_000_000_000);
    let start = clock.now_ms();
    let state = dir.path().to_path_buf();
    let mut approved = false;
    let mut waited = 0u32;
    // Another journal handle, as `drover approve` has.
    let mut other = crate::backend::journal(&state);
    let (record, lines) = drive(plan, Arc::clone(&flaky), dir.path(), &clock, 1, || {
        // Bob approves after the run has waited for him for an hour (360 ticks of 10 s).
        if approved {
            return;
        }
        if other
            .run("r1")
            .is_ok_and(|r| r.status == RunStatus::Waiting)
        {
            waited += 1;
        }
        if waited == 360 {
            let bob = drover_engine::signed::Approver::Typed {
                operator: "bob".into(),
                roles: Vec::new(),
            };
            let r = drover_engine::driver::approve(
                &mut *other,
                "r1",
                "go",
                &bob,
                drover_engine::driver::Verdict::Approve,
                0,
            )
            .expect("journal");
            assert_eq!(r, Ok("bob".to_owned()));
            approved = true;
        }
    })
    .await;
    assert_eq!(record.outcome, Some(RunOutcome::Succeeded), "{lines:#?}");
    assert_eq!(flaky.0.load(Ordering::SeqCst), 3, "two retries");
    let rto = record.rto.achieved_ms.expect("measured");
    // Virtual time: two 10-minute backoffs (with jitter), the hour waiting for Bob, the wait.
    assert!(rto >= 90 * 60_000, "{rto}");
    assert!(clock.now_ms() - start >= rto);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("retry   busy (attempt 2 of 3) in")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("WAITING go") && l.contains("someone other than alice")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_step_without_a_timeout_ends_at_its_default_and_says_so() {
    let dir = tempfile::tempdir().expect("tmp");
    let flaky = Arc::new(Flaky::default());
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let plan = compile(
        &format!(
            r#"
step healthy {{
  action = http.check
  with {{
    url      = "http://127.0.0.1:{port}/health"
    interval = 1m
  }}
}}

milestone done {{
  after     = [healthy]
  stops_rto = true
}}
"#
        ),
        &flaky,
    );
    let step = plan
        .graph
        .node_weights()
        .find_map(|n| n.as_step())
        .expect("a step");
    assert_eq!(
        step.timeout_ms,
        Some(drover_adapters::HTTP_CHECK_TIMEOUT_MS)
    );
    assert!(step.timeout_is_default);
    let clock = ManualClock::new(5_000_000);
    let (record, lines) = drive(plan, flaky, dir.path(), &clock, 2, || {}).await;
    assert_eq!(record.outcome, Some(RunOutcome::Failed), "{lines:#?}");
    let error = record
        .steps
        .iter()
        .find(|s| s.id == "healthy")
        .and_then(|s| s.error.clone())
        .expect("an error");
    assert!(
        error.contains("5m (the default timeout of http.check"),
        "{error}"
    );
    // What it waited for, and why, was journaled for `drover status`.
    let j = crate::backend::journal_read(dir.path());
    let progress = j.progress("r1").expect("progress");
    assert_eq!(progress.len(), 1);
    assert!(progress[0].text.starts_with("attempt "), "{progress:?}");
    assert!(progress[0].text.contains("cannot connect"), "{progress:?}");
}

/// `.ci/test` runs this in a build without the `crash-hooks` feature, with both crash variables
/// set: were the hooks compiled in, the process would abort after its first journal commit.
#[cfg(not(feature = "crash-hooks"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_crash_hooks_feature_the_crash_variables_are_ignored() {
    let dir = tempfile::tempdir().expect("tmp");
    let flaky = Arc::new(Flaky::default());
    let plan = compile(
        r#"
step busy {
  action = test.flaky
  retry {
    attempts = 3
    backoff  = 1s
  }
}

milestone done {
  after     = [busy]
  stops_rto = true
}
"#,
        &flaky,
    );
    let clock = ManualClock::new(1_000);
    let (record, lines) = drive(plan, flaky, dir.path(), &clock, 1, || {}).await;
    assert_eq!(record.outcome, Some(RunOutcome::Succeeded), "{lines:#?}");
}

/// Steps for the stall test: `test.quick` returns at once; `test.release` waits until a journal
/// commit is blocked on the "disk", then lets it go.
struct Gate {
    armed: Arc<tokio::sync::Notify>,
    release: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

#[async_trait::async_trait]
impl Adapter for Gate {
    fn schemas(&self) -> Vec<drover_schema::ActionSchema> {
        ["test.quick", "test.release"]
            .into_iter()
            .map(|name| {
                drover_schema::ActionSchema::new(
                    name,
                    "stall test",
                    drover_schema::Effect::ReadOnly,
                    drover_schema::Role::Plain,
                )
            })
            .collect()
    }

    async fn execute(
        &self,
        action: &str,
        _inputs: &Inputs,
        _ctx: &StepContext,
    ) -> Result<Outputs, AdapterError> {
        if action == "test.release" {
            self.armed.notified().await;
            if let Some(tx) = self.release.lock().expect("release").take() {
                let _ = tx.send(());
            }
        }
        Ok(Outputs::new())
    }
}

/// A journal whose commit of `first`'s success blocks, as a commit waiting on a slow disk does,
/// until the `release` step lets it go (or 20 s pass: then the runtime stalled).
struct SlowDisk {
    inner: Box<dyn Journal>,
    armed: Arc<tokio::sync::Notify>,
    release: std::sync::mpsc::Receiver<()>,
    stalled: Arc<std::sync::atomic::AtomicBool>,
}

impl Journal for SlowDisk {
    fn redactor(&self) -> &drover_engine::redactor::Redactor {
        self.inner.redactor()
    }
    fn set_progress(
        &mut self,
        lease: &drover_engine::journal::Lease,
        step: &str,
        text: &str,
        at: u64,
    ) -> Result<(), drover_engine::journal::JournalError> {
        self.inner.set_progress(lease, step, text, at)
    }
    fn progress(
        &self,
        run_id: &str,
    ) -> Result<Vec<drover_engine::journal::ProgressRow>, drover_engine::journal::JournalError>
    {
        self.inner.progress(run_id)
    }
    fn runs(
        &self,
    ) -> Result<Vec<drover_engine::journal::RunRow>, drover_engine::journal::JournalError> {
        self.inner.runs()
    }
    fn driven_by(
        &self,
        run_id: &str,
        now: u64,
    ) -> Result<Option<String>, drover_engine::journal::JournalError> {
        self.inner.driven_by(run_id, now)
    }
    fn append_audit(
        &mut self,
        run_id: &str,
        audit: &[drover_engine::audit::AuditRecord],
    ) -> Result<(), drover_engine::journal::JournalError> {
        self.inner.append_audit(run_id, audit)
    }
    fn create_run(
        &mut self,
        run: &drover_engine::journal::RunRow,
        claims: &drover_engine::journal::Claims,
    ) -> Result<(), drover_engine::journal::JournalError> {
        self.inner.create_run(run, claims)
    }
    fn run(
        &self,
        run_id: &str,
    ) -> Result<drover_engine::journal::RunRow, drover_engine::journal::JournalError> {
        self.inner.run(run_id)
    }
    fn latest_run(&self) -> Result<Option<String>, drover_engine::journal::JournalError> {
        self.inner.latest_run()
    }
    fn acquire(
        &mut self,
        run_id: &str,
        holder: &str,
        now: u64,
        ttl_ms: u64,
    ) -> Result<drover_engine::journal::Lease, drover_engine::journal::JournalError> {
        self.inner.acquire(run_id, holder, now, ttl_ms)
    }
    fn release(
        &mut self,
        lease: &drover_engine::journal::Lease,
    ) -> Result<(), drover_engine::journal::JournalError> {
        self.inner.release(lease)
    }
    fn append_all(
        &mut self,
        lease: &drover_engine::journal::Lease,
        at: u64,
        ttl_ms: u64,
        entries: &[drover_engine::journal::Entry<'_>],
    ) -> Result<(), drover_engine::journal::JournalError> {
        if entries.iter().any(|e| matches!(e.event, drover_engine::scheduler::Event::StepSucceeded { step, .. } if step == "first"))
        {
            self.armed.notify_one();
            if self
                .release
                .recv_timeout(std::time::Duration::from_secs(20))
                .is_err()
            {
                self.stalled.store(true, Ordering::SeqCst);
            }
        }
        self.inner.append_all(lease, at, ttl_ms, entries)
    }
    fn renew(
        &mut self,
        lease: &drover_engine::journal::Lease,
        now: u64,
        ttl_ms: u64,
    ) -> Result<(), drover_engine::journal::JournalError> {
        self.inner.renew(lease, now, ttl_ms)
    }
    fn set_status(
        &mut self,
        lease: &drover_engine::journal::Lease,
        status: RunStatus,
        record: Option<&str>,
    ) -> Result<(), drover_engine::journal::JournalError> {
        self.inner.set_status(lease, status, record)
    }
    fn events(
        &self,
        run_id: &str,
    ) -> Result<Vec<(u64, drover_engine::scheduler::Event)>, drover_engine::journal::JournalError>
    {
        self.inner.events(run_id)
    }
    fn transitions(
        &self,
        run_id: &str,
    ) -> Result<Vec<drover_engine::journal::Transition>, drover_engine::journal::JournalError> {
        self.inner.transitions(run_id)
    }
    fn store_sources(
        &mut self,
        run_id: &str,
        files: &[drover_engine::journal::SourceText],
    ) -> Result<(), drover_engine::journal::JournalError> {
        self.inner.store_sources(run_id, files)
    }
    fn sources(
        &self,
        run_id: &str,
    ) -> Result<Vec<drover_engine::journal::SourceText>, drover_engine::journal::JournalError> {
        self.inner.sources(run_id)
    }
    fn runs_of(
        &self,
        runbook: &str,
    ) -> Result<Vec<drover_engine::journal::RunRow>, drover_engine::journal::JournalError> {
        self.inner.runs_of(runbook)
    }
    fn record_simulation(
        &mut self,
        sim: &drover_engine::journal::SimulationRow,
    ) -> Result<(), drover_engine::journal::JournalError> {
        self.inner.record_simulation(sim)
    }
    fn latest_simulation(
        &self,
        runbook: &str,
        source_sha256: &str,
        mode: &str,
    ) -> Result<Option<drover_engine::journal::SimulationRow>, drover_engine::journal::JournalError>
    {
        self.inner.latest_simulation(runbook, source_sha256, mode)
    }
    fn add_approval(
        &mut self,
        run_id: &str,
        a: &drover_engine::journal::NewApproval<'_>,
    ) -> Result<i64, drover_engine::journal::JournalError> {
        self.inner.add_approval(run_id, a)
    }
    fn add_start_statement(
        &mut self,
        run_id: &str,
        signed: &drover_engine::signed::SignedStatement,
        at: u64,
    ) -> Result<(), drover_engine::journal::JournalError> {
        self.inner.add_start_statement(run_id, signed, at)
    }
    fn set_anchor(
        &mut self,
        run_id: &str,
        location: &str,
    ) -> Result<(), drover_engine::journal::JournalError> {
        self.inner.set_anchor(run_id, location)
    }
    fn anchor(&self, run_id: &str) -> Result<Option<String>, drover_engine::journal::JournalError> {
        self.inner.anchor(run_id)
    }
    fn claim_totp(
        &mut self,
        operator: &str,
        counter: u64,
        at: u64,
    ) -> Result<bool, drover_engine::journal::JournalError> {
        self.inner.claim_totp(operator, counter, at)
    }
    fn signed_statements(
        &self,
        run_id: &str,
    ) -> Result<Vec<drover_engine::journal::StatementRow>, drover_engine::journal::JournalError>
    {
        self.inner.signed_statements(run_id)
    }
    fn start_statement(
        &self,
        run_id: &str,
    ) -> Result<Option<drover_engine::signed::SignedStatement>, drover_engine::journal::JournalError>
    {
        self.inner.start_statement(run_id)
    }
    fn approvals_after(
        &self,
        run_id: &str,
        after: i64,
    ) -> Result<Vec<drover_engine::journal::ApprovalRow>, drover_engine::journal::JournalError>
    {
        self.inner.approvals_after(run_id, after)
    }
    fn audit(
        &self,
        run_id: &str,
    ) -> Result<Vec<(u64, String, String)>, drover_engine::journal::JournalError> {
        self.inner.audit(run_id)
    }
    fn append_log(
        &mut self,
        log: &str,
        audit: &[drover_engine::audit::AuditRecord],
    ) -> Result<(String, u64), drover_engine::journal::JournalError> {
        self.inner.append_log(log, audit)
    }
    fn log_head(&self, log: &str) -> Result<(String, u64), drover_engine::journal::JournalError> {
        self.inner.log_head(log)
    }
    fn audit_head(
        &self,
        run_id: &str,
    ) -> Result<(String, u64), drover_engine::journal::JournalError> {
        self.inner.audit_head(run_id)
    }
    fn alerts(&self) -> Result<Vec<drover_engine::journal::AlertRow>, JournalError> {
        self.inner.alerts()
    }
    fn alert_sinks(&self) -> Result<Vec<drover_engine::journal::AlertSinkRow>, JournalError> {
        self.inner.alert_sinks()
    }
    fn set_alert(
        &mut self,
        key: &str,
        kind: &str,
        state: &str,
        alert_json: &str,
        at: u64,
        audit: &drover_engine::audit::AuditRecord,
    ) -> Result<bool, JournalError> {
        self.inner
            .set_alert(key, kind, state, alert_json, at, audit)
    }
    fn record_delivery(
        &mut self,
        key: &str,
        sink: &str,
        action: &str,
        outcome: Result<&str, &str>,
        give_up: bool,
        at: u64,
        audit: &drover_engine::audit::AuditRecord,
    ) -> Result<(), JournalError> {
        self.inner
            .record_delivery(key, sink, action, outcome, give_up, at, audit)
    }
    fn record_fire(
        &mut self,
        fire: &drover_engine::journal::FireRow,
        audit: &drover_engine::audit::AuditRecord,
    ) -> Result<bool, JournalError> {
        self.inner.record_fire(fire, audit)
    }
    fn update_fire(
        &mut self,
        key: (&str, &str, i64, &str),
        from: &[&str],
        state: &str,
        detail: Option<&str>,
        at: u64,
        audit: &drover_engine::audit::AuditRecord,
    ) -> Result<bool, JournalError> {
        self.inner.update_fire(key, from, state, detail, at, audit)
    }
    fn fires(&self) -> Result<Vec<drover_engine::journal::FireRow>, JournalError> {
        self.inner.fires()
    }
    fn transitions_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String, drover_engine::journal::Transition)>, JournalError> {
        self.inner.transitions_after(after, limit)
    }
    fn last_transition(&self) -> Result<u64, JournalError> {
        self.inner.last_transition()
    }
    fn transitions_from(
        &self,
        run_id: &str,
        skip: usize,
    ) -> Result<Vec<drover_engine::journal::Transition>, JournalError> {
        self.inner.transitions_from(run_id, skip)
    }
    fn live_leases(&self) -> Result<Vec<drover_engine::journal::LiveLease>, JournalError> {
        self.inner.live_leases()
    }
    fn put_grant(
        &mut self,
        kind: &str,
        key: &str,
        grant: &drover_engine::journal::Grant,
        now: u64,
    ) -> Result<bool, JournalError> {
        self.inner.put_grant(kind, key, grant, now)
    }
    fn grant(
        &self,
        kind: &str,
        key: &str,
        now: u64,
    ) -> Result<Option<drover_engine::journal::Grant>, JournalError> {
        self.inner.grant(kind, key, now)
    }
    fn take_grant(
        &mut self,
        kind: &str,
        key: &str,
        now: u64,
    ) -> Result<Option<drover_engine::journal::Grant>, JournalError> {
        self.inner.take_grant(kind, key, now)
    }
    fn grants_of(
        &self,
        kind: &str,
        holder: &str,
        now: u64,
    ) -> Result<Vec<(String, drover_engine::journal::Grant)>, JournalError> {
        self.inner.grants_of(kind, holder, now)
    }
    fn revoke_grants(&mut self, kind: &str, holder: &str) -> Result<usize, JournalError> {
        self.inner.revoke_grants(kind, holder)
    }
}

/// One worker thread, the strictest runtime: while a commit waits on the disk, the steps that
/// are running keep being served (the journal is written from the blocking pool).
#[tokio::test(flavor = "current_thread")]
async fn a_commit_waiting_on_the_disk_does_not_stall_the_runtime() {
    let dir = tempfile::tempdir().expect("tmp");
    let armed = Arc::new(tokio::sync::Notify::new());
    let (tx, rx) = std::sync::mpsc::channel();
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = Arc::new(Gate {
        armed: Arc::clone(&armed),
        release: Mutex::new(Some(tx)),
    });
    let body = r#"
step first {
  action = test.quick
}

step release {
  action = test.release
}

milestone done {
  after     = [first, release]
  stops_rto = true
}
"#;
    let plan = compile_with(body, &*gate);
    let journal = SlowDisk {
        inner: crate::backend::journal(dir.path()),
        armed,
        release: rx,
        stalled: Arc::clone(&stalled),
    };
    let clock = ManualClock::new(1_000);
    let lines = Arc::new(Lines::default());
    let d = start(
        plan,
        dir.path(),
        Box::new(journal),
        &clock,
        Adapters::default().with(gate),
        Arc::clone(&lines) as Arc<dyn Observer>,
    );
    let record = d.drive(true).await.expect("drives");
    assert!(
        !stalled.load(Ordering::SeqCst),
        "the runtime stalled while a commit waited on the disk"
    );
    let lines = lines.0.lock().expect("lines").clone();
    assert_eq!(record.outcome, Some(RunOutcome::Succeeded), "{lines:#?}");
}

/// An action that fails the way a cloud call does: permanently, with the provider's facts.
struct Denied;

#[async_trait::async_trait]
impl Adapter for Denied {
    fn schemas(&self) -> Vec<drover_schema::ActionSchema> {
        vec![drover_schema::ActionSchema::new(
            "test.denied",
            "fails like a refused cloud call",
            drover_schema::Effect::Mutating,
            drover_schema::Role::Plain,
        )]
    }

    async fn execute(
        &self,
        _action: &str,
        _inputs: &Inputs,
        _ctx: &StepContext,
    ) -> Result<Outputs, AdapterError> {
        Err(
            AdapterError::permanent("EC2 ReplaceRoute on rtb-0abc failed")
                .on_resource("rtb-0abc")
                .in_region("us-west-2")
                .with_code("InvalidRouteTableID.NotFound"),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_keeps_where_it_failed_as_data_through_the_journal() {
    let dir = tempfile::tempdir().expect("tmp");
    let body = r#"
step reroute {
  action = test.denied
}

milestone done {
  after     = [reroute]
  stops_rto = true
}
"#;
    let plan = compile_with(body, &Denied);
    let clock = ManualClock::new(1_000);
    let d = start(
        plan,
        dir.path(),
        crate::backend::journal(dir.path()),
        &clock,
        Adapters::default().with(Arc::new(Denied)),
        Arc::new(Lines::default()) as Arc<dyn Observer>,
    );
    let record = d.drive(true).await.expect("drives");
    assert_eq!(record.outcome, Some(RunOutcome::Failed));
    let expected = drover_schema::ErrorContext {
        step: Some("reroute".into()),
        action: Some("test.denied".into()),
        resource: Some("rtb-0abc".into()),
        region: Some("us-west-2".into()),
        subscription: None,
        code: Some("InvalidRouteTableID.NotFound".into()),
    };
    let line = |r: &drover_engine::run_record::RunRecord| {
        r.steps
            .iter()
            .find(|s| s.id == "reroute")
            .cloned()
            .expect("the step's line")
    };
    let live = line(&record);
    assert_eq!(
        live.error.as_deref(),
        Some("EC2 ReplaceRoute on rtb-0abc failed")
    );
    assert_eq!(live.error_context.as_ref(), Some(&expected));
    // Rebuilt from the journal alone, as `drover status` does.
    let j = crate::backend::journal_read(dir.path());
    let (_, stored) = drover_engine::driver::status(&*j, "r1").expect("status");
    assert_eq!(line(&stored).error_context.as_ref(), Some(&expected));
}

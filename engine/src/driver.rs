//! The tokio driver: performs what the scheduler decides, journaling every transition before acting
//! on it. It holds no scheduling rule of its own.
//!
//! Loop: an event arrives (a step finished, a timer fired, an approval was recorded, Ctrl-C) →
//! the scheduler turns it into actions → the event, the actions and their audit records are
//! committed to the journal in one transaction (fenced by the lease) → the actions are performed.
//! On resume the journaled events are replayed into a fresh scheduler; steps caught mid-flight are
//! observed (did the effect happen?) and reconciled before anything is retried.

use crate::audit::AuditRecord;
use crate::clock::Clock;
use crate::inputs::{plan_secrets, resolve};
use crate::journal::{Entry, Journal, JournalError, Lease, RunRow, RunStatus};
use crate::redactor::Redactor;
use crate::run_record::{RunRecord, build, rfc3339};
use crate::scheduler::{Action, Config, Event, RunOutcome, Scheduler, TimerKind};
use crate::template_context::RunVars;
use drover_dsl::{Mode, Plan, PlanNode, PlanStep};
use drover_schema::{Adapter, AdapterError, Observation, Outputs, StepContext};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// How long a lease lasts without renewal, unless [`set_lease`] says otherwise: a replica
/// takes over a run whose driver died within this, and the driver renews at a third of it.
pub const LEASE_TTL_MS: u64 = 10_000;

static LEASE_TTL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(LEASE_TTL_MS);
static REPLICA: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets this process's lease TTL (ms, at least 1 s) and, for a server replica, its id (named in
/// every lease it holds). Called once at start, before any run is driven.
pub fn set_lease(ttl_ms: u64, replica: Option<&str>) {
    LEASE_TTL.store(ttl_ms.max(1_000), std::sync::atomic::Ordering::Relaxed);
    if let Some(r) = replica {
        let _ = REPLICA.set(r.to_owned());
    }
}

/// This process's lease TTL (ms).
#[must_use]
pub fn lease_ttl_ms() -> u64 {
    LEASE_TTL.load(std::sync::atomic::Ordering::Relaxed)
}

/// This process's replica id, when it is a server replica.
#[must_use]
pub fn replica_id() -> Option<&'static str> {
    REPLICA.get().map(String::as_str)
}

/// The steps a driver has running: when the driver is dropped (it lost its lease, or its
/// journal failed) they are stopped, so a process that no longer owns the run acts no further.
#[derive(Default)]
struct Running(HashMap<String, JoinHandle<()>>);

impl std::ops::Deref for Running {
    type Target = HashMap<String, JoinHandle<()>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for (_, h) in self.0.drain() {
            h.abort();
        }
    }
}

/// How often the driver looks for approvals recorded by `drover approve` (and renews its lease).
pub const APPROVAL_POLL_MS: u64 = 500;

/// Why a run could not be driven.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The journal failed or the lease was lost.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The stored plan does not parse.
    #[error("the run's plan does not parse: {0}")]
    Plan(String),
    /// The run is already over.
    #[error("run {0} is already finished ({1}); `drover rollback {0}` undoes what it changed")]
    Finished(String, String),
    /// A rollback was asked of a run that was rolled back already.
    #[error("run {0} was rolled back already: nothing is left to undo")]
    NothingToUndo(String),
    /// Who starts the run could not be established (a runbook with an operator roster needs a
    /// signed start statement by an operator in it).
    #[error("{0}")]
    Identity(String),
    /// A journal call could not run on the blocking pool (the runtime is shutting down, or an
    /// earlier call panicked while holding the journal).
    #[error("the journal is unavailable: {0}")]
    JournalUnavailable(String),
}

/// At most this many transitions in one commit (results that arrived together).
const GROUP_COMMIT: usize = 64;

/// The run's journal as the driving loop uses it: every call runs on tokio's blocking pool, so a
/// commit that waits on the disk (SQLite's fsync) never holds one of the runtime's few worker
/// threads, and running steps, timers and signals keep being served while it writes. Calls are
/// still made one at a time, in order: the loop awaits each before it acts on the next event.
struct OffloadedJournal(Arc<std::sync::Mutex<Box<dyn Journal>>>);

impl OffloadedJournal {
    fn new(journal: Box<dyn Journal>) -> Self {
        Self(Arc::new(std::sync::Mutex::new(journal)))
    }

    async fn call<T, F>(&self, f: F) -> Result<T, DriverError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Journal) -> Result<T, JournalError> + Send + 'static,
    {
        let journal = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let mut j = journal.lock().map_err(|_| {
                DriverError::JournalUnavailable("an earlier journal call panicked".into())
            })?;
            f(j.as_mut()).map_err(DriverError::from)
        })
        .await
        .map_err(|e| DriverError::JournalUnavailable(e.to_string()))?
    }
}

/// The adapters, by action name.
#[derive(Clone, Default)]
pub struct Adapters {
    by_action: BTreeMap<String, Arc<dyn Adapter>>,
    resources: BTreeMap<String, Vec<String>>,
}

impl Adapters {
    /// Registers an adapter for every action its schemas name.
    #[must_use]
    pub fn with(mut self, adapter: Arc<dyn Adapter>) -> Self {
        for s in adapter.schemas() {
            let res: Vec<String> = s
                .inputs
                .iter()
                .filter(|i| i.resource)
                .map(|i| i.name.clone())
                .collect();
            self.resources.insert(s.name.clone(), res);
            self.by_action.insert(s.name.clone(), Arc::clone(&adapter));
        }
        self
    }

    fn get(&self, action: &str) -> Option<&Arc<dyn Adapter>> {
        self.by_action.get(action)
    }

    /// Each registered adapter once.
    fn all(&self) -> Vec<Arc<dyn Adapter>> {
        let mut out: Vec<Arc<dyn Adapter>> = Vec::new();
        for a in self.by_action.values() {
            if !out.iter().any(|b| Arc::ptr_eq(a, b)) {
                out.push(Arc::clone(a));
            }
        }
        out
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, as one stream of interrupts. Registered when created, so a
/// signal that arrives while a transition is being journaled is not lost.
struct Interrupts {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
    /// Requests through an [`Interrupter`] (a server's interrupt endpoint).
    requests: mpsc::UnboundedReceiver<()>,
}

impl Interrupts {
    fn new(requests: mpsc::UnboundedReceiver<()>) -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
            requests,
        }
    }

    /// The next interrupt (never, when no handler could be installed).
    async fn recv(&mut self) {
        /// The next signal of one kind; pending for ever without a handler.
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            let got = match s {
                Some(s) => s.recv().await.is_some(),
                None => false,
            };
            if !got {
                std::future::pending::<()>().await;
            }
        }
        let (int, term, requests) = (&mut self.int, &mut self.term, &mut self.requests);
        tokio::select! {
            () = next(int) => {}
            () = next(term) => {}
            Some(()) = requests.recv() => {}
        }
    }
}

/// A step whose resolved inputs its adapter has validated: the only thing the driver executes.
struct ValidatedStep {
    adapter: Arc<dyn Adapter>,
    action: String,
    inputs: drover_schema::Inputs,
}

impl ValidatedStep {
    /// Validates `inputs` for `action` (pure: no I/O, no credentials).
    fn new(
        adapter: Arc<dyn Adapter>,
        action: &str,
        inputs: drover_schema::Inputs,
    ) -> Result<Self, AdapterError> {
        adapter.validate_step(action, &inputs)?;
        Ok(Self {
            adapter,
            action: action.to_owned(),
            inputs,
        })
    }
}

/// What the driver reports as the run goes (the CLI prints it).
pub trait Observer: Send + Sync {
    /// Something worth a line.
    fn line(&self, text: &str);

    /// Whether [`Observer::status`] is wanted (computing it costs a pass over the plan).
    fn wants_status(&self) -> bool {
        false
    }

    /// The run's state after each transition (a live view redraws from it).
    fn status(&self, _status: &LiveStatus) {}

    /// A transition was journaled (committed): a reader of the journal finds it now.
    fn committed(&self) {}
}

/// A summary of a run in progress, for live views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveStatus {
    /// Steps done (succeeded or skipped).
    pub done: usize,
    /// Steps running.
    pub running: usize,
    /// Steps waiting for approval.
    pub awaiting_approval: usize,
    /// Steps failed.
    pub failed: usize,
    /// All nodes.
    pub total: usize,
    /// Time since the declaration (ms).
    pub since_declared_ms: u64,
    /// The RTO target (ms).
    pub rto_target_ms: u64,
    /// Whether the RTO milestone was reached.
    pub rto_reached: bool,
}

/// Everything that identifies a run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Run id.
    pub run_id: String,
    /// The mode.
    pub mode: Mode,
    /// Who started it.
    pub initiator: String,
    /// State directory.
    pub state_dir: PathBuf,
    /// When the incident or drill was declared (ms).
    pub declared_at: u64,
    /// The runbook's source files, kept with the run for the evidence bundle (empty on resume:
    /// they were kept when the run started).
    pub sources: Vec<crate::journal::SourceText>,
    /// Why this run may run while another unfinished run claims its runbook or the production
    /// resources it changes (`--concurrent`); `None`: it may not (one cutover at a time).
    pub concurrent: Option<String>,
    /// Whether the run was started without preflighting every step (`--skip-preflight`).
    pub preflight_skipped: bool,
    /// The signed statement starting the run: required when the runbook has an operator
    /// roster, and then its signer — not `initiator` — is the initiator.
    pub start: Option<crate::signed::SignedStatement>,
    /// Where signed checkpoints of the audit chain go (`--audit-anchor`), if anywhere.
    pub anchor: Option<crate::anchor::Anchor>,
}

enum Done {
    Step {
        step: String,
        attempt: u32,
        result: Result<Outputs, AdapterError>,
    },
    Compensation {
        step: String,
        result: Result<(), String>,
    },
    Progress {
        step: String,
        text: String,
    },
}

/// Drives one run.
pub struct Driver {
    spec: RunSpec,
    plan: Arc<Plan>,
    journal: OffloadedJournal,
    lease: Lease,
    sched: Scheduler,
    clock: Arc<dyn Clock>,
    adapters: Adapters,
    observer: Arc<dyn Observer>,
    timers: BTreeSet<(u64, String, u32, TimerKind)>,
    running: Running,
    /// The status last written by the approval poll.
    last_status: Option<RunStatus>,
    /// Until when this process's lease is surely valid (its last renewal's start plus the TTL):
    /// past it, the lease is renewed before anything is acted on.
    lease_until: u64,
    /// When the lease was last renewed.
    renewed_at: u64,
    tx: mpsc::UnboundedSender<Done>,
    rx: mpsc::UnboundedReceiver<Done>,
    approvals_seen: i64,
    redactor: Redactor,
    run_vars: RunVars,
    /// What each polling step last showed, and when (progress lines are not repeated).
    last_progress: HashMap<String, (String, u64)>,
    milestones: BTreeMap<String, u64>,
    commits: u64,
    crash_after: Option<u64>,
    /// Set when this process drives the run only to undo it (`drover rollback`): who asked.
    rollback_by: Option<String>,
    /// Audit records this process appended since its last checkpoint (a resumed run starts at
    /// [`crate::anchor::EVERY`], so its first event is checkpointed).
    since_anchor: u64,
    /// The instance's key that signs checkpoints, once read.
    instance_key: Option<ed25519_dalek::SigningKey>,
    steps: HashMap<String, petgraph::graph::NodeIndex>,
    span: tracing::Span,
    interrupt_tx: mpsc::UnboundedSender<()>,
    interrupt_rx: Option<mpsc::UnboundedReceiver<()>>,
}

/// Interrupts a run a driver drives in this process, as Ctrl-C does: the first request starts
/// no new steps and waits for running ones, a second stops running steps now.
#[derive(Debug, Clone)]
pub struct Interrupter(mpsc::UnboundedSender<()>);

impl Interrupter {
    /// Asks for an interrupt; false when the run is no longer driven.
    pub fn interrupt(&self) -> bool {
        self.0.send(()).is_ok()
    }
}

/// Crash hooks for the crash-resume tests, compiled only with the `crash-hooks` feature (the
/// test build enables it; a product build ignores the variables).
#[cfg(feature = "crash-hooks")]
mod crash_hooks {
    /// With `DROVER_CRASH_AFTER_COMMITS=N` the process aborts (no cleanup, like SIGKILL) right
    /// after its Nth journal commit, before acting on it.
    pub fn after_commits() -> Option<u64> {
        std::env::var("DROVER_CRASH_AFTER_COMMITS")
            .ok()
            .and_then(|v| v.parse().ok())
    }

    /// With `DROVER_CRASH_AFTER_EFFECT=STEP` the process aborts right after the adapter call of
    /// STEP succeeded, before its outcome is journaled: the worst moment to die, when only
    /// `observe` can tell that the effect happened.
    pub fn after_effect(step: &str) -> bool {
        std::env::var("DROVER_CRASH_AFTER_EFFECT").is_ok_and(|s| s == step)
    }
}

#[cfg(not(feature = "crash-hooks"))]
mod crash_hooks {
    pub fn after_commits() -> Option<u64> {
        None
    }

    pub fn after_effect(_step: &str) -> bool {
        false
    }
}

/// What a run claims while it is unfinished: its runbook, and outside drills every resource its
/// changing steps name (as the schemas mark them) whose value the plan already knows.
fn claims(plan: &Plan, mode: Mode, adapters: &Adapters) -> Vec<String> {
    let mut out = Vec::new();
    if mode != Mode::Drill {
        for (_, step) in plan.steps() {
            if step.effect == drover_schema::Effect::ReadOnly || !step.modes.contains(&mode) {
                continue;
            }
            for name in adapters.resources.get(&step.action).into_iter().flatten() {
                if let Some(v) = step.inputs.get(name) {
                    out.extend(v.literal_strings().iter().map(|s| format!("resource:{s}")));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    // The runbook first: a refusal names the runbook before any resource.
    out.insert(0, format!("runbook:{}", plan.runbook.name));
    out
}

fn seed_of(run_id: &str) -> u64 {
    run_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn holder(initiator: &str) -> String {
    let mut h = format!(
        "{initiator}@{} pid {}",
        crate::journal::hostname(),
        std::process::id()
    );
    if let Some(r) = replica_id() {
        h.push_str(&format!(" replica {r}"));
    }
    h
}

impl Driver {
    fn new(
        spec: RunSpec,
        plan: Arc<Plan>,
        journal: Box<dyn Journal>,
        lease: Lease,
        clock: Arc<dyn Clock>,
        adapters: Adapters,
        observer: Arc<dyn Observer>,
    ) -> Self {
        let sched = Scheduler::new(
            &plan,
            Config::new(spec.mode, spec.initiator.clone(), seed_of(&spec.run_id)),
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let (interrupt_tx, interrupt_rx) = mpsc::unbounded_channel();
        let steps = plan
            .graph
            .node_indices()
            .map(|i| (plan.graph[i].id().to_owned(), i))
            .collect();
        let redactor = journal.redactor().clone();
        for s in plan_secrets(&plan, &|v| std::env::var(v).ok()) {
            redactor.add(&s);
        }
        let run_vars = RunVars::new(&spec.run_id, &spec.state_dir);
        // The run's own directory exists before its first step (runbooks keep scratch files
        // there); a failure shows up in the step that writes to it.
        let _ = std::fs::create_dir_all(&run_vars.dir);
        let span = tracing::info_span!(
            "run",
            run_id = %spec.run_id,
            runbook = %plan.runbook.name,
            mode = %spec.mode.as_str(),
            operator = %spec.initiator
        );
        Self {
            spec,
            plan,
            journal: OffloadedJournal::new(journal),
            lease,
            sched,
            clock,
            adapters,
            observer,
            timers: BTreeSet::new(),
            running: Running::default(),
            last_status: None,
            lease_until: 0,
            renewed_at: 0,
            tx,
            rx,
            approvals_seen: 0,
            redactor,
            run_vars,
            last_progress: HashMap::new(),
            milestones: BTreeMap::new(),
            commits: 0,
            crash_after: crash_hooks::after_commits(),
            rollback_by: None,
            since_anchor: 0,
            instance_key: None,
            steps,
            span,
            interrupt_tx,
            interrupt_rx: Some(interrupt_rx),
        }
    }

    /// Creates a run and takes its lease.
    ///
    /// # Errors
    /// Journal errors.
    pub fn start(
        spec: RunSpec,
        plan: Arc<Plan>,
        journal: Box<dyn Journal>,
        clock: Arc<dyn Clock>,
        adapters: Adapters,
        observer: Arc<dyn Observer>,
    ) -> Result<Self, DriverError> {
        Self::start_as(spec, None, plan, journal, clock, adapters, observer)
    }

    /// Starts a run that the runbook's own schedule `schedule` fires: no person starts it, so
    /// no one signs; the initiator is `schedule:NAME`, and the schedule must be in the plan, for
    /// the run's mode. Approvals in the run still need their signatures.
    ///
    /// # Errors
    /// The plan has no such schedule for the mode; journal errors.
    pub fn start_scheduled(
        spec: RunSpec,
        schedule: &str,
        plan: Arc<Plan>,
        journal: Box<dyn Journal>,
        clock: Arc<dyn Clock>,
        adapters: Adapters,
        observer: Arc<dyn Observer>,
    ) -> Result<Self, DriverError> {
        Self::start_as(
            spec,
            Some(schedule),
            plan,
            journal,
            clock,
            adapters,
            observer,
        )
    }

    fn start_as(
        spec: RunSpec,
        schedule: Option<&str>,
        plan: Arc<Plan>,
        mut journal: Box<dyn Journal>,
        clock: Arc<dyn Clock>,
        adapters: Adapters,
        observer: Arc<dyn Observer>,
    ) -> Result<Self, DriverError> {
        let mut spec = spec;
        let now = clock.now_ms();
        if let Some(name) = schedule {
            if !plan
                .schedules
                .iter()
                .any(|s| s.name == name && s.mode == spec.mode)
            {
                return Err(DriverError::Identity(format!(
                    "the runbook has no schedule `{name}` for {} mode: a scheduled start is refused",
                    spec.mode.as_str()
                )));
            }
            spec.initiator = format!("schedule:{name}");
            spec.start = None;
        } else if crate::signed::roster(&plan).is_some() {
            // With a roster, the initiator is whoever signed the start statement, never a
            // typed name.
            let Some(signed) = &spec.start else {
                return Err(DriverError::Identity(
                    "this runbook has an operator roster: starting a run is a statement signed with your SSH key — give --key PATH, or load the key into ssh-agent (SSH_AUTH_SOCK)".into(),
                ));
            };
            let (signer, _) = crate::signed::check(
                &plan,
                &spec.run_id,
                "",
                drover_identity::Decision::Start,
                signed,
            )
            .map_err(|e| DriverError::Identity(format!("the start of the run is refused: {e}")))?;
            spec.initiator = signer.operator;
        }
        let claims = crate::journal::Claims {
            names: claims(&plan, spec.mode, &adapters),
            concurrent: spec.concurrent.clone(),
        };
        journal.create_run(
            &RunRow {
                run_id: spec.run_id.clone(),
                runbook: plan.runbook.name.clone(),
                plan: serde_json::to_string(&*plan)
                    .map_err(|e| DriverError::Plan(e.to_string()))?,
                mode: spec.mode,
                initiator: spec.initiator.clone(),
                declared_at: spec.declared_at,
                created_at: now,
                status: RunStatus::Running,
                record: None,
                audit_head: crate::audit::GENESIS.into(),
                audit_count: 0,
            },
            &claims,
        )?;
        if !spec.sources.is_empty() {
            journal.store_sources(&spec.run_id, &spec.sources)?;
        }
        if let Some(signed) = &spec.start {
            journal.add_start_statement(&spec.run_id, signed, now)?;
        }
        if let Some(a) = &spec.anchor {
            journal.set_anchor(&spec.run_id, &a.location())?;
        }
        let lease = journal.acquire(&spec.run_id, &holder(&spec.initiator), now, lease_ttl_ms())?;
        Ok(Self::new(
            spec, plan, journal, lease, clock, adapters, observer,
        ))
    }

    /// Reopens a run after an interruption or a crash: takes the lease (refused if another live
    /// process holds it), replays the journal, and reconciles steps caught mid-flight.
    ///
    /// # Errors
    /// Journal errors, a held lease, or a finished run.
    pub async fn resume(
        run_id: &str,
        state_dir: PathBuf,
        operator: &str,
        journal: Box<dyn Journal>,
        clock: Arc<dyn Clock>,
        adapters: Adapters,
        observer: Arc<dyn Observer>,
    ) -> Result<Self, DriverError> {
        Self::reopen(
            run_id, state_dir, operator, journal, clock, adapters, observer, false,
        )
    }

    /// Reopens a run to undo it (`drover rollback`): finished or interrupted, failed or
    /// succeeded — every completed step with an undo is compensated in reverse dependency order
    /// (undos that failed before are tried again); steps not run yet never will. A step caught
    /// in flight by a crash is read back first: undone if its effect is in place, never re-run.
    /// The request is journaled and audited under `operator`; the rollback itself can be
    /// interrupted and asked for again.
    ///
    /// # Errors
    /// Journal errors, a held lease, or a run already rolled back.
    pub async fn rollback(
        run_id: &str,
        state_dir: PathBuf,
        operator: &str,
        journal: Box<dyn Journal>,
        clock: Arc<dyn Clock>,
        adapters: Adapters,
        observer: Arc<dyn Observer>,
    ) -> Result<Self, DriverError> {
        let mut d = Self::reopen(
            run_id, state_dir, operator, journal, clock, adapters, observer, true,
        )?;
        d.rollback_by = Some(operator.to_owned());
        Ok(d)
    }

    #[allow(clippy::too_many_arguments, reason = "resume and rollback share it")]
    fn reopen(
        run_id: &str,
        state_dir: PathBuf,
        operator: &str,
        mut journal: Box<dyn Journal>,
        clock: Arc<dyn Clock>,
        adapters: Adapters,
        observer: Arc<dyn Observer>,
        rollback: bool,
    ) -> Result<Self, DriverError> {
        // The lease first: the journal cannot change under the replay.
        let now = clock.now_ms();
        let lease = journal.acquire(run_id, &holder(operator), now, lease_ttl_ms())?;
        let rep = replay(journal.as_ref(), run_id)?;
        if let Some(o) = rep.sched.outcome()
            && o != RunOutcome::Interrupted
            && !rollback
        {
            let _ = journal.release(&lease);
            return Err(DriverError::Finished(run_id.to_owned(), format!("{o:?}")));
        }
        if rollback && rep.sched.outcome() == Some(RunOutcome::RolledBack) {
            let _ = journal.release(&lease);
            return Err(DriverError::NothingToUndo(run_id.to_owned()));
        }
        let spec = RunSpec {
            run_id: run_id.to_owned(),
            mode: rep.mode,
            initiator: rep.row.initiator.clone(),
            state_dir,
            declared_at: rep.row.declared_at,
            sources: Vec::new(),
            concurrent: None,
            preflight_skipped: false,
            start: None,
            // A resumed or rolled-back run goes on anchoring where it started to.
            anchor: journal
                .anchor(run_id)?
                .and_then(|l| crate::anchor::Anchor::parse(&l).ok()),
        };
        let mut d = Self::new(
            spec,
            Arc::new(rep.plan),
            journal,
            lease,
            clock,
            adapters,
            observer,
        );
        d.sched = rep.sched;
        d.milestones = rep.milestones;
        d.since_anchor = crate::anchor::EVERY;
        d.approvals_seen = rep
            .approvals
            .get(rep.fed_approvals.wrapping_sub(1))
            .map_or(0, |r| r.id);
        d.say(&format!(
            "resuming run {run_id}: {} events replayed",
            rep.events
        ));
        Ok(d)
    }

    /// A handle that interrupts this run while it is driven (from another task).
    #[must_use]
    pub fn interrupter(&self) -> Interrupter {
        Interrupter(self.interrupt_tx.clone())
    }

    /// The run's id.
    #[must_use]
    pub fn run_id(&self) -> &str {
        &self.spec.run_id
    }

    /// Prints a line for the operator, with every known secret removed.
    fn say(&self, text: &str) {
        self.observer.line(&self.redactor.text(text));
    }

    fn step(&self, id: &str) -> Option<&PlanStep> {
        self.steps
            .get(id)
            .and_then(|&i| self.plan.graph[i].as_step())
    }

    fn audit_for(&self, event: &Event, actions: &[Action], now: u64) -> Vec<AuditRecord> {
        let ts = rfc3339(now);
        let rec = |operator: &str,
                   step: Option<&str>,
                   action: &str,
                   outcome: &str,
                   error: Option<String>| {
            let outputs = step.and_then(|s| self.sched.outputs(s));
            let field = |k: &str| {
                outputs
                    .and_then(|o| o.get(k))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            };
            AuditRecord {
                seq: 0,
                ts: ts.clone(),
                run_id: self.spec.run_id.clone(),
                operator: operator.to_owned(),
                step: step.map(str::to_owned),
                action: action.to_owned(),
                backup_id: field("backup_id"),
                key_id: field("key_id"),
                outcome: outcome.to_owned(),
                error,
                prev: String::new(),
                signed: None,
            }
        };
        let me = self.spec.initiator.as_str();
        let mut out = Vec::new();
        match event {
            Event::Started => out.push(rec(
                me,
                None,
                "run.start",
                &{
                    let mut notes = vec![format!("{} mode", self.spec.mode.as_str())];
                    if let Some(why) = &self.spec.concurrent {
                        notes.push(format!("concurrent with unfinished runs: {why}"));
                    }
                    if self.spec.preflight_skipped {
                        notes.push("preflight skipped".to_owned());
                    }
                    format!("ok ({})", notes.join("; "))
                },
                None,
            )),
            Event::Resumed => out.push(rec(me, None, "run.resume", "ok", None)),
            Event::RollbackRequested { operator } => {
                out.push(rec(operator, None, "run.rollback", "requested", None));
            }
            Event::Interrupted => out.push(rec(me, None, "run.interrupt", "ok", None)),
            Event::StepFailed {
                step,
                error,
                transient: true,
                ..
            } if actions.iter().any(|a| {
                matches!(
                    a,
                    Action::SetTimer {
                        timer: TimerKind::Retry,
                        ..
                    }
                )
            }) =>
            {
                let action = self.step(step).map_or("step", |s| s.action.as_str());
                out.push(rec(me, Some(step), action, "retrying", Some(error.clone())));
            }
            Event::CompensationFinished { step, error } => {
                out.push(rec(
                    me,
                    Some(step),
                    "compensate",
                    if error.is_some() { "failed" } else { "ok" },
                    error.clone(),
                ));
            }
            _ => {}
        }
        for a in actions {
            match a {
                Action::StepDone { step } => {
                    let s = self.step(step);
                    let action = s.map_or("step", |s| s.action.as_str());
                    if action == "approval" {
                        continue;
                    }
                    out.push(rec(me, Some(step), action, "ok", None));
                }
                Action::StepGaveUp { step, error } => {
                    let action = self.step(step).map_or("step", |s| s.action.as_str());
                    out.push(rec(me, Some(step), action, "failed", Some(error.clone())));
                }
                Action::ApprovalAccepted {
                    step,
                    operator,
                    remaining,
                } => {
                    out.push(rec(
                        operator,
                        Some(step),
                        "approval",
                        &format!("approved ({remaining} more needed)"),
                        None,
                    ));
                }
                Action::ApprovalRefused {
                    step,
                    operator,
                    reason,
                } => {
                    out.push(rec(
                        operator,
                        Some(step),
                        "approval",
                        "refused",
                        Some(reason.clone()),
                    ));
                }
                Action::Denied { step, operator, .. } => {
                    let why = match event {
                        Event::Denied { reason, .. } => reason.clone(),
                        _ => String::new(),
                    };
                    out.push(rec(operator, Some(step), "approval", "denied", Some(why)));
                }
                Action::BrokeGlass { step, operator } => {
                    let why = match event {
                        Event::BreakGlass { reason, .. } => reason.clone(),
                        _ => String::new(),
                    };
                    out.push(rec(
                        operator,
                        Some(step),
                        "approval.break_glass",
                        "approved alone",
                        Some(why),
                    ));
                }
                Action::Skip { step, reason } => {
                    out.push(rec(me, Some(step), "skip", "skipped", Some(reason.clone())))
                }
                Action::MilestoneReached { milestone, .. } => {
                    out.push(rec(me, Some(milestone), "milestone", "reached", None))
                }
                Action::Finished { outcome } => {
                    out.push(rec(
                        me,
                        None,
                        "run.finish",
                        &serde_json::to_string(outcome)
                            .unwrap_or_default()
                            .replace('"', ""),
                        None,
                    ));
                }
                _ => {}
            }
        }
        out
    }

    /// Feeds an event: scheduler → journal → actions.
    async fn handle(&mut self, event: Event) -> Result<(), DriverError> {
        self.handle_all(vec![event]).await
    }

    /// Feeds events that arrived together, in order: each through the scheduler, then all
    /// journaled in one commit (a group commit), then their actions taken, in order. Nothing is
    /// acted on before all of it is stored.
    async fn handle_all(&mut self, events: Vec<Event>) -> Result<(), DriverError> {
        let now = self.clock.now_ms();
        let mut batch = Vec::with_capacity(events.len());
        for event in events {
            let actions = self.sched.on_event(&event, now);
            let audit = self.audit_for(&event, &actions, now);
            self.since_anchor += audit.len() as u64;
            batch.push((event, actions, audit));
        }
        // The journal redacts every payload it stores.
        let lease = self.lease.clone();
        let ttl = lease_ttl_ms();
        let batch = self
            .journal
            .call(move |j| {
                let entries: Vec<Entry<'_>> = batch
                    .iter()
                    .map(|(event, actions, audit)| Entry {
                        event,
                        actions,
                        audit,
                    })
                    .collect();
                j.append_all(&lease, now, ttl, &entries)?;
                Ok(batch)
            })
            .await?;
        let actions: Vec<Action> = batch.into_iter().flat_map(|(_, a, _)| a).collect();
        self.lease_until = now + ttl;
        self.renewed_at = now;
        // The lease was valid when the commit started; if this process was stopped since
        // (SIGSTOP, a long pause) for longer than the lease, another replica may own the run
        // now: renew (compare-and-set on the token) before acting, and stop if it is gone.
        self.ensure_lease().await?;
        self.commits += 1;
        if self.crash_after == Some(self.commits) {
            std::process::abort();
        }
        self.observer.committed();
        let anchor_now = actions.iter().any(|a| {
            matches!(
                a,
                Action::ApprovalAccepted { .. }
                    | Action::BrokeGlass { .. }
                    | Action::Finished { .. }
            )
        });
        self.checkpoint(anchor_now).await?;
        for a in actions {
            self.perform(a, now);
        }
        if self.observer.wants_status() {
            self.observer.status(&self.live(now));
        }
        Ok(())
    }

    /// Writes a signed checkpoint of the audit chain to the anchor, when one is configured and
    /// `now` (an approval, the end) or [`crate::anchor::EVERY`] records since the last one ask
    /// for it. An anchor that cannot be written is reported and the run goes on: a failover is
    /// not stopped by its audit storage, but the gap shows at `audit verify --anchor`.
    async fn checkpoint(&mut self, now: bool) -> Result<(), DriverError> {
        let Some(anchor) = self.spec.anchor.clone() else {
            return Ok(());
        };
        let due = self.since_anchor > 0 && (now || self.since_anchor >= crate::anchor::EVERY);
        if !due {
            return Ok(());
        }
        let run_id = self.spec.run_id.clone();
        let (head, count) = self.journal.call(move |j| j.audit_head(&run_id)).await?;
        let state = self.spec.state_dir.clone();
        let time = rfc3339(self.clock.now_ms());
        let run_id = self.spec.run_id.clone();
        let cached = self.instance_key.clone();
        let written = tokio::task::spawn_blocking(move || {
            let key = match cached {
                Some(k) => k,
                None => crate::anchor::instance_key(&state)?,
            };
            anchor
                .append(&crate::anchor::Checkpoint::sign(
                    &run_id, count, &head, time, &key,
                ))
                .map(|()| key)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match written {
            Ok(key) => {
                self.instance_key = Some(key);
                self.since_anchor = 0;
            }
            Err(e) => self.say(&format!("WARNING: audit checkpoint not anchored: {e}")),
        }
        Ok(())
    }

    fn live(&self, now: u64) -> LiveStatus {
        use crate::scheduler::Status;
        let snap = self.sched.snapshot();
        let count = |f: fn(&Status) -> bool| snap.iter().filter(|(_, s)| f(s)).count();
        let rto_reached = self.plan.graph.node_weights().any(|n| matches!(n, PlanNode::Milestone(m) if m.stops_rto && self.milestones.contains_key(&m.id)));
        LiveStatus {
            done: count(|s| matches!(s, Status::Succeeded | Status::Skipped)),
            running: count(|s| matches!(s, Status::Running { .. })),
            awaiting_approval: count(|s| matches!(s, Status::AwaitingApproval)),
            failed: count(|s| matches!(s, Status::Failed)),
            total: snap.len(),
            since_declared_ms: now.saturating_sub(self.spec.declared_at),
            rto_target_ms: self.plan.runbook.rto_ms,
            rto_reached,
        }
    }

    fn ctx(&self, step: &PlanStep, attempt: u32) -> StepContext {
        let tx = self.tx.clone();
        let id = step.id.clone();
        let progress = drover_schema::Progress::new(Arc::new(move |text: &str| {
            let _ = tx.send(Done::Progress {
                step: id.clone(),
                text: text.to_owned(),
            });
        }));
        StepContext {
            run_id: self.spec.run_id.clone(),
            step_id: step.id.clone(),
            action: step.action.clone(),
            idempotency_key: format!("{}/{}", self.spec.run_id, step.id),
            attempt,
            mode: self.spec.mode,
            state_dir: self.spec.state_dir.clone(),
            production: self.plan.production.resources.clone(),
            production_tags: self.plan.production.tags.clone(),
            progress,
            clock: drover_schema::SharedClock(Arc::clone(&self.clock)),
            timeout: step.timeout_ms.map(|ms| drover_schema::StepTimeout {
                ms,
                deadline_ms: self.clock.now_ms().saturating_add(ms),
                is_default: step.timeout_is_default,
            }),
            redact: {
                let r = self.redactor.clone();
                drover_schema::Redact::new(Arc::new(move |t: &str| r.text(t)))
            },
        }
    }

    /// Resolves inputs, applies the drill guard, and starts the adapter call.
    fn execute(&mut self, id: &str, attempt: u32, observe_first: bool) {
        let tx = self.tx.clone();
        let fail = |tx: &mpsc::UnboundedSender<Done>, e: AdapterError| {
            let _ = tx.send(Done::Step {
                step: id.to_owned(),
                attempt,
                result: Err(e),
            });
        };
        let Some(step) = self.step(id).cloned() else {
            return fail(&tx, AdapterError::permanent("the step is not in the plan"));
        };
        let Some(adapter) = self.adapters.get(&step.action).cloned() else {
            return fail(
                &tx,
                AdapterError::permanent(format!("no adapter in this build runs `{}`", step.action)),
            );
        };
        let outputs = self
            .sched
            .outputs_of(crate::inputs::referenced_steps(&step, &step.inputs));
        let resolved = match resolve(
            &self.plan,
            &step,
            &step.inputs,
            self.spec.mode,
            &outputs,
            &|v| std::env::var(v).ok(),
            &self.run_vars,
        ) {
            Ok(r) => r,
            Err(e) => return fail(&tx, AdapterError::permanent(e.to_string())),
        };
        for s in &resolved.secrets {
            self.redactor.add(s);
        }
        if self.spec.mode == Mode::Drill {
            let prod = &self.plan.production.resources;
            for name in self
                .adapters
                .resources
                .get(&step.action)
                .into_iter()
                .flatten()
            {
                let vals: Vec<&str> = match resolved.inputs.get(name) {
                    Some(serde_json::Value::String(s)) => vec![s.as_str()],
                    Some(serde_json::Value::Array(a)) => {
                        a.iter().filter_map(|v| v.as_str()).collect()
                    }
                    _ => Vec::new(),
                };
                if let Some(v) = vals.iter().find(|v| prod.iter().any(|p| p == *v)) {
                    return fail(
                        &tx,
                        AdapterError::permanent(format!(
                            "refused before any call: a drill must not touch production resource {v}"
                        )),
                    );
                }
            }
        }
        let ctx = self.ctx(&step, attempt);
        let validated = match ValidatedStep::new(adapter, &step.action, resolved.inputs) {
            Ok(v) => v,
            Err(e) => return fail(&tx, e),
        };
        let step_id = id.to_owned();
        self.say(&format!(
            "start   {id} ({}, attempt {attempt})",
            validated.action
        ));
        let action = validated.action.clone();
        let span =
            tracing::info_span!(parent: &self.span, "step", step = %id, action = %action, attempt);
        let observe_only = self.rollback_by.is_some();
        let handle = tokio::spawn(
            async move {
                let ValidatedStep {
                    adapter,
                    action,
                    inputs,
                } = validated;
                if observe_first || observe_only {
                    match adapter.observe(&action, &inputs, &ctx).await {
                        Ok(Observation::Done(o)) => {
                            let _ = tx.send(Done::Step {
                                step: step_id,
                                attempt,
                                result: Ok(o),
                            });
                            return;
                        }
                        Ok(Observation::NotDone) if observe_only => {
                            let _ = tx.send(Done::Step {
                                step: step_id,
                                attempt,
                                result: Err(AdapterError::permanent(
                                    "read back before the rollback: the step's effect is not in place",
                                )),
                            });
                            return;
                        }
                        Ok(Observation::NotDone) => {}
                        Err(e) => {
                            let _ = tx.send(Done::Step {
                                step: step_id,
                                attempt,
                                result: Err(e),
                            });
                            return;
                        }
                    }
                }
                let result = adapter.execute(&action, &inputs, &ctx).await;
                if result.is_ok() && crash_hooks::after_effect(&step_id) {
                    // The effect is in the world; the journal does not know yet.
                    std::process::abort();
                }
                // Errors are not logged here: they may quote inputs; the journal gets them redacted.
                match &result {
                    Ok(_) => tracing::info!(outcome = "ok", "step attempt finished"),
                    Err(e) => tracing::warn!(
                        outcome = "failed",
                        transient = e.is_transient(),
                        "step attempt failed"
                    ),
                }
                let _ = tx.send(Done::Step {
                    step: step_id,
                    attempt,
                    result,
                });
            }
            .instrument(span),
        );
        self.running.insert(id.to_owned(), handle);
    }

    /// Undoes a completed step: its `compensate` block's action, or — without one — the built-in
    /// undo of the step's own adapter, which restores the state it captured before the change
    /// (same step context, so it finds that capture).
    fn compensate(&mut self, id: &str) {
        let tx = self.tx.clone();
        let step_id = id.to_owned();
        let fail = |e: String| {
            let _ = tx.send(Done::Compensation {
                step: step_id.clone(),
                result: Err(e),
            });
        };
        let Some(step) = self.step(id).cloned() else {
            return fail("not in the plan".into());
        };
        let (action, inputs, builtin) = match (&step.compensate, step.builtin_undo) {
            (Some(c), _) => (c.action.clone(), c.inputs.clone(), false),
            (None, true) => (step.action.clone(), step.inputs.clone(), true),
            (None, false) => return fail("no compensation".into()),
        };
        let Some(adapter) = self.adapters.get(&action).cloned() else {
            return fail(format!("no adapter in this build runs `{action}`"));
        };
        let mut outputs = self
            .sched
            .outputs_of(crate::inputs::referenced_steps(&step, &inputs));
        let own = self.sched.outputs(&step.id).cloned();
        if let Some(o) = &own {
            outputs.insert(step.id.clone(), o.clone());
        }
        let resolved = match resolve(
            &self.plan,
            &step,
            &inputs,
            self.spec.mode,
            &outputs,
            &|v| std::env::var(v).ok(),
            &self.run_vars,
        ) {
            Ok(r) => r,
            Err(e) => return fail(e.to_string()),
        };
        for s in &resolved.secrets {
            self.redactor.add(s);
        }
        let mut ctx = self.ctx(&step, 1);
        if builtin {
            self.say(&format!(
                "undo    {id} ({action}, built-in: restores the captured state)"
            ));
        } else {
            ctx.action = action.clone();
            ctx.idempotency_key = format!("{}/{}/compensate", self.spec.run_id, step.id);
            self.say(&format!("undo    {id} ({action})"));
        }
        let own = own.unwrap_or_default();
        let span =
            tracing::info_span!(parent: &self.span, "compensate", step = %id, action = %action);
        let handle = tokio::spawn(
            async move {
                let r = if builtin {
                    adapter
                        .compensate(&action, &resolved.inputs, &own, &ctx)
                        .await
                } else {
                    adapter
                        .execute(&action, &resolved.inputs, &ctx)
                        .await
                        .map(|_| ())
                }
                .map_err(|e| e.to_string());
                tracing::info!(
                    outcome = if r.is_ok() { "ok" } else { "failed" },
                    "compensation finished"
                );
                let _ = tx.send(Done::Compensation {
                    step: step_id,
                    result: r,
                });
            }
            .instrument(span),
        );
        self.running.insert(format!("{id}/compensate"), handle);
    }

    fn perform(&mut self, a: Action, now: u64) {
        let declared = self.spec.declared_at;
        match a {
            Action::Execute { step, attempt } => self.execute(&step, attempt, false),
            Action::Abandon { step, attempt } => {
                if let Some(h) = self.running.remove(&step) {
                    h.abort();
                }
                self.say(&format!("timeout {step} (attempt {attempt} abandoned)"));
            }
            Action::SetTimer {
                step,
                attempt,
                timer,
                at_ms,
            } => {
                if timer == TimerKind::Retry {
                    let err = self.sched.error(&step).unwrap_or("").to_owned();
                    let of = self
                        .step(&step)
                        .and_then(|s| s.retry)
                        .map_or(1, |r| r.attempts.max(1));
                    self.say(&format!(
                        "retry   {step} (attempt {} of {of}) in {} after: {err}",
                        attempt + 1,
                        drover_dsl::format_duration(at_ms.saturating_sub(now))
                    ));
                }
                self.timers.insert((at_ms, step, attempt, timer));
            }
            Action::AwaitApproval { step, required } => {
                // A rollback on request is held to the rules of the approval step gating it.
                let rollback = step == crate::scheduler::ROLLBACK_APPROVAL;
                let rules = if rollback {
                    self.sched
                        .rollback_gate_step()
                        .map_or_else(|| step.clone(), str::to_owned)
                } else {
                    step.clone()
                };
                let roles: Vec<String> = match self.step(&rules).and_then(|s| s.inputs.get("roles"))
                {
                    Some(drover_dsl::PlanValue::List(l)) => l
                        .iter()
                        .filter_map(|v| match v {
                            drover_dsl::PlanValue::String(r) => Some(format!(" --role {r}")),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let hint = if roles.len() > 1 {
                    format!(" (one of:{})", roles.join(","))
                } else {
                    roles.concat()
                };
                let initiator_may = matches!(
                    self.step(&rules)
                        .and_then(|s| s.inputs.get("initiator_may_approve")),
                    Some(drover_dsl::PlanValue::Bool(true))
                );
                let barred = match self.sched.rollback_requester() {
                    Some(by) if rollback => by,
                    _ => self.spec.initiator.as_str(),
                };
                let who = if initiator_may {
                    String::new()
                } else {
                    format!(" by someone other than {barred}")
                };
                if rollback {
                    self.say(&format!(
                        "the rollback undoes destructive steps gated by `{rules}`: it needs the same approvals"
                    ));
                }
                self.say(&format!(
                    "WAITING {step}: needs {required} approval(s){who}: drover approve {} {step} --as NAME{hint}",
                    self.spec.run_id
                ));
            }
            Action::ApprovalAccepted {
                step,
                operator,
                remaining,
            } => {
                self.say(&format!(
                    "approve {step}: {operator} approved ({remaining} more needed)"
                ));
            }
            Action::ApprovalRefused {
                step,
                operator,
                reason,
            } => self.say(&format!(
                "REFUSED approval of {step} by {operator}: {reason}"
            )),
            Action::BrokeGlass { step, operator } => self.say(&format!(
                "BREAK-GLASS {step}: {operator} approved alone; the steps tagged break_glass fire"
            )),
            Action::Denied {
                step,
                operator,
                remaining,
            } => self.say(&format!(
                "DENIED  {step} by {operator}{}",
                if remaining == 0 {
                    String::new()
                } else {
                    format!(" ({remaining} more denial(s) fail it)")
                }
            )),
            Action::StepDone { step } => {
                self.running.remove(&step);
                self.say(&format!("done    {step}"));
            }
            Action::StepGaveUp { step, error } => {
                self.running.remove(&step);
                self.say(&format!("FAILED  {step}: {error}"));
            }
            Action::Skip { step, reason } => self.say(&format!("skip    {step}: {reason}")),
            Action::Compensate { step } => self.compensate(&step),
            Action::MilestoneReached { milestone, at_ms } => {
                tracing::info!(milestone = %milestone, since_declared_ms = at_ms.saturating_sub(declared), "milestone reached");
                self.milestones.insert(milestone.clone(), at_ms);
                self.say(&format!(
                    "MILESTONE {milestone} reached {} after the declaration",
                    drover_dsl::format_duration(at_ms.saturating_sub(declared))
                ));
            }
            Action::Finished { outcome } => {
                tracing::info!(outcome = ?outcome, "run finished");
                self.say(&format!("finished: {outcome:?}"));
            }
        }
    }

    /// Runs the loop until the run finishes or is interrupted; returns the run record.
    ///
    /// # Errors
    /// Journal errors (including a lost lease).
    pub async fn drive(self, fresh: bool) -> Result<RunRecord, DriverError> {
        let span = self.span.clone();
        self.drive_in_span(fresh).instrument(span).await
    }

    async fn drive_in_span(mut self, fresh: bool) -> Result<RunRecord, DriverError> {
        // Signal handlers before anything runs: an interrupt is never the default (death).
        let (_, idle) = mpsc::unbounded_channel();
        let mut interrupts = Interrupts::new(self.interrupt_rx.take().unwrap_or(idle));
        if let Some(operator) = self.rollback_by.clone() {
            self.say(&format!(
                "rollback requested by {operator}: undoing completed steps in reverse order"
            ));
            // Undos a crash interrupted are started again; the request starts the next ones.
            let interrupted_undos = self.sched.compensating();
            let in_flight = self.sched.in_flight();
            self.handle(Event::RollbackRequested { operator }).await?;
            for step in interrupted_undos {
                self.compensate(&step);
            }
            // A step caught in flight is read back, never run again: undone if it took effect.
            for (step, attempt) in in_flight {
                self.say(&format!(
                    "observe {step}: outcome unknown after the interruption; reading back"
                ));
                self.execute(&step, attempt, true);
            }
        } else if fresh {
            self.handle(Event::Started).await?;
        } else {
            // What the interruption caught, taken before resuming: the resume itself starts
            // steps, and those are run, never read back.
            let in_flight = self.sched.in_flight();
            let compensating = self.sched.compensating();
            let timers = self.sched.pending_timers();
            self.handle(Event::Resumed).await?;
            for (step, attempt) in in_flight {
                self.say(&format!(
                    "observe {step}: outcome unknown after the interruption; reading back"
                ));
                self.execute(&step, attempt, true);
            }
            for step in compensating {
                self.compensate(&step);
            }
            for (step, attempt, kind, at) in timers {
                self.timers.insert((at, step, attempt, kind));
            }
        }
        let mut next_poll = self.clock.now_ms();
        let mut interrupted = false;
        let mut forced = false;
        while self.sched.outcome().is_none() {
            let now = self.clock.now_ms();
            let next = self.timers.iter().next().map_or(u64::MAX, |t| t.0);
            let wait = next.min(next_poll).saturating_sub(now);
            let sleep = self.clock.sleep(wait);
            tokio::select! {
                Some(done) = self.rx.recv() => {
                    // Whatever else finished meanwhile is journaled with it, in one commit.
                    let mut events = Vec::new();
                    let mut next = Some(done);
                    while let Some(done) = next.take() {
                    let event = match done {
                        Done::Step { step, attempt, result: Ok(outputs) } => Event::StepSucceeded { step, attempt, outputs },
                        Done::Step { step, attempt, result: Err(e) } => {
                            let action = self.step(&step).map(|s| s.action.clone()).unwrap_or_default();
                            let e = e.in_step(&step, &action);
                            Event::StepFailed { step, attempt, transient: e.is_transient(), error: e.message, context: Some(e.context) }
                        }
                        Done::Compensation { step, result } => {
                            self.running.remove(&format!("{step}/compensate"));
                            match &result {
                                Ok(()) => self.say(&format!("undone  {step}")),
                                Err(e) => self.say(&format!("UNDO FAILED {step}: {e}")),
                            }
                            Event::CompensationFinished { step, error: result.err() }
                        }
                        Done::Progress { step, text } => {
                            self.progress(&step, &text).await?;
                            next = self.more_done(events.len());
                            continue;
                        }
                    };
                    events.push(event);
                    next = self.more_done(events.len());
                    }
                    if !events.is_empty() {
                        self.handle_all(events).await?;
                    }
                }
                () = sleep => {
                    let now = self.clock.now_ms();
                    let due: Vec<_> = self.timers.iter().take_while(|t| t.0 <= now).cloned().collect();
                    for t in due {
                        self.timers.remove(&t);
                        let (_, step, attempt, timer) = t;
                        self.handle(Event::TimerFired { step, attempt, timer }).await?;
                    }
                    if now >= next_poll {
                        next_poll = now + APPROVAL_POLL_MS;
                        self.poll_approvals().await?;
                    }
                }
                () = interrupts.recv() => {
                    if !interrupted {
                        interrupted = true;
                        self.say("interrupt: no new steps; waiting for running steps to finish (Ctrl-C again to force)");
                        self.handle(Event::Interrupted).await?;
                    } else {
                        forced = true;
                        self.say("interrupt again: stopping running steps now; `drover resume` reads back what they did");
                        break;
                    }
                }
            }
        }
        self.finish(forced).await
    }

    /// Another result that is already waiting, while a group commit holds fewer than
    /// [`GROUP_COMMIT`] events.
    fn more_done(&mut self, held: usize) -> Option<Done> {
        if held >= GROUP_COMMIT {
            return None;
        }
        self.rx.try_recv().ok()
    }

    /// Journals what a running step last said it waits for, and shows it.
    async fn progress(&mut self, step: &str, text: &str) -> Result<(), DriverError> {
        if !self.running.contains_key(step) {
            return Ok(());
        }
        let now = self.clock.now_ms();
        // Shown when the reason changes, and at most every 10 s otherwise; always journaled.
        let reason = text.split_once(": ").map_or(text, |(_, r)| r).to_owned();
        let show = match self.last_progress.get(step) {
            Some((last, at)) => *last != reason || now.saturating_sub(*at) >= 10_000,
            None => true,
        };
        if show {
            self.say(&format!("wait    {step}: {text}"));
            self.last_progress.insert(step.to_owned(), (reason, now));
        }
        let (lease, step, text) = (self.lease.clone(), step.to_owned(), text.to_owned());
        self.journal
            .call(move |j| j.set_progress(&lease, &step, &text, now))
            .await
    }

    /// Picks up approvals recorded by `drover approve`, and keeps the lease and the status fresh
    /// while nothing else is journaled (waiting for approvers, long steps).
    async fn poll_approvals(&mut self) -> Result<(), DriverError> {
        let (run_id, seen) = (self.spec.run_id.clone(), self.approvals_seen);
        let rows = self
            .journal
            .call(move |j| j.approvals_after(&run_id, seen))
            .await?;
        for r in rows {
            self.approvals_seen = r.id;
            // With a roster, a row counts only with a statement signed by the operator it names:
            // a row written into the database by hand is refused, and audited.
            if let Some(reason) = crate::signed::unverified_row(&self.plan, &self.spec.run_id, &r) {
                self.say(&format!(
                    "REFUSED approval of {} by {}: {reason}",
                    r.step, r.operator
                ));
                let rec = AuditRecord {
                    seq: 0,
                    ts: rfc3339(self.clock.now_ms()),
                    run_id: self.spec.run_id.clone(),
                    operator: r.operator.clone(),
                    step: Some(r.step.clone()),
                    action: "approval".into(),
                    backup_id: None,
                    key_id: None,
                    outcome: "refused".into(),
                    error: Some(reason),
                    prev: String::new(),
                    signed: None,
                };
                let run_id = self.spec.run_id.clone();
                self.journal
                    .call(move |j| j.append_audit(&run_id, &[rec]))
                    .await?;
                continue;
            }
            self.handle(approval_event(&r)).await?;
        }
        let status = if self.sched.awaiting_approval().is_empty() {
            RunStatus::Running
        } else {
            RunStatus::Waiting
        };
        let now = self.clock.now_ms();
        let ttl = lease_ttl_ms();
        let renew = now.saturating_sub(self.renewed_at) >= ttl / 3 || now >= self.lease_until;
        if !renew && self.last_status == Some(status) {
            return Ok(());
        }
        let lease = self.lease.clone();
        self.journal
            .call(move |j| {
                j.set_status(&lease, status, None)?;
                j.renew(&lease, now, ttl)
            })
            .await?;
        self.last_status = Some(status);
        self.lease_until = now + ttl;
        self.renewed_at = now;
        Ok(())
    }

    /// Renews the lease when this process cannot be sure it still holds it (its last renewal
    /// is older than the TTL): a replica that lost it gets [`JournalError::Fenced`] and stops
    /// before its next effect.
    async fn ensure_lease(&mut self) -> Result<(), DriverError> {
        let now = self.clock.now_ms();
        if now < self.lease_until {
            return Ok(());
        }
        let ttl = lease_ttl_ms();
        let lease = self.lease.clone();
        self.journal
            .call(move |j| j.renew(&lease, now, ttl))
            .await?;
        self.lease_until = now + ttl;
        self.renewed_at = now;
        Ok(())
    }

    /// Ends driving: stops what is still running (only after a forced interrupt), lets every
    /// adapter stop what it started for the run, stores the redacted record and gives the lease up.
    async fn finish(mut self, forced: bool) -> Result<RunRecord, DriverError> {
        for (_, h) in self.running.drain() {
            h.abort();
        }
        self.checkpoint(true).await?;
        for a in self.adapters.all() {
            a.end_run(&self.spec.run_id, &self.spec.state_dir).await;
        }
        let mut record = build(
            &self.spec.run_id,
            &self.plan,
            self.spec.mode,
            &self.spec.initiator,
            self.spec.declared_at,
            &self.sched,
            &self.milestones,
        );
        if forced {
            record.outcome = Some(RunOutcome::Interrupted);
        }
        let record = self
            .redactor
            .apply(&record)
            .map_err(|e| DriverError::Plan(e.to_string()))?;
        let status = match record.outcome {
            Some(o) => RunStatus::Finished(o),
            None => RunStatus::Running,
        };
        let json =
            serde_json::to_string_pretty(&record).map_err(|e| DriverError::Plan(e.to_string()))?;
        let lease = self.lease.clone();
        self.journal
            .call(move |j| {
                j.set_status(&lease, status, Some(&json))?;
                j.release(&lease)
            })
            .await?;
        Ok(record)
    }
}

/// The current record of a run from the journal alone (for `drover status` while it runs or after).
///
/// # Errors
/// Journal or plan errors.
pub fn status(journal: &dyn Journal, run_id: &str) -> Result<(RunRow, RunRecord), DriverError> {
    let row = journal.run(run_id)?;
    let finished = !row.status.is_live();
    if let Some(rec) = row
        .record
        .as_deref()
        .and_then(|r| serde_json::from_str::<RunRecord>(r).ok())
        && finished
    {
        return Ok((row, rec));
    }
    let rep = replay(journal, run_id)?;
    let rec = build(
        run_id,
        &rep.plan,
        rep.row.mode,
        &rep.row.initiator,
        rep.row.declared_at,
        &rep.sched,
        &rep.milestones,
    );
    Ok((row, rec))
}

/// A run rebuilt from its journal alone: the scheduler replayed with the driver's own
/// configuration (the scheduler is deterministic, so this is the state the run had).
struct Replay {
    row: RunRow,
    plan: Plan,
    mode: Mode,
    sched: Scheduler,
    milestones: BTreeMap<String, u64>,
    events: usize,
    approvals: Vec<crate::journal::ApprovalRow>,
    /// How many of `approvals` (in id order) the scheduler has already been fed.
    fed_approvals: usize,
}

/// Writes a refused approval (or denial) of `step` to the run's audit log.
///
/// # Errors
/// Journal errors.
pub fn audit_refusal(
    journal: &mut dyn Journal,
    run_id: &str,
    step: &str,
    operator: &str,
    reason: &str,
    now: u64,
) -> Result<(), DriverError> {
    journal.append_audit(
        run_id,
        &[AuditRecord {
            seq: 0,
            ts: rfc3339(now),
            run_id: run_id.to_owned(),
            operator: operator.to_owned(),
            step: Some(step.to_owned()),
            action: "approval".into(),
            backup_id: None,
            key_id: None,
            outcome: "refused".into(),
            error: Some(reason.to_owned()),
            prev: String::new(),
            signed: None,
        }],
    )?;
    Ok(())
}

/// What an operator decides on a waiting approval step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Approve.
    Approve,
    /// Deny, with the reason.
    Deny(&'a str),
    /// Approve alone as an operator the roster marks `break_glass`, with the reason (the step
    /// must allow it).
    BreakGlass(&'a str),
}

impl<'a> Verdict<'a> {
    /// The kind of statement that makes this decision.
    #[must_use]
    pub fn decision(self) -> drover_identity::Decision {
        match self {
            Verdict::Approve => drover_identity::Decision::Approve,
            Verdict::Deny(_) => drover_identity::Decision::Deny,
            Verdict::BreakGlass(_) => drover_identity::Decision::BreakGlass,
        }
    }

    /// The reason a denial or a break-glass gives (empty for an approval).
    #[must_use]
    pub fn reason(self) -> &'a str {
        match self {
            Verdict::Approve => "",
            Verdict::Deny(r) | Verdict::BreakGlass(r) => r,
        }
    }
}

/// The event an approval row becomes: approved, denied or broken glass, with its reason.
fn approval_event(r: &crate::journal::ApprovalRow) -> Event {
    let verdict = match (&r.denial, &r.break_glass) {
        (Some(why), _) => Verdict::Deny(why),
        (None, Some(why)) => Verdict::BreakGlass(why),
        (None, None) => Verdict::Approve,
    };
    decision_event(&r.step, &r.operator, &r.roles, verdict)
}

fn decision_event(step: &str, operator: &str, roles: &[String], verdict: Verdict<'_>) -> Event {
    match verdict {
        Verdict::Approve => Event::Approved {
            step: step.to_owned(),
            operator: operator.to_owned(),
            roles: roles.to_vec(),
        },
        Verdict::Deny(reason) => Event::Denied {
            step: step.to_owned(),
            operator: operator.to_owned(),
            roles: roles.to_vec(),
            reason: reason.to_owned(),
        },
        Verdict::BreakGlass(reason) => Event::BreakGlass {
            step: step.to_owned(),
            operator: operator.to_owned(),
            reason: reason.to_owned(),
        },
    }
}

/// The plan a run was started with.
///
/// # Errors
/// Journal errors, or a plan that does not parse.
pub fn plan_of(journal: &dyn Journal, run_id: &str) -> Result<Plan, DriverError> {
    Ok(replay(journal, run_id)?.plan)
}

fn replay(journal: &dyn Journal, run_id: &str) -> Result<Replay, DriverError> {
    let row = journal.run(run_id)?;
    let plan: Plan =
        serde_json::from_str(&row.plan).map_err(|e| DriverError::Plan(e.to_string()))?;
    let mode = row.mode;
    let mut sched = Scheduler::new(
        &plan,
        Config::new(mode, row.initiator.clone(), seed_of(run_id)),
    );
    let mut milestones = BTreeMap::new();
    let events = journal.events(run_id)?;
    let mut fed_approvals = 0;
    for (at, e) in &events {
        fed_approvals += usize::from(matches!(
            e,
            Event::Approved { .. } | Event::Denied { .. } | Event::BreakGlass { .. }
        ));
        for a in sched.on_event(e, *at) {
            if let Action::MilestoneReached { milestone, at_ms } = a {
                milestones.insert(milestone, at_ms);
            }
        }
    }
    let approvals = journal.approvals_after(run_id, 0)?;
    Ok(Replay {
        row,
        plan,
        mode,
        sched,
        milestones,
        events: events.len(),
        approvals,
        fed_approvals,
    })
}

/// Whether an approval would be accepted now, by the same rules the running driver applies: the
/// run is replayed, approvals recorded but not yet picked up are applied, then this one.
/// `Ok(Err(reason))` is a refusal.
///
/// # Errors
/// Journal or plan errors.
pub fn check_approval(
    journal: &dyn Journal,
    run_id: &str,
    step: &str,
    operator: &str,
    roles: &[String],
    verdict: Verdict<'_>,
) -> Result<Result<(), String>, DriverError> {
    Ok(check_replayed(
        replay(journal, run_id)?,
        step,
        operator,
        roles,
        verdict,
    ))
}

/// [`check_approval`] on a run already replayed.
fn check_replayed(
    mut rep: Replay,
    step: &str,
    operator: &str,
    roles: &[String],
    verdict: Verdict<'_>,
) -> Result<(), String> {
    for r in rep.approvals.iter().skip(rep.fed_approvals) {
        rep.sched.on_event(&approval_event(r), r.at);
    }
    let e = decision_event(step, operator, roles, verdict);
    let refusal = rep.sched.on_event(&e, 0).into_iter().find_map(|a| match a {
        Action::ApprovalRefused { reason, .. } => Some(reason),
        _ => None,
    });
    refusal.map_or(Ok(()), Err)
}

/// `drover approve`: establishes who approves — the roster operator whose key signed the
/// statement, when the runbook has a roster; the typed name otherwise — checks the approval by
/// the rules the running driver applies, then records it (with its signature) for the driver to
/// pick up. A refusal is written to the run's audit log. `Ok(Ok(operator))` is an approval
/// recorded for `operator`; `Ok(Err(reason))` a refusal.
///
/// # Errors
/// Journal or plan errors.
pub fn approve(
    journal: &mut dyn Journal,
    run_id: &str,
    step: &str,
    approver: &crate::signed::Approver,
    verdict: Verdict<'_>,
    now: u64,
) -> Result<Result<String, String>, DriverError> {
    let kind = verdict.decision();
    // One replay serves who approves (the plan's roster) and whether the approval counts.
    let rep = replay(journal, run_id)?;
    let (plan, mode) = (rep.plan.clone(), rep.mode);
    let refuse = |journal: &mut dyn Journal, operator: &str, reason: String| {
        audit_refusal(journal, run_id, step, operator, &reason, now)?;
        Ok::<_, DriverError>(Err(reason))
    };
    let (operator, roles, signed) =
        match crate::signed::identify(&plan, run_id, step, kind, approver) {
            Ok(x) => x,
            Err((who, reason)) => return refuse(journal, &who, reason),
        };
    // A signed denial's or break-glass's reason is the one signed.
    let signed_reason = signed
        .as_ref()
        .filter(|_| verdict != Verdict::Approve)
        .and_then(|s| drover_identity::Statement::parse(&s.statement).ok())
        .map(|st| st.comment);
    let verdict = match (verdict, signed_reason.as_deref()) {
        (Verdict::Deny(_), Some(r)) => Verdict::Deny(r),
        (Verdict::BreakGlass(_), Some(r)) => Verdict::BreakGlass(r),
        (v, _) => v,
    };
    // Break-glass is for operators the roster marks so, and only with a roster.
    if let Verdict::BreakGlass(_) = verdict {
        let marked = match crate::signed::roster(&plan) {
            Some(Ok(r)) => r.operators.get(&operator).is_some_and(|o| o.break_glass),
            _ => false,
        };
        if !marked {
            let reason = if plan.runbook.roster.is_none() {
                "break-glass needs an operator roster that marks who may break the glass (`break_glass = true`)".to_owned()
            } else {
                format!("{operator} is not marked `break_glass = true` in the operator roster")
            };
            return refuse(journal, &operator, reason);
        }
    }
    // Step-up: a current TOTP code inside the signed statement, accepted once per operator.
    let mut totp_step = None;
    if let Some(s) = &signed
        && !matches!(verdict, Verdict::Deny(_))
        && crate::signed::needs_mfa(&plan, step, mode)
    {
        let st = drover_identity::Statement::parse(&s.statement)
            .map_err(|e| DriverError::Plan(e.to_string()))?;
        match crate::signed::check_totp(&plan, &operator, &st, now) {
            Ok(counter) => totp_step = Some(counter),
            Err(reason) => return refuse(journal, &operator, reason),
        }
    }
    match check_replayed(rep, step, &operator, &roles, verdict) {
        Ok(()) => {
            if let Some(counter) = totp_step
                && !journal.claim_totp(&operator, counter, now)?
            {
                return refuse(
                    journal,
                    &operator,
                    "the TOTP code was used before: wait for the next one".into(),
                );
            }
            journal.add_approval(
                run_id,
                &crate::journal::NewApproval {
                    step,
                    operator: &operator,
                    roles: &roles,
                    at: now,
                    signed: signed.as_ref(),
                    denial: match verdict {
                        Verdict::Deny(r) => Some(r),
                        _ => None,
                    },
                    break_glass: match verdict {
                        Verdict::BreakGlass(r) => Some(r),
                        _ => None,
                    },
                },
            )?;
            Ok(Ok(operator))
        }
        Err(reason) => refuse(journal, &operator, reason),
    }
}

/// One line of a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunLine {
    /// Step id.
    pub step: String,
    /// Action.
    pub action: String,
    /// What it would do.
    pub note: String,
    /// Why it would fail, if preflight says so.
    pub problem: Option<String>,
}

/// Validates and preflights every step that runs in `mode`, without changing anything. Steps whose
/// inputs read other steps' outputs are validated as far as possible and noted.
///
/// `run_id` is the run the preflight is for (`{{ run.dir }}` resolves under it). A local file
/// that does not exist yet is a problem only when no earlier step of the run changes state: one
/// of them may create it.
pub async fn dry_run(
    plan: &Plan,
    mode: Mode,
    adapters: &Adapters,
    state_dir: &std::path::Path,
    run_id: &str,
) -> Vec<DryRunLine> {
    let mut out = Vec::new();
    let run_vars = RunVars::new(run_id, state_dir);
    let redactor = Redactor::new();
    for s in plan_secrets(plan, &|v| std::env::var(v).ok()) {
        redactor.add(&s);
    }
    let order = petgraph::algo::toposort(&plan.graph, None).unwrap_or_default();
    for i in order {
        let PlanNode::Step(step) = &plan.graph[i] else {
            continue;
        };
        if !step.modes.contains(&mode) {
            continue;
        }
        let effect = match step.effect {
            drover_schema::Effect::Destructive => "WOULD CHANGE production-facing state",
            drover_schema::Effect::Mutating => "would change state",
            drover_schema::Effect::ReadOnly => "read-only",
        };
        let mut line = DryRunLine {
            step: step.id.clone(),
            action: step.action.clone(),
            note: effect.to_owned(),
            problem: None,
        };
        if step.role == drover_schema::Role::Approval {
            line.note = "waits for approval".into();
            out.push(line);
            continue;
        }
        let Some(adapter) = adapters.get(&step.action) else {
            line.problem = Some(format!("no adapter in this build runs `{}`", step.action));
            out.push(line);
            continue;
        };
        let resolved = resolve(
            plan,
            step,
            &step.inputs,
            mode,
            &BTreeMap::new(),
            &|v| std::env::var(v).ok(),
            &run_vars,
        );
        match resolved {
            Err(e) if e.needs_run_time() => {
                line.note =
                    format!("{effect}; inputs read other steps' outputs (resolved at run time)");
            }
            Err(e) => line.problem = Some(e.to_string()),
            Ok(r) => {
                let ctx = StepContext {
                    run_id: run_id.to_owned(),
                    step_id: step.id.clone(),
                    action: step.action.clone(),
                    idempotency_key: format!("{run_id}/{}", step.id),
                    attempt: 1,
                    mode,
                    state_dir: state_dir.to_path_buf(),
                    production: plan.production.resources.clone(),
                    production_tags: plan.production.tags.clone(),
                    ..StepContext::default()
                };
                for s in &r.secrets {
                    redactor.add(s);
                }
                if let Err(e) = adapter.validate_step(&step.action, &r.inputs) {
                    line.problem = Some(redactor.text(&e.to_string()));
                } else if let Err(e) = adapter.preflight(&step.action, &r.inputs, &ctx).await {
                    let maker = (e.context.code.as_deref()
                        == Some(drover_schema::MAY_BE_CREATED_EARLIER))
                    .then(|| upstream_change(plan, i, mode))
                    .flatten();
                    match maker {
                        Some(by) => {
                            line.note = format!(
                                "{effect}; {} (made by an earlier step, such as `{by}`?)",
                                redactor.text(&e.message)
                            );
                        }
                        None => line.problem = Some(redactor.text(&e.to_string())),
                    }
                }
            }
        }
        out.push(line);
    }
    out
}

/// An earlier step of `node` (an ancestor in the plan) that changes state in `mode`, if any.
fn upstream_change(plan: &Plan, node: petgraph::graph::NodeIndex, mode: Mode) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<_> = plan
        .graph
        .neighbors_directed(node, petgraph::Direction::Incoming)
        .collect();
    while let Some(n) = stack.pop() {
        if !seen.insert(n) {
            continue;
        }
        if let PlanNode::Step(s) = &plan.graph[n]
            && s.effect != drover_schema::Effect::ReadOnly
            && s.modes.contains(&mode)
        {
            return Some(s.id.clone());
        }
        stack.extend(
            plan.graph
                .neighbors_directed(n, petgraph::Direction::Incoming),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Arc<dyn Adapter> {
        Arc::new(drover_adapters::local::LocalAdapter::new(Arc::new(
            |_: &str| {},
        )))
    }

    #[test]
    fn only_inputs_that_pass_validation_make_an_executable_step() {
        let mut inputs = drover_schema::Inputs::new();
        inputs.insert("command".into(), serde_json::json!("true"));
        assert!(ValidatedStep::new(local(), "shell", inputs.clone()).is_ok());
        inputs.remove("command");
        let e = ValidatedStep::new(local(), "shell", inputs)
            .err()
            .expect("no command");
        assert!(!e.is_transient());
        assert!(e.message.contains("`command`"), "{e}");
        let e = ValidatedStep::new(local(), "aws_ec2.replace_route", Default::default())
            .err()
            .expect("not the local adapter's action");
        assert!(e.message.contains("does not run"), "{e}");
    }

    #[test]
    fn the_retry_jitter_seed_is_the_runs_own() {
        assert_eq!(seed_of("r1"), seed_of("r1"));
        assert_ne!(seed_of("r1"), seed_of("r2"));
    }
}

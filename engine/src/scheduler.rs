//! The scheduler: a pure state machine. `on_event(event, now) -> actions`, no I/O, no await.
//!
//! Every scheduling rule lives here and only here: readiness, modes, `when`, concurrency limits
//! (global and per provider), retries with exponential backoff and deterministic jitter, per-attempt
//! timeouts, approvals (N distinct approvers, roles, four eyes), `on_failure` (abort, continue,
//! rollback), rollback order, milestones, interruption. The tokio driver performs the actions for
//! live runs; the simulator drives the same machine on a virtual clock. Replaying a run's journaled
//! events into a fresh scheduler rebuilds exactly the state it had (the machine is deterministic).

use drover_dsl::{Mode, OnFailure, Plan, PlanNode, PlanValue};
use drover_schema::{Outputs, Role};
use petgraph::Direction;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// The backoff before a retry is over.
    Retry,
    /// An attempt ran out of time.
    Timeout,
}

/// Something that happened. Events are journaled before the scheduler sees them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run starts.
    Started,
    /// An operator asked to undo what the run changed (`drover rollback`): steps not yet done
    /// will not run, and every completed step with an undo is compensated in reverse dependency
    /// order, as `on_failure = rollback` does.
    RollbackRequested {
        /// Who asked.
        operator: String,
    },
    /// The run continues after an interruption or a crash.
    Resumed,
    /// An attempt succeeded.
    StepSucceeded {
        /// Step id.
        step: String,
        /// Attempt number.
        attempt: u32,
        /// Its outputs.
        outputs: Outputs,
    },
    /// An attempt failed.
    StepFailed {
        /// Step id.
        step: String,
        /// Attempt number.
        attempt: u32,
        /// What went wrong (never a secret).
        error: String,
        /// Whether a retry can help.
        transient: bool,
        /// Where it happened, as data (the provider's code, the resource, the region).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<Box<drover_schema::ErrorContext>>,
    },
    /// A timer set by [`Action::SetTimer`] fired.
    TimerFired {
        /// Step id.
        step: String,
        /// The attempt it was set for.
        attempt: u32,
        /// Which timer.
        timer: TimerKind,
    },
    /// An operator approved an approval step.
    Approved {
        /// Step id.
        step: String,
        /// Who.
        operator: String,
        /// The roles they act in.
        roles: Vec<String>,
    },
    /// An operator denied an approval step (`drover approve --deny`).
    Denied {
        /// The step.
        step: String,
        /// Who.
        operator: String,
        /// The roles they act in.
        roles: Vec<String>,
        /// Why.
        reason: String,
    },
    /// A compensation finished.
    CompensationFinished {
        /// Step id.
        step: String,
        /// Why it failed, if it did.
        error: Option<String>,
    },
    /// Stop scheduling (Ctrl-C): running steps finish or time out.
    Interrupted,
    /// An operator broke the glass on an approval step (`drover approve --break-glass`): alone,
    /// they satisfy it, when the step allows it (`break_glass = true`); the steps tagged
    /// `break_glass` fire.
    BreakGlass {
        /// The step.
        step: String,
        /// Who (the identity layer checked that the roster marks them `break_glass`).
        operator: String,
        /// Why.
        reason: String,
    },
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Every step succeeded or was skipped.
    Succeeded,
    /// Done, but steps with `on_failure = continue` failed.
    SucceededWithFailures,
    /// A step failed and the run stopped.
    Failed,
    /// A step failed and every completed step was compensated.
    RolledBack,
    /// A rollback ran but could not undo everything: changes are still in place (the run record
    /// lists them in `changes_in_place`), and `drover rollback` tries the failed undos again.
    /// (Journals written before this name read `rollback_failed`.)
    #[serde(alias = "rollback_failed")]
    RollbackIncomplete,
    /// Stopped by the operator; can be resumed.
    Interrupted,
}

impl RunOutcome {
    /// The outcome's name as stored and shown (snake case).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::SucceededWithFailures => "succeeded_with_failures",
            RunOutcome::Failed => "failed",
            RunOutcome::RolledBack => "rolled_back",
            RunOutcome::RollbackIncomplete => "rollback_incomplete",
            RunOutcome::Interrupted => "interrupted",
        }
    }
}

/// What the driver must do. Actions are journaled with the event that caused them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Run an attempt of a step.
    Execute {
        /// Step id.
        step: String,
        /// Attempt number (1-based).
        attempt: u32,
    },
    /// An attempt timed out: stop waiting for it.
    Abandon {
        /// Step id.
        step: String,
        /// Attempt number.
        attempt: u32,
    },
    /// Fire [`Event::TimerFired`] at `at_ms`.
    SetTimer {
        /// Step id.
        step: String,
        /// Attempt number.
        attempt: u32,
        /// Which timer.
        timer: TimerKind,
        /// When (ms since the Unix epoch, on the run's clock).
        at_ms: u64,
    },
    /// An approval step waits for operators.
    AwaitApproval {
        /// Step id.
        step: String,
        /// Approvals needed.
        required: u32,
    },
    /// An approval was counted.
    ApprovalAccepted {
        /// Step id.
        step: String,
        /// Who.
        operator: String,
        /// Approvals still needed.
        remaining: u32,
    },
    /// A denial was counted; the step fails when `remaining` reaches 0.
    Denied {
        /// The step.
        step: String,
        /// Who.
        operator: String,
        /// Denials still needed to fail the step.
        remaining: u32,
    },
    /// An operator broke the glass: alone, they satisfied the approval step.
    BrokeGlass {
        /// The step.
        step: String,
        /// Who.
        operator: String,
    },
    /// An approval was refused (four eyes, role, duplicate, not waiting).
    ApprovalRefused {
        /// Step id.
        step: String,
        /// Who.
        operator: String,
        /// Why.
        reason: String,
    },
    /// A step succeeded (journaled for status and the audit log).
    StepDone {
        /// Step id.
        step: String,
    },
    /// A step failed for good.
    StepGaveUp {
        /// Step id.
        step: String,
        /// The last error.
        error: String,
    },
    /// A step will not run.
    Skip {
        /// Step id.
        step: String,
        /// Why.
        reason: String,
    },
    /// Run a step's compensation.
    Compensate {
        /// Step id.
        step: String,
    },
    /// A milestone was reached.
    MilestoneReached {
        /// Milestone id.
        milestone: String,
        /// When.
        at_ms: u64,
    },
    /// The run is over.
    Finished {
        /// How it ended.
        outcome: RunOutcome,
    },
}

/// An event about a node named by its index in plan order: the allocation-free form of [`Event`]
/// that [`Scheduler::on_node_event`] takes. The simulator feeds these; live runs feed [`Event`]s,
/// which are translated into these, so both go through the same rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NodeEvent<'a> {
    /// The run starts.
    Started,
    /// The run continues after an interruption or a crash.
    Resumed,
    /// An attempt succeeded.
    Succeeded {
        /// Node index.
        node: usize,
        /// Attempt number.
        attempt: u32,
        /// Its outputs (`None`: none).
        outputs: Option<&'a Outputs>,
    },
    /// An attempt failed.
    Failed {
        /// Node index.
        node: usize,
        /// Attempt number.
        attempt: u32,
        /// What went wrong.
        error: &'a str,
        /// Whether a retry can help.
        transient: bool,
    },
    /// A timer fired.
    TimerFired {
        /// Node index.
        node: usize,
        /// The attempt it was set for.
        attempt: u32,
        /// Which timer.
        timer: TimerKind,
    },
    /// An operator approved an approval step.
    Approved {
        /// Node index.
        node: usize,
        /// Who.
        operator: &'a str,
        /// The roles they act in.
        roles: &'a [String],
    },
    /// An operator denied an approval step.
    Denied {
        /// Node index.
        node: usize,
        /// Who.
        operator: &'a str,
        /// The roles they act in.
        roles: &'a [String],
        /// Why.
        reason: &'a str,
    },
    /// A compensation finished.
    CompensationFinished {
        /// Node index.
        node: usize,
        /// Why it failed, if it did.
        error: Option<&'a str>,
    },
    /// Stop scheduling.
    Interrupted,
    /// Undo the run on request (see [`Event::RollbackRequested`]).
    RollbackRequested {
        /// Who asked.
        operator: &'a str,
    },
    /// An operator approved the rollback asked for (`drover approve RUN rollback`).
    RollbackApproved {
        /// Who.
        operator: &'a str,
        /// The roles they act in.
        roles: &'a [String],
    },
    /// An operator broke the glass on an approval step (see [`Event::BreakGlass`]).
    BreakGlass {
        /// Node index.
        node: usize,
        /// Who.
        operator: &'a str,
    },
}

/// Why a node will not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// It is not part of the run's mode.
    NotInMode,
    /// The run was rolled back (on request, or by `on_failure = rollback`) before it ran.
    RollbackRequested,
    /// Its `when` is false.
    WhenFalse,
    /// The node with this index, which it depends on, failed.
    Failed(usize),
    /// It fires on break-glass, and nobody broke the glass.
    NoBreakGlass,
}

/// Why an approval was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The run is over.
    RunOver,
    /// The step is not an approval step.
    NotApproval,
    /// The step is not waiting for approval.
    NotWaiting,
    /// The initiator may not approve their own run.
    FourEyes,
    /// The operator acts in none of the required roles.
    Role,
    /// The operator approved already.
    Duplicate,
    /// Whoever asked for a rollback may not approve it.
    OwnRollback,
    /// The approval step does not allow break-glass (`break_glass = true`).
    NoBreakGlass,
}

/// The name under which a rollback asked for by `drover rollback` waits for approval, when the
/// runbook gates the destructive steps it would undo: `drover approve RUN rollback`.
pub const ROLLBACK_APPROVAL: &str = "rollback";

/// What to do, with nodes named by index: the form of [`Action`] that
/// [`Scheduler::on_node_event`] produces. Small and `Copy`: no strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAction {
    /// Run an attempt of a step.
    Execute {
        /// Node index.
        node: usize,
        /// Attempt number (1-based).
        attempt: u32,
    },
    /// An attempt timed out: stop waiting for it.
    Abandon {
        /// Node index.
        node: usize,
        /// Attempt number.
        attempt: u32,
    },
    /// Fire a timer at `at_ms`.
    SetTimer {
        /// Node index.
        node: usize,
        /// Attempt number.
        attempt: u32,
        /// Which timer.
        timer: TimerKind,
        /// When.
        at_ms: u64,
    },
    /// An approval step waits for operators.
    AwaitApproval {
        /// Node index.
        node: usize,
        /// Approvals needed.
        required: u32,
    },
    /// An approval was counted (the operator is the event's).
    ApprovalAccepted {
        /// Node index.
        node: usize,
        /// Approvals still needed.
        remaining: u32,
    },
    /// A denial was counted (the operator is the event's).
    DenialCounted {
        /// Node index.
        node: usize,
        /// Denials still needed to fail the step.
        remaining: u32,
    },
    /// An approval was refused (the operator is the event's).
    ApprovalRefused {
        /// Node index.
        node: usize,
        /// Why.
        reason: Refusal,
    },
    /// A rollback on request waits for approvers: it undoes destructive steps the runbook gates
    /// with approvals, and is held to the strictest of those gates.
    AwaitRollbackApproval {
        /// Approvals needed.
        required: u32,
    },
    /// An approval of the rollback was counted (the operator is the event's).
    RollbackApprovalAccepted {
        /// Approvals still needed.
        remaining: u32,
    },
    /// An approval of the rollback was refused (the operator is the event's).
    RollbackApprovalRefused {
        /// Why.
        reason: Refusal,
    },
    /// An operator broke the glass on this approval step (the operator is the event's); the
    /// step succeeds next.
    BrokeGlass {
        /// Node index.
        node: usize,
    },
    /// A step succeeded.
    StepDone {
        /// Node index.
        node: usize,
    },
    /// A step failed for good; [`Scheduler::error_of`] has the last error.
    StepGaveUp {
        /// Node index.
        node: usize,
    },
    /// A node will not run.
    Skip {
        /// Node index.
        node: usize,
        /// Why.
        reason: SkipReason,
    },
    /// Run a step's compensation.
    Compensate {
        /// Node index.
        node: usize,
    },
    /// A milestone was reached.
    MilestoneReached {
        /// Node index.
        node: usize,
        /// When.
        at_ms: u64,
    },
    /// The run is over.
    Finished {
        /// How it ended.
        outcome: RunOutcome,
    },
}

/// A node's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// Waiting for dependencies.
    Pending,
    /// Ready to run this attempt, waiting for capacity.
    Queued {
        /// Attempt number.
        attempt: u32,
    },
    /// An attempt is in flight.
    Running {
        /// Attempt number.
        attempt: u32,
    },
    /// Waiting out the backoff after a failed attempt.
    Backoff {
        /// The attempt that failed.
        attempt: u32,
    },
    /// Waiting for approvers.
    AwaitingApproval,
    /// Done (milestones: reached).
    Succeeded,
    /// Will not run.
    Skipped,
    /// Failed for good.
    Failed,
    /// Its compensation is running.
    Compensating,
    /// Undone.
    Compensated,
    /// Its compensation failed.
    CompensationFailed,
}

impl Status {
    fn is_done_ok(self) -> bool {
        matches!(
            self,
            Status::Succeeded | Status::Skipped | Status::Compensated
        )
    }

    fn is_failed(self) -> bool {
        matches!(self, Status::Failed | Status::CompensationFailed)
    }

    fn is_open(self) -> bool {
        matches!(
            self,
            Status::Pending
                | Status::Queued { .. }
                | Status::Running { .. }
                | Status::Backoff { .. }
                | Status::AwaitingApproval
        )
    }
}

/// Configuration of a scheduler.
#[derive(Debug, Clone)]
pub struct Config {
    /// The run's mode.
    pub mode: Mode,
    /// Who started the run (for four-eyes approvals).
    pub initiator: String,
    /// Global concurrency limit.
    pub max_parallel: usize,
    /// Per-provider limits (providers not listed: `default_provider_limit`).
    pub provider_limits: BTreeMap<String, usize>,
    /// Limit for providers not in `provider_limits` (the `core` provider is never limited).
    pub default_provider_limit: usize,
    /// Seed of the retry jitter (the run id's hash, so replays agree).
    pub seed: u64,
}

impl Config {
    /// Defaults: 8 steps at once, 4 per cloud provider.
    #[must_use]
    pub fn new(mode: Mode, initiator: impl Into<String>, seed: u64) -> Self {
        Self {
            mode,
            initiator: initiator.into(),
            max_parallel: 8,
            provider_limits: BTreeMap::new(),
            default_provider_limit: 4,
            seed,
        }
    }
}

#[derive(Debug, Clone)]
struct Approval {
    required: u32,
    /// Denials that fail the step.
    denials: u32,
    roles: Vec<String>,
    initiator_may_approve: bool,
    /// An operator the roster marks `break_glass` may satisfy it alone.
    break_glass: bool,
}

#[derive(Debug, Clone)]
struct Node {
    id: String,
    milestone: bool,
    /// Index into the scheduler's providers.
    provider: usize,
    in_mode: bool,
    attempts: u32,
    backoff_ms: u64,
    max_backoff_ms: u64,
    timeout_ms: Option<u64>,
    /// Said after "timed out after …" when the limit is the action's default.
    timeout_note: Option<String>,
    on_failure: OnFailure,
    when: Option<String>,
    approval: Option<Approval>,
    /// Tagged `break_glass`: runs only once someone breaks the glass.
    armed: bool,
    /// The action changes what serves production (its undo needs the same approvals).
    destructive: bool,
    has_compensate: bool,
    /// The action's built-in undo restores the state captured before the first call, so it also
    /// undoes the partial change of an attempt that failed midway.
    undoes_partial: bool,
    context: BTreeMap<String, PlanValue>,
    bindings: BTreeMap<String, drover_dsl::OutputRef>,
    preds: Vec<usize>,
    succs: Vec<usize>,
}

/// The fields of a node read on every event.
#[derive(Debug, Clone, Copy)]
struct Hot {
    /// Index into the scheduler's providers.
    provider: usize,
    timeout_ms: Option<u64>,
    /// Approvals needed (0: not an approval step).
    approvals: u32,
    milestone: bool,
    has_when: bool,
    /// Runs only once someone breaks the glass (tagged `break_glass`).
    armed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Draining(RunOutcome),
    /// A rollback on request waits for its approvals before any undo runs.
    AwaitingRollbackApproval,
    Compensating,
    Done(RunOutcome),
}

/// The approvals a rollback on request needs: the rules of the approval step `node` (the
/// strictest gate upstream of the destructive steps to undo).
#[derive(Debug, Clone)]
struct RollbackGate {
    node: usize,
    /// Who asked (four eyes applies to them).
    requester: String,
    approvers: Vec<String>,
    satisfied: bool,
}

/// Whether two typed operator names are the same person: compared after trimming and
/// case-folding, so `Alice` and `alice ` are one approver (names are typed until operator keys
/// sign approvals).
fn same_operator(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

fn timer_slot(kind: TimerKind) -> usize {
    match kind {
        TimerKind::Retry => 0,
        TimerKind::Timeout => 1,
    }
}

/// Node indices taken smallest first: a sorted vector read from a cursor. Nodes mostly arrive
/// after the ones being taken (successors have later indices in a typical plan), so inserting is
/// a push at the end and taking is O(1).
#[derive(Debug, Clone, Default)]
struct IndexQueue {
    sorted: Vec<usize>,
    head: usize,
}

impl IndexQueue {
    #[inline(always)]
    fn insert(&mut self, i: usize) {
        // Taking the last element clears the vector, so `last` is never a taken one.
        if self.sorted.last().is_none_or(|&l| l < i) {
            self.sorted.push(i);
            return;
        }
        let rest = &self.sorted[self.head..];
        let at = self.head + rest.partition_point(|&x| x < i);
        self.sorted.insert(at, i);
    }

    fn first(&self) -> Option<usize> {
        self.sorted.get(self.head).copied()
    }

    fn pop_first(&mut self) -> Option<usize> {
        let i = self.sorted.get(self.head).copied();
        if i.is_some() {
            self.head += 1;
            if self.head == self.sorted.len() {
                self.clear();
            }
        }
        i
    }

    fn is_empty(&self) -> bool {
        self.head == self.sorted.len()
    }

    fn clear(&mut self) {
        self.sorted.clear();
        self.head = 0;
    }
}

/// The scheduler of one run.
///
/// Nodes are kept by index (plan order) and every per-event structure is indexed, so an event
/// costs work proportional to the nodes it touches and allocates nothing on the common path: the
/// simulator runs millions of steps a second through it. [`Scheduler::reset`] makes a used
/// scheduler fresh again without rebuilding it.
#[derive(Debug, Clone)]
pub struct Scheduler {
    nodes: Vec<Node>,
    /// What every event reads about a node, packed together (`nodes` holds the rest).
    hot: Vec<Hot>,
    /// Predecessors of node `i`: `edges[pred_at[i]..pred_at[i + 1]]`; successors likewise.
    pred_at: Vec<usize>,
    succ_at: Vec<usize>,
    edges: Vec<usize>,
    topo: Vec<usize>,
    index: BTreeMap<String, usize>,
    /// Per provider (by index): the limit on its attempts in flight.
    provider_limit: Vec<usize>,
    status: Vec<Status>,
    /// Per node: its outputs, meaningful where `has_outputs` (kept allocated across resets).
    outputs: Vec<Outputs>,
    has_outputs: Vec<bool>,
    errors: Vec<Option<String>>,
    error_contexts: Vec<Option<Box<drover_schema::ErrorContext>>>,
    approvers: Vec<Vec<String>>,
    /// Per node: who denied it.
    deniers: Vec<Vec<String>>,
    /// Per node: a step tagged `break_glass` fired by a break-glass approval.
    fired: Vec<bool>,
    /// Whether any step is tagged `break_glass`.
    any_armed: bool,
    /// The approvals of a rollback on request, once one was asked for under a gate.
    rollback_gate: Option<RollbackGate>,
    /// Per node: the armed retry and timeout timers, as (attempt, when).
    timers: Vec<[Option<(u32, u64)>; 2]>,
    params: BTreeMap<String, PlanValue>,
    config: Config,
    phase: Phase,
    started: bool,
    /// Pending nodes whose readiness must be re-evaluated (their predecessors changed), smallest
    /// index first; `is_candidate` keeps each in the set once.
    candidates: IndexQueue,
    is_candidate: Vec<bool>,
    /// Per node: how many of its predecessors are not done (succeeded, skipped or undone), and
    /// how many failed for good. Kept by [`Scheduler::set`], so a node is looked at once its last
    /// predecessor is done rather than each time one of them is.
    unmet: Vec<u32>,
    failed_preds: Vec<u32>,
    /// Per node: its number of predecessors (what `unmet` starts from).
    indegree: Vec<u32>,
    /// Per provider: nodes queued for an attempt, waiting for capacity, smallest index first.
    /// Entries are checked when they reach the top (a node no longer queued is dropped then).
    queued: Vec<IndexQueue>,
    /// Attempts in flight, in total and per provider.
    running_total: usize,
    running_per: Vec<usize>,
    /// Nodes not yet in a final state, and compensations in flight.
    open: usize,
    compensating_count: usize,
    /// Reused for translating between [`Event`]/[`Action`] and their node forms.
    scratch: Vec<NodeAction>,
}

fn input_u64(step: &drover_dsl::PlanStep, name: &str) -> Option<i64> {
    match step.inputs.get(name) {
        Some(PlanValue::Int(i)) => Some(*i),
        _ => None,
    }
}

impl Scheduler {
    /// A scheduler for `plan` (which must be acyclic: compiled plans are).
    #[must_use]
    pub fn new(plan: &Plan, config: Config) -> Self {
        let g = &plan.graph;
        let topo: Vec<usize> = petgraph::algo::toposort(g, None)
            .map(|o| o.into_iter().map(|i| i.index()).collect())
            .unwrap_or_else(|_| (0..g.node_count()).collect());
        let mut providers: Vec<String> = vec![String::new()];
        let mut provider_ix = |name: &str| {
            providers.iter().position(|p| p == name).unwrap_or_else(|| {
                providers.push(name.to_owned());
                providers.len() - 1
            })
        };
        let mut nodes = Vec::with_capacity(g.node_count());
        for i in g.node_indices() {
            let mut preds: Vec<usize> = g
                .neighbors_directed(i, Direction::Incoming)
                .map(|p| p.index())
                .collect();
            preds.sort_unstable();
            preds.dedup();
            let mut succs: Vec<usize> = g
                .neighbors_directed(i, Direction::Outgoing)
                .map(|p| p.index())
                .collect();
            succs.sort_unstable();
            succs.dedup();
            let node = match &g[i] {
                PlanNode::Milestone(m) => Node {
                    id: m.id.clone(),
                    milestone: true,
                    provider: 0,
                    in_mode: m.modes.contains(&config.mode),
                    attempts: 1,
                    backoff_ms: 0,
                    max_backoff_ms: 0,
                    timeout_ms: None,
                    timeout_note: None,
                    on_failure: OnFailure::Abort,
                    when: None,
                    approval: None,
                    armed: false,
                    destructive: false,
                    has_compensate: false,
                    undoes_partial: false,
                    context: BTreeMap::new(),
                    bindings: BTreeMap::new(),
                    preds,
                    succs,
                },
                PlanNode::Step(s) => Node {
                    id: s.id.clone(),
                    milestone: false,
                    provider: provider_ix(&s.provider),
                    in_mode: s.modes.contains(&config.mode),
                    attempts: s.retry.map_or(1, |r| r.attempts.max(1)),
                    backoff_ms: s.retry.map_or(0, |r| r.backoff_ms),
                    max_backoff_ms: s.retry.map_or(0, |r| r.max_backoff_ms),
                    timeout_ms: s.timeout_ms,
                    timeout_note: s.timeout_is_default.then(|| {
                        format!(
                            " (the default timeout of {}; set `timeout` on the step to change it)",
                            s.action
                        )
                    }),
                    on_failure: s.on_failure,
                    when: s.when.clone(),
                    approval: (s.role == Role::Approval).then(|| Approval {
                        denials: input_u64(s, "denials")
                            .and_then(|n| u32::try_from(n).ok())
                            .unwrap_or(1)
                            .max(1),
                        required: input_u64(s, "approvers")
                            .and_then(|n| u32::try_from(n).ok())
                            .unwrap_or(1)
                            .max(1),
                        roles: match s.inputs.get("roles") {
                            Some(PlanValue::List(l)) => l
                                .iter()
                                .filter_map(|v| match v {
                                    PlanValue::String(s) => Some(s.clone()),
                                    _ => None,
                                })
                                .collect(),
                            _ => Vec::new(),
                        },
                        initiator_may_approve: matches!(
                            s.inputs.get("initiator_may_approve"),
                            Some(PlanValue::Bool(true))
                        ),
                        break_glass: matches!(
                            s.inputs.get("break_glass"),
                            Some(PlanValue::Bool(true))
                        ),
                    }),
                    armed: s.fires_on_break_glass(),
                    destructive: s.effect == drover_schema::Effect::Destructive,
                    has_compensate: s.compensate.is_some() || s.builtin_undo,
                    undoes_partial: s.compensate.is_none() && s.builtin_undo,
                    context: s.context.clone(),
                    bindings: s.bindings.clone(),
                    preds,
                    succs,
                },
            };
            nodes.push(node);
        }
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect();
        let n = nodes.len();
        let hot = nodes
            .iter()
            .map(|nd| Hot {
                provider: nd.provider,
                timeout_ms: nd.timeout_ms,
                approvals: nd.approval.as_ref().map_or(0, |a| a.required),
                milestone: nd.milestone,
                has_when: nd.when.is_some(),
                armed: nd.armed,
            })
            .collect::<Vec<Hot>>();
        let any_armed = hot.iter().any(|h| h.armed);
        let mut edges = Vec::new();
        let mut pred_at = Vec::with_capacity(n + 1);
        let mut succ_at = Vec::with_capacity(n + 1);
        for nd in &mut nodes {
            pred_at.push(edges.len());
            edges.append(&mut nd.preds);
        }
        pred_at.push(edges.len());
        for nd in &mut nodes {
            succ_at.push(edges.len());
            edges.append(&mut nd.succs);
        }
        succ_at.push(edges.len());
        let mut config = config;
        if let Some(mp) = plan.runbook.max_parallel {
            config.max_parallel = config.max_parallel.min(mp.max(1) as usize);
        }
        // Milestones (provider "") and `core` steps are never limited.
        let provider_limit = providers
            .iter()
            .map(|p| match p.as_str() {
                "" | "core" => usize::MAX,
                p => config
                    .provider_limits
                    .get(p)
                    .copied()
                    .unwrap_or(config.default_provider_limit),
            })
            .collect();
        let np = providers.len();
        let indegree: Vec<u32> = pred_at
            .windows(2)
            .map(|w| u32::try_from(w[1] - w[0]).unwrap_or(u32::MAX))
            .collect();
        Self {
            nodes,
            hot,
            pred_at,
            succ_at,
            edges,
            topo,
            index,
            provider_limit,
            status: vec![Status::Pending; n],
            outputs: vec![Outputs::new(); n],
            has_outputs: vec![false; n],
            errors: vec![None; n],
            error_contexts: vec![None; n],
            approvers: vec![Vec::new(); n],
            deniers: vec![Vec::new(); n],
            fired: vec![false; n],
            any_armed,
            rollback_gate: None,
            timers: vec![[None; 2]; n],
            params: plan.params.clone(),
            config,
            phase: Phase::Running,
            started: false,
            candidates: IndexQueue::default(),
            is_candidate: vec![false; n],
            unmet: indegree.clone(),
            indegree,
            failed_preds: vec![0; n],
            queued: vec![IndexQueue::default(); np],
            running_total: 0,
            running_per: vec![0; np],
            open: n,
            compensating_count: 0,
            scratch: Vec::new(),
        }
    }

    /// Forgets the run: every node pending again and no timer set, exactly as if freshly built
    /// from the same plan, with a new jitter `seed`. Allocates nothing.
    pub fn reset(&mut self, seed: u64) {
        self.config.seed = seed;
        self.status.fill(Status::Pending);
        self.has_outputs.fill(false);
        for o in &mut self.outputs {
            if !o.is_empty() {
                o.clear();
            }
        }
        self.errors.fill(None);
        self.error_contexts.fill(None);
        for a in &mut self.approvers {
            a.clear();
        }
        for a in &mut self.deniers {
            a.clear();
        }
        self.fired.fill(false);
        self.rollback_gate = None;
        self.timers.fill([None; 2]);
        self.phase = Phase::Running;
        self.started = false;
        self.candidates.clear();
        self.is_candidate.fill(false);
        self.unmet.copy_from_slice(&self.indegree);
        self.failed_preds.fill(0);
        for q in &mut self.queued {
            q.clear();
        }
        self.running_total = 0;
        self.running_per.fill(0);
        self.open = self.nodes.len();
        self.compensating_count = 0;
    }

    /// Number of nodes (indices run from 0 to this, in plan order).
    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the plan has no nodes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The id of node `i`.
    #[must_use]
    pub fn id(&self, i: usize) -> &str {
        &self.nodes[i].id
    }

    #[inline(always)]
    fn candidate(&mut self, i: usize) {
        if !self.is_candidate[i] {
            self.is_candidate[i] = true;
            self.candidates.insert(i);
        }
    }

    /// Changes a node's state, keeping the counters and work sets in step. Every state change goes
    /// through here, so each event costs work proportional to the nodes it touches, not the plan.
    #[inline(always)]
    fn set(&mut self, i: usize, new: Status) {
        let old = std::mem::replace(&mut self.status[i], new);
        let p = self.hot[i].provider;
        if let Status::Running { .. } = old {
            self.running_total -= 1;
            self.running_per[p] -= 1;
        }
        if let Status::Running { .. } = new {
            self.running_total += 1;
            self.running_per[p] += 1;
        }
        if let (Status::Queued { .. }, false) = (new, matches!(old, Status::Queued { .. })) {
            self.queued[p].insert(i);
        }
        if old == Status::Compensating {
            self.compensating_count -= 1;
        }
        if new == Status::Compensating {
            self.compensating_count += 1;
        }
        match (old.is_open(), new.is_open()) {
            (true, false) => self.open -= 1,
            (false, true) => self.open += 1,
            _ => {}
        }
        let (was_ok, now_ok) = (old.is_done_ok(), new.is_done_ok());
        let (was_failed, now_failed) = (old.is_failed(), new.is_failed());
        // Successors' counts change when either state is done or failed; candidates only when new is.
        if was_ok || now_ok || was_failed || now_failed {
            for k in self.succ_at[i]..self.succ_at[i + 1] {
                let s = self.edges[k];
                match (was_ok, now_ok) {
                    (false, true) => self.unmet[s] -= 1,
                    (true, false) => self.unmet[s] += 1,
                    _ => {}
                }
                match (was_failed, now_failed) {
                    (false, true) => self.failed_preds[s] += 1,
                    (true, false) => self.failed_preds[s] -= 1,
                    _ => {}
                }
                // Only a node with every predecessor done, or one failed, has anything to decide.
                if (now_ok || now_failed) && (self.unmet[s] == 0 || self.failed_preds[s] > 0) {
                    self.candidate(s);
                }
            }
        }
    }

    /// Every node's id and state, in plan order.
    #[must_use]
    pub fn snapshot(&self) -> Vec<(String, Status)> {
        self.nodes
            .iter()
            .zip(&self.status)
            .map(|(n, s)| (n.id.clone(), *s))
            .collect()
    }

    /// A node's state.
    #[must_use]
    pub fn status(&self, id: &str) -> Option<&Status> {
        self.index.get(id).map(|&i| &self.status[i])
    }

    /// A succeeded step's outputs.
    #[must_use]
    pub fn outputs(&self, id: &str) -> Option<&Outputs> {
        self.index
            .get(id)
            .and_then(|&i| self.has_outputs[i].then(|| &self.outputs[i]))
    }

    /// Every succeeded step's outputs, by id.
    #[must_use]
    pub fn all_outputs(&self) -> BTreeMap<String, Outputs> {
        self.nodes
            .iter()
            .zip(self.outputs.iter().zip(&self.has_outputs))
            .filter(|(_, (_, has))| **has)
            .map(|(n, (o, _))| (n.id.clone(), o.clone()))
            .collect()
    }

    /// The outputs of the named steps that have any (cheaper than [`Scheduler::all_outputs`]).
    #[must_use]
    pub fn outputs_of<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> BTreeMap<String, Outputs> {
        ids.into_iter()
            .filter_map(|id| self.outputs(id).map(|o| (id.to_owned(), o.clone())))
            .collect()
    }

    /// A failed step's last error.
    #[must_use]
    pub fn error(&self, id: &str) -> Option<&str> {
        self.index.get(id).and_then(|&i| self.errors[i].as_deref())
    }

    /// Where a step's last failed attempt failed, as data, when its adapter said.
    #[must_use]
    pub fn error_context(&self, id: &str) -> Option<&drover_schema::ErrorContext> {
        self.index
            .get(id)
            .and_then(|&i| self.error_contexts[i].as_deref())
    }

    /// Timers that are set: (step, attempt, kind, when). Resume re-arms them.
    #[must_use]
    pub fn pending_timers(&self) -> Vec<(String, u32, TimerKind, u64)> {
        let mut v = Vec::new();
        for (i, slots) in self.timers.iter().enumerate() {
            for kind in [TimerKind::Retry, TimerKind::Timeout] {
                if let Some((attempt, at)) = slots[timer_slot(kind)] {
                    v.push((self.nodes[i].id.clone(), attempt, kind, at));
                }
            }
        }
        v
    }

    /// Steps with an attempt in flight: after a crash their outcome is unknown.
    #[must_use]
    pub fn in_flight(&self) -> Vec<(String, u32)> {
        self.status
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Status::Running { attempt } => Some((self.nodes[i].id.clone(), *attempt)),
                _ => None,
            })
            .collect()
    }

    /// Steps whose compensation is in flight.
    #[must_use]
    pub fn compensating(&self) -> Vec<String> {
        self.status
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == Status::Compensating)
            .map(|(i, _)| self.nodes[i].id.clone())
            .collect()
    }

    /// Approval steps waiting for operators ([`ROLLBACK_APPROVAL`] while a rollback on request
    /// waits for its approvals).
    #[must_use]
    pub fn awaiting_approval(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .status
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == Status::AwaitingApproval)
            .map(|(i, _)| self.nodes[i].id.clone())
            .collect();
        if self.phase == Phase::AwaitingRollbackApproval {
            out.push(ROLLBACK_APPROVAL.to_owned());
        }
        out
    }

    /// Who asked for the rollback waiting for approval (four eyes bars them from approving it).
    #[must_use]
    pub fn rollback_requester(&self) -> Option<&str> {
        self.rollback_gate.as_ref().map(|g| g.requester.as_str())
    }

    /// The approvals of a rollback on request held by a gate, once one was asked for.
    #[must_use]
    pub fn rollback_approval(&self) -> Option<crate::run_record::RollbackApproval> {
        self.rollback_gate
            .as_ref()
            .map(|g| crate::run_record::RollbackApproval {
                requested_by: g.requester.clone(),
                gate: self.nodes[g.node].id.clone(),
                required: self.hot[g.node].approvals,
                approved_by: g.approvers.clone(),
                approved: g.satisfied,
            })
    }

    /// The approval step whose rules a rollback on request is held to, once one was asked for
    /// under a gate.
    #[must_use]
    pub fn rollback_gate_step(&self) -> Option<&str> {
        self.rollback_gate
            .as_ref()
            .map(|g| self.nodes[g.node].id.as_str())
    }

    /// How the run ended, once it has.
    #[must_use]
    pub fn outcome(&self) -> Option<RunOutcome> {
        match self.phase {
            Phase::Done(o) => Some(o),
            _ => None,
        }
    }

    /// Feeds one event; returns what to do. Steps are named by id: this is the journaled form,
    /// translated to and from [`Scheduler::on_node_event`], which holds the rules.
    pub fn on_event(&mut self, event: &Event, now: u64) -> Vec<Action> {
        let idx = |s: &Self, id: &str| s.index.get(id).copied();
        let ev = match event {
            Event::Started => NodeEvent::Started,
            Event::Resumed => NodeEvent::Resumed,
            Event::Interrupted => NodeEvent::Interrupted,
            Event::RollbackRequested { operator } => NodeEvent::RollbackRequested { operator },
            Event::Approved {
                step,
                operator,
                roles,
            } if step == ROLLBACK_APPROVAL
                && (self.phase == Phase::AwaitingRollbackApproval
                    || !self.index.contains_key(step)) =>
            {
                NodeEvent::RollbackApproved { operator, roles }
            }
            Event::StepSucceeded {
                step,
                attempt,
                outputs,
            } => match idx(self, step) {
                Some(node) => NodeEvent::Succeeded {
                    node,
                    attempt: *attempt,
                    outputs: Some(outputs),
                },
                None => return Vec::new(),
            },
            Event::StepFailed {
                step,
                attempt,
                error,
                transient,
                context,
            } => match idx(self, step) {
                Some(node) => {
                    if self.status[node] == (Status::Running { attempt: *attempt }) {
                        self.error_contexts[node].clone_from(context);
                    }
                    NodeEvent::Failed {
                        node,
                        attempt: *attempt,
                        error,
                        transient: *transient,
                    }
                }
                None => return Vec::new(),
            },
            Event::TimerFired {
                step,
                attempt,
                timer,
            } => match idx(self, step) {
                Some(node) => NodeEvent::TimerFired {
                    node,
                    attempt: *attempt,
                    timer: *timer,
                },
                None => return Vec::new(),
            },
            Event::Approved {
                step,
                operator,
                roles,
            } => match idx(self, step) {
                Some(node) => NodeEvent::Approved {
                    node,
                    operator,
                    roles,
                },
                None => {
                    let reason = if matches!(self.phase, Phase::Done(_)) {
                        "the run is over"
                    } else {
                        "no such step"
                    };
                    return vec![Action::ApprovalRefused {
                        step: step.clone(),
                        operator: operator.clone(),
                        reason: reason.into(),
                    }];
                }
            },
            Event::Denied {
                step,
                operator,
                roles,
                reason,
            } => match idx(self, step) {
                Some(node) => NodeEvent::Denied {
                    node,
                    operator,
                    roles,
                    reason,
                },
                None => {
                    return vec![Action::ApprovalRefused {
                        step: step.clone(),
                        operator: operator.clone(),
                        reason: "no such step".into(),
                    }];
                }
            },
            Event::BreakGlass { step, operator, .. } => match idx(self, step) {
                Some(node) => NodeEvent::BreakGlass { node, operator },
                None => {
                    return vec![Action::ApprovalRefused {
                        step: step.clone(),
                        operator: operator.clone(),
                        reason: "no such step".into(),
                    }];
                }
            },
            Event::CompensationFinished { step, error } => match idx(self, step) {
                Some(node) => NodeEvent::CompensationFinished {
                    node,
                    error: error.as_deref(),
                },
                None => return Vec::new(),
            },
        };
        let operator = match event {
            Event::Approved { operator, .. }
            | Event::Denied { operator, .. }
            | Event::BreakGlass { operator, .. }
            | Event::RollbackRequested { operator } => operator.as_str(),
            _ => "",
        };
        let mut acts = std::mem::take(&mut self.scratch);
        acts.clear();
        self.on_node_event(ev, now, &mut acts);
        let out = acts.drain(..).map(|a| self.action(a, operator)).collect();
        self.scratch = acts;
        out
    }

    /// A node's last error (a failed step's, or a failed compensation's).
    #[must_use]
    pub fn error_of(&self, i: usize) -> Option<&str> {
        self.errors.get(i).and_then(|e| e.as_deref())
    }

    /// Why an approval of node `i` was refused, in words.
    #[must_use]
    pub fn refusal(&self, i: usize, reason: Refusal) -> String {
        match reason {
            Refusal::RunOver => "the run is over".into(),
            Refusal::NotApproval => "not an approval step".into(),
            Refusal::NotWaiting => "the step is not waiting for approval".into(),
            Refusal::FourEyes => {
                "four eyes: the operator who started the run may not approve it".into()
            }
            Refusal::Role => format!(
                "approving needs one of the roles {}",
                self.nodes[i]
                    .approval
                    .as_ref()
                    .map(|p| p.roles.join(", "))
                    .unwrap_or_default()
            ),
            Refusal::Duplicate => {
                "already approved by this operator; approvers must be distinct".into()
            }
            Refusal::OwnRollback => {
                "four eyes: the operator who asked for the rollback may not approve it".into()
            }
            Refusal::NoBreakGlass => format!(
                "`{}` does not allow break-glass: the runbook must say `break_glass = true` on it",
                self.nodes[i].id
            ),
        }
    }

    /// The id-named form of a node action; `operator` is the approving event's.
    fn action(&self, a: NodeAction, operator: &str) -> Action {
        let id = |i: usize| self.nodes[i].id.clone();
        match a {
            NodeAction::Execute { node, attempt } => Action::Execute {
                step: id(node),
                attempt,
            },
            NodeAction::Abandon { node, attempt } => Action::Abandon {
                step: id(node),
                attempt,
            },
            NodeAction::SetTimer {
                node,
                attempt,
                timer,
                at_ms,
            } => Action::SetTimer {
                step: id(node),
                attempt,
                timer,
                at_ms,
            },
            NodeAction::AwaitApproval { node, required } => Action::AwaitApproval {
                step: id(node),
                required,
            },
            NodeAction::ApprovalAccepted { node, remaining } => Action::ApprovalAccepted {
                step: id(node),
                operator: operator.to_owned(),
                remaining,
            },
            NodeAction::ApprovalRefused { node, reason } => Action::ApprovalRefused {
                step: id(node),
                operator: operator.to_owned(),
                reason: self.refusal(node, reason),
            },
            NodeAction::AwaitRollbackApproval { required } => Action::AwaitApproval {
                step: ROLLBACK_APPROVAL.into(),
                required,
            },
            NodeAction::RollbackApprovalAccepted { remaining } => Action::ApprovalAccepted {
                step: ROLLBACK_APPROVAL.into(),
                operator: operator.to_owned(),
                remaining,
            },
            NodeAction::RollbackApprovalRefused { reason } => Action::ApprovalRefused {
                step: ROLLBACK_APPROVAL.into(),
                operator: operator.to_owned(),
                reason: match reason {
                    Refusal::NotWaiting => "no rollback of this run is waiting for approval".into(),
                    r => self.refusal(self.rollback_gate.as_ref().map_or(0, |g| g.node), r),
                },
            },
            NodeAction::DenialCounted { node, remaining } => Action::Denied {
                step: id(node),
                operator: operator.to_owned(),
                remaining,
            },
            NodeAction::BrokeGlass { node } => Action::BrokeGlass {
                step: id(node),
                operator: operator.to_owned(),
            },
            NodeAction::StepDone { node } => Action::StepDone { step: id(node) },
            NodeAction::StepGaveUp { node } => Action::StepGaveUp {
                step: id(node),
                error: self.error_of(node).unwrap_or_default().to_owned(),
            },
            NodeAction::Skip { node, reason } => Action::Skip {
                step: id(node),
                reason: self.skip_reason(reason),
            },
            NodeAction::Compensate { node } => Action::Compensate { step: id(node) },
            NodeAction::MilestoneReached { node, at_ms } => Action::MilestoneReached {
                milestone: id(node),
                at_ms,
            },
            NodeAction::Finished { outcome } => Action::Finished { outcome },
        }
    }

    /// Why a node was skipped, in words.
    #[must_use]
    pub fn skip_reason(&self, reason: SkipReason) -> String {
        match reason {
            SkipReason::NotInMode => format!("not in {} mode", mode_name(self.config.mode)),
            SkipReason::WhenFalse => "`when` is false".into(),
            SkipReason::RollbackRequested => "the run was rolled back before it ran".into(),
            SkipReason::Failed(f) => format!("`{}` failed", self.nodes[f].id),
            SkipReason::NoBreakGlass => "nobody broke the glass".into(),
        }
    }

    /// Feeds one event about nodes named by index; appends what to do to `out`. Every
    /// scheduling rule is applied here.
    pub fn on_node_event(&mut self, event: NodeEvent<'_>, now: u64, out: &mut Vec<NodeAction>) {
        if matches!(self.phase, Phase::Done(RunOutcome::Interrupted)) && event == NodeEvent::Resumed
        {
            // A rollback interrupted while it waited for approval keeps waiting.
            if let Some(g) = self.rollback_gate.as_ref().filter(|g| !g.satisfied) {
                let required = self.hot[g.node].approvals;
                self.phase = Phase::AwaitingRollbackApproval;
                out.push(NodeAction::AwaitRollbackApproval { required });
                return;
            }
            self.phase = Phase::Running;
        }
        if let NodeEvent::RollbackRequested { operator } = event {
            self.request_rollback(operator, out);
            return;
        }
        if matches!(self.phase, Phase::Done(_)) {
            match event {
                NodeEvent::Approved { node, .. }
                | NodeEvent::Denied { node, .. }
                | NodeEvent::BreakGlass { node, .. } => {
                    out.push(NodeAction::ApprovalRefused {
                        node,
                        reason: Refusal::RunOver,
                    });
                }
                NodeEvent::RollbackApproved { .. } => {
                    out.push(NodeAction::RollbackApprovalRefused {
                        reason: Refusal::RunOver,
                    });
                }
                _ => {}
            }
            return;
        }
        match event {
            NodeEvent::Started | NodeEvent::Resumed => {
                if event == NodeEvent::Resumed
                    && matches!(self.phase, Phase::Draining(RunOutcome::Interrupted))
                {
                    self.phase = Phase::Running;
                }
                // Every pending node is re-evaluated at start and on resume.
                for i in 0..self.nodes.len() {
                    if self.status[i] == Status::Pending {
                        self.candidate(i);
                    }
                }
                if !self.started {
                    self.started = true;
                    for i in 0..self.nodes.len() {
                        if !self.nodes[i].in_mode {
                            self.set(i, Status::Skipped);
                            out.push(NodeAction::Skip {
                                node: i,
                                reason: SkipReason::NotInMode,
                            });
                        }
                    }
                }
            }
            NodeEvent::Succeeded {
                node: i,
                attempt,
                outputs,
            } => {
                if i < self.nodes.len() && self.status[i] == (Status::Running { attempt }) {
                    self.timers[i][timer_slot(TimerKind::Timeout)] = None;
                    self.set(i, Status::Succeeded);
                    match outputs {
                        Some(o) => self.outputs[i].clone_from(o),
                        None if !self.outputs[i].is_empty() => self.outputs[i].clear(),
                        None => {}
                    }
                    self.has_outputs[i] = true;
                    out.push(NodeAction::StepDone { node: i });
                }
            }
            NodeEvent::Failed {
                node: i,
                attempt,
                error,
                transient,
            } => {
                if i < self.nodes.len() && self.status[i] == (Status::Running { attempt }) {
                    self.timers[i][timer_slot(TimerKind::Timeout)] = None;
                    self.fail_attempt(i, attempt, error, transient, now, out);
                }
            }
            NodeEvent::TimerFired {
                node: i,
                attempt,
                timer,
            } => {
                let slot = timer_slot(timer);
                let armed = self.timers.get(i).and_then(|t| t[slot]).map(|(a, _)| a);
                if armed == Some(attempt) {
                    self.timers[i][slot] = None;
                    match timer {
                        TimerKind::Retry if self.status[i] == (Status::Backoff { attempt }) => {
                            self.set(
                                i,
                                Status::Queued {
                                    attempt: attempt + 1,
                                },
                            );
                        }
                        TimerKind::Timeout if self.status[i] == (Status::Running { attempt }) => {
                            out.push(NodeAction::Abandon { node: i, attempt });
                            let msg = format!(
                                "attempt {attempt} timed out after {}{}",
                                drover_dsl::format_duration(self.nodes[i].timeout_ms.unwrap_or(0)),
                                self.nodes[i].timeout_note.as_deref().unwrap_or("")
                            );
                            self.error_contexts[i] = None;
                            self.fail_attempt(i, attempt, &msg, true, now, out);
                        }
                        _ => {}
                    }
                }
            }
            NodeEvent::Approved {
                node,
                operator,
                roles,
            } => self.approve(node, operator, roles, out),
            NodeEvent::CompensationFinished { node: i, error } => {
                if i < self.nodes.len() && self.status[i] == Status::Compensating {
                    let new = if error.is_some() {
                        Status::CompensationFailed
                    } else {
                        Status::Compensated
                    };
                    self.set(i, new);
                    if let Some(e) = error {
                        self.errors[i] = Some(e.to_owned());
                        self.error_contexts[i] = None;
                    }
                }
            }
            NodeEvent::Interrupted => {
                if self.phase == Phase::Running {
                    self.phase = Phase::Draining(RunOutcome::Interrupted);
                } else if self.phase == Phase::AwaitingRollbackApproval {
                    // Nothing runs while the rollback waits: the wait itself is interrupted, and
                    // `drover rollback` asks again (approvals given so far still count).
                    self.finish(RunOutcome::Interrupted, out);
                    return;
                }
            }
            NodeEvent::RollbackApproved { operator, roles } => {
                self.approve_rollback(operator, roles, out);
            }
            NodeEvent::Denied {
                node,
                operator,
                roles,
                reason,
            } => self.deny(node, operator, roles, reason, now, out),
            NodeEvent::BreakGlass { node, operator } => self.break_glass(node, operator, out),
            NodeEvent::RollbackRequested { .. } => {}
        }
        if self.started {
            self.advance(now, out);
        }
    }

    fn fail_attempt(
        &mut self,
        i: usize,
        attempt: u32,
        error: &str,
        transient: bool,
        now: u64,
        out: &mut Vec<NodeAction>,
    ) {
        self.errors[i] = Some(error.to_owned());
        let (attempts, on_failure) = (self.nodes[i].attempts, self.nodes[i].on_failure);
        if transient && attempt < attempts && self.phase == Phase::Running {
            let delay = self.backoff(i, attempt);
            self.set(i, Status::Backoff { attempt });
            let at = now.saturating_add(delay);
            self.timers[i][timer_slot(TimerKind::Retry)] = Some((attempt, at));
            out.push(NodeAction::SetTimer {
                node: i,
                attempt,
                timer: TimerKind::Retry,
                at_ms: at,
            });
            return;
        }
        self.set(i, Status::Failed);
        out.push(NodeAction::StepGaveUp { node: i });
        match on_failure {
            OnFailure::Continue => {}
            OnFailure::Abort => self.begin_drain(RunOutcome::Failed),
            OnFailure::Rollback => self.begin_drain(RunOutcome::RolledBack),
        }
    }

    fn begin_drain(&mut self, why: RunOutcome) {
        match self.phase {
            Phase::Running | Phase::Draining(RunOutcome::Interrupted) => {
                self.phase = Phase::Draining(why)
            }
            Phase::Draining(RunOutcome::Failed) if why == RunOutcome::RolledBack => {
                self.phase = Phase::Draining(why)
            }
            _ => {}
        }
    }

    /// Exponential backoff with deterministic jitter: `min(backoff · 2^(attempt-1), max)` scaled
    /// by a factor in [0.5, 1) derived from the seed, the step and the attempt.
    fn backoff(&self, i: usize, attempt: u32) -> u64 {
        let n = &self.nodes[i];
        let exp = n
            .backoff_ms
            .saturating_mul(1u64 << (attempt.saturating_sub(1)).min(32));
        let base = exp.min(n.max_backoff_ms.max(n.backoff_ms));
        let mut x = self.config.seed
            ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ u64::from(attempt).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 31;
        x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 29;
        let frac = x % 1000;
        base / 2 + base / 2 * frac / 1000
    }

    /// Counts a denial of approval step `i`; once its `denials` are reached the step fails
    /// (and the run follows the step's `on_failure`). Anyone holding a required role may deny,
    /// the initiator included: stopping is always allowed. Each operator denies once.
    fn deny(
        &mut self,
        i: usize,
        operator: &str,
        roles: &[String],
        reason: &str,
        now: u64,
        out: &mut Vec<NodeAction>,
    ) {
        if i >= self.nodes.len() {
            return;
        }
        let refused = match self.nodes[i].approval.as_ref() {
            None => Some(Refusal::NotApproval),
            Some(_) if self.status[i] != Status::AwaitingApproval => Some(Refusal::NotWaiting),
            Some(p) if !p.roles.is_empty() && !roles.iter().any(|r| p.roles.contains(r)) => {
                Some(Refusal::Role)
            }
            Some(_) if self.deniers[i].iter().any(|a| same_operator(a, operator)) => {
                Some(Refusal::Duplicate)
            }
            Some(_) => None,
        };
        if let Some(reason) = refused {
            out.push(NodeAction::ApprovalRefused { node: i, reason });
            return;
        }
        self.deniers[i].push(operator.to_owned());
        let needed = self.nodes[i].approval.as_ref().map_or(1, |p| p.denials);
        let have = u32::try_from(self.deniers[i].len()).unwrap_or(u32::MAX);
        let remaining = needed.saturating_sub(have);
        out.push(NodeAction::DenialCounted { node: i, remaining });
        if remaining == 0 {
            let error = format!("denied by {}: {reason}", self.deniers[i].join(", "));
            self.fail_attempt(i, 0, &error, false, now, out);
        }
    }

    fn approve(&mut self, i: usize, operator: &str, roles: &[String], out: &mut Vec<NodeAction>) {
        if i >= self.nodes.len() {
            return;
        }
        let refused = match self.nodes[i].approval.as_ref() {
            None => Some(Refusal::NotApproval),
            Some(_) if self.status[i] != Status::AwaitingApproval => Some(Refusal::NotWaiting),
            Some(p)
                if same_operator(operator, &self.config.initiator) && !p.initiator_may_approve =>
            {
                Some(Refusal::FourEyes)
            }
            Some(p) if !p.roles.is_empty() && !roles.iter().any(|r| p.roles.contains(r)) => {
                Some(Refusal::Role)
            }
            Some(_) if self.approvers[i].iter().any(|a| same_operator(a, operator)) => {
                Some(Refusal::Duplicate)
            }
            Some(_) => None,
        };
        if let Some(reason) = refused {
            out.push(NodeAction::ApprovalRefused { node: i, reason });
            return;
        }
        let required = self.hot[i].approvals;
        self.approvers[i].push(operator.to_owned());
        let have = u32::try_from(self.approvers[i].len()).unwrap_or(u32::MAX);
        let remaining = required.saturating_sub(have);
        out.push(NodeAction::ApprovalAccepted { node: i, remaining });
        if remaining == 0 {
            self.set(i, Status::Succeeded);
            let mut o = Outputs::new();
            o.insert("approved_by".into(), serde_json::json!(self.approvers[i]));
            self.outputs[i] = o;
            self.has_outputs[i] = true;
            out.push(NodeAction::StepDone { node: i });
        }
    }

    /// One operator satisfies approval step `i` alone, when it allows break-glass; every step
    /// tagged `break_glass` then fires (once its own dependencies are done).
    fn break_glass(&mut self, i: usize, operator: &str, out: &mut Vec<NodeAction>) {
        if i >= self.nodes.len() {
            return;
        }
        let refused = match self.nodes[i].approval.as_ref() {
            None => Some(Refusal::NotApproval),
            Some(_) if self.status[i] != Status::AwaitingApproval => Some(Refusal::NotWaiting),
            Some(p) if !p.break_glass => Some(Refusal::NoBreakGlass),
            Some(_) => None,
        };
        if let Some(reason) = refused {
            out.push(NodeAction::ApprovalRefused { node: i, reason });
            return;
        }
        self.approvers[i].push(operator.to_owned());
        out.push(NodeAction::BrokeGlass { node: i });
        self.set(i, Status::Succeeded);
        let mut o = Outputs::new();
        o.insert("approved_by".into(), serde_json::json!(self.approvers[i]));
        o.insert("break_glass".into(), serde_json::json!(operator));
        self.outputs[i] = o;
        self.has_outputs[i] = true;
        out.push(NodeAction::StepDone { node: i });
        for j in 0..self.nodes.len() {
            if self.hot[j].armed && !self.fired[j] {
                self.fired[j] = true;
                if self.status[j] == Status::Pending {
                    self.candidate(j);
                }
            }
        }
    }

    /// Whether every node still open is a `break_glass` step nobody fired (nothing else left).
    fn only_unfired_open(&self) -> bool {
        let unfired = (0..self.status.len())
            .filter(|&j| self.hot[j].armed && !self.fired[j] && self.status[j] == Status::Pending)
            .count();
        unfired == self.open
    }

    fn when_holds(&self, i: usize) -> Result<bool, String> {
        if !self.hot[i].has_when {
            return Ok(true);
        }
        let Some(expr) = &self.nodes[i].when else {
            return Ok(true);
        };
        let env = minijinja::Environment::new();
        let e = env
            .compile_expression(expr)
            .map_err(|e| format!("`when` does not parse: {e}"))?;
        let n = &self.nodes[i];
        let outputs = self.outputs_of(n.bindings.values().map(|r| r.step.as_str()));
        let ctx = crate::template_context::context(
            &self.params,
            self.config.mode,
            &n.context,
            &n.bindings,
            &outputs,
            None,
        );
        e.eval(&ctx)
            .map(|v| v.is_true())
            .map_err(|e| format!("`when` failed: {e}"))
    }

    /// Whether every predecessor of `i` is done, and whether one failed, read from their states
    /// (what the counts kept by [`Scheduler::set`] must agree with; checked in debug builds).
    fn scan_preds(&self, i: usize) -> (bool, bool) {
        let preds = &self.edges[self.pred_at[i]..self.pred_at[i + 1]];
        (
            preds.iter().all(|&p| self.status[p].is_done_ok()),
            preds.iter().any(|&p| self.status[p].is_failed()),
        )
    }

    fn advance(&mut self, now: u64, out: &mut Vec<NodeAction>) {
        loop {
            while let Some(i) = self.candidates.pop_first() {
                self.is_candidate[i] = false;
                if self.status[i] != Status::Pending || (self.hot[i].armed && !self.fired[i]) {
                    continue;
                }
                // The first predecessor that failed (in plan order of the edges), if any did.
                let failed = if self.failed_preds[i] > 0 {
                    self.edges[self.pred_at[i]..self.pred_at[i + 1]]
                        .iter()
                        .copied()
                        .find(|&p| self.status[p].is_failed())
                } else {
                    None
                };
                let ready = self.unmet[i] == 0;
                debug_assert_eq!(
                    (ready, failed.is_some()),
                    self.scan_preds(i),
                    "the predecessor counts of {} drifted",
                    self.nodes[i].id
                );
                if let Some(f) = failed {
                    if self.phase == Phase::Running || self.hot[i].milestone {
                        self.set(i, Status::Skipped);
                        out.push(NodeAction::Skip {
                            node: i,
                            reason: SkipReason::Failed(f),
                        });
                    }
                    continue;
                }
                if !ready {
                    continue;
                }
                if self.hot[i].milestone {
                    self.set(i, Status::Succeeded);
                    out.push(NodeAction::MilestoneReached {
                        node: i,
                        at_ms: now,
                    });
                    continue;
                }
                if self.phase != Phase::Running {
                    continue;
                }
                match self.when_holds(i) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.set(i, Status::Skipped);
                        out.push(NodeAction::Skip {
                            node: i,
                            reason: SkipReason::WhenFalse,
                        });
                        continue;
                    }
                    Err(e) => {
                        self.set(i, Status::Running { attempt: 1 });
                        self.error_contexts[i] = None;
                        self.fail_attempt(i, 1, &e, false, now, out);
                        continue;
                    }
                }
                if let required @ 1.. = self.hot[i].approvals {
                    self.set(i, Status::AwaitingApproval);
                    out.push(NodeAction::AwaitApproval { node: i, required });
                    continue;
                }
                self.set(i, Status::Queued { attempt: 1 });
            }
            if self.phase != Phase::Running
                || !self.start_queued(now, out)
                || self.candidates.is_empty()
            {
                break;
            }
        }
        self.settle(out);
    }

    fn start_queued(&mut self, now: u64, out: &mut Vec<NodeAction>) -> bool {
        let mut started = false;
        // Ready steps start in the order the runbook lists them: the smallest queued index among
        // the providers that have capacity left.
        while self.running_total < self.config.max_parallel {
            let mut best: Option<(usize, usize)> = None;
            for p in 0..self.queued.len() {
                // Drop entries no longer queued (none today: only starting takes a node out).
                let i = loop {
                    match self.queued[p].first() {
                        Some(i) if !matches!(self.status[i], Status::Queued { .. }) => {
                            self.queued[p].pop_first();
                        }
                        first => break first,
                    }
                };
                if let Some(i) = i
                    && self.running_per[p] < self.provider_limit[p]
                    && best.is_none_or(|(b, _)| i < b)
                {
                    best = Some((i, p));
                }
            }
            let Some((i, p)) = best else {
                break;
            };
            self.queued[p].pop_first();
            let Status::Queued { attempt } = self.status[i] else {
                continue;
            };
            self.set(i, Status::Running { attempt });
            out.push(NodeAction::Execute { node: i, attempt });
            if let Some(t) = self.hot[i].timeout_ms {
                let at = now.saturating_add(t);
                self.timers[i][timer_slot(TimerKind::Timeout)] = Some((attempt, at));
                out.push(NodeAction::SetTimer {
                    node: i,
                    attempt,
                    timer: TimerKind::Timeout,
                    at_ms: at,
                });
            }
            started = true;
        }
        started
    }

    /// Ends draining, runs compensations in reverse dependency order, and finishes the run.
    fn settle(&mut self, out: &mut Vec<NodeAction>) {
        let busy = self.running_total > 0 || self.compensating_count > 0;
        if self.any_armed
            && self.phase == Phase::Running
            && self.open > 0
            && !busy
            && self.only_unfired_open()
        {
            // Nothing is left but notifications of a break-glass that did not happen.
            for j in 0..self.status.len() {
                if self.hot[j].armed && !self.fired[j] && self.status[j] == Status::Pending {
                    self.set(j, Status::Skipped);
                    out.push(NodeAction::Skip {
                        node: j,
                        reason: SkipReason::NoBreakGlass,
                    });
                }
            }
        }
        match self.phase {
            Phase::Running if self.open == 0 => {
                let failed = self.status.contains(&Status::Failed);
                let outcome = if failed {
                    RunOutcome::SucceededWithFailures
                } else {
                    RunOutcome::Succeeded
                };
                self.finish(outcome, out);
            }
            Phase::Draining(RunOutcome::Interrupted) if !busy => {
                // Queued and backing-off steps stay as they are: resume picks them up.
                self.finish(RunOutcome::Interrupted, out);
            }
            Phase::Draining(why) if !busy => {
                self.timers.fill([None; 2]);
                for i in 0..self.status.len() {
                    if matches!(self.status[i], Status::Backoff { .. }) {
                        self.set(i, Status::Failed);
                    }
                }
                if why == RunOutcome::RolledBack {
                    // What never started never will: the record says so rather than `pending`.
                    for i in 0..self.status.len() {
                        if matches!(self.status[i], Status::Pending | Status::Queued { .. }) {
                            self.set(i, Status::Skipped);
                            out.push(NodeAction::Skip {
                                node: i,
                                reason: SkipReason::RollbackRequested,
                            });
                        }
                    }
                    self.phase = Phase::Compensating;
                    self.next_compensation(out);
                } else {
                    self.finish(why, out);
                }
            }
            Phase::Compensating if !busy => self.next_compensation(out),
            _ => {}
        }
    }

    /// An operator asked for the run to be undone. Nothing new starts (steps waiting, queued,
    /// backing off or awaiting approval are skipped); once nothing is in flight, every completed
    /// step with an undo — and every undo that failed before, tried again — is compensated in
    /// reverse dependency order. A run already rolled back has nothing to undo.
    ///
    /// When a destructive step to undo sits behind approval steps, the undos wait until the
    /// strictest of those gates is satisfied again, by its roles, with `operator` (who asked)
    /// in the place of the initiator for four eyes.
    fn request_rollback(&mut self, operator: &str, out: &mut Vec<NodeAction>) {
        if matches!(self.phase, Phase::Done(RunOutcome::RolledBack)) {
            return;
        }
        self.started = true;
        self.timers.fill([None; 2]);
        for i in 0..self.nodes.len() {
            match self.status[i] {
                Status::Pending
                | Status::Queued { .. }
                | Status::Backoff { .. }
                | Status::AwaitingApproval => {
                    self.set(i, Status::Skipped);
                    out.push(NodeAction::Skip {
                        node: i,
                        reason: SkipReason::RollbackRequested,
                    });
                }
                Status::CompensationFailed => self.set(i, Status::Succeeded),
                _ => {}
            }
        }
        if let Some(node) = self.rollback_gate_for_undos() {
            let g = self.rollback_gate.get_or_insert_with(|| RollbackGate {
                node,
                requester: String::new(),
                approvers: Vec::new(),
                satisfied: false,
            });
            if !g.satisfied {
                g.requester = operator.to_owned();
                let required = self.hot[g.node].approvals;
                self.phase = Phase::AwaitingRollbackApproval;
                out.push(NodeAction::AwaitRollbackApproval { required });
                return;
            }
        }
        self.phase = Phase::Compensating;
        if self.running_total == 0 && self.compensating_count == 0 {
            self.next_compensation(out);
        }
    }

    /// The strictest approval step (most approvers; the first in dependency order on a tie)
    /// upstream of a destructive step the rollback would undo, if any.
    fn rollback_gate_for_undos(&self) -> Option<usize> {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].destructive
                    && match self.status[i] {
                        // A step caught in flight is read back and undone if it took effect.
                        Status::Succeeded | Status::Running { .. } => self.nodes[i].has_compensate,
                        Status::Failed => self.nodes[i].undoes_partial,
                        _ => false,
                    }
            })
            .collect();
        let mut best: Option<usize> = None;
        while let Some(i) = stack.pop() {
            for &p in &self.edges[self.pred_at[i]..self.pred_at[i + 1]] {
                if std::mem::replace(&mut seen[p], true) {
                    continue;
                }
                stack.push(p);
                if self.nodes[p].approval.is_some() {
                    let better = best.is_none_or(|b| {
                        let (hp, hb) = (self.hot[p].approvals, self.hot[b].approvals);
                        hp > hb || (hp == hb && self.topo_pos(p) < self.topo_pos(b))
                    });
                    if better {
                        best = Some(p);
                    }
                }
            }
        }
        best
    }

    fn topo_pos(&self, i: usize) -> usize {
        self.topo.iter().position(|&t| t == i).unwrap_or(usize::MAX)
    }

    /// Counts an approval of the rollback on request, by the rules of its gate.
    fn approve_rollback(&mut self, operator: &str, roles: &[String], out: &mut Vec<NodeAction>) {
        let waiting = self.phase == Phase::AwaitingRollbackApproval;
        let Some(g) = self.rollback_gate.as_mut().filter(|_| waiting) else {
            out.push(NodeAction::RollbackApprovalRefused {
                reason: Refusal::NotWaiting,
            });
            return;
        };
        let Some(p) = self.nodes[g.node].approval.as_ref() else {
            return;
        };
        let refused = if same_operator(operator, &g.requester) && !p.initiator_may_approve {
            Some(Refusal::OwnRollback)
        } else if !p.roles.is_empty() && !roles.iter().any(|r| p.roles.contains(r)) {
            Some(Refusal::Role)
        } else if g.approvers.iter().any(|a| same_operator(a, operator)) {
            Some(Refusal::Duplicate)
        } else {
            None
        };
        if let Some(reason) = refused {
            out.push(NodeAction::RollbackApprovalRefused { reason });
            return;
        }
        g.approvers.push(operator.to_owned());
        let have = u32::try_from(g.approvers.len()).unwrap_or(u32::MAX);
        let remaining = self.hot[g.node].approvals.saturating_sub(have);
        out.push(NodeAction::RollbackApprovalAccepted { remaining });
        if remaining == 0 {
            g.satisfied = true;
            self.phase = Phase::Compensating;
            if self.running_total == 0 && self.compensating_count == 0 {
                self.next_compensation(out);
            }
        }
    }

    fn next_compensation(&mut self, out: &mut Vec<NodeAction>) {
        // The latest succeeded step (in dependency order) with an undo goes first. A step that
        // failed is undone too when its action's built-in undo restores its capture: a failed
        // attempt may have changed part of the world (an address detached, not yet attached).
        let next = self.topo.iter().rev().copied().find(|&i| {
            !self.nodes[i].milestone
                && match self.status[i] {
                    Status::Succeeded => self.nodes[i].has_compensate,
                    Status::Failed => self.nodes[i].undoes_partial,
                    _ => false,
                }
        });
        match next {
            Some(i) => {
                self.set(i, Status::Compensating);
                out.push(NodeAction::Compensate { node: i });
            }
            None => {
                let failed = self.status.contains(&Status::CompensationFailed);
                self.finish(
                    if failed {
                        RunOutcome::RollbackIncomplete
                    } else {
                        RunOutcome::RolledBack
                    },
                    out,
                );
            }
        }
    }

    fn finish(&mut self, outcome: RunOutcome, out: &mut Vec<NodeAction>) {
        self.phase = Phase::Done(outcome);
        if outcome != RunOutcome::Interrupted {
            self.timers.fill([None; 2]);
        }
        out.push(NodeAction::Finished { outcome });
    }
}

fn mode_name(m: Mode) -> &'static str {
    m.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "runbook \"t\" {\n  rto = 1h\n  rpo = 1h\n  modes = [drill, failover]\n}\n";

    fn plan(body: &str) -> Plan {
        let catalogue = drover_adapters::builtin_catalogue();
        let opts = drover_dsl::CompileOptions {
            catalogue: &catalogue,
            vars: Vec::new(),
            operators: None,
        };
        let c = drover_dsl::compile_str("t.drover", &format!("{HEAD}{body}"), &opts);
        c.plan.unwrap_or_else(|| panic!("{:#?}", c.diagnostics))
    }

    fn sched(body: &str) -> Scheduler {
        Scheduler::new(&plan(body), Config::new(Mode::Drill, "alice", 7))
    }

    fn step(id: &str, extra: &str) -> String {
        format!(
            "step {id} {{\n  action = wait\n  {extra}\n  with {{\n    duration = 1s\n  }}\n}}\n"
        )
    }

    fn executes(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Execute { step, attempt } => Some(format!("{step}#{attempt}")),
                _ => None,
            })
            .collect()
    }

    fn ok(s: &str, attempt: u32) -> Event {
        Event::StepSucceeded {
            step: s.into(),
            attempt,
            outputs: Outputs::new(),
        }
    }

    fn fail(s: &str, attempt: u32, transient: bool) -> Event {
        Event::StepFailed {
            step: s.into(),
            attempt,
            error: "boom".into(),
            transient,
            context: None,
        }
    }

    fn approved(step: &str, operator: &str, roles: &[&str]) -> Event {
        Event::Approved {
            step: step.into(),
            operator: operator.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    const DONE: &str = "milestone m {\n  after = [c]\n  stops_rto = true\n}\n";

    #[test]
    fn a_chain_runs_in_order_and_reaches_its_milestone() {
        let mut s = sched(&format!(
            "{}{}{}{DONE}",
            step("a", ""),
            step("b", "after = [a]"),
            step("c", "after = [b]")
        ));
        assert_eq!(executes(&s.on_event(&Event::Started, 0)), vec!["a#1"]);
        assert_eq!(executes(&s.on_event(&ok("a", 1), 10)), vec!["b#1"]);
        assert_eq!(executes(&s.on_event(&ok("b", 1), 20)), vec!["c#1"]);
        let last = s.on_event(&ok("c", 1), 30);
        assert!(last.contains(&Action::MilestoneReached {
            milestone: "m".into(),
            at_ms: 30
        }));
        assert!(last.contains(&Action::Finished {
            outcome: RunOutcome::Succeeded
        }));
    }

    #[test]
    fn the_global_limit_caps_parallel_steps() {
        let body: String = (0..5)
            .map(|i| step(&format!("s{i}"), ""))
            .collect::<String>()
            + "milestone m {\n  after = [s0]\n  stops_rto = true\n}\n";
        let mut s = Scheduler::new(
            &plan(&body),
            Config {
                max_parallel: 2,
                ..Config::new(Mode::Drill, "alice", 1)
            },
        );
        assert_eq!(
            executes(&s.on_event(&Event::Started, 0)),
            vec!["s0#1", "s1#1"]
        );
        assert_eq!(executes(&s.on_event(&ok("s1", 1), 5)), vec!["s2#1"]);
    }

    #[test]
    fn the_per_provider_limit_caps_one_provider_only() {
        let aws = |id: &str| {
            format!(
                "step {id} {{\n  action = aws_ec2.start_instances\n  with {{\n    instance_ids = [\"i-1\"]\n  }}\n}}\n"
            )
        };
        let body = format!(
            "{}{}{}{}milestone m {{\n  after = [a1]\n  stops_rto = true\n}}\n",
            aws("a1"),
            aws("a2"),
            aws("a3"),
            step("w", "")
        );
        let mut cfg = Config::new(Mode::Drill, "alice", 1);
        cfg.provider_limits.insert("aws_ec2".into(), 1);
        let mut s = Scheduler::new(&plan(&body), cfg);
        let mut started = executes(&s.on_event(&Event::Started, 0));
        started.sort();
        assert_eq!(started, vec!["a1#1", "w#1"]);
        assert_eq!(executes(&s.on_event(&ok("a1", 1), 1)), vec!["a2#1"]);
    }

    #[test]
    fn transient_failures_retry_with_backoff_and_jitter_then_give_up() {
        let body = format!(
            "{}{}",
            step("c", "retry {\n    attempts = 3\n    backoff = 10s\n  }"),
            DONE
        );
        let mut s = sched(&body);
        s.on_event(&Event::Started, 0);
        let a = s.on_event(&fail("c", 1, true), 1_000);
        let Some(Action::SetTimer {
            at_ms,
            timer: TimerKind::Retry,
            ..
        }) = a.first().cloned()
        else {
            panic!("{a:?}")
        };
        assert!((1_000 + 5_000..1_000 + 10_000).contains(&at_ms), "{at_ms}");
        assert_eq!(
            executes(&s.on_event(
                &Event::TimerFired {
                    step: "c".into(),
                    attempt: 1,
                    timer: TimerKind::Retry
                },
                at_ms
            )),
            vec!["c#2"]
        );
        let a = s.on_event(&fail("c", 2, true), at_ms + 1);
        let Some(Action::SetTimer { at_ms: second, .. }) = a.first().cloned() else {
            panic!("{a:?}")
        };
        assert!(
            (at_ms + 1 + 10_000..at_ms + 1 + 20_000).contains(&second),
            "backoff doubles: {second}"
        );
        s.on_event(
            &Event::TimerFired {
                step: "c".into(),
                attempt: 2,
                timer: TimerKind::Retry,
            },
            second,
        );
        let a = s.on_event(&fail("c", 3, true), second + 1);
        assert!(
            a.contains(&Action::Finished {
                outcome: RunOutcome::Failed
            }),
            "{a:?}"
        );
    }

    #[test]
    fn permanent_failures_do_not_retry() {
        let mut s = sched(&format!(
            "{}{}",
            step("c", "retry {\n    attempts = 5\n  }"),
            DONE
        ));
        s.on_event(&Event::Started, 0);
        let a = s.on_event(&fail("c", 1, false), 1);
        assert!(executes(&a).is_empty());
        assert!(a.contains(&Action::Finished {
            outcome: RunOutcome::Failed
        }));
    }

    #[test]
    fn a_timed_out_attempt_is_abandoned_and_retried_and_its_late_result_ignored() {
        let mut s = sched(&format!(
            "{}{}",
            step(
                "c",
                "timeout = 30s\n  retry {\n    attempts = 2\n    backoff = 1s\n  }"
            ),
            DONE
        ));
        let a = s.on_event(&Event::Started, 0);
        assert!(a.contains(&Action::SetTimer {
            step: "c".into(),
            attempt: 1,
            timer: TimerKind::Timeout,
            at_ms: 30_000
        }));
        let a = s.on_event(
            &Event::TimerFired {
                step: "c".into(),
                attempt: 1,
                timer: TimerKind::Timeout,
            },
            30_000,
        );
        assert!(a.contains(&Action::Abandon {
            step: "c".into(),
            attempt: 1
        }));
        assert!(
            s.on_event(&ok("c", 1), 30_001).is_empty(),
            "a stale attempt's result is ignored"
        );
        assert_eq!(s.status("c"), Some(&Status::Backoff { attempt: 1 }));
    }

    #[test]
    fn continue_skips_dependents_and_the_run_goes_on() {
        let body = format!(
            "{}{}{}{}",
            step("a", "on_failure = continue"),
            step("b", "after = [a]"),
            step("c", ""),
            DONE
        );
        let mut s = sched(&body);
        s.on_event(&Event::Started, 0);
        let a = s.on_event(&fail("a", 1, false), 1);
        assert!(a.contains(&Action::Skip {
            step: "b".into(),
            reason: "`a` failed".into()
        }));
        let a = s.on_event(&ok("c", 1), 2);
        assert!(
            a.contains(&Action::Finished {
                outcome: RunOutcome::SucceededWithFailures
            }),
            "{a:?}"
        );
    }

    #[test]
    fn abort_starts_nothing_new_and_waits_for_running_steps() {
        let body = format!(
            "{}{}{}{}",
            step("a", ""),
            step("b", ""),
            step("d", "after = [a]"),
            step("c", "after = [b]")
        );
        let body = format!("{body}{DONE}");
        let mut s = sched(&body);
        s.on_event(&Event::Started, 0);
        let a = s.on_event(&fail("a", 1, false), 1);
        assert!(executes(&a).is_empty() && !a.iter().any(|x| matches!(x, Action::Finished { .. })));
        let a = s.on_event(&ok("b", 1), 2);
        assert!(executes(&a).is_empty(), "c is not started after the abort");
        assert!(a.contains(&Action::Finished {
            outcome: RunOutcome::Failed
        }));
    }

    #[test]
    fn rollback_compensates_completed_steps_in_reverse_dependency_order() {
        let undo = "compensate {\n    action = wait\n    with {\n      duration = 1s\n    }\n  }";
        let body = format!(
            "{}{}{}{}",
            step("a", undo),
            step("b", &format!("after = [a]\n  {undo}")),
            step("c", "after = [b]\n  on_failure = rollback"),
            DONE
        );
        let mut s = sched(&body);
        s.on_event(&Event::Started, 0);
        s.on_event(&ok("a", 1), 1);
        s.on_event(&ok("b", 1), 2);
        let a = s.on_event(&fail("c", 1, false), 3);
        assert!(
            a.contains(&Action::Compensate { step: "b".into() }),
            "{a:?}"
        );
        let a = s.on_event(
            &Event::CompensationFinished {
                step: "b".into(),
                error: None,
            },
            4,
        );
        assert!(
            a.contains(&Action::Compensate { step: "a".into() }),
            "{a:?}"
        );
        let a = s.on_event(
            &Event::CompensationFinished {
                step: "a".into(),
                error: None,
            },
            5,
        );
        assert!(a.contains(&Action::Finished {
            outcome: RunOutcome::RolledBack
        }));
    }

    #[test]
    fn a_rollback_on_request_undoes_a_stopped_run_and_retries_failed_undos() {
        let undo = "compensate {\n    action = wait\n    with {\n      duration = 1s\n    }\n  }";
        let body = format!(
            "{}{}{}{}",
            step("a", undo),
            step("b", &format!("after = [a]\n  {undo}")),
            step("c", "after = [b]"),
            DONE
        );
        let mut s = sched(&body);
        s.on_event(&Event::Started, 0);
        s.on_event(&ok("a", 1), 1);
        s.on_event(&ok("b", 1), 2);
        let a = s.on_event(&fail("c", 1, false), 3);
        assert!(a.contains(&Action::Finished {
            outcome: RunOutcome::Failed
        }));
        let request = Event::RollbackRequested {
            operator: "bob".into(),
        };
        let a = s.on_event(&request, 10);
        assert_eq!(a, vec![Action::Compensate { step: "b".into() }]);
        assert_eq!(s.outcome(), None, "the run is rolling back");
        let finished = |s: &mut Scheduler, step: &str, error: Option<&str>, at| {
            s.on_event(
                &Event::CompensationFinished {
                    step: step.into(),
                    error: error.map(str::to_owned),
                },
                at,
            )
        };
        let a = finished(&mut s, "b", None, 11);
        assert_eq!(a, vec![Action::Compensate { step: "a".into() }]);
        let a = finished(&mut s, "a", Some("still attached"), 12);
        assert!(a.contains(&Action::Finished {
            outcome: RunOutcome::RollbackIncomplete
        }));
        // Asked again: only the undo that failed runs again.
        let a = s.on_event(&request, 20);
        assert_eq!(a, vec![Action::Compensate { step: "a".into() }]);
        let a = finished(&mut s, "a", None, 21);
        assert!(a.contains(&Action::Finished {
            outcome: RunOutcome::RolledBack
        }));
        // A rolled-back run has nothing left to undo.
        assert!(s.on_event(&request, 30).is_empty());
    }

    #[test]
    fn a_denied_approval_fails_its_step_once_enough_operators_deny() {
        let body = format!(
            "step gate {{\n  action = approval\n  with {{\n    prompt = \"go?\"\n    denials = 2\n    roles = [\"ic\"]\n  }}\n}}\n{}{}",
            step("c", "after = [gate]"),
            DONE
        );
        let mut s = sched(&body);
        s.on_event(&Event::Started, 0);
        let deny = |who: &str, roles: &[&str]| Event::Denied {
            step: "gate".into(),
            operator: who.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            reason: "the primary is back".into(),
        };
        let a = s.on_event(&deny("bob", &["dba"]), 1);
        assert!(
            matches!(&a[..], [Action::ApprovalRefused { .. }]),
            "a role is needed: {a:?}"
        );
        let a = s.on_event(&deny("bob", &["ic"]), 2);
        assert_eq!(
            a,
            vec![Action::Denied {
                step: "gate".into(),
                operator: "bob".into(),
                remaining: 1
            }]
        );
        let a = s.on_event(&deny("Bob ", &["ic"]), 3);
        assert!(
            matches!(&a[..], [Action::ApprovalRefused { .. }]),
            "once each: {a:?}"
        );
        // The initiator may deny: stopping is always allowed.
        let a = s.on_event(&deny("alice", &["ic"]), 4);
        assert!(
            a.contains(&Action::StepGaveUp {
                step: "gate".into(),
                error: "denied by bob, alice: the primary is back".into()
            }),
            "{a:?}"
        );
        assert!(a.contains(&Action::Finished {
            outcome: RunOutcome::Failed
        }));
    }

    #[test]
    fn steps_an_automatic_rollback_kept_from_running_are_skipped_not_pending() {
        let undo = "compensate {\n    action = wait\n    with {\n      duration = 1s\n    }\n  }";
        let body = format!(
            "{}{}{}{}",
            step("a", undo),
            step("b", "after = [a]\n  on_failure = rollback"),
            step("c", "after = [b]"),
            DONE
        );
        let mut s = sched(&body);
        s.on_event(&Event::Started, 0);
        s.on_event(&ok("a", 1), 1);
        let a = s.on_event(&fail("b", 1, false), 2);
        assert!(
            a.contains(&Action::Skip {
                step: "c".into(),
                reason: "the run was rolled back before it ran".into()
            }),
            "{a:?}"
        );
        assert_eq!(s.status("c"), Some(&Status::Skipped));
        assert!(a.contains(&Action::Compensate { step: "a".into() }));
    }

    #[test]
    fn a_rollback_of_gated_destructive_steps_waits_for_the_same_approvals() {
        let body = format!(
            "step gate {{\n  action = approval\n  with {{\n    prompt = \"go?\"\n    approvers = 2\n    roles = [\"ic\"]\n  }}\n}}\n\
             step move {{\n  action = aws_ec2.associate_address\n  after  = [gate]\n  with {{\n    allocation_id = \"eipalloc-1\"\n    instance_id   = \"i-1\"\n  }}\n}}\n{}{}",
            step("c", "after = [move]"),
            DONE
        );
        let mut s = sched(&body);
        s.on_event(&Event::Started, 0);
        for who in ["bob", "carol"] {
            s.on_event(&approved("gate", who, &["ic"]), 1);
        }
        s.on_event(&ok("move", 1), 2);
        let a = s.on_event(&fail("c", 1, false), 3);
        assert!(a.contains(&Action::Finished {
            outcome: RunOutcome::Failed
        }));
        let a = s.on_event(
            &Event::RollbackRequested {
                operator: "Dave".into(),
            },
            10,
        );
        assert_eq!(
            a,
            vec![Action::AwaitApproval {
                step: ROLLBACK_APPROVAL.into(),
                required: 2
            }],
            "no undo runs before the gate's approvals"
        );
        assert_eq!(s.awaiting_approval(), vec![ROLLBACK_APPROVAL.to_owned()]);
        assert_eq!(s.rollback_gate_step(), Some("gate"));
        let refused = |a: &[Action]| {
            a.iter().find_map(|a| match a {
                Action::ApprovalRefused { reason, .. } => Some(reason.clone()),
                _ => None,
            })
        };
        // Whoever asked may not approve; the gate's roles apply; approvers are distinct.
        let a = s.on_event(&approved(ROLLBACK_APPROVAL, " dave", &["ic"]), 11);
        assert!(
            refused(&a).is_some_and(|r| r.contains("asked for the rollback")),
            "{a:?}"
        );
        let a = s.on_event(&approved(ROLLBACK_APPROVAL, "erin", &["dba"]), 12);
        assert!(refused(&a).is_some_and(|r| r.contains("ic")), "{a:?}");
        let a = s.on_event(&approved(ROLLBACK_APPROVAL, "erin", &["ic"]), 13);
        assert!(refused(&a).is_none() && !a.iter().any(|a| matches!(a, Action::Compensate { .. })));
        let a = s.on_event(&approved(ROLLBACK_APPROVAL, "Erin", &["ic"]), 14);
        assert!(refused(&a).is_some_and(|r| r.contains("distinct")), "{a:?}");
        let a = s.on_event(&approved(ROLLBACK_APPROVAL, "frank", &["ic"]), 15);
        assert!(
            a.contains(&Action::Compensate {
                step: "move".into()
            }),
            "{a:?}"
        );
    }

    #[test]
    fn a_rollback_interrupted_while_it_waits_for_approval_keeps_its_approvals() {
        let body = format!(
            "step gate {{\n  action = approval\n  with {{\n    prompt = \"go?\"\n    approvers = 2\n  }}\n}}\n\
             step move {{\n  action = aws_ec2.associate_address\n  after  = [gate]\n  with {{\n    allocation_id = \"eipalloc-1\"\n    instance_id   = \"i-1\"\n  }}\n}}\n{}{}",
            step("c", "after = [move]"),
            DONE
        );
        let mut s = sched(&body);
        s.on_event(&Event::Started, 0);
        for who in ["bob", "carol"] {
            s.on_event(&approved("gate", who, &[]), 1);
        }
        s.on_event(&ok("move", 1), 2);
        s.on_event(&fail("c", 1, false), 3);
        let request = Event::RollbackRequested {
            operator: "dave".into(),
        };
        s.on_event(&request, 10);
        s.on_event(&approved(ROLLBACK_APPROVAL, "erin", &[]), 11);
        let a = s.on_event(&Event::Interrupted, 12);
        assert!(a.contains(&Action::Finished {
            outcome: RunOutcome::Interrupted
        }));
        // `drover resume` goes on waiting rather than calling the run a success.
        let mut resumed = s.clone();
        let a = resumed.on_event(&Event::Resumed, 13);
        assert_eq!(
            a,
            vec![Action::AwaitApproval {
                step: ROLLBACK_APPROVAL.into(),
                required: 2
            }]
        );
        // Asked again: erin's approval still counts.
        s.on_event(&request, 20);
        let a = s.on_event(&approved(ROLLBACK_APPROVAL, "frank", &[]), 21);
        assert!(
            a.contains(&Action::Compensate {
                step: "move".into()
            }),
            "{a:?}"
        );
    }

    #[test]
    fn a_rollback_of_ungated_steps_and_an_automatic_rollback_need_no_approval() {
        let body = format!(
            "step gate {{\n  action = approval\n  with {{\n    prompt = \"go?\"\n  }}\n}}\n\
             step restore {{\n  action = wait\n  after = [gate]\n  compensate {{\n    action = wait\n    with {{\n      duration = 1s\n    }}\n  }}\n  with {{\n    duration = 1s\n  }}\n}}\n{}{}",
            step("c", "after = [restore]"),
            DONE
        );
        let mut s = sched(&body);
        s.on_event(&Event::Started, 0);
        s.on_event(&approved("gate", "bob", &[]), 1);
        s.on_event(&ok("restore", 1), 2);
        s.on_event(&fail("c", 1, false), 3);
        let a = s.on_event(
            &Event::RollbackRequested {
                operator: "alice".into(),
            },
            4,
        );
        assert_eq!(
            a,
            vec![Action::Compensate {
                step: "restore".into()
            }],
            "nothing destructive to undo: no gate"
        );
        let a = s.on_event(&approved(ROLLBACK_APPROVAL, "bob", &[]), 5);
        assert!(
            matches!(&a[..], [Action::ApprovalRefused { reason, .. }] if reason.contains("no rollback")),
            "{a:?}"
        );
    }

    #[test]
    fn a_rollback_on_request_skips_what_has_not_run() {
        let undo = "compensate {\n    action = wait\n    with {\n      duration = 1s\n    }\n  }";
        let body = format!(
            "{}{}{}{}",
            step("a", undo),
            step("b", "after = [a]"),
            step("c", "after = [b]"),
            DONE
        );
        let mut s = sched(&body);
        s.on_event(&Event::Started, 0);
        s.on_event(&ok("a", 1), 1);
        s.on_event(&Event::Interrupted, 2);
        let a = s.on_event(&ok("b", 1), 3);
        assert!(a.contains(&Action::Finished {
            outcome: RunOutcome::Interrupted
        }));
        let a = s.on_event(
            &Event::RollbackRequested {
                operator: "bob".into(),
            },
            4,
        );
        assert!(
            a.contains(&Action::Compensate { step: "a".into() }),
            "{a:?}"
        );
        assert!(
            a.contains(&Action::Skip {
                step: "c".into(),
                reason: "the run was rolled back before it ran".into()
            }),
            "{a:?}"
        );
    }

    #[test]
    fn a_failed_step_whose_builtin_undo_restores_its_capture_is_part_of_the_rollback() {
        let undo = "compensate {\n    action = wait\n    with {\n      duration = 1s\n    }\n  }";
        let body = format!(
            "{}step b {{\n  action = aws_ec2.associate_address\n  after  = [a]\n  on_failure = rollback\n  allow {{\n    unapproved_destructive = \"test\"\n  }}\n  with {{\n    allocation_id = \"eipalloc-1\"\n    instance_id   = \"i-1\"\n  }}\n}}\n{}{}",
            step("a", undo),
            step("c", "after = [b]"),
            DONE
        );
        let mut s = sched(&body);
        s.on_event(&Event::Started, 0);
        s.on_event(&ok("a", 1), 1);
        // The move failed midway: its own partial change is undone first, then `a`.
        let a = s.on_event(&fail("b", 1, false), 2);
        assert!(
            a.contains(&Action::Compensate { step: "b".into() }),
            "{a:?}"
        );
        let a = s.on_event(
            &Event::CompensationFinished {
                step: "b".into(),
                error: Some("Resource Manager unreachable".into()),
            },
            3,
        );
        assert!(
            a.contains(&Action::Compensate { step: "a".into() }),
            "{a:?}"
        );
        let a = s.on_event(
            &Event::CompensationFinished {
                step: "a".into(),
                error: None,
            },
            4,
        );
        // Not "rolled back" while the address is still where the failed move left it.
        assert!(a.contains(&Action::Finished {
            outcome: RunOutcome::RollbackIncomplete
        }));
        // Once the service is back, a rollback on request finishes the job.
        let a = s.on_event(
            &Event::RollbackRequested {
                operator: "alice".into(),
            },
            10,
        );
        let undos: Vec<_> = a
            .iter()
            .filter(|x| matches!(x, Action::Compensate { .. }))
            .collect();
        assert_eq!(undos, vec![&Action::Compensate { step: "b".into() }]);
        let a = s.on_event(
            &Event::CompensationFinished {
                step: "b".into(),
                error: None,
            },
            11,
        );
        assert!(a.contains(&Action::Finished {
            outcome: RunOutcome::RolledBack
        }));
    }

    fn approval_plan(extra: &str) -> String {
        format!(
            "step gate {{\n  action = approval\n  with {{\n    prompt = \"go?\"\n    {extra}\n  }}\n}}\n{}milestone m {{\n  after = [c]\n  stops_rto = true\n}}\n",
            step("c", "after = [gate]")
        )
    }

    #[test]
    fn four_eyes_refuses_the_initiator_and_counts_distinct_approvers() {
        let mut s = sched(&approval_plan(
            "approvers = 2\n    roles = [\"ic\", \"dba\"]",
        ));
        let a = s.on_event(&Event::Started, 0);
        assert!(a.contains(&Action::AwaitApproval {
            step: "gate".into(),
            required: 2
        }));
        let approve = |op: &str, role: &str| Event::Approved {
            step: "gate".into(),
            operator: op.into(),
            roles: vec![role.into()],
        };
        let a = s.on_event(&approve("alice", "ic"), 1);
        assert!(
            matches!(&a[0], Action::ApprovalRefused { reason, .. } if reason.contains("four eyes")),
            "{a:?}"
        );
        let a = s.on_event(&approve("bob", "intern"), 2);
        assert!(
            matches!(&a[0], Action::ApprovalRefused { reason, .. } if reason.contains("roles")),
            "{a:?}"
        );
        let a = s.on_event(&approve("bob", "ic"), 3);
        assert!(a.contains(&Action::ApprovalAccepted {
            step: "gate".into(),
            operator: "bob".into(),
            remaining: 1
        }));
        let a = s.on_event(&approve("bob", "dba"), 4);
        assert!(
            matches!(&a[0], Action::ApprovalRefused { reason, .. } if reason.contains("distinct")),
            "{a:?}"
        );
        let a = s.on_event(&approve("carol", "dba"), 5);
        assert_eq!(executes(&a), vec!["c#1"]);
        assert_eq!(
            s.outputs("gate").and_then(|o| o.get("approved_by")),
            Some(&serde_json::json!(["bob", "carol"]))
        );
    }

    /// A gate needing two approvers that allows break-glass, a step after it, and a notify step
    /// tagged `break_glass`.
    fn break_glass_plan(allow: bool) -> String {
        format!(
            "{}step page {{\n  action = notify\n  tags = [break_glass]\n  with {{\n    message = \"glass broken\"\n  }}\n}}\n",
            approval_plan(&format!(
                "approvers = 2\n    roles = [\"ic\"]\n    break_glass = {allow}"
            ))
        )
    }

    fn break_glass(op: &str) -> Event {
        Event::BreakGlass {
            step: "gate".into(),
            operator: op.into(),
            reason: "nobody else reachable".into(),
        }
    }

    #[test]
    fn one_break_glass_approval_satisfies_the_gate_and_fires_the_tagged_notify_steps() {
        let mut s = sched(&break_glass_plan(true));
        let a = s.on_event(&Event::Started, 0);
        assert!(executes(&a).is_empty(), "the tagged step waits: {a:?}");
        // Alone, the initiator included, without the role: the roster marked them (checked by
        // the identity layer before the event).
        let a = s.on_event(&break_glass("alice"), 1);
        assert!(
            a.contains(&Action::BrokeGlass {
                step: "gate".into(),
                operator: "alice".into()
            }),
            "{a:?}"
        );
        let mut ran = executes(&a);
        ran.sort();
        assert_eq!(ran, vec!["c#1", "page#1"]);
        assert_eq!(
            s.outputs("gate").and_then(|o| o.get("break_glass")),
            Some(&serde_json::json!("alice"))
        );
        s.on_event(&ok("page", 1), 2);
        let a = s.on_event(&ok("c", 1), 3);
        assert!(a.contains(&Action::Finished {
            outcome: RunOutcome::Succeeded
        }));
        // A second break-glass finds nothing waiting.
        let a = s.on_event(&break_glass("bob"), 4);
        assert!(matches!(&a[0], Action::ApprovalRefused { .. }), "{a:?}");
    }

    #[test]
    fn without_break_glass_the_tagged_steps_are_skipped_and_the_run_succeeds() {
        let mut s = sched(&break_glass_plan(true));
        s.on_event(&Event::Started, 0);
        s.on_event(&approved("gate", "bob", &["ic"]), 1);
        let a = s.on_event(&approved("gate", "carol", &["ic"]), 2);
        assert_eq!(
            executes(&a),
            vec!["c#1"],
            "the tagged step never runs on its own"
        );
        let a = s.on_event(&ok("c", 1), 3);
        assert!(
            a.contains(&Action::Skip {
                step: "page".into(),
                reason: "nobody broke the glass".into()
            }),
            "{a:?}"
        );
        assert!(a.contains(&Action::Finished {
            outcome: RunOutcome::Succeeded
        }));
    }

    #[test]
    fn break_glass_is_refused_on_a_gate_that_does_not_allow_it() {
        let mut s = sched(&break_glass_plan(false));
        s.on_event(&Event::Started, 0);
        let a = s.on_event(&break_glass("bob"), 1);
        assert!(
            matches!(&a[0], Action::ApprovalRefused { reason, .. } if reason.contains("break_glass = true")),
            "{a:?}"
        );
        assert_eq!(s.status("gate"), Some(&Status::AwaitingApproval));
        assert_eq!(s.status("page"), Some(&Status::Pending));
    }

    #[test]
    fn the_initiator_may_approve_when_the_runbook_allows_it() {
        let mut s = sched(&approval_plan("initiator_may_approve = true"));
        s.on_event(&Event::Started, 0);
        let a = s.on_event(
            &Event::Approved {
                step: "gate".into(),
                operator: "alice".into(),
                roles: vec![],
            },
            1,
        );
        assert_eq!(executes(&a), vec!["c#1"]);
    }

    #[test]
    fn steps_outside_the_mode_and_false_whens_are_skipped() {
        let body = format!(
            "{}{}{}{DONE}",
            step("a", "modes = [failover]"),
            step("b", "when = \"mode == 'failover'\""),
            step("c", "after = [a, b]")
        );
        let mut s = sched(&body);
        let a = s.on_event(&Event::Started, 0);
        assert_eq!(executes(&a), vec!["c#1"]);
        assert_eq!(s.status("a"), Some(&Status::Skipped));
        assert_eq!(s.status("b"), Some(&Status::Skipped));
    }

    #[test]
    fn when_reads_step_outputs() {
        let body = format!(
            "step probe {{\n  action = http.check\n  with {{\n    url = \"http://x/\"\n  }}\n}}\n{}{DONE}",
            step(
                "c",
                "after = [probe]\n  when = \"steps.probe.status == 200\""
            )
        );
        let mut s = sched(&body);
        s.on_event(&Event::Started, 0);
        let mut o = Outputs::new();
        o.insert("status".into(), serde_json::json!(503));
        let a = s.on_event(
            &Event::StepSucceeded {
                step: "probe".into(),
                attempt: 1,
                outputs: o,
            },
            1,
        );
        assert!(a.contains(&Action::Skip {
            step: "c".into(),
            reason: "`when` is false".into()
        }));
    }

    #[test]
    fn interrupt_drains_then_resume_continues() {
        let body = format!("{}{}{DONE}", step("a", ""), step("c", "after = [a]"));
        let mut s = sched(&body);
        s.on_event(&Event::Started, 0);
        assert!(s.on_event(&Event::Interrupted, 1).is_empty(), "waits for a");
        let a = s.on_event(&ok("a", 1), 2);
        assert!(a.contains(&Action::Finished {
            outcome: RunOutcome::Interrupted
        }));
        assert_eq!(executes(&s.on_event(&Event::Resumed, 3)), vec!["c#1"]);
    }

    #[test]
    fn replaying_the_events_rebuilds_the_same_state() {
        let body = format!(
            "{}{}{}{DONE}",
            step("a", "retry {\n    attempts = 3\n  }"),
            step("b", ""),
            step("c", "after = [a, b]")
        );
        let events = [
            (Event::Started, 0),
            (fail("a", 1, true), 5),
            (ok("b", 1), 6),
        ];
        let mut live = sched(&body);
        let mut log = Vec::new();
        for (e, t) in &events {
            log.extend(live.on_event(e, *t));
        }
        let mut replay = sched(&body);
        let mut again = Vec::new();
        for (e, t) in &events {
            again.extend(replay.on_event(e, *t));
        }
        assert_eq!(log, again);
        assert_eq!(live.snapshot(), replay.snapshot());
        assert_eq!(live.pending_timers(), replay.pending_timers());
    }

    #[test]
    fn a_reset_scheduler_behaves_exactly_like_a_fresh_one() {
        let body = format!(
            "{}{}{}{DONE}",
            step("a", "retry {\n    attempts = 3\n  }\n  timeout = 1m"),
            step("b", ""),
            step("c", "after = [a, b]")
        );
        let events = [
            (Event::Started, 0),
            (fail("a", 1, true), 5),
            (ok("b", 1), 6),
        ];
        let mut used = Scheduler::new(&plan(&body), Config::new(Mode::Drill, "alice", 99));
        for (e, t) in &events {
            used.on_event(e, *t);
        }
        assert!(!used.pending_timers().is_empty());
        used.reset(7);
        let mut fresh = sched(&body);
        for (e, t) in &events {
            assert_eq!(used.on_event(e, *t), fresh.on_event(e, *t));
        }
        assert_eq!(used.snapshot(), fresh.snapshot());
        assert_eq!(used.pending_timers(), fresh.pending_timers());
        assert_eq!(used.all_outputs(), fresh.all_outputs());
    }

    #[test]
    fn node_events_and_id_events_are_the_same_rules() {
        let body = format!("{}{}{DONE}", step("a", ""), step("c", "after = [a]"));
        let mut by_id = sched(&body);
        let mut by_node = sched(&body);
        let a = by_id.index.get("a").copied().expect("a");
        let mut acts = Vec::new();
        by_node.on_node_event(NodeEvent::Started, 0, &mut acts);
        let started: Vec<Action> = acts.drain(..).map(|x| by_node.action(x, "")).collect();
        assert_eq!(by_id.on_event(&Event::Started, 0), started);
        by_node.on_node_event(
            NodeEvent::Failed {
                node: a,
                attempt: 1,
                error: "boom",
                transient: false,
            },
            3,
            &mut acts,
        );
        let failed: Vec<Action> = acts.drain(..).map(|x| by_node.action(x, "")).collect();
        assert_eq!(by_id.on_event(&fail("a", 1, false), 3), failed);
        assert!(failed.contains(&Action::StepGaveUp {
            step: "a".into(),
            error: "boom".into()
        }));
        assert_eq!(by_id.snapshot(), by_node.snapshot());
    }
}

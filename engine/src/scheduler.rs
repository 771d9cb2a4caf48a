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
    /// A compensation finished.
    CompensationFinished {
        /// Step id.
        step: String,
        /// Why it failed, if it did.
        error: Option<String>,
    },
    /// Stop scheduling (Ctrl-C): running steps finish or time out.
    Interrupted,
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
    /// A step failed and a compensation failed too.
    RollbackFailed,
    /// Stopped by the operator; can be resumed.
    Interrupted,
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

/// A node's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    fn is_done_ok(&self) -> bool {
        matches!(
            self,
            Status::Succeeded | Status::Skipped | Status::Compensated
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
    roles: Vec<String>,
    initiator_may_approve: bool,
}

#[derive(Debug, Clone)]
struct Node {
    id: String,
    milestone: bool,
    provider: String,
    in_mode: bool,
    attempts: u32,
    backoff_ms: u64,
    max_backoff_ms: u64,
    timeout_ms: Option<u64>,
    on_failure: OnFailure,
    when: Option<String>,
    approval: Option<Approval>,
    has_compensate: bool,
    context: BTreeMap<String, PlanValue>,
    bindings: BTreeMap<String, drover_dsl::OutputRef>,
    preds: Vec<usize>,
    succs: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Draining(RunOutcome),
    Compensating,
    Done(RunOutcome),
}

/// The scheduler of one run.
#[derive(Debug, Clone)]
pub struct Scheduler {
    nodes: Vec<Node>,
    topo: Vec<usize>,
    index: BTreeMap<String, usize>,
    status: Vec<Status>,
    outputs: Vec<Option<Outputs>>,
    errors: Vec<Option<String>>,
    approvers: Vec<Vec<String>>,
    timers: BTreeMap<(usize, TimerKind), (u32, u64)>,
    params: BTreeMap<String, PlanValue>,
    config: Config,
    phase: Phase,
    started: bool,
    /// Pending nodes whose readiness must be re-evaluated (their predecessors changed).
    candidates: std::collections::BTreeSet<usize>,
    /// Nodes queued for an attempt, waiting for capacity.
    queued: std::collections::BTreeSet<usize>,
    /// Attempts in flight, in total and per provider.
    running_total: usize,
    running_per: BTreeMap<String, usize>,
    /// Nodes not yet in a final state, and compensations in flight.
    open: usize,
    compensating_count: usize,
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
                    provider: String::new(),
                    in_mode: m.modes.contains(&config.mode),
                    attempts: 1,
                    backoff_ms: 0,
                    max_backoff_ms: 0,
                    timeout_ms: None,
                    on_failure: OnFailure::Abort,
                    when: None,
                    approval: None,
                    has_compensate: false,
                    context: BTreeMap::new(),
                    bindings: BTreeMap::new(),
                    preds,
                    succs,
                },
                PlanNode::Step(s) => Node {
                    id: s.id.clone(),
                    milestone: false,
                    provider: s.provider.clone(),
                    in_mode: s.modes.contains(&config.mode),
                    attempts: s.retry.map_or(1, |r| r.attempts.max(1)),
                    backoff_ms: s.retry.map_or(0, |r| r.backoff_ms),
                    max_backoff_ms: s.retry.map_or(0, |r| r.max_backoff_ms),
                    timeout_ms: s.timeout_ms,
                    on_failure: s.on_failure,
                    when: s.when.clone(),
                    approval: (s.role == Role::Approval).then(|| Approval {
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
                    }),
                    has_compensate: s.compensate.is_some() || s.builtin_undo,
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
        let mut config = config;
        if let Some(mp) = plan.runbook.max_parallel {
            config.max_parallel = config.max_parallel.min(mp.max(1) as usize);
        }
        Self {
            nodes,
            topo,
            index,
            status: vec![Status::Pending; n],
            outputs: vec![None; n],
            errors: vec![None; n],
            approvers: vec![Vec::new(); n],
            timers: BTreeMap::new(),
            params: plan.params.clone(),
            config,
            phase: Phase::Running,
            started: false,
            candidates: std::collections::BTreeSet::new(),
            queued: std::collections::BTreeSet::new(),
            running_total: 0,
            running_per: BTreeMap::new(),
            open: n,
            compensating_count: 0,
        }
    }

    /// Changes a node's state, keeping the counters and work sets in step. Every state change goes
    /// through here, so each event costs work proportional to the nodes it touches, not the plan.
    fn set(&mut self, i: usize, new: Status) {
        let old = std::mem::replace(&mut self.status[i], new.clone());
        let open = |s: &Status| {
            matches!(
                s,
                Status::Pending
                    | Status::Queued { .. }
                    | Status::Running { .. }
                    | Status::Backoff { .. }
                    | Status::AwaitingApproval
            )
        };
        if let Status::Running { .. } = old {
            self.running_total -= 1;
            if let Some(c) = self.running_per.get_mut(&self.nodes[i].provider) {
                *c -= 1;
            }
        }
        if let Status::Running { .. } = new {
            self.running_total += 1;
            *self
                .running_per
                .entry(self.nodes[i].provider.clone())
                .or_default() += 1;
        }
        if let Status::Queued { .. } = old {
            self.queued.remove(&i);
        }
        if let Status::Queued { .. } = new {
            self.queued.insert(i);
        }
        if old == Status::Compensating {
            self.compensating_count -= 1;
        }
        if new == Status::Compensating {
            self.compensating_count += 1;
        }
        match (open(&old), open(&new)) {
            (true, false) => self.open -= 1,
            (false, true) => self.open += 1,
            _ => {}
        }
        if new.is_done_ok() || matches!(new, Status::Failed | Status::CompensationFailed) {
            self.candidates.extend(self.nodes[i].succs.iter().copied());
        }
    }

    /// Every node's id and state, in plan order.
    #[must_use]
    pub fn snapshot(&self) -> Vec<(String, Status)> {
        self.nodes
            .iter()
            .zip(&self.status)
            .map(|(n, s)| (n.id.clone(), s.clone()))
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
        self.index.get(id).and_then(|&i| self.outputs[i].as_ref())
    }

    /// Every succeeded step's outputs, by id.
    #[must_use]
    pub fn all_outputs(&self) -> BTreeMap<String, Outputs> {
        self.nodes
            .iter()
            .zip(&self.outputs)
            .filter_map(|(n, o)| o.as_ref().map(|o| (n.id.clone(), o.clone())))
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

    /// Timers that are set: (step, attempt, kind, when). Resume re-arms them.
    #[must_use]
    pub fn pending_timers(&self) -> Vec<(String, u32, TimerKind, u64)> {
        self.timers
            .iter()
            .map(|(&(i, kind), &(attempt, at))| (self.nodes[i].id.clone(), attempt, kind, at))
            .collect()
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

    /// Approval steps waiting for operators.
    #[must_use]
    pub fn awaiting_approval(&self) -> Vec<String> {
        self.status
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == Status::AwaitingApproval)
            .map(|(i, _)| self.nodes[i].id.clone())
            .collect()
    }

    /// How the run ended, once it has.
    #[must_use]
    pub fn outcome(&self) -> Option<RunOutcome> {
        match self.phase {
            Phase::Done(o) => Some(o),
            _ => None,
        }
    }

    /// Feeds one event; returns what to do.
    pub fn on_event(&mut self, event: &Event, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if matches!(self.phase, Phase::Done(RunOutcome::Interrupted)) && *event == Event::Resumed {
            self.phase = Phase::Running;
        }
        if matches!(self.phase, Phase::Done(_)) {
            if let Event::Approved { step, operator, .. } = event {
                out.push(Action::ApprovalRefused {
                    step: step.clone(),
                    operator: operator.clone(),
                    reason: "the run is over".into(),
                });
            }
            return out;
        }
        match event {
            Event::Started | Event::Resumed => {
                if *event == Event::Resumed
                    && matches!(self.phase, Phase::Draining(RunOutcome::Interrupted))
                {
                    self.phase = Phase::Running;
                }
                // Every pending node is re-evaluated at start and on resume.
                for i in 0..self.nodes.len() {
                    if self.status[i] == Status::Pending {
                        self.candidates.insert(i);
                    }
                }
                if !self.started {
                    self.started = true;
                    for i in 0..self.nodes.len() {
                        if !self.nodes[i].in_mode {
                            self.set(i, Status::Skipped);
                            out.push(Action::Skip {
                                step: self.nodes[i].id.clone(),
                                reason: format!("not in {} mode", mode_name(self.config.mode)),
                            });
                        }
                    }
                }
            }
            Event::StepSucceeded {
                step,
                attempt,
                outputs,
            } => {
                if let Some(i) = self.idx(step)
                    && self.status[i] == (Status::Running { attempt: *attempt })
                {
                    self.timers.remove(&(i, TimerKind::Timeout));
                    self.set(i, Status::Succeeded);
                    self.outputs[i] = Some(outputs.clone());
                    out.push(Action::StepDone { step: step.clone() });
                }
            }
            Event::StepFailed {
                step,
                attempt,
                error,
                transient,
            } => {
                if let Some(i) = self.idx(step)
                    && self.status[i] == (Status::Running { attempt: *attempt })
                {
                    self.timers.remove(&(i, TimerKind::Timeout));
                    self.fail_attempt(i, *attempt, error, *transient, now, &mut out);
                }
            }
            Event::TimerFired {
                step,
                attempt,
                timer,
            } => {
                if let Some(i) = self.idx(step) {
                    let armed = self.timers.get(&(i, *timer)).map(|(a, _)| *a);
                    if armed == Some(*attempt) {
                        self.timers.remove(&(i, *timer));
                        match timer {
                            TimerKind::Retry
                                if self.status[i] == (Status::Backoff { attempt: *attempt }) =>
                            {
                                self.set(
                                    i,
                                    Status::Queued {
                                        attempt: attempt + 1,
                                    },
                                );
                            }
                            TimerKind::Timeout
                                if self.status[i] == (Status::Running { attempt: *attempt }) =>
                            {
                                out.push(Action::Abandon {
                                    step: step.clone(),
                                    attempt: *attempt,
                                });
                                let msg = format!(
                                    "attempt {attempt} timed out after {}",
                                    drover_dsl::format_duration(
                                        self.nodes[i].timeout_ms.unwrap_or(0)
                                    )
                                );
                                self.fail_attempt(i, *attempt, &msg, true, now, &mut out);
                            }
                            _ => {}
                        }
                    }
                }
            }
            Event::Approved {
                step,
                operator,
                roles,
            } => self.approve(step, operator, roles, &mut out),
            Event::CompensationFinished { step, error } => {
                if let Some(i) = self.idx(step)
                    && self.status[i] == Status::Compensating
                {
                    let new = if error.is_some() {
                        Status::CompensationFailed
                    } else {
                        Status::Compensated
                    };
                    self.set(i, new);
                    if let Some(e) = error {
                        self.errors[i] = Some(e.clone());
                    }
                }
            }
            Event::Interrupted => {
                if self.phase == Phase::Running {
                    self.phase = Phase::Draining(RunOutcome::Interrupted);
                }
            }
        }
        if self.started {
            self.advance(now, &mut out);
        }
        out
    }

    fn idx(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    fn fail_attempt(
        &mut self,
        i: usize,
        attempt: u32,
        error: &str,
        transient: bool,
        now: u64,
        out: &mut Vec<Action>,
    ) {
        self.errors[i] = Some(error.to_owned());
        let (id, attempts, on_failure) = (
            self.nodes[i].id.clone(),
            self.nodes[i].attempts,
            self.nodes[i].on_failure,
        );
        if transient && attempt < attempts && self.phase == Phase::Running {
            let delay = self.backoff(i, attempt);
            self.set(i, Status::Backoff { attempt });
            let at = now.saturating_add(delay);
            self.timers.insert((i, TimerKind::Retry), (attempt, at));
            out.push(Action::SetTimer {
                step: id,
                attempt,
                timer: TimerKind::Retry,
                at_ms: at,
            });
            return;
        }
        self.set(i, Status::Failed);
        out.push(Action::StepGaveUp {
            step: id,
            error: error.to_owned(),
        });
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

    fn approve(&mut self, step: &str, operator: &str, roles: &[String], out: &mut Vec<Action>) {
        let refuse = |out: &mut Vec<Action>, reason: &str| {
            out.push(Action::ApprovalRefused {
                step: step.to_owned(),
                operator: operator.to_owned(),
                reason: reason.to_owned(),
            });
        };
        let Some(i) = self.idx(step) else {
            return refuse(out, "no such step");
        };
        let Some(policy) = self.nodes[i].approval.clone() else {
            return refuse(out, "not an approval step");
        };
        if self.status[i] != Status::AwaitingApproval {
            return refuse(out, "the step is not waiting for approval");
        }
        if operator == self.config.initiator && !policy.initiator_may_approve {
            return refuse(
                out,
                "four eyes: the operator who started the run may not approve it",
            );
        }
        if !policy.roles.is_empty() && !roles.iter().any(|r| policy.roles.contains(r)) {
            return refuse(
                out,
                &format!(
                    "approving needs one of the roles {}",
                    policy.roles.join(", ")
                ),
            );
        }
        if self.approvers[i].iter().any(|a| a == operator) {
            return refuse(
                out,
                "already approved by this operator; approvers must be distinct",
            );
        }
        self.approvers[i].push(operator.to_owned());
        let have = u32::try_from(self.approvers[i].len()).unwrap_or(u32::MAX);
        let remaining = policy.required.saturating_sub(have);
        out.push(Action::ApprovalAccepted {
            step: step.to_owned(),
            operator: operator.to_owned(),
            remaining,
        });
        if remaining == 0 {
            self.set(i, Status::Succeeded);
            let mut o = Outputs::new();
            o.insert("approved_by".into(), serde_json::json!(self.approvers[i]));
            self.outputs[i] = Some(o);
            out.push(Action::StepDone {
                step: step.to_owned(),
            });
        }
    }

    fn when_holds(&self, i: usize) -> Result<bool, String> {
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
        );
        e.eval(&ctx)
            .map(|v| v.is_true())
            .map_err(|e| format!("`when` failed: {e}"))
    }

    fn advance(&mut self, now: u64, out: &mut Vec<Action>) {
        loop {
            while let Some(i) = self.candidates.pop_first() {
                if self.status[i] != Status::Pending {
                    continue;
                }
                let preds = &self.nodes[i].preds;
                if let Some(&f) = preds.iter().find(|&&p| {
                    matches!(self.status[p], Status::Failed | Status::CompensationFailed)
                }) {
                    if self.phase == Phase::Running || self.nodes[i].milestone {
                        self.set(i, Status::Skipped);
                        out.push(Action::Skip {
                            step: self.nodes[i].id.clone(),
                            reason: format!("`{}` failed", self.nodes[f].id),
                        });
                    }
                    continue;
                }
                if !preds.iter().all(|&p| self.status[p].is_done_ok()) {
                    continue;
                }
                if self.nodes[i].milestone {
                    self.set(i, Status::Succeeded);
                    out.push(Action::MilestoneReached {
                        milestone: self.nodes[i].id.clone(),
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
                        out.push(Action::Skip {
                            step: self.nodes[i].id.clone(),
                            reason: "`when` is false".into(),
                        });
                        continue;
                    }
                    Err(e) => {
                        self.set(i, Status::Running { attempt: 1 });
                        self.fail_attempt(i, 1, &e, false, now, out);
                        continue;
                    }
                }
                if let Some(required) = self.nodes[i].approval.as_ref().map(|p| p.required) {
                    self.set(i, Status::AwaitingApproval);
                    out.push(Action::AwaitApproval {
                        step: self.nodes[i].id.clone(),
                        required,
                    });
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
        self.settle(now, out);
    }

    fn start_queued(&mut self, now: u64, out: &mut Vec<Action>) -> bool {
        let mut started = false;
        // Ready steps start in the order the runbook lists them.
        let queued: Vec<usize> = self.queued.iter().copied().collect();
        for i in queued {
            if self.running_total >= self.config.max_parallel {
                break;
            }
            let Status::Queued { attempt } = self.status[i] else {
                continue;
            };
            let provider = &self.nodes[i].provider;
            let limit = if provider == "core" {
                usize::MAX
            } else {
                self.config
                    .provider_limits
                    .get(provider)
                    .copied()
                    .unwrap_or(self.config.default_provider_limit)
            };
            if self.running_per.get(provider).copied().unwrap_or(0) >= limit {
                continue;
            }
            self.set(i, Status::Running { attempt });
            out.push(Action::Execute {
                step: self.nodes[i].id.clone(),
                attempt,
            });
            if let Some(t) = self.nodes[i].timeout_ms {
                let at = now.saturating_add(t);
                self.timers.insert((i, TimerKind::Timeout), (attempt, at));
                out.push(Action::SetTimer {
                    step: self.nodes[i].id.clone(),
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
    fn settle(&mut self, _now: u64, out: &mut Vec<Action>) {
        let busy = self.running_total > 0 || self.compensating_count > 0;
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
                self.timers.clear();
                for i in 0..self.status.len() {
                    if matches!(self.status[i], Status::Backoff { .. }) {
                        self.set(i, Status::Failed);
                    }
                }
                if why == RunOutcome::RolledBack {
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

    fn next_compensation(&mut self, out: &mut Vec<Action>) {
        // The latest succeeded step (in dependency order) with an undo goes first.
        let next = self.topo.iter().rev().copied().find(|&i| {
            self.status[i] == Status::Succeeded
                && !self.nodes[i].milestone
                && self.nodes[i].has_compensate
        });
        match next {
            Some(i) => {
                self.set(i, Status::Compensating);
                out.push(Action::Compensate {
                    step: self.nodes[i].id.clone(),
                });
            }
            None => {
                let failed = self.status.contains(&Status::CompensationFailed);
                self.finish(
                    if failed {
                        RunOutcome::RollbackFailed
                    } else {
                        RunOutcome::RolledBack
                    },
                    out,
                );
            }
        }
    }

    fn finish(&mut self, outcome: RunOutcome, out: &mut Vec<Action>) {
        self.phase = Phase::Done(outcome);
        if outcome != RunOutcome::Interrupted {
            self.timers.clear();
        }
        out.push(Action::Finished { outcome });
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
}

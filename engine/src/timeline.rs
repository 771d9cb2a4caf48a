//! What happened to each node of a run, when: attempts with their start, end and outcome,
//! approval requests and the approvals given, compensations, skips and milestones. Rebuilt from
//! the journal's transitions alone (every event and the actions it caused), so it is the same
//! whether the run is live, finished or resumed after a crash. Reports, the achieved critical
//! path and the simulator's measured durations read it.

use crate::journal::Transition;
use crate::scheduler::{Action, Event, TimerKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// It succeeded.
    Succeeded,
    /// It failed.
    Failed,
    /// It ran out of time and was abandoned.
    TimedOut,
    /// No result was journaled (still running, or interrupted by a crash).
    Unfinished,
}

/// One attempt of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Attempt number (1-based).
    pub attempt: u32,
    /// When it started (ms since the epoch).
    pub start_ms: u64,
    /// When its result was journaled.
    pub end_ms: Option<u64>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Its error, if it failed.
    pub error: Option<String>,
}

/// An approval given, or refused, on an approval step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalGiven {
    /// Who.
    pub operator: String,
    /// The roles claimed.
    pub roles: Vec<String>,
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// Whether it was counted.
    pub accepted: bool,
    /// Why it was refused.
    pub reason: Option<String>,
}

/// A compensation (undo) of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compensation {
    /// When it started.
    pub start_ms: u64,
    /// When it finished.
    pub end_ms: Option<u64>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// What happened to one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTimeline {
    /// Node id.
    pub id: String,
    /// Attempts, in order.
    pub attempts: Vec<Attempt>,
    /// When the step started waiting for approvers.
    pub approval_requested_ms: Option<u64>,
    /// Approvals given and refused, in order.
    pub approvals: Vec<ApprovalGiven>,
    /// When it succeeded (milestones: reached).
    pub done_ms: Option<u64>,
    /// When it failed for good.
    pub gave_up_ms: Option<u64>,
    /// Why it was skipped.
    pub skipped: Option<String>,
    /// Its compensation.
    pub compensation: Option<Compensation>,
}

impl NodeTimeline {
    /// When it started: its first attempt, or its approval request.
    #[must_use]
    pub fn start_ms(&self) -> Option<u64> {
        let first = self.attempts.first().map(|a| a.start_ms);
        match (first, self.approval_requested_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When it ended: done, given up, or its last attempt's end.
    #[must_use]
    pub fn end_ms(&self) -> Option<u64> {
        self.done_ms
            .or(self.gave_up_ms)
            .or_else(|| self.attempts.last().and_then(|a| a.end_ms))
    }
}

/// A run's timeline: per node, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// When the first transition was journaled.
    pub started_ms: Option<u64>,
    /// When the run finished.
    pub finished_ms: Option<u64>,
    /// Per node.
    pub nodes: BTreeMap<String, NodeTimeline>,
}

impl Timeline {
    /// Rebuilds the timeline from a run's transitions.
    #[must_use]
    pub fn from_transitions(transitions: &[Transition]) -> Self {
        let mut t = Self::default();
        for tr in transitions {
            t.started_ms.get_or_insert(tr.at);
            t.on_event(tr.at, &tr.event);
            for a in &tr.actions {
                t.on_action(tr.at, a, &tr.event);
            }
        }
        t
    }

    fn node(&mut self, id: &str) -> &mut NodeTimeline {
        self.nodes
            .entry(id.to_owned())
            .or_insert_with(|| NodeTimeline {
                id: id.to_owned(),
                ..NodeTimeline::default()
            })
    }

    fn attempt(&mut self, id: &str, attempt: u32) -> Option<&mut Attempt> {
        self.node(id)
            .attempts
            .iter_mut()
            .rev()
            .find(|a| a.attempt == attempt)
    }

    fn on_event(&mut self, at: u64, e: &Event) {
        match e {
            Event::StepSucceeded { step, attempt, .. } => {
                if let Some(a) = self.attempt(step, *attempt)
                    && a.end_ms.is_none()
                {
                    a.end_ms = Some(at);
                    a.outcome = AttemptOutcome::Succeeded;
                }
            }
            Event::StepFailed {
                step,
                attempt,
                error,
                ..
            } => {
                if let Some(a) = self.attempt(step, *attempt)
                    && a.end_ms.is_none()
                {
                    a.end_ms = Some(at);
                    a.outcome = AttemptOutcome::Failed;
                    a.error = Some(error.clone());
                }
            }
            Event::TimerFired {
                step,
                attempt,
                timer: TimerKind::Timeout,
            } => {
                if let Some(a) = self.attempt(step, *attempt)
                    && a.end_ms.is_none()
                {
                    a.end_ms = Some(at);
                    a.outcome = AttemptOutcome::TimedOut;
                }
            }
            Event::CompensationFinished { step, error } => {
                if let Some(c) = self.node(step).compensation.as_mut() {
                    c.end_ms = Some(at);
                    c.error.clone_from(error);
                }
            }
            _ => {}
        }
    }

    fn on_action(&mut self, at: u64, a: &Action, cause: &Event) {
        match a {
            Action::Execute { step, attempt } => self.node(step).attempts.push(Attempt {
                attempt: *attempt,
                start_ms: at,
                end_ms: None,
                outcome: AttemptOutcome::Unfinished,
                error: None,
            }),
            Action::AwaitApproval { step, .. } => {
                self.node(step).approval_requested_ms.get_or_insert(at);
            }
            Action::ApprovalAccepted { step, operator, .. }
            | Action::ApprovalRefused { step, operator, .. } => {
                let roles = match cause {
                    Event::Approved { roles, .. } => roles.clone(),
                    _ => Vec::new(),
                };
                let reason = match a {
                    Action::ApprovalRefused { reason, .. } => Some(reason.clone()),
                    _ => None,
                };
                self.node(step).approvals.push(ApprovalGiven {
                    operator: operator.clone(),
                    roles,
                    at_ms: at,
                    accepted: reason.is_none(),
                    reason,
                });
            }
            Action::BrokeGlass { step, operator } => {
                let why = match cause {
                    Event::BreakGlass { reason, .. } => reason.clone(),
                    _ => String::new(),
                };
                self.node(step).approvals.push(ApprovalGiven {
                    operator: operator.clone(),
                    roles: Vec::new(),
                    at_ms: at,
                    accepted: true,
                    reason: Some(format!("break-glass: {why}")),
                });
            }
            Action::Denied { step, operator, .. } => {
                let (roles, why) = match cause {
                    Event::Denied { roles, reason, .. } => (roles.clone(), reason.clone()),
                    _ => (Vec::new(), String::new()),
                };
                self.node(step).approvals.push(ApprovalGiven {
                    operator: operator.clone(),
                    roles,
                    at_ms: at,
                    accepted: false,
                    reason: Some(format!("denied: {why}")),
                });
            }
            Action::StepDone { step } => {
                self.node(step).done_ms.get_or_insert(at);
            }
            Action::MilestoneReached { milestone, at_ms } => {
                self.node(milestone).done_ms.get_or_insert(*at_ms);
            }
            Action::StepGaveUp { step, .. } => {
                self.node(step).gave_up_ms.get_or_insert(at);
            }
            Action::Skip { step, reason } => {
                self.node(step)
                    .skipped
                    .get_or_insert_with(|| reason.clone());
            }
            Action::Compensate { step } => {
                self.node(step).compensation = Some(Compensation {
                    start_ms: at,
                    end_ms: None,
                    error: None,
                });
            }
            Action::Finished { .. } => self.finished_ms = Some(at),
            Action::Abandon { .. } | Action::SetTimer { .. } => {}
        }
    }

    /// Per node, how long its work took: each successful attempt from start to result, and for
    /// an approval step the wait from the request to the step's completion.
    #[must_use]
    pub fn durations(&self) -> BTreeMap<&str, Vec<u64>> {
        let mut out: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for n in self.nodes.values() {
            for a in &n.attempts {
                if let (AttemptOutcome::Succeeded, Some(end)) = (a.outcome, a.end_ms) {
                    out.entry(&n.id)
                        .or_default()
                        .push(end.saturating_sub(a.start_ms));
                }
            }
            if let (Some(from), Some(done)) = (n.approval_requested_ms, n.done_ms)
                && n.attempts.is_empty()
            {
                out.entry(&n.id)
                    .or_default()
                    .push(done.saturating_sub(from));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{Config, Scheduler};
    use drover_schema::Outputs;

    /// A run played through the real scheduler: `flaky` fails once (transiently) and succeeds on
    /// its retry, `gate` waits for Bob's approval, the milestone follows.
    fn transitions() -> Vec<Transition> {
        let src = r#"runbook "t" {
  rto   = 1h
  rpo   = 1h
  modes = [drill]
}

step flaky {
  action = wait
  retry {
    attempts = 2
    backoff  = 10s
  }
  with {
    duration = 1s
  }
}

step gate {
  action = approval
  after  = [flaky]
  with {
    prompt = "go?"
  }
}

milestone done {
  after     = [gate]
  stops_rto = true
}
"#;
        let catalogue = drover_adapters::builtin_catalogue();
        let opts = drover_dsl::CompileOptions {
            catalogue: &catalogue,
            vars: Vec::new(),
            operators: None,
        };
        let plan = drover_dsl::compile_str("t.drover", src, &opts)
            .plan
            .expect("plan");
        let mut s = Scheduler::new(&plan, Config::new(drover_dsl::Mode::Drill, "alice", 1));
        let mut out = Vec::new();
        let mut feed = |at: u64, event: Event, out: &mut Vec<Transition>| {
            let actions = s.on_event(&event, at);
            out.push(Transition { at, event, actions });
            out.last().map(|t| t.actions.clone()).unwrap_or_default()
        };
        feed(1_000, Event::Started, &mut out);
        let retry = feed(
            2_000,
            Event::StepFailed {
                step: "flaky".into(),
                attempt: 1,
                error: "busy".into(),
                transient: true,
                context: None,
            },
            &mut out,
        );
        let at = retry
            .iter()
            .find_map(|a| match a {
                Action::SetTimer { at_ms, .. } => Some(*at_ms),
                _ => None,
            })
            .expect("a retry timer");
        feed(
            at,
            Event::TimerFired {
                step: "flaky".into(),
                attempt: 1,
                timer: TimerKind::Retry,
            },
            &mut out,
        );
        feed(
            at + 1_500,
            Event::StepSucceeded {
                step: "flaky".into(),
                attempt: 2,
                outputs: Outputs::new(),
            },
            &mut out,
        );
        feed(
            at + 60_000,
            Event::Approved {
                step: "gate".into(),
                operator: "alice".into(),
                roles: Vec::new(),
            },
            &mut out,
        );
        feed(
            at + 90_000,
            Event::Approved {
                step: "gate".into(),
                operator: "bob".into(),
                roles: Vec::new(),
            },
            &mut out,
        );
        out
    }

    #[test]
    fn attempts_approvals_and_the_end_are_rebuilt_from_transitions() {
        let tr = transitions();
        let t = Timeline::from_transitions(&tr);
        assert_eq!(t.started_ms, Some(1_000));
        let flaky = &t.nodes["flaky"];
        assert_eq!(flaky.attempts.len(), 2);
        assert_eq!(flaky.attempts[0].outcome, AttemptOutcome::Failed);
        assert_eq!(flaky.attempts[0].error.as_deref(), Some("busy"));
        assert_eq!(flaky.attempts[0].end_ms, Some(2_000));
        assert_eq!(flaky.attempts[1].outcome, AttemptOutcome::Succeeded);
        assert_eq!(flaky.start_ms(), Some(1_000));
        let retry_at = flaky.attempts[1].start_ms;
        assert_eq!(flaky.end_ms(), Some(retry_at + 1_500));

        let gate = &t.nodes["gate"];
        assert_eq!(gate.approval_requested_ms, Some(retry_at + 1_500));
        // Alice started the run: her approval is refused (four eyes), Bob's counts.
        assert_eq!(gate.approvals.len(), 2);
        assert!(!gate.approvals[0].accepted && gate.approvals[0].reason.is_some());
        assert!(gate.approvals[1].accepted);
        assert_eq!(gate.done_ms, Some(retry_at + 90_000));
        assert_eq!(t.nodes["done"].done_ms, Some(retry_at + 90_000));
        assert_eq!(t.finished_ms, Some(retry_at + 90_000));

        // Only successful work counts as a measured duration; the approval wait does.
        let d = t.durations();
        assert_eq!(d["flaky"], vec![1_500]);
        assert_eq!(d["gate"], vec![88_500]);
    }

    #[test]
    fn a_prefix_of_the_journal_gives_an_unfinished_attempt() {
        let tr = transitions();
        let t = Timeline::from_transitions(&tr[..1]);
        let flaky = &t.nodes["flaky"];
        assert_eq!(flaky.attempts.len(), 1);
        assert_eq!(flaky.attempts[0].outcome, AttemptOutcome::Unfinished);
        assert_eq!(flaky.end_ms(), None);
        assert_eq!(t.finished_ms, None);
    }
}

//! The tabletop exercise's record: the decisions the team took at the virtual time they took
//! them, who stopped the exercise if someone did, and the report written at the end. The terminal
//! room that asks the questions lives in the CLI; what is recorded lives here.

use crate::{Scenario, Trial};
use drover_dsl::{Mode, Plan};
use serde::Serialize;

/// What the team decided at an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// Enough approvers were named.
    Approved,
    /// Someone stopped the exercise here.
    Stopped,
    /// The input ended (end of file, a closed terminal) before the approval was complete.
    InputEnded,
}

/// One decision the team took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Virtual time of the approval (ms since the start).
    pub at_ms: u64,
    /// The approval step.
    pub step: String,
    /// What was decided.
    pub decision: DecisionKind,
    /// Who approved (the names typed before a stop, for a stop).
    pub approvers: Vec<String>,
    /// Who stopped the exercise, for a stop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    /// How long the discussion took, in virtual time.
    pub discussion_ms: u64,
}

impl Decision {
    /// One line for the terminal and the report: `approve_cutover approved by bob, carol`.
    #[must_use]
    pub fn describe(&self) -> String {
        match self.decision {
            DecisionKind::Approved => {
                format!("{} approved by {}", self.step, self.approvers.join(", "))
            }
            DecisionKind::Stopped => format!(
                "{} stopped by {}",
                self.step,
                self.stopped_by
                    .as_deref()
                    .unwrap_or("an unnamed participant")
            ),
            DecisionKind::InputEnded => {
                format!("{} not decided: the input ended", self.step)
            }
        }
    }
}

/// The exercise's report (`drover tabletop --report FILE`). Always marked simulated.
#[derive(Debug, Clone, Serialize)]
pub struct TabletopReport {
    /// Always true: a tabletop is never a verified recovery.
    pub simulated: bool,
    /// The runbook's name.
    pub runbook: String,
    /// The mode exercised.
    pub mode: String,
    /// The scenario's name (empty: none).
    pub scenario: String,
    /// The seed of the virtual run.
    pub seed: u64,
    /// `succeeded`, `failed`, `interrupted` (stopped) …
    pub outcome: String,
    /// Virtual RTO achieved, if reached.
    pub rto_ms: Option<u64>,
    /// The runbook's RTO target.
    pub rto_target_ms: u64,
    /// Virtual RPO, if measured.
    pub rpo_ms: Option<u64>,
    /// Every decision, in order.
    pub decisions: Vec<Decision>,
    /// What was narrated, with its virtual time.
    pub timeline: Vec<(u64, String)>,
}

impl TabletopReport {
    /// The report of `trial`, an exercise of `plan` in `mode` under `scenario`.
    #[must_use]
    pub fn new(
        plan: &Plan,
        mode: Mode,
        scenario: &Scenario,
        seed: u64,
        trial: &Trial,
        decisions: Vec<Decision>,
        timeline: Vec<(u64, String)>,
    ) -> Self {
        Self {
            simulated: true,
            runbook: plan.runbook.name.clone(),
            mode: mode.as_str().to_owned(),
            scenario: scenario.name.clone(),
            seed,
            outcome: trial.outcome.as_str().to_owned(),
            rto_ms: trial.rto_ms,
            rto_target_ms: plan.runbook.rto_ms,
            rpo_ms: trial.rpo_ms,
            decisions,
            timeline,
        }
    }

    /// The decision that ended the exercise early (a stop, or the input ending), if any.
    #[must_use]
    pub fn ended_early(&self) -> Option<&Decision> {
        self.decisions
            .iter()
            .find(|d| d.decision != DecisionKind::Approved)
    }
}

/// A virtual time as the exercise shows it: `T+01:02:03`.
#[must_use]
pub fn elapsed_label(ms: u64) -> String {
    let s = ms / 1000;
    format!("T+{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(kind: DecisionKind, by: Option<&str>) -> Decision {
        Decision {
            at_ms: 61_000,
            step: "go".into(),
            decision: kind,
            approvers: vec!["bob".into()],
            stopped_by: by.map(str::to_owned),
            discussion_ms: 0,
        }
    }

    #[test]
    fn decisions_say_who_and_what() {
        assert_eq!(
            decision(DecisionKind::Approved, None).describe(),
            "go approved by bob"
        );
        assert_eq!(
            decision(DecisionKind::Stopped, Some("alice")).describe(),
            "go stopped by alice"
        );
        assert_eq!(
            decision(DecisionKind::InputEnded, None).describe(),
            "go not decided: the input ended"
        );
        assert_eq!(elapsed_label(3_723_000), "T+01:02:03");
    }

    #[test]
    fn a_stop_or_the_end_of_input_ends_the_exercise_early() {
        let catalogue = drover_adapters::builtin_catalogue();
        let opts = drover_dsl::CompileOptions {
            catalogue: &catalogue,
            vars: Vec::new(),
            operators: None,
        };
        let c = drover_dsl::compile_str(
            "t.drover",
            "runbook \"t\" {\n  rto = 1h\n  rpo = 1h\n  modes = [drill]\n}\nstep a {\n  action = wait\n  with {\n    duration = 1s\n  }\n}\nmilestone m {\n  after = [a]\n  stops_rto = true\n}\n",
            &opts,
        );
        let plan = c.plan.expect("plan");
        let prep = crate::Prepared::new(&plan, Mode::Drill, &Scenario::default());
        let trial = prep.trial_with(1, 0, &mut crate::Automatic);
        let mut r = TabletopReport::new(
            &plan,
            Mode::Drill,
            &Scenario::default(),
            1,
            &trial,
            vec![decision(DecisionKind::Approved, None)],
            Vec::new(),
        );
        assert!(r.simulated);
        assert_eq!(r.outcome, "succeeded");
        assert!(r.ended_early().is_none());
        r.decisions.push(decision(DecisionKind::InputEnded, None));
        assert_eq!(
            r.ended_early().map(|d| d.decision),
            Some(DecisionKind::InputEnded)
        );
    }
}

//! The run record: what happened, and the achieved RTO and RPO against the runbook's targets.

use crate::scheduler::{RunOutcome, Scheduler, Status};
use drover_dsl::{Plan, PlanNode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A target and what was achieved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objective {
    /// The runbook's target (ms).
    pub target_ms: u64,
    /// What was achieved (ms), if measurable.
    pub achieved_ms: Option<u64>,
    /// Whether the target was met, if measurable.
    pub met: Option<bool>,
    /// How it was measured.
    pub basis: String,
}

/// One step's line in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepLine {
    /// Step or milestone id.
    pub id: String,
    /// Final state.
    pub state: String,
    /// The last error, if any.
    pub error: Option<String>,
    /// Where the last failed attempt failed, as data (step, action, resource, region or
    /// subscription, the provider's code), when the adapter said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_context: Option<drover_schema::ErrorContext>,
}

/// A restored or verified backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupLine {
    /// The step.
    pub step: String,
    /// Backup id.
    pub backup_id: String,
    /// Data set.
    pub dataset: String,
    /// Recovery point.
    pub recovery_point: String,
    /// Key id.
    pub key_id: String,
    /// Verified plaintext SHA-256.
    pub sha256: String,
}

/// The JSON run record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id.
    pub run_id: String,
    /// Runbook name.
    pub runbook: String,
    /// SHA-256 of the runbook's sources.
    pub source_sha256: String,
    /// Mode.
    pub mode: drover_dsl::Mode,
    /// Who started it.
    pub initiator: String,
    /// When the incident or drill was declared (RFC 3339).
    pub declared_at: String,
    /// How it ended (absent while running).
    pub outcome: Option<RunOutcome>,
    /// Recovery time.
    pub rto: Objective,
    /// Recovery point.
    pub rpo: Objective,
    /// Milestones reached, with when (RFC 3339).
    pub milestones: BTreeMap<String, String>,
    /// Every node's final state.
    pub steps: Vec<StepLine>,
    /// Backups restored or verified.
    pub backups: Vec<BackupLine>,
    /// When the run did not end as planned (failed, interrupted, a rollback that failed, steps
    /// that failed): every completed step whose change is still in place, with what it replaced
    /// — what `drover rollback` would undo.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes_in_place: Vec<ChangeInPlace>,
    /// A rollback asked for with `drover rollback` that undoes destructive steps gated by
    /// approvals: who asked, the gate whose rules apply, and who approved so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_approval: Option<RollbackApproval>,
}

/// The approvals of a rollback on request (`drover approve RUN rollback`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackApproval {
    /// Who asked for the rollback (may not approve it, by four eyes).
    pub requested_by: String,
    /// The approval step whose rules (approvers, roles) apply.
    pub gate: String,
    /// Approvals needed.
    pub required: u32,
    /// Who approved, in order.
    pub approved_by: Vec<String>,
    /// Whether the undos may run.
    pub approved: bool,
}

/// A change a run made and did not undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeInPlace {
    /// The step.
    pub step: String,
    /// Its action.
    pub action: String,
    /// Whether `drover rollback` can undo it (a `compensate` block or a built-in undo).
    pub undoable: bool,
    /// The step was in flight when the run stopped: its change may or may not be in place
    /// (`drover rollback` reads it back first).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_flight: bool,
    /// What it replaced, as the step captured it (`previous`), if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<serde_json::Value>,
}

impl RunRecord {
    /// Whether a target was missed.
    #[must_use]
    pub fn missed_target(&self) -> bool {
        self.rto.met == Some(false) || self.rpo.met == Some(false)
    }
}

/// A new run id: `r` + the UTC time to the second + a 16-bit salt (`r20261202T103000-1a2b`).
/// The salt starts at a random value in each process and counts up, so ids one process makes
/// never repeat within a second (a server preparing runs for several operators at once) and
/// two processes rarely collide; the journal refuses a repeated id. Sortable by start.
#[must_use]
pub fn new_run_id(now_ms: u64) -> String {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: std::sync::OnceLock<AtomicU16> = std::sync::OnceLock::new();
    let salt = NEXT
        .get_or_init(|| AtomicU16::new(rand::random()))
        .fetch_add(1, Ordering::Relaxed);
    let t = rfc3339(now_ms).replace([':', '-'], "");
    format!("r{}-{salt:04x}", &t[..t.len().min(15)])
}

/// A time (ms since the epoch) in RFC 3339, UTC.
#[must_use]
pub fn rfc3339(ms: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Milliseconds since the epoch of an RFC 3339 time.
#[must_use]
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Builds the record from the plan, the scheduler's state and the milestone times.
#[must_use]
pub fn build(
    run_id: &str,
    plan: &Plan,
    mode: drover_dsl::Mode,
    initiator: &str,
    declared_at: u64,
    sched: &Scheduler,
    milestones: &BTreeMap<String, u64>,
) -> RunRecord {
    let g = &plan.graph;
    let rto_node = g.node_indices().find_map(|i| match &g[i] {
        PlanNode::Milestone(m) if m.stops_rto => Some(m),
        _ => None,
    });
    let rto_at = rto_node.and_then(|m| milestones.get(&m.id)).copied();
    let rto_achieved = rto_at.map(|at| at.saturating_sub(declared_at));
    let rto = Objective {
        target_ms: plan.runbook.rto_ms,
        achieved_ms: rto_achieved,
        met: rto_achieved.map(|a| a <= plan.runbook.rto_ms),
        basis: match rto_node {
            Some(m) => format!("from declaration to milestone `{}`", m.id),
            None => "no milestone stops the RTO clock".into(),
        },
    };
    let outputs = sched.all_outputs();
    let rpo_from: Vec<String> = rto_node.map(|m| m.rpo_from.clone()).unwrap_or_default();
    let points: Vec<u64> = rpo_from
        .iter()
        .filter_map(|s| outputs.get(s))
        .filter_map(|o| o.get("recovery_point").and_then(|v| v.as_str()))
        .filter_map(parse_rfc3339)
        .collect();
    let rpo_achieved = points
        .iter()
        .min()
        .map(|oldest| declared_at.saturating_sub(*oldest));
    let rpo = Objective {
        target_ms: plan.runbook.rpo_ms,
        achieved_ms: rpo_achieved,
        met: rpo_achieved.map(|a| a <= plan.runbook.rpo_ms),
        basis: if rpo_from.is_empty() {
            "no data sets count for RPO (`rpo_from`)".into()
        } else {
            format!(
                "from the oldest recovery point of {} to the declaration",
                rpo_from.join(", ")
            )
        },
    };
    let steps = sched
        .snapshot()
        .into_iter()
        .map(|(id, s)| StepLine {
            error: matches!(s, Status::Failed | Status::CompensationFailed)
                .then(|| sched.error(&id).unwrap_or("").to_owned()),
            error_context: matches!(s, Status::Failed)
                .then(|| sched.error_context(&id).cloned())
                .flatten(),
            state: serde_json::to_value(s)
                .ok()
                .and_then(|v| v.get("state").and_then(|x| x.as_str()).map(str::to_owned))
                .unwrap_or_default(),
            id,
        })
        .collect();
    let backups = outputs
        .iter()
        .filter_map(|(step, o)| {
            let s = |k: &str| o.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            Some(BackupLine {
                step: step.clone(),
                backup_id: s("backup_id")?,
                dataset: s("dataset")?,
                recovery_point: s("recovery_point")?,
                key_id: s("key_id")?,
                sha256: s("sha256")?,
            })
        })
        .collect();
    let unplanned = !matches!(
        sched.outcome(),
        Some(RunOutcome::Succeeded | RunOutcome::RolledBack)
    );
    let changes_in_place = if unplanned {
        plan.steps()
            .filter(|(_, st)| st.effect != drover_schema::Effect::ReadOnly)
            .filter(|(_, st)| {
                matches!(
                    sched.status(&st.id),
                    Some(
                        &(Status::Succeeded | Status::CompensationFailed | Status::Running { .. })
                    )
                )
            })
            .map(|(_, st)| ChangeInPlace {
                step: st.id.clone(),
                action: st.action.clone(),
                undoable: st.builtin_undo || st.compensate.is_some(),
                in_flight: matches!(sched.status(&st.id), Some(Status::Running { .. })),
                previous: outputs.get(&st.id).and_then(|o| o.get("previous")).cloned(),
            })
            .collect()
    } else {
        Vec::new()
    };
    RunRecord {
        run_id: run_id.to_owned(),
        runbook: plan.runbook.name.clone(),
        source_sha256: plan.runbook.source_sha256.clone(),
        mode,
        initiator: initiator.to_owned(),
        declared_at: rfc3339(declared_at),
        outcome: sched.outcome(),
        rto,
        rpo,
        milestones: milestones
            .iter()
            .map(|(k, v)| (k.clone(), rfc3339(*v)))
            .collect(),
        steps,
        backups,
        changes_in_place,
        rollback_approval: sched.rollback_approval(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{Config, Event};
    use drover_schema::Outputs;

    #[test]
    fn run_ids_carry_the_start_time_and_sort_by_it() {
        let at = parse_rfc3339("2026-12-02T10:30:00Z").expect("a time");
        let id = new_run_id(at);
        assert!(id.starts_with("r20261202T103000-"), "{id}");
        assert_eq!(id.len(), "r20261202T103000-1a2b".len());
        assert!(new_run_id(at + 1_000) > id, "a later run sorts after");
    }

    #[test]
    fn run_ids_made_in_the_same_millisecond_differ() {
        let at = parse_rfc3339("2026-12-02T10:30:00Z").expect("a time");
        let ids: std::collections::BTreeSet<String> = (0..1000).map(|_| new_run_id(at)).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn times_round_trip_through_rfc3339() {
        let ms = 1_764_671_400_123;
        assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    /// The RTO runs from the declaration to the milestone that stops it; the RPO from the
    /// oldest recovery point of the data sets the milestone names to the declaration.
    #[test]
    fn rto_and_rpo_are_measured_against_their_targets() {
        let src = r#"runbook "t" {
  rto   = 10m
  rpo   = 15m
  modes = [drill]
}

step restore {
  action = backup.rehydrate
  with {
    source = "/b.dbk"
    key    = "file:/k"
    dest   = "/tmp/x"
  }
}

milestone up {
  after     = [restore]
  stops_rto = true
  rpo_from  = [restore]
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
        let declared = parse_rfc3339("2026-12-02T03:00:00Z").expect("time");
        let mut s = Scheduler::new(&plan, Config::new(drover_dsl::Mode::Drill, "alice", 1));
        s.on_event(&Event::Started, declared);
        let outputs: Outputs = [
            ("backup_id", "b1"),
            ("dataset", "ehr"),
            ("recovery_point", "2026-12-02T02:40:00Z"),
            ("key_id", "file:sha256:ab"),
            ("sha256", "00"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), serde_json::json!(v)))
        .collect();
        s.on_event(
            &Event::StepSucceeded {
                step: "restore".into(),
                attempt: 1,
                outputs,
            },
            declared + 12 * 60_000,
        );
        let milestones = BTreeMap::from([("up".to_owned(), declared + 12 * 60_000)]);
        let r = build(
            "r1",
            &plan,
            drover_dsl::Mode::Drill,
            "alice",
            declared,
            &s,
            &milestones,
        );
        assert_eq!(r.rto.achieved_ms, Some(12 * 60_000));
        assert_eq!(
            r.rto.met,
            Some(false),
            "12 minutes against a 10-minute target"
        );
        assert_eq!(r.rpo.achieved_ms, Some(20 * 60_000));
        assert_eq!(r.rpo.met, Some(false), "20 minutes of data against 15");
        assert!(r.missed_target());
        assert_eq!(r.backups.len(), 1);
        assert_eq!(r.backups[0].backup_id, "b1");
        assert_eq!(r.declared_at, "2026-12-02T03:00:00Z");
        assert!(r.rto.basis.contains("`up`"), "{}", r.rto.basis);
    }
}

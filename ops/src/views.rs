//! What front ends show of runs: the list, one run's status, an audit log.

use crate::{OpsError, Workspace};
use drover_engine::journal::{ProgressRow, RunRow};
use drover_engine::run_record::{RunRecord, rfc3339};

/// One run as a list shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    /// The run.
    pub run_id: String,
    /// Its runbook.
    pub runbook: String,
    /// Its mode.
    pub mode: String,
    /// A tabletop exercise (simulated: never a verified recovery).
    pub simulated: bool,
    /// Its status; a run journaled as live that no process drives shows as `interrupted`.
    pub status: String,
    /// Who started it.
    pub initiator: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// Its outcome, once over (with ", missed target" when it missed its RTO or RPO).
    pub outcome: Option<String>,
}

/// One run as `status` shows it.
#[derive(Debug, Clone)]
pub struct RunView {
    /// The run's row.
    pub row: RunRow,
    /// Its record as it stands.
    pub record: RunRecord,
    /// Its status; a run journaled as live that no process drives shows as `interrupted`.
    pub status: String,
    /// The process driving it, if one does.
    pub driven_by: Option<String>,
    /// What running steps last said they wait for.
    pub waiting: Vec<ProgressRow>,
    /// The plan's nodes with what happened to each, in plan order (the DAG and the Gantt).
    pub graph: Vec<GraphNode>,
    /// Every approval step: what it approves, who may, who did.
    pub approvals: Vec<ApprovalView>,
    /// A tabletop exercise (simulated: never a verified recovery).
    pub simulated: bool,
}

/// One node of a run's plan with what happened to it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GraphNode {
    /// Node id.
    pub id: String,
    /// `step` or `milestone`.
    pub kind: &'static str,
    /// The step's action (`approval`, `aws_route53.upsert`…); the milestone's title.
    pub label: String,
    /// Nodes it waits for.
    pub after: Vec<String>,
    /// What happened to it (attempts, approval request, done).
    #[serde(flatten)]
    pub timeline: drover_engine::timeline::NodeTimeline,
}

/// An approval step as the console shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApprovalView {
    /// The step.
    pub step: String,
    /// Its state (`pending`, `waiting`, `succeeded`, `failed`, `skipped`…).
    pub state: String,
    /// Exactly what is approved: the step's own action and inputs and those of the steps it
    /// gates, as signed (by their SHA-256, `inputs_sha256`).
    pub subject: Option<serde_json::Value>,
    /// The digest a statement names.
    pub inputs_sha256: String,
    /// Distinct approvals needed.
    pub required: u32,
    /// Roles that may approve (empty: any).
    pub roles: Vec<String>,
    /// Whether the initiator may approve (four eyes off).
    pub initiator_may_approve: bool,
    /// Whether a roster `break_glass` operator may approve alone.
    pub break_glass: bool,
    /// Roster operators who may still approve (none without a roster: names are typed).
    pub eligible: Option<Vec<String>>,
    /// Approvals and refusals, in order.
    pub given: Vec<GivenView>,
    /// Whether distinct approvers other than the initiator reached `required`.
    pub four_eyes_satisfied: bool,
}

/// One approval given (or refused).
#[derive(Debug, Clone, serde::Serialize)]
pub struct GivenView {
    /// Who.
    pub operator: String,
    /// When (RFC 3339).
    pub at: String,
    /// Whether it counted.
    pub accepted: bool,
    /// Why not.
    pub reason: Option<String>,
    /// What signed it (`ssh-ed25519`, `webauthn-es256`…), when signed.
    pub signed_with: Option<String>,
}

impl RunView {
    /// The record with `status`, `driven_by` and `waiting_on`, as JSON.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.record).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.insert("status".into(), serde_json::json!(self.status));
            m.insert("driven_by".into(), serde_json::json!(self.driven_by));
            m.insert(
                "waiting_on".into(),
                serde_json::json!(
                    self.waiting
                        .iter()
                        .map(|p| serde_json::json!({ "step": p.step, "text": p.text, "at": rfc3339(p.at) }))
                        .collect::<Vec<_>>()
                ),
            );
            m.insert("graph".into(), serde_json::json!(self.graph));
            m.insert("approvals".into(), serde_json::json!(self.approvals));
            m.insert("simulated".into(), serde_json::json!(self.simulated));
        }
        v
    }
}

fn shown(row: &RunRow, driven: bool) -> String {
    if row.status.is_live() && !driven {
        "interrupted".to_owned()
    } else {
        row.status.to_string()
    }
}

impl Workspace {
    /// Every run, newest first, as a list shows them.
    ///
    /// # Errors
    /// Journal errors.
    pub fn run_list(&self, now: u64) -> Result<Vec<RunSummary>, OpsError> {
        let j = self.journal_read()?;
        let rows = j.runs()?;
        Ok(rows
            .iter()
            .map(|r| {
                let driven =
                    r.status.is_live() && j.driven_by(&r.run_id, now).ok().flatten().is_some();
                let record: Option<RunRecord> = r
                    .record
                    .as_deref()
                    .and_then(|t| serde_json::from_str(t).ok());
                let outcome = record.as_ref().and_then(|rec| {
                    rec.outcome.map(|o| {
                        let missed = if rec.missed_target() {
                            ", missed target"
                        } else {
                            ""
                        };
                        format!("{}{missed}", o.as_str())
                    })
                });
                RunSummary {
                    run_id: r.run_id.clone(),
                    runbook: r.runbook.clone(),
                    mode: r.mode.as_str().to_owned(),
                    simulated: r.simulated(),
                    status: shown(r, driven),
                    initiator: r.initiator.clone(),
                    started: rfc3339(r.created_at),
                    outcome,
                }
            })
            .collect())
    }

    /// One run (`latest` resolved) as `status` shows it.
    ///
    /// # Errors
    /// No such run.
    pub fn run_view(&self, run_id: &str, now: u64) -> Result<RunView, OpsError> {
        let j = self.journal_read()?;
        let run_id = self.resolve(&*j, run_id)?;
        let (row, record) = drover_engine::driver::status(&*j, &run_id)?;
        let driven_by = j.driven_by(&run_id, now).unwrap_or(None);
        let waiting = j
            .progress(&run_id)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| {
                record
                    .steps
                    .iter()
                    .any(|s| s.id == p.step && s.state == "running")
            })
            .collect();
        let timeline =
            drover_engine::timeline::Timeline::from_transitions(&j.transitions(&run_id)?);
        let plan: Option<drover_dsl::Plan> = serde_json::from_str(&row.plan).ok();
        let (graph, approvals) = match &plan {
            Some(plan) => {
                let signed = j.signed_statements(&run_id).unwrap_or_default();
                (
                    graph(plan, &timeline),
                    approvals(plan, &row, &record, &timeline, &signed),
                )
            }
            None => (Vec::new(), Vec::new()),
        };
        Ok(RunView {
            status: shown(&row, driven_by.is_some()),
            row,
            record,
            driven_by,
            waiting,
            graph,
            approvals,
            simulated: plan.as_ref().is_some_and(|p| p.runbook.simulated),
        })
    }

    /// The records of an audit log (a run's, `latest` resolved, or a named log such as
    /// `@backups`), as JSON lines in order.
    ///
    /// # Errors
    /// No such run.
    pub fn audit_records(&self, log: &str) -> Result<Vec<String>, OpsError> {
        let j = self.journal_read()?;
        let log = if log.starts_with('@') {
            log.to_owned()
        } else {
            self.resolve(&*j, log)?
        };
        Ok(j.audit(&log)?.into_iter().map(|(_, r, _)| r).collect())
    }

    /// Checks a named log (such as `@backups`) against its head, the anchor's checkpoints and,
    /// with a roster, every signature: `(records, checkpoints agreed with, signed records)` or
    /// the first fault.
    ///
    /// # Errors
    /// No journal.
    #[allow(clippy::type_complexity)]
    pub fn log_verify(
        &self,
        log: &str,
        anchor: Option<&drover_engine::anchor::Anchor>,
        roster: Option<&std::path::Path>,
    ) -> Result<Result<(u64, Option<usize>, Option<usize>), String>, OpsError> {
        let j = self.journal_read()?;
        let checked = drover_engine::oplog::verify(&*j, log, anchor).map_err(|e| e.to_string());
        Ok(checked.and_then(|(n, anchored)| {
            let signed = match roster {
                None => None,
                Some(path) => Some(
                    drover_identity::Roster::load(path)
                        .map_err(|issues| {
                            format!(
                                "the operator roster {} is not valid: {}",
                                path.display(),
                                issues.first().map_or("", |i| i.message.as_str())
                            )
                        })
                        .and_then(|(roster, _)| {
                            let rows = j.audit(log).map_err(|e| e.to_string())?;
                            drover_engine::oplog::check_signatures(&rows, log, &roster)
                        })?,
                ),
            };
            Ok((n, anchored, signed))
        }))
    }
}

fn graph(plan: &drover_dsl::Plan, t: &drover_engine::timeline::Timeline) -> Vec<GraphNode> {
    let g = &plan.graph;
    g.node_indices()
        .map(|i| {
            let n = &g[i];
            let (kind, label) = match n {
                drover_dsl::PlanNode::Step(s) => ("step", s.action.clone()),
                drover_dsl::PlanNode::Milestone(m) => {
                    ("milestone", m.title.clone().unwrap_or_default())
                }
            };
            GraphNode {
                id: n.id().to_owned(),
                kind,
                label,
                after: g
                    .neighbors_directed(i, petgraph::Direction::Incoming)
                    .map(|p| g[p].id().to_owned())
                    .collect(),
                timeline: t.nodes.get(n.id()).cloned().unwrap_or_else(|| {
                    drover_engine::timeline::NodeTimeline {
                        id: n.id().to_owned(),
                        ..Default::default()
                    }
                }),
            }
        })
        .collect()
}

fn approvals(
    plan: &drover_dsl::Plan,
    row: &RunRow,
    record: &RunRecord,
    t: &drover_engine::timeline::Timeline,
    signed: &[drover_engine::journal::StatementRow],
) -> Vec<ApprovalView> {
    let roster = drover_engine::signed::roster(plan).and_then(Result::ok);
    plan.graph
        .node_weights()
        .filter_map(drover_dsl::PlanNode::as_step)
        .filter(|s| s.role == drover_schema::Role::Approval)
        .map(|s| {
            let strings = |k: &str| match s.inputs.get(k) {
                Some(drover_dsl::PlanValue::List(l)) => l
                    .iter()
                    .filter_map(|v| match v {
                        drover_dsl::PlanValue::String(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let number = |k: &str, d: u32| match s.inputs.get(k) {
                Some(drover_dsl::PlanValue::Int(n)) => u32::try_from(*n).unwrap_or(d).max(1),
                _ => d,
            };
            let flag = |k: &str| matches!(s.inputs.get(k), Some(drover_dsl::PlanValue::Bool(true)));
            let roles: Vec<String> = strings("roles");
            let initiator_may_approve = flag("initiator_may_approve");
            let node = t.nodes.get(&s.id);
            let given: Vec<GivenView> = node
                .map(|n| {
                    n.approvals
                        .iter()
                        .map(|a| GivenView {
                            operator: a.operator.clone(),
                            at: rfc3339(a.at_ms),
                            accepted: a.accepted,
                            reason: a.reason.clone(),
                            signed_with: signed
                                .iter()
                                .filter(|(step, op, _)| {
                                    step.as_deref() == Some(&s.id)
                                        && op.as_deref() == Some(&a.operator)
                                })
                                .find_map(|(_, _, st)| {
                                    drover_identity::algorithm_of(&st.signature)
                                }),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let approved: std::collections::BTreeSet<&str> = given
                .iter()
                .filter(|g| g.accepted)
                .map(|g| g.operator.as_str())
                .collect();
            let required = number("approvers", 1);
            let counted = approved
                .iter()
                .filter(|o| initiator_may_approve || **o != row.initiator)
                .count();
            let eligible = roster.as_ref().map(|r| {
                r.operators
                    .values()
                    .filter(|o| roles.is_empty() || o.roles.iter().any(|x| roles.contains(x)))
                    .filter(|o| initiator_may_approve || o.name != row.initiator)
                    .filter(|o| !approved.contains(o.name.as_str()))
                    .map(|o| o.name.clone())
                    .collect()
            });
            ApprovalView {
                step: s.id.clone(),
                state: record
                    .steps
                    .iter()
                    .find(|l| l.id == s.id)
                    .map_or_else(|| "pending".to_owned(), |l| l.state.clone()),
                subject: drover_engine::signed::subject_doc(plan, &s.id),
                inputs_sha256: drover_engine::signed::subject(plan, &s.id),
                required,
                roles,
                initiator_may_approve,
                break_glass: flag("break_glass"),
                eligible,
                given,
                four_eyes_satisfied: u32::try_from(counted).unwrap_or(u32::MAX) >= required,
            }
        })
        .collect()
}

/// What the simulator predicts of a run's recovery time, from its plan and the durations its
/// runbook's past runs measured in this workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Prediction {
    /// Median predicted RTO.
    pub p50_ms: Option<u64>,
    /// 95th percentile predicted RTO.
    pub p95_ms: Option<u64>,
    /// Trials run.
    pub trials: u64,
}

/// Trials behind a run page's prediction: enough for a stable p95, quick on one core.
pub const PREDICTION_TRIALS: u64 = 1000;

impl Workspace {
    /// The simulator's prediction of `run_id`'s RTO (`None` when the plan has no RTO milestone).
    ///
    /// # Errors
    /// No such run.
    pub fn prediction(&self, run_id: &str) -> Result<Option<Prediction>, OpsError> {
        let (_, plan) = self.run_plan(run_id)?;
        let j = self.journal_read()?;
        let run_id = self.resolve(&*j, run_id)?;
        let mode = j.run(&run_id)?.mode;
        let measured = j.measured_durations(&plan.runbook.name).unwrap_or_default();
        let prep = drover_simulator::Prepared::with_measured(
            &plan,
            mode,
            &drover_simulator::Scenario::default(),
            &measured,
        );
        if !prep.has_rto_milestone() {
            return Ok(None);
        }
        let s = drover_simulator::run(
            &prep,
            &plan,
            "",
            mode.as_str(),
            drover_simulator::Settings {
                trials: PREDICTION_TRIALS,
                seed: 1,
                threads: 1,
            },
        );
        Ok(Some(Prediction {
            p50_ms: s.rto.p50_ms,
            p95_ms: s.rto.p95_ms,
            trials: s.trials,
        }))
    }
}

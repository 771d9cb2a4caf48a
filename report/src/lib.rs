//! Drover's run reports: what a run did and achieved against the runbook's targets, for auditors
//! and managers — the summary, RTO and RPO with pass or fail, the Gantt chart with the achieved
//! critical path, every step's attempts and operators, the backups restored with their recovery
//! points, key ids and verified hashes, the approvals, the audit chain's verification, the
//! prediction (static and, when one was recorded, simulated) beside what was achieved, and the
//! HIPAA controls each part evidences.
//!
//! [`gather`] reads everything from the journal into a [`Report`]; [`render`] turns it into HTML
//! or Markdown through minijinja templates (built in, or the user's own) or JSON. Reports never
//! hold key material or secrets: they are built from the journal and the audit log, which never
//! hold them.

pub mod bundle;

use drover_chart::{Bar, BarKind, GanttRow, Marker};
use drover_dsl::{Plan, PlanNode, format_duration};
use drover_engine::journal::Journal;
use drover_engine::run_record::{BackupLine, RunRecord, rfc3339};
use drover_engine::timeline::{AttemptOutcome, NodeTimeline, Timeline};
use petgraph::Direction;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] drover_engine::journal::JournalError),
    /// The run's stored plan or record does not parse.
    #[error("run {run_id}: {what}")]
    Stored {
        /// The run.
        run_id: String,
        /// What is wrong.
        what: String,
    },
    /// A template failed.
    #[error("template {name}: {error}")]
    Template {
        /// The template.
        name: String,
        /// The error, with its line.
        error: String,
    },
    /// A user template could not be read.
    #[error("template directory {dir}: {error}")]
    TemplateDir {
        /// The directory.
        dir: String,
        /// The error.
        error: String,
    },
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A self-contained HTML page (inline SVG, no scripts, no external resources).
    Html,
    /// Markdown.
    Markdown,
    /// JSON (the [`Report`] itself).
    Json,
}

/// A target and what was achieved, for people.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectiveView {
    /// The target.
    pub target: String,
    /// The target (ms).
    pub target_ms: u64,
    /// What was achieved, or "not measured".
    pub achieved: String,
    /// What was achieved (ms).
    pub achieved_ms: Option<u64>,
    /// `pass`, `fail` or `not measured`.
    pub verdict: String,
    /// How it was measured.
    pub basis: String,
}

/// One attempt, for people.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    /// Attempt number.
    pub attempt: u32,
    /// Start, from the declaration (`T+…`).
    pub start: String,
    /// Duration.
    pub duration: String,
    /// Outcome.
    pub outcome: String,
    /// Error, if any.
    pub error: Option<String>,
}

/// One node's line.
#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    /// Id.
    pub id: String,
    /// `step`, `approval` or `milestone`.
    pub kind: String,
    /// The action (steps).
    pub action: String,
    /// Final state.
    pub state: String,
    /// Attempts made.
    pub attempts: Vec<AttemptView>,
    /// Start (`T+…`), if it started.
    pub start: String,
    /// End (`T+…`), if it ended.
    pub end: String,
    /// From start to end.
    pub duration: String,
    /// Who ran or approved it (from the audit log).
    pub operators: Vec<String>,
    /// On the achieved critical path.
    pub critical: bool,
    /// The simulated mean duration, when a simulation was recorded.
    pub predicted_mean: Option<String>,
    /// The last error, if it failed.
    pub error: Option<String>,
    /// Why it was skipped.
    pub skipped: Option<String>,
    /// Its compensation, if one ran.
    pub compensation: Option<String>,
}

/// An approval given or refused.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalView {
    /// The step.
    pub step: String,
    /// Who.
    pub operator: String,
    /// Roles claimed.
    pub roles: Vec<String>,
    /// When (RFC 3339).
    pub at: String,
    /// `accepted`, `denied: why` or `refused: why`.
    pub decision: String,
    /// How the approver was established: `key SHA256:… (ssh-ed25519)` for a statement signed by
    /// a roster operator's key; `unauthenticated (typed name)` without a roster.
    pub identity: String,
    /// Whether a step-up TOTP code was part of the signed statement.
    pub mfa: bool,
}

/// The prediction beside what was achieved.
#[derive(Debug, Clone, Serialize)]
pub struct PredictionView {
    /// The compiler's prediction from the estimates along the critical path (low–high).
    pub static_rto: Option<String>,
    /// The latest recorded simulation of the same runbook (same sources) in the same mode.
    pub simulation: Option<SimulationView>,
}

/// A recorded simulation, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct SimulationView {
    /// When it was run (RFC 3339).
    pub at: String,
    /// Trials.
    pub trials: u64,
    /// Simulated RTO median.
    pub rto_p50: String,
    /// Simulated RTO 95th percentile.
    pub rto_p95: String,
    /// Share of trials meeting the RTO target, in percent.
    pub p_meet_target_pct: Option<String>,
    /// Share of simulated trials the achieved RTO was at least as fast as, in percent.
    pub achieved_percentile: Option<String>,
}

/// The audit chain's verification.
#[derive(Debug, Clone, Serialize)]
pub struct AuditView {
    /// Records in the log.
    pub records: u64,
    /// The chain head (SHA-256 of the last record).
    pub head: String,
    /// Whether the chain verified against the head kept in the run's row.
    pub verified: bool,
    /// What is wrong, if it did not.
    pub fault: Option<String>,
}

/// A HIPAA control and the parts of this report and bundle that evidence it.
#[derive(Debug, Clone, Serialize)]
pub struct ControlView {
    /// The citation.
    pub control: String,
    /// What it asks.
    pub title: String,
    /// What here evidences it.
    pub evidence: Vec<String>,
}

/// Everything a report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Simulated runs are never verified recoveries; every page says so.
    pub simulated: bool,
    /// Run id.
    pub run_id: String,
    /// Runbook name.
    pub runbook: String,
    /// Its description.
    pub description: Option<String>,
    /// Its owner.
    pub owner: Option<String>,
    /// Main source file.
    pub source: String,
    /// SHA-256 over the runbook's sources.
    pub source_sha256: String,
    /// Mode.
    pub mode: String,
    /// Who started it.
    pub initiator: String,
    /// When the incident or drill was declared.
    pub declared_at: String,
    /// When the run started.
    pub started_at: String,
    /// When it finished, if it has.
    pub finished_at: Option<String>,
    /// How it ended (or `running`).
    pub outcome: String,
    /// Whether it succeeded and met both targets.
    pub passed: bool,
    /// Recovery time.
    pub rto: ObjectiveView,
    /// Recovery point.
    pub rpo: ObjectiveView,
    /// Milestones reached: id, title, when (`T+…`).
    pub milestones: Vec<(String, String, String)>,
    /// The achieved critical path.
    pub critical_path: Vec<String>,
    /// Per node, in plan order.
    pub steps: Vec<StepView>,
    /// Backups restored or verified.
    pub backups: Vec<BackupLine>,
    /// Approvals.
    pub approvals: Vec<ApprovalView>,
    /// Predicted against achieved.
    pub prediction: PredictionView,
    /// The audit log.
    pub audit: AuditView,
    /// HIPAA controls evidenced.
    pub controls: Vec<ControlView>,
    /// Drover's version.
    pub drover_version: String,
    /// The Gantt chart (SVG), for the HTML and Markdown templates; not part of the JSON.
    #[serde(skip)]
    pub gantt_svg: String,
}

/// `T+h:mm:ss` from the origin.
fn tplus(origin: u64, ms: u64) -> String {
    let s = ms.saturating_sub(origin) / 1000;
    format!("T+{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// A duration for people: tenths of a second under ten seconds, whole seconds above.
fn dur(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format_duration((ms + 500) / 1000 * 1000)
    }
}

fn objective(o: &drover_engine::run_record::Objective) -> ObjectiveView {
    ObjectiveView {
        target: dur(o.target_ms),
        target_ms: o.target_ms,
        achieved: o.achieved_ms.map_or_else(|| "not measured".into(), dur),
        achieved_ms: o.achieved_ms,
        verdict: match o.met {
            Some(true) => "pass",
            Some(false) => "fail",
            None => "not measured",
        }
        .into(),
        basis: o.basis.clone(),
    }
}

/// The achieved critical path: from the RTO milestone (or the node that ended last) back through
/// the dependency that finished last, to a node with none.
fn critical_path(plan: &Plan, t: &Timeline) -> Vec<String> {
    let g = &plan.graph;
    let end_of =
        |i: petgraph::graph::NodeIndex| t.nodes.get(g[i].id()).and_then(NodeTimeline::end_ms);
    let rto = g
        .node_indices()
        .find(|&i| matches!(&g[i], PlanNode::Milestone(m) if m.stops_rto) && end_of(i).is_some());
    let Some(mut at) = rto.or_else(|| {
        g.node_indices()
            .filter(|&i| end_of(i).is_some())
            .max_by_key(|&i| end_of(i))
    }) else {
        return Vec::new();
    };
    let mut path = vec![g[at].id().to_owned()];
    while let Some(prev) = g
        .neighbors_directed(at, Direction::Incoming)
        .filter(|&p| end_of(p).is_some())
        .max_by_key(|&p| end_of(p))
    {
        path.push(g[prev].id().to_owned());
        at = prev;
    }
    path.reverse();
    path
}

fn attempt_outcome(o: AttemptOutcome) -> &'static str {
    match o {
        AttemptOutcome::Succeeded => "succeeded",
        AttemptOutcome::Failed => "failed",
        AttemptOutcome::TimedOut => "timed out",
        AttemptOutcome::Unfinished => "unfinished",
    }
}

/// Reads a run from the journal into a report.
///
/// # Errors
/// Journal errors; a stored plan or record that does not parse.
pub fn gather(journal: &dyn Journal, run_id: &str) -> Result<Report, ReportError> {
    let stored = |what: String| ReportError::Stored {
        run_id: run_id.to_owned(),
        what,
    };
    let (row, record): (_, RunRecord) =
        drover_engine::driver::status(journal, run_id).map_err(|e| stored(e.to_string()))?;
    let plan: Plan = serde_json::from_str(&row.plan).map_err(|e| stored(e.to_string()))?;
    let transitions = journal.transitions(run_id)?;
    let timeline = Timeline::from_transitions(&transitions);
    let origin = row
        .declared_at
        .min(timeline.started_ms.unwrap_or(row.created_at));

    // Operators per step, from the audit log.
    let audit_rows = journal.audit(run_id)?;
    let mut operators: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, json, _) in &audit_rows {
        if let Ok(r) = serde_json::from_str::<drover_engine::audit::AuditRecord>(json)
            && let Some(step) = r.step
        {
            operators.entry(step).or_default().insert(r.operator);
        }
    }
    let audit =
        match drover_engine::audit::verify(run_id, &audit_rows, &row.audit_head, row.audit_count) {
            Ok(n) => AuditView {
                records: n,
                head: row.audit_head.clone(),
                verified: true,
                fault: None,
            },
            Err(f) => AuditView {
                records: audit_rows.len() as u64,
                head: row.audit_head.clone(),
                verified: false,
                fault: Some(f.to_string()),
            },
        };

    // The latest simulation of the same sources in the same mode.
    let sim = journal.latest_simulation(
        &plan.runbook.name,
        &plan.runbook.source_sha256,
        row.mode.as_str(),
    )?;
    let sim_json: Option<serde_json::Value> = sim
        .as_ref()
        .and_then(|s| serde_json::from_str(&s.summary).ok());
    let sim_means: BTreeMap<String, u64> = sim_json
        .as_ref()
        .and_then(|v| v.get("steps")?.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|s| {
            Some((
                s.get("id")?.as_str()?.to_owned(),
                s.get("mean_ms")?.as_u64()?,
            ))
        })
        .collect();

    let critical = critical_path(&plan, &timeline);
    let gantt_svg = gantt_svg(&timeline, &plan, row.declared_at, &critical, false);
    let on_path: BTreeSet<&str> = critical.iter().map(String::as_str).collect();
    let state_of: BTreeMap<&str, &str> = record
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.state.as_str()))
        .collect();
    let empty = NodeTimeline::default();
    let steps: Vec<StepView> = plan
        .graph
        .node_weights()
        .map(|n| {
            let id = n.id();
            let t = timeline.nodes.get(id).unwrap_or(&empty);
            let (kind, action) = match n {
                PlanNode::Step(s) if s.action == "approval" => ("approval", s.action.clone()),
                PlanNode::Step(s) => ("step", s.action.clone()),
                PlanNode::Milestone(_) => ("milestone", String::new()),
            };
            let (start, end) = match n {
                PlanNode::Milestone(_) => (t.done_ms, t.done_ms),
                PlanNode::Step(_) => (t.start_ms(), t.end_ms()),
            };
            StepView {
                id: id.to_owned(),
                kind: kind.into(),
                action,
                state: state_of.get(id).copied().unwrap_or("pending").to_owned(),
                attempts: t
                    .attempts
                    .iter()
                    .map(|a| AttemptView {
                        attempt: a.attempt,
                        start: tplus(origin, a.start_ms),
                        duration: a
                            .end_ms
                            .map_or_else(String::new, |e| dur(e.saturating_sub(a.start_ms))),
                        outcome: attempt_outcome(a.outcome).into(),
                        error: a.error.clone(),
                    })
                    .collect(),
                start: start.map_or_else(String::new, |s| tplus(origin, s)),
                end: end.map_or_else(String::new, |e| tplus(origin, e)),
                duration: match (start, end) {
                    (Some(s), Some(e)) => dur(e.saturating_sub(s)),
                    _ => String::new(),
                },
                operators: operators
                    .get(id)
                    .map(|o| o.iter().cloned().collect())
                    .unwrap_or_default(),
                critical: on_path.contains(id),
                predicted_mean: sim_means.get(id).map(|m| dur(*m)),
                error: record
                    .steps
                    .iter()
                    .find(|s| s.id == id)
                    .and_then(|s| s.error.clone()),
                skipped: t.skipped.clone(),
                compensation: t.compensation.as_ref().map(|c| match (&c.error, c.end_ms) {
                    (Some(e), _) => format!("failed: {e}"),
                    (None, Some(end)) => {
                        format!("undone in {}", dur(end.saturating_sub(c.start_ms)))
                    }
                    (None, None) => "unfinished".into(),
                }),
            }
        })
        .collect();

    // Signed statements of counted approvals and denials, by (step, operator), in order.
    let mut signed: std::collections::BTreeMap<(String, String), Vec<(String, bool)>> =
        std::collections::BTreeMap::new();
    for (step, operator, s) in journal.signed_statements(run_id).unwrap_or_default() {
        if let (Some(step), Some(operator)) = (step, operator) {
            let fp = drover_identity::fingerprint_of(&s.signature).unwrap_or_default();
            let alg = drover_identity::algorithm_of(&s.signature).unwrap_or_default();
            let mfa =
                drover_identity::Statement::parse(&s.statement).is_ok_and(|st| st.totp.is_some());
            signed
                .entry((step, operator))
                .or_default()
                .push((format!("key {fp} ({alg})"), mfa));
        }
    }
    let has_roster = plan.runbook.roster.is_some();
    let mut approvals = Vec::new();
    for n in timeline.nodes.values() {
        for a in &n.approvals {
            let denied = a
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("denied: "));
            let (identity, mfa) = if !(a.accepted || denied) {
                ("—".to_owned(), false)
            } else if has_roster {
                signed
                    .get_mut(&(n.id.clone(), a.operator.clone()))
                    .and_then(|v| (!v.is_empty()).then(|| v.remove(0)))
                    .unwrap_or_else(|| ("signature missing".into(), false))
            } else {
                ("unauthenticated (typed name)".to_owned(), false)
            };
            approvals.push(ApprovalView {
                step: n.id.clone(),
                operator: a.operator.clone(),
                roles: a.roles.clone(),
                at: rfc3339(a.at_ms),
                decision: match a.reason.as_deref() {
                    None => "accepted".into(),
                    Some(r) if r.starts_with("denied: ") => r.to_owned(),
                    Some(r) => format!("refused: {r}"),
                },
                identity,
                mfa,
            });
        }
    }
    let backups: Vec<BackupLine> = record.backups.clone();

    let mode = row.mode;
    let analysis = drover_dsl::analysis::analyze(&plan, mode);
    let simulation = sim.as_ref().zip(sim_json.as_ref()).map(|(s, v)| {
        let ms = |k: &str| {
            v.get("rto")
                .and_then(|r| r.get(k))
                .and_then(serde_json::Value::as_u64)
        };
        SimulationView {
            at: rfc3339(s.at),
            trials: v
                .get("trials")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
            rto_p50: ms("p50_ms").map_or_else(|| "never".into(), dur),
            rto_p95: ms("p95_ms").map_or_else(|| "never".into(), dur),
            p_meet_target_pct: v
                .get("rto")
                .and_then(|r| r.get("p_meet_target"))
                .and_then(serde_json::Value::as_f64)
                .map(|p| format!("{:.1}", p * 100.0)),
            achieved_percentile: record.rto.achieved_ms.and_then(|a| achieved_share(v, a)),
        }
    });

    let outcome = record.outcome.map_or_else(
        || "running".to_owned(),
        |o| {
            serde_json::to_value(o)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        },
    );
    let passed =
        outcome == "succeeded" && record.rto.met == Some(true) && record.rpo.met != Some(false);
    let controls = controls(&record, &audit, &backups, &approvals, row.mode.as_str());
    Ok(Report {
        simulated: plan.runbook.simulated,
        run_id: row.run_id.clone(),
        runbook: plan.runbook.name.clone(),
        description: plan.runbook.description.clone(),
        owner: plan.runbook.owner.clone(),
        source: plan.runbook.source.clone(),
        source_sha256: plan.runbook.source_sha256.clone(),
        mode: row.mode.to_string(),
        initiator: row.initiator.clone(),
        declared_at: rfc3339(row.declared_at),
        started_at: rfc3339(timeline.started_ms.unwrap_or(row.created_at)),
        finished_at: timeline.finished_ms.map(rfc3339),
        outcome,
        passed,
        rto: objective(&record.rto),
        rpo: objective(&record.rpo),
        milestones: plan
            .graph
            .node_weights()
            .filter_map(|n| match n {
                PlanNode::Milestone(m) => {
                    let at = timeline.nodes.get(&m.id)?.done_ms?;
                    Some((
                        m.id.clone(),
                        m.title.clone().unwrap_or_default(),
                        tplus(origin, at),
                    ))
                }
                PlanNode::Step(_) => None,
            })
            .collect(),
        critical_path: critical,
        steps,
        backups,
        approvals,
        prediction: PredictionView {
            static_rto: analysis.predicted_rto_ms.map(|(lo, hi)| {
                if lo == hi {
                    dur(lo)
                } else {
                    format!("{} – {}", dur(lo), dur(hi))
                }
            }),
            simulation,
        },
        audit,
        controls,
        drover_version: env!("CARGO_PKG_VERSION").into(),
        gantt_svg,
    })
}

/// The share of simulated trials (from the summary's RTO histogram) that took at least as long
/// as `achieved`, in percent.
fn achieved_share(summary: &serde_json::Value, achieved: u64) -> Option<String> {
    let h = summary.get("rto_histogram")?;
    let from = h.get("from_ms")?.as_u64()?;
    let bin = h.get("bin_ms")?.as_u64()?.max(1);
    let counts: Vec<u64> = h
        .get("counts")?
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_u64)
        .collect();
    let never = h
        .get("never")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let total: u64 = counts.iter().sum::<u64>() + never;
    if total == 0 {
        return None;
    }
    let slower: u64 = counts
        .iter()
        .enumerate()
        .filter(|(k, _)| from + bin * (*k as u64) >= achieved)
        .map(|(_, c)| *c)
        .sum::<u64>()
        + never;
    #[allow(clippy::cast_precision_loss, reason = "a percentage")]
    Some(format!("{:.0}", slower as f64 / total as f64 * 100.0))
}

fn controls(
    record: &RunRecord,
    audit: &AuditView,
    backups: &[BackupLine],
    approvals: &[ApprovalView],
    mode: &str,
) -> Vec<ControlView> {
    let mut restore = vec![format!(
        "{} backup(s) restored or verified, each with its recovery point, key id and verified SHA-256 (Backups; run.json)",
        backups.len()
    )];
    restore.push(format!(
        "RPO achieved {} against a target of {} (Objectives)",
        record
            .rpo
            .achieved_ms
            .map_or_else(|| "not measured".into(), dur),
        dur(record.rpo.target_ms)
    ));
    let testing = vec![
        format!(
            "A {mode} of the runbook, identified by the SHA-256 of its sources (Summary; runbook/, plan.json)"
        ),
        format!(
            "RTO achieved {} against a target of {} (Objectives; Gantt chart)",
            record
                .rto
                .achieved_ms
                .map_or_else(|| "not measured".into(), dur),
            dur(record.rto.target_ms)
        ),
        "The prediction beside what was achieved (Predicted against achieved)".into(),
    ];
    let audit_items = vec![
        format!(
            "{} hash-chained audit records, chain head {} — {} (Audit; audit.jsonl, audit-head.json)",
            audit.records,
            audit.head,
            if audit.verified {
                "verified"
            } else {
                "FAILED verification"
            }
        ),
        format!(
            "{} approval decision(s) with who, roles and when (Approvals)",
            approvals.len()
        ),
        "Every step's operator, attempts and outcome (Steps)".into(),
    ];
    vec![
        ControlView {
            control: "§164.308(a)(7)(ii)(B)".into(),
            title: "Disaster recovery plan: procedures to restore any loss of data (data backup and restore)".into(),
            evidence: restore,
        },
        ControlView {
            control: "§164.308(a)(7)(ii)(D)".into(),
            title: "Testing and revision procedures for contingency plans".into(),
            evidence: testing,
        },
        ControlView {
            control: "§164.312(b)".into(),
            title: "Audit controls: record and examine activity in systems that contain ePHI".into(),
            evidence: audit_items,
        },
    ]
}

/// The Gantt chart of a run as SVG: a row per node that ran, attempts (failed ones dark red),
/// approval waits in amber, compensations in violet, the critical path in red; the RTO target and
/// the milestones as markers.
#[must_use]
pub fn gantt_svg(
    journal_timeline: &Timeline,
    plan: &Plan,
    declared_at: u64,
    critical: &[String],
    simulated: bool,
) -> String {
    let origin = declared_at.min(journal_timeline.started_ms.unwrap_or(declared_at));
    let on_path: BTreeSet<&str> = critical.iter().map(String::as_str).collect();
    let mut rows = Vec::new();
    for n in plan.graph.node_weights() {
        let Some(t) = journal_timeline.nodes.get(n.id()) else {
            continue;
        };
        let crit = on_path.contains(n.id());
        let mut bars = Vec::new();
        if let (Some(from), Some(to)) = (t.approval_requested_ms, t.done_ms.or(t.gave_up_ms)) {
            bars.push(Bar {
                from_ms: from - origin.min(from),
                to_ms: to.saturating_sub(origin),
                kind: if crit {
                    BarKind::Critical
                } else {
                    BarKind::Waiting
                },
                tip: format!(
                    "{}: waited {} for approval",
                    n.id(),
                    dur(to.saturating_sub(from))
                ),
            });
        }
        for a in &t.attempts {
            let end = a.end_ms.unwrap_or(a.start_ms);
            bars.push(Bar {
                from_ms: a.start_ms.saturating_sub(origin),
                to_ms: end.saturating_sub(origin),
                kind: match (a.outcome, crit) {
                    (AttemptOutcome::Succeeded, true) => BarKind::Critical,
                    (AttemptOutcome::Succeeded | AttemptOutcome::Unfinished, _) => BarKind::Work,
                    _ => BarKind::Failed,
                },
                tip: format!(
                    "{} attempt {}: {} – {} ({}), {}",
                    n.id(),
                    a.attempt,
                    tplus(origin, a.start_ms),
                    tplus(origin, end),
                    dur(end.saturating_sub(a.start_ms)),
                    attempt_outcome(a.outcome)
                ),
            });
        }
        if let Some(c) = &t.compensation {
            let end = c.end_ms.unwrap_or(c.start_ms);
            bars.push(Bar {
                from_ms: c.start_ms.saturating_sub(origin),
                to_ms: end.saturating_sub(origin),
                kind: BarKind::Undo,
                tip: format!(
                    "{}: compensation ({})",
                    n.id(),
                    dur(end.saturating_sub(c.start_ms))
                ),
            });
        }
        if let (PlanNode::Milestone(_), Some(at)) = (n, t.done_ms) {
            bars.push(Bar {
                from_ms: at.saturating_sub(origin),
                to_ms: at.saturating_sub(origin),
                kind: if crit {
                    BarKind::Critical
                } else {
                    BarKind::Work
                },
                tip: format!("{}: reached at {}", n.id(), tplus(origin, at)),
            });
        }
        if !bars.is_empty() {
            rows.push(GanttRow {
                label: n.id().to_owned(),
                bars,
            });
        }
    }
    let target = declared_at.saturating_sub(origin) + plan.runbook.rto_ms;
    let title = format!(
        "{}{} — {} nodes ran; critical path in red",
        if simulated { "SIMULATED — " } else { "" },
        plan.runbook.name,
        rows.len()
    );
    let (g, h) = drover_chart::gantt(
        &title,
        &rows,
        &[Marker {
            at_ms: target,
            label: format!("RTO target {}", dur(plan.runbook.rto_ms)),
            colour: drover_chart::CRITICAL,
        }],
        24.0,
    );
    drover_chart::document(h + 40.0, vec![g])
}

const HTML: &str = include_str!("../templates/report.html");
const MARKDOWN: &str = include_str!("../templates/report.md");

/// Renders a report. `templates` is a directory that may hold `report.html` and `report.md` to
/// use instead of the built-in ones; they see the same context (`report`, `gantt_svg`).
///
/// # Errors
/// A template that does not parse or fails to render (with its line), an unreadable directory.
pub fn render(
    report: &Report,
    format: Format,
    templates: Option<&Path>,
) -> Result<String, ReportError> {
    if format == Format::Json {
        return serde_json::to_string_pretty(report).map_err(|e| ReportError::Template {
            name: "json".into(),
            error: e.to_string(),
        });
    }
    let name = if format == Format::Html {
        "report.html"
    } else {
        "report.md"
    };
    let builtin = if format == Format::Html {
        HTML
    } else {
        MARKDOWN
    };
    let source = match templates.map(|d| d.join(name)) {
        Some(p) if p.exists() => {
            std::fs::read_to_string(&p).map_err(|e| ReportError::TemplateDir {
                dir: p.display().to_string(),
                error: e.to_string(),
            })?
        }
        _ => builtin.to_owned(),
    };
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(50_000_000));
    env.add_filter("md", |s: String| s.replace('|', "\\|").replace('\n', " "));
    let template_error = |e: minijinja::Error| ReportError::Template {
        name: name.to_owned(),
        error: match e.line() {
            Some(l) => format!("line {l}: {e}"),
            None => e.to_string(),
        },
    };
    env.add_template_owned(name, source)
        .map_err(template_error)?;
    let t = env.get_template(name).map_err(template_error)?;
    t.render(minijinja::context! { report => report, gantt_svg => report.gantt_svg })
        .map_err(template_error)
}

/// One run in a runbook's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryRun {
    /// Run id.
    pub run_id: String,
    /// Mode.
    pub mode: String,
    /// When it was declared (RFC 3339).
    pub declared_at: String,
    /// How it ended.
    pub outcome: String,
    /// Recovery time.
    pub rto: ObjectiveView,
    /// Recovery point.
    pub rpo: ObjectiveView,
}

/// RTO and RPO over successive runs of a runbook.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    /// Runbook name.
    pub runbook: String,
    /// Real runs (drills, failovers…), oldest first: the trend.
    pub runs: Vec<HistoryRun>,
    /// Tabletop exercises (simulated runs), oldest first: kept apart, never in the trend.
    pub simulated: Vec<HistoryRun>,
}

/// Reads every run of the runbook named `runbook` from the journal, oldest first.
///
/// # Errors
/// Journal errors; a stored record that does not parse.
pub fn history(journal: &dyn Journal, runbook: &str) -> Result<History, ReportError> {
    let mut runs = Vec::new();
    let mut simulated = Vec::new();
    for row in journal.runs_of(runbook)? {
        let tabletop = row.simulated();
        let (_, rec) = drover_engine::driver::status(journal, &row.run_id).map_err(|e| {
            ReportError::Stored {
                run_id: row.run_id.clone(),
                what: e.to_string(),
            }
        })?;
        let list = if tabletop { &mut simulated } else { &mut runs };
        list.push(HistoryRun {
            run_id: row.run_id.clone(),
            mode: row.mode.to_string(),
            declared_at: rfc3339(row.declared_at),
            outcome: rec.outcome.map_or_else(
                || "running".to_owned(),
                |o| {
                    serde_json::to_value(o)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                },
            ),
            rto: objective(&rec.rto),
            rpo: objective(&rec.rpo),
        });
    }
    Ok(History {
        runbook: runbook.to_owned(),
        runs,
        simulated,
    })
}

/// The two trend charts (RTO and RPO against their targets) as one SVG.
#[must_use]
pub fn history_svg(h: &History) -> String {
    let series = |f: fn(&HistoryRun) -> &ObjectiveView| -> Vec<drover_chart::Point> {
        h.runs
            .iter()
            .map(|r| drover_chart::Point {
                label: r.run_id.clone(),
                value_ms: f(r).achieved_ms,
            })
            .collect()
    };
    let target = |f: fn(&HistoryRun) -> &ObjectiveView| h.runs.last().map_or(0, |r| f(r).target_ms);
    let (rto, rto_h) = drover_chart::trend(
        &format!("{}: RTO over {} runs", h.runbook, h.runs.len()),
        &series(|r| &r.rto),
        target(|r| &r.rto),
        24.0,
    );
    let (rpo, rpo_h) = drover_chart::trend(
        &format!("{}: RPO over {} runs", h.runbook, h.runs.len()),
        &series(|r| &r.rpo),
        target(|r| &r.rpo),
        24.0 + rto_h + 20.0,
    );
    drover_chart::document(24.0 + rto_h + 20.0 + rpo_h + 10.0, vec![rto, rpo])
}

const HISTORY_HTML: &str = include_str!("../templates/history.html");
const HISTORY_MD: &str = include_str!("../templates/history.md");

/// Renders a history as HTML (with the charts), Markdown or JSON.
///
/// # Errors
/// A template error.
pub fn render_history(h: &History, format: Format) -> Result<String, ReportError> {
    let (name, source) = match format {
        Format::Json => {
            return serde_json::to_string_pretty(h).map_err(|e| ReportError::Template {
                name: "json".into(),
                error: e.to_string(),
            });
        }
        Format::Html => ("history.html", HISTORY_HTML),
        Format::Markdown => ("history.md", HISTORY_MD),
    };
    let mut env = minijinja::Environment::new();
    let err = |e: minijinja::Error| ReportError::Template {
        name: name.to_owned(),
        error: e.to_string(),
    };
    env.add_template(name, source).map_err(err)?;
    env.get_template(name)
        .and_then(|t| t.render(minijinja::context! { history => h, svg => history_svg(h) }))
        .map_err(err)
}

//! Which alerts hold now, read from the journal: the server reconciles them with what it has
//! sent (`alerts` and `alert_sinks` tables), so a condition fires once, resolves once when it
//! clears, and a restart neither forgets nor repeats a delivery.

use crate::posture::{DrillPosture, Evidence};
use crate::{OpsError, Workspace};
use drover_alerts::{Alert, AlertKind};
use drover_engine::journal::{FireRow, RunRow, RunStatus};
use drover_engine::run_record::{RunRecord, rfc3339};
use drover_engine::scheduler::RunOutcome;
use std::collections::BTreeMap;

/// The prefix of every key Drover sends.
const KEY: &str = "drover";

fn key(kind: AlertKind, subject: &str) -> String {
    format!("{KEY}/{}/{subject}", kind.as_str())
}

/// Whether a run's runbook is a verification runbook (its policy has `verify_every`).
fn verifies(row: &RunRow) -> bool {
    serde_json::from_str::<drover_dsl::Plan>(&row.plan)
        .ok()
        .and_then(|p| p.policy)
        .is_some_and(|p| p.verify_every_ms.is_some() && p.drill_every_ms.is_none())
}

/// The alerts that hold at `now_ms`: failed runs and missed targets (the newest finished run of
/// each runbook), approvals waiting longer than `approval_wait_ms`, missed schedule fires not
/// yet followed by a started one, and overdue runbooks from `posture`.
///
/// # Errors
/// The journal cannot be read.
pub fn conditions(
    ws: &Workspace,
    posture: &[DrillPosture],
    now_ms: u64,
    approval_wait_ms: u64,
) -> Result<Vec<Alert>, OpsError> {
    if !ws.has_journal() {
        return Ok(Vec::new());
    }
    let j = ws.journal_read()?;
    let runs = j.runs()?;
    let mut out = Vec::new();
    // The newest finished (not interrupted) real run of each runbook.
    let mut newest: BTreeMap<&str, &RunRow> = BTreeMap::new();
    for r in &runs {
        if r.simulated() {
            continue;
        }
        match r.status {
            RunStatus::Finished(RunOutcome::Interrupted) => {}
            RunStatus::Finished(_) => {
                let e = newest.entry(r.runbook.as_str()).or_insert(r);
                if r.created_at > e.created_at {
                    *e = r;
                }
            }
            RunStatus::Waiting => {
                let since = j
                    .transitions(&r.run_id)?
                    .last()
                    .map_or(r.created_at, |t| t.at);
                if now_ms.saturating_sub(since) > approval_wait_ms {
                    let mut details = BTreeMap::new();
                    details.insert("waiting since".into(), rfc3339(since));
                    details.insert("mode".into(), r.mode.as_str().to_owned());
                    out.push(Alert {
                        key: key(AlertKind::ApprovalWaiting, &r.run_id),
                        kind: AlertKind::ApprovalWaiting,
                        summary: format!(
                            "Approval waiting for {}: {} (run {}) needs an approver",
                            drover_dsl::format_duration(now_ms.saturating_sub(since)),
                            r.runbook,
                            r.run_id
                        ),
                        runbook: Some(r.runbook.clone()),
                        run_id: Some(r.run_id.clone()),
                        details,
                        since: rfc3339(since),
                    });
                }
            }
            RunStatus::Running => {}
        }
    }
    for (runbook, r) in newest {
        let Some(rec) = r
            .record
            .as_deref()
            .and_then(|t| serde_json::from_str::<RunRecord>(t).ok())
        else {
            continue;
        };
        let RunStatus::Finished(outcome) = r.status else {
            continue;
        };
        let mut details = BTreeMap::new();
        details.insert("outcome".into(), outcome.as_str().to_owned());
        details.insert("mode".into(), r.mode.as_str().to_owned());
        details.insert("started by".into(), r.initiator.clone());
        if outcome != RunOutcome::Succeeded {
            let failed = rec.steps.iter().find(|s| s.error.is_some());
            if let Some(s) = failed {
                details.insert("failed step".into(), s.id.clone());
                details.insert("error".into(), s.error.clone().unwrap_or_default());
            }
            let kind = if verifies(r) {
                AlertKind::VerificationFailed
            } else {
                AlertKind::RunFailed
            };
            let what = if kind == AlertKind::VerificationFailed {
                "Backup verification failed"
            } else {
                "Run failed"
            };
            out.push(Alert {
                key: key(kind, runbook),
                kind,
                summary: format!(
                    "{what}: {runbook} (run {}, {}){}",
                    r.run_id,
                    outcome.as_str(),
                    failed.map_or(String::new(), |s| format!(
                        ": step {} failed: {}",
                        s.id,
                        s.error.as_deref().unwrap_or("")
                    ))
                ),
                runbook: Some(runbook.to_owned()),
                run_id: Some(r.run_id.clone()),
                details: details.clone(),
                since: rfc3339(r.created_at),
            });
        }
        for (kind, o, name) in [
            (AlertKind::RtoMissed, &rec.rto, "RTO"),
            (AlertKind::RpoMissed, &rec.rpo, "RPO"),
        ] {
            if o.met == Some(false) {
                let mut d = details.clone();
                d.insert("target".into(), drover_dsl::format_duration(o.target_ms));
                if let Some(a) = o.achieved_ms {
                    d.insert("achieved".into(), drover_dsl::format_duration(a));
                }
                out.push(Alert {
                    key: key(kind, runbook),
                    kind,
                    summary: format!(
                        "{name} target missed: {runbook} (run {}): {} against a target of {}",
                        r.run_id,
                        o.achieved_ms
                            .map_or("unmeasured".to_owned(), drover_dsl::format_duration),
                        drover_dsl::format_duration(o.target_ms)
                    ),
                    runbook: Some(runbook.to_owned()),
                    run_id: Some(r.run_id.clone()),
                    details: d,
                    since: rfc3339(r.created_at),
                });
            }
        }
    }
    out.extend(missed_schedules(&j.fires()?));
    for p in posture.iter().filter(|p| p.overdue) {
        let what = match p.evidence {
            Some(Evidence::Verification) => "Backup verification overdue",
            _ => "Drill overdue",
        };
        let mut details = BTreeMap::new();
        details.insert("runbook file".into(), p.file.clone());
        if let Some(e) = p.every_ms {
            details.insert(
                "policy".into(),
                format!("every {}", drover_dsl::format_duration(e)),
            );
        }
        let last = p.last_success.as_ref();
        details.insert(
            "last success".into(),
            last.map_or("never".to_owned(), |b| {
                format!("{} ({})", b.started, b.run_id)
            }),
        );
        if let Some(n) = &p.next_scheduled {
            details.insert("next scheduled".into(), n.clone());
        }
        out.push(Alert {
            key: key(AlertKind::DrillOverdue, &p.file),
            kind: AlertKind::DrillOverdue,
            summary: format!(
                "{what}: {} — {}",
                p.runbook,
                last.map_or("no successful run on record".to_owned(), |b| format!(
                    "last success {}",
                    &b.started[..10.min(b.started.len())]
                ))
            ),
            runbook: Some(p.runbook.clone()),
            run_id: last.map(|b| b.run_id.clone()),
            details,
            since: last.map_or_else(
                || rfc3339(now_ms),
                |b| rfc3339(b.started_ms.saturating_add(p.every_ms.unwrap_or(0))),
            ),
        });
    }
    Ok(out)
}

/// Missed fires (by schedule, with their count) that no started fire has followed yet.
fn missed_schedules(fires: &[FireRow]) -> Vec<Alert> {
    let mut out = Vec::new();
    for m in fires.iter().filter(|f| f.decision == "missed") {
        let followed = fires.iter().any(|f| {
            f.runbook == m.runbook
                && f.schedule == m.schedule
                && matches!(f.decision.as_str(), "fire" | "catch_up")
                && f.state == "started"
                && f.slot_ms >= m.slot_ms
        });
        if followed {
            continue;
        }
        let mut details = BTreeMap::new();
        details.insert("schedule".into(), m.schedule.clone());
        details.insert("runbook file".into(), m.runbook.clone());
        details.insert("missed".into(), m.count.to_string());
        if let Some(d) = &m.detail {
            details.insert("detail".into(), d.clone());
        }
        out.push(Alert {
            key: key(
                AlertKind::ScheduleMissed,
                &format!("{}/{}/{}", m.runbook, m.schedule, m.slot_ms),
            ),
            kind: AlertKind::ScheduleMissed,
            summary: format!(
                "Schedule missed: `{}` of {} missed {} fire(s) while the scheduler was down",
                m.schedule, m.runbook, m.count
            ),
            runbook: Some(m.runbook.clone()),
            run_id: None,
            details,
            since: rfc3339(m.decided_at),
        });
    }
    out
}

/// Every journaled alert, newest first, as `drover alerts list` and the API show it: key, kind,
/// state, summary, runbook, run, details, times, and where it stands with each sink.
///
/// # Errors
/// The journal cannot be read (a state directory without a journal has no alerts).
pub fn alert_list(ws: &Workspace) -> Result<Vec<serde_json::Value>, OpsError> {
    if !ws.has_journal() {
        return Ok(Vec::new());
    }
    let j = ws.journal_read()?;
    let (alerts, sinks) = (j.alerts()?, j.alert_sinks()?);
    Ok(alerts
        .iter()
        .rev()
        .map(|a| {
            let alert: serde_json::Value = serde_json::from_str(&a.alert).unwrap_or_default();
            serde_json::json!({
                "key": a.key,
                "kind": a.kind,
                "state": a.state,
                "summary": alert["summary"],
                "runbook": alert["runbook"],
                "run_id": alert["run_id"],
                "details": alert["details"],
                "first_at": rfc3339(a.first_at),
                "updated_at": rfc3339(a.updated_at),
                "resolved_at": a.resolved_at.map(rfc3339),
                "sinks": sinks.iter().filter(|s| s.key == a.key).collect::<Vec<_>>(),
            })
        })
        .collect())
}

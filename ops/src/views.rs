//! What front ends show of runs: the list, one run's status, an audit log.

use crate::{OpsError, Workspace};
use drover_engine::journal::{Journal, ProgressRow, RunRow};
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
        let run_id = self.resolve(&j, run_id)?;
        let (row, record) = drover_engine::driver::status(&j, &run_id)?;
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
        Ok(RunView {
            status: shown(&row, driven_by.is_some()),
            row,
            record,
            driven_by,
            waiting,
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
            self.resolve(&j, log)?
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
        let checked = drover_engine::oplog::verify(&j, log, anchor).map_err(|e| e.to_string());
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

//! `drover posture backups`: reading the inventory and the journal, printing the assessment.

use drover_engine::audit::AuditRecord;
use drover_engine::oplog::BACKUPS_LOG;
use drover_posture::{Inventory, LiveProbe, assess, render};
use std::path::Path;
use std::process::ExitCode;

/// How the assessment prints.
#[derive(Clone, Copy)]
pub enum Out {
    /// Markdown.
    Md,
    /// A self-contained HTML page.
    Html,
    /// JSON.
    Json,
}

/// The verifications the journal in `state` holds, as `backup.verify` records whose subject is
/// what was verified: the backup operations log (`@backups`: `drover backup verify`), and every
/// run's `backup.verify_sample` steps (the prefix from the step's outputs, or from its error's
/// resource when it failed). None when there is no journal yet.
pub fn backup_records(state: &Path) -> Result<Vec<AuditRecord>, String> {
    if !state.exists() {
        return Ok(Vec::new());
    }
    let journal = drover_ops::Workspace::new(state)
        .journal()
        .map_err(|e| e.to_string())?;
    let read = |log: &str| -> Result<Vec<AuditRecord>, String> {
        journal
            .audit(log)
            .map_err(|e| e.to_string())?
            .iter()
            .map(|(seq, text, _)| {
                serde_json::from_str(text)
                    .map_err(|e| format!("audit record {seq} of {log} does not read: {e}"))
            })
            .collect()
    };
    let mut out = read(BACKUPS_LOG)?;
    for run in journal.runs().map_err(|e| e.to_string())? {
        let steps: Vec<AuditRecord> = read(&run.run_id)?
            .into_iter()
            .filter(|r| {
                r.action == "backup.verify_sample" && matches!(r.outcome.as_str(), "ok" | "failed")
            })
            .collect();
        if steps.is_empty() {
            continue;
        }
        // What each step verified, from its last attempt.
        let mut source = std::collections::BTreeMap::new();
        for (_, e) in journal.events(&run.run_id).map_err(|e| e.to_string())? {
            match e {
                drover_engine::scheduler::Event::StepSucceeded { step, outputs, .. } => {
                    if let Some(s) = outputs.get("source").and_then(|v| v.as_str()) {
                        source.insert(step, s.to_owned());
                    }
                }
                drover_engine::scheduler::Event::StepFailed {
                    step,
                    context: Some(c),
                    ..
                } => {
                    if let Some(r) = c.resource {
                        source.insert(step, r);
                    }
                }
                _ => {}
            }
        }
        for mut r in steps {
            let Some(s) = r.step.as_ref().and_then(|id| source.get(id)).cloned() else {
                continue;
            };
            r.step = Some(s);
            r.action = "backup.verify".into();
            r.outcome = if r.outcome == "ok" {
                "verified"
            } else {
                "failed"
            }
            .into();
            out.push(r);
        }
    }
    Ok(out)
}

/// Assesses the datasets of `inventory` and prints the result; exits 3 when a check fails.
pub fn backups(inventory: &str, state: &str, format: Out, out: Option<&str>) -> ExitCode {
    let text = match std::fs::read_to_string(inventory) {
        Ok(t) => t,
        Err(e) => {
            errln!("error: {inventory}: {e}");
            return ExitCode::from(2);
        }
    };
    let inv = match Inventory::parse(&text, inventory) {
        Ok(i) => i,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let records = match backup_records(Path::new(state)) {
        Ok(r) => r,
        Err(e) => {
            errln!("error: the journal in {state}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let report = assess(&inv, inventory, &records, now, &LiveProbe);
    let body = match format {
        Out::Md => render::markdown(&report),
        Out::Html => render::html(&report),
        Out::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
    };
    match out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, body) {
                errln!("error: {path}: {e}");
                return ExitCode::from(2);
            }
        }
        None => out!("{body}"),
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        for d in &report.datasets {
            for c in d.checks.iter().filter(|c| !c.passed) {
                for f in &c.findings {
                    errln!("FAIL {}/{}: {}", d.dataset, c.id, f.message);
                }
            }
        }
        ExitCode::from(3)
    }
}

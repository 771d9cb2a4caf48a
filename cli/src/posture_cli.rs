//! `drover posture backups`: reading the inventory and the journal, printing the assessment.

use drover_engine::audit::AuditRecord;
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

/// The verifications the journal of `state` holds (`drover_ops`), as the posture check reads them.
pub fn backup_records(state: &Path) -> Result<Vec<AuditRecord>, String> {
    drover_ops::Workspace::new(state)
        .backup_verifications()
        .map_err(|e| e.to_string())
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

//! The `posture.backups` step: a nightly runbook gates on the backup posture, and the server's
//! alerts see a failed step when it regresses.

use crate::{Inventory, LiveProbe, Probe, assess};
use drover_engine::audit::AuditRecord;
use drover_schema::{ActionSchema, Adapter, AdapterError, Inputs, Outputs, StepContext};
use std::path::Path;
use std::sync::Arc;

/// Reads the backup operation records (`@backups`) of the journal in a state directory.
pub type RecordSource =
    Arc<dyn Fn(&Path) -> Result<Vec<AuditRecord>, String> + Send + Sync + 'static>;

/// Runs `posture.backups`.
pub struct PostureAdapter {
    records: RecordSource,
    probe: Arc<dyn Probe + Send + Sync>,
}

impl PostureAdapter {
    /// The adapter, reading the journal through `records` and the stores themselves.
    #[must_use]
    pub fn new(records: RecordSource) -> Self {
        Self {
            records,
            probe: Arc::new(LiveProbe),
        }
    }
}

impl std::fmt::Debug for PostureAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostureAdapter")
    }
}

#[async_trait::async_trait]
impl Adapter for PostureAdapter {
    fn schemas(&self) -> Vec<ActionSchema> {
        drover_adapters::builtin_catalogue()
            .actions()
            .iter()
            .filter(|a| a.provider() == "posture")
            .cloned()
            .collect()
    }

    async fn execute(
        &self,
        action: &str,
        inputs: &Inputs,
        ctx: &StepContext,
    ) -> Result<Outputs, AdapterError> {
        if action != "posture.backups" {
            return Err(AdapterError::permanent(format!(
                "the posture adapter has no action `{action}`"
            )));
        }
        let Some(path) = inputs.get("inventory").and_then(|v| v.as_str()) else {
            return Err(AdapterError::permanent("`inventory` is required"));
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            AdapterError::permanent(format!("step {}: inventory {path}: {e}", ctx.step_id))
        })?;
        let inv = Inventory::parse(&text, path)
            .map_err(|e| AdapterError::permanent(format!("step {}: {e}", ctx.step_id)))?;
        let records = (self.records)(&ctx.state_dir).map_err(|e| {
            AdapterError::transient(format!(
                "step {}: cannot read the journal's backup records: {e}",
                ctx.step_id
            ))
        })?;
        let now = time::OffsetDateTime::from_unix_timestamp(
            i64::try_from(ctx.clock.now_ms() / 1000).unwrap_or(i64::MAX),
        )
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let probe = self.probe.clone();
        let origin = path.to_owned();
        // The stores are asked with blocking calls.
        let report = tokio::task::spawn_blocking(move || {
            assess(&inv, &origin, &records, now, probe.as_ref())
        })
        .await
        .map_err(|e| AdapterError::transient(format!("step {}: {e}", ctx.step_id)))?;
        let failed = report.failed();
        if !report.passed {
            let first: Vec<String> = report
                .datasets
                .iter()
                .flat_map(|d| d.checks.iter().flat_map(|c| c.findings.iter()))
                .take(3)
                .map(|f| f.message.clone())
                .collect();
            let tagged: Vec<String> = report
                .datasets
                .iter()
                .flat_map(|d| {
                    d.checks
                        .iter()
                        .filter(|c| !c.passed)
                        .map(move |c| format!("{}/{} ({})", d.dataset, c.id, c.controls.join(", ")))
                })
                .collect();
            return Err(AdapterError::permanent(format!(
                "backup posture fails {}: {}",
                tagged.join("; "),
                first.join("; ")
            )));
        }
        let mut controls: Vec<String> = crate::Check::ALL
            .iter()
            .flat_map(|c| c.controls().iter().map(|s| (*s).to_owned()))
            .collect();
        controls.sort();
        controls.dedup();
        let mut o = Outputs::new();
        o.insert("passed".into(), serde_json::json!(report.passed));
        o.insert("failed".into(), serde_json::json!(failed));
        o.insert("controls".into(), serde_json::json!(controls));
        o.insert(
            "report".into(),
            serde_json::to_value(&report).unwrap_or(serde_json::Value::Null),
        );
        Ok(o)
    }
}

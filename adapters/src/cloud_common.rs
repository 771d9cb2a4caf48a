//! What the cloud adapters share: reading step inputs, polling, and the drill guard on
//! production tags.

use drover_schema::{AdapterError, Inputs, StepContext};
use std::time::Duration;

/// A string input, if set.
pub(crate) fn input_str<'a>(inputs: &'a Inputs, key: &str) -> Option<&'a str> {
    inputs
        .get(key)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
}

/// A required string input, or a permanent error naming it.
pub(crate) fn require_str<'a>(
    inputs: &'a Inputs,
    key: &str,
    action: &str,
) -> Result<&'a str, AdapterError> {
    input_str(inputs, key)
        .ok_or_else(|| AdapterError::permanent(format!("`{action}` needs the `{key}` input")))
}

/// A list-of-strings input (a single string counts as a list of one).
pub(crate) fn input_list(inputs: &Inputs, key: &str) -> Vec<String> {
    match inputs.get(key) {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(serde_json::Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// The polling interval: the `interval` input (ms), or `default_ms`.
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
pub(crate) fn interval(inputs: &Inputs, default_ms: u64) -> Duration {
    Duration::from_millis(
        inputs
            .get("interval")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(default_ms)
            .max(1),
    )
}

/// Waits between two polls of a resource's state, on the run's clock. The step's timeout bounds
/// the whole wait.
pub(crate) async fn pause(ctx: &StepContext, d: Duration) {
    ctx.clock
        .sleep(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .await;
}

/// The values of every input that `action`'s schema marks as a resource it changes or points at
/// (one source for the compiler, the engine's `production.resources` check and the adapters' tag
/// checks).
pub(crate) fn resource_values(
    schemas: &[drover_schema::ActionSchema],
    action: &str,
    inputs: &Inputs,
) -> Vec<String> {
    let Some(schema) = schemas.iter().find(|s| s.name == action) else {
        return Vec::new();
    };
    let mut out: Vec<String> = schema
        .inputs
        .iter()
        .filter(|i| i.resource)
        .flat_map(|i| input_list(inputs, &i.name))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// In a drill, refuses when any of `tags` (resource id, key, value) marks a resource production.
pub(crate) fn refuse_production_tags<'a>(
    ctx: &StepContext,
    tags: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
) -> Result<(), AdapterError> {
    if ctx.mode != drover_schema::Mode::Drill || ctx.production_tags.is_empty() {
        return Ok(());
    }
    for (resource, k, v) in tags {
        if ctx.production_tags.get(k).is_some_and(|want| want == v) {
            return Err(AdapterError::permanent(format!(
                "step {}: refused before any change: a drill must not touch {resource}, tagged {k}={v} (production)",
                ctx.step_id
            )));
        }
    }
    Ok(())
}

/// An undo that was sent but whose resource does not read back as captured: the rollback is
/// not complete (the run ends `rollback_incomplete`, and `drover rollback` tries again).
pub fn still_changed(step: &str, what: &str) -> AdapterError {
    AdapterError::permanent(format!(
        "step {step}: the undo was sent, but {what} does not read as before: still changed"
    ))
}

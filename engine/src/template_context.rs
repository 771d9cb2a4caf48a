//! The variables run-time templates and `when` expressions read: parameters, the mode, the step's
//! own context (group arguments, `each`), and the step outputs it references, by the names written.

use drover_dsl::{Mode, OutputRef, PlanValue};
use drover_schema::Outputs;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The run's own values templates read as `run.id`, `run.dir` and `run.state_dir`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunVars {
    /// The run's id.
    pub id: String,
    /// A directory of the run's own under the state directory (`STATE/runs/ID`), absolute:
    /// runbooks keep their scratch files there, so runs never collide.
    pub dir: String,
    /// The state directory, absolute.
    pub state_dir: String,
}

impl RunVars {
    /// The values of run `id` kept in `state_dir`.
    #[must_use]
    pub fn new(id: &str, state_dir: &std::path::Path) -> Self {
        let state = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
        Self {
            id: id.to_owned(),
            dir: state.join("runs").join(id).display().to_string(),
            state_dir: state.display().to_string(),
        }
    }
}

/// Builds the context for one step.
#[must_use]
pub fn context(
    params: &BTreeMap<String, PlanValue>,
    mode: Mode,
    step_context: &BTreeMap<String, PlanValue>,
    bindings: &BTreeMap<String, OutputRef>,
    outputs: &BTreeMap<String, Outputs>,
    run: Option<&RunVars>,
) -> Map<String, Value> {
    let mut ctx: Map<String, Value> = params
        .iter()
        .filter(|(_, v)| !matches!(v, PlanValue::Secret { .. }))
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    ctx.insert("mode".into(), Value::String(mode.as_str().into()));
    if let Some(run) = run
        && !ctx.contains_key("run")
    {
        ctx.insert(
            "run".into(),
            serde_json::to_value(run).unwrap_or(Value::Null),
        );
    }
    for (k, v) in step_context {
        ctx.insert(k.clone(), v.to_json());
    }
    let mut root = Value::Object(ctx);
    for (name, r) in bindings {
        if let Some(v) = outputs.get(&r.step).and_then(|o| o.get(&r.output)) {
            let nested = name.rsplit('.').fold(v.clone(), |acc, part| {
                let mut m = Map::new();
                m.insert(part.to_owned(), acc);
                Value::Object(m)
            });
            merge(&mut root, nested);
        }
    }
    match root {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

//! Resolving a step's inputs at the moment it runs: run-time templates rendered, step outputs
//! substituted, secrets read from the environment. Durations become whole milliseconds.

use crate::template_context::{RunVars, context};
use drover_dsl::{Mode, Plan, PlanStep, PlanValue};
use drover_schema::{Inputs, Outputs};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Inputs ready for an adapter, and the secret values they hold (for redaction).
#[derive(Debug, Default)]
pub struct Resolved {
    /// The inputs.
    pub inputs: Inputs,
    /// Secret values substituted (never write these anywhere).
    pub secrets: Vec<String>,
}

/// Reads a secret's environment variable.
pub type SecretSource<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Resolves `values` (a step's inputs or its compensation's) for `step`.
///
/// # Errors
/// A message naming the input that could not be resolved (never a secret's value).
pub fn resolve(
    plan: &Plan,
    step: &PlanStep,
    values: &BTreeMap<String, PlanValue>,
    mode: Mode,
    outputs: &BTreeMap<String, Outputs>,
    secret: SecretSource<'_>,
    run: &RunVars,
) -> Result<Resolved, String> {
    let ctx = context(
        &plan.params,
        mode,
        &step.context,
        &step.bindings,
        outputs,
        Some(run),
    );
    let env = minijinja::Environment::new();
    let mut out = Resolved::default();
    for (name, v) in values {
        let value = one(v, &ctx, &env, outputs, secret, &mut out.secrets)
            .map_err(|e| format!("input `{name}`: {e}"))?;
        out.inputs.insert(name.clone(), value);
    }
    Ok(out)
}

fn one(
    v: &PlanValue,
    ctx: &serde_json::Map<String, Value>,
    env: &minijinja::Environment<'_>,
    outputs: &BTreeMap<String, Outputs>,
    secret: SecretSource<'_>,
    secrets: &mut Vec<String>,
) -> Result<Value, String> {
    Ok(match v {
        PlanValue::String(s) => json!(s),
        PlanValue::Int(i) => json!(i),
        PlanValue::Float(f) => json!(f),
        PlanValue::Bool(b) => json!(b),
        PlanValue::Duration(ms) => json!(ms),
        PlanValue::List(items) => Value::Array(
            items
                .iter()
                .map(|i| one(i, ctx, env, outputs, secret, secrets))
                .collect::<Result<_, _>>()?,
        ),
        PlanValue::Map(m) => Value::Object(
            m.iter()
                .map(|(k, i)| one(i, ctx, env, outputs, secret, secrets).map(|v| (k.clone(), v)))
                .collect::<Result<_, _>>()?,
        ),
        PlanValue::Template(t) => {
            let tmpl = env
                .template_from_str(t)
                .map_err(|e| format!("template: {e}"))?;
            json!(tmpl.render(ctx).map_err(|e| format!("template: {e}"))?)
        }
        PlanValue::StepOutput(r) => outputs
            .get(&r.step)
            .and_then(|o| o.get(&r.output))
            .cloned()
            .ok_or_else(|| format!("step `{}` produced no output `{}`", r.step, r.output))?,
        PlanValue::Secret { param, env: var } => {
            let value = secret(var).ok_or_else(|| {
                format!("secret `{param}`: environment variable {var} is not set")
            })?;
            secrets.push(value.clone());
            json!(value)
        }
    })
}

/// The values of the plan's `secret` parameters that `secret` can read (the driver teaches
/// them to the journal's redactor before anything runs).
#[must_use]
pub fn plan_secrets(plan: &Plan, secret: SecretSource<'_>) -> Vec<String> {
    fn walk(v: &PlanValue, secret: SecretSource<'_>, out: &mut Vec<String>) {
        match v {
            PlanValue::Secret { env, .. } => out.extend(secret(env)),
            PlanValue::List(l) => l.iter().for_each(|x| walk(x, secret, out)),
            PlanValue::Map(m) => m.values().for_each(|x| walk(x, secret, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    plan.params.values().for_each(|v| walk(v, secret, &mut out));
    for n in plan.graph.node_weights() {
        if let Some(s) = n.as_step() {
            s.inputs.values().for_each(|v| walk(v, secret, &mut out));
            if let Some(c) = &s.compensate {
                c.inputs.values().for_each(|v| walk(v, secret, &mut out));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The steps whose outputs a step's values read (output references and run-time template bindings).
#[must_use]
pub fn referenced_steps<'a>(
    step: &'a PlanStep,
    values: &'a BTreeMap<String, PlanValue>,
) -> Vec<&'a str> {
    fn walk<'a>(v: &'a PlanValue, out: &mut Vec<&'a str>) {
        match v {
            PlanValue::StepOutput(r) => out.push(&r.step),
            PlanValue::List(l) => l.iter().for_each(|x| walk(x, out)),
            PlanValue::Map(m) => m.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out: Vec<&str> = step.bindings.values().map(|r| r.step.as_str()).collect();
    values.values().for_each(|v| walk(v, &mut out));
    out.sort_unstable();
    out.dedup();
    out
}

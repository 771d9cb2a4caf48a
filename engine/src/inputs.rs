//! Resolving a step's inputs at the moment it runs: run-time templates rendered, step outputs
//! substituted, secrets read from the environment. Durations become whole milliseconds.

use crate::template_context::{RunVars, context};
use drover_dsl::{Mode, Plan, PlanInputs, PlanStep, PlanValue};
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

/// Why an input could not be resolved. Messages name the input and what it reads, never a
/// secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The input reads an output that the step it names has not produced (yet).
    #[error("input `{input}`: step `{step}` produced no output `{output}`")]
    MissingOutput {
        /// The input.
        input: String,
        /// The step read.
        step: String,
        /// The output read.
        output: String,
    },
    /// A run-time template did not render (it may read outputs not produced yet).
    #[error("input `{input}`: template: {reason}")]
    Template {
        /// The input.
        input: String,
        /// The template engine's message.
        reason: String,
    },
    /// A secret's environment variable is not set.
    #[error("input `{input}`: secret `{param}`: environment variable {var} is not set")]
    SecretUnset {
        /// The input.
        input: String,
        /// The secret parameter.
        param: String,
        /// The environment variable.
        var: String,
    },
}

impl ResolveError {
    /// Whether the input depends on other steps' outputs, so that only the run itself can
    /// resolve it (a dry run says so instead of calling it a problem).
    #[must_use]
    pub fn needs_run_time(&self) -> bool {
        matches!(self, Self::MissingOutput { .. } | Self::Template { .. })
    }
}

/// A failure inside one value, before it is tied to the input it belongs to.
enum ValueError {
    MissingOutput { step: String, output: String },
    Template(String),
    SecretUnset { param: String, var: String },
}

impl ValueError {
    fn at(self, input: &str) -> ResolveError {
        let input = input.to_owned();
        match self {
            Self::MissingOutput { step, output } => ResolveError::MissingOutput {
                input,
                step,
                output,
            },
            Self::Template(reason) => ResolveError::Template { input, reason },
            Self::SecretUnset { param, var } => ResolveError::SecretUnset { input, param, var },
        }
    }
}

/// Reads a secret's environment variable.
pub type SecretSource<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Resolves `values` (a step's inputs or its compensation's) for `step`.
///
/// # Errors
/// The first input that could not be resolved, and why (never a secret's value).
pub fn resolve(
    plan: &Plan,
    step: &PlanStep,
    values: &PlanInputs,
    mode: Mode,
    outputs: &BTreeMap<String, Outputs>,
    secret: SecretSource<'_>,
    run: &RunVars,
) -> Result<Resolved, ResolveError> {
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
        let value =
            one(v, &ctx, &env, outputs, secret, &mut out.secrets).map_err(|e| e.at(name))?;
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
) -> Result<Value, ValueError> {
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
                .map_err(|e| ValueError::Template(e.to_string()))?;
            json!(
                tmpl.render(ctx)
                    .map_err(|e| ValueError::Template(e.to_string()))?
            )
        }
        PlanValue::StepOutput(r) => outputs
            .get(&r.step)
            .and_then(|o| o.get(&r.output))
            .cloned()
            .ok_or_else(|| ValueError::MissingOutput {
                step: r.step.clone(),
                output: r.output.clone(),
            })?,
        PlanValue::Secret { param, env: var } => {
            let value = secret(var).ok_or_else(|| ValueError::SecretUnset {
                param: param.clone(),
                var: var.clone(),
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
pub fn referenced_steps<'a>(step: &'a PlanStep, values: &'a PlanInputs) -> Vec<&'a str> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = r#"runbook "t" {
  rto   = 1h
  rpo   = 1h
  modes = [drill]
}

param token: secret = env("DROVER_INPUTS_TEST_TOKEN")

step first {
  action = shell
  with {
    command = "echo {{ run.id }} in {{ mode }}"
    env     = { TOKEN = token }
  }
}

step second {
  action = shell
  after  = [first]
  with {
    command = steps.first.stdout
  }
}

step pause {
  action = wait
  with {
    duration = 1m30s
  }
}

milestone done {
  after     = [second, pause]
  stops_rto = true
}
"#;

    fn plan() -> Plan {
        let catalogue = drover_adapters::builtin_catalogue();
        let opts = drover_dsl::CompileOptions {
            catalogue: &catalogue,
            vars: Vec::new(),
            operators: None,
        };
        let c = drover_dsl::compile_str("t.drover", SRC, &opts);
        c.plan.unwrap_or_else(|| panic!("{:#?}", c.diagnostics))
    }

    fn step<'a>(plan: &'a Plan, id: &str) -> &'a PlanStep {
        plan.steps()
            .find(|(_, s)| s.id == id)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("no step {id}"))
    }

    fn run_vars() -> RunVars {
        RunVars::new("run-42", std::path::Path::new("/var/lib/drover"))
    }

    fn resolve_step(
        plan: &Plan,
        id: &str,
        outputs: &BTreeMap<String, Outputs>,
        secret: SecretSource<'_>,
    ) -> Result<Resolved, ResolveError> {
        let s = step(plan, id);
        resolve(
            plan,
            s,
            &s.inputs,
            Mode::Drill,
            outputs,
            secret,
            &run_vars(),
        )
    }

    #[test]
    fn templates_render_run_values_and_secrets_are_substituted_and_remembered() {
        let plan = plan();
        let r = resolve_step(&plan, "first", &BTreeMap::new(), &|v| {
            (v == "DROVER_INPUTS_TEST_TOKEN").then(|| "tok-value-1".to_owned())
        })
        .expect("resolves");
        assert_eq!(r.inputs["command"], json!("echo run-42 in drill"));
        assert_eq!(r.inputs["env"], json!({ "TOKEN": "tok-value-1" }));
        assert_eq!(r.secrets, vec!["tok-value-1".to_owned()]);
    }

    #[test]
    fn an_unset_secret_names_the_input_the_parameter_and_the_variable() {
        let plan = plan();
        let e = resolve_step(&plan, "first", &BTreeMap::new(), &|_| None)
            .expect_err("the variable is unset");
        assert_eq!(
            e,
            ResolveError::SecretUnset {
                input: "env".into(),
                param: "token".into(),
                var: "DROVER_INPUTS_TEST_TOKEN".into(),
            }
        );
        assert!(!e.needs_run_time(), "an unset secret is a problem now");
    }

    #[test]
    fn an_output_not_produced_yet_is_typed_and_needs_the_run() {
        let plan = plan();
        let e = resolve_step(&plan, "second", &BTreeMap::new(), &|_| None)
            .expect_err("first has not run");
        assert!(e.needs_run_time(), "{e:?}");
        assert_eq!(
            e.to_string(),
            "input `command`: step `first` produced no output `stdout`"
        );
        let mut outputs = BTreeMap::new();
        outputs.insert(
            "first".to_owned(),
            Outputs::from([("stdout".to_owned(), json!("ls"))]),
        );
        let r = resolve_step(&plan, "second", &outputs, &|_| None).expect("resolves");
        assert_eq!(r.inputs["command"], json!("ls"));
        assert!(r.secrets.is_empty());
    }

    #[test]
    fn durations_become_whole_milliseconds() {
        let plan = plan();
        let r = resolve_step(&plan, "pause", &BTreeMap::new(), &|_| None).expect("resolves");
        assert_eq!(r.inputs["duration"], json!(90_000));
    }

    #[test]
    fn plan_secrets_reads_every_secret_the_plan_names_once() {
        let plan = plan();
        let got = plan_secrets(&plan, &|v| {
            (v == "DROVER_INPUTS_TEST_TOKEN").then(|| "tok-value-1".to_owned())
        });
        assert_eq!(got, vec!["tok-value-1".to_owned()]);
        assert!(plan_secrets(&plan, &|_| None).is_empty());
    }

    #[test]
    fn referenced_steps_lists_the_steps_read() {
        let plan = plan();
        let s = step(&plan, "second");
        assert_eq!(referenced_steps(s, &s.inputs), vec!["first"]);
        let s = step(&plan, "first");
        assert!(referenced_steps(s, &s.inputs).is_empty());
    }
}

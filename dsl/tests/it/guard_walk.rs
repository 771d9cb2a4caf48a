//! The drill guard at compile time, walked over the whole catalogue: every input an action's
//! schema marks as a resource it changes or points at is checked against `production.resources`
//! (DR0029), for every action — so a new action or input cannot slip past the guard.

use drover_dsl::{Code, CompileOptions, compile_str};
use drover_schema::{Role, ValueType};

/// A literal of type `ty` in the language.
fn literal(ty: &ValueType, value: &str) -> String {
    match ty {
        ValueType::Int => "1".into(),
        ValueType::Bool => "true".into(),
        ValueType::Duration => "1s".into(),
        ValueType::Enum(words) => format!("\"{}\"", words[0]),
        ValueType::List(inner) => format!("[{}]", literal(inner, value)),
        ValueType::Map(inner) => format!("{{ k = {} }}", literal(inner, value)),
        _ => format!("\"{value}\""),
    }
}

#[test]
fn every_resource_input_of_every_action_is_guarded_in_a_drill() {
    let catalogue = drover_adapters::builtin_catalogue();
    let opts = CompileOptions {
        catalogue: &catalogue,
        vars: Vec::new(),
        operators: None,
    };
    let mut walked = 0;
    for schema in catalogue.actions() {
        if schema.role == Role::Approval {
            continue;
        }
        for guarded in schema.inputs.iter().filter(|i| i.resource) {
            let mut with = String::new();
            for spec in &schema.inputs {
                let value = if spec.name == guarded.name {
                    literal(&spec.ty, "prod-thing")
                } else if spec.required {
                    literal(&spec.ty, &format!("dr-{}", spec.name))
                } else {
                    continue;
                };
                with.push_str(&format!("    {} = {value}\n", spec.name));
            }
            let src = format!(
                "runbook \"walk\" {{\n  rto   = 1h\n  rpo   = 1h\n  modes = [drill]\n}}\n\nproduction {{\n  resources = [\"prod-thing\"]\n}}\n\nstep s {{\n  action = {}\n  with {{\n{with}  }}\n}}\n\nmilestone m {{\n  after     = [s]\n  stops_rto = true\n}}\n",
                schema.name
            );
            let c = compile_str("walk.drover", &src, &opts);
            assert!(
                c.diagnostics
                    .iter()
                    .any(|d| d.code == Code::DrillTouchesProduction),
                "{}: `{}` = \"prod-thing\" in a drill is not refused:\n{src}\n{:#?}",
                schema.name,
                guarded.name,
                c.diagnostics
            );
            walked += 1;
        }
    }
    // Every action that changes or points at something names it as a resource.
    for schema in catalogue.actions() {
        if schema.effect != drover_schema::Effect::ReadOnly
            && schema.role != Role::Approval
            && !matches!(
                schema.name.as_str(),
                // They create new things or run commands; they name no existing resource.
                "shell"
                    | "notify"
                    | "aws_route53.create_health_check"
                    | "aws_ec2.create_volume_from_snapshot"
            )
        {
            assert!(
                schema.inputs.iter().any(|i| i.resource),
                "{} changes the world but names no resource",
                schema.name
            );
        }
    }
    assert!(walked >= 25, "{walked} resource inputs walked");
}

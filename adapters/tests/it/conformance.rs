//! The adapter conformance suite (shared/STYLE.md): one harness that every adapter passes, each
//! against a real world — the local file system, moto for AWS, the ARM stand-in for Azure.
//!
//! For one action with valid inputs in a prepared world, the harness checks the contract the
//! engine relies on:
//! - the action is in the adapter's schemas, and its inputs validate;
//! - validation refuses each required input left out, and a word outside an enumeration, with a
//!   permanent error that names the input;
//! - `observe` before the change says not done;
//! - `execute` changes the world, and a second `execute` under the same idempotency key succeeds
//!   and changes nothing more;
//! - `observe` after it reports done;
//! - where the schema promises a built-in undo, `compensate` with the first call's outputs puts
//!   the world back as it was, and a second `compensate` leaves it so.

use super::support::rt;
use drover_schema::{Adapter, Effect, Inputs, Observation, StepContext, ValueType};
use serde_json::{Value, json};

/// One action in a prepared world.
struct Case<'a> {
    adapter: &'a dyn Adapter,
    action: &'a str,
    inputs: Inputs,
    ctx: StepContext,
    /// The part of the world the action changes, read back from the service itself.
    state: &'a dyn Fn() -> Value,
}

fn conformance(rt: &tokio::runtime::Runtime, case: &Case<'_>) {
    let Case {
        adapter,
        action,
        inputs,
        ctx,
        state,
    } = case;
    let schemas = adapter.schemas();
    let schema = schemas
        .iter()
        .find(|s| s.name == *action)
        .unwrap_or_else(|| panic!("{action} is not in its adapter's schemas"));
    assert!(
        drover_adapters::builtin_catalogue()
            .actions()
            .iter()
            .any(|s| s == schema),
        "{action}: the adapter's schema is the catalogue's"
    );

    // Validation: the inputs pass; each required one left out, or a bad word, is named.
    adapter
        .validate_step(action, inputs)
        .unwrap_or_else(|e| panic!("{action}: valid inputs refused: {e}"));
    for spec in schema.inputs.iter().filter(|i| i.required) {
        let mut bad = inputs.clone();
        bad.remove(&spec.name);
        let e = adapter
            .validate_step(action, &bad)
            .expect_err(&format!("{action} without `{}`", spec.name));
        assert!(!e.is_transient(), "{action}: {e}");
        assert!(
            e.message.contains(&format!("`{}`", spec.name)),
            "{action}: the error names `{}`: {e}",
            spec.name
        );
    }
    for spec in &schema.inputs {
        if let (ValueType::Enum(_), Some(_)) = (&spec.ty, inputs.get(&spec.name)) {
            let mut bad = inputs.clone();
            bad.insert(spec.name.clone(), json!("no-such-word"));
            let e = adapter
                .validate_step(action, &bad)
                .expect_err(&format!("{action} with a bad `{}`", spec.name));
            assert!(
                e.message.contains(&format!("`{}`", spec.name)),
                "{action}: {e}"
            );
        }
    }

    // Observe, execute, execute again, observe.
    let before = state();
    assert_eq!(
        rt.block_on(adapter.observe(action, inputs, ctx))
            .unwrap_or_else(|e| panic!("{action}: observe: {e}")),
        Observation::NotDone,
        "{action}: nothing done yet"
    );
    let first = rt
        .block_on(adapter.execute(action, inputs, ctx))
        .unwrap_or_else(|e| panic!("{action}: execute: {e}"));
    let after = state();
    if schema.effect != Effect::ReadOnly {
        assert_ne!(after, before, "{action}: the world changed");
    }
    let second = rt
        .block_on(adapter.execute(action, inputs, ctx))
        .unwrap_or_else(|e| panic!("{action}: the same call again: {e}"));
    assert_eq!(
        state(),
        after,
        "{action}: a second call under the same key changes nothing"
    );
    for spec in &schema.outputs {
        assert_eq!(
            first.contains_key(&spec.name),
            second.contains_key(&spec.name),
            "{action}: both calls report `{}`",
            spec.name
        );
    }
    match rt
        .block_on(adapter.observe(action, inputs, ctx))
        .unwrap_or_else(|e| panic!("{action}: observe: {e}"))
    {
        Observation::Done(_) => {}
        Observation::NotDone => panic!("{action}: observe after execute must report done"),
    }

    // The built-in undo restores what was there.
    if schema.builtin_undo {
        for round in ["undo", "undo again"] {
            rt.block_on(adapter.compensate(action, inputs, &first, ctx))
                .unwrap_or_else(|e| panic!("{action}: {round}: {e}"));
            assert_eq!(state(), before, "{action}: {round} restores the world");
        }
    }
}

fn step(dir: &std::path::Path, step: &str, action: &str) -> StepContext {
    StepContext {
        run_id: "conformance".into(),
        step_id: step.into(),
        action: action.into(),
        idempotency_key: format!("conformance/{step}"),
        attempt: 1,
        mode: drover_schema::Mode::Failover,
        state_dir: dir.to_path_buf(),
        ..Default::default()
    }
}

#[test]
fn local_backup_rehydrate_conforms() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = super::support::key(dir.path(), "k.key");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let backup = super::support::create(dir.path(), "ehr.dbk", &data, 64 * 1024, &key);
    let dest = dir.path().join("restored.bin");
    let adapter = drover_adapters::local::LocalAdapter::new(std::sync::Arc::new(|_: &str| {}));
    let mut inputs = Inputs::new();
    inputs.insert("source".into(), json!(backup.display().to_string()));
    inputs.insert(
        "key".into(),
        json!(format!("file:{}", dir.path().join("k.key").display())),
    );
    inputs.insert("dest".into(), json!(dest.display().to_string()));
    let state = || match std::fs::read(&dest) {
        Ok(bytes) => json!(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))),
        Err(_) => Value::Null,
    };
    conformance(
        &rt(),
        &Case {
            adapter: &adapter,
            action: "backup.rehydrate",
            inputs,
            ctx: step(dir.path(), "rehydrate", "backup.rehydrate"),
            state: &state,
        },
    );
}

#[cfg(feature = "aws")]
#[test]
fn aws_ec2_replace_route_conforms() {
    use super::aws_network::{inputs, net};
    let rt = rt();
    let dir = tempfile::tempdir().expect("tmp");
    let n = rt.block_on(net(false));
    let state = || {
        let (gateway, eni) = rt.block_on(n.route_target());
        json!({ "gateway": gateway, "eni": eni })
    };
    conformance(
        &rt,
        &Case {
            adapter: &drover_adapters::aws_ec2::AwsEc2Adapter,
            action: "aws_ec2.replace_route",
            inputs: inputs(json!({
                "route_table_id": n.route_table,
                "destination_cidr": "10.20.0.0/16",
                "network_interface_id": n.standby_eni,
            })),
            ctx: step(dir.path(), "reroute", "aws_ec2.replace_route"),
            state: &state,
        },
    );
}

#[cfg(feature = "aws")]
#[test]
fn aws_route53_set_failover_conforms() {
    use super::aws_network::{inputs, zone};
    let rt = rt();
    let dir = tempfile::tempdir().expect("tmp");
    let z = rt.block_on(zone(false));
    let state = || json!(format!("{:?}", rt.block_on(z.roles())));
    conformance(
        &rt,
        &Case {
            adapter: &drover_adapters::aws_route53::AwsRoute53Adapter,
            action: "aws_route53.set_failover",
            inputs: inputs(json!({
                "zone_id": z.id,
                "name": z.record,
                "type": "A",
                "active": "ehr-us-west-2",
            })),
            ctx: step(dir.path(), "dns_cutover", "aws_route53.set_failover"),
            state: &state,
        },
    );
}

#[cfg(feature = "azure")]
#[test]
fn azure_network_update_route_conforms() {
    use super::arm_server::ArmServer;
    use super::azure_network::{ManualClock, adapter, route_inputs};
    let dir = tempfile::tempdir().expect("tmp");
    let server = ArmServer::start();
    let clock = std::sync::Arc::new(ManualClock::default());
    let a = adapter(&clock);
    let state = || {
        server
            .resource("routeTables/rt-ehr-app/routes/default-egress")
            .map_or(Value::Null, |r| r["properties"].clone())
    };
    conformance(
        &rt(),
        &Case {
            adapter: &a,
            action: "azure_network.update_route",
            inputs: route_inputs(&server, "10.60.0.4"),
            ctx: step(dir.path(), "route_to_dr", "azure_network.update_route"),
            state: &state,
        },
    );
}

/// A value of type `ty` for the catalogue walk (words of an enumeration are tried one by one).
fn sample(ty: &ValueType) -> Vec<Value> {
    match ty {
        ValueType::String | ValueType::Secret | ValueType::StringOrSecret | ValueType::Any => {
            vec![json!("sample")]
        }
        ValueType::Int => vec![json!(1)],
        ValueType::Bool => vec![json!(true), json!(false)],
        ValueType::Duration => vec![json!(1_000)],
        ValueType::Enum(words) => words.iter().map(|w| json!(w)).collect(),
        ValueType::List(inner) => sample(inner).into_iter().map(|v| json!([v])).collect(),
        ValueType::Map(inner) => sample(inner)
            .into_iter()
            .map(|v| json!({ "NAME": v }))
            .collect(),
    }
}

/// The catalogue never offers what the adapters refuse: every action the compiler accepts is run
/// by exactly one adapter of the product, under the very same schema, and no input the schema
/// offers — nor any word of an enumeration — is refused by validation as such.
#[cfg(all(feature = "aws", feature = "azure"))]
#[test]
fn the_catalogue_offers_only_what_the_adapters_run() {
    let adapters = drover_adapters::builtin_adapters(std::sync::Arc::new(|_: &str| {}));
    let catalogue = drover_adapters::builtin_catalogue();
    let mut walked = 0;
    for schema in catalogue.actions() {
        if schema.role == drover_schema::Role::Approval {
            continue; // the engine itself waits for approvals
        }
        if schema.provider() == "posture" {
            // Run by drover-posture's adapter (it reads the journal); its own test checks it
            // declares this very schema.
            continue;
        }
        let runners: Vec<_> = adapters
            .iter()
            .filter(|a| a.schemas().iter().any(|s| s.name == schema.name))
            .collect();
        assert_eq!(
            runners.len(),
            1,
            "{}: run by exactly one adapter",
            schema.name
        );
        let adapter = runners[0];
        assert!(
            adapter.schemas().contains(schema),
            "{}: the adapter declares the catalogue's schema",
            schema.name
        );
        let mut base = Inputs::new();
        for spec in schema.inputs.iter().filter(|i| i.required) {
            base.insert(spec.name.clone(), sample(&spec.ty).remove(0));
        }
        for spec in &schema.inputs {
            for value in sample(&spec.ty) {
                let mut inputs = base.clone();
                inputs.insert(spec.name.clone(), value.clone());
                if let Err(e) = adapter.validate_step(&schema.name, &inputs) {
                    // Refused by a rule between inputs (the message names another input) is
                    // fine; refused because of this input's offered value alone is not.
                    let names_another = schema
                        .inputs
                        .iter()
                        .any(|o| o.name != spec.name && e.message.contains(o.name.as_str()));
                    assert!(
                        names_another || !e.message.contains(spec.name.as_str()),
                        "{}: the catalogue offers `{}` = {value} and validation refuses it: {e}",
                        schema.name,
                        spec.name
                    );
                }
                walked += 1;
            }
        }
    }
    // Every adapter's actions are in the catalogue (the compiler can check them).
    for a in &adapters {
        for s in a.schemas() {
            assert!(
                catalogue.actions().contains(&s),
                "{} is run but not in the catalogue",
                s.name
            );
        }
    }
    assert!(walked > 100, "{walked} input values walked");
}

//! Every example runbook compiles cleanly, is formatted, and compiles to the same plan every time.
//! Their static analyses are snapshotted (the "ok → plan dump" half of the golden tests).

use super::support::{compile_with, files_under, loader_for, root};
use drover_dsl::analysis::{analyze, render_text};

fn runbooks() -> Vec<String> {
    files_under(&root().join("runbooks"))
        .into_iter()
        .map(|(name, _)| name)
        .filter(|n| n.ends_with(".drover") && !n.starts_with("lib/"))
        .collect()
}

#[test]
fn there_are_at_least_six_examples() {
    assert!(runbooks().len() >= 6, "{:?}", runbooks());
}

#[test]
fn every_example_compiles_without_diagnostics() {
    let loader = loader_for(&root().join("runbooks"));
    for name in runbooks() {
        let c = compile_with(&name, &loader, Vec::new());
        assert!(c.diagnostics.is_empty(), "{name}: {:#?}", c.diagnostics);
        assert!(c.plan.is_some(), "{name}");
    }
}

#[test]
fn every_example_and_library_is_formatted() {
    for (name, text) in files_under(&root().join("runbooks")) {
        if !name.ends_with(".drover") {
            continue;
        }
        let formatted = drover_dsl::format_source(&name, &text).expect("parses");
        assert_eq!(formatted, text, "{name} is not in canonical layout");
    }
}

#[test]
fn plans_are_deterministic_and_round_trip_through_json() {
    let loader = loader_for(&root().join("runbooks"));
    for name in runbooks() {
        let a = compile_with(&name, &loader, Vec::new()).plan.expect("plan");
        let b = compile_with(&name, &loader, Vec::new()).plan.expect("plan");
        let ja = a.to_json().expect("json");
        assert_eq!(ja, b.to_json().expect("json"), "{name}");
        let back: drover_dsl::Plan = serde_json::from_str(&ja).expect("deserializes");
        assert_eq!(back.to_json().expect("json"), ja, "{name}");
    }
}

#[test]
fn analyses_match_their_snapshots() {
    let loader = loader_for(&root().join("runbooks"));
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(root().join("dsl/tests/snapshots_runbooks"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        for name in runbooks() {
            let plan = compile_with(&name, &loader, Vec::new()).plan.expect("plan");
            let mut text = String::new();
            for mode in &plan.runbook.modes {
                text.push_str(&render_text(&plan, &analyze(&plan, *mode)));
                text.push_str("\n---\n");
            }
            insta::assert_snapshot!(name.trim_end_matches(".drover"), text);
        }
    });
}

#[test]
fn vars_override_defaults_and_change_the_plan() {
    let loader = loader_for(&root().join("runbooks"));
    let vars = vec![("shards".to_owned(), "2020,2021".to_owned())];
    let plan = compile_with("pacs-restore.drover", &loader, vars)
        .plan
        .expect("plan");
    let ids: Vec<&str> = plan.steps().map(|(_, s)| s.id.as_str()).collect();
    assert!(ids.contains(&"verify_shard[2021]"), "{ids:?}");
    assert!(!ids.contains(&"verify_shard[2024]"), "{ids:?}");
}

//! Golden tests: each invalid runbook under `tests/fixtures/invalid/` has a snapshot of its
//! rendered diagnostics under `tests/snapshots/`. Stale snapshots are rejected.

use super::support::{compile_with, files_under, loader_for, render_all, root, vars_of};
use drover_dsl::Code;
use std::collections::BTreeSet;

fn fixtures() -> Vec<(String, String)> {
    let dir = root().join("dsl/tests/fixtures/invalid");
    files_under(&dir)
        .into_iter()
        .filter(|(name, _)| !name.contains('/'))
        .collect()
}

#[test]
fn every_invalid_runbook_matches_its_snapshot() {
    let dir = root().join("dsl/tests/fixtures/invalid");
    let loader = loader_for(&dir);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(root().join("dsl/tests/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    let fixtures = fixtures();
    assert!(
        fixtures.len() >= 30,
        "only {} invalid fixtures",
        fixtures.len()
    );
    settings.bind(|| {
        for (name, text) in &fixtures {
            let c = compile_with(name, &loader, vars_of(text));
            assert!(
                !c.diagnostics.is_empty(),
                "{name} compiled without a diagnostic"
            );
            let stem = name.trim_end_matches(".drover");
            insta::assert_snapshot!(stem, render_all(&c));
        }
    });
}

#[test]
fn no_snapshot_lacks_a_fixture() {
    let names: BTreeSet<String> = fixtures()
        .into_iter()
        .map(|(n, _)| n.trim_end_matches(".drover").to_owned())
        .collect();
    for (snap, _) in files_under(&root().join("dsl/tests/snapshots")) {
        let stem = snap.trim_end_matches(".snap").trim_end_matches(".snap.new");
        assert!(
            names.contains(stem),
            "stale snapshot {snap}: its fixture is gone"
        );
    }
}

#[test]
fn fixtures_cover_every_diagnostic_code() {
    let dir = root().join("dsl/tests/fixtures/invalid");
    let loader = loader_for(&dir);
    let mut seen = BTreeSet::new();
    for (name, text) in fixtures() {
        for d in compile_with(&name, &loader, vars_of(&text)).diagnostics {
            seen.insert(d.code);
        }
    }
    let missing: Vec<&str> = Code::ALL
        .iter()
        .filter(|c| !seen.contains(c))
        .map(|c| c.as_str())
        .collect();
    assert!(missing.is_empty(), "no fixture produces {missing:?}");
}

#[test]
fn a_syntax_error_does_not_hide_later_errors() {
    // A broken step, then a step that names a step that does not exist: both are reported.
    let src = r#"runbook "collect" {
  rto   = 1h
  rpo   = 15m
  modes = [drill]
}

step a {
  action = wait
  with {
    duration = 1s
  }
}

step broken {
  action = 
}

step d {
  action = wait
  after  = [a, no_such_step]
  with {
    duration = 1s
  }
}

milestone done {
  after     = [d]
  stops_rto = true
}
"#;
    let loader = drover_dsl::MemoryLoader::new().with("collect.drover", src);
    let c = compile_with("collect.drover", &loader, Vec::new());
    let codes: Vec<Code> = c.diagnostics.iter().map(|d| d.code).collect();
    assert!(codes.contains(&Code::SyntaxError), "{:#?}", c.diagnostics);
    let unknown = c
        .diagnostics
        .iter()
        .find(|d| d.code == Code::UnknownStep)
        .unwrap_or_else(|| panic!("the later unknown step is reported: {:#?}", c.diagnostics));
    assert!(
        unknown.message.contains("no_such_step"),
        "{}",
        unknown.message
    );
    assert!(c.plan.is_none());
}

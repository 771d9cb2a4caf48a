//! The operator roster a runbook names: read with the runbook, its problems reported where they
//! are (in the roster file), approval roles checked against it, and carried in the plan.

use drover_dsl::{CompileOptions, MemoryLoader, compile};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";

fn runbook(roles: &str) -> String {
    format!(
        r#"runbook "roster" {{
  rto       = 1h
  rpo       = 1h
  modes     = [failover]
  operators = "team/operators.toml"
}}

step gate {{
  action = approval
  with {{
    prompt = "go?"
    roles  = [{roles}]
  }}
}}

step done {{
  action = wait
  after  = [gate]
  with {{
    duration = 1s
  }}
}}

milestone m {{
  after     = [done]
  stops_rto = true
}}
"#
    )
}

fn roster_text(key: &str) -> String {
    format!("[operators.alice]\nroles = [\"incident-commander\"]\nkeys = [\"{key}\"]\n")
}

fn run(main: &str, roster: Option<&str>) -> drover_dsl::Compilation {
    let catalogue = drover_adapters::builtin_catalogue();
    let opts = CompileOptions {
        catalogue: &catalogue,
        vars: Vec::new(),
        operators: None,
    };
    let mut loader = MemoryLoader::new().with("ops/failover.drover", main);
    if let Some(r) = roster {
        loader = loader.with("ops/team/operators.toml", r);
    }
    compile("ops/failover.drover", &loader, &opts)
}

#[test]
fn a_valid_roster_travels_in_the_plan_and_its_bytes_are_in_the_plan_hash() {
    let c = run(&runbook("\"incident-commander\""), Some(&roster_text(KEY)));
    let plan = c.plan.unwrap_or_else(|| panic!("{:#?}", c.diagnostics));
    let r = plan.runbook.roster.as_ref().expect("the roster");
    assert_eq!(r.path, "ops/team/operators.toml");
    assert!(r.text.contains("alice@laptop"));
    let other = run(
        &runbook("\"incident-commander\""),
        Some(&format!("{}\n# edited\n", roster_text(KEY))),
    );
    let other = other.plan.expect("plan");
    assert_ne!(
        other.runbook.source_sha256, plan.runbook.source_sha256,
        "an edited roster is another plan"
    );
}

#[test]
fn roster_problems_point_into_the_roster_file() {
    let c = run(
        &runbook("\"incident-commander\""),
        Some(&roster_text("ssh-ed25519 AAAA-not-a-key alice@laptop")),
    );
    assert!(c.plan.is_none());
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.code.as_str() == "DR0034")
        .unwrap_or_else(|| panic!("{:#?}", c.diagnostics));
    assert!(
        d.message.contains("not an OpenSSH public key"),
        "{}",
        d.message
    );
    let f = c.sources.get(d.primary.span.file);
    assert_eq!(f.name, "ops/team/operators.toml");
    assert_eq!(
        f.line_col(d.primary.span.start as usize).0,
        3,
        "the keys line"
    );
    let missing = run(&runbook("\"incident-commander\""), None);
    assert!(
        missing
            .diagnostics
            .iter()
            .any(|d| d.code.as_str() == "DR0034" && d.message.contains("cannot read")),
        "{:#?}",
        missing.diagnostics
    );
}

#[test]
fn an_approval_role_nobody_holds_is_an_error_with_a_suggestion() {
    let c = run(&runbook("\"incident-comander\""), Some(&roster_text(KEY)));
    assert!(c.plan.is_none());
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.code.as_str() == "DR0035")
        .unwrap_or_else(|| panic!("{:#?}", c.diagnostics));
    assert!(d.message.contains("incident-comander"), "{}", d.message);
    assert!(
        d.help
            .as_deref()
            .is_some_and(|h| h.contains("did you mean `incident-commander`")),
        "{d:?}"
    );
}

#[test]
fn operators_given_on_the_command_line_take_the_place_of_the_header() {
    let catalogue = drover_adapters::builtin_catalogue();
    let main = runbook("\"incident-commander\"");
    let loader = MemoryLoader::new()
        .with("ops/failover.drover", &main)
        .with("elsewhere/team.toml", &roster_text(KEY));
    let opts = CompileOptions {
        catalogue: &catalogue,
        vars: Vec::new(),
        operators: Some("elsewhere/team.toml".to_owned()),
    };
    let c = compile("ops/failover.drover", &loader, &opts);
    let plan = c.plan.unwrap_or_else(|| panic!("{:#?}", c.diagnostics));
    let r = plan
        .runbook
        .roster
        .expect("the roster given on the command line");
    assert_eq!(r.path, "elsewhere/team.toml", "not the header's roster");

    // A runbook without `operators` in its header gets one from the command line too, and the
    // roles of its approval steps are checked against it.
    let bare = main.replace("  operators = \"team/operators.toml\"\n", "");
    let loader = MemoryLoader::new()
        .with(
            "ops/failover.drover",
            &bare.replace("incident-commander", "dba"),
        )
        .with("elsewhere/team.toml", &roster_text(KEY));
    let c = compile("ops/failover.drover", &loader, &opts);
    assert!(c.plan.is_none());
    assert!(
        c.diagnostics
            .iter()
            .any(|d| d.code.as_str() == "DR0035" && d.message.contains("`dba`")),
        "{:#?}",
        c.diagnostics
    );

    // A roster file that is not there is an error, never a run without a roster.
    let missing = CompileOptions {
        operators: Some("nowhere.toml".to_owned()),
        ..opts
    };
    let c = compile("ops/failover.drover", &loader, &missing);
    assert!(c.plan.is_none());
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.code.as_str() == "DR0034")
        .expect("DR0034");
    assert!(d.message.contains("nowhere.toml"), "{}", d.message);
    assert!(d.help.as_deref().unwrap_or("").contains("--operators"));
}

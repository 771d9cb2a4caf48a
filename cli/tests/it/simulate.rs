//! `drover simulate`: reproducible Monte Carlo through the binary.

use super::{drover, root, text};

#[test]
fn the_same_seed_gives_byte_identical_json_with_one_and_two_threads() {
    let run = |threads: &str, seed: &str| {
        let out = drover(&[
            "simulate",
            "runbooks/ehr-failover.drover",
            "--mode",
            "failover",
            "--trials",
            "3000",
            "--seed",
            seed,
            "--threads",
            threads,
            "--format",
            "json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        out.stdout
    };
    let one = run("1", "42");
    assert_eq!(one, run("2", "42"));
    assert_ne!(one, run("2", "43"), "another seed, another sample");
    let v: serde_json::Value = serde_json::from_slice(&one).expect("json");
    assert_eq!(v["simulated"], true);
    assert_eq!(v["trials"], 3000);
    assert!(v["rto"]["p50_ms"].as_u64().is_some_and(|p| p > 0));
    let crit = v["median_critical_path"].as_array().expect("path");
    assert_eq!(crit.last().and_then(|s| s.as_str()), Some("ehr_restored"));
}

#[test]
fn every_example_runbook_simulates() {
    for entry in std::fs::read_dir(root().join("runbooks")).expect("runbooks") {
        let p = entry.expect("entry").path();
        if p.extension().and_then(|e| e.to_str()) != Some("drover") {
            continue;
        }
        let f = p.to_string_lossy().into_owned();
        let out = drover(&["simulate", &f, "--trials", "200"]);
        assert_eq!(out.status.code(), Some(0), "{f}: {}", text(&out.stderr));
        let s = text(&out.stdout);
        assert!(s.starts_with("SIMULATED"), "{s}");
        assert!(s.contains("RTO  p50"), "{f}: {s}");
    }
}

#[test]
fn a_scenario_changes_the_prediction_and_can_fail_ci() {
    let dir = tempfile::tempdir().expect("tmp");
    let slow = dir.path().join("slow-dns.toml");
    std::fs::write(
        &slow,
        "name = \"approvers asleep\"\n[[fault]]\nkind = \"approver_unavailable\"\nstep = \"approve_cutover\"\ndelay = \"5h\"\n",
    )
    .expect("write");
    let base = drover(&[
        "simulate",
        "runbooks/ehr-failover.drover",
        "--mode",
        "failover",
        "--trials",
        "500",
        "--format",
        "json",
        "--fail-if-p95-exceeds-target",
    ]);
    assert_eq!(base.status.code(), Some(0), "{}", text(&base.stderr));
    let out = drover(&[
        "simulate",
        "runbooks/ehr-failover.drover",
        "--mode",
        "failover",
        "--trials",
        "500",
        "--format",
        "json",
        "--scenario",
        slow.to_str().expect("utf-8"),
        "--fail-if-p95-exceeds-target",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let b: serde_json::Value = serde_json::from_slice(&base.stdout).expect("json");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(s["scenario"], "approvers asleep");
    let p50 = |v: &serde_json::Value| v["rto"]["p50_ms"].as_u64().unwrap_or(0);
    assert!(
        p50(&s) >= p50(&b) + 5 * 3_600_000,
        "a 5h approval delay moves the median by 5h"
    );
    assert_eq!(s["rto"]["p_meet_target"], 0.0);

    std::fs::write(&slow, "[[fault]]\nkind = \"meteor\"\n").expect("write");
    let bad = drover(&[
        "simulate",
        "runbooks/ehr-failover.drover",
        "--scenario",
        slow.to_str().expect("utf-8"),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("unknown kind `meteor`"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn a_tabletop_is_driven_through_a_real_terminal_and_records_the_typed_approval() {
    use expectrl::{Eof, Session};
    let dir = tempfile::tempdir().expect("tmp");
    let report = dir.path().join("tabletop.json");
    let scenario = dir.path().join("dns.toml");
    std::fs::write(
        &scenario,
        "name = \"control plane outage\"\n[[fault]]\nkind = \"provider_unavailable\"\nprovider = \"aws_route53\"\nfrom = \"10m\"\nuntil = \"20m\"\n",
    )
    .expect("write");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_drover"));
    cmd.current_dir(root()).args([
        "tabletop",
        "runbooks/ehr-failover.drover",
        "--mode",
        "failover",
        "--speed",
        "0",
        "--scenario",
        scenario.to_str().expect("utf-8"),
        "--report",
        report.to_str().expect("utf-8"),
    ]);
    let mut s = Session::spawn(cmd).expect("a pty");
    s.set_expect_timeout(Some(std::time::Duration::from_secs(60)));
    s.expect("INJECT  aws_route53 control plane unavailable")
        .expect("the inject appears");
    s.expect("APPROVAL approve_cutover")
        .expect("the approval is asked");
    s.expect("> ").expect("a prompt");
    s.send_line("bob").expect("type");
    s.expect("1 more approver(s) needed")
        .expect("asks for the second");
    s.send_line("bob carol").expect("type");
    s.expect("approved by bob, carol").expect("approved");
    s.expect("TABLETOP REPORT (simulated)").expect("report");
    s.expect(Eof).expect("ends");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report file")).expect("json");
    assert_eq!(r["simulated"], true);
    assert_eq!(r["scenario"], "control plane outage");
    assert_eq!(r["decisions"][0]["step"], "approve_cutover");
    assert_eq!(
        r["decisions"][0]["approvers"],
        serde_json::json!(["bob", "carol"])
    );
    assert!(r["rto_ms"].as_u64().is_some(), "{r}");
    assert!(
        r["timeline"]
            .as_array()
            .is_some_and(|t| t.iter().any(|e| e[1] == "MILESTONE ehr_restored")),
        "{r}"
    );
}

#[test]
fn simulate_writes_the_picture_when_asked() {
    let dir = tempfile::tempdir().expect("tmp");
    let svg = dir.path().join("ehr.svg");
    let out = drover(&[
        "simulate",
        "runbooks/ehr-failover.drover",
        "--mode",
        "failover",
        "--trials",
        "500",
        "--svg",
        &svg.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pic = std::fs::read_to_string(&svg).expect("svg written");
    assert!(pic.starts_with("<svg") && pic.trim_end().ends_with("</svg>"));
    assert!(pic.contains("SIMULATED — not a verified recovery"));
    assert!(pic.contains("ehr_restored"), "the Gantt names the steps");
    let bad = drover(&[
        "simulate",
        "runbooks/quickstart.drover",
        "--trials",
        "10",
        "--svg",
        &dir.path().join("no/such/dir/x.svg").to_string_lossy(),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("cannot write"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn a_stopped_tabletop_exits_4_and_names_who_stopped_it() {
    use expectrl::{Eof, Session};
    let dir = tempfile::tempdir().expect("tmp");
    let report = dir.path().join("tabletop.json");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_drover"));
    cmd.current_dir(root()).args([
        "tabletop",
        "runbooks/ehr-failover.drover",
        "--mode",
        "failover",
        "--speed",
        "0",
        "--report",
        report.to_str().expect("utf-8"),
    ]);
    let mut s = Session::spawn(cmd).expect("a pty");
    s.set_expect_timeout(Some(std::time::Duration::from_secs(60)));
    s.expect("APPROVAL approve_cutover")
        .expect("the approval is asked");
    s.expect("> ").expect("a prompt");
    s.send_line("stop").expect("type");
    s.expect("who is stopping the exercise?").expect("asks who");
    s.send_line("dana").expect("type");
    s.expect("approve_cutover stopped by dana")
        .expect("says who stopped it");
    s.expect(Eof).expect("ends");
    let status = s.get_process_mut().wait().expect("exit status");
    assert_eq!(
        status,
        expectrl::WaitStatus::Exited(s.get_process().pid(), 4),
        "a stopped exercise exits 4"
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report file")).expect("json");
    assert_eq!(r["decisions"][0]["decision"], "stopped");
    assert_eq!(r["decisions"][0]["stopped_by"], "dana");
    assert_eq!(r["outcome"], "interrupted");
}

#[test]
fn a_tabletop_whose_input_ends_exits_4_and_says_so() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(root())
        .args([
            "tabletop",
            "runbooks/ehr-failover.drover",
            "--mode",
            "failover",
            "--speed",
            "0",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("drover runs");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("approve_cutover not decided: the input ended"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("did not run to the end"),
        "{}",
        text(&out.stderr)
    );
}

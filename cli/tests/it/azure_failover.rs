//! The Azure VNet failover runbook end to end through `drover run`, against the ARM stand-in
//! (`adapters/tests/it/arm_server.rs`: real azure_mgmt_network requests, recorded and asserted).
//! No real Azure endpoint is ever contacted.

use super::arm_server::{ArmServer, SUB, TOKEN, conflict, id};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn drover(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .current_dir(dir)
        .env("USER", "alice")
        .output()
        .expect("drover runs")
}

fn spawn_run(dir: &Path, server: &ArmServer, run_id: &str) -> Child {
    let runbook = super::root().join("runbooks/azure-vnet-failover.drover");
    let vars = [
        format!("subscription={SUB}"),
        format!("arm_endpoint={}", server.url),
        "hostname=localhost".to_owned(),
        "frontend_ip=127.0.0.1".to_owned(),
        format!("health_url={}/health", server.url),
    ];
    let mut c = Command::new(env!("CARGO_BIN_EXE_drover"));
    c.args([
        "run",
        &runbook.to_string_lossy(),
        "--mode",
        "failover",
        "--run-id",
        run_id,
        "--as",
        "alice",
    ]);
    for v in &vars {
        c.args(["--var", v]);
    }
    c.current_dir(dir)
        .env("USER", "alice")
        .env("DROVER_AZURE_TOKEN", TOKEN)
        .env_remove("AZURE_SUBSCRIPTION_ID")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drover starts")
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if f() {
            return;
        }
        #[allow(clippy::disallowed_methods, reason = "polling a real process")]
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn status(dir: &Path, run: &str) -> Value {
    let out = drover(dir, &["status", run, "--format", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// Approves the gate as the network lead, once the run waits for it.
fn approve(dir: &Path, run: &str) {
    wait_until("the approval gate", || {
        status(dir, run)["steps"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["id"] == "approve" && s["state"] == "awaiting_approval")
        })
    });
    let out = drover(
        dir,
        &[
            "approve",
            run,
            "approve",
            "--as",
            "bob",
            "--role",
            "network-lead",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

fn finish(c: Child) -> (Option<i32>, String) {
    let out = c.wait_with_output().expect("wait");
    (
        out.status.code(),
        format!("{}\n{}", text(&out.stdout), text(&out.stderr)),
    )
}

fn next_hop(s: &ArmServer) -> Value {
    s.resource("routeTables/rt-ehr-app/routes/default-egress")
        .expect("route")["properties"]["nextHopIpAddress"]
        .clone()
}

fn pip_holder(s: &ArmServer) -> Value {
    s.resource("publicIPAddresses/pip-ehr-frontend")
        .expect("pip")["properties"]["ipConfiguration"]["id"]
        .clone()
}

fn rule(s: &ArmServer) -> Option<Value> {
    s.resource("networkSecurityGroups/nsg-ehr-dr/securityRules/allow-https-dr")
}

#[test]
fn the_azure_vnet_failover_runs_end_to_end_against_recorded_arm_exchanges() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let s = ArmServer::start();
    assert_eq!(next_hop(&s), "10.50.0.4");
    let child = spawn_run(d, &s, "az1");
    approve(d, "az1");
    let (code, log) = finish(child);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("MILESTONE network_failed_over"), "{log}");

    // The world moved to the DR path.
    assert_eq!(next_hop(&s), "10.60.0.4");
    assert_eq!(
        rule(&s).expect("rule")["properties"]["destinationPortRange"],
        "443"
    );
    assert_eq!(
        pip_holder(&s),
        id("networkInterfaces/nic-lb-dr/ipConfigurations/ipconfig1")
    );

    // Exactly these changes, each once, with the token and the API version.
    let mut changes: Vec<String> = s
        .changes()
        .into_iter()
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    changes.sort();
    let mut want = vec![
        format!("PUT {}", id("networkInterfaces/nic-lb-dr")),
        format!("PUT {}", id("networkInterfaces/nic-lb-primary")),
        format!(
            "PUT {}",
            id("networkSecurityGroups/nsg-ehr-dr/securityRules/allow-https-dr")
        ),
        format!("PUT {}", id("routeTables/rt-ehr-app/routes/default-egress")),
    ];
    want.sort();
    assert_eq!(changes, want);
    let reqs = s.requests();
    assert!(
        reqs.iter().all(|r| r.authorized),
        "every ARM call carries the bearer token"
    );
    assert!(
        reqs.iter()
            .filter(|r| !r.path.contains("/operations/"))
            .all(|r| r.api_version.as_deref() == Some("2024-03-01"))
    );

    // The token never reaches the journal, the record or the audit log.
    let record = status(d, "az1");
    assert_eq!(record["outcome"], "succeeded", "{record}");
    assert!(!record.to_string().contains(TOKEN));
    let audit = drover(d, &["audit", "show", "az1"]);
    assert!(!text(&audit.stdout).contains(TOKEN));
    let db = std::fs::read(d.join(".drover/drover.db")).expect("journal");
    assert!(!String::from_utf8_lossy(&db).contains(TOKEN));
    let v = drover(d, &["audit", "verify", "az1"]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));
}

#[test]
fn a_conflict_on_the_dr_nic_rolls_the_network_back_to_the_captured_state() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let s = ArmServer::start();
    s.fail(
        "PUT",
        "/networkInterfaces/nic-lb-dr",
        409,
        &[],
        conflict(),
        1,
    );
    let rule_before = rule(&s);
    assert!(rule_before.is_none());
    let child = spawn_run(d, &s, "az2");
    approve(d, "az2");
    let (code, log) = finish(child);
    assert_ne!(code, Some(0), "{log}");
    assert!(
        log.contains("409")
            && log.contains("AnotherOperationInProgress")
            && log.contains("step move_public_ip"),
        "the conflict is named: {log}"
    );
    assert_eq!(status(d, "az2")["outcome"], "rolled_back", "{log}");

    // Everything back as captured: route, rule, public IP.
    assert_eq!(next_hop(&s), "10.50.0.4");
    assert!(rule(&s).is_none(), "the rule the run created is gone again");
    assert_eq!(
        pip_holder(&s),
        id("networkInterfaces/nic-lb-primary/ipConfigurations/ipconfig1")
    );
    // Seen on the wire: the route PUT back with its previous hop, the rule DELETEd.
    let changes = s.changes();
    let route = id("routeTables/rt-ehr-app/routes/default-egress");
    let route_puts: Vec<&Value> = changes
        .iter()
        .filter(|(m, p, _)| m == "PUT" && *p == route)
        .filter_map(|(_, _, b)| b.as_ref())
        .collect();
    assert_eq!(route_puts.len(), 2, "{changes:?}");
    assert_eq!(route_puts[1]["properties"]["nextHopIpAddress"], "10.50.0.4");
    assert!(changes.iter().any(|(m, p, _)| m == "DELETE"
        && *p == id("networkSecurityGroups/nsg-ehr-dr/securityRules/allow-https-dr")));
}

/// Resource Manager goes down right after the public IP was freed from the primary NIC: the move
/// fails, the put-back fails, the rollback cannot finish. The run must not say `rolled_back`
/// while the address hangs on no interface; once the service is back, `drover rollback` puts it
/// where it was.
#[test]
fn an_outage_in_the_middle_of_a_public_ip_move_is_never_called_rolled_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let s = ArmServer::start();
    let primary = id("networkInterfaces/nic-lb-primary/ipConfigurations/ipconfig1");
    assert_eq!(pip_holder(&s), primary);
    // The first NIC PUT (freeing the address) goes through; every later one meets an outage.
    s.fail_after(
        1,
        "PUT",
        "/networkInterfaces/",
        503,
        &[("Retry-After", "0")],
        serde_json::json!({ "error": { "code": "ServiceUnavailable", "message": "The service is temporarily unavailable." } }),
        10_000,
    );
    let child = spawn_run(d, &s, "az3");
    approve(d, "az3");
    let (code, log) = finish(child);
    assert_eq!(code, Some(1), "{log}");
    assert_eq!(
        pip_holder(&s),
        Value::Null,
        "the address hangs on no interface"
    );
    let st = status(d, "az3");
    assert_eq!(st["outcome"], "rollback_incomplete", "{log}");
    assert!(
        st["changes_in_place"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["step"] == "move_public_ip")),
        "{st}"
    );
    assert!(log.contains("changes still in place"), "{log}");

    // The service is back: a rollback on request finishes the job.
    // The move sat behind the `approve` gate: undoing it needs the gate's approval again.
    s.clear_faults();
    let child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["rollback", "az3", "--as", "alice"])
        .current_dir(d)
        .env("DROVER_AZURE_TOKEN", TOKEN)
        .env_remove("AZURE_SUBSCRIPTION_ID")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("drover runs");
    wait_until("the rollback to wait for approval", || {
        status(d, "az3")["rollback_approval"]["approved"] == false
    });
    let ok = drover(
        d,
        &[
            "approve",
            "az3",
            "rollback",
            "--as",
            "bob",
            "--role",
            "network-lead",
        ],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let rb = child.wait_with_output().expect("wait");
    let out = format!("{}{}", text(&rb.stdout), text(&rb.stderr));
    assert_eq!(rb.status.code(), Some(0), "{out}");
    assert_eq!(pip_holder(&s), primary, "{out}");
    assert_eq!(status(d, "az3")["outcome"], "rolled_back");
}

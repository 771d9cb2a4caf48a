//! The `azure_network.*` actions through azure_mgmt_network against the ARM stand-in
//! (`arm_server.rs`): the exact requests, long-running operations, idempotence, undo from the
//! capture, observe, throttling on a manual clock, and errors.

use super::arm_server::{ArmServer, RG, SUB, TOKEN, conflict, id, throttled};
use super::support::rt;
use drover_adapters::azure_common::Clock;
use drover_adapters::azure_network::AzureNetworkAdapter;
use drover_schema::{Adapter, Inputs, Observation, StepContext};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A clock that does not wait: it records what it was asked to wait.
#[derive(Debug, Default)]
pub(super) struct ManualClock(Mutex<Vec<Duration>>);

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        0
    }

    fn sleep(&self, ms: u64) -> drover_schema::Sleep {
        self.0
            .lock()
            .expect("clock")
            .push(Duration::from_millis(ms));
        Box::pin(std::future::ready(()))
    }
}

pub(super) fn ctx(dir: &std::path::Path, step: &str, action: &str) -> StepContext {
    StepContext {
        run_id: "run-az".into(),
        step_id: step.into(),
        action: action.into(),
        idempotency_key: format!("run-az/{step}"),
        attempt: 1,
        mode: drover_schema::Mode::Failover,
        state_dir: dir.to_path_buf(),
        production: Vec::new(),
        production_tags: Default::default(),
        progress: Default::default(),
        ..Default::default()
    }
}

pub(super) fn inputs(server: &ArmServer, v: Value) -> Inputs {
    let mut i: Inputs = serde_json::from_value(v).expect("inputs");
    i.insert("subscription".into(), json!(SUB));
    i.insert("resource_group".into(), json!(RG));
    i.insert("endpoint".into(), json!(server.url));
    i
}

pub(super) fn adapter(clock: &Arc<ManualClock>) -> AzureNetworkAdapter {
    AzureNetworkAdapter::default()
        .with_clock(clock.clone())
        .with_token(TOKEN)
}

pub(super) fn route_inputs(s: &ArmServer, ip: &str) -> Inputs {
    inputs(
        s,
        json!({
            "route_table": "rt-ehr-app",
            "route": "default-egress",
            "next_hop_type": "VirtualAppliance",
            "next_hop_ip": ip,
        }),
    )
}

#[test]
fn update_route_sends_one_put_awaits_the_operation_and_undo_restores_the_capture() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = ArmServer::start();
    let clock = Arc::new(ManualClock::default());
    let a = adapter(&clock);
    let c = ctx(dir.path(), "route_to_dr", "azure_network.update_route");
    let i = route_inputs(&s, "10.60.0.4");
    let rt = rt();
    let before = s
        .resource("routeTables/rt-ehr-app/routes/default-egress")
        .expect("route");

    assert_eq!(
        rt.block_on(a.observe("azure_network.update_route", &i, &c))
            .expect("observe"),
        Observation::NotDone
    );
    let out = rt
        .block_on(a.execute("azure_network.update_route", &i, &c))
        .expect("update");
    assert_eq!(out["changed"], true);
    assert_eq!(
        out["previous"]["properties"]["nextHopIpAddress"],
        "10.50.0.4"
    );
    let path = id("routeTables/rt-ehr-app/routes/default-egress");
    let changes = s.changes();
    assert_eq!(changes.len(), 1, "{changes:?}");
    let (method, p, body) = &changes[0];
    assert_eq!((method.as_str(), p.as_str()), ("PUT", path.as_str()));
    let body = body.as_ref().expect("body");
    assert_eq!(body["properties"]["nextHopType"], "VirtualAppliance");
    assert_eq!(body["properties"]["nextHopIpAddress"], "10.60.0.4");
    assert_eq!(
        body["properties"]["addressPrefix"], "0.0.0.0/0",
        "kept from the route"
    );
    let reqs = s.requests();
    assert!(
        reqs.iter().all(|r| r.authorized),
        "every call carries the token"
    );
    assert!(
        reqs.iter()
            .filter(|r| !r.path.contains("/operations/"))
            .all(|r| r.api_version.as_deref() == Some("2024-03-01")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.method == "GET" && r.path.contains("/operations/")),
        "the long-running operation is polled"
    );
    assert_eq!(
        s.resource("routeTables/rt-ehr-app/routes/default-egress")
            .expect("route")["properties"]["nextHopIpAddress"],
        "10.60.0.4"
    );

    // Again: nothing to change, no PUT; observe sees it done.
    let again = rt
        .block_on(a.execute("azure_network.update_route", &i, &c))
        .expect("again");
    assert_eq!(again["changed"], false);
    assert_eq!(
        again["previous"], out["previous"],
        "the first capture is kept"
    );
    assert_eq!(s.changes().len(), 1);
    assert!(matches!(
        rt.block_on(a.observe("azure_network.update_route", &i, &c))
            .expect("observe"),
        Observation::Done(_)
    ));

    // Undo puts the captured route back.
    rt.block_on(a.compensate("azure_network.update_route", &i, &out, &c))
        .expect("undo");
    let after = s
        .resource("routeTables/rt-ehr-app/routes/default-egress")
        .expect("route");
    assert_eq!(
        after["properties"]["nextHopIpAddress"],
        before["properties"]["nextHopIpAddress"]
    );
    assert_eq!(s.changes().len(), 2);
    assert!(
        clock.0.lock().expect("clock").is_empty(),
        "no throttling, no waiting"
    );
}

#[test]
fn a_429_is_retried_after_the_stated_retry_after_on_the_clock() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = ArmServer::start();
    s.fail(
        "PUT",
        "/routes/default-egress",
        429,
        &[("Retry-After", "17")],
        throttled(),
        2,
    );
    let clock = Arc::new(ManualClock::default());
    let a = adapter(&clock);
    let c = ctx(dir.path(), "route_to_dr", "azure_network.update_route");
    let out = rt()
        .block_on(a.execute(
            "azure_network.update_route",
            &route_inputs(&s, "10.60.0.4"),
            &c,
        ))
        .expect("succeeds after the throttling");
    assert_eq!(out["changed"], true);
    assert_eq!(
        *clock.0.lock().expect("clock"),
        [Duration::from_secs(17), Duration::from_secs(17)],
        "waited exactly Retry-After, twice"
    );
    let puts = s
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .count();
    assert_eq!(
        puts, 3,
        "two throttled PUTs, then the one that went through"
    );
}

#[test]
fn throttling_that_never_ends_is_a_transient_failure_naming_the_step() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = ArmServer::start();
    s.fail(
        "PUT",
        "/routes/",
        429,
        &[("Retry-After", "3")],
        throttled(),
        100,
    );
    let clock = Arc::new(ManualClock::default());
    let c = ctx(dir.path(), "route_to_dr", "azure_network.update_route");
    let e = rt()
        .block_on(adapter(&clock).execute(
            "azure_network.update_route",
            &route_inputs(&s, "10.60.0.4"),
            &c,
        ))
        .expect_err("throttled for good");
    assert!(e.is_transient(), "{e}");
    let m = e.to_string();
    assert!(m.contains("step route_to_dr") && m.contains("429"), "{m}");
    assert!(m.contains("TooManyRequests"), "{m}");
    assert_eq!(
        clock.0.lock().expect("clock").len(),
        5,
        "five retries, each waited"
    );
}

#[test]
fn a_409_fails_the_step_with_a_clear_permanent_message() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = ArmServer::start();
    s.fail(
        "PUT",
        "/securityRules/allow-https-dr",
        409,
        &[],
        conflict(),
        1,
    );
    let clock = Arc::new(ManualClock::default());
    let c = ctx(dir.path(), "open_dr_ingress", "azure_network.set_nsg_rule");
    let i = inputs(
        &s,
        json!({
            "nsg": "nsg-ehr-dr", "rule": "allow-https-dr", "priority": 200,
            "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
            "source": "Internet", "destination_port": "443",
        }),
    );
    let e = rt()
        .block_on(adapter(&clock).execute("azure_network.set_nsg_rule", &i, &c))
        .expect_err("conflict");
    assert!(!e.is_transient(), "a 409 is permanent: {e}");
    assert_eq!(e.context.subscription.as_deref(), Some(SUB));
    assert_eq!(
        e.context.resource.as_deref(),
        Some("security rule allow-https-dr of nsg-ehr-dr")
    );
    assert_eq!(
        e.context.code.as_deref(),
        Some("AnotherOperationInProgress")
    );
    let m = &e.message;
    for part in [
        "step open_dr_ingress",
        "security rule allow-https-dr of nsg-ehr-dr",
        RG,
        "409",
        "AnotherOperationInProgress",
        "another operation is in progress",
    ] {
        assert!(m.contains(part), "{part} missing from: {m}");
    }
    assert!(!m.contains(TOKEN), "never the token");
    assert!(
        clock.0.lock().expect("clock").is_empty(),
        "a conflict is not retried"
    );
}

#[test]
fn nsg_rules_are_created_removed_and_restored_from_the_capture() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = ArmServer::start();
    let clock = Arc::new(ManualClock::default());
    let a = adapter(&clock);
    let rt = rt();
    let set = ctx(dir.path(), "open_dr_ingress", "azure_network.set_nsg_rule");
    let i = inputs(
        &s,
        json!({
            "nsg": "nsg-ehr-dr", "rule": "allow-https-dr", "priority": 200,
            "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
            "source": "Internet", "destination_port": "443",
        }),
    );
    let out = rt
        .block_on(a.execute("azure_network.set_nsg_rule", &i, &set))
        .expect("set");
    assert_eq!(
        (out["changed"].clone(), out["previous"].clone()),
        (json!(true), Value::Null)
    );
    let rule = s
        .resource("networkSecurityGroups/nsg-ehr-dr/securityRules/allow-https-dr")
        .expect("created");
    assert_eq!(rule["properties"]["destinationPortRange"], "443");
    assert_eq!(rule["properties"]["priority"], 200);
    // The rule did not exist: undo deletes it (and waits until ARM says it is gone).
    rt.block_on(a.compensate("azure_network.set_nsg_rule", &i, &out, &set))
        .expect("undo");
    assert!(
        s.resource("networkSecurityGroups/nsg-ehr-dr/securityRules/allow-https-dr")
            .is_none()
    );

    // Removing an existing rule, then undoing, puts it back as it was.
    let rm = ctx(dir.path(), "close_default", "azure_network.remove_nsg_rule");
    let ri = inputs(
        &s,
        json!({ "nsg": "nsg-ehr-dr", "rule": "deny-all-inbound" }),
    );
    let before = s
        .resource("networkSecurityGroups/nsg-ehr-dr/securityRules/deny-all-inbound")
        .expect("rule");
    let out = rt
        .block_on(a.execute("azure_network.remove_nsg_rule", &ri, &rm))
        .expect("remove");
    assert_eq!(out["changed"], true);
    assert!(matches!(
        rt.block_on(a.observe("azure_network.remove_nsg_rule", &ri, &rm))
            .expect("observe"),
        Observation::Done(_)
    ));
    rt.block_on(a.compensate("azure_network.remove_nsg_rule", &ri, &out, &rm))
        .expect("undo");
    let back = s
        .resource("networkSecurityGroups/nsg-ehr-dr/securityRules/deny-all-inbound")
        .expect("restored");
    assert_eq!(back["properties"], before["properties"]);
}

#[test]
fn a_public_ip_moves_between_nics_freed_first_and_moves_back_on_undo() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = ArmServer::start();
    let clock = Arc::new(ManualClock::default());
    let a = adapter(&clock);
    let rt = rt();
    let c = ctx(
        dir.path(),
        "move_public_ip",
        "azure_network.associate_public_ip",
    );
    let i = inputs(
        &s,
        json!({ "public_ip": "pip-ehr-frontend", "nic": "nic-lb-dr" }),
    );
    let holder = |s: &ArmServer| {
        s.resource("publicIPAddresses/pip-ehr-frontend")
            .expect("pip")["properties"]["ipConfiguration"]["id"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(
        holder(&s),
        Some(id(
            "networkInterfaces/nic-lb-primary/ipConfigurations/ipconfig1"
        ))
    );
    rt.block_on(a.preflight("azure_network.associate_public_ip", &i, &c))
        .expect("preflight");
    let out = rt
        .block_on(a.execute("azure_network.associate_public_ip", &i, &c))
        .expect("move");
    assert_eq!(out["changed"], true);
    assert_eq!(
        holder(&s),
        Some(id("networkInterfaces/nic-lb-dr/ipConfigurations/ipconfig1"))
    );
    // Freed from the primary NIC first, then attached to the DR NIC: two PUTs in that order.
    let puts: Vec<String> = s
        .changes()
        .into_iter()
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    assert_eq!(
        puts,
        [
            format!("PUT {}", id("networkInterfaces/nic-lb-primary")),
            format!("PUT {}", id("networkInterfaces/nic-lb-dr")),
        ]
    );
    rt.block_on(a.compensate("azure_network.associate_public_ip", &i, &out, &c))
        .expect("undo");
    assert_eq!(
        holder(&s),
        Some(id(
            "networkInterfaces/nic-lb-primary/ipConfigurations/ipconfig1"
        ))
    );
}

#[test]
fn a_failed_move_puts_the_public_ip_back_where_it_was() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = ArmServer::start();
    s.fail(
        "PUT",
        "/networkInterfaces/nic-lb-dr",
        409,
        &[],
        conflict(),
        1,
    );
    let clock = Arc::new(ManualClock::default());
    let c = ctx(
        dir.path(),
        "move_public_ip",
        "azure_network.associate_public_ip",
    );
    let i = inputs(
        &s,
        json!({ "public_ip": "pip-ehr-frontend", "nic": "nic-lb-dr" }),
    );
    let e = rt()
        .block_on(adapter(&clock).execute("azure_network.associate_public_ip", &i, &c))
        .expect_err("conflict");
    assert!(e.to_string().contains("is back on nic-lb-primary"), "{e}");
    assert_eq!(
        s.resource("publicIPAddresses/pip-ehr-frontend")
            .expect("pip")["properties"]["ipConfiguration"]["id"],
        id("networkInterfaces/nic-lb-primary/ipConfigurations/ipconfig1")
    );
}

#[test]
fn a_subnet_gets_the_dr_route_table_and_undo_restores_the_primary_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = ArmServer::start();
    let clock = Arc::new(ManualClock::default());
    let a = adapter(&clock);
    let rt = rt();
    let c = ctx(
        dir.path(),
        "attach_dr_table",
        "azure_network.set_subnet_route_table",
    );
    let i = inputs(
        &s,
        json!({ "vnet": "vnet-ehr", "subnet": "app", "route_table": "rt-ehr-dr" }),
    );
    let table = |s: &ArmServer| {
        s.resource("virtualNetworks/vnet-ehr/subnets/app")
            .expect("subnet")["properties"]["routeTable"]["id"]
            .clone()
    };
    let out = rt
        .block_on(a.execute("azure_network.set_subnet_route_table", &i, &c))
        .expect("attach");
    assert_eq!(out["previous"], id("routeTables/rt-ehr-app"));
    assert_eq!(table(&s), id("routeTables/rt-ehr-dr"));
    let (_, _, body) = s.changes().pop().expect("a PUT");
    assert_eq!(
        body.expect("body")["properties"]["addressPrefix"],
        "10.50.1.0/24",
        "the subnet's other settings are sent back unchanged"
    );
    rt.block_on(a.compensate("azure_network.set_subnet_route_table", &i, &out, &c))
        .expect("undo");
    assert_eq!(table(&s), id("routeTables/rt-ehr-app"));
}

#[test]
fn preflight_of_a_subnet_swap_names_a_missing_route_table() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = ArmServer::start();
    let clock = Arc::new(ManualClock::default());
    let a = adapter(&clock);
    let c = ctx(
        dir.path(),
        "attach_dr_table",
        "azure_network.set_subnet_route_table",
    );
    let i = inputs(
        &s,
        json!({ "vnet": "vnet-ehr", "subnet": "app", "route_table": "rt-ehr-typo" }),
    );
    let e = rt()
        .block_on(a.preflight("azure_network.set_subnet_route_table", &i, &c))
        .expect_err("the table does not exist");
    assert!(e.to_string().contains("route table rt-ehr-typo"), "{e}");
    assert!(s.changes().is_empty(), "preflight changes nothing");
}

#[test]
fn a_missing_resource_is_a_permanent_error_that_says_what_to_check() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = ArmServer::start();
    let clock = Arc::new(ManualClock::default());
    let c = ctx(dir.path(), "route_to_dr", "azure_network.update_route");
    let mut i = route_inputs(&s, "10.60.0.4");
    i.insert("route_table".into(), json!("rt-nope"));
    let e = rt()
        .block_on(adapter(&clock).preflight("azure_network.update_route", &i, &c))
        .expect_err("missing");
    assert!(!e.is_transient());
    let m = e.to_string();
    assert!(
        m.contains("404") && m.contains("ResourceNotFound") && m.contains("check the subscription"),
        "{m}"
    );
}

#[test]
fn a_drill_refuses_to_move_a_public_ip_onto_a_production_tagged_nic_before_any_change() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = ArmServer::start();
    let clock = Arc::new(ManualClock::default());
    let mut c = ctx(
        dir.path(),
        "move_public_ip",
        "azure_network.associate_public_ip",
    );
    c.mode = drover_schema::Mode::Drill;
    // The fixture tags nic-lb-dr environment=dr: call that production for this drill.
    c.production_tags.insert("environment".into(), "dr".into());
    let i = inputs(
        &s,
        json!({ "public_ip": "pip-ehr-frontend", "nic": "nic-lb-dr" }),
    );
    let e = rt()
        .block_on(adapter(&clock).execute("azure_network.associate_public_ip", &i, &c))
        .expect_err("refused");
    assert!(!e.is_transient());
    assert!(
        e.to_string().contains("nic-lb-dr") && e.to_string().contains("refused before any change"),
        "{e}"
    );
    assert!(s.changes().is_empty(), "nothing was changed");
}

/// Every Azure action reads the tags of what it changes or points at before its first call: a
/// production-tagged route table, or the virtual network of a subnet, is refused in a drill.
#[test]
fn a_drill_refuses_production_tagged_route_tables_and_networks_before_any_change() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = ArmServer::start();
    let clock = Arc::new(ManualClock::default());
    let before = s.world();
    let cases = [
        (
            "azure_network.update_route",
            route_inputs(&s, "10.60.0.4"),
            "rt-ehr-app",
        ),
        (
            "azure_network.set_subnet_route_table",
            inputs(
                &s,
                json!({ "vnet": "vnet-ehr", "subnet": "app", "route_table": "rt-ehr-dr" }),
            ),
            "vnet-ehr",
        ),
    ];
    for (action, i, tagged) in cases {
        let sent = s.changes().len();
        let mut c = ctx(dir.path(), "drill_step", action);
        c.mode = drover_schema::Mode::Drill;
        c.production_tags
            .insert("environment".into(), "production".into());
        let e = rt()
            .block_on(adapter(&clock).execute(action, &i, &c))
            .expect_err("refused");
        assert!(!e.is_transient(), "{action}: {e}");
        assert!(
            e.message.contains(tagged) && e.message.contains("refused before any change"),
            "{action}: {e}"
        );
        assert_eq!(s.changes().len(), sent, "{action}: nothing was sent");
        // The same step in a failover runs.
        c.mode = drover_schema::Mode::Failover;
        rt().block_on(adapter(&clock).execute(action, &i, &c))
            .unwrap_or_else(|e| panic!("{action} in a failover: {e}"));
    }
    assert_ne!(s.world(), before, "the failovers changed the world");
}

/// ARM's PUT replaces a whole rule: an update reads the rule, changes only what the step sets
/// and sends the rest back, so nothing the step does not mention (a description, port ranges)
/// is lost; the undo puts the rule back exactly.
#[test]
fn updating_an_nsg_rule_keeps_every_field_the_step_does_not_set() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = ArmServer::start();
    let clock = Arc::new(ManualClock::default());
    let a = adapter(&clock);
    let rt = rt();
    let path = "networkSecurityGroups/nsg-ehr-dr/securityRules/deny-all-inbound";
    let before = s.resource(path).expect("rule");
    let c = ctx(dir.path(), "relax_default", "azure_network.set_nsg_rule");
    let i = inputs(
        &s,
        json!({
            "nsg": "nsg-ehr-dr", "rule": "deny-all-inbound", "priority": 3900,
            "direction": "Inbound", "access": "Allow",
        }),
    );
    let out = rt
        .block_on(a.execute("azure_network.set_nsg_rule", &i, &c))
        .expect("update");
    assert_eq!(out["changed"], true);
    let after = s.resource(path).expect("rule");
    assert_eq!(after["properties"]["access"], "Allow");
    assert_eq!(after["properties"]["priority"], 3900);
    for kept in [
        "description",
        "protocol",
        "sourcePortRange",
        "destinationPortRange",
        "sourceAddressPrefix",
        "destinationAddressPrefix",
    ] {
        assert_eq!(
            after["properties"][kept], before["properties"][kept],
            "`{kept}` is kept"
        );
    }
    assert!(matches!(
        rt.block_on(a.observe("azure_network.set_nsg_rule", &i, &c))
            .expect("observe"),
        Observation::Done(_)
    ));
    rt.block_on(a.compensate("azure_network.set_nsg_rule", &i, &out, &c))
        .expect("undo");
    assert_eq!(
        s.resource(path).expect("rule")["properties"],
        before["properties"]
    );
}

/// After a crash, an accepted change whose operation is still running is not reported done:
/// `observe` reads the resource until its provisioning state is terminal.
#[test]
fn observe_waits_for_the_operation_to_end_before_calling_a_change_done() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = ArmServer::start();
    let clock = Arc::new(ManualClock::default());
    let a = adapter(&clock);
    let rt = rt();
    let c = ctx(dir.path(), "route_to_dr", "azure_network.update_route");
    let i = route_inputs(&s, "10.60.0.4");
    rt.block_on(a.execute("azure_network.update_route", &i, &c))
        .expect("update");
    let path = "routeTables/rt-ehr-app/routes/default-egress";
    // The next hop reads as wanted, but the operation is still "Updating".
    s.set_provisioning_state(path, "Updating");
    let slept = clock.0.lock().expect("clock").len();
    let e = rt
        .block_on(a.observe("azure_network.update_route", &i, &c))
        .expect_err("not done while updating");
    assert!(e.is_transient(), "{e}");
    assert!(e.message.contains("still running"), "{e}");
    assert!(
        clock.0.lock().expect("clock").len() > slept + 100,
        "it waited on the clock between reads"
    );
    // Failed: the step fails, it is not counted done.
    s.set_provisioning_state(path, "Failed");
    let e = rt
        .block_on(a.observe("azure_network.update_route", &i, &c))
        .expect_err("a failed operation");
    assert!(!e.is_transient());
    assert_eq!(e.context.code.as_deref(), Some("Failed"));
    // Succeeded: done.
    s.set_provisioning_state(path, "Succeeded");
    assert!(matches!(
        rt.block_on(a.observe("azure_network.update_route", &i, &c))
            .expect("observe"),
        Observation::Done(_)
    ));
}

/// Updates are conditional on the version read: the PUT carries `If-Match` with the etag the
/// step read, and a resource someone else changed in between is a clear conflict, not a silent
/// overwrite.
#[test]
fn updates_are_sent_only_if_the_resource_is_still_the_version_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = ArmServer::start();
    let clock = Arc::new(ManualClock::default());
    let a = adapter(&clock);
    let rt = rt();
    let path = "networkSecurityGroups/nsg-ehr-dr/securityRules/deny-all-inbound";
    let read = s.resource(path).expect("rule")["etag"].clone();
    let c = ctx(dir.path(), "relax_default", "azure_network.set_nsg_rule");
    let i = inputs(
        &s,
        json!({
            "nsg": "nsg-ehr-dr", "rule": "deny-all-inbound", "priority": 3900,
            "direction": "Inbound", "access": "Allow",
        }),
    );
    rt.block_on(a.execute("azure_network.set_nsg_rule", &i, &c))
        .expect("update");
    let put = s
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT" && r.path.ends_with("/deny-all-inbound"))
        .expect("a PUT");
    assert_eq!(
        put.if_match.as_deref(),
        read.as_str(),
        "If-Match is the etag read"
    );
    assert!(
        s.requests()
            .iter()
            .filter(|r| r.method == "GET")
            .all(|r| r.if_match.is_none()),
        "only changes are conditional"
    );

    // Someone else changed the route between this step's read and its write.
    let c = ctx(dir.path(), "route_to_dr", "azure_network.update_route");
    s.fail(
        "PUT",
        "/routes/default-egress",
        412,
        &[],
        json!({ "error": { "code": "PreconditionFailed", "message": "The condition specified using HTTP conditional header(s) is not met." } }),
        1,
    );
    let e = rt
        .block_on(a.execute(
            "azure_network.update_route",
            &route_inputs(&s, "10.60.0.4"),
            &c,
        ))
        .expect_err("conflict");
    assert!(!e.is_transient(), "{e}");
    assert!(e.message.contains("changed since this step read it"), "{e}");
}

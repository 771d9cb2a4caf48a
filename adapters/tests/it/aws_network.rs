//! The Route 53 and EC2 actions against a real AWS-compatible server (moto on 127.0.0.1, started
//! by `.ci/test`): each change is read back from the server, repeating it changes nothing, `observe`
//! sees it, and the built-in undo restores what was there. Every test makes its own resources
//! (unique names, its own VPC), so tests run in parallel without resetting the server.

use super::support::rt;
use drover_adapters::aws_ec2::AwsEc2Adapter;
use drover_adapters::aws_route53::AwsRoute53Adapter;
use drover_schema::{Adapter, Inputs, Observation, Outputs, StepContext};
use serde_json::json;
use std::path::Path;

const REGION: &str = "us-west-2";

pub(super) fn ctx(dir: &Path, step: &str, mode: &str) -> StepContext {
    let mode = drover_schema::Mode::parse(mode).expect("a mode");
    StepContext {
        run_id: "run-1".into(),
        step_id: step.into(),
        action: String::new(),
        idempotency_key: format!("run-1/{step}"),
        attempt: 1,
        mode,
        state_dir: dir.to_path_buf(),
        production: Vec::new(),
        production_tags: [("environment".to_owned(), "production".to_owned())].into(),
        progress: Default::default(),
        ..Default::default()
    }
}

pub(super) fn inputs(v: serde_json::Value) -> Inputs {
    let mut i: Inputs = serde_json::from_value(v).expect("inputs");
    i.entry("region".into()).or_insert(json!(REGION));
    i
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

async fn conf() -> aws_config::SdkConfig {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "AWS_ENDPOINT_URL is not set: run the AWS suite through .ci/test, which starts moto"
    );
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .load()
        .await
}

// ---------------------------------------------------------------------------------------------
// Route 53

pub(super) struct Zone {
    pub(super) r53: aws_sdk_route53::Client,
    pub(super) id: String,
    pub(super) record: String,
}

/// The failover pair of `record`: us-east-1 primary at `east_ip`, us-west-2 secondary.
fn failover_pair(
    record: &str,
    east_ip: &str,
    action: aws_sdk_route53::types::ChangeAction,
) -> aws_sdk_route53::types::builders::ChangeBatchBuilder {
    use aws_sdk_route53::types::*;
    let mut batch = ChangeBatch::builder();
    for (set, role, ip) in [
        ("ehr-us-east-1", ResourceRecordSetFailover::Primary, east_ip),
        (
            "ehr-us-west-2",
            ResourceRecordSetFailover::Secondary,
            "198.51.100.20",
        ),
    ] {
        batch = batch.changes(
            Change::builder()
                .action(action.clone())
                .resource_record_set(
                    ResourceRecordSet::builder()
                        .name(record)
                        .r#type(RrType::A)
                        .set_identifier(set)
                        .failover(role)
                        .ttl(60)
                        .resource_records(ResourceRecord::builder().value(ip).build().expect("rr"))
                        .build()
                        .expect("rrs"),
                )
                .build()
                .expect("change"),
        );
    }
    batch
}

pub(super) async fn zone(tag_production: bool) -> Zone {
    use aws_sdk_route53::types::*;
    let r53 = aws_sdk_route53::Client::new(&conf().await);
    let name = format!("{}.example.org", unique("ehr"));
    let z = r53
        .create_hosted_zone()
        .name(&name)
        .caller_reference(unique("ref"))
        .send()
        .await
        .expect("zone");
    let id = z
        .hosted_zone()
        .expect("zone")
        .id()
        .trim_start_matches("/hostedzone/")
        .to_owned();
    let record = format!("app.{name}");
    let batch = failover_pair(&record, "192.0.2.10", ChangeAction::Create);
    r53.change_resource_record_sets()
        .hosted_zone_id(&id)
        .change_batch(batch.build().expect("batch"))
        .send()
        .await
        .expect("records");
    if tag_production {
        r53.change_tags_for_resource()
            .resource_type(TagResourceType::Hostedzone)
            .resource_id(&id)
            .add_tags(
                Tag::builder()
                    .key("environment")
                    .value("production")
                    .build(),
            )
            .send()
            .await
            .expect("tag zone");
    }
    Zone { r53, id, record }
}

impl Zone {
    /// set identifier → (failover role, values), read back from the server.
    pub(super) async fn roles(&self) -> Vec<(String, String, Vec<String>)> {
        let out = self
            .r53
            .list_resource_record_sets()
            .hosted_zone_id(&self.id)
            .send()
            .await
            .expect("list");
        let mut v: Vec<_> = out
            .resource_record_sets()
            .iter()
            .filter(|r| r.name().trim_end_matches('.') == self.record)
            .map(|r| {
                (
                    r.set_identifier().unwrap_or("").to_owned(),
                    r.failover()
                        .map(|f| f.as_str().to_owned())
                        .unwrap_or_default(),
                    r.resource_records()
                        .iter()
                        .map(|x| x.value().to_owned())
                        .collect(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

fn primary_of(roles: &[(String, String, Vec<String>)]) -> Vec<&str> {
    roles
        .iter()
        .filter(|r| r.1 == "PRIMARY")
        .map(|r| r.0.as_str())
        .collect()
}

#[test]
fn set_failover_flips_the_pair_in_one_batch_is_idempotent_observable_and_undone() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tmp");
    let z = rt.block_on(zone(false));
    let a = AwsRoute53Adapter;
    let c = ctx(dir.path(), "dns_cutover", "failover");
    let i =
        inputs(json!({"zone_id": z.id, "name": z.record, "type": "A", "active": "ehr-us-west-2"}));
    rt.block_on(a.preflight("aws_route53.set_failover", &i, &c))
        .expect("preflight");
    assert_eq!(
        rt.block_on(a.observe("aws_route53.set_failover", &i, &c))
            .expect("observe"),
        Observation::NotDone
    );

    let out = rt
        .block_on(a.execute("aws_route53.set_failover", &i, &c))
        .expect("flip");
    let change = out["change_id"].as_str().expect("change id").to_owned();
    assert!(!change.is_empty());
    let roles = rt.block_on(z.roles());
    assert_eq!(primary_of(&roles), ["ehr-us-west-2"], "{roles:?}");
    assert_eq!(roles.len(), 2, "no record added: {roles:?}");
    assert_eq!(out["previous"].as_array().map(Vec::len), Some(2));

    // A retry (or a resume) finds the change made and submits nothing new.
    let again = rt
        .block_on(a.execute("aws_route53.set_failover", &i, &c))
        .expect("again");
    assert_eq!(again["change_id"], json!(change));
    assert_eq!(
        again["previous"], out["previous"],
        "the first capture is kept"
    );
    match rt
        .block_on(a.observe("aws_route53.set_failover", &i, &c))
        .expect("observe")
    {
        Observation::Done(o) => assert_eq!(o["change_id"], json!(change)),
        other => panic!("expected done, got {other:?}"),
    }
    let insync = rt
        .block_on(a.execute(
            "aws_route53.wait_insync",
            &inputs(json!({"change_id": change})),
            &c,
        ))
        .expect("insync");
    assert_eq!(insync["status"], "INSYNC");

    rt.block_on(a.compensate("aws_route53.set_failover", &i, &out, &c))
        .expect("undo");
    let roles = rt.block_on(z.roles());
    assert_eq!(primary_of(&roles), ["ehr-us-east-1"], "{roles:?}");
    assert_eq!(roles.len(), 2);
}

/// Route 53 has no If-Match: a retry that finds the record sets changed by someone else since
/// the step's capture stops with a conflict instead of overwriting their change.
#[test]
fn a_retry_does_not_overwrite_someone_elses_change_to_the_records() {
    use aws_sdk_route53::types::*;
    let rt = rt();
    let dir = tempfile::tempdir().expect("tmp");
    let z = rt.block_on(zone(false));
    let a = AwsRoute53Adapter;
    let c = ctx(dir.path(), "dns_cutover", "failover");
    let i =
        inputs(json!({"zone_id": z.id, "name": z.record, "type": "A", "active": "ehr-us-west-2"}));
    rt.block_on(a.execute("aws_route53.set_failover", &i, &c))
        .expect("flip");
    // Someone else puts east back as primary by hand, with another address.
    let batch = failover_pair(&z.record, "192.0.2.99", ChangeAction::Upsert);
    rt.block_on(
        z.r53
            .change_resource_record_sets()
            .hosted_zone_id(&z.id)
            .change_batch(batch.build().expect("batch"))
            .send(),
    )
    .expect("the other change");
    let e = rt
        .block_on(a.execute("aws_route53.set_failover", &i, &c))
        .expect_err("a conflict");
    let m = e.to_string();
    assert!(!e.is_transient(), "{m}");
    assert!(
        m.contains("changed since the step first read them") && m.contains("192.0.2.99"),
        "{m}"
    );
    let roles = rt.block_on(z.roles());
    assert_eq!(
        primary_of(&roles),
        ["ehr-us-east-1"],
        "their change stands: {roles:?}"
    );
    assert!(
        roles
            .iter()
            .any(|(_, _, v)| v == &["192.0.2.99".to_owned()]),
        "{roles:?}"
    );
}

#[test]
fn upsert_record_creates_or_replaces_and_the_undo_restores_or_deletes() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tmp");
    let z = rt.block_on(zone(false));
    let a = AwsRoute53Adapter;
    let name = format!("status.{}", z.record.trim_start_matches("app."));
    let c = ctx(dir.path(), "status_record", "failover");
    let i = inputs(
        json!({"zone_id": z.id, "name": name, "type": "CNAME", "values": ["status.dr.example.net"], "ttl": 30}),
    );
    let out = rt
        .block_on(a.execute("aws_route53.upsert_record", &i, &c))
        .expect("create");
    assert_eq!(out["previous"], json!([]));
    let read = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            z.r53
                .list_resource_record_sets()
                .hosted_zone_id(&z.id)
                .send()
                .await
                .expect("list")
                .resource_record_sets()
                .iter()
                .filter(|r| r.name().trim_end_matches('.') == name)
                .map(|r| {
                    (
                        r.ttl(),
                        r.resource_records()
                            .iter()
                            .map(|v| v.value().to_owned())
                            .collect::<Vec<_>>(),
                    )
                })
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(
        read(&rt),
        [(Some(30), vec!["status.dr.example.net".to_owned()])]
    );
    rt.block_on(a.compensate("aws_route53.upsert_record", &i, &out, &c))
        .expect("undo create");
    assert!(
        read(&rt).is_empty(),
        "the created record is deleted by the undo"
    );

    // Replacing the values of the secondary keeps its failover policy; the undo restores them.
    let c2 = ctx(dir.path(), "repoint_secondary", "failover");
    let i2 = inputs(
        json!({"zone_id": z.id, "name": z.record, "type": "A", "values": ["203.0.113.5"], "ttl": 60, "set_identifier": "ehr-us-west-2"}),
    );
    let out2 = rt
        .block_on(a.execute("aws_route53.upsert_record", &i2, &c2))
        .expect("replace");
    let roles = rt.block_on(z.roles());
    assert!(
        roles.contains(&(
            "ehr-us-west-2".into(),
            "SECONDARY".into(),
            vec!["203.0.113.5".into()]
        )),
        "{roles:?}"
    );
    rt.block_on(a.compensate("aws_route53.upsert_record", &i2, &out2, &c2))
        .expect("undo replace");
    let roles = rt.block_on(z.roles());
    assert!(
        roles.contains(&(
            "ehr-us-west-2".into(),
            "SECONDARY".into(),
            vec!["198.51.100.20".into()]
        )),
        "{roles:?}"
    );
}

#[test]
fn route53_errors_name_the_step_the_zone_the_call_and_say_what_to_check() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tmp");
    let z = rt.block_on(zone(false));
    let a = AwsRoute53Adapter;
    let c = ctx(dir.path(), "dns_cutover", "failover");
    let missing_zone =
        inputs(json!({"zone_id": "Z0NOSUCHZONE", "name": z.record, "type": "A", "active": "x"}));
    let e = rt
        .block_on(a.execute("aws_route53.set_failover", &missing_zone, &c))
        .expect_err("no zone");
    let msg = e.to_string();
    assert!(!e.is_transient(), "{msg}");
    for part in [
        "step dns_cutover",
        "Route 53 ListResourceRecordSets",
        "Z0NOSUCHZONE",
        REGION,
        "NoSuchHostedZone",
        "not found",
    ] {
        assert!(msg.contains(part), "`{part}` missing from: {msg}");
    }
    let wrong_id =
        inputs(json!({"zone_id": z.id, "name": z.record, "type": "A", "active": "ehr-eu-west-1"}));
    let e = rt
        .block_on(a.preflight("aws_route53.set_failover", &wrong_id, &c))
        .expect_err("unknown set id");
    assert!(
        e.to_string().contains("ehr-us-east-1, ehr-us-west-2"),
        "{e}"
    );
    assert_eq!(rt.block_on(z.roles()).len(), 2);
}

#[test]
fn a_drill_refuses_to_change_a_production_tagged_zone() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tmp");
    let z = rt.block_on(zone(true));
    let before = rt.block_on(z.roles());
    let a = AwsRoute53Adapter;
    let c = ctx(dir.path(), "dns_cutover", "drill");
    let i =
        inputs(json!({"zone_id": z.id, "name": z.record, "type": "A", "active": "ehr-us-west-2"}));
    let e = rt
        .block_on(a.execute("aws_route53.set_failover", &i, &c))
        .expect_err("refused");
    assert!(
        e.to_string().contains("tagged environment=production"),
        "{e}"
    );
    assert_eq!(rt.block_on(z.roles()), before);
    // The same step in a failover goes ahead.
    let c = ctx(dir.path(), "dns_cutover", "failover");
    rt.block_on(a.execute("aws_route53.set_failover", &i, &c))
        .expect("failover");
    assert_eq!(primary_of(&rt.block_on(z.roles())), ["ehr-us-west-2"]);
}

#[test]
fn health_checks_are_created_once_per_step_and_removed_by_the_undo() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tmp");
    let r53 = rt.block_on(async { aws_sdk_route53::Client::new(&conf().await) });
    let a = AwsRoute53Adapter;
    let c = ctx(dir.path(), &unique("health"), "failover");
    let i = inputs(
        json!({"fqdn": "ehr-standby.us-west-2.example.org", "protocol": "HTTPS", "path": "/health"}),
    );
    let one = rt
        .block_on(a.execute("aws_route53.create_health_check", &i, &c))
        .expect("create");
    let two = rt
        .block_on(a.execute("aws_route53.create_health_check", &i, &c))
        .expect("again");
    assert_eq!(
        one["health_check_id"], two["health_check_id"],
        "the caller reference makes it idempotent"
    );
    let id = one["health_check_id"].as_str().expect("id").to_owned();
    let healthy = rt
        .block_on(a.execute(
            "aws_route53.wait_healthy",
            &inputs(json!({"health_check_id": id, "interval": 10})),
            &c,
        ))
        .expect("healthy");
    assert!(healthy["checkers"].as_u64().unwrap_or(0) > 0);
    rt.block_on(a.compensate("aws_route53.create_health_check", &i, &one, &c))
        .expect("undo");
    let gone = rt.block_on(r53.get_health_check().health_check_id(&id).send());
    assert!(gone.is_err(), "deleted");
}

// ---------------------------------------------------------------------------------------------
// EC2

pub(super) struct Net {
    pub(super) ec2: aws_sdk_ec2::Client,
    pub(super) primary: String,
    pub(super) primary_eni: String,
    pub(super) standby: String,
    pub(super) standby_eni: String,
    pub(super) allocation: String,
    pub(super) route_table: String,
    pub(super) vgw: String,
    pub(super) group: String,
    pub(super) subnet: String,
}

pub(super) async fn net(production_primary: bool) -> Net {
    use aws_sdk_ec2::types::*;
    let ec2 = aws_sdk_ec2::Client::new(&conf().await);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.30.0.0/16")
        .send()
        .await
        .expect("vpc");
    let vpc = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_owned();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.30.1.0/24")
        .availability_zone(format!("{REGION}a"))
        .send()
        .await
        .expect("subnet");
    let subnet = subnet
        .subnet()
        .and_then(|s| s.subnet_id())
        .expect("subnet id")
        .to_owned();
    let mut ids = Vec::new();
    for (name, prod) in [("primary", production_primary), ("standby", false)] {
        let mut tags = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .tags(Tag::builder().key("Name").value(name).build());
        if prod {
            tags = tags.tags(
                Tag::builder()
                    .key("environment")
                    .value("production")
                    .build(),
            );
        }
        let r = ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .instance_type(InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .subnet_id(&subnet)
            .tag_specifications(tags.build())
            .send()
            .await
            .expect("instance");
        let inst = r.instances().first().expect("one instance");
        ids.push((
            inst.instance_id().expect("id").to_owned(),
            inst.network_interfaces()
                .first()
                .and_then(|n| n.network_interface_id())
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    let eip = ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .send()
        .await
        .expect("eip");
    let allocation = eip.allocation_id().expect("allocation").to_owned();
    ec2.associate_address()
        .allocation_id(&allocation)
        .instance_id(&ids[0].0)
        .send()
        .await
        .expect("associate");
    let vgw = ec2
        .create_vpn_gateway()
        .r#type(GatewayType::Ipsec1)
        .send()
        .await
        .expect("vgw");
    let vgw = vgw
        .vpn_gateway()
        .and_then(|g| g.vpn_gateway_id())
        .expect("vgw id")
        .to_owned();
    ec2.attach_vpn_gateway()
        .vpc_id(&vpc)
        .vpn_gateway_id(&vgw)
        .send()
        .await
        .expect("attach vgw");
    let rt = ec2
        .create_route_table()
        .vpc_id(&vpc)
        .send()
        .await
        .expect("route table");
    let route_table = rt
        .route_table()
        .and_then(|r| r.route_table_id())
        .expect("rtb")
        .to_owned();
    ec2.create_route()
        .route_table_id(&route_table)
        .destination_cidr_block("10.20.0.0/16")
        .gateway_id(&vgw)
        .send()
        .await
        .expect("route");
    let sg = ec2
        .create_security_group()
        .group_name(unique("ehr-db"))
        .description("ehr db")
        .vpc_id(&vpc)
        .send()
        .await
        .expect("sg");
    Net {
        ec2,
        primary: ids[0].0.clone(),
        primary_eni: ids[0].1.clone(),
        standby: ids[1].0.clone(),
        standby_eni: ids[1].1.clone(),
        allocation,
        route_table,
        vgw,
        group: sg.group_id().expect("sg id").to_owned(),
        subnet,
    }
}

impl Net {
    /// (instance, association, network interface) of the Elastic IP.
    async fn eip_holder(&self) -> (Option<String>, Option<String>, Option<String>) {
        let out = self
            .ec2
            .describe_addresses()
            .allocation_ids(&self.allocation)
            .send()
            .await
            .expect("describe");
        let a = out.addresses().first().expect("address");
        let s = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);
        (
            s(a.instance_id()),
            s(a.association_id()),
            s(a.network_interface_id()),
        )
    }

    pub(super) async fn route_target(&self) -> (Option<String>, Option<String>) {
        let out = self
            .ec2
            .describe_route_tables()
            .route_table_ids(&self.route_table)
            .send()
            .await
            .expect("describe");
        let r = out.route_tables()[0]
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("10.20.0.0/16"))
            .expect("route")
            .clone();
        (
            r.gateway_id().map(str::to_owned),
            r.network_interface_id().map(str::to_owned),
        )
    }

    async fn state(&self, id: &str) -> String {
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .expect("describe");
        out.reservations()[0].instances()[0]
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default()
    }
}

fn call(
    rt: &tokio::runtime::Runtime,
    a: &AwsEc2Adapter,
    action: &str,
    i: &Inputs,
    c: &StepContext,
) -> Outputs {
    rt.block_on(a.execute(action, i, c))
        .unwrap_or_else(|e| panic!("{action}: {e}"))
}

#[test]
fn moving_an_elastic_ip_is_observed_never_doubled_and_undone() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tmp");
    let n = rt.block_on(net(false));
    let a = AwsEc2Adapter;
    let c = ctx(dir.path(), "move_eip", "failover");
    let i = inputs(json!({"allocation_id": n.allocation, "instance_id": n.standby}));
    let (held_by, first_assoc, _) = rt.block_on(n.eip_holder());
    assert_eq!(held_by.as_deref(), Some(n.primary.as_str()));
    let out = call(&rt, &a, "aws_ec2.associate_address", &i, &c);
    let (holder, assoc, _) = rt.block_on(n.eip_holder());
    assert_eq!(holder.as_deref(), Some(n.standby.as_str()));
    assert_eq!(out["association_id"], json!(assoc));
    assert_ne!(assoc, first_assoc);
    assert_eq!(out["previous"]["instance_id"], json!(n.primary));

    // Again: no second association.
    let again = call(&rt, &a, "aws_ec2.associate_address", &i, &c);
    assert_eq!(again["association_id"], out["association_id"]);
    assert_eq!(rt.block_on(n.eip_holder()).1, assoc);
    match rt
        .block_on(a.observe("aws_ec2.associate_address", &i, &c))
        .expect("observe")
    {
        Observation::Done(o) => assert_eq!(o["association_id"], out["association_id"]),
        other => panic!("expected done, got {other:?}"),
    }

    rt.block_on(a.compensate("aws_ec2.associate_address", &i, &out, &c))
        .expect("undo");
    // Put back on the exact interface it was on (the primary's).
    assert_eq!(
        rt.block_on(n.eip_holder()).2.as_deref(),
        Some(n.primary_eni.as_str())
    );
}

#[test]
fn replacing_a_route_is_read_back_and_the_undo_points_it_home() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tmp");
    let n = rt.block_on(net(false));
    let a = AwsEc2Adapter;
    let c = ctx(dir.path(), "reroute", "failover");
    let i = inputs(
        json!({"route_table_id": n.route_table, "destination_cidr": "10.20.0.0/16", "network_interface_id": n.standby_eni}),
    );
    rt.block_on(a.preflight("aws_ec2.replace_route", &i, &c))
        .expect("preflight");
    assert_eq!(
        rt.block_on(a.observe("aws_ec2.replace_route", &i, &c))
            .expect("observe"),
        Observation::NotDone
    );
    let out = call(&rt, &a, "aws_ec2.replace_route", &i, &c);
    assert_eq!(
        rt.block_on(n.route_target()).1.as_deref(),
        Some(n.standby_eni.as_str())
    );
    assert_eq!(out["previous"]["gateway_id"], json!(n.vgw));
    assert!(matches!(
        rt.block_on(a.observe("aws_ec2.replace_route", &i, &c))
            .expect("observe"),
        Observation::Done(_)
    ));
    rt.block_on(a.compensate("aws_ec2.replace_route", &i, &out, &c))
        .expect("undo");
    assert_eq!(
        rt.block_on(n.route_target()).0.as_deref(),
        Some(n.vgw.as_str())
    );

    // A retry that finds the route pointed elsewhere by someone else does not overwrite it.
    let c2 = ctx(dir.path(), "reroute_again", "failover");
    call(&rt, &a, "aws_ec2.replace_route", &i, &c2);
    rt.block_on(
        n.ec2
            .replace_route()
            .route_table_id(&n.route_table)
            .destination_cidr_block("10.20.0.0/16")
            .network_interface_id(&n.primary_eni)
            .send(),
    )
    .expect("someone else's change");
    let e = rt
        .block_on(a.execute("aws_ec2.replace_route", &i, &c2))
        .expect_err("a conflict");
    assert!(
        e.to_string()
            .contains("changed since the step first read it"),
        "{e}"
    );
    assert_eq!(
        rt.block_on(n.route_target()).1.as_deref(),
        Some(n.primary_eni.as_str()),
        "their change stands"
    );

    let missing = inputs(
        json!({"route_table_id": n.route_table, "destination_cidr": "10.99.0.0/16", "gateway_id": n.vgw}),
    );
    let e = rt
        .block_on(a.execute(
            "aws_ec2.replace_route",
            &missing,
            &ctx(dir.path(), "bad", "failover"),
        ))
        .expect_err("no route");
    assert!(
        e.to_string().contains("has no route for 10.99.0.0/16"),
        "{e}"
    );
}

#[test]
fn ingress_rules_power_states_volumes_and_launches_round_trip() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tmp");
    let n = rt.block_on(net(false));
    let a = AwsEc2Adapter;

    // Ingress: added once, removed by the undo; a revoke of a rule that was there is undone by
    // putting it back.
    let rule = inputs(
        json!({"group_id": n.group, "protocol": "tcp", "port": 5432, "cidr": "10.20.0.0/16"}),
    );
    let c = ctx(dir.path(), "open_db", "failover");
    let out = call(&rt, &a, "aws_ec2.authorize_ingress", &rule, &c);
    assert_eq!(out["changed"], true);
    assert_eq!(
        call(&rt, &a, "aws_ec2.authorize_ingress", &rule, &c)["changed"],
        true,
        "same step, first capture"
    );
    let rules = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let g = n
                .ec2
                .describe_security_groups()
                .group_ids(&n.group)
                .send()
                .await
                .expect("sg");
            g.security_groups()[0]
                .ip_permissions()
                .iter()
                .filter(|p| p.from_port() == Some(5432))
                .flat_map(|p| {
                    p.ip_ranges()
                        .iter()
                        .filter_map(|r| r.cidr_ip().map(str::to_owned))
                })
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(rules(&rt), ["10.20.0.0/16"]);
    rt.block_on(a.compensate("aws_ec2.authorize_ingress", &rule, &out, &c))
        .expect("undo authorize");
    assert!(rules(&rt).is_empty());

    // Power: stop the primary, the undo starts it again; starting a running instance is a no-op.
    let stop = inputs(json!({"instance_ids": [n.primary], "interval": 20}));
    let c = ctx(dir.path(), "stop_primary", "failover");
    let out = call(&rt, &a, "aws_ec2.stop_instances", &stop, &c);
    assert_eq!(rt.block_on(n.state(&n.primary)), "stopped");
    rt.block_on(a.compensate("aws_ec2.stop_instances", &stop, &out, &c))
        .expect("undo stop");
    assert_eq!(rt.block_on(n.state(&n.primary)), "running");

    // A volume from a snapshot: a second call returns the same volume; the undo deletes it.
    let snap = rt.block_on(async {
        let v = n
            .ec2
            .create_volume()
            .availability_zone(format!("{REGION}a"))
            .size(8)
            .send()
            .await
            .expect("vol");
        let s = n
            .ec2
            .create_snapshot()
            .volume_id(v.volume_id().expect("id"))
            .send()
            .await
            .expect("snap");
        s.snapshot_id().expect("snap id").to_owned()
    });
    let vol = inputs(
        json!({"snapshot_id": snap, "availability_zone": format!("{REGION}a"), "interval": 20}),
    );
    let c = ctx(dir.path(), &unique("restore_volume"), "failover");
    let one = call(&rt, &a, "aws_ec2.create_volume_from_snapshot", &vol, &c);
    let two = call(&rt, &a, "aws_ec2.create_volume_from_snapshot", &vol, &c);
    assert_eq!(one["volume_id"], two["volume_id"]);
    assert!(
        matches!(rt.block_on(a.observe("aws_ec2.create_volume_from_snapshot", &vol, &c)).expect("observe"), Observation::Done(o) if o["volume_id"] == one["volume_id"])
    );
    rt.block_on(a.compensate("aws_ec2.create_volume_from_snapshot", &vol, &one, &c))
        .expect("undo volume");
    let left = rt.block_on(
        n.ec2
            .describe_volumes()
            .volume_ids(one["volume_id"].as_str().expect("id"))
            .send(),
    );
    assert!(
        left.map_or(true, |o| o.volumes().is_empty()),
        "the volume is deleted"
    );

    // Launch: once per step, terminated by the undo.
    let launch = inputs(
        json!({"image_id": "ami-12c6146b", "instance_type": "t3.micro", "subnet_id": n.subnet, "tags": {"Name": "ehr-rehydrated"}}),
    );
    let c = ctx(dir.path(), &unique("launch"), "failover");
    let one = call(&rt, &a, "aws_ec2.run_instances", &launch, &c);
    let two = call(&rt, &a, "aws_ec2.run_instances", &launch, &c);
    assert_eq!(one["instance_ids"], two["instance_ids"]);
    let id = one["instance_ids"][0]
        .as_str()
        .expect("instance")
        .to_owned();
    assert_eq!(rt.block_on(n.state(&id)), "running");
    rt.block_on(a.compensate("aws_ec2.run_instances", &launch, &one, &c))
        .expect("undo launch");
    let s = rt.block_on(n.state(&id));
    assert!(s == "terminated" || s == "shutting-down", "{s}");
}

#[test]
fn a_drill_refuses_production_tagged_instances_and_errors_name_the_call() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tmp");
    let n = rt.block_on(net(true));
    let a = AwsEc2Adapter;
    let stop = inputs(json!({"instance_ids": [n.primary]}));
    let e = rt
        .block_on(a.execute(
            "aws_ec2.stop_instances",
            &stop,
            &ctx(dir.path(), "stop_primary", "drill"),
        ))
        .expect_err("refused");
    assert!(
        e.to_string()
            .contains(&format!("must not touch {}", n.primary)),
        "{e}"
    );
    assert_eq!(rt.block_on(n.state(&n.primary)), "running");
    // The standby is not production: the drill may start it.
    let start = inputs(json!({"instance_ids": [n.standby]}));
    call(
        &rt,
        &a,
        "aws_ec2.start_instances",
        &start,
        &ctx(dir.path(), "start_standby", "drill"),
    );

    let bad =
        inputs(json!({"allocation_id": "eipalloc-0000000000000dead", "instance_id": n.standby}));
    let e = rt
        .block_on(a.execute(
            "aws_ec2.associate_address",
            &bad,
            &ctx(dir.path(), "move_eip", "failover"),
        ))
        .expect_err("no such address");
    let msg = e.to_string();
    assert!(!e.is_transient(), "{msg}");
    for part in [
        "move_eip",
        "eipalloc-0000000000000dead",
        REGION,
        "not found",
    ] {
        assert!(msg.contains(part), "`{part}` missing from: {msg}");
    }
}

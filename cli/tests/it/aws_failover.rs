//! The EHR failover and failback example runbooks, end to end through the `drover` binary against
//! a real AWS-compatible server (moto on 127.0.0.1, started by `.ci/test`).
//!
//! The test builds the world with the AWS SDK — a hosted zone with a PRIMARY/SECONDARY failover
//! pair, a VPC with a route table whose application route goes to the link to the primary region,
//! a maintenance host holding the recovery region's Elastic IP, a stopped standby, a KMS key and an
//! Object Lock bucket holding an encrypted backup made by `drover backup create` — runs the
//! runbook, reads the world back and checks every change; then the failback runbook puts it all
//! back. The process is killed right after the Elastic IP moved (before the journal knew) and
//! `drover resume` must not move it a second time.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const REGION: &str = "us-west-2";

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{:08x}{:04x}", n, std::process::id() & 0xffff)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn conf(region: &str) -> aws_config::SdkConfig {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "AWS_ENDPOINT_URL is not set: run the AWS suite through .ci/test, which starts moto"
    );
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await
}

/// A tiny HTTP server for the health checks and the pager webhook: answers 200 to everything and
/// keeps each request's head.
fn http_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = vec![0u8; 65536];
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let n = s.read(&mut buf).unwrap_or(0);
            if let Ok(mut l) = log.lock() {
                l.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, seen)
}

struct World {
    r53: aws_sdk_route53::Client,
    ec2: aws_sdk_ec2::Client,
    zone_id: String,
    record: String,
    allocation: String,
    maintenance: String,
    maintenance_eni: String,
    standby: String,
    standby_eni: String,
    route_table: String,
    vgw: String,
    bucket: String,
    kms_alias: String,
}

async fn instance(
    ec2: &aws_sdk_ec2::Client,
    subnet: &str,
    name: &str,
    production: bool,
) -> (String, String) {
    use aws_sdk_ec2::types::*;
    let mut tags = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .tags(Tag::builder().key("Name").value(name).build());
    if production {
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
        .subnet_id(subnet)
        .tag_specifications(tags.build())
        .send()
        .await
        .expect("instance");
    let i = r.instances().first().expect("one instance");
    (
        i.instance_id().expect("id").to_owned(),
        i.network_interfaces()
            .first()
            .and_then(|n| n.network_interface_id())
            .expect("eni")
            .to_owned(),
    )
}

/// Builds the world; `standby_is_production` tags the standby `environment=production`.
async fn world(dir: &Path, standby_is_production: bool) -> World {
    use aws_sdk_ec2::types::*;
    use aws_sdk_route53::types::*;
    let west = conf(REGION).await;
    let r53 = aws_sdk_route53::Client::new(&west);
    let ec2 = aws_sdk_ec2::Client::new(&west);

    let zone_name = format!("{}.example.org", unique("ehr"));
    let z = r53
        .create_hosted_zone()
        .name(&zone_name)
        .caller_reference(unique("ref"))
        .send()
        .await
        .expect("zone");
    let zone_id = z
        .hosted_zone()
        .expect("zone")
        .id()
        .trim_start_matches("/hostedzone/")
        .to_owned();
    r53.change_tags_for_resource()
        .resource_type(TagResourceType::Hostedzone)
        .resource_id(&zone_id)
        .add_tags(
            aws_sdk_route53::types::Tag::builder()
                .key("environment")
                .value("production")
                .build(),
        )
        .send()
        .await
        .expect("tag zone");
    let record = format!("app.{zone_name}");

    let vpc = ec2
        .create_vpc()
        .cidr_block("10.40.0.0/16")
        .send()
        .await
        .expect("vpc");
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc").to_owned();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.40.1.0/24")
        .availability_zone(format!("{REGION}a"))
        .send()
        .await
        .expect("subnet");
    let subnet = subnet
        .subnet()
        .and_then(|s| s.subnet_id())
        .expect("subnet")
        .to_owned();
    let (maintenance, maintenance_eni) = instance(&ec2, &subnet, "ehr-maintenance", true).await;
    let (standby, standby_eni) =
        instance(&ec2, &subnet, "ehr-standby", standby_is_production).await;
    ec2.stop_instances()
        .instance_ids(&standby)
        .send()
        .await
        .expect("stop standby");
    let eip = ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .send()
        .await
        .expect("eip");
    let allocation = eip.allocation_id().expect("allocation").to_owned();
    let dr_ip = eip.public_ip().expect("ip").to_owned();
    ec2.associate_address()
        .allocation_id(&allocation)
        .instance_id(&maintenance)
        .send()
        .await
        .expect("park eip");
    let vgw = ec2
        .create_vpn_gateway()
        .r#type(GatewayType::Ipsec1)
        .send()
        .await
        .expect("vgw");
    let vgw = vgw
        .vpn_gateway()
        .and_then(|g| g.vpn_gateway_id())
        .expect("vgw")
        .to_owned();
    ec2.attach_vpn_gateway()
        .vpc_id(&vpc)
        .vpn_gateway_id(&vgw)
        .send()
        .await
        .expect("attach");
    let rtb = ec2
        .create_route_table()
        .vpc_id(&vpc)
        .send()
        .await
        .expect("rtb");
    let route_table = rtb
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

    let mut batch = ChangeBatch::builder();
    for (set, role, ip) in [
        (
            "ehr-us-east-1",
            ResourceRecordSetFailover::Primary,
            "192.0.2.10",
        ),
        (
            "ehr-us-west-2",
            ResourceRecordSetFailover::Secondary,
            dr_ip.as_str(),
        ),
    ] {
        batch = batch.changes(
            Change::builder()
                .action(ChangeAction::Create)
                .resource_record_set(
                    ResourceRecordSet::builder()
                        .name(&record)
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
    r53.change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(batch.build().expect("batch"))
        .send()
        .await
        .expect("records");

    // KMS key and Object Lock bucket in the default region (the backups' home).
    let home = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let kms = aws_sdk_kms::Client::new(&home);
    let key = kms.create_key().send().await.expect("kms key");
    let kms_alias = format!("alias/{}", unique("ehr-backup"));
    kms.create_alias()
        .alias_name(&kms_alias)
        .target_key_id(key.key_metadata().expect("meta").key_id())
        .send()
        .await
        .expect("alias");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&home)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique("ehr-immutable");
    s3.create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .expect("bucket");
    let dump = dir.join("ehr.dump");
    std::fs::write(
        &dump,
        (0..50_000)
            .map(|i| format!("patient-{i}\n"))
            .collect::<String>(),
    )
    .expect("dump");
    let made = drover(
        dir,
        &[
            "backup",
            "create",
            dump.to_str().expect("utf-8"),
            &format!("s3://{bucket}/ehr/ehr-latest.dbk"),
            "--key",
            &format!("aws-kms:{kms_alias}"),
            "--dataset",
            "ehr",
        ],
    );
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    s3.put_object_retention()
        .bucket(&bucket)
        .key("ehr/ehr-latest.dbk")
        .retention(
            aws_sdk_s3::types::ObjectLockRetention::builder()
                .mode(aws_sdk_s3::types::ObjectLockRetentionMode::Compliance)
                .retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(4_102_444_800))
                .build(),
        )
        .send()
        .await
        .expect("retention");

    World {
        r53,
        ec2,
        zone_id,
        record,
        allocation,
        maintenance,
        maintenance_eni,
        standby,
        standby_eni,
        route_table,
        vgw,
        bucket,
        kms_alias,
    }
}

/// What the test reads back from the server after each run.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    /// Set identifier of the PRIMARY record, and how many records the name has.
    dns_primary: Vec<String>,
    dns_records: usize,
    /// (network interface, association id) of the Elastic IP.
    eip: (String, String),
    /// (gateway, network interface) the application route points at.
    route: (String, String),
    standby_state: String,
}

impl World {
    async fn read(&self) -> Seen {
        let rrs = self
            .r53
            .list_resource_record_sets()
            .hosted_zone_id(&self.zone_id)
            .send()
            .await
            .expect("records");
        let mine: Vec<_> = rrs
            .resource_record_sets()
            .iter()
            .filter(|r| r.name().trim_end_matches('.') == self.record)
            .collect();
        let dns_primary = mine
            .iter()
            .filter(|r| {
                r.failover() == Some(&aws_sdk_route53::types::ResourceRecordSetFailover::Primary)
            })
            .filter_map(|r| r.set_identifier().map(str::to_owned))
            .collect();
        let a = self
            .ec2
            .describe_addresses()
            .allocation_ids(&self.allocation)
            .send()
            .await
            .expect("address");
        let a = &a.addresses()[0];
        let rt = self
            .ec2
            .describe_route_tables()
            .route_table_ids(&self.route_table)
            .send()
            .await
            .expect("rtb");
        let r = rt.route_tables()[0]
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("10.20.0.0/16"))
            .expect("route")
            .clone();
        let i = self
            .ec2
            .describe_instances()
            .instance_ids(&self.standby)
            .send()
            .await
            .expect("instances");
        let s = |v: Option<&str>| v.unwrap_or("").to_owned();
        Seen {
            dns_primary,
            dns_records: mine.len(),
            eip: (s(a.network_interface_id()), s(a.association_id())),
            route: (s(r.gateway_id()), s(r.network_interface_id())),
            standby_state: i.reservations()[0].instances()[0]
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default(),
        }
    }

    fn vars(&self, http: &str, dir: &Path) -> Vec<String> {
        [
            format!("zone_id={}", self.zone_id),
            format!("record={}", self.record),
            format!("eip_allocation={}", self.allocation),
            format!("standby_instance={}", self.standby),
            format!("route_table={}", self.route_table),
            format!("kms_key=aws-kms:{}", self.kms_alias),
            format!("restore_dir={}", dir.join("restore").display()),
            format!("public_url={http}/public"),
        ]
        .into_iter()
        .collect()
    }

    fn failover_vars(&self, http: &str, dir: &Path) -> Vec<String> {
        let mut v = self.vars(http, dir);
        v.extend([
            format!("standby_eni={}", self.standby_eni),
            format!("backup_bucket={}", self.bucket),
            "restore_command=test -s".to_owned(),
            format!("standby_url={http}/standby"),
            format!("pager_url={http}/pager"),
        ]);
        v
    }

    fn failback_vars(&self, http: &str, dir: &Path) -> Vec<String> {
        let mut v = self.vars(http, dir);
        v.extend([
            format!("maintenance_instance={}", self.maintenance),
            format!("primary_link={}", self.vgw),
            format!("staging=s3://{}/failback/ehr-dr.dbk", self.bucket),
            "freeze_command=true".to_owned(),
            "unfreeze_command=true".to_owned(),
            format!("dump_command=cat {}", dir.join("ehr.dump").display()),
            "load_command=test -s".to_owned(),
            format!("primary_url={http}/primary"),
        ]);
        v
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn drover(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .current_dir(dir)
        .env("USER", "alice")
        .env("DROVER_PAGER_TOKEN", "pager-secret-0123456789")
        .output()
        .expect("drover runs")
}

fn spawn(dir: &Path, args: &[String], crash_after_effect: Option<&str>) -> std::process::Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drover"));
    c.args(args)
        .current_dir(dir)
        .env("USER", "alice")
        .env("DROVER_PAGER_TOKEN", "pager-secret-0123456789")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(step) = crash_after_effect {
        c.env("DROVER_CRASH_AFTER_EFFECT", step);
    }
    c.spawn().expect("drover starts")
}

fn run_args(runbook: &str, mode: &str, run_id: &str, vars: &[String]) -> Vec<String> {
    let mut a: Vec<String> = [
        "run",
        &format!("{}/runbooks/{runbook}", super::root().display()),
        "--mode",
        mode,
        "--run-id",
        run_id,
        "--as",
        "alice",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for v in vars {
        a.push("--var".into());
        a.push(v.clone());
    }
    a
}

fn step_states(dir: &Path, run: &str) -> Vec<(String, String)> {
    let out = drover(dir, &["status", run, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["id"].as_str().unwrap_or("").to_owned(),
                        s["state"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if f() {
            return;
        }
        #[allow(clippy::disallowed_methods, reason = "polling real processes")]
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// Waits for `gate` to wait for approval, then approves it as the incident commander and the DBA
/// lead (never the initiator, alice).
fn approve(dir: &Path, run: &str, gate: &str) {
    wait_until(&format!("{gate} to wait for approval"), || {
        step_states(dir, run)
            .iter()
            .any(|(id, s)| id == gate && s == "awaiting_approval")
    });
    for (who, role) in [("bob", "incident-commander"), ("carol", "dba-lead")] {
        let out = drover(dir, &["approve", run, gate, "--as", who, "--role", role]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
}

fn finish(child: std::process::Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        format!("{}\n{}", text(&out.stdout), text(&out.stderr)),
    )
}

#[test]
fn ehr_failover_then_failback_against_moto_with_a_crash_and_resume_in_between() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let rt = rt();
    let w = rt.block_on(world(d, false));
    let (http, requests) = http_server();
    let before = rt.block_on(w.read());
    assert_eq!(before.dns_primary, ["ehr-us-east-1"]);
    assert_eq!(before.eip.0, w.maintenance_eni);
    assert_eq!(before.route.0, w.vgw);
    assert_eq!(before.standby_state, "stopped");

    // Failover, killed right after the Elastic IP moved and before the journal recorded it.
    let child = spawn(
        d,
        &run_args(
            "ehr-failover.drover",
            "failover",
            "f1",
            &w.failover_vars(&http, d),
        ),
        Some("move_eip"),
    );
    approve(d, "f1", "approve_cutover");
    let (code, log) = finish(child);
    assert_ne!(
        code,
        Some(0),
        "the process was to die after move_eip:\n{log}"
    );
    let crashed = rt.block_on(w.read());
    assert_eq!(
        crashed.eip.0, w.standby_eni,
        "the EIP moved before the crash"
    );
    assert!(
        step_states(d, "f1")
            .iter()
            .any(|(id, s)| id == "move_eip" && s == "running"),
        "the journal still thinks move_eip is in flight: {:?}",
        step_states(d, "f1")
    );

    let resumed = drover(d, &["resume", "f1", "--as", "alice"]);
    let log = format!("{}\n{}", text(&resumed.stdout), text(&resumed.stderr));
    assert_eq!(resumed.status.code(), Some(0), "{log}");
    assert!(log.contains("outcome: Succeeded"), "{log}");
    let after = rt.block_on(w.read());
    assert_eq!(
        after.eip, crashed.eip,
        "resume observed the association instead of making a second one"
    );
    assert_eq!(after.dns_primary, ["ehr-us-west-2"]);
    assert_eq!(after.dns_records, 2, "no duplicate record");
    assert_eq!(after.route.1, w.standby_eni);
    assert_eq!(after.standby_state, "running");
    let restored = std::fs::read_to_string(d.join("restore/ehr.dump")).expect("restored dump");
    assert!(restored.ends_with("patient-49999\n"));
    let pager: Vec<String> = requests
        .lock()
        .map(|r| r.iter().filter(|r| r.contains("/pager")).cloned().collect())
        .unwrap_or_default();
    assert_eq!(pager.len(), 1, "one all-clear page");
    assert!(
        pager[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer pager-secret-0123456789")
    );
    let audit = drover(d, &["audit", "verify", "f1"]);
    assert_eq!(audit.status.code(), Some(0), "{}", text(&audit.stderr));
    let status = text(&drover(d, &["status", "f1", "--format", "json"]).stdout);
    assert!(
        !status.contains("pager-secret"),
        "the secret is not in the record"
    );

    // Failback puts everything back where it was.
    let child = spawn(
        d,
        &run_args(
            "ehr-failback.drover",
            "failback",
            "b1",
            &w.failback_vars(&http, d),
        ),
        None,
    );
    approve(d, "b1", "approve_start");
    approve(d, "b1", "approve_cutback");
    let (code, log) = finish(child);
    assert_eq!(code, Some(0), "{log}");
    let back = rt.block_on(w.read());
    assert_eq!(back.dns_primary, before.dns_primary);
    assert_eq!(back.dns_records, 2);
    assert_eq!(
        back.eip.0, before.eip.0,
        "the EIP is back on the maintenance host"
    );
    assert_eq!(back.route, before.route);
    assert_eq!(back.standby_state, "stopped");
}

#[test]
fn a_drill_is_refused_on_a_production_tagged_standby_before_it_is_started() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let rt = rt();
    let w = rt.block_on(world(d, true));
    let (http, _) = http_server();
    let child = spawn(
        d,
        &run_args(
            "ehr-failover.drover",
            "drill",
            "d1",
            &w.failover_vars(&http, d),
        ),
        None,
    );
    let (code, log) = finish(child);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!("must not touch {}", w.standby))
            && log.contains("environment=production"),
        "{log}"
    );
    let seen = rt.block_on(w.read());
    assert_eq!(seen.standby_state, "stopped", "never started");
    assert_eq!(seen.dns_primary, ["ehr-us-east-1"]);
    assert_eq!(seen.eip.0, w.maintenance_eni);
}

#[test]
fn a_failed_cutover_rolls_back_through_the_adapters_built_in_undo() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let rt = rt();
    let w = rt.block_on(world(d, false));
    let before = rt.block_on(w.read());
    let runbook = format!(
        r#"runbook "cutover with rollback" {{
  rto   = 1h
  rpo   = 1h
  modes = [failover]
}}

step go {{
  action = approval
  with {{
    prompt = "cut over?"
  }}
}}

step move_eip {{
  action = aws_ec2.associate_address
  after  = [go]
  with {{
    allocation_id = "{alloc}"
    instance_id   = "{standby}"
    region        = "{REGION}"
  }}
}}

step reroute {{
  action = aws_ec2.replace_route
  after  = [go]
  with {{
    route_table_id       = "{rtb}"
    destination_cidr     = "10.20.0.0/16"
    network_interface_id = "{eni}"
    region               = "{REGION}"
  }}
}}

step dns {{
  action = aws_route53.set_failover
  after  = [go]
  with {{
    zone_id = "{zone}"
    name    = "{record}"
    type    = A
    active  = "ehr-us-west-2"
  }}
}}

step smoke_test {{
  action     = shell
  after      = [move_eip, reroute, dns]
  on_failure = rollback
  with {{
    command = "echo 'smoke test failed' >&2; exit 3"
  }}
}}

milestone done {{
  after     = [smoke_test]
  stops_rto = true
}}
"#,
        alloc = w.allocation,
        standby = w.standby,
        rtb = w.route_table,
        eni = w.standby_eni,
        zone = w.zone_id,
        record = w.record,
    );
    std::fs::write(d.join("cutover.drover"), runbook).expect("write");
    let args: Vec<String> = [
        "run",
        "cutover.drover",
        "--mode",
        "failover",
        "--run-id",
        "r1",
        "--as",
        "alice",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let child = spawn(d, &args, None);
    wait_until("the gate", || {
        step_states(d, "r1")
            .iter()
            .any(|(id, s)| id == "go" && s == "awaiting_approval")
    });
    let ok = drover(d, &["approve", "r1", "go", "--as", "bob"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let (code, log) = finish(child);
    assert_eq!(code, Some(1), "{log}");
    for step in ["move_eip", "reroute", "dns"] {
        assert!(
            log.contains(&format!("undo    {step} (")),
            "{step} undone:\n{log}"
        );
    }
    let after = rt.block_on(w.read());
    assert_eq!(after.dns_primary, before.dns_primary, "{log}");
    assert_eq!(after.dns_records, 2);
    assert_eq!(
        after.eip.0, before.eip.0,
        "the EIP is back on the maintenance host"
    );
    assert_eq!(after.route, before.route);
}

/// An evidence bundle uploaded to S3 under Object Lock in compliance mode (moto): the stored
/// version carries the lock and its date, its bytes are the bundle's, deleting that version is
/// refused, and a bucket without Object Lock is refused before anything is written.
#[test]
fn an_evidence_bundle_is_uploaded_under_a_compliance_mode_object_lock() {
    let dir = super::report::drill();
    let d = dir.path();
    let made = super::report::drover(d, &["key", "generate", "--signing", "file:sign.key"]);
    assert_eq!(made.status.code(), Some(0));
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let (locked, plain, s3) = rt.block_on(async {
        let home = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&home)
                .force_path_style(true)
                .build(),
        );
        let locked = unique("evidence-worm");
        s3.create_bucket()
            .bucket(&locked)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await
            .expect("bucket");
        let plain = unique("evidence-plain");
        s3.create_bucket()
            .bucket(&plain)
            .send()
            .await
            .expect("bucket");
        (locked, plain, s3)
    });
    let export = |uri: &str| {
        super::report::drover(
            d,
            &[
                "evidence",
                "export",
                "latest",
                "b.tar",
                "--signing-key",
                "file:sign.key",
                "--upload",
                uri,
                "--retain-days",
                "30",
            ],
        )
    };
    let refused = export(&format!("s3://{plain}/q1.tar"));
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("does not have Object Lock"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let ok = export(&format!("s3://{locked}/drills/q1.tar"));
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bundle = std::fs::read(d.join("b.tar")).expect("bundle");
    rt.block_on(async {
        let head = s3
            .head_object()
            .bucket(&locked)
            .key("drills/q1.tar")
            .send()
            .await
            .expect("head");
        assert_eq!(
            head.object_lock_mode(),
            Some(&aws_sdk_s3::types::ObjectLockMode::Compliance)
        );
        let until = head.object_lock_retain_until_date().expect("retain until");
        #[allow(
            clippy::disallowed_methods,
            reason = "compared with the lock date S3 stored"
        )]
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let days = (until.secs() - i64::try_from(now).expect("now")) / 86_400;
        assert!((29..=30).contains(&days), "{days} days");
        let got = s3
            .get_object()
            .bucket(&locked)
            .key("drills/q1.tar")
            .send()
            .await
            .expect("get")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes();
        assert_eq!(
            got.as_ref(),
            bundle.as_slice(),
            "the stored bytes are the bundle"
        );
        let version = head.version_id().expect("version").to_owned();
        let deleted = s3
            .delete_object()
            .bucket(&locked)
            .key("drills/q1.tar")
            .version_id(&version)
            .send()
            .await;
        assert!(deleted.is_err(), "a locked version was deleted");
    });
}

/// The AWS calls moto received that mention any of `ids` (its recorder, switched on by
/// `.ci/test`, writes every request to the file named by `DROVER_TEST_MOTO_RECORDING`), as the
/// EC2 `Action=` names or `METHOD path` for the REST services.
fn moto_calls_about(since: usize, ids: &[&str]) -> Vec<String> {
    use base64::Engine as _;
    let log = std::fs::read(moto_recording()).unwrap_or_default();
    let log = String::from_utf8_lossy(log.get(since..).unwrap_or_default());
    let mut out = Vec::new();
    for line in log.lines() {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let body = e["body"].as_str().unwrap_or_default();
        let body = if e["body_encoded"] == true {
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        } else {
            body.to_owned()
        };
        let url = e["url"].as_str().unwrap_or_default();
        if !ids.iter().any(|id| body.contains(id) || url.contains(id)) {
            continue;
        }
        let action = body
            .split('&')
            .chain(url.split(['?', '&']))
            .find_map(|kv| kv.strip_prefix("Action="))
            .map(str::to_owned);
        out.push(
            action.unwrap_or_else(|| format!("{} {url}", e["method"].as_str().unwrap_or_default())),
        );
    }
    out
}

fn moto_recording() -> String {
    std::env::var("DROVER_TEST_MOTO_RECORDING").unwrap_or_else(|_| {
        panic!("DROVER_TEST_MOTO_RECORDING is not set: run the AWS suite through .ci/test, which records moto's requests")
    })
}

/// Where moto's request log ends now: calls after it are this test's from here on.
fn moto_log_mark() -> usize {
    std::fs::metadata(moto_recording()).map_or(0, |m| usize::try_from(m.len()).unwrap_or(0))
}

#[test]
fn a_drill_refuses_to_point_anything_at_production_before_any_change_call() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let rt = rt();
    // The standby instance is tagged environment=production.
    let w = rt.block_on(world(d, true));
    let before = rt.block_on(w.read());
    let mark = moto_log_mark();

    // 1. By tag, known only at run time: re-pointing a route *at* a production instance.
    std::fs::write(
        d.join("tagged.drover"),
        format!(
            r#"runbook "drill reroute" {{
  rto   = 1h
  rpo   = 1h
  modes = [drill]
}}

production {{
  tags = {{ environment = "production" }}
}}

step reroute {{
  allow {{
    unapproved_destructive = "a drill of the guard itself"
  }}
  action     = aws_ec2.replace_route
  on_failure = continue
  with {{
    route_table_id   = "{rtb}"
    destination_cidr = "10.20.0.0/16"
    instance_id      = "{standby}"
    region           = "{REGION}"
  }}
}}

milestone done {{
  after     = [reroute]
  stops_rto = true
}}
"#,
            rtb = w.route_table,
            standby = w.standby,
        ),
    )
    .expect("write");
    let out = drover(d, &["run", "tagged.drover", "--as", "alice"]);
    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(5),
        "a drill with a refused step does not exit 0: {log}"
    );
    assert!(
        log.contains(&format!("must not touch {}", w.standby))
            && log.contains("environment=production"),
        "{log}"
    );
    assert_eq!(
        rt.block_on(w.read()).route,
        before.route,
        "the route is untouched"
    );
    let calls = moto_calls_about(mark, &[&w.route_table]);
    assert!(
        calls.iter().any(|c| c == "DescribeTags"),
        "the recorder saw the guard read the tags: {calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c == "ReplaceRoute"),
        "ReplaceRoute reached the service: {calls:?}"
    );

    // 2. By name in `production.resources`: attaching the address to a listed instance is
    // refused by `drover check` and by `drover run`, before anything runs.
    std::fs::write(
        d.join("listed.drover"),
        format!(
            r#"runbook "drill address" {{
  rto   = 1h
  rpo   = 1h
  modes = [drill]
}}

production {{
  resources = ["{maintenance}"]
}}

step move_eip {{
  allow {{
    unapproved_destructive = "a drill of the guard itself"
  }}
  action = aws_ec2.associate_address
  with {{
    allocation_id = "{alloc}"
    instance_id   = "{maintenance}"
    region        = "{REGION}"
  }}
}}

milestone done {{
  after     = [move_eip]
  stops_rto = true
}}
"#,
            maintenance = w.maintenance,
            alloc = w.allocation,
        ),
    )
    .expect("write");
    let check = drover(d, &["check", "listed.drover"]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check.stderr));
    assert!(
        text(&check.stderr).contains("DR0029"),
        "{}",
        text(&check.stderr)
    );
    let run = drover(d, &["run", "listed.drover", "--as", "alice"]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    assert_eq!(
        rt.block_on(w.read()).eip,
        before.eip,
        "the address is untouched"
    );
    let calls = moto_calls_about(mark, &[&w.allocation]);
    assert!(
        !calls.iter().any(|c| c == "AssociateAddress"),
        "AssociateAddress reached the service: {calls:?}"
    );
}

/// An endpoint that accepts connections and never answers: the step's calls end at their
/// timeout as transient failures, the retry policy runs, and the run ends — it never hangs.
#[test]
fn a_black_hole_endpoint_ends_the_step_at_its_call_timeout_and_the_retry_policy_applies() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = hole.local_addr().expect("addr").port();
    // Accept, hold every connection open, never answer.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hole.incoming() {
            held.push(s);
        }
    });
    std::fs::write(
        d.join("hole.drover"),
        format!(
            r#"runbook "black hole" {{
  rto   = 1h
  rpo   = 1h
  modes = [failover]
}}

step start {{
  action  = aws_ec2.start_instances
  timeout = 2m
  retry {{
    attempts = 2
    backoff  = 1s
  }}
  with {{
    instance_ids = ["i-0123456789abcdef0"]
    region       = "{REGION}"
    endpoint_url = "http://127.0.0.1:{port}"
    call_timeout = 1500ms
  }}
}}

milestone done {{
  after     = [start]
  stops_rto = true
}}
"#
        ),
    )
    .expect("write");
    // The preflight would meet the black hole first: this test is about the step's own calls.
    let out = drover(
        d,
        &["run", "hole.drover", "--as", "alice", "--skip-preflight"],
    );
    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("retry   start (attempt 2 of 2)"),
        "the retry policy ran: {log}"
    );
    assert!(
        log.contains("no answer within the call timeout")
            || log.contains("the connection timed out"),
        "the error says it timed out: {log}"
    );
    assert!(!log.contains("DispatchFailure("), "no debug dump: {log}");
    assert!(
        !log.contains("retrying"),
        "nothing says retrying unless it is: {log}"
    );
}

/// A typo in an id surfaces before the first change: `--dry-run` names every missing resource,
/// and a real run refuses to start.
#[test]
fn missing_resources_fail_the_dry_run_by_name_and_the_run_refuses_before_any_change() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let rt = rt();
    let w = rt.block_on(world(d, false));
    let before = rt.block_on(w.read());
    std::fs::write(
        d.join("typos.drover"),
        format!(
            r#"runbook "typos" {{
  rto   = 1h
  rpo   = 1h
  modes = [failover]
}}

step go {{
  action = approval
  with {{
    prompt = "go?"
  }}
}}

step start {{
  action = aws_ec2.start_instances
  after  = [go]
  with {{
    instance_ids = ["{standby}", "i-0feedfacefeedface"]
    region       = "{REGION}"
  }}
}}

step move_eip {{
  action = aws_ec2.associate_address
  after  = [go]
  with {{
    allocation_id        = "{alloc}"
    network_interface_id = "eni-0feedfacefeedface"
    region               = "{REGION}"
  }}
}}

step open_ingress {{
  action = aws_ec2.authorize_ingress
  after  = [go]
  with {{
    group_id = "sg-0feedfacefeedface"
    protocol = "tcp"
    port     = 443
    cidr     = "10.0.0.0/8"
    region   = "{REGION}"
  }}
}}

step dns {{
  action = aws_route53.set_failover
  after  = [go]
  with {{
    zone_id = "{zone}"
    name    = "{record}"
    type    = A
    active  = "ehr-eu-west-9"
  }}
}}

step verify {{
  action = backup.verify
  with {{
    source = "s3://{bucket}/ehr/ehr.dbk"
    key    = "aws-kms:alias/no-such-key-feedface"
  }}
}}

milestone done {{
  after     = [start, move_eip, open_ingress, dns, verify]
  stops_rto = true
}}
"#,
            standby = w.standby,
            alloc = w.allocation,
            zone = w.zone_id,
            record = w.record,
            bucket = w.bucket,
        ),
    )
    .expect("write");
    let dry = drover(d, &["run", "typos.drover", "--dry-run"]);
    let out = text(&dry.stdout);
    assert_eq!(dry.status.code(), Some(1), "{out}{}", text(&dry.stderr));
    for named in [
        "instance i-0feedfacefeedface",
        "network interface eni-0feedfacefeedface",
        "security group sg-0feedfacefeedface",
        "ehr-eu-west-9",
        "alias/no-such-key-feedface",
    ] {
        assert!(out.contains(named), "the dry run names {named}: {out}");
    }
    assert!(
        !out.contains(&format!("instance {}", w.standby)),
        "the instance that exists is not named: {out}"
    );

    let mark = moto_log_mark();
    let run = drover(d, &["run", "typos.drover", "--as", "alice"]);
    let err = text(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("preflight: 5 step(s) would fail"), "{err}");
    assert!(err.contains("--skip-preflight"), "{err}");
    let runs = text(&drover(d, &["runs"]).stdout);
    assert!(!runs.contains("typos"), "no run was started: {runs}");
    let calls = moto_calls_about(mark, &[&w.standby, &w.allocation, &w.zone_id]);
    for change in ["StartInstances", "AssociateAddress"] {
        assert!(
            !calls.iter().any(|c| c == change),
            "{change} was sent: {calls:?}"
        );
    }
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("POST") && c.contains("rrset")),
        "no record change: {calls:?}"
    );
    assert_eq!(rt.block_on(w.read()), before, "the world is as it was");
}

/// The world with the Elastic IP's association id left out (putting an address back makes a
/// new association, on the same interface).
fn same_world(a: &Seen, b: &Seen) -> bool {
    a.dns_primary == b.dns_primary
        && a.dns_records == b.dns_records
        && a.eip.0 == b.eip.0
        && a.route == b.route
        && a.standby_state == b.standby_state
}

/// A cutover that stops halfway — a failed check (the run aborts, leaving its changes), or a
/// SIGKILL right after a change — is undone on demand: `drover status` says what happened,
/// `drover rollback` puts the world back as it was before the run.
#[test]
fn an_aborted_or_killed_cutover_is_undone_on_demand_by_drover_rollback() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let rt = rt();
    let w = rt.block_on(world(d, false));
    let before = rt.block_on(w.read());
    let runbook = format!(
        r#"runbook "cutover that stops" {{
  rto   = 1h
  rpo   = 1h
  modes = [failover]
}}

step go {{
  action = approval
  with {{
    prompt = "cut over?"
  }}
}}

step move_eip {{
  action = aws_ec2.associate_address
  after  = [go]
  with {{
    allocation_id = "{alloc}"
    instance_id   = "{standby}"
    region        = "{REGION}"
  }}
}}

step reroute {{
  action = aws_ec2.replace_route
  after  = [move_eip]
  with {{
    route_table_id       = "{rtb}"
    destination_cidr     = "10.20.0.0/16"
    network_interface_id = "{eni}"
    region               = "{REGION}"
  }}
}}

step dns {{
  action = aws_route53.set_failover
  after  = [reroute]
  with {{
    zone_id = "{zone}"
    name    = "{record}"
    type    = A
    active  = "ehr-us-west-2"
  }}
}}

step smoke_test {{
  action = shell
  after  = [dns]
  with {{
    command = "echo 'smoke test failed' >&2; exit 3"
  }}
}}

milestone done {{
  after     = [smoke_test]
  stops_rto = true
}}
"#,
        alloc = w.allocation,
        standby = w.standby,
        rtb = w.route_table,
        eni = w.standby_eni,
        zone = w.zone_id,
        record = w.record,
    );
    std::fs::write(d.join("cutover.drover"), runbook).expect("write");
    let run = |id: &str, crash: Option<&str>| {
        let args: Vec<String> = ["run", "cutover.drover", "--run-id", id, "--as", "alice"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let child = spawn(d, &args, crash);
        wait_until("the gate", || {
            step_states(d, id)
                .iter()
                .any(|(s, st)| s == "go" && st == "awaiting_approval")
        });
        let ok = drover(d, &["approve", id, "go", "--as", "bob"]);
        assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
        finish(child)
    };

    // The cutover's destructive steps are gated by `go`: undoing them needs the same approval,
    // and whoever asks for the rollback may not give it.
    let rollback = |id: &str| {
        let args: Vec<String> = ["rollback", id, "--as", "alice"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let mark = moto_log_mark();
        let child = spawn(d, &args, None);
        wait_until("the rollback to wait for approval", || {
            text(&drover(d, &["status", id]).stdout).contains("waits for approval")
        });
        let calls = moto_calls_about(mark, &[&w.allocation, &w.route_table, &w.zone_id]);
        assert!(
            !calls.iter().any(|c| c.ends_with("AssociateAddress")
                || c == "ReplaceRoute"
                || (c.starts_with("POST") && c.contains("rrset"))),
            "nothing is undone before the approval: {calls:?}"
        );
        let own = drover(d, &["approve", id, "rollback", "--as", "Alice "]);
        assert_ne!(own.status.code(), Some(0));
        assert!(
            text(&own.stderr).contains("asked for the rollback"),
            "{}",
            text(&own.stderr)
        );
        let ok = drover(d, &["approve", id, "rollback", "--as", "bob"]);
        assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
        finish(child)
    };

    // 1. Aborted by a failed check: the run fails, every change still in place.
    let (code, log) = run("r1", None);
    assert_eq!(code, Some(1), "{log}");
    let changed = rt.block_on(w.read());
    assert!(
        !same_world(&changed, &before),
        "the cutover changed the world: {log}"
    );
    let st = text(&drover(d, &["status", "r1"]).stdout);
    assert!(st.contains("changes still in place"), "{st}");
    for step in [
        "move_eip (aws_ec2.associate_address): undoable",
        "reroute",
        "dns",
    ] {
        assert!(st.contains(step), "status lists {step}: {st}");
    }
    let (code, log) = rollback("r1");
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("needs 1 approval(s) by someone other than alice"),
        "{log}"
    );
    for step in ["dns", "reroute", "move_eip"] {
        assert!(log.contains(&format!("undo    {step} (")), "{step}: {log}");
    }
    let after = rt.block_on(w.read());
    assert!(
        same_world(&after, &before),
        "the world is as before the run: {after:?} vs {before:?}\n{log}"
    );
    let audit = text(&drover(d, &["audit", "show", "r1"]).stdout);
    assert!(audit.contains("run.rollback"), "{audit}");
    let again = drover(d, &["rollback", "r1"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("nothing is left to undo"));

    // 2. Killed right after the address moved (before the journal knew).
    let (code, _) = run("r2", Some("move_eip"));
    assert_ne!(code, Some(0));
    assert_eq!(
        rt.block_on(w.read()).eip.0,
        w.standby_eni,
        "the address moved"
    );
    let st = drover(d, &["status", "r2"]);
    assert!(
        text(&st.stdout).contains("interrupted"),
        "{}",
        text(&st.stdout)
    );
    assert!(
        text(&st.stdout).contains("move_eip (aws_ec2.associate_address): in flight"),
        "{}",
        text(&st.stdout)
    );
    let (code, log) = rollback("r2");
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("start   reroute"), "nothing new runs: {log}");
    let after = rt.block_on(w.read());
    assert!(
        same_world(&after, &before),
        "the world is as before the run: {after:?} vs {before:?}\n{log}"
    );
}

#[test]
fn an_audit_chain_anchored_in_s3_under_object_lock_catches_a_rewritten_log() {
    let rt = rt();
    let (locked, plain) = rt.block_on(async {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf("us-east-1").await)
                .force_path_style(true)
                .build(),
        );
        let locked = unique("anchor-worm");
        s3.create_bucket()
            .bucket(&locked)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await
            .expect("bucket");
        let plain = unique("anchor-plain");
        s3.create_bucket()
            .bucket(&plain)
            .send()
            .await
            .expect("bucket");
        (locked, plain)
    });
    // A bucket without Object Lock is refused before the run starts.
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("a.drover"), super::anchor::RUNBOOK).expect("runbook");
    let refused = drover(
        dir.path(),
        &[
            "run",
            "a.drover",
            "--as",
            "alice",
            "--audit-anchor",
            &format!("s3://{plain}/audit"),
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("does not have Object Lock"),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        !dir.path().join(".drover/runs").exists()
            || std::fs::read_dir(dir.path().join(".drover/runs"))
                .map(|mut r| r.next().is_none())
                .unwrap_or(true),
        "no run was started"
    );
    // In a locked bucket: the same guarantees as a file anchor, checkpoints as locked versions.
    super::anchor::rewritten_log_contradicts(&format!("s3://{locked}/audit"));
    rt.block_on(async {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf("us-east-1").await)
                .force_path_style(true)
                .build(),
        );
        let listed = s3
            .list_objects_v2()
            .bucket(&locked)
            .prefix("audit/r1/")
            .send()
            .await
            .expect("list");
        let first = listed
            .contents()
            .first()
            .and_then(|o| o.key())
            .expect("a checkpoint object")
            .to_owned();
        let head = s3
            .head_object()
            .bucket(&locked)
            .key(&first)
            .send()
            .await
            .expect("head");
        assert_eq!(
            head.object_lock_mode(),
            Some(&aws_sdk_s3::types::ObjectLockMode::Compliance)
        );
        let deleted = s3
            .delete_object()
            .bucket(&locked)
            .key(&first)
            .version_id(head.version_id().expect("version"))
            .send()
            .await;
        assert!(deleted.is_err(), "a locked checkpoint was deleted");
    });
}

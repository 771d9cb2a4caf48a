//! What Drover's AWS actions cost on top of the API call they make: N Elastic IP moves and N
//! Route 53 failover flips through the adapters (read state, save the capture with fsync, call,
//! plus one `observe`) against the same N bare SDK calls, on the same server in the same run.
//! Run through `bench/aws_overhead.sh`, which starts moto on 127.0.0.1.

use drover_schema::{Adapter, Inputs, StepContext};
use serde_json::json;
use std::time::{Duration, Instant};

fn ctx(dir: &std::path::Path, step: String) -> StepContext {
    StepContext {
        run_id: "bench".into(),
        idempotency_key: format!("bench/{step}"),
        step_id: step,
        action: String::new(),
        attempt: 1,
        mode: drover_schema::Mode::Failover,
        state_dir: dir.to_path_buf(),
        production: Vec::new(),
        production_tags: Default::default(),
        progress: Default::default(),
        ..Default::default()
    }
}

#[allow(clippy::disallowed_methods, reason = "a benchmark measures wall time")]
fn now() -> Instant {
    Instant::now()
}

fn per_op(d: Duration, n: u32) -> f64 {
    d.as_secs_f64() * 1000.0 / f64::from(n)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    use aws_sdk_ec2::types::*;
    use aws_sdk_route53::types::*;
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-west-2"))
        .load()
        .await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let r53 = aws_sdk_route53::Client::new(&conf);
    let dir = tempfile::tempdir().expect("tmp");

    // World: two instances and an Elastic IP; a zone with a failover pair.
    let mut instances = Vec::new();
    for _ in 0..2 {
        let r = ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .expect("instance");
        instances.push(r.instances()[0].instance_id().expect("id").to_owned());
    }
    let alloc = ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .send()
        .await
        .expect("eip")
        .allocation_id()
        .expect("allocation")
        .to_owned();
    let zone = r53
        .create_hosted_zone()
        .name("bench.example.org")
        .caller_reference(format!("bench-{}", std::process::id()))
        .send()
        .await
        .expect("zone");
    let zone = zone.hosted_zone().expect("zone").id().to_owned();
    let rrs = |set: &str, role: ResourceRecordSetFailover, ip: &str| {
        ResourceRecordSet::builder()
            .name("app.bench.example.org")
            .r#type(RrType::A)
            .set_identifier(set)
            .failover(role)
            .ttl(60)
            .resource_records(ResourceRecord::builder().value(ip).build().expect("rr"))
            .build()
            .expect("rrs")
    };
    let batch =
        |a: ResourceRecordSetFailover, b: ResourceRecordSetFailover, action: ChangeAction| {
            ChangeBatch::builder()
                .changes(
                    Change::builder()
                        .action(action.clone())
                        .resource_record_set(rrs("east", a, "192.0.2.1"))
                        .build()
                        .expect("change"),
                )
                .changes(
                    Change::builder()
                        .action(action)
                        .resource_record_set(rrs("west", b, "198.51.100.1"))
                        .build()
                        .expect("change"),
                )
                .build()
                .expect("batch")
        };
    r53.change_resource_record_sets()
        .hosted_zone_id(&zone)
        .change_batch(batch(
            ResourceRecordSetFailover::Primary,
            ResourceRecordSetFailover::Secondary,
            ChangeAction::Create,
        ))
        .send()
        .await
        .expect("records");

    // Baseline: bare SDK calls.
    let t = now();
    for k in 0..n {
        ec2.associate_address()
            .allocation_id(&alloc)
            .instance_id(&instances[(k % 2) as usize])
            .allow_reassociation(true)
            .send()
            .await
            .expect("associate");
    }
    let raw_eip = t.elapsed();
    let t = now();
    for k in 0..n {
        let (a, b) = if k % 2 == 0 {
            (
                ResourceRecordSetFailover::Secondary,
                ResourceRecordSetFailover::Primary,
            )
        } else {
            (
                ResourceRecordSetFailover::Primary,
                ResourceRecordSetFailover::Secondary,
            )
        };
        r53.change_resource_record_sets()
            .hosted_zone_id(&zone)
            .change_batch(batch(a, b, ChangeAction::Upsert))
            .send()
            .await
            .expect("flip");
    }
    let raw_dns = t.elapsed();

    // Drover: the same changes as steps (each a new step: state read, capture saved, call), and
    // one observe each, as a resume would do.
    let ec2a = drover_adapters::aws_ec2::AwsEc2Adapter;
    let t = now();
    for k in 0..n {
        let c = ctx(dir.path(), format!("eip{k}"));
        let i: Inputs = serde_json::from_value(json!({"allocation_id": alloc, "instance_id": instances[(k % 2) as usize], "region": "us-west-2"})).expect("inputs");
        ec2a.execute("aws_ec2.associate_address", &i, &c)
            .await
            .expect("step");
    }
    let drover_eip = t.elapsed();
    let r53a = drover_adapters::aws_route53::AwsRoute53Adapter;
    let t = now();
    for k in 0..n {
        let c = ctx(dir.path(), format!("dns{k}"));
        let active = if k % 2 == 0 { "east" } else { "west" };
        let i: Inputs = serde_json::from_value(json!({"zone_id": zone, "name": "app.bench.example.org", "type": "A", "active": active})).expect("inputs");
        r53a.execute("aws_route53.set_failover", &i, &c)
            .await
            .expect("step");
    }
    let drover_dns = t.elapsed();
    let t = now();
    for k in 0..n {
        let c = ctx(dir.path(), format!("eip{k}"));
        let i: Inputs = serde_json::from_value(json!({"allocation_id": alloc, "instance_id": instances[(k % 2) as usize], "region": "us-west-2"})).expect("inputs");
        ec2a.observe("aws_ec2.associate_address", &i, &c)
            .await
            .expect("observe");
    }
    let observe_eip = t.elapsed();
    // Preflight, which `drover run` does for every step before the first change: for an EIP
    // move it reads the address and the target instance; against one bare DescribeAddresses.
    let t = now();
    for _ in 0..n {
        ec2.describe_addresses()
            .allocation_ids(&alloc)
            .send()
            .await
            .expect("describe");
    }
    let raw_read = t.elapsed();
    let t = now();
    for k in 0..n {
        let c = ctx(dir.path(), format!("pre{k}"));
        let i: Inputs = serde_json::from_value(json!({"allocation_id": alloc, "instance_id": instances[(k % 2) as usize], "region": "us-west-2"})).expect("inputs");
        ec2a.preflight("aws_ec2.associate_address", &i, &c)
            .await
            .expect("preflight");
    }
    let preflight_eip = t.elapsed();

    println!("operations: {n} of each, moto on 127.0.0.1");
    println!(
        "EIP move:       bare AssociateAddress {:.2} ms/op   drover step {:.2} ms/op   ratio {:.2}x",
        per_op(raw_eip, n),
        per_op(drover_eip, n),
        drover_eip.as_secs_f64() / raw_eip.as_secs_f64()
    );
    println!(
        "failover flip:  bare ChangeResourceRecordSets {:.2} ms/op   drover step {:.2} ms/op   ratio {:.2}x",
        per_op(raw_dns, n),
        per_op(drover_dns, n),
        drover_dns.as_secs_f64() / raw_dns.as_secs_f64()
    );
    println!(
        "observe (resume read-back) of an EIP move: {:.2} ms/op = {:.2}x a bare AssociateAddress",
        per_op(observe_eip, n),
        observe_eip.as_secs_f64() / raw_eip.as_secs_f64()
    );
    println!(
        "preflight of an EIP move: bare DescribeAddresses {:.2} ms/op   drover preflight {:.2} ms/op   ratio {:.2}x",
        per_op(raw_read, n),
        per_op(preflight_eip, n),
        preflight_eip.as_secs_f64() / raw_read.as_secs_f64()
    );
}

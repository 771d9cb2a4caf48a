//! Paths moto cannot show — a change that stays PENDING, a health check that fails before it
//! recovers, throttling, access denied — tested by pointing a step's `endpoint_url` at a local
//! HTTP server that answers with recorded, real-shaped Route 53 responses
//! (`tests/fixtures/route53/*.xml`, the shapes of the Route 53 API reference). The SDK does its
//! real request signing, retries and XML parsing.

use super::support::rt;
use drover_adapters::aws_route53::AwsRoute53Adapter;
use drover_schema::{Adapter, Inputs, StepContext};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/route53/{name}")),
    )
    .expect("fixture")
}

/// A server that answers each request with the next response of the script for its path prefix
/// (the last one repeats), and counts requests per prefix.
fn server(script: Vec<(&'static str, Vec<(u16, String)>)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().expect("clone"));
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let n = {
                let mut l = log.lock().expect("log");
                l.push(path.clone());
                l.iter().filter(|p| p.as_str() == path).count()
            };
            let (status, body) = script
                .iter()
                .find(|(prefix, _)| path.starts_with(prefix))
                .map(|(_, steps)| steps[(n - 1).min(steps.len() - 1)].clone())
                .unwrap_or((404, String::new()));
            let reason = if status == 200 { "OK" } else { "Error" };
            let _ = write!(
                s,
                "HTTP/1.1 {status} {reason}\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nx-amzn-requestid: test\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

fn ctx(dir: &std::path::Path) -> StepContext {
    StepContext {
        run_id: "run-f".into(),
        step_id: "dns_insync".into(),
        action: String::new(),
        idempotency_key: "run-f/dns_insync".into(),
        attempt: 1,
        mode: drover_schema::Mode::Failover,
        state_dir: dir.to_path_buf(),
        production: Vec::new(),
        production_tags: Default::default(),
        progress: Default::default(),
        ..Default::default()
    }
}

fn inputs(endpoint: &str, v: serde_json::Value) -> Inputs {
    let mut i: Inputs = serde_json::from_value(v).expect("inputs");
    i.insert("endpoint_url".into(), json!(endpoint));
    i.insert("region".into(), json!("us-east-1"));
    i
}

fn change(status: &str) -> (u16, String) {
    (200, fixture("get_change.xml").replace("{STATUS}", status))
}

#[test]
fn wait_insync_polls_a_pending_change_until_it_is_insync() {
    let (url, seen) = server(vec![(
        "/2013-04-01/change/C0PENDING",
        vec![change("PENDING"), change("PENDING"), change("INSYNC")],
    )]);
    let dir = tempfile::tempdir().expect("tmp");
    let out = rt()
        .block_on(AwsRoute53Adapter.execute(
            "aws_route53.wait_insync",
            &inputs(
                &url,
                json!({"change_id": "/change/C0PENDING", "interval": 5}),
            ),
            &ctx(dir.path()),
        ))
        .expect("insync");
    assert_eq!(out["status"], "INSYNC");
    assert_eq!(
        seen.lock().expect("log").len(),
        3,
        "two PENDING answers, then INSYNC"
    );
}

#[test]
fn wait_healthy_waits_until_most_checkers_report_success() {
    let status = |ok: usize| {
        let obs: String = (0..3)
            .map(|i| {
                fixture("health_observation.xml")
                    .replace(
                        "{STATUS}",
                        if i < ok {
                            "Success: HTTP Status Code 200, OK"
                        } else {
                            "Failure: HTTP Status Code 503, Service Unavailable"
                        },
                    )
                    .replace("{IP}", &format!("15.177.{i}.1"))
            })
            .collect();
        (
            200,
            fixture("get_health_check_status.xml").replace("{OBSERVATIONS}", &obs),
        )
    };
    let (url, seen) = server(vec![(
        "/2013-04-01/healthcheck/hc-1/status",
        vec![status(0), status(1), status(2)],
    )]);
    let dir = tempfile::tempdir().expect("tmp");
    let out = rt()
        .block_on(AwsRoute53Adapter.execute(
            "aws_route53.wait_healthy",
            &inputs(&url, json!({"health_check_id": "hc-1", "interval": 5})),
            &ctx(dir.path()),
        ))
        .expect("healthy");
    assert_eq!(
        (out["healthy_checkers"].as_u64(), out["checkers"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(seen.lock().expect("log").len(), 3);
}

#[test]
fn throttling_is_transient_and_access_denied_is_permanent_with_the_call_named() {
    let error = |status: u16, code: &str, msg: &str| {
        (
            status,
            fixture("error.xml")
                .replace("{CODE}", code)
                .replace("{MESSAGE}", msg),
        )
    };
    let (url, seen) = server(vec![
        (
            "/2013-04-01/change/C0THROTTLED",
            vec![error(400, "Throttling", "Rate exceeded")],
        ),
        (
            "/2013-04-01/change/C0DENIED",
            vec![error(
                403,
                "AccessDenied",
                "User: arn:aws:iam::123456789012:user/drill is not authorized to perform: route53:GetChange",
            )],
        ),
    ]);
    let dir = tempfile::tempdir().expect("tmp");
    let r = rt();
    let e = r
        .block_on(AwsRoute53Adapter.execute(
            "aws_route53.wait_insync",
            &inputs(&url, json!({"change_id": "C0THROTTLED"})),
            &ctx(dir.path()),
        ))
        .expect_err("throttled");
    assert!(e.is_transient(), "{e}");
    // The same facts as data, for tools that must not parse the message.
    assert_eq!(e.context.code.as_deref(), Some("Throttling"));
    assert_eq!(e.context.region.as_deref(), Some("us-east-1"));
    assert_eq!(e.context.resource.as_deref(), Some("change C0THROTTLED"));
    let msg = e.to_string();
    for part in [
        "step dns_insync",
        "Route 53 GetChange",
        "change C0THROTTLED",
        "us-east-1",
        "Throttling",
        "Rate exceeded",
        "a retry with backoff may succeed",
    ] {
        assert!(msg.contains(part), "`{part}` missing from: {msg}");
    }
    // Only the engine knows whether it will retry, and says so with the attempt number.
    assert!(!msg.contains("retrying"), "{msg}");
    let throttled_calls = seen
        .lock()
        .expect("log")
        .iter()
        .filter(|p| p.contains("C0THROTTLED"))
        .count();
    assert!(
        throttled_calls > 1,
        "the SDK's own retry ran first ({throttled_calls} calls)"
    );

    let e = r
        .block_on(AwsRoute53Adapter.execute(
            "aws_route53.wait_insync",
            &inputs(&url, json!({"change_id": "C0DENIED"})),
            &ctx(dir.path()),
        ))
        .expect_err("denied");
    assert!(!e.is_transient(), "{e}");
    assert_eq!(e.context.code.as_deref(), Some("AccessDenied"));
    assert!(
        e.to_string().contains("AccessDenied") && e.to_string().contains("check the credentials"),
        "{e}"
    );
}

//! The alert sinks' configuration, payloads and delivery against a receiver run here.

use drover_alerts::{
    Action, Alert, AlertKind, AlertsConfig, DeliveryError, SecretRef, SinkConfig, SinkKind,
    deliver, deliver_with_retry, pagerduty_body, sign, webhook_body,
};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

fn alert() -> Alert {
    Alert {
        key: "drover/run_failed/EHR restore".into(),
        kind: AlertKind::RunFailed,
        summary: "Run failed: EHR restore (run r1, failed): step restore failed: checksum".into(),
        runbook: Some("EHR restore".into()),
        run_id: Some("r1".into()),
        details: BTreeMap::from([("failed step".to_owned(), "restore".to_owned())]),
        since: "2026-12-03T10:00:00Z".into(),
    }
}

#[test]
fn secrets_are_references_only_and_mistakes_are_named() {
    let ok = AlertsConfig::from_toml(
        r#"
[alerts]
approval_wait = "15m"
[[alerts.sink]]
name = "pd"
type = "pagerduty"
routing_key = "env(PD_KEY)"
[[alerts.sink]]
name = "mail"
type = "email"
server = "smtp.example.org:587"
from = "drover@example.org"
to = ["dr@example.org"]
password = "file:/etc/drover/smtp"
"#,
    );
    let ok = ok.expect("a good configuration");
    assert_eq!(ok.approval_wait_ms, 15 * 60_000);
    assert_eq!(ok.sinks.len(), 2);
    assert!(
        matches!(&ok.sinks[0].kind, SinkKind::PagerDuty { routing_key: SecretRef::Env(n), .. } if n == "PD_KEY")
    );
    let bad = |t: &str| {
        AlertsConfig::from_toml(t)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let literal =
        bad("[[alerts.sink]]\nname = \"pd\"\ntype = \"pagerduty\"\nrouting_key = \"R0UTINGKEY\"\n");
    assert!(
        literal.contains("env(NAME)") && !literal.contains("R0UTINGKEY"),
        "{literal}"
    );
    assert!(bad("[[alerts.sink]]\nname = \"x\"\ntype = \"pager\"\n").contains("unknown type"));
    assert!(bad("[[alerts.sink]]\nname = \"x\"\ntype = \"webhook\"\n").contains("needs `url`"));
    assert!(bad("[[alerts.sink]]\nname = \"x\"\ntype = \"webhook\"\nurl = \"http://a\"\n[[alerts.sink]]\nname = \"x\"\ntype = \"webhook\"\nurl = \"http://b\"\n").contains("two sinks"));
    assert!(bad("[alerts]\nbackof = \"1s\"\n").contains("backof"));
    assert!(bad("[alerts]\nbackoff = \"soon\"\n").contains("not a duration"));
}

#[test]
fn pagerduty_trigger_and_resolve_share_the_dedup_key() {
    let a = alert();
    let t = pagerduty_body(&a, Action::Trigger, "KEY", "drover test");
    let r = pagerduty_body(&a, Action::Resolve, "KEY", "drover test");
    assert_eq!(t["event_action"], "trigger");
    assert_eq!(r["event_action"], "resolve");
    assert_eq!(t["dedup_key"], r["dedup_key"]);
    assert_eq!(t["payload"]["severity"], "critical");
    assert_eq!(t["payload"]["component"], "EHR restore");
    assert!(r.get("payload").is_none());
    let long = Alert {
        summary: "é".repeat(2000),
        ..alert()
    };
    let t = pagerduty_body(&long, Action::Trigger, "KEY", "x");
    assert!(
        t["payload"]["summary"]
            .as_str()
            .is_some_and(|s| s.len() <= 1024)
    );
    let w = webhook_body(&a, Action::Trigger, "x");
    assert_eq!(w["event"], "trigger");
    assert_eq!(w["key"], a.key);
    // A known vector, computed by Python's hmac module: HMAC-SHA256("key", "1700000000.{}").
    assert_eq!(
        sign(b"key", 1_700_000_000, b"{}"),
        "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
    );
}

/// Answers each request with the next status of `statuses` (then 202), counting requests.
fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<usize>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let count = Arc::new(Mutex::new(0usize));
    let c = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut len = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let n = {
                let mut g = c.lock().expect("lock");
                *g += 1;
                *g
            };
            let status = statuses.get(n - 1).copied().unwrap_or(202);
            let _ = stream.write_all(
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (url, count)
}

fn hook(url: &str) -> SinkConfig {
    SinkConfig {
        name: "hook".into(),
        kind: SinkKind::Webhook {
            url: url.into(),
            secret: None,
        },
    }
}

#[tokio::test]
async fn failures_that_may_pass_are_retried_with_backoff_and_refusals_are_not() {
    let http = reqwest::Client::new();
    let (url, count) = receiver(vec![500, 503]);
    let waits = Mutex::new(Vec::new());
    let mut seen = Vec::new();
    let r = deliver_with_retry(
        &hook(&url),
        &alert(),
        Action::Trigger,
        "test",
        &http,
        5,
        100,
        || 0,
        |ms| {
            waits.lock().expect("lock").push(ms);
            std::future::ready(())
        },
        |n, r| seen.push((n, r.is_ok())),
    )
    .await;
    assert_eq!(r.as_deref(), Ok("HTTP 202"));
    assert_eq!(*count.lock().expect("lock"), 3);
    assert_eq!(*waits.lock().expect("lock"), [100, 200]);
    assert_eq!(seen, [(1, false), (2, false), (3, true)]);

    let (url, count) = receiver(vec![400]);
    let r = deliver_with_retry(
        &hook(&url),
        &alert(),
        Action::Trigger,
        "test",
        &http,
        5,
        100,
        || 0,
        |_| std::future::ready(()),
        |_, _| {},
    )
    .await;
    assert!(matches!(r, Err(DeliveryError::Refused(_))), "{r:?}");
    assert_eq!(*count.lock().expect("lock"), 1, "a refusal is not retried");
}

#[tokio::test]
async fn an_unreachable_sink_does_not_leak_its_url_or_secret() {
    // A closed port, and a URL that carries a token (as Slack's do).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let file = tempfile_path("slack-url");
    std::fs::write(
        &file,
        format!("http://127.0.0.1:{port}/services/T0/B0/XOXB-SECRET-TOKEN\n"),
    )
    .expect("write");
    let sink = SinkConfig {
        name: "slack".into(),
        kind: SinkKind::Slack {
            url: SecretRef::File(file.clone()),
        },
    };
    let r = deliver(
        &sink,
        &alert(),
        Action::Trigger,
        "test",
        0,
        &reqwest::Client::new(),
    )
    .await;
    let e = r.expect_err("nothing listens");
    assert!(e.retryable());
    assert!(!e.to_string().contains("XOXB-SECRET-TOKEN"), "{e}");
    let _ = std::fs::remove_file(file);
    // A secret that is not there is named by its reference.
    let sink = SinkConfig {
        name: "pd".into(),
        kind: SinkKind::PagerDuty {
            url: "http://127.0.0.1:9/".into(),
            routing_key: SecretRef::Env("DROVER_TEST_NO_SUCH_VARIABLE".into()),
        },
    };
    let e = deliver(
        &sink,
        &alert(),
        Action::Trigger,
        "t",
        0,
        &reqwest::Client::new(),
    )
    .await
    .expect_err("no key");
    assert!(!e.retryable());
    assert!(
        e.to_string().contains("DROVER_TEST_NO_SUCH_VARIABLE"),
        "{e}"
    );
}

fn tempfile_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("drover-alerts-{}-{name}", std::process::id()))
}

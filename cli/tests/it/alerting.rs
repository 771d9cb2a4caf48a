//! Scheduled drills and alerts with real parts: a real `drover server` fires a schedule every
//! few seconds; the drill fails, then passes; the webhook receiver and the PagerDuty-shaped
//! receiver this test runs get the trigger and, with the same dedup key, the resolve; an e-mail
//! reaches a real SMTP server (aiosmtpd, over STARTTLS) and is parsed. No secret of the
//! configuration reaches the journal, the server's output or the e-mail.

use super::server::{free_port, keygen, pause};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

const HOOK_SECRET: &str = "whsec-5f1e0c2a9b7d4e3f8a6c1b0d";
const PD_KEY: &str = "R0UT1NGKEY5ECRET0000000000000000";
const SLACK_TOKEN: &str = "T000/B000/XOXBSLACKSECRET";

/// One HTTP request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    path: String,
    headers: Vec<(String, String)>,
    pub(crate) body: serde_json::Value,
    raw: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 receiver: records each POST, answers 202.
pub(crate) fn receiver() -> (u16, Arc<Mutex<Vec<Received>>>) {
    slow_receiver(0)
}

/// [`receiver`], answering each POST `delay_ms` after it arrived (a slow endpoint keeps a
/// delivery in flight).
pub(crate) fn slow_receiver(delay_ms: u64) -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let sink = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut headers = Vec::new();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim().split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    headers.push((k.trim().to_owned(), v.trim().to_owned()));
                }
            }
            let mut raw = vec![0u8; len];
            if reader.read_exact(&mut raw).is_err() {
                continue;
            }
            let body = serde_json::from_slice(&raw).unwrap_or_default();
            sink.lock().expect("lock").push(Received {
                path,
                headers,
                body,
                raw,
            });
            pause(delay_ms);
            let _ = stream.write_all(
                b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (port, got)
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// aiosmtpd on 127.0.0.1 with STARTTLS required (a certificate made here), delivering to a
/// Maildir; `None` when this machine has no aiosmtpd (CI requires it: DROVER_TEST_REQUIRE_SMTP).
fn smtp(dir: &Path) -> Option<(Kill, u16, PathBuf, PathBuf)> {
    let python = std::env::var("DROVER_TEST_AIOSMTPD").ok();
    if python.is_none() {
        assert!(
            std::env::var_os("DROVER_TEST_REQUIRE_SMTP").is_none(),
            "DROVER_TEST_AIOSMTPD (a python with aiosmtpd) must be set: .ci/test installs it"
        );
        return None;
    }
    let python = python?;
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("cert");
    let (cert_path, key_path) = (dir.join("smtp-cert.pem"), dir.join("smtp-key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("key");
    let maildir = dir.join("maildir");
    let port = free_port();
    let child = Command::new(python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .arg("--tlscert")
        .arg(&cert_path)
        .arg("--tlskey")
        .arg(&key_path)
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("aiosmtpd");
    let k = Kill(child);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((k, port, cert_path, maildir));
        }
        pause(50);
    }
    panic!("aiosmtpd did not start");
}

const RUNBOOK: &str = r#"runbook "Scheduled drill" {
  rto   = 1h
  rpo   = 1h
  modes = [drill]
}

schedule often {
  every = 3s
}

policy {
  drill_every = 1d
}

step probe {
  action = shell
  with {
    command = "test ! -f {{ flag }}"
  }
}

milestone done {
  after     = [probe]
  stops_rto = true
}
"#;

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..secs * 10 {
        if let Some(v) = f() {
            return v;
        }
        pause(100);
    }
    panic!("waited {secs} s for {what}");
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_scheduled_drill_that_fails_then_passes_triggers_and_resolves_its_alert_everywhere() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (alice, public) = keygen(d, "alice");
    std::fs::write(
        d.join("operators.toml"),
        format!("[operators.alice]\nroles = [\"incident-commander\"]\nkeys = [\"{public}\"]\n"),
    )
    .expect("roster");
    let flag = d.join("fail.flag");
    std::fs::write(&flag, "the drill fails while this exists").expect("flag");
    std::fs::create_dir(d.join("runbooks")).expect("dir");
    std::fs::write(
        d.join("runbooks/drill.drover"),
        RUNBOOK.replace("{{ flag }}", &flag.display().to_string()),
    )
    .expect("runbook");
    let (hport, hooks) = receiver();
    let mail = smtp(d);
    let mut config = format!(
        r#"[alerts]
attempts = 3
backoff = "200ms"

[[alerts.sink]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:{hport}/hook"
secret = "env(DROVER_TEST_HOOK_SECRET)"

[[alerts.sink]]
name = "pd"
type = "pagerduty"
url = "http://127.0.0.1:{hport}/pd"
routing_key = "file:{}"

[[alerts.sink]]
name = "slack"
type = "slack"
url = "file:{}"
"#,
        d.join("pd.key").display(),
        d.join("slack.url").display()
    );
    // A Slack incoming-webhook URL is a credential: kept in a file, never in the configuration.
    std::fs::write(
        d.join("slack.url"),
        format!("http://127.0.0.1:{hport}/slack/{SLACK_TOKEN}\n"),
    )
    .expect("slack url");
    std::fs::write(d.join("pd.key"), format!("{PD_KEY}\n")).expect("pd key");
    if let Some((_, port, cert, _)) = &mail {
        config.push_str(&format!(
            "\n[[alerts.sink]]\nname = \"mail\"\ntype = \"email\"\nserver = \"localhost:{port}\"\nfrom = \"drover@example.org\"\nto = [\"dr-team@example.org\"]\nca = \"{}\"\n",
            cert.display()
        ));
    }
    std::fs::write(d.join("server.toml"), &config).expect("config");

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(d.join("server.log")).expect("log");
    let err = log.try_clone().expect("log");
    let server = Kill(
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--operators", "operators.toml", "--runbooks", "runbooks"])
            .args(["--config", "server.toml"])
            .env("DROVER_TEST_HOOK_SECRET", HOOK_SECRET)
            .env("RUST_LOG", "info")
            .current_dir(d)
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("drover server"),
    );
    wait_for("the server", 20, || {
        reqwest::blocking::get(format!("{base}/healthz"))
            .ok()
            .filter(|r| r.status().is_success())
    });

    let key = "drover/run_failed/Scheduled drill";
    let of = |path: &str, event: &str, k: &str| -> Option<Received> {
        hooks
            .lock()
            .expect("lock")
            .iter()
            .find(|r| {
                r.path == path
                    && (r.body["event"] == event || r.body["event_action"] == event)
                    && (r.body["key"] == k || r.body["dedup_key"] == k)
            })
            .cloned()
    };
    // The first scheduled drill fails: both receivers get the trigger.
    let hook = wait_for("the webhook's trigger", 60, || of("/hook", "trigger", key));
    let pd = wait_for("PagerDuty's trigger", 30, || of("/pd", "trigger", key));
    assert_eq!(hook.body["kind"], "run_failed");
    assert_eq!(hook.body["severity"], "critical");
    assert!(
        hook.body["summary"]
            .as_str()
            .is_some_and(|s| s.contains("Scheduled drill") && s.contains("probe")),
        "{}",
        hook.body
    );
    let run = hook.body["run_id"].as_str().expect("run id").to_owned();
    // The signature: HMAC-SHA256 over "TIMESTAMP.BODY" with the secret the server read from its
    // environment.
    let ts = hook.header("x-drover-timestamp").expect("timestamp");
    let sig = hook.header("x-drover-signature").expect("signature");
    {
        use hmac::Mac;
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).expect("hmac");
        mac.update(format!("{ts}.").as_bytes());
        mac.update(&hook.raw);
        assert_eq!(
            sig,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
    }
    let slack = wait_for("Slack's message", 30, || {
        hooks
            .lock()
            .expect("lock")
            .iter()
            .find(|r| {
                r.path.starts_with("/slack/")
                    && r.body["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("FIRING") && t.contains(key))
            })
            .cloned()
    });
    let said = slack.body["text"].as_str().unwrap_or("");
    assert!(
        said.contains("Run failed: Scheduled drill") && said.contains(key),
        "{said}"
    );
    assert_eq!(pd.body["routing_key"], PD_KEY);
    assert_eq!(pd.body["payload"]["severity"], "critical");
    assert_eq!(pd.body["payload"]["class"], "run_failed");
    assert!(
        pd.body["payload"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("Scheduled drill"))
    );
    // The run was started by the schedule, not by a person.
    let token = super::server::login(&base, &alice);
    let http = reqwest::blocking::Client::new();
    let status: serde_json::Value = http
        .get(format!("{base}/api/v1/runs/{run}"))
        .bearer_auth(&token)
        .send()
        .and_then(reqwest::blocking::Response::json)
        .expect("status");
    assert_eq!(status["record"]["initiator"], "schedule:often", "{status}");

    // The e-mail: subject names the runbook and the failure; no secret anywhere in it.
    if let Some((_, _, _, maildir)) = &mail {
        let text = wait_for("the e-mail", 30, || {
            files_under(&maildir.join("new"))
                .into_iter()
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .find(|t| t.contains("Run failed"))
        });
        let subject = text
            .lines()
            .find(|l| l.starts_with("Subject:"))
            .expect("a subject");
        assert!(subject.contains("FIRING"), "{subject}");
        assert!(subject.contains("Run failed: Scheduled drill"), "{subject}");
        assert!(
            text.contains("probe"),
            "the body names the failed step:\n{text}"
        );
        assert!(
            !text.contains(HOOK_SECRET) && !text.contains(PD_KEY),
            "{text}"
        );
    }

    // Fixed: the next scheduled drill passes, and the same keys resolve.
    std::fs::remove_file(&flag).expect("unflag");
    wait_for("the webhook's resolve", 60, || of("/hook", "resolve", key));
    wait_for("PagerDuty's resolve", 30, || of("/pd", "resolve", key));
    let pd_resolve = of("/pd", "resolve", key).expect("resolve");
    assert_eq!(pd_resolve.body["dedup_key"], pd.body["dedup_key"]);
    // The drill was overdue (never done) until that success: triggered, then resolved.
    let overdue = "drover/drill_overdue/drill.drover";
    assert!(of("/hook", "trigger", overdue).is_some());
    wait_for("the overdue alert's resolve", 30, || {
        of("/hook", "resolve", overdue)
    });
    // Deduplicated: one trigger per key per receiver, however many times the loop looked.
    let triggers = hooks
        .lock()
        .expect("lock")
        .iter()
        .filter(|r| r.path == "/hook" && r.body["key"] == key && r.body["event"] == "trigger")
        .count();
    assert_eq!(triggers, 1);

    // `drover alerts list` reads what was delivered; a test delivery goes through the API.
    let test: serde_json::Value = http
        .post(format!("{base}/api/v1/alerts/test"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "sink": "hook" }))
        .send()
        .and_then(reqwest::blocking::Response::json)
        .expect("test");
    assert_eq!(test["delivered"], true, "{test}");
    wait_for("the test alert", 10, || {
        hooks
            .lock()
            .expect("lock")
            .iter()
            .find(|r| r.body["kind"] == "test")
            .cloned()
    });
    let listed: serde_json::Value = http
        .get(format!("{base}/api/v1/alerts"))
        .bearer_auth(&token)
        .send()
        .and_then(reqwest::blocking::Response::json)
        .expect("alerts");
    assert_eq!(
        listed["sinks"].as_array().map(Vec::len),
        Some(if mail.is_some() { 4 } else { 3 })
    );
    assert!(
        listed["alerts"].as_array().is_some_and(|a| a
            .iter()
            .any(|x| x["key"] == key && x["state"] == "resolved")),
        "{listed}"
    );
    drop(server);
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["alerts", "list", "--state", ".drover", "--format", "json"])
        .current_dir(d)
        .output()
        .expect("alerts list");
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let failed = list["alerts"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["key"] == key))
        .expect("the run_failed alert");
    assert_eq!(failed["state"], "resolved");
    let sinks = failed["sinks"].as_array().expect("sinks");
    assert!(
        sinks
            .iter()
            .any(|s| s["sink"] == "pd" && s["delivered"] == "resolve")
    );

    // No secret of the configuration in the journal, the audit logs or the server's output.
    for f in files_under(d)
        .into_iter()
        .filter(|p| p.starts_with(d.join(".drover")) || p.ends_with("server.log"))
    {
        let bytes = std::fs::read(&f).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(HOOK_SECRET),
            "{} holds the webhook secret",
            f.display()
        );
        assert!(
            !text.contains(PD_KEY),
            "{} holds the routing key",
            f.display()
        );
    }
}

fn drover_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("drover runs")
}

const POLICED: &str = r#"runbook "Policed drill" {
  rto   = 1h
  rpo   = 1h
  modes = [drill]
}

schedule monthly {
  cron     = "0 9 1 * *"
  timezone = "Europe/Berlin"
}

policy {
  drill_every = 30d
}

step probe {
  action = wait
  with { duration = 1ms }
}

milestone done {
  after     = [probe]
  stops_rto = true
}
"#;

#[test]
fn posture_drills_exits_3_while_a_runbook_is_overdue_and_0_once_it_is_drilled() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::create_dir(d.join("runbooks")).expect("dir");
    std::fs::write(d.join("runbooks/policed.drover"), POLICED).expect("runbook");

    // Never drilled: overdue, exit 3, in every format.
    let md = drover_in(d, &["posture", "drills"]);
    assert_eq!(
        md.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&md.stderr)
    );
    let text = String::from_utf8_lossy(&md.stdout);
    assert!(
        text.contains("| Policed drill | drill every 30d | never |"),
        "{text}"
    );
    assert!(text.contains("OVERDUE"), "{text}");
    let json = drover_in(d, &["posture", "drills", "--format", "json"]);
    assert_eq!(json.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["overdue"], 1);
    assert_eq!(v["runbooks"][0]["overdue"], true);
    assert!(v["runbooks"][0]["next_scheduled"].as_str().is_some());

    // A successful drill: no longer overdue; the last success carries RTO against its target.
    let run = drover_in(d, &["run", "runbooks/policed.drover", "--mode", "drill"]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json = drover_in(d, &["posture", "drills", "--format", "json"]);
    assert_eq!(
        json.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let p = &v["runbooks"][0];
    assert_eq!(p["overdue"], false);
    assert_eq!(p["days_until_overdue"], 29);
    assert_eq!(p["last_success"]["rto_target_ms"], 3_600_000);
    assert_eq!(p["last_success"]["rto_met"], true);
    assert!(
        p["last_success"]["report"]
            .as_str()
            .is_some_and(|r| r.starts_with("drover report "))
    );

    // The HTML calendar: 24 months, the success marked in this month.
    let html = drover_in(
        d,
        &[
            "posture",
            "drills",
            "--format",
            "html",
            "-o",
            "posture.html",
        ],
    );
    assert_eq!(html.status.code(), Some(0));
    let page = std::fs::read_to_string(d.join("posture.html")).expect("html");
    assert_eq!(page.matches("<td class=").count(), 24, "one cell per month");
    assert!(
        page.contains("title=\"1 successful\""),
        "the drill is on the calendar"
    );
    assert!(
        page.contains("title=\"1 scheduled\""),
        "the monthly schedule is on the calendar"
    );
}

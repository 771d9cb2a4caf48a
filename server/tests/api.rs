//! The server through real HTTP on 127.0.0.1: SSH-key logins (real `ssh-keygen` keys), every
//! endpoint closed without a token, two operators on one run (four eyes by roster operator), and
//! live events that a client resumes with `Last-Event-ID`.

#[path = "browser/cdp.rs"]
mod cdp;
#[path = "browser/console.rs"]
mod console_browser;
#[path = "browser/tabletop.rs"]
mod tabletop_browser;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(format!("{name}_key"));
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen (openssh-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    (path, public.trim().to_owned())
}

const RUNBOOK: &str = r#"runbook "signed cutover" {
  rto   = 1h
  rpo   = 1h
  modes = [drill]
}

step gate {
  action = approval
  with {
    prompt = "cut over?"
    roles  = ["incident-commander"]
  }
}

step cut {
  action = shell
  after  = [gate]
  with {
    command = "echo cut"
  }
}

milestone done {
  after     = [cut]
  stops_rto = true
}
"#;

fn adapters() -> drover_engine::driver::Adapters {
    let sink: drover_adapters::local::NotifySink = Arc::new(|_: &str| {});
    drover_adapters::builtin_adapters(sink).into_iter().fold(
        drover_engine::driver::Adapters::default(),
        drover_engine::driver::Adapters::with,
    )
}

/// The server's state for the directory `d` (roster, runbooks, state) a test set up.
fn app_on(d: &Path) -> Arc<drover_server::App> {
    drover_server::App::new(
        drover_server::Config {
            replica: Default::default(),
            alerts: drover_alerts::AlertsConfig::default(),
            state: d.join("state"),
            operators: d.join("operators.toml"),
            runbooks: d.join("runbooks"),
            name: "test".into(),
            evidence_key: None,
        },
        adapters,
    )
    .expect("app")
}

struct Server {
    base: String,
    dir: tempfile::TempDir,
    keys: std::collections::BTreeMap<String, PathBuf>,
    http: reqwest::Client,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let mut keys = std::collections::BTreeMap::new();
    let mut roster = String::new();
    for name in ["alice", "bob", "carol"] {
        let (k, public) = keygen(d, name);
        roster.push_str(&format!(
            "[operators.{name}]\nroles = [\"incident-commander\"]\nkeys = [\"{public}\"]\n"
        ));
        keys.insert(name.to_owned(), k);
    }
    let (mallory, _) = keygen(d, "mallory");
    keys.insert("mallory".into(), mallory);
    std::fs::write(d.join("operators.toml"), roster).expect("roster");
    std::fs::create_dir(d.join("runbooks")).expect("runbooks");
    std::fs::write(d.join("runbooks/cutover.drover"), RUNBOOK).expect("runbook");
    let app = app_on(d);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(drover_server::serve(
        app,
        listener,
        None,
        true,
        std::future::pending(),
    ));
    Server {
        base,
        dir,
        keys,
        http: reqwest::Client::new(),
    }
}

impl Server {
    async fn login(&self, who: &str) -> reqwest::Response {
        self.login_on(&self.base, who).await
    }

    /// Logs `who` in to the server at `base` (another one than this test's, on the same state).
    async fn login_on(&self, base: &str, who: &str) -> reqwest::Response {
        let c: serde_json::Value = self
            .http
            .post(format!("{base}/api/v1/login/challenge"))
            .send()
            .await
            .expect("challenge")
            .json()
            .await
            .expect("json");
        let challenge = c["challenge"].as_str().expect("challenge").to_owned();
        let sig = drover_identity::sign::with_key_file_in(
            drover_identity::LOGIN_NAMESPACE,
            &self.keys[who],
            &challenge,
        )
        .expect("sign");
        self.http
            .post(format!("{base}/api/v1/login"))
            .json(&serde_json::json!({ "challenge": challenge, "signature": sig }))
            .send()
            .await
            .expect("login")
    }

    async fn token(&self, who: &str) -> String {
        let r = self.login(who).await;
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["operator"], who);
        v["token"].as_str().expect("token").to_owned()
    }

    async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("get")
    }

    async fn post(&self, token: &str, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("post")
    }

    fn sign(&self, who: &str, statement: &str) -> String {
        drover_identity::sign::with_key_file(&self.keys[who], statement).expect("sign")
    }

    async fn decide(&self, token: &str, who: &str, run: &str) -> reqwest::Response {
        let s: serde_json::Value = self
            .get(token, &format!("/api/v1/runs/{run}/steps/gate/statement"))
            .await
            .json()
            .await
            .expect("statement");
        let statement = s["statement"].as_str().expect("statement").to_owned();
        let signature = self.sign(who, &statement);
        self.post(
            token,
            &format!("/api/v1/runs/{run}/steps/gate/decisions"),
            serde_json::json!({ "statement": statement, "signature": signature }),
        )
        .await
    }

    async fn status(&self, token: &str, run: &str) -> serde_json::Value {
        self.get(token, &format!("/api/v1/runs/{run}"))
            .await
            .json()
            .await
            .expect("status")
    }
}

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let clock = drover_engine::clock::SystemClock;
    for _ in 0..400 {
        if f().await {
            return;
        }
        drover_engine::clock::Clock::sleep(&clock, 25).await;
    }
    panic!("timed out waiting for {what}");
}

/// Reads a run's event stream until `end` (or until `stop_after` events): `(id, event name)`.
async fn events(
    s: &Server,
    token: &str,
    run: &str,
    last: Option<usize>,
    stop_after: Option<usize>,
) -> Vec<(Option<usize>, String)> {
    stream(
        s,
        token,
        &format!("/api/v1/runs/{run}/events"),
        last,
        stop_after,
    )
    .await
    .into_iter()
    .map(|(id, name, _)| (id, name))
    .collect()
}

/// Reads an event stream until `end` (or until `stop_after` events): `(id, event name, data)`.
async fn stream(
    s: &Server,
    token: &str,
    path: &str,
    last: Option<usize>,
    stop_after: Option<usize>,
) -> Vec<(Option<usize>, String, String)> {
    use futures_util::StreamExt;
    let mut rq = s.http.get(format!("{}{path}", s.base)).bearer_auth(token);
    if let Some(l) = last {
        rq = rq.header("Last-Event-ID", l.to_string());
    }
    let resp = rq.send().await.expect("events");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            let mut id = None;
            let mut name = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if block.lines().all(|l| l.starts_with(':') || l.is_empty()) {
                continue; // a heartbeat
            }
            out.push((id, name.clone(), data));
            if name == "end" || stop_after.is_some_and(|n| out.len() >= n) {
                return out;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_answers_without_a_live_token() {
    let s = server().await;
    let ok = s
        .http
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(ok.status(), 200);
    let endpoints = [
        ("GET", "/api/v1/session"),
        ("DELETE", "/api/v1/session"),
        ("GET", "/api/v1/runbooks"),
        ("GET", "/api/v1/runs"),
        ("POST", "/api/v1/runs"),
        ("POST", "/api/v1/runs/prepare"),
        ("GET", "/api/v1/runs/r1"),
        ("GET", "/api/v1/runs/r1/events"),
        ("GET", "/api/v1/events"),
        ("POST", "/api/v1/console/link"),
        ("GET", "/api/v1/passkeys"),
        ("POST", "/api/v1/passkeys"),
        ("POST", "/api/v1/passkeys/options"),
        ("POST", "/api/v1/passkeys/abc/confirm"),
        ("POST", "/api/v1/runs/r1/interrupt"),
        ("POST", "/api/v1/runs/r1/resume"),
        ("GET", "/api/v1/runs/r1/evidence"),
        ("GET", "/api/v1/runs/r1/report"),
        ("GET", "/api/v1/runs/r1/audit"),
        ("GET", "/api/v1/runs/r1/steps/gate/statement"),
        ("POST", "/api/v1/runs/r1/steps/gate/decisions"),
        ("GET", "/metrics"),
    ];
    let alice = s.token("alice").await;
    let gone = s.token("alice").await;
    let r = s
        .http
        .delete(format!("{}/api/v1/session", s.base))
        .bearer_auth(&gone)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 204);
    for token in [None, Some("not-a-token".to_owned()), Some(gone.clone())] {
        for (method, path) in endpoints {
            let mut rq = s
                .http
                .request(method.parse().expect("method"), format!("{}{path}", s.base));
            if let Some(t) = &token {
                rq = rq.bearer_auth(t);
            }
            let r = rq.send().await.expect("request");
            assert_eq!(r.status(), 401, "{method} {path} with {token:?}");
            let v: serde_json::Value = r.json().await.expect("json error");
            assert_eq!(v["code"], "unauthorized");
        }
    }
    // The live token still works.
    let who: serde_json::Value = s
        .get(&alice, "/api/v1/session")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(who["operator"], "alice");

    // A key outside the roster cannot log in; a challenge is answered once.
    assert_eq!(s.login("mallory").await.status(), 401);
    let c: serde_json::Value = s
        .http
        .post(format!("{}/api/v1/login/challenge", s.base))
        .send()
        .await
        .expect("challenge")
        .json()
        .await
        .expect("json");
    let challenge = c["challenge"].as_str().expect("challenge");
    let sig = drover_identity::sign::with_key_file_in(
        drover_identity::LOGIN_NAMESPACE,
        &s.keys["bob"],
        challenge,
    )
    .expect("sign");
    let body = serde_json::json!({ "challenge": challenge, "signature": sig });
    let first = s
        .http
        .post(format!("{}/api/v1/login", s.base))
        .json(&body)
        .send()
        .await
        .expect("login");
    assert_eq!(first.status(), 200);
    let again = s
        .http
        .post(format!("{}/api/v1/login", s.base))
        .json(&body)
        .send()
        .await
        .expect("login");
    assert_eq!(again.status(), 401, "a challenge is used once");
    // A statement signature (namespace drover) is not a login.
    let c: serde_json::Value = s
        .http
        .post(format!("{}/api/v1/login/challenge", s.base))
        .send()
        .await
        .expect("challenge")
        .json()
        .await
        .expect("json");
    let challenge = c["challenge"].as_str().expect("challenge");
    let wrong_ns = s.sign("bob", challenge);
    let r = s
        .http
        .post(format!("{}/api/v1/login", s.base))
        .json(&serde_json::json!({ "challenge": challenge, "signature": wrong_ns }))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 401);

    // Unknown fields and oversized bodies are refused with the JSON error.
    let r = s
        .post(
            &alice,
            "/api/v1/runs/prepare",
            serde_json::json!({ "runbook": "cutover.drover", "as": "bob" }),
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["code"], "bad_request");
    let big = "x".repeat(drover_server::BODY_LIMIT + 1);
    let r = s
        .post(
            &alice,
            "/api/v1/runs/prepare",
            serde_json::json!({ "runbook": big }),
        )
        .await;
    assert_eq!(r.status(), 413);
    // Logins and refusals are audited in the state directory.
    let j = drover_engine::journal::SqliteJournal::open_read_only(&s.dir.path().join("state"))
        .expect("journal");
    let log = drover_engine::journal::Journal::audit(&j, drover_server::SERVER_LOG).expect("log");
    let text: String = log.iter().map(|(_, r, _)| r.as_str()).collect();
    assert!(
        text.contains("\"outcome\":\"refused\"") && text.contains("\"operator\":\"alice\""),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_one_run_four_eyes_and_resumable_events() {
    let s = server().await;
    let alice = s.token("alice").await;
    let bob = s.token("bob").await;
    let books: serde_json::Value = s
        .get(&alice, "/api/v1/runbooks")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(books["runbooks"], serde_json::json!(["cutover.drover"]));

    let prep: serde_json::Value = s
        .post(
            &alice,
            "/api/v1/runs/prepare",
            serde_json::json!({ "runbook": "cutover.drover" }),
        )
        .await
        .json()
        .await
        .expect("prepare");
    let run = prep["run_id"].as_str().expect("run id").to_owned();
    let statement = prep["statement"].as_str().expect("statement").to_owned();
    // bob cannot start with alice's signature while logged in as himself, nor the other way.
    let start = |token: String, who: &'static str| {
        let body = serde_json::json!({
            "runbook": "cutover.drover",
            "run_id": run.clone(),
            "statement": statement.clone(),
            "signature": s.sign(who, &statement),
        });
        let s = &s;
        async move { s.post(&token, "/api/v1/runs", body).await }
    };
    assert_eq!(start(bob.clone(), "alice").await.status(), 403);
    let started = start(alice.clone(), "alice").await;
    assert_eq!(started.status(), 202);

    wait_for("the gate", async || {
        let v = s.status(&alice, &run).await;
        v["record"]["steps"].as_array().is_some_and(|st| {
            st.iter()
                .any(|x| x["id"] == "gate" && x["state"] == "awaiting_approval")
        })
    })
    .await;
    // A first look at the live events: the client goes away after the first.
    let first = events(&s, &alice, &run, None, Some(1)).await;
    assert_eq!(first.len(), 1);
    let seen = first.last().and_then(|(id, _)| *id).expect("an id");

    // alice started the run: her own approval is refused, by the roster operator who signed.
    let own = s.decide(&alice, "alice", &run).await;
    assert_eq!(own.status(), 403);
    let v: serde_json::Value = own.json().await.expect("json");
    let st = s.status(&alice, &run).await;
    assert_eq!(st["status"], "waiting", "{st}");
    assert_eq!(v["code"], "refused");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("four eyes")),
        "{v}"
    );
    // bob, logged in, signs with alice's key: the statement says alice, and alice is refused.
    let r = s.decide(&bob, "alice", &run).await;
    assert_eq!(r.status(), 403);
    let ok = s.decide(&bob, "bob", &run).await;
    assert_eq!(ok.status(), 200);
    let v: serde_json::Value = ok.json().await.expect("json");
    assert_eq!(v["operator"], "bob");
    assert_eq!(v["signed"], true);

    wait_for("the end of the run", async || {
        !matches!(
            s.status(&alice, &run).await["status"].as_str(),
            Some("running" | "waiting")
        )
    })
    .await;
    assert_eq!(
        s.status(&alice, &run).await["record"]["outcome"],
        "succeeded"
    );

    // Reconnecting after the second event gets every later one, none twice, then `end`.
    let rest = events(&s, &bob, &run, Some(seen), None).await;
    assert_eq!(rest.last().map(|(_, n)| n.as_str()), Some("end"));
    let mut ids: Vec<usize> = first
        .iter()
        .chain(&rest)
        .filter_map(|(id, _)| *id)
        .collect();
    let journal =
        drover_engine::journal::SqliteJournal::open_read_only(&s.dir.path().join("state"))
            .expect("journal");
    let n = drover_engine::journal::Journal::transitions(&journal, &run)
        .expect("transitions")
        .len();
    assert_eq!(
        ids,
        (1..=n).collect::<Vec<_>>(),
        "the client's events are the journal's"
    );
    ids.dedup();
    assert_eq!(ids.len(), n);

    // The report and the audit of a server-driven run.
    let html = s
        .get(&alice, &format!("/api/v1/runs/{run}/report"))
        .await
        .text()
        .await
        .expect("report");
    assert!(html.contains("bob"), "the approver is in the report");
    let audit: serde_json::Value = s
        .get(&alice, &format!("/api/v1/runs/{run}/audit"))
        .await
        .json()
        .await
        .expect("audit");
    assert_eq!(audit["intact"], true);
    let metrics = s
        .get(&alice, "/metrics")
        .await
        .text()
        .await
        .expect("metrics");
    assert!(
        metrics.contains("drover_runs{status=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("drover_step_duration_seconds{runbook=\"signed cutover\",step=\"cut\"}"),
        "{metrics}"
    );

    // A finished run is not interrupted; this server has no evidence key.
    let r = s
        .post(
            &alice,
            &format!("/api/v1/runs/{run}/interrupt"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status(), 409);
    let r = s.get(&alice, &format!("/api/v1/runs/{run}/evidence")).await;
    assert_eq!(r.status(), 409);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["code"], "not_configured");

    // The all-runs stream from the start: one event, then a reconnection with the last id
    // gets the rest, none twice; with the run they belong to, in the journal's order.
    let all = drover_engine::journal::Journal::transitions(&journal, &run).expect("transitions");
    assert!(all.len() >= 2, "{all:?}");
    let head = stream(&s, &bob, "/api/v1/events?after=0", None, Some(1)).await;
    let first_id = head.last().and_then(|(id, _, _)| *id).expect("an id");
    let tail = stream(
        &s,
        &bob,
        "/api/v1/events",
        Some(first_id),
        Some(all.len() - 1),
    )
    .await;
    let got: Vec<(usize, serde_json::Value)> = head
        .iter()
        .chain(&tail)
        .map(|(id, name, data)| {
            assert_eq!(name, "transition");
            (
                id.expect("an id"),
                serde_json::from_str(data).expect("json data"),
            )
        })
        .collect();
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");
    assert!(got.iter().all(|(_, d)| d["run_id"] == run.as_str()));
    let events: Vec<&serde_json::Value> = got.iter().map(|(_, d)| &d["event"]).collect();
    let journaled: Vec<serde_json::Value> = all
        .iter()
        .map(|t| serde_json::to_value(&t.event).expect("event"))
        .collect();
    assert_eq!(
        events,
        journaled.iter().collect::<Vec<_>>(),
        "the all-runs stream is the journal's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_a_browser_in_from_a_cli_session_and_guards_its_changes() {
    let s = server().await;
    // The page and its assets are embedded, with a strict content security policy.
    for (path, kind) in [
        ("/console/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .expect("asset");
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(
            h[reqwest::header::CONTENT_TYPE]
                .to_str()
                .is_ok_and(|t| t.starts_with(kind))
        );
        assert!(
            h["content-security-policy"]
                .to_str()
                .is_ok_and(|c| c.contains("script-src 'self'") && !c.contains("unsafe"))
        );
    }
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let who = |cookie: Option<String>| {
        let mut rq = browser.get(format!("{}/console/session", s.base));
        if let Some(c) = cookie {
            rq = rq.header(reqwest::header::COOKIE, c);
        }
        async move {
            rq.send()
                .await
                .expect("session")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        }
    };
    assert_eq!(who(None).await["operator"], serde_json::Value::Null);

    // alice, logged in with her key, makes a one-time link; opening it sets the cookie.
    let alice = s.token("alice").await;
    let link: serde_json::Value = s
        .post(&alice, "/api/v1/console/link", serde_json::json!({}))
        .await
        .json()
        .await
        .expect("link");
    let path = link["path"].as_str().expect("path").to_owned();
    let r = browser
        .get(format!("{}{path}&run=r1", s.base))
        .send()
        .await
        .expect("enter");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/#/runs/r1");
    let set = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    let cookie = set.split(';').next().expect("pair").to_owned();
    let again = browser
        .get(format!("{}{path}", s.base))
        .send()
        .await
        .expect("enter again");
    assert_eq!(again.status(), 401, "a link works once");

    let me = who(Some(cookie.clone())).await;
    assert_eq!(me["operator"], "alice");
    let csrf = me["csrf"].as_str().expect("csrf").to_owned();
    let r = browser
        .get(format!("{}/api/v1/runs", s.base))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .expect("runs");
    assert_eq!(r.status(), 200);

    // A state-changing request on the cookie alone (what a forged cross-site form would send)
    // is refused; with the session's token it goes through.
    let prepare = |token: Option<&str>| {
        let mut rq = browser
            .post(format!("{}/api/v1/runs/prepare", s.base))
            .header(reqwest::header::COOKIE, &cookie)
            .json(&serde_json::json!({ "runbook": "cutover.drover" }));
        if let Some(t) = token {
            rq = rq.header("x-csrf-token", t);
        }
        async move { rq.send().await.expect("prepare") }
    };
    for bad in [None, Some("0123456789abcdef0123456789abcdef")] {
        let r = prepare(bad).await;
        assert_eq!(r.status(), 403);
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["code"], "csrf");
    }
    assert_eq!(prepare(Some(&csrf)).await.status(), 200);

    // Signing out clears the cookie and ends the session.
    let r = browser
        .delete(format!("{}/api/v1/session", s.base))
        .header(reqwest::header::COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .is_ok_and(|c| c.contains("Max-Age=0"))
    );
    let r = browser
        .get(format!("{}/api/v1/runs", s.base))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .expect("runs");
    assert_eq!(r.status(), 401);
}

/// A server told to stop while consoles hold event streams open stops: the streams end (the
/// browsers' EventSource reconnects to whatever serves next) instead of holding the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_server_ends_open_event_streams() {
    let s = server().await;
    let app = app_on(s.dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(drover_server::serve(app, listener, None, true, async {
        let _ = stopped.await;
    }));
    let login: serde_json::Value = s
        .login_on(&base, "alice")
        .await
        .json()
        .await
        .expect("login");
    let token = login["token"].as_str().expect("token").to_owned();
    let mut open = Vec::new();
    for path in ["/api/v1/events", "/api/v1/events?after=0"] {
        let r = s
            .http
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("stream");
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    stop.send(()).expect("stop");
    // The streams are still held open by this client: the server must end them itself.
    let done = tokio::time::timeout(std::time::Duration::from_secs(30), served).await;
    assert!(
        matches!(done, Ok(Ok(Ok(())))),
        "the server did not stop with event streams open: {done:?}"
    );
    drop(open);
}

/// A tabletop interrupted and resumed through the API goes on simulated, still under its
/// facilitator's control (pause), and never with the server's real actions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_tabletop_stays_simulated_and_facilitated() {
    let s = server().await;
    let alice = s.token("alice").await;
    let prep: serde_json::Value = s
        .post(
            &alice,
            "/api/v1/runs/prepare",
            serde_json::json!({ "runbook": "cutover.drover" }),
        )
        .await
        .json()
        .await
        .expect("prepare");
    let run = prep["run_id"].as_str().expect("run").to_owned();
    let statement = prep["statement"].as_str().expect("statement").to_owned();
    let started = s
        .post(
            &alice,
            "/api/v1/tabletops",
            serde_json::json!({
                "runbook": "cutover.drover",
                "run_id": run,
                "statement": statement,
                "signature": s.sign("alice", &statement),
            }),
        )
        .await;
    assert_eq!(started.status(), 202);
    wait_for("the gate", async || {
        let v = s.status(&alice, &run).await;
        v["record"]["steps"].as_array().is_some_and(|st| {
            st.iter()
                .any(|x| x["id"] == "gate" && x["state"] == "awaiting_approval")
        })
    })
    .await;
    let control = |action: &'static str| {
        let (s, alice, run) = (&s, alice.clone(), run.clone());
        async move {
            s.post(
                &alice,
                &format!("/api/v1/runs/{run}/tabletop"),
                serde_json::json!({ "action": action }),
            )
            .await
            .status()
        }
    };
    let interrupted = s
        .post(
            &alice,
            &format!("/api/v1/runs/{run}/interrupt"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(interrupted.status(), 202);
    wait_for("the tabletop interrupted", async || {
        s.status(&alice, &run).await["status"] == "interrupted"
    })
    .await;
    // The journal says "interrupted" a moment before the driving task lets go of it.
    wait_for("nothing to drive it (409)", async || {
        control("pause").await == 409
    })
    .await;
    let resumed = s
        .post(
            &alice,
            &format!("/api/v1/runs/{run}/resume"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(resumed.status(), 202);
    assert_eq!(
        control("pause").await,
        200,
        "the facilitator controls it again"
    );
    let v = s.status(&alice, &run).await;
    assert_eq!(v["record"]["simulated"], true);
    assert_eq!(v["tabletop"]["paused"], true);
    assert_eq!(v["tabletop"]["driven_here"], true);
}

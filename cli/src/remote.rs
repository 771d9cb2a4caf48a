//! The CLI as a client of `drover server` (`--server URL` or `DROVER_SERVER`): `drover login`
//! proves possession of a roster SSH key and keeps the token it gets (mode 0600, in the user's
//! config directory); `run`, `approve` and `status` then talk to the server. Statements are
//! still signed here, with the operator's own key: the server verifies them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where tokens are kept: `$DROVER_CONFIG_DIR`, else `$XDG_CONFIG_HOME/drover`, else
/// `~/.config/drover`.
fn config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DROVER_CONFIG_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
        return PathBuf::from(d).join("drover");
    }
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".config/drover")
}

fn sessions_file() -> PathBuf {
    config_dir().join("sessions.json")
}

fn read_sessions() -> serde_json::Map<String, serde_json::Value> {
    std::fs::read(sessions_file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_sessions(s: &serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
    use std::io::Write;
    let dir = config_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = sessions_file();
    let tmp = path.with_extension("json.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(serde_json::Value::Object(s.clone()).to_string().as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
}

fn base(server: &str) -> String {
    server.trim_end_matches('/').to_owned()
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap_or_else(|_| reqwest::blocking::Client::new())
}

/// A request's JSON answer, or the server's error message.
fn answer(r: reqwest::Result<reqwest::blocking::Response>) -> Result<serde_json::Value, String> {
    let r = r.map_err(|e| format!("cannot reach the server: {}", e.without_url()))?;
    let status = r.status();
    let v: serde_json::Value = r.json().unwrap_or_default();
    if status.is_success() {
        Ok(v)
    } else {
        Err(format!(
            "{} ({})",
            v["message"].as_str().unwrap_or("the server refused"),
            v["code"].as_str().unwrap_or(status.as_str())
        ))
    }
}

/// Signs `text` under `namespace` with `key`, or the first ssh-agent key.
fn sign(namespace: &str, text: &str, key: Option<&Path>) -> Result<String, String> {
    match key {
        Some(k) => {
            drover_identity::sign::with_key_file_in(namespace, k, text).map_err(|e| e.to_string())
        }
        None => {
            let mut agent = drover_identity::agent::Agent::from_env()
                .map_err(|e| format!("{e}; or give --key PATH"))?;
            agent
                .sign_with_first_in(namespace, text, |_| true)
                .map_err(|e| e.to_string())
        }
    }
}

/// `drover login --server URL`.
pub fn login(server: &str, key: Option<&Path>) -> ExitCode {
    let url = base(server);
    let c = match answer(http().post(format!("{url}/api/v1/login/challenge")).send()) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let challenge = c["challenge"].as_str().unwrap_or_default();
    let signature = match sign(drover_identity::LOGIN_NAMESPACE, challenge, key) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot sign the login challenge: {e}")),
    };
    let v = match answer(
        http()
            .post(format!("{url}/api/v1/login"))
            .json(&serde_json::json!({ "challenge": challenge, "signature": signature }))
            .send(),
    ) {
        Ok(v) => v,
        Err(e) => return fail(&format!("login refused: {e}")),
    };
    let mut s = read_sessions();
    s.insert(url.clone(), v.clone());
    if let Err(e) = write_sessions(&s) {
        return fail(&format!("cannot keep the token: {e}"));
    }
    outln!(
        "logged in to {url} as {} until {}",
        v["operator"].as_str().unwrap_or("?"),
        v["expires_at"].as_str().unwrap_or("?")
    );
    ExitCode::SUCCESS
}

fn fail(e: &str) -> ExitCode {
    errln!("error: {e}");
    ExitCode::FAILURE
}

fn token(url: &str) -> Result<String, String> {
    read_sessions()
        .get(url)
        .and_then(|v| v["token"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("not logged in to {url}: drover login --server {url}"))
}

fn get(url: &str, path: &str) -> Result<serde_json::Value, String> {
    let t = token(url)?;
    answer(http().get(format!("{url}{path}")).bearer_auth(t).send())
}

fn post(url: &str, path: &str, body: &serde_json::Value) -> Result<serde_json::Value, String> {
    let t = token(url)?;
    answer(
        http()
            .post(format!("{url}{path}"))
            .bearer_auth(t)
            .json(body)
            .send(),
    )
}

/// `drover run RUNBOOK --server URL`: the server compiles its runbook, this CLI signs the start.
pub fn run(
    server: &str,
    runbook: &str,
    mode: Option<&str>,
    key: Option<&Path>,
    json: bool,
) -> ExitCode {
    let url = base(server);
    let mut body = serde_json::json!({ "runbook": runbook });
    if let Some(m) = mode {
        body["mode"] = serde_json::json!(m);
    }
    let prep = match post(&url, "/api/v1/runs/prepare", &body) {
        Ok(v) => v,
        Err(e) => return fail(&e),
    };
    let statement = prep["statement"].as_str().unwrap_or_default();
    let signature = match sign(drover_identity::NAMESPACE, statement, key) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot sign the start of the run: {e}")),
    };
    body["run_id"] = prep["run_id"].clone();
    body["statement"] = serde_json::json!(statement);
    body["signature"] = serde_json::json!(signature);
    match post(&url, "/api/v1/runs", &body) {
        Ok(v) => {
            if json {
                outln!("{v}");
            } else {
                let run = v["run_id"].as_str().unwrap_or("?");
                outln!(
                    "run {run} started on {url} by {}; follow it with drover status {run} --server {url}",
                    v["initiator"].as_str().unwrap_or("?")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `drover approve RUN STEP --server URL`: the statement comes from the server, the signature
/// from this machine's key.
pub fn approve(
    server: &str,
    run_id: &str,
    step: &str,
    decision: (&str, Option<&str>),
    totp: Option<&str>,
    key: Option<&Path>,
    json: bool,
) -> ExitCode {
    let url = base(server);
    let mut q = vec![("decision", decision.0.to_owned())];
    if let Some(r) = decision.1 {
        q.push(("reason", r.to_owned()));
    }
    if let Some(t) = totp {
        q.push(("totp", t.trim().to_owned()));
    }
    let query: Vec<String> = q
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    let st = match get(
        &url,
        &format!(
            "/api/v1/runs/{}/steps/{}/statement?{}",
            encode(run_id),
            encode(step),
            query.join("&")
        ),
    ) {
        Ok(v) => v,
        Err(e) => return fail(&e),
    };
    let statement = st["statement"].as_str().unwrap_or_default();
    let signature = match sign(drover_identity::NAMESPACE, statement, key) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot sign the approval: {e}")),
    };
    let mut body = serde_json::json!({
        "statement": statement,
        "signature": signature,
        "decision": decision.0,
    });
    if let Some(r) = decision.1 {
        body["reason"] = serde_json::json!(r);
    }
    match post(
        &url,
        &format!(
            "/api/v1/runs/{}/steps/{}/decisions",
            encode(run_id),
            encode(step)
        ),
        &body,
    ) {
        Ok(v) => {
            if json {
                outln!("{v}");
            } else {
                outln!(
                    "{} of `{step}` by {} recorded for run {run_id} on {url} (signature verified)",
                    decision.0,
                    v["operator"].as_str().unwrap_or("?")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            errln!("refused: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `drover status RUN --server URL`.
pub fn status(server: &str, run_id: &str, json: bool) -> ExitCode {
    let url = base(server);
    match get(&url, &format!("/api/v1/runs/{}", encode(run_id))) {
        Ok(v) => {
            if json {
                outln!("{}", v["record"]);
            } else {
                let r = &v["record"];
                outln!(
                    "run {} ({}, {} mode, started by {}): {}",
                    r["run_id"].as_str().unwrap_or("?"),
                    r["runbook"].as_str().unwrap_or("?"),
                    r["mode"].as_str().unwrap_or("?"),
                    r["initiator"].as_str().unwrap_or("?"),
                    v["status"].as_str().unwrap_or("?")
                );
                for s in r["steps"].as_array().into_iter().flatten() {
                    outln!(
                        "  {:<28} {}",
                        s["id"].as_str().unwrap_or("?"),
                        s["state"].as_str().unwrap_or("?")
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// Percent-encodes a path segment or a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

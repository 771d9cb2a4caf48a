//! The CLI as a client of `drover server` (`--server URL` or `DROVER_SERVER`): `drover login`
//! proves possession of a roster SSH key and keeps the token it gets (mode 0600, in the user's
//! config directory); `run`, `approve`, `status`, `resume`, `interrupt`, `report` and
//! `evidence export` then talk to the server. Statements are still signed here, with the
//! operator's own key: the server verifies them.
//!
//! Over HTTPS, a server whose certificate no public authority vouches for (the self-signed one
//! `drover server` generates) is trusted by its SHA-256 fingerprint: `drover login --fingerprint
//! FP` (or `DROVER_SERVER_FINGERPRINT`) pins it, and the pin is kept with the token.

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

pub(crate) fn base(server: &str) -> String {
    server.trim_end_matches('/').to_owned()
}

/// The certificate fingerprint pinned for `url`: `DROVER_SERVER_FINGERPRINT`, else the one kept
/// at login.
fn pinned(url: &str) -> Option<String> {
    std::env::var("DROVER_SERVER_FINGERPRINT")
        .ok()
        .filter(|f| !f.trim().is_empty())
        .or_else(|| {
            read_sessions()
                .get(url)
                .and_then(|v| v["fingerprint"].as_str())
                .map(str::to_owned)
        })
}

/// A client for `url`: with a pinned fingerprint, the server's certificate must have it (and
/// nothing else is checked of it); without one, the usual web PKI.
fn http_for(pin: Option<&str>) -> Result<reqwest::blocking::Client, String> {
    let b = reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(60));
    let b = match pin {
        None => b,
        Some(fp) => b.use_preconfigured_tls(crate::pin::client_config(fp)?),
    };
    b.build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))
}

fn http(url: &str) -> Result<reqwest::blocking::Client, String> {
    http_for(pinned(url).as_deref())
}

/// A request's JSON answer, or the server's error message.
fn answer(r: reqwest::Result<reqwest::blocking::Response>) -> Result<serde_json::Value, String> {
    let r = checked(r)?;
    let v: serde_json::Value = r.json().unwrap_or_default();
    Ok(v)
}

/// A response that succeeded, or the server's error message.
fn checked(
    r: reqwest::Result<reqwest::blocking::Response>,
) -> Result<reqwest::blocking::Response, String> {
    let r = r.map_err(|e| {
        let e = e.without_url();
        let mut why = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            why = format!("{why}: {s}");
            src = s.source();
        }
        if why.contains("certificate") || why.contains("UnknownIssuer") {
            format!(
                "cannot reach the server: {why} (a self-signed server is trusted by its fingerprint: drover login --server URL --fingerprint FP, as `drover server` prints it)"
            )
        } else {
            format!("cannot reach the server: {why}")
        }
    })?;
    let status = r.status();
    if status.is_success() {
        return Ok(r);
    }
    let v: serde_json::Value = r.json().unwrap_or_default();
    Err(format!(
        "{} ({})",
        v["message"].as_str().unwrap_or("the server refused"),
        v["code"].as_str().unwrap_or(status.as_str())
    ))
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
pub fn login(server: &str, key: Option<&Path>, fingerprint: Option<&str>) -> ExitCode {
    let url = base(server);
    let pin = fingerprint.map(str::to_owned).or_else(|| pinned(&url));
    let client = match http_for(pin.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let c = match answer(client.post(format!("{url}/api/v1/login/challenge")).send()) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let challenge = c["challenge"].as_str().unwrap_or_default();
    let signature = match sign(drover_identity::LOGIN_NAMESPACE, challenge, key) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot sign the login challenge: {e}")),
    };
    let mut v = match answer(
        client
            .post(format!("{url}/api/v1/login"))
            .json(&serde_json::json!({ "challenge": challenge, "signature": signature }))
            .send(),
    ) {
        Ok(v) => v,
        Err(e) => return fail(&format!("login refused: {e}")),
    };
    if let Some(fp) = &pin {
        v["fingerprint"] = serde_json::json!(fp);
    }
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

pub(crate) fn get(url: &str, path: &str) -> Result<serde_json::Value, String> {
    let t = token(url)?;
    answer(http(url)?.get(format!("{url}{path}")).bearer_auth(t).send())
}

/// The bytes of a successful GET, and the run they are of (`x-drover-run-id`).
fn get_bytes(url: &str, path: &str) -> Result<(Vec<u8>, Option<String>), String> {
    let t = token(url)?;
    let r = checked(http(url)?.get(format!("{url}{path}")).bearer_auth(t).send())?;
    let run = r
        .headers()
        .get("x-drover-run-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    r.bytes()
        .map(|b| (b.to_vec(), run))
        .map_err(|e| format!("the answer broke off: {}", e.without_url()))
}

pub(crate) fn post(
    url: &str,
    path: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let t = token(url)?;
    answer(
        http(url)?
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
    match signed_start(
        &url,
        runbook,
        mode,
        key,
        "/api/v1/runs",
        serde_json::json!({}),
    ) {
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

/// Prepares a start on the server, signs its statement here, and posts it to `path` with
/// `extra` fields.
fn signed_start(
    url: &str,
    runbook: &str,
    mode: Option<&str>,
    key: Option<&Path>,
    path: &str,
    extra: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let mut body = serde_json::json!({ "runbook": runbook });
    if let Some(m) = mode {
        body["mode"] = serde_json::json!(m);
    }
    let prep = post(url, "/api/v1/runs/prepare", &body)?;
    let statement = prep["statement"].as_str().unwrap_or_default();
    let signature = sign(drover_identity::NAMESPACE, statement, key)
        .map_err(|e| format!("cannot sign the start of the run: {e}"))?;
    body["run_id"] = prep["run_id"].clone();
    body["statement"] = serde_json::json!(statement);
    body["signature"] = serde_json::json!(signature);
    if let (Some(b), Some(x)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(x.clone());
    }
    post(url, path, &body)
}

/// `drover tabletop FILE --server URL`: starts the exercise on the server (signed like a run's
/// start) and prints how the team joins.
pub fn tabletop(
    server: &str,
    runbook: &str,
    mode: Option<&str>,
    scenario: Option<&str>,
    speed: f64,
    key: Option<&Path>,
) -> ExitCode {
    let url = base(server);
    let scenario_text = match scenario.map(std::fs::read_to_string).transpose() {
        Ok(t) => t.unwrap_or_default(),
        Err(e) => return fail(&format!("the scenario {}: {e}", scenario.unwrap_or(""))),
    };
    let extra = serde_json::json!({ "scenario": scenario_text, "speed": speed });
    let v = match signed_start(&url, runbook, mode, key, "/api/v1/tabletops", extra) {
        Ok(v) => v,
        Err(e) => return fail(&e),
    };
    let run = v["run_id"].as_str().unwrap_or("?");
    outln!("TABLETOP EXERCISE {run} started on {url} (SIMULATED: nothing is changed)");
    outln!(
        "participants follow and approve in the console: drover console --server {url} --run {run}"
    );
    match post(&url, "/api/v1/console/link", &serde_json::json!({})) {
        Ok(l) => outln!(
            "you facilitate there (pause, speed, injects); open within a minute: {url}{}&run={}",
            l["path"].as_str().unwrap_or_default(),
            encode(run)
        ),
        Err(e) => errln!("warning: no console link: {e}"),
    }
    outln!("report afterwards: drover report {run} --server {url}");
    ExitCode::SUCCESS
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

/// `POST /api/v1/runs/RUN/VERB`, printing the answer as JSON or as `say` words it.
fn run_action(
    server: &str,
    run_id: &str,
    verb: &str,
    json: bool,
    say: impl Fn(&serde_json::Value, &str, &str) -> String,
) -> ExitCode {
    let url = base(server);
    match post(
        &url,
        &format!("/api/v1/runs/{}/{verb}", encode(run_id)),
        &serde_json::json!({}),
    ) {
        Ok(v) => {
            if json {
                outln!("{v}");
            } else {
                outln!("{}", say(&v, v["run_id"].as_str().unwrap_or("?"), &url));
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `drover resume RUN --server URL`: the server drives the run on.
pub fn resume(server: &str, run_id: &str, json: bool) -> ExitCode {
    run_action(server, run_id, "resume", json, |v, run, url| {
        format!(
            "run {run} resumed on {url} by {}; follow it with drover status {run} --server {url}",
            v["resumed_by"].as_str().unwrap_or("?")
        )
    })
}

/// `drover interrupt RUN --server URL`: as Ctrl-C does to `drover run` (asked again: running
/// steps are stopped now).
pub fn interrupt(server: &str, run_id: &str, json: bool) -> ExitCode {
    run_action(server, run_id, "interrupt", json, |_, run, url| {
        format!(
            "run {run} interrupted on {url}: no new steps start, running ones finish (again to stop them now); resume with drover resume {run} --server {url}"
        )
    })
}

/// `drover console --server URL`: a one-time link (one minute) that signs this operator's
/// browser in to the server's console.
pub fn console(server: &str, run: Option<&str>, json: bool) -> ExitCode {
    let url = base(server);
    match post(&url, "/api/v1/console/link", &serde_json::json!({})) {
        Ok(v) => {
            let mut link = format!("{url}{}", v["path"].as_str().unwrap_or_default());
            if let Some(r) = run {
                link.push_str(&format!("&run={}", encode(r)));
            }
            if json {
                outln!(
                    "{}",
                    serde_json::json!({ "url": link, "expires_at": v["expires_at"] })
                );
            } else {
                outln!("open within a minute (it works once): {link}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `drover passkey confirm --server URL`: certifies the caller's pending passkeys with their SSH
/// key (the newest only, unless `all`).
pub fn passkey_confirm(server: &str, key: Option<&Path>, all: bool) -> ExitCode {
    let url = base(server);
    let list = match get(&url, "/api/v1/passkeys") {
        Ok(v) => v,
        Err(e) => return fail(&e),
    };
    let mut pending: Vec<&serde_json::Value> = list["passkeys"]
        .as_array()
        .map(|a| a.iter().filter(|k| k["confirmed"] == false).collect())
        .unwrap_or_default();
    if pending.is_empty() {
        return fail(
            "no passkey of yours waits for confirmation: register one in the console first (drover console --server URL)",
        );
    }
    pending.sort_by_key(|k| k["registered_at"].as_str().unwrap_or_default().to_owned());
    if !all {
        pending.drain(..pending.len() - 1);
    }
    for k in pending {
        let cert = k["certificate"].as_str().unwrap_or_default();
        let namespace = k["namespace"]
            .as_str()
            .unwrap_or(drover_identity::passkey::PASSKEY_NAMESPACE);
        if namespace != drover_identity::passkey::PASSKEY_NAMESPACE {
            return fail(&format!(
                "the server asks for a signature in namespace `{namespace}`: refused"
            ));
        }
        // What is signed is read back here: the operator and the key it names are the ones shown.
        let c = match drover_identity::passkey::Certificate::parse(cert) {
            Ok(c) => c,
            Err(e) => return fail(&format!("the server's certificate: {e}")),
        };
        let signature = match sign(namespace, cert, key) {
            Ok(s) => s,
            Err(e) => return fail(&format!("cannot sign the passkey's certificate: {e}")),
        };
        let id = k["credential_id"].as_str().unwrap_or_default();
        match post(
            &url,
            &format!("/api/v1/passkeys/{}/confirm", encode(id)),
            &serde_json::json!({ "signature": signature }),
        ) {
            Ok(_) => outln!(
                "passkey {} of {} on {} (registered {}) confirmed: approvals made with it in the console are signed as {}",
                drover_identity::passkey::fingerprint(&c.public_key),
                c.operator,
                c.rp_id,
                c.time,
                c.operator
            ),
            Err(e) => return fail(&format!("confirmation refused: {e}")),
        }
    }
    ExitCode::SUCCESS
}

/// `drover report RUN --server URL`.
pub fn report(server: &str, run_id: &str, format: &str, out: Option<&str>) -> ExitCode {
    let url = base(server);
    match get_bytes(
        &url,
        &format!("/api/v1/runs/{}/report?format={format}", encode(run_id)),
    ) {
        Ok((b, run)) => {
            let run_id = run.as_deref().unwrap_or(run_id);
            let text = String::from_utf8_lossy(&b);
            match out {
                None => {
                    outln!("{text}");
                    ExitCode::SUCCESS
                }
                Some(path) => match std::fs::write(path, text.as_bytes()) {
                    Ok(()) => {
                        errln!("report of run {run_id} written to {path}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(&format!("cannot write {path}: {e}")),
                },
            }
        }
        Err(e) => fail(&e),
    }
}

/// `drover evidence export RUN OUT --server URL`: the bundle the server signs with its evidence
/// key, written whole or not at all. Returns the bytes for an upload.
pub fn evidence(server: &str, run_id: &str, out: &str) -> Result<Vec<u8>, ExitCode> {
    let url = base(server);
    let (bytes, run) = get_bytes(&url, &format!("/api/v1/runs/{}/evidence", encode(run_id)))
        .map_err(|e| fail(&e))?;
    let run_id = run.as_deref().unwrap_or(run_id);
    let tmp = format!("{out}.partial");
    if let Err(e) = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, out)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(&format!("cannot write {out}: {e}")));
    }
    outln!(
        "evidence of run {run_id} written to {out}: {} bytes, signed by the server's evidence key (verify with its public key: drover evidence verify {out} --public-key KEY.pub)",
        bytes.len()
    );
    Ok(bytes)
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

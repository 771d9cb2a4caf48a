//! A stand-in for Azure Resource Manager's networking endpoints on 127.0.0.1, for tests.
//!
//! No emulator of ARM networking exists, so this serves the resources of
//! `tests/fixtures/arm/world.json` (shapes of the Azure REST API specification's examples) and
//! behaves the way ARM documents: PUT stores the resource and answers with an
//! `Azure-AsyncOperation` URL that reports `InProgress` once, then `Succeeded`; DELETE removes;
//! GET of a missing resource is a 404 `ResourceNotFound`; a public IP can belong to one IP
//! configuration at a time (`PublicIPAddressInUse`). Scripted faults (429 with Retry-After, 409
//! conflicts, 5xx) answer chosen requests. Every request is recorded — method, path,
//! api-version, body, whether it carried a bearer token — for the tests to assert on.
//! Shared by the adapter tests and the CLI end-to-end test (`#[path]`).

#![allow(dead_code, reason = "each test crate uses part of it")]

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

/// The test subscription.
pub const SUB: &str = "9f2a6c1e-5d4b-4c3a-8e7f-00000000d120";
/// The test resource group.
pub const RG: &str = "rg-ehr-network";
/// The bearer token the tests hand to Drover (`DROVER_AZURE_TOKEN`).
pub const TOKEN: &str = "test-arm-token-0123456789";

/// One request the server saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Req {
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// The `api-version` query parameter.
    pub api_version: Option<String>,
    /// The JSON body, if any.
    pub body: Option<Value>,
    /// Whether `Authorization: Bearer TOKEN` was sent.
    pub authorized: bool,
    /// The `If-Match` header, if any.
    pub if_match: Option<String>,
}

struct Fault {
    method: String,
    path_contains: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
    times: u32,
    /// Matching requests let through before the fault starts.
    skip: u32,
}

#[derive(Default)]
struct State {
    resources: BTreeMap<String, Value>,
    requests: Vec<Req>,
    faults: Vec<Fault>,
    ops: BTreeMap<String, u32>,
    next_op: u64,
    health_up: bool,
}

/// The running server.
pub struct ArmServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<Mutex<State>>,
}

/// A resource's full ARM path from the part after the resource group's providers segment,
/// e.g. `routeTables/rt-ehr-app/routes/default-egress`.
pub fn id(rest: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/{rest}")
}

fn key(path: &str) -> String {
    path.trim_end_matches('/').to_ascii_lowercase()
}

fn arm_error(code: &str, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message } })
}

impl ArmServer {
    /// Starts a server holding the fixture world.
    pub fn start() -> Self {
        let world: BTreeMap<String, Value> =
            serde_json::from_str(include_str!("../fixtures/arm/world.json")).expect("world");
        let mut state = State {
            health_up: true,
            ..State::default()
        };
        for (path, v) in world {
            if path.starts_with('_') {
                continue;
            }
            let fill = |s: &str| s.replace("{sub}", SUB).replace("{rg}", RG);
            let v: Value = serde_json::from_str(&fill(&v.to_string())).expect("resource");
            state.resources.insert(key(&fill(&path)), v);
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(state));
        let shared = state.clone();
        let base = url.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                serve(s, &shared, &base);
            }
        });
        Self { url, state }
    }

    /// Every request so far (health checks excluded).
    pub fn requests(&self) -> Vec<Req> {
        self.state.lock().expect("state").requests.clone()
    }

    /// The requests that changed something (PUT, DELETE), as "METHOD path".
    pub fn changes(&self) -> Vec<(String, String, Option<Value>)> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PUT" || r.method == "DELETE")
            .map(|r| (r.method, r.path, r.body))
            .collect()
    }

    /// A resource as the server holds it now.
    pub fn resource(&self, rest: &str) -> Option<Value> {
        self.state
            .lock()
            .expect("state")
            .resources
            .get(&key(&id(rest)))
            .cloned()
    }

    /// Sets a resource's `properties.provisioningState` (an operation still running, or failed).
    pub fn set_provisioning_state(&self, rest: &str, state: &str) {
        if let Some(r) = self
            .state
            .lock()
            .expect("state")
            .resources
            .get_mut(&key(&id(rest)))
        {
            r["properties"]["provisioningState"] = Value::String(state.to_owned());
        }
    }

    /// Every resource, for comparing the whole world before and after.
    pub fn world(&self) -> BTreeMap<String, Value> {
        self.state.lock().expect("state").resources.clone()
    }

    /// Answers the next `times` requests with `method` whose path contains `path_contains` with
    /// `status`, `headers` and an ARM error `body`.
    pub fn fail(
        &self,
        method: &str,
        path_contains: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: Value,
        times: u32,
    ) {
        self.state.lock().expect("state").faults.push(Fault {
            method: method.into(),
            path_contains: path_contains.into(),
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body,
            times,
            skip: 0,
        });
    }

    /// Like [`ArmServer::fail`], but lets the first `skip` matching requests through: a service
    /// that goes down in the middle of a step.
    #[allow(clippy::too_many_arguments, reason = "a test fixture")]
    pub fn fail_after(
        &self,
        skip: u32,
        method: &str,
        path_contains: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: Value,
        times: u32,
    ) {
        self.fail(method, path_contains, status, headers, body, times);
        if let Some(f) = self.state.lock().expect("state").faults.last_mut() {
            f.skip = skip;
        }
    }

    /// The service is back: every pending fault is dropped.
    pub fn clear_faults(&self) {
        self.state.lock().expect("state").faults.clear();
    }

    /// Whether `GET /health` answers 200 (else 503).
    pub fn set_health(&self, up: bool) {
        self.state.lock().expect("state").health_up = up;
    }
}

/// The standard error bodies, as ARM sends them.
pub fn throttled() -> Value {
    arm_error(
        "TooManyRequests",
        "The request is being throttled as the limit has been reached for operation type - Write_ObservationWindow_00:05:00. For more information, see - https://aka.ms/srpthrottlinglimits",
    )
}

/// A 409 body.
pub fn conflict() -> Value {
    arm_error(
        "AnotherOperationInProgress",
        "Another operation on this or dependent resource is in progress. To retrieve status of the operation use uri: https://management.azure.com/subscriptions/x/providers/Microsoft.Network/locations/westeurope/operations/y?api-version=2024-03-01.",
    )
}

fn respond(s: &mut std::net::TcpStream, status: u16, headers: &[(String, String)], body: &str) {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        404 => "Not Found",
        409 => "Conflict",
        429 => "Too Many Requests",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nx-ms-request-id: 00000000-0000-0000-0000-000000000000\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let _ = write!(s, "{head}\r\n{body}");
}

fn serve(mut s: std::net::TcpStream, state: &Arc<Mutex<State>>, base: &str) {
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    let api_version = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("api-version="))
        .map(str::to_owned);
    let mut len = 0usize;
    let mut authorized = false;
    let mut if_match = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("if-match:") {
            if_match = Some(h["if-match:".len()..].trim().to_owned());
        }
        if lower.starts_with("authorization:") && h.trim_end().ends_with(&format!("Bearer {TOKEN}"))
        {
            authorized = true;
        }
    }
    let mut raw = vec![0u8; len];
    let _ = r.read_exact(&mut raw);
    let body: Option<Value> = serde_json::from_slice(&raw).ok();
    let mut st = state.lock().expect("state");
    if path == "/health" {
        let up = st.health_up;
        drop(st);
        respond(
            &mut s,
            if up { 200 } else { 503 },
            &[],
            "{\"status\":\"ok\"}",
        );
        return;
    }
    st.requests.push(Req {
        method: method.clone(),
        path: path.to_owned(),
        api_version: api_version.clone(),
        body: body.clone(),
        authorized,
        if_match: if_match.clone(),
    });
    if !authorized {
        drop(st);
        let b = arm_error(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        );
        respond(&mut s, 401, &[], &b.to_string());
        return;
    }
    let mut let_through = false;
    if let Some(f) = st
        .faults
        .iter_mut()
        .find(|f| f.times > 0 && f.method == method && path.contains(&f.path_contains))
        && f.skip > 0
    {
        f.skip -= 1;
        let_through = true;
    }
    if let Some(f) = st
        .faults
        .iter_mut()
        .find(|f| f.times > 0 && f.method == method && path.contains(&f.path_contains))
        .filter(|_| !let_through)
    {
        f.times -= 1;
        let (status, headers, b) = (f.status, f.headers.clone(), f.body.to_string());
        drop(st);
        respond(&mut s, status, &headers, &b);
        return;
    }
    // Asynchronous operations: InProgress once, then Succeeded.
    if path.contains("/operations/") {
        let left = st.ops.entry(path.to_owned()).or_insert(1);
        let status = if *left > 0 {
            *left -= 1;
            "InProgress"
        } else {
            "Succeeded"
        };
        drop(st);
        respond(
            &mut s,
            200,
            &[("Retry-After".into(), "0".into())],
            &json!({ "status": status }).to_string(),
        );
        return;
    }
    let k = key(path);
    match method.as_str() {
        "GET" => {
            let found = st.resources.get(&k).cloned();
            drop(st);
            match found {
                Some(v) => respond(&mut s, 200, &[], &v.to_string()),
                None => respond(
                    &mut s,
                    404,
                    &[],
                    &arm_error(
                        "ResourceNotFound",
                        &format!(
                            "The Resource '{path}' under resource group '{RG}' was not found."
                        ),
                    )
                    .to_string(),
                ),
            }
        }
        "PUT" => {
            let Some(mut v) = body else {
                drop(st);
                respond(
                    &mut s,
                    400,
                    &[],
                    &arm_error("InvalidRequestFormat", "no body").to_string(),
                );
                return;
            };
            // A conditional PUT on a resource that changed since it was read: 412, as ARM does.
            if let Some(want) = &if_match {
                let now = st
                    .resources
                    .get(&k)
                    .and_then(|r| r.get("etag"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if now.as_deref() != Some(want.as_str()) {
                    drop(st);
                    let b = arm_error(
                        "PreconditionFailed",
                        "The condition specified using HTTP conditional header(s) is not met.",
                    );
                    respond(&mut s, 412, &[], &b.to_string());
                    return;
                }
            }
            if let Err(e) = link_public_ips(&mut st, path, &v) {
                drop(st);
                respond(&mut s, 400, &[], &e.to_string());
                return;
            }
            let created = !st.resources.contains_key(&k);
            v["id"] = json!(path);
            v["name"] = json!(path.rsplit('/').next().unwrap_or(""));
            v["etag"] = json!(format!(
                "W/\"{:08x}-0000-4000-8000-000000000000\"",
                st.next_op
            ));
            if !v.get("properties").is_some_and(Value::is_object) {
                v["properties"] = json!({});
            }
            v["properties"]["provisioningState"] = json!("Succeeded");
            st.resources.insert(k, v.clone());
            st.next_op += 1;
            let op = format!(
                "/subscriptions/{SUB}/providers/Microsoft.Network/locations/westeurope/operations/{:08x}-1111-4222-8333-444444444444",
                st.next_op
            );
            drop(st);
            let mut shown = v;
            shown["properties"]["provisioningState"] = json!("Updating");
            respond(
                &mut s,
                if created { 201 } else { 200 },
                &[
                    (
                        "Azure-AsyncOperation".into(),
                        format!("{base}{op}?api-version=2024-03-01"),
                    ),
                    ("Retry-After".into(), "0".into()),
                ],
                &shown.to_string(),
            );
        }
        "DELETE" => {
            let existed = st.resources.remove(&k).is_some();
            drop(st);
            respond(&mut s, if existed { 200 } else { 204 }, &[], "");
        }
        _ => {
            drop(st);
            respond(&mut s, 405, &[], "");
        }
    }
}

/// A NIC PUT moves public IPs: each IP configuration's `publicIPAddress` must be free or already
/// its own, and the public IPs it lets go of become free — as ARM enforces.
fn link_public_ips(st: &mut State, path: &str, nic: &Value) -> Result<(), Value> {
    if !path.to_ascii_lowercase().contains("/networkinterfaces/") {
        return Ok(());
    }
    let configs = nic["properties"]["ipConfigurations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut wanted: Vec<(String, String)> = Vec::new();
    for c in &configs {
        let cfg_id = format!(
            "{path}/ipConfigurations/{}",
            c["name"].as_str().unwrap_or("")
        );
        if let Some(pip) = c["properties"]["publicIPAddress"]["id"].as_str() {
            let holder = st
                .resources
                .get(&key(pip))
                .and_then(|p| p["properties"]["ipConfiguration"]["id"].as_str())
                .map(str::to_owned);
            if let Some(h) = holder
                && !h.eq_ignore_ascii_case(&cfg_id)
            {
                return Err(arm_error(
                    "PublicIPAddressInUse",
                    &format!(
                        "Resource {pip} is referenced by resource {h}; it cannot be used by {cfg_id}."
                    ),
                ));
            }
            wanted.push((key(pip), cfg_id));
        }
    }
    let prefix = key(&format!("{path}/ipConfigurations/"));
    for p in st.resources.values_mut() {
        let held = p["properties"]["ipConfiguration"]["id"]
            .as_str()
            .is_some_and(|h| key(h).starts_with(&prefix));
        if held {
            p["properties"]
                .as_object_mut()
                .map(|o| o.remove("ipConfiguration"));
        }
    }
    for (pip, cfg) in wanted {
        if let Some(p) = st.resources.get_mut(&pip) {
            p["properties"]["ipConfiguration"] = json!({ "id": cfg });
        }
    }
    Ok(())
}

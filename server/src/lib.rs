//! `drover server`: one service for the whole response team. It owns the state directory's
//! journal, drives runs with the same engine as `drover run`, and offers a JSON API under
//! `/api/v1` (docs/api.md) with live Server-Sent Events per run. Every endpoint but `/healthz`
//! needs an operator logged in with a roster SSH key ([`auth`]); every start and every decision
//! is still a statement signed by the operator and verified against the roster.
//!
//! The handlers are thin: each calls one operation of `drover-ops` and turns its result or its
//! error into JSON.

pub mod alerts;
pub mod auth;
mod console;
mod passkeys;
pub mod replicas;
pub mod schedules;
mod tabletop;
pub mod tls;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use drover_engine::clock::{Clock, SystemClock};
use drover_engine::driver::{Adapters, Driver, Observer, Verdict};
use drover_engine::signed::{Approver, SignedStatement};
use drover_ops::{OpsError, Workspace};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Notify;

/// The header naming the run a report or an evidence bundle is of (`latest` resolved).
pub const RUN_ID_HEADER: header::HeaderName = header::HeaderName::from_static("x-drover-run-id");

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;
/// How long a login token lives.
pub const TOKEN_TTL_MS: u64 = 12 * 3_600_000;
/// How often an event stream looks at the journal when nothing woke it (changes made by another
/// process, such as a CLI approval).
const POLL_MS: u64 = 500;

/// What the server is started with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The state directory (journal, run records, audit logs).
    pub state: PathBuf,
    /// The operator roster: who may log in, and what starts and decisions are verified against.
    pub operators: PathBuf,
    /// The directory of runbooks the team may start.
    pub runbooks: PathBuf,
    /// A name for this server in login challenges.
    pub name: String,
    /// The Ed25519 key evidence bundles exported through the server are signed with (PKCS#8
    /// PEM, as `drover key generate --signing` writes); `None`: evidence export is refused.
    pub evidence_key: Option<PathBuf>,
    /// Alert sinks and thresholds (the configuration file's `[alerts]`).
    pub alerts: drover_alerts::AlertsConfig,
    /// Replication: this replica's id, its lease TTL, its local directory.
    pub replica: replicas::ReplicaConfig,
}

/// The server's shared state.
#[derive(Debug)]
pub struct App {
    config: Config,
    ws: Workspace,
    roster: drover_identity::Roster,
    sessions: auth::Sessions,
    /// Per run this server drives: woken on each of its transitions.
    wakers: std::sync::Mutex<std::collections::HashMap<String, Arc<Notify>>>,
    /// Woken on every transition of every run this server drives (the all-runs stream).
    all: Arc<Notify>,
    /// The runs this server drives now, and what interrupts each.
    driven: std::sync::Mutex<std::collections::HashMap<String, drover_engine::driver::Interrupter>>,
    evidence_key: Option<drover_evidence::SigningKey>,
    passkeys: passkeys::Passkeys,
    /// Set when the server is told to stop: event streams end, so that graceful shutdown does
    /// not wait on browsers that would hold them open forever.
    closing: tokio::sync::watch::Sender<bool>,
    /// The tabletop exercises this server drives now: their clocks, injects, facilitators.
    tabletops: std::sync::Mutex<std::collections::HashMap<String, drover_ops::Tabletop>>,
    /// The simulator's RTO prediction per run (computed once, on the first look).
    predictions:
        std::sync::Mutex<std::collections::HashMap<String, Option<drover_ops::Prediction>>>,
    clock: Arc<dyn Clock>,
    adapters: fn() -> Adapters,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The roster.
    #[error("the operator roster {path}: {why}")]
    Roster {
        /// Where.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The evidence signing key.
    #[error("the evidence signing key {path}: {why}")]
    EvidenceKey {
        /// Where.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// What the state directory keeps (sessions, passkeys).
    #[error("the state directory: {why}")]
    State {
        /// What is wrong.
        why: String,
    },
    /// The listening socket.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl App {
    /// The server's state for `config`; runs are driven with the adapters `adapters` returns.
    ///
    /// # Errors
    /// The roster does not load.
    pub fn new(config: Config, adapters: fn() -> Adapters) -> Result<Arc<Self>, ServerError> {
        let (roster, _) = drover_identity::Roster::load(&config.operators).map_err(|issues| {
            ServerError::Roster {
                path: config.operators.display().to_string(),
                why: issues
                    .first()
                    .map_or_else(String::new, |i| i.message.clone()),
            }
        })?;
        let evidence_key = match &config.evidence_key {
            None => None,
            Some(path) => Some(drover_evidence::read_signing_key(path).map_err(|e| {
                ServerError::EvidenceKey {
                    path: path.display().to_string(),
                    why: e.to_string(),
                }
            })?),
        };
        let ws = match &config.replica.local_dir {
            Some(d) => Workspace::new(config.state.clone()).with_local_dir(d),
            None => Workspace::new(config.state.clone()),
        };
        let local = ws.dir().to_path_buf();
        std::fs::create_dir_all(&local).map_err(|e| ServerError::State {
            why: format!("{}: {e}", local.display()),
        })?;
        // A replica id in its leases only with a shared journal: a lone server's lease ends as
        // soon as its process is gone (a restart resumes its runs at once).
        drover_engine::driver::set_lease(
            config.replica.lease_ttl_ms,
            ws.shared().then_some(config.replica.id.as_str()),
        );
        let sessions = auth::Sessions::new(ws.clone(), roster.operators.keys().cloned());
        let passkeys = passkeys::Passkeys::new(ws.clone());
        Ok(Arc::new(Self {
            ws,
            passkeys,
            predictions: std::sync::Mutex::default(),
            tabletops: std::sync::Mutex::default(),
            closing: tokio::sync::watch::Sender::new(false),
            config,
            roster,
            sessions,
            wakers: std::sync::Mutex::default(),
            all: Arc::default(),
            driven: std::sync::Mutex::default(),
            evidence_key,
            clock: Arc::new(SystemClock),
            adapters,
        }))
    }
}

impl App {
    /// Completes once the server is stopping.
    async fn closed(&self) {
        let mut rx = self.closing.subscribe();
        let _ = rx.wait_for(|closing| *closing).await;
    }

    /// What wakes the event streams of `run_id`.
    fn waker(&self, run_id: &str) -> Arc<Notify> {
        let mut w = lock(&self.wakers);
        Arc::clone(w.entry(run_id.to_owned()).or_default())
    }

    /// What interrupts `run_id`, if this server drives it.
    fn interrupter(&self, run_id: &str) -> Option<drover_engine::driver::Interrupter> {
        lock(&self.driven).get(run_id).cloned()
    }

    /// The Ed25519 public key of evidence bundles exported through this server, if it has one.
    #[must_use]
    pub fn evidence_public_key(&self) -> Option<drover_evidence::VerifyingKey> {
        self.evidence_key
            .as_ref()
            .map(drover_evidence::SigningKey::verifying_key)
    }
}

/// The API's routes.
pub fn router(app: Arc<App>) -> Router {
    let open = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/login/challenge", post(login_challenge))
        .route("/api/v1/login", post(login))
        .merge(console::routes());
    let authed = Router::new()
        .route("/api/v1/session", get(whoami).delete(logout))
        .route("/api/v1/console/link", post(console::link))
        .route(
            "/api/v1/passkeys",
            get(passkeys::list).post(passkeys::register),
        )
        .route("/api/v1/passkeys/options", post(passkeys::options))
        .route(
            "/api/v1/passkeys/{credential}/confirm",
            post(passkeys::confirm),
        )
        .route("/api/v1/runbooks", get(runbooks))
        .route("/api/v1/schedules", get(schedules::list))
        .route("/api/v1/alerts", get(alerts::list))
        .route("/api/v1/alerts/test", post(alerts::test))
        .route("/api/v1/posture/drills", get(schedules::posture))
        .route("/api/v1/runs", get(runs).post(start_run))
        .route("/api/v1/runs/prepare", post(prepare_run))
        .route("/api/v1/runs/{run}", get(run_status))
        .route("/api/v1/runs/{run}/events", get(run_events))
        .route("/api/v1/runs/{run}/interrupt", post(interrupt_run))
        .route("/api/v1/runs/{run}/resume", post(resume_run))
        .route("/api/v1/runs/{run}/evidence", get(run_evidence))
        .route("/api/v1/events", get(all_events))
        .route("/api/v1/runs/{run}/report", get(run_report))
        .route("/api/v1/runs/{run}/audit", get(run_audit))
        .route(
            "/api/v1/runs/{run}/steps/{step}/statement",
            get(decision_statement),
        )
        .route("/api/v1/runs/{run}/steps/{step}/decisions", post(decide))
        .route("/api/v1/tabletops", post(tabletop::start))
        .route("/api/v1/runs/{run}/tabletop", post(tabletop::control))
        .route("/api/v1/runs/{run}/injects", post(tabletop::inject))
        .route("/metrics", get(metrics))
        .route("/api/v1/replicas", get(replicas::list))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            require_session,
        ));
    open.merge(authed)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

/// Serves `app` on `listener` until `shutdown` completes: with `tls`, connections that open
/// with a TLS handshake get TLS; plain HTTP is served when `plain` is true or there is no
/// `tls`.
///
/// # Errors
/// The socket fails.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    tls: Option<tls::Tls>,
    plain: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tls::Listener::new(listener, tls.as_ref(), plain)?;
    let closing = Arc::clone(&app);
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<tls::Peer>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        closing.closing.send_replace(true);
    })
    .await
}

/// A JSON error: a stable code and a message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "code": self.code, "message": self.message })),
        )
            .into_response()
    }
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> Self {
        let code = e.code();
        let status = match code {
            "bad_request" => StatusCode::BAD_REQUEST,
            "not_found" => StatusCode::NOT_FOUND,
            "refused" => StatusCode::FORBIDDEN,
            "conflict" => StatusCode::CONFLICT,
            "preflight" => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &e {
            OpsError::Preflight(problems) => format!(
                "{e}: {}",
                problems
                    .iter()
                    .map(|p| format!("{} ({}): {}", p.step, p.action, p.problem))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            _ => e.to_string(),
        };
        Self::new(status, code, message)
    }
}

/// JSON bodies that refuse what they do not know, with the error in our shape.
struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "bad_request", e.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))
    }
}

/// The cookie a browser session lives in.
pub const SESSION_COOKIE: &str = "drover_session";

/// The value of cookie `name` in `headers`.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Who is calling: a bearer token (the CLI), or the console's session cookie — whose
/// state-changing requests must also carry the session's `x-csrf-token`.
async fn require_session(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let now = app.clock.now_ms();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let session = match (bearer, cookie(&headers, SESSION_COOKIE)) {
        (Some(token), _) => app.sessions.check(token.trim(), now).await?,
        (None, Some(token)) => {
            let session = app.sessions.check(token, now).await?;
            let safe = matches!(req.method().as_str(), "GET" | "HEAD");
            if let Some(s) = session.as_ref().filter(|_| !safe) {
                let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
                let ok = sent.is_some_and(|t| {
                    subtle::ConstantTimeEq::ct_eq(t.as_bytes(), s.csrf.as_bytes()).into()
                });
                if !ok {
                    audit(
                        &app,
                        &s.operator,
                        "server.csrf",
                        "refused",
                        Some(&format!("{} {}", req.method(), req.uri().path())),
                    );
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "csrf",
                        "a browser request that changes something must carry the session's x-csrf-token",
                    ));
                }
            }
            session
        }
        (None, None) => {
            return Err(ApiError::unauthorized(
                "log in first: drover login --server URL (a bearer token is needed)",
            ));
        }
    };
    let session = session.ok_or_else(|| {
        ApiError::unauthorized("the token is unknown, expired or revoked: log in again")
    })?;
    req.extensions_mut().insert(session);
    Ok(next.run(req).await)
}

/// Writes a server audit record (logins, their refusals) to the state directory's `@server` log.
fn audit(app: &App, operator: &str, action: &str, outcome: &str, detail: Option<&str>) {
    audit_signed(app, operator, action, outcome, detail, None);
}

/// [`audit`] with the signed statement the event rests on (a passkey's certificate).
fn audit_signed(
    app: &App,
    operator: &str,
    action: &str,
    outcome: &str,
    detail: Option<&str>,
    signed: Option<&SignedStatement>,
) {
    let op = drover_engine::oplog::Operation {
        action,
        operator,
        subject: Some(&app.config.name),
        backup_id: None,
        key_id: None,
        outcome,
        detail,
        signed,
    };
    let written = app
        .ws
        .journal()
        .map_err(|e| e.to_string())
        .and_then(|mut j| {
            drover_engine::oplog::record(&mut *j, SERVER_LOG, &op, app.clock.now_ms(), None)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        tracing::error!(error = %e, "cannot write the server audit log");
    }
}

/// The audit log of the server's own events (logins and their refusals).
pub const SERVER_LOG: &str = "@server";

async fn login_challenge(
    State(app): State<Arc<App>>,
    ConnectInfo(tls::Peer(peer)): ConnectInfo<tls::Peer>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = app.clock.now_ms();
    if !app.sessions.allow(
        &format!("login:{}", peer.ip()),
        auth::LOGINS_PER_MINUTE,
        now,
    ) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many logins from this address: wait a minute",
        ));
    }
    let challenge = app.sessions.challenge(&app.config.name, now).await?;
    Ok(Json(serde_json::json!({
        "challenge": challenge,
        "namespace": drover_identity::LOGIN_NAMESPACE,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    challenge: String,
    signature: String,
}

async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(tls::Peer(peer)): ConnectInfo<tls::Peer>,
    Body(b): Body<LoginBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = app.clock.now_ms();
    if !app.sessions.allow(
        &format!("login:{}", peer.ip()),
        auth::LOGINS_PER_MINUTE,
        now,
    ) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many logins from this address: wait a minute",
        ));
    }
    let refuse = |why: String| {
        audit(&app, "unverified", "server.login", "refused", Some(&why));
        ApiError::unauthorized(&why)
    };
    if !app.sessions.take_challenge(&b.challenge, now).await? {
        return Err(refuse(
            "the challenge is unknown, used or expired: ask for a new one".into(),
        ));
    }
    let signer = drover_identity::verify_in(
        drover_identity::LOGIN_NAMESPACE,
        &app.roster,
        &b.challenge,
        &b.signature,
    )
    .map_err(|e| refuse(e.to_string()))?;
    let (token, session) = app
        .sessions
        .open(&signer.operator, TOKEN_TTL_MS, now)
        .await?;
    audit(
        &app,
        &signer.operator,
        "server.login",
        "ok",
        Some(&format!("key {}", signer.fingerprint)),
    );
    Ok(Json(serde_json::json!({
        "token": token,
        "operator": session.operator,
        "expires_at": drover_engine::run_record::rfc3339(session.expires_at),
    })))
}

async fn whoami(Extension(s): Extension<auth::Session>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "operator": s.operator,
        "expires_at": drover_engine::run_record::rfc3339(s.expires_at),
        "csrf": s.csrf,
    }))
}

async fn logout(
    State(app): State<Arc<App>>,
    Extension(s): Extension<auth::Session>,
) -> Result<Response, ApiError> {
    app.sessions.revoke(&s.token_sha256).await?;
    audit(&app, &s.operator, "server.logout", "ok", None);
    Ok((
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            format!("{SESSION_COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"),
        )],
    )
        .into_response())
}

async fn runbooks(State(app): State<Arc<App>>) -> Result<Json<serde_json::Value>, ApiError> {
    let mut names: Vec<String> = std::fs::read_dir(&app.config.runbooks)
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "runbooks",
                format!("cannot list {}: {e}", app.config.runbooks.display()),
            )
        })?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".drover"))
        .collect();
    names.sort();
    Ok(Json(serde_json::json!({ "runbooks": names })))
}

async fn runs(State(app): State<Arc<App>>) -> Result<Json<serde_json::Value>, ApiError> {
    let now = app.clock.now_ms();
    let runs = blocking(move || app.ws.run_list(now)).await?;
    Ok(Json(serde_json::json!({ "runs": runs })))
}

async fn run_status(
    State(app): State<Arc<App>>,
    Path(run): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = app.clock.now_ms();
    let (view, prediction, tabletop) = blocking(move || {
        let view = app.ws.run_view(&run, now)?;
        // The prediction depends on the plan and past runs only: once per run.
        let id = view.row.run_id.clone();
        let known = lock(&app.predictions).get(&id).copied();
        let prediction = match known {
            Some(p) => p,
            None => {
                let p = app.ws.prediction(&id)?;
                lock(&app.predictions).insert(id, p);
                p
            }
        };
        let tabletop = tabletop::view(&app, &view)?;
        Ok((view, prediction, tabletop))
    })
    .await?;
    Ok(Json(serde_json::json!({
        "status": view.status,
        "driven_by": view.driven_by,
        "prediction": prediction,
        "tabletop": tabletop,
        "record": view.to_json(),
    })))
}

async fn run_report(
    State(app): State<Arc<App>>,
    Path(run): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let format = match q.get("format").map_or("html", String::as_str) {
        "html" => (drover_report::Format::Html, "text/html; charset=utf-8"),
        "md" => (
            drover_report::Format::Markdown,
            "text/markdown; charset=utf-8",
        ),
        "json" => (drover_report::Format::Json, "application/json"),
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("format `{other}`: use html, md or json"),
            ));
        }
    };
    let (run_id, text) = blocking(move || app.ws.report(&run, format.0, None)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, format.1.to_owned()),
            (RUN_ID_HEADER, run_id),
        ],
        text,
    )
        .into_response())
}

async fn run_audit(
    State(app): State<Arc<App>>,
    Path(run): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let check = blocking(move || app.ws.audit_verify(&run, None)).await?;
    let (run_id, result) = (check.run_id, check.result.map(|r| r.0));
    Ok(Json(serde_json::json!({
        "run_id": run_id,
        "intact": result.is_ok(),
        "records": result.as_ref().ok(),
        "problem": result.as_ref().err().map(ToString::to_string),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementQuery {
    decision: Option<String>,
    reason: Option<String>,
    totp: Option<String>,
}

fn verdict<'a>(decision: Option<&str>, reason: Option<&'a str>) -> Result<Verdict<'a>, ApiError> {
    let need = |what: &str| {
        reason.filter(|r| !r.trim().is_empty()).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("a {what} needs a reason"),
            )
        })
    };
    match decision.unwrap_or("approve") {
        "approve" => Ok(Verdict::Approve),
        "deny" => Ok(Verdict::Deny(need("denial")?)),
        "break-glass" => Ok(Verdict::BreakGlass(need("break-glass")?)),
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("decision `{other}`: use approve, deny or break-glass"),
        )),
    }
}

async fn decision_statement(
    State(app): State<Arc<App>>,
    Extension(s): Extension<auth::Session>,
    Path((run, step)): Path<(String, String)>,
    Query(q): Query<StatementQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let credentials = passkeys::credentials_of(&app, &s.operator).await?;
    let text = blocking(move || {
        let v = verdict(q.decision.as_deref(), q.reason.as_deref())
            .map_err(|e| OpsError::Usage(e.message))?;
        app.ws
            .decision_statement(&run, &step, v, q.totp.clone(), app.clock.now_ms())?
            .to_text()
            .map_err(|e| OpsError::Usage(e.to_string()))
    })
    .await?;
    Ok(Json(serde_json::json!({
        "challenge": drover_identity::passkey::b64url(&drover_identity::passkey::challenge(&text)),
        "statement": text,
        "namespace": drover_identity::NAMESPACE,
        "passkeys": credentials,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    statement: String,
    /// An armored SSHSIG (the CLI)…
    #[serde(default)]
    signature: Option<String>,
    /// …or a WebAuthn assertion by one of the caller's confirmed passkeys (the console).
    #[serde(default)]
    passkey: Option<passkeys::Assertion>,
    #[serde(default)]
    decision: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

async fn decide(
    State(app): State<Arc<App>>,
    Extension(s): Extension<auth::Session>,
    Path((run, step)): Path<(String, String)>,
    Body(b): Body<DecisionBody>,
) -> Result<Json<drover_ops::Approved>, ApiError> {
    let now = app.clock.now_ms();
    if !app.sessions.allow(
        &format!("decide:{}", s.operator),
        auth::DECISIONS_PER_MINUTE,
        now,
    ) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many decisions: wait a minute",
        ));
    }
    verdict(b.decision.as_deref(), b.reason.as_deref())?;
    let signature = match (b.signature, b.passkey) {
        (Some(sig), None) => sig,
        (None, Some(a)) => passkeys::armored(&app, &s.operator, a).await?,
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "give either `signature` (an SSH signature) or `passkey` (a WebAuthn assertion)",
            ));
        }
    };
    let approved = blocking(move || {
        let v = verdict(b.decision.as_deref(), b.reason.as_deref())
            .map_err(|e| OpsError::Usage(e.message))?;
        let approver = Approver::Signed(SignedStatement {
            statement: b.statement,
            signature,
        });
        app.ws.approve(&run, &step, &approver, v, now)
    })
    .await?;
    Ok(Json(approved))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrepareBody {
    runbook: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    vars: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartBody {
    runbook: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    vars: std::collections::BTreeMap<String, String>,
    run_id: String,
    statement: String,
    signature: String,
    /// Why this run may share its runbook or resources with unfinished runs (audited).
    #[serde(default)]
    concurrent: Option<String>,
}

/// Compiles a runbook of the server's directory against the server's roster.
fn compile(
    app: &App,
    runbook: &str,
    mode: Option<&str>,
    vars: &std::collections::BTreeMap<String, String>,
) -> Result<drover_ops::Compiled, OpsError> {
    let name_ok = runbook.ends_with(".drover")
        && !runbook.starts_with('.')
        && runbook
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !name_ok {
        return Err(OpsError::Usage(format!(
            "`{runbook}` is not a runbook of this server: name a .drover file of its runbooks directory"
        )));
    }
    Workspace::compile(
        &app.config.runbooks.join(runbook),
        vars,
        Some(&app.config.operators),
        mode,
    )
}

async fn prepare_run(
    State(app): State<Arc<App>>,
    Body(b): Body<PrepareBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let out = blocking(move || {
        let c = compile(&app, &b.runbook, b.mode.as_deref(), &b.vars)?;
        let (plan, mode) = (c.plan, c.mode);
        let now = app.clock.now_ms();
        let run_id = drover_engine::run_record::new_run_id(now);
        let st = drover_engine::signed::statement(
            &plan,
            &run_id,
            "",
            drover_identity::Decision::Start,
            "",
            None,
            now,
        );
        let text = st.to_text().map_err(|e| OpsError::Usage(e.to_string()))?;
        Ok::<_, OpsError>(serde_json::json!({
            "run_id": run_id,
            "mode": mode.as_str(),
            "statement": text,
            "namespace": drover_identity::NAMESPACE,
        }))
    })
    .await?;
    Ok(Json(out))
}

/// Wakes the run's event streams and the all-runs streams on every transition the driver
/// journals.
#[derive(Debug)]
struct Wake {
    run: Arc<Notify>,
    all: Arc<Notify>,
}

impl Wake {
    fn new(app: &App, run_id: &str) -> Arc<Self> {
        Arc::new(Self {
            run: app.waker(run_id),
            all: Arc::clone(&app.all),
        })
    }
}

impl Observer for Wake {
    fn line(&self, _: &str) {}

    fn committed(&self) {
        self.run.notify_waiters();
        self.all.notify_waiters();
    }
}

async fn start_run(
    State(app): State<Arc<App>>,
    Extension(s): Extension<auth::Session>,
    Body(b): Body<StartBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let (compiled, start) = signed_start(&app, &s, b).await?;
    let run_id = start.run_id.clone();
    let initiator = start.initiator.clone();
    let driver = app
        .ws
        .start(
            compiled,
            start,
            Arc::clone(&app.clock),
            (app.adapters)(),
            Wake::new(&app, &run_id),
        )
        .await?;
    adopt(&app, driver, true)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "run_id": run_id, "initiator": initiator })),
    ))
}

/// Compiles the runbook a start names and checks its signed statement: the signer must be the
/// caller.
async fn signed_start(
    app: &Arc<App>,
    s: &auth::Session,
    b: StartBody,
) -> Result<(drover_ops::Compiled, drover_ops::Start), ApiError> {
    let a = Arc::clone(app);
    let (runbook, mode, vars) = (b.runbook.clone(), b.mode.clone(), b.vars.clone());
    let compiled = blocking(move || compile(&a, &runbook, mode.as_deref(), &vars)).await?;
    let run_id = b.run_id.clone();
    let signed = SignedStatement {
        statement: b.statement,
        signature: b.signature,
    };
    // The session says who is calling; the statement says who starts. They must agree.
    let (signer, _) = drover_engine::signed::check(
        &compiled.plan,
        &run_id,
        "",
        drover_identity::Decision::Start,
        &signed,
    )
    .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, "refused", e))?;
    if signer.operator != s.operator {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "refused",
            format!(
                "the start is signed by {} but you are logged in as {}",
                signer.operator, s.operator
            ),
        ));
    }
    let start = drover_ops::Start {
        run_id,
        initiator: signer.operator,
        statement: Some(signed),
        declared_at: app.clock.now_ms(),
        concurrent: b.concurrent,
        skip_preflight: false,
        anchor: None,
    };
    Ok((compiled, start))
}

/// Interrupts a run this server drives, as Ctrl-C does `drover run`: no new steps, running ones
/// finish; asked again, running steps are stopped now. Resume it with `resume`.
async fn interrupt_run(
    State(app): State<Arc<App>>,
    Extension(s): Extension<auth::Session>,
    Path(run): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let now = app.clock.now_ms();
    let a = Arc::clone(&app);
    let r = run.clone();
    let view = blocking(move || a.ws.run_view(&r, now)).await?;
    let run_id = view.record.run_id.clone();
    if !app.interrupter(&run_id).is_some_and(|i| i.interrupt()) {
        let why = match (&view.driven_by, view.row.status.is_live()) {
            (_, false) => format!("run {run_id} is over ({})", view.status),
            (Some(h), true) => {
                format!("run {run_id} is driven by {h}, not by this server: interrupt it there")
            }
            (None, true) => format!("run {run_id} is not driven by anyone (already interrupted)"),
        };
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", why));
    }
    audit(&app, &s.operator, "run.interrupt", "ok", Some(&run_id));
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "run_id": run_id, "interrupted_by": s.operator })),
    ))
}

/// Resumes an interrupted run (or one whose process died) under this server: steps journaled
/// as done are not run again; a step caught in flight is read back first.
async fn resume_run(
    State(app): State<Arc<App>>,
    Extension(s): Extension<auth::Session>,
    Path(run): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let a = Arc::clone(&app);
    let run_id = blocking(move || {
        let j = a.ws.journal_read()?;
        a.ws.resolve(&*j, &run)
    })
    .await?;
    if app.interrupter(&run_id).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("run {run_id} is already driven by this server"),
        ));
    }
    reopen_and_drive(&app, &run_id, &s.operator).await?;
    remember(&app, &run_id).map_err(state_error)?;
    audit(&app, &s.operator, "run.resume", "ok", Some(&run_id));
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "run_id": run_id, "resumed_by": s.operator })),
    ))
}

/// A run's evidence bundle, signed with the server's evidence key.
async fn run_evidence(
    State(app): State<Arc<App>>,
    Extension(s): Extension<auth::Session>,
    Path(run): Path<String>,
) -> Result<Response, ApiError> {
    if app.evidence_key.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_configured",
            "this server has no evidence signing key: start it with --evidence-key file:PATH (drover key generate --signing file:PATH makes one)",
        ));
    }
    let a = Arc::clone(&app);
    let (run_id, bytes, _) = blocking(move || match &a.evidence_key {
        Some(k) => a.ws.evidence(&run, k),
        None => Err(OpsError::Failed("no evidence key".into())),
    })
    .await?;
    audit(&app, &s.operator, "evidence.export", "ok", Some(&run_id));
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"evidence-{run_id}.tar\""),
            ),
            (RUN_ID_HEADER, run_id),
        ],
        bytes,
    )
        .into_response())
}

/// The file listing the runs this server started (resumed when it starts again).
fn runs_file(app: &App) -> PathBuf {
    app.ws.dir().join("server-runs")
}

fn remember(app: &App, run_id: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(runs_file(app))?;
    f.write_all(format!("{run_id}\n").as_bytes())?;
    f.sync_all()
}

/// Makes a run this server's: listed for resuming after a restart, then driven.
fn adopt(app: &Arc<App>, driver: Driver, fresh: bool) -> Result<(), ApiError> {
    remember(app, driver.run_id()).map_err(state_error)?;
    drive(app, driver, fresh);
    Ok(())
}

/// Drives a run in the background, waking event streams as it goes; while it is driven it
/// can be interrupted.
fn drive(app: &Arc<App>, driver: Driver, fresh: bool) {
    let run_id = driver.run_id().to_owned();
    lock(&app.driven).insert(run_id.clone(), driver.interrupter());
    let changed = app.waker(&run_id);
    let app = Arc::clone(app);
    tokio::spawn(async move {
        match driver.drive(fresh).await {
            Ok(record) => {
                if let Err(e) = app.ws.keep_record(&record) {
                    tracing::error!(run = %run_id, error = %e, "cannot keep the run record");
                }
            }
            Err(drover_engine::driver::DriverError::Journal(
                drover_engine::journal::JournalError::Fenced(_),
            )) => tracing::error!(
                run = %run_id,
                replica = %app.config.replica.id,
                "lost the lease on the run: another replica took it over; this replica stopped its steps and acts no more on it"
            ),
            Err(e) => tracing::error!(run = %run_id, error = %e, "run stopped"),
        }
        lock(&app.driven).remove(&run_id);
        lock(&app.tabletops).remove(&run_id);
        changed.notify_waiters();
        app.all.notify_waiters();
    });
}

/// The server could not keep its list of runs.
fn state_error(e: std::io::Error) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "state", e.to_string())
}

/// Reopens `run_id` as `operator` and drives it here: a tabletop simulated as it started, under
/// its facilitator's control; any other run with this server's adapters.
async fn reopen_and_drive(app: &Arc<App>, run_id: &str, operator: &str) -> Result<(), ApiError> {
    let (a, r) = (Arc::clone(app), run_id.to_owned());
    if blocking(move || a.ws.is_tabletop(&r)).await? {
        let (driver, t) = app
            .ws
            .reopen_tabletop(run_id, operator, Wake::new(app, run_id))
            .await?;
        tabletop::drive(app, driver, t, false);
    } else {
        let driver = app
            .ws
            .reopen(
                run_id,
                operator,
                false,
                Arc::clone(&app.clock),
                (app.adapters)(),
                Wake::new(app, run_id),
            )
            .await?;
        drive(app, driver, false);
    }
    Ok(())
}

/// Resumes every run this server started that is not over (after a crash, a kill or a stop):
/// steps journaled as done are not run again; a step caught in flight is read back first.
/// Returns the runs resumed.
pub async fn resume_runs(app: &Arc<App>) -> Vec<String> {
    if app.ws.shared() {
        // With a shared journal every replica takes over runs whose lease expired
        // (`replicas`), whoever started them.
        return Vec::new();
    }
    let listed = std::fs::read_to_string(runs_file(app)).unwrap_or_default();
    let mut resumed = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for run_id in listed.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !seen.insert(run_id.to_owned()) {
            continue;
        }
        let Ok((row, _)) = app.ws.status(run_id) else {
            continue;
        };
        if !matches!(
            row.status,
            drover_engine::journal::RunStatus::Running
                | drover_engine::journal::RunStatus::Waiting
                | drover_engine::journal::RunStatus::Finished(
                    drover_engine::scheduler::RunOutcome::Interrupted
                )
        ) {
            continue;
        }
        match reopen_and_drive(app, run_id, "drover-server").await {
            Ok(()) => resumed.push(run_id.to_owned()),
            Err(e) => tracing::error!(run = %run_id, error = %e.message, "cannot resume"),
        }
    }
    resumed
}

/// Where one event stream stands.
struct Stream {
    app: Arc<App>,
    run: String,
    /// Transitions sent (or skipped with `Last-Event-ID`).
    pos: usize,
    pending: std::collections::VecDeque<SseEvent>,
    /// The stream's own read connection, kept between reads.
    journal: Option<Box<dyn drover_engine::journal::Journal>>,
    /// Whether the last transition read ended the run.
    finished: bool,
    ended: bool,
    /// Woken with nothing journaled (a tabletop's inject, its facilitator's control): the page
    /// is told something changed.
    nudged: bool,
    waker: Arc<Notify>,
}

/// Server-Sent Events of a run: every journaled transition, with its position as the event id.
/// A client reconnecting with `Last-Event-ID: N` gets every transition after the `N`-th, none
/// twice; the stream ends with an `end` event once the run is over.
async fn run_events(
    State(app): State<Arc<App>>,
    Path(run): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let after: usize = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let a = Arc::clone(&app);
    // Whether the last transition the client saw ended the run (then only `end` is left).
    let (journal, finished, run) = blocking(move || {
        let j = a.ws.journal_read()?;
        let r = a.ws.resolve(&*j, &run)?;
        drover_engine::journal::Journal::run(&*j, &r)?;
        let seen_last = match after.checked_sub(1) {
            Some(k) => j.transitions_from(&r, k)?.into_iter().next(),
            None => None,
        };
        let finished = seen_last.is_some_and(|t| {
            t.actions
                .iter()
                .any(|a| matches!(a, drover_engine::scheduler::Action::Finished { .. }))
        });
        Ok((j, finished, r))
    })
    .await?;
    let waker = app.waker(&run);
    let state = Stream {
        app,
        run,
        pos: after,
        pending: std::collections::VecDeque::new(),
        journal: Some(journal),
        finished,
        ended: false,
        nudged: false,
        waker,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.ended {
            return None;
        }
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(ev), st));
            }
            let waker = Arc::clone(&st.waker);
            let notified = waker.notified();
            let (journal, run, pos) = (st.journal.take(), st.run.clone(), st.pos);
            let app = Arc::clone(&st.app);
            let read = tokio::task::spawn_blocking(move || {
                let j = match journal {
                    Some(j) => j,
                    None => app.ws.journal_read()?,
                };
                let fresh = j.transitions_from(&run, pos)?;
                Ok::<_, OpsError>((j, fresh))
            })
            .await;
            let Ok(Ok((j, fresh))) = read else {
                return None;
            };
            st.journal = Some(j);
            for t in fresh {
                st.pos += 1;
                st.finished = t
                    .actions
                    .iter()
                    .any(|a| matches!(a, drover_engine::scheduler::Action::Finished { .. }));
                let data =
                    serde_json::json!({ "at": t.at, "event": t.event, "actions": t.actions });
                st.pending.push_back(
                    SseEvent::default()
                        .id(st.pos.to_string())
                        .event("transition")
                        .data(data.to_string()),
                );
            }
            if !st.pending.is_empty() {
                st.nudged = false;
                continue;
            }
            if st.finished {
                st.ended = true;
                let end = SseEvent::default().event("end").data(st.run.clone());
                return Some((Ok(end), st));
            }
            if std::mem::take(&mut st.nudged) {
                let changed = SseEvent::default().event("changed").data(st.run.clone());
                return Some((Ok(changed), st));
            }
            tokio::select! {
                () = notified => st.nudged = true,
                () = st.app.clock.sleep(POLL_MS) => {}
                () = st.app.closed() => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))))
}

/// Where the all-runs stream stands.
struct AllStream {
    app: Arc<App>,
    /// The number of the last transition sent.
    after: u64,
    pending: std::collections::VecDeque<SseEvent>,
    journal: Option<Box<dyn drover_engine::journal::Journal>>,
}

/// How many transitions the all-runs stream reads at once.
const ALL_BATCH: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllQuery {
    /// Send what follows the transition numbered `after` (0: every transition journaled);
    /// without it (and without `Last-Event-ID`), only what comes next.
    after: Option<u64>,
}

/// Server-Sent Events of every run: each journaled transition, with its run, numbered in the
/// order it was journaled (the event id). A client reconnecting with `Last-Event-ID: N` gets
/// every transition after the `N`-th, none twice.
async fn all_events(
    State(app): State<Arc<App>>,
    Query(q): Query<AllQuery>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let last_id: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let a = Arc::clone(&app);
    let (journal, after) = blocking(move || {
        let j = a.ws.journal_read()?;
        let after = match last_id.or(q.after) {
            Some(n) => n,
            None => j.last_transition()?,
        };
        Ok((j, after))
    })
    .await?;
    let state = AllStream {
        app,
        after,
        pending: std::collections::VecDeque::new(),
        journal: Some(journal),
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(ev), st));
            }
            let all = Arc::clone(&st.app.all);
            let notified = all.notified();
            let (journal, after, app) = (st.journal.take(), st.after, Arc::clone(&st.app));
            let read = tokio::task::spawn_blocking(move || {
                let j = match journal {
                    Some(j) => j,
                    None => app.ws.journal_read()?,
                };
                let fresh = j.transitions_after(after, ALL_BATCH)?;
                Ok::<_, OpsError>((j, fresh))
            })
            .await;
            let Ok(Ok((j, fresh))) = read else {
                return None;
            };
            st.journal = Some(j);
            for (id, run_id, t) in fresh {
                st.after = id;
                let data = serde_json::json!({
                    "run_id": run_id, "at": t.at, "event": t.event, "actions": t.actions,
                });
                st.pending.push_back(
                    SseEvent::default()
                        .id(id.to_string())
                        .event("transition")
                        .data(data.to_string()),
                );
            }
            if !st.pending.is_empty() {
                continue;
            }
            tokio::select! {
                () = notified => {}
                () = st.app.clock.sleep(POLL_MS) => {}
                () = st.app.closed() => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))))
}

async fn metrics(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let text = blocking(move || {
        // One connection; a run's record is read only when it counts: live runs (approvals
        // pending) and the latest run of each runbook (its RTO). Runs come newest first.
        let j = app.ws.journal_read()?;
        let rows = drover_engine::journal::Journal::runs(&*j)?;
        let leases = j.live_leases()?;
        let mut by_status: std::collections::BTreeMap<&str, usize> = Default::default();
        let mut pending = 0usize;
        let mut last_rto: std::collections::BTreeMap<String, (Option<u64>, u64)> =
            Default::default();
        // Per runbook, the steps of its latest run and how long each took.
        let mut durations: Vec<(String, String, u64)> = Vec::new();
        for r in &rows {
            *by_status.entry(r.status.as_str()).or_default() += 1;
            let latest = !last_rto.contains_key(&r.runbook);
            if !r.status.is_live() && !latest {
                continue;
            }
            let Ok((_, rec)) = drover_engine::driver::status(&*j, &r.run_id) else {
                continue;
            };
            if r.status.is_live() {
                pending += rec
                    .steps
                    .iter()
                    .filter(|s| s.state == "awaiting_approval")
                    .count();
            }
            if latest {
                last_rto.insert(r.runbook.clone(), (rec.rto.achieved_ms, rec.rto.target_ms));
                let t = drover_engine::journal::Journal::transitions(&*j, &r.run_id)
                    .map(|t| drover_engine::timeline::Timeline::from_transitions(&t))
                    .unwrap_or_default();
                for (step, n) in &t.nodes {
                    if let (Some(a), Some(b)) = (n.start_ms(), n.end_ms()) {
                        durations.push((r.runbook.clone(), step.clone(), b.saturating_sub(a)));
                    }
                }
            }
        }
        let mut out = replicas::metrics(&app, &leases, app.clock.now_ms());
        out.push_str(
            "# HELP drover_runs Runs in the state directory, by status.\n# TYPE drover_runs gauge\n",
        );
        for (s, n) in by_status {
            out.push_str(&format!("drover_runs{{status=\"{s}\"}} {n}\n"));
        }
        out.push_str("# HELP drover_approvals_pending Approval steps waiting in live runs.\n# TYPE drover_approvals_pending gauge\n");
        out.push_str(&format!("drover_approvals_pending {pending}\n"));
        out.push_str("# HELP drover_last_rto_seconds Achieved RTO of the latest run of each runbook.\n# TYPE drover_last_rto_seconds gauge\n");
        out.push_str("# HELP drover_rto_target_seconds RTO target of each runbook.\n# TYPE drover_rto_target_seconds gauge\n");
        for (book, (achieved, target)) in last_rto {
            let name = label(&book);
            if let Some(a) = achieved {
                out.push_str(&format!(
                    "drover_last_rto_seconds{{runbook=\"{name}\"}} {}\n",
                    a as f64 / 1000.0
                ));
            }
            out.push_str(&format!(
                "drover_rto_target_seconds{{runbook=\"{name}\"}} {}\n",
                target as f64 / 1000.0
            ));
        }
        out.push_str("# HELP drover_step_duration_seconds How long each step of the latest run of each runbook took.\n# TYPE drover_step_duration_seconds gauge\n");
        for (book, step, ms) in durations {
            out.push_str(&format!(
                "drover_step_duration_seconds{{runbook=\"{}\",step=\"{}\"}} {}\n",
                label(&book),
                label(&step),
                ms as f64 / 1000.0
            ));
        }
        Ok::<_, OpsError>(out)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// A Prometheus label value: quotes, backslashes and newlines replaced.
fn label(v: &str) -> String {
    v.replace(['"', '\\', '\n'], "_")
}

/// Runs journal work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OpsError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(ApiError::from)
}

/// Runs `f` on `ws`'s journal off the async runtime (sessions, passkeys: every replica's state).
async fn on_journal<T: Send + 'static>(
    ws: &drover_ops::Workspace,
    f: impl FnOnce(
        &mut dyn drover_engine::journal::Journal,
    ) -> Result<T, drover_engine::journal::JournalError>
    + Send
    + 'static,
) -> Result<T, ApiError> {
    let ws = ws.clone();
    blocking(move || {
        let mut j = ws.journal()?;
        Ok(f(j.as_mut())?)
    })
    .await
}

/// A mutex's guard, whatever a panicking holder left (the maps it guards stay consistent).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

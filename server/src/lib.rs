//! `drover server`: one service for the whole response team. It owns the state directory's
//! journal, drives runs with the same engine as `drover run`, and offers a JSON API under
//! `/api/v1` (docs/api.md) with live Server-Sent Events per run. Every endpoint but `/healthz`
//! needs an operator logged in with a roster SSH key ([`auth`]); every start and every decision
//! is still a statement signed by the operator and verified against the roster.
//!
//! The handlers are thin: each calls one operation of `drover-ops` and turns its result or its
//! error into JSON.

pub mod auth;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use drover_engine::clock::{Clock, SystemClock};
use drover_engine::driver::{Adapters, Driver, Observer, RunSpec, Verdict};
use drover_engine::signed::{Approver, SignedStatement};
use drover_ops::{OpsError, Workspace};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Notify;

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
        Ok(Arc::new(Self {
            ws: Workspace::new(config.state.clone()),
            config,
            roster,
            sessions: auth::Sessions::default(),
            wakers: std::sync::Mutex::default(),
            clock: Arc::new(SystemClock),
            adapters,
        }))
    }
}

impl App {
    /// What wakes the event streams of `run_id`.
    fn waker(&self, run_id: &str) -> Arc<Notify> {
        let mut w = self
            .wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(w.entry(run_id.to_owned()).or_default())
    }
}

/// The API's routes.
pub fn router(app: Arc<App>) -> Router {
    let open = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/login/challenge", post(login_challenge))
        .route("/api/v1/login", post(login));
    let authed = Router::new()
        .route("/api/v1/session", get(whoami).delete(logout))
        .route("/api/v1/runbooks", get(runbooks))
        .route("/api/v1/runs", get(runs).post(start_run))
        .route("/api/v1/runs/prepare", post(prepare_run))
        .route("/api/v1/runs/{run}", get(run_status))
        .route("/api/v1/runs/{run}/events", get(run_events))
        .route("/api/v1/runs/{run}/report", get(run_report))
        .route("/api/v1/runs/{run}/audit", get(run_audit))
        .route(
            "/api/v1/runs/{run}/steps/{step}/statement",
            get(decision_statement),
        )
        .route("/api/v1/runs/{run}/steps/{step}/decisions", post(decide))
        .route("/metrics", get(metrics))
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

/// Serves `app` on `listener` until `shutdown` completes.
///
/// # Errors
/// The socket fails.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
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
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, code, e.to_string())
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

async fn require_session(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized(
                "log in first: drover login --server URL (a bearer token is needed)",
            )
        })?;
    let session = app
        .sessions
        .check(token.trim(), app.clock.now_ms())
        .ok_or_else(|| {
            ApiError::unauthorized("the token is unknown, expired or revoked: log in again")
        })?;
    req.extensions_mut().insert(session);
    Ok(next.run(req).await)
}

/// Writes a server audit record (logins, their refusals) to the state directory's `@server` log.
fn audit(app: &App, operator: &str, action: &str, outcome: &str, detail: Option<&str>) {
    let op = drover_engine::oplog::Operation {
        action,
        operator,
        subject: Some(&app.config.name),
        backup_id: None,
        key_id: None,
        outcome,
        detail,
        signed: None,
    };
    let written = app
        .ws
        .journal()
        .map_err(|e| e.to_string())
        .and_then(|mut j| {
            drover_engine::oplog::record(&mut j, SERVER_LOG, &op, app.clock.now_ms(), None)
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
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
    let challenge = app.sessions.challenge(&app.config.name, now);
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
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
    if !app.sessions.take_challenge(&b.challenge, now) {
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
    let (token, session) = app.sessions.open(&signer.operator, TOKEN_TTL_MS, now);
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
    }))
}

async fn logout(State(app): State<Arc<App>>, Extension(s): Extension<auth::Session>) -> StatusCode {
    app.sessions.revoke(&s.token_sha256);
    audit(&app, &s.operator, "server.logout", "ok", None);
    StatusCode::NO_CONTENT
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
    let rows = blocking(move || app.ws.runs()).await?;
    Ok(Json(serde_json::json!({
        "runs": rows.iter().map(|r| serde_json::json!({
            "run_id": r.run_id,
            "runbook": r.runbook,
            "mode": r.mode.as_str(),
            "initiator": r.initiator,
            "status": r.status.as_str(),
            "created_at": drover_engine::run_record::rfc3339(r.created_at),
        })).collect::<Vec<_>>()
    })))
}

async fn run_status(
    State(app): State<Arc<App>>,
    Path(run): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (row, record) = blocking(move || app.ws.status(&run)).await?;
    Ok(Json(serde_json::json!({
        "status": row.status.as_str(),
        "record": record,
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
    let text = blocking(move || {
        let j = app.ws.journal_read()?;
        let run = app.ws.resolve(&j, &run)?;
        drover_report::gather(&j, &run)
            .and_then(|r| drover_report::render(&r, format.0, None))
            .map_err(|e| OpsError::NotFound(e.to_string()))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, format.1)], text).into_response())
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
    Path((run, step)): Path<(String, String)>,
    Query(q): Query<StatementQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
        "statement": text,
        "namespace": drover_identity::NAMESPACE,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    statement: String,
    signature: String,
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
    let approved = blocking(move || {
        let v = verdict(b.decision.as_deref(), b.reason.as_deref())
            .map_err(|e| OpsError::Usage(e.message))?;
        let approver = Approver::Signed(SignedStatement {
            statement: b.statement,
            signature: b.signature,
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
struct StartBody {
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
) -> Result<
    (
        drover_dsl::Plan,
        drover_dsl::Mode,
        Vec<drover_engine::journal::SourceText>,
    ),
    OpsError,
> {
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
    let path = app.config.runbooks.join(runbook);
    let catalogue = drover_adapters::builtin_catalogue();
    let opts = drover_dsl::CompileOptions {
        catalogue: &catalogue,
        vars: vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        operators: Some(app.config.operators.display().to_string()),
    };
    let c = drover_dsl::compile(&path.display().to_string(), &drover_dsl::FsLoader, &opts);
    let Some(plan) = c.plan else {
        let first = c
            .diagnostics
            .iter()
            .find(|d| d.is_error())
            .map_or_else(String::new, |d| {
                format!("{}: {}", d.code.as_str(), d.message)
            });
        return Err(OpsError::Usage(format!(
            "{runbook} does not compile: {first}"
        )));
    };
    let mode = match mode {
        Some(m) => drover_dsl::Mode::parse(m)
            .ok_or_else(|| OpsError::Usage(format!("mode `{m}`: drill, failover or failback")))?,
        None => plan
            .runbook
            .modes
            .first()
            .copied()
            .ok_or_else(|| OpsError::Usage("the runbook has no modes".into()))?,
    };
    if !plan.runbook.modes.contains(&mode) {
        return Err(OpsError::Usage(format!(
            "{runbook} has no {} mode",
            mode.as_str()
        )));
    }
    let sources = c
        .sources
        .files()
        .iter()
        .map(|f| drover_engine::journal::SourceText {
            name: f.name.clone(),
            text: f.text.clone(),
        })
        .collect();
    Ok((plan, mode, sources))
}

async fn prepare_run(
    State(app): State<Arc<App>>,
    Body(b): Body<PrepareBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let out = blocking(move || {
        let (plan, mode, _) = compile(&app, &b.runbook, b.mode.as_deref(), &b.vars)?;
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

/// Wakes event streams on every line the driver says.
#[derive(Debug)]
struct Wake(Arc<Notify>);

impl Observer for Wake {
    fn line(&self, _: &str) {
        self.0.notify_waiters();
    }
}

async fn start_run(
    State(app): State<Arc<App>>,
    Extension(s): Extension<auth::Session>,
    Body(b): Body<StartBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let a = Arc::clone(&app);
    let (plan, mode, sources) =
        blocking(move || compile(&a, &b.runbook, b.mode.as_deref(), &b.vars)).await?;
    let run_id = b.run_id.clone();
    let concurrent = b.concurrent.clone().filter(|r| !r.trim().is_empty());
    let signed = SignedStatement {
        statement: b.statement,
        signature: b.signature,
    };
    // The session says who is calling; the statement says who starts. They must agree.
    let (signer, _) = drover_engine::signed::check(
        &plan,
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
    let adapters = (app.adapters)();
    let lines = drover_engine::driver::dry_run(&plan, mode, &adapters, app.ws.dir(), &run_id).await;
    let problems: Vec<String> = lines
        .iter()
        .filter_map(|l| l.problem.as_ref().map(|p| format!("{}: {p}", l.step)))
        .collect();
    if !problems.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "preflight",
            format!(
                "preflight: {} step(s) would fail; nothing was started: {}",
                problems.len(),
                problems.join("; ")
            ),
        ));
    }
    let journal = app.ws.journal().map_err(ApiError::from)?;
    let spec = RunSpec {
        run_id: run_id.clone(),
        mode,
        initiator: signer.operator.clone(),
        state_dir: app.ws.dir().to_path_buf(),
        declared_at: app.clock.now_ms(),
        sources,
        concurrent,
        preflight_skipped: false,
        start: Some(signed),
        anchor: None,
    };
    let driver = Driver::start(
        spec,
        Arc::new(plan),
        Box::new(journal),
        Arc::clone(&app.clock),
        adapters,
        Arc::new(Wake(app.waker(&run_id))),
    )
    .map_err(|e| ApiError::from(OpsError::from(e)))?;
    remember(&app, &run_id)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "state", e.to_string()))?;
    drive(&app, driver, true, run_id.clone());
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "run_id": run_id, "initiator": signer.operator })),
    ))
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

/// Drives a run in the background, waking event streams as it goes.
fn drive(app: &Arc<App>, driver: Driver, fresh: bool, run_id: String) {
    let changed = app.waker(&run_id);
    tokio::spawn(async move {
        if let Err(e) = driver.drive(fresh).await {
            tracing::error!(run = %run_id, error = %e, "run stopped");
        }
        changed.notify_waiters();
    });
}

/// Resumes every run this server started that is not over (after a crash, a kill or a stop):
/// steps journaled as done are not run again; a step caught in flight is read back first.
/// Returns the runs resumed.
pub async fn resume_runs(app: &Arc<App>) -> Vec<String> {
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
        let journal = match app.ws.journal() {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(run = %run_id, error = %e, "cannot resume");
                continue;
            }
        };
        match Driver::resume(
            run_id,
            app.ws.dir().to_path_buf(),
            "drover-server",
            Box::new(journal),
            Arc::clone(&app.clock),
            (app.adapters)(),
            Arc::new(Wake(app.waker(run_id))),
        )
        .await
        {
            Ok(d) => {
                drive(app, d, false, run_id.to_owned());
                resumed.push(run_id.to_owned());
            }
            Err(e) => tracing::error!(run = %run_id, error = %e, "cannot resume"),
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
    journal: Option<drover_engine::journal::SqliteJournal>,
    /// Whether the last transition read ended the run.
    finished: bool,
    ended: bool,
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
    let r = run.clone();
    // Whether the last transition the client saw ended the run (then only `end` is left).
    let (journal, finished) = blocking(move || {
        let j = a.ws.journal_read()?;
        drover_engine::journal::Journal::run(&j, &r)?;
        let seen_last = match after.checked_sub(1) {
            Some(k) => j.transitions_from(&r, k)?.into_iter().next(),
            None => None,
        };
        let finished = seen_last.is_some_and(|t| {
            t.actions
                .iter()
                .any(|a| matches!(a, drover_engine::scheduler::Action::Finished { .. }))
        });
        Ok((j, finished))
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
                continue;
            }
            if st.finished {
                st.ended = true;
                let end = SseEvent::default().event("end").data(st.run.clone());
                return Some((Ok(end), st));
            }
            tokio::select! {
                () = notified => {}
                () = st.app.clock.sleep(POLL_MS) => {}
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
        let rows = drover_engine::journal::Journal::runs(&j)?;
        let mut by_status: std::collections::BTreeMap<&str, usize> = Default::default();
        let mut pending = 0usize;
        let mut last_rto: std::collections::BTreeMap<String, (Option<u64>, u64)> =
            Default::default();
        for r in &rows {
            *by_status.entry(r.status.as_str()).or_default() += 1;
            let latest = !last_rto.contains_key(&r.runbook);
            if !r.status.is_live() && !latest {
                continue;
            }
            let Ok((_, rec)) = drover_engine::driver::status(&j, &r.run_id) else {
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
            }
        }
        let mut out = String::from(
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
            let name = book.replace(['"', '\\', '\n'], "_");
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
        Ok::<_, OpsError>(out)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
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

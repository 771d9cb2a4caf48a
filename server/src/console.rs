//! The console: a live web page for the response team, served by the server with its assets
//! embedded (no build step, no CDN — it works inside an isolated recovery network).
//!
//! A browser gets a session from an operator already logged in with the CLI: `drover console`
//! asks for a one-time link (`POST /api/v1/console/link`, 60 s), and opening it sets an
//! `HttpOnly; Secure; SameSite=Strict` session cookie. The page then reads the same JSON API and
//! Server-Sent Events the CLI does; its state-changing requests carry the session's CSRF token.

use super::{App, SESSION_COOKIE, TOKEN_TTL_MS, audit, auth};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use std::sync::Arc;

const INDEX: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const APP_CSS: &str = include_str!("../console/app.css");

/// What every console page says about itself: only its own scripts, styles and connections, never
/// framed, its URL (a one-time link) not passed on.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The console's routes that need no session (the page itself holds no data).
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/console/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route("/console/enter", get(enter))
        .route("/console/session", get(session))
}

/// `GET /console/session`: who the session cookie is (and its CSRF token), or `null` — so the
/// page can tell a signed-out browser how to sign in without a failed request on load.
async fn session(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let s = match super::cookie(&headers, SESSION_COOKIE) {
        Some(t) => match app.sessions.check(t, app.clock.now_ms()).await {
            Ok(s) => s,
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let body = match s {
        Some(s) => serde_json::json!({
            "operator": s.operator,
            "csrf": s.csrf,
            "expires_at": drover_engine::run_record::rfc3339(s.expires_at),
        }),
        None => serde_json::json!({ "operator": null }),
    };
    let mut r = Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `POST /api/v1/console/link`: a one-time link that opens a browser session for the caller.
pub(crate) async fn link(
    State(app): State<Arc<App>>,
    Extension(s): Extension<auth::Session>,
) -> Result<Json<serde_json::Value>, super::ApiError> {
    let now = app.clock.now_ms();
    let code = app.sessions.link(&s.operator, now).await?;
    audit(&app, &s.operator, "console.link", "ok", None);
    Ok(Json(serde_json::json!({
        "path": format!("/console/enter?code={code}"),
        "expires_at": drover_engine::run_record::rfc3339(now + auth::LINK_TTL_MS),
    })))
}

#[derive(serde::Deserialize)]
pub(crate) struct EnterQuery {
    code: String,
    /// Open this run's live page.
    run: Option<String>,
}

/// `GET /console/enter?code=…`: trades a one-time link for a session cookie.
async fn enter(State(app): State<Arc<App>>, Query(q): Query<EnterQuery>) -> Response {
    let now = app.clock.now_ms();
    let taken = match app.sessions.take_link(&q.code, now).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let Some(operator) = taken else {
        audit(
            &app,
            "unverified",
            "console.enter",
            "refused",
            Some("unknown, used or expired link"),
        );
        let mut r = asset("text/html; charset=utf-8", INDEX);
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    };
    let token = match app.sessions.open(&operator, TOKEN_TTL_MS, now).await {
        Ok((token, _)) => token,
        Err(e) => return e.into_response(),
    };
    audit(&app, &operator, "console.enter", "ok", None);
    let to = match q.run.as_deref().filter(|r| {
        !r.is_empty()
            && r.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    }) {
        Some(run) => format!("/console/#/runs/{run}"),
        None => "/console/".to_owned(),
    };
    let mut r = Redirect::to(&to).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
        TOKEN_TTL_MS / 1000
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

//! Tabletop exercises for the whole team: a facilitator starts one (`drover tabletop FILE
//! --server URL`, or `POST /api/v1/tabletops`); the participants follow it in the console like a
//! real run, labelled SIMULATED, see the scenario's injects as they fire and approve with their
//! own signatures; the facilitator pauses it, changes its speed and adds injects. It is
//! journaled as a simulated run (drover-ops).

use super::{ApiError, App, Body, StartBody, Wake, blocking, lock, signed_start};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use drover_engine::clock::Clock;
use drover_engine::driver::Driver;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TabletopBody {
    runbook: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    vars: std::collections::BTreeMap<String, String>,
    run_id: String,
    statement: String,
    signature: String,
    /// The scenario (TOML text, as `drover simulate --scenario` reads); none: no faults.
    #[serde(default)]
    scenario: Option<String>,
    /// Virtual seconds per real second (default 60).
    #[serde(default)]
    speed: Option<f64>,
}

/// How fast a tabletop runs unless told: a minute of the exercise per second.
pub const DEFAULT_SPEED: f64 = 60.0;

/// `POST /api/v1/tabletops`: starts a tabletop exercise, signed like a run's start.
pub(crate) async fn start(
    State(app): State<Arc<App>>,
    Extension(s): Extension<super::auth::Session>,
    Body(b): Body<TabletopBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let speed = b.speed.unwrap_or(DEFAULT_SPEED);
    if !speed.is_finite() || !drover_simulator::live::SPEEDS.contains(&speed) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "speed: between 0.1 and 10000 virtual seconds per second",
        ));
    }
    let scenario = b.scenario.unwrap_or_default();
    let (compiled, start) = signed_start(
        &app,
        &s,
        StartBody {
            runbook: b.runbook,
            mode: b.mode,
            vars: b.vars,
            run_id: b.run_id,
            statement: b.statement,
            signature: b.signature,
            concurrent: None,
        },
    )
    .await?;
    let run_id = start.run_id.clone();
    let (driver, tabletop) = app
        .ws
        .start_tabletop(compiled, start, &scenario, speed, Wake::new(&app, &run_id))
        .await?;
    let facilitator = tabletop.facilitator.clone();
    super::remember(&app, &run_id).map_err(super::state_error)?;
    drive(&app, driver, tabletop, true);
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "run_id": run_id,
            "facilitator": facilitator,
            "simulated": true,
            "speed": speed,
        })),
    ))
}

/// Drives a tabletop here, its clock under the facilitator's control, and fires its injects
/// still to come.
pub(crate) fn drive(app: &Arc<App>, driver: Driver, t: drover_ops::Tabletop, fresh: bool) {
    let run_id = driver.run_id().to_owned();
    lock(&app.tabletops).insert(run_id.clone(), t.clone());
    super::drive(app, driver, fresh);
    fire_injects(app, &run_id, t);
}

/// Records each of the scenario's injects when the exercise's clock reaches it (those already
/// recorded, before a restart, are not recorded again), while the exercise is driven here.
fn fire_injects(app: &Arc<App>, run_id: &str, t: drover_ops::Tabletop) {
    let app = Arc::clone(app);
    let run_id = run_id.to_owned();
    tokio::spawn(async move {
        let fired = {
            let (a, r) = (Arc::clone(&app), run_id.clone());
            blocking(move || a.ws.injects(&r)).await.unwrap_or_default()
        };
        let already = fired.iter().filter(|i| i.by == "scenario").count();
        for (at, text) in t.injects.iter().skip(already) {
            let due = t.origin + at;
            loop {
                if !lock(&app.driven).contains_key(&run_id) {
                    return;
                }
                let now = t.clock.now_ms();
                if now >= due {
                    break;
                }
                // Look again at least every second of real time (the run may end; the
                // facilitator may change the pace).
                tokio::select! {
                    () = t.clock.sleep(due - now) => {}
                    () = app.clock.sleep(1_000) => {}
                }
            }
            let (a, r, text) = (Arc::clone(&app), run_id.clone(), text.clone());
            let at = t.clock.now_ms();
            let recorded = blocking(move || {
                a.ws.tabletop_record(&r, "scenario", "tabletop.inject", &text, at)
            })
            .await;
            if let Err(e) = recorded {
                tracing::error!(run = %run_id, error = %e.message, "cannot record an inject");
            }
            app.waker(&run_id).notify_waiters();
            app.all.notify_waiters();
        }
    });
}

/// The tabletop part of a run's status: the facilitator, the pace, the injects so far.
pub(crate) fn view(
    app: &App,
    v: &drover_ops::RunView,
) -> Result<Option<serde_json::Value>, drover_ops::OpsError> {
    if !v.simulated {
        return Ok(None);
    }
    let injects = app.ws.injects(&v.row.run_id)?;
    let live = lock(&app.tabletops).get(&v.row.run_id).cloned();
    Ok(Some(serde_json::json!({
        "facilitator": v.row.initiator,
        "driven_here": live.is_some(),
        "paused": live.as_ref().map(|t| t.clock.paused()),
        "speed": live.as_ref().map(|t| t.clock.speed()),
        "virtual_now": live.as_ref().map(|t| drover_engine::run_record::rfc3339(t.clock.now_ms())),
        "injects": injects,
    })))
}

/// The tabletop `run` this server drives, if the caller facilitates it.
fn facilitated(app: &App, run: &str, who: &str) -> Result<drover_ops::Tabletop, ApiError> {
    let t = lock(&app.tabletops).get(run).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "not_driven",
            format!("{run} is not a tabletop exercise this server drives now"),
        )
    })?;
    if t.facilitator != who {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "refused",
            format!(
                "only the facilitator ({}) controls this exercise",
                t.facilitator
            ),
        ));
    }
    Ok(t)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ControlBody {
    /// `pause`, `resume` or `speed`.
    action: String,
    #[serde(default)]
    speed: Option<f64>,
}

/// `POST /api/v1/runs/{run}/tabletop`: the facilitator pauses, resumes or changes the speed.
pub(crate) async fn control(
    State(app): State<Arc<App>>,
    Extension(s): Extension<super::auth::Session>,
    Path(run): Path<String>,
    Body(b): Body<ControlBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let t = facilitated(&app, &run, &s.operator)?;
    let detail = match (b.action.as_str(), b.speed) {
        ("pause", None) => {
            t.clock.pause();
            "paused".to_owned()
        }
        ("resume", None) => {
            t.clock.resume();
            "resumed".to_owned()
        }
        ("speed", Some(x)) if x.is_finite() && drover_simulator::live::SPEEDS.contains(&x) => {
            t.clock.set_speed(x);
            format!("speed {x}")
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "action: pause, resume, or speed with `speed` between 0.1 and 10000",
            ));
        }
    };
    let (a, r, op, d) = (
        Arc::clone(&app),
        run.clone(),
        s.operator.clone(),
        detail.clone(),
    );
    let at = t.clock.now_ms();
    blocking(move || a.ws.tabletop_record(&r, &op, "tabletop.control", &d, at)).await?;
    app.waker(&run).notify_waiters();
    Ok(Json(serde_json::json!({
        "paused": t.clock.paused(),
        "speed": t.clock.speed(),
        "done": detail,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InjectBody {
    text: String,
}

/// `POST /api/v1/runs/{run}/injects`: the facilitator adds an inject, seen by everyone at once.
pub(crate) async fn inject(
    State(app): State<Arc<App>>,
    Extension(s): Extension<super::auth::Session>,
    Path(run): Path<String>,
    Body(b): Body<InjectBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let t = facilitated(&app, &run, &s.operator)?;
    let text = b.text.trim().replace(['\n', '\r'], " ");
    if text.is_empty() || text.chars().count() > 500 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "an inject is one line of at most 500 characters",
        ));
    }
    let (a, r, op, d) = (
        Arc::clone(&app),
        run.clone(),
        s.operator.clone(),
        text.clone(),
    );
    let at = t.clock.now_ms();
    blocking(move || a.ws.tabletop_record(&r, &op, "tabletop.inject", &d, at)).await?;
    app.waker(&run).notify_waiters();
    app.all.notify_waiters();
    Ok(Json(serde_json::json!({
        "at": drover_engine::run_record::rfc3339(at),
        "text": text,
        "by": s.operator,
    })))
}

//! The server's alerting: reconciles the conditions that hold (`drover_ops::alerts`) with the
//! alerts journaled, fires new ones, resolves cleared ones, and delivers each change to every
//! sink with retries — each attempt journaled and audited (`@alerts`). A sink that cannot be
//! reached raises `delivery_failing` on the others.

use crate::{App, blocking, lock};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use drover_alerts::{Action, Alert, AlertKind, SinkConfig};
use drover_engine::audit::AuditRecord;
use drover_engine::journal::{ALERTS_LOG, Grant};
use drover_engine::run_record::rfc3339;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// How often conditions are looked at when nothing wakes the loop (ms).
const LOOK_MS: u64 = 5_000;
/// After a run changes, how long to let its burst of transitions settle before looking (ms).
const SETTLE_MS: u64 = 500;

/// Who the alert audit records name.
const ALERTER: &str = "alerts";

/// The journal grant kind of a replica's claim on delivering one alert change to one sink.
const DELIVERY_CLAIM: &str = "alert-delivery";
/// How long a claim lasts unless its holder renews it (at every attempt): replicas on one
/// journal deliver each change once, and if the claiming replica dies, another delivers after
/// this (ms).
const CLAIM_MS: u64 = 60_000;

fn audit(
    now_ms: u64,
    subject: Option<String>,
    action: &str,
    outcome: &str,
    detail: String,
) -> AuditRecord {
    AuditRecord {
        seq: 0,
        ts: rfc3339(now_ms),
        run_id: ALERTS_LOG.to_owned(),
        operator: ALERTER.to_owned(),
        step: subject,
        action: action.to_owned(),
        backup_id: None,
        key_id: None,
        outcome: outcome.to_owned(),
        error: Some(detail),
        prev: String::new(),
        signed: None,
    }
}

/// What this server calls itself in alerts.
fn source(app: &App) -> String {
    format!("drover server {}", app.config.name)
}

/// Starts alerting in the background (nothing to do without sinks); it stops with the server.
pub fn spawn(app: &Arc<App>) {
    if app.config.alerts.sinks.is_empty() {
        return;
    }
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let inflight: Arc<std::sync::Mutex<HashSet<(String, String)>>> = Arc::default();
        let cache: RunbookCache = Arc::default();
        let http = reqwest::Client::new();
        let mut closing = app.closing.subscribe();
        loop {
            if *closing.borrow() {
                return;
            }
            match owed(&app, &cache).await {
                Ok(todo) => {
                    for (alert, sink, action) in todo {
                        let k = (alert.key.clone(), sink.name.clone());
                        if !lock(&inflight).insert(k.clone()) {
                            continue;
                        }
                        let (app, http, inflight) =
                            (Arc::clone(&app), http.clone(), Arc::clone(&inflight));
                        tokio::spawn(async move {
                            send(&app, &http, &alert, &sink, action).await;
                            lock(&inflight).remove(&k);
                        });
                    }
                }
                Err(e) => tracing::error!(error = %e.message, "alerts: cannot read the journal"),
            }
            tokio::select! {
                () = app.clock.sleep(LOOK_MS) => {}
                // A run changed: look again soon, once for a burst of transitions.
                () = app.all.notified() => app.clock.sleep(SETTLE_MS).await,
                _ = closing.changed() => return,
            }
        }
    });
}

/// The runbook directory compiled, kept until a file in it changes.
type RunbookCache = Arc<
    std::sync::Mutex<
        Option<(
            crate::schedules::Fingerprint,
            Vec<drover_ops::schedules::ScheduledRunbook>,
        )>,
    >,
>;

/// Reconciles and returns the deliveries owed: (alert, sink, action).
async fn owed(
    app: &Arc<App>,
    cache: &RunbookCache,
) -> Result<Vec<(Alert, SinkConfig, Action)>, crate::ApiError> {
    let cache = Arc::clone(cache);
    let (dir, state, now) = (
        app.config.runbooks.clone(),
        app.ws.clone(),
        app.clock.now_ms(),
    );
    let cfg = app.config.alerts.clone();
    blocking(move || {
        let ws = state;
        // Compiled again only when a runbook changed (this runs every few seconds).
        let fp = crate::schedules::fingerprint(&dir);
        let rbs = {
            let mut c = lock(&cache);
            match c.as_ref() {
                Some((seen, rbs)) if *seen == fp => rbs.clone(),
                _ => {
                    let (rbs, _) = drover_ops::schedules::runbooks_in(&dir).unwrap_or_default();
                    *c = Some((fp, rbs.clone()));
                    rbs
                }
            }
        };
        let report = |run: &str| format!("/api/v1/runs/{run}/report");
        let posture = drover_ops::posture::drill_posture(&rbs, &ws, now, &report)?;
        let mut holding = drover_ops::alerts::conditions(&ws, &posture, now, cfg.approval_wait_ms)?;
        let mut j = ws.journal()?;
        let sinks = j.alert_sinks()?;
        for s in &cfg.sinks {
            let failing: Vec<_> = sinks
                .iter()
                .filter(|r| r.sink == s.name && r.gave_up.is_some())
                .collect();
            if let Some(last) = failing.iter().max_by_key(|r| r.updated_at) {
                let mut details = BTreeMap::new();
                details.insert("sink".into(), s.name.clone());
                details.insert("type".into(), s.kind.as_str().to_owned());
                details.insert("undelivered".into(), failing.len().to_string());
                details.insert(
                    "last error".into(),
                    last.last_error.clone().unwrap_or_default(),
                );
                holding.push(Alert {
                    key: format!("drover/delivery_failing/{}", s.name),
                    kind: AlertKind::DeliveryFailing,
                    summary: format!(
                        "Alert delivery failing: sink `{}` ({}): {}",
                        s.name,
                        s.kind.as_str(),
                        last.last_error.as_deref().unwrap_or("no answer")
                    ),
                    runbook: None,
                    run_id: None,
                    details,
                    since: rfc3339(last.updated_at),
                });
            }
        }
        let current = j.alerts()?;
        let keys: HashSet<&str> = holding.iter().map(|a| a.key.as_str()).collect();
        for a in &holding {
            let json = serde_json::to_string(a)
                .map_err(|e| drover_ops::OpsError::Failed(e.to_string()))?;
            j.set_alert(
                &a.key,
                a.kind.as_str(),
                "firing",
                &json,
                now,
                &audit(
                    now,
                    Some(a.key.clone()),
                    "alert.trigger",
                    "firing",
                    a.summary.clone(),
                ),
            )?;
        }
        for a in current
            .iter()
            .filter(|a| a.state == "firing" && !keys.contains(a.key.as_str()))
        {
            j.set_alert(
                &a.key,
                &a.kind,
                "resolved",
                &a.alert,
                now,
                &audit(
                    now,
                    Some(a.key.clone()),
                    "alert.resolve",
                    "resolved",
                    "the condition cleared".into(),
                ),
            )?;
        }
        let sinks = j.alert_sinks()?;
        let mut todo = Vec::new();
        for a in j.alerts()? {
            let Ok(alert) = serde_json::from_str::<Alert>(&a.alert) else {
                continue;
            };
            for s in &cfg.sinks {
                // A sink is not told that it is failing; the others are.
                if alert.kind == AlertKind::DeliveryFailing
                    && alert.key.ends_with(&format!("/{}", s.name))
                {
                    continue;
                }
                if let Some(action) = owed_action(&a, &sinks, &s.name) {
                    todo.push((alert.clone(), s.clone(), action));
                }
            }
        }
        Ok(todo)
    })
    .await
}

/// What `sink` is owed for alert `a`, given where every delivery stands.
fn owed_action(
    a: &drover_engine::journal::AlertRow,
    sinks: &[drover_engine::journal::AlertSinkRow],
    sink: &str,
) -> Option<Action> {
    let row = sinks.iter().find(|r| r.key == a.key && r.sink == sink);
    let delivered = row.map_or("", |r| r.delivered.as_str());
    let gave_up = row.and_then(|r| r.gave_up.as_deref());
    if a.state == "firing" {
        (delivered != "trigger" && gave_up != Some("trigger")).then_some(Action::Trigger)
    } else {
        (delivered == "trigger" && gave_up != Some("resolve")).then_some(Action::Resolve)
    }
}

/// The claim on delivering `alert` to `sink`, held by this replica until `now + CLAIM_MS`.
fn claim_of(
    app: &App,
    alert: &Alert,
    sink: &SinkConfig,
    action: Action,
    now: u64,
) -> (String, Grant) {
    (
        format!("{}\n{}", alert.key, sink.name),
        Grant {
            holder: app.config.replica.id.clone(),
            data: action.as_str().to_owned(),
            expires_at: now + CLAIM_MS,
        },
    )
}

/// Claims the delivery of `action` of `alert` to `sink` for this replica: `false` when another
/// replica holds it, or when it is no longer owed (delivered meanwhile, by whoever held it).
async fn claim(app: &Arc<App>, alert: &Alert, sink: &SinkConfig, action: Action) -> bool {
    let (key, grant) = claim_of(app, alert, sink, action, app.clock.now_ms());
    let (ws, now, alert_key, sink_name) = (
        app.ws.clone(),
        app.clock.now_ms(),
        alert.key.clone(),
        sink.name.clone(),
    );
    let claimed = blocking(move || {
        let mut j = ws.journal()?;
        if !j.put_grant(DELIVERY_CLAIM, &key, &grant, now)? {
            return Ok(false);
        }
        // Read after claiming: a holder records its delivery before it lets go of its claim.
        let sinks = j.alert_sinks()?;
        let owed = j
            .alerts()?
            .iter()
            .find(|a| a.key == alert_key)
            .and_then(|a| owed_action(a, &sinks, &sink_name));
        if owed != Some(action) {
            j.take_grant(DELIVERY_CLAIM, &key, now)?;
            return Ok(false);
        }
        Ok(true)
    })
    .await;
    claimed.unwrap_or_else(|e| {
        tracing::error!(error = %e.message, "alerts: cannot claim a delivery");
        false
    })
}

/// Delivers one change to one sink with retries, journaling every attempt.
async fn send(
    app: &Arc<App>,
    http: &reqwest::Client,
    alert: &Alert,
    sink: &SinkConfig,
    action: Action,
) {
    if !claim(app, alert, sink, action).await {
        return;
    }
    let cfg = &app.config.alerts;
    let ws = app.ws.clone();
    let clock = Arc::clone(&app.clock);
    let attempts = cfg.attempts;
    let result = drover_alerts::deliver_with_retry(
        sink,
        alert,
        action,
        &source(app),
        http,
        attempts,
        cfg.backoff_ms,
        || clock.now_ms(),
        |ms| clock.sleep(ms),
        |n, r| {
            let now = clock.now_ms();
            let give_up = matches!(r, Err(e) if !e.retryable() || n >= attempts);
            let (outcome, detail) = match r {
                Ok(answer) => (
                    "delivered",
                    format!("{} {} attempt {n}: {answer}", action.as_str(), alert.key),
                ),
                Err(e) => (
                    if give_up { "gave_up" } else { "failed" },
                    format!("{} {} attempt {n}: {e}", action.as_str(), alert.key),
                ),
            };
            let rec = audit(
                now,
                Some(sink.name.clone()),
                "alert.deliver",
                outcome,
                detail,
            );
            let err_text = r.as_ref().err().map(ToString::to_string);
            let outcome = match r {
                Ok(answer) => Ok(answer.as_str()),
                Err(_) => Err(err_text.as_deref().unwrap_or("")),
            };
            let (claim_key, claim) = claim_of(app, alert, sink, action, now);
            let written = ws.journal().map_err(|e| e.to_string()).and_then(|mut j| {
                // Still delivering: the claim is renewed with every attempt.
                j.put_grant(DELIVERY_CLAIM, &claim_key, &claim, now)
                    .map_err(|e| e.to_string())?;
                j.record_delivery(
                    &alert.key,
                    &sink.name,
                    action.as_str(),
                    outcome,
                    give_up,
                    now,
                    &rec,
                )
                .map_err(|e| e.to_string())
            });
            if let Err(e) = written {
                tracing::error!(error = %e, "alerts: cannot journal a delivery attempt");
            }
        },
    )
    .await;
    // Delivered or given up, and journaled: the claim is let go.
    let (claim_key, _) = claim_of(app, alert, sink, action, 0);
    let (ws, now) = (app.ws.clone(), app.clock.now_ms());
    let me = app.config.replica.id.clone();
    let released = blocking(move || {
        let mut j = ws.journal()?;
        // Ours still (a claim that lapsed may have been taken by another replica meanwhile).
        if j.grant(DELIVERY_CLAIM, &claim_key, now)?
            .is_some_and(|g| g.holder == me)
        {
            j.take_grant(DELIVERY_CLAIM, &claim_key, now)?;
        }
        Ok(())
    })
    .await;
    if let Err(e) = released {
        tracing::warn!(error = %e.message, "alerts: cannot let go of a delivery claim (it lapses by itself)");
    }
    match result {
        Ok(_) => {
            tracing::info!(sink = %sink.name, key = %alert.key, action = action.as_str(), "alert delivered")
        }
        Err(e) => {
            tracing::warn!(sink = %sink.name, key = %alert.key, action = action.as_str(), error = %e, "alert not delivered")
        }
    }
}

/// `GET /api/v1/alerts`: the sinks, and every alert with where it stands with each sink.
pub(crate) async fn list(
    State(app): State<Arc<App>>,
) -> Result<Json<serde_json::Value>, crate::ApiError> {
    let state = app.ws.clone();
    let list = blocking(move || drover_ops::alerts::alert_list(&state)).await?;
    let configured: Vec<serde_json::Value> = app
        .config
        .alerts
        .sinks
        .iter()
        .map(|s| serde_json::json!({ "name": s.name, "type": s.kind.as_str() }))
        .collect();
    Ok(Json(
        serde_json::json!({ "sinks": configured, "alerts": list }),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct TestBody {
    sink: String,
}

/// `POST /api/v1/alerts/test {"sink": NAME}`: a test alert, delivered once to that sink now
/// (journaled and audited with the caller's name); the answer says what the sink said.
pub(crate) async fn test(
    State(app): State<Arc<App>>,
    axum::Extension(s): axum::Extension<crate::auth::Session>,
    crate::Body(b): crate::Body<TestBody>,
) -> Result<Json<serde_json::Value>, crate::ApiError> {
    let Some(sink) = app.config.alerts.sink(&b.sink).cloned() else {
        let known: Vec<&str> = app
            .config
            .alerts
            .sinks
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        return Err(crate::ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no sink `{}` (configured: {})",
                b.sink,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    let now = app.clock.now_ms();
    let alert = Alert {
        key: format!("drover/test/{}/{now}", sink.name),
        kind: AlertKind::Test,
        summary: format!(
            "Test alert from {} to sink `{}`, asked by {}",
            source(&app),
            sink.name,
            s.operator
        ),
        runbook: None,
        run_id: None,
        details: BTreeMap::from([("asked by".to_owned(), s.operator.clone())]),
        since: rfc3339(now),
    };
    let http = reqwest::Client::new();
    let r = drover_alerts::deliver(&sink, &alert, Action::Trigger, &source(&app), now, &http).await;
    let (outcome, detail) = match &r {
        Ok(a) => ("delivered", format!("test by {}: {a}", s.operator)),
        Err(e) => ("failed", format!("test by {}: {e}", s.operator)),
    };
    let rec = audit(now, Some(sink.name.clone()), "alert.test", outcome, detail);
    let ws = app.ws.clone();
    blocking(move || {
        ws.journal()?.append_log(ALERTS_LOG, &[rec])?;
        Ok(())
    })
    .await?;
    match r {
        Ok(answer) => Ok(Json(
            serde_json::json!({ "sink": sink.name, "delivered": true, "answer": answer }),
        )),
        Err(e) => Err(crate::ApiError::new(
            StatusCode::BAD_GATEWAY,
            "delivery",
            format!("sink `{}`: {e}", sink.name),
        )),
    }
}

//! The server's scheduler: fires the `schedule` blocks of the runbooks in its runbook directory.
//! Every decision is journaled before a run starts (`drover_ops::schedules`); the run it starts
//! is this server's like any other (listed for resuming, driven here, interruptible), and its
//! initiator is `schedule:NAME`.

use crate::{App, Wake, blocking, drive, lock, remember, reopen_and_drive};
use axum::Json;
use axum::extract::{Query, State};
use drover_ops::schedules::{Pending, Scheduler, runbooks_in, schedule_views};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

/// The longest the scheduler sleeps without looking again (queued fires, a changed runbook).
const LOOK_MS: u64 = 30_000;

/// What a runbook directory holds: names, sizes, modification times.
pub(crate) type Fingerprint = Vec<(String, u64, Option<std::time::SystemTime>)>;

/// What the runbook directory holds, to notice a change (names, sizes, modification times).
pub(crate) fn fingerprint(dir: &Path) -> Fingerprint {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "drover"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                m.len(),
                m.modified().ok(),
            ))
        })
        .collect();
    out.sort();
    out
}

/// Starts the scheduler in the background; it stops when the server does.
pub fn spawn(app: &Arc<App>) {
    let app = Arc::clone(app);
    tokio::spawn(async move { run(app).await });
}

async fn run(app: Arc<App>) {
    let mut closing = app.closing.subscribe();
    let mut seen = None;
    let mut scheduler: Option<Arc<std::sync::Mutex<Scheduler>>> = None;
    loop {
        if *closing.borrow() {
            return;
        }
        let dir = app.config.runbooks.clone();
        let fp = {
            let d = dir.clone();
            tokio::task::spawn_blocking(move || fingerprint(&d))
                .await
                .ok()
        };
        if scheduler.is_none() || fp != seen {
            seen = fp;
            let (state, now) = (app.ws.clone(), app.clock.now_ms());
            let operators = app.config.operators.clone();
            let built = blocking(move || {
                let (rbs, bad) = runbooks_in(&dir)?;
                for b in &bad {
                    tracing::warn!(runbook = %b.file, error = %b.error, "runbook not scheduled");
                }
                Ok(Scheduler::new(state, rbs, now)?.with_operators(Some(operators)))
            })
            .await;
            match built {
                Ok(s) => scheduler = Some(Arc::new(std::sync::Mutex::new(s))),
                Err(e) => {
                    tracing::error!(error = %e.message, "the scheduler cannot read its runbooks")
                }
            }
        }
        let mut wait = LOOK_MS;
        if let Some(s) = &scheduler {
            let now = app.clock.now_ms();
            let sd = Arc::clone(s);
            match blocking(move || lock(&sd).decide(now)).await {
                Ok(pending) => {
                    for p in pending.iter().filter(|p| !p.queued) {
                        fire(&app, s, p).await;
                    }
                }
                Err(e) => tracing::error!(error = %e.message, "the scheduler cannot journal"),
            }
            if let Some(next) = lock(s).next_wake_ms() {
                wait = next.saturating_sub(app.clock.now_ms()).clamp(10, LOOK_MS);
            }
        }
        tokio::select! {
            () = app.clock.sleep(wait) => {}
            _ = closing.changed() => return,
        }
    }
}

/// Starts one decided fire, or — after a crash that came after its run was created — takes
/// that run over; either way the fire ends `started` and exactly one run exists for it.
async fn fire(app: &Arc<App>, s: &Arc<std::sync::Mutex<Scheduler>>, p: &Pending) {
    if let Some(old) = &p.cancels
        && let Some(i) = app.interrupter(old)
    {
        i.interrupt();
        tracing::info!(run = %old, schedule = %p.schedule, "interrupted for the next scheduled run (overlap = cancel_running)");
    }
    // Listed before it exists: a crash right after its creation still resumes it here.
    if let Err(e) = remember(app, &p.run_id) {
        tracing::error!(run = %p.run_id, error = %e, "cannot list the scheduled run");
        return;
    }
    // The scheduler is moved out of the lock for the start (it awaits).
    let scheduler = lock(s).clone();
    let launched = scheduler
        .launch(
            p,
            Arc::clone(&app.clock),
            (app.adapters)(),
            Wake::new(app, &p.run_id),
        )
        .await;
    match launched {
        Ok(Some(driver)) => {
            let now = app.clock.now_ms();
            if let Err(e) = scheduler.mark_started(p, now) {
                tracing::error!(run = %p.run_id, error = %e, "cannot mark the fire started");
            }
            tracing::info!(run = %p.run_id, runbook = %p.file, schedule = %p.schedule, "scheduled run started");
            drive(app, driver, true);
        }
        Ok(None) => {
            let now = app.clock.now_ms();
            if let Err(e) = scheduler.mark_started(p, now) {
                tracing::error!(run = %p.run_id, error = %e, "cannot mark the fire started");
            }
            // With a shared journal another replica may drive it; if nobody does, the takeover
            // loop (`replicas`) takes it once its lease expires.
            if !app.ws.shared()
                && app.interrupter(&p.run_id).is_none()
                && let Err(e) = reopen_and_drive(app, &p.run_id, "drover-server").await
            {
                tracing::error!(run = %p.run_id, error = %e.message, "cannot resume the scheduled run");
            }
        }
        Err(e) => {
            tracing::error!(run = %p.run_id, runbook = %p.file, schedule = %p.schedule, error = %e, "scheduled run not started");
        }
    }
    app.all.notify_waiters();
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    /// How many upcoming slots per schedule.
    count: Option<usize>,
}

/// `GET /api/v1/schedules`: every schedule of the runbook directory, its next fire times (in
/// its zone and UTC, skipped ones with why), its missed fires and last decision.
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, crate::ApiError> {
    let n = q.count.unwrap_or(5).clamp(1, 100);
    let (dir, state, now) = (
        app.config.runbooks.clone(),
        app.ws.clone(),
        app.clock.now_ms(),
    );
    let (views, bad) = blocking(move || {
        let (rbs, bad) = runbooks_in(&dir)?;
        let views = schedule_views(&rbs, Some(&state), now, n)?;
        Ok((views, bad))
    })
    .await?;
    Ok(Json(
        serde_json::json!({ "schedules": views, "unschedulable": bad }),
    ))
}

/// `GET /api/v1/posture/drills`: per runbook with a policy or a schedule, the last successful
/// and failed drill, the next scheduled one, and whether it is overdue.
pub(crate) async fn posture(
    State(app): State<Arc<App>>,
) -> Result<Json<serde_json::Value>, crate::ApiError> {
    let (dir, state, now) = (
        app.config.runbooks.clone(),
        app.ws.clone(),
        app.clock.now_ms(),
    );
    let (posture, bad) = blocking(move || {
        let (rbs, bad) = runbooks_in(&dir)?;
        let report = |run: &str| format!("/api/v1/runs/{run}/report");
        let p = drover_ops::posture::drill_posture(&rbs, &state, now, &report)?;
        Ok((p, bad))
    })
    .await?;
    let overdue = posture.iter().filter(|p| p.overdue).count();
    Ok(Json(serde_json::json!({
        "now_ms": now,
        "runbooks": posture,
        "overdue": overdue,
        "unschedulable": bad,
    })))
}

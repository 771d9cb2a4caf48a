//! Replicas: several `drover server` processes on one PostgreSQL journal. Each run is owned
//! through its lease (renewed at a third of its TTL by the driver); every replica looks at the
//! live runs a few times per TTL and takes over any whose lease expired (or whose holder on this
//! host is gone): it takes the lease (bumping the fencing token), replays the journal, reads
//! back the steps caught in flight and goes on. The replica that lost the lease is fenced: its
//! next write fails, it stops its steps and acts no more.

use crate::{App, blocking, lock, reopen_and_drive};
use axum::Json;
use axum::extract::State;
use drover_engine::journal::{LiveLease, holder_alive};
use std::sync::Arc;

/// Replication settings of one server.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// This replica's id (named in its leases and its metrics): `--replica-id`, by default
    /// `HOST-PID`.
    pub id: String,
    /// How long a lease lasts without renewal (ms): a dead replica's runs are taken over within
    /// it.
    pub lease_ttl_ms: u64,
    /// Where this replica keeps its local files (sessions, passkeys, run scratch files) when the
    /// journal is a database; `None`: the state directory, or `DROVER_LOCAL_DIR`.
    pub local_dir: Option<std::path::PathBuf>,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            id: format!(
                "{}-{}",
                drover_engine::journal::hostname(),
                std::process::id()
            ),
            lease_ttl_ms: drover_engine::driver::LEASE_TTL_MS,
            local_dir: None,
        }
    }
}

/// Whether a live run's lease is void now: released, expired, or held by a process of this
/// host that is gone.
#[must_use]
pub fn orphaned(l: &LiveLease, now: u64) -> bool {
    match &l.holder {
        None => true,
        Some(h) => l.until <= now || !holder_alive(h),
    }
}

/// The replica named in a lease holder (`… replica ID`), if any.
#[must_use]
pub fn replica_of(holder: &str) -> Option<&str> {
    holder.rsplit_once(" replica ").map(|(_, r)| r)
}

/// Starts the takeover loop (with a shared journal only); it stops when the server does.
pub fn spawn(app: &Arc<App>) {
    if !app.ws.shared() {
        return;
    }
    let app = Arc::clone(app);
    tokio::spawn(async move { watch(app).await });
}

async fn watch(app: Arc<App>) {
    let mut closing = app.closing.subscribe();
    // A few looks per TTL: a run is taken over within one TTL of its last renewal.
    let every = (app.config.replica.lease_ttl_ms / 4).clamp(200, 5_000);
    loop {
        if *closing.borrow() {
            return;
        }
        take_over(&app).await;
        tokio::select! {
            () = app.clock.sleep(every) => {}
            _ = closing.changed() => return,
        }
    }
}

/// Takes over every live run whose lease is void and that this replica does not drive.
async fn take_over(app: &Arc<App>) {
    let a = Arc::clone(app);
    let leases = match blocking(move || Ok(a.ws.journal_read()?.live_leases()?)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e.message, "cannot read the leases (will look again)");
            return;
        }
    };
    let now = app.clock.now_ms();
    for l in leases.iter().filter(|l| orphaned(l, now)) {
        if app.interrupter(&l.run_id).is_some() {
            continue;
        }
        let from = l.holder.clone().unwrap_or_else(|| "nobody".into());
        match reopen_and_drive(app, &l.run_id, "drover-server").await {
            Ok(()) => tracing::warn!(
                run = %l.run_id,
                from = %from,
                replica = %app.config.replica.id,
                "took over the run: its lease had expired (the replica driving it stopped or was cut off)"
            ),
            // Another replica was faster, or it ended meanwhile: nothing to do.
            Err(e) => tracing::debug!(run = %l.run_id, error = %e.message, "not taken over"),
        }
    }
    app.all.notify_waiters();
}

/// `GET /api/v1/replicas`: this replica, and who owns each live run.
pub(crate) async fn list(
    State(app): State<Arc<App>>,
) -> Result<Json<serde_json::Value>, crate::ApiError> {
    let a = Arc::clone(&app);
    let leases = blocking(move || Ok(a.ws.journal_read()?.live_leases()?)).await?;
    let now = app.clock.now_ms();
    let driven: Vec<String> = {
        let mut v: Vec<String> = lock(&app.driven).keys().cloned().collect();
        v.sort();
        v
    };
    let runs: Vec<serde_json::Value> = leases
        .iter()
        .map(|l| {
            let owner = (!orphaned(l, now))
                .then(|| l.holder.as_deref().map(|h| replica_of(h).unwrap_or(h)))
                .flatten();
            serde_json::json!({
                "run_id": l.run_id,
                "status": l.status,
                "owner": owner,
                "lease_until_ms": l.until,
                "token": l.token,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "replica_id": app.config.replica.id,
        "shared_journal": app.ws.shared(),
        "journal": app.ws.location(),
        "lease_ttl_ms": app.config.replica.lease_ttl_ms,
        "driving": driven,
        "runs": runs,
    })))
}

/// Prometheus lines: this replica, and the owner of each live run.
pub(crate) fn metrics(app: &App, leases: &[LiveLease], now: u64) -> String {
    let mut out = String::from(
        "# HELP drover_replica_info This replica (value 1).\n# TYPE drover_replica_info gauge\n",
    );
    out.push_str(&format!(
        "drover_replica_info{{replica=\"{}\",shared_journal=\"{}\"}} 1\n",
        crate::label(&app.config.replica.id),
        app.ws.shared()
    ));
    out.push_str("# HELP drover_runs_driven Runs this replica drives now.\n# TYPE drover_runs_driven gauge\n");
    out.push_str(&format!("drover_runs_driven {}\n", lock(&app.driven).len()));
    out.push_str("# HELP drover_run_owner The replica that owns each live run through its lease (value 1; no line: nobody, a takeover is due).\n# TYPE drover_run_owner gauge\n");
    for l in leases.iter().filter(|l| !orphaned(l, now)) {
        let Some(h) = &l.holder else { continue };
        out.push_str(&format!(
            "drover_run_owner{{run_id=\"{}\",replica=\"{}\"}} 1\n",
            crate::label(&l.run_id),
            crate::label(replica_of(h).unwrap_or(h))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_engine::journal::RunStatus;

    fn lease(holder: Option<&str>, until: u64) -> LiveLease {
        LiveLease {
            run_id: "r".into(),
            status: RunStatus::Running,
            holder: holder.map(str::to_owned),
            until,
            token: 1,
        }
    }

    #[test]
    fn a_lease_is_void_when_released_or_expired_and_held_otherwise() {
        let other_host = "drover-server@elsewhere pid 1 replica b";
        assert!(orphaned(&lease(None, 10_000), 5_000));
        assert!(orphaned(&lease(Some(other_host), 5_000), 5_000));
        assert!(!orphaned(&lease(Some(other_host), 5_001), 5_000));
        assert_eq!(replica_of(other_host), Some("b"));
        assert_eq!(replica_of("alice@h pid 3"), None);
    }
}

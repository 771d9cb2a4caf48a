//! `drover server`: starts the service of drover-server on a runtime of its own and stops it on
//! Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

/// How the server does TLS.
pub enum TlsArg {
    /// `--tls-cert`, `--tls-key`.
    Files(PathBuf, PathBuf),
    /// A self-signed certificate kept in STATE/tls.
    SelfSigned,
    /// `--no-tls`.
    Off,
}

/// Arguments of `drover server`.
pub struct ServeArgs {
    pub state: PathBuf,
    pub listen: std::net::SocketAddr,
    pub operators: PathBuf,
    pub runbooks: PathBuf,
    pub tls: TlsArg,
    pub evidence_key: Option<String>,
    pub config: Option<PathBuf>,
    pub replica_id: Option<String>,
    pub lease_ttl: String,
    pub local_dir: Option<PathBuf>,
}

/// The directory this server keeps its own files in: the state directory, or with a PostgreSQL
/// journal `--local-dir` (else DROVER_LOCAL_DIR, else .drover-local).
fn local_dir(a: &ServeArgs) -> PathBuf {
    let ws = drover_ops::Workspace::new(a.state.clone());
    match &a.local_dir {
        Some(d) => ws.with_local_dir(d).dir().to_path_buf(),
        None => ws.dir().to_path_buf(),
    }
}

/// The evidence key: the one named, or STATE/keys/evidence.key (generated the first time).
fn evidence_key(a: &ServeArgs) -> Result<PathBuf, String> {
    if let Some(uri) = &a.evidence_key {
        return match uri.strip_prefix("file:") {
            Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
            _ => Err(format!(
                "--evidence-key `{uri}`: evidence keys are files: file:PATH"
            )),
        };
    }
    let path = local_dir(a).join("keys").join("evidence.key");
    if !path.exists() {
        let dir = local_dir(a).join("keys");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        drover_evidence::generate_signing_key(&path).map_err(|e| e.to_string())?;
    }
    Ok(path)
}

/// Runs the server until it is told to stop.
pub fn serve(a: ServeArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let key = match evidence_key(&a) {
        Ok(k) => k,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let alerts = match &a.config {
        None => drover_alerts::AlertsConfig::default(),
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| drover_alerts::AlertsConfig::from_toml(&t).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                errln!("error: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
    };
    let sinks = alerts.sinks.len();
    let Some(lease_ttl_ms) = drover_dsl::parse_duration(&a.lease_ttl).filter(|ms| *ms >= 1_000)
    else {
        errln!(
            "error: --lease-ttl `{}`: a duration of at least 1s, such as 10s or 1m",
            a.lease_ttl
        );
        return ExitCode::from(2);
    };
    let mut replica = drover_server::replicas::ReplicaConfig {
        lease_ttl_ms,
        local_dir: a.local_dir.clone(),
        ..Default::default()
    };
    if let Some(id) = &a.replica_id {
        if id.trim().is_empty() || id.chars().any(char::is_whitespace) {
            errln!("error: --replica-id `{id}`: a name without spaces");
            return ExitCode::from(2);
        }
        replica.id = id.clone();
    }
    let config = drover_server::Config {
        replica,
        alerts,
        state: a.state.clone(),
        operators: a.operators.clone(),
        runbooks: a.runbooks.clone(),
        name: a.listen.to_string(),
        evidence_key: Some(key.clone()),
    };
    let app = match drover_server::App::new(config, crate::run_cli::builtin_adapters) {
        Ok(app) => app,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let loopback = a.listen.ip().is_loopback();
    let tls = match &a.tls {
        TlsArg::Off => None,
        TlsArg::Files(c, k) => Some(drover_server::tls::Tls::from_files(c, k)),
        TlsArg::SelfSigned => {
            let mut names = vec!["localhost".to_owned(), a.listen.ip().to_string()];
            if !loopback {
                names.push(drover_engine::journal::hostname());
            }
            names.dedup();
            Some(drover_server::tls::Tls::self_signed(
                &local_dir(&a).join("tls"),
                &names,
            ))
        }
    };
    let tls = match tls.transpose() {
        Ok(t) => t,
        Err(e) => {
            errln!("error: TLS: {e}");
            return ExitCode::FAILURE;
        }
    };
    if tls.is_none() && !loopback {
        errln!(
            "warning: serving plain HTTP on {}: put a TLS-terminating proxy in front (tokens and statements cross the network)",
            a.listen
        );
    }
    let result = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        for run in drover_server::resume_runs(&app).await {
            outln!("resumed run {run}");
        }
        drover_server::schedules::spawn(&app);
        drover_server::replicas::spawn(&app);
        drover_server::alerts::spawn(&app);
        if sinks > 0 {
            outln!("alerting through {sinks} sink(s)");
        }
        if let Some(pk) = app.evidence_public_key() {
            outln!(
                "evidence bundles are signed with {} (Ed25519 {}; public key {})",
                key.display(),
                pk.as_bytes()
                    .iter()
                    .take(8)
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
                drover_evidence::public_path(&key).display()
            );
        }
        match &tls {
            Some(t) => {
                outln!(
                    "TLS certificate {}{}: SHA-256 fingerprint {}",
                    t.cert_path.display(),
                    if t.self_signed { " (self-signed)" } else { "" },
                    t.fingerprint
                );
                if t.self_signed {
                    outln!(
                        "clients pin it: drover login --server https://{addr} --fingerprint {}",
                        t.fingerprint
                    );
                }
                outln!(
                    "drover server listening on https://{addr}{} (API under /api/v1; Ctrl-C stops it)",
                    if loopback {
                        format!(" and http://{addr}")
                    } else {
                        String::new()
                    }
                );
            }
            None => outln!(
                "drover server listening on http://{addr} (API under /api/v1; Ctrl-C stops it)"
            ),
        }
        drover_server::serve(app, listener, tls, loopback, async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = async {
                    match term.as_mut() {
                        Some(t) => { t.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
            }
        })
        .await
        .map_err(|e| e.to_string())
    });
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

//! `drover server`: starts the service of drover-server on a runtime of its own and stops it on
//! Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `drover server`.
pub struct ServeArgs {
    pub state: PathBuf,
    pub listen: std::net::SocketAddr,
    pub operators: PathBuf,
    pub runbooks: PathBuf,
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
    let config = drover_server::Config {
        state: a.state,
        operators: a.operators,
        runbooks: a.runbooks,
        name: a.listen.to_string(),
    };
    let app = match drover_server::App::new(config, crate::run_cli::builtin_adapters) {
        Ok(app) => app,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        for run in drover_server::resume_runs(&app).await {
            outln!("resumed run {run}");
        }
        outln!("drover server listening on http://{addr} (API under /api/v1; Ctrl-C stops it)");
        drover_server::serve(app, listener, async {
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

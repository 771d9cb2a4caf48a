//! Connections to one PostgreSQL database, shared by every journal of this process that names
//! it: a few worker threads, each owning one synchronous client, take jobs from one queue.
//!
//! The journal's calls are synchronous and are made from anywhere (tokio's blocking pool, a
//! plain thread, a test): the client runs on threads of its own, never inside the caller's
//! runtime. A worker whose connection broke reconnects before its next job; the job that saw
//! the break fails with the error (the caller decides: a driver stops, and its run is taken over
//! once its lease expires — nothing is retried behind its back, so nothing is written twice).

use drover_engine::clock::Clock as _;
use drover_engine::journal::JournalError;
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

/// A unit of work for one connection.
type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// How many connections a process keeps to one database.
pub const POOL_SIZE: usize = 6;

/// How long a worker keeps trying to connect before a job fails (ms): a restarting server comes
/// back within it; a wrong address fails after it.
const CONNECT_WINDOW_MS: u64 = 5_000;

/// The pool for one database.
pub struct Pool {
    jobs: Mutex<mpsc::Sender<Job>>,
    /// The location with its password hidden (for messages).
    pub shown: String,
}

/// One worker's connection, made (again) when needed.
pub struct Conn {
    config: postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    client: Option<postgres::Client>,
    /// Statements prepared on this connection, by their text (forgotten with the connection).
    statements: HashMap<&'static str, postgres::Statement>,
}

impl Conn {
    /// The client, connected.
    ///
    /// # Errors
    /// [`JournalError::Remote`] when the server cannot be reached (after retrying for a few
    /// seconds: a restarting server comes back).
    pub fn client(&mut self) -> Result<&mut postgres::Client, JournalError> {
        if self
            .client
            .as_ref()
            .is_some_and(postgres::Client::is_closed)
        {
            self.client = None;
        }
        if self.client.is_none() {
            self.statements.clear();
            let mut last = String::new();
            let clock = drover_engine::clock::SystemClock;
            let until = clock.now_ms() + CONNECT_WINDOW_MS;
            for attempt in 0u64.. {
                if attempt > 0 && clock.now_ms() >= until {
                    break;
                }
                match self.config.connect(self.tls.clone()) {
                    Ok(c) => {
                        self.client = Some(c);
                        break;
                    }
                    Err(e) => {
                        last = e.to_string();
                        // The pause between tries is a backoff, not a clock reading.
                        #[allow(clippy::disallowed_methods, reason = "reconnect backoff")]
                        std::thread::sleep(std::time::Duration::from_millis(
                            50 * (attempt.min(10) + 1),
                        ));
                    }
                }
            }
            if self.client.is_none() {
                return Err(JournalError::Remote(format!("cannot connect: {last}")));
            }
        }
        self.client
            .as_mut()
            .ok_or_else(|| JournalError::Remote("no connection".into()))
    }

    /// The client, connected, and `sql` prepared on it (once per connection: the hot paths
    /// then cost one round trip, not two).
    ///
    /// # Errors
    /// As [`Conn::client`]; the statement does not prepare.
    pub fn prepared(
        &mut self,
        sql: &'static str,
    ) -> Result<(&mut postgres::Client, postgres::Statement), JournalError> {
        self.client()?;
        let client = self
            .client
            .as_mut()
            .ok_or_else(|| JournalError::Remote("no connection".into()))?;
        let statement = match self.statements.get(sql) {
            Some(s) => s.clone(),
            None => {
                let s = client.prepare(sql).map_err(crate::pg)?;
                self.statements.insert(sql, s.clone());
                s
            }
        };
        Ok((client, statement))
    }

    /// Forgets a connection that broke.
    fn check(&mut self) {
        if self
            .client
            .as_ref()
            .is_some_and(postgres::Client::is_closed)
        {
            self.client = None;
            self.statements.clear();
        }
    }
}

impl Pool {
    /// Runs `f` on one of the pool's connections and waits for its answer.
    ///
    /// # Errors
    /// What `f` returns; [`JournalError::Remote`] when no worker answers.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        self.run_conn(move |conn| conn.client().and_then(f))
    }

    /// Runs `f` on one of the pool's connections (with its prepared statements) and waits for
    /// its answer.
    ///
    /// # Errors
    /// What `f` returns; [`JournalError::Remote`] when no worker answers.
    pub fn run_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn: &mut Conn| {
            let r = f(conn);
            conn.check();
            let _ = tx.send(r);
        });
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(job)
            .map_err(|_| JournalError::Remote("the connection pool has stopped".into()))?;
        rx.recv()
            .map_err(|_| JournalError::Remote("a journal call failed on its connection".into()))?
    }
}

/// The location with any password replaced by `***` (for messages and logs).
#[must_use]
pub fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.split_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    match auth.and_then(|a| a.split_once(':')) {
        Some((user, _)) => format!(
            "{scheme}://{user}:***@{}",
            host.split('?').next().unwrap_or(host)
        ),
        None => url.split('?').next().unwrap_or(url).to_owned(),
    }
}

fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, JournalError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    // libpq's variable: a private CA for the database server's certificate.
    if let Ok(path) = std::env::var("PGSSLROOTCERT") {
        let pem = std::fs::read(&path)
            .map_err(|e| JournalError::Remote(format!("PGSSLROOTCERT {path}: {e}")))?;
        for c in rustls_pemfile::certs(&mut pem.as_slice()) {
            let c = c.map_err(|e| JournalError::Remote(format!("PGSSLROOTCERT {path}: {e}")))?;
            roots
                .add(c)
                .map_err(|e| JournalError::Remote(format!("PGSSLROOTCERT {path}: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| JournalError::Remote(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The pool for `url`, made (and the database migrated, by `init`) on first use in this process.
///
/// # Errors
/// A location that does not parse; what `init` returns.
pub fn pool(
    url: &str,
    init: impl FnOnce(&Pool) -> Result<(), JournalError>,
) -> Result<Arc<Pool>, JournalError> {
    static POOLS: OnceLock<Mutex<HashMap<String, Arc<Pool>>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(p) = pools.get(url) {
        return Ok(Arc::clone(p));
    }
    let shown = shown(url);
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| JournalError::Remote(format!("{shown}: {e}")))?;
    if config.get_application_name().is_none() {
        config.application_name("drover");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(5));
    }
    // A dead peer is noticed by the kernel within seconds, not hours.
    config.keepalives_idle(std::time::Duration::from_secs(10));
    let tls = tls()?;
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for k in 0..POOL_SIZE {
        let rx = Arc::clone(&rx);
        let mut conn = Conn {
            config: config.clone(),
            tls: tls.clone(),
            client: None,
            statements: HashMap::new(),
        };
        std::thread::Builder::new()
            .name(format!("drover-pg-{k}"))
            .spawn(move || {
                loop {
                    let job = {
                        let rx = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        match rx.recv() {
                            Ok(j) => j,
                            Err(_) => return,
                        }
                    };
                    // A job that panics loses its answer (the caller gets an error), not the worker.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        job(&mut conn);
                    }));
                }
            })
            .map_err(|e| JournalError::Remote(format!("cannot start a connection thread: {e}")))?;
    }
    let pool = Arc::new(Pool {
        jobs: Mutex::new(tx),
        shown,
    });
    init(&pool)?;
    pools.insert(url.to_owned(), Arc::clone(&pool));
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn a_password_never_shows() {
        assert_eq!(
            shown("postgres://drover:s3cret@db.internal:5432/drover?sslmode=require"),
            "postgres://drover:***@db.internal:5432/drover"
        );
        assert_eq!(
            shown("postgres://drover@db:5432/d?password=s3cret"),
            "postgres://drover@db:5432/d"
        );
    }
}

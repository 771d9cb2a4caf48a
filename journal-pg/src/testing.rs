//! For test suites that run on both journals: with `DROVER_TEST_JOURNAL=postgres`, each test's
//! state directory gets a database of its own on the PostgreSQL server at `DROVER_TEST_PG`
//! (`.ci/pg` starts one); otherwise the tests use SQLite in the directory as before.

use std::path::Path;

/// Whether the suite runs on PostgreSQL (`DROVER_TEST_JOURNAL=postgres`).
///
/// # Panics
/// When it should but `DROVER_TEST_PG` is not set: a PostgreSQL pass that silently fell back to
/// SQLite would prove nothing.
#[must_use]
pub fn on_postgres() -> bool {
    let on = std::env::var("DROVER_TEST_JOURNAL").is_ok_and(|v| v == "postgres");
    assert!(
        !on || std::env::var("DROVER_TEST_PG").is_ok(),
        "DROVER_TEST_JOURNAL=postgres needs DROVER_TEST_PG (the URL of a test server: .ci/pg)"
    );
    on
}

/// A database of its own for `key` (a test's directory) on the server at `DROVER_TEST_PG`,
/// created on first use — the same for every process that asks with the same key.
///
/// # Panics
/// The server cannot be reached.
#[must_use]
pub fn database_for(key: &Path) -> String {
    let admin = std::env::var("DROVER_TEST_PG").expect("DROVER_TEST_PG");
    let key = std::fs::canonicalize(key).unwrap_or_else(|_| key.to_path_buf());
    let hash = key
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let name = format!("drover_t_{hash:016x}");
    // On a thread of its own: the synchronous client runs a runtime, and the caller may be in
    // one (an async test).
    let (a, n) = (admin.clone(), name.clone());
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&a, postgres::NoTls).expect("the test PostgreSQL");
        if let Err(e) = c.batch_execute(&format!("CREATE DATABASE {n}")) {
            let exists = e
                .code()
                .is_some_and(|c| *c == postgres::error::SqlState::DUPLICATE_DATABASE);
            assert!(exists, "CREATE DATABASE {n}: {e}");
        }
    })
    .join()
    .expect("the test database is created");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

/// The state location a test in `dir` uses: `dir` itself, or its database on PostgreSQL.
#[must_use]
pub fn state_for(dir: &Path) -> String {
    if on_postgres() {
        database_for(dir)
    } else {
        dir.display().to_string()
    }
}

//! The journal each test runs on: SQLite in its directory, or with `DROVER_TEST_JOURNAL=postgres`
//! a PostgreSQL database of its own (`.ci/test` runs this suite both ways).

use drover_engine::journal::{Journal, SqliteJournal};
use std::path::Path;

/// The journal of the test whose state is `dir`.
pub fn journal(dir: &Path) -> Box<dyn Journal> {
    if drover_journal_pg::testing::on_postgres() {
        let url = drover_journal_pg::testing::database_for(dir);
        Box::new(drover_journal_pg::PostgresJournal::open(&url).expect("journal"))
    } else {
        Box::new(SqliteJournal::open(dir).expect("journal"))
    }
}

/// The same journal, for reading (read-only where the backend has such a mode).
pub fn journal_read(dir: &Path) -> Box<dyn Journal> {
    if drover_journal_pg::testing::on_postgres() {
        journal(dir)
    } else {
        Box::new(SqliteJournal::open_read_only(dir).expect("journal"))
    }
}

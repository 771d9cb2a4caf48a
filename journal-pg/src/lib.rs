//! Drover's journal on PostgreSQL: the engine's [`Journal`] trait on a shared database, so that
//! several `drover server` replicas drive runs from one journal and take over a run whose
//! driver died.
//!
//! Selected by a state location `postgres://…` (or `postgresql://…`). What holds it together:
//! - **Fencing.** Every write a driver makes runs in one transaction that first updates the
//!   run's row *where the lease token is still its own* (compare-and-set): a replica whose lease
//!   was taken over gets [`JournalError::Fenced`] and writes nothing. The row lock that update
//!   takes orders it with a takeover's.
//! - **One order.** Transitions, approvals and run creations that must be seen in order by
//!   readers on other replicas (event streams, approval polling, claims) take a transaction-level
//!   advisory lock before they are numbered, so a number is never visible before a smaller one.
//! - **Versioned schema.** Migrations are numbered and applied on first use, under an advisory
//!   lock (two replicas starting together migrate once); a database newer than this build is
//!   refused untouched ([`JournalError::SchemaTooNew`]).
//! - **Connections.** A small pool per database (see [`pool`]); TLS by `sslmode=` in the
//!   location (rustls, the system's roots plus `PGSSLROOTCERT`).

pub mod pool;
#[cfg(feature = "test-support")]
pub mod testing;

use drover_dsl::Mode;
use drover_engine::audit::{AuditRecord, GENESIS, chain_hash};
use drover_engine::journal::{
    AlertRow, AlertSinkRow, ApprovalRow, Claims, Entry, FireRow, Grant, Journal, JournalError,
    Lease, LiveLease, NewApproval, ProgressRow, RunRow, RunStatus, SimulationRow, SourceText,
    StatementRow, Transition, claim_label, holder_alive,
};
use drover_engine::redactor::Redactor;
use drover_engine::scheduler::Event;
use drover_engine::signed::SignedStatement;
use pool::Pool;
use postgres::Transaction;
use postgres::types::ToSql;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The schema versions, in order: each applied once, in its own transaction.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/001_journal.sql")),
    (2, include_str!("../migrations/002_append.sql")),
    (3, include_str!("../migrations/003_grants.sql")),
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 3;

/// Advisory lock keys (one namespace: "drover" in ASCII, then a number).
const LOCK_MIGRATE: i64 = 0x6472_6f76_0001;
const LOCK_EVENTS: i64 = 0x6472_6f76_0002;
const LOCK_APPROVALS: i64 = 0x6472_6f76_0003;
const LOCK_CLAIMS: i64 = 0x6472_6f76_0004;

/// Whether a state location names a PostgreSQL database.
#[must_use]
pub fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// The journal in a PostgreSQL database.
pub struct PostgresJournal {
    pool: Arc<Pool>,
    redactor: Redactor,
    /// Where each run's audit chain ended after this journal's last append to it: the next
    /// append builds on it and the database checks it (a stale guess costs one more round trip).
    heads: Arc<Mutex<HashMap<String, (String, u64)>>>,
}

fn pg(e: postgres::Error) -> JournalError {
    let text = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    };
    JournalError::Remote(text)
}

fn corrupt(e: serde_json::Error) -> JournalError {
    JournalError::Corrupt(e.to_string())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Applies what the database lacks; refuses a database newer than this build.
fn migrate(client: &mut postgres::Client, shown: &str) -> Result<(), JournalError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_MIGRATE])
        .map_err(pg)?;
    let result = (|| {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS drover_schema (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), by_version TEXT NOT NULL)",
            )
            .map_err(pg)?;
        let found: i64 = client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM drover_schema", &[])
            .map_err(pg)?
            .get(0);
        if found > SCHEMA_VERSION {
            return Err(JournalError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
            let mut tx = client.transaction().map_err(pg)?;
            tx.batch_execute(sql).map_err(pg)?;
            tx.execute(
                "INSERT INTO drover_schema (version, by_version) VALUES ($1, $2)",
                &[version, &env!("CARGO_PKG_VERSION")],
            )
            .map_err(pg)?;
            tx.commit().map_err(pg)?;
            tracing::info!(database = %shown, version, "journal schema migrated");
        }
        Ok(())
    })();
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_MIGRATE]);
    result
}

impl PostgresJournal {
    /// Opens the journal in the database at `url` (`postgres://user@host:port/db?sslmode=…`),
    /// migrating its schema on first use in this process.
    ///
    /// # Errors
    /// The location does not parse, the server cannot be reached, or the database is newer
    /// than this build.
    pub fn open(url: &str) -> Result<Self, JournalError> {
        let pool = pool::pool(url, |p| {
            let shown = p.shown.clone();
            p.run(move |c| migrate(c, &shown))
        })?;
        Ok(Self {
            pool,
            redactor: Redactor::new(),
            heads: Arc::default(),
        })
    }

    /// The location, password hidden.
    #[must_use]
    pub fn shown(&self) -> &str {
        &self.pool.shown
    }

    /// Runs `f` in one transaction on a pooled connection.
    fn tx<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        self.pool.run(move |c| {
            let mut tx = c.transaction().map_err(pg)?;
            let out = f(&mut tx)?;
            tx.commit().map_err(pg)?;
            Ok(out)
        })
    }

    /// Runs a read on a pooled connection.
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        self.pool.run(f)
    }

    /// The raw single-row commit rate's unit, for the benchmark: one autocommitted insert.
    ///
    /// # Errors
    /// The database.
    pub fn raw_commit(&self, n: u64) -> Result<(), JournalError> {
        self.read(move |c| {
            c.batch_execute(
                "CREATE TABLE IF NOT EXISTS drover_bench_commits (id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL)",
            )
            .map_err(pg)?;
            // Prepared once: each commit is then one round trip, the fastest a client gets.
            let insert = c
                .prepare("INSERT INTO drover_bench_commits (at) VALUES ($1)")
                .map_err(pg)?;
            for k in 0..n {
                c.execute(&insert, &[&to_i64(k)]).map_err(pg)?;
            }
            Ok(())
        })
    }
}

/// Where a chain's head and count are kept.
#[derive(Clone, Copy)]
enum Head {
    Run,
    Log,
}

/// Chains `audit` after the current head of `id` (a run or a log), each record redacted, inside
/// `tx`. The head row is locked first: two writers of one chain take turns.
fn chain(
    tx: &mut Transaction<'_>,
    redactor: &Redactor,
    id: &str,
    audit: &[AuditRecord],
    head_row: Head,
) -> Result<(String, u64), JournalError> {
    let row = match head_row {
        Head::Run => tx
            .query_opt(
                "SELECT audit_head, audit_count FROM runs WHERE run_id = $1 FOR UPDATE",
                &[&id],
            )
            .map_err(pg)?
            .ok_or_else(|| JournalError::NoRun(id.to_owned()))?,
        Head::Log => {
            if audit.is_empty() {
                return match tx
                    .query_opt(
                        "SELECT audit_head, audit_count FROM logs WHERE log_id = $1",
                        &[&id],
                    )
                    .map_err(pg)?
                {
                    Some(r) => Ok((r.get(0), to_u64(r.get(1)))),
                    None => Ok((GENESIS.to_owned(), 0)),
                };
            }
            tx.execute(
                "INSERT INTO logs (log_id, audit_head, audit_count) VALUES ($1, $2, 0) ON CONFLICT (log_id) DO NOTHING",
                &[&id, &GENESIS],
            )
            .map_err(pg)?;
            tx.query_one(
                "SELECT audit_head, audit_count FROM logs WHERE log_id = $1 FOR UPDATE",
                &[&id],
            )
            .map_err(pg)?
        }
    };
    let (head, count): (String, i64) = (row.get(0), row.get(1));
    if audit.is_empty() {
        return Ok((head, to_u64(count)));
    }
    let linked = link(redactor, &head, to_u64(count), audit)?;
    tx.execute(
        "INSERT INTO audit (run_id, seq, record, hash) \
         SELECT $1, $2 + t.o, t.rec, t.h FROM unnest($3::TEXT[], $4::TEXT[]) WITH ORDINALITY AS t(rec, h, o)",
        &[&id, &count, &linked.records, &linked.hashes],
    )
    .map_err(pg)?;
    let (head, count) = (linked.head, to_i64(linked.count));
    match head_row {
        Head::Run => tx.execute(
            "UPDATE runs SET audit_head = $1, audit_count = $2 WHERE run_id = $3",
            &[&head, &count, &id],
        ),
        Head::Log => tx.execute(
            "UPDATE logs SET audit_head = $1, audit_count = $2 WHERE log_id = $3",
            &[&head, &count, &id],
        ),
    }
    .map_err(pg)?;
    Ok((head, to_u64(count)))
}

/// Audit records linked after a chain's end, ready to store.
struct Linked {
    /// Each record as stored (redacted JSON, its `seq` and `prev` set).
    records: Vec<String>,
    /// Each record's hash.
    hashes: Vec<String>,
    /// The chain's new end.
    head: String,
    /// The chain's new length.
    count: u64,
}

/// Links `audit` after a chain ending at `head` with `count` records.
fn link(
    redactor: &Redactor,
    head: &str,
    count: u64,
    audit: &[AuditRecord],
) -> Result<Linked, JournalError> {
    let mut out = Linked {
        records: Vec::with_capacity(audit.len()),
        hashes: Vec::with_capacity(audit.len()),
        head: head.to_owned(),
        count,
    };
    for rec in audit {
        out.count += 1;
        let mut rec = rec.clone();
        rec.seq = out.count;
        rec.prev = std::mem::take(&mut out.head);
        let json = redactor.json(&rec).map_err(corrupt)?;
        out.head = chain_hash(&rec.prev, &json);
        out.hashes.push(out.head.clone());
        out.records.push(json);
    }
    Ok(out)
}

/// Checks the lease token, holding the run's row for the rest of the transaction.
fn fence(tx: &mut Transaction<'_>, lease: &Lease) -> Result<(), JournalError> {
    let n = tx
        .execute(
            "SELECT 1 FROM runs WHERE run_id = $1 AND lease_token = $2 FOR UPDATE",
            &[&lease.run_id, &lease.token],
        )
        .map_err(pg)?;
    if n == 0 {
        return Err(JournalError::Fenced(lease.run_id.clone()));
    }
    Ok(())
}

/// The grant in `r`'s columns `from..from + 3` (holder, data, expires_at).
fn grant_at(r: &postgres::Row, from: usize) -> Grant {
    Grant {
        holder: r.get(from),
        data: r.get(from + 1),
        expires_at: to_u64(r.get(from + 2)),
    }
}

const RUN_COLUMNS: &str = "SELECT r.run_id, r.runbook, p.plan, r.mode, r.initiator, r.declared_at, r.created_at, r.status, r.record, r.audit_head, r.audit_count
     FROM runs r JOIN plans p ON p.run_id = r.run_id";

fn run_row(row: &postgres::Row) -> Result<RunRow, JournalError> {
    let mode: String = row.get(3);
    let status: String = row.get(7);
    Ok(RunRow {
        mode: Mode::parse(&mode)
            .ok_or_else(|| JournalError::Corrupt(format!("unknown mode `{mode}`")))?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| JournalError::Corrupt(format!("unknown run status `{status}`")))?,
        run_id: row.get(0),
        runbook: row.get(1),
        plan: row.get(2),
        initiator: row.get(4),
        declared_at: to_u64(row.get(5)),
        created_at: to_u64(row.get(6)),
        record: row.get(8),
        audit_head: row.get(9),
        audit_count: to_u64(row.get(10)),
    })
}

fn transition(at: i64, event: &str, actions: &str) -> Result<Transition, JournalError> {
    Ok(Transition {
        at: to_u64(at),
        event: serde_json::from_str(event).map_err(corrupt)?,
        actions: serde_json::from_str(actions).map_err(corrupt)?,
    })
}

/// Runs a statement that returns rows, boxed parameters and all (for closures that own them).
fn rows(
    c: &mut postgres::Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<postgres::Row>, JournalError> {
    c.query(sql, params).map_err(pg)
}

impl Journal for PostgresJournal {
    fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    fn set_progress(
        &mut self,
        lease: &Lease,
        step: &str,
        text: &str,
        at: u64,
    ) -> Result<(), JournalError> {
        let (lease, step, text) = (lease.clone(), step.to_owned(), self.redactor.text(text));
        self.tx(move |tx| {
            fence(tx, &lease)?;
            tx.execute(
                "INSERT INTO progress (run_id, step, text, at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (run_id, step) DO UPDATE SET text = excluded.text, at = excluded.at",
                &[&lease.run_id, &step, &text, &to_i64(at)],
            )
            .map_err(pg)?;
            Ok(())
        })
    }

    fn progress(&self, run_id: &str) -> Result<Vec<ProgressRow>, JournalError> {
        let run_id = run_id.to_owned();
        self.read(move |c| {
            Ok(rows(
                c,
                "SELECT step, text, at FROM progress WHERE run_id = $1 ORDER BY step",
                &[&run_id],
            )?
            .iter()
            .map(|r| ProgressRow {
                step: r.get(0),
                text: r.get(1),
                at: to_u64(r.get(2)),
            })
            .collect())
        })
    }

    fn runs(&self) -> Result<Vec<RunRow>, JournalError> {
        self.read(|c| {
            rows(
                c,
                &format!("{RUN_COLUMNS} ORDER BY r.created_at DESC, r.created_seq DESC"),
                &[],
            )?
            .iter()
            .map(run_row)
            .collect()
        })
    }

    fn driven_by(&self, run_id: &str, now: u64) -> Result<Option<String>, JournalError> {
        let id = run_id.to_owned();
        let row = self.read(move |c| {
            c.query_opt(
                "SELECT lease_holder, lease_until FROM runs WHERE run_id = $1",
                &[&id],
            )
            .map_err(pg)
            .map(|r| r.map(|r| (r.get::<_, Option<String>>(0), r.get::<_, i64>(1))))
        })?;
        let Some((holder, until)) = row else {
            return Err(JournalError::NoRun(run_id.to_owned()));
        };
        Ok(holder.filter(|h| to_u64(until) > now && holder_alive(h)))
    }

    fn append_audit(&mut self, run_id: &str, audit: &[AuditRecord]) -> Result<(), JournalError> {
        let (run_id, audit, redactor) = (run_id.to_owned(), audit.to_vec(), self.redactor.clone());
        self.tx(move |tx| chain(tx, &redactor, &run_id, &audit, Head::Run).map(|_| ()))
    }

    fn create_run(&mut self, r: &RunRow, claims: &Claims) -> Result<(), JournalError> {
        let (r, claims) = (r.clone(), claims.clone());
        let record = r.record.as_deref().map(|t| self.redactor.text(t));
        let plan = self.redactor.text(&r.plan);
        self.tx(move |tx| {
            // Claims are checked and taken by one creator at a time, across replicas.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_CLAIMS])
                .map_err(pg)?;
            // A run that exists already (another replica created it first) is named as such,
            // before its own claims could be mistaken for another run's.
            if tx
                .query_opt("SELECT 1 FROM runs WHERE run_id = $1", &[&r.run_id])
                .map_err(pg)?
                .is_some()
            {
                return Err(JournalError::RunExists(r.run_id.clone()));
            }
            if claims.concurrent.is_none() {
                for claim in &claims.names {
                    let holder = tx
                        .query_opt(
                            "SELECT r.run_id, r.runbook, r.initiator, r.status FROM claims c JOIN runs r ON r.run_id = c.run_id
                             WHERE c.claim = $1 AND r.status IN ('running', 'waiting', 'interrupted', 'rollback_incomplete', 'rollback_failed')
                             ORDER BY r.created_at LIMIT 1",
                            &[claim],
                        )
                        .map_err(pg)?;
                    if let Some(h) = holder {
                        return Err(JournalError::Claimed {
                            what: claim_label(claim),
                            run_id: h.get(0),
                            runbook: h.get(1),
                            operator: h.get(2),
                            status: h.get(3),
                        });
                    }
                }
            }
            let n = tx
                .execute(
                    "INSERT INTO runs (run_id, runbook, mode, initiator, declared_at, created_at, status, record, audit_head, audit_count)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (run_id) DO NOTHING",
                    &[
                        &r.run_id,
                        &r.runbook,
                        &r.mode.as_str(),
                        &r.initiator,
                        &to_i64(r.declared_at),
                        &to_i64(r.created_at),
                        &r.status.as_str(),
                        &record,
                        &r.audit_head,
                        &to_i64(r.audit_count),
                    ],
                )
                .map_err(pg)?;
            if n == 0 {
                return Err(JournalError::RunExists(r.run_id.clone()));
            }
            tx.execute(
                "INSERT INTO plans (run_id, plan) VALUES ($1, $2)",
                &[&r.run_id, &plan],
            )
            .map_err(pg)?;
            for claim in &claims.names {
                tx.execute(
                    "INSERT INTO claims (run_id, claim) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&r.run_id, claim],
                )
                .map_err(pg)?;
            }
            Ok(())
        })
    }

    fn run(&self, run_id: &str) -> Result<RunRow, JournalError> {
        let id = run_id.to_owned();
        let row = self.read(move |c| {
            c.query_opt(&format!("{RUN_COLUMNS} WHERE r.run_id = $1"), &[&id])
                .map_err(pg)
        })?;
        match row {
            Some(r) => run_row(&r),
            None => Err(JournalError::NoRun(run_id.to_owned())),
        }
    }

    fn latest_run(&self) -> Result<Option<String>, JournalError> {
        self.read(|c| {
            Ok(c.query_opt(
                "SELECT run_id FROM runs ORDER BY created_at DESC, created_seq DESC LIMIT 1",
                &[],
            )
            .map_err(pg)?
            .map(|r| r.get(0)))
        })
    }

    fn acquire(
        &mut self,
        run_id: &str,
        holder: &str,
        now: u64,
        ttl_ms: u64,
    ) -> Result<Lease, JournalError> {
        let (run_id, holder) = (run_id.to_owned(), holder.to_owned());
        self.tx(move |tx| {
            let row = tx
                .query_opt(
                    "SELECT lease_holder, lease_token, lease_until FROM runs WHERE run_id = $1 FOR UPDATE",
                    &[&run_id],
                )
                .map_err(pg)?
                .ok_or_else(|| JournalError::NoRun(run_id.clone()))?;
            let (current, token, until): (Option<String>, i64, i64) =
                (row.get(0), row.get(1), row.get(2));
            let until = to_u64(until);
            if let Some(h) = current
                && until > now
                && holder_alive(&h)
            {
                return Err(JournalError::LeaseHeld {
                    run_id,
                    holder: h,
                    remaining_s: (until - now).div_ceil(1000),
                });
            }
            let token = token + 1;
            tx.execute(
                "UPDATE runs SET lease_holder = $1, lease_token = $2, lease_until = $3 WHERE run_id = $4",
                &[&holder, &token, &to_i64(now + ttl_ms), &run_id],
            )
            .map_err(pg)?;
            Ok(Lease {
                run_id,
                token,
                holder,
            })
        })
    }

    fn release(&mut self, lease: &Lease) -> Result<(), JournalError> {
        let lease = lease.clone();
        self.read(move |c| {
            c.execute(
                "UPDATE runs SET lease_holder = NULL, lease_until = 0 WHERE run_id = $1 AND lease_token = $2",
                &[&lease.run_id, &lease.token],
            )
            .map_err(pg)?;
            Ok(())
        })
    }

    fn append_all(
        &mut self,
        lease: &Lease,
        at: u64,
        ttl_ms: u64,
        entries: &[Entry<'_>],
    ) -> Result<(), JournalError> {
        let mut events = Vec::with_capacity(entries.len());
        let mut acts = Vec::with_capacity(entries.len());
        let mut audit = Vec::new();
        for e in entries {
            events.push(self.redactor.json(e.event).map_err(corrupt)?);
            acts.push(self.redactor.json(e.actions).map_err(corrupt)?);
            audit.extend_from_slice(e.audit);
        }
        let ats = vec![to_i64(at); entries.len()];
        let (lease, redactor) = (lease.clone(), self.redactor.clone());
        let heads = Arc::clone(&self.heads);
        // One statement, one round trip (schema version 2's drover_append): the lease and the
        // chain's end are checked and everything written in its one implicit transaction.
        self.pool.run_conn(move |conn| {
            let known = heads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&lease.run_id)
                .cloned();
            // Unknown: ask with an end no chain has (an empty chain ends at the genesis hash); the
            // answer says where it is.
            let (mut head, mut count) = known.unwrap_or_default();
            // Another writer (an approval on another replica) can move the chain between two
            // tries; a few tries settle it, and the call never spins for ever.
            for _ in 0..8 {
                let linked = link(&redactor, &head, count, &audit)?;
                let (client, append) = conn.prepared(
                    "SELECT outcome, at_head, at_count FROM drover_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )?;
                let row = client
                    .query_one(
                        &append,
                        &[
                            &lease.run_id,
                            &lease.token,
                            &to_i64(at + ttl_ms),
                            &head,
                            &to_i64(count),
                            &linked.head,
                            &linked.records,
                            &linked.hashes,
                            &LOCK_EVENTS,
                            &ats,
                            &events,
                            &acts,
                        ],
                    )
                    .map_err(pg)?;
                let outcome: &str = row.get(0);
                match outcome {
                    "ok" => {
                        heads
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert(lease.run_id.clone(), (linked.head, linked.count));
                        return Ok(());
                    }
                    "fenced" => return Err(JournalError::Fenced(lease.run_id.clone())),
                    "moved" => {
                        head = row.get(1);
                        count = to_u64(row.get(2));
                    }
                    _ => return Err(JournalError::NoRun(lease.run_id.clone())),
                }
            }
            Err(JournalError::Remote(format!(
                "the audit chain of run {} kept moving under this append; nothing was written",
                lease.run_id
            )))
        })
    }

    fn renew(&mut self, lease: &Lease, now: u64, ttl_ms: u64) -> Result<(), JournalError> {
        let lease = lease.clone();
        self.pool.run_conn(move |conn| {
            let (client, renew) = conn.prepared(
                "UPDATE runs SET lease_until = $1 WHERE run_id = $2 AND lease_token = $3",
            )?;
            let n = client
                .execute(
                    &renew,
                    &[&to_i64(now + ttl_ms), &lease.run_id, &lease.token],
                )
                .map_err(pg)?;
            if n == 0 {
                return Err(JournalError::Fenced(lease.run_id.clone()));
            }
            Ok(())
        })
    }

    fn set_status(
        &mut self,
        lease: &Lease,
        status: RunStatus,
        record: Option<&str>,
    ) -> Result<(), JournalError> {
        let record = record.map(|r| self.redactor.text(r));
        let lease = lease.clone();
        self.read(move |c| {
            let n = c
                .execute(
                    "UPDATE runs SET status = $1, record = COALESCE($2, record) WHERE run_id = $3 AND lease_token = $4",
                    &[&status.as_str(), &record, &lease.run_id, &lease.token],
                )
                .map_err(pg)?;
            if n == 0 {
                return Err(JournalError::Fenced(lease.run_id.clone()));
            }
            Ok(())
        })
    }

    fn events(&self, run_id: &str) -> Result<Vec<(u64, Event)>, JournalError> {
        Ok(self
            .transitions(run_id)?
            .into_iter()
            .map(|t| (t.at, t.event))
            .collect())
    }

    fn transitions(&self, run_id: &str) -> Result<Vec<Transition>, JournalError> {
        self.transitions_from(run_id, 0)
    }

    fn store_sources(&mut self, run_id: &str, files: &[SourceText]) -> Result<(), JournalError> {
        let run_id = run_id.to_owned();
        let files: Vec<(String, String)> = files
            .iter()
            .map(|f| (f.name.clone(), self.redactor.text(&f.text)))
            .collect();
        self.tx(move |tx| {
            for (k, (name, text)) in files.iter().enumerate() {
                tx.execute(
                    "INSERT INTO sources (run_id, seq, name, text) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (run_id, seq) DO UPDATE SET name = excluded.name, text = excluded.text",
                    &[&run_id, &(k as i64), name, text],
                )
                .map_err(pg)?;
            }
            Ok(())
        })
    }

    fn sources(&self, run_id: &str) -> Result<Vec<SourceText>, JournalError> {
        let run_id = run_id.to_owned();
        self.read(move |c| {
            Ok(rows(
                c,
                "SELECT name, text FROM sources WHERE run_id = $1 ORDER BY seq",
                &[&run_id],
            )?
            .iter()
            .map(|r| SourceText {
                name: r.get(0),
                text: r.get(1),
            })
            .collect())
        })
    }

    fn runs_of(&self, runbook: &str) -> Result<Vec<RunRow>, JournalError> {
        let runbook = runbook.to_owned();
        self.read(move |c| {
            rows(
                c,
                &format!("{RUN_COLUMNS} WHERE r.runbook = $1 ORDER BY r.created_at, r.created_seq"),
                &[&runbook],
            )?
            .iter()
            .map(run_row)
            .collect()
        })
    }

    fn record_simulation(&mut self, sim: &SimulationRow) -> Result<(), JournalError> {
        let sim = sim.clone();
        self.read(move |c| {
            c.execute(
                "INSERT INTO simulations (runbook, source_sha256, mode, at, summary) VALUES ($1, $2, $3, $4, $5)",
                &[&sim.runbook, &sim.source_sha256, &sim.mode, &to_i64(sim.at), &sim.summary],
            )
            .map_err(pg)?;
            Ok(())
        })
    }

    fn latest_simulation(
        &self,
        runbook: &str,
        source_sha256: &str,
        mode: &str,
    ) -> Result<Option<SimulationRow>, JournalError> {
        let (a, b, m) = (
            runbook.to_owned(),
            source_sha256.to_owned(),
            mode.to_owned(),
        );
        self.read(move |c| {
            Ok(c.query_opt(
                "SELECT runbook, source_sha256, mode, at, summary FROM simulations
                 WHERE runbook = $1 AND source_sha256 = $2 AND mode = $3 ORDER BY id DESC LIMIT 1",
                &[&a, &b, &m],
            )
            .map_err(pg)?
            .map(|r| SimulationRow {
                runbook: r.get(0),
                source_sha256: r.get(1),
                mode: r.get(2),
                at: to_u64(r.get(3)),
                summary: r.get(4),
            }))
        })
    }

    fn add_approval(&mut self, run_id: &str, a: &NewApproval<'_>) -> Result<i64, JournalError> {
        let roles = serde_json::to_string(a.roles).map_err(corrupt)?;
        let decision = a.decision();
        let reason = a.reason().map(str::to_owned);
        let (run_id, step, operator, at) = (
            run_id.to_owned(),
            a.step.to_owned(),
            a.operator.to_owned(),
            to_i64(a.at),
        );
        let signed = a.signed.cloned();
        self.tx(move |tx| {
            // Numbered in commit order: a driver polling "after id N" never misses one.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_APPROVALS])
                .map_err(pg)?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO approvals (run_id, step, operator, roles, at, decision, reason) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    &[&run_id, &step, &operator, &roles, &at, &decision, &reason],
                )
                .map_err(pg)?
                .get(0);
            if let Some(s) = signed {
                tx.execute(
                    "INSERT INTO statements (run_id, approval_id, statement, signature, at) VALUES ($1, $2, $3, $4, $5)",
                    &[&run_id, &id, &s.statement, &s.signature, &at],
                )
                .map_err(pg)?;
            }
            Ok(id)
        })
    }

    fn approvals_after(&self, run_id: &str, after: i64) -> Result<Vec<ApprovalRow>, JournalError> {
        let run_id = run_id.to_owned();
        self.read(move |c| {
            Ok(rows(
                c,
                "SELECT a.id, a.step, a.operator, a.roles, a.at, s.statement, s.signature, a.decision, a.reason FROM approvals a \
                 LEFT JOIN statements s ON s.run_id = a.run_id AND s.approval_id = a.id \
                 WHERE a.run_id = $1 AND a.id > $2 ORDER BY a.id",
                &[&run_id, &after],
            )?
            .iter()
            .map(|r| {
                let (decision, reason): (String, Option<String>) = (r.get(7), r.get(8));
                let statement: Option<String> = r.get(5);
                let signature: Option<String> = r.get(6);
                ApprovalRow {
                    id: r.get(0),
                    step: r.get(1),
                    operator: r.get(2),
                    roles: serde_json::from_str(&r.get::<_, String>(3)).unwrap_or_default(),
                    at: to_u64(r.get(4)),
                    signed: statement.zip(signature).map(|(statement, signature)| {
                        SignedStatement {
                            statement,
                            signature,
                        }
                    }),
                    denial: (decision == "deny").then(|| reason.clone().unwrap_or_default()),
                    break_glass: (decision == "break_glass").then(|| reason.unwrap_or_default()),
                }
            })
            .collect())
        })
    }

    fn add_start_statement(
        &mut self,
        run_id: &str,
        signed: &SignedStatement,
        at: u64,
    ) -> Result<(), JournalError> {
        let (run_id, s) = (run_id.to_owned(), signed.clone());
        self.read(move |c| {
            c.execute(
                "INSERT INTO statements (run_id, approval_id, statement, signature, at) VALUES ($1, NULL, $2, $3, $4)",
                &[&run_id, &s.statement, &s.signature, &to_i64(at)],
            )
            .map_err(pg)?;
            Ok(())
        })
    }

    fn set_anchor(&mut self, run_id: &str, location: &str) -> Result<(), JournalError> {
        let (run_id, location) = (run_id.to_owned(), location.to_owned());
        self.read(move |c| {
            c.execute(
                "INSERT INTO anchors (run_id, location) VALUES ($1, $2) ON CONFLICT (run_id) DO UPDATE SET location = excluded.location",
                &[&run_id, &location],
            )
            .map_err(pg)?;
            Ok(())
        })
    }

    fn anchor(&self, run_id: &str) -> Result<Option<String>, JournalError> {
        let run_id = run_id.to_owned();
        self.read(move |c| {
            Ok(
                c.query_opt("SELECT location FROM anchors WHERE run_id = $1", &[&run_id])
                    .map_err(pg)?
                    .map(|r| r.get(0)),
            )
        })
    }

    fn claim_totp(&mut self, operator: &str, counter: u64, at: u64) -> Result<bool, JournalError> {
        let operator = operator.to_owned();
        self.read(move |c| {
            let n = c
                .execute(
                    "INSERT INTO totp_used (operator, counter, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&operator, &to_i64(counter), &to_i64(at)],
                )
                .map_err(pg)?;
            Ok(n == 1)
        })
    }

    fn signed_statements(&self, run_id: &str) -> Result<Vec<StatementRow>, JournalError> {
        let run_id = run_id.to_owned();
        self.read(move |c| {
            Ok(rows(
                c,
                "SELECT a.step, a.operator, s.statement, s.signature FROM statements s \
                 LEFT JOIN approvals a ON a.id = s.approval_id \
                 WHERE s.run_id = $1 ORDER BY s.id",
                &[&run_id],
            )?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    SignedStatement {
                        statement: r.get(2),
                        signature: r.get(3),
                    },
                )
            })
            .collect())
        })
    }

    fn start_statement(&self, run_id: &str) -> Result<Option<SignedStatement>, JournalError> {
        let run_id = run_id.to_owned();
        self.read(move |c| {
            Ok(c.query_opt(
                "SELECT statement, signature FROM statements WHERE run_id = $1 AND approval_id IS NULL ORDER BY id LIMIT 1",
                &[&run_id],
            )
            .map_err(pg)?
            .map(|r| SignedStatement {
                statement: r.get(0),
                signature: r.get(1),
            }))
        })
    }

    fn audit(&self, run_id: &str) -> Result<Vec<(u64, String, String)>, JournalError> {
        let run_id = run_id.to_owned();
        self.read(move |c| {
            Ok(rows(
                c,
                "SELECT seq, record, hash FROM audit WHERE run_id = $1 ORDER BY seq",
                &[&run_id],
            )?
            .iter()
            .map(|r| (to_u64(r.get(0)), r.get(1), r.get(2)))
            .collect())
        })
    }

    fn append_log(
        &mut self,
        log: &str,
        audit: &[AuditRecord],
    ) -> Result<(String, u64), JournalError> {
        let (log, audit, redactor) = (log.to_owned(), audit.to_vec(), self.redactor.clone());
        self.tx(move |tx| chain(tx, &redactor, &log, &audit, Head::Log))
    }

    fn audit_head(&self, run_id: &str) -> Result<(String, u64), JournalError> {
        let id = run_id.to_owned();
        self.read(move |c| {
            c.query_opt(
                "SELECT audit_head, audit_count FROM runs WHERE run_id = $1",
                &[&id],
            )
            .map_err(pg)?
            .map(|r| (r.get(0), to_u64(r.get(1))))
            .ok_or(JournalError::NoRun(id))
        })
    }

    fn log_head(&self, log: &str) -> Result<(String, u64), JournalError> {
        let log = log.to_owned();
        self.read(move |c| {
            Ok(c.query_opt(
                "SELECT audit_head, audit_count FROM logs WHERE log_id = $1",
                &[&log],
            )
            .map_err(pg)?
            .map_or_else(|| (GENESIS.to_owned(), 0), |r| (r.get(0), to_u64(r.get(1)))))
        })
    }

    fn alerts(&self) -> Result<Vec<AlertRow>, JournalError> {
        self.read(|c| {
            Ok(rows(
                c,
                "SELECT key, kind, state, alert, first_at, updated_at, resolved_at FROM alerts ORDER BY first_at, key",
                &[],
            )?
            .iter()
            .map(|r| AlertRow {
                key: r.get(0),
                kind: r.get(1),
                state: r.get(2),
                alert: r.get(3),
                first_at: to_u64(r.get(4)),
                updated_at: to_u64(r.get(5)),
                resolved_at: r.get::<_, Option<i64>>(6).map(to_u64),
            })
            .collect())
        })
    }

    fn alert_sinks(&self) -> Result<Vec<AlertSinkRow>, JournalError> {
        self.read(|c| {
            Ok(rows(
                c,
                "SELECT key, sink, delivered, attempts, last_error, gave_up, updated_at FROM alert_sinks ORDER BY updated_at",
                &[],
            )?
            .iter()
            .map(|r| AlertSinkRow {
                key: r.get(0),
                sink: r.get(1),
                delivered: r.get(2),
                attempts: to_u64(r.get(3)),
                last_error: r.get(4),
                gave_up: r.get(5),
                updated_at: to_u64(r.get(6)),
            })
            .collect())
        })
    }

    fn set_alert(
        &mut self,
        key: &str,
        kind: &str,
        state: &str,
        alert_json: &str,
        at: u64,
        audit: &AuditRecord,
    ) -> Result<bool, JournalError> {
        let (key, kind, state) = (key.to_owned(), kind.to_owned(), state.to_owned());
        let alert_json = self.redactor.text(alert_json);
        let (audit, redactor) = (audit.clone(), self.redactor.clone());
        self.tx(move |tx| {
            // One decider at a time per alert (replicas reconcile the same conditions).
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                &[&format!("alert:{key}")],
            )
            .map_err(pg)?;
            let current: Option<String> = tx
                .query_opt("SELECT state FROM alerts WHERE key = $1", &[&key])
                .map_err(pg)?
                .map(|r| r.get(0));
            if current.as_deref() == Some(state.as_str())
                || (current.is_none() && state != "firing")
            {
                return Ok(false);
            }
            if state == "firing" {
                tx.execute(
                    "INSERT INTO alerts (key, kind, state, alert, first_at, updated_at, resolved_at) VALUES ($1, $2, 'firing', $3, $4, $4, NULL) \
                     ON CONFLICT (key) DO UPDATE SET state = 'firing', alert = $3, updated_at = $4, resolved_at = NULL",
                    &[&key, &kind, &alert_json, &to_i64(at)],
                )
                .map_err(pg)?;
            } else {
                tx.execute(
                    "UPDATE alerts SET state = $2, updated_at = $3, resolved_at = $3 WHERE key = $1",
                    &[&key, &state, &to_i64(at)],
                )
                .map_err(pg)?;
            }
            tx.execute(
                "UPDATE alert_sinks SET gave_up = NULL, attempts = 0 WHERE key = $1",
                &[&key],
            )
            .map_err(pg)?;
            chain(
                tx,
                &redactor,
                drover_engine::journal::ALERTS_LOG,
                std::slice::from_ref(&audit),
                Head::Log,
            )?;
            Ok(true)
        })
    }

    fn record_delivery(
        &mut self,
        key: &str,
        sink: &str,
        action: &str,
        outcome: Result<&str, &str>,
        give_up: bool,
        at: u64,
        audit: &AuditRecord,
    ) -> Result<(), JournalError> {
        let (key, sink, action) = (key.to_owned(), sink.to_owned(), action.to_owned());
        let outcome = outcome
            .map(str::to_owned)
            .map_err(|e| self.redactor.text(e));
        let (audit, redactor) = (audit.clone(), self.redactor.clone());
        self.tx(move |tx| {
            let at = to_i64(at);
            tx.execute(
                "INSERT INTO alert_sinks (key, sink, delivered, attempts, last_error, gave_up, updated_at) VALUES ($1, $2, '', 0, NULL, NULL, $3) \
                 ON CONFLICT (key, sink) DO NOTHING",
                &[&key, &sink, &at],
            )
            .map_err(pg)?;
            match &outcome {
                Ok(_) => tx.execute(
                    "UPDATE alert_sinks SET delivered = $3, attempts = attempts + 1, last_error = NULL, gave_up = NULL, updated_at = $4 WHERE key = $1 AND sink = $2",
                    &[&key, &sink, &action, &at],
                ),
                Err(e) => tx.execute(
                    "UPDATE alert_sinks SET attempts = attempts + 1, last_error = $3, gave_up = $4, updated_at = $5 WHERE key = $1 AND sink = $2",
                    &[&key, &sink, e, &give_up.then_some(action.as_str()), &at],
                ),
            }
            .map_err(pg)?;
            chain(
                tx,
                &redactor,
                drover_engine::journal::ALERTS_LOG,
                std::slice::from_ref(&audit),
                Head::Log,
            )?;
            Ok(())
        })
    }

    fn record_fire(&mut self, fire: &FireRow, audit: &AuditRecord) -> Result<bool, JournalError> {
        let mut fire = fire.clone();
        fire.detail = fire.detail.as_deref().map(|d| self.redactor.text(d));
        let (audit, redactor) = (audit.clone(), self.redactor.clone());
        self.tx(move |tx| {
            let n = tx
                .execute(
                    "INSERT INTO fires (runbook, schedule, slot_ms, decision, state, run_id, count, detail, decided_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) ON CONFLICT DO NOTHING",
                    &[
                        &fire.runbook,
                        &fire.schedule,
                        &fire.slot_ms,
                        &fire.decision,
                        &fire.state,
                        &fire.run_id,
                        &to_i64(fire.count),
                        &fire.detail,
                        &to_i64(fire.decided_at),
                    ],
                )
                .map_err(pg)?;
            if n == 0 {
                // Decided already (by another replica, or before a restart).
                return Ok(false);
            }
            chain(
                tx,
                &redactor,
                drover_engine::journal::SCHEDULES_LOG,
                std::slice::from_ref(&audit),
                Head::Log,
            )?;
            Ok(true)
        })
    }

    fn update_fire(
        &mut self,
        key: (&str, &str, i64, &str),
        from: &[&str],
        state: &str,
        detail: Option<&str>,
        at: u64,
        audit: &AuditRecord,
    ) -> Result<bool, JournalError> {
        let (rb, sc, slot, dec) = (key.0.to_owned(), key.1.to_owned(), key.2, key.3.to_owned());
        let from: Vec<String> = from.iter().map(|s| (*s).to_owned()).collect();
        let state = state.to_owned();
        let detail = detail.map(|d| self.redactor.text(d));
        let (audit, redactor) = (audit.clone(), self.redactor.clone());
        self.tx(move |tx| {
            let current: Option<String> = tx
                .query_opt(
                    "SELECT state FROM fires WHERE runbook = $1 AND schedule = $2 AND slot_ms = $3 AND decision = $4 FOR UPDATE",
                    &[&rb, &sc, &slot, &dec],
                )
                .map_err(pg)?
                .map(|r| r.get(0));
            if !current.is_some_and(|c| from.contains(&c)) {
                return Ok(false);
            }
            tx.execute(
                "UPDATE fires SET state = $5, detail = COALESCE($6, detail), updated_at = $7 \
                 WHERE runbook = $1 AND schedule = $2 AND slot_ms = $3 AND decision = $4",
                &[&rb, &sc, &slot, &dec, &state, &detail, &to_i64(at)],
            )
            .map_err(pg)?;
            chain(
                tx,
                &redactor,
                drover_engine::journal::SCHEDULES_LOG,
                std::slice::from_ref(&audit),
                Head::Log,
            )?;
            Ok(true)
        })
    }

    fn fires(&self) -> Result<Vec<FireRow>, JournalError> {
        self.read(|c| {
            Ok(rows(
                c,
                "SELECT runbook, schedule, slot_ms, decision, state, run_id, count, detail, decided_at, updated_at \
                 FROM fires ORDER BY slot_ms, runbook, schedule",
                &[],
            )?
            .iter()
            .map(|r| FireRow {
                runbook: r.get(0),
                schedule: r.get(1),
                slot_ms: r.get(2),
                decision: r.get(3),
                state: r.get(4),
                run_id: r.get(5),
                count: to_u64(r.get(6)),
                detail: r.get(7),
                decided_at: to_u64(r.get(8)),
                updated_at: to_u64(r.get(9)),
            })
            .collect())
        })
    }

    fn transitions_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String, Transition)>, JournalError> {
        let (after, limit) = (to_i64(after), i64::try_from(limit).unwrap_or(i64::MAX));
        self.read(move |c| {
            rows(
                c,
                "SELECT id, run_id, at, event, actions FROM events WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &limit],
            )?
            .iter()
            .map(|r| {
                Ok((
                    to_u64(r.get(0)),
                    r.get(1),
                    transition(r.get(2), r.get(3), r.get(4))?,
                ))
            })
            .collect()
        })
    }

    fn last_transition(&self) -> Result<u64, JournalError> {
        self.read(|c| {
            Ok(to_u64(
                c.query_one("SELECT COALESCE(MAX(id), 0) FROM events", &[])
                    .map_err(pg)?
                    .get(0),
            ))
        })
    }

    fn transitions_from(&self, run_id: &str, skip: usize) -> Result<Vec<Transition>, JournalError> {
        let (run_id, skip) = (run_id.to_owned(), i64::try_from(skip).unwrap_or(i64::MAX));
        self.read(move |c| {
            rows(
                c,
                "SELECT at, event, actions FROM events WHERE run_id = $1 ORDER BY seq OFFSET $2",
                &[&run_id, &skip],
            )?
            .iter()
            .map(|r| transition(r.get(0), r.get(1), r.get(2)))
            .collect()
        })
    }

    fn put_grant(
        &mut self,
        kind: &str,
        key: &str,
        grant: &Grant,
        now: u64,
    ) -> Result<bool, JournalError> {
        let (kind, key, grant) = (kind.to_owned(), key.to_owned(), grant.clone());
        self.tx(move |tx| {
            tx.execute(
                "DELETE FROM grants WHERE kind = $1 AND expires_at <= $2",
                &[&kind, &to_i64(now)],
            )
            .map_err(pg)?;
            let n = tx
                .execute(
                    "INSERT INTO grants (kind, key, holder, data, expires_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (kind, key) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at \
                     WHERE grants.holder = excluded.holder",
                    &[&kind, &key, &grant.holder, &grant.data, &to_i64(grant.expires_at)],
                )
                .map_err(pg)?;
            Ok(n > 0)
        })
    }

    fn grant(&self, kind: &str, key: &str, now: u64) -> Result<Option<Grant>, JournalError> {
        let (kind, key) = (kind.to_owned(), key.to_owned());
        self.read(move |c| {
            Ok(c.query_opt(
                "SELECT holder, data, expires_at FROM grants WHERE kind = $1 AND key = $2 AND expires_at > $3",
                &[&kind, &key, &to_i64(now)],
            )
            .map_err(pg)?
            .map(|r| grant_at(&r, 0)))
        })
    }

    fn take_grant(
        &mut self,
        kind: &str,
        key: &str,
        now: u64,
    ) -> Result<Option<Grant>, JournalError> {
        let (kind, key) = (kind.to_owned(), key.to_owned());
        self.read(move |c| {
            Ok(c.query_opt(
                "DELETE FROM grants WHERE kind = $1 AND key = $2 RETURNING holder, data, expires_at",
                &[&kind, &key],
            )
            .map_err(pg)?
            .map(|r| grant_at(&r, 0))
            .filter(|g| g.expires_at > now))
        })
    }

    fn grants_of(
        &self,
        kind: &str,
        holder: &str,
        now: u64,
    ) -> Result<Vec<(String, Grant)>, JournalError> {
        let (kind, holder) = (kind.to_owned(), holder.to_owned());
        self.read(move |c| {
            Ok(c.query(
                "SELECT key, holder, data, expires_at FROM grants \
                 WHERE kind = $1 AND holder = $2 AND expires_at > $3 ORDER BY seq",
                &[&kind, &holder, &to_i64(now)],
            )
            .map_err(pg)?
            .iter()
            .map(|r| (r.get(0), grant_at(r, 1)))
            .collect())
        })
    }

    fn revoke_grants(&mut self, kind: &str, holder: &str) -> Result<usize, JournalError> {
        let (kind, holder) = (kind.to_owned(), holder.to_owned());
        self.read(move |c| {
            let n = c
                .execute(
                    "DELETE FROM grants WHERE kind = $1 AND holder = $2",
                    &[&kind, &holder],
                )
                .map_err(pg)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn live_leases(&self) -> Result<Vec<LiveLease>, JournalError> {
        self.read(|c| {
            Ok(rows(
                c,
                "SELECT run_id, status, lease_holder, lease_until, lease_token FROM runs \
                 WHERE status IN ('running', 'waiting') ORDER BY created_at",
                &[],
            )?
            .iter()
            .map(|r| LiveLease {
                run_id: r.get(0),
                status: RunStatus::parse(&r.get::<_, String>(1)).unwrap_or(RunStatus::Running),
                holder: r.get(2),
                until: to_u64(r.get(3)),
                token: r.get(4),
            })
            .collect())
        })
    }
}

//! The durable journal: runs, their events (each journaled before it is acted on), approvals, and
//! the hash-chained audit log. One SQLite database under the state directory; the backend is a
//! trait so a networked database can come later.
//!
//! Only one process drives a run: it holds a lease with a fencing token. Every append checks the
//! token in the same transaction, so a process that lost its lease cannot write another event.

use crate::audit::{AuditRecord, chain_hash};
use crate::scheduler::{Action, Event};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Why a journal operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The database failed.
    #[error("journal database: {0}")]
    Db(#[from] rusqlite::Error),
    /// Another process drives the run.
    #[error(
        "run {run_id} is driven by {holder} (lease valid for {remaining_s} s more); refusing to drive it twice"
    )]
    LeaseHeld {
        /// The run.
        run_id: String,
        /// Who holds it.
        holder: String,
        /// Seconds until it expires.
        remaining_s: u64,
    },
    /// This process's lease was taken over: it must stop.
    #[error("lost the lease on run {0}: another process took it over; stopping")]
    Fenced(String),
    /// No such run.
    #[error("no run {0} in this state directory")]
    NoRun(String),
    /// Stored data does not parse.
    #[error("journal record does not parse: {0}")]
    Corrupt(String),
}

/// A run's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    /// Id.
    pub run_id: String,
    /// Runbook name.
    pub runbook: String,
    /// The compiled plan (JSON).
    pub plan: String,
    /// Mode.
    pub mode: String,
    /// Who started it.
    pub initiator: String,
    /// When the incident or drill was declared (ms).
    pub declared_at: u64,
    /// When the run was created (ms).
    pub created_at: u64,
    /// `running`, `waiting`, or the outcome.
    pub status: String,
    /// The final run record (JSON), once finished.
    pub record: Option<String>,
    /// Hash of the last audit record (kept outside the log, for truncation detection).
    pub audit_head: String,
    /// Number of audit records.
    pub audit_count: u64,
}

/// A held lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The run.
    pub run_id: String,
    /// The fencing token.
    pub token: i64,
    /// Who holds it.
    pub holder: String,
}

/// An approval given with `drover approve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRow {
    /// Row id (increasing).
    pub id: i64,
    /// Step.
    pub step: String,
    /// Who.
    pub operator: String,
    /// Roles claimed.
    pub roles: Vec<String>,
    /// When.
    pub at: u64,
}

/// One journaled transition: an event, when it happened, and the actions it caused.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// When (ms since the epoch, on the run's clock).
    pub at: u64,
    /// What happened.
    pub event: Event,
    /// What the scheduler decided.
    pub actions: Vec<Action>,
}

/// A runbook source file as it was when the run started (for the evidence bundle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceText {
    /// The file's name, as the compiler read it.
    pub name: String,
    /// Its text.
    pub text: String,
}

/// A recorded simulation (`drover simulate --record`), so reports can set the prediction beside
/// what a run achieved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulationRow {
    /// Runbook name.
    pub runbook: String,
    /// SHA-256 of the runbook's sources when it was simulated.
    pub source_sha256: String,
    /// Mode simulated.
    pub mode: String,
    /// When (ms since the epoch).
    pub at: u64,
    /// The simulator's summary (JSON).
    pub summary: String,
}

/// The journal's operations.
pub trait Journal: Send {
    /// Records a new run.
    ///
    /// # Errors
    /// Database errors.
    fn create_run(&mut self, run: &RunRow) -> Result<(), JournalError>;
    /// A run's row.
    ///
    /// # Errors
    /// [`JournalError::NoRun`].
    fn run(&self, run_id: &str) -> Result<RunRow, JournalError>;
    /// The most recently created run.
    ///
    /// # Errors
    /// Database errors.
    fn latest_run(&self) -> Result<Option<String>, JournalError>;
    /// Takes the lease on a run, unless another live process holds it.
    ///
    /// # Errors
    /// [`JournalError::LeaseHeld`].
    fn acquire(
        &mut self,
        run_id: &str,
        holder: &str,
        now: u64,
        ttl_ms: u64,
    ) -> Result<Lease, JournalError>;
    /// Gives the lease up.
    ///
    /// # Errors
    /// Database errors.
    fn release(&mut self, lease: &Lease) -> Result<(), JournalError>;
    /// Appends an event, the actions it caused and their audit records, in one transaction, and
    /// extends the lease. Fails if the lease was taken over.
    ///
    /// # Errors
    /// [`JournalError::Fenced`] or database errors.
    fn append(
        &mut self,
        lease: &Lease,
        at: u64,
        ttl_ms: u64,
        event: &Event,
        actions: &[Action],
        audit: &[AuditRecord],
    ) -> Result<(), JournalError>;
    /// Extends the lease (while nothing else is journaled, e.g. waiting for approvers).
    ///
    /// # Errors
    /// [`JournalError::Fenced`] or database errors.
    fn renew(&mut self, lease: &Lease, now: u64, ttl_ms: u64) -> Result<(), JournalError>;
    /// Sets the run's status and (when finished) its record.
    ///
    /// # Errors
    /// [`JournalError::Fenced`] or database errors.
    fn set_status(
        &mut self,
        lease: &Lease,
        status: &str,
        record: Option<&str>,
    ) -> Result<(), JournalError>;
    /// Every event of a run, in order, with its time.
    ///
    /// # Errors
    /// Database or parse errors.
    fn events(&self, run_id: &str) -> Result<Vec<(u64, Event)>, JournalError>;
    /// Every transition of a run (event and the actions it caused), in order.
    ///
    /// # Errors
    /// Database or parse errors.
    fn transitions(&self, run_id: &str) -> Result<Vec<Transition>, JournalError>;
    /// Keeps the runbook's source files with the run.
    ///
    /// # Errors
    /// Database errors.
    fn store_sources(&mut self, run_id: &str, files: &[SourceText]) -> Result<(), JournalError>;
    /// The runbook's source files as they were when the run started (empty if none were kept).
    ///
    /// # Errors
    /// Database errors.
    fn sources(&self, run_id: &str) -> Result<Vec<SourceText>, JournalError>;
    /// Every run of the runbook named `runbook`, oldest first.
    ///
    /// # Errors
    /// Database errors.
    fn runs_of(&self, runbook: &str) -> Result<Vec<RunRow>, JournalError>;
    /// Records a simulation.
    ///
    /// # Errors
    /// Database errors.
    fn record_simulation(&mut self, sim: &SimulationRow) -> Result<(), JournalError>;
    /// The latest simulation of this runbook (same sources) in this mode.
    ///
    /// # Errors
    /// Database errors.
    fn latest_simulation(
        &self,
        runbook: &str,
        source_sha256: &str,
        mode: &str,
    ) -> Result<Option<SimulationRow>, JournalError>;
    /// Records an approval.
    ///
    /// # Errors
    /// Database errors.
    fn add_approval(
        &mut self,
        run_id: &str,
        step: &str,
        operator: &str,
        roles: &[String],
        at: u64,
    ) -> Result<i64, JournalError>;
    /// Approvals with an id above `after`.
    ///
    /// # Errors
    /// Database errors.
    fn approvals_after(&self, run_id: &str, after: i64) -> Result<Vec<ApprovalRow>, JournalError>;
    /// The run's audit records, in order, with their stored hashes.
    ///
    /// # Errors
    /// Database errors.
    fn audit(&self, run_id: &str) -> Result<Vec<(u64, String, String)>, JournalError>;
}

/// The SQLite journal (`STATE/drover.db`).
pub struct SqliteJournal {
    conn: rusqlite::Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, runbook TEXT NOT NULL, mode TEXT NOT NULL,
  initiator TEXT NOT NULL, declared_at INTEGER NOT NULL, created_at INTEGER NOT NULL,
  status TEXT NOT NULL, record TEXT, audit_head TEXT NOT NULL, audit_count INTEGER NOT NULL,
  lease_holder TEXT, lease_token INTEGER NOT NULL DEFAULT 0, lease_until INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS plans (
  run_id TEXT PRIMARY KEY, plan TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
  run_id TEXT NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL, event TEXT NOT NULL, actions TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS approvals (
  id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, step TEXT NOT NULL,
  operator TEXT NOT NULL, roles TEXT NOT NULL, at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sources (
  run_id TEXT NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL, text TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS simulations (
  id INTEGER PRIMARY KEY AUTOINCREMENT, runbook TEXT NOT NULL, source_sha256 TEXT NOT NULL,
  mode TEXT NOT NULL, at INTEGER NOT NULL, summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
  run_id TEXT NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL, hash TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)
);
";

impl SqliteJournal {
    /// Opens (creating if needed) `STATE/drover.db`.
    ///
    /// # Errors
    /// If the directory or database cannot be created.
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| JournalError::Corrupt(format!("{}: {e}", state_dir.display())))?;
        let conn = rusqlite::Connection::open(state_dir.join("drover.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Every transition is durable before it is acted on.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
    }
}

const RUN_COLUMNS: &str = "SELECT r.run_id, r.runbook, p.plan, r.mode, r.initiator, r.declared_at, r.created_at, r.status, r.record, r.audit_head, r.audit_count
     FROM runs r JOIN plans p ON p.run_id = r.run_id";

fn run_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        run_id: row.get(0)?,
        runbook: row.get(1)?,
        plan: row.get(2)?,
        mode: row.get(3)?,
        initiator: row.get(4)?,
        declared_at: row.get::<_, i64>(5)? as u64,
        created_at: row.get::<_, i64>(6)? as u64,
        status: row.get(7)?,
        record: row.get(8)?,
        audit_head: row.get(9)?,
        audit_count: row.get::<_, i64>(10)? as u64,
    })
}

fn holder_alive(holder: &str) -> bool {
    // Holders are `operator@host pid N`: a holder on this host whose process is gone is dead.
    let this_host = hostname();
    let mut parts = holder.rsplit(' ');
    let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
    let host = holder.split('@').nth(1).and_then(|h| h.split(' ').next());
    match (pid, host) {
        (Some(pid), Some(h)) if h == this_host && Path::new("/proc").exists() => {
            Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => true,
    }
}

/// This machine's name (for lease holders).
#[must_use]
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

impl Journal for SqliteJournal {
    fn create_run(&mut self, r: &RunRow) -> Result<(), JournalError> {
        // The plan lives in its own table: the run's row is rewritten on every commit (lease,
        // audit head), and must stay small whatever the plan's size.
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO runs (run_id, runbook, mode, initiator, declared_at, created_at, status, record, audit_head, audit_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![r.run_id, r.runbook, r.mode, r.initiator, r.declared_at as i64, r.created_at as i64, r.status, r.record, r.audit_head, r.audit_count as i64],
        )?;
        tx.execute(
            "INSERT INTO plans (run_id, plan) VALUES (?1, ?2)",
            params![r.run_id, r.plan],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn run(&self, run_id: &str) -> Result<RunRow, JournalError> {
        self.conn
            .query_row(
                &format!("{RUN_COLUMNS} WHERE r.run_id = ?1"),
                [run_id],
                run_row,
            )
            .optional()?
            .ok_or_else(|| JournalError::NoRun(run_id.to_owned()))
    }

    fn runs_of(&self, runbook: &str) -> Result<Vec<RunRow>, JournalError> {
        let mut stmt = self.conn.prepare(&format!(
            "{RUN_COLUMNS} WHERE r.runbook = ?1 ORDER BY r.created_at, r.rowid"
        ))?;
        let rows = stmt.query_map([runbook], run_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn latest_run(&self) -> Result<Option<String>, JournalError> {
        Ok(self
            .conn
            .query_row(
                "SELECT run_id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn acquire(
        &mut self,
        run_id: &str,
        holder: &str,
        now: u64,
        ttl_ms: u64,
    ) -> Result<Lease, JournalError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let row: Option<(Option<String>, i64, i64)> = tx
            .query_row(
                "SELECT lease_holder, lease_token, lease_until FROM runs WHERE run_id = ?1",
                [run_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((current, token, until)) = row else {
            return Err(JournalError::NoRun(run_id.to_owned()));
        };
        if let Some(h) = current
            && (until as u64) > now
            && holder_alive(&h)
        {
            return Err(JournalError::LeaseHeld {
                run_id: run_id.to_owned(),
                holder: h,
                remaining_s: ((until as u64) - now).div_ceil(1000),
            });
        }
        let token = token + 1;
        tx.execute(
            "UPDATE runs SET lease_holder = ?1, lease_token = ?2, lease_until = ?3 WHERE run_id = ?4",
            params![holder, token, (now + ttl_ms) as i64, run_id],
        )?;
        tx.commit()?;
        Ok(Lease {
            run_id: run_id.to_owned(),
            token,
            holder: holder.to_owned(),
        })
    }

    fn release(&mut self, lease: &Lease) -> Result<(), JournalError> {
        self.conn.execute(
            "UPDATE runs SET lease_holder = NULL, lease_until = 0 WHERE run_id = ?1 AND lease_token = ?2",
            params![lease.run_id, lease.token],
        )?;
        Ok(())
    }

    fn append(
        &mut self,
        lease: &Lease,
        at: u64,
        ttl_ms: u64,
        event: &Event,
        actions: &[Action],
        audit: &[AuditRecord],
    ) -> Result<(), JournalError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE runs SET lease_until = ?1 WHERE run_id = ?2 AND lease_token = ?3",
            params![(at + ttl_ms) as i64, lease.run_id, lease.token],
        )?;
        if n == 0 {
            return Err(JournalError::Fenced(lease.run_id.clone()));
        }
        let seq: i64 = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run_id = ?1",
            [&lease.run_id],
            |r| r.get(0),
        )?;
        let ev = serde_json::to_string(event).map_err(|e| JournalError::Corrupt(e.to_string()))?;
        let acts =
            serde_json::to_string(actions).map_err(|e| JournalError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT INTO events (run_id, seq, at, event, actions) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![lease.run_id, seq, at as i64, ev, acts],
        )?;
        if !audit.is_empty() {
            let (mut head, mut count): (String, i64) = tx.query_row(
                "SELECT audit_head, audit_count FROM runs WHERE run_id = ?1",
                [&lease.run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            for rec in audit {
                count += 1;
                let mut rec = rec.clone();
                rec.seq = count as u64;
                rec.prev = head.clone();
                let json = serde_json::to_string(&rec)
                    .map_err(|e| JournalError::Corrupt(e.to_string()))?;
                head = chain_hash(&rec.prev, &json);
                tx.execute(
                    "INSERT INTO audit (run_id, seq, record, hash) VALUES (?1, ?2, ?3, ?4)",
                    params![lease.run_id, count, json, head],
                )?;
            }
            tx.execute(
                "UPDATE runs SET audit_head = ?1, audit_count = ?2 WHERE run_id = ?3",
                params![head, count, lease.run_id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn renew(&mut self, lease: &Lease, now: u64, ttl_ms: u64) -> Result<(), JournalError> {
        let n = self.conn.execute(
            "UPDATE runs SET lease_until = ?1 WHERE run_id = ?2 AND lease_token = ?3",
            params![(now + ttl_ms) as i64, lease.run_id, lease.token],
        )?;
        if n == 0 {
            return Err(JournalError::Fenced(lease.run_id.clone()));
        }
        Ok(())
    }

    fn set_status(
        &mut self,
        lease: &Lease,
        status: &str,
        record: Option<&str>,
    ) -> Result<(), JournalError> {
        let n = self.conn.execute(
            "UPDATE runs SET status = ?1, record = COALESCE(?2, record) WHERE run_id = ?3 AND lease_token = ?4",
            params![status, record, lease.run_id, lease.token],
        )?;
        if n == 0 {
            return Err(JournalError::Fenced(lease.run_id.clone()));
        }
        Ok(())
    }

    fn events(&self, run_id: &str) -> Result<Vec<(u64, Event)>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT at, event FROM events WHERE run_id = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([run_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (at, ev) = row?;
            let ev: Event =
                serde_json::from_str(&ev).map_err(|e| JournalError::Corrupt(e.to_string()))?;
            out.push((at as u64, ev));
        }
        Ok(out)
    }

    fn transitions(&self, run_id: &str) -> Result<Vec<Transition>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT at, event, actions FROM events WHERE run_id = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([run_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let corrupt = |e: serde_json::Error| JournalError::Corrupt(e.to_string());
        let mut out = Vec::new();
        for row in rows {
            let (at, event, actions) = row?;
            out.push(Transition {
                at: u64::try_from(at).unwrap_or(0),
                event: serde_json::from_str(&event).map_err(corrupt)?,
                actions: serde_json::from_str(&actions).map_err(corrupt)?,
            });
        }
        Ok(out)
    }

    fn store_sources(&mut self, run_id: &str, files: &[SourceText]) -> Result<(), JournalError> {
        let tx = self.conn.transaction()?;
        for (k, f) in files.iter().enumerate() {
            tx.execute(
                "INSERT OR REPLACE INTO sources (run_id, seq, name, text) VALUES (?1, ?2, ?3, ?4)",
                params![run_id, k as i64, f.name, f.text],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn sources(&self, run_id: &str) -> Result<Vec<SourceText>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, text FROM sources WHERE run_id = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([run_id], |r| {
            Ok(SourceText {
                name: r.get(0)?,
                text: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn record_simulation(&mut self, sim: &SimulationRow) -> Result<(), JournalError> {
        self.conn.execute(
            "INSERT INTO simulations (runbook, source_sha256, mode, at, summary) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![sim.runbook, sim.source_sha256, sim.mode, sim.at as i64, sim.summary],
        )?;
        Ok(())
    }

    fn latest_simulation(
        &self,
        runbook: &str,
        source_sha256: &str,
        mode: &str,
    ) -> Result<Option<SimulationRow>, JournalError> {
        Ok(self
            .conn
            .query_row(
                "SELECT runbook, source_sha256, mode, at, summary FROM simulations
                 WHERE runbook = ?1 AND source_sha256 = ?2 AND mode = ?3 ORDER BY id DESC LIMIT 1",
                params![runbook, source_sha256, mode],
                |r| {
                    Ok(SimulationRow {
                        runbook: r.get(0)?,
                        source_sha256: r.get(1)?,
                        mode: r.get(2)?,
                        at: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                        summary: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    fn add_approval(
        &mut self,
        run_id: &str,
        step: &str,
        operator: &str,
        roles: &[String],
        at: u64,
    ) -> Result<i64, JournalError> {
        let roles =
            serde_json::to_string(roles).map_err(|e| JournalError::Corrupt(e.to_string()))?;
        self.conn.execute(
            "INSERT INTO approvals (run_id, step, operator, roles, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![run_id, step, operator, roles, at as i64],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn approvals_after(&self, run_id: &str, after: i64) -> Result<Vec<ApprovalRow>, JournalError> {
        let mut stmt = self.conn.prepare("SELECT id, step, operator, roles, at FROM approvals WHERE run_id = ?1 AND id > ?2 ORDER BY id")?;
        let rows = stmt.query_map(params![run_id, after], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, step, operator, roles, at) = row?;
            out.push(ApprovalRow {
                id,
                step,
                operator,
                roles: serde_json::from_str(&roles).unwrap_or_default(),
                at: at as u64,
            });
        }
        Ok(out)
    }

    fn audit(&self, run_id: &str) -> Result<Vec<(u64, String, String)>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, record, hash FROM audit WHERE run_id = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([run_id], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

impl SqliteJournal {
    /// How long each step of the runbook named `runbook` took in past runs (any mode): per step
    /// id, the durations (ms) of its successful attempts, from the start of the attempt to its
    /// result, and for approval steps the wait from the request to the last approval. Interrupted
    /// and failed attempts are left out. The simulator draws from these (empirical models).
    ///
    /// # Errors
    /// Database errors; a row that does not parse.
    pub fn measured_durations(
        &self,
        runbook: &str,
    ) -> Result<BTreeMap<String, Vec<u64>>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT run_id FROM runs WHERE runbook = ?1 ORDER BY created_at, rowid")?;
        let runs = stmt
            .query_map([runbook], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for run in runs {
            let timeline = crate::timeline::Timeline::from_transitions(&self.transitions(&run)?);
            for (step, ds) in timeline.durations() {
                out.entry(step.to_owned()).or_default().extend(ds);
            }
        }
        Ok(out)
    }

    /// Direct access for tests of tamper detection (editing the log behind the engine's back).
    #[doc(hidden)]
    pub fn connection(&self) -> &rusqlite::Connection {
        &self.conn
    }
}

//! The durable journal: runs, their events (each journaled before it is acted on), approvals, and
//! the hash-chained audit log. One SQLite database under the state directory; the backend is a
//! trait so a networked database can come later.
//!
//! Only one process drives a run: it holds a lease with a fencing token. Every append checks the
//! token in the same transaction, so a process that lost its lease cannot write another event.

use crate::audit::{AuditRecord, chain_hash};
use crate::redactor::Redactor;
use crate::scheduler::{Action, Event, RunOutcome};
use drover_dsl::Mode;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

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
    /// The state directory or its database cannot be read or created.
    #[error("state directory {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// What the operating system said (permission denied, not found, ...).
        source: std::io::Error,
    },
    /// A read-only command was pointed at a state directory that holds no journal.
    #[error("{0} holds no Drover journal (no drover.db); check --state")]
    NoJournal(String),
    /// The state location names a scheme this build cannot keep a journal in.
    #[error(
        "state location {location}: `{scheme}://` is not supported; --state takes a local directory path (the journal is a SQLite database inside it) or a PostgreSQL location postgres://USER@HOST:PORT/DB"
    )]
    UnsupportedLocation {
        /// What was given.
        location: String,
        /// Its scheme.
        scheme: String,
    },
    /// The database server (PostgreSQL) failed, or could not be reached.
    #[error("journal database: {0}")]
    Remote(String),
    /// The database was migrated by a newer Drover than this one: it is not touched.
    #[error(
        "the journal database is at schema version {found}, newer than this drover supports ({supported}); upgrade drover on this host before it uses that database"
    )]
    SchemaTooNew {
        /// The database's version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// A run with this id already exists.
    #[error("a run with id {0} already exists in this state directory; choose another --run-id")]
    RunExists(String),
    /// An unfinished run holds what a new run would claim: one cutover at a time.
    #[error(
        "{what} is claimed by run {run_id} of `{runbook}`, started by {operator} ({status}): one cutover at a time. Finish it first (`drover resume {run_id}`, or `drover status {run_id}`), or run anyway with --concurrent \"REASON\" (the reason goes into the audit log)"
    )]
    Claimed {
        /// What is claimed: `runbook X` or `resource Y`.
        what: String,
        /// The run holding it.
        run_id: String,
        /// Its runbook.
        runbook: String,
        /// Who started it.
        operator: String,
        /// Its status (running, waiting, interrupted, rollback_incomplete).
        status: String,
    },
}

/// What a new run claims for as long as it is unfinished (running, waiting, interrupted, or
/// with a rollback that could not undo everything):
/// its runbook, and in a failover or failback the production resources it changes. A second run
/// claiming any of them is refused, unless it runs `concurrent` with a reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// `runbook:NAME` and `resource:ID`.
    pub names: Vec<String>,
    /// Why this run may share its claims with unfinished runs (`--concurrent`), if it may.
    pub concurrent: Option<String>,
}

/// Where a run stands, as the journal keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Being driven (or was, until its process died: see [`RunStatus::is_live`]).
    Running,
    /// Being driven, waiting for approvers.
    Waiting,
    /// Over, with this outcome (`Interrupted` can be resumed).
    Finished(RunOutcome),
}

impl RunStatus {
    const OUTCOMES: [RunOutcome; 6] = [
        RunOutcome::Succeeded,
        RunOutcome::SucceededWithFailures,
        RunOutcome::Failed,
        RunOutcome::RolledBack,
        RunOutcome::RollbackIncomplete,
        RunOutcome::Interrupted,
    ];

    /// The name stored and shown (`running`, `waiting`, or the outcome in snake case).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Finished(o) => o.as_str(),
        }
    }

    /// Parses a stored name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(RunStatus::Running),
            "waiting" => Some(RunStatus::Waiting),
            // The name before `rollback_incomplete`.
            "rollback_failed" => Some(RunStatus::Finished(RunOutcome::RollbackIncomplete)),
            _ => Self::OUTCOMES
                .into_iter()
                .find(|o| o.as_str() == s)
                .map(RunStatus::Finished),
        }
    }

    /// Whether a process is (or was, until it died) driving the run.
    #[must_use]
    pub fn is_live(self) -> bool {
        matches!(self, RunStatus::Running | RunStatus::Waiting)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RunStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RunStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RunStatus::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown run status `{s}`")))
    }
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
    pub mode: Mode,
    /// Who started it.
    pub initiator: String,
    /// When the incident or drill was declared (ms).
    pub declared_at: u64,
    /// When the run was created (ms).
    pub created_at: u64,
    /// Where it stands.
    pub status: RunStatus,
    /// The final run record (JSON), once finished.
    pub record: Option<String>,
    /// Hash of the last audit record (kept outside the log, for truncation detection).
    pub audit_head: String,
    /// Number of audit records.
    pub audit_count: u64,
}

impl RunRow {
    /// Whether the run is a tabletop exercise (its plan is marked simulated): never a verified
    /// recovery, and no measurement.
    #[must_use]
    pub fn simulated(&self) -> bool {
        drover_dsl::Plan::json_is_simulated(&self.plan)
    }
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

/// A signed statement of a run: `(step, operator, statement)` — the start has no step and no
/// operator (its signer is the initiator).
pub type StatementRow = (
    Option<String>,
    Option<String>,
    crate::signed::SignedStatement,
);

/// An approval given with `drover approve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRow {
    /// Row id (increasing).
    pub id: i64,
    /// Step.
    pub step: String,
    /// Who.
    pub operator: String,
    /// Roles claimed (with a roster: the roster's roles of the signer).
    pub roles: Vec<String>,
    /// When.
    pub at: u64,
    /// The signed statement, when the run's runbook has an operator roster.
    pub signed: Option<crate::signed::SignedStatement>,
    /// For a denial (`drover approve --deny`), its reason.
    pub denial: Option<String>,
    /// For a break-glass approval (`drover approve --break-glass`), its reason.
    pub break_glass: Option<String>,
}

/// An approval or a denial to record.
#[derive(Debug, Clone, Copy)]
pub struct NewApproval<'a> {
    /// The step.
    pub step: &'a str,
    /// Who (the roster operator, with a roster).
    pub operator: &'a str,
    /// Their roles.
    pub roles: &'a [String],
    /// When.
    pub at: u64,
    /// The signed statement, with a roster.
    pub signed: Option<&'a crate::signed::SignedStatement>,
    /// `Some(reason)` for a denial.
    pub denial: Option<&'a str>,
    /// `Some(reason)` for a break-glass approval.
    pub break_glass: Option<&'a str>,
}

impl NewApproval<'_> {
    /// The decision as stored: `approve`, `deny` or `break_glass`.
    #[must_use]
    pub fn decision(&self) -> &'static str {
        match (self.denial, self.break_glass) {
            (Some(_), _) => "deny",
            (None, Some(_)) => "break_glass",
            (None, None) => "approve",
        }
    }

    /// The reason stored with a denial or a break-glass approval.
    #[must_use]
    pub fn reason(&self) -> Option<&str> {
        self.denial.or(self.break_glass)
    }
}

/// How a claim is named in a refusal: the runbook by name, or the production resource by id.
#[must_use]
pub fn claim_label(claim: &str) -> String {
    match claim.split_once(':') {
        Some(("runbook", n)) => format!("runbook `{n}`"),
        Some((_, n)) => format!("production resource {n}"),
        None => claim.to_owned(),
    }
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

/// What a long-running step last said it was waiting for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressRow {
    /// Step id.
    pub step: String,
    /// What it said (redacted).
    pub text: String,
    /// When (ms).
    pub at: u64,
}

/// The lease on a live run, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveLease {
    /// The run.
    pub run_id: String,
    /// Its status (`running` or `waiting`).
    pub status: RunStatus,
    /// Who holds (or last held) the lease; `None` once released.
    pub holder: Option<String>,
    /// Until when it is valid (ms since the epoch).
    pub until: u64,
    /// The fencing token (bumped by every takeover).
    pub token: i64,
}

/// One transition to journal: an event, the actions the scheduler decided on it, and its audit
/// records.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// What happened.
    pub event: &'a Event,
    /// What the scheduler decided on it.
    pub actions: &'a [Action],
    /// Its audit records, in order.
    pub audit: &'a [AuditRecord],
}

/// A grant kept in the journal, so that every process (every replica) on it sees the same: a
/// session under the SHA-256 of its token, a login challenge, a console link, a replica's claim
/// on an alert delivery, a passkey registration. Secrets are never stored: a secret's grant is
/// kept under its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Who holds it (an operator; a replica).
    pub holder: String,
    /// What else it carries (not secret).
    pub data: String,
    /// When it lapses (ms since the epoch).
    pub expires_at: u64,
}

/// The journal's operations. Every payload a journal stores passes its [`Redactor`] first: no
/// other path writes to it.
pub trait Journal: Send {
    /// The redactor every stored payload passes through; the driver teaches it the run's secrets.
    fn redactor(&self) -> &Redactor;
    /// Records what a running step last said it was waiting for (replacing what it said before).
    ///
    /// # Errors
    /// [`JournalError::Fenced`] or database errors.
    fn set_progress(
        &mut self,
        lease: &Lease,
        step: &str,
        text: &str,
        at: u64,
    ) -> Result<(), JournalError>;
    /// What each step of a run last said it was waiting for.
    ///
    /// # Errors
    /// Database errors.
    fn progress(&self, run_id: &str) -> Result<Vec<ProgressRow>, JournalError>;
    /// Every run, newest first.
    ///
    /// # Errors
    /// Database errors.
    fn runs(&self) -> Result<Vec<RunRow>, JournalError>;
    /// Who drives the run now: the holder of an unexpired lease whose process is alive (`None`
    /// when nobody does: finished, interrupted, or its process crashed or was killed).
    ///
    /// # Errors
    /// [`JournalError::NoRun`] or database errors.
    fn driven_by(&self, run_id: &str, now: u64) -> Result<Option<String>, JournalError>;
    /// Appends audit records outside a driven transition (an approval refused by `drover
    /// approve`, which holds no lease): chained after the current head in one transaction.
    ///
    /// # Errors
    /// Database errors.
    fn append_audit(&mut self, run_id: &str, audit: &[AuditRecord]) -> Result<(), JournalError>;
    /// Records a new run.
    ///
    /// # Errors
    /// Database errors.
    fn create_run(&mut self, run: &RunRow, claims: &Claims) -> Result<(), JournalError>;
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
    ) -> Result<(), JournalError> {
        self.append_all(
            lease,
            at,
            ttl_ms,
            &[Entry {
                event,
                actions,
                audit,
            }],
        )
    }
    /// Appends transitions in order, all in one transaction (a group commit: steps that finished
    /// together cost one commit), and extends the lease. All or nothing; fails if the lease was
    /// taken over.
    ///
    /// # Errors
    /// [`JournalError::Fenced`] or database errors.
    fn append_all(
        &mut self,
        lease: &Lease,
        at: u64,
        ttl_ms: u64,
        entries: &[Entry<'_>],
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
        status: RunStatus,
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
    fn add_approval(&mut self, run_id: &str, a: &NewApproval<'_>) -> Result<i64, JournalError>;
    /// Approvals with an id above `after`.
    ///
    /// # Errors
    /// Database errors.
    fn approvals_after(&self, run_id: &str, after: i64) -> Result<Vec<ApprovalRow>, JournalError>;
    /// Records the signed statement that started a run.
    ///
    /// # Errors
    /// Database errors.
    fn add_start_statement(
        &mut self,
        run_id: &str,
        signed: &crate::signed::SignedStatement,
        at: u64,
    ) -> Result<(), JournalError>;
    /// Records where a run anchors its audit checkpoints (`--audit-anchor`), so a resume or a
    /// rollback goes on anchoring.
    ///
    /// # Errors
    /// Database errors.
    fn set_anchor(&mut self, run_id: &str, location: &str) -> Result<(), JournalError>;
    /// Where a run anchors its audit checkpoints, if anywhere.
    ///
    /// # Errors
    /// Database errors.
    fn anchor(&self, run_id: &str) -> Result<Option<String>, JournalError>;
    /// Marks TOTP time step `counter` as used by `operator`; `false` if it was used before (a
    /// code is accepted once per operator, across runs).
    ///
    /// # Errors
    /// Database errors.
    fn claim_totp(&mut self, operator: &str, counter: u64, at: u64) -> Result<bool, JournalError>;
    /// Every signed statement of a run, in order: `(step, operator, statement)` — the start has
    /// no step and no operator (its signer is the initiator).
    ///
    /// # Errors
    /// Database errors.
    fn signed_statements(&self, run_id: &str) -> Result<Vec<StatementRow>, JournalError>;
    /// The signed statement that started a run, if it was signed.
    ///
    /// # Errors
    /// Database errors.
    fn start_statement(
        &self,
        run_id: &str,
    ) -> Result<Option<crate::signed::SignedStatement>, JournalError>;
    /// The run's audit records, in order, with their stored hashes (also the records of a log
    /// of operations outside runs, by its name, e.g. [`crate::oplog::BACKUPS_LOG`]).
    ///
    /// # Errors
    /// Database errors.
    fn audit(&self, run_id: &str) -> Result<Vec<(u64, String, String)>, JournalError>;
    /// Appends records to a log of operations outside runs (`log`, e.g.
    /// [`crate::oplog::BACKUPS_LOG`]), hash-chained like a run's; returns the new head and
    /// count.
    ///
    /// # Errors
    /// Database errors.
    fn append_log(
        &mut self,
        log: &str,
        audit: &[AuditRecord],
    ) -> Result<(String, u64), JournalError>;
    /// A run's audit chain head and record count.
    ///
    /// # Errors
    /// [`JournalError::NoRun`], database errors.
    fn audit_head(&self, run_id: &str) -> Result<(String, u64), JournalError>;
    /// A log's chain head and record count (the genesis hash and 0 for a log never written).
    ///
    /// # Errors
    /// Database errors.
    fn log_head(&self, log: &str) -> Result<(String, u64), JournalError>;

    /// Every alert, oldest first.
    ///
    /// # Errors
    /// The database.
    fn alerts(&self) -> Result<Vec<AlertRow>, JournalError>;
    /// Where every alert stands with every sink.
    ///
    /// # Errors
    /// The database.
    fn alert_sinks(&self) -> Result<Vec<AlertSinkRow>, JournalError>;
    /// Fires (a new key, or a resolved one firing again) or resolves an alert, with its audit
    /// record, in one transaction. Returns `false`, writing nothing, when it is in that state
    /// already (deduplicated).
    ///
    /// # Errors
    /// The database.
    fn set_alert(
        &mut self,
        key: &str,
        kind: &str,
        state: &str,
        alert_json: &str,
        at: u64,
        audit: &AuditRecord,
    ) -> Result<bool, JournalError>;
    /// Journals one delivery attempt of `action` for `key` to `sink` with its audit record:
    /// `Ok(answer)` marks the action delivered; an error is kept, and `give_up` stops retries
    /// of that action.
    ///
    /// # Errors
    /// The database.
    #[allow(clippy::too_many_arguments)]
    fn record_delivery(
        &mut self,
        key: &str,
        sink: &str,
        action: &str,
        outcome: Result<&str, &str>,
        give_up: bool,
        at: u64,
        audit: &AuditRecord,
    ) -> Result<(), JournalError>;
    /// Journals a schedule's decision with its audit record, in one transaction. Returns
    /// `false`, writing nothing, when that slot of that schedule has that decision already (on
    /// a shared database: another replica decided it first).
    ///
    /// # Errors
    /// The database.
    fn record_fire(&mut self, fire: &FireRow, audit: &AuditRecord) -> Result<bool, JournalError>;
    /// Moves a decided fire on (`started`, `skipped`, `failed`), with its audit record, in one
    /// transaction. Returns `false` when the fire is not in `from`.
    ///
    /// # Errors
    /// The database.
    #[allow(clippy::too_many_arguments)]
    fn update_fire(
        &mut self,
        key: (&str, &str, i64, &str),
        from: &[&str],
        state: &str,
        detail: Option<&str>,
        at: u64,
        audit: &AuditRecord,
    ) -> Result<bool, JournalError>;
    /// Every schedule decision, oldest slot first.
    ///
    /// # Errors
    /// The database.
    fn fires(&self) -> Result<Vec<FireRow>, JournalError>;
    /// Transitions of every run journaled after the one numbered `after` (0: from the first),
    /// at most `limit`, in the order they were journaled: `(number, run, transition)`. The number
    /// orders transitions across runs (the all-runs event stream's ids); writes are serialised,
    /// so a reader never sees a number before a smaller one is committed.
    ///
    /// # Errors
    /// Database errors.
    fn transitions_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String, Transition)>, JournalError>;
    /// The number of the last transition journaled (0 with none): where an all-runs stream that
    /// wants only what comes next starts.
    ///
    /// # Errors
    /// Database errors.
    fn last_transition(&self) -> Result<u64, JournalError>;
    /// A run's transitions after the first `skip`, in order (a live event stream reads only
    /// what it has not sent).
    ///
    /// # Errors
    /// Database errors; a row that does not parse.
    fn transitions_from(&self, run_id: &str, skip: usize) -> Result<Vec<Transition>, JournalError>;
    /// Every lease on a live run (`running` or `waiting`): `(run, holder, valid until ms)`,
    /// the holder `None` when released. A replica reads it to find runs whose driver died (an
    /// expired lease) and to show who owns what.
    ///
    /// # Errors
    /// Database errors.
    fn live_leases(&self) -> Result<Vec<LiveLease>, JournalError>;
    /// Stores `grant` as `kind`/`key` — unless a live grant of another holder has that key:
    /// then `false`, nothing changed (a claim already taken). The same holder's grant is
    /// replaced (extended). Lapsed grants of `kind` are swept.
    ///
    /// # Errors
    /// Database errors.
    fn put_grant(
        &mut self,
        kind: &str,
        key: &str,
        grant: &Grant,
        now: u64,
    ) -> Result<bool, JournalError>;
    /// The live grant `kind`/`key`, if any.
    ///
    /// # Errors
    /// Database errors.
    fn grant(&self, kind: &str, key: &str, now: u64) -> Result<Option<Grant>, JournalError>;
    /// Removes the grant `kind`/`key`; returns it if it was live (a one-time code is taken
    /// once, by one caller, across replicas).
    ///
    /// # Errors
    /// Database errors.
    fn take_grant(
        &mut self,
        kind: &str,
        key: &str,
        now: u64,
    ) -> Result<Option<Grant>, JournalError>;
    /// The live grants of `kind` held by `holder`, with their keys, oldest first.
    ///
    /// # Errors
    /// Database errors.
    fn grants_of(
        &self,
        kind: &str,
        holder: &str,
        now: u64,
    ) -> Result<Vec<(String, Grant)>, JournalError>;
    /// Removes every grant of `kind` held by `holder`; returns how many.
    ///
    /// # Errors
    /// Database errors.
    fn revoke_grants(&mut self, kind: &str, holder: &str) -> Result<usize, JournalError>;
    /// How long each step of the runbook named `runbook` took in past runs (any mode): per step
    /// id, the durations (ms) of its successful attempts, from the start of the attempt to its
    /// result, and for approval steps the wait from the request to the last approval. Interrupted
    /// and failed attempts are left out. The simulator draws from these (empirical models).
    ///
    /// # Errors
    /// Database errors; a row that does not parse.
    fn measured_durations(
        &self,
        runbook: &str,
    ) -> Result<BTreeMap<String, Vec<u64>>, JournalError> {
        let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        // Tabletop exercises ran on simulated time: they measure nothing.
        let runs = self
            .runs_of(runbook)?
            .into_iter()
            .filter(|r| !r.simulated());
        for run in runs {
            let timeline =
                crate::timeline::Timeline::from_transitions(&self.transitions(&run.run_id)?);
            for (step, ds) in timeline.durations() {
                out.entry(step.to_owned()).or_default().extend(ds);
            }
        }
        Ok(out)
    }
}

/// The SQLite journal (`STATE/drover.db`).
pub struct SqliteJournal {
    conn: rusqlite::Connection,
    redactor: Redactor,
    /// Taken around every write transaction: writers of one database in this process queue
    /// here (woken as soon as the one before commits) instead of in SQLite's busy handler,
    /// which sleeps in growing steps — many runs in one server otherwise wait tens of ms each.
    writer: std::sync::Arc<std::sync::Mutex<()>>,
}

/// The writer lock of the database at `db`, shared by every connection of this process.
fn writer_lock(db: &Path) -> std::sync::Arc<std::sync::Mutex<()>> {
    static LOCKS: std::sync::OnceLock<
        std::sync::Mutex<HashMap<PathBuf, std::sync::Arc<std::sync::Mutex<()>>>>,
    > = std::sync::OnceLock::new();
    let key = std::fs::canonicalize(db).unwrap_or_else(|_| db.to_path_buf());
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    std::sync::Arc::clone(locks.entry(key).or_default())
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
  operator TEXT NOT NULL, roles TEXT NOT NULL, at INTEGER NOT NULL,
  decision TEXT NOT NULL DEFAULT 'approve', reason TEXT
);
CREATE TABLE IF NOT EXISTS statements (
  id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, approval_id INTEGER,
  statement TEXT NOT NULL, signature TEXT NOT NULL, at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS statements_by_run ON statements (run_id, approval_id);
CREATE TABLE IF NOT EXISTS anchors (
  run_id TEXT PRIMARY KEY, location TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS totp_used (
  operator TEXT NOT NULL, counter INTEGER NOT NULL, at INTEGER NOT NULL,
  PRIMARY KEY (operator, counter)
);
CREATE TABLE IF NOT EXISTS sources (
  run_id TEXT NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL, text TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS simulations (
  id INTEGER PRIMARY KEY AUTOINCREMENT, runbook TEXT NOT NULL, source_sha256 TEXT NOT NULL,
  mode TEXT NOT NULL, at INTEGER NOT NULL, summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS progress (
  run_id TEXT NOT NULL, step TEXT NOT NULL, text TEXT NOT NULL, at INTEGER NOT NULL,
  PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS claims (
  run_id TEXT NOT NULL, claim TEXT NOT NULL, PRIMARY KEY (run_id, claim)
);
CREATE INDEX IF NOT EXISTS claims_by_name ON claims (claim);
CREATE TABLE IF NOT EXISTS logs (
  log_id TEXT PRIMARY KEY, audit_head TEXT NOT NULL, audit_count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS fires (
  runbook TEXT NOT NULL, schedule TEXT NOT NULL, slot_ms INTEGER NOT NULL,
  decision TEXT NOT NULL, state TEXT NOT NULL, run_id TEXT, count INTEGER NOT NULL,
  detail TEXT, decided_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  PRIMARY KEY (runbook, schedule, slot_ms, decision)
);
CREATE TABLE IF NOT EXISTS alerts (
  key TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, alert TEXT NOT NULL,
  first_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, resolved_at INTEGER
);
CREATE TABLE IF NOT EXISTS alert_sinks (
  key TEXT NOT NULL, sink TEXT NOT NULL, delivered TEXT NOT NULL, attempts INTEGER NOT NULL,
  last_error TEXT, gave_up TEXT, updated_at INTEGER NOT NULL, PRIMARY KEY (key, sink)
);
CREATE TABLE IF NOT EXISTS audit (
  run_id TEXT NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL, hash TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS grants (
  kind TEXT NOT NULL, key TEXT NOT NULL, holder TEXT NOT NULL, data TEXT NOT NULL,
  expires_at INTEGER NOT NULL, PRIMARY KEY (kind, key)
);
";

/// The grant in `r`'s columns `from..from + 3` (holder, data, expires_at).
fn grant_at(r: &rusqlite::Row<'_>, from: usize) -> rusqlite::Result<Grant> {
    Ok(Grant {
        holder: r.get(from)?,
        data: r.get(from + 1)?,
        expires_at: to_u64(r.get(from + 2)?),
    })
}

/// The audit log of schedule decisions (fires, blackouts, missed fires, overlaps).
pub const SCHEDULES_LOG: &str = "@schedules";

/// A schedule's decision about one slot, as journaled (`fires` table): written before anything
/// is started, so that a crash between decision and start neither loses nor doubles a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FireRow {
    /// The runbook (its file name in the server's runbook directory).
    pub runbook: String,
    /// The schedule's name.
    pub schedule: String,
    /// The slot (ms since the Unix epoch; for missed fires, the newest one).
    pub slot_ms: i64,
    /// What was decided: `fire`, `catch_up`, `blackout`, `missed`, `overlap`, `registered`.
    pub decision: String,
    /// Where it stands: `decided` (a run to start), `queued`, `started`, `skipped`, `failed`,
    /// `recorded`.
    pub state: String,
    /// The run it starts (chosen when deciding).
    pub run_id: Option<String>,
    /// How many slots it stands for (missed fires: the count).
    pub count: u64,
    /// Why (the blackout, the run still going, the start's error).
    pub detail: Option<String>,
    /// When it was decided (ms).
    pub decided_at: u64,
    /// When it last changed (ms).
    pub updated_at: u64,
}

/// The audit log of alerts: each trigger, resolve and delivery attempt.
pub const ALERTS_LOG: &str = "@alerts";

/// An alert as journaled (`alerts` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRow {
    /// The dedup key.
    pub key: String,
    /// Its kind (`run_failed`, …).
    pub kind: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// The alert (JSON).
    pub alert: String,
    /// When it first fired (ms).
    pub first_at: u64,
    /// When it last changed (ms).
    pub updated_at: u64,
    /// When it resolved (ms).
    pub resolved_at: Option<u64>,
}

/// Where one alert stands with one sink (`alert_sinks` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSinkRow {
    /// The alert's key.
    pub key: String,
    /// The sink.
    pub sink: String,
    /// The last action the sink took (`trigger`, `resolve`; empty: none yet).
    pub delivered: String,
    /// Attempts so far.
    pub attempts: u64,
    /// The last error.
    pub last_error: Option<String>,
    /// The action whose delivery was given up (retries exhausted, or refused).
    pub gave_up: Option<String>,
    /// When it last changed (ms).
    pub updated_at: u64,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl SqliteJournal {
    fn has_table(&self, name: &str) -> Result<bool, JournalError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [name],
            |r| r.get(0),
        )?)
    }

    /// One immediate write transaction: `f` writes (given the redactor) and says whether it
    /// changed anything; if it did, `audit` is chained onto `log` in the same transaction and
    /// it commits, otherwise nothing is written. Returns what `f` said.
    fn audited_write(
        &mut self,
        log: &str,
        audit: &AuditRecord,
        f: impl FnOnce(&rusqlite::Transaction<'_>, &Redactor) -> Result<bool, JournalError>,
    ) -> Result<bool, JournalError> {
        let writer = std::sync::Arc::clone(&self.writer);
        let _queue = writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if !f(&tx, &self.redactor)? {
            return Ok(false);
        }
        chain_records(
            &tx,
            &self.redactor,
            log,
            std::slice::from_ref(audit),
            HeadRow::Log,
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Opens (creating if needed) `STATE/drover.db`.
    ///
    /// # Errors
    /// If the directory or database cannot be created.
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        check_location(state_dir)?;
        let io = |source| JournalError::Io {
            path: state_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let db = state_dir.join("drover.db");
        // Ask the file system first: SQLite reports a permission problem as "unable to open".
        if let Err(e) = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&db)
        {
            return Err(JournalError::Io {
                path: db.display().to_string(),
                source: e,
            });
        }
        let conn = rusqlite::Connection::open(&db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Every transition is durable before it is acted on.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        // Journals from before denials: add the columns.
        let has_decision = conn
            .prepare("SELECT 1 FROM pragma_table_info('approvals') WHERE name = 'decision'")?
            .exists([])?;
        if !has_decision {
            conn.execute_batch(
                "ALTER TABLE approvals ADD COLUMN decision TEXT NOT NULL DEFAULT 'approve'; \
                 ALTER TABLE approvals ADD COLUMN reason TEXT;",
            )?;
        }
        Ok(Self {
            conn,
            redactor: Redactor::new(),
            writer: writer_lock(&db),
        })
    }

    /// Opens an existing journal for reading only (`status`, `report`, `audit`, `evidence`):
    /// creates nothing, and works on a read-only copy of a state directory.
    ///
    /// # Errors
    /// [`JournalError::NoJournal`] when the directory or its database does not exist (a mistyped
    /// `--state`), [`JournalError::Io`] when it cannot be read.
    pub fn open_read_only(state_dir: &Path) -> Result<Self, JournalError> {
        check_location(state_dir)?;
        let db = state_dir.join("drover.db");
        match std::fs::metadata(state_dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(JournalError::NoJournal(state_dir.display().to_string()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(JournalError::NoJournal(state_dir.display().to_string()));
            }
            Err(e) => {
                return Err(JournalError::Io {
                    path: state_dir.display().to_string(),
                    source: e,
                });
            }
        }
        match std::fs::File::open(&db) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(JournalError::NoJournal(state_dir.display().to_string()));
            }
            Err(e) => {
                return Err(JournalError::Io {
                    path: db.display().to_string(),
                    source: e,
                });
            }
        }
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(&db, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // A read-only copy (no write permission for the WAL index) still reads: as immutable.
        // Only then: a live state directory is never opened immutable (it changes under us).
        let writable = std::fs::metadata(state_dir).is_ok_and(|m| !m.permissions().readonly())
            && std::fs::metadata(&db).is_ok_and(|m| !m.permissions().readonly());
        let conn = match conn.query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0)) {
            Ok(_) => conn,
            Err(e) if writable => return Err(e.into()),
            Err(_) => {
                let uri = format!("file:{}?immutable=1", db.display());
                let c = rusqlite::Connection::open_with_flags(
                    &uri,
                    flags | OpenFlags::SQLITE_OPEN_URI,
                )?;
                c.query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0))?;
                c
            }
        };
        Ok(Self {
            conn,
            redactor: Redactor::new(),
            writer: writer_lock(&db),
        })
    }
}

/// Refuses a state location that is not a directory path (`postgres://…`, `s3://…`): this build
/// keeps its journal in a local SQLite database only.
fn check_location(state_dir: &Path) -> Result<(), JournalError> {
    let s = state_dir.to_string_lossy();
    if let Some((scheme, _)) = s.split_once("://") {
        return Err(JournalError::UnsupportedLocation {
            scheme: scheme.to_owned(),
            location: s.to_string(),
        });
    }
    Ok(())
}

const RUN_COLUMNS: &str = "SELECT r.run_id, r.runbook, p.plan, r.mode, r.initiator, r.declared_at, r.created_at, r.status, r.record, r.audit_head, r.audit_count
     FROM runs r JOIN plans p ON p.run_id = r.run_id";

fn run_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let bad = |col: usize, what: String| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, what.into())
    };
    let mode: String = row.get(3)?;
    let status: String = row.get(7)?;
    Ok(RunRow {
        mode: Mode::parse(&mode).ok_or_else(|| bad(3, format!("unknown mode `{mode}`")))?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| bad(7, format!("unknown run status `{status}`")))?,
        run_id: row.get(0)?,
        runbook: row.get(1)?,
        plan: row.get(2)?,
        initiator: row.get(4)?,
        declared_at: row.get::<_, i64>(5)? as u64,
        created_at: row.get::<_, i64>(6)? as u64,
        record: row.get(8)?,
        audit_head: row.get(9)?,
        audit_count: row.get::<_, i64>(10)? as u64,
    })
}

/// Whether the holder of a lease may still be alive: `false` only for a holder on this host
/// whose process is gone (then its lease is void at once, expired or not).
#[must_use]
pub fn holder_alive(holder: &str) -> bool {
    // Holders are `operator@host pid N` (a server replica adds ` replica ID`): a holder on this
    // host whose process is gone is dead. A replica's lease ends only by expiring: replicas may
    // share a host name without sharing a process table (containers), where a missing pid
    // proves nothing.
    if holder.contains(" replica ") {
        return true;
    }
    let Some(at) = holder.rfind(" pid ") else {
        return true;
    };
    let pid = holder[at + 5..]
        .split(' ')
        .next()
        .and_then(|p| p.parse::<u32>().ok());
    let host = holder[..at].rsplit_once('@').map(|(_, h)| h);
    match (pid, host) {
        (Some(pid), Some(h)) if h == hostname() && Path::new("/proc").exists() => {
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

/// Where a chain's head and count are kept: a run's row, or a log's.
#[derive(Clone, Copy)]
enum HeadRow {
    Run,
    Log,
}

/// Chains `audit` after the run's current head inside `tx`, each record redacted.
fn chain_audit(
    tx: &rusqlite::Transaction<'_>,
    redactor: &Redactor,
    run_id: &str,
    audit: &[AuditRecord],
) -> Result<(), JournalError> {
    chain_records(tx, redactor, run_id, audit, HeadRow::Run).map(|_| ())
}

fn chain_records(
    tx: &rusqlite::Transaction<'_>,
    redactor: &Redactor,
    run_id: &str,
    audit: &[AuditRecord],
    row: HeadRow,
) -> Result<(String, u64), JournalError> {
    let corrupt = |e: serde_json::Error| JournalError::Corrupt(e.to_string());
    let (mut head, mut count): (String, i64) = match row {
        HeadRow::Run => tx.query_row(
            "SELECT audit_head, audit_count FROM runs WHERE run_id = ?1",
            [run_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?,
        HeadRow::Log => tx
            .query_row(
                "SELECT audit_head, audit_count FROM logs WHERE log_id = ?1",
                [run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .unwrap_or_else(|| (crate::audit::GENESIS.to_owned(), 0)),
    };
    if audit.is_empty() {
        return Ok((head, count as u64));
    }
    for rec in audit {
        count += 1;
        let mut rec = rec.clone();
        rec.seq = count as u64;
        rec.prev = head.clone();
        let json = redactor.json(&rec).map_err(corrupt)?;
        head = chain_hash(&rec.prev, &json);
        tx.execute(
            "INSERT INTO audit (run_id, seq, record, hash) VALUES (?1, ?2, ?3, ?4)",
            params![run_id, count, json, head],
        )?;
    }
    match row {
        HeadRow::Run => tx.execute(
            "UPDATE runs SET audit_head = ?1, audit_count = ?2 WHERE run_id = ?3",
            params![head, count, run_id],
        )?,
        HeadRow::Log => tx.execute(
            "INSERT INTO logs (log_id, audit_head, audit_count) VALUES (?1, ?2, ?3) \
             ON CONFLICT (log_id) DO UPDATE SET audit_head = excluded.audit_head, audit_count = excluded.audit_count",
            params![run_id, head, count],
        )?,
    };
    Ok((head, count as u64))
}

impl Journal for SqliteJournal {
    /// Every alert, oldest first.
    ///
    /// # Errors
    /// The database.
    fn alerts(&self) -> Result<Vec<AlertRow>, JournalError> {
        if !self.has_table("alerts")? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare(
            "SELECT key, kind, state, alert, first_at, updated_at, resolved_at FROM alerts ORDER BY first_at, key",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(AlertRow {
                key: r.get(0)?,
                kind: r.get(1)?,
                state: r.get(2)?,
                alert: r.get(3)?,
                first_at: to_u64(r.get(4)?),
                updated_at: to_u64(r.get(5)?),
                resolved_at: r.get::<_, Option<i64>>(6)?.map(to_u64),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Where every alert stands with every sink.
    ///
    /// # Errors
    /// The database.
    fn alert_sinks(&self) -> Result<Vec<AlertSinkRow>, JournalError> {
        if !self.has_table("alert_sinks")? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare(
            "SELECT key, sink, delivered, attempts, last_error, gave_up, updated_at FROM alert_sinks ORDER BY updated_at",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(AlertSinkRow {
                key: r.get(0)?,
                sink: r.get(1)?,
                delivered: r.get(2)?,
                attempts: to_u64(r.get(3)?),
                last_error: r.get(4)?,
                gave_up: r.get(5)?,
                updated_at: to_u64(r.get(6)?),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Fires (a new key, or a resolved one firing again) or resolves an alert, with its audit
    /// record, in one transaction. Returns `false`, writing nothing, when it is in that state
    /// already (deduplicated).
    ///
    /// # Errors
    /// The database.
    fn set_alert(
        &mut self,
        key: &str,
        kind: &str,
        state: &str,
        alert_json: &str,
        at: u64,
        audit: &AuditRecord,
    ) -> Result<bool, JournalError> {
        self.audited_write(ALERTS_LOG, audit, |tx, redactor| {
            let current: Option<String> = tx
                .query_row("SELECT state FROM alerts WHERE key = ?1", [key], |r| r.get(0))
                .optional()?;
            if current.as_deref() == Some(state) || (current.is_none() && state != "firing") {
                return Ok(false);
            }
            let alert_json = redactor.text(alert_json);
            if state == "firing" {
                tx.execute(
                    "INSERT INTO alerts (key, kind, state, alert, first_at, updated_at, resolved_at) VALUES (?1, ?2, 'firing', ?3, ?4, ?4, NULL) \
                     ON CONFLICT (key) DO UPDATE SET state = 'firing', alert = ?3, updated_at = ?4, resolved_at = NULL",
                    params![key, kind, alert_json, to_i64(at)],
                )?;
            } else {
                tx.execute(
                    "UPDATE alerts SET state = ?2, updated_at = ?3, resolved_at = ?3 WHERE key = ?1",
                    params![key, state, to_i64(at)],
                )?;
            }
            // A new state: every sink is owed a delivery again.
            tx.execute(
                "UPDATE alert_sinks SET gave_up = NULL, attempts = 0 WHERE key = ?1",
                [key],
            )?;
            Ok(true)
        })
    }

    /// Journals one delivery attempt of `action` for `key` to `sink` with its audit record:
    /// `Ok(answer)` marks the action delivered; an error is kept, and `give_up` stops retries
    /// of that action.
    ///
    /// # Errors
    /// The database.
    #[allow(clippy::too_many_arguments)]
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
        self.audited_write(ALERTS_LOG, audit, |tx, redactor| {
            tx.execute(
                "INSERT INTO alert_sinks (key, sink, delivered, attempts, last_error, gave_up, updated_at) VALUES (?1, ?2, '', 0, NULL, NULL, ?3) \
                 ON CONFLICT (key, sink) DO NOTHING",
                params![key, sink, to_i64(at)],
            )?;
            match outcome {
                Ok(_) => tx.execute(
                    "UPDATE alert_sinks SET delivered = ?3, attempts = attempts + 1, last_error = NULL, gave_up = NULL, updated_at = ?4 WHERE key = ?1 AND sink = ?2",
                    params![key, sink, action, to_i64(at)],
                )?,
                Err(e) => tx.execute(
                    "UPDATE alert_sinks SET attempts = attempts + 1, last_error = ?3, gave_up = ?4, updated_at = ?5 WHERE key = ?1 AND sink = ?2",
                    params![key, sink, redactor.text(e), give_up.then_some(action), to_i64(at)],
                )?,
            };
            Ok(true)
        })?;
        Ok(())
    }

    /// Journals a schedule's decision with its audit record, in one transaction. Returns
    /// `false`, writing nothing, when that slot of that schedule has that decision already.
    ///
    /// # Errors
    /// The database.
    fn record_fire(&mut self, fire: &FireRow, audit: &AuditRecord) -> Result<bool, JournalError> {
        self.audited_write(SCHEDULES_LOG, audit, |tx, redactor| {
            let n = tx.execute(
                "INSERT OR IGNORE INTO fires (runbook, schedule, slot_ms, decision, state, run_id, count, detail, decided_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                params![
                    fire.runbook,
                    fire.schedule,
                    fire.slot_ms,
                    fire.decision,
                    fire.state,
                    fire.run_id,
                    to_i64(fire.count),
                    fire.detail.as_deref().map(|d| redactor.text(d)),
                    to_i64(fire.decided_at),
                ],
            )?;
            Ok(n > 0)
        })
    }

    /// Moves a decided fire on (`started`, `skipped`, `failed`), with its audit record, in one
    /// transaction. Returns `false` when the fire is not in `from`.
    ///
    /// # Errors
    /// The database.
    #[allow(clippy::too_many_arguments)]
    fn update_fire(
        &mut self,
        key: (&str, &str, i64, &str),
        from: &[&str],
        state: &str,
        detail: Option<&str>,
        at: u64,
        audit: &AuditRecord,
    ) -> Result<bool, JournalError> {
        self.audited_write(SCHEDULES_LOG, audit, |tx, redactor| {
            let current: Option<String> = tx
                .query_row(
                    "SELECT state FROM fires WHERE runbook = ?1 AND schedule = ?2 AND slot_ms = ?3 AND decision = ?4",
                    params![key.0, key.1, key.2, key.3],
                    |r| r.get(0),
                )
                .optional()?;
            if !current.is_some_and(|c| from.contains(&c.as_str())) {
                return Ok(false);
            }
            tx.execute(
                "UPDATE fires SET state = ?5, detail = COALESCE(?6, detail), updated_at = ?7 \
                 WHERE runbook = ?1 AND schedule = ?2 AND slot_ms = ?3 AND decision = ?4",
                params![
                    key.0,
                    key.1,
                    key.2,
                    key.3,
                    state,
                    detail.map(|d| redactor.text(d)),
                    to_i64(at)
                ],
            )?;
            Ok(true)
        })
    }

    /// Every schedule decision, oldest slot first.
    ///
    /// # Errors
    /// The database.
    fn fires(&self) -> Result<Vec<FireRow>, JournalError> {
        let has_table: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'fires')",
            [],
            |r| r.get(0),
        )?;
        if !has_table {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare(
            "SELECT runbook, schedule, slot_ms, decision, state, run_id, count, detail, decided_at, updated_at \
             FROM fires ORDER BY slot_ms, runbook, schedule",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(FireRow {
                runbook: r.get(0)?,
                schedule: r.get(1)?,
                slot_ms: r.get(2)?,
                decision: r.get(3)?,
                state: r.get(4)?,
                run_id: r.get(5)?,
                count: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
                detail: r.get(7)?,
                decided_at: u64::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
                updated_at: u64::try_from(r.get::<_, i64>(9)?).unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Transitions of every run journaled after the one numbered `after` (0: from the first),
    /// at most `limit`, in the order they were journaled: `(number, run, transition)`. The number
    /// orders transitions across runs (the all-runs event stream's ids); writes are serialised,
    /// so a reader never sees a number before a smaller one is committed.
    ///
    /// # Errors
    /// Database errors.
    fn transitions_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String, Transition)>, JournalError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT rowid, run_id, at, event, actions FROM events WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            params![
                i64::try_from(after).unwrap_or(i64::MAX),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            },
        )?;
        let corrupt = |e: serde_json::Error| JournalError::Corrupt(e.to_string());
        let mut out = Vec::new();
        for row in rows {
            let (id, run_id, at, event, actions) = row?;
            out.push((
                u64::try_from(id).unwrap_or(0),
                run_id,
                Transition {
                    at: u64::try_from(at).unwrap_or(0),
                    event: serde_json::from_str(&event).map_err(corrupt)?,
                    actions: serde_json::from_str(&actions).map_err(corrupt)?,
                },
            ));
        }
        Ok(out)
    }

    /// The number of the last transition journaled (0 with none): where an all-runs stream that
    /// wants only what comes next starts.
    ///
    /// # Errors
    /// Database errors.
    fn last_transition(&self) -> Result<u64, JournalError> {
        let n: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(rowid), 0) FROM events", [], |r| {
                    r.get(0)
                })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// A run's transitions after the first `skip`, in order (a live event stream reads only
    /// what it has not sent).
    ///
    /// # Errors
    /// Database errors; a row that does not parse.
    fn transitions_from(&self, run_id: &str, skip: usize) -> Result<Vec<Transition>, JournalError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, event, actions FROM events WHERE run_id = ?1 ORDER BY seq LIMIT -1 OFFSET ?2",
        )?;
        let rows = stmt.query_map(
            params![run_id, i64::try_from(skip).unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )?;
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

    fn live_leases(&self) -> Result<Vec<LiveLease>, JournalError> {
        let mut stmt = self.conn.prepare(
            "SELECT run_id, status, lease_holder, lease_until, lease_token FROM runs \
             WHERE status IN ('running', 'waiting') ORDER BY created_at",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (run_id, status, holder, until, token) = row?;
            out.push(LiveLease {
                run_id,
                status: RunStatus::parse(&status).unwrap_or(RunStatus::Running),
                holder,
                until: to_u64(until),
                token,
            });
        }
        Ok(out)
    }

    fn put_grant(
        &mut self,
        kind: &str,
        key: &str,
        grant: &Grant,
        now: u64,
    ) -> Result<bool, JournalError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM grants WHERE kind = ?1 AND expires_at <= ?2",
            params![kind, to_i64(now)],
        )?;
        let n = tx.execute(
            "INSERT INTO grants (kind, key, holder, data, expires_at) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (kind, key) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at \
             WHERE grants.holder = excluded.holder",
            params![kind, key, grant.holder, grant.data, to_i64(grant.expires_at)],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn grant(&self, kind: &str, key: &str, now: u64) -> Result<Option<Grant>, JournalError> {
        Ok(self
            .conn
            .query_row(
                "SELECT holder, data, expires_at FROM grants WHERE kind = ?1 AND key = ?2 AND expires_at > ?3",
                params![kind, key, to_i64(now)],
                |r| grant_at(r, 0),
            )
            .optional()?)
    }

    fn take_grant(
        &mut self,
        kind: &str,
        key: &str,
        now: u64,
    ) -> Result<Option<Grant>, JournalError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found = tx
            .query_row(
                "DELETE FROM grants WHERE kind = ?1 AND key = ?2 RETURNING holder, data, expires_at",
                params![kind, key],
                |r| grant_at(r, 0),
            )
            .optional()?;
        tx.commit()?;
        Ok(found.filter(|g| g.expires_at > now))
    }

    fn grants_of(
        &self,
        kind: &str,
        holder: &str,
        now: u64,
    ) -> Result<Vec<(String, Grant)>, JournalError> {
        let mut stmt = self.conn.prepare(
            "SELECT key, holder, data, expires_at FROM grants \
             WHERE kind = ?1 AND holder = ?2 AND expires_at > ?3 ORDER BY rowid",
        )?;
        let rows = stmt.query_map(params![kind, holder, to_i64(now)], |r| {
            Ok((r.get::<_, String>(0)?, grant_at(r, 1)?))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn revoke_grants(&mut self, kind: &str, holder: &str) -> Result<usize, JournalError> {
        Ok(self.conn.execute(
            "DELETE FROM grants WHERE kind = ?1 AND holder = ?2",
            params![kind, holder],
        )?)
    }

    fn driven_by(&self, run_id: &str, now: u64) -> Result<Option<String>, JournalError> {
        let row: Option<(Option<String>, i64)> = self
            .conn
            .query_row(
                "SELECT lease_holder, lease_until FROM runs WHERE run_id = ?1",
                [run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((holder, until)) = row else {
            return Err(JournalError::NoRun(run_id.to_owned()));
        };
        Ok(holder.filter(|h| u64::try_from(until).unwrap_or(0) > now && holder_alive(h)))
    }

    fn append_audit(&mut self, run_id: &str, audit: &[AuditRecord]) -> Result<(), JournalError> {
        let writer = std::sync::Arc::clone(&self.writer);
        let _queue = writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        chain_audit(&tx, &self.redactor, run_id, audit)?;
        tx.commit()?;
        Ok(())
    }

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
        let writer = std::sync::Arc::clone(&self.writer);
        let _queue = writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = self.conn.transaction()?;
        let held: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM runs WHERE run_id = ?1 AND lease_token = ?2",
                params![lease.run_id, lease.token],
                |r| r.get(0),
            )
            .optional()?;
        if held.is_none() {
            return Err(JournalError::Fenced(lease.run_id.clone()));
        }
        tx.execute(
            "INSERT OR REPLACE INTO progress (run_id, step, text, at) VALUES (?1, ?2, ?3, ?4)",
            params![lease.run_id, step, self.redactor.text(text), at as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn progress(&self, run_id: &str) -> Result<Vec<ProgressRow>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT step, text, at FROM progress WHERE run_id = ?1 ORDER BY step")?;
        let rows = stmt.query_map([run_id], |r| {
            Ok(ProgressRow {
                step: r.get(0)?,
                text: r.get(1)?,
                at: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn runs(&self) -> Result<Vec<RunRow>, JournalError> {
        let mut stmt = self.conn.prepare(&format!(
            "{RUN_COLUMNS} ORDER BY r.created_at DESC, r.rowid DESC"
        ))?;
        let rows = stmt.query_map([], run_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn create_run(&mut self, r: &RunRow, claims: &Claims) -> Result<(), JournalError> {
        // The plan lives in its own table: the run's row is rewritten on every commit (lease,
        // audit head), and must stay small whatever the plan's size. The claims are checked and
        // taken in the same (immediate) transaction: two runs starting at once cannot both pass.
        let writer = std::sync::Arc::clone(&self.writer);
        let _queue = writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // A run that exists already is named as such, before its own claims could be mistaken
        // for another run's.
        let exists: Option<i64> = tx
            .query_row("SELECT 1 FROM runs WHERE run_id = ?1", [&r.run_id], |x| {
                x.get(0)
            })
            .optional()?;
        if exists.is_some() {
            return Err(JournalError::RunExists(r.run_id.clone()));
        }
        if claims.concurrent.is_none() {
            for claim in &claims.names {
                let holder: Option<(String, String, String, String)> = tx
                    .query_row(
                        "SELECT r.run_id, r.runbook, r.initiator, r.status FROM claims c JOIN runs r ON r.run_id = c.run_id
                         WHERE c.claim = ?1 AND r.status IN ('running', 'waiting', 'interrupted', 'rollback_incomplete', 'rollback_failed')
                         ORDER BY r.created_at LIMIT 1",
                        [claim],
                        |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?, x.get(3)?)),
                    )
                    .optional()?;
                if let Some((run_id, runbook, operator, status)) = holder {
                    return Err(JournalError::Claimed {
                        what: claim_label(claim),
                        run_id,
                        runbook,
                        operator,
                        status,
                    });
                }
            }
        }
        let red = |t: &str| self.redactor.text(t);
        let record = r.record.as_deref().map(red);
        tx.execute(
            "INSERT INTO runs (run_id, runbook, mode, initiator, declared_at, created_at, status, record, audit_head, audit_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![r.run_id, r.runbook, r.mode.as_str(), r.initiator, r.declared_at as i64, r.created_at as i64, r.status.as_str(), record, r.audit_head, r.audit_count as i64],
        )?;
        tx.execute(
            "INSERT INTO plans (run_id, plan) VALUES (?1, ?2)",
            params![r.run_id, red(&r.plan)],
        )?;
        for claim in &claims.names {
            tx.execute(
                "INSERT OR IGNORE INTO claims (run_id, claim) VALUES (?1, ?2)",
                params![r.run_id, claim],
            )?;
        }
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
        let writer = std::sync::Arc::clone(&self.writer);
        let _queue = writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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

    fn append_all(
        &mut self,
        lease: &Lease,
        at: u64,
        ttl_ms: u64,
        entries: &[Entry<'_>],
    ) -> Result<(), JournalError> {
        let writer = std::sync::Arc::clone(&self.writer);
        let _queue = writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        let mut seq: i64 = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?1",
            [&lease.run_id],
            |r| r.get(0),
        )?;
        let corrupt = |e: serde_json::Error| JournalError::Corrupt(e.to_string());
        for e in entries {
            seq += 1;
            let ev = self.redactor.json(e.event).map_err(corrupt)?;
            let acts = self.redactor.json(e.actions).map_err(corrupt)?;
            tx.execute(
                "INSERT INTO events (run_id, seq, at, event, actions) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![lease.run_id, seq, at as i64, ev, acts],
            )?;
            chain_audit(&tx, &self.redactor, &lease.run_id, e.audit)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn renew(&mut self, lease: &Lease, now: u64, ttl_ms: u64) -> Result<(), JournalError> {
        let writer = std::sync::Arc::clone(&self.writer);
        let _queue = writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        status: RunStatus,
        record: Option<&str>,
    ) -> Result<(), JournalError> {
        let status = status.as_str();
        let record = record.map(|r| self.redactor.text(r));
        let writer = std::sync::Arc::clone(&self.writer);
        let _queue = writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        self.transitions_from(run_id, 0)
    }

    fn store_sources(&mut self, run_id: &str, files: &[SourceText]) -> Result<(), JournalError> {
        let writer = std::sync::Arc::clone(&self.writer);
        let _queue = writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = self.conn.transaction()?;
        for (k, f) in files.iter().enumerate() {
            tx.execute(
                "INSERT OR REPLACE INTO sources (run_id, seq, name, text) VALUES (?1, ?2, ?3, ?4)",
                params![run_id, k as i64, f.name, self.redactor.text(&f.text)],
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

    fn add_approval(&mut self, run_id: &str, a: &NewApproval<'_>) -> Result<i64, JournalError> {
        let roles =
            serde_json::to_string(a.roles).map_err(|e| JournalError::Corrupt(e.to_string()))?;
        let at = a.at;
        // The approval and its signature land together or not at all.
        let writer = std::sync::Arc::clone(&self.writer);
        let _queue = writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO approvals (run_id, step, operator, roles, at, decision, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                run_id,
                a.step,
                a.operator,
                roles,
                at as i64,
                a.decision(),
                a.reason()
            ],
        )?;
        let id = tx.last_insert_rowid();
        if let Some(s) = a.signed {
            tx.execute(
                "INSERT INTO statements (run_id, approval_id, statement, signature, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run_id, id, s.statement, s.signature, at as i64],
            )?;
        }
        tx.commit()?;
        Ok(id)
    }

    fn add_start_statement(
        &mut self,
        run_id: &str,
        signed: &crate::signed::SignedStatement,
        at: u64,
    ) -> Result<(), JournalError> {
        self.conn.execute(
            "INSERT INTO statements (run_id, approval_id, statement, signature, at) VALUES (?1, NULL, ?2, ?3, ?4)",
            params![run_id, signed.statement, signed.signature, at as i64],
        )?;
        Ok(())
    }

    fn set_anchor(&mut self, run_id: &str, location: &str) -> Result<(), JournalError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO anchors (run_id, location) VALUES (?1, ?2)",
            params![run_id, location],
        )?;
        Ok(())
    }

    fn anchor(&self, run_id: &str) -> Result<Option<String>, JournalError> {
        Ok(self
            .conn
            .query_row(
                "SELECT location FROM anchors WHERE run_id = ?1",
                params![run_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn claim_totp(&mut self, operator: &str, counter: u64, at: u64) -> Result<bool, JournalError> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO totp_used (operator, counter, at) VALUES (?1, ?2, ?3)",
            params![operator, counter as i64, at as i64],
        )?;
        Ok(n == 1)
    }

    fn signed_statements(&self, run_id: &str) -> Result<Vec<StatementRow>, JournalError> {
        let mut stmt = self.conn.prepare(
            "SELECT a.step, a.operator, s.statement, s.signature FROM statements s \
             LEFT JOIN approvals a ON a.id = s.approval_id \
             WHERE s.run_id = ?1 ORDER BY s.id",
        )?;
        let rows = stmt.query_map(params![run_id], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
                crate::signed::SignedStatement {
                    statement: r.get(2)?,
                    signature: r.get(3)?,
                },
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r?);
        }
        Ok(out)
    }

    fn start_statement(
        &self,
        run_id: &str,
    ) -> Result<Option<crate::signed::SignedStatement>, JournalError> {
        Ok(self
            .conn
            .query_row(
                "SELECT statement, signature FROM statements WHERE run_id = ?1 AND approval_id IS NULL ORDER BY id LIMIT 1",
                params![run_id],
                |r| {
                    Ok(crate::signed::SignedStatement {
                        statement: r.get(0)?,
                        signature: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    fn approvals_after(&self, run_id: &str, after: i64) -> Result<Vec<ApprovalRow>, JournalError> {
        let mut stmt = self.conn.prepare(
            "SELECT a.id, a.step, a.operator, a.roles, a.at, s.statement, s.signature, a.decision, a.reason FROM approvals a \
             LEFT JOIN statements s ON s.run_id = a.run_id AND s.approval_id = a.id \
             WHERE a.run_id = ?1 AND a.id > ?2 ORDER BY a.id",
        )?;
        let rows = stmt.query_map(params![run_id, after], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, Option<String>>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, step, operator, roles, at, statement, signature, decision, reason) = row?;
            out.push(ApprovalRow {
                id,
                step,
                operator,
                roles: serde_json::from_str(&roles).unwrap_or_default(),
                at: at as u64,
                signed: statement.zip(signature).map(|(statement, signature)| {
                    crate::signed::SignedStatement {
                        statement,
                        signature,
                    }
                }),
                denial: (decision == "deny").then(|| reason.clone().unwrap_or_default()),
                break_glass: (decision == "break_glass").then(|| reason.unwrap_or_default()),
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

    fn append_log(
        &mut self,
        log: &str,
        audit: &[AuditRecord],
    ) -> Result<(String, u64), JournalError> {
        let writer = std::sync::Arc::clone(&self.writer);
        let _queue = writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let head = chain_records(&tx, &self.redactor, log, audit, HeadRow::Log)?;
        tx.commit()?;
        Ok(head)
    }

    fn audit_head(&self, run_id: &str) -> Result<(String, u64), JournalError> {
        self.conn
            .query_row(
                "SELECT audit_head, audit_count FROM runs WHERE run_id = ?1",
                [run_id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)),
            )
            .optional()?
            .ok_or_else(|| JournalError::NoRun(run_id.to_owned()))
    }

    fn log_head(&self, log: &str) -> Result<(String, u64), JournalError> {
        // A state directory from before logs, opened read-only, has no `logs` table: no log.
        let has_table: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'logs')",
            [],
            |r| r.get(0),
        )?;
        if !has_table {
            return Ok((crate::audit::GENESIS.to_owned(), 0));
        }
        Ok(self
            .conn
            .query_row(
                "SELECT audit_head, audit_count FROM logs WHERE log_id = ?1",
                [log],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)),
            )
            .optional()?
            .unwrap_or_else(|| (crate::audit::GENESIS.to_owned(), 0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::Event;

    fn row(id: &str) -> RunRow {
        RunRow {
            run_id: id.into(),
            runbook: "t".into(),
            plan: "{}".into(),
            mode: drover_schema::Mode::Drill,
            initiator: "alice".into(),
            declared_at: 1_000,
            created_at: 1_000,
            status: RunStatus::Running,
            record: None,
            audit_head: crate::audit::GENESIS.into(),
            audit_count: 0,
        }
    }

    #[test]
    fn statuses_round_trip_by_name() {
        for s in [RunStatus::Running, RunStatus::Waiting]
            .into_iter()
            .chain(RunStatus::OUTCOMES.into_iter().map(RunStatus::Finished))
        {
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(RunStatus::parse("exploded"), None);
        // Journals written before the outcome was renamed still read.
        assert_eq!(
            RunStatus::parse("rollback_failed"),
            Some(RunStatus::Finished(RunOutcome::RollbackIncomplete))
        );
        assert_eq!(
            serde_json::from_str::<RunOutcome>("\"rollback_failed\"").ok(),
            Some(RunOutcome::RollbackIncomplete)
        );
        assert!(RunStatus::Waiting.is_live());
        assert!(!RunStatus::Finished(RunOutcome::Interrupted).is_live());
    }

    #[test]
    fn what_is_appended_is_stored_redacted_and_read_back_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut j = SqliteJournal::open(dir.path()).expect("journal");
        j.redactor().add("s3cr3t-value-42");
        j.create_run(&row("r1"), &Claims::default())
            .expect("create");
        let lease = j
            .acquire("r1", "alice@host pid 1", 1_000, 30_000)
            .expect("lease");
        j.append(&lease, 1_000, 30_000, &Event::Started, &[], &[])
            .expect("append");
        let failed = Event::StepFailed {
            step: "a".into(),
            attempt: 1,
            error: "denied for s3cr3t-value-42".into(),
            transient: false,
            context: None,
        };
        j.append(&lease, 2_000, 30_000, &failed, &[], &[])
            .expect("append");
        let events = j.events("r1").expect("events");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], (1_000, Event::Started));
        match &events[1].1 {
            Event::StepFailed { error, .. } => assert_eq!(error, "denied for <redacted>"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_repeated_run_id_and_a_second_holder_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut j = SqliteJournal::open(dir.path()).expect("journal");
        j.create_run(&row("r1"), &Claims::default())
            .expect("create");
        assert!(matches!(
            j.create_run(&row("r1"), &Claims::default()),
            Err(JournalError::RunExists(id)) if id == "r1"
        ));
        let _lease = j
            .acquire("r1", "alice@host pid 1", 1_000, 30_000)
            .expect("lease");
        let mut other = SqliteJournal::open(dir.path()).expect("second handle");
        assert!(matches!(
            other.acquire("r1", "bob@elsewhere pid 2", 2_000, 30_000),
            Err(JournalError::LeaseHeld { .. })
        ));
    }

    #[test]
    fn an_unfinished_run_holds_its_claims_until_it_finishes() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut j = SqliteJournal::open(dir.path()).expect("journal");
        let claims = |names: &[&str], concurrent: Option<&str>| Claims {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            concurrent: concurrent.map(str::to_owned),
        };
        j.create_run(
            &row("r1"),
            &claims(&["runbook:EHR failover", "resource:Z0PROD"], None),
        )
        .expect("the first run");
        // The same runbook, or another touching the same resource: refused, naming the holder.
        for names in [
            &["runbook:EHR failover"][..],
            &["runbook:other", "resource:Z0PROD"],
        ] {
            match j.create_run(&row("r2"), &claims(names, None)) {
                Err(JournalError::Claimed {
                    run_id, operator, ..
                }) => assert_eq!((run_id.as_str(), operator.as_str()), ("r1", "alice")),
                other => panic!("{names:?}: {other:?}"),
            }
        }
        assert!(
            matches!(j.run("r2"), Err(JournalError::NoRun(_))),
            "nothing partial"
        );
        // Something else entirely, or with a reason: runs.
        j.create_run(&row("r3"), &claims(&["runbook:drill"], None))
            .expect("unrelated");
        j.create_run(
            &row("r4"),
            &claims(&["runbook:EHR failover"], Some("second region test")),
        )
        .expect("concurrent with a reason");
        // Interrupted still holds; finished releases.
        let lease1 = j
            .acquire("r1", "alice@h pid 1", 1_000, 30_000)
            .expect("lease");
        j.set_status(&lease1, RunStatus::Finished(RunOutcome::Interrupted), None)
            .expect("status");
        assert!(
            j.create_run(&row("r5"), &claims(&["resource:Z0PROD"], None))
                .is_err()
        );
        let lease = j
            .acquire("r4", "bob@h pid 2", 1_000, 30_000)
            .expect("lease");
        j.set_status(&lease, RunStatus::Finished(RunOutcome::Succeeded), None)
            .expect("status");
        j.set_status(&lease1, RunStatus::Finished(RunOutcome::Succeeded), None)
            .expect("status");
        j.create_run(&row("r5"), &claims(&["resource:Z0PROD"], None))
            .expect("free again");
    }

    #[test]
    fn reading_a_missing_journal_creates_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("no-such-state");
        assert!(matches!(
            SqliteJournal::open_read_only(&missing),
            Err(JournalError::NoJournal(_))
        ));
        assert!(!missing.exists(), "a read created the directory");
    }
}

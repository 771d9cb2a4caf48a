//! Drover's application layer: the operations a front end offers — look at runs, the statement
//! an operator signs, approve or deny, the live transitions of a run, audit verification, reports,
//! evidence — each a function taking typed inputs and returning typed results. The CLI and the
//! server are thin front ends over it: neither opens the journal nor builds records itself.
//!
//! Every operation works on a [`Workspace`] (a state directory). Errors are [`OpsError`]s with a
//! stable [`OpsError::code`] the server puts in its JSON and the CLI maps to an exit code.

pub mod alerts;
pub mod posture;
mod runs;
pub mod schedules;
mod tabletop;
mod views;

pub use runs::{Compiled, Start};
pub use tabletop::{Inject, Tabletop, tabletop_log};
pub use views::{
    ApprovalView, GivenView, GraphNode, PREDICTION_TRIALS, Prediction, RunSummary, RunView,
};

use drover_dsl::Plan;
use drover_engine::driver::{DriverError, Verdict};
use drover_engine::journal::{Journal, JournalError, RunRow, SqliteJournal};
use drover_engine::run_record::RunRecord;
use drover_engine::signed::Approver;
use std::path::{Path, PathBuf};

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The request itself is wrong (a bad argument, a location not supported).
    #[error("{0}")]
    Usage(String),
    /// No such run (or nothing to act on).
    #[error("{0}")]
    NotFound(String),
    /// Refused by the rules (four eyes, a signature that does not verify, a changed roster): the
    /// refusal is in the audit log.
    #[error("{0}")]
    Refused(String),
    /// The journal.
    #[error(transparent)]
    Journal(Box<JournalError>),
    /// The engine.
    #[error(transparent)]
    Driver(Box<DriverError>),
    /// Steps whose preflight fails: nothing was started or changed.
    #[error("preflight: {} step(s) would fail; nothing was started or changed", .0.len())]
    Preflight(Vec<PreflightProblem>),
    /// A report or an evidence bundle could not be made.
    #[error("{0}")]
    Failed(String),
}

/// A step whose preflight fails.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PreflightProblem {
    /// The step.
    pub step: String,
    /// Its action.
    pub action: String,
    /// What is wrong.
    pub problem: String,
}

impl From<drover_report::ReportError> for OpsError {
    fn from(e: drover_report::ReportError) -> Self {
        match e {
            drover_report::ReportError::Journal(j) => Self::from(j),
            other => Self::Failed(other.to_string()),
        }
    }
}

impl From<JournalError> for OpsError {
    fn from(e: JournalError) -> Self {
        Self::Journal(Box::new(e))
    }
}

impl From<DriverError> for OpsError {
    fn from(e: DriverError) -> Self {
        Self::Driver(Box::new(e))
    }
}

impl OpsError {
    /// A stable code for machines (the server's JSON `code`).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Journal(e) => journal_code(e),
            Self::Driver(e) => match &**e {
                DriverError::Journal(j) => journal_code(j),
                DriverError::Identity(_) => "refused",
                _ => "engine",
            },
            Self::Usage(_) => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::Refused(_) => "refused",
            Self::Preflight(_) => "preflight",
            Self::Failed(_) => "failed",
        }
    }
}

fn journal_code(e: &JournalError) -> &'static str {
    match e {
        JournalError::NoRun(_) => "not_found",
        JournalError::UnsupportedLocation { .. } => "bad_request",
        JournalError::LeaseHeld { .. }
        | JournalError::Claimed { .. }
        | JournalError::RunExists(_) => "conflict",
        _ => "journal",
    }
}

/// A state location: the journal (a SQLite database in a directory, or a PostgreSQL database
/// shared by server replicas) and a local directory for run records, scratch files and keys.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The local directory (the state directory itself, with SQLite).
    state: PathBuf,
    /// The PostgreSQL location, when the journal is there.
    postgres: Option<String>,
}

/// The local directory used with a PostgreSQL journal when none is given: `DROVER_LOCAL_DIR`,
/// else `.drover-local` in the working directory.
fn default_local_dir() -> PathBuf {
    std::env::var_os("DROVER_LOCAL_DIR")
        .map_or_else(|| PathBuf::from(".drover-local"), PathBuf::from)
}

impl Workspace {
    /// The workspace at `state`: a directory, or `postgres://…` (then local files go to
    /// `DROVER_LOCAL_DIR`, else `.drover-local`; see [`Workspace::with_local_dir`]).
    #[must_use]
    pub fn new(state: impl Into<PathBuf>) -> Self {
        let state: PathBuf = state.into();
        let text = state.to_string_lossy();
        if drover_journal_pg::is_postgres(&text) {
            return Self {
                postgres: Some(text.into_owned()),
                state: default_local_dir(),
            };
        }
        Self {
            state,
            postgres: None,
        }
    }

    /// The same journal, with local files in `dir` (a server replica's own directory).
    #[must_use]
    pub fn with_local_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        if self.postgres.is_some() {
            self.state = dir.into();
        }
        self
    }

    /// The local directory: the state directory with SQLite; with PostgreSQL, this host's
    /// directory for run records, scratch files and keys.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.state
    }

    /// Where the journal is, for messages (a database's password hidden).
    #[must_use]
    pub fn location(&self) -> String {
        match &self.postgres {
            Some(url) => drover_journal_pg::pool::shown(url),
            None => self.state.display().to_string(),
        }
    }

    /// Whether the journal is a shared database (several replicas may drive runs from it).
    #[must_use]
    pub fn shared(&self) -> bool {
        self.postgres.is_some()
    }

    /// Whether there is a journal to read (a database always has one once reachable).
    #[must_use]
    pub fn has_journal(&self) -> bool {
        self.postgres.is_some() || self.state.join("drover.db").exists()
    }

    /// The journal, for operations that write (created if needed).
    ///
    /// # Errors
    /// The state location cannot hold a journal.
    pub fn journal(&self) -> Result<Box<dyn Journal>, OpsError> {
        Ok(match &self.postgres {
            Some(url) => Box::new(drover_journal_pg::PostgresJournal::open(url)?),
            None => Box::new(SqliteJournal::open(&self.state)?),
        })
    }

    /// The journal, for operations that only read: creates nothing in a directory.
    ///
    /// # Errors
    /// No journal there.
    pub fn journal_read(&self) -> Result<Box<dyn Journal>, OpsError> {
        Ok(match &self.postgres {
            Some(url) => Box::new(drover_journal_pg::PostgresJournal::open(url)?),
            None => Box::new(SqliteJournal::open_read_only(&self.state)?),
        })
    }

    /// `latest`, or the run id as given.
    ///
    /// # Errors
    /// `latest` with no runs.
    pub fn resolve(&self, j: &dyn Journal, run_id: &str) -> Result<String, OpsError> {
        if run_id != "latest" {
            return Ok(run_id.to_owned());
        }
        j.latest_run()?
            .ok_or_else(|| OpsError::NotFound("no runs in this state directory".into()))
    }

    /// Every run, newest first.
    ///
    /// # Errors
    /// Journal errors.
    pub fn runs(&self) -> Result<Vec<RunRow>, OpsError> {
        Ok(self.journal_read()?.runs()?)
    }

    /// A run's row and its record as it stands (replayed from the journal while it is live).
    ///
    /// # Errors
    /// No such run.
    pub fn status(&self, run_id: &str) -> Result<(RunRow, RunRecord), OpsError> {
        let j = self.journal_read()?;
        let run_id = self.resolve(&*j, run_id)?;
        Ok(drover_engine::driver::status(&*j, &run_id)?)
    }

    /// The run (`latest` resolved) and the plan it was started with.
    ///
    /// # Errors
    /// No such run.
    pub fn run_plan(&self, run_id: &str) -> Result<(String, Plan), OpsError> {
        let j = self.journal_read()?;
        let run_id = self.resolve(&*j, run_id)?;
        let plan = drover_engine::driver::plan_of(&*j, &run_id)?;
        Ok((run_id, plan))
    }

    /// A run's transitions after the first `after` (1-based positions: the `n`-th transition of
    /// a run is always the same one, so a client that saw `n` asks for what follows).
    ///
    /// # Errors
    /// No such run.
    pub fn transitions_after(
        &self,
        run_id: &str,
        after: usize,
    ) -> Result<Vec<(usize, drover_engine::journal::Transition)>, OpsError> {
        let j = self.journal_read()?;
        let fresh = j.transitions_from(run_id, after)?;
        if fresh.is_empty() {
            j.run(run_id)?;
        }
        Ok(fresh
            .into_iter()
            .enumerate()
            .map(|(i, t)| (after + i + 1, t))
            .collect())
    }

    /// The statement an operator signs to decide `step` of `run_id` (`--print-statement`).
    ///
    /// # Errors
    /// No such run, or a runbook without a roster (nothing to sign for).
    pub fn decision_statement(
        &self,
        run_id: &str,
        step: &str,
        verdict: Verdict<'_>,
        totp: Option<String>,
        now: u64,
    ) -> Result<drover_identity::Statement, OpsError> {
        let (run_id, plan) = self.run_plan(run_id)?;
        Ok(drover_engine::signed::statement(
            &plan,
            &run_id,
            step,
            verdict.decision(),
            verdict.reason(),
            totp,
            now,
        ))
    }

    /// Approves, denies or breaks the glass on `step` of `run_id` as `approver`, by the rules the
    /// running driver applies; records it for the driver to pick up. Returns who approved (the
    /// roster operator who signed, or the typed name). A roster file changed since the run
    /// started is refused for this run (audited, under no name).
    ///
    /// # Errors
    /// [`OpsError::Refused`] with the reason (audited), or journal and engine errors.
    pub fn approve(
        &self,
        run_id: &str,
        step: &str,
        approver: &Approver,
        verdict: Verdict<'_>,
        now: u64,
    ) -> Result<Approved, OpsError> {
        let mut j = self.journal()?;
        let run_id = self.resolve(&*j, run_id)?;
        let plan = drover_engine::driver::plan_of(&*j, &run_id)?;
        if let Some(reason) = roster_changed(&plan, &run_id) {
            drover_engine::driver::audit_refusal(
                &mut *j,
                &run_id,
                step,
                "unverified",
                &reason,
                now,
            )?;
            return Err(OpsError::Refused(reason));
        }
        let shown = match approver {
            Approver::Typed { operator, .. } => operator.clone(),
            Approver::Signed(s) => drover_engine::signed::signer_name(&plan, s),
        };
        match drover_engine::driver::approve(&mut *j, &run_id, step, approver, verdict, now)? {
            Ok(operator) => Ok(Approved {
                run_id,
                operator,
                signed: matches!(approver, Approver::Signed(_)),
            }),
            Err(reason) => Err(OpsError::Refused(format!(
                "{shown} cannot approve `{step}` of run {run_id}: {reason}"
            ))),
        }
    }
}

/// A run's audit chain, checked.
#[derive(Debug, Clone)]
pub struct AuditCheck {
    /// The run (`latest` resolved).
    pub run_id: String,
    /// The chain head kept in the run's row.
    pub head: String,
    /// Records checked and, with an anchor, checkpoints agreed with; or the first fault (with
    /// `seq` 0 when an anchored checkpoint is contradicted).
    pub result: Result<(u64, Option<usize>), drover_engine::audit::AuditFault>,
}

impl Workspace {
    /// Checks a run's audit chain against the head in its row and, with `anchor`, against every
    /// checkpoint anchored there (the chain recomputed from the records).
    ///
    /// # Errors
    /// No such run.
    pub fn audit_verify(
        &self,
        run_id: &str,
        anchor: Option<&drover_engine::anchor::Anchor>,
    ) -> Result<AuditCheck, OpsError> {
        let j = self.journal_read()?;
        let run_id = self.resolve(&*j, run_id)?;
        let row = j.run(&run_id)?;
        let rows = j.audit(&run_id)?;
        let result = drover_engine::audit::verify(&run_id, &rows, &row.audit_head, row.audit_count)
            .and_then(|n| match anchor {
                None => Ok((n, None)),
                Some(a) => a
                    .read(&run_id)
                    .and_then(|cps| drover_engine::anchor::check(&run_id, &rows, &cps))
                    .map(|c| (n, Some(c)))
                    .map_err(|e| drover_engine::audit::AuditFault {
                        seq: 0,
                        reason: format!("against the anchor {}: {e}", a.location()),
                    }),
            });
        Ok(AuditCheck {
            run_id,
            head: row.audit_head,
            result,
        })
    }
}

/// An approval (or denial) recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Approved {
    /// The run.
    pub run_id: String,
    /// Who: the roster operator who signed, or the typed name.
    pub operator: String,
    /// Whether a signature established who.
    pub signed: bool,
}

/// Why approvals of `run_id` are refused because its roster file changed since it started, if
/// they are: the roster a run verifies against is the one it started with, so nobody adds
/// themselves to it during an incident.
#[must_use]
pub fn roster_changed(plan: &Plan, run_id: &str) -> Option<String> {
    let r = plan.runbook.roster.as_ref()?;
    let now_text = std::fs::read(&r.path).ok()?;
    let now_sha = drover_identity::Roster::digest(&now_text);
    (now_sha != r.sha256).then(|| {
        format!(
            "the operator roster {} changed since run {run_id} started (SHA-256 {} then, {} now): approvals of this run are refused until the roster is restored; a changed roster applies to the next run",
            r.path,
            r.sha256.get(..12).unwrap_or(&r.sha256),
            now_sha.get(..12).unwrap_or(&now_sha)
        )
    })
}

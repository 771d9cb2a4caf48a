//! Scheduled runs: the runbooks of a directory with `schedule` blocks, what they will do next,
//! and the scheduler's protocol — every decision journaled before anything starts, so a crash at
//! any point neither loses nor doubles a run.
//!
//! A fire goes through three journal writes: the decision (`fires` row `decided`, with the run id
//! chosen then), the run's creation (the engine's `runs` row, keyed by that id), and the mark
//! (`started`). After a crash, [`Scheduler::pending`] returns every decided fire not marked, and
//! [`Scheduler::launch`] starts it unless its run already exists.

use crate::{Compiled, OpsError, Workspace};
use drover_dsl::{Mode, Plan};
use drover_engine::audit::AuditRecord;
use drover_engine::clock::Clock;
use drover_engine::driver::{Adapters, Driver, Observer};
use drover_engine::journal::{FireRow, JournalError};
use drover_engine::run_record::{new_run_id, rfc3339};
use drover_schedule::{Decision, Overlap, Schedule, Slot, Ticker, Trigger};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Who the scheduler's audit records name.
pub const SCHEDULER: &str = "scheduler";

/// A runbook with schedules, compiled.
#[derive(Debug, Clone)]
pub struct ScheduledRunbook {
    /// Its file name in the runbook directory: the key of its fires.
    pub file: String,
    /// Its path.
    pub path: PathBuf,
    /// The plan (default variables).
    pub plan: Plan,
    /// Its schedules, checked.
    pub schedules: Vec<Schedule>,
}

/// A runbook of the directory that does not compile (its schedules cannot fire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unschedulable {
    /// The file.
    pub file: String,
    /// The first error.
    pub error: String,
}

/// Every runbook directly in `dir` (`*.drover`), compiled, in name order: those with schedules
/// or a policy, and those that do not compile.
///
/// # Errors
/// The directory cannot be read.
pub fn runbooks_in(dir: &Path) -> Result<(Vec<ScheduledRunbook>, Vec<Unschedulable>), OpsError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| OpsError::Usage(format!("the runbook directory {}: {e}", dir.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "drover") && p.is_file())
        .collect();
    files.sort();
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for path in files {
        let file = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match scheduled_runbook(&path) {
            Ok(Some(rb)) => good.push(rb),
            Ok(None) => {}
            Err(e) => bad.push(Unschedulable {
                file,
                error: e.to_string(),
            }),
        }
    }
    Ok((good, bad))
}

/// The runbook at `path` compiled, if it has schedules or a policy.
///
/// # Errors
/// It does not compile.
pub fn scheduled_runbook(path: &Path) -> Result<Option<ScheduledRunbook>, OpsError> {
    let c = Workspace::compile(path, &BTreeMap::new(), None, None)?;
    if c.plan.schedules.is_empty() && c.plan.policy.is_none() {
        return Ok(None);
    }
    let schedules = c
        .plan
        .schedules
        .iter()
        .map(|s| Schedule::new(s.clone()).map_err(|e| OpsError::Usage(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(ScheduledRunbook {
        file: path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        path: path.to_path_buf(),
        plan: c.plan,
        schedules,
    }))
}

/// One upcoming slot of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpcomingFire {
    /// The slot in UTC (RFC 3339).
    pub utc: String,
    /// The slot on the schedule's wall clock, with its offset.
    pub local: String,
    /// When it fires, jitter included (UTC).
    pub fires_at: String,
    /// Set when the daylight-saving rule moved it (`gap`) or chose one of two (`fold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    /// Why it will not fire (`blackout 2026-12-20..2027-01-04`, `overlap: run R still going`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// A schedule as `drover schedule list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleView {
    /// The runbook's file.
    pub file: String,
    /// The runbook's name.
    pub runbook: String,
    /// The schedule.
    pub schedule: String,
    /// Its mode.
    pub mode: String,
    /// `cron "…"` or `every 6h`.
    pub trigger: String,
    /// Its time zone.
    pub timezone: String,
    /// Its overlap policy.
    pub overlap: String,
    /// Its catch-up window (ms).
    pub catch_up_ms: u64,
    /// Its jitter bound (ms).
    pub jitter_ms: u64,
    /// Its blackouts, as written.
    pub blackout: Vec<String>,
    /// The next slots.
    pub next: Vec<UpcomingFire>,
    /// The run of this schedule still going, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<String>,
    /// Fires missed so far (from the journal).
    pub missed: u64,
    /// The newest decision (from the journal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<FireRow>,
}

/// The time `ts` on `s`'s wall clock, `2026-03-08T03:00:00-05:00[America/Chicago]` shortened to
/// `2026-03-08 03:00 -05:00`.
fn local(s: &Schedule, ts: Timestamp) -> String {
    let z = ts.to_zoned_datetime(s.tz().clone());
    z.strftime("%Y-%m-%d %H:%M %:z").to_string()
}

fn utc(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn ts_of(ms: u64) -> Timestamp {
    Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or(Timestamp::MAX)
}

/// The trigger as written.
fn trigger_text(s: &Schedule) -> String {
    match &s.spec().trigger {
        Trigger::Cron { expr } => format!("cron \"{expr}\""),
        Trigger::Every { ms } => format!("every {}", drover_dsl::format_duration(*ms)),
    }
}

/// The next `n` slots of every schedule of `runbooks` after `now_ms`, with why any is skipped;
/// with `ws`, what the journal knows (missed fires, the last decision, a run still going).
///
/// # Errors
/// The journal cannot be read.
pub fn schedule_views(
    runbooks: &[ScheduledRunbook],
    ws: Option<&Workspace>,
    now_ms: u64,
    n: usize,
) -> Result<Vec<ScheduleView>, OpsError> {
    let (fires, runs) = match ws {
        Some(ws) if ws.has_journal() => {
            let j = ws.journal_read()?;
            (j.fires()?, j.runs()?)
        }
        _ => (Vec::new(), Vec::new()),
    };
    let now = ts_of(now_ms);
    let mut out = Vec::new();
    for rb in runbooks {
        for s in &rb.schedules {
            let mine: Vec<&FireRow> = fires
                .iter()
                .filter(|f| f.runbook == rb.file && f.schedule == s.name())
                .collect();
            let running = running_run(&runs, &rb.plan.runbook.name, s.name());
            let mut next = Vec::new();
            for slot in s.slots_after(now).take(n) {
                let skipped = match (s.blackout_of(&slot), &running) {
                    (Some(b), _) => Some(format!("blackout {}", b.describe())),
                    (None, Some(r)) if next.is_empty() && s.spec().overlap == Overlap::Skip => {
                        Some(format!(
                            "overlap: run {r} is still going (skipped if it still is)"
                        ))
                    }
                    _ => None,
                };
                next.push(UpcomingFire {
                    utc: utc(slot.at),
                    local: local(s, slot.at),
                    fires_at: utc(s.fire_at(&slot)),
                    dst: slot.dst.map(|d| match d {
                        drover_schedule::DstShift::Gap => {
                            format!(
                                "gap: {} does not exist that day",
                                slot.wall.strftime("%H:%M")
                            )
                        }
                        drover_schedule::DstShift::Fold => {
                            format!(
                                "fold: {} happens twice; the first",
                                slot.wall.strftime("%H:%M")
                            )
                        }
                    }),
                    skipped,
                });
            }
            out.push(ScheduleView {
                file: rb.file.clone(),
                runbook: rb.plan.runbook.name.clone(),
                schedule: s.name().to_owned(),
                mode: s.spec().mode.as_str().to_owned(),
                trigger: trigger_text(s),
                timezone: s.spec().timezone.clone(),
                overlap: s.spec().overlap.as_str().to_owned(),
                catch_up_ms: s.spec().catch_up_ms,
                jitter_ms: s.spec().jitter_ms,
                blackout: s
                    .spec()
                    .blackout
                    .iter()
                    .map(drover_schedule::Blackout::describe)
                    .collect(),
                next,
                running,
                missed: mine
                    .iter()
                    .filter(|f| f.decision == "missed")
                    .map(|f| f.count)
                    .sum(),
                last: mine
                    .iter()
                    .filter(|f| f.decision != "registered")
                    .max_by_key(|f| (f.slot_ms, f.updated_at))
                    .map(|f| (*f).clone()),
            });
        }
    }
    Ok(out)
}

/// The newest unfinished run of `runbook` started by `schedule`.
fn running_run(
    runs: &[drover_engine::journal::RunRow],
    runbook: &str,
    schedule: &str,
) -> Option<String> {
    let initiator = format!("schedule:{schedule}");
    runs.iter()
        .filter(|r| r.runbook == runbook && r.initiator == initiator && r.status.is_live())
        .max_by_key(|r| r.created_at)
        .map(|r| r.run_id.clone())
}

/// A decided fire waiting to be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The runbook's file.
    pub file: String,
    /// Its path.
    pub path: PathBuf,
    /// The schedule.
    pub schedule: String,
    /// The slot (ms).
    pub slot_ms: i64,
    /// `fire` or `catch_up`.
    pub decision: String,
    /// The run id chosen when deciding.
    pub run_id: String,
    /// The run's mode.
    pub mode: Mode,
    /// The schedule's variables.
    pub vars: BTreeMap<String, String>,
    /// A run to interrupt first (`overlap = cancel_running`).
    pub cancels: Option<String>,
    /// `true` while it waits for the schedule's previous run (`overlap = queue`).
    pub queued: bool,
}

/// The server's scheduler: the runbooks of a directory, where each schedule has got to, and the
/// journal its decisions go to.
#[derive(Clone)]
pub struct Scheduler {
    ws: Workspace,
    /// The roster runs are compiled against (the server's), if any.
    operators: Option<PathBuf>,
    runbooks: Vec<ScheduledRunbook>,
    /// For each ticker entry: (runbook index, schedule index).
    entries: Vec<(usize, usize)>,
    ticker: Ticker,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("state", &self.ws.dir())
            .field("schedules", &self.entries.len())
            .finish_non_exhaustive()
    }
}

fn audit(
    now_ms: u64,
    subject: String,
    action: &str,
    outcome: &str,
    detail: Option<String>,
) -> AuditRecord {
    AuditRecord {
        seq: 0,
        ts: rfc3339(now_ms),
        run_id: drover_engine::journal::SCHEDULES_LOG.to_owned(),
        operator: SCHEDULER.to_owned(),
        step: Some(subject),
        action: action.to_owned(),
        backup_id: None,
        key_id: None,
        outcome: outcome.to_owned(),
        error: detail,
        prev: String::new(),
        signed: None,
    }
}

impl Scheduler {
    /// The scheduler of `runbooks` over `ws`'s journal at `now_ms`: each schedule resumes after
    /// the newest slot it has decided; a schedule seen for the first time is registered now
    /// (journaled, so a restart after downtime knows what it missed).
    ///
    /// # Errors
    /// The journal.
    pub fn new(
        ws: Workspace,
        runbooks: Vec<ScheduledRunbook>,
        now_ms: u64,
    ) -> Result<Self, OpsError> {
        let mut j = ws.journal()?;
        let fires = j.fires()?;
        let mut marks: HashMap<(&str, &str), i64> = HashMap::new();
        for f in &fires {
            let m = marks.entry((&f.runbook, &f.schedule)).or_insert(f.slot_ms);
            *m = (*m).max(f.slot_ms);
        }
        let mut ticker = Ticker::new();
        let mut entries = Vec::new();
        let mut register = Vec::new();
        for (ri, rb) in runbooks.iter().enumerate() {
            for (si, s) in rb.schedules.iter().enumerate() {
                let mark = match marks.get(&(rb.file.as_str(), s.name())) {
                    Some(ms) => Timestamp::from_millisecond(*ms).unwrap_or(Timestamp::UNIX_EPOCH),
                    None => {
                        register.push((rb.file.clone(), s.name().to_owned()));
                        ts_of(now_ms)
                    }
                };
                ticker.add(s.clone(), mark);
                entries.push((ri, si));
            }
        }
        for (file, name) in register {
            let row = FireRow {
                runbook: file.clone(),
                schedule: name.clone(),
                slot_ms: i64::try_from(now_ms).unwrap_or(i64::MAX),
                decision: "registered".into(),
                state: "recorded".into(),
                run_id: None,
                count: 0,
                detail: None,
                decided_at: now_ms,
                updated_at: now_ms,
            };
            j.record_fire(
                &row,
                &audit(
                    now_ms,
                    format!("{file}/{name}"),
                    "schedule.register",
                    "registered",
                    None,
                ),
            )?;
        }
        Ok(Scheduler {
            ws,
            operators: None,
            runbooks,
            entries,
            ticker,
        })
    }

    /// Compiles the runs it starts against the roster at `path` (the server's `--operators`), as
    /// runs started through the server are: approvals in them are verified against it.
    #[must_use]
    pub fn with_operators(mut self, path: Option<PathBuf>) -> Self {
        self.operators = path;
        self
    }

    /// The runbooks it schedules.
    #[must_use]
    pub fn runbooks(&self) -> &[ScheduledRunbook] {
        &self.runbooks
    }

    /// When the next fire of any schedule is due (ms).
    #[must_use]
    pub fn next_wake_ms(&self) -> Option<u64> {
        self.ticker
            .next_wake()
            .and_then(|t| u64::try_from(t.as_millisecond()).ok())
    }

    /// Decides every slot due by `now_ms` and journals each decision (fires, blackouts, missed
    /// fires with their count, overlaps) before anything starts. Returns the fires to start now:
    /// [`Scheduler::pending`] after the decisions.
    ///
    /// # Errors
    /// The journal.
    pub fn decide(&mut self, now_ms: u64) -> Result<Vec<Pending>, OpsError> {
        let decisions = self.ticker.tick(ts_of(now_ms));
        let mut j = self.ws.journal()?;
        let runs = j.runs()?;
        for (i, d) in decisions {
            let (ri, si) = self.entries[i];
            let rb = &self.runbooks[ri];
            let s = &rb.schedules[si];
            let subject = format!("{}/{}", rb.file, s.name());
            let row = |decision: &str,
                       state: &str,
                       slot: &Slot,
                       run_id: Option<String>,
                       count: u64,
                       detail: Option<String>| FireRow {
                runbook: rb.file.clone(),
                schedule: s.name().to_owned(),
                slot_ms: slot.ms(),
                decision: decision.into(),
                state: state.into(),
                run_id,
                count,
                detail,
                decided_at: now_ms,
                updated_at: now_ms,
            };
            match d {
                Decision::Blackout { slot, blackout } => {
                    let detail = format!("slot {} in blackout {blackout}", utc(slot.at));
                    j.record_fire(
                        &row("blackout", "skipped", &slot, None, 1, Some(detail.clone())),
                        &audit(
                            now_ms,
                            subject,
                            "schedule.blackout",
                            "skipped",
                            Some(detail),
                        ),
                    )?;
                }
                Decision::Missed(m) => {
                    let detail = format!(
                        "{} fire(s) missed from {} to {} while the scheduler was not running",
                        m.count,
                        utc(m.first.at),
                        utc(m.last.at)
                    );
                    j.record_fire(
                        &row(
                            "missed",
                            "recorded",
                            &m.last,
                            None,
                            m.count,
                            Some(detail.clone()),
                        ),
                        &audit(now_ms, subject, "schedule.missed", "missed", Some(detail)),
                    )?;
                }
                Decision::Fire { slot, .. } | Decision::CatchUp { slot, .. } => {
                    let decision = if matches!(d, Decision::CatchUp { .. }) {
                        "catch_up"
                    } else {
                        "fire"
                    };
                    let running = running_run(&runs, &rb.plan.runbook.name, s.name());
                    let (state, detail) = match (&running, s.spec().overlap) {
                        (Some(r), Overlap::Skip) => {
                            let detail = format!("slot {}: run {r} is still going", utc(slot.at));
                            j.record_fire(
                                &row("overlap", "skipped", &slot, None, 1, Some(detail.clone())),
                                &audit(
                                    now_ms,
                                    subject,
                                    "schedule.overlap",
                                    "skipped",
                                    Some(detail),
                                ),
                            )?;
                            continue;
                        }
                        (Some(r), Overlap::Queue) => ("queued", Some(format!("after run {r}"))),
                        (Some(r), Overlap::CancelRunning) => {
                            ("decided", Some(format!("cancels run {r}")))
                        }
                        (None, _) => ("decided", None),
                    };
                    let run_id = new_run_id(now_ms);
                    let what = format!(
                        "slot {}{}: run {run_id}{}",
                        utc(slot.at),
                        if decision == "catch_up" {
                            " (catch-up)"
                        } else {
                            ""
                        },
                        detail.as_ref().map_or(String::new(), |d| format!(", {d}"))
                    );
                    j.record_fire(
                        &row(decision, state, &slot, Some(run_id), 1, detail),
                        &audit(now_ms, subject, "schedule.fire", state, Some(what)),
                    )?;
                }
            }
        }
        self.pending()
    }

    /// Every fire decided and not yet started — after a crash, too — in slot order; a queued
    /// one once its schedule's previous run has ended.
    ///
    /// # Errors
    /// The journal.
    pub fn pending(&self) -> Result<Vec<Pending>, OpsError> {
        let j = self.ws.journal()?;
        let runs = j.runs()?;
        let mut out = Vec::new();
        for f in j.fires()? {
            if !matches!(f.decision.as_str(), "fire" | "catch_up")
                || !matches!(f.state.as_str(), "decided" | "queued")
            {
                continue;
            }
            let Some(rb) = self.runbooks.iter().find(|r| r.file == f.runbook) else {
                continue;
            };
            let Some(s) = rb.schedules.iter().find(|s| s.name() == f.schedule) else {
                continue;
            };
            let Some(run_id) = f.run_id.clone() else {
                continue;
            };
            let running = running_run(&runs, &rb.plan.runbook.name, s.name());
            let queued = f.state == "queued" && running.is_some();
            out.push(Pending {
                file: rb.file.clone(),
                path: rb.path.clone(),
                schedule: f.schedule.clone(),
                slot_ms: f.slot_ms,
                decision: f.decision.clone(),
                run_id,
                mode: s.spec().mode,
                vars: s.spec().vars.clone(),
                cancels: (s.spec().overlap == Overlap::CancelRunning)
                    .then_some(running)
                    .flatten()
                    .filter(|r| Some(r) != f.run_id.as_ref()),
                queued,
            });
        }
        Ok(out)
    }

    /// Starts `p`'s run with the id chosen when deciding — unless that run exists already (the
    /// crash came after its creation): then `None`, and nothing is started twice. A runbook that
    /// no longer compiles or refuses the start marks the fire `failed` (audited) and errs.
    ///
    /// # Errors
    /// The runbook does not compile; the start is refused.
    pub async fn launch(
        &self,
        p: &Pending,
        clock: Arc<dyn Clock>,
        adapters: Adapters,
        observer: Arc<dyn Observer>,
    ) -> Result<Option<Driver>, OpsError> {
        let exists = self
            .ws
            .journal()?
            .runs()?
            .iter()
            .any(|r| r.run_id == p.run_id);
        if exists {
            return Ok(None);
        }
        let started = async {
            let compiled = Workspace::compile(
                &p.path,
                &p.vars,
                self.operators.as_deref(),
                Some(p.mode.as_str()),
            )?;
            self.ws
                .start_scheduled(
                    compiled,
                    &p.run_id,
                    &p.schedule,
                    clock.now_ms(),
                    clock.clone(),
                    adapters,
                    observer,
                )
                .await
        }
        .await;
        match started {
            Ok(d) => Ok(Some(d)),
            // Another replica sharing the journal started it first: one run, not two.
            Err(OpsError::Driver(e))
                if matches!(
                    &*e,
                    drover_engine::driver::DriverError::Journal(JournalError::RunExists(_))
                ) =>
            {
                Ok(None)
            }
            Err(e) => {
                let now = clock.now_ms();
                let detail = format!("run {} not started: {e}", p.run_id);
                self.ws.journal()?.update_fire(
                    (&p.file, &p.schedule, p.slot_ms, &p.decision),
                    &["decided", "queued"],
                    "failed",
                    Some(&detail),
                    now,
                    &audit(
                        now,
                        format!("{}/{}", p.file, p.schedule),
                        "schedule.start",
                        "failed",
                        Some(detail.clone()),
                    ),
                )?;
                Err(e)
            }
        }
    }

    /// Marks `p` started (its run exists).
    ///
    /// # Errors
    /// The journal.
    pub fn mark_started(&self, p: &Pending, now_ms: u64) -> Result<(), OpsError> {
        self.ws.journal()?.update_fire(
            (&p.file, &p.schedule, p.slot_ms, &p.decision),
            &["decided", "queued"],
            "started",
            None,
            now_ms,
            &audit(
                now_ms,
                format!("{}/{}", p.file, p.schedule),
                "schedule.start",
                "started",
                Some(format!("run {}", p.run_id)),
            ),
        )?;
        Ok(())
    }
}

impl Workspace {
    /// Starts a run of `compiled` fired by its schedule `schedule` (preflighted first): no
    /// person starts it, so no start statement; its initiator is `schedule:NAME`.
    ///
    /// # Errors
    /// Preflight problems; the plan has no such schedule; a claim held by another run.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_scheduled(
        &self,
        compiled: Compiled,
        run_id: &str,
        schedule: &str,
        declared_at: u64,
        clock: Arc<dyn Clock>,
        adapters: Adapters,
        observer: Arc<dyn Observer>,
    ) -> Result<Driver, OpsError> {
        let start = crate::Start {
            run_id: run_id.to_owned(),
            initiator: format!("schedule:{schedule}"),
            statement: None,
            declared_at,
            concurrent: None,
            skip_preflight: false,
            anchor: None,
        };
        self.start_as(compiled, start, Some(schedule), clock, adapters, observer)
            .await
    }
}

//! `drover run | resume | approve | status | audit verify`: argument handling and printing around
//! `drover_engine`.
//!
//! Exit codes: [`crate::EXIT_CODES`].

use drover_dsl::{Mode, Plan, format_duration};
use drover_engine::audit;
use drover_engine::clock::{Clock, SystemClock};
use drover_engine::driver::{Adapters, Observer};
use drover_engine::journal::JournalError;
use drover_engine::run_record::{Objective, RunRecord, parse_rfc3339};
use drover_engine::scheduler::RunOutcome;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `drover run`.
pub struct RunArgs {
    pub plan: Plan,
    /// The runbook's source files (kept with the run).
    pub sources: Vec<drover_engine::journal::SourceText>,
    pub mode: Mode,
    pub state: PathBuf,
    pub operator: Option<String>,
    /// `--key`: sign the start of the run with this private key.
    pub key: Option<PathBuf>,
    /// `--audit-anchor`: where checkpoints of the audit chain go.
    pub audit_anchor: Option<String>,
    pub declared_at: Option<String>,
    pub run_id: Option<String>,
    pub dry_run: bool,
    /// Why this run may share its claims with unfinished runs (`--concurrent`).
    pub concurrent: Option<String>,
    /// Start without preflighting every step first (`--skip-preflight`, audited).
    pub skip_preflight: bool,
    /// The run record as JSON on stdout; progress lines on stderr.
    pub json: bool,
}

/// Prints progress lines with the time since the run started; on a terminal, also a live status
/// line: steps done, running and waiting for approval, and the RTO clock against the target.
struct Lines {
    clock: Arc<dyn Clock>,
    start: u64,
    bar: Option<indicatif::ProgressBar>,
    /// Progress goes to standard error (standard output carries JSON).
    to_stderr: bool,
}

impl Lines {
    fn new(clock: Arc<dyn Clock>, start: u64, to_stderr: bool) -> Self {
        use std::io::IsTerminal;
        let tty = if to_stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        let bar = crate::output::color_allowed(tty).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}") {
                b.set_style(style);
            }
            if to_stderr {
                b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            b.enable_steady_tick(std::time::Duration::from_millis(250));
            b
        });
        Self {
            clock,
            start,
            bar,
            to_stderr,
        }
    }
}

impl Observer for Lines {
    fn line(&self, text: &str) {
        let s = self.clock.now_ms().saturating_sub(self.start) / 1000;
        let line = format!("[{:02}:{:02}] {text}", s / 60, s % 60);
        match &self.bar {
            Some(b) => b.println(line),
            None if self.to_stderr => errln!("{line}"),
            None => outln!("{line}"),
        }
    }

    fn wants_status(&self) -> bool {
        self.bar.is_some()
    }

    fn status(&self, st: &drover_engine::driver::LiveStatus) {
        if let Some(b) = &self.bar {
            let clock = if st.rto_reached {
                "RTO clock stopped".to_owned()
            } else {
                let over = if st.since_declared_ms > st.rto_target_ms {
                    " OVER TARGET"
                } else {
                    ""
                };
                format!(
                    "RTO clock {} of {}{over}",
                    format_duration(st.since_declared_ms / 1000 * 1000),
                    format_duration(st.rto_target_ms)
                )
            };
            b.set_message(format!(
                "{}/{} done, {} running, {} awaiting approval, {} failed | {clock}",
                st.done, st.total, st.running, st.awaiting_approval, st.failed
            ));
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn adapters() -> Adapters {
    builtin_adapters()
}

/// The adapters this build registers, `notify` printing to standard output.
pub(crate) fn builtin_adapters() -> Adapters {
    let sink: drover_adapters::local::NotifySink =
        Arc::new(|m: &str| outln!("        notify: {m}"));
    let posture: Arc<dyn drover_schema::Adapter> = Arc::new(drover_posture::PostureAdapter::new(
        Arc::new(crate::posture_cli::backup_records),
    ));
    drover_adapters::builtin_adapters(sink)
        .into_iter()
        .chain(std::iter::once(posture))
        .fold(Adapters::default(), Adapters::with)
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            errln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// The exit code of a journal error: a location this build cannot use is a usage error.
fn journal_error(e: &JournalError) -> ExitCode {
    errln!("error: {e}");
    match e {
        JournalError::UnsupportedLocation { .. } => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

/// The state location as printed: a database's password hidden.
pub(crate) fn shown_state(state: &std::path::Path) -> String {
    drover_ops::Workspace::new(state).location()
}

/// Opens (creating if needed) the journal of a verb that writes: run, resume, approve.
pub(crate) fn journal(
    state: &std::path::Path,
) -> Result<Box<dyn drover_engine::journal::Journal>, ExitCode> {
    drover_ops::Workspace::new(state)
        .journal()
        .map_err(|e| match e {
            drover_ops::OpsError::Journal(j) => journal_error(&j),
            other => {
                errln!("error: {other}");
                ExitCode::FAILURE
            }
        })
}

fn objective(name: &str, o: &Objective) -> String {
    match (o.achieved_ms, o.met) {
        (Some(a), Some(met)) => format!(
            "{name} {} against a target of {}: {}",
            format_duration(a / 1000 * 1000),
            format_duration(o.target_ms),
            if met { "MET" } else { "MISSED" }
        ),
        _ => format!(
            "{name} not measured ({}); target {}",
            o.basis,
            format_duration(o.target_ms)
        ),
    }
}

/// The exit code of a finished (or stopped) run.
fn exit_code(r: &RunRecord) -> ExitCode {
    match r.outcome {
        Some(RunOutcome::Succeeded) if r.missed_target() => ExitCode::from(3),
        Some(RunOutcome::Succeeded) => ExitCode::SUCCESS,
        Some(RunOutcome::SucceededWithFailures) => ExitCode::from(5),
        Some(RunOutcome::Interrupted) | None => ExitCode::from(4),
        Some(_) => ExitCode::FAILURE,
    }
}

fn summary(r: &RunRecord, json: bool) -> ExitCode {
    if json {
        outln!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
        return exit_code(r);
    }
    outln!();
    outln!(
        "run {} ({}, {} mode, started by {})",
        r.run_id,
        r.runbook,
        r.mode,
        r.initiator
    );
    outln!(
        "outcome: {}",
        r.outcome
            .map_or_else(|| "running".to_owned(), |o| format!("{o:?}"))
    );
    outln!("{}", objective("RTO", &r.rto));
    outln!("{}", objective("RPO", &r.rpo));
    for b in &r.backups {
        outln!(
            "{}: backup {} ({}), recovery point {}, key {}, sha256 {}",
            b.step,
            b.backup_id,
            b.dataset,
            b.recovery_point,
            b.key_id,
            b.sha256
        );
    }
    let failed: Vec<&str> = r
        .steps
        .iter()
        .filter(|s| s.error.is_some() && s.state == "failed")
        .map(|s| s.id.as_str())
        .collect();
    if r.outcome == Some(RunOutcome::SucceededWithFailures) && !failed.is_empty() {
        outln!("steps that failed or were refused:");
        for s in r.steps.iter().filter(|s| failed.contains(&s.id.as_str())) {
            outln!("  {}: {}", s.id, s.error.as_deref().unwrap_or(""));
        }
    }
    changes_in_place(r);
    match r.outcome {
        Some(RunOutcome::Interrupted) | None => {
            outln!("resume it with: drover resume {}", r.run_id);
        }
        _ => {}
    }
    exit_code(r)
}

/// The changes a run made and did not undo, if it did not end as planned.
fn changes_in_place(r: &RunRecord) {
    if r.changes_in_place.is_empty() {
        return;
    }
    outln!(
        "changes still in place (`drover rollback {}` undoes the undoable ones):",
        r.run_id
    );
    for c in &r.changes_in_place {
        let how = match (c.in_flight, c.undoable) {
            (true, _) => "in flight when the run stopped: may be in place",
            (false, true) => "undoable",
            (false, false) => "no undo: undo it by hand",
        };
        let was = c
            .previous
            .as_ref()
            .map(|p| format!("; was {p}"))
            .unwrap_or_default();
        outln!("  {} ({}): {how}{was}", c.step, c.action);
    }
}

/// Keeps the record of a drive in the state directory (a failure is said, not fatal).
fn write_record(state: &std::path::Path, r: &RunRecord) {
    if let Err(e) = drover_ops::Workspace::new(state).keep_record(r) {
        errln!("warning: cannot keep the run record: {e}");
    }
}

/// `drover run`.
pub fn run(a: RunArgs) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(c) => return c,
    };
    if a.dry_run {
        return dry_run(&rt, &a);
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now_ms();
    let declared_at = match a.declared_at.as_deref().map(parse_rfc3339) {
        None => now,
        Some(Some(t)) => t,
        Some(None) => {
            errln!("error: --declared-at is not an RFC 3339 time (example: 2026-11-23T03:00:00Z)");
            return ExitCode::from(2);
        }
    };
    let run_id = a
        .run_id
        .clone()
        .unwrap_or_else(|| drover_engine::run_record::new_run_id(now));
    let anchor = match a
        .audit_anchor
        .as_deref()
        .map(drover_engine::anchor::Anchor::parse)
    {
        None => None,
        Some(Ok(x)) => Some(x),
        Some(Err(e)) => {
            errln!("error: --audit-anchor: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Err(e)) = anchor.as_ref().map(drover_engine::anchor::Anchor::check) {
        errln!("error: {e}; nothing was started");
        return ExitCode::FAILURE;
    }
    // With a roster, the run is started by a signed statement, never by a typed name.
    let start = if a.plan.runbook.roster.is_some() {
        if let Some(name) = &a.operator {
            errln!(
                "error: this runbook has an operator roster: who starts the run is established by a signature, not typed (`--as {name}`); give --key PATH or load your key into ssh-agent"
            );
            return ExitCode::from(2);
        }
        let st = drover_engine::signed::statement(
            &a.plan,
            &run_id,
            "",
            drover_identity::Decision::Start,
            "",
            None,
            now,
        );
        match sign_statement(&a.plan, &st, a.key.as_deref()) {
            Ok(s) => Some(s),
            Err(e) => {
                errln!("error: cannot sign the start of the run: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let header = format!(
        "run {run_id}: {} in {} mode (state {})",
        a.plan.runbook.name,
        a.mode.as_str(),
        shown_state(&a.state)
    );
    let state = a.state.clone();
    let ws = drover_ops::Workspace::new(a.state);
    let compiled = drover_ops::Compiled {
        plan: a.plan,
        mode: a.mode,
        sources: a.sources,
    };
    let begin = drover_ops::Start {
        run_id,
        initiator: a.operator.unwrap_or_else(drover_engine::operator::os_user),
        statement: start,
        declared_at,
        concurrent: a.concurrent,
        skip_preflight: a.skip_preflight,
        anchor,
    };
    let observer = Arc::new(Lines::new(Arc::clone(&clock), now, a.json));
    let json = a.json;
    let result = rt.block_on(async move {
        let d = ws
            .start(compiled, begin, clock, adapters(), observer)
            .await?;
        if json {
            errln!("{header}");
        } else {
            outln!("{header}");
        }
        Ok::<_, drover_ops::OpsError>(d.drive(true).await?)
    });
    // Steps stopped by a forced interrupt may leave blocking work behind: do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(r) => {
            write_record(&state, &r);
            summary(&r, json)
        }
        Err(drover_ops::OpsError::Preflight(problems)) => {
            errln!(
                "error: preflight: {} step(s) would fail; nothing was started or changed:",
                problems.len()
            );
            for p in problems {
                errln!("  {} ({}): {}", p.step, p.action, p.problem);
            }
            errln!("fix them, or start anyway with --skip-preflight (recorded in the audit log)");
            ExitCode::FAILURE
        }
        Err(e) => ops_error(&e),
    }
}

fn dry_run(rt: &tokio::runtime::Runtime, a: &RunArgs) -> ExitCode {
    let lines = rt.block_on(drover_engine::driver::dry_run(
        &a.plan,
        a.mode,
        &adapters(),
        &a.state,
        "dry-run",
    ));
    let mut failed = false;
    for l in &lines {
        failed |= l.problem.is_some();
        match &l.problem {
            None => outln!("ok      {:<28} {:<30} {}", l.step, l.action, l.note),
            Some(p) => outln!("FAILED  {:<28} {:<30} {p}", l.step, l.action),
        }
    }
    outln!(
        "dry run: {} step(s) in {} mode; nothing was changed",
        lines.len(),
        a.mode.as_str()
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `drover resume`.
pub fn resume(run_id: &str, state: PathBuf, operator: Option<String>, json: bool) -> ExitCode {
    reopen(run_id, state, operator, json, false)
}

/// `drover rollback`: undoes what a stopped run changed.
pub fn rollback(run_id: &str, state: PathBuf, operator: Option<String>, json: bool) -> ExitCode {
    reopen(run_id, state, operator, json, true)
}

fn reopen(
    run_id: &str,
    state: PathBuf,
    operator: Option<String>,
    json: bool,
    rollback: bool,
) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(c) => return c,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let observer = Arc::new(Lines::new(Arc::clone(&clock), clock.now_ms(), json));
    let op = operator.unwrap_or_else(drover_engine::operator::os_user);
    let ws = drover_ops::Workspace::new(state.clone());
    let result = rt.block_on(async move {
        let d = ws
            .reopen(run_id, &op, rollback, clock, adapters(), observer)
            .await?;
        Ok::<_, drover_ops::OpsError>(d.drive(false).await?)
    });
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(r) => {
            write_record(&state, &r);
            let code = summary(&r, json);
            // For `drover rollback`, a completed rollback is the success asked for.
            if rollback && r.outcome == Some(RunOutcome::RolledBack) {
                ExitCode::SUCCESS
            } else {
                code
            }
        }
        Err(e) => ops_error(&e),
    }
}

/// How `drover approve` establishes who approves.
pub struct ApproveBy {
    /// `--as`: a typed name (runbooks without a roster).
    pub operator: Option<String>,
    /// `--role`: typed roles.
    pub roles: Vec<String>,
    /// `--key`: sign with this private key.
    pub key: Option<PathBuf>,
    /// `--signature`: a signature made with `ssh-keygen -Y sign`.
    pub signature: Option<PathBuf>,
    /// `--statement`: the statement it signs.
    pub statement: Option<PathBuf>,
    /// `--print-statement`: print the statement to sign and stop.
    pub print_statement: bool,
    /// `--totp`: the step-up code to put in the statement.
    pub totp: Option<String>,
    /// `--deny --reason`: deny the step, with this reason.
    pub denial: Option<String>,
    /// `--break-glass --reason`: approve alone, as a break-glass operator, with this reason.
    pub break_glass: Option<String>,
}

impl ApproveBy {
    fn verdict(&self) -> drover_engine::driver::Verdict<'_> {
        use drover_engine::driver::Verdict;
        match (&self.denial, &self.break_glass) {
            (Some(r), _) => Verdict::Deny(r),
            (None, Some(r)) => Verdict::BreakGlass(r),
            (None, None) => Verdict::Approve,
        }
    }
}

/// Signs `statement` with `key`, or else with the first ssh-agent key the plan's roster lists.
fn sign_statement(
    plan: &drover_engine::Plan,
    statement: &drover_identity::Statement,
    key: Option<&std::path::Path>,
) -> Result<drover_engine::signed::SignedStatement, String> {
    let roster = match key {
        Some(_) => None,
        None => Some(
            drover_engine::signed::roster(plan)
                .unwrap_or_else(|| Err("the runbook has no operator roster".into()))?,
        ),
    };
    sign_with(roster.as_ref(), statement, key)
}

/// Signs `statement` with `key`, or else with the first ssh-agent key `roster` lists.
pub(crate) fn sign_with(
    roster: Option<&drover_identity::Roster>,
    statement: &drover_identity::Statement,
    key: Option<&std::path::Path>,
) -> Result<drover_engine::signed::SignedStatement, String> {
    let text = statement.to_text().map_err(|e| e.to_string())?;
    let signature = match (key, roster) {
        (Some(path), _) => {
            drover_identity::sign::with_key_file(path, &text).map_err(|e| e.to_string())?
        }
        (None, None) => return Err("no key to sign with: give one".into()),
        (None, Some(roster)) => {
            let mut agent = drover_identity::agent::Agent::from_env()
                .map_err(|e| format!("{e}; or give --key PATH"))?;
            agent
                .sign_with_first(&text, |k| roster.operator_with_key(k).is_some())
                .map_err(|e| e.to_string())?
        }
    };
    Ok(drover_engine::signed::SignedStatement {
        statement: text,
        signature,
    })
}

/// `drover approve`: establishes who approves (a signature by a roster operator's key, or a
/// typed name for runbooks without a roster), checks the approval against the run's scheduler
/// state (the same rules the running driver applies), then records it for the driver to pick up.
pub fn approve(run_id: &str, step: &str, by: ApproveBy, state: PathBuf, json: bool) -> ExitCode {
    let ws = drover_ops::Workspace::new(state);
    let now = SystemClock.now_ms();
    let (run_id, plan) = match ws.run_plan(run_id) {
        Ok(x) => x,
        Err(e) => return ops_error(&e),
    };
    let totp = by.totp.clone().map(|c| c.trim().to_owned());
    let statement = match ws.decision_statement(&run_id, step, by.verdict(), totp, now) {
        Ok(s) => s,
        Err(e) => return ops_error(&e),
    };
    if by.print_statement {
        match statement.to_text() {
            Ok(t) => {
                out!("{t}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                errln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let approver = if let Some(sig_path) = &by.signature {
        let statement_path = by.statement.clone().unwrap_or_else(|| {
            let s = sig_path.to_string_lossy();
            PathBuf::from(s.strip_suffix(".sig").unwrap_or(&s))
        });
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        match (read(&statement_path), read(sig_path)) {
            (Ok(statement), Ok(signature)) => {
                drover_engine::signed::Approver::Signed(drover_engine::signed::SignedStatement {
                    statement,
                    signature,
                })
            }
            (Err(e), _) | (_, Err(e)) => {
                errln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    } else if by.key.is_some() || (by.operator.is_none() && plan.runbook.roster.is_some()) {
        match sign_statement(&plan, &statement, by.key.as_deref()) {
            Ok(s) => drover_engine::signed::Approver::Signed(s),
            Err(e) => {
                errln!("error: cannot sign the approval: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else if let Some(operator) = by.operator.clone() {
        drover_engine::signed::Approver::Typed {
            operator,
            roles: by.roles.clone(),
        }
    } else {
        errln!(
            "error: say who approves: --as NAME (or, when the runbook has an operator roster, --key PATH, ssh-agent, or --signature FILE)"
        );
        return ExitCode::from(2);
    };
    let approved = match ws.approve(&run_id, step, &approver, by.verdict(), now) {
        Ok(a) => a,
        Err(drover_ops::OpsError::Refused(reason)) => {
            if json {
                outln!(
                    "{}",
                    serde_json::json!({ "run_id": run_id, "step": step, "accepted": false, "reason": reason })
                );
            }
            errln!("refused: {reason} (the refusal is in the audit log)");
            return ExitCode::FAILURE;
        }
        Err(e) => return ops_error(&e),
    };
    let operator = approved.operator;
    if json {
        outln!(
            "{}",
            serde_json::json!({ "run_id": run_id, "step": step, "operator": operator, "signed": approved.signed, "accepted": true })
        );
    } else {
        outln!(
            "approval of `{step}` by {operator}{} recorded for run {run_id}; the run picks it up (or `drover resume {run_id}`)",
            if approved.signed {
                " (signature verified)"
            } else {
                ""
            }
        );
    }
    ExitCode::SUCCESS
}

/// An application-layer error, printed, as an exit code: 2 for a bad request, 1 otherwise.
fn ops_error(e: &drover_ops::OpsError) -> ExitCode {
    errln!("error: {e}");
    match e.code() {
        "bad_request" => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

/// `drover status`.
pub fn status(run_id: &str, state: PathBuf, json: bool) -> ExitCode {
    let view = match drover_ops::Workspace::new(state).run_view(run_id, SystemClock.now_ms()) {
        Ok(v) => v,
        Err(e) => return ops_error(&e),
    };
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&view.to_json()).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let rec = &view.record;
    outln!(
        "run {} ({}), status {}",
        rec.run_id,
        rec.runbook,
        view.status
    );
    match (&view.driven_by, view.row.status.is_live()) {
        (Some(h), true) => outln!("  driven by {h}"),
        (None, true) => outln!(
            "  no live process drives it (crashed or killed): resume it with `drover resume {}`",
            rec.run_id
        ),
        _ => {}
    }
    for s in &rec.steps {
        match &s.error {
            Some(e) => outln!("  {:<14} {}: {e}", s.state, s.id),
            None => outln!("  {:<14} {}", s.state, s.id),
        }
        if let Some(p) = view.waiting.iter().find(|p| p.step == s.id) {
            outln!("  {:<14}   waiting: {}", "", p.text);
        }
    }
    if let Some(r) = rec.rollback_approval.as_ref().filter(|r| !r.approved) {
        outln!(
            "  rollback asked for by {} waits for approval ({} of {}, by the rules of `{}`{}): drover approve {} rollback --as NAME",
            r.requested_by,
            r.approved_by.len(),
            r.required,
            r.gate,
            if r.approved_by.is_empty() {
                String::new()
            } else {
                format!("; approved by {}", r.approved_by.join(", "))
            },
            rec.run_id
        );
    }
    outln!("{}", objective("RTO", &rec.rto));
    outln!("{}", objective("RPO", &rec.rpo));
    changes_in_place(rec);
    ExitCode::SUCCESS
}

/// `drover runs`: every run in the state directory, newest first.
pub fn runs(state: PathBuf, json: bool) -> ExitCode {
    let listed = match drover_ops::Workspace::new(state.clone()).run_list(SystemClock.now_ms()) {
        Ok(l) => l,
        Err(e) => return ops_error(&e),
    };
    let listed: Vec<serde_json::Value> = listed
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    if json {
        outln!("{}", serde_json::Value::Array(listed));
        return ExitCode::SUCCESS;
    }
    if listed.is_empty() {
        errln!("no runs in {}", shown_state(&state));
        return ExitCode::SUCCESS;
    }
    outln!(
        "{:<26} {:<30} {:<9} {:<13} {:<21} OUTCOME",
        "RUN",
        "RUNBOOK",
        "MODE",
        "STATUS",
        "STARTED"
    );
    for v in &listed {
        let f = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
        let mut runbook = f("runbook");
        if runbook.chars().count() > 30 {
            runbook = format!("{}…", runbook.chars().take(29).collect::<String>());
        }
        outln!(
            "{:<26} {:<30} {:<9} {:<13} {:<21} {}",
            f("run_id"),
            runbook,
            f("mode"),
            f("status"),
            f("started"),
            f("outcome")
        );
    }
    ExitCode::SUCCESS
}

/// `drover audit verify`.
pub fn audit_verify(run_id: &str, state: PathBuf, anchor: Option<&str>, json: bool) -> ExitCode {
    let parsed = anchor.map(drover_engine::anchor::Anchor::parse).transpose();
    let check = match drover_ops::Workspace::new(state)
        .audit_verify(run_id, parsed.as_ref().ok().and_then(Option::as_ref))
    {
        Ok(c) => c,
        Err(e) => return ops_error(&e),
    };
    let (run_id, head) = (check.run_id, check.head);
    let mut result = check.result;
    // A location that is not an anchor fails the verification, as a contradicting one does.
    if let (Ok(_), Err(e), Some(loc)) = (&result, &parsed, anchor) {
        result = Err(audit::AuditFault {
            seq: 0,
            reason: format!("against the anchor {loc}: {e}"),
        });
    }
    let anchored = result.as_ref().ok().and_then(|r| r.1);
    let result = result.map(|r| r.0);
    if json {
        outln!(
            "{}",
            serde_json::json!({
                "run_id": run_id,
                "intact": result.is_ok(),
                "records": result.as_ref().ok(),
                "head": head,
                "problem": result.as_ref().err().map(ToString::to_string),
                "checkpoints": anchored,
            })
        );
    }
    match result {
        Ok(n) => {
            if !json {
                outln!(
                    "audit log of run {run_id}: {n} records, hash chain intact, head {}{}",
                    head.get(..16).unwrap_or(&head),
                    anchored.map_or_else(String::new, |c| format!(
                        "; agrees with {c} anchored checkpoint(s)"
                    ))
                );
            }
            ExitCode::SUCCESS
        }
        Err(f) if f.seq == 0 => {
            errln!("audit log of run {run_id} FAILED verification {}", f.reason);
            ExitCode::FAILURE
        }
        Err(f) => {
            errln!("audit log of run {run_id} FAILED verification: {f}");
            ExitCode::FAILURE
        }
    }
}

/// `drover audit verify --backups`: the log of backup and key operations outside runs, against
/// its head, the anchor's checkpoints and (with a roster) every signature.
pub fn audit_verify_backups(
    state: PathBuf,
    anchor: Option<&str>,
    operators: Option<&str>,
    json: bool,
) -> ExitCode {
    let anchor = match anchor.map(drover_engine::anchor::Anchor::parse).transpose() {
        Ok(a) => a,
        Err(e) => {
            errln!("error: --anchor: {e}");
            return ExitCode::from(2);
        }
    };
    let checked = drover_ops::Workspace::new(state).log_verify(
        drover_engine::oplog::BACKUPS_LOG,
        anchor.as_ref(),
        operators.map(std::path::Path::new),
    );
    let (result, signed) = match checked {
        Ok(Ok((n, anchored, signed))) => (Ok((n, anchored)), signed),
        Ok(Err(e)) => (Err(e), None),
        Err(e) => return ops_error(&e),
    };
    if json {
        outln!(
            "{}",
            serde_json::json!({
                "log": "backups",
                "intact": result.is_ok(),
                "records": result.as_ref().ok().map(|r| r.0),
                "checkpoints": result.as_ref().ok().and_then(|r| r.1),
                "signed_records": signed,
                "problem": result.as_ref().err(),
            })
        );
    }
    match result {
        Ok((n, anchored)) => {
            if !json {
                outln!(
                    "audit log of backup and key operations: {n} records, hash chain intact{}{}",
                    anchored.map_or_else(String::new, |c| format!(
                        "; agrees with {c} anchored checkpoint(s)"
                    )),
                    signed.map_or_else(String::new, |s| format!(
                        "; {s} signed record(s) verified against the roster"
                    ))
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            errln!("audit log of backup and key operations FAILED verification: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `drover audit show --backups`.
pub fn audit_show_backups(state: PathBuf) -> ExitCode {
    audit_show(drover_engine::oplog::BACKUPS_LOG, state)
}

/// `drover audit show`: a log's audit records, one JSON object per line.
pub fn audit_show(run_id: &str, state: PathBuf) -> ExitCode {
    match drover_ops::Workspace::new(state).audit_records(run_id) {
        Ok(records) => {
            for record in records {
                outln!("{record}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => ops_error(&e),
    }
}

/// `drover report`: renders a run's report to standard output or a file.
pub fn report(
    run_id: &str,
    state: PathBuf,
    format: drover_report::Format,
    templates: Option<&std::path::Path>,
    out: Option<&str>,
) -> ExitCode {
    let (run_id, text) = match drover_ops::Workspace::new(state).report(run_id, format, templates) {
        Ok(x) => x,
        Err(e) => return ops_error(&e),
    };
    write_out(&text, out, &format!("report of run {run_id}"))
}

/// `drover report --history RUNBOOK`.
pub fn report_history(
    runbook: &str,
    state: PathBuf,
    format: drover_report::Format,
    out: Option<&str>,
) -> ExitCode {
    match drover_ops::Workspace::new(state.clone()).history(runbook, format) {
        Ok((runs, text)) => {
            if runs == 0 {
                errln!("note: no runs of \"{runbook}\" in {}", shown_state(&state));
            }
            write_out(&text, out, &format!("history of \"{runbook}\""))
        }
        Err(e) => ops_error(&e),
    }
}

fn write_out(text: &str, out: Option<&str>, what: &str) -> ExitCode {
    match out {
        None => {
            outln!("{text}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => {
                errln!("{what} written to {path}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                errln!("error: cannot write {path}: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// A key named by URI: `file:PATH` (the one syntax for every key option). A bare path is taken
/// as a file too, for the public keys auditors are handed.
fn file_uri(uri: &str, bare_path_ok: bool) -> Result<&std::path::Path, ExitCode> {
    match uri.strip_prefix("file:") {
        Some(p) if !p.is_empty() => Ok(std::path::Path::new(p)),
        None if bare_path_ok && !uri.is_empty() && !uri.contains("://") => {
            Ok(std::path::Path::new(uri))
        }
        _ => {
            errln!("error: `{uri}`: evidence keys are files: file:PATH");
            Err(ExitCode::from(2))
        }
    }
}

/// `drover key generate --signing file:PATH`.
pub fn signing_key_generate(uri: &str, json: bool) -> ExitCode {
    let path = match file_uri(uri, false) {
        Ok(p) => p,
        Err(c) => return c,
    };
    match drover_evidence::generate_signing_key(path) {
        Ok(public) => {
            let public_path = drover_evidence::public_path(path);
            if json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "signing_key": uri,
                        "public_key": format!("file:{}", public_path.display()),
                        "ed25519": hex::encode(public.as_bytes()),
                    })
                );
            } else {
                outln!(
                    "signing key {} ready; public key {} (Ed25519 {})",
                    path.display(),
                    public_path.display(),
                    hex_prefix(public.as_bytes())
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            errln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn hex_prefix(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect()
}

/// `drover evidence export`.
pub fn evidence_export(
    run_id: &str,
    out: &str,
    signing_key: &str,
    state: PathBuf,
    upload: Option<(&str, u32)>,
) -> ExitCode {
    let path = match file_uri(signing_key, false) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let ws = drover_ops::Workspace::new(state);
    // A mistyped state directory is named before the key is looked at.
    if let Err(e) = ws.journal_read() {
        return ops_error(&e);
    }
    let key = match drover_evidence::read_signing_key(path) {
        Ok(k) => k,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (run_id, bytes, report) = match ws.evidence(run_id, &key) {
        Ok(x) => x,
        Err(e) => return ops_error(&e),
    };
    // Written beside the destination, then renamed: a bundle is whole or absent.
    let tmp = format!("{out}.partial");
    if let Err(e) = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, out)) {
        let _ = std::fs::remove_file(&tmp);
        errln!("error: cannot write {out}: {e}");
        return ExitCode::FAILURE;
    }
    outln!(
        "evidence of run {run_id} ({}, {}) written to {out}: {} bytes, signed by {}",
        report.runbook,
        report.outcome,
        bytes.len(),
        hex_prefix(key.verifying_key().as_bytes())
    );
    match upload {
        None => ExitCode::SUCCESS,
        Some((uri, days)) => upload_locked(uri, bytes, days),
    }
}

#[cfg(feature = "aws")]
pub(crate) fn upload_locked(uri: &str, bytes: Vec<u8>, days: u32) -> ExitCode {
    use drover_adapters::aws_s3::{S3Location, put_locked};
    let now = i64::try_from(SystemClock.now_ms() / 1000).unwrap_or(0);
    match S3Location::parse(uri).and_then(|l| put_locked(&l, bytes, days, now)) {
        Ok(o) => {
            outln!(
                "uploaded to {uri} (version {}) under Object Lock, compliance mode, until {}",
                o.version_id,
                drover_engine::run_record::rfc3339(
                    u64::try_from(o.retain_until).unwrap_or(0) * 1000
                )
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            errln!("error: upload to {uri}: {e} (the bundle is written locally)");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "aws"))]
pub(crate) fn upload_locked(uri: &str, _bytes: Vec<u8>, _days: u32) -> ExitCode {
    errln!(
        "error: cannot upload to {uri}: this drover was built without the `aws` feature (the bundle is written locally)"
    );
    ExitCode::FAILURE
}

/// `drover evidence verify`.
pub fn evidence_verify(bundle: &str, public_key: &str, json: bool) -> ExitCode {
    let key_path = match file_uri(public_key, true) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let public = match drover_evidence::read_public_key(key_path) {
        Ok(k) => k,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let bytes = match std::fs::read(bundle) {
        Ok(b) => b,
        Err(e) => {
            errln!("error: cannot read {bundle}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = drover_report::bundle::verify_bundle(&bytes, &public);
    if json {
        outln!(
            "{}",
            match &result {
                Ok(v) => serde_json::json!({
                    "bundle": bundle,
                    "valid": true,
                    "files": v.manifest.files.len(),
                    "audit_records": v.audit_records,
                    "sources_match_plan": v.sources,
                    "signed_statements": v.signatures,
                    "backup_records": v.backup_records,
                    "checkpoints": v.checkpoints,
                    "subject": v.manifest.subject,
                }),
                Err(e) =>
                    serde_json::json!({ "bundle": bundle, "valid": false, "problem": e.to_string() }),
            }
        );
    }
    match result {
        Ok(v) => {
            if !json {
                outln!(
                    "{bundle}: OK — signature valid, {} files intact, audit chain of {} records intact{}{}{}{}; run {} of \"{}\"",
                    v.manifest.files.len(),
                    v.audit_records,
                    v.checkpoints.map_or_else(String::new, |n| format!(
                        " and in agreement with {n} anchored checkpoint(s)"
                    )),
                    v.backup_records.map_or_else(String::new, |n| format!(
                        ", backup-operation log intact ({n} record(s) about the backups the run used)"
                    )),
                    if v.signatures > 0 {
                        format!(
                            ", {} signed statement(s) verified against the roster",
                            v.signatures
                        )
                    } else {
                        String::new()
                    },
                    if v.sources {
                        ", runbook sources match the plan"
                    } else {
                        " (no runbook sources in the bundle)"
                    },
                    v.manifest.subject.get("run_id").map_or("?", String::as_str),
                    v.manifest
                        .subject
                        .get("runbook")
                        .map_or("?", String::as_str),
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            errln!("{bundle}: REFUSED — {e}");
            ExitCode::FAILURE
        }
    }
}

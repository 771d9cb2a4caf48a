//! Starting, reopening and reporting runs: compile a runbook, preflight it, start or reopen its
//! driver, render its report, export its evidence.

use crate::{OpsError, PreflightProblem, Workspace};
use drover_dsl::{Mode, Plan};
use drover_engine::clock::Clock;
use drover_engine::driver::{Adapters, Driver, Observer, RunSpec};
use drover_engine::journal::SourceText;
use drover_engine::signed::SignedStatement;
use std::sync::Arc;

/// A runbook compiled for a run.
#[derive(Debug)]
pub struct Compiled {
    /// The plan.
    pub plan: Plan,
    /// The mode the run will be in (asked for, or the runbook's first).
    pub mode: Mode,
    /// The runbook's source files, kept with the run.
    pub sources: Vec<SourceText>,
}

/// What starts a run.
#[derive(Debug)]
pub struct Start {
    /// The run id (see [`drover_engine::run_record::new_run_id`]).
    pub run_id: String,
    /// Who starts it: with a roster, the signer of `statement` is the initiator instead.
    pub initiator: String,
    /// The signed start statement (required when the runbook has a roster).
    pub statement: Option<SignedStatement>,
    /// When the incident or drill was declared (ms).
    pub declared_at: u64,
    /// Why this run may share its runbook or resources with unfinished runs (audited).
    pub concurrent: Option<String>,
    /// Start without preflighting every step (audited).
    pub skip_preflight: bool,
    /// Where signed checkpoints of the audit chain go.
    pub anchor: Option<drover_engine::anchor::Anchor>,
}

impl Workspace {
    /// Compiles the runbook at `path` against `operators` (a roster file, if the caller names
    /// one) in `mode` (the runbook's first mode when `None`). The first error is the message;
    /// front ends wanting every diagnostic with its source compile themselves.
    ///
    /// # Errors
    /// [`OpsError::Usage`]: the runbook does not compile, or has no such mode.
    pub fn compile(
        path: &std::path::Path,
        vars: &std::collections::BTreeMap<String, String>,
        operators: Option<&std::path::Path>,
        mode: Option<&str>,
    ) -> Result<Compiled, OpsError> {
        let shown = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let catalogue = drover_adapters::builtin_catalogue();
        let opts = drover_dsl::CompileOptions {
            catalogue: &catalogue,
            vars: vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            operators: operators.map(|p| p.display().to_string()),
        };
        let c = drover_dsl::compile(&path.display().to_string(), &drover_dsl::FsLoader, &opts);
        let Some(plan) = c.plan else {
            let first = c
                .diagnostics
                .iter()
                .find(|d| d.is_error())
                .map_or_else(String::new, |d| {
                    format!("{}: {}", d.code.as_str(), d.message)
                });
            return Err(OpsError::Usage(format!(
                "{shown} does not compile: {first}"
            )));
        };
        let mode = match mode {
            Some(m) => Mode::parse(m).ok_or_else(|| {
                OpsError::Usage(format!("mode `{m}`: drill, failover or failback"))
            })?,
            None => plan
                .runbook
                .modes
                .first()
                .copied()
                .ok_or_else(|| OpsError::Usage(format!("{shown} has no modes")))?,
        };
        if !plan.runbook.modes.contains(&mode) {
            return Err(OpsError::Usage(format!(
                "{shown} has no {} mode",
                mode.as_str()
            )));
        }
        let sources = c
            .sources
            .files()
            .iter()
            .map(|f| SourceText {
                name: f.name.clone(),
                text: f.text.clone(),
            })
            .collect();
        Ok(Compiled {
            plan,
            mode,
            sources,
        })
    }

    /// Every step's preflight before the first effect: a typo in an id must not surface halfway
    /// through a failover.
    ///
    /// # Errors
    /// [`OpsError::Preflight`] with every step that would fail.
    pub async fn preflight(
        &self,
        plan: &Plan,
        mode: Mode,
        adapters: &Adapters,
        run_id: &str,
    ) -> Result<(), OpsError> {
        let lines = drover_engine::driver::dry_run(plan, mode, adapters, self.dir(), run_id).await;
        let problems: Vec<PreflightProblem> = lines
            .into_iter()
            .filter_map(|l| {
                l.problem.map(|problem| PreflightProblem {
                    step: l.step,
                    action: l.action,
                    problem,
                })
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(OpsError::Preflight(problems))
        }
    }

    /// Starts a run of `compiled` (preflighted first unless `start.skip_preflight`): the run is
    /// journaled and its lease taken; the caller drives the returned driver.
    ///
    /// # Errors
    /// Preflight problems, a refused start statement, a claim held by another run.
    pub async fn start(
        &self,
        compiled: Compiled,
        start: Start,
        clock: Arc<dyn Clock>,
        adapters: Adapters,
        observer: Arc<dyn Observer>,
    ) -> Result<Driver, OpsError> {
        self.start_as(compiled, start, None, clock, adapters, observer)
            .await
    }

    /// [`Workspace::start`], or with `schedule` the start of a run the runbook's own schedule
    /// fires ([`Driver::start_scheduled`]: no statement, initiator `schedule:NAME`).
    pub(crate) async fn start_as(
        &self,
        compiled: Compiled,
        start: Start,
        schedule: Option<&str>,
        clock: Arc<dyn Clock>,
        adapters: Adapters,
        observer: Arc<dyn Observer>,
    ) -> Result<Driver, OpsError> {
        if !start.skip_preflight {
            self.preflight(&compiled.plan, compiled.mode, &adapters, &start.run_id)
                .await?;
        }
        let journal = self.journal()?;
        let spec = RunSpec {
            run_id: start.run_id,
            mode: compiled.mode,
            initiator: start.initiator,
            state_dir: self.dir().to_path_buf(),
            declared_at: start.declared_at,
            sources: compiled.sources,
            concurrent: start.concurrent.filter(|r| !r.trim().is_empty()),
            preflight_skipped: start.skip_preflight,
            start: start.statement,
            anchor: start.anchor,
        };
        let plan = Arc::new(compiled.plan);
        Ok(match schedule {
            None => Driver::start(spec, plan, journal, clock, adapters, observer)?,
            Some(name) => {
                Driver::start_scheduled(spec, name, plan, journal, clock, adapters, observer)?
            }
        })
    }

    /// Reopens a run (`latest` resolved) to go on after an interruption or a crash, or to undo
    /// it (`rollback`), as `operator`; the caller drives the returned driver.
    ///
    /// # Errors
    /// No such run; a run another live process drives; a finished run.
    pub async fn reopen(
        &self,
        run_id: &str,
        operator: &str,
        rollback: bool,
        clock: Arc<dyn Clock>,
        adapters: Adapters,
        observer: Arc<dyn Observer>,
    ) -> Result<Driver, OpsError> {
        if self.is_tabletop(run_id)? {
            if rollback {
                return Err(OpsError::Usage(
                    "a tabletop exercise changed nothing: there is nothing to roll back".into(),
                ));
            }
            // A tabletop goes on simulated, whatever the caller would drive it with.
            return Ok(self.reopen_tabletop(run_id, operator, observer).await?.0);
        }
        self.reopen_with(run_id, operator, rollback, clock, adapters, observer)
            .await
    }

    /// [`Workspace::reopen`] with these clock and adapters, whatever the run (a tabletop's are
    /// its simulated ones).
    pub(crate) async fn reopen_with(
        &self,
        run_id: &str,
        operator: &str,
        rollback: bool,
        clock: Arc<dyn Clock>,
        adapters: Adapters,
        observer: Arc<dyn Observer>,
    ) -> Result<Driver, OpsError> {
        let j = self.journal()?;
        let run_id = self.resolve(&*j, run_id)?;
        let state = self.dir().to_path_buf();
        let driver = if rollback {
            Driver::rollback(&run_id, state, operator, j, clock, adapters, observer).await?
        } else {
            Driver::resume(&run_id, state, operator, j, clock, adapters, observer).await?
        };
        Ok(driver)
    }

    /// Keeps a finished drive's record as `STATE/runs/RUN.json` (beside the run's scratch
    /// directory), for people and tools that read files.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn keep_record(
        &self,
        record: &drover_engine::run_record::RunRecord,
    ) -> Result<(), OpsError> {
        let dir = self.dir().join("runs");
        let text = serde_json::to_string_pretty(record)
            .map_err(|e| OpsError::Failed(format!("run record: {e}")))?;
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join(format!("{}.json", record.run_id)), text))
            .map_err(|e| OpsError::Failed(format!("{}: {e}", dir.display())))
    }

    /// A run's report (`latest` resolved) in `format`, with templates from `templates` if
    /// given: `(run id, text)`.
    ///
    /// # Errors
    /// No such run; a template fails.
    pub fn report(
        &self,
        run_id: &str,
        format: drover_report::Format,
        templates: Option<&std::path::Path>,
    ) -> Result<(String, String), OpsError> {
        let j = self.journal_read()?;
        let run_id = self.resolve(&*j, run_id)?;
        drover_engine::journal::Journal::run(&*j, &run_id)?;
        let report = drover_report::gather(&*j, &run_id)?;
        let text = drover_report::render(&report, format, templates)?;
        Ok((run_id, text))
    }

    /// The history of a runbook's runs in `format`: `(runs, text)`.
    ///
    /// # Errors
    /// The journal; a stored record that does not read.
    pub fn history(
        &self,
        runbook: &str,
        format: drover_report::Format,
    ) -> Result<(usize, String), OpsError> {
        let j = self.journal_read()?;
        let h = drover_report::history(&*j, runbook)?;
        Ok((h.runs.len(), drover_report::render_history(&h, format)?))
    }

    /// A run's evidence bundle (`latest` resolved), signed with `key`: `(run id, bundle,
    /// report)`.
    ///
    /// # Errors
    /// No such run; the run's stored records do not read.
    pub fn evidence(
        &self,
        run_id: &str,
        key: &drover_evidence::SigningKey,
    ) -> Result<(String, Vec<u8>, drover_report::Report), OpsError> {
        let j = self.journal_read()?;
        let run_id = self.resolve(&*j, run_id)?;
        drover_engine::journal::Journal::run(&*j, &run_id)?;
        let (bytes, report) = drover_report::bundle::export(&*j, &run_id, key)
            .map_err(|e| OpsError::Failed(e.to_string()))?;
        Ok((run_id, bytes, report))
    }
}

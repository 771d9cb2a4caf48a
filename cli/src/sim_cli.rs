//! `drover simulate`: argument handling around `drover_simulator`.

use drover_dsl::{Mode, Plan};
use drover_simulator::{Prepared, Scenario, Settings};
use std::process::ExitCode;

/// What `drover simulate` was asked.
pub struct SimArgs<'a> {
    pub file: &'a str,
    pub mode: Option<Mode>,
    pub scenario: Option<&'a str>,
    pub trials: u64,
    pub seed: u64,
    pub threads: Option<usize>,
    pub json: bool,
    pub fail_if_p95_exceeds_target: bool,
    /// Keep the summary in the journal of the state directory (`state`).
    pub record: bool,
    /// Write the SVG (histogram, Gantt of the median trial) here.
    pub svg: Option<&'a str>,
    /// Draw durations from past runs in this state directory's journal.
    pub measured_from: Option<&'a std::path::Path>,
    /// The state directory (for `record`).
    pub state: &'a std::path::Path,
}

/// Runs the simulation and prints it. Exit 0, 1 (bad input), 3 (p95 over a target, when asked).
pub fn simulate(plan: &Plan, a: &SimArgs<'_>) -> ExitCode {
    let mode = match plan.mode_or_first(a.mode) {
        Ok(m) => m,
        Err(m) => {
            errln!("{} does not support mode {}", a.file, m.as_str());
            return ExitCode::FAILURE;
        }
    };
    let scenario = match Scenario::load(a.scenario) {
        Ok(s) => s,
        Err(e) => {
            errln!("error: scenario {}: {e}", a.scenario.unwrap_or(""));
            return ExitCode::FAILURE;
        }
    };
    if a.trials == 0 {
        errln!("error: --trials must be at least 1");
        return ExitCode::from(2);
    }
    let measured = match a.measured_from {
        None => Default::default(),
        Some(state) => match measured(plan, state) {
            Ok(m) => m,
            Err(code) => return code,
        },
    };
    let prep = Prepared::with_measured(plan, mode, &scenario, &measured);
    if !prep.has_rto_milestone() {
        errln!(
            "warning: {} has no milestone with `stops_rto = true` in mode {}: no RTO to simulate",
            a.file,
            mode.as_str()
        );
    }
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let name = if scenario.name.is_empty() {
        a.scenario.unwrap_or("").to_owned()
    } else {
        scenario.name.clone()
    };
    let summary = drover_simulator::run(
        &prep,
        plan,
        &name,
        mode.as_str(),
        Settings {
            trials: a.trials,
            seed: a.seed,
            threads: threads.max(1),
        },
    );
    if a.json {
        match serde_json::to_string_pretty(&summary) {
            Ok(j) => outln!("{j}"),
            Err(e) => {
                errln!("cannot serialize the summary: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        out!("{}", drover_simulator::render_text(&summary));
    }
    if a.record
        && let Err(code) = record(plan, &summary, a.state)
    {
        return code;
    }
    if let Some(path) = a.svg
        && let Err(e) = std::fs::write(path, drover_simulator::render_svg(&summary))
    {
        errln!("error: cannot write {path}: {e}");
        return ExitCode::FAILURE;
    }
    let over = |d: &drover_simulator::monte_carlo::Distribution| {
        d.target_ms
            .is_some_and(|t| d.p95_ms.is_none_or(|p95| p95 > t))
    };
    if a.fail_if_p95_exceeds_target
        && (over(&summary.rto) || summary.rpo.as_ref().is_some_and(over))
    {
        errln!("simulated p95 exceeds the runbook's target");
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}

/// Keeps the summary in the journal, for reports to compare with what runs achieve.
fn record(
    plan: &Plan,
    summary: &drover_simulator::Summary,
    state: &std::path::Path,
) -> Result<(), ExitCode> {
    use drover_engine::journal::SimulationRow;
    let fail = |e: String| {
        errln!(
            "error: cannot record the simulation in {}: {e}",
            crate::run_cli::shown_state(state)
        );
        ExitCode::FAILURE
    };
    let mut journal = drover_ops::Workspace::new(state)
        .journal()
        .map_err(|e| fail(e.to_string()))?;
    let json = serde_json::to_string(summary).map_err(|e| fail(e.to_string()))?;
    let now = drover_engine::clock::Clock::now_ms(&drover_engine::clock::SystemClock);
    journal
        .record_simulation(&SimulationRow {
            runbook: plan.runbook.name.clone(),
            source_sha256: plan.runbook.source_sha256.clone(),
            mode: summary.mode.clone(),
            at: now,
            summary: json,
        })
        .map_err(|e| fail(e.to_string()))?;
    errln!("recorded in {}", crate::run_cli::shown_state(state));
    Ok(())
}

/// Durations of past runs of this runbook from the journal in `state`.
fn measured(
    plan: &Plan,
    state: &std::path::Path,
) -> Result<std::collections::BTreeMap<String, Vec<u64>>, ExitCode> {
    let ws = drover_ops::Workspace::new(state);
    if !ws.has_journal() {
        errln!(
            "error: no journal in {} (--state): no past runs to measure",
            crate::run_cli::shown_state(state)
        );
        return Err(ExitCode::FAILURE);
    }
    let journal = ws.journal().map_err(|e| {
        errln!("error: {e}");
        ExitCode::FAILURE
    })?;
    let m = journal
        .measured_durations(&plan.runbook.name)
        .map_err(|e| {
            errln!("error: {e}");
            ExitCode::FAILURE
        })?;
    if m.is_empty() {
        errln!(
            "warning: no past runs of \"{}\" in {}: using the estimates",
            plan.runbook.name,
            crate::run_cli::shown_state(state)
        );
    } else {
        let fewest = m.values().map(Vec::len).min().unwrap_or(0);
        if fewest < 3 {
            errln!(
                "note: some steps have only {fewest} measured duration(s); their spread is not yet known"
            );
        }
    }
    Ok(m)
}

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
}

/// Runs the simulation and prints it. Exit 0, 1 (bad input), 3 (p95 over a target, when asked).
pub fn simulate(plan: &Plan, a: &SimArgs<'_>) -> ExitCode {
    let mode = match plan.mode_or_first(a.mode) {
        Ok(m) => m,
        Err(m) => {
            eprintln!("{} does not support mode {}", a.file, m.as_str());
            return ExitCode::FAILURE;
        }
    };
    let scenario = match Scenario::load(a.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: scenario {}: {e}", a.scenario.unwrap_or(""));
            return ExitCode::FAILURE;
        }
    };
    if a.trials == 0 {
        eprintln!("error: --trials must be at least 1");
        return ExitCode::from(2);
    }
    let prep = Prepared::new(plan, mode, &scenario);
    if !prep.has_rto_milestone() {
        eprintln!(
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
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("cannot serialize the summary: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", drover_simulator::render_text(&summary));
    }
    let over = |d: &drover_simulator::monte_carlo::Distribution| {
        d.target_ms
            .is_some_and(|t| d.p95_ms.is_none_or(|p95| p95 > t))
    };
    if a.fail_if_p95_exceeds_target
        && (over(&summary.rto) || summary.rpo.as_ref().is_some_and(over))
    {
        eprintln!("simulated p95 exceeds the runbook's target");
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}

//! Drover's simulator: runs a compiled [`drover_dsl::Plan`] on a virtual clock through the
//! engine's own scheduler (`drover_engine::scheduler`: the same readiness, concurrency limits,
//! retries, timeouts, approvals, `on_failure` and rollback as a live run — there is no second copy
//! of the rules), for what-if scenarios and Monte Carlo RTO/RPO prediction.
//!
//! - [`model`]: step durations from the runbook's `estimate` (fixed, range, triangular,
//!   log-normal from p50/p95).
//! - [`scenario`]: faults at virtual times, from a TOML file.
//! - [`sim`]: one trial on the virtual clock.
//! - [`monte_carlo`]: many trials in parallel, reproducibly, summarised.
//! - [`picture`]: the summary as an SVG (RTO histogram, Gantt of the median trial).
//!
//! Simulated results are marked `simulated` everywhere and never count as a verified recovery.

pub mod live;
pub mod model;
pub mod monte_carlo;
pub mod picture;
pub mod scenario;
pub mod sim;
pub mod tabletop;

pub use drover_dsl::analysis::{Analysis, analyze};
pub use monte_carlo::{Settings, Summary, run};
pub use picture::render_svg;
pub use scenario::{Scenario, ScenarioError};
pub use sim::{Automatic, Participants, Prepared, Trial};

use drover_dsl::format_duration;

/// A duration to the second, for people (the JSON keeps milliseconds).
fn secs(ms: u64) -> String {
    format_duration((ms + 500) / 1000 * 1000)
}

fn dur(v: Option<u64>) -> String {
    v.map_or_else(|| "never".to_owned(), secs)
}

/// The summary for people.
#[must_use]
pub fn render_text(s: &Summary) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "SIMULATED — not a verified recovery");
    let _ = writeln!(o, "runbook   {}", s.runbook);
    let _ = writeln!(o, "mode      {}", s.mode);
    if !s.scenario.is_empty() {
        let _ = writeln!(o, "scenario  {}", s.scenario);
    }
    let _ = writeln!(o, "trials    {} (seed {})", s.trials, s.seed);
    if s.measured_steps > 0 {
        let _ = writeln!(
            o,
            "durations measured in past runs for {} steps, estimates for the rest",
            s.measured_steps
        );
    }
    let _ = writeln!(o, "recovered in {:.1}% of trials", s.p_recovered * 100.0);
    let mut dist = |name: &str, d: &monte_carlo::Distribution| {
        let _ = writeln!(
            o,
            "{name}  p50 {}  p90 {}  p95 {}  p99 {}  max {}",
            dur(d.p50_ms),
            dur(d.p90_ms),
            dur(d.p95_ms),
            dur(d.p99_ms),
            dur(d.max_ms)
        );
        if let (Some(t), Some(p)) = (d.target_ms, d.p_meet_target) {
            let _ = writeln!(
                o,
                "     target {}: met in {:.1}% of trials{}",
                secs(t),
                p * 100.0,
                if d.p95_ms.is_none_or(|p95| p95 > t) {
                    "  (p95 over the target)"
                } else {
                    ""
                }
            );
        }
    };
    dist("RTO", &s.rto);
    if let Some(r) = &s.rpo {
        dist("RPO", r);
    }
    let _ = writeln!(
        o,
        "outcomes  {}",
        s.outcomes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !s.median_critical_path.is_empty() {
        let _ = writeln!(o, "\ncritical path of the median trial");
        let _ = writeln!(o, "  {}", s.median_critical_path.join(" → "));
    }
    let _ = writeln!(
        o,
        "\nsteps (criticality = share of trials on the critical path; sensitivity = correlation with RTO)"
    );
    for st in s.steps.iter().take(15) {
        let _ = writeln!(
            o,
            "  {:<28} criticality {:>5.1}%  sensitivity {:>5.2}  mean {}",
            st.id,
            st.criticality * 100.0,
            st.sensitivity,
            secs(st.mean_ms)
        );
    }
    if s.steps.len() > 15 {
        let _ = writeln!(o, "  … {} more (--format json)", s.steps.len() - 15);
    }
    o
}

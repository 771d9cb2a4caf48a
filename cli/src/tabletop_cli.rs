//! `drover tabletop`: one simulated run of the plan, narrated on the terminal at accelerated
//! virtual time, with the team typing the approvals; ends with a report. Simulated: never a
//! verified recovery.

use drover_dsl::{Mode, Plan, PlanNode, PlanValue, format_duration};
use drover_simulator::tabletop::{Decision, DecisionKind, TabletopReport, elapsed_label as clock};
use drover_simulator::{Participants, Prepared, Scenario};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What `drover tabletop` was asked.
pub struct TabletopArgs<'a> {
    pub file: &'a str,
    pub mode: Option<Mode>,
    pub scenario: Option<&'a str>,
    pub seed: u64,
    /// Virtual seconds per real second (0: no pauses).
    pub speed: f64,
    pub report: Option<&'a str>,
}

struct Room<'p> {
    plan: &'p Plan,
    speed: f64,
    last_virtual: u64,
    decisions: Vec<Decision>,
    timeline: Vec<(u64, String)>,
    input: std::io::StdinLock<'static>,
}

#[allow(
    clippy::disallowed_methods,
    reason = "the tabletop paces real time on purpose"
)]
fn real_now() -> Instant {
    Instant::now()
}

impl Room<'_> {
    fn prompt_of(&self, step: &str) -> String {
        self.plan
            .graph
            .node_weights()
            .find_map(|n| match n {
                PlanNode::Step(s) if s.id == step => match s.inputs.get("prompt") {
                    Some(PlanValue::String(p)) => Some(p.clone()),
                    Some(PlanValue::Template(t)) => Some(t.clone()),
                    _ => None,
                },
                _ => None,
            })
            .unwrap_or_default()
    }

    /// Records that the exercise was stopped at `step`, by `by` if they said who they are.
    fn stop(&mut self, step: &str, now: u64, approvers: Vec<String>, by: Option<String>) {
        let d = Decision {
            at_ms: now,
            step: step.to_owned(),
            decision: DecisionKind::Stopped,
            approvers,
            stopped_by: by,
            discussion_ms: 0,
        };
        outln!("[{}] {}", clock(now), d.describe());
        self.decisions.push(d);
    }

    fn read_line(&mut self) -> Option<String> {
        let mut l = String::new();
        match self.input.read_line(&mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(l.trim().to_owned()),
        }
    }
}

impl Participants for Room<'_> {
    fn narrating(&self) -> bool {
        true
    }

    fn narrate(&mut self, now: u64, line: &str) {
        if self.speed > 0.0 && now > self.last_virtual {
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a pause, capped"
            )]
            let ms = ((now - self.last_virtual) as f64 / self.speed).min(3_000.0) as u64;
            #[allow(
                clippy::disallowed_methods,
                reason = "the tabletop paces real time on purpose"
            )]
            std::thread::sleep(Duration::from_millis(ms));
        }
        self.last_virtual = self.last_virtual.max(now);
        outln!("[{}] {line}", clock(now));
        let _ = std::io::stdout().flush();
        self.timeline.push((now, line.to_owned()));
    }

    fn approve(
        &mut self,
        step: &str,
        required: u32,
        now: u64,
        default_delay_ms: u64,
    ) -> Option<(u64, Vec<String>)> {
        outln!("[{}] APPROVAL {step}: {}", clock(now), self.prompt_of(step));
        let started = real_now();
        let mut names: Vec<String> = Vec::new();
        while names.len() < required as usize {
            out!(
                "  {} more approver(s) needed: type names separated by spaces, or `stop YOUR-NAME` to end the exercise\n> ",
                required as usize - names.len()
            );
            let _ = std::io::stdout().flush();
            let Some(line) = self.read_line() else {
                outln!(
                    "\n[{}] the input ended: the exercise stops here",
                    clock(now)
                );
                self.decisions.push(Decision {
                    at_ms: now,
                    step: step.to_owned(),
                    decision: DecisionKind::InputEnded,
                    approvers: names,
                    stopped_by: None,
                    discussion_ms: 0,
                });
                return None;
            };
            let mut words = line.split_whitespace();
            if words.next().is_some_and(|w| w.eq_ignore_ascii_case("stop")) {
                let mut by = words.collect::<Vec<_>>().join(" ");
                while by.is_empty() {
                    out!("  who is stopping the exercise? ");
                    let _ = std::io::stdout().flush();
                    match self.read_line() {
                        Some(l) => by = l.trim().to_owned(),
                        None => break,
                    }
                }
                self.stop(step, now, names, (!by.is_empty()).then_some(by));
                return None;
            }
            for n in line.split_whitespace() {
                if !names.iter().any(|x| x == n) && names.len() < required as usize {
                    names.push(n.to_owned());
                }
            }
        }
        // The team's real discussion time counts, accelerated; with no pacing, the estimate does.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "ms"
        )]
        let discussion = if self.speed > 0.0 {
            (started.elapsed().as_millis() as f64 * self.speed) as u64
        } else {
            default_delay_ms
        };
        outln!(
            "[{}] approved by {} after {}",
            clock(now + discussion),
            names.join(", "),
            format_duration(discussion)
        );
        self.decisions.push(Decision {
            at_ms: now,
            step: step.to_owned(),
            decision: DecisionKind::Approved,
            approvers: names.clone(),
            stopped_by: None,
            discussion_ms: discussion,
        });
        Some((discussion, names))
    }
}

/// Runs the exercise. Exit 0 when it ran to the end, 4 when the team stopped it, 1 on bad input.
pub fn tabletop(plan: &Plan, a: &TabletopArgs<'_>) -> ExitCode {
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
    outln!(
        "TABLETOP EXERCISE (simulated — nothing is changed, nothing counts as a verified recovery)"
    );
    outln!(
        "runbook {}  mode {}  scenario {}",
        plan.runbook.name,
        mode.as_str(),
        if scenario.name.is_empty() {
            "none"
        } else {
            &scenario.name
        }
    );
    let prep = Prepared::new(plan, mode, &scenario);
    let mut room = Room {
        plan,
        speed: a.speed,
        last_virtual: 0,
        decisions: Vec::new(),
        timeline: Vec::new(),
        input: std::io::stdin().lock(),
    };
    let t = prep.trial_with(a.seed, 0, &mut room);
    let report = TabletopReport::new(
        plan,
        mode,
        &scenario,
        a.seed,
        &t,
        std::mem::take(&mut room.decisions),
        std::mem::take(&mut room.timeline),
    );
    outln!("\nTABLETOP REPORT (simulated)");
    outln!("outcome   {}", report.outcome);
    match t.rto_ms {
        Some(r) => outln!(
            "RTO       {} against a target of {}: {}",
            format_duration(r / 1000 * 1000),
            format_duration(plan.runbook.rto_ms),
            if plan.runbook.rto_ms == 0 || r <= plan.runbook.rto_ms {
                "MET"
            } else {
                "MISSED"
            }
        ),
        None => outln!("RTO       not reached"),
    }
    outln!("decisions");
    for d in &report.decisions {
        outln!("  [{}] {}", clock(d.at_ms), d.describe());
    }
    if let Some(path) = a.report {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|b| std::fs::write(path, b).map_err(|e| e.to_string()));
        match written {
            Ok(()) => outln!("report written to {path}"),
            Err(e) => {
                errln!("error: cannot write the report {path}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    match report.ended_early() {
        Some(d) => {
            errln!(
                "the exercise did not run to the end: {} (exit 4)",
                d.describe()
            );
            ExitCode::from(4)
        }
        None => ExitCode::SUCCESS,
    }
}

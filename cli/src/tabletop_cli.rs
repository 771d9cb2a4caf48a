//! `drover tabletop`: one simulated run of the plan, narrated on the terminal at accelerated
//! virtual time, with the team typing the approvals; ends with a report. Simulated: never a
//! verified recovery.

use drover_dsl::{Mode, Plan, PlanNode, PlanValue, format_duration};
use drover_simulator::{Participants, Prepared, Scenario};
use serde::Serialize;
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

/// One decision the team typed.
#[derive(Debug, Clone, Serialize)]
struct Decision {
    at_ms: u64,
    step: String,
    decision: String,
    approvers: Vec<String>,
    discussion_ms: u64,
}

#[derive(Serialize)]
struct Report {
    simulated: bool,
    runbook: String,
    mode: String,
    scenario: String,
    seed: u64,
    outcome: String,
    rto_ms: Option<u64>,
    rto_target_ms: u64,
    rpo_ms: Option<u64>,
    decisions: Vec<Decision>,
    timeline: Vec<(u64, String)>,
}

struct Room<'p> {
    plan: &'p Plan,
    speed: f64,
    last_virtual: u64,
    decisions: Vec<Decision>,
    timeline: Vec<(u64, String)>,
    input: std::io::StdinLock<'static>,
}

fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("T+{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
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
                "  {} more approver(s) needed: type names separated by spaces, or `stop` to end the exercise\n> ",
                required as usize - names.len()
            );
            let _ = std::io::stdout().flush();
            let line = self.read_line()?;
            if line.eq_ignore_ascii_case("stop") {
                self.decisions.push(Decision {
                    at_ms: now,
                    step: step.to_owned(),
                    decision: "stopped".into(),
                    approvers: names,
                    discussion_ms: 0,
                });
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
            decision: "approved".into(),
            approvers: names.clone(),
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
    let outcome = format!("{:?}", t.outcome).to_lowercase();
    outln!("\nTABLETOP REPORT (simulated)");
    outln!("outcome   {outcome}");
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
    for d in &room.decisions {
        outln!(
            "  [{}] {} {} by {}",
            clock(d.at_ms),
            d.step,
            d.decision,
            d.approvers.join(", ")
        );
    }
    let report = Report {
        simulated: true,
        runbook: plan.runbook.name.clone(),
        mode: mode.as_str().to_owned(),
        scenario: scenario.name.clone(),
        seed: a.seed,
        outcome,
        rto_ms: t.rto_ms,
        rto_target_ms: plan.runbook.rto_ms,
        rpo_ms: t.rpo_ms,
        decisions: room.decisions.clone(),
        timeline: room.timeline.clone(),
    };
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
    if room.decisions.iter().any(|d| d.decision == "stopped") {
        ExitCode::from(4)
    } else {
        ExitCode::SUCCESS
    }
}

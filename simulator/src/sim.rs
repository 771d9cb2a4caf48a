//! One simulated run (a trial) of a plan through the engine's own scheduler on a virtual clock,
//! and the Monte Carlo over many trials.

use crate::model::DurationModel;
use crate::scenario::{Fault, Scenario, Span, mentions};
use drover_dsl::{Mode, Plan, PlanNode, PlanValue};
use drover_engine::scheduler::{Action, Config, Event, RunOutcome, Scheduler};
use petgraph::Direction;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

/// How long a call into an unavailable region or control plane takes to fail.
const UNAVAILABLE_FAIL_MS: u64 = 5_000;
/// How long a disabled key takes to be refused.
const KEY_REFUSED_MS: u64 = 1_000;
/// A trial that needs more events than this is stopped (a runaway retry loop).
const MAX_EVENTS: usize = 1_000_000;

/// Who decides during a trial: automatic for Monte Carlo, people at a terminal for a tabletop.
pub trait Participants {
    /// An approval step is waiting at virtual time `now`; `default_delay_ms` is the scenario's or
    /// the estimate's. Returns after how long (ms) it is approved, and by whom; `None` stops the
    /// exercise.
    fn approve(
        &mut self,
        step: &str,
        required: u32,
        now: u64,
        default_delay_ms: u64,
    ) -> Option<(u64, Vec<String>)>;

    /// Whether [`Participants::narrate`] wants lines (formatting them costs time).
    fn narrating(&self) -> bool {
        false
    }

    /// Something happened at virtual time `now`.
    fn narrate(&mut self, _now: u64, _line: &str) {}
}

/// Approvals granted at once (or after the scenario's delay) by simulated approvers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Automatic;

impl Participants for Automatic {
    fn approve(
        &mut self,
        _: &str,
        required: u32,
        _: u64,
        delay: u64,
    ) -> Option<(u64, Vec<String>)> {
        Some((
            delay,
            (0..required)
                .map(|a| format!("simulated-approver-{a}"))
                .collect(),
        ))
    }
}

/// What the scenario does to one step, worked out once per simulation.
#[derive(Debug, Clone, Default)]
struct StepFaults {
    permanent: Option<(String, bool)>,
    windows: Vec<(u64, u64, String)>,
    fails: Vec<(f64, bool)>,
    slow: Option<Span>,
    approver_delay: Option<Span>,
}

/// A plan prepared for many trials: indices, models, faults.
#[derive(Debug)]
pub struct Prepared<'p> {
    plan: &'p Plan,
    mode: Mode,
    ids: Vec<String>,
    index: HashMap<String, usize>,
    preds: Vec<Vec<usize>>,
    models: Vec<DurationModel>,
    faults: Vec<StepFaults>,
    approver_roles: Vec<String>,
    rto_milestone: Option<usize>,
    rpo_lag: Option<Span>,
    max_parallel: usize,
    injects: Vec<(u64, String)>,
}

/// One trial's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trial {
    /// RTO (ms after declaration) when the RTO milestone was reached.
    pub rto_ms: Option<u64>,
    /// RPO (ms) when the scenario models the recovery point.
    pub rpo_ms: Option<u64>,
    /// How the run ended.
    pub outcome: RunOutcome,
    /// Nodes on the critical path to the RTO milestone (indices, in order).
    pub critical: Vec<usize>,
    /// Per node: (start, end) in ms, for nodes that ran.
    pub spans: Vec<Option<(u64, u64)>>,
}

/// When each fault begins, for the narration of a tabletop.
fn injects(s: &Scenario) -> Vec<(u64, String)> {
    let mut v: Vec<(u64, String)> = s
        .faults
        .iter()
        .map(|f| match f {
            Fault::RegionDown {
                region, from_ms, ..
            } => (*from_ms, format!("region {region} is down")),
            Fault::ProviderUnavailable {
                provider, from_ms, ..
            } => (*from_ms, format!("{provider} control plane unavailable")),
            Fault::KeyDisabled { key } => (0, format!("key {key} is disabled")),
            Fault::BackupCorrupted { source } => (0, format!("backup {source} is corrupted")),
            Fault::StepFails {
                step, probability, ..
            } => (0, format!("{step} fails with probability {probability}")),
            Fault::Slow { step, .. } => (0, format!("{step} is slow")),
            Fault::ApproverUnavailable { step, .. } => {
                (0, format!("approvers of {step} are unavailable"))
            }
        })
        .collect();
    v.sort();
    v
}

fn sample_span(s: Span, rng: &mut ChaCha8Rng) -> u64 {
    if s.max_ms > s.min_ms {
        rng.random_range(s.min_ms..=s.max_ms)
    } else {
        s.min_ms
    }
}

fn roles_of(v: Option<&PlanValue>) -> Vec<String> {
    match v {
        Some(PlanValue::List(items)) => items
            .iter()
            .filter_map(|i| match i {
                PlanValue::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl<'p> Prepared<'p> {
    /// Prepares `plan` in `mode` under `scenario`.
    #[must_use]
    pub fn new(plan: &'p Plan, mode: Mode, scenario: &Scenario) -> Self {
        let g = &plan.graph;
        let n = g.node_count();
        let mut ids = Vec::with_capacity(n);
        let mut index = HashMap::with_capacity(n);
        let mut preds = vec![Vec::new(); n];
        let mut models = Vec::with_capacity(n);
        let mut faults = vec![StepFaults::default(); n];
        let mut roles = BTreeSet::new();
        let mut rto_milestone = None;
        for i in g.node_indices() {
            let k = i.index();
            ids.push(g[i].id().to_owned());
            index.insert(g[i].id().to_owned(), k);
            preds[k] = g
                .neighbors_directed(i, Direction::Incoming)
                .map(|p| p.index())
                .collect();
            match &g[i] {
                PlanNode::Step(s) => {
                    models.push(DurationModel::from_estimate(s.estimate.as_ref()));
                    if s.action == "approval" {
                        roles.extend(roles_of(s.inputs.get("roles")));
                    }
                    let f = &mut faults[k];
                    for fault in &scenario.faults {
                        match fault {
                            Fault::KeyDisabled { key }
                                if s.action.starts_with("backup.") && mentions(s, key, true) =>
                            {
                                f.permanent = Some((format!("key {key} is disabled"), false));
                            }
                            Fault::BackupCorrupted { source }
                                if s.action.starts_with("backup.") && mentions(s, source, true) =>
                            {
                                f.permanent =
                                    Some((format!("backup {source} fails authentication"), true));
                            }
                            Fault::RegionDown {
                                region,
                                from_ms,
                                until_ms,
                            } if mentions(s, region, false) => {
                                f.windows.push((
                                    *from_ms,
                                    *until_ms,
                                    format!("region {region} is down"),
                                ));
                            }
                            Fault::ProviderUnavailable {
                                provider,
                                from_ms,
                                until_ms,
                            } if &s.provider == provider => {
                                f.windows.push((
                                    *from_ms,
                                    *until_ms,
                                    format!("{provider} is unavailable"),
                                ));
                            }
                            Fault::StepFails {
                                step,
                                probability,
                                transient,
                            } if step == &s.id || step == &s.base_id => {
                                f.fails.push((*probability, *transient));
                            }
                            Fault::Slow { step, duration }
                                if step == &s.id || step == &s.base_id =>
                            {
                                f.slow = Some(*duration);
                            }
                            Fault::ApproverUnavailable { step, delay }
                                if step == &s.id || step == &s.base_id =>
                            {
                                f.approver_delay = Some(*delay);
                            }
                            _ => {}
                        }
                    }
                }
                PlanNode::Milestone(m) => {
                    models.push(DurationModel::Fixed(0));
                    if m.stops_rto && m.modes.contains(&mode) && rto_milestone.is_none() {
                        rto_milestone = Some(k);
                    }
                }
            }
        }
        Self {
            plan,
            mode,
            ids,
            index,
            preds,
            models,
            faults,
            approver_roles: roles.into_iter().collect(),
            rto_milestone,
            rpo_lag: scenario.recovery_point_lag,
            injects: injects(scenario),
            max_parallel: plan
                .runbook
                .max_parallel
                .map_or(8, |m| usize::try_from(m).unwrap_or(8)),
        }
    }

    /// Node ids, by index.
    #[must_use]
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Whether the plan has a milestone that stops the RTO clock in this mode.
    #[must_use]
    pub fn has_rto_milestone(&self) -> bool {
        self.rto_milestone.is_some()
    }

    /// The per-trial random stream: a function of the seed and the trial number only, so results
    /// do not depend on how trials are spread over threads.
    #[must_use]
    pub fn rng(seed: u64, trial: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed ^ trial.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Runs one trial.
    #[must_use]
    pub fn trial(&self, seed: u64, trial: u64) -> Trial {
        self.trial_with(seed, trial, &mut Automatic)
    }

    /// Runs one trial with `who` deciding approvals and hearing what happens.
    pub fn trial_with(&self, seed: u64, trial: u64, who: &mut dyn Participants) -> Trial {
        let mut rng = Self::rng(seed, trial);
        let narrating = who.narrating();
        let mut next_inject = 0usize;
        let mut cfg = Config::new(self.mode, "simulated-initiator", seed.wrapping_add(trial));
        cfg.max_parallel = self.max_parallel;
        let mut sched = Scheduler::new(self.plan, cfg);
        let n = self.ids.len();
        let mut spans: Vec<Option<(u64, u64)>> = vec![None; n];
        let mut starts: Vec<Option<u64>> = vec![None; n];
        let mut queue: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
        let mut events: Vec<Option<Event>> = Vec::new();
        let push = |queue: &mut BinaryHeap<Reverse<(u64, u64)>>,
                    events: &mut Vec<Option<Event>>,
                    at: u64,
                    e: Event| {
            let seq = events.len() as u64;
            events.push(Some(e));
            queue.push(Reverse((at, seq)));
        };
        push(&mut queue, &mut events, 0, Event::Started);
        let mut rto_ms = None;
        let mut outcome = RunOutcome::Interrupted;
        let mut handled = 0usize;
        'run: while let Some(Reverse((now, seq))) = queue.pop() {
            handled += 1;
            if handled > MAX_EVENTS {
                break;
            }
            let Some(event) = events
                .get_mut(usize::try_from(seq).unwrap_or(usize::MAX))
                .and_then(Option::take)
            else {
                continue;
            };
            if narrating {
                while let Some((at, what)) =
                    self.injects.get(next_inject).filter(|(at, _)| *at <= now)
                {
                    who.narrate(*at, &format!("INJECT  {what}"));
                    next_inject += 1;
                }
                match &event {
                    Event::StepSucceeded { step, .. } => {
                        who.narrate(now, &format!("done    {step}"));
                    }
                    Event::StepFailed { step, error, .. } => {
                        who.narrate(now, &format!("failed  {step}: {error}"));
                    }
                    _ => {}
                }
            }
            for action in sched.on_event(&event, now) {
                match action {
                    Action::Execute { step, attempt } => {
                        let Some(&k) = self.index.get(&step) else {
                            continue;
                        };
                        starts[k].get_or_insert(now);
                        if narrating {
                            who.narrate(now, &format!("start   {step} (attempt {attempt})"));
                        }
                        let (after, result) = self.attempt(k, now, &mut rng);
                        let e = match result {
                            Ok(()) => Event::StepSucceeded {
                                step,
                                attempt,
                                outputs: Default::default(),
                            },
                            Err((error, transient)) => Event::StepFailed {
                                step,
                                attempt,
                                error,
                                transient,
                            },
                        };
                        push(&mut queue, &mut events, now + after, e);
                    }
                    Action::SetTimer {
                        step,
                        attempt,
                        timer,
                        at_ms,
                    } => {
                        push(
                            &mut queue,
                            &mut events,
                            at_ms,
                            Event::TimerFired {
                                step,
                                attempt,
                                timer,
                            },
                        );
                    }
                    Action::AwaitApproval { step, required } => {
                        let Some(&k) = self.index.get(&step) else {
                            continue;
                        };
                        starts[k].get_or_insert(now);
                        let delay = match self.faults[k].approver_delay {
                            Some(s) => sample_span(s, &mut rng),
                            None => self.models[k].sample(&mut rng),
                        };
                        let Some((delay, approvers)) = who.approve(&step, required, now, delay)
                        else {
                            outcome = RunOutcome::Interrupted;
                            break 'run;
                        };
                        for operator in approvers {
                            push(
                                &mut queue,
                                &mut events,
                                now + delay,
                                Event::Approved {
                                    step: step.clone(),
                                    operator,
                                    roles: self.approver_roles.clone(),
                                },
                            );
                        }
                    }
                    Action::StepDone { step }
                    | Action::Skip { step, .. }
                    | Action::StepGaveUp { step, .. } => {
                        if let Some(&k) = self.index.get(&step) {
                            spans[k] = Some((starts[k].unwrap_or(now), now));
                        }
                    }
                    Action::Compensate { step } => {
                        let undo = self
                            .index
                            .get(&step)
                            .map_or(0, |&k| self.models[k].sample(&mut rng));
                        push(
                            &mut queue,
                            &mut events,
                            now + undo,
                            Event::CompensationFinished { step, error: None },
                        );
                    }
                    Action::MilestoneReached { milestone, at_ms } => {
                        if narrating {
                            who.narrate(at_ms, &format!("MILESTONE {milestone}"));
                        }
                        if let Some(&k) = self.index.get(&milestone) {
                            spans[k] = Some((at_ms, at_ms));
                            if Some(k) == self.rto_milestone {
                                rto_ms = Some(at_ms);
                            }
                        }
                    }
                    Action::Finished { outcome: o } => {
                        outcome = o;
                        break 'run;
                    }
                    Action::Abandon { .. }
                    | Action::ApprovalAccepted { .. }
                    | Action::ApprovalRefused { .. } => {}
                }
            }
        }
        let critical = rto_ms.map_or_else(Vec::new, |_| self.critical_path(&spans));
        Trial {
            rto_ms,
            rpo_ms: self.rpo_lag.map(|s| sample_span(s, &mut rng)),
            outcome,
            critical,
            spans,
        }
    }

    /// One attempt of node `k` started at `now`: how long it takes, and whether it fails.
    fn attempt(
        &self,
        k: usize,
        now: u64,
        rng: &mut ChaCha8Rng,
    ) -> (u64, Result<(), (String, bool)>) {
        let f = &self.faults[k];
        let duration = match f.slow {
            Some(s) => sample_span(s, rng),
            None => self.models[k].sample(rng),
        };
        if let Some((why, reads_all)) = &f.permanent {
            return (
                if *reads_all { duration } else { KEY_REFUSED_MS },
                Err((why.clone(), false)),
            );
        }
        if let Some((_, _, why)) = f
            .windows
            .iter()
            .find(|(from, until, _)| (*from..*until).contains(&now))
        {
            return (
                UNAVAILABLE_FAIL_MS.min(duration.max(1)),
                Err((why.clone(), true)),
            );
        }
        for (p, transient) in &f.fails {
            if rng.random_bool(*p) {
                return (duration, Err(("injected failure".into(), *transient)));
            }
        }
        (duration, Ok(()))
    }

    /// Walks back from the RTO milestone through the predecessor that finished last.
    fn critical_path(&self, spans: &[Option<(u64, u64)>]) -> Vec<usize> {
        let Some(mut at) = self.rto_milestone else {
            return Vec::new();
        };
        let mut path = vec![at];
        loop {
            let next = self.preds[at]
                .iter()
                .filter_map(|&p| spans[p].map(|(_, end)| (end, Reverse(p), p)))
                .max()
                .map(|(_, _, p)| p);
            match next {
                Some(p) => {
                    path.push(p);
                    at = p;
                }
                None => break,
            }
        }
        path.reverse();
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_dsl::{CompileOptions, compile_str};

    fn plan(src: &str) -> Plan {
        let cat = drover_adapters::builtin_catalogue();
        let opts = CompileOptions {
            catalogue: &cat,
            vars: Vec::new(),
        };
        let c = compile_str("t.drover", src, &opts);
        c.plan
            .unwrap_or_else(|| panic!("compiles: {:?}", c.diagnostics))
    }

    const CHAIN: &str = r#"runbook "t" {
  rto   = 1h
  rpo   = 1h
  modes = [drill]
}

step a {
  action   = wait
  estimate = 10m
  with {
    duration = 1s
  }
}

step b {
  action   = wait
  after    = [a]
  estimate = 20m
  with {
    duration = 1s
  }
}

step c {
  action   = wait
  estimate = 5m
  with {
    duration = 1s
  }
}

milestone up {
  after     = [b, c]
  stops_rto = true
}
"#;

    #[test]
    fn fixed_estimates_simulate_to_the_critical_path_exactly() {
        let p = plan(CHAIN);
        let prep = Prepared::new(&p, Mode::Drill, &Scenario::default());
        let t = prep.trial(7, 0);
        assert_eq!(t.rto_ms, Some(30 * 60_000));
        assert_eq!(t.outcome, RunOutcome::Succeeded);
        let path: Vec<&str> = t.critical.iter().map(|&k| prep.ids()[k].as_str()).collect();
        assert_eq!(path, ["a", "b", "up"]);
    }

    #[test]
    fn each_fault_kind_changes_the_outcome_it_should() {
        let p = plan(CHAIN);
        let run = |toml: &str| {
            let s = Scenario::parse(toml).expect("scenario");
            Prepared::new(&p, Mode::Drill, &s).trial(1, 0)
        };
        // Slow: c takes 2h and becomes critical.
        let t = run("[[fault]]\nkind = \"slow\"\nstep = \"c\"\nduration = \"2h\"\n");
        assert_eq!(t.rto_ms, Some(2 * 3_600_000));
        // A permanent failure of b fails the run: no RTO.
        let t = run("[[fault]]\nkind = \"step_fails\"\nstep = \"b\"\nprobability = 1.0\n");
        assert_eq!((t.rto_ms, t.outcome), (None, RunOutcome::Failed));
        // The core provider unavailable for the first 10 minutes: without retries, a fails.
        let t = run(
            "[[fault]]\nkind = \"provider_unavailable\"\nprovider = \"core\"\nuntil = \"10m\"\n",
        );
        assert_eq!(t.outcome, RunOutcome::Failed);
        // Recovery point lag gives an RPO.
        let t = run("[recovery_point]\nlag = \"7m\"\n");
        assert_eq!(t.rpo_ms, Some(7 * 60_000));
    }
}

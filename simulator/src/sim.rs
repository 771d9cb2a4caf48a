//! One simulated run (a trial) of a plan through the engine's own scheduler on a virtual clock,
//! and the Monte Carlo over many trials.

use crate::model::DurationModel;
use crate::scenario::{Fault, Scenario, Span, mentions};
use drover_dsl::{Mode, Plan, PlanNode, PlanValue};
use drover_engine::scheduler::{Config, NodeAction, NodeEvent, RunOutcome, Scheduler, TimerKind};
use petgraph::Direction;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

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
#[derive(Debug, Clone, Default, PartialEq)]
struct StepFaults {
    permanent: Option<(String, bool)>,
    windows: Vec<(u64, u64, String)>,
    fails: Vec<(f64, bool)>,
    slow: Option<Span>,
    approver_delay: Option<Span>,
}

/// A plan prepared for many trials: indices, models, faults.
#[derive(Debug)]
pub struct Prepared {
    ids: Vec<String>,
    preds: Vec<Vec<usize>>,
    models: Vec<DurationModel>,
    /// Per node: what the scenario does to it (`None` for most: nothing).
    faults: Vec<Option<Box<StepFaults>>>,
    approver_roles: Vec<String>,
    /// A scheduler for the plan, cloned into each workspace.
    template: Scheduler,
    /// Per node: how many measured durations its model draws from (0: its estimate).
    samples: Vec<usize>,
    rto_milestone: Option<usize>,
    rpo_lag: Option<Span>,
    injects: Vec<(u64, String)>,
}

/// A simulated event waiting in the virtual clock's queue.
#[derive(Debug, Clone, Copy)]
enum SimEvent<'p> {
    Started,
    Succeeded {
        node: usize,
        attempt: u32,
    },
    Failed {
        node: usize,
        attempt: u32,
        error: &'p str,
        transient: bool,
    },
    Timer {
        node: usize,
        attempt: u32,
        timer: TimerKind,
    },
    Approved {
        node: usize,
        approver: usize,
    },
    Compensated {
        node: usize,
    },
}

/// Buffers reused from trial to trial (one per thread): a scheduler, the event queue, the
/// per-node spans of the last trial and its critical path.
#[derive(Debug)]
pub struct Workspace<'p> {
    sched: Scheduler,
    /// Events due, as (when, index into `slab`): the index also keeps events due at the same
    /// time in the order they were made.
    queue: BinaryHeap<Reverse<(u64, u32)>>,
    slab: Vec<SimEvent<'p>>,
    acts: Vec<NodeAction>,
    spans: Vec<Option<(u64, u64)>>,
    starts: Vec<Option<u64>>,
    /// Per node: when its attempt in flight ends.
    ends: Vec<u64>,
    critical: Vec<usize>,
    /// Approvers' names, referred to by index from queued events.
    names: Vec<String>,
}

impl Workspace<'_> {
    /// Per node of the last trial: (start, end) in ms, for nodes that ran.
    #[must_use]
    pub fn spans(&self) -> &[Option<(u64, u64)>] {
        &self.spans
    }

    /// The last trial's critical path to the RTO milestone (node indices, in order).
    #[must_use]
    pub fn critical(&self) -> &[usize] {
        &self.critical
    }
}

/// How a simulated attempt ends: success, or its error and whether a retry may help.
pub type AttemptResult = Result<(), (String, bool)>;

/// How one trial ended (its spans and critical path stay in the [`Workspace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// RTO (ms after declaration) when the RTO milestone was reached.
    pub rto_ms: Option<u64>,
    /// RPO (ms) when the scenario models the recovery point.
    pub rpo_ms: Option<u64>,
    /// How the run ended.
    pub outcome: RunOutcome,
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

impl Prepared {
    /// Prepares `plan` in `mode` under `scenario`, step durations from the runbook's estimates.
    #[must_use]
    pub fn new(plan: &Plan, mode: Mode, scenario: &Scenario) -> Self {
        Self::with_measured(plan, mode, scenario, &BTreeMap::new())
    }

    /// Like [`Prepared::new`], but steps with durations `measured` in past runs (by step id, as
    /// from the journal) draw from those instead of their estimates.
    #[must_use]
    pub fn with_measured(
        plan: &Plan,
        mode: Mode,
        scenario: &Scenario,
        measured: &BTreeMap<String, Vec<u64>>,
    ) -> Self {
        let g = &plan.graph;
        let n = g.node_count();
        let mut ids = Vec::with_capacity(n);
        let mut preds = vec![Vec::new(); n];
        let mut models = Vec::with_capacity(n);
        let mut faults = vec![StepFaults::default(); n];
        let mut samples = vec![0usize; n];
        let mut roles = BTreeSet::new();
        let mut rto_milestone = None;
        for i in g.node_indices() {
            let k = i.index();
            ids.push(g[i].id().to_owned());
            preds[k] = g
                .neighbors_directed(i, Direction::Incoming)
                .map(|p| p.index())
                .collect();
            match &g[i] {
                PlanNode::Step(s) => {
                    match measured
                        .get(&s.id)
                        .and_then(|m| DurationModel::empirical(m))
                    {
                        Some(m) => {
                            samples[k] = measured.get(&s.id).map_or(0, Vec::len);
                            models.push(m);
                        }
                        None => models.push(DurationModel::from_estimate(s.estimate.as_ref())),
                    }
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
        let max_parallel = plan
            .runbook
            .max_parallel
            .map_or(8, |m| usize::try_from(m).unwrap_or(8));
        Self {
            ids,
            preds,
            models,
            faults: faults
                .into_iter()
                .map(|f| (f != StepFaults::default()).then(|| Box::new(f)))
                .collect(),
            approver_roles: roles.into_iter().collect(),
            samples,
            template: {
                let mut cfg = Config::new(mode, "simulated-initiator", 0);
                cfg.max_parallel = max_parallel;
                Scheduler::new(plan, cfg)
            },
            rto_milestone,
            rpo_lag: scenario.recovery_point_lag,
            injects: injects(scenario),
        }
    }

    /// One attempt of step `id` begun at virtual time `now` (ms since the declaration), as a
    /// trial would run it: how long it takes, and its error (`transient`) under the scenario.
    /// `None` for an unknown step.
    pub fn simulate_attempt(
        &self,
        id: &str,
        now: u64,
        rng: &mut ChaCha8Rng,
    ) -> Option<(u64, AttemptResult)> {
        let k = self.ids.iter().position(|x| x == id)?;
        let (after, r) = self.attempt(k, now, rng);
        Some((after, r.map_err(|(e, t)| (e.to_owned(), t))))
    }

    /// The scenario's injects: when each fault begins (virtual ms) and what it is.
    #[must_use]
    pub fn injects(&self) -> &[(u64, String)] {
        &self.injects
    }

    /// Node ids, by index.
    #[must_use]
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Per node: how many measured durations its model draws from (0: its estimate).
    #[must_use]
    pub fn samples(&self) -> &[usize] {
        &self.samples
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
        let mut ws = self.workspace();
        let r = self.run_trial(seed, trial, who, &mut ws);
        Trial {
            rto_ms: r.rto_ms,
            rpo_ms: r.rpo_ms,
            outcome: r.outcome,
            critical: ws.critical.clone(),
            spans: ws.spans.clone(),
        }
    }

    /// Buffers for running many trials one after another without allocating: one per thread.
    #[must_use]
    pub fn workspace(&self) -> Workspace<'_> {
        let n = self.ids.len();
        Workspace {
            sched: self.template.clone(),
            queue: BinaryHeap::with_capacity(64),
            slab: Vec::with_capacity(2 * n + 16),
            acts: Vec::with_capacity(64),
            spans: vec![None; n],
            starts: vec![None; n],
            ends: vec![0; n],
            critical: Vec::new(),
            names: Vec::new(),
        }
    }

    /// Runs one trial in `ws`: afterwards `ws.spans()` and `ws.critical()` describe it.
    pub fn run_trial<'s>(
        &'s self,
        seed: u64,
        trial: u64,
        who: &mut dyn Participants,
        ws: &mut Workspace<'s>,
    ) -> Outcome {
        let mut rng = Self::rng(seed, trial);
        let narrating = who.narrating();
        let mut next_inject = 0usize;
        let Workspace {
            sched,
            queue,
            slab,
            acts,
            spans,
            starts,
            ends,
            critical,
            names,
        } = ws;
        sched.reset(seed.wrapping_add(trial));
        queue.clear();
        slab.clear();
        spans.fill(None);
        starts.fill(None);
        critical.clear();
        let push = |queue: &mut BinaryHeap<Reverse<(u64, u32)>>,
                    slab: &mut Vec<SimEvent<'s>>,
                    at: u64,
                    ev: SimEvent<'s>| {
            let seq = u32::try_from(slab.len()).unwrap_or(u32::MAX);
            slab.push(ev);
            queue.push(Reverse((at, seq)));
        };
        push(queue, slab, 0, SimEvent::Started);
        let mut rto_ms = None;
        let mut outcome = RunOutcome::Interrupted;
        let mut handled = 0usize;
        'run: while let Some(Reverse((now, seq))) = queue.pop() {
            let Some(&ev) = slab.get(seq as usize) else {
                break;
            };
            handled += 1;
            if handled > MAX_EVENTS {
                break;
            }
            if narrating {
                while let Some((at, what)) =
                    self.injects.get(next_inject).filter(|(at, _)| *at <= now)
                {
                    who.narrate(*at, &format!("INJECT  {what}"));
                    next_inject += 1;
                }
                match ev {
                    SimEvent::Succeeded { node, .. } => {
                        who.narrate(now, &format!("done    {}", self.ids[node]));
                    }
                    SimEvent::Failed { node, error, .. } => {
                        who.narrate(now, &format!("failed  {}: {error}", self.ids[node]));
                    }
                    _ => {}
                }
            }
            let event = match ev {
                SimEvent::Started => NodeEvent::Started,
                SimEvent::Succeeded { node, attempt } => NodeEvent::Succeeded {
                    node,
                    attempt,
                    outputs: None,
                },
                SimEvent::Failed {
                    node,
                    attempt,
                    error,
                    transient,
                } => NodeEvent::Failed {
                    node,
                    attempt,
                    error,
                    transient,
                },
                SimEvent::Timer {
                    node,
                    attempt,
                    timer,
                } => NodeEvent::TimerFired {
                    node,
                    attempt,
                    timer,
                },
                SimEvent::Approved { node, approver } => NodeEvent::Approved {
                    node,
                    operator: &names[approver],
                    roles: &self.approver_roles,
                },
                SimEvent::Compensated { node } => {
                    NodeEvent::CompensationFinished { node, error: None }
                }
            };
            acts.clear();
            sched.on_node_event(event, now, acts);
            for action in acts.drain(..) {
                match action {
                    NodeAction::Execute { node: k, attempt } => {
                        starts[k].get_or_insert(now);
                        if narrating {
                            who.narrate(
                                now,
                                &format!("start   {} (attempt {attempt})", self.ids[k]),
                            );
                        }
                        let (after, result) = self.attempt(k, now, &mut rng);
                        let ev = match result {
                            Ok(()) => SimEvent::Succeeded { node: k, attempt },
                            Err((error, transient)) => SimEvent::Failed {
                                node: k,
                                attempt,
                                error,
                                transient,
                            },
                        };
                        ends[k] = now + after;
                        push(queue, slab, now + after, ev);
                    }
                    // A timeout due no earlier than the attempt's result cannot fire: the result,
                    // queued first, clears it. Not queueing it changes nothing but the cost.
                    NodeAction::SetTimer {
                        node,
                        timer: TimerKind::Timeout,
                        at_ms,
                        ..
                    } if at_ms >= ends[node] => {}
                    NodeAction::SetTimer {
                        node,
                        attempt,
                        timer,
                        at_ms,
                    } => push(
                        queue,
                        slab,
                        at_ms,
                        SimEvent::Timer {
                            node,
                            attempt,
                            timer,
                        },
                    ),
                    NodeAction::AwaitApproval { node: k, required } => {
                        starts[k].get_or_insert(now);
                        let delay = match self.faults[k].as_ref().and_then(|f| f.approver_delay) {
                            Some(s) => sample_span(s, &mut rng),
                            None => self.models[k].sample(&mut rng),
                        };
                        let Some((delay, approvers)) =
                            who.approve(&self.ids[k], required, now, delay)
                        else {
                            outcome = RunOutcome::Interrupted;
                            break 'run;
                        };
                        for name in approvers {
                            let approver =
                                names.iter().position(|a| *a == name).unwrap_or_else(|| {
                                    names.push(name);
                                    names.len() - 1
                                });
                            push(
                                queue,
                                slab,
                                now + delay,
                                SimEvent::Approved { node: k, approver },
                            );
                        }
                    }
                    NodeAction::StepDone { node: k }
                    | NodeAction::Skip { node: k, .. }
                    | NodeAction::StepGaveUp { node: k, .. } => {
                        spans[k] = Some((starts[k].unwrap_or(now), now));
                    }
                    NodeAction::Compensate { node: k } => {
                        let undo = self.models[k].sample(&mut rng);
                        push(queue, slab, now + undo, SimEvent::Compensated { node: k });
                    }
                    NodeAction::MilestoneReached { node: k, at_ms } => {
                        if narrating {
                            who.narrate(at_ms, &format!("MILESTONE {}", self.ids[k]));
                        }
                        spans[k] = Some((at_ms, at_ms));
                        if Some(k) == self.rto_milestone {
                            rto_ms = Some(at_ms);
                        }
                    }
                    NodeAction::Finished { outcome: o } => {
                        outcome = o;
                        break 'run;
                    }
                    NodeAction::Abandon { .. }
                    | NodeAction::ApprovalAccepted { .. }
                    | NodeAction::ApprovalRefused { .. }
                    | NodeAction::DenialCounted { .. }
                    | NodeAction::BrokeGlass { .. }
                    | NodeAction::AwaitRollbackApproval { .. }
                    | NodeAction::RollbackApprovalAccepted { .. }
                    | NodeAction::RollbackApprovalRefused { .. } => {}
                }
            }
        }
        if rto_ms.is_some() {
            self.critical_path(spans, critical);
        }
        Outcome {
            rto_ms,
            rpo_ms: self.rpo_lag.map(|s| sample_span(s, &mut rng)),
            outcome,
        }
    }

    /// One attempt of node `k` started at `now`: how long it takes, and whether it fails.
    fn attempt(&self, k: usize, now: u64, rng: &mut ChaCha8Rng) -> (u64, Result<(), (&str, bool)>) {
        let Some(f) = self.faults[k].as_deref() else {
            return (self.models[k].sample(rng), Ok(()));
        };
        let duration = match f.slow {
            Some(s) => sample_span(s, rng),
            None => self.models[k].sample(rng),
        };
        if let Some((why, reads_all)) = &f.permanent {
            return (
                if *reads_all { duration } else { KEY_REFUSED_MS },
                Err((why.as_str(), false)),
            );
        }
        if let Some((_, _, why)) = f
            .windows
            .iter()
            .find(|(from, until, _)| (*from..*until).contains(&now))
        {
            return (
                UNAVAILABLE_FAIL_MS.min(duration.max(1)),
                Err((why.as_str(), true)),
            );
        }
        for (p, transient) in &f.fails {
            if rng.random_bool(*p) {
                return (duration, Err(("injected failure", *transient)));
            }
        }
        (duration, Ok(()))
    }

    /// Walks back from the RTO milestone through the predecessor that finished last.
    fn critical_path(&self, spans: &[Option<(u64, u64)>], path: &mut Vec<usize>) {
        let Some(mut at) = self.rto_milestone else {
            return;
        };
        path.push(at);
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
            operators: None,
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

    const RESTORE: &str = r#"runbook "t" {
  rto   = 4h
  rpo   = 1h
  modes = [drill]
}

step restore {
  action   = backup.rehydrate
  estimate = 10m
  retry {
    attempts = 4
    backoff  = 5m
  }
  with {
    source = "/backups/us-east-1/db.dbk"
    key    = "file:/keys/kek"
    dest   = "/restore/db"
  }
}

step approve {
  action   = approval
  after    = [restore]
  estimate = 2m
  with {
    prompt = "cut over?"
  }
}

milestone up {
  after     = [approve]
  stops_rto = true
}
"#;

    #[test]
    fn region_key_backup_and_approver_faults_change_the_outcome_they_should() {
        let p = plan(RESTORE);
        let run = |toml: &str| {
            let s = Scenario::parse(toml).expect("scenario");
            Prepared::new(&p, Mode::Drill, &s).trial(1, 0)
        };
        let base = run("");
        assert_eq!(
            (base.rto_ms, base.outcome),
            (Some(12 * 60_000), RunOutcome::Succeeded)
        );
        // The region the backup lives in is down for 8 minutes: attempts fail fast (transient)
        // and retry after backoff; the restore succeeds later, so the RTO grows.
        let t = run("[[fault]]\nkind = \"region_down\"\nregion = \"us-east-1\"\nuntil = \"8m\"\n");
        assert_eq!(t.outcome, RunOutcome::Succeeded);
        assert!(
            t.rto_ms.is_some_and(|r| r > 12 * 60_000 + 8 * 60_000),
            "{t:?}"
        );
        // Down for good: the retries run out.
        let t = run("[[fault]]\nkind = \"region_down\"\nregion = \"us-east-1\"\n");
        assert_eq!((t.rto_ms, t.outcome), (None, RunOutcome::Failed));
        // A disabled key and a corrupted backup are permanent: no retry helps.
        for fault in [
            "kind = \"key_disabled\"\nkey = \"file:/keys/kek\"",
            "kind = \"backup_corrupted\"\nsource = \"/backups/us-east-1/db.dbk\"",
        ] {
            let t = run(&format!("[[fault]]\n{fault}\n"));
            assert_eq!((t.rto_ms, t.outcome), (None, RunOutcome::Failed), "{fault}");
        }
        // A key the plan does not use changes nothing.
        let t = run("[[fault]]\nkind = \"key_disabled\"\nkey = \"file:/keys/other\"\n");
        assert_eq!(t.rto_ms, base.rto_ms);
        // Approvers away for 45 minutes: the approval waits that long instead of 2 minutes.
        let t = run(
            "[[fault]]\nkind = \"approver_unavailable\"\nstep = \"approve\"\ndelay = \"45m\"\n",
        );
        assert_eq!(t.rto_ms, Some(55 * 60_000));
    }

    // The benchmark's second shape: the limit binds (never more than six steps at once in any
    // trial), approvals gate the layers, and the summary does not depend on the thread count.
    #[test]
    fn the_wide_synthetic_runbook_keeps_its_limit_and_simulates_the_same_on_any_thread_count() {
        let p = plan(&drover_dsl::synthetic_wide_runbook(300));
        assert_eq!(p.runbook.max_parallel, Some(6));
        let prep = Prepared::new(&p, Mode::Failover, &Scenario::default());
        let mut ws = prep.workspace();
        for trial in 0..20 {
            let o = prep.run_trial(9, trial, &mut Automatic, &mut ws);
            assert_eq!(o.outcome, RunOutcome::Succeeded);
            let mut edges: Vec<(u64, i32)> = Vec::new();
            for (k, span) in ws.spans().iter().enumerate() {
                let Some((s, e)) = span else { continue };
                // Steps that take time and are not approvals (those wait, they do not run).
                if e > s && !prep.ids()[k].starts_with("gate") {
                    edges.extend([(*s, 1), (*e, -1)]);
                }
            }
            edges.sort_unstable_by_key(|&(t, d)| (t, d));
            let peak = edges
                .iter()
                .scan(0, |n, &(_, d)| {
                    *n += d;
                    Some(*n)
                })
                .max();
            assert_eq!(peak, Some(6), "trial {trial}");
        }
        let summary = |threads| {
            crate::run(
                &prep,
                &p,
                "",
                "failover",
                crate::Settings {
                    trials: 500,
                    seed: 3,
                    threads,
                },
            )
        };
        let one = summary(1);
        assert_eq!(one, summary(2));
        assert!(
            one.median_critical_path
                .iter()
                .any(|s| s.starts_with("gate"))
        );
    }
}

//! Monte Carlo over many trials, in parallel, reproducibly: trial `i` draws from a stream that
//! depends only on the seed and `i`, and every aggregate is an integer sum or a list kept in trial
//! order, so the summary is byte-identical whatever the thread count.

use crate::sim::{Automatic, Outcome, Prepared};
use drover_engine::scheduler::RunOutcome;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Trials per work unit.
const CHUNK: usize = 64;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Number of trials.
    pub trials: u64,
    /// Seed.
    pub seed: u64,
    /// Worker threads (at least 1).
    pub threads: usize,
}

/// Percentiles of a distribution (ms); trials that never reached the milestone count as
/// "never" (above every finite value).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distribution {
    /// Median.
    pub p50_ms: Option<u64>,
    /// 90th percentile.
    pub p90_ms: Option<u64>,
    /// 95th percentile.
    pub p95_ms: Option<u64>,
    /// 99th percentile.
    pub p99_ms: Option<u64>,
    /// Largest.
    pub max_ms: Option<u64>,
    /// The target (ms), if the runbook sets one.
    pub target_ms: Option<u64>,
    /// Share of trials at or under the target.
    pub p_meet_target: Option<f64>,
}

/// The RTO distribution as counts in equal-width bins, for pictures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Histogram {
    /// Lower edge of the first bin (ms): the smallest RTO.
    pub from_ms: u64,
    /// Width of each bin (ms).
    pub bin_ms: u64,
    /// Trials per bin.
    pub counts: Vec<u64>,
    /// Trials that never reached the RTO milestone.
    pub never: u64,
}

/// Bins for the histogram.
const BINS: u64 = 40;

fn histogram(values: &[Option<u64>]) -> Histogram {
    let finite = || values.iter().filter_map(|v| *v);
    let never = values.iter().filter(|v| v.is_none()).count() as u64;
    let (Some(lo), Some(hi)) = (finite().min(), finite().max()) else {
        return Histogram {
            from_ms: 0,
            bin_ms: 0,
            counts: Vec::new(),
            never,
        };
    };
    let bin_ms = ((hi - lo) / BINS + 1).max(1);
    let mut counts = vec![0u64; usize::try_from((hi - lo) / bin_ms + 1).unwrap_or(1)];
    for v in finite() {
        if let Some(c) = counts.get_mut(usize::try_from((v - lo) / bin_ms).unwrap_or(usize::MAX)) {
            *c += 1;
        }
    }
    Histogram {
        from_ms: lo,
        bin_ms,
        counts,
        never,
    }
}

/// One step's share in the outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepStats {
    /// Node id.
    pub id: String,
    /// Share of trials in which it was on the critical path.
    pub criticality: f64,
    /// Correlation of its duration with the RTO across trials (how much it drives the RTO).
    pub sensitivity: f64,
    /// Mean duration (ms) over trials in which it ran.
    pub mean_ms: u64,
    /// How many durations measured in past runs its model draws from (0: its estimate).
    pub measured: u64,
}

/// The result of a Monte Carlo simulation. Marked simulated: it never counts as a verified
/// recovery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Always true.
    pub simulated: bool,
    /// Runbook name.
    pub runbook: String,
    /// Mode.
    pub mode: String,
    /// Scenario name (empty: none).
    pub scenario: String,
    /// Trials run.
    pub trials: u64,
    /// Seed.
    pub seed: u64,
    /// Share of trials that reached the RTO milestone.
    pub p_recovered: f64,
    /// RTO distribution.
    pub rto: Distribution,
    /// RTO histogram.
    pub rto_histogram: Histogram,
    /// RPO distribution (when the scenario models the recovery point).
    pub rpo: Option<Distribution>,
    /// How trials ended.
    pub outcomes: BTreeMap<String, u64>,
    /// The critical path of the median trial.
    pub median_critical_path: Vec<String>,
    /// How the median trial ended.
    pub median_outcome: String,
    /// The median trial's timeline: (node, start ms, end ms).
    pub median_timeline: Vec<(String, u64, u64)>,
    /// Per step, most critical first.
    pub steps: Vec<StepStats>,
    /// Steps whose durations were drawn from past runs rather than their estimates.
    pub measured_steps: u64,
}

#[derive(Default)]
struct Chunk {
    rto: Vec<Option<u64>>,
    rpo: Vec<Option<u64>>,
    outcomes: BTreeMap<String, u64>,
    critical: Vec<u64>,
    // Per node: trials ran, Σx, Σx², Σxy (x = duration, y = RTO, over trials with an RTO).
    ran: Vec<u64>,
    sum_x_all: Vec<u128>,
    n_xy: Vec<i128>,
    sx: Vec<i128>,
    sxx: Vec<i128>,
    sxy: Vec<i128>,
    sy: Vec<i128>,
    syy: Vec<i128>,
}

impl Chunk {
    fn new(n: usize) -> Self {
        Self {
            critical: vec![0; n],
            ran: vec![0; n],
            sum_x_all: vec![0; n],
            n_xy: vec![0; n],
            sx: vec![0; n],
            sxx: vec![0; n],
            sxy: vec![0; n],
            sy: vec![0; n],
            syy: vec![0; n],
            ..Self::default()
        }
    }

    fn add(&mut self, t: Outcome, spans: &[Option<(u64, u64)>], critical: &[usize]) {
        self.rto.push(t.rto_ms);
        self.rpo.push(t.rpo_ms);
        match self.outcomes.get_mut(RunOutcome::as_str(t.outcome)) {
            Some(c) => *c += 1,
            None => {
                self.outcomes
                    .insert(RunOutcome::as_str(t.outcome).to_owned(), 1);
            }
        }
        for &k in critical {
            self.critical[k] += 1;
        }
        for (k, span) in spans.iter().enumerate() {
            let Some((s, e)) = span else { continue };
            let x = i128::from(e - s);
            self.ran[k] += 1;
            self.sum_x_all[k] += u128::from(e - s);
            if let Some(y) = t.rto_ms.map(i128::from) {
                self.n_xy[k] += 1;
                self.sx[k] += x;
                self.sxx[k] += x * x;
                self.sxy[k] += x * y;
                self.sy[k] += y;
                self.syy[k] += y * y;
            }
        }
    }

    fn merge(&mut self, o: Chunk) {
        self.rto.extend(o.rto);
        self.rpo.extend(o.rpo);
        for (k, v) in o.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        for k in 0..self.critical.len() {
            self.critical[k] += o.critical[k];
            self.ran[k] += o.ran[k];
            self.sum_x_all[k] += o.sum_x_all[k];
            self.n_xy[k] += o.n_xy[k];
            self.sx[k] += o.sx[k];
            self.sxx[k] += o.sxx[k];
            self.sxy[k] += o.sxy[k];
            self.sy[k] += o.sy[k];
            self.syy[k] += o.syy[k];
        }
    }
}

#[allow(clippy::cast_precision_loss, reason = "ratios for display")]
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        round4(a as f64 / b as f64)
    }
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

fn distribution(values: &[Option<u64>], target_ms: Option<u64>) -> Distribution {
    // None sorts above every value: "never reached".
    let mut v: Vec<u64> = values.iter().map(|x| x.unwrap_or(u64::MAX)).collect();
    v.sort_unstable();
    let at = |q: f64| -> Option<u64> {
        if v.is_empty() {
            return None;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index within the vector"
        )]
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        Some(v[i]).filter(|x| *x != u64::MAX)
    };
    let meet = target_ms
        .filter(|t| *t > 0)
        .map(|t| ratio(v.iter().filter(|x| **x <= t).count() as u64, v.len() as u64));
    Distribution {
        p50_ms: at(0.50),
        p90_ms: at(0.90),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
        max_ms: at(1.0),
        target_ms: target_ms.filter(|t| *t > 0),
        p_meet_target: meet,
    }
}

/// Runs the simulation.
#[must_use]
pub fn run(
    prep: &Prepared,
    plan: &drover_dsl::Plan,
    scenario_name: &str,
    mode: &str,
    s: Settings,
) -> Summary {
    let n = prep.ids().len();
    let trials = usize::try_from(s.trials).unwrap_or(usize::MAX);
    let chunks = trials.div_ceil(CHUNK);
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, Chunk)>> = Mutex::new(Vec::with_capacity(chunks));
    std::thread::scope(|scope| {
        for _ in 0..s.threads.max(1).min(chunks.max(1)) {
            scope.spawn(|| {
                let mut ws = prep.workspace();
                loop {
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    if c >= chunks {
                        break;
                    }
                    let mut agg = Chunk::new(n);
                    for t in (c * CHUNK)..((c + 1) * CHUNK).min(trials) {
                        let o = prep.run_trial(s.seed, t as u64, &mut Automatic, &mut ws);
                        agg.add(o, ws.spans(), ws.critical());
                    }
                    if let Ok(mut d) = done.lock() {
                        d.push((c, agg));
                    }
                }
            });
        }
    });
    let mut parts = done.into_inner().unwrap_or_default();
    parts.sort_by_key(|(c, _)| *c);
    let mut all = Chunk::new(n);
    for (_, p) in parts {
        all.merge(p);
    }

    // The median trial, re-run for its critical path and timeline (trials are reproducible).
    let mut order: Vec<(u64, usize)> = all
        .rto
        .iter()
        .enumerate()
        .map(|(i, r)| (r.unwrap_or(u64::MAX), i))
        .collect();
    order.sort_unstable();
    let mut median_outcome = String::new();
    let (median_critical_path, median_timeline) = match order.get(order.len() / 2) {
        Some(&(_, i)) if !order.is_empty() => {
            let t = prep.trial(s.seed, i as u64);
            RunOutcome::as_str(t.outcome).clone_into(&mut median_outcome);
            let ids = prep.ids();
            let path = t.critical.iter().map(|&k| ids[k].clone()).collect();
            let mut timeline: Vec<(String, u64, u64)> = t
                .spans
                .iter()
                .enumerate()
                .filter_map(|(k, sp)| sp.map(|(a, b)| (ids[k].clone(), a, b)))
                .collect();
            timeline.sort_by(|a, b| (a.1, a.2, &a.0).cmp(&(b.1, b.2, &b.0)));
            (path, timeline)
        }
        _ => (Vec::new(), Vec::new()),
    };

    let mut steps: Vec<StepStats> = (0..n)
        .filter(|&k| all.ran[k] > 0)
        .map(|k| {
            let m = all.n_xy[k];
            let cov = m * all.sxy[k] - all.sx[k] * all.sy[k];
            let vx = m * all.sxx[k] - all.sx[k] * all.sx[k];
            let vy = m * all.syy[k] - all.sy[k] * all.sy[k];
            #[allow(clippy::cast_precision_loss, reason = "a correlation for display")]
            let r = if vx > 0 && vy > 0 {
                round4(cov as f64 / ((vx as f64).sqrt() * (vy as f64).sqrt()))
            } else {
                0.0
            };
            StepStats {
                id: prep.ids()[k].clone(),
                criticality: ratio(all.critical[k], s.trials),
                sensitivity: r,
                mean_ms: u64::try_from(all.sum_x_all[k] / u128::from(all.ran[k]))
                    .unwrap_or(u64::MAX),
                measured: prep.samples()[k] as u64,
            }
        })
        .collect();
    steps.sort_by(|a, b| {
        b.criticality
            .total_cmp(&a.criticality)
            .then(b.sensitivity.total_cmp(&a.sensitivity))
            .then(a.id.cmp(&b.id))
    });

    let recovered = all.rto.iter().filter(|r| r.is_some()).count() as u64;
    Summary {
        simulated: true,
        runbook: plan.runbook.name.clone(),
        mode: mode.to_owned(),
        scenario: scenario_name.to_owned(),
        trials: s.trials,
        seed: s.seed,
        p_recovered: ratio(recovered, s.trials),
        rto: distribution(&all.rto, Some(plan.runbook.rto_ms)),
        rto_histogram: histogram(&all.rto),
        rpo: all
            .rpo
            .iter()
            .any(Option::is_some)
            .then(|| distribution(&all.rpo, Some(plan.runbook.rpo_ms))),
        outcomes: all.outcomes,
        median_critical_path,
        median_outcome,
        median_timeline,
        steps,
        measured_steps: prep.samples().iter().filter(|&&c| c > 0).count() as u64,
    }
}

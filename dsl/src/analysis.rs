//! Static analysis of a compiled plan for one mode: parallel stages, the critical path by
//! `estimate`, and the predicted RTO range against the target — before anything runs.
//!
//! Steps that do not run in the mode are skipped: they take no time and count as done for their
//! dependents, as the engine treats them.

use crate::duration::format_duration;
use crate::plan::{Plan, PlanNode};
use crate::runbook::Mode;
use petgraph::Direction;
use petgraph::graph::NodeIndex;
use serde::Serialize;

/// The analysis of a plan in one mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Analysis {
    /// The mode analysed.
    pub mode: Mode,
    /// Steps that run in this mode.
    pub steps: usize,
    /// Steps skipped in this mode.
    pub skipped: usize,
    /// Groups of steps that can run at the same time, in order.
    pub stages: Vec<Vec<String>>,
    /// The longest chain of steps to the RTO milestone by pessimistic estimate, with each step's
    /// pessimistic duration (ms).
    pub critical_path: Vec<(String, u64)>,
    /// Predicted RTO: (optimistic, pessimistic) in ms, if the plan has an RTO milestone.
    pub predicted_rto_ms: Option<(u64, u64)>,
    /// The RTO target (ms).
    pub rto_target_ms: u64,
    /// The milestone that stops the RTO clock.
    pub rto_milestone: Option<String>,
    /// Steps that run in this mode but have no estimate (counted as zero).
    pub missing_estimates: Vec<String>,
}

impl Analysis {
    /// Whether the pessimistic prediction is within the target.
    #[must_use]
    pub fn within_target(&self) -> Option<bool> {
        self.predicted_rto_ms
            .map(|(_, hi)| hi <= self.rto_target_ms)
    }
}

/// Analyses `plan` as it would run in `mode`.
#[must_use]
pub fn analyze(plan: &Plan, mode: Mode) -> Analysis {
    let g = &plan.graph;
    let order = petgraph::algo::toposort(g, None).unwrap_or_default();
    let n = g.node_count();
    let active = |i: NodeIndex| matches!(&g[i], PlanNode::Step(s) if s.modes.contains(&mode));
    let bounds = |i: NodeIndex| match &g[i] {
        PlanNode::Step(s) if s.modes.contains(&mode) => s.estimate.map_or((0, 0), |e| e.bounds()),
        _ => (0, 0),
    };
    let mut depth = vec![0usize; n];
    let mut lo = vec![0u64; n];
    let mut hi = vec![0u64; n];
    let mut via: Vec<Option<NodeIndex>> = vec![None; n];
    for &i in &order {
        let (mut d, mut l, mut h, mut best) = (0usize, 0u64, 0u64, None);
        let mut preds: Vec<NodeIndex> = g.neighbors_directed(i, Direction::Incoming).collect();
        preds.sort();
        for p in preds {
            d = d.max(depth[p.index()] + usize::from(active(p)));
            l = l.max(lo[p.index()]);
            if hi[p.index()] > h || best.is_none() {
                h = h.max(hi[p.index()]);
                best = Some(p);
            }
        }
        let (bl, bh) = bounds(i);
        depth[i.index()] = d;
        lo[i.index()] = l.saturating_add(bl);
        hi[i.index()] = h.saturating_add(bh);
        via[i.index()] = best;
    }
    let mut stages: Vec<Vec<String>> = Vec::new();
    let mut missing = Vec::new();
    let mut steps = 0;
    let mut skipped = 0;
    for i in g.node_indices() {
        let PlanNode::Step(s) = &g[i] else { continue };
        if !active(i) {
            skipped += 1;
            continue;
        }
        steps += 1;
        if s.estimate.is_none() {
            missing.push(s.id.clone());
        }
        let d = depth[i.index()];
        if stages.len() <= d {
            stages.resize(d + 1, Vec::new());
        }
        stages[d].push(s.id.clone());
    }
    stages.retain(|s| !s.is_empty());
    let rto = g
        .node_indices()
        .find(|&i| matches!(&g[i], PlanNode::Milestone(m) if m.stops_rto));
    let end = rto.or_else(|| {
        g.node_indices()
            .filter(|&i| active(i))
            .max_by_key(|&i| (hi[i.index()], std::cmp::Reverse(i)))
    });
    let mut critical_path = Vec::new();
    let mut cur = end;
    while let Some(i) = cur {
        if active(i) {
            critical_path.push((g[i].id().to_owned(), bounds(i).1));
        }
        cur = via[i.index()];
    }
    critical_path.reverse();
    Analysis {
        mode,
        steps,
        skipped,
        stages,
        critical_path,
        predicted_rto_ms: rto.map(|i| (lo[i.index()], hi[i.index()])),
        rto_target_ms: plan.runbook.rto_ms,
        rto_milestone: rto.map(|i| g[i].id().to_owned()),
        missing_estimates: missing,
    }
}

/// The analysis as text, for `drover plan`.
#[must_use]
pub fn render_text(plan: &Plan, a: &Analysis) -> String {
    let mut s = String::new();
    let r = &plan.runbook;
    s.push_str(&format!("runbook   {} ({})\n", r.name, r.source));
    if let Some(o) = &r.owner {
        s.push_str(&format!("owner     {o}\n"));
    }
    s.push_str(&format!(
        "targets   RTO {}  RPO {}\n",
        format_duration(r.rto_ms),
        format_duration(r.rpo_ms)
    ));
    s.push_str(&format!(
        "mode      {} ({} steps, {} skipped in this mode)\n\n",
        a.mode.as_str(),
        a.steps,
        a.skipped
    ));
    s.push_str("parallel stages\n");
    let width = a.stages.len().to_string().len();
    for (k, stage) in a.stages.iter().enumerate() {
        s.push_str(&format!("  {:>width$}. {}\n", k + 1, stage.join(", ")));
    }
    s.push_str("\ncritical path (pessimistic estimates)\n");
    let idw = a
        .critical_path
        .iter()
        .map(|(id, _)| id.len())
        .max()
        .unwrap_or(0);
    let mut total = 0u64;
    for (id, ms) in &a.critical_path {
        total = total.saturating_add(*ms);
        s.push_str(&format!(
            "  {id:<idw$}  {:>8}  (at {})\n",
            format_duration(*ms),
            format_duration(total)
        ));
    }
    s.push('\n');
    match (a.predicted_rto_ms, &a.rto_milestone) {
        (Some((lo, hi)), Some(m)) => {
            let verdict = if hi <= a.rto_target_ms {
                "within target"
            } else if lo <= a.rto_target_ms {
                "AT RISK: the pessimistic estimate exceeds the target"
            } else {
                "MISSES TARGET: even the optimistic estimate exceeds it"
            };
            s.push_str(&format!(
                "predicted RTO  {} .. {}  to `{m}`, target {}: {verdict}\n",
                format_duration(lo),
                format_duration(hi),
                format_duration(a.rto_target_ms)
            ));
        }
        _ => s.push_str("predicted RTO  unknown: no milestone stops the RTO clock\n"),
    }
    if !a.missing_estimates.is_empty() {
        s.push_str(&format!(
            "note: {} step(s) without an estimate count as 0s: {}\n",
            a.missing_estimates.len(),
            a.missing_estimates.join(", ")
        ));
    }
    s
}

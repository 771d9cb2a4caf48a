//! Graph checks and safety lints, run on the assembled DAG: dependency cycles, steps that can
//! never run, the RTO milestone, drills touching production, and the three safety lints.

use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::plan::{Dependency, PlanNode};
use crate::runbook::{Lint, Mode, ModeSet, Production};
use crate::span::Span;
use drover_schema::{Catalogue, Effect, Role};
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// What the checks need besides the graph. Step `i` of the slices is node `i`; milestones follow
/// the steps.
pub struct Context<'a> {
    /// The modes the runbook supports.
    pub runbook_modes: ModeSet,
    /// Whether the file has a header (no RTO-milestone error without one).
    pub has_header: bool,
    /// The header's name, where file-wide findings point.
    pub header_span: Span,
    /// Production resources.
    pub production: &'a Production,
    /// Where each step instance's parts were written.
    pub steps: StepSpans<'a>,
    /// Each milestone's id span.
    pub milestone_spans: &'a [Span],
    /// The action catalogue (to know which inputs name resources).
    pub catalogue: &'a dyn Catalogue,
}

type Graph = DiGraph<PlanNode, Dependency>;

/// Where the parts of a step definition were written that findings point at.
#[derive(Debug, Clone, Copy)]
pub struct DefSpans {
    /// Its id.
    pub id: Span,
    /// Its inputs: a range of [`StepSpans::inputs`].
    pub inputs: (u32, u32),
}

/// A part of a step definition that few steps have, kept apart ([`StepSpans::parts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// `modes`.
    Modes,
    /// `when`.
    When,
    /// The `break_glass` tag.
    BreakGlass,
}

/// Where each step instance's parts were written, through its definition: step `i` is node `i`
/// (instances of one definition share its spans, so nothing is held per instance but an index).
#[derive(Clone, Copy)]
pub struct StepSpans<'a> {
    /// Each instance's definition.
    pub def_of: &'a [u32],
    /// By definition.
    pub defs: &'a [DefSpans],
    /// The inputs findings point at ([`points_at`]), with their values' spans, one definition
    /// after another.
    pub inputs: &'a [(&'a str, Span)],
    /// Where the rarer parts were written, by definition and part, sorted.
    pub parts: &'a [(u32, Part, Span)],
}

/// Whether a finding may point at this input of this action, so that the compiler keeps where
/// its value was written: an input naming a resource (a drill touching production), an
/// approval's `roles` (a role nobody holds).
pub fn points_at(action: &drover_schema::ActionSchema, input: &drover_schema::InputSpec) -> bool {
    input.resource || (action.role == Role::Approval && input.name == "roles")
}

impl<'a> StepSpans<'a> {
    /// How many step instances there are.
    pub fn len(&self) -> usize {
        self.def_of.len()
    }

    /// The spans of instance `i`'s definition.
    pub fn of(&self, i: usize) -> Option<&'a DefSpans> {
        let d = *self.def_of.get(i)?;
        self.defs.get(usize::try_from(d).ok()?)
    }

    /// Where a part of instance `i`'s definition was written, if it has that part.
    pub fn part(&self, i: usize, part: Part) -> Option<Span> {
        let d = *self.def_of.get(i)?;
        self.parts
            .binary_search_by(|&(pd, pp, _)| (pd, pp).cmp(&(d, part)))
            .ok()
            .map(|k| self.parts[k].2)
    }

    /// Where instance `i`'s inputs were written: the action's input name and the value's span.
    pub fn inputs(&self, i: usize) -> &'a [(&'a str, Span)] {
        self.of(i)
            .and_then(|d| self.inputs.get(d.inputs.0 as usize..d.inputs.1 as usize))
            .unwrap_or(&[])
    }
}

/// Where each dependency was written, by `(waited for, waiting)` node: the compiler's edge table.
pub type EdgeSpans = std::collections::BTreeMap<(usize, usize), (Dependency, Span)>;

fn edge_span(edges: &EdgeSpans, a: NodeIndex, b: NodeIndex) -> Option<Span> {
    edges.get(&(a.index(), b.index())).map(|&(_, span)| span)
}

/// Runs every graph check. Returns false if the graph has a cycle (the plan cannot be ordered).
pub fn run(
    graph: &mut Graph,
    edge_spans: &EdgeSpans,
    ctx: &Context<'_>,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let order = match petgraph::algo::toposort(&*graph, None) {
        Ok(order) => order,
        Err(_) => {
            cycles(graph, edge_spans, diags);
            return false;
        }
    };
    let modes: Vec<ModeSet> = graph
        .node_indices()
        .map(|i| ModeSet::of(graph[i].modes().iter().copied()))
        .collect();
    unreachable(graph, &order, &modes, edge_spans, ctx, diags);
    rto_milestone(graph, ctx, diags);
    drill_production(graph, ctx, diags);
    unapproved_destructive(graph, &order, &modes, ctx, diags);
    unverified_cutover(graph, &order, ctx, diags);
    missing_compensate(graph, ctx, diags);
    true
}

fn step_span(ctx: &Context<'_>, i: NodeIndex) -> Span {
    ctx.steps.of(i.index()).map_or(ctx.header_span, |d| d.id)
}

fn mode_names(set: ModeSet) -> String {
    set.modes()
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn waived(graph: &Graph, i: NodeIndex, lint: Lint) -> bool {
    graph[i]
        .as_step()
        .is_some_and(|s| s.waivers.contains_key(&lint))
}

/// Reports every dependency cycle, with the whole path.
fn cycles(graph: &Graph, edge_spans: &EdgeSpans, diags: &mut Vec<Diagnostic>) {
    for scc in petgraph::algo::tarjan_scc(graph) {
        let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
        let Some(&start) = members.iter().next() else {
            continue;
        };
        // Shortest path start → ... → start along dependency edges (reversed graph edges: a node
        // waits for its predecessors).
        let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        let mut closing = None;
        while let Some(n) = queue.pop_front() {
            let mut preds: Vec<NodeIndex> = graph
                .neighbors_directed(n, Direction::Incoming)
                .filter(|p| members.contains(p))
                .collect();
            preds.sort();
            for p in preds {
                if p == start {
                    closing = Some(n);
                    break;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = parent.entry(p) {
                    e.insert(n);
                    queue.push_back(p);
                }
            }
            if closing.is_some() {
                break;
            }
        }
        let Some(mut n) = closing else { continue };
        let mut path = vec![n];
        while n != start {
            n = parent[&n];
            path.push(n);
        }
        path.reverse();
        // path: start, ..., closing; each waits for the next, closing waits for start.
        let mut ids: Vec<&str> = path.iter().map(|&i| graph[i].id()).collect();
        ids.push(graph[start].id());
        let mut labels = Vec::new();
        for w in path
            .iter()
            .copied()
            .chain([start])
            .collect::<Vec<_>>()
            .windows(2)
        {
            let (waiter, waited) = (w[0], w[1]);
            if let Some(span) = edge_span(edge_spans, waited, waiter) {
                labels.push((
                    span,
                    format!(
                        "`{}` waits for `{}`",
                        graph[waiter].id(),
                        graph[waited].id()
                    ),
                ));
            }
        }
        let Some((first_span, first_msg)) = labels.first().cloned() else {
            continue;
        };
        let mut d = Diagnostic::error(
            Code::DependencyCycle,
            first_span,
            format!("dependency cycle: {}", ids.join(" -> ")),
        )
        .label(first_msg)
        .help("`a -> b` reads `a` waits for `b`; remove one of these dependencies");
        for (span, msg) in labels.into_iter().skip(1) {
            d = d.with(span, msg);
        }
        diags.push(d);
    }
}

/// Steps that can never run: in no supported mode, disabled by `when = "false"`, or reading the
/// outputs of a step that does not run in their modes.
fn unreachable(
    graph: &Graph,
    order: &[NodeIndex],
    modes: &[ModeSet],
    edge_spans: &EdgeSpans,
    ctx: &Context<'_>,
    diags: &mut Vec<Diagnostic>,
) {
    for &i in order {
        let Some(step) = graph[i].as_step() else {
            continue;
        };
        let span = step_span(ctx, i);
        if modes[i.index()].is_empty() {
            let at = ctx.steps.part(i.index(), Part::Modes).unwrap_or(span);
            diags.push(
                Diagnostic::error(
                    Code::UnreachableStep,
                    at,
                    format!("step `{}` runs in no mode this runbook supports", step.id),
                )
                .label("no supported mode")
                .help(format!(
                    "the runbook supports: {}",
                    mode_names(ctx.runbook_modes)
                )),
            );
            continue;
        }
        if step.when.as_deref().map(str::trim) == Some("false") {
            let at = ctx.steps.part(i.index(), Part::When).unwrap_or(span);
            diags.push(
                Diagnostic::error(
                    Code::UnreachableStep,
                    at,
                    format!("step `{}` is disabled by `when = \"false\"`", step.id),
                )
                .label("never true")
                .help("delete the step, or limit it to modes with `modes = [...]`"),
            );
            continue;
        }
        let mut preds: Vec<NodeIndex> = graph.neighbors_directed(i, Direction::Incoming).collect();
        preds.sort();
        for p in preds {
            let Some(e) = graph.find_edge(p, i) else {
                continue;
            };
            if graph[e] != Dependency::Data {
                continue;
            }
            let missing = ModeSet(modes[i.index()].0 & !modes[p.index()].0);
            if !missing.is_empty() {
                let at = edge_span(edge_spans, p, i).unwrap_or(span);
                diags.push(
                    Diagnostic::error(
                        Code::UnreachableStep,
                        at,
                        format!(
                            "step `{}` reads outputs of `{}`, which does not run in {}",
                            step.id,
                            graph[p].id(),
                            mode_names(missing)
                        ),
                    )
                    .label("output never produced in those modes")
                    .help(format!(
                        "limit `{}` to the modes of `{}` with `modes = [...]`",
                        step.id,
                        graph[p].id()
                    )),
                );
            }
        }
    }
}

fn rto_milestone(graph: &Graph, ctx: &Context<'_>, diags: &mut Vec<Diagnostic>) {
    if !ctx.has_header {
        return;
    }
    let stops: Vec<NodeIndex> = graph
        .node_indices()
        .filter(|&i| matches!(&graph[i], PlanNode::Milestone(m) if m.stops_rto))
        .collect();
    if stops.is_empty() {
        let mut d = Diagnostic::error(
            Code::MissingRtoMilestone,
            ctx.header_span,
            "no milestone stops the RTO clock",
        )
        .label("RTO cannot be measured")
        .help("add `milestone service_restored { after = [health_check]  stops_rto = true }`");
        for s in ctx.milestone_spans {
            d = d.with(*s, "this milestone does not set `stops_rto = true`");
        }
        diags.push(d);
    } else if stops.len() > 1 {
        let first = stops[0].index() - ctx.steps.len();
        let mut d = Diagnostic::error(
            Code::InvalidMilestone,
            ctx.milestone_spans
                .get(stops[1].index() - ctx.steps.len())
                .copied()
                .unwrap_or(ctx.header_span),
            "two milestones stop the RTO clock",
        )
        .label("second RTO milestone")
        .help(
            "keep `stops_rto = true` on one milestone: the one that means the service is restored",
        );
        if let Some(s) = ctx.milestone_spans.get(first) {
            d = d.with(*s, "first RTO milestone");
        }
        diags.push(d);
    }
}

fn drill_production(graph: &Graph, ctx: &Context<'_>, diags: &mut Vec<Diagnostic>) {
    if ctx.production.resources.is_empty() {
        return;
    }
    for i in graph.node_indices() {
        let Some(step) = graph[i].as_step() else {
            continue;
        };
        if !step.modes.contains(&Mode::Drill) {
            continue;
        }
        let Some(schema) = ctx.catalogue.lookup(&step.action) else {
            continue;
        };
        for spec in schema.inputs.iter().filter(|s| s.resource) {
            let Some(v) = step.inputs.get(&spec.name) else {
                continue;
            };
            for s in v.literal_strings() {
                if let Some(p) = ctx.production.resources.iter().find(|r| r.value == s) {
                    let at = ctx
                        .steps
                        .inputs(i.index())
                        .iter()
                        .find(|(name, _)| *name == spec.name)
                        .map(|(_, at)| *at)
                        .unwrap_or_else(|| step_span(ctx, i));
                    diags.push(
                        Diagnostic::error(Code::DrillTouchesProduction, at, format!("step `{}` would touch production resource `{s}` in a drill (it changes it or points something at it)", step.id))
                            .label("production resource")
                            .with(p.span, "marked production here")
                            .help("point the drill at its isolated copy, or limit the step with `modes = [failover]`"),
                    );
                }
            }
        }
    }
}

fn unapproved_destructive(
    graph: &Graph,
    order: &[NodeIndex],
    modes: &[ModeSet],
    ctx: &Context<'_>,
    diags: &mut Vec<Diagnostic>,
) {
    let mut approved = vec![0u8; graph.node_count()];
    for &i in order {
        let mut acc = 0u8;
        for p in graph.neighbors_directed(i, Direction::Incoming) {
            acc |= approved[p.index()];
            if graph[p].as_step().is_some_and(|s| s.role == Role::Approval) {
                acc |= modes[p.index()].0;
            }
        }
        approved[i.index()] = acc;
        let Some(step) = graph[i].as_step() else {
            continue;
        };
        if step.effect != Effect::Destructive || waived(graph, i, Lint::UnapprovedDestructive) {
            continue;
        }
        let missing = ModeSet(modes[i.index()].0 & !acc);
        if !missing.is_empty() {
            diags.push(
                Diagnostic::error(
                    Code::DestructiveWithoutApproval,
                    step_span(ctx, i),
                    format!("`{}` ({}) changes production with no approval gate upstream in {}", step.id, step.action, mode_names(missing)),
                )
                .label("destructive step")
                .help(format!(
                    "add an `approval` step and `after = [it]`, or waive with `allow {{ {} = \"reason\" }}`",
                    Lint::UnapprovedDestructive.as_str()
                )),
            );
        }
    }
}

fn unverified_cutover(
    graph: &Graph,
    order: &[NodeIndex],
    ctx: &Context<'_>,
    diags: &mut Vec<Diagnostic>,
) {
    let role = |i: NodeIndex| graph[i].as_step().map_or(Role::Plain, |s| s.role);
    let n = graph.node_count();
    // Rehydrate steps upstream of each node, those cleared by a verify after them, and whether a
    // verify runs upstream at all (a verify before the restore covers it too).
    let mut upstream: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    let mut cleared: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    let mut verified_before: Vec<bool> = vec![false; n];
    for &i in order {
        let mut up = BTreeSet::new();
        let mut cl = BTreeSet::new();
        let mut vb = false;
        for p in graph.neighbors_directed(i, Direction::Incoming) {
            up.extend(upstream[p.index()].iter().copied());
            cl.extend(cleared[p.index()].iter().copied());
            vb |= verified_before[p.index()] || role(p) == Role::Verify;
            match role(p) {
                Role::Rehydrate if !(verified_before[p.index()]) => {
                    up.insert(p.index());
                }
                Role::Verify => cl.extend(upstream[p.index()].iter().copied()),
                _ => {}
            }
        }
        if role(i) == Role::Cutover
            && !waived(graph, i, Lint::UnverifiedCutover)
            && let Some(&r) = up.difference(&cl).next()
        {
            {
                let step = &graph[i];
                diags.push(
                    Diagnostic::error(
                        Code::UnverifiedCutover,
                        step_span(ctx, i),
                        format!("cutover `{}` follows restore `{}` with no `backup.verify` on the path", step.id(), graph[NodeIndex::new(r)].id()),
                    )
                    .label("traffic moves to unverified data")
                    .with(step_span(ctx, NodeIndex::new(r)), "restored here")
                    .help(format!(
                        "add a `backup.verify` step between them, or waive with `allow {{ {} = \"reason\" }}`",
                        Lint::UnverifiedCutover.as_str()
                    )),
                );
            }
        }
        upstream[i.index()] = up;
        cleared[i.index()] = cl;
        verified_before[i.index()] = vb;
    }
}

fn missing_compensate(graph: &Graph, ctx: &Context<'_>, diags: &mut Vec<Diagnostic>) {
    if !ctx.runbook_modes.contains(Mode::Failback) {
        return;
    }
    for i in graph.node_indices() {
        let Some(step) = graph[i].as_step() else {
            continue;
        };
        if step.effect == Effect::ReadOnly
            || step.compensate.is_some()
            || step.builtin_undo
            || waived(graph, i, Lint::NoCompensate)
        {
            continue;
        }
        diags.push(
            Diagnostic::error(
                Code::MissingCompensate,
                step_span(ctx, i),
                format!("`{}` changes the world but has no `compensate`, and this runbook supports failback", step.id),
            )
            .label("cannot be undone")
            .help(format!(
                "add `compensate {{ action = ...  with {{ ... }} }}`, or waive with `allow {{ {} = \"reason\" }}`",
                Lint::NoCompensate.as_str()
            )),
        );
    }
}

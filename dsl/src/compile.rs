//! The compiler: sources → checked [`Plan`].
//!
//! Phases: load and parse every file (following imports), lower to typed runbooks, resolve
//! parameters and `--var`s, expand groups and `for_each`, resolve actions, inputs and references,
//! build the DAG, then run the graph checks and safety lints ([`crate::checks`]). Every phase
//! reports all it finds; a plan is produced only when no error was reported.

mod schedules;

use crate::checks;
use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::document::{Attribute, Value, ValueKind};
use crate::duration::parse_duration;
use crate::loader::SourceLoader;
use crate::lower::parse_and_lower;
use crate::plan::{
    Dependency, OutputRef, PLAN_FORMAT, Plan, PlanCompensate, PlanHeader, PlanInputs,
    PlanMilestone, PlanNode, PlanProduction, PlanRetry, PlanRoster, PlanStep, PlanValue, SourceRef,
};
use crate::runbook::{Group, Mode, ModeSet, Param, ParamType, Runbook, Step};
use crate::source_map::{SourceFile, SourceMap};
use crate::span::{Span, Spanned};
use crate::suggest::{did_you_mean, hint_typo_or_list, typo_or_list};
use drover_schema::{ActionSchema, Catalogue, ValueType};
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What a compilation needs besides the sources.
pub struct CompileOptions<'a> {
    /// The actions steps may call.
    pub catalogue: &'a dyn Catalogue,
    /// `--var key=value` overrides, in command-line order.
    pub vars: Vec<(String, String)>,
    /// `--operators FILE`: the operator roster to use instead of the one the header names (a
    /// name the loader understands, not relative to the runbook).
    pub operators: Option<String>,
}

/// The result of a compilation: the sources read, every diagnostic, and the plan if there was no
/// error.
#[derive(Debug)]
pub struct Compilation {
    /// Every file read.
    pub sources: SourceMap,
    /// Every finding, in a stable order (file, position, code).
    pub diagnostics: Vec<Diagnostic>,
    /// The plan, present only when no error was found.
    pub plan: Option<Plan>,
}

impl Compilation {
    /// Whether any diagnostic is an error.
    #[must_use]
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Compiles the runbook in `main` (a name the loader understands).
#[must_use]
pub fn compile(main: &str, loader: &dyn SourceLoader, opts: &CompileOptions<'_>) -> Compilation {
    let mut c = Compiler {
        opts,
        sources: SourceMap::new(),
        diags: Vec::new(),
        jinja: std::rc::Rc::new(template_env()),
        used: HashSet::new(),
        broken: HashSet::new(),
        roster: None,
    };
    let plan = c.run(main, loader);
    let mut diagnostics = c.diags;
    diagnostics.sort_by(|a, b| {
        (
            a.primary.span.file,
            a.primary.span.start,
            a.code,
            &a.message,
        )
            .cmp(&(
                b.primary.span.file,
                b.primary.span.start,
                b.code,
                &b.message,
            ))
    });
    diagnostics.dedup();
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    Compilation {
        sources: c.sources,
        diagnostics,
        plan: if has_errors { None } else { plan },
    }
}

/// The template environment: strict about undefined names, bounded in work.
fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_fuel(Some(50_000));
    env.set_recursion_limit(32);
    env
}

/// The variables a value may read at compile time, and where run-time references go.
struct Scope<'s> {
    /// Runbook parameters.
    params: &'s BTreeMap<String, PlanValue>,
    /// Group arguments (inside a group).
    args: Option<&'s BTreeMap<String, PlanValue>>,
    /// The current `for_each` item and its index.
    each: Option<(&'s PlanValue, usize)>,
    /// The group being expanded: its prefix and local step ids.
    group: Option<&'s GroupScope>,
    /// The instance being resolved (for zipped fan-out), if references to steps are allowed.
    instance: Option<usize>,
}

impl Scope<'_> {
    fn var(&self, name: &str) -> Option<&PlanValue> {
        self.args
            .and_then(|a| a.get(name))
            .or_else(|| self.params.get(name))
    }
}

/// A group expansion in progress.
struct GroupScope {
    prefix: String,
    args: BTreeMap<String, PlanValue>,
    locals: HashSet<String>,
    after: Vec<Spanned<String>>,
    modes: Option<ModeSet>,
}

/// A step definition before fan-out.
struct Def<'r> {
    /// A group's step, borrowed from its file; `None` for one of the file's own steps, which
    /// [`Lowered`] holds (and releases) by its index in `top`.
    group_step: Option<&'r Step>,
    /// For one of the file's own steps, its index there.
    top: Option<u32>,
    id: String,
    /// Where its id was written.
    id_span: Span,
    /// Its action, when the catalogue knows it: read when another step reads its outputs, also
    /// once the step itself is released.
    schema: Option<&'r ActionSchema>,
    group: Option<usize>,
    /// The `for_each` list, once resolved (boxed, as rare).
    for_each: Option<Box<PlanValue>>,
}

/// The file's own lowered steps, each released as soon as the last instance of its step is
/// built: at 50,000 steps they were as large as the plan being built, and were held whole beside
/// it. Where the parts the checks point at were written is kept per definition.
struct Lowered<'r> {
    /// By index of the file's steps; `None` once released.
    steps: Vec<Option<Box<Step>>>,
    /// By definition, from its release on.
    kept: Vec<checks::DefSpans>,
    /// The rarer parts of the definitions released, in order.
    parts: Vec<(u32, checks::Part, Span)>,
    /// Where the inputs findings point at were written ([`checks::points_at`]), under the
    /// action's own input names, one definition after another.
    inputs: Vec<(&'r str, Span)>,
}

impl<'r> Lowered<'r> {
    /// Takes the file's own steps out of its runbook.
    fn take(rb: &mut Runbook) -> Self {
        Self {
            steps: std::mem::take(&mut rb.steps)
                .into_iter()
                .map(Some)
                .collect(),
            kept: Vec::new(),
            inputs: Vec::new(),
            parts: Vec::new(),
        }
    }

    /// The lowered step of `def` (`None` once released).
    fn step<'a>(&'a self, def: &Def<'a>) -> Option<&'a Step> {
        match def.top {
            Some(j) => self.steps.get(j as usize).and_then(Option::as_deref),
            None => def.group_step,
        }
    }

    /// Keeps where the parts of `def` the checks point at were written, and releases its lowered
    /// step. Every definition is released, in order, each after its last instance.
    fn release(&mut self, def: &Def<'r>) {
        let taken = def
            .top
            .and_then(|j| self.steps.get_mut(j as usize))
            .and_then(Option::take);
        let step = taken.as_deref().or(def.group_step);
        let first = u32::try_from(self.inputs.len()).unwrap_or(u32::MAX);
        if let (Some(step), Some(schema)) = (step, def.schema) {
            self.inputs.extend(step.inputs.iter().filter_map(|a| {
                let spec = schema.inputs.iter().find(|i| i.name == a.key.value)?;
                checks::points_at(schema, spec).then_some((spec.name.as_str(), a.value.span))
            }));
        }
        let d = u32::try_from(self.kept.len()).unwrap_or(u32::MAX);
        if let Some(step) = step {
            let parts = [
                (checks::Part::Modes, step.modes.as_ref().map(|m| m.span)),
                (checks::Part::When, step.when.as_ref().map(|w| w.span)),
                (
                    checks::Part::BreakGlass,
                    step.tags
                        .iter()
                        .find(|t| t.value == crate::plan::BREAK_GLASS_TAG)
                        .map(|t| t.span),
                ),
            ];
            self.parts.extend(
                parts
                    .into_iter()
                    .filter_map(|(part, span)| Some((d, part, span?))),
            );
        }
        self.kept.push(checks::DefSpans {
            id: def.id_span,
            inputs: (first, u32::try_from(self.inputs.len()).unwrap_or(u32::MAX)),
        });
    }
}

/// The step instances after fan-out, made definition by definition: instance `i` is node `i`.
/// Most definitions have one instance, named like the definition: only a fanned-out instance's
/// id and item are held, apart.
struct Insts {
    /// Each instance's definition.
    def_of: Vec<u32>,
    /// A fanned-out instance's id, `for_each` item and the item's index, by instance.
    fanned: HashMap<usize, (String, PlanValue, usize)>,
}

impl Insts {
    fn len(&self) -> usize {
        self.def_of.len()
    }

    /// Instance `i`'s definition.
    fn def(&self, i: usize) -> usize {
        self.def_of[i] as usize
    }

    fn push(&mut self, def: usize, fanned: Option<(String, PlanValue, usize)>) {
        if let Some(f) = fanned {
            self.fanned.insert(self.def_of.len(), f);
        }
        self.def_of.push(u32::try_from(def).unwrap_or(u32::MAX));
    }

    /// Instance `i`'s id.
    fn id<'a>(&'a self, i: usize, defs: &'a [Def<'_>]) -> &'a str {
        match self.fanned.get(&i) {
            Some((id, _, _)) => id,
            None => &defs[self.def(i)].id,
        }
    }

    /// Instance `i`'s `for_each` item and its index.
    fn each(&self, i: usize) -> Option<(&PlanValue, usize)> {
        self.fanned.get(&i).map(|(_, v, k)| (v, *k))
    }
}

/// The nodes a step or milestone name stands for: consecutive ones (a step's instances, a
/// group's steps, a milestone), or, should they ever not be, a list.
enum Targets {
    Range(u32, u32),
    Many(Box<[usize]>),
}

impl Targets {
    fn add<'a>(table: &mut HashMap<&'a str, Targets>, name: &'a str, node: usize) {
        let n = u32::try_from(node).unwrap_or(u32::MAX);
        match table.get_mut(name) {
            None => {
                table.insert(name, Targets::Range(n, n.saturating_add(1)));
            }
            Some(Targets::Range(_, end)) if *end == n => *end = n.saturating_add(1),
            Some(t @ Targets::Range(..)) => {
                let mut list = t.to_vec();
                list.push(node);
                *t = Targets::Many(list.into_boxed_slice());
            }
            Some(Targets::Many(list)) => {
                let mut grown = list.to_vec();
                grown.push(node);
                *list = grown.into_boxed_slice();
            }
        }
    }

    fn to_vec(&self) -> Vec<usize> {
        match self {
            Targets::Range(a, b) => (*a as usize..*b as usize).collect(),
            Targets::Many(list) => list.to_vec(),
        }
    }
}

/// What resolving one instance's values found.
#[derive(Default)]
struct Refs {
    deps: Vec<(usize, Span, Dependency)>,
    bindings: BTreeMap<String, OutputRef>,
    context: BTreeMap<String, PlanValue>,
}

struct Compiler<'o> {
    opts: &'o CompileOptions<'o>,
    sources: SourceMap,
    diags: Vec<Diagnostic>,
    jinja: std::rc::Rc<minijinja::Environment<'static>>,
    /// Parameters read outside step resolution (fan-out lists, group arguments).
    used: HashSet<String>,
    /// Parameters whose value could not be resolved (already reported): references to them are
    /// not reported again.
    broken: HashSet<String>,
    /// The operator roster the header names, once read and valid.
    roster: Option<(drover_identity::Roster, PlanRoster)>,
}

/// Every step and milestone id that is taken, with where (the ids as written are borrowed).
type Ids<'a> = HashMap<Cow<'a, str>, Span>;

impl<'o> Compiler<'o> {
    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn run(&mut self, main: &str, loader: &dyn SourceLoader) -> Option<Plan> {
        let mut runbooks = self.load(main, loader)?;
        let mut lowered = Lowered::take(&mut runbooks[0]);
        let rb = &runbooks[0];
        let file0 = rb.file;
        let start = Span::new(file0, 0, 0);

        match &rb.header {
            None if rb.recovered.is_empty()
                || !self.diags.iter().any(|d| d.code == Code::SyntaxError) =>
            {
                self.err(
                    Diagnostic::error(
                        Code::MissingHeader,
                        start,
                        "this file has no `runbook` header",
                    )
                    .label("header expected")
                    .help("start the file with `runbook \"Name\" { rto = 4h  rpo = 15m }`"),
                );
            }
            _ => {}
        }
        for extra in &rb.extra_headers {
            self.err(
                Diagnostic::error(
                    Code::MissingHeader,
                    *extra,
                    "a file has one `runbook` header",
                )
                .label("second header")
                .help("merge the two headers"),
            );
        }
        for other in &runbooks[1..] {
            self.check_library(other);
        }
        if let Some(path) = &self.opts.operators {
            let at = rb
                .header
                .as_ref()
                .and_then(|h| h.operators.as_ref())
                .map_or(Span::new(file0, 0, 0), |op| op.span);
            self.load_roster(path.clone(), at, "given with `--operators`", loader);
        } else if let Some(op) = rb.header.as_ref().and_then(|h| h.operators.as_ref()) {
            let main_name = self.sources.get(file0).name.clone();
            let name = loader.resolve(Some(&main_name), &op.value);
            self.load_roster(name, op.span, "the path is relative to the runbook", loader);
        }

        let runbook_modes = rb
            .header
            .as_ref()
            .and_then(|h| h.modes.as_ref())
            .map_or(ModeSet::ALL, |m| m.value);

        let params = self.params(rb);
        let groups = self.groups(&runbooks);

        let mut ids: Ids<'_> =
            HashMap::with_capacity(lowered.steps.len() + rb.uses.len() + rb.milestones.len());
        let (mut defs, scopes) = self.defs(rb, &lowered, &groups, &params, &mut ids);
        let milestones_claimed: Vec<bool> = rb
            .milestones
            .iter()
            .map(|m| self.claim(&mut ids, &m.id.value, m.id.span))
            .collect();
        // Every id is claimed: the table of where each was written is not needed while the
        // plan is built (at 50,000 steps it is a few MB of the peak).
        drop(ids);
        let insts = self.instances(&mut defs, &lowered, &scopes, &params);
        let mut by_base: HashMap<&str, Targets> =
            HashMap::with_capacity(defs.len() + rb.milestones.len());
        for i in 0..insts.len() {
            let def = &defs[insts.def(i)];
            Targets::add(&mut by_base, &def.id, i);
            if let Some(g) = def.group {
                Targets::add(&mut by_base, &scopes[g].prefix, i);
            }
        }
        for (k, m) in rb.milestones.iter().enumerate() {
            if milestones_claimed[k] {
                Targets::add(&mut by_base, &m.id.value, insts.len() + k);
            }
        }
        let recovered: HashSet<&str> = rb.recovered.iter().map(String::as_str).collect();
        let resolver = Resolver {
            defs: &defs,
            insts: &insts,
            by_base: &by_base,
            recovered: &recovered,
        };

        // Nodes go straight into the graph (node `i` is instance `i`, then the milestones): a
        // list first and a copy after held both at once.
        let mut graph: DiGraph<PlanNode, Dependency> =
            DiGraph::with_capacity(insts.len() + rb.milestones.len(), 0);
        // Where an edge is found twice, the first counts.
        let mut edges: checks::EdgeSpans = BTreeMap::new();
        let mut used_params: HashSet<String> = HashSet::new();
        // Definition by definition, each over its instances (made definition by definition, so
        // consecutive), then released.
        let mut next = 0;
        for (d, def) in defs.iter().enumerate() {
            let first = next;
            while next < insts.len() && insts.def(next) == d {
                next += 1;
            }
            if let Some(lowered_step) = lowered.step(def) {
                for i in first..next {
                    let scope = Scope {
                        params: &params,
                        args: def.group.map(|g| &scopes[g].args),
                        each: insts.each(i),
                        group: def.group.map(|g| &scopes[g]),
                        instance: Some(i),
                    };
                    let (step, refs) = self.step(
                        def,
                        lowered_step,
                        insts.id(i, &defs),
                        &scope,
                        &resolver,
                        runbook_modes,
                        &mut used_params,
                    );
                    for (dep, span, kind) in refs.deps {
                        edges.entry((dep, i)).or_insert((kind, span));
                    }
                    graph.add_node(PlanNode::Step(Box::new(step)));
                }
            }
            lowered.release(def);
        }
        for m in &rb.milestones {
            let idx = graph.node_count();
            let scope = Scope {
                params: &params,
                args: None,
                each: None,
                group: None,
                instance: None,
            };
            for a in &m.after {
                for dep in resolver
                    .resolve_name(self, &a.value, a.span, &scope)
                    .unwrap_or_default()
                {
                    edges
                        .entry((dep, idx))
                        .or_insert((Dependency::Explicit, a.span));
                }
            }
            let mut rpo_from = Vec::new();
            for r in &m.rpo_from {
                for dep in resolver
                    .resolve_name(self, &r.value, r.span, &scope)
                    .unwrap_or_default()
                {
                    // Nodes below `insts.len()` are steps; a name may also be a milestone's,
                    // this one's or one not added yet.
                    let rehydrate = (dep < insts.len())
                        .then(|| graph[NodeIndex::new(dep)].as_step())
                        .flatten()
                        .filter(|s| s.role == drover_schema::Role::Rehydrate);
                    if let Some(step) = rehydrate {
                        rpo_from.push(step.id.clone());
                    } else {
                        self.err(
                            Diagnostic::error(
                                Code::InvalidMilestone,
                                r.span,
                                format!("`{}` does not restore a backup, so it has no recovery point", r.value),
                            )
                            .label("not a backup.rehydrate step")
                            .help("`rpo_from` lists the backup.rehydrate steps whose data sets count for RPO"),
                        );
                    }
                }
            }
            graph.add_node(PlanNode::Milestone(Box::new(PlanMilestone {
                id: m.id.value.clone(),
                title: m.title.clone(),
                stops_rto: m.stops_rto,
                rpo_from,
                modes: runbook_modes.modes(),
                source: self.source_ref(m.span),
            })));
        }

        // What the checks read of each step instance; the definitions, instances and the table
        // of names are not needed past this point.
        drop(by_base);
        let def_of = insts.def_of;
        drop(defs);
        drop(scopes);

        used_params.extend(self.used.iter().cloned());
        for p in &rb.params {
            if !used_params.contains(&p.name.value) && !self.broken.contains(&p.name.value) {
                self.err(
                    Diagnostic::warning(
                        Code::UnusedParameter,
                        p.name.span,
                        format!("parameter `{}` is never used", p.name.value),
                    )
                    .label("unused")
                    .help("remove it, or use it in a step as `{{ name }}` or as a bare value"),
                );
            }
        }

        graph.reserve_exact_edges(edges.len());
        for (&(a, b), &(kind, _)) in &edges {
            graph.add_edge(NodeIndex::new(a), NodeIndex::new(b), kind);
        }

        let steps = checks::StepSpans {
            def_of: &def_of,
            defs: &lowered.kept,
            inputs: &lowered.inputs,
            parts: &lowered.parts,
        };
        let header_span = rb.header.as_ref().map_or(start, |h| h.name.span);
        let ok = checks::run(
            &mut graph,
            &edges,
            &checks::Context {
                runbook_modes,
                has_header: rb.header.is_some(),
                header_span,
                production: &rb.production,
                steps,
                milestone_spans: &rb.milestones.iter().map(|m| m.id.span).collect::<Vec<_>>(),
                catalogue: self.opts.catalogue,
            },
            &mut self.diags,
        );

        self.check_roles(&graph, steps);
        let milestone_spans: Vec<Span> = rb.milestones.iter().map(|m| m.id.span).collect();
        self.check_break_glass(&graph, steps, &milestone_spans);

        let before = self.diags.len();
        let schedules = self.schedules(rb, runbook_modes);
        let policy = Self::policy(rb);
        let ok = ok && self.diags.len() == before;
        let h = rb.header.as_ref()?;
        if !ok {
            return None;
        }
        let mut hasher = Sha256::new();
        for f in self.sources.files() {
            hasher.update(f.name.as_bytes());
            hasher.update([0]);
            hasher.update(f.text.as_bytes());
            hasher.update([0]);
        }
        let source_sha256 = hex(&hasher.finalize());
        Some(Plan {
            format: PLAN_FORMAT,
            runbook: PlanHeader {
                name: h.name.value.clone(),
                description: h.description.clone(),
                owner: h.owner.clone(),
                tier: h.tier,
                rto_ms: h.rto.as_ref().map_or(0, |r| r.value),
                rpo_ms: h.rpo.as_ref().map_or(0, |r| r.value),
                modes: runbook_modes.modes(),
                max_parallel: h.max_parallel.and_then(|n| u32::try_from(n).ok()),
                source: self.sources.get(file0).name.clone(),
                source_sha256,
                roster: self.roster.as_ref().map(|(_, p)| p.clone()),
                simulated: false,
            },
            params: params.into_iter().collect(),
            production: PlanProduction {
                resources: rb
                    .production
                    .resources
                    .iter()
                    .map(|r| r.value.clone())
                    .collect(),
                tags: rb.production.tags.iter().cloned().collect(),
            },
            graph,
            schedules,
            policy,
        })
    }

    fn source_ref(&self, span: Span) -> SourceRef {
        let f = self.sources.get(span.file);
        let (line, col) = f.line_col(span.start as usize);
        SourceRef {
            file: f.name.clone(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
        }
    }

    /// Reads and checks the operator roster: the one given with `--operators`, or the one the
    /// header names (`operators = "…"`, relative to the runbook). Its problems are diagnostics in
    /// the roster file itself; the file joins the sources, so the plan's SHA-256 covers it.
    fn load_roster(&mut self, name: String, at: Span, hint: &str, loader: &dyn SourceLoader) {
        let text = match loader.read(&name) {
            Ok(t) => t,
            Err(e) => {
                self.err(
                    Diagnostic::error(
                        Code::InvalidRoster,
                        at,
                        format!("cannot read the operator roster `{name}`: {e}"),
                    )
                    .label("roster expected")
                    .help(hint.to_owned()),
                );
                return;
            }
        };
        let id = self
            .sources
            .add(SourceFile::new(name.clone(), text.clone()));
        let base = std::path::Path::new(&name)
            .parent()
            .unwrap_or(std::path::Path::new(""))
            .to_path_buf();
        match drover_identity::Roster::parse(&text, &base) {
            Ok(r) => {
                let plan = PlanRoster {
                    path: name,
                    sha256: r.sha256.clone(),
                    text,
                };
                self.roster = Some((r, plan));
            }
            Err(issues) => {
                for i in issues {
                    let span = Span::new(id, i.span.start, i.span.end);
                    let mut d = Diagnostic::error(Code::InvalidRoster, span, i.message)
                        .label("in the operator roster");
                    if let Some(h) = i.hint {
                        d = d.help(h);
                    }
                    self.err(d);
                }
            }
        }
    }

    /// With a roster, every role an approval step asks for must be held by some operator:
    /// otherwise the step could never be approved, which is found at 3 a.m. otherwise.
    fn check_roles(&mut self, graph: &DiGraph<PlanNode, Dependency>, steps: checks::StepSpans<'_>) {
        let Some((roster, _)) = &self.roster else {
            return;
        };
        let held: HashSet<String> = roster.roles().into_iter().map(str::to_owned).collect();
        let mut found = Vec::new();
        for i in 0..steps.len() {
            let Some(step) = graph
                .node_weight(NodeIndex::new(i))
                .and_then(PlanNode::as_step)
            else {
                continue;
            };
            if step.role != drover_schema::Role::Approval {
                continue;
            }
            let Some(PlanValue::List(roles)) = step.inputs.get("roles") else {
                continue;
            };
            let Some(def) = steps.of(i) else { continue };
            let span = steps
                .inputs(i)
                .iter()
                .find(|(name, _)| *name == "roles")
                .map_or(def.id, |(_, at)| *at);
            for r in roles {
                if let PlanValue::String(r) = r
                    && !held.contains(r)
                {
                    found.push((span, r.clone(), step.id.clone()));
                }
            }
        }
        let mut known: Vec<&str> = held.iter().map(String::as_str).collect();
        known.sort_unstable();
        for (span, role, step) in found {
            self.err(
                Diagnostic::error(
                    Code::UnknownRole,
                    span,
                    format!(
                        "no operator in the roster holds the role `{role}` that `{step}` asks for"
                    ),
                )
                .label("nobody could approve")
                .help(format!(
                    "{} — or add the role to an operator in the roster",
                    typo_or_list(&role, &known, "roles")
                )),
            );
        }
    }

    /// Steps tagged `break_glass` fire when an operator breaks the glass on an approval, outside
    /// the dependency order: they must be `notify` steps and nothing may wait for them (a step
    /// or milestone after one would wait for an emergency that may never come).
    fn check_break_glass(
        &mut self,
        graph: &DiGraph<PlanNode, Dependency>,
        steps: checks::StepSpans<'_>,
        milestone_spans: &[Span],
    ) {
        let mut found = Vec::new();
        for i in 0..steps.len() {
            let Some(step) = graph
                .node_weight(NodeIndex::new(i))
                .and_then(PlanNode::as_step)
                .filter(|s| s.fires_on_break_glass())
            else {
                continue;
            };
            let Some(def) = steps.of(i) else { continue };
            let tag = steps.part(i, checks::Part::BreakGlass).unwrap_or(def.id);
            if step.action != "notify" {
                found.push(
                    Diagnostic::error(
                        Code::BreakGlassStep,
                        tag,
                        format!(
                            "`{}` is tagged break_glass but is a `{}` step",
                            step.id, step.action
                        ),
                    )
                    .label("only notify steps fire on break-glass")
                    .help("tag the `notify` steps that tell people the glass was broken; run other steps in the normal order"),
                );
            }
            for e in graph.edges_directed(NodeIndex::new(i), Direction::Outgoing) {
                let Some(other) = graph.node_weight(e.target()) else {
                    continue;
                };
                let t = e.target().index();
                let at = match steps.of(t) {
                    Some(o) => o.id,
                    None => milestone_spans.get(t - steps.len()).copied().unwrap_or(tag),
                };
                found.push(
                    Diagnostic::error(
                        Code::BreakGlassStep,
                        at,
                        format!(
                            "`{}` waits for `{}`, which runs only if someone breaks the glass",
                            other.id(),
                            step.id
                        ),
                    )
                    .label("would wait for an emergency")
                    .with(tag, "tagged here")
                    .help("remove it from `after`: break-glass notifications are fired, never waited for"),
                );
            }
        }
        for d in found {
            self.err(d);
        }
    }

    /// Loads the main file and everything it imports, breadth first.
    fn load(&mut self, main: &str, loader: &dyn SourceLoader) -> Option<Vec<Runbook>> {
        let mut runbooks = Vec::new();
        let mut queue: Vec<(String, Option<Span>)> = vec![(loader.resolve(None, main), None)];
        let mut seen: HashSet<String> = HashSet::new();
        while let Some((name, from)) = (!queue.is_empty()).then(|| queue.remove(0)) {
            if !seen.insert(name.clone()) {
                continue;
            }
            let text = match loader.read(&name) {
                Ok(t) => t,
                Err(e) => match from {
                    Some(span) => {
                        self.err(
                            Diagnostic::error(
                                Code::ImportFailed,
                                span,
                                format!("cannot read `{name}`: {e}"),
                            )
                            .label("imported here")
                            .help("import paths are relative to the importing file"),
                        );
                        continue;
                    }
                    None => {
                        let id = self.sources.add(SourceFile::new(name.clone(), ""));
                        self.err(
                            Diagnostic::error(
                                Code::ImportFailed,
                                Span::new(id, 0, 0),
                                format!("cannot read `{name}`: {e}"),
                            )
                            .label("unreadable"),
                        );
                        return None;
                    }
                },
            };
            let id = self.sources.add(SourceFile::new(name.clone(), text));
            let rb = parse_and_lower(id, self.sources.get(id), &mut self.diags);
            for imp in &rb.imports {
                queue.push((
                    loader.resolve(Some(&name), &imp.path.value),
                    Some(imp.path.span),
                ));
            }
            runbooks.push(rb);
        }
        Some(runbooks)
    }

    /// An imported file may define groups only.
    fn check_library(&mut self, rb: &Runbook) {
        let mut bad: Vec<Span> = Vec::new();
        bad.extend(rb.header.iter().map(|h| h.name.span));
        bad.extend(rb.params.iter().map(|p| p.name.span));
        bad.extend(rb.steps.iter().map(|s| s.id.span));
        bad.extend(rb.milestones.iter().map(|m| m.id.span));
        bad.extend(rb.uses.iter().map(|u| u.id.span));
        for span in bad {
            self.err(
                Diagnostic::error(
                    Code::ImportFailed,
                    span,
                    "an imported file may define only groups",
                )
                .label("not a group")
                .help("move this into the main runbook, or wrap it in `group NAME { ... }`"),
            );
        }
    }

    /// Resolves parameter values: defaults, then `--var` overrides.
    fn params(&mut self, rb: &Runbook) -> BTreeMap<String, PlanValue> {
        let mut values = BTreeMap::new();
        let mut declared: HashMap<&str, &Param> = HashMap::new();
        for p in &rb.params {
            if let Some(first) = declared.get(p.name.value.as_str()) {
                self.err(
                    Diagnostic::error(
                        Code::DuplicateId,
                        p.name.span,
                        format!("parameter `{}` is declared twice", p.name.value),
                    )
                    .label("declared again")
                    .with(first.name.span, "first declared here"),
                );
                continue;
            }
            declared.insert(&p.name.value, p);
        }
        let overrides: HashMap<&str, &str> = self
            .opts
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let start = Span::new(rb.file, 0, 0);
        let mut vars: Vec<&(String, String)> = self.opts.vars.iter().collect();
        vars.sort();
        for (k, _) in vars {
            if !declared.contains_key(k.as_str()) {
                let mut d = Diagnostic::error(
                    Code::InvalidVariable,
                    start,
                    format!("--var `{k}` sets no parameter of this runbook"),
                )
                .label("in this runbook");
                let names: Vec<&str> = rb.params.iter().map(|p| p.name.value.as_str()).collect();
                d = hint_typo_or_list(d, k, &names, "parameters");
                self.err(d);
            }
        }
        let empty = BTreeMap::new();
        for p in &rb.params {
            if declared
                .get(p.name.value.as_str())
                .is_none_or(|d| !std::ptr::eq(*d, p))
            {
                continue;
            }
            if p.bad_type {
                self.broken.insert(p.name.value.clone());
                continue;
            }
            let value = match overrides.get(p.name.value.as_str()) {
                Some(text) => self.var_value(p, text, start),
                None => match &p.default {
                    Some(v) => self.param_default(p, v, &empty),
                    None => {
                        self.err(
                            Diagnostic::error(
                                Code::ParameterWithoutValue,
                                p.name.span,
                                format!("parameter `{}` has no value", p.name.value),
                            )
                            .label("no default")
                            .help(format!(
                                "give it a default, or pass `--var {}=...`",
                                p.name.value
                            )),
                        );
                        None
                    }
                },
            };
            match value {
                Some(v) => {
                    values.insert(p.name.value.clone(), v);
                }
                None => {
                    self.broken.insert(p.name.value.clone());
                }
            }
        }
        values
    }

    fn param_default(
        &mut self,
        p: &Param,
        v: &Value,
        params: &BTreeMap<String, PlanValue>,
    ) -> Option<PlanValue> {
        if p.ty.value == ParamType::Secret {
            return match &v.kind {
                ValueKind::Call { name, args } if name.value == "env" && args.len() == 1 => {
                    match args[0].as_str() {
                        Some(var) if !var.is_empty() => Some(PlanValue::Secret {
                            param: p.name.value.clone(),
                            env: var.to_owned(),
                        }),
                        _ => {
                            self.err(
                                Diagnostic::error(
                                    Code::WrongValueKind,
                                    args[0].span,
                                    "`env` takes the name of an environment variable",
                                )
                                .label("expected a string"),
                            );
                            None
                        }
                    }
                }
                _ => {
                    self.err(
                        Diagnostic::error(Code::WrongValueKind, v.span, "a secret's value comes from the environment")
                            .label("literal secret")
                            .help(format!("write `param {}: secret = env(\"VARIABLE\")`; secrets are never written in runbooks", p.name.value)),
                    );
                    None
                }
            };
        }
        let scope = Scope {
            params,
            args: None,
            each: None,
            group: None,
            instance: None,
        };
        let expected = param_value_type(&p.ty.value);
        let mut refs = Refs::default();
        let value = self.value(v, &expected, &scope, None, &mut refs, &mut HashSet::new())?;
        Some(value)
    }

    fn var_value(&mut self, p: &Param, text: &str, span: Span) -> Option<PlanValue> {
        let bad = |c: &mut Self, why: String| {
            c.err(
                Diagnostic::error(
                    Code::InvalidVariable,
                    span,
                    format!("--var {}={text}: {why}", p.name.value),
                )
                .label("in this runbook")
                .with(p.ty.span, format!("declared as {}", p.ty.value.describe())),
            );
            None
        };
        let scalar = |ty: &ParamType, s: &str| -> Result<PlanValue, String> {
            match ty {
                ParamType::String => Ok(PlanValue::String(s.to_owned())),
                ParamType::Int => s
                    .trim()
                    .parse()
                    .map(PlanValue::Int)
                    .map_err(|_| "not a whole number".to_owned()),
                ParamType::Bool => match s.trim() {
                    "true" => Ok(PlanValue::Bool(true)),
                    "false" => Ok(PlanValue::Bool(false)),
                    _ => Err("not `true` or `false`".to_owned()),
                },
                ParamType::Duration => parse_duration(s.trim())
                    .map(PlanValue::Duration)
                    .ok_or_else(|| "not a duration such as 30s, 15m or 4h".to_owned()),
                ParamType::List(_) | ParamType::Secret => Err("unsupported".to_owned()),
            }
        };
        match &p.ty.value {
            ParamType::Secret => bad(
                self,
                "secrets are read from the environment, never passed on the command line"
                    .to_owned(),
            ),
            ParamType::List(inner) => {
                let items: Result<Vec<_>, _> = text
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| scalar(inner, s))
                    .collect();
                match items {
                    Ok(v) => Some(PlanValue::List(v)),
                    Err(e) => bad(self, format!("an item is {e}")),
                }
            }
            ty => match scalar(ty, text) {
                Ok(v) => Some(v),
                Err(e) => bad(self, e),
            },
        }
    }

    /// Every group defined in any file, by name.
    fn groups<'r>(&mut self, runbooks: &'r [Runbook]) -> HashMap<String, &'r Group> {
        let mut out: HashMap<String, &'r Group> = HashMap::new();
        for rb in runbooks {
            for g in &rb.groups {
                if let Some(first) = out.get(&g.name.value) {
                    self.err(
                        Diagnostic::error(
                            Code::DuplicateId,
                            g.name.span,
                            format!("group `{}` is defined twice", g.name.value),
                        )
                        .label("defined again")
                        .with(first.name.span, "first defined here"),
                    );
                    continue;
                }
                out.insert(g.name.value.clone(), g);
            }
        }
        out
    }

    fn claim<'a>(&mut self, ids: &mut Ids<'a>, id: &'a str, span: Span) -> bool {
        if let Some(first) = ids.get(id) {
            self.err(
                Diagnostic::error(Code::DuplicateId, span, format!("`{id}` is defined twice"))
                    .label("defined again")
                    .with(*first, "first defined here")
                    .help("step, use and milestone ids must be unique; rename one"),
            );
            return false;
        }
        ids.insert(Cow::Borrowed(id), span);
        true
    }

    /// Step definitions: the runbook's own steps, then each group expansion.
    fn defs<'r, 'l>(
        &mut self,
        rb: &'r Runbook,
        lowered: &'l Lowered<'_>,
        groups: &HashMap<String, &'r Group>,
        params: &BTreeMap<String, PlanValue>,
        ids: &mut Ids<'l>,
    ) -> (Vec<Def<'r>>, Vec<GroupScope>)
    where
        'o: 'r,
        'r: 'l,
    {
        let catalogue: &'o dyn Catalogue = self.opts.catalogue;
        // A plain lookup: an unknown action is reported where the step is resolved.
        let schema = |s: &Step| s.action.as_ref().and_then(|a| catalogue.lookup(&a.value));
        let mut defs = Vec::with_capacity(lowered.steps.len());
        let mut scopes = Vec::new();
        for (j, s) in lowered.steps.iter().enumerate() {
            let Some(s) = s.as_deref() else { continue };
            if self.claim(ids, &s.id.value, s.id.span) {
                defs.push(Def {
                    group_step: None,
                    top: u32::try_from(j).ok(),
                    id: s.id.value.clone(),
                    id_span: s.id.span,
                    schema: schema(s),
                    group: None,
                    for_each: None,
                });
            }
        }
        for u in &rb.uses {
            if !self.claim(ids, &u.id.value, u.id.span) {
                continue;
            }
            let Some(gname) = &u.group else { continue };
            let Some(g) = groups.get(&gname.value) else {
                let mut d = Diagnostic::error(
                    Code::UnknownGroup,
                    gname.span,
                    format!("no group is called `{}`", gname.value),
                )
                .label("unknown group");
                d = match did_you_mean(&gname.value, groups.keys().map(String::as_str)) {
                    Some(s) => d.did_you_mean(&gname.value, s),
                    None => d.help("groups are defined with `group NAME { ... }`, usually in a file brought in with `import`"),
                };
                self.err(d);
                continue;
            };
            let args = self.group_args(u, g, params);
            let locals: HashSet<String> = g.steps.iter().map(|s| s.id.value.clone()).collect();
            let scope_idx = scopes.len();
            scopes.push(GroupScope {
                prefix: u.id.value.clone(),
                args,
                locals,
                after: u.after.clone(),
                modes: u.modes.as_ref().map(|m| m.value),
            });
            let mut local_ids: Ids = HashMap::new();
            for s in &g.steps {
                if !self.claim(&mut local_ids, &s.id.value, s.id.span) {
                    continue;
                }
                let id = format!("{}.{}", u.id.value, s.id.value);
                ids.insert(Cow::Owned(id.clone()), s.id.span);
                defs.push(Def {
                    group_step: Some(s),
                    top: None,
                    id,
                    id_span: s.id.span,
                    schema: schema(s),
                    group: Some(scope_idx),
                    for_each: None,
                });
            }
        }
        (defs, scopes)
    }

    fn group_args(
        &mut self,
        u: &crate::runbook::GroupUse,
        g: &Group,
        params: &BTreeMap<String, PlanValue>,
    ) -> BTreeMap<String, PlanValue> {
        let mut args = BTreeMap::new();
        let scope = Scope {
            params,
            args: None,
            each: None,
            group: None,
            instance: None,
        };
        for a in &u.args {
            let Some(p) = g.params.iter().find(|p| p.name.value == a.key.value) else {
                let mut d = Diagnostic::error(
                    Code::UnknownInput,
                    a.key.span,
                    format!(
                        "group `{}` has no parameter `{}`",
                        g.name.value, a.key.value
                    ),
                )
                .label("unknown argument");
                d = match did_you_mean(&a.key.value, g.params.iter().map(|p| p.name.value.as_str()))
                {
                    Some(s) => d.did_you_mean(&a.key.value, s),
                    None => d,
                };
                self.err(d);
                continue;
            };
            let expected = param_value_type(&p.ty.value);
            let mut refs = Refs::default();
            let mut used = HashSet::new();
            if let Some(v) = self.value(&a.value, &expected, &scope, None, &mut refs, &mut used) {
                args.insert(a.key.value.clone(), v);
            }
            self.used.extend(used);
        }
        for p in &g.params {
            if args.contains_key(&p.name.value) {
                continue;
            }
            match &p.default {
                Some(v) => {
                    if let Some(v) = self.param_default(p, v, params) {
                        args.insert(p.name.value.clone(), v);
                    }
                }
                None if !u.args.iter().any(|a| a.key.value == p.name.value) => {
                    self.err(
                        Diagnostic::error(
                            Code::ParameterWithoutValue,
                            u.id.span,
                            format!(
                                "`use {}` does not set `{}` of group `{}`",
                                u.id.value, p.name.value, g.name.value
                            ),
                        )
                        .label("argument missing")
                        .with(p.name.span, "declared here")
                        .help(format!("add `{} = ...` to the `with` block", p.name.value)),
                    );
                }
                None => {}
            }
        }
        args
    }

    /// Expands `for_each`.
    fn instances(
        &mut self,
        defs: &mut [Def<'_>],
        lowered: &Lowered<'_>,
        scopes: &[GroupScope],
        params: &BTreeMap<String, PlanValue>,
    ) -> Insts {
        let mut out = Insts {
            def_of: Vec::with_capacity(defs.len()),
            fanned: HashMap::new(),
        };
        for def in defs.iter_mut() {
            let Some(fe) = lowered.step(def).and_then(|s| s.for_each.as_ref()) else {
                continue;
            };
            let scope = Scope {
                params,
                args: def.group.map(|g| &scopes[g].args),
                each: None,
                group: None,
                instance: None,
            };
            let mut refs = Refs::default();
            let mut used = HashSet::new();
            let v = self.value(
                fe,
                &ValueType::List(Box::new(ValueType::Any)),
                &scope,
                None,
                &mut refs,
                &mut used,
            );
            self.used.extend(used);
            match v {
                Some(PlanValue::List(items)) => {
                    def.for_each = Some(Box::new(PlanValue::List(items)));
                }
                Some(_) | None => {
                    if v.is_some() {
                        self.err(
                            Diagnostic::error(
                                Code::InvalidForEach,
                                fe.span,
                                "`for_each` needs a list",
                            )
                            .label("not a list")
                            .help("write `for_each = [\"a\", \"b\"]` or name a list parameter"),
                        );
                    }
                }
            }
        }
        for (d, def) in defs.iter().enumerate() {
            match def.for_each.as_deref() {
                Some(PlanValue::List(items)) => {
                    let labels: Vec<String> = items
                        .iter()
                        .map(|v| match v {
                            PlanValue::String(s)
                                if !s.is_empty()
                                    && s.chars()
                                        .all(|c| c.is_alphanumeric() || "-_.".contains(c)) =>
                            {
                                s.clone()
                            }
                            PlanValue::Int(i) => i.to_string(),
                            _ => String::new(),
                        })
                        .collect();
                    let unique = labels.iter().all(|l| !l.is_empty())
                        && labels.iter().collect::<HashSet<_>>().len() == labels.len();
                    for (k, item) in items.iter().enumerate() {
                        let label = if unique {
                            labels[k].clone()
                        } else {
                            k.to_string()
                        };
                        out.push(d, Some((format!("{}[{label}]", def.id), item.clone(), k)));
                    }
                }
                _ => out.push(d, None),
            }
        }
        out
    }

    /// Resolves one step instance.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        def: &Def<'_>,
        s: &Step,
        id: &str,
        scope: &Scope<'_>,
        resolver: &Resolver<'_>,
        runbook_modes: ModeSet,
        used: &mut HashSet<String>,
    ) -> (PlanStep, Refs) {
        let mut refs = Refs::default();
        let schema = s.action.as_ref().and_then(|a| self.action(a));
        let mut inputs = PlanInputs::new();
        if let Some(schema) = &schema {
            inputs = self.inputs(
                &s.inputs, schema, s.id.span, scope, resolver, &mut refs, used,
            );
        }
        for a in &s.after {
            if let Some(deps) = resolver.resolve_name(self, &a.value, a.span, scope) {
                refs.deps
                    .extend(deps.into_iter().map(|d| (d, a.span, Dependency::Explicit)));
            }
        }
        if let Some(g) = scope.group {
            // The group's first steps wait for the `use`'s `after`.
            if s.after.is_empty() {
                let outer = Scope {
                    group: None,
                    ..*scope
                };
                for a in &g.after {
                    if let Some(deps) = resolver.resolve_name(self, &a.value, a.span, &outer) {
                        refs.deps
                            .extend(deps.into_iter().map(|d| (d, a.span, Dependency::Explicit)));
                    }
                }
            }
        }
        let compensate = s.compensate.as_ref().and_then(|c| {
            let schema = self.action(&c.action)?;
            let before = refs.deps.len();
            let inputs = self.inputs(
                &c.inputs,
                schema,
                c.action.span,
                scope,
                resolver,
                &mut refs,
                used,
            );
            // The undo runs after the step itself, so it may read the step's own outputs.
            let me = scope.instance;
            let mut k = before;
            while k < refs.deps.len() {
                if Some(refs.deps[k].0) == me {
                    refs.deps.remove(k);
                } else {
                    k += 1;
                }
            }
            Some(PlanCompensate {
                action: c.action.value.clone(),
                inputs,
            })
        });
        if let Some(w) = &s.when {
            self.when(w, scope, resolver, &mut refs, used);
        }
        if let Some((v, k)) = &scope.each {
            refs.context.insert(
                "each".to_owned(),
                PlanValue::Map(BTreeMap::from([
                    ("value".to_owned(), (*v).clone()),
                    (
                        "index".to_owned(),
                        PlanValue::Int(i64::try_from(*k).unwrap_or(i64::MAX)),
                    ),
                ])),
            );
        }
        let mut modes =
            ModeSet(s.modes.as_ref().map_or(runbook_modes, |m| m.value).0 & runbook_modes.0);
        if let Some(gm) = scope.group.and_then(|g| g.modes) {
            modes = ModeSet(modes.0 & gm.0);
        }
        let (effect, role) = schema.as_ref().map_or(
            (drover_schema::Effect::ReadOnly, drover_schema::Role::Plain),
            |a| (a.effect, a.role),
        );
        // A `wait` without an estimate takes its duration: the plan and the simulator must not
        // predict 0 s for it.
        let estimate = s.estimate.as_ref().map(|e| e.value).or_else(|| {
            match (
                s.action.as_ref().map(|a| a.value.as_str()),
                inputs.get("duration"),
            ) {
                (Some("wait"), Some(PlanValue::Duration(ms))) => {
                    Some(crate::runbook::Estimate::Fixed { ms: *ms })
                }
                _ => None,
            }
        });
        let step = PlanStep {
            id: id.to_owned(),
            base_id: def.id.clone(),
            action: s
                .action
                .as_ref()
                .map(|a| a.value.clone())
                .unwrap_or_default(),
            provider: schema
                .as_ref()
                .map_or_else(|| "core".to_owned(), |a| a.provider().to_owned()),
            effect,
            role,
            description: s.description.clone(),
            inputs,
            bindings: std::mem::take(&mut refs.bindings),
            context: std::mem::take(&mut refs.context),
            modes: modes.modes(),
            retry: s.retry.map(|r| PlanRetry {
                attempts: r.attempts,
                backoff_ms: r.backoff_ms,
                max_backoff_ms: r.max_backoff_ms,
            }),
            timeout_ms: s
                .timeout
                .as_ref()
                .map(|t| t.value)
                .or_else(|| schema.as_ref().and_then(|a| a.default_timeout_ms)),
            timeout_is_default: s.timeout.is_none()
                && schema
                    .as_ref()
                    .is_some_and(|a| a.default_timeout_ms.is_some()),
            on_failure: s.on_failure,
            compensate: compensate.map(Box::new),
            builtin_undo: schema.as_ref().is_some_and(|a| a.builtin_undo),
            when: s.when.as_ref().map(|w| w.value.clone()),
            estimate,
            waivers: s
                .waivers
                .iter()
                .map(|w| (w.lint, w.reason.value.clone()))
                .collect(),
            tags: s.tags.iter().map(|t| t.value.clone()).collect(),
            source: self.source_ref(s.id.span),
        };
        (step, refs)
    }

    fn action(&mut self, a: &Spanned<String>) -> Option<&'o ActionSchema> {
        let catalogue: &'o dyn Catalogue = self.opts.catalogue;
        if let Some(s) = catalogue.lookup(&a.value) {
            return Some(s);
        }
        let names = catalogue.names();
        let mut d = Diagnostic::error(
            Code::UnknownAction,
            a.span,
            format!("`{}` is not an action", a.value),
        )
        .label("unknown action");
        d = match did_you_mean(&a.value, names.iter().copied()) {
            Some(s) => d.did_you_mean(&a.value, s),
            None => {
                let provider = a.value.split('.').next().unwrap_or("");
                let same: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|n| n.starts_with(&format!("{provider}.")))
                    .collect();
                if same.is_empty() {
                    d.help("run `drover actions` to list every action")
                } else {
                    d.help(format!("`{provider}` has: {}", same.join(", ")))
                }
            }
        };
        self.err(d);
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn inputs(
        &mut self,
        attrs: &[Attribute],
        schema: &ActionSchema,
        at: Span,
        scope: &Scope<'_>,
        resolver: &Resolver<'_>,
        refs: &mut Refs,
        used: &mut HashSet<String>,
    ) -> PlanInputs {
        let mut out = PlanInputs::with_capacity(attrs.len());
        for a in attrs {
            let Some(spec) = schema.input(&a.key.value) else {
                let mut d = Diagnostic::error(
                    Code::UnknownInput,
                    a.key.span,
                    format!("`{}` has no input `{}`", schema.name, a.key.value),
                )
                .label("unknown input");
                let names: Vec<&str> = schema.inputs.iter().map(|i| i.name.as_str()).collect();
                d = hint_typo_or_list(d, &a.key.value, &names, "inputs");
                self.err(d);
                continue;
            };
            if let Some(v) = self.value(&a.value, &spec.ty, scope, Some(resolver), refs, used) {
                out.insert(a.key.value.clone(), v);
            }
        }
        let missing: Vec<&str> = schema
            .inputs
            .iter()
            .filter(|i| i.required && !attrs.iter().any(|a| a.key.value == i.name))
            .map(|i| i.name.as_str())
            .collect();
        if !missing.is_empty() {
            let list = missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ");
            self.err(
                Diagnostic::error(
                    Code::MissingInput,
                    at,
                    format!("`{}` needs {list}", schema.name),
                )
                .label("required input missing")
                .help(format!(
                    "add to `with {{ ... }}`: {}",
                    missing
                        .iter()
                        .filter_map(|m| schema.input(m))
                        .map(|i| format!("{} ({}: {})", i.name, i.ty.describe(), i.doc))
                        .collect::<Vec<_>>()
                        .join("; ")
                )),
            );
        }
        out
    }

    fn when(
        &mut self,
        w: &Spanned<String>,
        scope: &Scope<'_>,
        resolver: &Resolver<'_>,
        refs: &mut Refs,
        used: &mut HashSet<String>,
    ) {
        let env = std::rc::Rc::clone(&self.jinja);
        let names = match env.compile_expression(&w.value) {
            Ok(expr) => {
                let mut v: Vec<String> = expr.undeclared_variables(true).into_iter().collect();
                v.sort();
                v
            }
            Err(e) => {
                self.err(
                    Diagnostic::error(Code::TemplateError, w.span, format!("`when` is not a valid expression: {}", e.detail().unwrap_or("syntax error")))
                        .label("invalid expression")
                        .help("write a template expression such as `when = \"mode == 'failover'\"` or `when = \"steps.check.status == 200\"`"),
                );
                return;
            }
        };
        for name in names {
            self.template_var(&name, &w.value, w.span, scope, Some(resolver), refs, used);
        }
    }

    /// Checks one variable a template or expression reads. Returns whether it is only known at
    /// run time.
    #[allow(clippy::too_many_arguments)]
    fn template_var(
        &mut self,
        name: &str,
        text: &str,
        span: Span,
        scope: &Scope<'_>,
        resolver: Option<&Resolver<'_>>,
        refs: &mut Refs,
        used: &mut HashSet<String>,
    ) -> bool {
        let root = name.split('.').next().unwrap_or(name);
        let at = locate(text, name, span);
        match root {
            "steps" => {
                let Some(resolver) = resolver.filter(|_| scope.instance.is_some()) else {
                    self.err(
                        Diagnostic::error(Code::UnknownStep, at, "step outputs are not known here")
                            .label(
                                "only step inputs, `when` and `compensate` may read step outputs",
                            ),
                    );
                    return true;
                };
                if let Some(r) = resolver.output_ref(self, name, at, scope, refs) {
                    refs.bindings.insert(name.to_owned(), r);
                }
                true
            }
            "mode" => true,
            // The run's own values, known when it runs: its id, a scratch directory of its own
            // under the state directory, and the state directory itself.
            "run" if scope.var("run").is_none() => {
                if !matches!(name.split('.').nth(1), Some("id" | "dir" | "state_dir")) {
                    self.err(
                        Diagnostic::error(
                            Code::UnknownParameter,
                            at,
                            format!("`{name}` is not a value of the run"),
                        )
                        .label("unknown run value")
                        .help("a run has `run.id`, `run.dir` (a directory of its own under the state directory) and `run.state_dir`"),
                    );
                }
                true
            }
            "each" if scope.each.is_some() => false,
            _ => {
                match scope.var(root) {
                    None if self.broken.contains(root) => {}
                    Some(PlanValue::Secret { .. }) => {
                        used.insert(root.to_owned());
                        self.err(
                            Diagnostic::error(Code::SecretInTemplate, at, format!("secret `{root}` is used inside a template"))
                                .label("would be written into the plan")
                                .help(format!("pass the secret as a whole input value, `token = {root}`; it is resolved only when the step runs")),
                        );
                    }
                    Some(_) => {
                        used.insert(root.to_owned());
                    }
                    None => {
                        let mut known: Vec<&str> =
                            scope.params.keys().map(String::as_str).collect();
                        if let Some(a) = scope.args {
                            known.extend(a.keys().map(String::as_str));
                        }
                        let mut d = Diagnostic::error(
                            Code::UnknownParameter,
                            at,
                            format!("`{root}` is not a parameter"),
                        )
                        .label("unknown name");
                        d = match did_you_mean(root, known.iter().copied()) {
                            Some(s) => d.did_you_mean(root, s),
                            None if root == "each" => d.help("`each` exists only in steps with `for_each`"),
                            None => d.help("declare it with `param NAME: string = \"...\"`, or read a step output as `steps.ID.OUTPUT`"),
                        };
                        self.err(d);
                    }
                }
                false
            }
        }
    }

    /// Converts and type-checks a value.
    #[allow(clippy::too_many_arguments)]
    fn value(
        &mut self,
        v: &Value,
        expected: &ValueType,
        scope: &Scope<'_>,
        resolver: Option<&Resolver<'_>>,
        refs: &mut Refs,
        used: &mut HashSet<String>,
    ) -> Option<PlanValue> {
        let converted = self.convert(v, expected, scope, resolver, refs, used)?;
        if let Err(why) = type_matches(&converted, expected) {
            let mut d = Diagnostic::error(
                Code::InputTypeMismatch,
                v.span,
                format!("expected {}, found {why}", expected.describe()),
            )
            .label("wrong type");
            if matches!(expected, ValueType::Secret) {
                d = d.help("pass a `secret` parameter: `param token: secret = env(\"VAR\")`, then `token = token`");
            } else if matches!(expected, ValueType::Duration) {
                d = d.help("durations are written without quotes: `30s`, `15m`, `4h`");
            }
            self.err(d);
            return None;
        }
        Some(converted)
    }

    #[allow(clippy::too_many_arguments)]
    fn convert(
        &mut self,
        v: &Value,
        expected: &ValueType,
        scope: &Scope<'_>,
        resolver: Option<&Resolver<'_>>,
        refs: &mut Refs,
        used: &mut HashSet<String>,
    ) -> Option<PlanValue> {
        let inner = |t: &ValueType| match t {
            ValueType::List(i) | ValueType::Map(i) => (**i).clone(),
            _ => ValueType::Any,
        };
        Some(match &v.kind {
            ValueKind::Str { text, .. } => {
                self.template(text, v.span, scope, resolver, refs, used)?
            }
            ValueKind::Number(n) => match n.parse::<i64>() {
                Ok(i) => PlanValue::Int(i),
                Err(_) => match n.parse::<f64>() {
                    Ok(f) if n.contains('.') => PlanValue::Float(f),
                    _ => {
                        self.err(
                            Diagnostic::error(
                                Code::WrongValueKind,
                                v.span,
                                "this number is out of range",
                            )
                            .label("too large"),
                        );
                        return None;
                    }
                },
            },
            ValueKind::Bool(b) => PlanValue::Bool(*b),
            ValueKind::Duration(d) => match parse_duration(d) {
                Some(ms) => PlanValue::Duration(ms),
                None => {
                    self.err(
                        Diagnostic::error(
                            Code::InvalidDuration,
                            v.span,
                            format!("`{d}` is too long a duration"),
                        )
                        .label("overflows"),
                    );
                    return None;
                }
            },
            ValueKind::Range(..) => {
                self.err(
                    Diagnostic::error(
                        Code::WrongValueKind,
                        v.span,
                        "a range is only allowed in `estimate`",
                    )
                    .label("unexpected range"),
                );
                return None;
            }
            ValueKind::List(items) => {
                let t = inner(expected);
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.value(i, &t, scope, resolver, refs, used)?);
                }
                PlanValue::List(out)
            }
            ValueKind::Map(entries) => {
                let t = inner(expected);
                let mut out = BTreeMap::new();
                for e in entries {
                    let val = self.value(&e.value, &t, scope, resolver, refs, used)?;
                    if out.insert(e.key.value.clone(), val).is_some() {
                        self.err(
                            Diagnostic::error(
                                Code::DuplicateAttribute,
                                e.key.span,
                                format!("key `{}` is set twice", e.key.value),
                            )
                            .label("set again"),
                        );
                    }
                }
                PlanValue::Map(out)
            }
            ValueKind::Call { name, .. } => {
                self.err(
                    Diagnostic::error(
                        Code::WrongValueKind,
                        v.span,
                        format!(
                            "`{}(...)` is only allowed as a secret parameter's default",
                            name.value
                        ),
                    )
                    .label("unexpected call")
                    .help("declare `param NAME: secret = env(\"VAR\")` and use `NAME` here"),
                );
                return None;
            }
            ValueKind::Path(p) => {
                return self.path(p, v.span, expected, scope, resolver, refs, used);
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn path(
        &mut self,
        p: &str,
        span: Span,
        expected: &ValueType,
        scope: &Scope<'_>,
        resolver: Option<&Resolver<'_>>,
        refs: &mut Refs,
        used: &mut HashSet<String>,
    ) -> Option<PlanValue> {
        if p.starts_with("steps.") {
            let Some(resolver) = resolver.filter(|_| scope.instance.is_some()) else {
                self.err(
                    Diagnostic::error(Code::UnknownStep, span, "step outputs are not known here")
                        .label("only step inputs may read step outputs")
                        .help("parameters, `for_each` and group arguments are fixed when the runbook compiles"),
                );
                return None;
            };
            return resolver
                .output_ref(self, p, span, scope, refs)
                .map(PlanValue::StepOutput);
        }
        if let Some((v, k)) = scope.each {
            match p {
                "each" | "each.value" => return Some(v.clone()),
                "each.index" => return Some(PlanValue::Int(i64::try_from(k).unwrap_or(i64::MAX))),
                _ => {}
            }
        }
        if !p.contains('.') {
            if self.broken.contains(p) && scope.var(p).is_none() {
                return None;
            }
            if let Some(v) = scope.var(p) {
                used.insert(p.to_owned());
                return Some(v.clone());
            }
            if let ValueType::Enum(words) = expected {
                if words.iter().any(|w| w == p) {
                    return Some(PlanValue::String(p.to_owned()));
                }
                let mut d = Diagnostic::error(
                    Code::InputTypeMismatch,
                    span,
                    format!("`{p}` is not one of {}", words.join(", ")),
                )
                .label("unknown word");
                if let Some(s) = did_you_mean(p, words.iter().map(String::as_str)) {
                    d = d.did_you_mean(p, s);
                }
                self.err(d);
                return None;
            }
        }
        let mut known: Vec<&str> = scope.params.keys().map(String::as_str).collect();
        if let Some(a) = scope.args {
            known.extend(a.keys().map(String::as_str));
        }
        let mut d = Diagnostic::error(
            Code::UnknownParameter,
            span,
            format!("`{p}` is not a parameter"),
        )
        .label("unknown name");
        d = match did_you_mean(p, known.iter().copied()) {
            Some(s) => d.did_you_mean(p, s),
            None if p.contains('.') => d.help("step outputs are read as `steps.ID.OUTPUT`"),
            None => d.help(format!("to write the text `{p}`, quote it: \"{p}\"")),
        };
        self.err(d);
        None
    }

    /// Renders a string template with compile-time variables, or keeps it for run time when it
    /// reads step outputs or the mode.
    fn template(
        &mut self,
        text: &str,
        span: Span,
        scope: &Scope<'_>,
        resolver: Option<&Resolver<'_>>,
        refs: &mut Refs,
        used: &mut HashSet<String>,
    ) -> Option<PlanValue> {
        if !text.contains("{{") && !text.contains("{%") {
            return Some(PlanValue::String(text.to_owned()));
        }
        let env = std::rc::Rc::clone(&self.jinja);
        let simple = SimpleTemplate::parse(text);
        let mut compiled = None;
        let mut names: Vec<String> = match &simple {
            // Most templates only substitute names: read them without compiling.
            Some(t) => t.names().map(str::to_owned).collect(),
            None => match env.template_from_str(text) {
                Ok(t) => compiled
                    .insert(t)
                    .undeclared_variables(true)
                    .into_iter()
                    .collect(),
                Err(e) => {
                    let at = e.range().map_or(span, |r| {
                        let start = (span.start as usize + 1 + r.start).min(span.end as usize);
                        let end = (span.start as usize + 1 + r.end)
                            .min(span.end as usize)
                            .max(start);
                        Span::new(span.file, start, end)
                    });
                    self.err(
                        Diagnostic::error(
                            Code::TemplateError,
                            at,
                            format!("template error: {}", e.detail().unwrap_or("syntax error")),
                        )
                        .label("in this template")
                        .help("templates use minijinja syntax: `{{ name }}`, `{{ name | upper }}`"),
                    );
                    return None;
                }
            },
        };
        names.sort();
        names.dedup();
        let mut runtime = false;
        let errors_before = self.diags.len();
        for name in &names {
            runtime |= self.template_var(name, text, span, scope, resolver, refs, used);
        }
        let reads_broken = names
            .iter()
            .any(|n| self.broken.contains(n.split('.').next().unwrap_or(n)));
        if reads_broken || self.diags[errors_before..].iter().any(Diagnostic::is_error) {
            return None;
        }
        let mut ctx: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for name in &names {
            let root = name.split('.').next().unwrap_or(name);
            if root == "each" {
                if let Some((v, k)) = scope.each {
                    ctx.insert(
                        "each".to_owned(),
                        serde_json::json!({ "value": v.to_json(), "index": k }),
                    );
                }
            } else if let Some(v) = scope.var(root) {
                ctx.insert(root.to_owned(), v.to_json());
                if runtime && scope.args.is_some_and(|a| a.contains_key(root)) {
                    refs.context.insert(root.to_owned(), v.clone());
                }
            }
        }
        if runtime {
            return Some(PlanValue::Template(text.to_owned()));
        }
        if let Some(out) = simple.as_ref().and_then(|t| t.render(&ctx)) {
            return Some(PlanValue::String(out));
        }
        let rendered = match compiled {
            Some(t) => t.render(&ctx),
            None => env.render_str(text, &ctx),
        };
        match rendered {
            Ok(s) => Some(PlanValue::String(s)),
            Err(e) => {
                self.err(
                    Diagnostic::error(
                        Code::TemplateError,
                        span,
                        format!("template error: {}", e.detail().unwrap_or("cannot render")),
                    )
                    .label("while rendering this")
                    .help("check the filters and the types of the parameters it reads"),
                );
                None
            }
        }
    }
}

/// A template that only substitutes names — `{{ region }}`, `{{ steps.a.path }}` — on one line,
/// with no blocks, comments, filters, expressions or whitespace control: what most runbook
/// templates are. Its names are read and its output is made without compiling it with minijinja,
/// which gives the same (a unit test compares the two); anything else goes to minijinja.
struct SimpleTemplate<'t> {
    parts: Vec<TemplatePart<'t>>,
}

enum TemplatePart<'t> {
    Text(&'t str),
    Name(&'t str),
}

/// Words minijinja reads as literals, operators or globals rather than variables.
const TEMPLATE_WORDS: &[&str] = &[
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
    "and",
    "or",
    "not",
    "in",
    "is",
    "if",
    "else",
    "loop",
    "self",
    "super",
    "caller",
    "varargs",
    "kwargs",
    "range",
    "dict",
    "namespace",
    "debug",
];

impl<'t> SimpleTemplate<'t> {
    fn parse(text: &'t str) -> Option<Self> {
        if text.contains(['\n', '\r']) || text.contains("{%") || text.contains("{#") {
            return None;
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(TemplatePart::Text(&rest[..open]));
            }
            let inner_start = open + 2;
            let close = rest[inner_start..].find("}}")? + inner_start;
            let name = rest[inner_start..close].trim_matches(' ');
            let is_name = name.split('.').all(|seg| {
                seg.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
            let root = name.split('.').next().unwrap_or(name);
            if !is_name || TEMPLATE_WORDS.contains(&root) {
                return None;
            }
            parts.push(TemplatePart::Name(name));
            rest = &rest[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest));
        }
        Some(Self { parts })
    }

    /// The names it reads, in the order written (repeats included).
    fn names(&self) -> impl Iterator<Item = &'t str> + '_ {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Name(n) => Some(*n),
            TemplatePart::Text(_) => None,
        })
    }

    /// The output, when every name is a plain name whose value is a string or a whole number
    /// (rendered as minijinja does); `None` leaves it to minijinja.
    fn render(&self, ctx: &BTreeMap<String, serde_json::Value>) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                TemplatePart::Text(t) => out.push_str(t),
                TemplatePart::Name(n) => match ctx.get(*n)? {
                    serde_json::Value::String(s) => out.push_str(s),
                    serde_json::Value::Number(v) if v.is_i64() || v.is_u64() => {
                        out.push_str(&v.to_string());
                    }
                    _ => return None,
                },
            }
        }
        Some(out)
    }
}

/// Resolves step names and output references to instances.
struct Resolver<'a> {
    defs: &'a [Def<'a>],
    insts: &'a Insts,
    by_base: &'a HashMap<&'a str, Targets>,
    recovered: &'a HashSet<&'a str>,
}

impl Resolver<'_> {
    fn qualify(&self, name: &str, scope: &Scope<'_>) -> String {
        match scope.group {
            Some(g) if g.locals.contains(name) => format!("{}.{name}", g.prefix),
            _ => name.to_owned(),
        }
    }

    /// The instances a step name refers to, narrowed to the same fan-out index where both steps
    /// fan out over the same list.
    fn resolve_name(
        &self,
        c: &mut Compiler<'_>,
        name: &str,
        span: Span,
        scope: &Scope<'_>,
    ) -> Option<Vec<usize>> {
        let q = self.qualify(name, scope);
        let Some(targets) = self.by_base.get(q.as_str()) else {
            if self.recovered.contains(name) {
                return None;
            }
            let mut d = Diagnostic::error(
                Code::UnknownStep,
                span,
                format!("no step is called `{name}`"),
            )
            .label("unknown step");
            let mut known: Vec<&str> = self.by_base.keys().copied().collect();
            known.sort_unstable();
            d = match did_you_mean(name, known.iter().copied()) {
                Some(s) => d.did_you_mean(name, s),
                None => d.help("`after` and `steps.ID.OUTPUT` name steps defined in this runbook"),
            };
            c.err(d);
            return None;
        };
        Some(self.zip(targets.to_vec(), scope))
    }

    fn zip(&self, targets: Vec<usize>, scope: &Scope<'_>) -> Vec<usize> {
        let (Some(me), Some((_, k))) = (scope.instance, scope.each) else {
            return targets;
        };
        let mine = &self.defs[self.insts.def(me)].for_each;
        let zipped = targets.iter().all(|&t| t < self.insts.len())
            && targets.iter().all(|&t| {
                let theirs = &self.defs[self.insts.def(t)].for_each;
                theirs.is_some() && theirs == mine
            });
        if zipped {
            targets
                .into_iter()
                .filter(|&t| self.insts.each(t).is_some_and(|(_, j)| j == k))
                .collect()
        } else {
            targets
        }
    }

    /// Resolves `steps.ID.OUTPUT` and records the dependency.
    fn output_ref(
        &self,
        c: &mut Compiler<'_>,
        path: &str,
        span: Span,
        scope: &Scope<'_>,
        refs: &mut Refs,
    ) -> Option<OutputRef> {
        let rest = path.strip_prefix("steps.").unwrap_or("");
        let Some((id, output)) = rest.rsplit_once('.') else {
            c.err(
                Diagnostic::error(
                    Code::UnknownOutput,
                    span,
                    format!("`{path}` does not name an output"),
                )
                .label("output missing")
                .help("write `steps.ID.OUTPUT`, for example `steps.restore_db.sha256`"),
            );
            return None;
        };
        let targets = self.resolve_name(c, id, span, scope)?;
        if targets.len() != 1 {
            c.err(
                Diagnostic::error(Code::InvalidForEach, span, format!("`{id}` fans out, so `{path}` is ambiguous"))
                    .label("refers to several step instances")
                    .help("read it from a step that fans out over the same list, or depend on it with `after`"),
            );
            return None;
        }
        let t = targets[0];
        if t >= self.insts.len() {
            c.err(
                Diagnostic::error(
                    Code::UnknownOutput,
                    span,
                    format!("`{id}` is a milestone; milestones have no outputs"),
                )
                .label("not a step")
                .help("wait for a milestone with `after`"),
            );
            return None;
        }
        if let Some(action) = self.defs[self.insts.def(t)].schema
            && action.output_named(output).is_none()
        {
            {
                let mut d = Diagnostic::error(
                    Code::UnknownOutput,
                    span,
                    format!("`{}` has no output `{output}`", action.name),
                )
                .label("unknown output");
                let names: Vec<&str> = action.outputs.iter().map(|o| o.name.as_str()).collect();
                d = hint_typo_or_list(d, output, &names, "outputs");
                c.err(d);
                return None;
            }
        }
        refs.deps.push((t, span, Dependency::Data));
        Some(OutputRef {
            step: self.insts.id(t, self.defs).to_owned(),
            output: output.to_owned(),
        })
    }
}

/// The value type a parameter of this type accepts.
fn param_value_type(t: &ParamType) -> ValueType {
    match t {
        ParamType::String => ValueType::String,
        ParamType::Int => ValueType::Int,
        ParamType::Bool => ValueType::Bool,
        ParamType::Duration => ValueType::Duration,
        ParamType::List(inner) => ValueType::List(Box::new(param_value_type(inner))),
        ParamType::Secret => ValueType::Secret,
    }
}

/// Whether a resolved value fits a type; the error names what was found.
fn type_matches(v: &PlanValue, t: &ValueType) -> Result<(), String> {
    let found = || -> String {
        match v {
            PlanValue::String(s) => format!("the string \"{s}\""),
            PlanValue::Template(_) => "a template string".into(),
            PlanValue::Int(i) => format!("the number {i}"),
            PlanValue::Float(f) => format!("the number {f}"),
            PlanValue::Bool(b) => format!("`{b}`"),
            PlanValue::Duration(ms) => {
                format!("the duration {}", crate::duration::format_duration(*ms))
            }
            PlanValue::List(_) => "a list".into(),
            PlanValue::Map(_) => "a map".into(),
            PlanValue::StepOutput(r) => format!("the output `{}` of `{}`", r.output, r.step),
            PlanValue::Secret { param, .. } => format!("the secret `{param}`"),
        }
    };
    let ok = match (t, v) {
        (ValueType::Any, PlanValue::Secret { .. }) => false,
        (ValueType::Any, _) | (_, PlanValue::StepOutput(_)) => true,
        (ValueType::String, PlanValue::String(_) | PlanValue::Template(_)) => true,
        (
            ValueType::StringOrSecret,
            PlanValue::String(_) | PlanValue::Template(_) | PlanValue::Secret { .. },
        ) => true,
        (ValueType::Secret, PlanValue::Secret { .. }) => true,
        (ValueType::Int, PlanValue::Int(_)) => true,
        (ValueType::Bool, PlanValue::Bool(_)) => true,
        (ValueType::Duration, PlanValue::Duration(_)) => true,
        (ValueType::Enum(words), PlanValue::String(s)) => {
            if words.contains(s) {
                true
            } else {
                return Err(format!("\"{s}\", which is not one of {}", words.join(", ")));
            }
        }
        (ValueType::Enum(_), PlanValue::Template(_)) => true,
        (ValueType::List(inner), PlanValue::List(items)) => {
            for i in items {
                type_matches(i, inner)?;
            }
            true
        }
        (ValueType::Map(inner), PlanValue::Map(m)) => {
            for i in m.values() {
                type_matches(i, inner)?;
            }
            true
        }
        _ => false,
    };
    if ok { Ok(()) } else { Err(found()) }
}

/// The span of `needle` inside a string literal at `span` (the whole literal if not found).
fn locate(text: &str, needle: &str, span: Span) -> Span {
    let root = needle.split('.').next().unwrap_or(needle);
    let found = text
        .find(needle)
        .map(|i| (i, needle.len()))
        .or_else(|| text.find(root).map(|i| (i, root.len())));
    match found {
        Some((i, len)) if text.len() + 2 == span.len() => {
            let start = span.start as usize + 1 + i;
            Span::new(span.file, start, start + len)
        }
        _ => span,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compiles a runbook held in a string (for tests, fuzzing and benchmarks).
#[must_use]
pub fn compile_str(name: &str, text: &str, opts: &CompileOptions<'_>) -> Compilation {
    let loader = crate::loader::MemoryLoader::new().with(name, text);
    compile(name, &loader, opts)
}

/// The modes a list of plan modes stands for.
#[must_use]
pub fn mode_set(modes: &[Mode]) -> ModeSet {
    ModeSet::of(modes.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a template takes the fast path, its names and output are minijinja's.
    #[test]
    fn simple_templates_read_and_render_as_minijinja_does() {
        let env = template_env();
        let ctx: BTreeMap<String, serde_json::Value> = [
            ("region", serde_json::json!("us-east-1")),
            ("port", serde_json::json!(5432)),
            ("big", serde_json::json!(u64::MAX)),
            ("neg", serde_json::json!(-3)),
            ("ratio", serde_json::json!(0.5)),
            ("flag", serde_json::json!(true)),
            ("list", serde_json::json!(["a", "b"])),
            ("map", serde_json::json!({"k": "v"})),
            (
                "text",
                serde_json::json!("<b>&\"quoted\"</b> {{ not a template }}"),
            ),
            ("_x1", serde_json::json!("u")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let templates = [
            "{{ region }}",
            "{{region}}",
            "{{   region  }}",
            "s3://bucket/{{ region }}/db-{{ port }}.dump",
            "{{ region }}{{ region }}",
            "{{ port }} {{ big }} {{ neg }}",
            "{{ ratio }}",
            "{{ flag }}",
            "{{ list }}",
            "{{ map }}",
            "{{ map.k }}",
            "{{ text }}",
            "{{ _x1 }}",
            "{{ steps.restore.path }} to {{ region }}",
            "{{ each.value }}",
            "}} {{ region }} }}",
            "{{ true }}",
            "{{ none }}",
            "{{ loop }}",
            "{{ range }}",
            "{{ region | upper }}",
            "{{ region ~ port }}",
            "{{- region }}",
            "{{ region }}\n",
            "{% if flag %}x{% endif %}",
            "{# c #}{{ region }}",
            "{{ 1x }}",
            "{{ region",
        ];
        let mut fast = 0;
        for text in templates {
            let Some(simple) = SimpleTemplate::parse(text) else {
                continue;
            };
            let tmpl = env
                .template_from_str(text)
                .expect("a simple template compiles");
            let mut want: Vec<String> = tmpl.undeclared_variables(true).into_iter().collect();
            want.sort();
            let mut got: Vec<String> = simple.names().map(str::to_owned).collect();
            got.sort();
            got.dedup();
            assert_eq!(got, want, "names of {text:?}");
            if let Some(out) = simple.render(&ctx) {
                assert_eq!(
                    Ok(out),
                    tmpl.render(&ctx).map_err(|e| e.to_string()),
                    "{text:?}"
                );
                fast += 1;
            }
        }
        assert_eq!(fast, 9, "rendered without minijinja");
        for text in [
            "{{ region | upper }}",
            "{{ true }}",
            "{{ region }}\n",
            "{{ region",
        ] {
            assert!(SimpleTemplate::parse(text).is_none(), "{text:?}");
        }
    }
}

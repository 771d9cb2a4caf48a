//! The compiled plan: a petgraph DAG of fully resolved steps and milestones.
//!
//! A plan is what the engine executes and the simulator simulates. It is deterministic: the same
//! sources and variables give byte-identical JSON. Secrets appear only as references to the
//! environment variable that holds them, never as values.

pub use crate::plan_inputs::PlanInputs;
use crate::runbook::{Estimate, Lint, Mode, OnFailure};
use drover_schema::{Effect, Role};
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The plan format version; bumped when the JSON shape changes incompatibly.
pub const PLAN_FORMAT: u32 = 1;

/// A compiled runbook.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_FORMAT`] at the time of compilation.
    pub format: u32,
    /// The header.
    pub runbook: PlanHeader,
    /// Parameter values (secrets as references).
    pub params: BTreeMap<String, PlanValue>,
    /// Resources a drill must never touch.
    pub production: PlanProduction,
    /// Steps and milestones; an edge `a → b` means `b` waits for `a`.
    pub graph: DiGraph<PlanNode, Dependency>,
    /// When the server starts the runbook by itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<drover_schedule::ScheduleSpec>,
    /// How fresh its drills and verifications must be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PlanPolicy>,
}

/// The runbook's `policy` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PlanPolicy {
    /// Overdue when the last successful drill is older than this (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_every_ms: Option<u64>,
    /// Overdue when the last successful verification run is older than this (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_every_ms: Option<u64>,
}

/// The runbook's header, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanHeader {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Owner.
    pub owner: Option<String>,
    /// Service tier.
    pub tier: Option<i64>,
    /// RTO target (ms).
    pub rto_ms: u64,
    /// RPO target (ms).
    pub rpo_ms: u64,
    /// Supported modes.
    pub modes: Vec<Mode>,
    /// Global concurrency limit.
    pub max_parallel: Option<u32>,
    /// The main source file, as named on the command line.
    pub source: String,
    /// SHA-256 over every source file (name and text), in load order — the operator roster
    /// included.
    pub source_sha256: String,
    /// The operator roster the runbook names (`operators = "…"`), as compiled: approvals and the
    /// start of a run are verified against this copy, whatever happens to the file later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roster: Option<PlanRoster>,
    /// A tabletop exercise's plan: run on a virtual clock by simulated actions (nothing is
    /// changed); never a verified recovery, and kept apart from real runs in history and
    /// measurements.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub simulated: bool,
}

impl Plan {
    /// Whether a plan stored as JSON is a tabletop's ([`PlanHeader::simulated`]), read from its
    /// header alone (the graph is not built). A text that is no plan is not simulated.
    #[must_use]
    pub fn json_is_simulated(json: &str) -> bool {
        #[derive(Deserialize)]
        struct Head {
            runbook: Simulated,
        }
        #[derive(Deserialize)]
        struct Simulated {
            #[serde(default)]
            simulated: bool,
        }
        serde_json::from_str::<Head>(json).is_ok_and(|h| h.runbook.simulated)
    }
}

/// The operator roster of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRoster {
    /// Where it was read from (resolved against the runbook's directory).
    pub path: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// Its text (public keys, roles, secret references; never a secret).
    pub text: String,
}

/// Production resources and tags.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PlanProduction {
    /// Resource identifiers.
    pub resources: Vec<String>,
    /// Tags marking production.
    pub tags: BTreeMap<String, String>,
}

/// Why one node waits for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dependency {
    /// Written in `after`.
    Explicit,
    /// Through a reference to the other step's outputs.
    Data,
}

/// A node of the plan graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanNode {
    /// A step to execute.
    Step(Box<PlanStep>),
    /// A milestone, reached when its dependencies are done (boxed like a step, so that a node
    /// of the graph is a pointer and a tag).
    Milestone(Box<PlanMilestone>),
}

impl PlanNode {
    /// The node's id.
    #[must_use]
    pub fn id(&self) -> &str {
        match self {
            PlanNode::Step(s) => &s.id,
            PlanNode::Milestone(m) => &m.id,
        }
    }

    /// The modes it belongs to.
    #[must_use]
    pub fn modes(&self) -> &[Mode] {
        match self {
            PlanNode::Step(s) => &s.modes,
            PlanNode::Milestone(m) => &m.modes,
        }
    }

    /// The step, if this is one.
    #[must_use]
    pub fn as_step(&self) -> Option<&PlanStep> {
        match self {
            PlanNode::Step(s) => Some(s),
            PlanNode::Milestone(_) => None,
        }
    }
}

/// Where a node was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// File name.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
}

/// A step, fully resolved: templates rendered where they depend only on parameters, fan-out
/// expanded, group steps prefixed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    /// Unique id (`restore`, `restore[us-east-1]`, `checks.http`).
    pub id: String,
    /// The id as written, before fan-out.
    pub base_id: String,
    /// The action.
    pub action: String,
    /// The action's provider (`aws_route53`; `core` for bare actions).
    pub provider: String,
    /// What the action does to the world.
    pub effect: Effect,
    /// The part it plays.
    pub role: Role,
    /// Description.
    pub description: Option<String>,
    /// Inputs.
    pub inputs: PlanInputs,
    /// References to other steps' outputs used in run-time templates, by the name written
    /// (`steps.restore_db.path`).
    pub bindings: BTreeMap<String, OutputRef>,
    /// Extra template variables for run-time templates (group arguments, `each`).
    pub context: BTreeMap<String, PlanValue>,
    /// Modes it runs in.
    pub modes: Vec<Mode>,
    /// Retry policy.
    pub retry: Option<PlanRetry>,
    /// Per-attempt time limit (ms): the step's `timeout`, or its action's default.
    pub timeout_ms: Option<u64>,
    /// Whether `timeout_ms` is the action's default (the runbook set none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timeout_is_default: bool,
    /// Failure policy.
    pub on_failure: OnFailure,
    /// The undo (boxed: most steps have none, and a plan holds every step).
    pub compensate: Option<Box<PlanCompensate>>,
    /// Whether the action's adapter undoes it from the state it captured (used by rollback
    /// when the step has no `compensate` block).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub builtin_undo: bool,
    /// Run-time condition.
    pub when: Option<String>,
    /// Expected duration.
    pub estimate: Option<Estimate>,
    /// Waived safety lints and why.
    pub waivers: BTreeMap<Lint, String>,
    /// Its tags. A step tagged `break_glass` runs only when an operator breaks the glass
    /// on an approval (and is skipped otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Where it was written.
    pub source: SourceRef,
}

/// The tag of the notify steps that fire when an operator breaks the glass on an approval.
pub const BREAK_GLASS_TAG: &str = "break_glass";

impl PlanStep {
    /// Whether the step runs only when someone breaks the glass (tagged `break_glass`).
    #[must_use]
    pub fn fires_on_break_glass(&self) -> bool {
        self.tags.iter().any(|t| t == BREAK_GLASS_TAG)
    }
}

/// A step output a run-time template reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRef {
    /// The step instance.
    pub step: String,
    /// The output.
    pub output: String,
}

/// Retry policy: exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRetry {
    /// Total attempts.
    pub attempts: u32,
    /// First delay (ms).
    pub backoff_ms: u64,
    /// Largest delay (ms).
    pub max_backoff_ms: u64,
}

/// The undo of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanCompensate {
    /// Action.
    pub action: String,
    /// Inputs.
    pub inputs: PlanInputs,
}

/// A milestone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanMilestone {
    /// Id.
    pub id: String,
    /// What it means.
    pub title: Option<String>,
    /// Whether it stops the RTO clock.
    pub stops_rto: bool,
    /// Steps (instances) whose recovery points count for RPO.
    pub rpo_from: Vec<String>,
    /// Modes it is reached in.
    pub modes: Vec<Mode>,
    /// Where it was written.
    pub source: SourceRef,
}

/// A resolved value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanValue {
    /// A string.
    String(String),
    /// A whole number.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A duration (ms).
    Duration(u64),
    /// A list.
    List(Vec<PlanValue>),
    /// A map.
    Map(BTreeMap<String, PlanValue>),
    /// A template rendered at run time (it reads step outputs or the mode).
    Template(String),
    /// Another step's output.
    StepOutput(OutputRef),
    /// A secret, read from the environment at run time.
    Secret {
        /// The parameter.
        param: String,
        /// The environment variable.
        env: String,
    },
}

impl PlanValue {
    /// The strings the value holds literally (a string, or the strings of a list, nested): what
    /// is known of a resource name before the run.
    #[must_use]
    pub fn literal_strings(&self) -> Vec<&str> {
        match self {
            PlanValue::String(s) => vec![s.as_str()],
            PlanValue::List(items) => items.iter().flat_map(PlanValue::literal_strings).collect(),
            _ => Vec::new(),
        }
    }

    /// The value as JSON for template contexts. Secrets become `null`: they are never rendered.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            PlanValue::String(s) | PlanValue::Template(s) => J::String(s.clone()),
            PlanValue::Int(i) => J::from(*i),
            PlanValue::Float(f) => J::from(*f),
            PlanValue::Bool(b) => J::Bool(*b),
            PlanValue::Duration(ms) => J::String(crate::duration::format_duration(*ms)),
            PlanValue::List(l) => J::Array(l.iter().map(PlanValue::to_json).collect()),
            PlanValue::Map(m) => {
                J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            PlanValue::StepOutput(_) | PlanValue::Secret { .. } => J::Null,
        }
    }

    /// A short display form (secrets shown as `<secret:NAME>`).
    #[must_use]
    pub fn display(&self) -> String {
        match self {
            PlanValue::String(s) => s.clone(),
            PlanValue::Template(t) => t.clone(),
            PlanValue::Int(i) => i.to_string(),
            PlanValue::Float(f) => f.to_string(),
            PlanValue::Bool(b) => b.to_string(),
            PlanValue::Duration(ms) => crate::duration::format_duration(*ms),
            PlanValue::List(l) => format!(
                "[{}]",
                l.iter()
                    .map(PlanValue::display)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            PlanValue::Map(m) => format!(
                "{{{}}}",
                m.iter()
                    .map(|(k, v)| format!("{k} = {}", v.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            PlanValue::StepOutput(r) => format!("steps.{}.{}", r.step, r.output),
            PlanValue::Secret { param, .. } => format!("<secret:{param}>"),
        }
    }
}

impl Plan {
    /// The mode a command works in: the one asked for, else the runbook's first (else drill);
    /// `Err` names it when the runbook does not support it.
    ///
    /// # Errors
    /// The mode, when the runbook does not list it.
    pub fn mode_or_first(&self, asked: Option<Mode>) -> Result<Mode, Mode> {
        let mode = asked
            .or_else(|| self.runbook.modes.first().copied())
            .unwrap_or(Mode::Drill);
        if self.runbook.modes.contains(&mode) {
            Ok(mode)
        } else {
            Err(mode)
        }
    }

    /// The node with this id.
    #[must_use]
    pub fn find(&self, id: &str) -> Option<NodeIndex> {
        self.graph
            .node_indices()
            .find(|&i| self.graph[i].id() == id)
    }

    /// Every step, in graph order.
    pub fn steps(&self) -> impl Iterator<Item = (NodeIndex, &PlanStep)> {
        self.graph
            .node_indices()
            .filter_map(|i| self.graph[i].as_step().map(|s| (i, s)))
    }

    /// The plan as pretty JSON (deterministic).
    ///
    /// # Errors
    /// Never in practice; serialization of these types cannot fail.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

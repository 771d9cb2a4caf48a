//! The typed AST: a runbook as the compiler understands it, every node with its span.

use crate::document::{Attribute, Value};
use crate::span::{FileId, Span, Spanned};
use serde::{Deserialize, Serialize};

pub use drover_schema::Mode;

/// A set of modes, as a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct ModeSet(pub u8);

impl ModeSet {
    /// Every mode.
    pub const ALL: ModeSet = ModeSet(7);

    /// Whether `m` is in the set.
    #[must_use]
    pub fn contains(self, m: Mode) -> bool {
        self.0 & m.bit() != 0
    }

    /// The modes in the set, in declaration order.
    #[must_use]
    pub fn modes(self) -> Vec<Mode> {
        Mode::ALL
            .into_iter()
            .filter(|m| self.contains(*m))
            .collect()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Builds a set from modes.
    #[must_use]
    pub fn of(modes: impl IntoIterator<Item = Mode>) -> ModeSet {
        ModeSet(modes.into_iter().fold(0, |acc, m| acc | m.bit()))
    }
}

/// What happens when a step fails after its retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Stop scheduling new steps; the run fails.
    #[default]
    Abort,
    /// Record the failure and carry on with steps that do not depend on this one.
    Continue,
    /// Run the `compensate` of every completed step, in reverse dependency order.
    Rollback,
}

/// How long a step is expected to take, for RTO prediction and simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Estimate {
    /// Always this long (ms).
    Fixed {
        /// Milliseconds.
        ms: u64,
    },
    /// Uniformly between two bounds (ms).
    Range {
        /// Lower bound.
        min_ms: u64,
        /// Upper bound.
        max_ms: u64,
    },
    /// Triangular: least, most likely, greatest (ms).
    Triangular {
        /// Least.
        min_ms: u64,
        /// Most likely.
        mode_ms: u64,
        /// Greatest.
        max_ms: u64,
    },
    /// Log-normal given by its median and 95th percentile (ms).
    Percentiles {
        /// Median.
        p50_ms: u64,
        /// 95th percentile.
        p95_ms: u64,
    },
}

impl Estimate {
    /// The optimistic and pessimistic durations used for the predicted RTO range: the bounds of a
    /// range or triangle, the p50 and p95 of percentiles.
    #[must_use]
    pub fn bounds(&self) -> (u64, u64) {
        match *self {
            Estimate::Fixed { ms } => (ms, ms),
            Estimate::Range { min_ms, max_ms } | Estimate::Triangular { min_ms, max_ms, .. } => {
                (min_ms, max_ms)
            }
            Estimate::Percentiles { p50_ms, p95_ms } => (p50_ms, p95_ms),
        }
    }
}

/// A safety lint that a step may waive, with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lint {
    /// DR1001.
    UnapprovedDestructive,
    /// DR1002.
    UnverifiedCutover,
    /// DR1003.
    NoCompensate,
}

impl Lint {
    /// Every lint.
    pub const ALL: [Lint; 3] = [
        Lint::UnapprovedDestructive,
        Lint::UnverifiedCutover,
        Lint::NoCompensate,
    ];

    /// The lint's name as written in an `allow` block.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Lint::UnapprovedDestructive => "unapproved_destructive",
            Lint::UnverifiedCutover => "unverified_cutover",
            Lint::NoCompensate => "no_compensate",
        }
    }
}

/// A waived lint and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiver {
    /// Which lint.
    pub lint: Lint,
    /// Why it is safe here.
    pub reason: Spanned<String>,
}

/// The `runbook "name" { ... }` header.
#[derive(Debug, Clone)]
pub struct Header {
    /// The runbook's name.
    pub name: Spanned<String>,
    /// What it is for.
    pub description: Option<String>,
    /// Who owns it.
    pub owner: Option<String>,
    /// Service tier (1 = most critical).
    pub tier: Option<i64>,
    /// Recovery time objective (ms).
    pub rto: Option<Spanned<u64>>,
    /// Recovery point objective (ms).
    pub rpo: Option<Spanned<u64>>,
    /// The modes the runbook supports (default: all).
    pub modes: Option<Spanned<ModeSet>>,
    /// Global step concurrency limit.
    pub max_parallel: Option<i64>,
    /// The operator roster (a path relative to the runbook).
    pub operators: Option<Spanned<String>>,
    /// Where.
    pub span: Span,
}

/// The type of a parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    /// A string.
    String,
    /// A whole number.
    Int,
    /// A boolean.
    Bool,
    /// A duration.
    Duration,
    /// A list.
    List(Box<ParamType>),
    /// A secret, resolved from the environment at run time.
    Secret,
}

impl ParamType {
    /// The type as written.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            ParamType::String => "string".into(),
            ParamType::Int => "int".into(),
            ParamType::Bool => "bool".into(),
            ParamType::Duration => "duration".into(),
            ParamType::List(t) => format!("list<{}>", t.describe()),
            ParamType::Secret => "secret".into(),
        }
    }
}

/// `param name: type = default`.
#[derive(Debug, Clone)]
pub struct Param {
    /// Name.
    pub name: Spanned<String>,
    /// Type.
    pub ty: Spanned<ParamType>,
    /// Default value.
    pub default: Option<Value>,
    /// Whether the declared type was unknown (already reported; the parameter is then ignored).
    pub bad_type: bool,
}

/// The `production { ... }` block: resources a drill must never touch.
#[derive(Debug, Clone, Default)]
pub struct Production {
    /// Resource identifiers (zone ids, allocation ids, names).
    pub resources: Vec<Spanned<String>>,
    /// Tags that mark a resource as production (checked by adapters at run time).
    pub tags: Vec<(String, String)>,
}

/// `retry { attempts = 3  backoff = 10s }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Total attempts, the first included.
    pub attempts: u32,
    /// Delay before the first retry (ms); doubles each time, with jitter.
    pub backoff_ms: u64,
    /// Largest delay between attempts (ms).
    pub max_backoff_ms: u64,
    /// Where.
    pub span: Span,
}

/// `compensate { action = ... with { ... } }`: the undo of a step.
#[derive(Debug, Clone)]
pub struct Compensate {
    /// The undo action.
    pub action: Spanned<String>,
    /// Its inputs.
    pub inputs: Vec<Attribute>,
    /// Where.
    pub span: Span,
}

/// `step id { ... }`.
#[derive(Debug, Clone)]
pub struct Step {
    /// The step's id.
    pub id: Spanned<String>,
    /// One line saying what it does.
    pub description: Option<String>,
    /// The action it runs.
    pub action: Option<Spanned<String>>,
    /// Inputs (`with { ... }`).
    pub inputs: Vec<Attribute>,
    /// Explicit dependencies.
    pub after: Vec<Spanned<String>>,
    /// Retry policy.
    pub retry: Option<Retry>,
    /// Time limit per attempt (ms).
    pub timeout: Option<Spanned<u64>>,
    /// What to do on failure.
    pub on_failure: OnFailure,
    /// The undo used by rollback and failback (boxed, as rare: a lowered step is held for every
    /// step of the runbook while the plan is built).
    pub compensate: Option<Box<Compensate>>,
    /// Condition, a template expression evaluated at run time.
    pub when: Option<Spanned<String>>,
    /// Fan-out list (boxed, as rare).
    pub for_each: Option<Box<Value>>,
    /// Expected duration.
    pub estimate: Option<Spanned<Estimate>>,
    /// Modes it runs in (default: the runbook's).
    pub modes: Option<Spanned<ModeSet>>,
    /// Waived safety lints.
    pub waivers: Vec<Waiver>,
    /// Tags (`tags = [break_glass]`).
    pub tags: Vec<Spanned<String>>,
    /// Where (the whole block).
    pub span: Span,
}

/// `milestone id { ... }`.
#[derive(Debug, Clone)]
pub struct Milestone {
    /// Its id.
    pub id: Spanned<String>,
    /// What it means ("service restored").
    pub title: Option<String>,
    /// Steps that must be done for it to be reached.
    pub after: Vec<Spanned<String>>,
    /// Whether reaching it stops the RTO clock.
    pub stops_rto: bool,
    /// Rehydrate steps whose recovery points count for RPO.
    pub rpo_from: Vec<Spanned<String>>,
    /// Where.
    pub span: Span,
}

/// `group name { param ...  step ... }`: reusable steps, usually in an imported file.
#[derive(Debug, Clone)]
pub struct Group {
    /// Name.
    pub name: Spanned<String>,
    /// Parameters set by each `use`.
    pub params: Vec<Param>,
    /// Steps; their ids are prefixed with the `use` id when expanded.
    pub steps: Vec<Step>,
    /// Where.
    pub span: Span,
}

/// `use id { group = name  after = [...]  with { ... } }`: an expansion of a group.
#[derive(Debug, Clone)]
pub struct GroupUse {
    /// The id; expanded steps are `id.step`.
    pub id: Spanned<String>,
    /// Which group.
    pub group: Option<Spanned<String>>,
    /// Dependencies of the group's first steps.
    pub after: Vec<Spanned<String>>,
    /// Values of the group's parameters.
    pub args: Vec<Attribute>,
    /// Modes the expanded steps run in.
    pub modes: Option<Spanned<ModeSet>>,
    /// Where.
    pub span: Span,
}

/// `import "path"`.
#[derive(Debug, Clone)]
pub struct Import {
    /// The path as written.
    pub path: Spanned<String>,
}

/// `schedule NAME { ... }`: when the server starts the runbook by itself.
#[derive(Debug, Clone)]
pub struct ScheduleBlock {
    /// Its name.
    pub name: Spanned<String>,
    /// The mode its runs start in.
    pub mode: Option<Spanned<Mode>>,
    /// A five-field cron expression.
    pub cron: Option<Spanned<String>>,
    /// Or a fixed interval (ms).
    pub every: Option<Spanned<u64>>,
    /// The IANA time zone the cron is read in.
    pub timezone: Option<Spanned<String>>,
    /// Blackout entries as written.
    pub blackout: Vec<Spanned<String>>,
    /// What a fire does while the previous run is going, as written.
    pub overlap: Option<Spanned<String>>,
    /// How old a missed fire may be and still start a late run (ms).
    pub catch_up: Option<Spanned<u64>>,
    /// The bound of each fire's random delay (ms).
    pub jitter: Option<Spanned<u64>>,
    /// Parameter values for its runs.
    pub vars: Vec<Attribute>,
    /// Where (the block's keyword).
    pub span: Span,
}

/// `policy { drill_every = 90d  verify_every = 1d }`: how fresh the evidence must be.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The runbook is overdue when its last successful drill is older than this (ms).
    pub drill_every: Option<Spanned<u64>>,
    /// The runbook is overdue when its last successful verification is older than this (ms).
    pub verify_every: Option<Spanned<u64>>,
    /// Where.
    pub span: Span,
}

/// One file, lowered.
#[derive(Debug, Clone)]
pub struct Runbook {
    /// The file.
    pub file: FileId,
    /// The header, if the file has one.
    pub header: Option<Header>,
    /// Repeated headers (an error).
    pub extra_headers: Vec<Span>,
    /// Imports.
    pub imports: Vec<Import>,
    /// Parameters.
    pub params: Vec<Param>,
    /// The production block.
    pub production: Production,
    /// Steps (each boxed: the compiler releases a step as soon as its part of the plan is
    /// built, so that a large runbook's lowered steps and its plan are not held whole together).
    pub steps: Vec<Box<Step>>,
    /// Group expansions.
    pub uses: Vec<GroupUse>,
    /// Group definitions.
    pub groups: Vec<Group>,
    /// Milestones.
    pub milestones: Vec<Milestone>,
    /// Schedules.
    pub schedules: Vec<ScheduleBlock>,
    /// The freshness policy.
    pub policy: Option<Policy>,
    /// Names of items dropped by syntax-error recovery.
    pub recovered: Vec<String>,
}

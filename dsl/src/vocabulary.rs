//! The words of the language: which blocks and attributes each construct takes. The lowering pass
//! checks a runbook against these lists; editors complete from them.

/// Items allowed at the top level of a file.
pub const TOP_LEVEL: &[&str] = &[
    "runbook",
    "param",
    "import",
    "production",
    "step",
    "milestone",
    "group",
    "use",
    "schedule",
    "policy",
];

/// Attributes of the `runbook "name" { ... }` header.
pub const HEADER: &[&str] = &[
    "description",
    "owner",
    "tier",
    "rto",
    "rpo",
    "modes",
    "max_parallel",
    "operators",
];

/// Attributes of a step.
pub const STEP: &[&str] = &[
    "description",
    "action",
    "after",
    "timeout",
    "on_failure",
    "when",
    "for_each",
    "estimate",
    "modes",
    "tags",
];

/// Blocks inside a step.
pub const STEP_BLOCKS: &[&str] = &["with", "retry", "compensate", "allow"];

/// Attributes of `production { ... }`.
pub const PRODUCTION: &[&str] = &["resources", "tags"];

/// Attributes of a step's `retry { ... }`.
pub const RETRY: &[&str] = &["attempts", "backoff", "max_backoff"];

/// Attributes of a step's `compensate { ... }` (which also takes a `with` block).
pub const COMPENSATE: &[&str] = &["action"];

/// Attributes of `schedule "name" { ... }`.
pub const SCHEDULE: &[&str] = &[
    "mode", "cron", "every", "timezone", "blackout", "overlap", "catch_up", "jitter", "vars",
];

/// Attributes of `policy { ... }`.
pub const POLICY: &[&str] = &["drill_every", "verify_every"];

/// Attributes of a milestone.
pub const MILESTONE: &[&str] = &["title", "after", "stops_rto", "rpo_from"];

/// Attributes of `use NAME { ... }` (which also takes a `with` block).
pub const USE: &[&str] = &["group", "after", "modes"];

/// Parameter types (`list` takes an argument: `list<string>`).
pub const TYPES: &[&str] = &["string", "int", "bool", "duration", "list", "secret"];

/// Values of a step's `on_failure`.
pub const ON_FAILURE: &[&str] = &["abort", "continue", "rollback"];

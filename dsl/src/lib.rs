//! The Drover runbook language.
//!
//! Source text goes through [`parse`] (pest grammar → concrete [`Document`], comments kept, every
//! syntax error reported), then lowering (→ typed [`Runbook`]), then [`compile`] (parameters,
//! groups, fan-out, actions, references, the DAG, graph checks and safety lints) to a [`Plan`]:
//! a petgraph DAG of fully resolved steps, deterministic and serializable. [`format`] prints a
//! document back in canonical layout; [`analysis`] computes parallel stages, the critical path and
//! the predicted RTO; [`graph`] draws the plan as DOT or Mermaid.
//!
//! Diagnostics are data ([`Diagnostic`]: code, severity, message, labelled spans, help); the CLI
//! renders them with miette through [`Diagnostic::report`]. Codes are stable ([`Code`]) and each
//! is documented in `docs/diagnostics.md`.
//!
//! Where to look: the grammar is `src/grammar.pest`; the language reference is
//! `docs/language.md`.

pub mod analysis;
mod checks;
// pest_derive without `std` (see the workspace manifest) names `alloc` in the code it generates.
extern crate alloc;

mod code;
mod compile;
mod diagnostic;
mod document;
mod duration;
mod format;
pub mod graph;
mod loader;
mod lower;
mod parse;
mod plan;
pub mod plan_inputs;
#[cfg(feature = "render")]
mod render;
mod runbook;
mod source_map;
mod span;
mod suggest;
mod synthetic;
pub mod vocabulary;

pub use code::Code;
pub use compile::{Compilation, CompileOptions, compile, compile_str, mode_set};
pub use diagnostic::{Diagnostic, Label, Report, Severity, Suggestion};
pub use document::{
    Attribute, Block, BlockLabel, Comment, Document, ImportDecl, Item, ItemKind, ParamDecl,
    Recovered, TypeExpr, Value, ValueKind,
};
pub use duration::{format_duration, parse_duration};
pub use format::{FormatError, format_source};
pub use loader::{FsLoader, MemoryLoader, SourceLoader};
pub use lower::lower;
pub use parse::{MAX_DEPTH, parse};
pub use plan::{
    Dependency, OutputRef, PLAN_FORMAT, Plan, PlanCompensate, PlanHeader, PlanInputs,
    PlanMilestone, PlanNode, PlanPolicy, PlanProduction, PlanRetry, PlanStep, PlanValue, SourceRef,
};
#[cfg(feature = "render")]
pub use render::render;
pub use runbook::{
    Compensate, Estimate, Group, GroupUse, Header, Import, Lint, Milestone, Mode, ModeSet,
    OnFailure, Param, ParamType, Policy, Production, Retry, Runbook, ScheduleBlock, Step, Waiver,
};
pub use source_map::{SourceFile, SourceMap};
pub use span::{FileId, Span, Spanned};
pub use synthetic::{synthetic_runbook, synthetic_wide_runbook};

//! Drover's execution engine.
//!
//! - [`scheduler`]: the pure state machine every scheduling rule lives in (`on_event(event, now)
//!   -> actions`), shared with the simulator.
//! - [`clock`]: all time goes through a [`clock::Clock`] (system or manual).
//! - [`driver`]: the tokio driver that performs the scheduler's actions through adapters,
//!   journaling every transition first; `resume` replays the journal and reconciles.
//! - [`journal`]: the SQLite journal (runs, events, approvals, audit) behind a trait, with a
//!   lease and fencing token so only one process drives a run.
//! - [`redactor`]: the one place secrets are taken out of everything stored or printed.
//! - [`audit`]: the hash-chained audit log and its verification.
//! - [`run_record`]: achieved RTO and RPO against the targets.
//! - [`timeline`]: what happened to each node, when, rebuilt from the journal.
//!
//! The plan it executes is the compiler's [`drover_dsl::Plan`], unchanged.

pub mod anchor;
pub mod audit;
pub mod clock;
pub mod driver;
pub mod inputs;
pub mod journal;
pub mod operator;
pub mod oplog;
pub mod redactor;
pub mod run_record;
pub mod scheduler;
pub mod signed;
pub mod template_context;
pub mod timeline;

pub use drover_dsl::Plan;

//! Drover's execution engine: the pure scheduler state machine, the tokio driver, the adapter
//! trait, the SQLite journal, approvals, the hash-chained audit log and the RTO/RPO clocks.
//!
//! Only the crate boundary exists so far; the engine issue fills it in. It executes the
//! [`drover_dsl::Plan`] the compiler produces, unchanged.

pub use drover_dsl::Plan;

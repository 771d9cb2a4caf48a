//! Drover's execution engine.
//!
//! - [`scheduler`]: the pure state machine every scheduling rule lives in (`on_event(event, now)
//!   -> actions`), shared with the simulator.
//! - [`clock`]: all time goes through a [`clock::Clock`] (system or manual).
//!
//! The plan it executes is the compiler's [`drover_dsl::Plan`], unchanged.

pub mod clock;
pub mod scheduler;

pub use drover_dsl::Plan;

//! Drover's simulator: runs a compiled [`drover_dsl::Plan`] on a virtual clock through the
//! engine's own scheduler, for dry runs, what-if scenarios, Monte Carlo RTO/RPO prediction and
//! tabletop exercises.
//!
//! Only the crate boundary exists so far; the simulator issue fills it in. Until then,
//! `drover plan` gives the static prediction from `drover_dsl::analysis`.

pub use drover_dsl::analysis::{Analysis, analyze};

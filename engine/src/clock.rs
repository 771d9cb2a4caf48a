//! Time. Everything that reads or waits on time goes through a [`Clock`] — one trait, defined in
//! `drover-schema` so that the adapters share it — so tests and the simulator control it.

pub use drover_schema::clock::{Clock, ManualClock, SharedClock, Sleep, SystemClock};

//! Integration tests of the runbook language: golden diagnostics, the example runbooks, exact
//! locations, robustness under mutation, and the diagnostic-code documentation.

mod codes;
mod golden;
mod guard_walk;
mod locations;
mod robustness;
mod roster;
mod runbooks;
mod support;

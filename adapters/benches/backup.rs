//! Backup benchmarks.
fn main() {}

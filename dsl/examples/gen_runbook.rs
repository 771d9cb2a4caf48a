//! Prints a synthetic runbook with the given number of steps (default 10,000), for benchmarks:
//! `cargo run --release -p drover-dsl --example gen_runbook 10000 > big.drover`.

fn main() {
    let steps = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    print!("{}", drover_dsl::synthetic_runbook(steps));
}

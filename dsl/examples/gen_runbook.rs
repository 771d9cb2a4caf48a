//! Prints a synthetic runbook with the given number of steps (default 10,000), for benchmarks:
//! `cargo run --release -p drover-dsl --example gen_runbook 10000 > big.drover`; a second argument
//! `wide` prints the second shape (layers of eight under `max_parallel = 6`, every estimate shape,
//! retries and approval gates).

fn main() {
    let mut args = std::env::args().skip(1);
    let steps = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    match args.next().as_deref() {
        Some("wide") => print!("{}", drover_dsl::synthetic_wide_runbook(steps)),
        _ => print!("{}", drover_dsl::synthetic_runbook(steps)),
    }
}

//! Monte Carlo throughput: trials of a 1,000-step plan of each generated shape through the
//! scheduler on the virtual clock, in trial-steps per second, next to the lower bound measured in
//! the same run: a bare longest-path pass over the same DAG with the same sampled durations' count
//! of nodes (one topological sweep).

use criterion::{Criterion, Throughput, criterion_main};
use drover_dsl::{CompileOptions, Mode, compile_str, synthetic_runbook, synthetic_wide_runbook};
use drover_simulator::{Prepared, Scenario, Settings};
use petgraph::Direction;
use std::hint::black_box;

const STEPS: usize = 1_000;
const TRIALS: u64 = 256;

fn montecarlo(c: &mut Criterion) {
    let catalogue = drover_adapters::builtin_catalogue();
    let opts = CompileOptions {
        catalogue: &catalogue,
        vars: Vec::new(),
        operators: None,
    };
    // Two shapes: `layered` (ten wide, backups, shell, checks, DNS behind one approval) and `wide`
    // (eight wide under `max_parallel = 6`, every estimate shape, retries, approval gates).
    for (shape, source) in [
        ("layered", synthetic_runbook(STEPS)),
        ("wide", synthetic_wide_runbook(STEPS)),
    ] {
        let plan = compile_str("synthetic.drover", &source, &opts)
            .plan
            .expect("the synthetic runbook compiles");
        // Failover mode: every step runs (drill skips the DNS steps).
        let prep = Prepared::new(&plan, Mode::Failover, &Scenario::default());
        let nodes = plan.graph.node_count() as u64;
        let order = petgraph::algo::toposort(&plan.graph, None).expect("a DAG");

        let mut g = c.benchmark_group(format!("simulate_1k_steps_{shape}"));
        g.throughput(Throughput::Elements(nodes * TRIALS));
        g.sample_size(10);
        for threads in [1, 2] {
            g.bench_function(format!("monte_carlo_{threads}_thread"), |b| {
                b.iter(|| {
                    drover_simulator::run(
                        &prep,
                        &plan,
                        "",
                        "failover",
                        Settings {
                            trials: TRIALS,
                            seed: 1,
                            threads,
                        },
                    )
                });
            });
        }
        g.bench_function("baseline_longest_path", |b| {
            b.iter(|| {
                let mut total = 0u64;
                for t in 0..TRIALS {
                    let mut finish = vec![0u64; plan.graph.node_count()];
                    for &n in &order {
                        let start = plan
                            .graph
                            .neighbors_directed(n, Direction::Incoming)
                            .map(|p| finish[p.index()])
                            .max()
                            .unwrap_or(0);
                        finish[n.index()] = start + black_box(t + n.index() as u64) % 1_000;
                    }
                    total = total.max(finish.iter().copied().max().unwrap_or(0));
                }
                total
            });
        });
        g.finish();
    }
}

fn benches() {
    let mut c = Criterion::default().configure_from_args();
    montecarlo(&mut c);
}

criterion_main!(benches);

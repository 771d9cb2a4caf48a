//! Compile throughput: parse + check + plan of a 10,000-step runbook, next to the baseline of
//! `serde_json` deserializing the same plan's JSON, measured in the same run.

use criterion::{Criterion, Throughput, criterion_main};
use drover_dsl::{CompileOptions, Plan, compile_str, synthetic_runbook};
use std::hint::black_box;

/// The allocator the `drover` binary uses, so that both sides are measured as the product runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STEPS: usize = 10_000;

fn compile(c: &mut Criterion) {
    let source = synthetic_runbook(STEPS);
    let catalogue = drover_adapters::builtin_catalogue();
    let opts = CompileOptions {
        catalogue: &catalogue,
        vars: Vec::new(),
        operators: None,
    };
    let compiled = compile_str("synthetic.drover", &source, &opts);
    assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics.first());
    let json = compiled
        .plan
        .as_ref()
        .map(|p| p.to_json())
        .and_then(Result::ok)
        .unwrap_or_default();

    let mut g = c.benchmark_group("compile_10k_steps");
    g.throughput(Throughput::Elements(STEPS as u64));
    g.sample_size(20);
    g.bench_function("parse_check_plan", |b| {
        b.iter(|| compile_str("synthetic.drover", black_box(&source), &opts));
    });
    g.bench_function("parse_only", |b| {
        let file = drover_dsl::SourceFile::new("synthetic.drover", source.clone());
        b.iter(|| drover_dsl::parse(drover_dsl::FileId(0), black_box(&file)));
    });
    g.bench_function("baseline_serde_json_plan", |b| {
        b.iter(|| serde_json::from_str::<Plan>(black_box(&json)));
    });
    g.finish();
}

// criterion's macros generate undocumented items.
#[allow(missing_docs)]
mod harness {
    criterion::criterion_group!(benches, super::compile);
}
criterion_main!(harness::benches);

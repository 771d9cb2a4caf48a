#!/usr/bin/env bash
# End-to-end Monte Carlo speed of the binary: `drover simulate` of generated 1,000-step runbooks
# of two shapes in failover mode, 10,000 trials, with 1 and 2 threads, next to
# `drover simulate --trials 1` (process start, compile, one trial: the fixed cost) measured in the
# same run. Shapes: `layered` (drover_dsl::synthetic_runbook: ten wide, backups, shell, checks, DNS
# behind one approval) and `wide` (synthetic_wide_runbook: eight wide under max_parallel = 6,
# every estimate shape, retries, an approval gate every ten layers). Target (issue 22): ≤ 0.7 s on
# 2 threads for each, ≥ 1.8× from 1 to 2 threads, output byte-identical across thread counts.
# The library-level ratio against a bare longest-path pass is the criterion bench
# (`cargo bench -p drover-simulator`).
# Usage: bench/simulate.sh [STEPS] [TRIALS] [RUNS]
set -euo pipefail
bench_dir=$(cd "$(dirname "$0")" && pwd)
cd "$bench_dir/.."
steps=${1:-1000}
trials=${2:-10000}
runs=${3:-5}
cargo build --release -q -p drover --features aws,azure --locked
cargo build --release -q -p drover-dsl --example gen_runbook --locked
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
./target/release/examples/gen_runbook "$steps" > "$tmp/layered.drover"
./target/release/examples/gen_runbook "$steps" wide > "$tmp/wide.drover"

# shellcheck source=bench/lib.sh
source "$bench_dir/lib.sh"

echo "$steps-step runbooks, $trials trials, median of $runs runs (ms):"
for shape in layered wide; do
  sim() { ./target/release/drover simulate "$tmp/$shape.drover" --mode failover --seed 1 --format json "$@"; }
  one=$(time_ms sim --trials 1 --threads 1)
  t1=$(time_ms sim --trials "$trials" --threads 1)
  t2=$(time_ms sim --trials "$trials" --threads 2)
  sim --trials "$trials" --threads 1 > "$tmp/a.json"
  sim --trials "$trials" --threads 2 > "$tmp/b.json"
  cmp -s "$tmp/a.json" "$tmp/b.json" || { echo "$shape: 1 and 2 threads disagree" >&2; exit 1; }
  rate() { awk -v s="$steps" -v n="$trials" -v ms="$1" -v one="$one" 'BEGIN { printf "%.1f", s * n / ((ms - one) / 1000) / 1e6 }'; }
  speedup=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.2f", a / b }')
  echo "  $shape: fixed cost (--trials 1) ${one}  1 thread ${t1} ($(rate "$t1") M trial-steps/s)  2 threads ${t2} ($(rate "$t2") M trial-steps/s), ${speedup}x; outputs identical"
done

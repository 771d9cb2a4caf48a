#!/usr/bin/env bash
# End-to-end speed of the binary on a generated 10,000-step runbook: `drover check`, `drover plan`
# and `drover plan --format json`, next to the cost of starting the process at all
# (`drover --version`), measured in the same run; then the peak memory of `drover check` (median
# of the runs) per step, next to the same command on the quickstart runbook. The library-level ratio
# against serde_json deserializing the same plan is the criterion bench (`cargo bench -p
# drover-dsl`). Issue 22's memory target is at 50,000 steps: `bench/compile.sh 50000`.
# Usage: bench/compile.sh [STEPS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-10000}
runs=${2:-10}
cargo build --release -q -p drover --features aws,azure --locked
cargo build --release -q -p drover-dsl --example gen_runbook --locked
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
./target/release/examples/gen_runbook "$steps" > "$tmp/big.drover"
echo "runbook: $steps steps, $(wc -l < "$tmp/big.drover") lines, $(wc -c < "$tmp/big.drover") bytes"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_ms() {
  local start end
  for _ in $(seq "$runs"); do
    start=$(date +%s%N)
    "$@" > /dev/null 2>&1 || true
    end=$(date +%s%N)
    echo $(( (end - start) / 1000000 ))
  done | median
}

check=$(time_ms ./target/release/drover check "$tmp/big.drover")
plan=$(time_ms ./target/release/drover plan "$tmp/big.drover")
json=$(time_ms ./target/release/drover plan "$tmp/big.drover" --format json)
base=$(time_ms ./target/release/drover --version)
echo "median of $runs runs (ms): check ${check}  plan ${plan}  plan --format json ${json}  process start (drover --version) ${base}"

# Peak resident memory (KiB) of a command, median of the runs.
peak_kib() {
  for _ in $(seq "$runs"); do
    /usr/bin/time -f '%M' "$@" 2>&1 > /dev/null | tail -n 1
  done | median
}
if [ -x /usr/bin/time ]; then
  peak=$(peak_kib ./target/release/drover check "$tmp/big.drover")
  small=$(peak_kib ./target/release/drover check runbooks/quickstart.drover)
  echo "peak RSS, median of $runs runs: check ${peak} KiB = $(awk -v p="$peak" -v n="$steps" 'BEGIN {printf "%.2f", p / n}') KiB/step (the quickstart runbook: ${small} KiB)"
else
  echo "peak RSS: /usr/bin/time (Debian package \`time\`) is not installed"
fi

#!/usr/bin/env bash
# Speed of reports and evidence on a finished run of a generated N-step runbook (layers of ten
# parallel shell steps): `drover report` (JSON, HTML), `drover evidence export` and
# `drover evidence verify`, each as a ratio to `drover status --format json` of the same run
# measured in the same session (the baseline: open the journal, replay the run, print its record).
# Usage: bench/report.sh [STEPS] [RUNS]
set -euo pipefail
bench_dir=$(cd "$(dirname "$0")" && pwd)
cd "$bench_dir/.."
steps=${1:-300}
runs=${2:-5}
cargo build --release -q -p drover
bin=$PWD/target/release/drover
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
{
  printf 'runbook "report bench" {\n  rto   = 1h\n  rpo   = 1h\n  modes = [drill]\n}\n'
  for i in $(seq 0 $((steps - 1))); do
    after=""
    if [ "$i" -ge 10 ]; then after="  after    = [s$((i - 10))]"; fi
    printf '\nstep s%d {\n  action   = shell\n%s\n  estimate = 1s\n  with {\n    command = "true"\n  }\n}\n' "$i" "$after"
  done
  printf '\nmilestone done {\n  after     = [s%d]\n  stops_rto = true\n}\n' $((steps - 1))
} > bench.drover
"$bin" fmt bench.drover > /dev/null
"$bin" run bench.drover --mode drill --run-id b1 > /dev/null
"$bin" key generate --signing file:sign.key > /dev/null

# shellcheck source=bench/lib.sh
source "$bench_dir/lib.sh"
base=$(time_ms "$bin" status b1 --format json)
json=$(time_ms "$bin" report b1 --format json)
html=$(time_ms "$bin" report b1 --format html)
export_ms=$(time_ms "$bin" evidence export b1 b.tar --signing-key file:sign.key)
verify_ms=$(time_ms "$bin" evidence verify b.tar --public-key sign.key.pub)
size=$(stat -c %s b.tar)
ratio() { awk -v a="$1" -v b="$base" 'BEGIN { printf "%.1fx", a / (b > 0 ? b : 1) }'; }
echo "run of $steps steps; median of $runs; bundle $size bytes"
echo "baseline: drover status --format json  ${base} ms"
echo "drover report --format json            ${json} ms  $(ratio "$json")"
echo "drover report --format html            ${html} ms  $(ratio "$html")"
echo "drover evidence export                 ${export_ms} ms  $(ratio "$export_ms")"
echo "drover evidence verify                 ${verify_ms} ms  $(ratio "$verify_ms")"

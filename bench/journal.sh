#!/usr/bin/env bash
# Journaled execution against the raw single-row commit rate of the same store, same disk, same run:
# 10,000 no-op steps ten wide (results that arrive together are journaled in one group commit, all
# before any of their effects) and a serial chain of 2,000 (one commit per transition, the floor),
# through the real driver, scheduler and SQLite journal (WAL, synchronous=FULL). With
# DROVER_BENCH_PG=postgres://…/scratch the same on PostgreSQL. Target (issue 22): ten wide ≥ 1.0×.
# Usage: bench/journal.sh [STEPS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-10000}
runs=${2:-2}
for i in $(seq "$runs"); do
  echo "-- run $i"
  cargo bench -q -p drover-engine --bench journal -- "$steps" 2> /dev/null
done

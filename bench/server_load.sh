#!/bin/sh
# Load on one `drover server` on 127.0.0.1: RUNS (default 50) concurrent runs of 20 short steps,
# 4 SSE subscribers each; prints delivery latency p50/p99, journaled steps/s against the
# single-process rate, peak RSS. Figures: docs/PERFORMANCE.md. Usage: bench/server_load.sh [RUNS]
set -eu
cd "$(dirname "$0")/.."
exec cargo bench -p drover-server --bench load -- "${1:-50}"

#!/usr/bin/env bash
# How fast `drover lsp` answers completion right after an edit on a generated runbook (default
# 10,000 steps): inputs in `with {`, step ids in `after = [`, action names; against a full
# compilation of the same text, measured in the same run.
# Usage: [PROFILE=dev] bench/lsp_completion.sh [STEPS] [SAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
flag=$([ "$profile" = release ] && echo --release || true)
cargo run -q $flag -p drover-lsp --example completion_bench -- "${1:-10000}" "${2:-40}"

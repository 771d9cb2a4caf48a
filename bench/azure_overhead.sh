#!/usr/bin/env bash
# What the Azure actions cost on top of the bare ARM call they make (route read, capture saved with
# fsync, read again, PUT, operation awaited) against the same bare azure_mgmt_network calls, on the
# local ARM stand-in (adapters/tests/it/arm_server.rs) in the same run, as a ratio.
# Dev profile (dependencies at opt-level 1): the generated Azure crate takes long to build in release.
# Usage: bench/azure_overhead.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p drover-adapters --features azure --example azure_overhead -- "${1:-300}"

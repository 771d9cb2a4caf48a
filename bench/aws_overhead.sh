#!/usr/bin/env bash
# What the AWS actions cost on top of the bare API call they make (state read, capture saved with
# fsync, the call; and the read-back a resume does), against moto on 127.0.0.1, as ratios to the
# bare SDK calls measured in the same run. Installs moto into target/moto-venv like .ci/test.
# Usage: bench/aws_overhead.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/moto-venv
if [ ! -x "$venv/bin/moto_server" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]'
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" > target/moto-bench.log 2>&1 &
moto=$!
trap 'kill "$moto" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/moto-api/" > /dev/null && break
  sleep 0.1
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
cargo run --release -q -p drover-adapters --features aws --example aws_overhead -- "${1:-200}"

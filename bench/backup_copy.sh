#!/usr/bin/env bash
# `drover backup copy` S3 -> Azure Blob (moto and Azurite on 127.0.0.1) against a bare SDK
# get+put of the same object (GetObject streamed into 8 MiB Put Block calls, no checks), in the
# same run, at two object sizes: throughput ratio and peak RSS of each. Installs moto and Azurite
# under target/ like .ci/test.
# Usage: bench/backup_copy.sh [MIB_SMALL MIB_LARGE RUNS]   (PROFILE=dev to use the test build)
set -euo pipefail
cd "$(dirname "$0")/.."
small=${1:-64} large=${2:-256} runs=${3:-3}
venv=target/moto-venv
if [ ! -x "$venv/bin/moto_server" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]'
fi
if [ ! -x target/azurite/node_modules/.bin/azurite-blob ]; then
  mkdir -p target/azurite
  (cd target/azurite && npm install --no-audit --no-fund --silent azurite@3.37.0 > /dev/null)
fi
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mport=$(free) aport=$(free)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$mport" > target/moto-bench.log 2>&1 &
moto=$!
data=$(mktemp -d)
target/azurite/node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort "$aport" \
  --location "$data" --silent --skipApiVersionCheck --loose --disableTelemetry > /dev/null 2>&1 &
azurite=$!
trap 'kill "$moto" "$azurite" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$mport/moto-api/" > /dev/null && curl -s "http://127.0.0.1:$aport/" > /dev/null && break
  sleep 0.1
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$mport" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
export AZURE_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:$aport/devstoreaccount1;"
if [ "${PROFILE:-release}" = dev ]; then
  cargo build -q --workspace --all-features --examples
  bin=target/debug/examples/copy_bench
else
  cargo build -q --release -p drover-adapters --features aws,azure --example copy_bench
  bin=target/release/examples/copy_bench
fi
python3 - <<'PY'
import urllib.request, os
# One bucket for the run (moto takes an unsigned PUT); the container is made by the example.
urllib.request.urlopen(urllib.request.Request(os.environ["AWS_ENDPOINT_URL"] + "/copy-bench", method="PUT"))
PY
"$bin" container azblob://devstoreaccount1/copy-bench/
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "size_mib mode median_s MiB/s peak_rss_mib"
for mib in "$small" "$large"; do
  src=$("$bin" setup "$mib" copy-bench)
  for mode in bare drover; do
    : > "$data/$mode.txt"
    for i in $(seq "$runs"); do
      "$bin" "$mode" "$src" "azblob://devstoreaccount1/copy-bench/$mode-$mib-$i.dbk" >> "$data/$mode.txt"
    done
  done
  for mode in bare drover; do
    s=$(cut -d' ' -f1 "$data/$mode.txt" | median)
    rss=$(cut -d' ' -f2 "$data/$mode.txt" | sort -n | tail -1)
    echo "$mib $mode $s $(python3 -c "print(f'{$mib/$s:.1f}')") $((rss / 1024))"
    eval "${mode}_$mib=$s"
  done
  python3 -c "print(f'  ratio at $mib MiB: drover copy throughput = {$(eval echo \$bare_$mib)/$(eval echo \$drover_$mib):.2f}x the bare get+put')"
done

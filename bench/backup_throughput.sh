#!/usr/bin/env bash
# Restore and keyed-verify throughput of a 1 GiB backup against the baseline
# `openssl enc -d -aes-256-ctr | sha256sum` on the same data, same machine, same run; and peak
# memory (max RSS) for 1 GiB and 256 MiB to show it stays flat.
# Usage: bench/backup_throughput.sh [SIZE_MIB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
runs=${2:-3}
cargo build --release -q -p drover
drover=$PWD/target/release/drover
tmp=$(mktemp -d "${TMPDIR:-/tmp}/drover-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

head -c "$((size_mib << 20))" /dev/urandom > data
head -c 256M data > data256
"$drover" key generate file:kek.key > /dev/null
"$drover" backup create data data.dbk --key file:kek.key --dataset bench > /dev/null
"$drover" backup create data256 data256.dbk --key file:kek.key --dataset bench > /dev/null
k=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
iv=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
openssl enc -aes-256-ctr -K "$k" -iv "$iv" -in data -out data.ctr

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Runs "$@" $runs times (after one warm-up), prints the median wall time in ms.
time_ms() {
  "$@" > /dev/null 2>&1
  for _ in $(seq "$runs"); do
    local start end
    start=$(date +%s%N)
    "$@" > /dev/null 2>&1
    end=$(date +%s%N)
    echo $(( (end - start) / 1000000 ))
  done | median
}
# Peak resident memory (KiB) of one run.
rss_kib() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }

baseline() { openssl enc -d -aes-256-ctr -K "$k" -iv "$iv" -in data.ctr | sha256sum; }
# A stronger baseline: OpenSSL's own SHA-256 (SHA-NI) instead of coreutils'.
baseline_dgst() { openssl enc -d -aes-256-ctr -K "$k" -iv "$iv" -in data.ctr | openssl dgst -sha256; }
restore() { rm -f out; "$drover" backup restore data.dbk out --key file:kek.key; }
verify() { "$drover" backup verify data.dbk --key file:kek.key; }

b=$(time_ms baseline)
bd=$(time_ms baseline_dgst)
r=$(time_ms restore)
v=$(time_ms verify)
rss_verify=$(rss_kib "$drover" backup verify data.dbk --key file:kek.key)
rm -f out; rss_restore=$(rss_kib "$drover" backup restore data.dbk out --key file:kek.key)
rss_verify256=$(rss_kib "$drover" backup verify data256.dbk --key file:kek.key)

mibs() { awk -v n="$size_mib" -v ms="$1" 'BEGIN { printf "%.0f", n * 1000 / ms }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "data: ${size_mib} MiB, median of ${runs} runs, page cache warm"
echo "baseline openssl enc -d -aes-256-ctr | sha256sum : ${b} ms ($(mibs "$b") MiB/s)"
echo "baseline openssl enc -d | openssl dgst -sha256 : ${bd} ms ($(mibs "$bd") MiB/s)"
echo "drover backup restore --key                     : ${r} ms ($(mibs "$r") MiB/s), baseline/drover = $(ratio "$b" "$r"), openssl-dgst/drover = $(ratio "$bd" "$r")"
echo "drover backup verify --key                      : ${v} ms ($(mibs "$v") MiB/s), baseline/drover = $(ratio "$b" "$v"), openssl-dgst/drover = $(ratio "$bd" "$v")"
echo "peak RSS: verify ${size_mib} MiB ${rss_verify} KiB, verify 256 MiB ${rss_verify256} KiB, restore ${size_mib} MiB ${rss_restore} KiB"

#!/usr/bin/env bash
# Backup create, keyed verify and restore against the hardware's limits, same data, same run:
# - the CPU limit: `openssl dgst -sha256` of the plaintext (SHA-NI, one core: the plaintext hash is
#   sequential, so no pipeline can beat it);
# - the disk limit: `dd bs=1M conv=fsync` of the same bytes (write and sync the file once).
# Targets (issue 22): verify ≤ 1.1× the hash; restore and create ≤ 1.1× the slower of hash and dd.
# Also the older baseline `openssl enc -d -aes-256-ctr | sha256sum`, and peak RSS at two sizes
# (flat: the pipelines hold a few chunks).
# Usage: bench/backup_throughput.sh [SIZE_MIB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-512}
runs=${2:-5}
cargo build --release -q -p drover --features aws,azure --locked
drover=$PWD/target/release/drover
source bench/lib.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/drover-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

head -c "$((size_mib << 20))" /dev/urandom > data
head -c "$((size_mib << 18))" data > quarter
"$drover" key generate file:kek.key > /dev/null
"$drover" backup create data data.dbk --key file:kek.key --dataset bench > /dev/null
"$drover" backup create quarter quarter.dbk --key file:kek.key --dataset bench > /dev/null
k=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
iv=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
openssl enc -aes-256-ctr -K "$k" -iv "$iv" -in data -out data.ctr

# Each command once more before timing (page cache warm, output files exist as in the timed runs).
hash() { openssl dgst -sha256 data; }
disk() { rm -f out; dd if=data of=out bs=1M conv=fsync status=none; }
old_baseline() { openssl enc -d -aes-256-ctr -K "$k" -iv "$iv" -in data.ctr | sha256sum; }
verify() { "$drover" backup verify data.dbk --key file:kek.key; }
restore() { rm -f out; "$drover" backup restore data.dbk out --key file:kek.key; }
create() { rm -f new.dbk; "$drover" backup create data new.dbk --key file:kek.key --dataset bench; }
for f in hash disk old_baseline verify restore create; do "$f" > /dev/null 2>&1; done

# Interleaved: each round times every command once, so a slow moment hits all of them.
declare -A all
for _ in $(seq "$runs"); do
  for f in hash disk old_baseline verify restore create; do
    start=$(date +%s%N)
    "$f" > /dev/null 2>&1
    end=$(date +%s%N)
    all[$f]+="$(( (end - start) / 1000000 )) "
  done
done
med() { tr ' ' '\n' <<< "${all[$1]}" | grep . | median; }
h=$(med hash); d=$(med disk); o=$(med old_baseline)
v=$(med verify); r=$(med restore); c=$(med create)
limit=$(( h > d ? h : d ))

rss_kib() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
rm -f out new.dbk
rss_v=$(rss_kib "$drover" backup verify data.dbk --key file:kek.key)
rss_vq=$(rss_kib "$drover" backup verify quarter.dbk --key file:kek.key)
rss_r=$(rss_kib "$drover" backup restore data.dbk out --key file:kek.key)
rm -f out; rss_rq=$(rss_kib "$drover" backup restore quarter.dbk out --key file:kek.key)
rss_c=$(rss_kib "$drover" backup create data new.dbk --key file:kek.key --dataset bench)
rm -f new.dbk; rss_cq=$(rss_kib "$drover" backup create quarter new.dbk --key file:kek.key --dataset bench)

mibs() { awk -v n="$size_mib" -v ms="$1" 'BEGIN { printf "%.0f", n * 1000 / ms }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "data: ${size_mib} MiB of random bytes, median of ${runs} interleaved rounds, page cache warm"
echo "limit: openssl dgst -sha256           : ${h} ms ($(mibs "$h") MiB/s)"
echo "limit: dd bs=1M conv=fsync            : ${d} ms ($(mibs "$d") MiB/s)"
echo "old baseline: openssl enc -d | sha256sum : ${o} ms ($(mibs "$o") MiB/s)"
echo "drover backup verify --key   : ${v} ms ($(mibs "$v") MiB/s) = $(ratio "$v" "$h")× the hash (target ≤ 1.10)"
echo "drover backup restore --key  : ${r} ms ($(mibs "$r") MiB/s) = $(ratio "$r" "$limit")× the slower limit (target ≤ 1.10)"
echo "drover backup create --key   : ${c} ms ($(mibs "$c") MiB/s) = $(ratio "$c" "$limit")× the slower limit (target ≤ 1.10)"
echo "peak RSS KiB (${size_mib} MiB / $((size_mib / 4)) MiB): verify ${rss_v} / ${rss_vq}, restore ${rss_r} / ${rss_rq}, create ${rss_c} / ${rss_cq}"

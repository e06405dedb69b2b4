#!/usr/bin/env bash
# Transfer rate of a live update against memcpy of the same bytes, side by
# side in one run, on state made of large objects: memcached 1.6.18 built
# with mcr-cc, filled with MB values of 100 KB each (slab pages of 1 MB),
# updated to a copy of itself. Rate = bytes carried / (checkpoint +
# transfer); memcpy = benches/memcpy_bw.c on the same number of bytes.
# benches/update-downtime.sh measures the other extreme (100,000 objects of
# ~30 bytes), where the cost is per object.
# Usage: benches/transfer-rate.sh [BIN_DIR (default target/release)] [MB ...]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(cd "${1:-target/release}" && pwd)"
shift || true
[ $# -gt 0 ] && SIZES=("$@") || SIZES=(64 256 1024)
WORK="${MCR_WORK:-$PWD/work}"
DIR="$WORK/build/bench/memcached-1.6.18"
scripts/servers/build.sh memcached 1.6.18 "$BIN/mcr-cc" "$DIR" >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cp "$DIR/memcached" "$out/memcached-new"
clang-22 -O2 benches/memcpy_bw.c -o "$out/memcpy_bw"
for mb in "${SIZES[@]}"; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$DIR/memcached" -u root -l 127.0.0.1 -p "$port" -U 0 -t 4 -m $((mb * 2 + 64)) 2>>"${MCR_BENCH_LOG:-/dev/null}" &
    pid=$!
    python3 benches/transfer_rate.py "$port" "$pid" "$BIN/mcr-ctl" "$out/memcached-new" "$mb" "$out/memcpy_bw" || true
    kill "$pid" 2>/dev/null || true
    pkill -f "memcached -u root -l 127.0.0.1 -p $port " 2>/dev/null || true
done

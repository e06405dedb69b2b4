#!/usr/bin/env bash
# Downtime of a live update carrying ~100,000 heap objects, by phase, and
# the transfer rate against memcpy of the same bytes, side by side.
# Usage: benches/update-downtime.sh [BIN_DIR (default target/release)] [KEYS (default 50000)]
# Each key of the demo key-value server is 2 heap objects (entry + value).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release}"
KEYS="${2:-50000}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$BIN/mcr-cc" -O2 -DKV_VERSION=1 demo/kv/kvserver.c -o "$out/kv1"
"$BIN/mcr-cc" -O2 -DKV_VERSION=2 demo/kv/kvserver.c -o "$out/kv2"
clang-22 -O2 benches/memcpy_bw.c -o "$out/memcpy_bw"
for target in kv1 kv2; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$out/kv1" "$port" 2>>"${MCR_BENCH_LOG:-/dev/null}" &
    pid=$!
    python3 benches/update_downtime.py "$port" "$pid" "$BIN/mcr-ctl" "$out/$target" "$KEYS" "$out/memcpy_bw"
    kill "$pid" 2>/dev/null || true
done

#!/usr/bin/env bash
# Cost of declaring pool/slab allocators (mcr.toml kind = "pool"|"slab"):
# builds benches/carve/carve_bench.c with clang-22, with mcr-cc without the
# declaration (MCR_CONFIG=/dev/null) and with it (carve.mcr.toml), runs each
# ROUNDS times (default 5) per workload, interleaved, and prints the median
# ns per operation.
#
#   MCR_BIN_DIR  mcr-cc and libmcr_rt.a (default: target/release of this repo)
#   OPS, LIVE    slab ops (default 5,000,000) and live objects (100,000);
#                POOLS pool rounds (default 200,000)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MCR_BIN_DIR:-$PWD/target/release}
ROUNDS=${ROUNDS:-5}
OPS=${OPS:-5000000}
LIVE=${LIVE:-100000}
POOLS=${POOLS:-200000}
tmp=$(mktemp -d /tmp/mcr-carve-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
src=benches/carve/carve_bench.c
clang-22 -O2 "$src" -o "$tmp/plain"
MCR_RT_LIB="$BIN/libmcr_rt.a" MCR_CONFIG=/dev/null "$BIN/mcr-cc" -O2 "$src" -o "$tmp/mcr"
MCR_RT_LIB="$BIN/libmcr_rt.a" MCR_CONFIG=benches/carve/carve.mcr.toml "$BIN/mcr-cc" -O2 "$src" -o "$tmp/carve"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for w in slab pool; do
    n=$OPS; [ $w = pool ] && n=$POOLS
    for b in plain mcr carve; do : >"$tmp/$w.$b"; done
    for _ in $(seq "$ROUNDS"); do
        for b in plain mcr carve; do
            "$tmp/$b" $w "$n" "$LIVE" | sed 's/.*: \([0-9.]*\) ns.*/\1/' >>"$tmp/$w.$b"
        done
    done
    printf '%s: clang-22 %s ns, mcr-cc %s ns, mcr-cc + carve declared %s ns (median of %s)\n' \
        "$w" "$(median <"$tmp/$w.plain")" "$(median <"$tmp/$w.mcr")" "$(median <"$tmp/$w.carve")" "$ROUNDS"
done

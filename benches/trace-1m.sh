#!/usr/bin/env bash
# `mcr-ctl trace` of a program with N live objects (default 1,000,000):
# builds tests/heap-fixtures/big.c with a release mcr-cc, starts it, runs
# `mcr-ctl trace --json` ROUNDS times (default 7) and `mcr-ctl heap --json`
# once, and prints for each: the walk time the runtime reports and the wall
# time of the whole mcr-ctl command (connect, walk, JSON, exit); then the
# median, min and max. Checks the answer (N - 999 reachable program objects,
# 1000 unreachable ones).
#
#   MCR_BIN_DIR   mcr-cc, mcr-ctl, libmcr_rt.a (default /tmp/mcr-bench-target/release;
#                 build: CARGO_TARGET_DIR=/tmp/mcr-bench-target cargo build --release -p mcr-rt -p mcr-cc -p mcr-ctl)
#   N, ROUNDS     sizes
#   CHECK=0       do not check the counts (to time an older runtime)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MCR_BIN_DIR:-/tmp/mcr-bench-target/release}
N=${N:-1000000}
ROUNDS=${ROUNDS:-7}
for f in mcr-cc mcr-ctl libmcr_rt.a; do
    [ -f "$BIN/$f" ] || { echo "missing $BIN/$f (see the header of $0)" >&2; exit 1; }
done
tmp=$(mktemp -d /tmp/mcr-trace-bench.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
(cd tests && MCR_RT_LIB="$BIN/libmcr_rt.a" "$BIN/mcr-cc" -O2 heap-fixtures/big.c -o "$tmp/big")
mkfifo "$tmp/in"
"$tmp/big" "$N" < "$tmp/in" > "$tmp/out" 2>&1 &
pid=$!
exec 9>"$tmp/in"
for _ in $(seq 600); do grep -q ready "$tmp/out" && break; sleep 0.1; done
grep -q ready "$tmp/out" || { echo "fixture not ready" >&2; cat "$tmp/out" >&2; exit 1; }
for _ in $(seq 200); do grep -q "@mcr/$pid\$" /proc/net/unix && break; sleep 0.05; done

echo "mcr-ctl trace of $N live objects (pid $pid, $(nproc) cores, $(grep VmRSS /proc/$pid/status | tr -s ' '))"
walks=(); walls=()
for r in $(seq "$ROUNDS"); do
    t0=$(date +%s.%N)
    "$BIN/mcr-ctl" trace "$pid" --json > "$tmp/trace.json"
    t1=$(date +%s.%N)
    read -r objects reachable unreachable ms < <(python3 -c '
import json,sys; t=json.load(open(sys.argv[1]))
print(t["objects"], t["reachable"], t["unreachable"], t["millis"])' "$tmp/trace.json")
    wall=$(python3 -c "print(f'{($t1-$t0)*1e3:.1f}')")
    printf 'round %d: %d objects, %d reachable, %d unreachable; walk %.1f ms, mcr-ctl wall %s ms\n' \
        "$r" "$objects" "$reachable" "$unreachable" "$ms" "$wall"
    walks+=("$ms"); walls+=("$wall")
    [ "${CHECK:-1}" = 0 ] || [ "$unreachable" -eq 1000 ] || { echo "expected 1000 unreachable objects" >&2; exit 1; }
    [ "$objects" -ge $((N + 1)) ] || { echo "expected at least $((N + 1)) objects" >&2; exit 1; }
done
t0=$(date +%s.%N); "$BIN/mcr-ctl" heap "$pid" --json > /dev/null; t1=$(date +%s.%N)
python3 - "${walks[*]}" "${walls[*]}" "$(python3 -c "print(f'{($t1-$t0)*1e3:.1f}')")" <<'PY'
import statistics, sys
w = [float(x) for x in sys.argv[1].split()]
c = [float(x) for x in sys.argv[2].split()]
print(f"walk (runtime):  median {statistics.median(w):.1f} ms, min {min(w):.1f}, max {max(w):.1f}")
print(f"mcr-ctl trace:   median {statistics.median(c):.1f} ms, min {min(c):.1f}, max {max(c):.1f} (target < 1000 ms)")
print(f"mcr-ctl heap:    {sys.argv[3]} ms")
PY

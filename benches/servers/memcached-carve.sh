#!/usr/bin/env bash
# Usage: benches/servers/memcached-carve.sh PLAIN_BINARY SLABS_BINARY
#
# The cost of declaring memcached's slab allocator (scripts/servers/mcr-toml/
# memcached.toml: slabs_alloc/slabs_free, kind = "slab"): two memcached
# 1.6.18 builds with mcr-cc, without the declaration (MCR_NO_ALLOCATORS=1)
# and with it, alternate over ROUNDS rounds (order rotating), each a fresh
# server filled with FILL_KEYS items of FILL_BYTES bytes and loaded by
# memcaslap for SECS seconds (as benches/servers/memcached-load.sh does).
# Prints per run: TPS and server CPU microseconds per operation; then the
# medians and the paired ratios (slabs / plain).
#
# Environment: ROUNDS (4), SECS (8), MC_THREADS (2), CLIENT_THREADS (2),
# CONC (64), WIN (2k), FILL_KEYS (100000), FILL_BYTES (1000).
set -euo pipefail
MCR_LOG_TAG=memcached-carve
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/servers/lib.sh"
[ $# -eq 2 ] || { echo "usage: $0 PLAIN_BINARY SLABS_BINARY" >&2; exit 2; }
declare -A BIN=([plain]="$1" [slabs]="$2")
ROUNDS=${ROUNDS:-4} SECS=${SECS:-8} MC_THREADS=${MC_THREADS:-2}
CLIENT_THREADS=${CLIENT_THREADS:-2} CONC=${CONC:-64} WIN=${WIN:-2k}
FILL_KEYS=${FILL_KEYS:-100000} FILL_BYTES=${FILL_BYTES:-1000}
TICK="$(getconf CLK_TCK)"
ROOT_ARGS=(); [ "$(id -u)" = 0 ] && ROOT_ARGS=(-u root)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
fill() {
    python3 - "$1" "$FILL_KEYS" "$FILL_BYTES" <<'PY'
import socket, sys
port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
val = b"v" * size + b"\r\n"
for lo in range(0, n, 1000):
    s.sendall(b"".join(b"set fill:%d 0 0 %d noreply\r\n" % (i, size) + val for i in range(lo, min(n, lo + 1000))))
s.sendall(b"get fill:%d\r\n" % (n - 1))
buf = b""
while not buf.endswith(b"END\r\n"):
    d = s.recv(65536)
    if not d: sys.exit("connection closed during the fill")
    buf += d
PY
}
run_one() {
    local b="$1" port pid t0 t1 out tps ops
    port="$(free_port)"
    "${BIN[$b]}" "${ROOT_ARGS[@]}" -l 127.0.0.1 -p "$port" -U 0 -t "$MC_THREADS" -m 1024 -c 4096 >/dev/null 2>&1 &
    pid=$!
    wait_port "$port" 20 "$pid" || die "$b: memcached did not listen on $port"
    fill "$port" || die "$b: fill failed"
    t0="$(cpu_ticks "$pid")"
    out="$(timeout $((SECS + 30)) memcaslap -s "127.0.0.1:$port" -t "${SECS}s" \
        -T "$CLIENT_THREADS" -c "$CONC" -w "$WIN" 2>&1)" || die "$b: memcaslap failed: $out"
    t1="$(cpu_ticks "$pid")"
    stop_pid "$pid"
    tps="$(sed -n 's/.*TPS: \([0-9]*\).*/\1/p' <<<"$out" | tail -n1)"
    ops="$(sed -n 's/.*Ops: \([0-9]*\).*/\1/p' <<<"$out" | tail -n1)"
    awk -v b="$b" -v tps="$tps" -v ops="$ops" -v d="$((t1 - t0))" -v tick="$TICK" \
        'BEGIN {printf "%s %d %.3f\n", b, tps, d / tick * 1e6 / ops}'
}
res=$(mktemp); trap 'rm -f "$res"' EXIT
for r in $(seq "$ROUNDS"); do
    order=(plain slabs); [ $((r % 2)) = 0 ] && order=(slabs plain)
    for b in "${order[@]}"; do
        line="$(run_one "$b")"; echo "round $r: $line"; echo "$r $line" >>"$res"
    done
done
python3 - "$res" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, b, tps, cpu in rows:
    by.setdefault(b, {})[int(r)] = (float(tps), float(cpu))
for b in ("plain", "slabs"):
    v = by[b].values()
    print(f"{b}: median TPS {st.median(x[0] for x in v):.0f}, median server CPU {st.median(x[1] for x in v):.2f} us/op")
rt = [by["slabs"][r][0] / by["plain"][r][0] for r in by["plain"]]
rc = [by["slabs"][r][1] / by["plain"][r][1] for r in by["plain"]]
print(f"slabs/plain paired: TPS {st.median(rt):.3f} ({min(rt):.3f}..{max(rt):.3f}), CPU/op {st.median(rc):.3f} ({min(rc):.3f}..{max(rc):.3f})")
PY

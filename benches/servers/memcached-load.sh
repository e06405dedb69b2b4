#!/usr/bin/env bash
# Usage: benches/servers/memcached-load.sh [MCR_CC]
#
# memcached 1.6.18 built with MCR_CC (default: mcr-cc on PATH, else
# target/release/mcr-cc) against two separate builds with clang-22 (the
# second one is the noise floor: same compiler, same flags, another build
# and another run), under a loopback load from memcaslap (Debian's
# libmemcached-tools). The three builds alternate over ROUNDS rounds, the
# order rotating each round; each run starts a fresh server, loads it for
# SECS seconds, and records:
#   - peak RSS after a fixed data set: VmHWM (/proc/PID/status) once
#     FILL_KEYS items of FILL_BYTES bytes are stored (the same items for every
#     build, set over one connection before the load starts);
#   - throughput: memcaslap's TPS (gets and sets per second);
#   - server CPU per operation: the server's user+sys CPU time (from
#     /proc/PID/stat) over the operations memcaslap completed. On a machine
#     whose 2 cores also run the client (and other people's work), this is
#     the steadier measure of the server's own cost;
#   - peak RSS at the end of the run: VmHWM again, now also counting the
#     items memcaslap stored (their number grows with the throughput).
# Ratios are taken per round against clang-22 (a) of the same round (paired),
# then summarised by median and spread (min..max); medians per build too.
#
# Afterwards one more MCR_CC server is loaded and `mcr-ctl heap`, `mcr-ctl
# heap --by site` and `mcr-ctl trace` are taken while it serves
# (heap-under-load.txt).
#
# Environment: ROUNDS (6), SECS (10), MC_THREADS (memcached -t, 2),
# CLIENT_THREADS (memcaslap -T, 2), CONC (memcaslap -c, 64), WIN (memcaslap
# -w, 2k: CONC*WIN keys of the default ~1 KiB values), FILL_KEYS (100000),
# FILL_BYTES (1000), SKIP_BUILD=1 reuses
# the builds of an earlier run, MCR_CTL (default: mcr-ctl next to MCR_CC).
# Output: $MCR_WORK/bench/memcached-load/{results.tsv,summary.txt,heap-under-load.txt}.
set -euo pipefail
MCR_LOG_TAG=memcached-load
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/servers/lib.sh"

MCR_CC="$(resolve_cc "${1:-$(default_mcr_cc)}")"
MCR_CTL="${MCR_CTL:-$(dirname "$MCR_CC")/mcr-ctl}"
[ -x "$MCR_CTL" ] || die "no mcr-ctl at $MCR_CTL (set MCR_CTL)"
command -v memcaslap >/dev/null || die "memcaslap not found (apt-get install libmemcached-tools)"
ROUNDS="${ROUNDS:-6}" SECS="${SECS:-10}"
MC_THREADS="${MC_THREADS:-2}" CLIENT_THREADS="${CLIENT_THREADS:-2}"
CONC="${CONC:-64}" WIN="${WIN:-2k}"
FILL_KEYS="${FILL_KEYS:-100000}" FILL_BYTES="${FILL_BYTES:-1000}"
OUT="$MCR_WORK/bench/memcached-load"
mkdir -p "$OUT"
TICK="$(getconf CLK_TCK)"
ROOT_ARGS=()
[ "$(id -u)" = 0 ] && ROOT_ARGS=(-u root)

BUILDS=(mcr-cc clang-22-a clang-22-b)
declare -A CCS=([mcr-cc]="$MCR_CC" [clang-22-a]=clang-22 [clang-22-b]=clang-22)
declare -A BIN
for b in "${BUILDS[@]}"; do
    dir="$OUT/build-$b"
    if [ "${SKIP_BUILD:-0}" = 1 ] && [ -x "$dir/memcached" ]; then
        log "reusing $dir/memcached"
    else
        log "building memcached 1.6.18 with ${CCS[$b]} into $dir"
        "$SERVERS_DIR/build.sh" memcached 1.6.18 "${CCS[$b]}" "$dir" >/dev/null
    fi
    BIN[$b]="$dir/memcached"
done

server_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# fill PORT: stores FILL_KEYS items of FILL_BYTES bytes (noreply, one
# connection), then waits for a get of the last one, so all are stored.
fill() {
    python3 - "$1" "$FILL_KEYS" "$FILL_BYTES" <<'PY'
import socket, sys
port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port), timeout=60)
val = (b"v" * size) + b"\r\n"
batch = []
for i in range(n):
    batch.append(b"set fill:%d 0 0 %d noreply\r\n" % (i, size) + val)
    if len(batch) == 1000:
        s.sendall(b"".join(batch)); batch = []
s.sendall(b"".join(batch) + b"get fill:%d\r\n" % (n - 1))
buf = b""
while not buf.endswith(b"END\r\n"):
    d = s.recv(1 << 16)
    if not d: sys.exit("connection closed during the fill")
    buf += d
if b"VALUE" not in buf: sys.exit("the last filled item is missing")
PY
}

# run_one BUILD: prints "tps ops cpu_s hwm_fill_kb hwm_kb"
run_one() {
    local b="$1" port pid t0 t1 out tps ops hwm hwm_fill
    port="$(free_port)"
    "${BIN[$b]}" "${ROOT_ARGS[@]}" -l 127.0.0.1 -p "$port" -U 0 -t "$MC_THREADS" -m 1024 -c 4096 \
        >"$OUT/server-$b.log" 2>&1 &
    pid=$!
    wait_port "$port" 20 "$pid" || die "$b: memcached did not listen on $port"
    fill "$port" || die "$b: fill failed"
    hwm_fill="$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")"
    t0="$(server_cpu_ticks "$pid")"
    out="$(timeout $((SECS + 30)) memcaslap -s "127.0.0.1:$port" -t "${SECS}s" \
        -T "$CLIENT_THREADS" -c "$CONC" -w "$WIN" 2>&1)" || die "$b: memcaslap failed: $out"
    t1="$(server_cpu_ticks "$pid")"
    hwm="$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")"
    stop_pid "$pid"
    tps="$(sed -n 's/.*TPS: \([0-9]*\).*/\1/p' <<<"$out" | tail -n1)"
    ops="$(sed -n 's/.*Ops: \([0-9]*\).*/\1/p' <<<"$out" | tail -n1)"
    [ -n "$tps" ] && [ -n "$ops" ] || die "$b: no TPS in memcaslap's output: $out"
    echo "$tps $ops $((t1 - t0)) $hwm_fill $hwm" |
        awk -v tick="$TICK" '{printf "%s %s %.3f %s %s\n", $1, $2, $3 / tick, $4, $5}'
}

log "$ROUNDS rounds x ${#BUILDS[@]} builds x ${SECS}s; memcached -t $MC_THREADS; memcaslap -T $CLIENT_THREADS -c $CONC -w $WIN"
printf 'round\tbuild\ttps\tops\tserver_cpu_s\tvmhwm_fill_kb\tvmhwm_kb\n' >"$OUT/results.tsv"
for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < ${#BUILDS[@]}; k++)); do
        b="${BUILDS[$(((k + r - 1) % ${#BUILDS[@]}))]}"
        read -r tps ops cpu hwm_fill hwm < <(run_one "$b")
        printf '%d\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$b" "$tps" "$ops" "$cpu" "$hwm_fill" "$hwm" >>"$OUT/results.tsv"
        log "round $r $b: $tps ops/s, server CPU ${cpu}s for $ops ops, VmHWM $hwm_fill kB after the fill, $hwm kB at the end"
    done
done

python3 - "$OUT/results.tsv" <<'PY' | tee "$OUT/summary.txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
builds = ["mcr-cc", "clang-22-a", "clang-22-b"]
by = {(int(r["round"]), r["build"]): r for r in rows}
rounds = sorted({int(r["round"]) for r in rows})
def metric(r, m):
    if m == "tps": return float(r["tps"])
    if m == "cpu_us_per_op": return float(r["server_cpu_s"]) * 1e6 / float(r["ops"])
    if m == "hwm_mb": return float(r["vmhwm_kb"]) / 1024
    if m == "fill_mb": return float(r["vmhwm_fill_kb"]) / 1024
def spread(v, f="{:.0f}"):
    return f"{f.format(statistics.median(v))} ({f.format(min(v))}..{f.format(max(v))})"
print(f"{len(rounds)} rounds; median (min..max) per build")
print(f"{'build':<12} {'throughput ops/s':>26} {'server CPU us/op':>22} {'VmHWM MiB, filled':>22} {'VmHWM MiB, end':>22}")
for b in builds:
    rs = [by[(k, b)] for k in rounds if (k, b) in by]
    print(f"{b:<12} {spread([metric(r, 'tps') for r in rs]):>26} "
          f"{spread([metric(r, 'cpu_us_per_op') for r in rs], '{:.2f}'):>22} "
          f"{spread([metric(r, 'fill_mb') for r in rs], '{:.1f}'):>22} "
          f"{spread([metric(r, 'hwm_mb') for r in rs], '{:.1f}'):>22}")
print()
print("paired ratios to clang-22-a of the same round: median (min..max)")
print(f"{'build':<12} {'throughput':>22} {'server CPU/op':>22} {'VmHWM, filled':>22} {'VmHWM, end':>22}")
for b in ["mcr-cc", "clang-22-b"]:
    cells = []
    for m in ["tps", "cpu_us_per_op", "fill_mb", "hwm_mb"]:
        v = [metric(by[(k, b)], m) / metric(by[(k, "clang-22-a")], m)
             for k in rounds if (k, b) in by and (k, "clang-22-a") in by]
        cells.append(spread(v, "{:.3f}"))
    print(f"{b:<12} {cells[0]:>22} {cells[1]:>22} {cells[2]:>22} {cells[3]:>22}")
PY

log "mcr-ctl heap of the $MCR_CC build while it serves"
port="$(free_port)"
"${BIN[mcr-cc]}" "${ROOT_ARGS[@]}" -l 127.0.0.1 -p "$port" -U 0 -t "$MC_THREADS" -m 1024 -c 4096 \
    >"$OUT/server-heap.log" 2>&1 &
pid=$!
wait_port "$port" 20 "$pid" || die "memcached did not listen on $port"
fill "$port" || die "fill failed"
timeout $((SECS + 30)) memcaslap -s "127.0.0.1:$port" -t "${SECS}s" -T "$CLIENT_THREADS" \
    -c "$CONC" -w "$WIN" >"$OUT/memcaslap-heap.log" 2>&1 &
load=$!
sleep $((SECS / 2))
{
    echo "\$ mcr-ctl heap PID          # memcached 1.6.18 (mcr-cc), $FILL_KEYS items of $FILL_BYTES B stored, memcaslap -T $CLIENT_THREADS -c $CONC -w $WIN running"
    "$MCR_CTL" heap "$pid"
    echo
    echo "\$ mcr-ctl heap PID --by site"
    "$MCR_CTL" heap "$pid" --by site
    echo
    echo "\$ mcr-ctl trace PID"
    "$MCR_CTL" trace "$pid"
} >"$OUT/heap-under-load.txt" 2>&1 || true
wait "$load" || true
stop_pid "$pid"
cat "$OUT/heap-under-load.txt"
log "results: $OUT/results.tsv, $OUT/summary.txt, $OUT/heap-under-load.txt"

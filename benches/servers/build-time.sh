#!/usr/bin/env bash
# Usage: benches/servers/build-time.sh [MCR_CC [REF_CC]]
#
# Build-time benchmark of issue 2 ("Speed"): builds memcached 1.6.18 and
# redis 7.0.15 with REF_CC (default clang-22) and with MCR_CC (default mcr-cc
# on PATH, else target/release/mcr-cc) at the same flags (each project's own
# defaults: memcached -g -O2, redis -O2 -g), side by side in one run,
# alternating the two compilers and swapping which goes first every round,
# $MCR_BENCH_ROUNDS rounds (default 2, minimum 2). Each build is a fresh
# out-of-tree copy: configure + make -j2 (scripts/servers/build.sh), timed
# wall clock and CPU (user+sys of every build process). Prints every build's
# seconds, the mean per compiler and the ratio MCR_CC / REF_CC per server and
# overall, for wall clock and for CPU (target: at most 1.5x). On a shared
# machine the wall clock is noisy; CPU time is the steadier figure.
#
# MCR_BENCH_SERVERS="memcached:1.6.18 redis:7.0.15" chooses the servers.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVERS_DIR="$HERE/../../scripts/servers"
MCR_LOG_TAG=build-time
. "$SERVERS_DIR/lib.sh"

MCR_CC="$(resolve_cc "${1:-$(default_mcr_cc)}")"
REF_CC="$(resolve_cc "${2:-clang-22}")"
ROUNDS="${MCR_BENCH_ROUNDS:-2}"
[ "$ROUNDS" -ge 2 ] 2>/dev/null || die "MCR_BENCH_ROUNDS must be a number >= 2"
read -r -a list <<<"${MCR_BENCH_SERVERS:-memcached:1.6.18 redis:7.0.15}"

"$SERVERS_DIR/deps.sh"
BENCH="$MCR_WORK/bench"
mkdir -p "$BENCH"
TIMES="$BENCH/build-times.txt"
: >"$TIMES"

# Fetch first so that no download is timed.
for s in "${list[@]}"; do "$SERVERS_DIR/fetch.sh" "${s%%:*}" "${s##*:}" >/dev/null; done

one() { # one SERVER VERSION CC TAG ROUND
    local out="$BENCH/$4/$1-$2" line secs cpu
    line="$("$SERVERS_DIR/build.sh" "$1" "$2" "$3" "$out")" || die "build of $1 $2 with $3 failed (log: $out/mcr-build.log)"
    secs="$(awk '{print $4}' <<<"$line")"
    cpu="$(awk '{print $6}' <<<"$line")"
    printf '%s %s %s %s %s\n' "$1" "$4" "$5" "$secs" "$cpu" >>"$TIMES"
    printf '  round %s  %-10s %-4s %7s s wall %7s s CPU\n' "$5" "$1" "$4" "$secs" "$cpu"
}

echo "build time: $MCR_CC (mcr) vs $REF_CC (ref), $ROUNDS rounds, make -j$MCR_JOBS, $(nproc) cores"
for ((r = 1; r <= ROUNDS; r++)); do
    for s in "${list[@]}"; do
        name="${s%%:*}" version="${s##*:}"
        if (( r % 2 )); then
            one "$name" "$version" "$REF_CC" ref "$r"
            one "$name" "$version" "$MCR_CC" mcr "$r"
        else
            one "$name" "$version" "$MCR_CC" mcr "$r"
            one "$name" "$version" "$REF_CC" ref "$r"
        fi
    done
done

echo
python3 - "$TIMES" "$(basename "$REF_CC")" "$(basename "$MCR_CC")" <<'PY'
import collections, statistics, sys
path, ref, mcr = sys.argv[1:4]
wall = collections.defaultdict(list)
cpu = collections.defaultdict(list)
for line in open(path):
    name, tag, _round, secs, c = line.split()
    wall[(name, tag)].append(float(secs))
    cpu[(name, tag)].append(float(c))
names = list(dict.fromkeys(n for n, _ in wall))
for label, t in (("wall clock (configure + make -j2)", wall), ("CPU user+sys (all build processes)", cpu)):
    print(label)
    print(f"  {'server':10s} {ref + ' mean s':>18s} {mcr + ' mean s':>18s} {'ratio':>7s}")
    tot_ref = tot_mcr = 0.0
    for n in names:
        a, b = statistics.mean(t[(n, 'ref')]), statistics.mean(t[(n, 'mcr')])
        tot_ref += a; tot_mcr += b
        print(f"  {n:10s} {a:18.1f} {b:18.1f} {b / a:6.2f}x")
    print(f"  {'total':10s} {tot_ref:18.1f} {tot_mcr:18.1f} {tot_mcr / tot_ref:6.2f}x")
PY

#!/usr/bin/env bash
# Usage: scripts/servers/all.sh [CC]
#
# From nothing: installs missing build deps (deps.sh), then for each of
# memcached 1.6.18, lighttpd 1.4.69, nginx 1.22.1, redis 7.0.15, vsftpd 3.0.5:
# fetches the pinned source (fetch.sh), builds it with CC (build.sh) into
# $MCR_WORK/build/<cc name>/NAME-VERSION, starts it on 127.0.0.1 and checks
# one real request (smoke.sh). CC defaults to mcr-cc on PATH, else
# target/release/mcr-cc.
#
# Prints a table: build ok, answered ok, build seconds (wall; cpu_s =
# user+sys of the build) and, when CC is mcr-cc,
# the allocation sites in the server binary's embedded type map
# (`mcr-cc --print-typemap BINARY`, [[alloc_sites]] entries) and the share of
# them typed (entries with a `type` key), followed by the sites per rule.
# For lighttpd the count is for the lighttpd executable; its mod_*.so plugins
# are not counted.
#
# Set MCR_SERVERS="memcached:1.6.18 redis:7.0.15" to run a subset.
# Exits non-zero if any server failed to build, answer or (with mcr-cc) give
# its type map.
set -euo pipefail
MCR_LOG_TAG=all
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CC="${1:-$(default_mcr_cc)}"
CC="$(resolve_cc "$CC")"
CCNAME="$(basename "$CC")"
MCR=0; is_mcr_cc "$CC" && MCR=1

if [ -n "${MCR_SERVERS:-}" ]; then
    read -r -a list <<<"${MCR_SERVERS//:/ }"
    SERVERS=()
    for ((i = 0; i < ${#list[@]}; i += 2)); do SERVERS+=("${list[i]} ${list[i+1]}"); done
else
    SERVERS=("${DEFAULT_SERVERS[@]}")
fi

"$SERVERS_DIR/deps.sh"

RESULTS="$MCR_WORK/build/$CCNAME/results"
mkdir -p "$RESULTS"
fail=0
rows=()
details=()
for s in "${SERVERS[@]}"; do
    read -r name version <<<"$s"
    out="$MCR_WORK/build/$CCNAME/$name-$version"
    b=FAIL a=- secs=- cpu=- sites=- typed=- share=-
    log "=== $name $version with $CC ==="
    if line="$("$SERVERS_DIR/build.sh" "$name" "$version" "$CC" "$out")"; then
        b=ok
        secs="$(awk '{print $4}' <<<"$line")"
        binary="$(awk '{print $5}' <<<"$line")"
        cpu="$(awk '{print $6}' <<<"$line")"
        if "$SERVERS_DIR/smoke.sh" "$name" "$out" >"$RESULTS/$name-$version.smoke" 2>&1; then
            a=ok
        else
            a=FAIL; fail=1
        fi
        cat "$RESULTS/$name-$version.smoke" >&2
        if [ "$MCR" = 1 ]; then
            tm="$RESULTS/$name-$version.typemap.toml"
            if "$CC" --print-typemap "$binary" >"$tm" 2>"$RESULTS/$name-$version.typemap.err" \
                && stats="$(python3 "$SERVERS_DIR/typemap-stats.py" "$tm" 2>>"$RESULTS/$name-$version.typemap.err")"; then
                read -r sites typed share <<<"$(head -n1 <<<"$stats")"
                share="$share%"
                details+=("$name $version: $sites allocation sites, $typed typed ($share); by rule:" "$(tail -n +2 <<<"$stats")")
            else
                sites=FAIL typed=FAIL share=FAIL; fail=1
                details+=("$name $version: type map FAILED: $(head -c 600 "$RESULTS/$name-$version.typemap.err")")
            fi
        fi
    else
        fail=1
    fi
    rows+=("$(printf '%-18s %-6s %-9s %8s %8s %12s %7s %7s' "$name $version" "$b" "$a" "$secs" "$cpu" "$sites" "$typed" "$share")")
done

echo
echo "Real servers built with $CC (work dir: $MCR_WORK/build/$CCNAME)"
printf '%-18s %-6s %-9s %8s %8s %12s %7s %7s\n' server build answered build_s cpu_s alloc_sites typed share
for r in "${rows[@]}"; do echo "$r"; done
if [ "${#details[@]}" -gt 0 ]; then
    echo
    for d in "${details[@]}"; do echo "$d"; done
fi
if [ "$fail" -ne 0 ]; then
    echo
    echo "FAILED: at least one server did not build, answer or give its type map (logs: <build dir>/mcr-build.log, $RESULTS)"
    exit 1
fi
echo
echo "all ${#SERVERS[@]} servers built and answered"

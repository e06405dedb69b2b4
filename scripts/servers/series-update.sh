#!/usr/bin/env bash
# Usage: scripts/servers/series-update.sh NAME VERSION DEBIAN_REVISION [BIN_DIR]
#   e.g. scripts/servers/series-update.sh redis 7.0.15 7.0.15-1~deb12u10
#
# Debian's patch series of a package, applied live one patch at a time to
# ONE running server: patch-series.sh builds every level with mcr-cc
# (level 0 = upstream, level k = patches 1..k) and keeps each level's
# binary; the server is started from level 0, loaded, and updated live to
# level 1, 2, ... in turn under a client load, its whole state checked after
# each update (the server's update client does the checking). Then a
# rollback: level 0 started again with MCR_FAULT=transfer and updated to the
# last level must roll back with every piece of state intact. After the
# chain, the updated server must answer behaviour probes (redis: the Lua
# sandbox CVE-2025-46818 closes) as a fresh start of the last level does
# (after the rollback: as level 0 does).
#
# Output: $MCR_WORK/diff/series/NAME-REVISION/live.tsv (level, patch,
# outcome, downtime ms, client rounds during the update, client errors)
# and the same as a table on stdout.
#
# Servers: redis ($MCR_REDIS_KEYS keys, default 1,000,000); memcached and
# nginx through their own update scripts, given level 0 and the chain of
# levels 1..n (memcached-update.sh: the chain without, then with a saved
# profile, items checked after each update, idle connections after the
# last; nginx-update.sh: the chain with keep-alive connections served after
# each update, then respawn/reload checks, then the chain again followed by
# an update back to level 0; each script's rollback case updates level 0 to
# the last level with MCR_FAULT=transfer). No behaviour probe for these two:
# none of memcached 1.6.18-1+deb12u1's or nginx 1.22.1-9+deb12u10's fixes is
# observable with a safe, bounded request (debian-update.sh's header says
# why); each update checks that the new PID runs that level's binary.
set -euo pipefail
MCR_LOG_TAG=series-update
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -ge 3 ] || { echo "usage: $0 NAME VERSION DEBIAN_REVISION [BIN_DIR]" >&2; exit 2; }
NAME="$1" VERSION="$2" REV="$3"
BIN="$(cd "${4:-$REPO_ROOT/target/release}" && pwd)"
OUT="$MCR_WORK/diff/series/$NAME-$REV"
case "$NAME" in
    redis|memcached|nginx) ;;
    *) die "no live client for '$NAME' yet (known: redis, memcached, nginx)" ;;
esac

# MCR_SERIES_REUSE=1: the levels a complete earlier run built are used as
# they are (after a change to mcr itself, rebuild: leave it unset).
if [ -z "${MCR_SERIES_REUSE:-}" ] || [ ! -f "$OUT/.done" ] || [ ! -f "$OUT/00.bin" ]; then
    MCR_SERIES_BINARIES=1 "$SERVERS_DIR/patch-series.sh" "$NAME" "$VERSION" "$REV" "$BIN"
fi
mapfile -t LEVELS < <(ls "$OUT"/[0-9][0-9].bin | sort)
[ ${#LEVELS[@]} -ge 2 ] || die "no patch levels built in $OUT"

live_table() {
    printf 'level\tpatch\toutcome\tdowntime_ms\tclient_rounds\tclient_errors\n'
    grep -h '^RESULT' "$@" | while IFS=$'\t' read -r _ bin outcome ms rounds errors; do
        lvl="$(basename "$bin" .bin)"
        patch="$(awk -F'\t' -v l="$lvl" '$1 == l {print $2}' "$OUT/levels.tsv")"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$lvl" "$patch" "$outcome" "$ms" "$rounds" "$errors"
    done
}

if [ "$NAME" != redis ]; then
    chain="$(IFS=:; echo "${LEVELS[*]:1}")"
    rc=0
    "$SERVERS_DIR/$NAME-update.sh" "$BIN" "${LEVELS[0]}" "$chain" 2>&1 | tee "$OUT/live.log" || rc=$?
    [ $rc -eq 0 ] || die "$NAME: the live chain failed (log: $OUT/live.log)"
    live_table "$OUT/live.log" >"$OUT/live.tsv"
    column -t -s $'\t' "$OUT/live.tsv"
    log "$NAME $REV: every level applied live to one running server, state checked after each"
    exit 0
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_chain() {
    local fault="$1" port pid fresh_port fresh_pid rc=0 compare
    shift
    # What the server must behave as afterwards: the last level, or after a
    # rollback the level it started as.
    compare="${@: -1}"
    [ -z "$fault" ] || compare="${LEVELS[0]}"
    port="$(free_port)" fresh_port="$(free_port)"
    log "case: ${fault:-commit}, ${#@} update(s), port $port"
    "$compare" --port "$fresh_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
        --logfile "$OUT/redis-fresh-$fresh_port.log" </dev/null >/dev/null &
    fresh_pid=$!
    MCR_FAULT="$fault" "${LEVELS[0]}" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize no --enable-debug-command local --logfile "$OUT/redis-$port.log" </dev/null >/dev/null &
    pid=$!
    MCR_COMPARE_PORT="$fresh_port" python3 "$SERVERS_DIR/redis_update_client.py" "$port" "$pid" \
        "$BIN/mcr-ctl" "$fault" "${MCR_REDIS_KEYS:-1000000}" "$@" | tee "$OUT/live-${fault:-commit}.log" || rc=$?
    pkill -f "bin 127.0.0.1:$port" 2>/dev/null || true
    kill "$pid" "$fresh_pid" 2>/dev/null || true
    [ $rc -eq 0 ] || { tail -20 "$OUT/redis-$port.log" >&2; die "${fault:-commit} chain failed"; }
}

run_chain "" "${LEVELS[@]:1}"
run_chain transfer "${LEVELS[-1]}"

live_table "$OUT/live-commit.log" "$OUT/live-transfer.log" >"$OUT/live.tsv"
column -t -s $'\t' "$OUT/live.tsv"
log "$NAME $REV: every level applied live to one running server, state checked after each"

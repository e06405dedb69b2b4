#!/usr/bin/env bash
# Usage: scripts/servers/redis-update.sh [MCR_BIN_DIR]
#
# redis 7.0.15 built with mcr-cc, updated live to itself (a copy of the
# binary in a second directory, so the new binary is a different file) with
# $MCR_REDIS_KEYS keys (default 1,000,000, from DEBUG POPULATE) and a
# loader running SET/GET/GET/INCR round trips through the update:
#   1. populate; a hash-table set, a hash, a list, a sorted set; note
#      run_id and uptime; open an idle connection;
#   2. mcr-ctl update PID NEW_BINARY;
#   3. the loader saw zero errors (every random key it read was there); on
#      the idle connection and on a new one: the counter, 20,000 sampled keys
#      and the first, middle and last, every set member; DBSIZE exact, a SET
#      of an old key makes no duplicate, run_id kept, uptime not gone back.
#      (Before start-up inputs were answered again, every key was lost: the
#      new start-up drew another hash seed.)
# Then the same with MCR_FAULT=transfer: rolled back, the old PID serves all.
set -euo pipefail
MCR_LOG_TAG=redis-update
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN="${1:-$REPO_ROOT/target/release}"
BIN="$(cd "$BIN" && pwd)"
for b in mcr-cc mcr-ctl; do [ -x "$BIN/$b" ] || die "$BIN/$b not found: cargo build --release first"; done
KEYS="${MCR_REDIS_KEYS:-1000000}"
V=7.0.15
OLD="$MCR_WORK/build/mcr-update/redis-$V-a"
NEW="$MCR_WORK/build/mcr-update/redis-$V-b"
"$SERVERS_DIR/build.sh" redis "$V" "$BIN/mcr-cc" "$OLD" >/dev/null
# The same build under another path: a second build would make the same
# bytes, and costs CI a minute and a half.
rm -rf "$NEW" && mkdir -p "$NEW/src" && cp "$OLD/src/redis-server" "$NEW/src/redis-server"

run_case() {
    local fault="$1" port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    log "case: ${fault:-commit} (port $port, $KEYS keys)"
    MCR_FAULT="$fault" "$OLD/src/redis-server" --port "$port" --bind 127.0.0.1 --save "" \
        --appendonly no --daemonize no --enable-debug-command local --logfile "$MCR_WORK/build/mcr-update/redis-$port.log" &
    local pid=$! rc=0
    python3 "$SERVERS_DIR/redis_update_client.py" "$port" "$pid" "$BIN/mcr-ctl" "${fault:-}" "$KEYS" \
        "$NEW/src/redis-server" || rc=$?
    kill "$pid" 2>/dev/null || true
    pkill -f "redis-server 127.0.0.1:$port" 2>/dev/null || true
    [ $rc -eq 0 ] || tail -20 "$MCR_WORK/build/mcr-update/redis-$port.log" >&2
    return $rc
}
run_case ""
run_case "transfer"
log "redis live update: all checks passed"

#!/usr/bin/env bash
# Usage: scripts/servers/lighttpd-rollback.sh [MCR_BIN_DIR]
#
# Issue 16: lighttpd 1.4.69 with mod_status, built with mcr-cc, updated to
# 1.4.79 (`mcr-ctl update PID NEW -- -D -f CONF -m NEW/src/.libs`). The
# update rolls back (1.4.79 no longer has a function the state refers to:
# connection_handle_read_post_state). 1.4.79's start-up, replayed against
# the inherited descriptors, registered the listener on the shared epoll
# instance with its own fdnode; the rollback must give the old version its
# files back as they were. Checks (lighttpd_rollback_client.py), all on
# 127.0.0.1 and bounded:
#   1. a keep-alive connection and 5 short ones; mod_status read on the
#      kept connection (Total Accesses, Uptime);
#   2. mcr-ctl update ... exits non-zero with "rolled back"; the old PID
#      lives;
#   3. the kept connection is answered; 3 new connections are each accepted
#      and answered within 5 s; the old process does not spin (under 0.5 s
#      CPU in 1 s idle);
#   4. mod_status read again: Uptime and Total Accesses have not gone back,
#      and count the requests made since.
# The builds go to $MCR_WORK/build/mcr-rollback/ and are reused while newer
# than mcr-cc and the runtime (each is ~1 min).

set -euo pipefail
MCR_LOG_TAG=lighttpd-rollback
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN="${1:-$REPO_ROOT/target/release}"
BIN="$(cd "$BIN" && pwd)"
for b in mcr-cc mcr-ctl; do [ -x "$BIN/$b" ] || die "$BIN/$b not found: cargo build --release first"; done
OLD="$MCR_WORK/build/mcr-rollback/lighttpd-1.4.69"
NEW="$MCR_WORK/build/mcr-rollback/lighttpd-1.4.79"
build_if_stale() {
    local version="$1" dir="$2"
    if [ -x "$dir/src/lighttpd" ] && [ "$dir/src/lighttpd" -nt "$BIN/mcr-cc" ] \
        && [ "$dir/src/lighttpd" -nt "$BIN/libmcr_rt.a" ]; then
        log "$dir/src/lighttpd is up to date"
    else
        "$SERVERS_DIR/build.sh" lighttpd "$version" "$BIN/mcr-cc" "$dir" >/dev/null
    fi
}
build_if_stale 1.4.69 "$OLD"
build_if_stale 1.4.79 "$NEW"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TMP="$(mktemp -d "${TMPDIR:-/tmp}/mcr-lighttpd-rollback.XXXXXX")"
PID=""
cleanup() {
    if [ -n "$PID" ]; then
        kill -KILL -- "-$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$TMP/htdocs"
printf '<html><body>mcr-lighttpd-%s</body></html>\n' "$port" >"$TMP/htdocs/index.html"
conf() {
    cat <<CONF
server.document-root = "$TMP/htdocs"
server.bind          = "127.0.0.1"
server.port          = $port
server.errorlog      = "$TMP/error-$1.log"
server.modules       = ( "mod_status" )
status.status-url    = "/server-status"
server.max-keep-alive-idle = 300
server.max-keep-alive-requests = 10000
index-file.names     = ( "index.html" )
mimetype.assign      = ( ".html" => "text/html" )
CONF
}
conf old >"$TMP/old.conf"
conf new >"$TMP/new.conf"

log "lighttpd 1.4.69 on 127.0.0.1:$port, updated to 1.4.79 (rolls back)"
# Its own process group: the clean-up ends whatever of either version runs.
setsid "$OLD/src/lighttpd" -D -f "$TMP/old.conf" -m "$OLD/src/.libs" 2>"$TMP/stderr.log" &
PID=$!
rc=0
timeout 150 python3 "$SERVERS_DIR/lighttpd_rollback_client.py" "$port" "$PID" "$BIN/mcr-ctl" \
    "$NEW/src/lighttpd" "$TMP/new.conf" "$NEW/src/.libs" || rc=$?
if [ $rc != 0 ]; then
    log "failed; lighttpd's stderr and error logs:"
    tail -n 20 "$TMP/stderr.log" "$TMP"/error-*.log >&2 || true
    exit $rc
fi
log "lighttpd rollback: all checks passed"

#!/usr/bin/env bash
# Usage: scripts/servers/nginx-update.sh [MCR_BIN_DIR [OLD_BINARY NEW_BINARY[:NEW_BINARY2...]]]
#
# With OLD_BINARY and NEW_BINARY (debian-update.sh: two Debian revisions
# built with mcr-cc), those are the running and the new version and nothing
# is built here; the checks are the same (the chained case's second update
# goes back to OLD_BINARY).
#
# nginx 1.22.1 built with mcr-cc (master + 2 workers, the workers accept the
# clients), updated live to itself (rebuilt into a second directory, so the
# new binary is a different file) while clients hold keep-alive connections:
#   1. open connections and make one request on each, and leave one request
#      half sent (headers without the final empty line); a loader makes
#      GET round trips on its own keep-alive connection through the update
#      (0 errors required);
#   2. mcr-ctl update MASTER_PID NEW_BINARY;
#   3. each connection, still the same socket, gets a second response; the
#      half request completes; a new connection is served; the old master
#      and workers are gone, the new workers are children of the new master;
#   4. a worker killed with SIGKILL is respawned by the new master and
#      serves; a SIGHUP reload replaces both workers, which serve;
#   5. the next update is refused (workers forked after start-up are not
#      carried), nginx serving on.
# Then, on a fresh nginx, two updates in a row (the second back to the first
# binary): the same keep-alive connections carried twice.
# Then the same with MCR_FAULT=transfer: rolled back, the old processes
# serve every connection.
#
# nginx's mcr.toml (scripts/servers/mcr-toml/nginx.toml) declares its pool
# allocators and its event loops; docs/decisions.md, "nginx: what it took".

set -euo pipefail
MCR_LOG_TAG=nginx-update
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN="${1:-$REPO_ROOT/target/release}"
BIN="$(cd "$BIN" && pwd)"
for b in mcr-cc mcr-ctl; do [ -x "$BIN/$b" ] || die "$BIN/$b not found: cargo build --release first"; done
if [ $# -ge 3 ]; then
    # A rollback case takes the last binary of the chain.
    given_binaries "$2" "$3"
else
    V=1.22.1
    OLD="$MCR_WORK/build/mcr-update/nginx-$V-a"
    NEW="$MCR_WORK/build/mcr-update/nginx-$V-b"
    # Rebuilt only when mcr-cc or the runtime changed since (a build is ~1 min).
    for dir in "$OLD" "$NEW"; do
        if [ -x "$dir/objs/nginx" ] && [ "$dir/objs/nginx" -nt "$BIN/mcr-cc" ] \
            && [ "$dir/objs/nginx" -nt "$BIN/libmcr_rt.a" ]; then
            log "$dir/objs/nginx is up to date"
        else
            "$SERVERS_DIR/build.sh" nginx "$V" "$BIN/mcr-cc" "$dir" >/dev/null
        fi
    done
    OLD_BIN="$OLD/objs/nginx" NEW_BIN="$NEW/objs/nginx"
fi
log "old: $OLD_BIN, new: $NEW_BIN"

run_case() {
    local fault="$1" port tmp
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    tmp=$(mktemp -d)
    chmod 755 "$tmp"    # the workers drop privileges to nobody
    log "case: ${fault:-commit} (port $port, prefix $tmp)"
    mkdir -p "$tmp/html" "$tmp/logs" "$tmp/tmp"
    printf '<html><body>mcr-nginx-%s</body></html>\n' "$port" >"$tmp/html/index.html"
    cat >"$tmp/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 2;
error_log $tmp/logs/error.log notice;
pid $tmp/logs/nginx.pid;
events { worker_connections 128; }
http {
    access_log off;
    keepalive_timeout 300s;
    keepalive_requests 10000;
    client_body_temp_path $tmp/tmp/body;
    proxy_temp_path $tmp/tmp/proxy;
    fastcgi_temp_path $tmp/tmp/fastcgi;
    uwsgi_temp_path $tmp/tmp/uwsgi;
    scgi_temp_path $tmp/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        root $tmp/html;
        location / { }
    }
}
CONF
    # Its own process group: the new master and the workers of either
    # version stay in it, and the clean-up below ends them all (worker
    # titles do not name the configuration).
    local mcr_fault="$fault"
    [ "$fault" = chained ] && mcr_fault=""
    MCR_FAULT="$mcr_fault" setsid "$OLD_BIN" -p "$tmp/" -c "$tmp/nginx.conf" -e "$tmp/logs/error.log" &
    local pid=$! rc=0
    local target="$NEW_BIN"
    [ -z "$mcr_fault" ] || target="${NEW_BIN##*:}"
    python3 "$SERVERS_DIR/nginx_update_client.py" "$port" "$pid" "$BIN/mcr-ctl" "$target" "${fault:-}" "$OLD_BIN" || rc=$?
    if [ $rc != 0 ]; then tail -20 "$tmp/logs/error.log" >&2 || true; fi
    kill -TERM -- "-$pid" 2>/dev/null || true
    sleep 0.2
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -rf "$tmp"
    return $rc
}
run_case ""
run_case "chained"
run_case "transfer"
log "nginx live update: all checks passed"

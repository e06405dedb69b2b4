#!/usr/bin/env bash
# Usage: scripts/servers/smoke.sh NAME BUILDDIR
#
# Starts the server built by build.sh in BUILDDIR on 127.0.0.1 on a free high
# port (as the current user; as root each server gets what it needs to accept
# that), sends one real request with scripts/servers/probe.py, checks the
# answer, stops the server and removes its temporary directory.
#
#   memcached  -l 127.0.0.1 -p PORT -U 0 (-u root when root); set + get
#   lighttpd   -D -f <temp conf> -m BUILDDIR/src/.libs; HTTP GET /index.html
#   nginx      -p <temp prefix> -c <temp conf>, master + 1 worker; HTTP GET
#   redis      --bind 127.0.0.1 --port PORT --save '' ; PING, SET, GET
#   vsftpd     <temp conf>: listen=YES on 127.0.0.1:PORT, anonymous only,
#              background=NO, seccomp_sandbox=NO; banner, USER anonymous,
#              PASS, PWD, QUIT
#
# All waits are bounded ($MCR_SMOKE_WAIT seconds for the port, default 30).
# Prints "NAME: answered ok: ..." and exits 0, or prints why and the server's
# log tail and exits 1.
set -euo pipefail
MCR_LOG_TAG=smoke
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 2 ] || { echo "usage: $0 NAME BUILDDIR" >&2; exit 2; }
NAME="$1"
BUILDDIR="$(cd "$2" 2>/dev/null && pwd)" || die "build directory $2 not found"
WAIT="${MCR_SMOKE_WAIT:-30}"

case "$NAME" in
    memcached) BIN=memcached ;;
    lighttpd)  BIN=src/lighttpd ;;
    nginx)     BIN=objs/nginx ;;
    redis)     BIN=src/redis-server ;;
    vsftpd)    BIN=vsftpd ;;
    *) die "unknown server '$NAME' (known: memcached lighttpd nginx redis vsftpd)" ;;
esac
BIN="$BUILDDIR/$BIN"
[ -x "$BIN" ] || die "$BIN not found or not executable (build it with build.sh first)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/mcr-smoke-$NAME.XXXXXX")"
chmod 755 "$TMP"     # nginx workers / vsftpd drop privileges to nobody
PID=""
cleanup() {
    if [ -n "$PID" ]; then stop_pid "$PID" 10; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TOKEN="mcr-smoke-$NAME-$$-$RANDOM"
ROOT=0; [ "$(id -u)" -eq 0 ] && ROOT=1

# Write config for PORT and print the command line to run, one arg per line.
prepare() {
    local port="$1"
    case "$NAME" in
    memcached)
        printf '%s\n' "$BIN" -l 127.0.0.1 -p "$port" -U 0 -m 64 -t 2 -c 64
        [ "$ROOT" = 1 ] && printf '%s\n' -u root
        ;;
    lighttpd)
        mkdir -p "$TMP/htdocs"
        printf '<html><body>%s</body></html>\n' "$TOKEN" >"$TMP/htdocs/index.html"
        cat >"$TMP/lighttpd.conf" <<CONF
server.document-root = "$TMP/htdocs"
server.bind          = "127.0.0.1"
server.port          = $port
server.errorlog      = "$TMP/error.log"
server.modules       = ()
index-file.names     = ( "index.html" )
mimetype.assign      = ( ".html" => "text/html" )
CONF
        printf '%s\n' "$BIN" -D -f "$TMP/lighttpd.conf" -m "$BUILDDIR/src/.libs"
        ;;
    nginx)
        mkdir -p "$TMP/html" "$TMP/logs" "$TMP/tmp"
        printf '<html><body>%s</body></html>\n' "$TOKEN" >"$TMP/html/index.html"
        chmod -R a+rX "$TMP/html"
        local user=""
        if [ "$ROOT" = 1 ]; then user="user nobody $(id -gn nobody);"; fi
        cat >"$TMP/nginx.conf" <<CONF
$user
daemon off;
master_process on;
worker_processes 1;
error_log $TMP/logs/error.log notice;
pid $TMP/logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $TMP/tmp/body;
    proxy_temp_path $TMP/tmp/proxy;
    fastcgi_temp_path $TMP/tmp/fastcgi;
    uwsgi_temp_path $TMP/tmp/uwsgi;
    scgi_temp_path $TMP/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        root $TMP/html;
        location / { }
    }
}
CONF
        printf '%s\n' "$BIN" -p "$TMP/" -c "$TMP/nginx.conf" -e "$TMP/logs/error.log"
        ;;
    redis)
        printf '%s\n' "$BIN" --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
            --daemonize no --dir "$TMP" --logfile "$TMP/redis.log" --protected-mode yes
        ;;
    vsftpd)
        [ "$ROOT" = 1 ] || die "vsftpd's smoke test runs it as root (it chroots and drops to 'nobody'); run as root"
        mkdir -p "$TMP/empty" "$TMP/ftproot"
        chmod 755 "$TMP/empty" "$TMP/ftproot"
        printf '%s\n' "$TOKEN" >"$TMP/ftproot/hello.txt"
        # vsftpd chdir()s into the anonymous user's home before chroot()ing
        # to anon_root, so ftp_username must name a user whose home exists
        # ('nobody' has /nonexistent). Prefer 'ftp'; else the first system
        # user (uid 1..999) with an existing home directory.
        local ftpuser
        ftpuser="$(getent passwd | awk -F: '
            $1 == "ftp" { print $1; exit }' )"
        if [ -z "$ftpuser" ] || [ ! -d "$(getent passwd "$ftpuser" | cut -d: -f6)" ]; then
            ftpuser="$(getent passwd | awk -F: '$3 > 0 && $3 < 1000 { print $1 " " $6 }' \
                | while read -r u h; do [ -d "$h" ] && { echo "$u"; break; }; done)"
        fi
        [ -n "$ftpuser" ] || die "no system user with an existing home directory for vsftpd's ftp_username"
        cat >"$TMP/vsftpd.conf" <<CONF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$port
background=NO
anonymous_enable=YES
no_anon_password=NO
local_enable=NO
write_enable=NO
anon_root=$TMP/ftproot
ftp_username=$ftpuser
nopriv_user=nobody
secure_chroot_dir=$TMP/empty
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
tcp_wrappers=NO
xferlog_enable=NO
syslog_enable=NO
vsftpd_log_file=$TMP/vsftpd.log
dual_log_enable=NO
pasv_enable=YES
max_clients=4
CONF
        printf '%s\n' "$BIN" "$TMP/vsftpd.conf"
        ;;
    esac
}

case "$NAME" in
    memcached) PROTO=memcached ;; redis) PROTO=redis ;;
    lighttpd|nginx) PROTO=http ;; vsftpd) PROTO=ftp ;;
esac

show_logs() {
    local f
    for f in "$TMP/server.out" "$TMP/error.log" "$TMP/logs/error.log" "$TMP/redis.log" "$TMP/vsftpd.log"; do
        [ -s "$f" ] || continue
        echo "--- ${f#"$TMP"/} (last 20 lines) ---" >&2
        tail -n 20 "$f" >&2
    done
}

# Up to 3 attempts, in case another process grabs the free port first.
started=0
for attempt in 1 2 3; do
    PORT="$(free_port)"
    mapfile -t CMD < <(prepare "$PORT")
    log "starting $NAME on 127.0.0.1:$PORT: ${CMD[*]}"
    "${CMD[@]}" >"$TMP/server.out" 2>&1 </dev/null &
    PID=$!
    if wait_port "$PORT" "$WAIT" "$PID"; then
        started=1
        break
    fi
    if kill -0 "$PID" 2>/dev/null; then
        log "$NAME did not open 127.0.0.1:$PORT within ${WAIT}s"
        show_logs
        stop_pid "$PID" 10; PID=""
        break
    fi
    rc=0; wait "$PID" || rc=$?
    PID=""
    log "$NAME exited (status $rc) before opening port $PORT (attempt $attempt)"
    show_logs
done
if [ "$started" != 1 ]; then
    echo "$NAME: FAILED: server did not start" 
    exit 1
fi

if answer="$(python3 "$SERVERS_DIR/probe.py" "$PROTO" "$PORT" "$TOKEN")"; then
    # The server must still be alive after answering.
    if ! kill -0 "$PID" 2>/dev/null; then
        show_logs
        echo "$NAME: FAILED: server died after answering"
        exit 1
    fi
    stop_pid "$PID" 10; PID=""
    echo "$NAME: answered ok: $answer"
else
    show_logs
    echo "$NAME: FAILED: wrong or no answer on 127.0.0.1:$PORT"
    exit 1
fi

#!/usr/bin/env bash
# Usage: scripts/servers/openssh-login.sh [DEBIAN_REVISION] [BIN_DIR]
#   default: 9.2p1-2+deb12u7, BIN_DIR = target/release (mcr-cc, libmcr_rt.a)
#
# Builds sshd from Debian's DEBIAN_REVISION (upstream 9.2p1 plus its whole
# debian/patches/series; build.sh: autoreconf -fi, ./configure --without-pam,
# make sshd) with mcr-cc, runs it on a free port of 127.0.0.1 and proves a
# login and a command work:
#
#   ssh -i KEY -p PORT mcr-ssh-test@127.0.0.1 echo ok   ->  "ok"
#
# sshd runs as Debian ships it: privilege separation (monitor plus an
# unprivileged pre-auth child as user sshd, chrooted to /run/sshd) and the
# seccomp filter sandbox of that child; the script checks in sshd's log
# (LogLevel DEBUG3) that the filter was attached, and that the binary
# carries mcr's type map. Key authentication only, with a generated host key
# and user key; the test user mcr-ssh-test (and the privsep user sshd) are
# created when absent. Needs root.
#
# MCR_SSH_CC=clang-22 builds with another compiler (the reference);
# MCR_SSHD=PATH runs that sshd instead of building one.
# Output: one line "openssh REVISION CC login ok PORT". Every wait is
# bounded; any failure exits non-zero with sshd's log tail.
set -euo pipefail
MCR_LOG_TAG=openssh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -le 2 ] || { echo "usage: $0 [DEBIAN_REVISION] [BIN_DIR]" >&2; exit 2; }
REV="${1:-9.2p1-2+deb12u7}"
BIN="$(cd "${2:-$REPO_ROOT/target/release}" && pwd)"
VERSION="${REV%%-*}"
[ "$(id -u)" = 0 ] || die "needs root (privilege separation, chroot, test users)"
for t in ssh ssh-keygen useradd autoreconf pgrep; do
    command -v "$t" >/dev/null || die "$t not found (apt-get install openssh-client autoconf automake passwd procps)"
done
. "$SERVERS_DIR/openssh-lib.sh"

# --- the build ---
if [ -n "${MCR_SSHD:-}" ]; then
    SSHD="$(realpath "$MCR_SSHD")"
    [ -x "$SSHD" ] || die "MCR_SSHD=$MCR_SSHD is not an executable"
    CC="$(basename "$SSHD")"
else
    CC="$(resolve_cc "${MCR_SSH_CC:-$BIN/mcr-cc}")"
    if is_mcr_cc "$CC"; then
        [ -e "$BIN/libmcr_rt.a" ] || die "$BIN/libmcr_rt.a not found: cargo build --release first"
    fi
    SSHD="$(openssh_build "$REV" "$CC" "$BIN")"
fi
if [ -z "${MCR_SSH_CC:-}" ] && [ -z "${MCR_SSHD:-}" ]; then
    "$BIN/mcr-cc" --print-typemap "$SSHD" >/dev/null 2>&1 \
        || die "$SSHD carries no mcr type map: not an mcr-cc build"
fi

# --- users, privsep directory, keys, configuration ---
openssh_users
RUN="$(mktemp -d "$MCR_WORK/openssh-login.XXXXXX")"
chmod 755 "$RUN"
SSHD_PID=""
cleanup() {
    local p
    if [ -n "$SSHD_PID" ]; then
        # Session processes first, so the listener reaps them.
        for p in $(descendants "$SSHD_PID"); do kill -TERM "$p" 2>/dev/null || true; done
        stop_pid "$SSHD_PID" 5
    fi
    [ -n "${MCR_KEEP_RUN:-}" ] || rm -rf "$RUN"
}
trap cleanup EXIT
PORT="$(free_port)"
openssh_config "$RUN" "$PORT"
"$SSHD" -t -f "$RUN/sshd_config" || die "sshd -t rejects the configuration"

# --- the login ---
"$SSHD" -D -e -f "$RUN/sshd_config" >"$RUN/sshd.log" 2>&1 &
SSHD_PID=$!
fail() {
    log "sshd log (last 30 lines):"
    tail -n 30 "$RUN/sshd.log" >&2 || true
    die "$*"
}
wait_port "$PORT" 15 "$SSHD_PID" || fail "sshd did not listen on 127.0.0.1:$PORT within 15 s"
log "sshd $REV ($CC) pid $SSHD_PID listens on 127.0.0.1:$PORT"

openssh_login_ok "$RUN/ssh.err" \
    || { cat "$RUN/ssh.err" >&2; fail "ssh login and 'echo ok' failed"; }
grep -q "ssh_sandbox_child: attaching seccomp filter program \[preauth\]" "$RUN/sshd.log" \
    || fail "the login worked but sshd's log does not show the seccomp sandbox attached"
grep -q "Accepted publickey for $TEST_USER" "$RUN/sshd.log" \
    || fail "the login worked but sshd's log does not show the public key accepted"
kill -0 "$SSHD_PID" 2>/dev/null || fail "sshd exited after the login"
# The session's processes end and the listener reaps them (bounded).
for ((i = 0; i < 50; i++)); do
    [ -n "$(pgrep -P "$SSHD_PID" || true)" ] || break
    sleep 0.1
done
log "login as $TEST_USER and 'echo ok' answered 'ok'; pre-auth child sandboxed (seccomp filter attached)"
printf 'openssh %s %s login ok %s\n' "$REV" "$(basename "$CC")" "$PORT"

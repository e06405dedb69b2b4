#!/usr/bin/env bash
# Usage: scripts/servers/openssh-update.sh [OLD_REVISION [NEW_REVISION]] [BIN_DIR]
#   default: 9.2p1-2+deb12u7 -> 9.2p1-2+deb12u10, BIN_DIR = target/release
#
# One running sshd (mcr-cc builds of Debian's revisions, openssh-lib.sh)
# updated live twice: first to its own build again, then to NEW_REVISION.
# The binary is installed at the listener's own path before each update (as
# dpkg replaces /usr/sbin/sshd), so the connections it re-executes for run
# what is installed. Open throughout:
#   - an interactive shell (ssh -tt ... sh -i) with FOO set,
#   - a session that prints a tick every 0.2 s.
# After each update it checks and reports:
#   - the listener's new pid runs the installed binary (/proc/PID/exe);
#   - the shell answers "echo \$FOO" with its value, the ticks go on;
#   - a new login runs 'echo ok', its connection process running the
#     installed binary;
#   - which binary the two sessions' processes run (sessions forked after
#     start-up are not updated by mcr yet: reported, not hidden).
# Last, each session process updated on its own must be refused before
# anything stops (forked after start-up), both sessions answering after.
# A rolled-back update is reported with mcr-ctl's reason, the old listener
# checked to serve a login still, and the script fails. Every wait bounded.
# Output: one line per update, then one for the refusals:
#   update FROM TO downtime_ms=N sessions_kept=K/2 login=ok listener_exe=new session_exe=old|new
#   session_updates refused=N/N sessions_kept=2/2
set -euo pipefail
MCR_LOG_TAG=openssh-update
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -le 3 ] || { echo "usage: $0 [OLD_REVISION [NEW_REVISION]] [BIN_DIR]" >&2; exit 2; }
OLD_REV="${1:-9.2p1-2+deb12u7}"
NEW_REV="${2:-9.2p1-2+deb12u10}"
BIN="$(cd "${3:-$REPO_ROOT/target/release}" && pwd)"
[ "$(id -u)" = 0 ] || die "needs root (privilege separation, chroot, test users)"
for t in ssh ssh-keygen useradd autoreconf pgrep mkfifo; do
    command -v "$t" >/dev/null || die "$t not found"
done
for b in mcr-cc mcr-ctl libmcr_rt.a; do [ -e "$BIN/$b" ] || die "$BIN/$b not found: cargo build --release first"; done
. "$SERVERS_DIR/openssh-lib.sh"

OLD_SSHD="$(openssh_build "$OLD_REV" "$BIN/mcr-cc" "$BIN")"
NEW_SSHD="$(openssh_build "$NEW_REV" "$BIN/mcr-cc" "$BIN")"

openssh_users
RUN="$(mktemp -d "$MCR_WORK/openssh-update.XXXXXX")"
chmod 755 "$RUN"
mkdir -m 755 "$RUN/sbin"
SSHD="$RUN/sbin/sshd"
LISTENER=""
SESSIONS=""
CLIENTS=()
# alive PID: running (a zombie is not).
alive() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)" != Z ]; }
cleanup() {
    local p
    exec 4>&- 2>/dev/null || true
    # Clients first: each session's sshd processes then end as on a
    # disconnect, each reaped by its parent (bounded wait).
    for p in "${CLIENTS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for ((i = 0; i < 50; i++)); do
        left=""
        for p in $SESSIONS; do alive "$p" && left=1; done
        [ -n "$LISTENER" ] && [ -n "$(ps -o pid= --ppid "$LISTENER" || true)" ] && left=1
        [ -n "$left" ] || break
        sleep 0.1
    done
    # What is left, by pid: the sessions' sshd processes (children of the
    # first listener, of nobody here once it was updated), the listener's.
    for p in $SESSIONS; do
        for c in $(descendants "$p") "$p"; do kill -TERM "$c" 2>/dev/null || true; done
    done
    if [ -n "$LISTENER" ]; then
        for p in $(descendants "$LISTENER"); do kill -TERM "$p" 2>/dev/null || true; done
        kill -TERM "$LISTENER" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do alive "$LISTENER" || break; sleep 0.1; done
        alive "$LISTENER" && kill -KILL "$LISTENER" 2>/dev/null
    fi
    [ -n "${MCR_KEEP_RUN:-}" ] || rm -rf "$RUN"
}
trap cleanup EXIT
fail() {
    log "sshd log (last 30 lines):"
    tail -n 30 "$RUN/sshd.log" >&2 || true
    local f
    for f in shell.out ticks.out; do
        [ -s "$RUN/$f" ] || continue
        log "$f (last 5 lines):"
        tail -n 5 "$RUN/$f" >&2
    done
    die "$*"
}

PORT="$(free_port)"
openssh_config "$RUN" "$PORT"
# install BINARY: BINARY at the listener's path, replaced by rename.
install_sshd() { cp "$1" "$SSHD.new" && mv -f "$SSHD.new" "$SSHD"; }
install_sshd "$OLD_SSHD"
"$SSHD" -D -e -f "$RUN/sshd_config" >"$RUN/sshd.log" 2>&1 &
LISTENER=$!
wait_port "$PORT" 15 "$LISTENER" || fail "sshd did not listen on 127.0.0.1:$PORT within 15 s"
openssh_login_ok || fail "no login before any update"
log "sshd $OLD_REV pid $LISTENER on 127.0.0.1:$PORT serves logins"

# The interactive shell: commands through a fifo, output to a file.
mkfifo "$RUN/shell.in"
: >"$RUN/shell.out"
timeout 600 "${SSH[@]}" -tt sh -i <"$RUN/shell.in" >>"$RUN/shell.out" 2>&1 &
CLIENTS+=($!)
exec 4>"$RUN/shell.in"
VALUE="mcr-$RANDOM$RANDOM"
printf 'FOO=%s\n' "$VALUE" >&4
# shell_answers TAG: the shell prints "TAG $FOO" within 10 s.
shell_answers() {
    printf 'echo %s $FOO\n' "$1" >&4
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q "$1 $VALUE" "$RUN/shell.out" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
shell_answers before || fail "the interactive shell does not answer"
: >"$RUN/ticks.out"
timeout 600 "${SSH[@]}" 'while :; do echo tick; sleep 0.2; done' >>"$RUN/ticks.out" 2>&1 &
CLIENTS+=($!)
# ticks_go_on [SECONDS]: more ticks within SECONDS (3).
ticks_go_on() {
    local n0 i
    n0="$(wc -l <"$RUN/ticks.out")"
    for ((i = 0; i < ${1:-3} * 10; i++)); do
        [ "$(wc -l <"$RUN/ticks.out")" -gt "$n0" ] && return 0
        sleep 0.1
    done
    return 1
}
ticks_go_on 20 || fail "the ticking session prints nothing within 20 s"
for ((i = 0; i < 50; i++)); do
    SESSIONS="$(pgrep -P "$LISTENER" | tr '\n' ' ' || true)"
    [ "$(wc -w <<<"$SESSIONS")" = 2 ] && break
    sleep 0.1
done
[ "$(wc -w <<<"$SESSIONS")" = 2 ] || fail "expected 2 session processes under the listener, found: $SESSIONS"
log "2 sessions open (processes $SESSIONS): an interactive shell with FOO=$VALUE, a ticking command"

# runs_installed PID: PID runs the binary now at $SSHD (same inode).
runs_installed() { [ "$(stat -L -c %i "/proc/$1/exe" 2>/dev/null)" = "$(stat -c %i "$SSHD")" ]; }

# A new login's connection process, seen while it runs: its binary.
login_runs_installed() {
    timeout 30 "${SSH[@]}" 'sleep 2; echo ok' >"$RUN/login.out" 2>&1 &
    local c="" i ok=1
    for ((i = 0; i < 50; i++)); do
        c="$(pgrep -P "$LISTENER" | grep -vxF -f <(tr ' ' '\n' <<<"$SESSIONS" | sed '/^$/d') | head -n1 || true)"
        [ -n "$c" ] && break
        sleep 0.1
    done
    [ -n "$c" ] && runs_installed "$c" && ok=0
    wait $! || ok=1
    [ "$(cat "$RUN/login.out")" = ok ] || ok=1
    return $ok
}

step=0
update_to() {
    local from="$1" to="$2" bin="$3" out new dt kept=0 sess_exe=new p
    step=$((step + 1))
    install_sshd "$bin"
    log "update $step: $from -> $to (listener $LISTENER)"
    set +e
    out="$(timeout 180 "$BIN/mcr-ctl" update "$LISTENER" "$SSHD" 2>&1)"
    local rc=$?
    set -e
    printf '%s\n' "$out" >"$RUN/update-$step.txt"
    if [ "$rc" != 0 ]; then
        log "mcr-ctl update failed (exit $rc):"
        printf '%s\n' "$out" >&2
        alive "$LISTENER" || fail "rolled back, and the old listener $LISTENER is gone"
        openssh_login_ok && log "rolled back: the old listener still serves logins" \
            || log "rolled back, and the old listener does not serve a login"
        shell_answers "rollback-$step" && kept=$((kept + 1))
        ticks_go_on && kept=$((kept + 1))
        printf 'update %s %s rolled_back sessions_kept=%s/2\n' "$from" "$to" "$kept"
        exit 1
    fi
    new="$(sed -n 's/^updated: pid [0-9]* -> \([0-9]*\).*/\1/p' <<<"$out")"
    dt="$(sed -n 's/^ *downtime: \([0-9.]*\) ms.*/\1/p' <<<"$out")"
    [ -n "$new" ] || fail "mcr-ctl update said: $out"
    alive "$LISTENER" && fail "the old listener $LISTENER still runs after the update"
    LISTENER="$new"
    runs_installed "$LISTENER" || fail "listener $LISTENER does not run the installed $to binary"
    shell_answers "after-$step" && kept=$((kept + 1)) || log "the interactive shell does not answer after update $step"
    ticks_go_on && kept=$((kept + 1)) || log "the ticking session stopped after update $step"
    for p in $SESSIONS; do runs_installed "$p" || sess_exe=old; done
    login_runs_installed || fail "after update $step, a new login does not work or does not run the $to binary"
    printf 'update %s %s downtime_ms=%s sessions_kept=%s/2 login=ok listener_exe=new session_exe=%s\n' \
        "$from" "$to" "$dt" "$kept" "$sess_exe"
    [ "$kept" = 2 ] || fail "sessions lost in update $step"
}

update_to "$OLD_REV" "$OLD_REV" "$OLD_SSHD"
update_to "$OLD_REV" "$NEW_REV" "$NEW_SSHD"

# The sessions' own processes (the [priv] monitor and its session child)
# updated alone are refused before anything stops, and the sessions go on.
refused=0 tried=0
for p in $SESSIONS; do
    for c in "$p" $(pgrep -P "$p" || true); do
        tried=$((tried + 1))
        set +e
        out="$(timeout 60 "$BIN/mcr-ctl" update "$c" "$SSHD" 2>&1)"
        rc=$?
        set -e
        if [ "$rc" != 0 ] && grep -q "refused" <<<"$out"; then
            refused=$((refused + 1))
            log "session process $c: $(grep -o 'refused: .*' <<<"$out" | head -n1)"
        else
            log "session process $c: not refused (exit $rc): $out"
        fi
    done
done
kept=0
shell_answers "after-refusals" && kept=$((kept + 1))
ticks_go_on && kept=$((kept + 1))
printf 'session_updates refused=%s/%s sessions_kept=%s/2\n' "$refused" "$tried" "$kept"
[ "$refused" = "$tried" ] && [ "$kept" = 2 ] || fail "a session process was not refused, or a session was lost"
log "done: both sessions answered after both updates; session processes were forked after start-up and stay on the binary they started with"

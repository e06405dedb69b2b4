#!/usr/bin/env bash
# Usage: scripts/servers/memcached-update.sh [MCR_BIN_DIR [OLD_BINARY NEW_BINARY[:NEW_BINARY2...]]]
#
# With OLD_BINARY and NEW_BINARY (debian-update.sh: two Debian revisions
# built with mcr-cc), those are the running and the new version and nothing
# is built here; the checks are the same.
#
# memcached 1.6.18 built with mcr-cc, updated live to itself (rebuilt into a
# second directory, so the new binary is a different file) while clients are
# connected and one of them keeps sending requests through the update:
#   1. store N items; keep connection A open; start a loader that does
#      set/get round trips on connection B for a bounded time; record
#      `mcr-ctl profile` for 1 s under that load (the update must use the
#      quiescent points it keeps beside the binary);
#   2. mcr-ctl update PID NEW_BINARY;
#   3. every item is readable, on connection A (opened before the update) and
#      on a new connection; the loader saw zero errors and zero closed
#      connections; the old PID is gone and the new one serves;
#   4. idle connections, one on each worker thread (the loader's included),
#      each with items it stored, silent from before the update until after
#      it (one holding half a command, one half a set's value): their first
#      request after the update is answered, not met with EOF (issue 16),
#      and their items read back.
# The commit case runs twice: first with no saved profile (any blocking
# call is a quiescent point), then with the profile step 1 records.
# Then the same with MCR_FAULT=transfer: the update is rolled back, the old
# PID still serves every item.
set -euo pipefail
MCR_LOG_TAG=memcached-update
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN="${1:-$REPO_ROOT/target/release}"
BIN="$(cd "$BIN" && pwd)"
for b in mcr-cc mcr-ctl; do [ -x "$BIN/$b" ] || die "$BIN/$b not found: cargo build --release first"; done
if [ $# -ge 3 ]; then
    # A rollback case takes the last binary of the chain.
    given_binaries "$2" "$3"
else
    V=1.6.18
    OLD="$MCR_WORK/build/mcr-update/memcached-$V-a"
    NEW="$MCR_WORK/build/mcr-update/memcached-$V-b"
    "$SERVERS_DIR/build.sh" memcached "$V" "$BIN/mcr-cc" "$OLD" >/dev/null
    "$SERVERS_DIR/build.sh" memcached "$V" "$BIN/mcr-cc" "$NEW" >/dev/null
    OLD_BIN="$OLD/memcached" NEW_BIN="$NEW/memcached"
fi
log "old: $OLD_BIN, new: $NEW_BIN"

run_case() {
    local fault="$1" profile="$2" port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    log "case: ${fault:-commit} ($profile, port $port)"
    # A profile recorded by an earlier case is kept beside the binary.
    if [ "$profile" = noprofile ]; then rm -f "$OLD_BIN.mcr-profile.toml"; fi
    MCR_FAULT="$fault" "$OLD_BIN" -u root -l 127.0.0.1 -p "$port" -U 0 -t 4 &
    local pid=$!
    local target="$NEW_BIN" rc=0
    [ -z "$fault" ] || target="${NEW_BIN##*:}"
    python3 "$SERVERS_DIR/memcached_update_client.py" "$port" "$pid" "$BIN/mcr-ctl" "$target" "${fault:-}" "$profile" || rc=$?
    kill "$pid" 2>/dev/null || true
    pkill -f -- "-u root -l 127.0.0.1 -p $port -U 0 -t 4" 2>/dev/null || true
    return $rc
}
run_case "" noprofile
run_case "" profile
run_case "transfer" profile
log "memcached live update: all checks passed"

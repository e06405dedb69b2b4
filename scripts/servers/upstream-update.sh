#!/usr/bin/env bash
# Usage: scripts/servers/upstream-update.sh NAME OLD NEW [BIN_DIR]
#   e.g. scripts/servers/upstream-update.sh memcached 1.6.18 1.6.38
#
# An upstream release applied live: NAME OLD and NAME NEW fetched from the
# pinned tarballs (fetch.sh), both built with mcr-cc by the server's own
# build system (build.sh, with scripts/servers/mcr-toml/NAME.toml), the NEW
# one with the pair's user code, updates/NAME/OLD-NEW/ (hooks, renames.toml,
# cflags: docs/hooks.md "Hooks in a real build"), given to mcr-cc as
# MCR_HOOKS. Then `mcr-ctl diff` must not refuse, and the server's update
# script runs the live update under load and checks every item on
# connections opened before and after, and a rollback (memcached-update.sh).
# Prints one line: NAME OLD -> NEW, outcome, downtimes, loader rounds and
# errors, lines of user code. Exits non-zero on any failure.
set -euo pipefail
MCR_LOG_TAG=upstream-update
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -ge 3 ] || { echo "usage: $0 NAME OLD NEW [BIN_DIR]" >&2; exit 2; }
NAME="$1" OLD="$2" NEW="$3"
BIN="$(cd "${4:-$REPO_ROOT/target/release}" && pwd)"
for b in mcr-cc mcr-ctl; do [ -x "$BIN/$b" ] || die "$BIN/$b not found: cargo build --release first"; done
case "$NAME" in
    memcached) UPDATE_SCRIPT="$SERVERS_DIR/memcached-update.sh" ;;
    *) die "no live-update driver for $NAME yet (known: memcached)" ;;
esac
HOOKS="$REPO_ROOT/updates/$NAME/$OLD-$NEW"

OUT="$MCR_WORK/build/upstream/$NAME-$OLD-$NEW"
# build.sh's last line: NAME VERSION CC SECONDS BINARY CPU_SECONDS
OLD_BIN="$("$SERVERS_DIR/build.sh" "$NAME" "$OLD" "$BIN/mcr-cc" "$OUT/old" | awk '{print $5}')"
if [ -d "$HOOKS" ]; then
    NEW_BIN="$(MCR_HOOKS="$HOOKS" "$SERVERS_DIR/build.sh" "$NAME" "$NEW" "$BIN/mcr-cc" "$OUT/new" | awk '{print $5}')"
else
    log "no user code for this pair ($HOOKS)"
    NEW_BIN="$("$SERVERS_DIR/build.sh" "$NAME" "$NEW" "$BIN/mcr-cc" "$OUT/new" | awk '{print $5}')"
fi

log "mcr-ctl diff $OLD_BIN $NEW_BIN"
if ! "$BIN/mcr-ctl" diff "$OLD_BIN" "$NEW_BIN" >"$OUT/diff.txt" 2>&1; then
    grep -A20 "REFUSED" "$OUT/diff.txt" >&2 || tail -n 20 "$OUT/diff.txt" >&2
    die "$NAME $OLD -> $NEW: mcr-ctl diff refuses the update"
fi

# Lines of user code: all, and without blank and comment-only lines.
LINES=0 CODE=0
if [ -d "$HOOKS" ]; then
    LINES=$(cat "$HOOKS"/* | wc -l)
    CODE=$(cat "$HOOKS"/* | grep -Ev '^\s*($|#|/\*|\*|//)' | wc -l)
fi

"$UPDATE_SCRIPT" "$BIN" "$OLD_BIN" "$NEW_BIN" | tee "$OUT/update.log"
awk -v n="$NAME" -v o="$OLD" -v w="$NEW" -v l="$LINES" -v c="$CODE" -F'\t' '
    $1 == "RESULT" { r = r sprintf("%s%s %s ms, %s rounds, %s errors", r ? "; " : "", $3, $4, $5, $6) }
    END { printf "%s %s -> %s: %s; user code %d lines (%d without comments and blank lines)\n", n, o, w, r, l, c }
' "$OUT/update.log"

#!/usr/bin/env bash
# Usage: scripts/servers/diff-versions.sh NAME OLD_VERSION NEW_VERSION [BIN_DIR]
#
# Builds both versions of a real server with mcr-cc (build.sh) and prints
# `mcr-ctl diff` between their embedded type maps: every changed type with
# the transform an update would apply, or why it needs user code. The full
# report goes to $MCR_WORK/diff/NAME-OLD-NEW.txt, the JSON beside it.
set -euo pipefail
MCR_LOG_TAG=diff
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NAME="$1"; OLD="$2"; NEW="$3"
BIN="$(cd "${4:-$REPO_ROOT/target/release}" && pwd)"
OUT="$MCR_WORK/diff"
mkdir -p "$OUT"
binary() { . "$1/.mcr-build-info"; printf "%s/%s\n" "$1" "$BINARY"; }
"$SERVERS_DIR/build.sh" "$NAME" "$OLD" "$BIN/mcr-cc" "$MCR_WORK/build/diff/$NAME-$OLD" >/dev/null
"$SERVERS_DIR/build.sh" "$NAME" "$NEW" "$BIN/mcr-cc" "$MCR_WORK/build/diff/$NAME-$NEW" >/dev/null
A="$(binary "$MCR_WORK/build/diff/$NAME-$OLD")"
B="$(binary "$MCR_WORK/build/diff/$NAME-$NEW")"
rc=0
"$BIN/mcr-ctl" diff "$A" "$B" | tee "$OUT/$NAME-$OLD-$NEW.txt" || rc=$?
"$BIN/mcr-ctl" diff --json "$A" "$B" > "$OUT/$NAME-$OLD-$NEW.json" || true
python3 - "$OUT/$NAME-$OLD-$NEW.json" "$NAME" "$OLD" "$NEW" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rows = d["types"]
count = lambda c: sum(1 for r in rows if r["change"] == c)
print(f"| {sys.argv[2]} {sys.argv[3]} -> {sys.argv[4]} | {len(rows)} | {count('transform')} | {count('needs user code')} | {count('added')} | {count('removed')} | {len(d['globals_removed'])} | {'refused' if d['refused'] else 'automatic'} |")
PY
exit 0

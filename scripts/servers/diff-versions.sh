#!/usr/bin/env bash
# Usage:
#   scripts/servers/diff-versions.sh NAME OLD_VERSION NEW_VERSION [BIN_DIR]
#   scripts/servers/diff-versions.sh --all [--rebuild] [BIN_DIR]
#
# NAME OLD NEW: builds both versions of a real server with mcr-cc (build.sh,
# the project's own build system and flags) and prints `mcr-ctl diff`
# between their embedded type maps: every changed type with the transform an
# update would apply, or why it needs user code; globals and allocation
# sites that changed. The report goes to $MCR_WORK/diff/NAME-OLD-NEW.txt,
# the JSON beside it.
#
# --all: the pairs and Debian patch series below (patch-series.sh), then
# scripts/servers/diff-report.py rewrites the generated part of
# docs/diff-real-versions.md and the full reports in docs/diff-real-versions/.
# What $MCR_WORK already holds is reused (a finished build.sh build by the
# same mcr-cc path, a finished series), so a second run only redoes the
# diffs and the document; --rebuild builds everything again (do that after
# changing mcr-cc). Run time on 2 shared cores: the document's "Run time".
set -euo pipefail
MCR_LOG_TAG=diff
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PAIRS=("memcached 1.6.18 1.6.38" "lighttpd 1.4.69 1.4.79" "nginx 1.22.1 1.26.3" "redis 7.0.15 8.0.2")
SERIES=("memcached 1.6.18 1.6.18-1+deb12u1" "nginx 1.22.1 1.22.1-9+deb12u9" "redis 7.0.15 7.0.15-1~deb12u10")

binary() { (. "$1/.mcr-build-info" && printf '%s/%s\n' "$1" "$BINARY"); }

# build_version NAME VERSION: prints the binary; builds unless --reuse finds
# a finished build (with the same compiler).
build_version() {
    local dir="$MCR_WORK/build/diff/$1-$2"
    if [ "$REUSE" = 1 ] && [ -f "$dir/.mcr-build-info" ] \
        && grep -qx "CC=$BIN/mcr-cc" "$dir/.mcr-build-info" && [ -x "$(binary "$dir")" ]; then
        log "reusing $dir"
    else
        "$SERVERS_DIR/build.sh" "$1" "$2" "$BIN/mcr-cc" "$dir" >/dev/null
    fi
    binary "$dir"
}

if [ "${1:-}" = --all ]; then
    shift
    REUSE=1
    if [ "${1:-}" = --rebuild ]; then REUSE=0; shift; fi
    BIN="$(cd "${1:-$REPO_ROOT/target/release}" && pwd)"
    MANIFEST="$MCR_WORK/diff/manifest"
    mkdir -p "$MCR_WORK/diff"
    : >"$MANIFEST"
    t_all="$(now)"
    for p in "${PAIRS[@]}"; do
        read -r name old new <<<"$p"
        a="$(build_version "$name" "$old")"
        b="$(build_version "$name" "$new")"
        echo "pair $name $old $new $a $b" >>"$MANIFEST"
    done
    for s in "${SERIES[@]}"; do
        read -r name version rev <<<"$s"
        dir="$MCR_WORK/diff/series/$name-$rev"
        n="$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$("$SERVERS_DIR/fetch.sh" "$name" "$rev")/patches/series" | wc -l)"
        if [ "$REUSE" = 1 ] && [ -f "$dir/.done" ]; then
            log "reusing $dir"
        else
            "$SERVERS_DIR/patch-series.sh" "$name" "$version" "$rev" "$BIN"
        fi
        log "$name $rev: $n patches"
        echo "series $name $version $rev $dir" >>"$MANIFEST"
    done
    # The builds' own records give their times; this is the run's own.
    echo "time this run of diff-versions.sh --all$([ "$REUSE" = 1 ] && echo ", reusing finished builds,") up to writing the document $(elapsed "$t_all" "$(now)")" >>"$MANIFEST"
    python3 "$SERVERS_DIR/diff-report.py" "$BIN/mcr-ctl" "$MANIFEST" \
        "$REPO_ROOT/docs/diff-real-versions.md" "$REPO_ROOT/docs/diff-real-versions"
    log "wrote docs/diff-real-versions.md and docs/diff-real-versions/"
    exit 0
fi

[ $# -ge 3 ] || { sed -n '2,5p' "$0" >&2; exit 2; }
NAME="$1"; OLD="$2"; NEW="$3"
BIN="$(cd "${4:-$REPO_ROOT/target/release}" && pwd)"
REUSE=0
OUT="$MCR_WORK/diff"
mkdir -p "$OUT"
A="$(build_version "$NAME" "$OLD")"
B="$(build_version "$NAME" "$NEW")"
"$BIN/mcr-ctl" diff "$A" "$B" | tee "$OUT/$NAME-$OLD-$NEW.txt" || true
"$BIN/mcr-ctl" diff --json "$A" "$B" >"$OUT/$NAME-$OLD-$NEW.json" || true

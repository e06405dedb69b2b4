#!/usr/bin/env bash
# Usage: scripts/servers/patch-series.sh NAME VERSION DEBIAN_REVISION [BIN_DIR]
#   e.g. scripts/servers/patch-series.sh nginx 1.22.1 1.22.1-9+deb12u9
#
# Debian's debian/patches/series of a package is a chain of small real
# updates. This builds NAME VERSION (pristine upstream) with mcr-cc, then
# applies the series one patch at a time (patch -p1, as quilt does), rebuilds
# in place after each one (make's own dependencies decide what recompiles:
# build.sh MCR_REBUILD=1) and takes the linked binary's type map at every
# level. Level k is "patches 1..k applied"; level 0 is upstream.
#
# Output, in $MCR_WORK/diff/series/NAME-REVISION/:
#   NN.typemap.toml   the type map of level NN (mcr-cc --print-typemap)
#   00.build-info     build.sh's record of the full upstream build
#   NN.json, NN.txt   mcr-ctl diff of level NN-1 -> NN
#   levels.tsv        level, patch, files it touches, rebuild seconds
#   NN.bin            with MCR_SERIES_BINARIES=1: level NN's server binary
#                     (series-update.sh updates a running server through them)
#   .done             written last: the run is complete
# Reruns start from scratch (the build directory is rebuilt from upstream).
set -euo pipefail
MCR_LOG_TAG=series
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -ge 3 ] || { echo "usage: $0 NAME VERSION DEBIAN_REVISION [BIN_DIR]" >&2; exit 2; }
NAME="$1" VERSION="$2" REV="$3"
BIN="$(cd "${4:-$REPO_ROOT/target/release}" && pwd)"
CC="$BIN/mcr-cc"
DEBIAN="$("$SERVERS_DIR/fetch.sh" "$NAME" "$REV")"
[ -f "$DEBIAN/patches/series" ] || die "$DEBIAN/patches/series not found"
OUT="$MCR_WORK/diff/series/$NAME-$REV"
DIR="$MCR_WORK/build/series/$NAME-$REV"
rm -rf "$OUT"
mkdir -p "$OUT"

binary() { (. "$DIR/.mcr-build-info" && printf '%s/%s\n' "$DIR" "$BINARY"); }

"$SERVERS_DIR/build.sh" "$NAME" "$VERSION" "$CC" "$DIR" >/dev/null
"$CC" --print-typemap "$(binary)" >"$OUT/00.typemap.toml"
keep_binary() { [ -z "${MCR_SERIES_BINARIES:-}" ] || cp "$(binary)" "$OUT/$1.bin"; }
keep_binary 00
cp "$DIR/.mcr-build-info" "$OUT/00.build-info"
printf 'level\tpatch\tfiles\trebuild_seconds\n' >"$OUT/levels.tsv"

# The series: one patch per line, '#' comments, optional quilt options
# after the name (only -pN is used by these packages).
mapfile -t LINES < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$DEBIAN/patches/series")
k=0
for line in "${LINES[@]}"; do
    read -r patch opts <<<"$line"
    k=$((k + 1))
    lvl="$(printf '%02d' "$k")"
    prev="$(printf '%02d' $((k - 1)))"
    strip=1
    [[ "${opts:-}" =~ -p([0-9]+) ]] && strip="${BASH_REMATCH[1]}"
    # Files the patch touches, relative to the tree (the +++ side).
    files="$(awk -v s="$strip" '/^\+\+\+ /{ f = $2; for (i = 0; i < s; i++) sub(/^[^\/]*\//, "", f); print f }' \
        "$DEBIAN/patches/$patch" | sort -u | tr '\n' ' ')"
    patch -d "$DIR" -p"$strip" -f -s --no-backup-if-mismatch <"$DEBIAN/patches/$patch" \
        || die "level $lvl: $patch does not apply"
    t0="$(now)"
    MCR_REBUILD=1 MCR_CHANGED="$files" "$SERVERS_DIR/build.sh" "$NAME" "$VERSION" "$CC" "$DIR" >/dev/null \
        || die "level $lvl: rebuild after $patch failed (log: $DIR/mcr-build.log)"
    secs="$(elapsed "$t0" "$(now)")"
    "$CC" --print-typemap "$(binary)" >"$OUT/$lvl.typemap.toml"
    keep_binary "$lvl"
    "$BIN/mcr-ctl" diff "$OUT/$prev.typemap.toml" "$OUT/$lvl.typemap.toml" >"$OUT/$lvl.txt" || true
    "$BIN/mcr-ctl" diff --json "$OUT/$prev.typemap.toml" "$OUT/$lvl.typemap.toml" >"$OUT/$lvl.json" || true
    printf '%s\t%s\t%s\t%s\n' "$lvl" "$patch" "${files% }" "$secs" >>"$OUT/levels.tsv"
    log "level $lvl $patch: rebuilt in $secs s; $(head -n1 "$OUT/$lvl.txt")"
done
date -u +%FT%TZ >"$OUT/.done"
log "$NAME $REV: $k levels in $OUT"

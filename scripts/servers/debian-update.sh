#!/usr/bin/env bash
# Usage: scripts/servers/debian-update.sh NAME [BIN_DIR [REVISION...]]
#   NAME: memcached (1.6.18-1 -> 1.6.18-1+deb12u1)
#         nginx     (1.22.1-9+deb12u9 -> 1.22.1-9+deb12u10)
#   REVISION...: a chain instead, every revision in turn applied live to
#   one running server, state checked after each (e.g. nginx's
#   1.22.1-9+deb12u3 1.22.1-9+deb12u4 1.22.1-9+deb12u6 1.22.1-9+deb12u8
#   1.22.1-9+deb12u9 1.22.1-9+deb12u10, as bookworm users received them).
#
# A Debian security update applied live: the old and the new revision of
# bookworm's source package, each built with mcr-cc from the pristine
# upstream tarball plus ALL of that revision's debian/patches/series (patch
# -p1 in series order, as quilt applies them; both debian tarballs are
# sha256-pinned in fetch.sh). The old revision is started as an operator
# would (memcached -u root -l 127.0.0.1 -p PORT -t 4; nginx as master + 2
# workers under its own nginx.conf) and updated live to the new one by the
# server's existing update script with the two binaries as arguments
# (memcached-update.sh, nginx-update.sh: a client load through the update,
# every piece of state checked on connections opened before and after, the
# new PID's /proc/PID/exe checked to be the new revision's binary, and a
# rollback with MCR_FAULT=transfer).
#
# What each revision is built from:
#   memcached 1.6.18-1          upstream 1.6.18 + memcached_1.6.18-1.debian.tar.xz's
#                               series (0001..0007; only 0007, logger.c, is C code)
#   memcached 1.6.18-1+deb12u1  the same + 0008 (CVE-2026-47783/47784, sasl_defs.c),
#                               0009 (CVE-2023-46852, proto_proxy.c),
#                               CVE-2023-46853 (proxy.h, proxy_request.c)
#   nginx 1.22.1-9+deb12u9      upstream 1.22.1 + its series (25 patches)
#   nginx 1.22.1-9+deb12u10     the same + CVE-2026-56434, CVE-2026-60005, CVE-2026-42533
# The old revision is one build of the patched tree (build.sh MCR_SRC); the
# new revision is built incrementally (make's own dependencies) from a copy
# of the old one's build when the old series is a prefix of the new one
# with identical patch files (true of both packages; otherwise it is one
# build of its own patched tree).
#
# Security fixes, observable or not:
#   memcached +deb12u1: none is observable over the protocol here. The SASL
#     fix (a timing side channel in the password file check) is compiled only
#     with --enable-sasl, the two proxy fixes only with --enable-proxy;
#     build.sh configures memcached without either (Debian itself builds
#     --enable-sasl --enable-tls, without the proxy). The binary of +deb12u1
#     built here is therefore the same code as 1.6.18-1's, relinked: this
#     update proves the mechanics on a real revision pair, not a fix.
#   nginx +deb12u10: not probed. CVE-2026-56434 (SSI subrequest posted twice
#     during unbuffered proxying: use after free) and CVE-2026-60005 (stale
#     regex captures read uninitialised memory, needs the slice module, not
#     built by default) both need an upstream and a crash or an uninitialised
#     read to be seen; CVE-2026-42533 (script buffer overrun protection)
#     needs a length/copy mismatch in a script, for which no safe, bounded
#     request was found. The code changes are compiled in (rewrite, proxy,
#     log, script modules), so the update does replace running code; that the
#     new master and workers run the +deb12u10 binary is checked.
#
# Builds are kept in $MCR_WORK/build/debian/NAME-REVISION and reused while
# they are newer than mcr-cc and libmcr_rt.a.
set -euo pipefail
MCR_LOG_TAG=debian-update
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -ge 1 ] || { echo "usage: $0 memcached|nginx [BIN_DIR [REVISION...]]" >&2; exit 2; }
NAME="$1"
BIN="$(cd "${2:-$REPO_ROOT/target/release}" && pwd)"
shift $(( $# >= 2 ? 2 : 1 ))
for b in mcr-cc mcr-ctl libmcr_rt.a; do [ -e "$BIN/$b" ] || die "$BIN/$b not found: cargo build --release first"; done
case "$NAME" in
    memcached) VERSION=1.6.18 OLD_REV=1.6.18-1 NEW_REV=1.6.18-1+deb12u1 BINARY=memcached ;;
    nginx)     VERSION=1.22.1 OLD_REV=1.22.1-9+deb12u9 NEW_REV=1.22.1-9+deb12u10 BINARY=objs/nginx ;;
    *) die "unknown server '$NAME' (known: memcached nginx)" ;;
esac
REVS=("$OLD_REV" "$NEW_REV")
[ $# -ge 2 ] && REVS=("$@")
[ $# -eq 1 ] && die "a chain needs at least two revisions"

series() { sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$1/patches/series"; }

# apply_series DEBIAN_DIR DIR FROM: patches FROM+1.. of the series applied
# to DIR (patch -pN as quilt does); prints the files they touch.
apply_series() {
    local deb="$1" dir="$2" from="$3" k=0 line patch opts strip files=""
    while read -r line; do
        k=$((k + 1))
        [ "$k" -gt "$from" ] || continue
        read -r patch opts <<<"$line"
        strip=1
        [[ "${opts:-}" =~ -p([0-9]+) ]] && strip="${BASH_REMATCH[1]}"
        patch -d "$dir" -p"$strip" -f -s --no-backup-if-mismatch <"$deb/patches/$patch" \
            || die "$(basename "$deb"): $patch does not apply"
        files+="$(awk -v s="$strip" '/^\+\+\+ /{ f = $2; for (i = 0; i < s; i++) sub(/^[^\/]*\//, "", f); print f }' \
            "$deb/patches/$patch" | sort -u | tr '\n' ' ')"
        log "  $(basename "$deb") $k: $patch"
    done < <(series "$deb")
    printf '%s\n' "$files"
}

fresh() { [ -x "$1/$BINARY" ] && [ "$1/$BINARY" -nt "$BIN/mcr-cc" ] && [ "$1/$BINARY" -nt "$BIN/libmcr_rt.a" ] \
    && [ "$(cat "$1/.mcr-debian-revision" 2>/dev/null)" = "$2" ]; }

t0="$(now)"
dir_of() { printf '%s\n' "$MCR_WORK/build/debian/$NAME-$1"; }

# build_revision REV DEBIAN_DIR OUTDIR: upstream + REV's whole series, one
# build (the tree is patched first: nginx's series touches auto/, which
# would make a rebuild after patching a second full build).
build_revision() {
    local rev="$1" deb="$2" out="$3" tree="$MCR_WORK/src/.debian-trees/$NAME-$1"
    log "building $NAME $rev: upstream $VERSION with its whole series"
    rm -rf "$tree"
    mkdir -p "$tree"
    cp -a "$("$SERVERS_DIR/fetch.sh" "$NAME" "$VERSION")/." "$tree/"
    apply_series "$deb" "$tree" 0 >/dev/null
    MCR_SRC="$tree" "$SERVERS_DIR/build.sh" "$NAME" "$VERSION" "$BIN/mcr-cc" "$out" >/dev/null
    rm -rf "$tree"
}

# The first revision: one build of its patched tree.
OLD_REV="${REVS[0]}"
OLD_DEB="$("$SERVERS_DIR/fetch.sh" "$NAME" "$OLD_REV")"
OLD_DIR="$(dir_of "$OLD_REV")"
if fresh "$OLD_DIR" "$OLD_REV"; then
    log "$OLD_DIR/$BINARY is up to date"
else
    build_revision "$OLD_REV" "$OLD_DEB" "$OLD_DIR"
    printf '%s\n' "$OLD_REV" >"$OLD_DIR/.mcr-debian-revision"
fi


# Each next revision: the previous one's build plus its new patches when
# the previous series is a prefix of its own, else a build of its own.
CHAIN=""
for NEW_REV in "${REVS[@]:1}"; do
    NEW_DEB="$("$SERVERS_DIR/fetch.sh" "$NAME" "$NEW_REV")"
    NEW_DIR="$(dir_of "$NEW_REV")"
    if fresh "$NEW_DIR" "$NEW_REV" && [ "$NEW_DIR/$BINARY" -nt "$OLD_DIR/$BINARY" ]; then
        log "$NEW_DIR/$BINARY is up to date"
    else
        # The old series a prefix of the new one, same patch files: the new
        # revision is the old build plus the new patches.
        mapfile -t old_s < <(series "$OLD_DEB")
        mapfile -t new_s < <(series "$NEW_DEB")
        prefix=1
        [ ${#new_s[@]} -gt ${#old_s[@]} ] || prefix=0
        for i in "${!old_s[@]}"; do
            [ $prefix = 1 ] || break
            [ "${old_s[$i]}" = "${new_s[$i]:-}" ] && cmp -s "$OLD_DEB/patches/${old_s[$i]%% *}" "$NEW_DEB/patches/${old_s[$i]%% *}" || prefix=0
        done
        rm -rf "$NEW_DIR"
        if [ $prefix = 1 ]; then
            log "building $NAME $NEW_REV: $OLD_REV's build + patches $(( ${#old_s[@]} + 1 ))..${#new_s[@]} of its series"
            cp -a "$OLD_DIR" "$NEW_DIR"
            rm -f "$NEW_DIR/.mcr-debian-revision"
            changed="$(apply_series "$NEW_DEB" "$NEW_DIR" ${#old_s[@]})"
            MCR_REBUILD=1 MCR_CHANGED="$changed" "$SERVERS_DIR/build.sh" "$NAME" "$VERSION" "$BIN/mcr-cc" "$NEW_DIR" >/dev/null
        else
            build_revision "$NEW_REV" "$NEW_DEB" "$NEW_DIR"
        fi
        printf '%s\n' "$NEW_REV" >"$NEW_DIR/.mcr-debian-revision"
    fi
    CHAIN+="${CHAIN:+:}$NEW_DIR/$BINARY"
    OLD_REV="$NEW_REV" OLD_DEB="$NEW_DEB" OLD_DIR="$NEW_DIR"
done
FIRST_DIR="$(dir_of "${REVS[0]}")"
log "builds ready in $(elapsed "$t0" "$(now)") s: $FIRST_DIR/$BINARY -> ${CHAIN//:/ -> }"
prev="$FIRST_DIR/$BINARY"
for b in ${CHAIN//:/ }; do
    cmp -s "$prev" "$b" && log "note: $b is byte-identical to the revision before it"
    prev="$b"
done

"$SERVERS_DIR/$NAME-update.sh" "$BIN" "$FIRST_DIR/$BINARY" "$CHAIN"
log "$NAME ${REVS[*]} applied live in turn (and rolled back): all checks passed"

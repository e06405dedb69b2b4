#!/usr/bin/env bash
# Usage: scripts/servers/build.sh NAME VERSION CC OUTDIR
#
# Fetches NAME VERSION (scripts/servers/fetch.sh), copies the pristine source
# tree into OUTDIR (out-of-tree: the cached source is never built in) and
# builds it with compiler CC using the project's own build system:
#
#   memcached  ./configure CC=CC && make -jN
#   lighttpd   [./autogen.sh when there is no configure, 1.4.79]
#              ./configure CC=CC --with-pcre2 --with-zlib --without-<others> && make -jN
#   nginx      ./configure --with-cc=CC (default modules: pcre2, zlib) && make -jN
#   redis      make -jN MALLOC=libc BUILD_TLS=no USE_SYSTEMD=no CC=CC
#              (also builds deps/: hiredis, lua, hdr_histogram, fpconv with CC)
#   vsftpd     make -jN CC=CC LIBS="-lcap -lpam -lcrypt" LINK=""
#   openssh    autoreconf -fi && ./configure CC=CC --without-pam
#              --sysconfdir=/etc/ssh --with-privsep-path=/run/sshd
#              (Debian's paths; privsep user sshd) && make -jN sshd
#
# With mcr-cc, MCR_CONFIG points at scripts/servers/mcr-toml/NAME.toml (the
# server's allocation wrappers, mcr.toml [allocators]) when that file exists,
# unless MCR_CONFIG is set already or MCR_NO_ALLOCATORS=1.
#
# MCR_SRC=DIR builds DIR (a prepared tree, e.g. upstream plus a Debian
# patch series) instead of the fetched pristine one.
#
# N is $MCR_JOBS (default 2, never more). Optional $MCR_CFLAGS is added to
# the flags for every server (e.g. "-O0"); by default every project keeps its
# own default flags, so two compilers are compared at the same flags.
#
# OUTDIR is wiped and re-created at each run, but only when it is empty or
# was made by this script (it carries .mcr-build-dir); anything else is
# refused. The full build output goes to OUTDIR/mcr-build.log; on failure its
# tail is printed. On success OUTDIR/.mcr-build-info records name, version,
# compiler, wall and CPU seconds and the server binary, and stdout gets one
# line:
#   NAME VERSION CC BUILD_SECONDS BINARY BUILD_CPU_SECONDS
# (wall = configure + make; CPU = user+sys of all their processes).
#
# MCR_REBUILD=1: OUTDIR already holds a build made by this script whose
# sources were since changed in place (patch-series.sh applies one Debian
# patch at a time); nothing is wiped or copied, the binary is removed (so it
# is always relinked) and the project's own incremental build runs again:
# make's dependencies decide what recompiles. MCR_CHANGED lists the changed
# files (relative to OUTDIR): nginx reruns its configure (same flags) when
# one is under auto/; redis rebuilds each deps/<lib> one is under, since its
# src/Makefile never revisits deps/ on its own.
set -euo pipefail
MCR_LOG_TAG=build
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 4 ] || { echo "usage: $0 NAME VERSION CC OUTDIR" >&2; exit 2; }
NAME="$1" VERSION="$2" CC_ARG="$3" OUTDIR="$4"
CC="$(resolve_cc "$CC_ARG")"
J="$MCR_JOBS"
XCFLAGS="${MCR_CFLAGS:-}"

case "$NAME" in
    memcached) BINARY=memcached ;;
    lighttpd)  BINARY=src/lighttpd ;;
    nginx)     BINARY=objs/nginx ;;
    redis)     BINARY=src/redis-server ;;
    vsftpd)    BINARY=vsftpd ;;
    openssh)   BINARY=sshd ;;
    *) die "don't know how to build '$NAME' (known: memcached lighttpd nginx redis vsftpd openssh)" ;;
esac

# MCR_SRC: build this source tree instead of the fetched upstream one
# (debian-update.sh: upstream with a Debian revision's patch series applied).
if [ -n "${MCR_SRC:-}" ]; then
    SRC="$(cd "$MCR_SRC" && pwd)"
else
    SRC="$("$SERVERS_DIR/fetch.sh" "$NAME" "$VERSION")"
fi

# With mcr-cc, name the server's allocation wrappers (mcr.toml [allocators])
# from scripts/servers/mcr-toml/NAME.toml, unless MCR_CONFIG is already set
# or MCR_NO_ALLOCATORS=1. Other compilers ignore it.
if is_mcr_cc "$CC" && [ -z "${MCR_CONFIG:-}" ] && [ "${MCR_NO_ALLOCATORS:-0}" != 1 ] \
    && [ -f "$SERVERS_DIR/mcr-toml/$NAME.toml" ]; then
    export MCR_CONFIG="$SERVERS_DIR/mcr-toml/$NAME.toml"
fi

REBUILD="${MCR_REBUILD:-0}"
CHANGED="${MCR_CHANGED:-}"
changed_under() { grep -qE "(^| )$1" <<<"$CHANGED"; }

if [ "$REBUILD" = 1 ]; then
    [ -f "$OUTDIR/.mcr-build-dir" ] && [ -f "$OUTDIR/.mcr-build-info" ] \
        || die "MCR_REBUILD=1 but $OUTDIR holds no finished build of build.sh"
    OUTDIR="$(cd "$OUTDIR" && pwd)"
    rm -f "$OUTDIR/$BINARY"
    LOG="$OUTDIR/mcr-build.log"
    echo "=== rebuild after changes to: $CHANGED" >>"$LOG"
# Prepare OUTDIR safely.
elif [ -e "$OUTDIR" ]; then
    [ -d "$OUTDIR" ] || die "$OUTDIR exists and is not a directory"
    if [ -n "$(ls -A "$OUTDIR")" ] && [ ! -f "$OUTDIR/.mcr-build-dir" ]; then
        die "$OUTDIR is not empty and was not made by build.sh; refusing to wipe it"
    fi
    rm -rf "$OUTDIR"
fi
if [ "$REBUILD" != 1 ]; then
    mkdir -p "$OUTDIR"
    OUTDIR="$(cd "$OUTDIR" && pwd)"
    : >"$OUTDIR/.mcr-build-dir"
    cp -a "$SRC/." "$OUTDIR/"
    rm -f "$OUTDIR/.mcr-fetched"
    LOG="$OUTDIR/mcr-build.log"
    : >"$LOG"
fi

# run CMD...: run in OUTDIR, output to the log (and to stderr if MCR_VERBOSE=1).
run() {
    echo "+ $*" >>"$LOG"
    if [ "${MCR_VERBOSE:-0}" = 1 ]; then
        (cd "$OUTDIR" && "$@") 2>&1 | tee -a "$LOG" >&2
        return "${PIPESTATUS[0]}"
    else
        (cd "$OUTDIR" && "$@") >>"$LOG" 2>&1
    fi
}

build() {
    case "$NAME" in
    memcached)
        if [ "$REBUILD" = 1 ]; then
            : # automake's own rules rerun config.status when its inputs change
        elif [ -n "$XCFLAGS" ]; then
            run ./configure CC="$CC" CFLAGS="-g -O2 $XCFLAGS"
        else
            run ./configure CC="$CC"
        fi
        run make -j"$J"
        ;;
    lighttpd)
        local cf=()
        [ -n "$XCFLAGS" ] && cf=(CFLAGS="-g -O2 $XCFLAGS")
        # 1.4.79's tarball ships configure.ac but no configure (upstream
        # moved to meson); autogen.sh regenerates it, so both versions are
        # built by the same configure flags.
        [ -x "$OUTDIR/configure" ] || run ./autogen.sh
        [ "$REBUILD" = 1 ] || run ./configure CC="$CC" "${cf[@]}" \
            --with-pcre2 --with-zlib \
            --without-zstd --without-bzip2 --without-brotli --without-libdeflate \
            --without-openssl --without-lua --without-mysql --without-pgsql \
            --without-ldap --without-pam --without-krb5 --without-maxminddb \
            --without-libev --without-fam --without-xxhash
        run make -j"$J"
        ;;
    nginx)
        local cf=()
        [ -n "$XCFLAGS" ] && cf=(--with-cc-opt="$XCFLAGS")
        if [ "$REBUILD" != 1 ] || changed_under 'auto/|configure'; then
            run ./configure --with-cc="$CC" "${cf[@]}"
        fi
        run make -j"$J"
        ;;
    redis)
        local cf=()
        [ -n "$XCFLAGS" ] && cf=(CFLAGS="$XCFLAGS")
        if [ "$REBUILD" = 1 ]; then
            local d
            for d in hiredis linenoise lua hdr_histogram fpconv; do
                if changed_under "deps/$d/"; then
                    run make -C deps "$d" MALLOC=libc BUILD_TLS=no USE_SYSTEMD=no CC="$CC" "${cf[@]}"
                fi
            done
        fi
        run make -j"$J" MALLOC=libc BUILD_TLS=no USE_SYSTEMD=no CC="$CC" "${cf[@]}"
        ;;
    vsftpd)
        # vsftpd's Makefile hard-codes CFLAGS; append ours through it.
        local base
        base="$(sed -n '/^CFLAGS/,/[^\\]$/p' "$OUTDIR/Makefile" | sed 's/^CFLAGS[[:space:]]*=//; s/\\$//' | tr -s ' \t\n' ' ')"
        if [ -n "$XCFLAGS" ]; then
            run make -j"$J" CC="$CC" LIBS="-lcap -lpam -lcrypt" LINK="" CFLAGS="$base $XCFLAGS"
        else
            run make -j"$J" CC="$CC" LIBS="-lcap -lpam -lcrypt" LINK=""
        fi
        ;;
    openssh)
        local cf=()
        [ -n "$XCFLAGS" ] && cf=(CFLAGS="-g -O2 $XCFLAGS")
        # Debian's patches change configure.ac: regenerate, as debian/rules does.
        if [ "$REBUILD" != 1 ]; then
            run autoreconf -fi
            run ./configure CC="$CC" "${cf[@]}" --without-pam \
                --sysconfdir=/etc/ssh --with-privsep-path=/run/sshd
        fi
        run make -j"$J" sshd
        ;;
    esac
}

log "building $NAME $VERSION with $CC in $OUTDIR (-j$J${XCFLAGS:+, extra CFLAGS: $XCFLAGS}${MCR_CONFIG:+, MCR_CONFIG=$MCR_CONFIG})"
children_cpu c0
t0="$(now)"
if ! build; then
    t1="$(now)"
    log "FAILED after $(elapsed "$t0" "$t1") s: $NAME $VERSION with $CC; last lines of $LOG:"
    tail -n 40 "$LOG" >&2
    exit 1
fi
t1="$(now)"
SECS="$(elapsed "$t0" "$t1")"
children_cpu c1
CPU="$(elapsed "$c0" "$c1")"
[ -x "$OUTDIR/$BINARY" ] || { tail -n 20 "$LOG" >&2; die "build finished but $OUTDIR/$BINARY is missing"; }

cat >"$OUTDIR/.mcr-build-info" <<INFO
NAME=$NAME
VERSION=$VERSION
CC=$CC
BUILD_SECONDS=$SECS
BUILD_CPU_SECONDS=$CPU
BINARY=$BINARY
MCR_CONFIG=${MCR_CONFIG:-}
INFO
log "$NAME $VERSION built with $CC in $SECS s wall, $CPU s CPU (user+sys) -> $OUTDIR/$BINARY"
printf '%s %s %s %s %s %s\n' "$NAME" "$VERSION" "$CC" "$SECS" "$OUTDIR/$BINARY" "$CPU"

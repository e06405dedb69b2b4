#!/usr/bin/env bash
# Usage: scripts/servers/fetch.sh NAME VERSION
#
# Downloads NAME's pristine upstream tarball (Debian's .orig) from the Debian
# archive configured for apt on this machine (URIs: line of
# /etc/apt/sources.list.d/debian.sources, pool/main/<letter>/<pkg>/<file>),
# checks the sha256 pinned below, unpacks it into $MCR_WORK/src/NAME-VERSION
# and prints that path on stdout. Idempotent: the tarball is cached under
# $MCR_WORK/downloads and an already unpacked, verified tree is reused.
#
# Nothing fetched here is ever committed.
set -euo pipefail
MCR_LOG_TAG=fetch
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# name version | file in the pool | sha256 (from shared/REAL-SERVERS.md) | pool
# A Debian revision (1.22.1-9+deb12u9) names the packaging part,
# <pkg>_<rev>.debian.tar.xz: unpacked, it is the debian/ directory itself
# (debian/patches/series, used by patch-series.sh). "security" in the last
# column: the file is in the security archive's pool/updates/main (sha256
# from its Sources index; bookworm's newest revision lives there).
PINS="
memcached 1.6.18 memcached_1.6.18.orig.tar.xz 35872bd25f8d29d7cc2072d23e74344530891bfd0aa4f4f64184a8ae7291164b
memcached 1.6.38 memcached_1.6.38.orig.tar.xz 074076ab3e889e16e763c6a3e5cadacc6696979dbb8c473bbf871d498b19b1a0
lighttpd 1.4.69 lighttpd_1.4.69.orig.tar.xz 16ac8db95e719629ba61949b99f8a26feba946a81d185215b28379bb4116b0b4
lighttpd 1.4.79 lighttpd_1.4.79.orig.tar.xz 3b29a625b3ad88702d1fea4f5f42bb7d87488f2e4efc977d7f185329ca6084bd
nginx 1.22.1 nginx_1.22.1.orig.tar.gz 9ebb333a9e82b952acd3e2b4aeb1d4ff6406f72491bab6cd9fe69f0dea737f31
nginx 1.26.3 nginx_1.26.3.orig.tar.gz 69ee2b237744036e61d24b836668aad3040dda461fe6f570f1787eab570c75aa
redis 7.0.15 redis_7.0.15.orig.tar.gz 4b1dc4ee6d622a09fff9c6777191209750fb5e5a725ef78ea012d6eef4c22982
redis 8.0.2 redis_8.0.2.orig.tar.gz caf3c0069f06fc84c5153bd2a348b204c578de80490c73857bee01d9b5d7401f
vsftpd 3.0.5 vsftpd_3.0.5.orig.tar.gz 26b602ae454b0ba6d99ef44a09b6b9e0dfa7f67228106736df1f278c70bc91d3
openssh 9.2p1 openssh_9.2p1.orig.tar.gz 3f66dbf1655fb45f50e1c56da62ab01218c228807b21338d634ebcdf9d71cf46
openssh 10.0p1 openssh_10.0p1.orig.tar.gz 021a2e709a0edf4250b1256bd5a9e500411a90dddabea830ed59cef90eb9d85c
mosquitto 2.0.11 mosquitto_2.0.11.orig.tar.gz 7b36a7198bce85cf31b132f5c6ee36dcf5dadf86fb768501eb1e11ce95d4f78a
mosquitto 2.0.21 mosquitto_2.0.21.orig.tar.gz 551daff96cd0675faf888f8881536177934424ecc45924fecf94cffe207f6e81
dnsmasq 2.90 dnsmasq_2.90.orig.tar.xz 8e50309bd837bfec9649a812e066c09b6988b73d749b7d293c06c57d46a109e4
dnsmasq 2.91 dnsmasq_2.91.orig.tar.gz 2d26a048df452b3cfa7ba05efbbcdb19b12fe7a0388761eb5d00938624bd76c8
pgbouncer 1.18.0 pgbouncer_1.18.0.orig.tar.gz 9349c9e59f6f88156354f4f6af27cdb014a235b00ae184cbaa37688bd0df544c
pgbouncer 1.24.1 pgbouncer_1.24.1.orig.tar.gz da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0
nginx 1.22.1-9+deb12u3 nginx_1.22.1-9+deb12u3.debian.tar.xz 7752240374b88f1da1f8e44f35653576ac8c2d14a03949e9cbf26b622b7ea4dc
nginx 1.22.1-9+deb12u4 nginx_1.22.1-9+deb12u4.debian.tar.xz afb5d7b06cceece7b00dc281e776f296c36cd4bad617e89087a07d58bce1799c security
nginx 1.22.1-9+deb12u6 nginx_1.22.1-9+deb12u6.debian.tar.xz 0c7368fd7218777d1e7c9feb6656a3129e3dc90d8c08462e12788f8fe3262aa5
nginx 1.22.1-9+deb12u8 nginx_1.22.1-9+deb12u8.debian.tar.xz 94eda79dfca04280e1b0f676ddbb1090c59c619d9d9c9667f32d997097ff752e security
nginx 1.22.1-9+deb12u9 nginx_1.22.1-9+deb12u9.debian.tar.xz 3aebca44037e31b4148cec5a10dc673fdac176411aaa65a0094135895d154223
redis 7.0.15-1~deb12u10 redis_7.0.15-1~deb12u10.debian.tar.xz 77d8423c427657bb2f5b635f51184e8064a51c93fcbd7519146da587a8361bbc security
memcached 1.6.18-1+deb12u1 memcached_1.6.18-1+deb12u1.debian.tar.xz 7a4aa3c89fa1e3476a7503696f38a8103b6b4d6c66b5bb9958ea4fa0596f5c04 security
memcached 1.6.18-1 memcached_1.6.18-1.debian.tar.xz 974629ee6bfc81cdb7ca89ec922290399979aa145dcef8034b2fc6403532f3df
nginx 1.22.1-9+deb12u10 nginx_1.22.1-9+deb12u10.debian.tar.xz a5a60f970ef19c926da4f71a0398d00f3fccf4f35169f0994c7d6573d148d63f security
openssh 9.2p1-2+deb12u6 openssh_9.2p1-2+deb12u6.debian.tar.xz 8877ff03e7ca5cb92c51876caab8817cb89576c5f1df9c3f32044f3ecddf770a
openssh 9.2p1-2+deb12u7 openssh_9.2p1-2+deb12u7.debian.tar.xz 38fe612408e19713b7c971d9987d788eecf27bbb13a81a6edca4137fd38a9251
openssh 9.2p1-2+deb12u10 openssh_9.2p1-2+deb12u10.debian.tar.xz 65cbc8353a4197d0e543dd5330ca9798663256ea54b91a9c7c49116e7ea342ea
"

usage() { echo "usage: $0 NAME VERSION   (pinned: $(awk 'NF{printf "%s%s-%s", sep, $1, $2; sep=", "}' <<<"$PINS"))" >&2; exit 2; }
[ $# -eq 2 ] || usage
NAME="$1" VERSION="$2"

pin="$(awk -v n="$NAME" -v v="$VERSION" '$1 == n && $2 == v {print $3, $4, ($5 == "" ? "main" : $5)}' <<<"$PINS")"
[ -n "$pin" ] || { echo "[fetch] ERROR: no pinned tarball for $NAME $VERSION" >&2; usage; }
read -r FILE SHA POOL <<<"$pin"

# Archive base URI: the URIs: line of the stanza that carries the plain
# 'debian' archive (not debian-security), as apt on this machine uses it;
# with "security", the debian-security one.
archive_uri() {
    local src=/etc/apt/sources.list.d/debian.sources uri want="${1:-main}"
    [ -r "$src" ] || die "$src not found: cannot tell which Debian archive this machine uses"
    uri="$(awk -v want="$want" '
        function ok(u) { return u != "" && ((want == "security") == (u ~ /security/)) }
        /^[[:space:]]*$/ { if (ok(u)) { print u; exit } u = ""; next }
        /^URIs:/ { u = $2 }
        END { if (ok(u)) print u }
    ' "$src" | head -n1)"
    [ -n "$uri" ] || die "no $want URIs: line in $src"
    printf '%s\n' "${uri%/}"
}

DL="$MCR_WORK/downloads"
SRC_ROOT="$MCR_WORK/src"
DEST="$SRC_ROOT/$NAME-$VERSION"
STAMP="$DEST/.mcr-fetched"
mkdir -p "$DL" "$SRC_ROOT"

# Serialise concurrent fetches of the same tarball.
exec 9>"$DL/.$FILE.lock"
flock 9

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SHA" ]; then
    log "$NAME $VERSION already unpacked (sha256 $SHA)"
    printf '%s\n' "$DEST"
    exit 0
fi

check_sha() { [ "$(sha256sum "$1" | awk '{print $1}')" = "$SHA" ]; }

TARBALL="$DL/$FILE"
if [ -f "$TARBALL" ] && ! check_sha "$TARBALL"; then
    log "cached $FILE has a wrong sha256; downloading it again"
    rm -f "$TARBALL"
fi
if [ ! -f "$TARBALL" ]; then
    command -v curl >/dev/null || die "curl is missing (run scripts/servers/deps.sh)"
    pkgdir="$NAME"
    case "$NAME" in lib*) letter="${NAME:0:4}";; *) letter="${NAME:0:1}";; esac
    if [ "$POOL" = security ]; then
        url="$(archive_uri security)/pool/updates/main/$letter/$pkgdir/$FILE"
    else
        url="$(archive_uri)/pool/main/$letter/$pkgdir/$FILE"
    fi
    log "downloading $url"
    curl -fsSL --retry 3 --retry-delay 2 --connect-timeout 20 --max-time 600 \
        -o "$TARBALL.part" "$url" || { rm -f "$TARBALL.part"; die "download failed: $url"; }
    got="$(sha256sum "$TARBALL.part" | awk '{print $1}')"
    if [ "$got" != "$SHA" ]; then
        rm -f "$TARBALL.part"
        die "sha256 mismatch for $FILE: expected $SHA, got $got"
    fi
    mv "$TARBALL.part" "$TARBALL"
fi
check_sha "$TARBALL" || die "sha256 mismatch for $TARBALL"
log "sha256 ok: $FILE"

# Unpack into a temporary directory next to the destination, then move the
# single top-level directory into place.
tmp="$(mktemp -d "$SRC_ROOT/.unpack-$NAME-$VERSION.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
tar -xf "$TARBALL" -C "$tmp"
mapfile -t tops < <(find "$tmp" -mindepth 1 -maxdepth 1)
if [ "${#tops[@]}" -eq 1 ] && [ -d "${tops[0]}" ]; then
    top="${tops[0]}"
else
    top="$tmp"   # tarball without a single top directory
fi
rm -rf "$DEST"
if [ "$top" = "$tmp" ]; then
    mv "$tmp" "$DEST"
    trap - EXIT
else
    mv "$top" "$DEST"
fi
printf '%s\n' "$SHA" >"$STAMP"
log "unpacked into $DEST"
printf '%s\n' "$DEST"

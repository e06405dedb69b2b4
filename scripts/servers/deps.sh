#!/usr/bin/env bash
# Usage: scripts/servers/deps.sh
#
# Installs (as root, with apt-get) what fetching, building, smoke-testing and
# benchmarking the real servers needs. Runs 'apt-get update' and
# 'apt-get install' only when some package is missing, so a second run is a
# no-op.
#
#   fetch:      curl ca-certificates xz-utils tar
#   build:      make autoconf automake libtool pkg-config (autotools only for
#               regenerating configure; the pinned tarballs ship one)
#   memcached:  libevent-dev; its 'make test' runs perl's prove on t/*.t
#               (perl, Test::More etc. are in perl's core)
#   lighttpd:   libpcre2-dev zlib1g-dev
#   nginx:      libpcre2-dev zlib1g-dev
#   redis:      nothing beyond libc (MALLOC=libc BUILD_TLS=no USE_SYSTEMD=no;
#               it builds its own redis-cli/redis-benchmark, so no redis-tools)
#   vsftpd:     libcap-dev libpam0g-dev libcrypt-dev (and libssl-dev, used
#               only if its builddefs.h enables SSL, which is off by default)
#   smoke/stat: python3 (tomllib, Python >= 3.11)
#   benches:    wrk (HTTP load), libmemcached-tools (memcaslap)
set -euo pipefail
MCR_LOG_TAG=deps
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PKGS=(
    curl ca-certificates xz-utils tar
    make autoconf automake libtool pkg-config
    perl python3
    libevent-dev libpcre2-dev zlib1g-dev
    libcap-dev libpam0g-dev libcrypt-dev libssl-dev
    wrk libmemcached-tools
)

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

missing=()
for p in "${PKGS[@]}"; do
    installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
    log "all ${#PKGS[@]} packages already installed"
else
    [ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}) and not root: run as root"
    log "missing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    log "installed: ${missing[*]}"
fi

python3 -c 'import tomllib' 2>/dev/null \
    || die "python3 ($(command -v python3)) has no tomllib: Python >= 3.11 is needed"
command -v clang-22 >/dev/null || log "note: clang-22 is not on PATH (needed as the reference compiler)"

#!/usr/bin/env bash
# Usage: scripts/servers/openssh-test.sh [DEBIAN_REVISION] [BIN_DIR]
#   default: 9.2p1-2+deb12u7, BIN_DIR = target/release
#
# OpenSSH's own regression tests (regress/, `make t-exec`) on the mcr-cc
# build of Debian's REVISION (openssh-lib.sh: upstream + its series, sshd
# built by build.sh, then `make` builds ssh, scp, ssh-keygen, ... in the
# same tree with mcr-cc). One exception, said here: the FIDO test provider
# regress/misc/sk-dummy/sk-dummy.so, a plugin ssh-keygen dlopen()s, is
# built with clang-22, since a module built with mcr-cc needs the
# executable to export the runtime's __mcr_* entry points (modules loaded
# with dlopen are not supported by mcr yet).
#
# MCR_SSH_LTESTS: the t-exec tests to run (space separated); default, the
# ones below (checked on 2026-12-08; the whole list with MCR_SSH_LTESTS=all).
# Output: one line "openssh REVISION t-exec ok N tests" or the failing
# test's output; bounded by timeout (MCR_SSH_TEST_TIMEOUT, 1500 s).
set -euo pipefail
MCR_LOG_TAG=openssh-test
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -le 2 ] || { echo "usage: $0 [DEBIAN_REVISION] [BIN_DIR]" >&2; exit 2; }
REV="${1:-9.2p1-2+deb12u7}"
BIN="$(cd "${2:-$REPO_ROOT/target/release}" && pwd)"
[ "$(id -u)" = 0 ] || die "needs root (privilege separation user and chroot)"
for b in mcr-cc libmcr_rt.a; do [ -e "$BIN/$b" ] || die "$BIN/$b not found: cargo build --release first"; done
command -v clang-22 >/dev/null || die "clang-22 not found"
. "$SERVERS_DIR/openssh-lib.sh"

LTESTS="${MCR_SSH_LTESTS:-connect proxy-connect connect-privsep connect-uri proto-version proto-mismatch exit-status exit-status-signal envpass transfer banner stderr-data broken-pipe}"
SSHD="$(openssh_build "$REV" "$BIN/mcr-cc" "$BIN")"
DIR="$(dirname "$SSHD")"
openssh_users
export PATH="$BIN:$PATH"
log "make (every program) with mcr-cc in $DIR"
make -C "$DIR" -j"$MCR_JOBS" CC="$BIN/mcr-cc" >>"$DIR/mcr-build.log" 2>&1 \
    || { tail -n 20 "$DIR/mcr-build.log" >&2; die "make failed"; }
log "the FIDO test provider sk-dummy.so with clang-22 (a dlopen()ed module)"
rm -f "$DIR"/regress/misc/sk-dummy/*.lo "$DIR/ed25519.lo" "$DIR/hash.lo" "$DIR/regress/misc/sk-dummy/sk-dummy.so"
make -C "$DIR" CC=clang-22 regress/misc/sk-dummy/sk-dummy.so >>"$DIR/mcr-build.log" 2>&1 \
    || { tail -n 20 "$DIR/mcr-build.log" >&2; die "building sk-dummy.so failed"; }
LOG="$DIR/mcr-t-exec.log"
args=()
[ "$LTESTS" = all ] || args=(LTESTS="$LTESTS")
log "make t-exec ${args[*]:-(all)}"
if ! timeout "${MCR_SSH_TEST_TIMEOUT:-1500}" make -C "$DIR" CC="$BIN/mcr-cc" t-exec "${args[@]}" >"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    die "t-exec failed (full output: $LOG)"
fi
n="$(grep -c '^ok ' "$LOG" || true)"
grep '^ok ' "$LOG" >&2
printf 'openssh %s t-exec ok %s tests\n' "$REV" "$n"

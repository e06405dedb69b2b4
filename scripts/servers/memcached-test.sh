#!/usr/bin/env bash
# Usage: scripts/servers/memcached-test.sh [CC]
#
# Builds memcached 1.6.18 with CC (default: mcr-cc on PATH, else
# target/release/mcr-cc) using build.sh (./configure CC=CC && make -j2) into
# $MCR_WORK/build/<cc name>/memcached-1.6.18-test, then runs memcached's own
# test suite, 'make test' (testapp unit tests + prove t/*.t), unchanged.
#
# Notes:
# - As root, memcached's t/lib/MemcachedTest.pm itself adds '-u root' to
#   every server it starts, so the suite runs as root without changes.
# - Nothing is skipped by this script. Test files that skip themselves
#   (prove's "skipped:" lines, e.g. TLS or proxy tests when memcached was
#   configured without them) are listed at the end.
# - It takes ~7 minutes on 2 cores; the whole suite is stopped after
#   $MCR_TEST_TIMEOUT seconds (default 3600) and then counts as failed.
# - $MCR_TEST_PARALLEL=N passes PARALLEL=N to 'make test' (prove -jN);
#   default serial, as upstream runs it.
# - memcached-debug is built with -fprofile-arcs -ftest-coverage when
#   configure finds gcov; 'make test' ends by renaming its .gcno/.gcda
#   files and fails if there are none.
# Exit status is make test's.
set -euo pipefail
MCR_LOG_TAG=memcached-test
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CC="${1:-$(default_mcr_cc)}"
CC="$(resolve_cc "$CC")"
VERSION=1.6.18
OUT="$MCR_WORK/build/$(basename "$CC")/memcached-$VERSION-test"

"$SERVERS_DIR/build.sh" memcached "$VERSION" "$CC" "$OUT" >/dev/null
. "$OUT/.mcr-build-info"
log "built in $BUILD_SECONDS s; running 'make test' in $OUT (log: $OUT/mcr-test.log)"

par=()
[ -n "${MCR_TEST_PARALLEL:-}" ] && par=(PARALLEL="$MCR_TEST_PARALLEL")
t0="$(now)"
rc=0
# Bounded: the whole suite gets $MCR_TEST_TIMEOUT seconds (default 3600;
# upstream's own bound is 600 s per server via timedrun).
TMO="${MCR_TEST_TIMEOUT:-3600}"
(cd "$OUT" && timeout --kill-after=30 "$TMO" make test "${par[@]}") >"$OUT/mcr-test.log" 2>&1 || rc=$?
[ "$rc" -eq 124 ] && log "make test did not finish within ${TMO}s and was stopped"
t1="$(now)"
SECS="$(elapsed "$t0" "$t1")"

echo "=== memcached $VERSION make test with $CC: exit $rc, ${SECS} s wall ==="
# testapp's unit tests, then prove's per-file failures, self-skips and summary.
L="$OUT/mcr-test.log"
echo "testapp: $(grep -cE '^ok [0-9]+ - ' "$L" || true) ok, $(grep -cE '^not ok [0-9]+' "$L" || true) not ok"
grep -E '^not ok [0-9]+' "$L" | head -20 || true
echo "test files that skipped themselves (upstream conditions, not skipped by this script):"
grep -E '^t/[^ ]+ \.+ skipped:' "$L" | sed 's/^/  /' || echo "  none"
grep -E '^t/[^ ]+ \.+ (Dubious|Failed)|\(Wstat: |^Failed [0-9]+/|^Files=|^Result:|^All tests successful' "$L" || true
if [ "$rc" -ne 0 ] && grep -q '^Result: PASS' "$L"; then
    echo "NOTE: prove's t/*.t all passed, but 'make test' failed after them (see below)."
fi
if [ "$rc" -ne 0 ]; then
    echo "--- last 40 lines of $OUT/mcr-test.log ---"
    tail -n 40 "$OUT/mcr-test.log"
fi
exit "$rc"

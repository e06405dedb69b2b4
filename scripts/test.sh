#!/usr/bin/env bash
# The test suite, from a fresh Debian bookworm machine (as root):
#   1. install system packages and build (scripts/setup.sh)
#   2. cargo fmt --check and cargo clippy -D warnings (the workspace's lints),
#      then unit, corpus-accuracy and end-to-end live-update tests (cargo test),
#      then ARCHITECTURE.md names every module (scripts/check-architecture.sh)
#   3. the demo: a live update of the key-value server with state checked
#   4. memcached 1.6.18 built with mcr-cc passes its own `make test`
#   5. memcached 1.6.18 updated live to itself under load (and rolled back)
#   6. nginx 1.22.1 updated live to itself with keep-alive connections in its
#      workers, then a respawned worker and a reload (and rolled back)
#   7. redis 7.0.15 with a million keys updated live to itself under load,
#      every key found afterwards (and rolled back)
#   8. Debian's security updates applied live under load, each revision
#      built from the source package with all its patches: memcached
#      1.6.18-1 -> 1.6.18-1+deb12u1, nginx 1.22.1-9+deb12u9 -> +deb12u10
#      (and rolled back)
#   9. an upstream release applied live under load: memcached 1.6.18 ->
#      1.6.38 with its user code (updates/memcached/1.6.18-1.6.38), every
#      item checked afterwards (and rolled back)
# MCR_TEST_ALL_SERVERS=1 also builds and smoke-tests lighttpd, nginx, redis
# and vsftpd with mcr-cc (scripts/servers/all.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export LLVM_SYS_221_PREFIX=/usr/lib/llvm-22
t0=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - t0 ))s] $*"; }

step "setup"
scripts/setup.sh

step "code habits: cargo fmt --check, cargo clippy --all-targets -D warnings (workspace lints: every unsafe block says why)"
cargo fmt --all --check
cargo clippy --release --workspace --all-targets -- -D warnings

step "cargo test (unit, corpus accuracy, end-to-end)"
mkdir -p build
MCR_BIN_DIR="$PWD/target/release" cargo test --release --workspace 2>&1 | tee build/cargo-test.log
grep -q "test result" build/cargo-test.log
step "ARCHITECTURE.md names every module"; scripts/check-architecture.sh

step "demo: live update of the key-value server"
scripts/demo.sh

step "real servers: memcached 1.6.18 with mcr-cc, its own make test"
scripts/servers/deps.sh
scripts/servers/memcached-test.sh "$PWD/target/release/mcr-cc"

step "real servers: memcached 1.6.18 updated live to itself under load, and rolled back"
scripts/servers/memcached-update.sh "$PWD/target/release"

step "real servers: nginx 1.22.1 updated live to itself, its workers' connections carried, and rolled back"
scripts/servers/nginx-update.sh "$PWD/target/release"

step "real servers: redis 7.0.15 with a million keys updated live to itself under load, and rolled back"
scripts/servers/redis-update.sh "$PWD/target/release"

step "real servers: Debian security updates applied live: memcached 1.6.18-1 -> 1.6.18-1+deb12u1, nginx 1.22.1-9+deb12u9 -> 1.22.1-9+deb12u10, and rolled back"
scripts/servers/debian-update.sh memcached "$PWD/target/release"
scripts/servers/debian-update.sh nginx "$PWD/target/release"

step "real servers: an upstream release applied live: memcached 1.6.18 -> 1.6.38, and rolled back"
scripts/servers/upstream-update.sh memcached 1.6.18 1.6.38 "$PWD/target/release"

if [ -n "${MCR_TEST_ALL_SERVERS:-}" ]; then
    step "real servers: all five build and answer with mcr-cc"
    scripts/servers/all.sh "$PWD/target/release/mcr-cc"
fi
step "all tests passed"

#!/usr/bin/env bash
# Installs what mcr needs on Debian bookworm (as root) and builds it.
# Idempotent: apt-get runs only when a package is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(clang-22 llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev python3 curl ca-certificates xz-utils make)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
fi
if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found: install Rust (rustup or Debian's cargo) first" >&2
    exit 1
fi
export LLVM_SYS_221_PREFIX=/usr/lib/llvm-22
cargo build --release --workspace
# The runtime is linked whole into every executable mcr-cc makes, configure
# probes included: without its debug sections it links in half the time.
strip --strip-debug target/release/libmcr_rt.a
echo "setup: built target/release/{mcr-cc,mcr-ctl,libmcr_rt.a}" >&2

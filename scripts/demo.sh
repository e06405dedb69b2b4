#!/usr/bin/env bash
# The main job, end to end: build the demo key-value server in two versions
# with mcr-cc, start version 1, fill it from a client, update it live to
# version 2 while the client stays connected, and show that the keys, the
# counters, a setting changed at run time and the connection all survived.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release
out=${MCR_DEMO_DIR:-build/demo}
mkdir -p "$out"
port=${MCR_DEMO_PORT:-17777}

"$bin/mcr-cc" -O2 -DKV_VERSION=1 demo/kv/kvserver.c -o "$out/kvserver-v1"
"$bin/mcr-cc" -O2 -DKV_VERSION=2 demo/kv/kvserver.c -o "$out/kvserver-v2"
echo "== what the update will do to each type (mcr-ctl diff)"
"$bin/mcr-ctl" diff "$out/kvserver-v1" "$out/kvserver-v2"

"$out/kvserver-v1" "$port" &
old=$!
trap 'kill $old 2>/dev/null || true; [ -n "${new:-}" ] && kill "$new" 2>/dev/null || true' EXIT
python3 demo/kv/client.py "$port" "$bin/mcr-ctl" "$old" "$out/kvserver-v2"

# shellcheck shell=bash
# Common helpers for scripts/servers/*.sh. Sourced, not executed.
#
# MCR_WORK: cache/work directory (downloads, unpacked sources, builds).
# Default: <repo>/work, which is git-ignored (/work in .gitignore).

SERVERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SERVERS_DIR/../.." && pwd)"
MCR_WORK="${MCR_WORK:-$REPO_ROOT/work}"
mkdir -p "$MCR_WORK"
MCR_WORK="$(cd "$MCR_WORK" && pwd)"
export MCR_WORK

# The five servers of issue 2's "Real code" proof, in the order all.sh runs them.
DEFAULT_SERVERS=("memcached 1.6.18" "lighttpd 1.4.69" "nginx 1.22.1" "redis 7.0.15" "vsftpd 3.0.5")

log()  { printf '[%s] %s\n' "${MCR_LOG_TAG:-servers}" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "${MCR_LOG_TAG:-servers}" "$*" >&2; exit 1; }

# Parallelism: the machine has 2 cores shared with others; never more than 2.
MCR_JOBS="${MCR_JOBS:-2}"
if [ "$MCR_JOBS" -gt 2 ] 2>/dev/null; then MCR_JOBS=2; fi

# Resolve a compiler name/path to something usable as CC. Prints the absolute
# path when it is found on PATH or as a file.
resolve_cc() {
    local cc="$1" p
    if [[ "$cc" == */* ]]; then
        [ -x "$cc" ] || die "compiler '$cc' is not an executable file"
        p="$(cd "$(dirname "$cc")" && pwd)/$(basename "$cc")"
    else
        p="$(command -v "$cc" 2>/dev/null)" || die "compiler '$cc' not found on PATH"
    fi
    printf '%s\n' "$p"
}

# Default CC for all.sh / memcached-test.sh: mcr-cc on PATH, else the release
# build in this repo.
default_mcr_cc() {
    if command -v mcr-cc >/dev/null 2>&1; then
        command -v mcr-cc
    elif [ -x "$REPO_ROOT/target/release/mcr-cc" ]; then
        printf '%s\n' "$REPO_ROOT/target/release/mcr-cc"
    else
        die "no CC given and mcr-cc is neither on PATH nor at $REPO_ROOT/target/release/mcr-cc (build it with: cargo build --release -p mcr-cc -p mcr-rt, or pass CC, e.g. clang-22)"
    fi
}

# True when the compiler is mcr-cc (by name).
is_mcr_cc() { [[ "$(basename "$1")" == mcr-cc* ]]; }

# A free TCP port on 127.0.0.1 (asks the kernel for one, then releases it).
free_port() {
    python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# wait_port PORT SECONDS [PID]: wait until 127.0.0.1:PORT accepts a
# connection; fails after SECONDS or as soon as PID has exited.
wait_port() {
    local port="$1" secs="$2" pid="${3:-}" i
    for ((i = 0; i < secs * 10; i++)); do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# stop_pid PID [SECONDS]: TERM, wait a bounded time, then KILL.
stop_pid() {
    local pid="$1" secs="${2:-5}" i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Monotonic-ish wall clock in seconds with fractions.
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

# CPU seconds (user + sys) used so far by this shell's waited-for children,
# recursively (getrusage(RUSAGE_CHILDREN) as bash's `times` reports it).
# Must run in the measuring shell itself, not in $(...): it stores the value
# in the variable named by $1.
children_cpu() {
    local f
    f="$(mktemp)"
    { times; } >"$f"
    printf -v "$1" '%s' "$(tail -n1 "$f" | awk '{
        t = 0
        for (i = 1; i <= NF; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
        printf "%.1f", t }')"
    rm -f "$f"
}

# The binaries an update script was given: OLD_BINARY and NEW_BINARY, where
# NEW_BINARY may be a chain A:B:C (series-update.sh: one patch level after
# another, updated to in turn). Sets OLD_BIN and NEW_BIN (absolute paths,
# the chain kept), or dies naming one that is not an executable.
given_binaries() {
    local b chain
    OLD_BIN="$(realpath "$1")" NEW_BIN=""
    [ -x "$OLD_BIN" ] || die "$OLD_BIN is not an executable"
    IFS=: read -r -a chain <<<"$2"
    for b in "${chain[@]}"; do
        [ -x "$b" ] || die "$b is not an executable"
        NEW_BIN+="${NEW_BIN:+:}$(realpath "$b")"
    done
}

# debian_tree NAME VERSION REVISION DEST: DEST (wiped) holds NAME's pristine
# upstream VERSION with the whole debian/patches/series of REVISION applied
# in order, patch -pN as quilt applies them (both fetched, sha256-pinned, by
# fetch.sh). Dies naming a patch that does not apply.
debian_tree() {
    local name="$1" version="$2" rev="$3" dest="$4" deb line patch opts strip
    deb="$("$SERVERS_DIR/fetch.sh" "$name" "$rev")"
    [ -f "$deb/patches/series" ] || die "$deb/patches/series not found"
    rm -rf "$dest"
    mkdir -p "$dest"
    cp -a "$("$SERVERS_DIR/fetch.sh" "$name" "$version")/." "$dest/"
    rm -f "$dest/.mcr-fetched"
    while read -r line; do
        read -r patch opts <<<"$line"
        strip=1
        [[ "${opts:-}" =~ -p([0-9]+) ]] && strip="${BASH_REMATCH[1]}"
        patch -d "$dest" -p"$strip" -f -s --no-backup-if-mismatch <"$deb/patches/$patch" \
            || die "$name $rev: $patch does not apply"
    done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$deb/patches/series")
}

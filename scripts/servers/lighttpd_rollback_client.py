"""Drives lighttpd through an update that rolls back, with a keep-alive
connection held and mod_status counting; see lighttpd-rollback.sh.

Usage: lighttpd_rollback_client.py PORT PID MCR_CTL NEW_BINARY NEW_CONF NEW_MODULES
Exits 0 when every check passed; prints what it measured."""
import os, re, socket, subprocess, sys, time

port, pid, ctl, new_binary, new_conf, new_modules = (
    int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6])
TOKEN = b"mcr-lighttpd-%d" % port


def connect(timeout=5):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def wait_up():
    for _ in range(200):
        try:
            connect().close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("lighttpd did not start")


def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("connection closed by the server (headers: %r)" % buf)
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("connection closed in a body")
        body += chunk
    return head.split(b"\r\n")[0], body


def get(s, path):
    s.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n" % path.encode())
    status, body = read_response(s)
    if not status.startswith(b"HTTP/1.1 200"):
        raise RuntimeError("GET %s: %r" % (path, status))
    return body


def status(s):
    body = get(s, "/server-status?auto").decode()
    v = {}
    for k in ("Total Accesses", "Uptime"):
        m = re.search(r"^%s: (\d+)" % k, body, re.M)
        if not m:
            raise RuntimeError("no %r in mod_status's answer: %r" % (k, body))
        v[k] = int(m.group(1))
    return v


def cpu_ticks(p):
    f = open("/proc/%d/stat" % p).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def new_connection(k):
    """A new connection must be accepted and answered (5 s)."""
    t0 = time.monotonic()
    try:
        with connect() as c:
            body = get(c, "/index.html")
    except Exception as e:  # noqa: BLE001 - reported as a failure
        why = "FAIL: new connection %d after the rollback: %s (%.1f s)" % (
            k, e or type(e).__name__, time.monotonic() - t0)
        try:
            why += "; mod_status on the kept connection then: %r" % status(keep)
        except Exception as e2:  # noqa: BLE001
            why += "; mod_status on the kept connection failed too: %s" % e2
        raise SystemExit(why)
    if TOKEN not in body:
        raise SystemExit("FAIL: new connection %d: wrong page %r" % (k, body[:80]))
    return time.monotonic() - t0


wait_up()
keep = connect(timeout=10)
get(keep, "/index.html")
for _ in range(5):
    with connect() as c:
        get(c, "/index.html")
# mod_status adds a second's requests to its total once a second.
time.sleep(2.2)
before = status(keep)
print("before the update: Total Accesses %d, Uptime %d s" % (before["Total Accesses"], before["Uptime"]))

t0 = time.monotonic()
r = subprocess.run([ctl, "update", str(pid), new_binary, "--", "-D", "-f", new_conf, "-m", new_modules],
                   capture_output=True, text=True, timeout=120)
took = time.monotonic() - t0
msg = (r.stdout + r.stderr).strip().splitlines()
print("mcr-ctl update exit %d after %.2f s: %s" % (r.returncode, took, msg[-1] if msg else ""))
if r.returncode == 0:
    sys.exit("FAIL: the update was expected to roll back but committed")
if "rolled back" not in r.stdout + r.stderr:
    sys.exit("FAIL: mcr-ctl failed without rolling back: %s" % (r.stdout + r.stderr))
try:
    os.kill(pid, 0)
except OSError:
    sys.exit("FAIL: the old lighttpd (pid %d) is gone after the rollback" % pid)

# The old version serves its kept connection, and new ones.
get(keep, "/index.html")
for k in range(3):
    print("new connection %d after the rollback answered in %.3f s" % (k, new_connection(k)))
# Idle for a second: an old event loop woken by a registration that is not
# its own (an event it ignores, level-triggered) spins.
c0 = cpu_ticks(pid)
time.sleep(1.0)
spent = (cpu_ticks(pid) - c0) / os.sysconf("SC_CLK_TCK")
print("old lighttpd's CPU time over 1 s idle after the rollback: %.2f s" % spent)
if spent > 0.5:
    sys.exit("FAIL: the old lighttpd spins after the rollback (%.2f s CPU in 1 s idle)" % spent)
time.sleep(1.2)
after = status(keep)
print("after the rollback: Total Accesses %d, Uptime %d s" % (after["Total Accesses"], after["Uptime"]))
if after["Uptime"] < before["Uptime"] or after["Total Accesses"] < before["Total Accesses"]:
    sys.exit("FAIL: mod_status counters went back (before %r, after %r)" % (before, after))
# Our own requests since: index on the kept connection, 3 new connections,
# and the status request before.
if after["Total Accesses"] < before["Total Accesses"] + 4:
    sys.exit("FAIL: mod_status did not count the requests after the rollback (before %r, after %r)"
             % (before, after))
keep.close()
print("lighttpd rollback: all checks passed")

"""Drives redis through live updates; see redis-update.sh and series-update.sh.

argv: port pid mcr-ctl fault keys new-binary [new-binary ...]
Each new binary in turn replaces the running version, under load, and the
whole state is checked after each (fault: every update must roll back).
With MCR_COMPARE_PORT set (a server freshly started from the last binary),
the updated server must answer the behaviour probes as that one does: the
new version's code and start-up tables are in force (a security fix took
effect), not the old ones.
"""
import json, os, random, socket, subprocess, sys, threading, time

port, pid, ctl, fault, N = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
binaries = sys.argv[6:]
SIZE = 100
SET_MEMBERS = 1000  # over 128: a hash-table set, placed by the hash seed too


def connect():
    for _ in range(400):
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except OSError:
            time.sleep(0.05)
    sys.exit("redis did not start")


class Conn:
    """A RESP connection (commands one at a time)."""

    def __init__(self):
        self.s = connect()
        self.f = self.s.makefile("rwb")

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.f.write(out)
        self.f.flush()
        return self.reply()

    def reply(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("connection closed by the server")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            v = self.f.read(n + 2)[:-2]
            return v
        if t == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise RuntimeError("bad reply %r" % line)


def info(c, field):
    for line in c.cmd("INFO", "server").decode().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1]
    raise KeyError(field)


def alive(pid):
    """Running (a zombie not yet reaped by whoever started it is gone)."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def value_ok(j, v):
    want = b"value:%d" % j
    return v is not None and len(v) == SIZE and v[: len(want)] == want



# Behaviour that differs between releases: CVE-2025-46818's fix removes
# setfenv, getfenv and newproxy from the Lua sandbox (the allow-lists start-up
# builds the Lua state from).
PROBES = [
    ("EVAL", "local f = function() return 1 end; setfenv(f, {}); return 0", 0),
    ("EVAL", "local f = function() return 1 end; getfenv(f); return 0", 0),
    ("EVAL", "getmetatable(newproxy(true)).__gc = function() return 1 end; return 0", 0),
    ("EVAL", "return redis.call('PING')", 0),
]


def probe(c):
    out = []
    for p in PROBES:
        try:
            out.append(repr(c.cmd(*p)))
        except RuntimeError as e:  # the server's error reply, up to its script location
            out.append("ERR " + str(e).split(" script:")[0].split("(")[0].strip())
    return out


def populate(a):
    t0 = time.time()
    assert a.cmd("DEBUG", "POPULATE", N, "key", SIZE) == b"OK"
    for m in range(0, SET_MEMBERS, 100):
        a.cmd("SADD", "members", *["m%d" % i for i in range(m, m + 100)])
    a.cmd("HSET", "profile", "name", "ada", "lang", "c")
    a.cmd("RPUSH", "queue", "one", "two", "three")
    a.cmd("ZADD", "board", 1, "x", 2, "y")
    print("populated %d keys in %.1f s" % (N, time.time() - t0))


def check(c, name, counter):
    assert c.cmd("GET", "counter") == b"%d" % counter, "counter on %s" % name
    sample = [1, N // 2, N - 1] + random.sample(range(N), min(N, 20000))
    lost = [j for j in sample if not value_ok(j, c.cmd("GET", "key:%d" % j))]
    assert not lost, "keys lost on %s: %s" % (name, ["key:%d" % j for j in lost[:10]])
    assert c.cmd("EXISTS", "key:1", "key:%d" % (N // 2), "key:%d" % (N - 1)) == 3, name
    assert c.cmd("SCARD", "members") == SET_MEMBERS, name
    missing = [m for m in range(SET_MEMBERS) if c.cmd("SISMEMBER", "members", "m%d" % m) != 1]
    assert not missing, "set members lost on %s: %s" % (name, missing[:10])
    assert c.cmd("HGET", "profile", "lang") == b"c" and c.cmd("LRANGE", "queue", 0, -1) == [b"one", b"two", b"three"]
    assert c.cmd("ZSCORE", "board", "y") == b"2"


def update(pid, binary, counter):
    """One live update under the loader; returns the pid serving after it
    and the counter's value."""
    errors, rounds, stop = [], [0], threading.Event()

    def loader():
        try:
            b = Conn()
            i = 0
            while not stop.is_set():
                k = "load:%d" % (i % 100)
                if b.cmd("SET", k, "v%d" % i) != b"OK" or b.cmd("GET", k) != b"v%d" % i:
                    errors.append("wrong answer at round %d" % i)
                j = random.randrange(N)
                if not value_ok(j, b.cmd("GET", "key:%d" % j)):
                    errors.append("key:%d lost at round %d" % (j, i))
                if b.cmd("INCR", "counter") != counter + i + 1:
                    errors.append("counter wrong at round %d" % i)
                i += 1
                rounds[0] = i
        except Exception as e:  # a closed connection or a timeout
            errors.append(repr(e))

    idle = Conn()  # opened before the update, used only after it
    assert idle.cmd("PING") == b"PONG"
    t = threading.Thread(target=loader)
    t.start()
    time.sleep(0.5)
    r = subprocess.run([ctl, "update", pid, binary, "--json"], capture_output=True, text=True, timeout=300)
    time.sleep(0.5)
    stop.set()
    t.join(60)
    if fault:
        assert r.returncode != 0, "update with MCR_FAULT=%s must fail" % fault
        print("rolled back as expected:", r.stderr.strip())
        assert alive(pid), "old process gone after rollback"
        new_pid = pid
    else:
        assert r.returncode == 0, "update to %s failed: %s" % (binary, r.stderr.strip())
        rep = json.loads(r.stdout)
        print("updated pid %s -> %s (%s), downtime %.1f ms, %d objects (%d precise, %d conservative)" % (
            rep["old_pid"], rep["new_pid"], binary, rep["downtime_ms"],
            rep["objects_precise"] + rep["objects_conservative"], rep["objects_precise"],
            rep["objects_conservative"]))
        time.sleep(0.2)
        assert not alive(pid), "old process still alive"
        new_pid = str(rep["new_pid"])
    print("RESULT\t%s\t%s\t%s\t%d\t%d" % (binary, "rolled back" if fault else "updated",
                                          "-" if fault else "%.1f" % rep["downtime_ms"], rounds[0], len(errors)))
    assert not errors, "loader errors during the update: %s (of %d rounds)" % (errors[:3], rounds[0])
    counter += rounds[0]
    print("loader: %d SET/GET/GET/INCR rounds through the update, 0 errors" % rounds[0])
    check(idle, "the idle connection opened before the update", counter)
    return new_pid, counter


a = Conn()
populate(a)
run_id, uptime = info(a, "run_id"), int(info(a, "uptime_in_seconds"))
counter = 0
for binary in binaries:
    pid, counter = update(pid, binary, counter)
    check(a, "the connection opened before the first update", counter)
    c = Conn()
    check(c, "a new connection", counter)
    dbsize = c.cmd("DBSIZE")
    assert dbsize == N + 5 + min(counter, 100), "DBSIZE %d" % dbsize
    # Written after the update, found again: no duplicate under another seed.
    assert c.cmd("SET", "key:7", b"value:7".ljust(SIZE, b"\0")) == b"OK" and value_ok(7, c.cmd("GET", "key:7"))
    assert c.cmd("DBSIZE") == dbsize, "SET of an existing key made a duplicate"
    assert info(c, "run_id") == run_id, "run_id changed: %s -> %s" % (run_id, info(c, "run_id"))
    assert int(info(c, "uptime_in_seconds")) >= uptime, "uptime went back"
    print("state checked: counter, 20003 sampled keys, %d set members, hash, list, zset on the idle, the first"
          " and a new connection; DBSIZE %d, run_id kept, uptime did not go back" % (SET_MEMBERS, dbsize))
if os.environ.get("MCR_COMPARE_PORT"):
    port = int(os.environ["MCR_COMPARE_PORT"])
    fresh, live = probe(Conn()), None
    port = int(sys.argv[1])
    live = probe(Conn())
    for p, f, l in zip(PROBES, fresh, live):
        print("probe %r: fresh %s, updated %s" % (p[1][:40], f, l))
    assert fresh == live, "the updated server does not behave as a fresh start of the new version"
    print("behaviour probes: the updated server answers as a fresh start of the new version")
if not fault:
    subprocess.run(["kill", pid])

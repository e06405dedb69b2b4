"""Drives memcached through a live update; see memcached-update.sh."""
import json, os, socket, subprocess, sys, threading, time

port, pid, ctl, new_binary, fault = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
# "profile": record `mcr-ctl profile` before the update (kept beside the
# binary, so later updates of it use it too); "noprofile": the caller
# removed any saved profile and none is recorded.
profile = (sys.argv[6] if len(sys.argv) > 6 else "profile") == "profile"
N = 5000
# Idle connections: opened one after another, so memcached (-t 4) hands
# them to its worker threads in turn, one per thread, the loader's
# included. Each stores items, then sends nothing until after the update.
IDLE = 4
IDLE_ITEMS = 1000

def connect():
    for _ in range(200):
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            time.sleep(0.05)
    sys.exit("memcached did not start")

class Conn:
    def __init__(self):
        self.s = connect()
        self.f = self.s.makefile("rwb")
    def set(self, k, v):
        self.f.write(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v)); self.f.flush()
        return self.f.readline()
    def get(self, k):
        self.f.write(b"get %s\r\n" % k); self.f.flush()
        line = self.f.readline()
        if not line.startswith(b"VALUE"):
            return None
        v = self.f.readline()[:-2]
        self.f.readline()
        return v
    def first_answer(self, request):
        """Sends `request` and reads the first line of the answer: b"" is
        EOF, the server closed the connection."""
        self.f.write(request); self.f.flush()
        return self.f.readline()

a = Conn()
for i in range(N):
    assert a.set(b"key%d" % i, b"value-%d" % i) == b"STORED\r\n"

# The idle connections: plain (its last answer read, nothing pending); one
# with half a command in memcached's read buffer; one in the middle of a
# set's value (an item allocated, half filled). Each is used again only
# after the update.
idle = []
for n in range(IDLE):
    c = Conn()
    for i in range(IDLE_ITEMS):
        assert c.set(b"idle%d-%d" % (n, i), b"v%d-%d" % (n, i)) == b"STORED\r\n"
    idle.append(c)
idle[1].f.write(b"get idle1-0"); idle[1].f.flush()
idle[2].f.write(b"set idle2-half 0 0 10\r\n12345"); idle[2].f.flush()
IDLE_FIRST = {0: b"get idle0-0\r\n", 1: b"\r\n", 2: b"67890\r\n", 3: b"get idle3-0\r\n"}
IDLE_ANSWER = {n: b"VALUE idle%d-0 0 %d\r\n" % (n, len(b"v%d-0" % n)) for n in (0, 1, 3)}
IDLE_ANSWER[2] = b"STORED\r\n"

errors, rounds, stop = [], [0], threading.Event()
def loader():
    try:
        b = Conn()
        i = 0
        while not stop.is_set():
            k = b"load%d" % (i % 100)
            if b.set(k, b"v%d" % i) != b"STORED\r\n" or b.get(k) != b"v%d" % i:
                errors.append("wrong answer at round %d" % i)
            i += 1
            rounds[0] = i
    except Exception as e:  # a closed connection or a timeout
        errors.append(repr(e))

t = threading.Thread(target=loader)
t.start()
time.sleep(0.5)
if not fault and profile:
    # Quiescent points from a profile under this load (kept beside the
    # binary); the update below must use them.
    p = subprocess.run([ctl, "profile", pid, "--duration", "1"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, "profile failed: " + p.stderr.strip() + p.stdout
    print(p.stdout.strip().splitlines()[-1])
# NEW_BINARY may be a chain, "a:b:c" (series-update.sh: one Debian patch
# level after another): the server is updated to each in turn under the
# same load, the items checked on connection A after each update; the idle
# connections stay silent until after the last one.
chain = new_binary.split(":")
for k, nb in enumerate(chain):
    r0, e0 = rounds[0], len(errors)
    r = subprocess.run([ctl, "update", pid, nb, "--json"], capture_output=True, text=True, timeout=120)
    time.sleep(0.5)
    if k == len(chain) - 1:
        stop.set()
        t.join(20)
    during = rounds[0] - r0
    if fault:
        assert r.returncode != 0, "update with MCR_FAULT=%s must fail" % fault
        print("rolled back as expected:", r.stderr.strip())
        assert subprocess.run(["kill", "-0", pid]).returncode == 0, "old process gone after rollback"
        print("RESULT\t%s\trolled-back\t-\t%d\t%d" % (nb, during, len(errors) - e0))
        stop.set()
        t.join(20)
        break
    assert r.returncode == 0, "update to %s failed: %s" % (nb, r.stderr.strip())
    rep = json.loads(r.stdout)
    # A saved profile is kept beside the binary it was recorded for: only
    # the first update (from the binary the profile step ran on) has one.
    if k == 0 and profile:
        assert rep.get("profile_points"), "the update did not use the profile: %s" % r.stdout
    elif k == 0:
        assert not rep.get("profile_points"), "a profile was in force: %s" % r.stdout
    print("updated pid %s -> %s, downtime %.1f ms, %d objects (%d paired), %d globals" % (
        rep["old_pid"], rep["new_pid"], rep["downtime_ms"], rep["objects_precise"] + rep["objects_conservative"],
        rep.get("objects_paired", 0), rep["globals"]))
    # The old process exits (a zombie until its parent, or for a process
    # an earlier update started, init, reaps it).
    for _ in range(100):
        try:
            gone = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()[0] in "ZX"
        except OSError:
            gone = True
        if gone:
            break
        time.sleep(0.05)
    assert gone, "old process %s still alive" % pid
    # The code that now serves is NEW_BINARY's.
    got = os.path.realpath("/proc/%d/exe" % rep["new_pid"])
    assert got == os.path.realpath(nb), "new pid runs %s, not %s" % (got, nb)
    print("RESULT\t%s\tcommitted\t%.1f\t%d\t%d" % (nb, rep["downtime_ms"], during, len(errors) - e0))
    pid = str(rep["new_pid"])
    if k < len(chain) - 1:
        lost = [i for i in range(N) if a.get(b"key%d" % i) != b"value-%d" % i]
        assert not lost, "items lost after update %d (connection opened before it): %s" % (k + 1, lost[:10])
        assert not errors, "loader errors during update %d: %s" % (k + 1, errors[:3])

assert not errors, "loader errors during the update: %s" % errors[:3]
print("loader: %d set/get rounds during the update, 0 errors, connection kept" % rounds[0])
# The idle connections first: their first request since before the update.
closed = []
for n, c in enumerate(idle):
    first = c.first_answer(IDLE_FIRST[n])
    if first == b"":
        closed.append(n)
        continue
    assert first == IDLE_ANSWER[n], "idle connection %d: %r to its first request after the update" % (n, first)
    if first.startswith(b"VALUE"):
        assert c.f.readline() == b"v%d-0\r\n" % n and c.f.readline() == b"END\r\n", "idle connection %d: wrong value" % n
if closed:
    # What memcached says of it: a failed read-buffer or response-object
    # allocation closes a connection without a word (read_buf_oom,
    # response_obj_oom), and `stats conns` shows what is left of each one.
    d = Conn()
    for cmd in (b"stats", b"stats conns"):
        d.f.write(cmd + b"\r\n"); d.f.flush()
        for line in iter(d.f.readline, b"END\r\n"):
            if cmd == b"stats conns" or any(w in line for w in (b"oom", b"conn", b"threads")):
                print("  %s: %s" % (cmd.decode(), line.decode().strip()))
assert not closed, "idle connection(s) %s of %d got EOF at their first request after the update: the server closed them" % (closed, IDLE)
assert idle[2].get(b"idle2-half") == b"1234567890", "the set half sent before the update was not stored whole"
for n, c in enumerate(idle):
    lost = [i for i in range(IDLE_ITEMS) if c.get(b"idle%d-%d" % (n, i)) != b"v%d-%d" % (n, i)]
    assert not lost, "idle connection %d: its items lost: %s" % (n, lost[:10])
print("%d idle connections (one per worker thread; one with half a command, one with half a value) answer after the update" % IDLE)
lost = [i for i in range(N) if a.get(b"key%d" % i) != b"value-%d" % i]
assert not lost, "items lost (connection opened before the update): %s" % lost[:10]
c = Conn()
lost = [i for i in range(N) if c.get(b"key%d" % i) != b"value-%d" % i]
assert not lost, "items lost (new connection): %s" % lost[:10]
assert c.set(b"after", b"update") == b"STORED\r\n" and c.get(b"after") == b"update"
print("all %d items readable on the old and a new connection" % N)
if not fault:
    subprocess.run(["kill", str(rep["new_pid"])])

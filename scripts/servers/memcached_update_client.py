"""Drives memcached through a live update; see memcached-update.sh."""
import json, socket, subprocess, sys, threading, time

port, pid, ctl, new_binary, fault = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
N = 5000

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

a = Conn()
for i in range(N):
    assert a.set(b"key%d" % i, b"value-%d" % i) == b"STORED\r\n"

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
if not fault:
    # Quiescent points from a profile under this load (kept beside the
    # binary); the update below must use them.
    p = subprocess.run([ctl, "profile", pid, "--duration", "1"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, "profile failed: " + p.stderr.strip() + p.stdout
    print(p.stdout.strip().splitlines()[-1])
r = subprocess.run([ctl, "update", pid, new_binary, "--json"], capture_output=True, text=True, timeout=120)
time.sleep(0.5)
stop.set()
t.join(20)

if fault:
    assert r.returncode != 0, "update with MCR_FAULT=%s must fail" % fault
    print("rolled back as expected:", r.stderr.strip())
    assert subprocess.run(["kill", "-0", pid]).returncode == 0, "old process gone after rollback"
else:
    assert r.returncode == 0, "update failed: " + r.stderr.strip()
    rep = json.loads(r.stdout)
    assert rep.get("profile_points"), "the update did not use the profile: %s" % r.stdout
    print("updated pid %s -> %s, downtime %.1f ms, %d objects (%d paired), %d globals" % (
        rep["old_pid"], rep["new_pid"], rep["downtime_ms"], rep["objects_precise"] + rep["objects_conservative"],
        rep.get("objects_paired", 0), rep["globals"]))
    time.sleep(0.2)
    assert subprocess.run(["kill", "-0", pid], stderr=subprocess.DEVNULL).returncode != 0, "old process still alive"

assert not errors, "loader errors during the update: %s" % errors[:3]
print("loader: %d set/get rounds during the update, 0 errors, connection kept" % rounds[0])
lost = [i for i in range(N) if a.get(b"key%d" % i) != b"value-%d" % i]
assert not lost, "items lost (connection opened before the update): %s" % lost[:10]
c = Conn()
lost = [i for i in range(N) if c.get(b"key%d" % i) != b"value-%d" % i]
assert not lost, "items lost (new connection): %s" % lost[:10]
assert c.set(b"after", b"update") == b"STORED\r\n" and c.get(b"after") == b"update"
print("all %d items readable on the old and a new connection" % N)
if not fault:
    subprocess.run(["kill", str(rep["new_pid"])])

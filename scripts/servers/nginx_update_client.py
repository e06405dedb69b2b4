"""Drives nginx through a live update with keep-alive connections held by
its workers; see nginx-update.sh."""
import json, os, socket, subprocess, sys, threading, time

port, pid, ctl, new_binary, fault = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
old_binary = sys.argv[6] if len(sys.argv) > 6 else None
# "chained": no fault; a second update follows the first.
chained, fault = fault == "chained", ("" if fault == "chained" else fault)
TOKEN = b"mcr-nginx-%d" % port
N = 8

def connect():
    for _ in range(200):
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            time.sleep(0.05)
    sys.exit("nginx did not start")

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
    status = head.split(b"\r\n")[0]
    return status, body

REQ = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"

def get(s):
    s.sendall(REQ)
    status, body = read_response(s)
    assert status.startswith(b"HTTP/1.1 200"), status
    assert TOKEN in body, body
    return body

def children(p):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open("/proc/%s/stat" % d).read()
            except OSError:
                continue
            f = st.rsplit(")", 1)[1].split()
            if int(f[1]) == p and f[0] not in "ZX":
                out.append(int(d))
    return sorted(out)

conns = [connect() for _ in range(N)]
# nginx starts its workers after binding: the first connect may be early.
for s in conns:
    get(s)
old_workers = children(pid)
assert len(old_workers) == 2, old_workers
half = conns[N // 2]
half.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
time.sleep(0.2)

# A loader: GET round trips on its own keep-alive connection, through the
# update (its connection is carried like the others). nginx closes a
# connection after keepalive_requests (10000 here): the loader opens a new
# one every 5000 rounds, so any close it meets is unexpected.
errors, rounds, stop = [], [0], threading.Event()
def loader():
    try:
        s = connect()
        while not stop.is_set():
            if rounds[0] and rounds[0] % 5000 == 0:
                s.close()
                s = connect()
            get(s)
            rounds[0] += 1
    except Exception as e:  # a closed connection, a timeout, a wrong answer
        errors.append("round %d: %r" % (rounds[0], e))
lt = threading.Thread(target=loader)
lt.start()
time.sleep(0.3)

def exe(p):
    return os.path.realpath("/proc/%d/exe" % p)

# NEW_BINARY may be a chain, "a:b:c" (series-update.sh: one Debian patch
# level after another): the master is updated to each in turn under the
# loader, the keep-alive connections served after each; the half request
# stays half sent until after the last one.
chain = new_binary.split(":")
new_binary = chain[-1]
master = pid
for k, nb in enumerate(chain):
    r0 = rounds[0]
    t0 = time.time()
    r = subprocess.run([ctl, "update", "--json", str(master), nb], capture_output=True, text=True, timeout=120)
    took = time.time() - t0
    time.sleep(0.3)
    if k == len(chain) - 1 or fault:
        stop.set()
        lt.join(20)
    assert not errors, "loader errors during update %d: %s" % (k + 1, errors[:3])
    print(r.stdout.strip()[-2000:] if fault else "", r.stderr.strip()[-2000:], file=sys.stderr)
    if fault:
        assert r.returncode != 0, "update with MCR_FAULT=%s must roll back" % fault
        assert "rolled back" in (r.stdout + r.stderr), r.stdout + r.stderr
        assert children(master) == old_workers, (children(master), old_workers)
        print("RESULT\t%s\trolled-back\t-\t%d\t0" % (nb, rounds[0] - r0))
        break
    assert r.returncode == 0, "update to %s failed: %s %s" % (nb, r.stdout, r.stderr)
    rep = json.loads(r.stdout)
    prev, master = master, rep["new_pid"]
    assert rep["workers"] == 2, rep
    assert rep.get("worker_fds", 0) >= N, rep
    for _ in range(100):
        if not os.path.exists("/proc/%d" % prev):
            break
        time.sleep(0.05)
    assert not os.path.exists("/proc/%d/stat" % prev) or open("/proc/%d/stat" % prev).read().rsplit(")", 1)[1].split()[0] == "Z", "old master still alive"
    new_workers = children(master)
    assert len(new_workers) == 2 and not set(new_workers) & set(old_workers), (new_workers, old_workers)
    # The code that now runs is NB's, in the master and its workers.
    want = os.path.realpath(nb)
    assert exe(master) == want and all(exe(w) == want for w in new_workers), \
        (exe(master), [exe(w) for w in new_workers], want)
    print("nginx update: downtime %.1f ms, %d worker connections handed over, %d workers, mcr-ctl took %.0f ms"
          % (rep["downtime_ms"], rep["worker_fds"], rep["workers"], took * 1e3))
    print("RESULT\t%s\tcommitted\t%.1f\t%d\t0" % (nb, rep["downtime_ms"], rounds[0] - r0))
    old_workers = new_workers
    if k < len(chain) - 1:
        for s_ in conns:
            if s_ is not half:
                get(s_)
print("loader: %d GET round trips on keep-alive connections (a new one every 5000) through the update%s, 0 errors"
      % (rounds[0], "s" if len(chain) > 1 else ""))

half.sendall(b"\r\n")
status, body = read_response(half)
assert status.startswith(b"HTTP/1.1 200") and TOKEN in body, (status, body)
for i, s in enumerate(conns):
    for _ in range(3):
        get(s)
fresh = connect()
get(fresh)
print("nginx %s: %d keep-alive connections served before and after on the same sockets, half request completed, new connection served"
      % ("rollback" if fault else "update", N))

def wait_workers(master, not_in):
    """The master's two workers, once none of them is in `not_in`."""
    for _ in range(200):
        w = children(master)
        if len(w) == 2 and not set(w) & set(not_in):
            return w
        time.sleep(0.05)
    sys.exit("the master did not start 2 new workers (has %r)" % children(master))

def serve_fresh(n):
    for _ in range(n):
        c = connect()
        get(c)
        c.close()

import signal
if chained:
    # A second update of the same server, back to the first binary: the
    # same keep-alive connections are carried again.
    r = subprocess.run([ctl, "update", "--json", str(master), old_binary],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "second update failed: %s %s" % (r.stdout, r.stderr)
    rep = json.loads(r.stdout)
    master = rep["new_pid"]
    for s in conns:
        get(s)
    serve_fresh(10)
    print("nginx second update: downtime %.1f ms, the %d keep-alive connections carried again and served; 10 new connections served"
          % (rep["downtime_ms"], N))
elif not fault:
    # The master still manages its workers: one that dies is respawned
    # (forked from the new master after its start-up), and serves.
    workers = children(master)
    os.kill(workers[0], signal.SIGKILL)
    for _ in range(200):
        w = children(master)
        if len(w) == 2 and workers[0] not in w:
            break
        time.sleep(0.05)
    else:
        sys.exit("worker %d was not respawned (workers: %r)" % (workers[0], children(master)))
    serve_fresh(20)
    print("nginx after update: a killed worker was respawned; 20 new connections served")
    # A configuration reload (SIGHUP) starts new workers and retires the old.
    before = children(master)
    os.kill(master, signal.SIGHUP)
    wait_workers(master, before)
    serve_fresh(20)
    print("nginx after update: SIGHUP reload replaced both workers; 20 new connections served")
    # Workers forked after start-up are not carried (a known limit): the
    # next update is refused before anything stops, and nginx serves on.
    r = subprocess.run([ctl, "update", str(master), new_binary], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "refused" in r.stderr and "respawned worker" in r.stderr, (r.returncode, r.stderr)
    assert os.path.exists("/proc/%d" % master)
    serve_fresh(5)
    print("nginx with respawned workers: the next update is refused, nginx serves on")

"""Fills the demo server, pings it continuously from a second connection
during a live update, and reports the longest gap between answers (the
downtime a client sees) next to the runtime's own phase breakdown."""
import json, socket, subprocess, sys, threading, time

port, pid, ctl, new_binary, keys, memcpy_bw = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]

def connect():
    for _ in range(200):
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except OSError:
            time.sleep(0.05)
    sys.exit("server did not start")

s = connect()
batch = 1000
for start in range(0, keys, batch):
    s.sendall("".join(f"SET key{i} value-{i}\n" for i in range(start, min(keys, start + batch))).encode())
    got = b""
    while got.count(b"\n") < min(batch, keys - start):
        got += s.recv(65536)

gaps, stop = [0.0], threading.Event()
def pinger():
    p = connect()
    f = p.makefile("rw")
    last = time.perf_counter()
    while not stop.is_set():
        f.write("COUNT\n"); f.flush()
        assert f.readline().strip() == str(keys)
        now = time.perf_counter()
        gaps[0] = max(gaps[0], now - last)
        last = now

t = threading.Thread(target=pinger)
t.start()
time.sleep(0.3)
r = subprocess.run([ctl, "update", pid, new_binary, "--json"], capture_output=True, text=True)
time.sleep(0.3)
stop.set()
t.join()
if r.returncode != 0:
    sys.exit("update failed: " + r.stderr)
rep = json.loads(r.stdout)
objects = rep["objects_precise"] + rep["objects_conservative"]
print(f"\n== update to {new_binary.rsplit('/', 1)[-1]}: {objects} objects ({rep['objects_moved']} moved to a new layout), {rep['bytes']} bytes")
print(f"client-observed downtime (longest gap between answers): {gaps[0]*1e3:.1f} ms; runtime-measured: {rep['downtime_ms']:.1f} ms")
for p in rep["phases"]:
    print(f"   {p['phase']:<16} {p['millis']:8.2f} ms")
ph = {p["phase"]: p["millis"] for p in rep["phases"]}
state_ms = ph.get("checkpoint", 0) + ph.get("transfer", 0)
bw = float(subprocess.check_output([memcpy_bw, str(max(rep["bytes"], 1 << 20))]).decode())
rate = rep["bytes"] / (state_ms / 1e3) / 1e6 if state_ms else float("inf")
print(f"transfer rate (bytes / (checkpoint + transfer)): {rate:.1f} MB/s; memcpy of the same bytes: {bw:.1f} MB/s; ratio {rate/bw:.3f}")
subprocess.run(["kill", str(rep["new_pid"])])

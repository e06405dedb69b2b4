"""Fills memcached with MB megabytes in 100 KB values, updates it live,
checks every value afterwards, and prints the transfer rate next to memcpy
of the same bytes (benches/transfer-rate.sh)."""
import json, socket, subprocess, sys, time

port, pid, ctl, new_binary, mb, memcpy_bw = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
VALUE = 100 * 1024

def connect():
    for _ in range(200):
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=60)
        except OSError:
            time.sleep(0.05)
    sys.exit("memcached did not start")

def value(i):
    head = b"v%08d" % i
    return head + bytes([i % 251]) * (VALUE - len(head))

s = connect()
n = mb * 1024 * 1024 // VALUE
batch = 32
for start in range(0, n, batch):
    keys = range(start, min(n, start + batch))
    s.sendall(b"".join(b"set k%d 0 0 %d noreply\r\n%s\r\n" % (i, VALUE, value(i)) for i in keys))
s.sendall(b"mn\r\n")
got = b""
while b"MN\r\n" not in got:
    got += s.recv(65536)

r = subprocess.run([ctl, "update", pid, new_binary, "--json", "--no-profile"], capture_output=True, text=True, timeout=600)
if r.returncode != 0:
    sys.exit("update failed: " + r.stderr)
rep = json.loads(r.stdout)
c = connect()
f = c.makefile("rb")
bad = 0
for i in range(n):
    c.sendall(b"get k%d\r\n" % i)
    line = f.readline()
    if not line.startswith(b"VALUE"):
        bad += 1
        continue
    data = f.read(int(line.split()[3]) + 2)[:-2]
    f.readline()  # END
    bad += data != value(i)
ph = {p["phase"]: p["millis"] for p in rep["phases"]}
print("phases: " + ", ".join(f"{k} {v:.1f}" for k, v in ph.items()), file=sys.stderr)
state_ms = ph.get("checkpoint", 0) + ph.get("transfer", 0)
bw = float(subprocess.check_output([memcpy_bw, str(rep["bytes"])]).decode())
rate = rep["bytes"] / (state_ms / 1e3) / 1e6
print(f"{mb} MB of values ({n} items, {bad} wrong after the update): {rep['bytes'] / 1e6:.0f} MB carried, "
      f"checkpoint {ph.get('checkpoint', 0):.1f} ms + transfer {ph.get('transfer', 0):.1f} ms; "
      f"downtime {rep['downtime_ms']:.1f} ms; rate {rate:.0f} MB/s vs memcpy {bw:.0f} MB/s: ratio {rate / bw:.2f}; "
      f"with the image's pages allocated before the stop (prepare {ph.get('prepare', 0):.1f} ms) counted too: "
      f"ratio {rep['bytes'] / ((state_ms + ph.get('prepare', 0)) / 1e3) / 1e6 / bw:.2f}")
subprocess.run(["kill", str(rep["new_pid"])])
sys.exit(1 if bad else 0)

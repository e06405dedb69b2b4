#!/usr/bin/env python3
"""Demo client: fills the server, keeps its connection open across a live
update, then checks every key, counter and setting survived."""
import json, socket, subprocess, sys, time

port, ctl, pid, new_binary = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

for _ in range(100):
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit("demo: server did not start")
f = sock.makefile("rw")

def q(cmd):
    f.write(cmd + "\n"); f.flush()
    return f.readline().strip()

N = 1000
for i in range(N):
    assert q(f"SET key{i} value-{i}-" + "x" * (i % 50)) == "OK"
assert q("CONFIG maxkeys 5000") == "OK"
before = q("STATS")
print("before:", before, "| keys:", q("COUNT"))

print(f"== mcr-ctl update {pid} {new_binary}   (client connection stays open)")
r = subprocess.run([ctl, "update", pid, new_binary, "--json"], capture_output=True, text=True)
if r.returncode != 0:
    sys.exit("demo: update failed: " + r.stderr.strip())
report = json.loads(r.stdout)
print(f"updated pid {report['old_pid']} -> {report['new_pid']}: downtime {report['downtime_ms']:.1f} ms, "
      f"{report['objects_precise']} objects precise ({report['objects_moved']} moved to the new layout), "
      f"{report['objects_conservative']} conservative, {report['globals']} globals")
for p in report["phases"]:
    print(f"   {p['phase']:<16} {p['millis']:8.2f} ms")

after = q("STATS")
print("after: ", after, "| keys:", q("COUNT"))
bad = [i for i in range(N) if q(f"GET key{i}") != f"VALUE value-{i}-" + "x" * (i % 50)]
assert not bad, f"lost keys: {bad[:10]}"
assert after.startswith("version=2"), after
assert "maxkeys=5000" in after, "run-time setting lost"
old_req = int(before.split("requests=")[1].split()[0])
new_req = int(after.split("requests=")[1].split()[0])
assert new_req == old_req + 2, (old_req, new_req)
print(f"OK: all {N} keys, the request counter, the run-time setting and the connection survived the update")
subprocess.run(["kill", str(report["new_pid"])])

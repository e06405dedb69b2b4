#!/usr/bin/env python3
"""One real request to a server on 127.0.0.1, with bounded timeouts.

usage: probe.py PROTO PORT [TOKEN]
  memcached  set mcr_smoke=TOKEN, get it back
  redis      PING (+PONG), SET mcr_smoke TOKEN, GET it back
  http       GET /index.html, body must contain TOKEN
  ftp        220 banner, USER anonymous (331), PASS (230), PWD (257), QUIT (221)
Exit 0 and one line on stdout when the answer is right; exit 1 and the
reason on stderr otherwise. Loopback only.
"""
import socket
import sys
import time

HOST = "127.0.0.1"
TIMEOUT = 10.0


def connect(port):
    s = socket.create_connection((HOST, port), timeout=TIMEOUT)
    s.settimeout(TIMEOUT)
    return s


def read_until(s, pred, limit=1 << 20):
    buf = b""
    deadline = time.monotonic() + TIMEOUT
    while not pred(buf):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timeout; got so far: {buf[:200]!r}")
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError(f"connection closed; got: {buf[:200]!r}")
        buf += chunk
        if len(buf) > limit:
            raise RuntimeError("answer too long")
    return buf


def memcached(port, token):
    val = token.encode()
    with connect(port) as s:
        s.sendall(b"set mcr_smoke 0 0 %d\r\n%s\r\n" % (len(val), val))
        r = read_until(s, lambda b: b.endswith(b"\r\n"))
        if r != b"STORED\r\n":
            raise RuntimeError(f"set: expected STORED, got {r!r}")
        s.sendall(b"get mcr_smoke\r\n")
        r = read_until(s, lambda b: b.endswith(b"END\r\n"))
        want = b"VALUE mcr_smoke 0 %d\r\n%s\r\nEND\r\n" % (len(val), val)
        if r != want:
            raise RuntimeError(f"get: expected {want!r}, got {r!r}")
    return f"set/get ok ({token})"


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def redis(port, token):
    with connect(port) as s:
        s.sendall(resp("PING"))
        r = read_until(s, lambda b: b.endswith(b"\r\n"))
        if r != b"+PONG\r\n":
            raise RuntimeError(f"PING: expected +PONG, got {r!r}")
        s.sendall(resp("SET", "mcr_smoke", token))
        r = read_until(s, lambda b: b.endswith(b"\r\n"))
        if r != b"+OK\r\n":
            raise RuntimeError(f"SET: expected +OK, got {r!r}")
        s.sendall(resp("GET", "mcr_smoke"))
        want = b"$%d\r\n%s\r\n" % (len(token), token.encode())
        r = read_until(s, lambda b: len(b) >= len(want) or b.startswith(b"-"))
        if r != want:
            raise RuntimeError(f"GET: expected {want!r}, got {r!r}")
    return "PING/SET/GET ok"


def http(port, token):
    with connect(port) as s:
        s.sendall(b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"User-Agent: mcr-smoke\r\nConnection: close\r\n\r\n")
        buf = b""
        deadline = time.monotonic() + TIMEOUT
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError("timeout reading HTTP answer")
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if not status.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"expected HTTP/1.1 200, got {status!r}")
    if token.encode() not in body:
        raise RuntimeError(f"body lacks the token: {body[:200]!r}")
    server = [l for l in head.split(b"\r\n") if l.lower().startswith(b"server:")]
    return f"{status.decode()} ({server[0].decode() if server else 'no Server header'})"


def ftp(port, token):
    del token
    with connect(port) as s:
        f = s.makefile("rb")

        def reply():
            # Multi-line replies: "NNN-..." ... "NNN ...".
            line = f.readline()
            if not line:
                raise RuntimeError("connection closed")
            code = line[:3]
            if line[3:4] == b"-":
                while True:
                    l2 = f.readline()
                    if not l2:
                        raise RuntimeError("connection closed")
                    if l2[:3] == code and l2[3:4] == b" ":
                        break
            return line.decode(errors="replace").rstrip()

        def expect(code, what):
            try:
                r = reply()
            except RuntimeError as e:
                raise RuntimeError(f"{what}: {e}") from None
            if not r.startswith(code):
                raise RuntimeError(f"{what}: expected {code}, got {r!r}")
            return r

        banner = expect("220", "banner")
        s.sendall(b"USER anonymous\r\n")
        expect("331", "USER anonymous")
        s.sendall(b"PASS mcr@example.invalid\r\n")
        expect("230", "PASS")
        s.sendall(b"PWD\r\n")
        expect("257", "PWD")
        s.sendall(b"QUIT\r\n")
        expect("221", "QUIT")
    return f"banner {banner!r}, anonymous login ok"


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    proto, port = sys.argv[1], int(sys.argv[2])
    token = sys.argv[3] if len(sys.argv) > 3 else "mcr-smoke"
    fn = {"memcached": memcached, "redis": redis, "http": http, "ftp": ftp}.get(proto)
    if fn is None:
        print(f"unknown protocol {proto}", file=sys.stderr)
        return 2
    try:
        print(fn(port, token))
    except (OSError, RuntimeError) as e:
        print(f"{proto} on {HOST}:{port}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

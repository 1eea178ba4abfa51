#!/usr/bin/env python3
"""A normal client's latency while 20,000 idle or slow connections are open (issue 18, item 3).

For each server in turn -- `hylab serve`, `hylab gateway` and HAProxy (the peer), each in
front of the same upstream -- two helper processes open IDLE connections between them
(10,000 each: the hard limit of open files here is 20,000 per process) and keep them open
without sending a byte ("idle"), or after sending the start of a request head and nothing
more ("slow", a slowloris client). Then a client makes REQUESTS requests one after another, each on a
new connection (the hard case: the server must accept it past the idle ones), and the time
from connect to the last byte of the answer is recorded. Reported: p50, p99, max, failures,
and how many of the idle connections the server closed to make room.

Usage: bench/http/idle.py [HYLAB_BINARY] [IDLE] [REQUESTS]
"""
import json
import multiprocessing
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_for(cond, seconds=20.0, what="condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise SystemExit(f"error: timed out waiting for {what}")


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


SLOW_START = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Slow: "


def hold_idle(port, count, slow, ready, stop, result):
    """Opens `count` connections without sending anything; reports how many connected and,
    at the end, how many the server had closed."""
    raise_nofile()
    socks = []
    sel = selectors.DefaultSelector()
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
        sel.register(s, selectors.EVENT_WRITE)
    connected = 0
    deadline = time.monotonic() + 30
    pending = len(socks)
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            sel.unregister(key.fileobj)
            pending -= 1
            if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                connected += 1
                if slow:
                    try:
                        key.fileobj.send(SLOW_START)
                    except OSError:
                        pass
    ready.put(connected)
    stop.wait()
    closed = 0
    for s in socks:
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    result.put(closed)


def one_request(port, path, host_header):
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    ok = data.startswith(b"HTTP/1.1 200")
    return time.perf_counter() - t0, ok


def measure(name, port, path, idle, requests, slow=False):
    name = f"{name} ({'slow' if slow else 'idle'})"
    ready, result = multiprocessing.Queue(), multiprocessing.Queue()
    stop = multiprocessing.Event()
    halves = [idle // 2, idle - idle // 2]
    procs = [multiprocessing.Process(target=hold_idle, args=(port, n, slow, ready, stop, result))
             for n in halves if n > 0]
    for p in procs:
        p.start()
    connected = sum(ready.get(timeout=60) for _ in procs)
    # Warm up, then measure.
    for _ in range(20):
        one_request(port, path, "bench")
    lat, failures = [], 0
    for _ in range(requests):
        try:
            d, ok = one_request(port, path, "bench")
        except OSError:
            d, ok = 5.0, False
        lat.append(d)
        failures += 0 if ok else 1
    stop.set()
    closed = sum(result.get(timeout=60) for _ in procs)
    for p in procs:
        p.join()
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
    row = {"server": name, "idle_open": connected, "idle_closed_by_server": closed,
           "requests": requests, "failures": failures, "p50_ms": round(pct(0.50), 3),
           "p99_ms": round(pct(0.99), 3), "max_ms": round(lat[-1] * 1000, 3)}
    print(f"{name:21} open {connected:6}  closed by server {closed:6}  "
          f"p50 {row['p50_ms']:7.3f} ms  p99 {row['p99_ms']:7.3f} ms  "
          f"max {row['max_ms']:8.3f} ms  failures {failures}", flush=True)
    return row


def main():
    hylab = os.path.realpath(sys.argv[1] if len(sys.argv) > 1 else "build/bench/src/cli/hylab")
    idle = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    requests = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    raise_nofile()
    tmp = tempfile.mkdtemp(prefix="hylab-idle-")
    procs = []
    try:
        serve_port, gw_port, gw_admin, ha_port = free_port(), free_port(), free_port(), free_port()
        with open(f"{tmp}/hylab.yaml", "w") as f:
            f.write(f"""lab:
  gpus: [{{model: RTX4090, count: 1}}]
server:
  listen: 127.0.0.1:{serve_port}
  state_dir: {tmp}/state
gateway:
  listen: 127.0.0.1:{gw_port}
  admin: 127.0.0.1:{gw_admin}
  threads: 1
  local: [{{name: serve, url: "http://127.0.0.1:{serve_port}"}}]
""")
        log = open(f"{tmp}/serve.log", "w")
        procs.append(subprocess.Popen([hylab, "--config", f"{tmp}/hylab.yaml", "serve"],
                                      stdout=log, stderr=log))
        wait_for(lambda: listening(serve_port), what="hylab serve")
        glog = open(f"{tmp}/gateway.log", "w")
        procs.append(subprocess.Popen([hylab, "gateway", "--config", f"{tmp}/hylab.yaml"],
                                      stdout=glog, stderr=glog))
        wait_for(lambda: listening(gw_port), what="hylab gateway")
        # Every server listens before the first idle connection: 20,000 of them take most of
        # the ephemeral ports, and a port picked later could already be in use.
        has_haproxy = shutil.which("haproxy") is not None
        if has_haproxy:
            with open(f"{tmp}/haproxy.cfg", "w") as f:
                f.write(f"""global
  nbthread 1
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:{ha_port}
  default_backend local
backend local
  server s1 127.0.0.1:{serve_port}
""")
            hlog = open(f"{tmp}/haproxy.log", "w")
            procs.append(subprocess.Popen(["haproxy", "-f", f"{tmp}/haproxy.cfg", "-db"],
                                          stdout=hlog, stderr=hlog))
            wait_for(lambda: listening(ha_port), what="haproxy")
        rows = []
        for slow in (False, True):
            rows.append(measure("hylab serve", serve_port, "/healthz", idle, requests, slow))
            rows.append(measure("hylab gateway", gw_port, "/healthz", idle, requests, slow))
            if has_haproxy:
                rows.append(measure("haproxy", ha_port, "/healthz", idle, requests, slow))
        print(json.dumps(rows))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

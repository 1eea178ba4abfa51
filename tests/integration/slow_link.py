#!/usr/bin/env python3
"""An HTTP/1.1 proxy in front of an S3 endpoint that behaves like a far one: each
connection's response bodies are paced to --rate bytes a second (one connection is the
limit, as to a cloud region). Records one JSON line per request (method, path, Range, the
status it answered) and can fail requests once: --fail-ranged N answers the first N
requests that carry a Range header with 503 SlowDown (S3's throttling), after
--fail-delay-ms (while the other ranges arrive). --delay-continued-list-ms holds every
listing request after the first (those with a continuation-token) that long.

Keep-alive; one thread per client connection, one upstream connection each. Bodies of
requests are passed through by Content-Length (hylab's requests have no chunked bodies).
"""
import argparse
import json
import os
import socket
import threading
import time

args = None
lock = threading.Lock()
failed = 0


def read_head(f):
    lines = []
    while True:
        line = f.readline(65536)
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            return lines
        lines.append(line.decode("latin-1").rstrip("\r\n"))


def header(lines, name):
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == name:
            return v.strip()
    return ""


def record(entry):
    with lock, open(args.record, "a") as out:
        out.write(json.dumps(entry) + "\n")


def paced_copy(src, dst, n):
    start, sent = time.monotonic(), 0
    while sent < n:
        chunk = src.read(min(65536, n - sent))
        if not chunk:
            raise ConnectionError("upstream closed")
        dst.sendall(chunk)
        sent += len(chunk)
        ahead = sent / args.rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)


def serve(client):
    global failed
    up = socket.create_connection(("127.0.0.1", args.upstream))
    cf, uf = client.makefile("rb"), up.makefile("rb")
    try:
        while True:
            head = read_head(cf)
            if head is None:
                return
            method, path = head[0].split(" ")[:2]
            body = cf.read(int(header(head, "content-length") or 0))
            rng = header(head, "range")
            if "continuation-token=" in path:
                time.sleep(args.delay_continued_list_ms / 1000)
            with lock:
                fail = bool(rng) and failed < args.fail_ranged
                failed += fail
            if fail:
                time.sleep(args.fail_delay_ms / 1000)
                msg = b"<Error><Code>SlowDown</Code><Message>Please reduce</Message></Error>"
                client.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Length: %d\r\n\r\n%s"
                               % (len(msg), msg))
                record({"method": method, "path": path, "range": rng, "status": 503})
                continue
            up.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            rhead = read_head(uf)
            if rhead is None:
                return
            status = int(rhead[0].split(" ")[1])
            record({"method": method, "path": path, "range": rng, "status": status})
            client.sendall(("\r\n".join(rhead) + "\r\n\r\n").encode("latin-1"))
            length = int(header(rhead, "content-length") or 0)
            if method != "HEAD" and status not in (204, 304):
                paced_copy(uf, client, length)
    except (ConnectionError, OSError, ValueError, IndexError):
        pass  # the client stopped reading (a stream stopped at its end) or went away
    finally:
        client.close()
        up.close()


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", type=int, required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--fail-ranged", type=int, default=0)
    p.add_argument("--fail-delay-ms", type=float, default=0)
    p.add_argument("--delay-continued-list-ms", type=float, default=0)
    args = p.parse_args()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(srv.getsockname()[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A small upstream for the gateway tests: answers every request with JSON naming itself
and records what it received (one JSON line per request). HTTP/1.1 with keep-alive, one
thread per connection. Behaviours the tests switch on:

  --hold-file F          hold each request while F exists (the test controls capacity)
  --status N             answer with this status (--retry-after S adds Retry-After)
  --latency-ms B         answer after B ms, plus --per-inflight-ms K for each request in
                         flight (latency that degrades with load, for the adaptive limit)
  --sse                  requests with "stream": true get an SSE stream: a first chunk,
                         then (while --hold-after-first F exists) nothing, then two more,
                         a last chunk with usage, and [DONE]
  --first-token-delay-ms D   SSE: headers at once, the first chunk after D ms
  --die-after-first      SSE: the process dies after the first chunk
  --health-file F        GET /health answers 200 while F exists, else 500 (not recorded)
  --tls-cert C --tls-key K   serve HTTPS
  --sensitive RULES.json each record gets "sensitive": what of the rules it holds, in any
                         form (see sensitive_hits): the privacy suite's cloud recorder
"""
import argparse
import base64
import gzip
import json
import os
import re
import ssl
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = None
rules = None
lock = threading.Lock()
inflight = 0


def decodings(data):
    """Every way an upstream could read these bytes: as sent, and undone once more by gzip
    (all members), zlib, raw deflate, UTF-16/32, JSON escapes, percent-escapes and '+', and
    base64 (Basic credentials)."""
    out = []
    for f in (gzip.decompress, lambda d: zlib_any(d, 15 + 32), lambda d: zlib_any(d, -15)):
        try:
            out.append(f(data))
        except Exception:
            pass
    for enc in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"):
        try:
            out.append(data.decode(enc).encode("utf-8", "replace"))
        except Exception:
            pass
    out.append(data.replace(b"\0", b""))
    text = data.decode("utf-8", "replace")
    def json_escape(m):
        e = m.group(1)
        if e[0] == "u":
            return chr(int(e[1:], 16))
        return {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(e, e)
    out.append(re.sub(r"\\(u[0-9a-fA-F]{4}|.)", json_escape, text).encode("utf-8", "replace"))
    out.append(urllib.parse.unquote_to_bytes(data.replace(b"+", b" ")))
    for token in re.findall(rb"[A-Za-z0-9+/]{8,}={0,2}", data)[:16]:
        try:
            out.append(base64.b64decode(token + b"=" * (-len(token) % 4)))
        except Exception:
            pass
    return [d for d in out if d != data]


def zlib_any(data, wbits):
    d = zlib.decompressobj(wbits)
    out = d.decompress(data)
    while d.eof and d.unused_data:  # further members
        rest = d.unused_data
        d = zlib.decompressobj(wbits)
        out += d.decompress(rest)
    return out


def sensitive_hits(method, path, headers, body):
    """What of the rules a request holds: a pattern (regex) or secret in any decoding of its
    target, fields or body (three layers deep), a field named as a forbidden one in any
    case or with '_' for '-', a forbidden word in its decoded, lower-case path."""
    hits = []
    seen = set()
    def scan(where, data, depth):
        if data in seen or len(seen) > 256:
            return
        seen.add(data)
        low = data.lower()
        for p in rules.get("patterns", []):
            if re.search(p.encode(), data):
                hits.append(f"pattern {p} in {where}")
        for s in rules.get("secrets", []):
            if s.lower().encode() in low:
                hits.append(f"secret in {where}")
        if depth < 3:
            for d in decodings(data):
                scan(where, d, depth + 1)
    scan("the target", path.encode("latin-1", "replace"), 0)
    p = path
    for _ in range(3):
        p = urllib.parse.unquote(p)
    p = p.lower().replace("\\", "/")
    for w in rules.get("path_words", []):
        if w in p:
            hits.append(f"path word {w}")
    names = [n.lower().replace("_", "-") for n in rules.get("header_names", [])]
    for k, v in headers:
        if k.lower().replace("_", "-") in names:
            hits.append(f"field {k}")
        scan(f"field {k}", v.encode("latin-1", "replace"), 0)
    scan("the body", body, 0)
    return sorted(set(hits))


def wait_while(path):
    while path and os.path.exists(path):
        time.sleep(0.005)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: no delayed-ACK stall

    def log_message(self, *a):
        pass

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def event(self, obj):
        self.chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

    def stream(self, model):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        time.sleep(args.first_token_delay_ms / 1000)
        base = {"object": "chat.completion.chunk", "model": model, "upstream": args.name}
        self.event(dict(base, choices=[{"delta": {"content": "Hel"}}], usage=None))
        if args.die_after_first:
            os._exit(1)
        wait_while(args.hold_after_first)
        self.event(dict(base, choices=[{"delta": {"content": "lo"}}], usage=None))
        self.event(dict(base, choices=[{"delta": {}, "finish_reason": "stop"}], usage=None))
        self.event(dict(base, choices=[], usage={"prompt_tokens": 7, "completion_tokens": 3,
                                                  "total_tokens": 10}))
        self.chunk(b"data: [DONE]\n\n")
        self.chunk(b"")

    def handle_any(self):
        global inflight
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if args.health_file and self.path == "/health":
            ok = os.path.exists(args.health_file)
            self.send_response(200 if ok else 500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        entry = {"method": self.command, "path": self.path,
                 "headers": {k.lower(): v for k, v in self.headers.items()},
                 "body": body.decode("utf-8", "replace")}
        if rules is not None:
            entry["sensitive"] = sensitive_hits(self.command, self.path,
                                                self.headers.items(), body)
        with lock:
            inflight += 1
            now = inflight
            with open(args.record, "a") as f:
                f.write(json.dumps(entry) + "\n")
        try:
            self.answer(body, now)
        finally:
            with lock:
                inflight -= 1

    def answer(self, body, now):
        wait_while(args.hold_file)
        delay = args.latency_ms + args.per_inflight_ms * now
        if delay:
            time.sleep(delay / 1000)
        reply = {"upstream": args.name, "path": self.path}
        request = None
        try:
            request = json.loads(body)
            reply["model"] = request.get("model")
            # An OpenAI-style usage block, as vLLM and the cloud APIs return it.
            reply["usage"] = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
        except (ValueError, AttributeError):
            pass
        if args.sse and isinstance(request, dict) and request.get("stream"):
            return self.stream(request.get("model"))
        out = json.dumps(reply).encode()
        self.send_response(args.status)
        if args.retry_after:
            self.send_header("Retry-After", str(args.retry_after))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--hold-file", default="")
    p.add_argument("--status", type=int, default=200)
    p.add_argument("--retry-after", type=int, default=0)
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument("--per-inflight-ms", type=float, default=0)
    p.add_argument("--sse", action="store_true")
    p.add_argument("--hold-after-first", default="")
    p.add_argument("--first-token-delay-ms", type=float, default=0)
    p.add_argument("--die-after-first", action="store_true")
    p.add_argument("--health-file", default="")
    p.add_argument("--tls-cert", default="")
    p.add_argument("--tls-key", default="")
    p.add_argument("--sensitive", default="")
    args = p.parse_args()
    global rules
    if args.sensitive:
        with open(args.sensitive) as f:
            rules = json.load(f)
    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()

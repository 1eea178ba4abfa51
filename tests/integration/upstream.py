#!/usr/bin/env python3
"""A small upstream for the gateway tests: answers every request with JSON naming itself,
after an optional delay or a release file, and records what it received (one JSON line
per request). HTTP/1.1 with keep-alive, one thread per connection.

upstream.py --name NAME --port-file FILE --record FILE [--hold-file FILE] [--status N]
"""
import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = None
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with lock:
            with open(args.record, "a") as f:
                f.write(json.dumps({"method": self.command, "path": self.path,
                                    "headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body": body.decode("utf-8", "replace")}) + "\n")
        # Hold the request while the hold file exists: the test controls the capacity.
        while args.hold_file and os.path.exists(args.hold_file):
            time.sleep(0.005)
        reply = {"upstream": args.name, "path": self.path}
        try:
            reply["model"] = json.loads(body).get("model")
            # An OpenAI-style usage block, as vLLM and the cloud APIs return it.
            reply["usage"] = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
        except (ValueError, AttributeError):
            pass
        out = json.dumps(reply).encode()
        self.send_response(args.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--hold-file", default="")
    p.add_argument("--status", type=int, default=200)
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()

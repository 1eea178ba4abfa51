"""Shared by the benchmarks that drive `hylab serve`: waiting on a condition with a deadline,
and a client for a server started with a throw-away state directory."""
import http.client
import json
import os
import time


def wait_for(cond, seconds=30, step=0.005):
    deadline = time.time() + seconds
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise SystemExit("timed out")


def connect(state_dir):
    """Waits for the server in state_dir; returns (url, token, call) where
    call(method, path, body=None) -> (status, body bytes) over one keep-alive connection."""
    info_path = os.path.join(state_dir, "server.json")

    def info():
        try:
            with open(info_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    url = wait_for(info)["url"]
    host, port = url.split("//")[1].split(":")
    with open(os.path.join(state_dir, "token")) as f:
        token = f.read().strip()
    auth = {"Authorization": "Bearer " + token}
    conn = http.client.HTTPConnection(host, int(port))

    def call(method, path, body=None):
        conn.request(method, path, body=body, headers=auth)
        r = conn.getresponse()
        return r.status, r.read()

    return url, token, call

#!/usr/bin/env python3
"""Control-plane benchmarks: submit-to-process-start latency (p50, p99), GET /v1/jobs/{id}
requests per second with wrk, and `hylab jobs` with 10,000 jobs in the store.

Usage: bench/serve_bench.py [HYLAB_BINARY]   (default build/bench/src/cli/hylab; `make bench`)
Starts its own `hylab serve` on 127.0.0.1 with a throw-away state directory and stops it.
"""
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_client import connect, wait_for  # noqa: E402

HYLAB = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/bench/src/cli/hylab")


def main():
    tmp = tempfile.mkdtemp(prefix="hylab-bench-")
    cfg = os.path.join(tmp, "hylab.yaml")
    with open(cfg, "w") as f:
        f.write("lab:\n  gpus: [{model: RTX4090, count: 2}]\n  cpus: 16\n"
                "server:\n  listen: 127.0.0.1:0\n  state_dir: state\n")
    log = open(os.path.join(tmp, "serve.log"), "w")
    serve = subprocess.Popen([HYLAB, "serve", "--config", cfg, "--no-nvml"], stdout=log, stderr=log)
    try:
        url, token, call = connect(os.path.join(tmp, "state"))

        # 1. Submit-to-process-start: the job's first command writes a timestamp.
        latencies = []
        marks = os.path.join(tmp, "marks")
        os.makedirs(marks)
        for i in range(200):
            mark = os.path.join(marks, str(i))
            spec = f"category: development\nrun: date +%s.%N > {mark}\n"
            t0 = time.time()
            status, body = call("POST", "/v1/jobs", spec)
            assert status == 201, body
            t1 = float(wait_for(lambda: open(mark).read().strip() if os.path.exists(mark) and
                                os.path.getsize(mark) > 0 else None))
            latencies.append((t1 - t0) * 1000)
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(f"submit-to-start: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(latencies)} jobs "
              f"(POST /v1/jobs until the job's first command runs)")

        # 2. GET /v1/jobs/{id} with wrk on one connection per thread.
        if shutil.which("wrk"):
            out = subprocess.run(["wrk", "-t1", "-c16", "-d10s", "-H", "Authorization: Bearer " + token,
                                  url + "/v1/jobs/100"], capture_output=True, text=True).stdout
            rps = [l for l in out.splitlines() if "Requests/sec" in l]
            lat = [l for l in out.splitlines() if l.strip().startswith("Latency")]
            print(f"GET /v1/jobs/{{id}} (wrk -t1 -c16 -d10s): {rps[0].split()[-1]} req/s, "
                  f"latency avg {lat[0].split()[1]}")
        else:
            print("wrk not installed: skipped the GET benchmark")

        # 3. 10,000 jobs in the store (cloud jobs stay pending: no processes), then `hylab jobs`.
        spec = "category: training\nresources: {accelerators: H100:8}\nrun: train\n"
        t0 = time.time()
        for i in range(10000 - 200):
            status, body = call("POST", "/v1/jobs", spec)
            assert status == 201, body
        fill = time.time() - t0
        print(f"submitted 9,800 more jobs in {fill:.1f} s ({9800 / fill:.0f} submissions/s, one client)")
        env = dict(os.environ, HYLAB_URL=url, HYLAB_TOKEN=token)
        for args, label in ((["jobs"], "hylab jobs (first 50)"), (["jobs", "--all"], "hylab jobs --all (10,000)"),
                            (["jobs", "--all", "-o", "json"], "hylab jobs --all -o json")):
            runs = []
            for _ in range(5):
                t0 = time.time()
                r = subprocess.run([HYLAB] + args, env=env, capture_output=True)
                runs.append(time.time() - t0)
                assert r.returncode == 0, r.stderr
            print(f"{label}: median {statistics.median(runs) * 1000:.0f} ms over 5 runs")
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

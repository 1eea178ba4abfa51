#!/usr/bin/env python3
"""Slurm dispatch benchmark, in one run on the test cluster (tests/slurm/cluster.sh):

  * submit-to-running through plain `sbatch` (polling `squeue` every 20 ms),
  * the same through `hylab serve` on a Slurm cloud target (POST /v1/jobs, polling the
    job's state every 5 ms), and the ratio of the two,
  * hylab's local dispatch (a lab job) against its Slurm dispatch.

Rounds are interleaved (sbatch, hylab on Slurm, hylab local, then again); each job is
cancelled and gone before the next starts. Prints p50 and p90 of each, in milliseconds.

Usage: bench/slurm/bench.py [HYLAB_BINARY] [ROUNDS]   (needs root or sudo for the cluster)
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from serve_client import connect, wait_for  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HYLAB = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/bench/src/cli/hylab")
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 15


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    tmp = tempfile.mkdtemp(prefix="hylab-slurm-bench-")
    cluster = os.path.join(tmp, "cluster")
    start = subprocess.run([os.path.join(ROOT, "tests/slurm/cluster.sh"), "start", cluster],
                           capture_output=True, text=True, timeout=120)
    if start.returncode != 0:
        raise SystemExit("the test cluster did not start: " + start.stdout + start.stderr)
    conf = os.path.join(cluster, "slurm.conf")
    env = dict(os.environ, SLURM_CONF=conf)
    serve = None
    try:
        cfg = os.path.join(tmp, "hylab.yaml")
        with open(cfg, "w") as f:
            f.write("lab:\n  gpus: [{model: RTX4090, count: 2}]\n  cpus: 16\n"
                    "server:\n  listen: 127.0.0.1:0\n  state_dir: state\n  cancel_grace: 1s\n"
                    "clouds:\n  - {name: bench, partition: cloud, instance: p5.48xlarge, "
                    "env: {SLURM_CONF: %s}}\n" % conf)
        log = open(os.path.join(tmp, "serve.log"), "w")
        serve = subprocess.Popen([HYLAB, "serve", "--config", cfg, "--no-nvml"], stdout=log,
                                 stderr=log)

        _, _, raw_call = connect(os.path.join(tmp, "state"))

        def call(method, path, body=None):
            status, data = raw_call(method, path, body)
            return status, json.loads(data or b"null")

        script = os.path.join(tmp, "job.sbatch")
        with open(script, "w") as f:
            f.write("#!/bin/bash\n#SBATCH --partition=cloud\n#SBATCH --gpus-per-node=8\n"
                    "#SBATCH --output=/dev/null\nsleep 60\n")

        def squeue_state(jid):
            r = subprocess.run(["squeue", "-h", "-j", jid, "-o", "%T"], env=env,
                               capture_output=True, text=True)
            return r.stdout.strip()

        def plain_sbatch():
            t0 = time.perf_counter()
            out = subprocess.run(["sbatch", "--parsable", script], env=env, check=True,
                                 capture_output=True, text=True).stdout
            jid = out.strip().split(";")[0]
            # Every 20 ms: polling squeue (a process and an RPC each) much faster than that
            # loads the controller and this 2-core machine and slows what it measures.
            wait_for(lambda: squeue_state(jid) == "RUNNING", step=0.02)
            dt = time.perf_counter() - t0
            subprocess.run(["scancel", jid], env=env, check=True)
            wait_for(lambda: squeue_state(jid) in ("", "COMPLETED", "CANCELLED"), step=0.02)
            return dt

        def through_hylab(spec):
            t0 = time.perf_counter()
            status, job = call("POST", "/v1/jobs", spec)
            assert status == 201, job
            jid = job["id"]
            wait_for(lambda: call("GET", "/v1/jobs/%d" % jid)[1]["state"] == "running")
            dt = time.perf_counter() - t0
            call("POST", "/v1/jobs/%d/cancel" % jid)
            wait_for(lambda: call("GET", "/v1/jobs/%d" % jid)[1]["state"] == "cancelled",
                     step=0.02)
            # Gone from the node too (not still completing), as the plain path waits for.
            remote = call("GET", "/v1/jobs/%d" % jid)[1].get("remote_id")
            if remote:
                wait_for(lambda: squeue_state(remote) in ("", "COMPLETED", "CANCELLED"),
                         step=0.02)
            return dt, job["environment"]

        cloud_spec = "name: b\nresources: {accelerators: H100:8}\nrun: sleep 60\n"
        local_spec = "name: l\ncategory: development\nrun: sleep 60\n"
        times = {"sbatch": [], "hylab-slurm": [], "hylab-local": []}
        for _ in range(ROUNDS):
            times["sbatch"].append(plain_sbatch())
            dt, where = through_hylab(cloud_spec)
            assert where == "cloud", where
            times["hylab-slurm"].append(dt)
            dt, where = through_hylab(local_spec)
            assert where == "local", where
            times["hylab-local"].append(dt)
        print("Slurm dispatch, submit to running (%d interleaved rounds, ms)" % ROUNDS)
        print("%-34s %8s %8s" % ("", "p50", "p90"))
        for name, label in (("sbatch", "plain sbatch -> squeue RUNNING"),
                            ("hylab-slurm", "hylab serve -> Slurm target"),
                            ("hylab-local", "hylab serve -> lab (local)")):
            xs = times[name]
            print("%-34s %8.1f %8.1f" % (label, 1000 * statistics.median(xs),
                                          1000 * pct(xs, 90)))
        m = {k: statistics.median(v) for k, v in times.items()}
        print("ratio hylab-on-Slurm / sbatch (p50): %.2fx the time" % (m["hylab-slurm"] / m["sbatch"]))
        print("ratio hylab Slurm / hylab local dispatch (p50): %.2fx the time"
              % (m["hylab-slurm"] / m["hylab-local"]))
    finally:
        if serve:
            serve.terminate()
            serve.wait(timeout=30)
        subprocess.run([os.path.join(ROOT, "tests/slurm/cluster.sh"), "stop", cluster],
                       capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

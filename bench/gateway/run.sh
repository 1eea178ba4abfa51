#!/usr/bin/env bash
# Gateway benchmark: wrk through hylab gateway, HAProxy 2.6 and nginx 1.22, each set up for
# the same local-first routing with overflow to a second upstream, against the same nginx
# upstreams, with the same CPU pinning (proxy on CPU 0; upstream and wrk on CPU 1), in one
# run; plus wrk straight to the upstream for the latency the proxy adds.
# Two more rows: hylab with busy_poll_us: 0 (no polling near saturation) and HAProxy with
# its busy-polling (started only for its own runs: it spins even when idle).
# Each target is measured ROUNDS times, interleaved (direct first, then the proxies in an
# order that turns each round), and the median of each figure is reported, with each round's
# own hylab/HAProxy ratio: this machine's speed drifts by 20 % within minutes, which would
# otherwise favour whichever target ran in a fast moment.
# With HYLAB_BEFORE=PATH, a second hylab binary (an earlier build, say) gets a row of its own,
# "hylab-before", measured in the same rounds: before and after a change, side by side.
# Usage: [HYLAB_BEFORE=PATH] bench/gateway/run.sh [HYLAB_BINARY] [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
HYLAB=$(realpath "${1:-build/bench/src/cli/hylab}")
SECS=${2:-3}
ROUNDS=${3:-5}
CONNS=32
for tool in haproxy nginx wrk taskset; do
  command -v $tool >/dev/null || { echo "error: $tool is missing (make bench installs it)" >&2; exit 1; }
done
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); CLOUD=$(free_port); PH=$(free_port); PN=$(free_port); PHB=$(free_port)

wait_port() {
  for _ in $(seq 1 500); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.01; done
  echo "error: nothing listens on port $1" >&2; exit 1
}

# A chat completion as vLLM answers it, usage included (the gateway reads it).
COMPLETION='{"id":"cmpl-1","object":"chat.completion","model":"llama3.1-8b","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}'
cat > "$tmp/chat.lua" <<'LUA'
wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.body = '{"model":"llama3.1-8b","messages":[{"role":"user","content":"Hi"}],"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"
LUA

# The part every nginx config here shares: one worker, files under $tmp, keep-alive.
nginx_head() {  # name
  cat <<CONF
daemon off; worker_processes 1; pid $tmp/$1.pid; error_log $tmp/$1.err;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $tmp; proxy_temp_path $tmp; fastcgi_temp_path $tmp;
  uwsgi_temp_path $tmp; scgi_temp_path $tmp; keepalive_requests 1000000;
CONF
}

# Upstreams: one nginx worker answering a small JSON body on two ports (local and "cloud").
cat > "$tmp/upstream.conf" <<CONF
$(nginx_head upstream)
  server { listen 127.0.0.1:$UP; default_type application/json;
    location / { return 200 '{"upstream":"local"}'; }
    location /v1/chat/completions { return 200 '$COMPLETION'; } }
  server { listen 127.0.0.1:$CLOUD; default_type application/json;
    location / { return 200 '{"upstream":"cloud"}'; }
    location /v1/chat/completions { return 200 '$COMPLETION'; } }
}
CONF
taskset -c 1 nginx -c "$tmp/upstream.conf" -p "$tmp" & pids+=($!); PID_UP=$!
wait_port $UP

# hylab gateway: one thread, local first (64 slots), overflow to the second upstream.
cat > "$tmp/hylab.yaml" <<CONF
gateway:
  listen: 127.0.0.1:0
  admin: 127.0.0.1:0
  threads: 1
  local: [{name: local, url: "http://127.0.0.1:$UP", max_inflight: 64}]
  cloud: [{name: cloud, url: "http://127.0.0.1:$CLOUD", max_inflight: 1024}]
CONF
taskset -c 0 "$HYLAB" gateway --config "$tmp/hylab.yaml" --port-file "$tmp/gw.json" > "$tmp/gw.log" 2>&1 & pids+=($!); PID_HYLAB=$!
for _ in $(seq 1 500); do [[ -s $tmp/gw.json ]] && break; sleep 0.01; done
PG=$(python3 -c "import json;print(json.load(open('$tmp/gw.json'))['listen'])")
# The same without busy polling near saturation (gateway.busy_poll_us: 0), to show its share.
sed 's/^  threads: 1$/  threads: 1\n  busy_poll_us: 0/' "$tmp/hylab.yaml" > "$tmp/hylab-nospin.yaml"
taskset -c 0 "$HYLAB" gateway --config "$tmp/hylab-nospin.yaml" --port-file "$tmp/gwbp.json" > "$tmp/gwbp.log" 2>&1 & pids+=($!); PID_HYLAB_NOSPIN=$!
for _ in $(seq 1 500); do [[ -s $tmp/gwbp.json ]] && break; sleep 0.01; done
PGB=$(python3 -c "import json;print(json.load(open('$tmp/gwbp.json'))['listen'])")
if [[ -n ${HYLAB_BEFORE:-} ]]; then
  taskset -c 0 "$(realpath "$HYLAB_BEFORE")" gateway --config "$tmp/hylab.yaml" --port-file "$tmp/gwb4.json" > "$tmp/gwb4.log" 2>&1 & pids+=($!); PID_BEFORE=$!
  for _ in $(seq 1 500); do [[ -s $tmp/gwb4.json ]] && break; sleep 0.01; done
  PB4=$(python3 -c "import json;print(json.load(open('$tmp/gwb4.json'))['listen'])")
fi

# HAProxy: one thread, the same rule with connslots.
cat > "$tmp/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$PH
  use_backend cloud if { connslots(local) le 0 }
  default_backend local
backend local
  http-reuse always
  server l1 127.0.0.1:$UP maxconn 64
backend cloud
  http-reuse always
  server c1 127.0.0.1:$CLOUD
CONF
taskset -c 0 haproxy -f "$tmp/haproxy.cfg" -db > "$tmp/haproxy.log" 2>&1 & pids+=($!); PID_HAPROXY=$!
# HAProxy's busy-polling never sleeps, idle or not: it runs only for its own measurements,
# or it would take CPU 0 from the others.
sed -e "s/^  nbthread 1$/  nbthread 1\n  busy-polling/" -e "s/127.0.0.1:$PH$/127.0.0.1:$PHB/" \
  "$tmp/haproxy.cfg" > "$tmp/haproxy-bp.cfg"

# nginx as the proxy: one worker, max_conns on the local server, the cloud as backup.
cat > "$tmp/proxy.conf" <<CONF
$(nginx_head proxy)
  upstream pool { server 127.0.0.1:$UP max_conns=64; server 127.0.0.1:$CLOUD backup; keepalive 64; }
  server { listen 127.0.0.1:$PN;
    location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
taskset -c 0 nginx -c "$tmp/proxy.conf" -p "$tmp" & pids+=($!); PID_NGINX=$!
wait_port $PG; wait_port $PH; wait_port $PN; wait_port $PGB

# CPU time (clock ticks) of a process and its children: the proxy's own cost per request,
# which the shared upstream core does not blur.
cpu_ticks() {
  python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1]); total = 0
for p in os.listdir("/proc"):
    if not p.isdigit(): continue
    try: f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
    except OSError: continue
    if int(p) == root or int(f[1]) == root: total += int(f[11]) + int(f[12])
print(total)
PY
}
declare -A PIDS=([direct]=$PID_UP [hylab]=$PID_HYLAB [haproxy]=$PID_HAPROXY [nginx]=$PID_NGINX
  [hylab-nospin]=$PID_HYLAB_NOSPIN)
[[ -n ${HYLAB_BEFORE:-} ]] && PIDS[hylab-before]=$PID_BEFORE

run() {  # name port [wrk args] -> "rps p50_ms p99_ms cpu_us_per_request"
  local name=$1 port=$2; shift 2
  local before; before=$(cpu_ticks "${PIDS[$name]}")
  out=$(taskset -c 1 wrk -t1 -c$CONNS -d${SECS}s --latency "$@" "http://127.0.0.1:$port/v1/models")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  ms() { python3 -c "import sys; v=sys.argv[1]; u={'us':1e-3,'ms':1,'s':1e3}; n=v.rstrip('usm'); print(float(n)*u[v[len(n):]])" "$1"; }
  local after; after=$(cpu_ticks "${PIDS[$name]}")
  local total; total=$(awk '/requests in/ {print $1}' <<<"$out")
  local cpu; cpu=$(python3 -c "import os; print((int('$after')-int('$before'))/os.sysconf('SC_CLK_TCK')*1e6/int('$total'))")
  echo "$name $rps $(ms "$p50") $(ms "$p99") $cpu"
}

report() {  # title results...
  python3 - "$@" <<'PY'
import sys
print(sys.argv[1])
import statistics
runs = {}
by_round = {}
for r in sys.argv[2:]:
    rnd, name, *vals = r.split()
    runs.setdefault(name, []).append([float(x) for x in vals])
    by_round.setdefault(rnd, {})[name] = [float(x) for x in vals]
rows = {k: [statistics.median(col) for col in zip(*v)] for k, v in runs.items()}
print(f"median of {len(runs['hylab'])} interleaved runs each")
print(f"{'target':10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11}")
for name, (rps, p50, p99, cpu) in rows.items():
    print(f"{name:10} {rps:10.0f} {p50:8.3f} {p99:8.3f} {cpu:11.1f}")
h, a, n, d = rows["hylab"], rows["haproxy"], rows["nginx"], rows["direct"]
print(f"hylab/haproxy: {h[0]/a[0]:.2f}x req/s, p99 {h[2]/a[2]:.2f}x")
# Each round's own ratio (hylab and HAProxy measured next to each other), which the
# machine's drift between rounds does not move.
ratios = sorted(v["hylab"][0] / v["haproxy"][0] for v in by_round.values())
p99s = sorted(v["hylab"][2] / v["haproxy"][2] for v in by_round.values())
ahead = sum(1 for x in ratios if x >= 1)
print(f"  per round: req/s ratio median {statistics.median(ratios):.2f}x (range {ratios[0]:.2f}-{ratios[-1]:.2f}, "
      f"hylab ahead in {ahead} of {len(ratios)}), p99 ratio median {statistics.median(p99s):.2f}x")
print(f"hylab/nginx:   {h[0]/n[0]:.2f}x req/s, p99 {h[2]/n[2]:.2f}x")
print(f"proxy CPU per request: hylab {h[3]:.1f} us, haproxy {a[3]:.1f} us ({h[3]/a[3]:.2f}x), nginx {n[3]:.1f} us ({h[3]/n[3]:.2f}x)")
print(f"added over direct (p50): hylab {h[1]-d[1]:+.3f} ms, haproxy {a[1]-d[1]:+.3f} ms, nginx {n[1]-d[1]:+.3f} ms")
hn, ab = rows["hylab-nospin"], rows["haproxy-bp"]
bp = sorted(v["hylab"][0] / v["haproxy-bp"][0] for v in by_round.values())
print(f"hylab/haproxy-bp (HAProxy with busy-polling): {h[0]/ab[0]:.2f}x req/s (per round median "
      f"{statistics.median(bp):.2f}x), p99 {h[2]/ab[2]:.2f}x, CPU per request {h[3]/ab[3]:.2f}x")
print(f"hylab-nospin (busy_poll_us: 0)/haproxy: {hn[0]/a[0]:.2f}x req/s, p99 {hn[2]/a[2]:.2f}x, "
      f"CPU per request {hn[3]/a[3]:.2f}x")
if "hylab-before" in rows:
    b = rows["hylab-before"]
    after = sorted(v["hylab"][0] / v["hylab-before"][0] for v in by_round.values())
    bh = sorted(v["hylab-before"][0] / v["haproxy"][0] for v in by_round.values())
    print(f"hylab/hylab-before: {h[0]/b[0]:.2f}x req/s (per round median {statistics.median(after):.2f}x), "
          f"p99 {h[2]/b[2]:.2f}x, CPU per request {h[3]/b[3]:.2f}x")
    print(f"hylab-before/haproxy: {b[0]/a[0]:.2f}x req/s (per round median {statistics.median(bh):.2f}x), "
          f"p99 {b[2]/a[2]:.2f}x")
print()
PY
}

echo "wrk -t1 -c$CONNS -d${SECS}s x $ROUNDS rounds; proxy pinned to CPU 0, upstream and wrk to CPU 1"
measure() {  # title [wrk args]
  local title=$1; shift
  local results=()
  local order=(hylab haproxy nginx hylab-nospin haproxy-bp)
  declare -A port=([hylab]=$PG [haproxy]=$PH [nginx]=$PN [hylab-nospin]=$PGB [haproxy-bp]=$PHB)
  if [[ -n ${HYLAB_BEFORE:-} ]]; then order+=(hylab-before); port[hylab-before]=$PB4; fi
  local n=${#order[@]}
  for r in $(seq 1 "$ROUNDS"); do
    results+=("$r $(run direct $UP "$@")")
    # The proxies' order turns each round, so none always follows the same one.
    for i in $(seq 0 $((n - 1))); do
      local name=${order[$(((i + r) % n))]}
      if [[ $name == haproxy-bp ]]; then
        taskset -c 0 haproxy -f "$tmp/haproxy-bp.cfg" -db > "$tmp/haproxy-bp.log" 2>&1 &
        PIDS[haproxy-bp]=$!
        wait_port $PHB
        wrk -t1 -c$CONNS -d1s "http://127.0.0.1:$PHB/v1/models" > /dev/null  # warm up
      fi
      results+=("$r $(run "$name" "${port[$name]}" "$@")")
      if [[ $name == haproxy-bp ]]; then
        kill "${PIDS[haproxy-bp]}"
        wait "${PIDS[haproxy-bp]}" 2>/dev/null || true
      fi
    done
  done
  report "$title" "${results[@]}"
}
measure "GET /v1/models (plain proxying)"
measure "POST /v1/chat/completions (hylab reads usage and prices tokens)" -s "$tmp/chat.lua"

#!/usr/bin/env bash
# Gateway benchmark: wrk through hylab gateway, HAProxy 2.6 and nginx 1.22, each set up for
# the same local-first routing with overflow to a second upstream, against the same nginx
# upstreams, with the same CPU pinning (proxy on CPU 0; upstream and wrk on CPU 1), in one
# run; plus wrk straight to the upstream for the latency the proxy adds.
# Usage: bench/gateway/run.sh [HYLAB_BINARY] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
HYLAB=$(realpath "${1:-build/bench/src/cli/hylab}")
SECS=${2:-10}
CONNS=32
for tool in haproxy nginx wrk taskset; do
  command -v $tool >/dev/null || { echo "error: $tool is missing (make bench installs it)" >&2; exit 1; }
done
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); CLOUD=$(free_port); PH=$(free_port); PN=$(free_port)

wait_port() {
  for _ in $(seq 1 500); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.01; done
  echo "error: nothing listens on port $1" >&2; exit 1
}

# Upstreams: one nginx worker answering a small JSON body on two ports (local and "cloud").
cat > "$tmp/upstream.conf" <<CONF
daemon off; worker_processes 1; pid $tmp/upstream.pid; error_log $tmp/upstream.err;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $tmp; proxy_temp_path $tmp; fastcgi_temp_path $tmp;
  uwsgi_temp_path $tmp; scgi_temp_path $tmp; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { default_type application/json; return 200 '{"upstream":"local"}'; } }
  server { listen 127.0.0.1:$CLOUD; location / { default_type application/json; return 200 '{"upstream":"cloud"}'; } }
}
CONF
taskset -c 1 nginx -c "$tmp/upstream.conf" -p "$tmp" & pids+=($!)
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
taskset -c 0 "$HYLAB" gateway --config "$tmp/hylab.yaml" --port-file "$tmp/gw.json" > "$tmp/gw.log" 2>&1 & pids+=($!)
for _ in $(seq 1 500); do [[ -s $tmp/gw.json ]] && break; sleep 0.01; done
PG=$(python3 -c "import json;print(json.load(open('$tmp/gw.json'))['listen'])")

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
taskset -c 0 haproxy -f "$tmp/haproxy.cfg" -db > "$tmp/haproxy.log" 2>&1 & pids+=($!)

# nginx as the proxy: one worker, max_conns on the local server, the cloud as backup.
cat > "$tmp/proxy.conf" <<CONF
daemon off; worker_processes 1; pid $tmp/proxy.pid; error_log $tmp/proxy.err;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $tmp; proxy_temp_path $tmp; fastcgi_temp_path $tmp;
  uwsgi_temp_path $tmp; scgi_temp_path $tmp; keepalive_requests 1000000;
  upstream pool { server 127.0.0.1:$UP max_conns=64; server 127.0.0.1:$CLOUD backup; keepalive 64; }
  server { listen 127.0.0.1:$PN;
    location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
taskset -c 0 nginx -c "$tmp/proxy.conf" -p "$tmp" & pids+=($!)
wait_port $PG; wait_port $PH; wait_port $PN

run() {  # name port -> "rps p50_ms p99_ms"
  out=$(taskset -c 1 wrk -t1 -c$CONNS -d${SECS}s --latency "http://127.0.0.1:$2/v1/models")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  ms() { python3 -c "import sys; v=sys.argv[1]; u={'us':1e-3,'ms':1,'s':1e3}; n=v.rstrip('usm'); print(float(n)*u[v[len(n):]])" "$1"; }
  echo "$1 $rps $(ms "$p50") $(ms "$p99")"
}

echo "wrk -t1 -c$CONNS -d${SECS}s; proxy pinned to CPU 0, upstream and wrk to CPU 1"
results=("$(run direct $UP)" "$(run hylab $PG)" "$(run haproxy $PH)" "$(run nginx $PN)")
python3 - "${results[@]}" <<'PY'
import sys
rows = {r.split()[0]: [float(x) for x in r.split()[1:]] for r in sys.argv[1:]}
print(f"{'target':10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
for name, (rps, p50, p99) in rows.items():
    print(f"{name:10} {rps:10.0f} {p50:8.3f} {p99:8.3f}")
h, a, n, d = rows["hylab"], rows["haproxy"], rows["nginx"], rows["direct"]
print(f"hylab/haproxy: {h[0]/a[0]:.2f}x req/s, p99 {h[2]/a[2]:.2f}x")
print(f"hylab/nginx:   {h[0]/n[0]:.2f}x req/s, p99 {h[2]/n[2]:.2f}x")
print(f"added over direct (p50): hylab {h[1]-d[1]:+.3f} ms, haproxy {a[1]-d[1]:+.3f} ms, nginx {n[1]-d[1]:+.3f} ms")
PY

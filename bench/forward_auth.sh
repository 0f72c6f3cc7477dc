#!/usr/bin/env bash
# bench/forward_auth.sh: what a forward-auth check costs. Not a test; run by hand
# after `scripts/setup.sh --bench` and a release build (`scripts/build.sh`).
#
# Three scenarios, run in alternating rounds with wrk (one thread, keep-alive):
#   nginx+tokengate   wrk -> nginx auth_request -> tokengate forward_auth, then -> backend
#   nginx+static      wrk -> nginx auth_request -> a static `return 200`, then -> backend
#                     (the same nginx file: the difference is the cost of the check itself)
#   tokengate-direct  wrk -> tokengate's forward_auth listener (the check alone)
# The front nginx runs examples/forward-auth/nginx.conf (addresses replaced), one
# worker; the backend and the static responder are a separate nginx process.
# Reports req/s, p99 and CPU microseconds per request of each process tree.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3 duration=10s connections=64
while (($#)); do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    -h|--help) echo "usage: bench/forward_auth.sh [--rounds N] [--duration D] [--connections N]"; exit 0 ;;
    *) echo "usage: bench/forward_auth.sh [--rounds N] [--duration D] [--connections N]" >&2; exit 2 ;;
  esac
done

tokengate=$(realpath "${TOKENGATE_BIN:-build/gateway/tokengate}")
for tool in "$tokengate" nginx wrk python3; do
  command -v "$tool" >/dev/null || { echo "bench: missing $tool (run scripts/setup.sh --bench and scripts/build.sh)" >&2; exit 1; }
done
proctree=$(realpath bench/proctree.py)
clk_tck=$(getconf CLK_TCK)
work=$(mktemp -d /tmp/tokengate-fa-bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
source bench/common.sh  # free_port, wait_port
tree_cpu() { python3 "$proctree" cpu "$1"; }

# ---- backend (return 200) and the static auth responder, one nginx process
backend_port=$(free_port) static_port=$(free_port)
mkdir -p "$work/backend"
cat >"$work/backend/nginx.conf" <<EOF
worker_processes 1;
pid $work/backend/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:$backend_port; location / { return 200 "ok\n"; } }
  server { listen 127.0.0.1:$static_port; location / { return 200; } }
}
EOF
nginx -p "$work/backend" -c "$work/backend/nginx.conf" -g 'daemon off;' &
pids+=($!)

# ---- tokengate with a forward_auth listener (one worker, like the nginx fronts)
mkdir -p "$work/tg"
cat >"$work/tg/tokengate.yaml" <<EOF
listen: 127.0.0.1:0
workers: 1
forward_auth: { listen: 127.0.0.1:0 }
store: { path: $work/tg/tokens, key_file: $work/tg/key }
upstreams:
  app: { url: "http://127.0.0.1:$backend_port" }
roles:
  reader: { permissions: [orders.read] }
routes:
  - path: /api/orders/**
    methods: [GET, HEAD]
    upstream: app
    require: { permissions: [orders.read] }
EOF
token=$("$tokengate" token create --config "$work/tg/tokengate.yaml" --name bench --role reader 2>/dev/null)
"$tokengate" serve --config "$work/tg/tokengate.yaml" 2>"$work/tg/log" &
tg_pid=$!
pids+=($tg_pid)
for _ in $(seq 200); do grep -q '(forward_auth)' "$work/tg/log" && break; sleep 0.05; done
check_port=$(sed -n 's/.*listening on [^ ]*:\([0-9]*\) (forward_auth).*/\1/p' "$work/tg/log")
[[ -n $check_port ]] || { echo "bench: tokengate did not start:" >&2; cat "$work/tg/log" >&2; exit 1; }

# ---- two front nginx processes from the README's file
front() {  # name, auth port -> starts it, sets front_port_<name> and front_pid_<name>
  local name=$1 auth_port=$2 port
  port=$(free_port)
  mkdir -p "$work/$name/tmp" && chmod 777 "$work/$name/tmp" && chmod 755 "$work/$name"
  sed -e "s/127.0.0.1:8000/127.0.0.1:$port/g; s/127.0.0.1:8081/127.0.0.1:$auth_port/g" \
      -e "s/127.0.0.1:9000/127.0.0.1:$backend_port/g" examples/forward-auth/nginx.conf >"$work/$name/nginx.conf"
  nginx -p "$work/$name" -c "$work/$name/nginx.conf" -g 'daemon off;' &
  pids+=($!)
  printf -v "front_port_$name" %s "$port"
  printf -v "front_pid_$name" %s "$!"
}
front tg "$check_port"
front static "$static_port"
wait_port "$backend_port"; wait_port "$front_port_tg"; wait_port "$front_port_static"

# ---- rounds
results=$work/results.tsv
run() {  # scenario, cpu pid, url, extra wrk args...
  local name=$1 pid=$2 url=$3; shift 3
  local before after out
  before=$(tree_cpu "$pid")
  out=$(wrk -t1 -c"$connections" -d"$duration" --latency -H "Authorization: Bearer $token" "$@" "$url")
  after=$(tree_cpu "$pid")
  if grep -q 'Non-2xx' <<<"$out"; then echo "bench: $name got non-2xx answers:" >&2; echo "$out" >&2; exit 1; fi
  python3 - "$name" "$before" "$after" "$clk_tck" >>"$results" <<EOF
import re, sys
out = """$out"""
name, before, after, tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
total = int(re.search(r"(\d+) requests in", out).group(1))
v, unit = re.search(r"99%\s+([0-9.]+)(us|ms|s)", out).groups()
p99 = float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
cpu_us = (after - before) / tck * 1e6 / total
print("%s\t%.0f\t%.3f\t%.1f" % (name, rps, p99, cpu_us))
EOF
}
echo "bench: $rounds rounds of $duration, $connections connections; tokengate $("$tokengate" version 2>/dev/null | head -1)" >&2
for ((r = 1; r <= rounds; r++)); do
  run nginx+tokengate "$front_pid_tg" "http://127.0.0.1:$front_port_tg/api/orders/1"
  run nginx+static "$front_pid_static" "http://127.0.0.1:$front_port_static/api/orders/1"
  run tokengate-direct "$tg_pid" "http://127.0.0.1:$check_port/check" -H "X-Original-URI: /api/orders/1"
  echo "bench: round $r done" >&2
done
# CPU of nginx+tokengate counts the front nginx only; tokengate's share is measured
# in tokengate-direct (the same check, without nginx).
python3 - "$results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, p99, cpu = line.split("\t")
    rows.setdefault(name, []).append((float(rps), float(p99), float(cpu)))
med = {n: [statistics.median(x[i] for x in v) for i in range(3)] for n, v in rows.items()}
print("| scenario | req/s | p99 ms | CPU us/request (measured process tree) |")
print("|---|---|---|---|")
for n, (rps, p99, cpu) in med.items():
    who = {"nginx+tokengate": "front nginx", "nginx+static": "front nginx", "tokengate-direct": "tokengate"}[n]
    print("| %s | %.0f | %.2f | %.1f (%s) |" % (n, rps, p99, cpu, who))
a, b = med["nginx+tokengate"], med["nginx+static"]
print("\nnginx+tokengate / nginx+static: req/s %.2fx, p99 %.2fx" % (a[0] / b[0], a[1] / b[1]))
EOF

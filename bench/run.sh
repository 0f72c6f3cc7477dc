#!/usr/bin/env bash
# bench/run.sh: load benchmark of tokengate against nginx and HAProxy doing the same
# bearer check on loopback, with wrk. See bench/README.md. Not a test; run by hand
# after `scripts/setup.sh --bench` and a release build (`scripts/build.sh`).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
usage: bench/run.sh [--rounds N] [--duration D] [--connections N] [--tokens N] [--spread N] [--quick]
  --rounds N       alternating rounds per scenario, medians reported (default 3)
  --duration D     wrk duration per run (default 10s)
  --connections N  wrk keep-alive connections (default 64)
  --tokens N       tokens in the store (default 100000)
  --spread N       distinct valid tokens the "spread" scenario cycles through (default 10000, at most --tokens)
  --quick          --rounds 1 --duration 3s --tokens 2000 --spread 2000 (a smoke run)
environment: TOKENGATE_BIN (default build/gateway/tokengate), BENCH_KEEP=1 keeps the work dir
EOF
}

rounds=3 duration=10s connections=64 store_tokens=100000 spread=10000
while (($#)); do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --tokens) store_tokens=$2; shift 2 ;;
    --spread) spread=$2; shift 2 ;;
    --quick) rounds=1 duration=3s store_tokens=2000 spread=2000; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
((spread <= store_tokens)) || spread=$store_tokens

tokengate=$(realpath "${TOKENGATE_BIN:-build/gateway/tokengate}")
seed_tokens=$(realpath "$(dirname "$tokengate")/../bench/seed_tokens")
for tool in "$tokengate" "$seed_tokens" nginx haproxy wrk python3 curl; do
  command -v "$tool" >/dev/null || { echo "bench: missing $tool (run scripts/setup.sh --bench and scripts/build.sh)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/tokengate-bench.XXXXXX)
chmod 755 "$work"  # nginx workers (user nobody) read the map files
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ "${BENCH_KEEP:-0}" == 1 ]]; then echo "bench: work dir kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
log() { echo "bench: $*" >&2; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits (bounded) until something accepts connections on 127.0.0.1:$1.
wait_port() {
  python3 - "$1" <<'EOF'
import socket, sys, time
deadline = time.monotonic() + 20
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("bench: nothing listening on port %s after 20s" % sys.argv[1])
        time.sleep(0.05)
EOF
}

# ---------------------------------------------------------------- backend: nginx `return 200`
backend_port=$(free_port)
mkdir -p "$work/backend"
cat >"$work/backend/nginx.conf" <<EOF
worker_processes 1;
pid $work/backend/nginx.pid;
error_log $work/backend/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $work/backend;
  proxy_temp_path $work/backend;
  fastcgi_temp_path $work/backend;
  uwsgi_temp_path $work/backend;
  scgi_temp_path $work/backend;
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:$backend_port;
    location / { return 200 "ok\n"; }
  }
}
EOF
nginx -p "$work/backend" -c "$work/backend/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_port "$backend_port"

# ---------------------------------------------------------------- tokengate store and tokens
tg_config() {  # dir workers
  mkdir -p "$1"
  cat >"$1/tokengate.yaml" <<EOF
listen: 127.0.0.1:0
workers: $2
store:
  path: $work/store/tokens
  key_file: $work/store/tokengate.key
upstreams:
  backend:
    url: http://127.0.0.1:$backend_port
routes:
  - path: /**
    upstream: backend
EOF
}
mkdir -p "$work/store"
tg_config "$work/tg1" 1
tg_config "$work/tg2" 2

log "creating $store_tokens tokens (bench/seed_tokens: the CLI's TokenManager, one synced write each)"
"$seed_tokens" --config "$work/tg1/tokengate.yaml" --count "$store_tokens" >"$work/tokens.txt"
created=$(grep -c '^tg_' "$work/tokens.txt" || true)
((created == store_tokens)) || { echo "bench: token create failed" >&2; exit 1; }
head -n 1 "$work/tokens.txt" >"$work/one-token.txt"
token=$(cat "$work/one-token.txt")
# Spread over the last $spread tokens (the first is the single-token scenario's).
tail -n "$spread" "$work/tokens.txt" >"$work/spread-tokens.txt"

# Well-formed tokens (valid checksum) that are not in the store.
python3 - "$work/unknown-tokens.txt" 10000 <<'EOF'
import secrets, sys, zlib
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
def b62(n):
    s = ""
    while n:
        n, r = divmod(n, 62)
        s = B62[r] + s
    return s.rjust(6, "0")
with open(sys.argv[1], "w") as f:
    for _ in range(int(sys.argv[2])):
        p = "tg_%s_%s" % ("".join(secrets.choice(B62) for _ in range(12)), "".join(secrets.choice(B62) for _ in range(32)))
        f.write(p + b62(zlib.crc32(p.encode()) & 0xFFFFFFFF) + "\n")
EOF

# tokengate's second instance (2 workers) gets its own copy of the store: a running
# gateway locks its store.
cp -a "$work/store" "$work/store2"
sed -i "s#$work/store/#$work/store2/#" "$work/tg2/tokengate.yaml"

# tokengate's access log (one JSON line per request, always on; nginx and HAProxy run
# with theirs off) goes to a file, as an operator's would; after each run the lines
# whose status is neither 200 nor 401 are kept (at most 1000) and the file is emptied.
# (Filtering it through a pipe instead would put the filter on the cores the proxies
# are measured on.)
keep_unexpected() {  # dir
  grep -v -E '"status":(200|401),' "$1/tokengate.log" | head -n 1000 >>"$1/unexpected.log" || true
  : >"$1/tokengate.log"
}

start_tokengate() {  # dir; writes the port to dir/port
  : >"$1/tokengate.log"
  : >"$1/unexpected.log"
  "$tokengate" serve --config "$1/tokengate.yaml" 2>>"$1/tokengate.log" &
  pids+=($!)
  local deadline=$((SECONDS + 20))
  until grep -q 'listening on' "$1/tokengate.log"; do
    ((SECONDS < deadline)) || { echo "bench: tokengate did not start:" >&2; tail "$1/tokengate.log" >&2; exit 1; }
    sleep 0.05
  done
  grep -m1 -o 'listening on [^ ]*' "$1/tokengate.log" | sed 's/.*://' >"$1/port"
}
start_tokengate "$work/tg1"
start_tokengate "$work/tg2"
tg1_port=$(cat "$work/tg1/port")
tg2_port=$(cat "$work/tg2/port")

# ---------------------------------------------------------------- nginx front: map + proxy_pass
# Each token's subject is its id (characters 4..15), as tokengate's X-Auth-Subject.
awk '{ printf "\"Bearer %s\" \"%s\";\n", $1, substr($1, 4, 12) }' "$work/tokens.txt" >"$work/nginx-tokens.map"
awk '{ printf "%s %s\n", $1, substr($1, 4, 12) }' "$work/tokens.txt" >"$work/haproxy-tokens.map"
nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  keepalive_requests 10000000;
  map_hash_bucket_size 128;
  map_hash_max_size 1048576;
  map \$http_authorization \$auth_subject {
    default "";
    include $work/nginx-tokens.map;
  }
  upstream backend {
    server 127.0.0.1:$backend_port;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      if (\$auth_subject = "") { return 401; }
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "";
      proxy_set_header X-Auth-Subject \$auth_subject;
    }
  }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)

# ---------------------------------------------------------------- HAProxy front: map file
haproxy_port=$(free_port)
cat >"$work/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$haproxy_port
  http-request set-var(txn.sub) req.hdr(authorization),bytes(7),map($work/haproxy-tokens.map)
  http-request deny deny_status 401 unless { req.hdr(authorization) -m beg Bearer } { var(txn.sub) -m found }
  http-request del-header Authorization
  http-request set-header X-Auth-Subject %[var(txn.sub)]
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:$backend_port
EOF
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
wait_port "$nginx_port"
wait_port "$haproxy_port"

# ---------------------------------------------------------------- sanity: each says 200 / 401
declare -A port_of=([tokengate]=$tg1_port [tokengate-2w]=$tg2_port [nginx]=$nginx_port [haproxy]=$haproxy_port)
for name in tokengate tokengate-2w nginx haproxy; do
  port=${port_of[$name]}
  ok=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$port/bench")
  spread_ok=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(tail -n 1 "$work/spread-tokens.txt")" "http://127.0.0.1:$port/bench")
  denied=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(head -n 1 "$work/unknown-tokens.txt")" "http://127.0.0.1:$port/bench")
  if [[ $ok != 200 || $spread_ok != 200 || $denied != 401 ]]; then
    echo "bench: $name answers $ok/$spread_ok for valid tokens and $denied for an unknown one (want 200/200/401)" >&2
    exit 1
  fi
done
log "all proxies answer 200 for valid tokens and 401 for unknown ones"

# wrk scripts: a token per request, picked at random from a file.
cat >"$work/pick-token.lua" <<'EOF'
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do tokens[#tokens + 1] = "Bearer " .. line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/bench", { ["Authorization"] = tokens[math.random(#tokens)] })
end
EOF

results="$work/results.tsv"
: >"$results"
run_wrk() {  # scenario proxy port tokens-file round
  local out="$work/wrk-$1-$2-$5.txt"
  BENCH_TOKENS_FILE=$4 wrk -t1 -c"$connections" -d"$duration" --latency -s "$work/pick-token.lua" \
    "http://127.0.0.1:$3/bench" >"$out" 2>&1
  python3 - "$out" "$1" "$2" "$5" >>"$results" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
errors = re.search(r"Socket errors:.*", text)
print("\t".join([sys.argv[2], sys.argv[3], sys.argv[4], "%.1f" % rps, "%.3f" % p99,
                 non2xx.group(1) if non2xx else "0", errors.group(0) if errors else ""]))
EOF
  log "$(tail -n 1 "$results" | cut -f1-6)"
  case "$2" in
    tokengate) keep_unexpected "$work/tg1" ;;
    tokengate-2w) keep_unexpected "$work/tg2" ;;
  esac
}

log "machine: $(nproc) cores; wrk -t1 -c$connections -d$duration, $rounds rounds; wrk, proxies and backend share the cores"
for ((round = 1; round <= rounds; round++)); do
  for proxy in tokengate nginx haproxy; do
    run_wrk single-token "$proxy" "${port_of[$proxy]}" "$work/one-token.txt" "$round"
  done
  run_wrk single-token tokengate-2w "$tg2_port" "$work/one-token.txt" "$round"
  for proxy in tokengate nginx haproxy; do
    run_wrk "spread-$spread-of-$store_tokens" "$proxy" "${port_of[$proxy]}" "$work/spread-tokens.txt" "$round"
  done
  for proxy in tokengate nginx haproxy; do
    run_wrk unknown-token-flood "$proxy" "${port_of[$proxy]}" "$work/unknown-tokens.txt" "$round"
  done
done

python3 - "$results" <<'EOF'
import statistics, sys
from collections import OrderedDict
runs = OrderedDict()
for line in open(sys.argv[1]):
    scenario, proxy, _round, rps, p99, non2xx, errors = line.rstrip("\n").split("\t")
    runs.setdefault((scenario, proxy), []).append((float(rps), float(p99), int(non2xx), errors))
print()
print("%-28s %-14s %12s %10s %12s  %s" % ("scenario", "proxy", "req/s (med)", "p99 ms", "non-2xx", "socket errors"))
med = {}
for (scenario, proxy), rs in runs.items():
    rps = statistics.median(r[0] for r in rs)
    p99 = statistics.median(r[1] for r in rs)
    med[(scenario, proxy)] = (rps, p99)
    errs = "; ".join(sorted({r[3] for r in rs if r[3]}))
    print("%-28s %-14s %12.0f %10.2f %12d  %s" % (scenario, proxy, rps, p99, sum(r[2] for r in rs), errs))
print()
print("%-28s %-26s %10s %10s" % ("scenario", "ratio (median/median)", "req/s", "p99"))
for (scenario, proxy), (rps, p99) in med.items():
    if not proxy.startswith("tokengate"):
        continue
    for peer in ("nginx", "haproxy"):
        other = med.get((scenario, peer)) or med.get(("single-token", peer))
        label = "%s/%s" % (proxy, peer) + ("" if (scenario, peer) in med else " (1 worker)")
        print("%-28s %-26s %10.2f %10.2f" % (scenario, label, rps / other[0], p99 / other[1]))
EOF

for dir in tg1 tg2; do
  if unexpected=$(grep -o '"status":[0-9]*' "$work/$dir/unexpected.log" | sort | uniq -c) && [[ -n $unexpected ]]; then
    echo
    echo "tokengate ($dir) answered statuses other than 200/401 (first lines kept in $work/$dir/unexpected.log; BENCH_KEEP=1 keeps them):"
    echo "$unexpected"
  fi
done

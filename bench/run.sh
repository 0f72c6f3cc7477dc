#!/usr/bin/env bash
# bench/run.sh: load benchmark of tokengate against nginx and HAProxy doing the same
# bearer check on loopback, with wrk. See bench/README.md. Not a test; run by hand
# after `scripts/setup.sh --bench` and a release build (`scripts/build.sh`).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
usage: bench/run.sh [--rounds N] [--duration D] [--connections N] [--tokens N] [--spread N] [--quick]
                    [--baseline BIN] [--rate-limited] [--cluster] [--tokengate-only]
                    [--million | --startup N | --startup-store DIR] [--startup-only]
  --rounds N       alternating rounds per scenario, medians reported (default 3)
  --duration D     wrk duration per run (default 10s)
  --connections N  wrk keep-alive connections (default 64)
  --tokens N       tokens in the store (default 100000)
  --spread N       distinct valid tokens the "spread" scenario cycles through (default 10000, at most --tokens)
  --quick          --rounds 1 --duration 3s --tokens 2000 --spread 2000 (a smoke run)
  --baseline BIN   a second tokengate binary (e.g. the previous commit's build), run as the
                   proxy "tokengate-baseline" in the same rounds on a copy of the same store;
                   the report adds the ratios tokengate/tokengate-baseline
  --rate-limited   also run "tokengate-limited": the same binary and store copy (1 worker) with a
                   generous rate limit on every token and on the route (10^9/s, never reached), so
                   every request goes through both budgets; the report adds tokengate-limited/tokengate
  --cluster        also run "tokengate-cluster": the same binary (1 worker) in cluster mode, its
                   store.postgres on a private PostgreSQL started for the run (bench/pg_server.py)
                   into which the seeded store is imported (`tokengate store import`); the node
                   starts with an empty local copy and loads the tokens from PostgreSQL. The
                   report adds tokengate-cluster/tokengate and PostgreSQL's CPU per request
  --tokengate-only skip nginx, HAProxy and tokengate-2w (for the --baseline, --rate-limited and
                   --cluster comparisons: shorter runs)
  --million        start-up scenario: tokengate (workers: 2) on a store of 1,000,000 tokens;
                   time to "listening on", to the first authenticated 200, RSS after start
  --startup N      the start-up scenario with N tokens instead of 1,000,000
  --startup-store DIR  the start-up scenario on the store an earlier run seeded and kept
                   (BENCH_KEEP=1; DIR is its work dir's startup/ directory) instead of seeding
  --startup-only   run only the start-up scenario (needs --million, --startup N or --startup-store)
environment: TOKENGATE_BIN (default build/gateway/tokengate), BENCH_KEEP=1 keeps the work dir
EOF
}

rounds=3 duration=10s connections=64 store_tokens=100000 spread=10000
baseline="" startup_tokens=0 startup_only=0 startup_store="" rate_limited=0 cluster=0 peers=1
while (($#)); do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --tokens) store_tokens=$2; shift 2 ;;
    --spread) spread=$2; shift 2 ;;
    --quick) rounds=1 duration=3s store_tokens=2000 spread=2000; shift ;;
    --baseline) baseline=$2; shift 2 ;;
    --rate-limited) rate_limited=1; shift ;;
    --cluster) cluster=1; shift ;;
    --tokengate-only) peers=0; shift ;;
    --million) startup_tokens=1000000; shift ;;
    --startup) startup_tokens=$2; shift 2 ;;
    --startup-store) startup_store=$(realpath "$2"); shift 2 ;;
    --startup-only) startup_only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
((spread <= store_tokens)) || spread=$store_tokens
if [[ -n $startup_store ]]; then
  [[ -f $startup_store/count && -f $startup_store/token.txt && -d $startup_store/store ]] ||
    { echo "bench: --startup-store $startup_store: no count, token.txt and store/ (keep a start-up run with BENCH_KEEP=1)" >&2; exit 2; }
  startup_tokens=$(cat "$startup_store/count")
fi
if ((startup_only && startup_tokens <= 0)); then
  echo "bench: --startup-only needs --million, --startup N or --startup-store DIR" >&2; exit 2
fi

tokengate=$(realpath "${TOKENGATE_BIN:-build/gateway/tokengate}")
seed_tokens=$(realpath "$(dirname "$tokengate")/../bench/seed_tokens")
if [[ -n $baseline ]]; then
  [[ -x $baseline ]] || { echo "bench: --baseline $baseline is not an executable" >&2; exit 1; }
  baseline=$(realpath "$baseline")
fi
tools=("$tokengate" "$seed_tokens" nginx wrk python3 curl getconf)
((peers == 0)) || tools+=(haproxy)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "bench: missing $tool (run scripts/setup.sh --bench and scripts/build.sh)" >&2; exit 1; }
done
clk_tck=$(getconf CLK_TCK)
proctree=$(realpath bench/proctree.py)

work=$(mktemp -d /tmp/tokengate-bench.XXXXXX)
chmod 755 "$work"  # nginx workers (user nobody) read the map files
pids=() pg_pid=""
cleanup() {
  # PostgreSQL (--cluster) last: a cluster node sends its last-used times at SIGTERM.
  for pid in "${pids[@]}"; do [[ $pid == "$pg_pid" ]] || kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do [[ $pid == "$pg_pid" ]] || wait "$pid" 2>/dev/null || true; done
  if [[ -n $pg_pid ]]; then
    kill "$pg_pid" 2>/dev/null || true
    wait "$pg_pid" 2>/dev/null || true
  fi
  if [[ "${BENCH_KEEP:-0}" == 1 ]]; then echo "bench: work dir kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
log() { echo "bench: $*" >&2; }

# free_port, wait_port, start_backend
source bench/common.sh

# A process tree's resources: `cpu PID` prints utime+stime(+cutime+cstime) in clock
# ticks summed over PID and every descendant (nginx master + worker; tokengate's threads are in its own
# stat), `rss PID` the sum of their VmRSS in KiB. Descendants are found by walking the
# ppid field of every /proc/*/stat.
tree_cpu() { python3 "$proctree" cpu "$1"; }  # pid -> clock ticks
tree_rss() { python3 "$proctree" rss "$1"; }  # pid -> "KiB processes"


# ---------------------------------------------------------------- backend: nginx `return 200`
start_backend

# ---------------------------------------------------------------- start-up scenario (--million)
# tokengate with `workers: 2` on a store of $startup_tokens tokens: time from process
# start to its "listening on" line and to the first 200 for a valid token, and the RSS
# of its process tree right after that 200. Each binary (and --baseline's) is started
# $rounds times, alternating, one at a time on the same store; medians reported.
startup_scenario() {
  local dir="$work/startup" data="${startup_store:-$work/startup}"
  mkdir -p "$dir" "$data/store"
  cat >"$dir/tokengate.yaml" <<EOF
listen: 127.0.0.1:0
workers: 2
store:
  path: $data/store/tokens
  key_file: $data/store/tokengate.key
upstreams:
  backend:
    url: http://127.0.0.1:$backend_port
routes:
  - path: /**
    upstream: backend
EOF
  local seeded="(reused: $data)"
  if [[ -z $startup_store ]]; then
    log "start-up scenario: creating $startup_tokens tokens (bench/seed_tokens, one synced write each; 6 minutes or more per million)"
    local seed_start=$SECONDS created
    "$seed_tokens" --config "$dir/tokengate.yaml" --count "$startup_tokens" >"$dir/tokens.txt"
    seeded="(seeded in $((SECONDS - seed_start)) s)"
    created=$(grep -c '^tg_' "$dir/tokens.txt" || true)
    ((created == startup_tokens)) || { echo "bench: token create failed ($created of $startup_tokens)" >&2; exit 1; }
    tail -n 1 "$dir/tokens.txt" >"$dir/token.txt"
    echo "$startup_tokens" >"$dir/count"
    rm -f "$dir/tokens.txt"
  fi
  cat >"$dir/startup.py" <<'EOF'
# startup.py BIN CONFIG TOKEN-FILE LOG PROCTREE: one start, prints "listen_ms first_ok_ms rss_kib"
import http.client, re, signal, subprocess, sys, time
binary, config, token_file, log_path, proctree = sys.argv[1:6]
token = open(token_file).read().strip()
with open(log_path, "wb") as log:
    t0 = time.monotonic()
    proc = subprocess.Popen([binary, "serve", "--config", config], stdout=subprocess.DEVNULL, stderr=log)
try:
    deadline = t0 + 600
    port = None
    while port is None:
        m = re.search(rb"listening on [^ \n]*:(\d+)", open(log_path, "rb").read())
        if m:
            port = int(m.group(1))
            listen = time.monotonic() - t0
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit("bench: %s did not start: %s" % (binary, open(log_path).read()[-2000:]))
        time.sleep(0.002)
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/bench", headers={"Authorization": "Bearer " + token})
            status = c.getresponse().status
            c.close()
        except OSError:
            status = None
        if status == 200:
            first_ok = time.monotonic() - t0
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit("bench: %s never answered 200 (last status %s)" % (binary, status))
        time.sleep(0.002)
    rss = subprocess.run([sys.executable, proctree, "rss", str(proc.pid)], capture_output=True, text=True,
                         check=True).stdout.split()[0]
finally:
    stop = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    sys.stderr.write("bench: %s stopped %.0f ms after SIGTERM (exit status %s)\n"
                     % (binary, (time.monotonic() - stop) * 1000, code))
# Printed once the gateway has exited (and released the store's lock): the caller waits
# for this process to end before starting the next gateway on the same store.
print("%.1f %.1f %s" % (listen * 1000, first_ok * 1000, rss))
EOF
  local bins=(tokengate) round name bin result listen_ms ok_ms rss_kib
  [[ -z $baseline ]] || bins+=(tokengate-baseline)
  : >"$dir/results.tsv"
  for ((round = 1; round <= rounds; round++)); do
    local order=("${bins[@]}")
    ((round % 2)) || order=("${bins[@]:1}" "${bins[0]}")
    for name in "${order[@]}"; do
      bin=$tokengate
      [[ $name == tokengate ]] || bin=$baseline
      result=$(python3 "$dir/startup.py" "$bin" "$dir/tokengate.yaml" "$data/token.txt" \
        "$dir/$name-$round.log" "$proctree") || true
      read -r listen_ms ok_ms rss_kib <<<"$result" || true
      [[ -n ${rss_kib:-} ]] || { echo "bench: start-up of $name failed (log: $dir/$name-$round.log)" >&2; exit 1; }
      printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$listen_ms" "$ok_ms" "$rss_kib" >>"$dir/results.tsv"
      log "start-up $name round $round: listening after $listen_ms ms, first 200 after $ok_ms ms, RSS $((rss_kib / 1024)) MiB"
    done
  done
  python3 - "$dir/results.tsv" "$startup_tokens" "$seeded" "$rounds" <<'EOF'
import statistics, sys
from collections import OrderedDict
runs = OrderedDict()
for line in open(sys.argv[1]):
    name, _round, listen, ok, rss = line.split()
    runs.setdefault(name, []).append((float(listen), float(ok), int(rss) / 1024))
print()
print("start-up: %s tokens in the store %s, workers: 2, %s start(s) per binary, medians"
      % (format(int(sys.argv[2]), ","), sys.argv[3], sys.argv[4]))
print("%-28s %14s %14s %18s" % ("binary", "listening ms", "first 200 ms", "RSS after MiB"))
med = {}
for name, rs in runs.items():
    med[name] = [statistics.median(r[i] for r in rs) for i in range(3)]
    print("%-28s %14.0f %14.0f %18.1f" % (name, *med[name]))
if "tokengate-baseline" in med:
    print("%-28s %14.2f %14.2f %18.2f" % ("tokengate/tokengate-baseline",
          *(a / b if b else float("nan") for a, b in zip(med["tokengate"], med["tokengate-baseline"]))))
EOF
}
if ((startup_only)); then
  startup_scenario
  exit 0
fi

# ---------------------------------------------------------------- tokengate store and tokens
tg_config() {  # dir workers [limited | cluster PG-URL]
  mkdir -p "$1"
  local limits="" route_limit="" postgres=""
  if [[ ${3:-} == limited ]]; then
    limits=$'tokens:\n  default_rate_limit: { rate: 1000000000/s, burst: 1000000000 }'
    route_limit="    rate_limit: { rate: 1000000000/s, burst: 1000000000 }"
  elif [[ ${3:-} == cluster ]]; then
    postgres=$'  postgres:\n    url: '"$4"
  fi
  cat >"$1/tokengate.yaml" <<EOF
listen: 127.0.0.1:0
workers: $2
store:
  path: $work/store/tokens
  key_file: $work/store/tokengate.key
$postgres
upstreams:
  backend:
    url: http://127.0.0.1:$backend_port
routes:
  - path: /**
    upstream: backend
$route_limit
$limits
EOF
}
# --cluster: the private PostgreSQL starts while the tokens are seeded.
if ((cluster)); then
  python3 bench/pg_server.py "$work/pg-url" 2>"$work/pg-server.log" &
  pids+=($!)
  pg_pid=$!
fi

mkdir -p "$work/store"
tg_config "$work/tg1" 1
((peers == 0)) || tg_config "$work/tg2" 2
[[ -z $baseline ]] || tg_config "$work/tg3" 1
((rate_limited == 0)) || tg_config "$work/tg4" 1 limited

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
if ((peers)); then
  cp -a "$work/store" "$work/store2"
  sed -i "s#$work/store/#$work/store2/#" "$work/tg2/tokengate.yaml"
fi
# --baseline: the same config (1 worker) on a third copy of the same store.
if [[ -n $baseline ]]; then
  cp -a "$work/store" "$work/store3"
  sed -i "s#$work/store/#$work/store3/#" "$work/tg3/tokengate.yaml"
fi
if ((rate_limited)); then
  cp -a "$work/store" "$work/store4"
  sed -i "s#$work/store/#$work/store4/#" "$work/tg4/tokengate.yaml"
fi
# --cluster: the seeded store goes into PostgreSQL (`store migrate`, `store import`, as an
# operator growing from one node would); the node's local copy starts empty, so every
# token it serves came through PostgreSQL. Same key file (the import checks it).
if ((cluster)); then
  deadline=$((SECONDS + 120))
  until [[ -s $work/pg-url ]]; do
    kill -0 "$pg_pid" 2>/dev/null || { echo "bench: PostgreSQL did not start:" >&2; cat "$work/pg-server.log" >&2; exit 1; }
    ((SECONDS < deadline)) || { echo "bench: PostgreSQL did not start within 120 s" >&2; exit 1; }
    sleep 0.1
  done
  tg_config "$work/tg5" 1 cluster "$(cat "$work/pg-url")"
  mkdir -p "$work/store5"
  sed -i "s#$work/store/tokens#$work/store5/tokens#" "$work/tg5/tokengate.yaml"
  "$tokengate" store migrate --config "$work/tg5/tokengate.yaml" >&2
  import_start=$SECONDS
  "$tokengate" store import --config "$work/tg5/tokengate.yaml" --from "$work/store/tokens" >&2
  log "store import of $store_tokens tokens into PostgreSQL: $((SECONDS - import_start)) s"
fi

# tokengate's access log (one JSON line per request, always on; nginx and HAProxy run
# with theirs off) goes to a file, as an operator's would; after each run the lines
# whose status is neither 200 nor 401 are kept (at most 1000) and the file is emptied.
# (Filtering it through a pipe instead would put the filter on the cores the proxies
# are measured on.)
keep_unexpected() {  # dir
  grep -v -E '"status":(200|401),' "$1/tokengate.log" | head -n 1000 >>"$1/unexpected.log" || true
  : >"$1/tokengate.log"
}

start_tokengate() {  # dir [binary]; writes the port to dir/port, the pid to dir/pid
  : >"$1/tokengate.log"
  : >"$1/unexpected.log"
  "${2:-$tokengate}" serve --config "$1/tokengate.yaml" 2>>"$1/tokengate.log" &
  pids+=($!)
  echo $! >"$1/pid"
  local deadline=$((SECONDS + 20))
  until grep -q 'listening on' "$1/tokengate.log"; do
    ((SECONDS < deadline)) || { echo "bench: tokengate did not start:" >&2; tail "$1/tokengate.log" >&2; exit 1; }
    sleep 0.05
  done
  grep -m1 -o 'listening on [^ ]*' "$1/tokengate.log" | sed 's/.*://' >"$1/port"
}
start_tokengate "$work/tg1"
tg1_port=$(cat "$work/tg1/port")
if ((peers)); then
  start_tokengate "$work/tg2"
  tg2_port=$(cat "$work/tg2/port")
fi
if [[ -n $baseline ]]; then
  start_tokengate "$work/tg3" "$baseline"
  tg3_port=$(cat "$work/tg3/port")
fi
if ((rate_limited)); then
  start_tokengate "$work/tg4"
  tg4_port=$(cat "$work/tg4/port")
fi
if ((cluster)); then
  # It listens before its first sync (answering 503 on protected routes until then):
  # wait until it accepts the last token seeded.
  sync_start=$(date +%s.%N)
  start_tokengate "$work/tg5"
  tg5_port=$(cat "$work/tg5/port")
  last_token=$(tail -n 1 "$work/tokens.txt")
  deadline=$((SECONDS + 300))
  until [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $last_token" \
    "http://127.0.0.1:$tg5_port/bench") == 200 ]]; do
    ((SECONDS < deadline)) || { echo "bench: the cluster node never accepted the last token:" >&2; tail "$work/tg5/tokengate.log" >&2; exit 1; }
    sleep 0.05
  done
  log "cluster node: start to first 200 for the last of $store_tokens tokens (loaded from PostgreSQL): $(python3 -c "import sys, time; print('%.1f' % (time.time() - float(sys.argv[1])))" "$sync_start") s"
fi

# The nginx and HAProxy fronts (not with --tokengate-only).
start_peers() {
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
nginx_pid=$!

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
haproxy_pid=$!
wait_port "$nginx_port"
wait_port "$haproxy_port"
}
((peers == 0)) || start_peers

# ---------------------------------------------------------------- sanity: each says 200 / 401
declare -A port_of=([tokengate]=$tg1_port)
declare -A pid_of=([tokengate]=$(cat "$work/tg1/pid"))
declare -A dir_of=([tokengate]=$work/tg1)
all_proxies=(tokengate)
proxies=(tokengate)  # the three scenarios' proxies, in round 1's order
if ((peers)); then
  port_of+=([tokengate-2w]=$tg2_port [nginx]=$nginx_port [haproxy]=$haproxy_port)
  pid_of+=([tokengate-2w]=$(cat "$work/tg2/pid") [nginx]=$nginx_pid [haproxy]=$haproxy_pid)
  dir_of+=([tokengate-2w]=$work/tg2)
  all_proxies+=(tokengate-2w nginx haproxy)
  proxies+=(nginx haproxy)
fi
if [[ -n $baseline ]]; then
  port_of[tokengate-baseline]=$tg3_port
  pid_of[tokengate-baseline]=$(cat "$work/tg3/pid")
  dir_of[tokengate-baseline]=$work/tg3
  all_proxies+=(tokengate-baseline)
  proxies+=(tokengate-baseline)
fi
if ((rate_limited)); then
  port_of[tokengate-limited]=$tg4_port
  pid_of[tokengate-limited]=$(cat "$work/tg4/pid")
  dir_of[tokengate-limited]=$work/tg4
  all_proxies+=(tokengate-limited)
  proxies+=(tokengate-limited)
fi
if ((cluster)); then
  port_of[tokengate-cluster]=$tg5_port
  pid_of[tokengate-cluster]=$(cat "$work/tg5/pid")
  dir_of[tokengate-cluster]=$work/tg5
  all_proxies+=(tokengate-cluster)
  proxies+=(tokengate-cluster)
fi
for name in "${all_proxies[@]}"; do
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

# Memory at idle (after the three requests above): VmRSS summed over each proxy's process tree.
rss="$work/rss.tsv"
: >"$rss"
for name in "${all_proxies[@]}"; do
  printf '%s\tidle\t%s\n' "$name" "$(tree_rss "${pid_of[$name]}" | tr ' ' '\t')" >>"$rss"
done

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
# CPU per request: utime+stime of the proxy's process tree read right before wrk and
# 0.2 s after it returns (so that work still queued, e.g. tokengate's access-log
# writer, is counted), divided by the requests wrk completed.
# For tokengate-cluster, PostgreSQL's process tree (started by bench/pg_server.py) is
# measured the same way, as a separate column (0 for the other proxies).
run_wrk() {  # scenario proxy port tokens-file round
  local out="$work/wrk-$1-$2-$5.txt" pid=${pid_of[$2]} before after pg_before=0 pg_after=0
  [[ $2 != tokengate-cluster ]] || pg_before=$(tree_cpu "$pg_pid")
  before=$(tree_cpu "$pid")
  BENCH_TOKENS_FILE=$4 wrk -t1 -c"$connections" -d"$duration" --latency -s "$work/pick-token.lua" \
    "http://127.0.0.1:$3/bench" >"$out" 2>&1
  sleep 0.2
  after=$(tree_cpu "$pid")
  [[ $2 != tokengate-cluster ]] || pg_after=$(tree_cpu "$pg_pid")
  python3 - "$out" "$1" "$2" "$5" "$((after - before))" "$clk_tck" "$((pg_after - pg_before))" >>"$results" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
errors = re.search(r"Socket errors:.*", text)
requests = int(re.search(r"(\d+) requests in", text).group(1))
cpu_us = int(sys.argv[5]) * 1e6 / int(sys.argv[6]) / requests if requests else float("nan")
pg_us = int(sys.argv[7]) * 1e6 / int(sys.argv[6]) / requests if requests else float("nan")
print("\t".join([sys.argv[2], sys.argv[3], sys.argv[4], "%.1f" % rps, "%.3f" % p99,
                 non2xx.group(1) if non2xx else "0", "%.2f" % cpu_us, str(requests),
                 errors.group(0) if errors else "", "%.3f" % pg_us]))
EOF
  log "$(tail -n 1 "$results" | cut -f1-7) us/req"
  [[ -z ${dir_of[$2]:-} ]] || keep_unexpected "${dir_of[$2]}"
}

log "machine: $(nproc) cores; wrk -t1 -c$connections -d$duration, $rounds rounds; wrk, proxies and backend share the cores"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before the runs: $load_before"
[[ -z $baseline ]] || log "baseline: $baseline as tokengate-baseline (new: $tokengate)"
for ((round = 1; round <= rounds; round++)); do
  # Even rounds run the proxies in reverse order, so none always follows the same one.
  order=("${proxies[@]}")
  if ((round % 2 == 0)); then
    order=()
    for ((i = ${#proxies[@]} - 1; i >= 0; i--)); do order+=("${proxies[i]}"); done
  fi
  for proxy in "${order[@]}"; do
    run_wrk single-token "$proxy" "${port_of[$proxy]}" "$work/one-token.txt" "$round"
  done
  ((peers == 0)) || run_wrk single-token tokengate-2w "$tg2_port" "$work/one-token.txt" "$round"
  for proxy in "${order[@]}"; do
    run_wrk "spread-$spread-of-$store_tokens" "$proxy" "${port_of[$proxy]}" "$work/spread-tokens.txt" "$round"
  done
  for proxy in "${order[@]}"; do
    run_wrk unknown-token-flood "$proxy" "${port_of[$proxy]}" "$work/unknown-tokens.txt" "$round"
  done
done

for name in "${all_proxies[@]}"; do
  printf '%s\tloaded\t%s\n' "$name" "$(tree_rss "${pid_of[$name]}" | tr ' ' '\t')" >>"$rss"
done

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$results" "$rss" "$load_before" "$load_after" <<'EOF'
import math, statistics, sys
from collections import OrderedDict
runs = OrderedDict()
for line in open(sys.argv[1]):
    scenario, proxy, _round, rps, p99, non2xx, cpu, _requests, errors, pg = line.rstrip("\n").split("\t")
    runs.setdefault((scenario, proxy), []).append((float(rps), float(p99), int(non2xx), errors, float(cpu),
                                                   float(pg)))
print()
print("load average (1, 5, 15 min) before the runs: %s; after: %s" % (sys.argv[3], sys.argv[4]))
print()
print("%-28s %-18s %12s %10s %11s %12s  %s" % ("scenario", "proxy", "req/s (med)", "p99 ms", "CPU us/req",
                                              "non-2xx", "socket errors"))
med = {}
for (scenario, proxy), rs in runs.items():
    rps = statistics.median(r[0] for r in rs)
    p99 = statistics.median(r[1] for r in rs)
    cpu = statistics.median(r[4] for r in rs)
    med[(scenario, proxy)] = (rps, p99, cpu)
    errs = "; ".join(sorted({r[3] for r in rs if r[3]}))
    print("%-28s %-18s %12.0f %10.2f %11.1f %12d  %s" % (scenario, proxy, rps, p99, cpu, sum(r[2] for r in rs), errs))

def ratio(a, b):
    return a / b if b else math.nan

print()
print("%-28s %-30s %10s %10s %10s" % ("scenario", "ratio (median/median)", "req/s", "p99", "CPU/req"))
regressions = []
for (scenario, proxy), (rps, p99, cpu) in med.items():
    if not proxy.startswith("tokengate"):
        continue
    for peer in ("nginx", "haproxy"):
        other = med.get((scenario, peer)) or med.get(("single-token", peer))
        if other is None:  # --tokengate-only
            continue
        label = "%s/%s" % (proxy, peer) + ("" if (scenario, peer) in med else " (1 worker)")
        print("%-28s %-30s %10.2f %10.2f %10.2f" % (scenario, label, ratio(rps, other[0]), ratio(p99, other[1]),
                                                     ratio(cpu, other[2])))
    if proxy == "tokengate" and (scenario, "tokengate-baseline") in med:
        base = med[(scenario, "tokengate-baseline")]
        r = (ratio(rps, base[0]), ratio(p99, base[1]), ratio(cpu, base[2]))
        print("%-28s %-30s %10.2f %10.2f %10.2f" % (scenario, "tokengate/tokengate-baseline", *r))
        worse = [n for n, bad in (("req/s", r[0] < 0.97), ("p99", r[1] > 1.03), ("CPU/req", r[2] > 1.03)) if bad]
        if worse:
            regressions.append("%s: %s" % (scenario, ", ".join(worse)))
    if proxy == "tokengate" and (scenario, "tokengate-limited") in med:
        lim = med[(scenario, "tokengate-limited")]
        print("%-28s %-30s %10.2f %10.2f %10.2f" % (scenario, "tokengate-limited/tokengate", ratio(lim[0], rps),
                                                     ratio(lim[1], p99), ratio(lim[2], cpu)))
    if proxy == "tokengate" and (scenario, "tokengate-cluster") in med:
        clu = med[(scenario, "tokengate-cluster")]
        print("%-28s %-30s %10.2f %10.2f %10.2f" % (scenario, "tokengate-cluster/tokengate", ratio(clu[0], rps),
                                                     ratio(clu[1], p99), ratio(clu[2], cpu)))
if regressions:
    print("new/baseline more than 3 % worse (medians; rerun with more rounds before believing it):")
    for line in regressions:
        print("  " + line)

cluster = [(scenario, rs) for (scenario, proxy), rs in runs.items() if proxy == "tokengate-cluster"]
if cluster:
    print()
    print("tokengate-cluster: PostgreSQL's CPU (its whole process tree) during the node's runs, median us/req")
    for scenario, rs in cluster:
        print("%-28s %10.3f" % (scenario, statistics.median(r[5] for r in rs)))

rss = OrderedDict()
for line in open(sys.argv[2]):
    proxy, when, kib, procs = line.split()
    rss.setdefault(proxy, {})[when] = (int(kib) / 1024, procs)
print()
print("%-18s %14s %16s  %s" % ("proxy", "RSS idle MiB", "RSS loaded MiB", "processes"))
for proxy, r in rss.items():
    idle, loaded = r.get("idle", (math.nan, "?")), r.get("loaded", (math.nan, "?"))
    print("%-18s %14.1f %16.1f  %s" % (proxy, idle[0], loaded[0], loaded[1]))
EOF

dirs=(tg1)
((peers == 0)) || dirs+=(tg2)
[[ -z $baseline ]] || dirs+=(tg3)
((rate_limited == 0)) || dirs+=(tg4)
((cluster == 0)) || dirs+=(tg5)
for dir in "${dirs[@]}"; do
  if unexpected=$(grep -o '"status":[0-9]*' "$work/$dir/unexpected.log" | sort | uniq -c) && [[ -n $unexpected ]]; then
    echo
    echo "tokengate ($dir) answered statuses other than 200/401 (first lines kept in $work/$dir/unexpected.log; BENCH_KEEP=1 keeps them):"
    echo "$unexpected"
  fi
done

if ((startup_tokens > 0)); then
  startup_scenario
fi

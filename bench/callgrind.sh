#!/usr/bin/env bash
# bench/callgrind.sh: instructions per proxied request of a tokengate binary, counted
# by valgrind's callgrind (independent of machine load, unlike wall or CPU time).
# Starts an nginx `return 200` backend and the gateway (1 worker, a store of 10
# tokens) under callgrind, warms up, zeroes the counters, sends CONNS x PER_CONN
# keep-alive GETs with one valid token from a fixed-count client, dumps, and prints
# total instructions / requests. The profile stays in the work dir for
# callgrind_annotate (--inclusive=yes). With --cluster the gateway runs in cluster mode
# on a private PostgreSQL (bench/pg_server.py) into which the 10 tokens are imported
# (`store migrate`, `store import`); its local copy starts empty. Its control thread's
# work (the 500 ms catch-up query) is counted with the rest.
#   bench/callgrind.sh [--binary BIN] [--connections N] [--requests-per-connection N] [--cluster]
# Needs valgrind, nginx, python3 and a release build (scripts/build.sh) for bench/seed_tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=build/gateway/tokengate conns=4 per_conn=3000 cluster=0
while (($#)); do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --requests-per-connection) per_conn=$2; shift 2 ;;
    --cluster) cluster=1; shift ;;
    *) sed -n '2,14p' "$0" >&2; exit 2 ;;
  esac
done
binary=$(realpath "$binary")
seed_tokens=$(realpath build/bench/seed_tokens)  # any build's: it only fills the store
for tool in "$binary" "$seed_tokens" valgrind callgrind_control nginx python3; do
  command -v "$tool" >/dev/null || { echo "callgrind: missing $tool" >&2; exit 1; }
done
work=$(mktemp -d /tmp/tokengate-callgrind.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
source bench/common.sh  # free_port, wait_port, start_backend
mkdir -p "$work/store"
start_backend
cat >"$work/tokengate.yaml" <<CONF
listen: 127.0.0.1:0
workers: 1
store:
  path: $work/store/tokens
  key_file: $work/store/tokengate.key
upstreams:
  backend:
    url: http://127.0.0.1:$backend_port
routes:
  - path: /**
    upstream: backend
CONF
"$seed_tokens" --config "$work/tokengate.yaml" --count 10 2>/dev/null >"$work/tokens.txt"
token=$(head -n 1 "$work/tokens.txt")
config=$work/tokengate.yaml
if ((cluster)); then
  python3 bench/pg_server.py "$work/pg-url" 2>"$work/pg-server.log" &
  pids+=($!)
  deadline=$((SECONDS + 120))
  until [[ -s $work/pg-url ]]; do
    ((SECONDS < deadline)) || { echo "callgrind: PostgreSQL did not start" >&2; cat "$work/pg-server.log" >&2; exit 1; }
    sleep 0.1
  done
  config=$work/cluster.yaml
  sed "s#$work/store/tokens#$work/cluster-store/tokens#" "$work/tokengate.yaml" >"$config"
  printf '  postgres:\n    url: %s\n' "$(cat "$work/pg-url")" >"$work/postgres.yaml"
  sed -i "/^  key_file:/r $work/postgres.yaml" "$config"
  "$binary" store migrate --config "$config" >/dev/null
  "$binary" store import --config "$config" --from "$work/store/tokens" >/dev/null
fi
cat >"$work/client.py" <<'PY'
# client.py PORT TOKEN CONNS PER_CONN: CONNS keep-alive connections, PER_CONN GETs each
import selectors, socket, sys
port, token, conns, per = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
req = ("GET /bench HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n" % token).encode()
sel, state, bad = selectors.DefaultSelector(), {}, 0
for _ in range(conns):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    state[s] = [0, b""]
    s.send(req)
    sel.register(s, selectors.EVENT_READ)
while state:
    for key, _ in sel.select():
        s = key.fileobj
        st = state[s]
        data = s.recv(65536)
        if not data:
            sys.exit("callgrind: the gateway closed a connection")
        st[1] += data
        while b"\r\n\r\n" in st[1]:
            head, _, rest = st[1].partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                break
            bad += not head.startswith(b"HTTP/1.1 200")
            st[1], st[0] = rest[length:], st[0] + 1
            if st[0] < per:
                s.send(req)
            else:
                sel.unregister(s)
                s.close()
                del state[s]
                break
if bad:
    sys.exit("callgrind: %d responses were not 200" % bad)
PY
valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" "$binary" serve --config "$config" \
  2>"$work/tokengate.log" >/dev/null &
vg=$!
pids=("$vg" "${pids[@]}")
deadline=$((SECONDS + 120))
until grep -q 'listening on' "$work/tokengate.log"; do
  ((SECONDS < deadline)) || { echo "callgrind: the gateway did not start" >&2; tail "$work/tokengate.log" >&2; exit 1; }
  sleep 0.2
done
port=$(grep -m1 -o 'listening on [^ ]*' "$work/tokengate.log" | sed 's/.*://')
python3 "$work/client.py" "$port" "$token" "$conns" 50  # warm-up: connections, pools, caches
callgrind_control -z "$vg" >/dev/null 2>&1
python3 "$work/client.py" "$port" "$token" "$conns" "$per_conn"
callgrind_control -d "$vg" >/dev/null 2>&1
profile=$(ls -t "$work"/callgrind.out.* | head -n 1)
total=$(awk '/^summary:/ {print $2; exit}' "$profile")
requests=$((conns * per_conn))
echo "callgrind: $requests requests over $conns connections: $total instructions, $((total / requests)) per request"
echo "callgrind: profile $profile (callgrind_annotate --inclusive=yes $profile)"

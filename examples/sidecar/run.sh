#!/bin/sh
# Two-process sidecar: an app bound to localhost (the demo upstream) and tokengate
# in front of it. First run creates a demo token in $STATE_DIR/demo-token.
#   examples/sidecar/run.sh                       # app on 127.0.0.1:9000, gateway on 127.0.0.1:8080
#   LISTEN=0.0.0.0:8080 APP_LISTEN=127.0.0.1:0 examples/sidecar/run.sh
# SIGTERM/SIGINT stop both: the gateway drains first, then the app is stopped.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TOKENGATE=${TOKENGATE:-$ROOT/build/gateway/tokengate}
APP=${APP:-$ROOT/build/tools/tokengate-demo-upstream}
LISTEN=${LISTEN:-127.0.0.1:8080}
APP_LISTEN=${APP_LISTEN:-127.0.0.1:9000}
STATE_DIR=${STATE_DIR:-$HERE/var}

mkdir -p "$STATE_DIR"
STATE_DIR=$(cd "$STATE_DIR" && pwd)

# 1. The app, on localhost only. Its stderr goes to a file so ours carries only the gateway's.
"$APP" --listen "$APP_LISTEN" 2>"$STATE_DIR/app.log" &
APP_PID=$!
trap 'kill "$APP_PID" 2>/dev/null || true' EXIT
APP_ADDRESS=
i=0
while [ -z "$APP_ADDRESS" ]; do
  APP_ADDRESS=$(sed -n 's/.*listening on \([^ ]*:[0-9][0-9]*\).*/\1/p' "$STATE_DIR/app.log" | head -n 1)
  if [ -z "$APP_ADDRESS" ]; then
    i=$((i + 1))
    if [ "$i" -gt 100 ] || ! kill -0 "$APP_PID" 2>/dev/null; then
      echo "run.sh: the app did not start; see $STATE_DIR/app.log" >&2
      exit 1
    fi
    sleep 0.1
  fi
done

# 2. The gateway's config, pointing at wherever the app really listens.
CONFIG="$STATE_DIR/tokengate.yaml"
sed -e "s|@LISTEN@|$LISTEN|" -e "s|@STATE@|$STATE_DIR|g" -e "s|@APP_ADDRESS@|$APP_ADDRESS|" \
  "$HERE/tokengate.yaml.in" >"$CONFIG"
"$TOKENGATE" check --config "$CONFIG" >&2

# 3. A demo token on first run (the plaintext is shown once: keep it in a 0600 file).
if [ ! -s "$STATE_DIR/demo-token" ]; then
  (umask 077 && "$TOKENGATE" token create --config "$CONFIG" --name sidecar-demo --role reader \
    2>/dev/null | head -n 1 >"$STATE_DIR/demo-token")
  echo "run.sh: demo token written to $STATE_DIR/demo-token" >&2
fi

# 4. The gateway; signals are passed on, and the app stops after the gateway.
"$TOKENGATE" serve --config "$CONFIG" &
GW_PID=$!
SIGNALLED=0
trap 'SIGNALLED=1; kill -TERM "$GW_PID" 2>/dev/null || true' TERM INT
status=0
wait "$GW_PID" || status=$?
if [ "$SIGNALLED" = 1 ]; then
  # wait was interrupted by the signal: now wait for the gateway's drain to finish
  status=0
  wait "$GW_PID" || status=$?
fi
kill "$APP_PID" 2>/dev/null || true
wait "$APP_PID" 2>/dev/null || true
exit "$status"

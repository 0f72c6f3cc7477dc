#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs tokengate
# on conf/example.yaml in front of the demo upstream (an echo server on :9000),
# printing a demo token and a curl line to try. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Only what runs here: the tests are built by scripts/test.sh.
scripts/build.sh release tokengate tokengate-demo-upstream

bin=build/gateway/tokengate
upstream_bin=build/tools/tokengate-demo-upstream
config=conf/example.yaml

"$bin" check --config "$config"

"$upstream_bin" --listen 127.0.0.1:9000 &
upstream_pid=$!
trap 'kill "$upstream_pid" 2>/dev/null || true' EXIT

# The store is locked while the gateway runs, so the demo token is made first.
token=$("$bin" token create --config "$config" --name "demo-$(date +%s)" \
          --role orders-reader --license pro --expires 1d 2>/dev/null)

cat <<TXT

Demo token (shown once; valid for one day):
  $token

Try it (the demo upstream echoes what it received, identity headers included):
  curl -s -H 'Authorization: Bearer $token' http://127.0.0.1:8080/api/orders/42
Without a token:
  curl -si http://127.0.0.1:8080/api/orders/42

TXT
"$bin" serve --config "$config"

#!/usr/bin/env bash
# Installs the Debian 12 packages tokengate needs to build and test, when missing.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config python3 curl openssl
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  librocksdb-dev libyaml-cpp-dev libssl-dev zlib1g-dev
  libfmt-dev libcli11-dev doctest-dev
  clang-14 libclang-rt-14-dev
)
# --- cluster mode: libpq to build; a PostgreSQL server the tests start themselves (never the service)
packages+=(libpq-dev postgresql-15)
# --- end cluster mode
# --- web console browser test: Debian's chromium (and node, when the machine has none)
packages+=(chromium)
command -v node >/dev/null || packages+=(nodejs npm)
# --- end web console
# --- forward auth: the integration tests run a real nginx (auth_request) and Caddy
# (forward_auth) in front of tokengate, started by the tests on free ports
packages+=(nginx-light caddy)
# --- end forward auth
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(haproxy wrk)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- cluster mode: libpq to build; a PostgreSQL server the tests start themselves (never the service)
packages+=(libpq-dev postgresql-15)
# --- end cluster mode
# --- web console browser test: playwright-core (no browser download) from the lock file
if [[ ! -d "$(dirname "$0")/../tests/browser/node_modules/playwright-core" ]]; then
  echo "setup: installing playwright-core into tests/browser/node_modules" >&2
  (cd "$(dirname "$0")/../tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
fi
# --- end web console

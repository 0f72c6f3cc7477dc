#!/usr/bin/env bash
# Configures and builds tokengate. Usage: scripts/build.sh [release|asan] [TARGET...]
# (default release; without targets, everything, tests included). Release builds
# go to build/, asan ones to build-asan/. TOKENGATE_BUILD_JOBS overrides nproc.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
case "$kind" in
  release) dir=build;      flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  asan)    dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=Debug -DTOKENGATE_SANITIZE=ON) ;;
  *) echo "usage: $0 [release|asan] [TARGET...]" >&2; exit 2 ;;
esac
shift $(($# > 0 ? 1 : 0))
targets=()
(($#)) && targets=(--target "$@")
cmake -S . -B "$dir" -G Ninja -DTOKENGATE_WERROR=ON "${flags[@]}" >/dev/null
cmake --build "$dir" -j "${TOKENGATE_BUILD_JOBS:-$(nproc)}" "${targets[@]}"

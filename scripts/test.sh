#!/usr/bin/env bash
# The whole test suite: installs what is missing, checks the C++ formatting
# (scripts/format.sh --check), builds, runs every test in a
# release build and again under AddressSanitizer + UndefinedBehaviorSanitizer,
# then every fuzz harness for TOKENGATE_FUZZ_SECONDS (default 30) each.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== format" >&2
scripts/format.sh --check
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for kind in release asan; do
  echo "== $kind build" >&2
  scripts/build.sh "$kind"
  dir=build; [[ $kind == asan ]] && dir=build-asan
  echo "== $kind tests" >&2
  ctest --test-dir "$dir" --output-on-failure -j "$(nproc)" --timeout 900
done
echo "== fuzz" >&2
scripts/fuzz.sh "${TOKENGATE_FUZZ_SECONDS:-30}"

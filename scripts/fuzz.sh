#!/usr/bin/env bash
# Fuzzing: builds every libFuzzer harness of fuzz/ with clang-14 in build-fuzz/ and
# runs each for SECONDS (default 30), seeded with fuzz/corpus/<name>/. Usage:
#   scripts/fuzz.sh [SECONDS]        e.g. scripts/fuzz.sh 1800 for a longer hunt
# New corpus entries go to a temporary directory, never into the repository. Any
# finding (crash, failed property, leak, timeout over 10 s, memory over 2 GiB)
# fails the script and leaves the reproducer in build-fuzz/findings/<name>/; add
# it to fuzz/corpus/<name>/ together with a unit test once it is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
if [[ ! $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS]" >&2
  exit 2
fi
dir=build-fuzz
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 \
  -DTOKENGATE_FUZZ=ON -DTOKENGATE_WERROR=ON >/dev/null
cmake --build "$dir" --target fuzz -j "${TOKENGATE_BUILD_JOBS:-$(nproc)}"

work=$(mktemp -d "${TMPDIR:-/tmp}/tokengate-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
findings=$dir/findings
rm -rf "$findings"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Every fuzz_* executable is a harness: new ones need no change here.
harnesses=()
for exe in "$dir"/fuzz/fuzz_*; do
  [[ -f $exe && -x $exe ]] && harnesses+=("$exe")
done
if ((${#harnesses[@]} == 0)); then
  echo "fuzz: no harnesses in $dir/fuzz" >&2
  exit 1
fi

failed=()
for exe in "${harnesses[@]}"; do
  name=${exe##*/fuzz_}
  seeds=fuzz/corpus/$name
  mkdir -p "$work/corpus/$name" "$findings/$name"
  # The first directory receives new inputs; the seeds are only read.
  corpora=("$work/corpus/$name")
  if [[ -d $seeds ]]; then
    corpora+=("$seeds")
  else
    echo "fuzz: warning: $name has no seed corpus ($seeds)" >&2
  fi
  log=$work/$name.log
  echo "== fuzz $name (${seconds}s)" >&2
  status=0
  "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$findings/$name/" "${corpora[@]}" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  echo "   ${runs:-?} runs, ${speed:-?} exec/s, $(find "$work/corpus/$name" -type f | wc -l) new corpus entries" >&2
  if ((status != 0)) || [[ -n $(ls -A "$findings/$name") ]]; then
    echo "fuzz: $name FAILED (exit $status); the end of its log:" >&2
    tail -n 60 "$log" >&2
    failed+=("$name")
  else
    rmdir "$findings/$name"
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: findings in ${failed[*]} (reproducers in $findings/)" >&2
  exit 1
fi
echo "fuzz: ${#harnesses[@]} harnesses, ${seconds}s each, no findings" >&2

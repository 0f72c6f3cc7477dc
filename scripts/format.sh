#!/usr/bin/env bash
# Formats the C++ sources with clang-format 14 (Debian 12's, package clang-format)
# and the repository's .clang-format. Usage:
#   scripts/format.sh           format every tracked *.cpp / *.hpp in place
#   scripts/format.sh --check   change nothing; list the files that differ, exit 1 if any
# Only files tracked by git are formatted (new files: git add them first). There
# are no generated or third-party C++ files in the tree today (the web console's
# asset data is generated into the build directory); add any to `excluded` below.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=format
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# Another major version formats differently: take clang-format-14, or a
# clang-format that is version 14.
tool=
for candidate in clang-format-14 clang-format; do
  if command -v "$candidate" >/dev/null && [[ $("$candidate" --version) =~ version\ 14\. ]]; then
    tool=$candidate
    break
  fi
done
if [[ -z $tool ]]; then
  echo "format: clang-format 14 not found; install the Debian package clang-format (apt-get install clang-format)" >&2
  exit 1
fi

# Extended regular expression of tracked paths never to format (none today).
excluded='^$'
files=()
while IFS= read -r -d '' f; do
  # A tracked file deleted in the working tree is not ours to recreate.
  [[ -f $f ]] && ! [[ $f =~ $excluded ]] && files+=("$f")
done < <(git ls-files -z -- '*.cpp' '*.hpp')

differ=()
for f in "${files[@]}"; do
  "$tool" --style=file "$f" | cmp -s - "$f" || differ+=("$f")
done

if [[ $mode == check ]]; then
  if ((${#differ[@]})); then
    echo "format: ${#differ[@]} of ${#files[@]} files are not clang-format clean (fix: scripts/format.sh):" >&2
    printf '  %s\n' "${differ[@]}" >&2
    exit 1
  fi
  echo "format: ${#files[@]} files clean" >&2
  exit 0
fi

if ((${#differ[@]})); then
  "$tool" --style=file -i -- "${differ[@]}"
  printf 'format: reformatted %s\n' "${differ[@]}" >&2
fi
echo "format: ${#differ[@]} of ${#files[@]} files reformatted" >&2

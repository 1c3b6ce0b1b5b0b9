#!/usr/bin/env bash
# clang-tidy over src/ with the checks in .clang-tidy (which says why each is in or out), the
# `clang-tidy` test of the lint suite. TAP: one line a source file, failing on any finding.
# Two files at a time, niced: a few minutes on 2 cores.
#
# Usage: scripts/clang-tidy.sh [SOURCE_DIR [BUILD_DIR]] (BUILD_DIR holds compile_commands.json;
# default SOURCE_DIR/build). Fix a finding, or suppress a wrong one on its line with
# /* NOLINTNEXTLINE(check) */ under a comment that says why it is wrong.
set -uo pipefail
src=$(cd "${1:-$(dirname "$0")/..}" && pwd)
build=$(cd "${2:-$src/build}" 2>/dev/null && pwd) || build=${2:-$src/build}
cd "$src"
tidy=$(command -v clang-tidy-14 || command -v clang-tidy) || {
    echo "1..1"
    echo "not ok 1 - clang-tidy is not installed (run: scripts/install-deps.sh, or apt-get install clang-tidy)"
    exit 1
}
if [ ! -s "$build/compile_commands.json" ]; then
    echo "1..1"
    echo "not ok 1 - no $build/compile_commands.json (run: meson setup $build)"
    exit 1
fi
# The C files of src/ the build compiles (a file built twice, for the guest too, once).
mapfile -t files < <(python3 - "$build/compile_commands.json" "$src" <<'PY'
import json, os, sys
src = sys.argv[2]
seen = set()
for e in json.load(open(sys.argv[1])):
    p = os.path.relpath(os.path.normpath(os.path.join(e["directory"], e["file"])), src)
    if p.startswith("src/") and p.endswith(".c") and p not in seen:
        seen.add(p)
        print(p)
PY
)
echo "1..${#files[@]}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
# One output file per source file; clang-tidy's own exit code is not used, its diagnostics
# are.
printf '%s\n' "${files[@]}" |
    xargs -P 2 -I{} sh -c 'nice -n 10 "$1" -p "$2" --quiet "$3" >"$4/$(echo "$3" | tr / _).out" 2>&1' \
        _ "$tidy" "$build" {} "$tmp"
n=0
fail=0
for f in "${files[@]}"; do
    n=$((n + 1))
    out=$tmp/$(echo "$f" | tr / _).out
    # "path:line:col: error: text [check,-warnings-as-errors]", paths relative to the tree;
    # a header's finding shows under each file that includes it.
    found=$(sed -e "s|^$build/\.\./||; s|^$src/||; s|^\.\./||" "$out" |
        grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error): ' | sort -u)
    if [ -z "$found" ]; then
        echo "ok $n - $f"
    else
        fail=1
        printf '%s\n' "$found" | sed 's/^/# /'
        echo "not ok $n - $f"
    fi
done
echo "# $n files in $(($(date +%s) - start)) s ($tidy, checks from .clang-tidy)"
exit $fail

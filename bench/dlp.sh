#!/usr/bin/env bash
# DLP scanner CPU cost per MB on a mixed corpus (docs/benchmarks.md, "DLP"): the benign corpus
# of the unit tests (npm metadata, lock files, git smart-HTTP bodies, API JSON, HTML with
# inline images, minified JS, URLs) plus 1 MB of random bytes and 1 MB of base64 text.
# A script that prints numbers, not a test. Target: < 1 ms CPU per MB.
#   bench/dlp.sh [--build DIR] [--seconds S]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
build=$src/build
secs=2
while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$2; shift 2 ;;
    --seconds) secs=$2; shift 2 ;;
    *) echo "usage: bench/dlp.sh [--build DIR] [--seconds S]" >&2; exit 2 ;;
    esac
done
[ -f "$build/src/dlp/libbb-dlp.a" ] || { echo "dlp.sh: build first (ninja -C $build)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -std=gnu17 -O2 -Wall -I"$src/src" -o "$tmp/dlp-bench" "$here/tools/dlp-bench.c" \
    "$build/src/dlp/libbb-dlp.a" "$build/src/common/libbb-common.a" -lm
head -c 1000000 /dev/urandom >"$tmp/random.bin"
head -c 750000 /dev/urandom | base64 >"$tmp/base64.txt"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$tmp/dlp-bench" --seconds "$secs" "$src"/tests/unit/data/dlp/benign/* "$tmp/random.bin" \
    "$tmp/base64.txt"

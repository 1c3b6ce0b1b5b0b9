#!/usr/bin/env bash
# bench/microvm-exec.sh: what one fork+exec+wait of a small program costs inside a bottle, on
# the default backend (microVM) and the namespace backend, in the same run. Every command an
# agent runs (a shell, git, ls, a test runner) pays it.
#
# In each bottle, tools/exec-loop.c runs, N times each:
#   usr-true     /usr/bin/true: dynamic (ld.so, libc), from the read-only /usr share
#   usr-true-R   the same under `setarch -R` (no address-space randomization for it): shows
#                what QEMU's TCG pays for ASLR (it translates guest code per virtual address,
#                so ld.so and libc, mapped at new addresses in every process, are translated
#                anew for every exec). For comparison only: bottles keep ASLR.
#   ws-static    a static binary in the workspace (the read-write share)
#   tmp-static   the same binary copied to the bottle's /tmp (tmpfs)
# and prints the median milliseconds per run.
#
# Prints numbers; it is not a test (exit 0 whatever the numbers, non-zero only when it could
# not run). Recorded results: docs/benchmarks.md ("Exec in the microVM under TCG").
#
# Usage: bench/microvm-exec.sh [--n N] [--build DIR] [--nice N]
#   --n N        runs of each program (default 20)
#   --build DIR  meson build dir (default build)
#   --nice N     nice value (default 10)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
n=20
build=$root/build
nice_val=10
die() {
    echo "bot-bottle: microvm-exec: $*" >&2
    exit 1
}
while [ $# -gt 0 ]; do
    case $1 in
    --n) n=${2:?}; shift 2 ;;
    --build) build=${2:?}; shift 2 ;;
    --nice) nice_val=${2:?}; shift 2 ;;
    -h | --help) bench_help "$0"; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
case $n in '' | *[!0-9]* | 0) die "--n wants a positive number" ;; esac
bb=$build/src/cli/bot-bottle
[ -x "$bb" ] || die "build first: meson setup $build && ninja -C $build"

keep=0
bench_start microvm-exec
mkdir -m 0755 "$tmp/ws" && mkdir -m 0700 "$tmp/state"
cc -O2 -static -o "$tmp/ws/exec-loop" "$here/tools/exec-loop.c" || die "cannot build tools/exec-loop.c"
printf 'int main(void) { return 0; }\n' >"$tmp/nop.c"
cc -O2 -static -o "$tmp/ws/nop" "$tmp/nop.c" || die "cannot build a static program"
{
    echo 'set -e'
    echo 'cp ./nop /tmp/nop'
    echo "echo \"usr-true \$(./exec-loop $n /usr/bin/true)\""
    echo "echo \"usr-true-R \$(setarch -R ./exec-loop $n /usr/bin/true)\""
    echo "echo \"ws-static \$(./exec-loop $n ./nop)\""
    echo "echo \"tmp-static \$(./exec-loop $n /tmp/nop)\""
} >"$tmp/ws/probe.sh"

echo "microvm-exec: $n runs each, nice $nice_val, load $(cut -d' ' -f1-3 /proc/loadavg)"
for backend in microvm namespace; do
    out=$(cd "$tmp/ws" && BOT_BOTTLE_STATE_DIR=$tmp/state nice -n "$nice_val" \
        "$bb" run --backend "$backend" -- bash probe.sh 2>"$tmp/err") ||
        die "$backend: bot-bottle run failed: $(cat "$tmp/err")"
    echo "$out" | tr -d '\r' | awk -v b="$backend" '$2 == "median_us" {
        printf "  %-9s %-11s %8.1f ms per run (min %.1f)\n", b, $1, $3 / 1000, $5 / 1000 }'
done
echo "microvm-exec: load $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# bench/microvm-mem.sh: host memory of an idle microVM bottle with 512 MiB of guest RAM: the
# RSS (and PSS, which splits shared pages) of QEMU, the supervisor (`bot-bottle run`) and the
# egress daemon, N seconds after the command (`sleep`) started in the guest. --memory 784M
# gives the guest 512 MiB (docs/microvm.md "Limits": G = (L - 256) * 32/33).
#
# Prints numbers; it is not a test (exit 0 whatever the numbers, non-zero only when it could
# not run). Recorded results: docs/benchmarks.md ("microVM backend").
#
# Usage: bench/microvm-mem.sh [--build DIR] [--memory SIZE] [--settle SECONDS] [--reps N]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=$root/build
memory=784M
settle=3
reps=3
die() {
    echo "bot-bottle: microvm-mem: $*" >&2
    exit 1
}
while [ $# -gt 0 ]; do
    case $1 in
    --build) build=${2:?}; shift 2 ;;
    --memory) memory=${2:?}; shift 2 ;;
    --settle) settle=${2:?}; shift 2 ;;
    --reps) reps=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
bb=$build/src/cli/bot-bottle
[ -x "$bb" ] || die "$bb not found (build it: meson setup $build && ninja -C $build)"
tmp=$(mktemp -d /tmp/microvm-mem.XXXXXX)
run_pid=
cleanup() {
    [ -n "$run_pid" ] && kill "$run_pid" 2>/dev/null && wait "$run_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/ws" && mkdir -m 0700 "$tmp/state"
kib() { awk -v k="$2" '$1 == k":" { print $2; f = 1 } END { if (!f) print 0 }' "/proc/$1/${3:-status}" 2>/dev/null || echo 0; }

echo "microvm-mem: $reps idle bottles, --memory $memory, measured ${settle}s after the guest command started; load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$reps"); do
    (cd "$tmp/ws" && BOT_BOTTLE_STATE_DIR=$tmp/state exec "$bb" run --memory "$memory" -- \
        sh -c 'echo guest-ready; exec sleep 600') >"$tmp/out" 2>"$tmp/err" &
    run_pid=$!
    for _ in $(seq 1800); do grep -q guest-ready "$tmp/out" 2>/dev/null && break; sleep 0.1; done
    grep -q guest-ready "$tmp/out" || die "the bottle did not start: $(cat "$tmp/err")"
    sleep "$settle"
    qemu=$(pgrep -P "$run_pid" -f qemu-system || true)
    daemon=$(pgrep -P "$run_pid" -f egress || true)
    [ -n "$qemu" ] && [ -n "$daemon" ] || die "QEMU or the daemon not found under $run_pid"
    printf 'rep %d: %-12s %8s %8s\n' "$r" "" "RSS KiB" "PSS KiB"
    total_r=0; total_p=0
    for pair in "QEMU:$qemu" "supervisor:$run_pid" "daemon:$daemon"; do
        name=${pair%%:*}; pid=${pair#*:}
        rss=$(kib "$pid" VmRSS); pss=$(kib "$pid" Pss smaps_rollup)
        total_r=$((total_r + rss)); total_p=$((total_p + pss))
        printf '       %-12s %8d %8d\n' "$name" "$rss" "$pss"
    done
    printf '       %-12s %8d %8d  (%.0f MiB RSS)\n' total "$total_r" "$total_p" "$(awk -v k=$total_r 'BEGIN { print k / 1024 }')"
    kill "$run_pid"
    wait "$run_pid" 2>/dev/null || true
    run_pid=
done

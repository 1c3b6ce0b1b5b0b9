#!/usr/bin/env bash
# bench/microvm-ws.sh: workspace I/O inside a microVM bottle (9p) against the same commands on
# the host: a 200 MB write (dd, fsync) and read back, `git status` (twice: cold, then warm)
# and `find -type f` over a 20k-file git tree in the workspace. The VM runs once per 9p
# variant (msize and cache mode of the workspace share, through BOT_BOTTLE_VM_9P=MSIZE,CACHE,
# a benchmark knob bottle-init checks); the default is 512000,mmap (src/guest/rootfs.c).
#
# Prints numbers; it is not a test (exit 0 whatever the numbers, non-zero only when it could
# not run). Recorded results: docs/benchmarks.md ("microVM backend").
#
# Usage: bench/microvm-ws.sh [--build DIR] [--files N] [--mb N] [--variants "M,C M,C ..."]
#   --files N     files in the tree (default 20000, in directories of 100)
#   --mb N        size of the write/read file in MB (default 200)
#   --variants V  9p variants (default "512000,mmap 131072,mmap 512000,loose 512000,none")
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=$root/build
files=20000
mb=200
variants="512000,mmap 131072,mmap 512000,loose 512000,none"
die() {
    echo "bot-bottle: microvm-ws: $*" >&2
    exit 1
}
while [ $# -gt 0 ]; do
    case $1 in
    --build) build=${2:?}; shift 2 ;;
    --files) files=${2:?}; shift 2 ;;
    --mb) mb=${2:?}; shift 2 ;;
    --variants) variants=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
bb=$build/src/cli/bot-bottle
[ -x "$bb" ] || die "$bb not found (build it: meson setup $build && ninja -C $build)"
tmp=$(mktemp -d /tmp/microvm-ws.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -m 0700 "$tmp/state"
ws=$tmp/ws
mkdir -p "$ws/tree"
echo "microvm-ws: making a $files-file git tree in $ws/tree"
(cd "$ws/tree" && for d in $(seq 0 $(((files - 1) / 100))); do
    mkdir "d$d"
    for f in $(seq 0 99); do echo "file $d/$f" >"d$d/f$f.txt"; done
done && git init -q && git -c user.name=b -c user.email=b@example.invalid add -A &&
    git -c gc.auto=0 -c user.name=b -c user.email=b@example.invalid commit -qm tree) || die "cannot make the tree"

# the workload: one "NAME MS" line per step
cat >"$ws/work.sh" <<WORK
#!/bin/sh
ms() { date +%s%N | cut -c1-13; }
cd "$ws"
t=\$(ms); dd if=/dev/zero of=big bs=1M count=$mb conv=fsync 2>/dev/null; echo "write-${mb}MB \$((\$(ms) - t))"
t=\$(ms); dd if=big of=/dev/null bs=1M 2>/dev/null; echo "read-${mb}MB \$((\$(ms) - t))"
rm -f big
cd tree
t=\$(ms); git status --porcelain >/dev/null; echo "git-status-cold \$((\$(ms) - t))"
t=\$(ms); git status --porcelain >/dev/null; echo "git-status-warm \$((\$(ms) - t))"
t=\$(ms); n=\$(find . -type f | wc -l); echo "find-\$n-files \$((\$(ms) - t))"
WORK
chmod +x "$ws/work.sh"

echo "microvm-ws: load $(cut -d' ' -f1-3 /proc/loadavg); times in ms"
sh "$ws/work.sh" | sed 's/^/host               /'
for v in $variants; do
    out=$(cd "$ws" && BOT_BOTTLE_VM_9P=$v BOT_BOTTLE_STATE_DIR=$tmp/state timeout 1200 \
        "$bb" run -- "$ws/work.sh" 2>"$tmp/err") || {
        echo "microvm-ws: the VM run with $v failed: $(tail -3 "$tmp/err")" >&2
        continue
    }
    printf '%s\n' "$out" | tr -d '\r' | sed "s/^/vm $(printf '%-15s' "$v") /"
done
echo "microvm-ws: load $(cut -d' ' -f1-3 /proc/loadavg)"

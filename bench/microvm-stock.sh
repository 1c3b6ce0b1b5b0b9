#!/usr/bin/env bash
# bench/microvm-stock.sh: `bot-bottle run -- true` on the microvm backend with the minimal
# kernel (the cache's, the default) and with Debian's stock kernel ([microvm] kernel = stock,
# scripts/fetch-stock-kernel.sh), interleaved round by round so both see the same machine load.
# Prints each round (wall time from launch to exit, the guest's CLOCK_BOOTTIME when
# bottle-init's early init, module loading included, was done, the load average), then the
# medians and the stock/minimal ratios.
#
# Prints numbers; it is not a test (exit 0 whatever the numbers, non-zero only when it could
# not run). Recorded results: docs/microvm.md ("Measured: stock against minimal").
#
# Usage: bench/microvm-stock.sh [--runs N] [--build DIR]
#   --runs N      rounds (default 5): one boot of each kernel
#   --build DIR   meson build dir (default build)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
runs=5
build=$root/build
die() {
    echo "bot-bottle: microvm-stock: $*" >&2
    exit 1
}
while [ $# -gt 0 ]; do
    case $1 in
    --runs) runs=${2:?}; shift 2 ;;
    --build) build=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
bb=$build/src/cli/bot-bottle
[ -x "$bb" ] || die "no $bb (ninja -C $build)"

t=$(mktemp -d /tmp/bench-microvm-stock.XXXXXX)
trap 'rm -rf "$t"' EXIT
mkdir -p "$t/ws"
printf '[microvm]\n' >"$t/minimal.ini"
printf '[microvm]\nkernel = stock\n' >"$t/stock.ini"
(cd "$t/ws" && "$bb" run -c "$t/stock.ini" --allow-cidr 127.0.0.1/32 -- true >/dev/null 2>"$t/err") ||
    die "the stock kernel does not run: $(tail -1 "$t/err") (scripts/fetch-stock-kernel.sh)"

for i in $(seq "$runs"); do
    for k in minimal stock; do
        la=$(cut -d' ' -f1 /proc/loadavg)
        t0=$(date +%s%N)
        (cd "$t/ws" && BOT_BOTTLE_VM_TRACE=1 timeout 300 "$bb" run -c "$t/$k.ini" \
            --allow-cidr 127.0.0.1/32 -- true >/dev/null 2>"$t/err") || die "$k: run failed: $(tail -1 "$t/err")"
        t1=$(date +%s%N)
        ei=$(sed -n 's/^bb-trace early-init \([0-9.]*\).*/\1/p' "$t/err" | head -1)
        echo "$i $k wall_ms=$(((t1 - t0) / 1000000)) early_init_ms=${ei:-?} load=$la" | tee -a "$t/rounds"
    done
done
python3 - "$t/rounds" <<'PY'
import statistics, sys
d = {}
for line in open(sys.argv[1]):
    f = line.split()
    kv = dict(x.split("=") for x in f[2:])
    d.setdefault(f[1], []).append((int(kv["wall_ms"]), float(kv["early_init_ms"]) if kv["early_init_ms"] != "?" else None))
med = {}
for k in ("minimal", "stock"):
    w = [x[0] for x in d[k]]
    e = [x[1] for x in d[k] if x[1] is not None]
    med[k] = (statistics.median(w), statistics.median(e) if e else float("nan"))
    print("%-8s wall median %6.0f ms (%d-%d)  early init median %6.0f ms" % (k, med[k][0], min(w), max(w), med[k][1]))
print("ratio stock/minimal: wall %.2f, early init %.2f" % (med["stock"][0] / med["minimal"][0], med["stock"][1] / med["minimal"][1]))
PY

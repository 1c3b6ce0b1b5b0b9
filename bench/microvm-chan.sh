#!/usr/bin/env bash
# bench/microvm-chan.sh: the microvm backend's channel throughput. Side by side, interleaved:
#   raw   the host writes SIZE bytes into the bottle.chan virtio-serial port's unix socket
#         and a trivial guest init (tools/chan-raw-init.c) reads them from the port (CHUNK
#         bytes per read) and discards them: the most the port itself carries here, in a
#         download's direction (--out: the guest writes, the host reads);
#   proxy `bot-bottle run -- curl -x $HTTP_PROXY http://127.0.0.1:P/SIZE` on the default
#         backend: the same port carrying the channel's framing, the guest relay, the host
#         relay and the egress daemon (tools/run-source.c serves the bytes on the host).
# Both are guest-side rates (bytes / time from the first write or request to the last byte),
# MB = 10^6 bytes. Prints each repetition, the medians and proxy/raw.
#
# Prints numbers; it is not a test (exit 0 whatever the numbers, non-zero only when it could
# not run). Recorded results: docs/benchmarks.md ("microVM backend").
#
# Usage: bench/microvm-chan.sh [--reps N] [--size BYTES] [--chunk BYTES] [--build DIR] [--nice N]
#   --reps N       repetitions of each (default 3)
#   --size BYTES   bytes per transfer (default 100000000)
#   --chunk BYTES  the raw guest side's read/write size (default 65536)
#   --out          raw: guest to host instead (the proxy side stays a download)
#   --build DIR    meson build dir (default build)
#   --nice N       nice value for both (default 10)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
reps=3
size=100000000
chunk=65536
build=$root/build
nice_val=10
dir=in
die() {
    echo "bot-bottle: microvm-chan: $*" >&2
    exit 1
}
while [ $# -gt 0 ]; do
    case $1 in
    --reps) reps=${2:?}; shift 2 ;;
    --size) size=${2:?}; shift 2 ;;
    --chunk) chunk=${2:?}; shift 2 ;;
    --build) build=${2:?}; shift 2 ;;
    --nice) nice_val=${2:?}; shift 2 ;;
    --out) dir=out; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
bb=$build/src/cli/bot-bottle
tool=$build/src/backend/microvm/microvm-argv
[ -x "$bb" ] && [ -x "$tool" ] || die "build first: meson setup $build && ninja -C $build"
if [ "$(id -u)" -eq 0 ]; then cache=/var/cache/bot-bottle/kernel; else cache=${XDG_CACHE_HOME:-$HOME/.cache}/bot-bottle/kernel; fi
k=$(sed -n 's/^vmlinux=//p' "$cache/kernel.meta" 2>/dev/null | head -1)
[ -n "$k" ] || die "no guest kernel in $cache (scripts/build-guest-kernel.sh)"

tmp=$(mktemp -d /tmp/microvm-chan.XXXXXX)
src_pid=
cleanup() {
    [ -n "$src_pid" ] && kill "$src_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
cc -O2 -static -o "$tmp/init" "$here/tools/chan-raw-init.c" || die "cannot build tools/chan-raw-init.c"
cc -std=gnu17 -O2 -o "$tmp/run-source" "$here/tools/run-source.c" || die "cannot build tools/run-source.c"
khz=$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)
"$tool" --init "$tmp/init" --initramfs "$tmp/initramfs.cpio" --kernel "$cache/$k" --accel tcg \
    --tsc-khz "${khz:-0}" --cpus 1 --memory 256 --chan-socket "$tmp/chan.sock" \
    --append "chanraw=$size,$chunk,$dir" >"$tmp/argv" || die "microvm-argv failed"
mapfile -d '' qemu_argv <"$tmp/argv"
"$tmp/run-source" "$tmp/port" 900 &
src_pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
port=$(cat "$tmp/port")
mkdir -p "$tmp/ws" && mkdir -m 0700 "$tmp/state"

raw() { # prints MB/s (guest side) or NA
    python3 - "$tmp/chan.sock" "$size" "$dir" >"$tmp/host.out" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(1); s.settimeout(120)
c, _ = s.accept(); c.settimeout(120)
size = int(sys.argv[2]); n = 0
if sys.argv[3] == "in":
    buf = b"x" * (1 << 20)
    while n < size:
        n += c.send(buf[: min(len(buf), size - n)])
    c.recv(1)  # until QEMU closes it
else:
    while n < size:
        d = c.recv(1 << 20)
        if not d: break
        n += len(d)
PY
    local rd=$!
    for _ in $(seq 100); do [ -S "$tmp/chan.sock" ] && break; sleep 0.02; done
    timeout 300 nice -n "$nice_val" "${qemu_argv[@]}" >"$tmp/console" 2>&1 </dev/null || true
    wait "$rd" || true
    rm -f "$tmp/chan.sock"
    tr -d '\r' <"$tmp/console" | awk -v want="$size" '/^CHAN-RAW bytes=/ {
        split($2, b, "="); split($3, t, "=")
        if (b[2] == want && t[2] > 0) { printf "%.1f", b[2] / t[2] / 1000; found = 1 } }
        END { if (!found) print "NA" }'
}
proxy() {
    local out
    out=$(cd "$tmp/ws" && BOT_BOTTLE_STATE_DIR=$tmp/state timeout 600 nice -n "$nice_val" \
        "$bb" run --allow-cidr 127.0.0.1/32 -- sh -c \
        'exec curl -sS --noproxy "" -x "$HTTP_PROXY" -o /dev/null -w "%{http_code} %{size_download} %{time_pretransfer} %{time_total}" "$1"' \
        sh "http://127.0.0.1:$port/$size" 2>>"$tmp/run.err") || true
    set -- $out
    if [ "${1:-}" = 200 ] && [ "${2:-}" = "$size" ]; then
        awk -v b="$2" -v p="$3" -v t="$4" 'BEGIN { printf "%.1f", b / (t - p) / 1e6 }'
    else
        echo NA
    fi
}
median() {
    printf '%s\n' "$@" | grep -v NA | sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
echo "microvm-chan: $reps reps of $size bytes, raw ($dir) in $chunk-byte guest reads/writes, nice $nice_val, TCG, load $(cut -d' ' -f1-3 /proc/loadavg)"
raws=()
proxies=()
for i in $(seq 1 "$reps"); do
    if [ $((i % 2)) = 1 ]; then r=$(raw); p=$(proxy); else p=$(proxy); r=$(raw); fi
    raws+=("$r")
    proxies+=("$p")
    printf 'rep %d: raw port %s MB/s, through the proxy %s MB/s\n' "$i" "$r" "$p"
done
mr=$(median "${raws[@]}")
mp=$(median "${proxies[@]}")
echo "microvm-chan: raw port median $mr MB/s, proxy median $mp MB/s, proxy/raw $(awk -v a="$mp" -v b="$mr" 'BEGIN { if (b + 0 > 0 && a + 0 > 0) printf "%.2f", a / b; else print "NA" }'); load $(cut -d' ' -f1-3 /proc/loadavg)"

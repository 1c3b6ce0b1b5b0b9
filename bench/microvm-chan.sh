#!/usr/bin/env bash
# bench/microvm-chan.sh: the microvm backend's channel throughput, and where the guest's CPU
# goes. Side by side, interleaved (the order rotates each repetition):
#   raw   the host writes SIZE bytes into the bottle.chan virtio-serial port's unix socket
#         and a trivial guest init (tools/chan-raw-init.c) reads them from the port (CHUNK
#         bytes per read) and discards them: the most the port itself carries here, in a
#         download's direction (--out: the guest writes, the host reads);
#   tcp   inside a bottle (`bot-bottle run`), tools/chan-guest.c sends SIZE bytes from one
#         guest process to another over the guest's TCP loopback: the guest TCP stack alone;
#   get   inside a bottle, tools/chan-guest.c GETs SIZE bytes through $HTTP_PROXY with a
#         minimal client (CHUNK-byte reads): the full path (guest TCP, the guest relay in
#         bottle-init, the port, the host relay, the egress daemon) minus curl's own cost;
#   proxy `bot-bottle run -- curl -x $HTTP_PROXY http://127.0.0.1:P/SIZE` on the default
#         backend: the full path as a user sees it (tools/run-source.c serves the bytes).
# All are guest-side rates (bytes / time from the first write or request to the last byte),
# MB = 10^6 bytes. get and proxy also print the guest's CPU split over the transfer (from
# /proc/stat and /proc/1/stat inside the guest, in ms): relay = bottle-init (PID 1: the guest
# relay), client = the GET client or curl, softirq, idle (the guest waited for the host).
# Prints each repetition, the medians and the ratios to the raw port.
#
# Prints numbers; it is not a test (exit 0 whatever the numbers, non-zero only when it could
# not run). Recorded results: docs/benchmarks.md ("microVM backend").
#
# Usage: bench/microvm-chan.sh [--reps N] [--size BYTES] [--chunk BYTES] [--cpus N] [--build DIR] [--nice N]
#   --reps N       repetitions of each (default 3)
#   --size BYTES   bytes per transfer (default 100000000)
#   --chunk BYTES  the raw guest side's and chan-guest's read/write size (default 65536)
#   --cpus N       vCPUs of the bottles (tcp, get, proxy; default: the backend's default, 1)
#   --out          raw: guest to host instead (the proxy side stays a download)
#   --only LIST    comma-separated subset of raw,tcp,get,proxy (default all)
#   --build DIR    meson build dir (default build)
#   --nice N       nice value for all (default 10)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
reps=3
size=100000000
chunk=65536
build=$root/build
nice_val=10
dir=in
cpus=()
only=raw,tcp,get,proxy
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
    --cpus) cpus=(--cpus "${2:?}"); shift 2 ;;
    --only) only=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
bb=$build/src/cli/bot-bottle
tool=$build/src/backend/microvm/microvm-argv
[ -x "$bb" ] && [ -x "$tool" ] || die "build first: meson setup $build && ninja -C $build"
# shellcheck source=../scripts/kernel-cache.sh
. "$root/scripts/kernel-cache.sh"
cache=$(kernel_cache_default)
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
mkdir -p "$tmp/ws" && mkdir -m 0700 "$tmp/state"
cc -O2 -static -o "$tmp/ws/chan-guest" "$here/tools/chan-guest.c" || die "cannot build tools/chan-guest.c"
khz=$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)
"$tool" --init "$tmp/init" --initramfs "$tmp/initramfs.cpio" --kernel "$cache/$k" --accel tcg \
    --tsc-khz "${khz:-0}" --cpus "${cpus[1]:-1}" --memory 256 --chan-socket "$tmp/chan.sock" \
    --append "chanraw=$size,$chunk,$dir" >"$tmp/argv" || die "microvm-argv failed"
mapfile -d '' qemu_argv <"$tmp/argv"
"$tmp/run-source" "$tmp/port" 900 &
src_pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
port=$(cat "$tmp/port")

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
# guest MODE ARGS...: runs tools/chan-guest.c in a bottle; prints "MB/s relay client softirq idle"
# (ms of guest CPU over the transfer) or NA
guest() {
    local out
    out=$(cd "$tmp/ws" && BOT_BOTTLE_STATE_DIR=$tmp/state timeout 600 nice -n "$nice_val" \
        "$bb" run "${cpus[@]}" --allow-cidr 127.0.0.1/32 -- ./chan-guest "$@" 2>>"$tmp/run.err" |
        grep '^CHAN-GUEST') || true
    awk -v want="$size" '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        split(v["cpu"], c, "/"); split(v["self"], s, "/"); split(v["init"], r, "/")
        if (v["bytes"] == want && v["ms"] > 0) {
            printf "%.1f %d %d %d %d\n", v["bytes"] / v["ms"] / 1000, r[1] + r[2], s[1] + s[2], c[4], c[5]
            found = 1 } }
        END { if (!found) print "NA - - - -" }' <<<"$out"
}
median() {
    printf '%s\n' "$@" | { grep -v NA || true; } | sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a + 0 > 0) printf "%.2f", a / b; else print "NA" }'; }
want() { [[ ",$only," == *",$1,"* ]]; }
echo "microvm-chan: $reps reps of $size bytes, raw ($dir) in $chunk-byte guest reads/writes, bottles ${cpus[*]:-(default vCPUs)}, nice $nice_val, TCG, load $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A rate cpu
kinds=(raw tcp get proxy)
for i in $(seq 1 "$reps"); do
    line="rep $i:"
    for j in 0 1 2 3; do
        k=${kinds[$(((i - 1 + j) % 4))]}
        want "$k" || continue
        case $k in
        raw) set -- "$(raw)" - - - - ;;
        # shellcheck disable=SC2046,SC2016
        tcp) set -- $(guest tcp "$size" "$chunk") ;;
        get) set -- $(guest get "http://127.0.0.1:$port/$size" "$size" "$chunk") ;;
        proxy) set -- $(guest wrap "$size" sh -c 'exec curl -fsS --noproxy "" -x "$HTTP_PROXY" -o /dev/null "$1"' sh "http://127.0.0.1:$port/$size") ;;
        esac
        rate[$k]+="$1 "
        [ "$k" = get ] || [ "$k" = proxy ] && cpu[$k]+="$1:$2:$3:$4:$5 "
        line+=" $k $1 MB/s"
        [ "$k" = get ] || [ "$k" = proxy ] && line+=" (relay $2 client $3 softirq $4 idle $5 ms)"
        line+=";"
    done
    echo "$line"
done
# shellcheck disable=SC2086
mr=$(median ${rate[raw]:-NA})
for k in tcp get proxy; do
    want "$k" || continue
    # shellcheck disable=SC2086
    m=$(median ${rate[$k]})
    echo "microvm-chan: $k median $m MB/s, $k/raw $(ratio "$m" "$mr")"
done
echo "microvm-chan: raw port median $mr MB/s; load $(cut -d' ' -f1-3 /proc/loadavg)"

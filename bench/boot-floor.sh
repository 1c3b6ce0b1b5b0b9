#!/usr/bin/env bash
# bench/boot-floor.sh: the floor of a microVM bottle's start-to-exit time. Boots the cached
# guest kernel (scripts/build-guest-kernel.sh) under QEMU with a trivial static /init
# (tools/boot-floor-init.c: print a marker, reboot) N times and prints the median wall time
# from QEMU's launch to its exit, and the guest's own uptime when init ran.
#
# The initramfs and QEMU's argv come from the backend's own code (src/backend/microvm/,
# through the microvm-argv tool built with the project), so this boots what the backend will:
# microvm without ACPI, -sandbox, virtio-serial console, no network device.
#
# Prints numbers; it is not a test (exit 0 whatever the numbers, non-zero only when it could
# not run). Recorded results: docs/microvm.md.
#
# Usage: bench/boot-floor.sh [--runs N] [--build DIR] [--kernel VMLINUX] [--accel auto|kvm|tcg]
#                            [--gzip] [--cpus N] [--memory MIB] [--nice N] [--keep]
#   --runs N        boots (default 10)
#   --build DIR     meson build dir holding src/backend/microvm/microvm-argv (default build)
#   --kernel PATH   the vmlinux (default: the one kernel.meta names in bot-bottle's cache)
#   --accel A       auto (default): kvm when /dev/kvm opens and the host is not PVM, else tcg
#   --gzip          gzip -1 the initramfs first (to compare with the uncompressed default)
#   --cpus N        guest vCPUs (default 1); --memory MIB guest RAM (default 256)
#   --nice N        run the boots at this nice value (default 19: the machine is shared)
#   --keep          keep the temp dir (consoles, timings) and print its path
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
runs=10
build=$root/build
kernel=
accel=auto
gzip=0
cpus=1
memory=256
nice_val=19
keep=0
die() {
    echo "bot-bottle: boot-floor: $*" >&2
    exit 1
}
while [ $# -gt 0 ]; do
    case $1 in
    --runs) runs=${2:?}; shift 2 ;;
    --build) build=${2:?}; shift 2 ;;
    --kernel) kernel=${2:?}; shift 2 ;;
    --accel) accel=${2:?}; shift 2 ;;
    --gzip) gzip=1; shift ;;
    --cpus) cpus=${2:?}; shift 2 ;;
    --memory) memory=${2:?}; shift 2 ;;
    --nice) nice_val=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
case $runs in '' | *[!0-9]* | 0) die "--runs wants a positive number" ;; esac

tool=$build/src/backend/microvm/microvm-argv
[ -x "$tool" ] || die "$tool not found (build it: meson setup $build && ninja -C $build)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (scripts/install-deps.sh)"
command -v cc >/dev/null || die "cc not found (scripts/install-deps.sh)"

if [ -z "$kernel" ]; then
    # shellcheck source=../scripts/kernel-cache.sh
    . "$root/scripts/kernel-cache.sh"
    cache=$(kernel_cache_default)
    k=$(sed -n 's/^vmlinux=//p' "$cache/kernel.meta" 2>/dev/null | head -1)
    [ -n "$k" ] || die "no guest kernel in $cache (build it: scripts/build-guest-kernel.sh)"
    kernel=$cache/$k
fi
[ -r "$kernel" ] || die "cannot read the kernel '$kernel'"

if [ "$accel" = auto ]; then
    accel=tcg
    if [ ! -e /sys/module/kvm_pvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        accel=kvm
    fi
fi
khz=$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)

tmp=$(mktemp -d /tmp/boot-floor.XXXXXX)
cleanup() {
    if [ $keep -eq 1 ]; then echo "boot-floor: kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

cc -O2 -static -o "$tmp/init" "$here/tools/boot-floor-init.c" || die "cannot build the static init (libc6-dev)"
cc -O2 -o "$tmp/run-time" "$here/tools/run-time.c" || die "cannot build tools/run-time.c"
"$tool" --init "$tmp/init" --initramfs "$tmp/initramfs.cpio" --kernel "$kernel" \
    --accel "$accel" --tsc-khz "${khz:-0}" --cpus "$cpus" --memory "$memory" >"$tmp/argv" ||
    die "microvm-argv failed"
mapfile -d '' qemu_argv <"$tmp/argv"
initrd=$tmp/initramfs.cpio
if [ $gzip -eq 1 ]; then
    gzip -1 -k -c "$initrd" >"$initrd.gz"
    initrd=$initrd.gz
    for i in "${!qemu_argv[@]}"; do
        [ "${qemu_argv[$i]}" = "$tmp/initramfs.cpio" ] && qemu_argv[$i]=$initrd
    done
fi
printf '%s\n' "${qemu_argv[@]}" >"$tmp/argv.txt"

echo "boot-floor: $runs boots, accel=$accel, cpus=$cpus, memory=${memory}M, nice $nice_val"
echo "boot-floor: kernel $kernel ($(($(stat -L -c %s "$kernel") / 1024)) KiB), initramfs $(($(stat -c %s "$initrd") / 1024)) KiB$([ $gzip -eq 1 ] && echo ' (gzip -1)'), QEMU $(qemu-system-x86_64 -version | head -1 | sed 's/^QEMU emulator version //')"

walls=()
uptimes=()
fails=0
for i in $(seq 1 "$runs"); do
    out=$tmp/console.$i
    nice -n "$nice_val" "$tmp/run-time" 60000 "${qemu_argv[@]}" >"$out" 2>"$tmp/stderr.$i" || true
    res=$(tail -n 1 "$out")
    us=${res%% *}
    status=${res#* }
    up=$(tr -d '\r' <"$out" | sed -n 's/^BOOT-FLOOR-MARKER uptime_ms=\([0-9]*\)$/\1/p' | head -1)
    if [ "$status" != 0 ] || [ -z "$up" ]; then
        fails=$((fails + 1))
        echo "boot-floor: boot $i failed (status ${status:-?}; console and stderr in $tmp)" >&2
        keep=1
        continue
    fi
    walls+=($((us / 1000)))
    uptimes+=("$up")
    printf 'boot %2d: wall %5d ms, guest uptime at init %5d ms\n' "$i" $((us / 1000)) "$up"
done

median() {
    printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}
if [ ${#walls[@]} -gt 0 ]; then
    sorted=$(printf '%s\n' "${walls[@]}" | sort -n)
    echo "boot-floor: launch -> QEMU exit: median $(median "${walls[@]}") ms (min $(echo "$sorted" | head -1), max $(echo "$sorted" | tail -1)); guest uptime at init: median $(median "${uptimes[@]}") ms; ${#walls[@]}/$runs boots ok"
else
    echo "boot-floor: no boot succeeded"
    exit 1
fi

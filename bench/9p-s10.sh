#!/usr/bin/env bash
# bench/9p-s10.sh: what a hostile guest can leave on the host through a 9p share (DESIGN.md
# S10), for QEMU's security_model=none and mapped-xattr, with QEMU as root and as an
# unprivileged uid. Boots the cached guest kernel with tools/9p-s10-init.c as /init (the
# backend's own initramfs writer and argv, only security_model swapped) and prints, per case,
# what the guest was told and what the host then sees. docs/microvm.md "9p security model"
# records the result and the decision it led to. An experiment, not a test: exit 0 when it ran.
#
# Usage: bench/9p-s10.sh [--build DIR] [--kernel VMLINUX] [--uid N]   (run as root)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=$root/build
kernel=
uid=65534
while [ $# -gt 0 ]; do
    case $1 in
    --build) build=${2:?}; shift 2 ;;
    --kernel) kernel=${2:?}; shift 2 ;;
    --uid) uid=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bot-bottle: 9p-s10: unknown option '$1'" >&2; exit 1 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "bot-bottle: 9p-s10: run as root (it compares QEMU as root and as --uid)" >&2; exit 1; }
tool=$build/src/backend/microvm/microvm-argv
[ -x "$tool" ] || { echo "bot-bottle: 9p-s10: $tool not found (ninja -C $build)" >&2; exit 1; }
if [ -z "$kernel" ]; then
    k=$(sed -n 's/^vmlinux=//p' /var/cache/bot-bottle/kernel/kernel.meta 2>/dev/null | head -1)
    [ -n "$k" ] || { echo "bot-bottle: 9p-s10: no guest kernel (scripts/build-guest-kernel.sh)" >&2; exit 1; }
    kernel=/var/cache/bot-bottle/kernel/$k
fi
khz=$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)
accel=tcg
[ ! -e /sys/module/kvm_pvm ] && [ -w /dev/kvm ] && accel=kvm

tmp=$(mktemp -d /tmp/9p-s10.XXXXXX)
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
cc -O2 -static -o "$tmp/init" "$here/tools/9p-s10-init.c"

for model in none mapped-xattr; do
    for who in root "$uid"; do
        ws=$tmp/ws-$model-$who
        mkdir "$ws"
        ln -s some-target "$ws/host-link"
        [ "$who" = root ] || chown -R "$who:$who" "$ws"
        "$tool" --init "$tmp/init" --initramfs "$tmp/initramfs.cpio" --kernel "$kernel" \
            --accel "$accel" --tsc-khz "${khz:-0}" --share "ws:$ws" >"$tmp/argv"
        chmod 644 "$tmp/initramfs.cpio"
        mapfile -d '' argv <"$tmp/argv"
        for i in "${!argv[@]}"; do
            argv[$i]=${argv[$i]/security_model=none/security_model=$model}
        done
        run=()
        [ "$who" = root ] || run=(setpriv --reuid="$who" --regid="$who" --clear-groups)
        echo "=== security_model=$model, QEMU as uid $([ "$who" = root ] && echo 0 || echo "$who")"
        timeout 120 nice -n 19 "${run[@]}" "${argv[@]}" </dev/null 2>&1 | tr -d '\r' |
            sed -n 's/^S10 /  guest: /p'
        echo "  host view:"
        (cd "$ws" && stat -c '    %A %u:%g %F %n' -- * | sort -k5)
        for f in "$ws"/*; do
            getfattr -h -d -m - "$f" 2>/dev/null | sed -n 's/^\([a-z]\)/    xattr '"$(basename "$f")"': \1/p' || true
        done
    done
done

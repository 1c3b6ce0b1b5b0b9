#!/usr/bin/env bash
# The microvm backend's accelerator and kernel choices (docs/microvm.md, "Probe and
# accelerator"): `run --accel kvm|tcg|auto` and [microvm] accel/kernel in the config. This
# host's KVM is PVM, which cannot boot the guest: --accel kvm must refuse with 125 and the
# reason, before any VM starts; --accel tcg runs. [microvm] kernel = PATH boots a user's own
# vmlinux, refuses one that lacks what the guest needs (a stock distribution kernel, a
# bzImage) with the reason, and is never taken from a project's bottle.ini. --memory sizes
# the guest beyond its default 1 GiB. One boot.
source "$(dirname "$0")/lib.sh"

unset BOT_BOTTLE_BACKEND
mkdir -p "$T/ws" "$XDG_CONFIG_HOME"
cd "$T/ws" || exit 1

# --accel kvm where KVM cannot boot the guest: refused (125), saying why and what to use
if [ -e /sys/module/kvm_pvm ] || [ ! -w /dev/kvm ]; then
    "$BB" run --accel kvm -- true >"$T/out" 2>"$T/err"; rc=$?
    is "--accel kvm without a usable KVM exits 125" "$rc" 125
    if [ -e /sys/module/kvm_pvm ]; then
        like "... saying it is a PVM host" "$(cat "$T/err")" \
            "--accel kvm: no usable KVM \(PVM host\), so the VM cannot run under KVM here"
    else
        like "... saying why" "$(cat "$T/err")" "--accel kvm: no usable KVM"
    fi
    like "... and naming the options that work" "$(cat "$T/err")" "use --accel tcg .* or auto"
    unlike "... and no VM started (no TCG warning)" "$(cat "$T/err")" "running under TCG"
    is "... and the command did not run" "$(cat "$T/out")" ""
    printf '[microvm]\naccel = kvm\n' >"$T/kvm.ini"
    "$BB" run -c "$T/kvm.ini" -- true >/dev/null 2>"$T/err"; rc=$?
    is "[microvm] accel = kvm in the config: the same refusal (125)" "$rc" 125
    like "... with the reason" "$(cat "$T/err")" "--accel kvm: no usable KVM"
else
    skip "--accel kvm refusal" "this host has a KVM the probe accepts (no kvm_pvm): nothing to refuse"
fi

"$BB" run --accel hvf -- true >/dev/null 2>"$T/err"; rc=$?
is "--accel with an unknown value exits 125" "$rc" 125
like "... naming the values" "$(cat "$T/err")" "--accel 'hvf': expected kvm, tcg or auto"

# [microvm] kernel: a file that is not a bootable vmlinux is refused before QEMU starts
printf 'MZ this is what a bzImage starts with, and it is padded beyond an ELF header....' \
    >"$T/bzImage"
printf '[microvm]\nkernel = %s\n' "$T/bzImage" >"$T/bz.ini"
"$BB" run -c "$T/bz.ini" -- true >/dev/null 2>"$T/err"; rc=$?
is "[microvm] kernel = a bzImage exits 125" "$rc" 125
like "... saying it is not a vmlinux" "$(cat "$T/err")" "not an x86-64 ELF vmlinux"
# Debian's stock kernel has virtio and 9p as modules: same refusal, naming what is missing.
# (An ELF with the PVH note and no built-in 9p stands in for it: the check reads the image.)
"$PY" - "$T/stock-like" <<'PYEOF'
import struct, sys
img = bytearray(4096)
img[0:16] = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
struct.pack_into("<HHIQQQIHHHHHH", img, 16, 2, 62, 1, 0, 64, 0, 0, 64, 56, 1, 0, 0, 0)
struct.pack_into("<IIQQQQQQ", img, 64, 4, 0, 256, 0, 0, 24, 24, 4)
struct.pack_into("<III", img, 256, 4, 8, 18)
img[268:272] = b"Xen\0"
body = b"virtio_mmio.device\0virtio_console\0"
img[512:512 + len(body)] = body
open(sys.argv[1], "wb").write(img)
PYEOF
printf '[microvm]\nkernel = %s\n' "$T/stock-like" >"$T/stock.ini"
"$BB" run -c "$T/stock.ini" -- true >/dev/null 2>"$T/err"; rc=$?
is "[microvm] kernel without built-in 9p over virtio exits 125" "$rc" 125
like "... naming the missing options" "$(cat "$T/err")" "lacks 9p over virtio \(CONFIG_NET_9P=y"

# A project's bottle.ini (a file the bottle can write) never picks the kernel, approved or not
printf '[microvm]\nkernel = %s\n' "$T/stock-like" >"$T/ws/bottle.ini"
"$BB" trust "$T/ws/bottle.ini" >/dev/null 2>&1
"$BB" run -- true >/dev/null 2>"$T/err"; rc=$?
is "[microvm] kernel in a trusted project bottle.ini exits 125" "$rc" 125
like "... saying it is only taken from the user's config" "$(cat "$T/err")" \
    "\[microvm\] kernel is not taken from a project's or workspace's config file"
rm -f "$T/ws/bottle.ini"

# One boot: --accel tcg with the cached kernel named as the user's own
# shellcheck source=../../scripts/kernel-cache.sh
. "$BB_SOURCE_DIR/scripts/kernel-cache.sh"
cache=$(kernel_cache_default)
k=$(sed -n 's/^vmlinux=//p' "$cache/kernel.meta" 2>/dev/null)
if [ -z "$k" ]; then
    _result 1 "a guest kernel is in the cache (scripts/build-guest-kernel.sh)"
    done_testing
fi
printf '[microvm]\nkernel = %s\n' "$cache/$k" >"$T/own.ini"
# --memory 1600M: the guest gets all of the limit but QEMU's share, (1600 - 256) * 32/33 = 1303
# MiB, more than the 1 GiB it has by default
out=$("$BB" run -c "$T/own.ini" --accel tcg --memory 1600M -- \
    sh -c 'echo in-vm; uname -r; grep MemTotal /proc/meminfo' 2>"$T/err"); rc=$?
is "--accel tcg with [microvm] kernel = the built kernel exits 0" "$rc" 0
like "... the command ran in the VM" "$out" "in-vm"
like "... on that kernel" "$out" "$(sed -n 's/^version=//p' "$cache/kernel.meta")"
unlike "... no 'no usable KVM' warning when TCG was asked for" "$(cat "$T/err")" "no usable KVM"
mem=$(sed -n 's/^MemTotal: *\([0-9]*\) kB.*/\1/p' <<<"$out")
check "... --memory 1600M gives the guest more than 1 GiB (MemTotal ${mem:-?} kB)" \
    test "${mem:-0}" -gt 1150000 -a "${mem:-0}" -lt 1340000

done_testing

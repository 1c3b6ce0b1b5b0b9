#!/usr/bin/env bash
# Unit test (TAP) of scripts/fetch-stock-kernel.sh without the network or Debian's real
# package: a fake linux-image .deb (a bzImage header around an xz-compressed ELF with the Xen
# PVH note, one dependency chain of modules, one driver built in) goes in with --deb; apt-cache
# and apt-get are stand-ins on PATH (apt-get always fails: offline). Checks the extraction,
# the load order from modules.dep, the recorded sha256s, "up to date", the offline paths and
# that a damaged cache is noticed. Usage: test-fetch-stock-kernel.sh SOURCE_ROOT
set -uo pipefail
src=${1:-$(dirname "$0")/../..}
script=$src/scripts/fetch-stock-kernel.sh
. "$src/tests/unit/tap.sh"
tap_scratch test-fetch-stock-kernel
has() { grep -q -e "$2" <<<"$1"; }

echo "1..17"
ok "--help exits 0 and documents --deb" bash -c '"$1" --help | grep -q -- "--deb FILE"' _ "$script"

# ---- the fake package ----
rel=9.9.9-test-amd64
pkg=$t/pkg
mkdir -p "$pkg/DEBIAN" "$pkg/boot" "$pkg/lib/modules/$rel/kernel/drivers/virtio" \
    "$pkg/lib/modules/$rel/kernel/fs/9p" "$pkg/lib/modules/$rel/kernel/net/9p"
python3 - "$t/vmlinux" <<'PY'
import struct, sys
img = bytearray(8192)
img[0:16] = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
struct.pack_into("<HHIQQQIHHHHHH", img, 16, 2, 62, 1, 0, 64, 0, 0, 64, 56, 1, 0, 0, 0)
struct.pack_into("<IIQQQQQQ", img, 64, 4, 0, 256, 0, 0, 24, 24, 4)
struct.pack_into("<III", img, 256, 4, 8, 18)
img[268:272] = b"Xen\0"
img[1024:1040] = b"fake vmlinux body"
open(sys.argv[1], "wb").write(img)
PY
# bzImage: setup_sects 1 at 0x1f1, "HdrS" at 0x202, payload_offset 16 at 0x248; the payload
# (xz) starts at (1 + 1) * 512 + 16 and is followed by trailing bytes, as in a real one
python3 - "$pkg/boot/vmlinuz-$rel" "$t/vmlinux" <<'PY'
import lzma, struct, sys
hdr = bytearray(1024 + 16)
hdr[0x1f1] = 1
hdr[0x202:0x206] = b"HdrS"
struct.pack_into("<I", hdr, 0x248, 16)
payload = lzma.compress(open(sys.argv[2], "rb").read(), format=lzma.FORMAT_XZ)
open(sys.argv[1], "wb").write(bytes(hdr) + payload + b"\x00\x10\x00\x00trailer")
PY
# modules: modules.dep is depmod's; fake .ko files cannot go through depmod, so the test's own
# modules.dep stands in (depmod -b then only rewrites the binary indexes it can)
m=$pkg/lib/modules/$rel
for f in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_mmio \
    net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p; do echo "fake $f" >"$m/kernel/$f.ko"; done
printf 'kernel/drivers/virtio/virtio_console.ko\nkernel/drivers/char/hw_random/virtio-rng.ko\n' >"$m/modules.builtin"
cat >"$t/modules.dep" <<'EOF'
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/net/9p/9pnet.ko:
EOF
printf 'Package: linux-image-%s\nVersion: 9.9.9-1\nArchitecture: amd64\nMaintainer: t <t@example.invalid>\nDescription: fake\n' "$rel" >"$pkg/DEBIAN/control"
dpkg-deb -Zgzip -b "$pkg" "$t/linux-image-$rel.deb" >/dev/null || { echo "Bail out! dpkg-deb -b failed"; exit 1; }

# stand-ins: depmod keeps the test's modules.dep (the real one would drop the fake files)
bin=$t/bin
mkdir -p "$bin"
printf '#!/bin/sh\n# depmod -b BASE RELEASE\ncp "%s" "$2/lib/modules/$3/modules.dep"\n' "$t/modules.dep" >"$bin/depmod"
printf '#!/bin/sh\n[ -n "$FAKE_DEPENDS" ] && printf "linux-image-amd64\\n  Depends: %%s\\n" "$FAKE_DEPENDS"\nexit 0\n' >"$bin/apt-cache"
printf '#!/bin/sh\necho "E: Failed to fetch (test: offline)" >&2\nexit 100\n' >"$bin/apt-get"
chmod +x "$bin"/*
run() { PATH=$bin:$PATH "$script" --cache-dir "$t/cache" "$@" 2>&1; }

out=$(run --deb "$t/linux-image-$rel.deb"); rc=$?
ok "--deb FILE installs the fake kernel (exit $rc)" test "$rc" -eq 0
ok "... the vmlinux is the ELF inside the vmlinuz, byte for byte" cmp -s "$t/vmlinux" "$t/cache/stock/vmlinux-$rel"
ok "... the modules in load order from modules.dep, built-in drivers skipped" test \
    "$(tr '\n' ' ' <"$t/cache/stock/modules-$rel/modules.load")" = "virtio_ring.ko virtio.ko virtio_mmio.ko 9pnet.ko 9pnet_virtio.ko 9p.ko "
ok "... and only those modules are kept" test "$(ls "$t/cache/stock/modules-$rel" | wc -l)" -eq 7
meta=$t/cache/stock/kernel.meta
ok "... kernel.meta records the vmlinux's sha256" grep -qx "vmlinux_sha256=$(sha256sum <"$t/vmlinux" | cut -d' ' -f1)" "$meta"
ok "... and the package's" grep -qx "deb_sha256=$(sha256sum <"$t/linux-image-$rel.deb" | cut -d' ' -f1)" "$meta"
ok "... and the package and version" grep -qx "package=linux-image-$rel 9.9.9-1" "$meta"
ok "... no scratch directory is left" test -z "$(ls -d "$t/cache/stock/fetch."* 2>/dev/null)"

out=$(FAKE_DEPENDS=linux-image-$rel run); rc=$?
ok "the same package again: up to date, nothing fetched (exit $rc)" has "$out" "up to date"
out=$(FAKE_DEPENDS='' run); rc=$?
ok "apt cannot say (no lists): the cached kernel is kept (exit $rc)" has "$out" "keeping the cached linux-image-$rel"
out=$(FAKE_DEPENDS=linux-image-9.9.10-test-amd64 run); rc=$?
ok "apt wants a newer package, offline: a warning, the cache kept, exit 0 ($rc)" \
    bash -c '[ "$1" -eq 0 ] && grep -q "warning: could not fetch linux-image-9.9.10-test-amd64" <<<"$2"' _ "$rc" "$out"
echo damaged >>"$t/cache/stock/modules-$rel/9p.ko"
out=$(FAKE_DEPENDS=linux-image-$rel run); rc=$?
ok "a damaged module is noticed: fetch again, offline with nothing intact: exit 1 ($rc)" test "$rc" -eq 1
ok "... naming the fix" has "$out" "is a Debian mirror reachable? run apt-get update, or pass --deb FILE"

printf 'Package: hello\nVersion: 1\nArchitecture: all\nMaintainer: t <t@example.invalid>\nDescription: x\n' >"$pkg/DEBIAN/control"
dpkg-deb -Zgzip -b "$pkg" "$t/hello.deb" >/dev/null
out=$(run --deb "$t/hello.deb"); rc=$?
ok "a package that is not linux-image-*: refused (exit $rc)" has "$out" "not a linux-image-<release> package"
printf 'not a kernel' >"$pkg/boot/vmlinuz-$rel"
printf 'Package: linux-image-%s\nVersion: 9.9.9-2\nArchitecture: amd64\nMaintainer: t <t@example.invalid>\nDescription: fake\n' "$rel" >"$pkg/DEBIAN/control"
dpkg-deb -Zgzip -b "$pkg" "$t/bad.deb" >/dev/null
out=$(run --deb "$t/bad.deb"); rc=$?
ok "a vmlinuz that is not a bzImage: refused (exit $rc)" has "$out" "is not a bzImage"
ok "... and the cache still names the earlier package" grep -qx "package=linux-image-$rel 9.9.9-1" "$meta"
tap_done

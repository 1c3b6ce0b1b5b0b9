#!/usr/bin/env bash
# Fetches Debian's stock kernel (the package linux-image-amd64 depends on) into bot-bottle's
# kernel cache as the microvm backend's fallback guest kernel ([microvm] kernel = stock):
# apt-get download, dpkg-deb -x (never installed on the host), the uncompressed PVH vmlinux
# taken out of the vmlinuz, and only the modules the guest needs, in load order from
# modules.dep (depmod). See docs/microvm.md, "Debian's stock kernel". --help for the options.
set -euo pipefail

prog=fetch-stock-kernel
# shellcheck source-path=SCRIPTDIR source=kernel-cache.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kernel-cache.sh"
meta_pkg=linux-image-amd64
cache_dir=
deb=
force=0
# What bottle-init must load before it can find its console, its ports and the 9p shares
# (drivers/virtio/virtio_mmio: the devices ACPI describes; the console and named ports; 9p
# over virtio; the entropy device). Their dependencies come from modules.dep.
roots=(virtio_mmio virtio_console 9pnet_virtio 9p virtio-rng)

usage() {
    cat <<EOF
usage: scripts/fetch-stock-kernel.sh [options]

Puts Debian's stock kernel into bot-bottle's kernel cache, in a directory stock/:
  vmlinux-<release>            the uncompressed ELF vmlinux with the PVH note, taken out of the
                               package's vmlinuz (QEMU's microvm boots it directly)
  modules-<release>/           the modules the guest loads (${roots[*]}
                               and their dependencies from modules.dep), and modules.load:
                               their file names in load order
  kernel.meta                  key=value: release, package and version, sha256 of the .deb,
                               of the vmlinux and of the module list
The package ($meta_pkg's dependency, e.g. linux-image-6.1.0-NN-amd64) is fetched with
apt-get download and unpacked with dpkg-deb -x in a scratch directory: nothing is installed.
Select the kernel with "[microvm] kernel = stock" in ~/.config/bot-bottle/config.ini.

Does nothing when kernel.meta already names the package $meta_pkg depends on now and the
files match their recorded sha256 (offline: when apt cannot say, the cached kernel is kept).

options:
  --cache-dir DIR   the kernel cache (default: /var/cache/bot-bottle/kernel as root, else
                    \$XDG_CACHE_HOME/bot-bottle/kernel or ~/.cache/bot-bottle/kernel);
                    the files go to DIR/stock
  --deb FILE        use this linux-image-*.deb instead of apt-get download
  --force           fetch and unpack again even when the cache is up to date
  -h, --help        this text
Tools (scripts/install-deps.sh installs them): apt-get, dpkg-deb, depmod (kmod), xz, readelf,
sha256sum.
EOF
}

die() {
    echo "bot-bottle: $prog: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
    --cache-dir) cache_dir=${2:?--cache-dir needs a directory}; shift 2 ;;
    --cache-dir=*) cache_dir=${1#*=}; shift ;;
    --deb) deb=${2:?--deb needs a file}; shift 2 ;;
    --deb=*) deb=${1#*=}; shift ;;
    --force) force=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done

[ -n "$cache_dir" ] || cache_dir=$(kernel_cache_default)
dir=$cache_dir/stock
meta=$dir/kernel.meta

meta_get() { sed -n "s/^$1=//p" "$meta" 2>/dev/null | head -1; }

# The cached kernel is intact: every file kernel.meta names matches its sha256.
cache_ok() {
    local v m vs ms
    [ -f "$meta" ] || return 1
    v=$(meta_get vmlinux)
    m=$(meta_get modules)
    vs=$(meta_get vmlinux_sha256)
    ms=$(meta_get modules_sha256)
    [ -n "$v" ] && [ -n "$m" ] && [ -f "$dir/$v" ] && [ -f "$dir/$m/modules.load" ] || return 1
    [ "$(sha256sum <"$dir/$v" | cut -d' ' -f1)" = "$vs" ] || return 1
    [ "$(modules_sum "$dir/$m")" = "$ms" ]
}

# One hash over modules.load and every module it names, in order.
modules_sum() {
    local d=$1 f
    {
        cat "$d/modules.load"
        while IFS= read -r f; do sha256sum <"$d/$f"; done <"$d/modules.load"
    } | sha256sum | cut -d' ' -f1
}

# The package linux-image-amd64 depends on now (from apt's lists; no network).
want=
if [ -z "$deb" ] && command -v apt-cache >/dev/null 2>&1; then
    want=$(apt-cache depends "$meta_pkg" 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ <>]*\)$/\1/p' | head -1 || true)
fi

if [ $force -eq 0 ] && [ -z "$deb" ] && cache_ok; then
    have=$(meta_get package)
    have=${have%% *}
    if [ -z "$want" ]; then
        echo "$prog: apt cannot say which package $meta_pkg depends on (no package lists?);" \
            "keeping the cached $have: $dir/$(meta_get vmlinux)"
        exit 0
    fi
    if [ "$want" = "$have" ]; then
        echo "$prog: up to date: $dir/$(meta_get vmlinux) ($(meta_get package); --force fetches again)"
        exit 0
    fi
    echo "$prog: $meta_pkg now depends on $want (cached: $have); fetching it"
fi

missing=()
for c in dpkg-deb depmod xz readelf sha256sum od; do
    command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || [ -x "/sbin/$c" ] || missing+=("$c")
done
[ -n "$deb" ] || command -v apt-get >/dev/null 2>&1 || missing+=(apt-get)
[ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (run scripts/install-deps.sh)"
depmod=$(command -v depmod || echo /usr/sbin/depmod)
[ -x "$depmod" ] || depmod=/sbin/depmod

mkdir -p "$dir" || die "cannot create '$dir' (use --cache-dir DIR)"
work=$(mktemp -d "$dir/fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---- 1. the package ----
if [ -n "$deb" ]; then
    [ -r "$deb" ] || die "cannot read '$deb' (--deb)"
else
    [ -n "$want" ] || die "apt cannot say which package $meta_pkg depends on; run apt-get update (or pass --deb FILE)"
    echo "$prog: [1/4] fetching $want (apt-get download)"
    if ! (cd "$work" && apt-get download "$want" >"$work/apt.log" 2>&1); then
        sed 's/^/  /' "$work/apt.log" >&2
        if cache_ok; then
            echo "bot-bottle: $prog: warning: could not fetch $want (is a Debian mirror reachable?); keeping the cached $(meta_get package)" >&2
            exit 0
        fi
        die "apt-get download $want failed (is a Debian mirror reachable? run apt-get update, or pass --deb FILE)"
    fi
    deb=$(ls "$work"/"$want"_*.deb)
fi
pkg=$(dpkg-deb -f "$deb" Package) || die "$deb is not a Debian package"
ver=$(dpkg-deb -f "$deb" Version)
case $pkg in linux-image-[0-9]*) ;; *) die "$deb is $pkg, not a linux-image-<release> package" ;; esac
deb_sha=$(sha256sum <"$deb" | cut -d' ' -f1)

# ---- 2. unpack (not install) ----
echo "$prog: [2/4] unpacking $pkg $ver (dpkg-deb -x, nothing installed)"
dpkg-deb -x "$deb" "$work/pkg" || die "dpkg-deb -x $deb failed"
rel=$(ls "$work/pkg/lib/modules" 2>/dev/null | head -1)
[ -n "$rel" ] && [ -f "$work/pkg/boot/vmlinuz-$rel" ] || die "$deb holds no boot/vmlinuz-<release> and lib/modules/<release>"

# ---- 3. the vmlinux out of the vmlinuz ----
# A bzImage: setup_sects at 0x1f1 (the protected-mode code starts at (setup_sects+1)*512),
# payload_offset at 0x248 (the compressed vmlinux, relative to that start). Debian compresses
# it with xz (CONFIG_KERNEL_XZ); gzip is handled too.
echo "$prog: [3/4] extracting the vmlinux (PVH) from vmlinuz-$rel"
z=$work/pkg/boot/vmlinuz-$rel
[ "$(od -An -c -j$((0x202)) -N4 "$z" | tr -d ' ')" = HdrS ] || die "vmlinuz-$rel is not a bzImage (no HdrS)"
setup=$(od -An -tu1 -j$((0x1f1)) -N1 "$z" | tr -d ' ')
[ "$setup" -ne 0 ] || setup=4
poff=$(od -An -tu4 -j$((0x248)) -N4 "$z" | tr -d ' ')
start=$(((setup + 1) * 512 + poff))
magic=$(od -An -tx1 -j$start -N6 "$z" | tr -d ' ')
case $magic in
fd377a585a00) unz=(xz -dc --single-stream) ;; # stops at the end of the stream
1f8b*) unz=(gzip -dc) ;;                        # exit 2: "trailing garbage ignored"
*) die "vmlinuz-$rel: unknown compression at offset $start (magic $magic; xz and gzip are handled)" ;;
esac
tail -c +$((start + 1)) "$z" >"$work/payload"
rc=0
"${unz[@]}" "$work/payload" >"$work/vmlinux" 2>"$work/unz.log" || rc=$?
case $magic:$rc in
*:0 | 1f8b*:2) ;;
*) die "decompressing vmlinuz-$rel failed: $(head -c 200 "$work/unz.log")" ;;
esac
rm -f "$work/payload"
[ "$(od -An -tx1 -N5 "$work/vmlinux" | tr -d ' ')" = 7f454c4602 ] || die "vmlinuz-$rel did not hold a 64-bit ELF vmlinux"
! readelf -lW "$work/vmlinux" 2>&1 | grep -q 'Error' || die "the vmlinux of $pkg is damaged (readelf -l)"
readelf -n "$work/vmlinux" 2>/dev/null | grep -q '^ *Xen ' ||
    die "the vmlinux of $pkg has no Xen PVH note (CONFIG_PVH), so QEMU's microvm cannot boot it"

# ---- 4. the modules, in load order from modules.dep ----
echo "$prog: [4/4] picking the modules (${roots[*]}) and their dependencies from modules.dep"
mroot=$work/pkg/lib/modules/$rel
"$depmod" -b "$work/pkg" "$rel" 2>"$work/depmod.log" ||
    die "depmod -b failed: $(head -c 300 "$work/depmod.log")"
dep=$mroot/modules.dep
declare -A done_=()
order=()
# visit PATH: its dependencies first (modules.dep lists every one, direct or not), then it
visit() {
    local m=$1 line d
    [ -n "${done_[$m]:-}" ] && return 0
    done_[$m]=1
    line=$(grep -m1 "^$m:" "$dep") || die "modules.dep has no line for $m"
    for d in ${line#*:}; do visit "$d"; done
    order+=("$m")
}
for r in "${roots[@]}"; do
    m=$(grep -m1 -E "(^|/)$r\.ko(\.[a-z]+)?:" "$dep" | cut -d: -f1 || true)
    if [ -z "$m" ]; then
        grep -q -E "(^|/)$r\.ko\$" "$mroot/modules.builtin" && continue
        die "$pkg has $r neither as a module nor built in"
    fi
    visit "$m"
done
mdir=modules-$rel
mkdir -p "$work/$mdir"
: >"$work/$mdir/modules.load"
for m in "${order[@]}"; do
    b=$(basename "$m")
    case $b in
    *.ko) cp "$mroot/$m" "$work/$mdir/$b" ;;
    *.ko.xz) xz -dc "$mroot/$m" >"$work/$mdir/${b%.xz}"; b=${b%.xz} ;;
    *.ko.zst) zstd -dcq "$mroot/$m" >"$work/$mdir/${b%.zst}"; b=${b%.zst} ;; # (trixie's)
    *.ko.gz) gzip -dc "$mroot/$m" >"$work/$mdir/${b%.gz}"; b=${b%.gz} ;;
    *) die "unexpected module file $m" ;;
    esac
    echo "$b" >>"$work/$mdir/modules.load"
done

# ---- install: files first, kernel.meta last (by rename) ----
vsha=$(sha256sum <"$work/vmlinux" | cut -d' ' -f1)
msha=$(modules_sum "$work/$mdir")
install -m 0644 "$work/vmlinux" "$dir/.vmlinux-$rel.tmp"
mv -f "$dir/.vmlinux-$rel.tmp" "$dir/vmlinux-$rel"
rm -rf "$dir/.$mdir.old"
[ ! -e "$dir/$mdir" ] || mv "$dir/$mdir" "$dir/.$mdir.old"
chmod 0755 "$work/$mdir"
chmod 0644 "$work/$mdir"/*
mv "$work/$mdir" "$dir/$mdir"
rm -rf "$dir/.$mdir.old"
cat >"$dir/.kernel.meta.tmp" <<EOF
# written by scripts/fetch-stock-kernel.sh; read by the microvm backend ([microvm] kernel = stock)
version=$rel
package=$pkg $ver
deb_sha256=$deb_sha
vmlinux=vmlinux-$rel
vmlinux_sha256=$vsha
modules=$mdir
modules_sha256=$msha
fetched=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
mv -f "$dir/.kernel.meta.tmp" "$meta"
echo "$prog: installed $dir/vmlinux-$rel ($pkg $ver, $(($(stat -c %s "$dir/vmlinux-$rel") / 1048576)) MiB) and ${#order[@]} modules: $(tr '\n' ' ' <"$dir/$mdir/modules.load")"

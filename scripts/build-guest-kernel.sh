#!/usr/bin/env bash
# Builds the microvm backend's guest kernel once, from Debian's linux-source-6.1 package and
# the repository's fragment guest/kernel/bottle.config, into bot-bottle's cache. See
# docs/microvm.md. Run with --help for the options.
set -euo pipefail

prog=build-guest-kernel
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=kernel-cache.sh
. "$here/kernel-cache.sh"
fragment=$here/../guest/kernel/bottle.config
source_pkg=linux-source-6.1
source_deb=
cache_dir=
jobs=$(nproc 2>/dev/null || echo 1)
keep_build=0
force=0
print_hash=0

usage() {
    cat <<EOF
usage: scripts/build-guest-kernel.sh [options]

Builds bot-bottle's minimal guest kernel (an uncompressed, PVH-bootable vmlinux) from
Debian's $source_pkg package: make tinyconfig, merge the fragment, make olddefconfig,
check that every option of the fragment survived, make vmlinux. The package is fetched
with apt-get download and unpacked in a scratch directory; nothing is installed system-wide.

Installs into the cache directory:
  vmlinux-<kernel version>-bb<fragment hash>   the kernel QEMU boots with -kernel
  config-<kernel version>-bb<fragment hash>    its final .config
  build-<kernel version>-bb<fragment hash>.log the build log
  kernel.meta                                  key=value: version, fragment hash, file names
Does nothing when kernel.meta already names a kernel built from the same fragment hash.

options:
  --cache-dir DIR    where to install (default: /var/cache/bot-bottle/kernel as root,
                     else \$XDG_CACHE_HOME/bot-bottle/kernel or ~/.cache/bot-bottle/kernel)
  --fragment FILE    the config fragment (default: guest/kernel/bottle.config)
  --source-deb FILE  use this ${source_pkg}_*.deb instead of apt-get download
  -j, --jobs N       parallel make jobs (default: nproc = $jobs); make runs under nice -n 19
  --force            rebuild even when the cached kernel matches
  --keep-build       keep the scratch build tree (its path is printed)
  --print-hash       check the fragment's syntax, print its hash and exit (no build)
  -h, --help         this text
Build dependencies (scripts/install-deps.sh installs them): gcc make flex bison bc
libelf-dev xz-utils.
EOF
}

in_stage=0
die() {
    [ "${tty:-0}" -eq 1 ] && [ $in_stage -eq 1 ] && printf '\n'
    in_stage=0
    echo "bot-bottle: $prog: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
    --cache-dir) cache_dir=${2:?--cache-dir needs a directory}; shift 2 ;;
    --cache-dir=*) cache_dir=${1#*=}; shift ;;
    --fragment) fragment=${2:?--fragment needs a file}; shift 2 ;;
    --fragment=*) fragment=${1#*=}; shift ;;
    --source-deb) source_deb=${2:?--source-deb needs a file}; shift 2 ;;
    --source-deb=*) source_deb=${1#*=}; shift ;;
    -j | --jobs) jobs=${2:?--jobs needs a number}; shift 2 ;;
    --jobs=*) jobs=${1#*=}; shift ;;
    --force) force=1; shift ;;
    --keep-build) keep_build=1; shift ;;
    --print-hash) print_hash=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
case $jobs in '' | *[!0-9]* | 0) die "--jobs wants a positive number, got '$jobs'" ;; esac

[ -n "$cache_dir" ] || cache_dir=$(kernel_cache_default)
[ -r "$fragment" ] || die "cannot read the config fragment '$fragment' (use --fragment FILE)"
fragment=$(cd "$(dirname "$fragment")" && pwd)/$(basename "$fragment")

# ---- progress: one line per stage ----
tty=0
[ -t 1 ] && tty=1
stage_n=0
stage_total=8
stage_start=0
stage() {
    stage_n=$((stage_n + 1))
    stage_start=$SECONDS
    if [ $tty -eq 1 ]; then
        printf '\r\033[K[%d/%d] %s ...' "$stage_n" "$stage_total" "$1"
    else
        printf '%s: [%d/%d] %s\n' "$prog" "$stage_n" "$stage_total" "$1"
    fi
    stage_name=$1
    in_stage=1
}
stage_done() {
    local t=$((SECONDS - stage_start))
    if [ $tty -eq 1 ]; then
        printf '\r\033[K[%d/%d] %s: %s (%ds)\n' "$stage_n" "$stage_total" "$stage_name" \
            "${1:-done}" "$t"
    fi
    in_stage=0
}

# The fragment's hash covers its effective lines only (comments and blank lines stripped, in
# order), so editing a comment does not trigger a rebuild.
fragment_lines() {
    sed -e 's/[[:space:]]*$//' -e '/^[[:space:]]*$/d' -e '/^#[[:space:]]*CONFIG_[A-Za-z0-9_]* is not set$/{s/^#[[:space:]]*\(CONFIG_[A-Za-z0-9_]*\) is not set$/\1=n/;b}' \
        -e '/^[[:space:]]*#/d' "$fragment"
}
bad=$(fragment_lines | grep -v -E '^CONFIG_[A-Za-z0-9_]+=("[^"]*"|[A-Za-z0-9_x-]+)$' || true)
[ -z "$bad" ] || die "$fragment: lines that are not CONFIG_X=value: $(echo "$bad" | head -3 | tr '\n' ' ')"
hash=$(fragment_lines | sha256sum | cut -c1-16)
if [ $print_hash -eq 1 ]; then
    echo "$hash"
    exit 0
fi

meta_get() { # meta_get FILE KEY
    sed -n "s/^$2=//p" "$1" 2>/dev/null | head -1
}

meta=$cache_dir/kernel.meta
if [ $force -eq 0 ] && [ -f "$meta" ] && [ "$(meta_get "$meta" fragment_hash)" = "$hash" ]; then
    k=$(meta_get "$meta" vmlinux)
    if [ -n "$k" ] && [ -f "$cache_dir/$k" ]; then
        echo "$prog: up to date: $cache_dir/$k (fragment hash $hash; --force rebuilds)"
        exit 0
    fi
fi

# ---- prerequisites ----
missing=()
for c in gcc make flex bison bc xz tar dpkg-deb sha256sum perl; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
done
[ -e /usr/include/libelf.h ] || missing+=(libelf-dev)
[ -n "$source_deb" ] || command -v apt-get >/dev/null 2>&1 || missing+=(apt-get)
[ ${#missing[@]} -eq 0 ] || die "missing build tools: ${missing[*]} (run scripts/install-deps.sh)"

mkdir -p "$cache_dir" || die "cannot create the cache directory '$cache_dir' (use --cache-dir DIR)"
work=$(mktemp -d "$cache_dir/build.XXXXXX")
log=$work/build.log
: >"$log"
cleanup() {
    local rc=$?
    if [ $rc -ne 0 ]; then
        if [ -s "$log" ]; then
            echo "bot-bottle: $prog: last lines of the build log ($log):" >&2
            tail -n 25 "$log" | sed 's/^/  /' >&2
        fi
        echo "bot-bottle: $prog: failed; the scratch tree is kept at $work (remove it when done)" >&2
    elif [ $keep_build -eq 0 ]; then
        rm -rf "$work"
    else
        echo "$prog: scratch build tree kept at $work"
    fi
}
trap cleanup EXIT
run() { # run CMD...: output to the build log
    echo "+ $*" >>"$log"
    "$@" >>"$log" 2>&1
}

# ---- 1. source package ----
stage "fetching $source_pkg"
if [ -n "$source_deb" ]; then
    [ -r "$source_deb" ] || die "cannot read '$source_deb' (--source-deb)"
    deb=$source_deb
else
    (cd "$work" && run apt-get download "$source_pkg") ||
        die "apt-get download $source_pkg failed (see $log; is a Debian mirror reachable? or pass --source-deb FILE)"
    deb=$(ls "$work"/${source_pkg}_*.deb)
fi
pkg_version=$(dpkg-deb -f "$deb" Version)
stage_done "$pkg_version"

# ---- 2. unpack ----
stage "unpacking the kernel source"
run dpkg-deb -x "$deb" "$work/pkg" || die "dpkg-deb -x $deb failed"
tarball=$(ls "$work"/pkg/usr/src/linux-source-*.tar.xz 2>/dev/null | head -1)
[ -n "$tarball" ] || die "$deb holds no usr/src/linux-source-*.tar.xz"
run tar -C "$work" -xJf "$tarball" || die "unpacking $tarball failed"
rm -rf "$work/pkg"
if [ -z "$source_deb" ]; then rm -f "$deb"; fi
src=$(ls -d "$work"/linux-source-*/ | head -1)
src=${src%/}
kver=$(make -s -C "$src" kernelversion 2>>"$log")
[ -n "$kver" ] || die "could not read the kernel version from $src"
stage_done "$kver"

mk() { run nice -n 19 make -C "$src" "$@"; }

# ---- 3. configure ----
stage "configuring (tinyconfig + $(basename "$fragment") + olddefconfig)"
mk tinyconfig || die "make tinyconfig failed"
fragment_lines >"$work/fragment.config"
(cd "$src" && run scripts/kconfig/merge_config.sh -m .config "$work/fragment.config") ||
    die "merge_config.sh failed"
mk olddefconfig || die "make olddefconfig failed"
stage_done

# ---- 4. verify every option survived ----
stage "checking that every option of the fragment survived"
lost=()
while IFS= read -r line; do
    opt=${line%%=*}
    want=${line#*=}
    got=$(sed -n "s/^$opt=//p" "$src/.config" | head -1)
    if [ "$want" = n ]; then
        [ -z "$got" ] || lost+=("$opt=n (is $got)")
    else
        [ "$got" = "$want" ] || lost+=("$opt=$want (is ${got:-not set})")
    fi
done < <(fragment_lines)
if [ ${#lost[@]} -gt 0 ]; then
    [ $tty -eq 1 ] && printf '\n'
    in_stage=0
    for l in "${lost[@]}"; do
        echo "bot-bottle: $prog: lost by olddefconfig: $l" >&2
    done
    die "${#lost[@]} option(s) of $fragment did not survive (a dependency missing from the fragment?); the final config is $src/.config"
fi
stage_done "$(fragment_lines | wc -l) options ok"

# ---- 5. build ----
stage "building vmlinux ($kver, make -j$jobs under nice -n 19; a few minutes)"
mk -j"$jobs" vmlinux || die "make vmlinux failed"
stage_done

# ---- 6. check the result ----
stage "checking the image"
vm=$src/vmlinux
[ -f "$vm" ] || die "the build produced no vmlinux"
# QEMU boots an ELF vmlinux directly only through the Xen PVH entry note.
if command -v readelf >/dev/null 2>&1; then
    readelf -n "$vm" 2>/dev/null | grep -q 'Xen' || die "$vm has no PVH (Xen ELF) note; CONFIG_PVH missing?"
fi
stage_done "$(($(stat -c %s "$vm") / 1048576)) MiB"

# ---- 7. install ----
stage "installing into $cache_dir"
name=$kver-bb$hash
install -m 0644 "$vm" "$cache_dir/.vmlinux-$name.tmp"
mv -f "$cache_dir/.vmlinux-$name.tmp" "$cache_dir/vmlinux-$name"
install -m 0644 "$src/.config" "$cache_dir/config-$name"
cat >"$cache_dir/.kernel.meta.tmp" <<EOF
# written by scripts/build-guest-kernel.sh; read by the microvm backend's probe
version=$kver
fragment_hash=$hash
vmlinux=vmlinux-$name
config=config-$name
source_package=$source_pkg $pkg_version
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
mv -f "$cache_dir/.kernel.meta.tmp" "$meta"
stage_done

# ---- 8. log ----
stage "keeping the build log"
cp "$log" "$cache_dir/build-$name.log"
stage_done
echo "$prog: built $cache_dir/vmlinux-$name ($source_pkg $pkg_version, $(($(stat -c %s "$cache_dir/vmlinux-$name") / 1048576)) MiB, $((SECONDS / 60))m$((SECONDS % 60))s)"

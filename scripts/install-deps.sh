#!/usr/bin/env bash
# The one place that installs what bot-bottle needs on a fresh Debian 12 (bookworm) machine:
# build tools, libraries, test tools and the benchmark anchors. Idempotent; run as root (or
# with sudo available).
set -euo pipefail

packages=(
    # build
    build-essential meson ninja-build pkg-config clang libclang-rt-14-dev llvm
    clang-format clang-tidy cppcheck
    # libraries (DESIGN.md section 4)
    libc-ares-dev libinih-dev libjansson-dev libidn2-dev libseccomp-dev libcap-dev libcmocka-dev
    libssl-dev libpsl-dev publicsuffix zlib1g-dev
    # microvm backend: QEMU, and scripts/build-guest-kernel.sh's kernel build tools (the
    # kernel source itself is fetched with apt-get download, never installed)
    qemu-system-x86 flex bison libelf-dev bc xz-utils
    # scripts/fetch-stock-kernel.sh (Debian's stock kernel, [microvm] kernel = stock): depmod
    kmod
    # tests: fake upstreams, clients, namespaces
    python3 curl openssl socat iproute2 bind9-dnsutils util-linux procps psmisc libcap2-bin
    # tests: validates examples/docker/compose.yaml offline (`docker-compose config`; the
    # client only: no Docker engine is installed or needed)
    docker-compose
    # benchmarks (anchors): bench/*.sh; squid built with OpenSSL (it replaces Debian's plain
    # squid, same binary) for bench/intercept.sh's ssl-bump as well as bench/proxy.sh
    squid-openssl tinyproxy dnsperf unbound dnsmasq-base bubblewrap runsc
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

# The microVM's guest kernels, into bot-bottle's cache for the user running this script: the
# minimal one built once from Debian's linux-source-6.1 (skipped when the cache already holds a
# kernel built from the same config fragment; about 4-10 minutes on 2 cores otherwise), and
# Debian's stock kernel as the fallback.
build_kernel() {
    "$(dirname "$0")/build-guest-kernel.sh"
    # [microvm] kernel = stock: apt-get download and dpkg-deb -x, never installed; a few
    # seconds, then "up to date" (docs/microvm.md)
    "$(dirname "$0")/fetch-stock-kernel.sh"
}

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages present"
    build_kernel
    exit $?
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
# The Debian squid/unbound/tinyproxy packages start system services; the benchmarks start
# their own instances on loopback, so stop the system ones (they are not needed).
for svc in squid unbound tinyproxy; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
        $SUDO systemctl stop "$svc" || true
        $SUDO systemctl disable "$svc" >/dev/null 2>&1 || true
    fi
done
build_kernel
echo "install-deps: done"

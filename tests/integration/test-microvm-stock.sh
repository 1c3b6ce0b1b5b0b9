#!/usr/bin/env bash
# The microvm backend on Debian's stock kernel ([microvm] kernel = stock, docs/microvm.md
# "Debian's stock kernel"): scripts/fetch-stock-kernel.sh put linux-image-amd64's kernel and
# the modules the guest needs into the cache (scripts/install-deps.sh runs it); bot-bottle puts
# the modules into the per-bottle initramfs, bottle-init loads them before anything else and
# then switches module loading off, QEMU runs microvm with ACPI. One boot under TCG (4-5 s on
# this kernel) checks the status, stdio, a proxied HTTPS fetch to a local TLS origin, the
# interfaces, node and python3, and that the command cannot load a module. Fake origin and DNS
# stub on the host's loopback.
source "$(dirname "$0")/lib.sh"

unset BOT_BOTTLE_BACKEND
# shellcheck source=../../scripts/kernel-cache.sh
. "$BB_SOURCE_DIR/scripts/kernel-cache.sh"
cache=$(kernel_cache_default)
cache=${BOT_BOTTLE_KERNEL_CACHE:-$cache}

# No skip: scripts/install-deps.sh fetches the stock kernel.
meta=$cache/stock/kernel.meta
if ! [ -f "$meta" ]; then
    _result 1 "Debian's stock kernel is in the cache ($meta; run scripts/fetch-stock-kernel.sh)"
    done_testing
fi
_result 0 "Debian's stock kernel is in the cache ($(sed -n 's/^package=//p' "$meta"))"
release=$(sed -n 's/^version=//p' "$meta")
# the fetch script is idempotent and offline-safe: a second run changes nothing
before=$(stat -c %Y "$meta")
out=$("$BB_SOURCE_DIR/scripts/fetch-stock-kernel.sh" --cache-dir "$cache" 2>&1); rc=$?
is "fetch-stock-kernel.sh again: exit 0" "$rc" 0
like "... says the cache is current (or keeps it)" "$out" "up to date|keeping the cached"
is "... and leaves kernel.meta alone" "$(stat -c %Y "$meta")" "$before"

# Offline (apt's proxy is a closed loopback port, so nothing leaves the machine): with nothing
# cached it fails naming the fix; an intact cached kernel is kept, even when apt now wants
# another package.
printf 'Acquire::http::Proxy "http://127.0.0.1:9/";\nAcquire::https::Proxy "http://127.0.0.1:9/";\nAcquire::Retries "0";\n' >"$T/apt-off.conf"
out=$(APT_CONFIG=$T/apt-off.conf timeout 120 "$BB_SOURCE_DIR/scripts/fetch-stock-kernel.sh" \
    --cache-dir "$T/c1" 2>&1); rc=$?
is "offline with nothing cached: fetch-stock-kernel.sh exits 1" "$rc" 1
like "... saying why and what to do" "$out" "is a Debian mirror reachable\? run apt-get update, or pass --deb FILE"
is "... leaving no kernel.meta" "$(ls "$T/c1/stock" 2>/dev/null)" ""
mkdir -p "$T/c2" && cp -r "$cache/stock" "$T/c2/"
sed -i 's/^package=.*/package=linux-image-6.1.0-0-amd64 6.1.0-0/' "$T/c2/stock/kernel.meta"
out=$(APT_CONFIG=$T/apt-off.conf timeout 120 "$BB_SOURCE_DIR/scripts/fetch-stock-kernel.sh" \
    --cache-dir "$T/c2" 2>&1); rc=$?
is "offline with an intact cached kernel: exit 0" "$rc" 0
like "... keeping it, with a warning" "$out" "warning: could not fetch .*keeping the cached linux-image-6.1.0-0-amd64"
rm -rf "$T/c2"

printf '[microvm]\nkernel = stock\n' >"$T/stock.ini"

# doctor shows the kernel the config picks
mkdir -p "$T/empty-cache" "$T/ws0"
out=$(cd "$T/ws0" && timeout 60 "$BB" doctor -c "$T/stock.ini" --upstream-dns 127.0.0.1:9 2>/dev/null)
like "doctor names Debian's stock kernel for [microvm] kernel = stock" "$out" \
    "ok +kernel +Debian's stock kernel $release at $cache/stock/vmlinux-$release, modules from"

# Not in the cache: 125 before any VM, naming the fetch script.
mkdir -p "$T/empty-cache" "$T/ws0"
out=$(cd "$T/ws0" && BOT_BOTTLE_KERNEL_CACHE=$T/empty-cache timeout 60 "$BB" run -c "$T/stock.ini" \
    --allow-cidr 127.0.0.1/32 -- true 2>&1); rc=$?
is "kernel = stock with no stock kernel in the cache exits 125" "$rc" 125
like "... naming scripts/fetch-stock-kernel.sh" "$out" "scripts/fetch-stock-kernel.sh"

HTTPS=$(free_port); DNS=$(free_port)
make_cert allowed.test
bg "$PY" "$HELPERS/fake-upstream.py" --https "$HTTPS" --cert "$T/cert.pem" --key "$T/key.pem" \
    --dns "$DNS" --log "$T/origin.log" --ready "$T/origin.ready" --zone allowed.test=127.0.0.1
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }

chmod 0711 "$T"
mkdir -p "$T/ws"
cp "$T/cert.pem" "$T/ws/cert.pem"
[ "$(id -u)" = 0 ] && chown -R 4242:4242 "$T/ws"

cat >"$T/ws/probe.sh" <<EOF
echo "kernel=\$(uname -r)"
echo "https=\$(curl -s --max-time 30 --cacert cert.pem https://allowed.test:$HTTPS/hello)"
echo "ifaces=\$(python3 -c 'import socket; print(" ".join(n for _, n in socket.if_nameindex()))')"
echo "node=\$(node -e 'console.log(6 * 7)')"
echo "mods=\$(cut -d' ' -f1 /proc/modules | sort | tr '\n' ' ')"
echo "modules_disabled=\$(cat /proc/sys/kernel/modules_disabled)"
python3 - <<'PY'
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open("/usr/bin/true", os.O_RDONLY)
r = libc.syscall(313, fd, b"", 0)  # finit_module
print("finit_module=%d %s" % (r, errno.errorcode.get(ctypes.get_errno(), "?")))
r = libc.syscall(175, None, 0, b"")  # init_module
print("init_module=%d %s" % (r, errno.errorcode.get(ctypes.get_errno(), "?")))
print("seccomp=" + [l.split()[1] for l in open("/proc/self/status") if l.startswith("Seccomp:")][0])
PY
echo stock-stderr >&2
exit 3
EOF
uptime_before=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(date +%s.%N)
out=$(cd "$T/ws" && timeout 180 "$BB" run -c "$T/stock.ini" --allow "allowed.test:$HTTPS" \
    --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" -- sh probe.sh 2>"$T/err"); rc=$?
t1=$(date +%s.%N)
err=$(cat "$T/err")
diag "$out"
diag "boot, run and exit on the stock kernel: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s (load average $uptime_before)"
is "exit status 3 comes through" "$rc" 3
is "the guest runs the stock kernel" "$(sed -n 's/^kernel=//p' <<<"$out")" "$release"
is "HTTPS to an allowlisted host works (CONNECT through the proxy to the local TLS origin)" \
    "$(sed -n 's/^https=//p' <<<"$out")" "hello from fake upstream"
like "... and the origin saw it" "$(cat "$T/origin.log")" "allowed\.test"
is "no interface but lo" "$(sed -n 's/^ifaces=//p' <<<"$out")" "lo"
is "node runs" "$(sed -n 's/^node=//p' <<<"$out")" 42
like "python3 runs" "$out" "seccomp=2"
like "stderr arrives on stderr" "$err" "stock-stderr"
unlike "... and not on stdout" "$out" "stock-stderr"
mods=$(sed -n 's/^mods=//p' <<<"$out")
for m in virtio_mmio virtio_console 9pnet_virtio 9p; do
    like "bottle-init loaded $m" "$mods" "(^| )$m( |$)"
done
is "module loading is off for the rest of the guest's life" \
    "$(sed -n 's/^modules_disabled=//p' <<<"$out")" 1
is "the command cannot finit_module (seccomp: EPERM)" "$(sed -n 's/^finit_module=//p' <<<"$out")" "-1 EPERM"
is "the command cannot init_module (seccomp: EPERM)" "$(sed -n 's/^init_module=//p' <<<"$out")" "-1 EPERM"

done_testing

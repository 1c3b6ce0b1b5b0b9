#!/usr/bin/env bash
# The bottle's file system seen from inside a real `bot-bottle run --backend namespace`:
# masked /proc (what runc masks), --mount sources that an earlier bottle swapped for a
# symlink, and the workspace paths the host runs later (.git/config, .git/hooks, editor and
# agent config) that must stay read-only (DESIGN.md S10, S11; docs/workspace.md).
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] && ! unshare -Ur true 2>/dev/null; then
    skip "rootfs tests" "user namespaces are not available to this user"
    done_testing
fi

DNS=$(free_port)
bg python3 "$HELPERS/dns-stub.py" serve --port "$DNS" --log "$T/dns.log" --ready "$T/dns.ready"
wait_file "$T/dns.ready" || { echo "Bail out! dns stub did not start"; exit 1; }

WS=$T/ws
mkdir -p "$WS"
# run [run options] -- CMD...: in $WS (no network needed; the stub is the only upstream)
run() {
    (cd "$WS" && timeout 60 "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" "$@")
}

# ---------------------------------------------------------------- /proc and /sys (item 13)
host_cmdline=$(head -c 4096 /proc/cmdline)
out=$(run -- sh -c 'wc -c </proc/cmdline; cat /proc/cmdline')
is "/proc/cmdline reads empty inside (the host's is ${#host_cmdline} bytes)" "$out" "0"
[ -n "$host_cmdline" ] || diag "the host's /proc/cmdline is empty: the test above proves little"

# every masked file the host has reads empty (or is absent), whoever reads it
for f in kcore keys timer_list timer_stats sched_debug latency_stats kmsg vmallocinfo; do
    if [ -e "/proc/$f" ]; then
        out=$(run -- sh -c "test -e /proc/$f || echo absent; head -c 64 /proc/$f | wc -c")
        is "/proc/$f reads nothing" "$out" "0"
    else
        out=$(run -- sh -c "test -e /proc/$f && head -c 64 /proc/$f | wc -c || echo 0")
        is "/proc/$f: absent on this kernel, absent or empty inside" "$out" "0"
    fi
done
for d in acpi scsi asound; do
    out=$(run -- sh -c "test -d /proc/$d || { echo 0; exit; }; ls -A /proc/$d | wc -l; mkdir /proc/$d/x 2>/dev/null && echo writable")
    is "/proc/$d is an empty read-only directory (or absent)" "$out" "0"
done
# read-only knobs: writing fails even for the bottle's root
for f in sys/kernel/hostname sysrq-trigger; do
    out=$(run -- sh -c "test -e /proc/$f || { echo refused; exit; }; (echo x >/proc/$f) 2>/dev/null && echo written || echo refused")
    is "/proc/$f is not writable" "$out" "refused"
done
out=$(run -- sh -c 'grep -E " /proc/(irq|bus|fs|sys) " /proc/self/mountinfo | grep -vc " ro,"')
is "/proc/irq, /proc/bus, /proc/fs, /proc/sys are read-only mounts" "$out" "0"
out=$(run -- sh -c 'test -e /sys && ls -A /sys | head -3; echo end')
is "no /sys (nothing of the host's firmware, devices or cgroups)" "$out" "end"

# ---------------------------------------------------------------- --mount through a symlink (item 4)
mkdir -p "$WS/data" "$T/host-private"
echo "host-marker-$$" >"$T/host-private/marker"
echo "ws-data" >"$WS/data/file"
out=$(run --mount "$WS/data:/data:ro" -- cat /data/file)
is "--mount of a real workspace directory works" "$out" "ws-data"
# bottle 1 swaps ws/data for a symlink to a host directory outside the workspace
run -- sh -c "rm -rf data && ln -s '$T/host-private' data"
check "bottle 1 replaced ws/data with a symlink" test -L "$WS/data"
out=$(run --mount "$WS/data:/data:ro" -- sh -c 'cat /data/marker; echo ran' 2>"$T/err")
rc=$?
is "bottle 2 with --mount \$WS/data:/data is refused with 125" "$rc" "125"
unlike "... the host directory's marker is not visible" "$out" "host-marker|ran"
like "... the error names the path and says it is a symlink" "$(cat "$T/err")" \
    "--mount $WS/data.*$WS/data is a symbolic link"
# bottle-init refuses it by itself too (no supervisor check in front of it)
NS_LAUNCH=
for c in "$BB_BUILD_DIR/tests/integration/helpers/ns-launch" "$BB_BUILD_DIR/src/backend/ns-launch"; do
    [ -x "$c" ] && NS_LAUNCH=$c && break
done
if [ -n "$NS_LAUNCH" ]; then
    out=$(cd "$WS" && "$NS_LAUNCH" --init "$BB_BUILD_DIR/src/guest/bottle-init" \
        --mount "$WS/data:/data:ro" -- sh -c 'cat /data/marker; echo ran' 2>"$T/err")
    rc=$?
    is "bottle-init alone refuses the symlinked source with 125" "$rc" "125"
    unlike "... and shows nothing of the host directory" "$out" "host-marker|ran"
    like "... naming the path" "$(cat "$T/err")" "--mount source $WS/data is or passes through a symbolic link"
else
    skip "bottle-init refuses a symlinked source" "the ns-launch helper is not built"
fi
# a symlink higher up in the source path counts too
mkdir -p "$T/real/sub" && ln -s "$T/real" "$T/link"
out=$(run --mount "$T/link/sub:/data" -- true 2>&1)
like "a source passing through a symlinked directory is refused" "$out" "$T/link is a symbolic link"
rm -f "$WS/data"

done_testing

#!/usr/bin/env bash
# Red-team round 3: the microvm backend seen from a hostile guest. A compromised guest kernel
# writes what it likes on every virtio-serial port; helpers/hostile-guest.py plays one as a
# fake QEMU (BOT_BOTTLE_QEMU) on the backend's real chardev sockets, with the real
# supervisor, host relay and egress daemon behind them (no VM boots, so this is quick).
# - stream flood: the guest opens as many proxy streams as the channel allows (1024); each
#   costs the supervisor a descriptor. Under the common 1024-descriptor limit the supervisor
#   ran out: `bot-bottle stop` got no answer (and the control listener, level-triggered with a
#   connection it could not accept, spun the CPU).
# - protected paths from a compromised guest kernel: helpers/hostile-init.c as the VM's PID 1
#   (run --bottle-init) mounts the workspace share without bottle-init's read-only binds and
#   writes .git/config and a hook (the host's git would then run the guest's code). QEMU's
#   jail binds the protect paths read-only in QEMU's own view of the share, so its 9p server
#   cannot write them (jail.h, bind_shares). Likewise S10 (setuid files, chown) from such a
#   guest: QEMU's jail and seccomp filter refuse them.
source "$(dirname "$0")/lib.sh"

need_bottles "red-team microvm tests"
KCACHE=${BOT_BOTTLE_KERNEL_CACHE:-/var/cache/bot-bottle/kernel}
if ! ls "$KCACHE"/vmlinux-* >/dev/null 2>&1; then
    skip "red-team microvm tests" "no guest kernel in $KCACHE (scripts/build-guest-kernel.sh)"
    done_testing
fi

WS=$T/ws
mkdir -p "$WS"
# hostile_qemu NAME ARGS...: a QEMU stand-in at $T/NAME, hostile-guest.py with ARGS written
# in (self-contained: a jailed QEMU sees only /usr and its own files)
hostile_qemu() {
    local q=$T/$1
    shift
    {
        echo "#!$PY"
        echo "import sys"
        echo "sys.argv[1:1] = $("$PY" -c 'import sys; print(repr(sys.argv[1:]))' "$@")"
        tail -n +2 "$HELPERS/hostile-guest.py"
    } >"$q"
    chmod +x "$q"
    echo "$q"
}
sv_pid() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' \
    "$BOT_BOTTLE_STATE_DIR/bottles/$1/info.json"; }

# --- stream flood under a 1024-descriptor limit ----------------------------------------------
Q=$(hostile_qemu q-flood --mode streams --count 1024)
(
    cd "$WS" && ulimit -n 1024 &&
        BOT_BOTTLE_QEMU=$Q timeout 60 "$BB" start --upstream-dns 127.0.0.1:1 --name flood \
            -- true >"$T/flood.out" 2>"$T/flood.err"
)
is "flood: the bottle started (fake QEMU)" "$(cat "$T/flood.out")" flood
SV=$(sv_pid flood)
# the guest's streams arrive: wait until the supervisor's descriptors stop growing
nfd() { find "/proc/$SV/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
prev=-1
for _ in $(seq 120); do
    cur=$(nfd)
    [ "$cur" -gt 800 ] && [ "$cur" = "$prev" ] && break
    prev=$cur
    sleep 0.5
done
check "flood: the guest's streams reached the supervisor ($(nfd) descriptors)" test "$(nfd)" -gt 800
check "flood: it keeps descriptors in reserve ($(nfd) open, limit 1024)" test "$(nfd)" -lt 1000
start=$(date +%s)
timeout 30 "$BB" stop flood >"$T/stop.out" 2>"$T/stop.err"
rc=$?
is "flood: bot-bottle stop still works (status)" "$rc" 0
check "flood: ... promptly ($(($(date +%s) - start)) s)" test $(($(date +%s) - start)) -lt 20
unlike "flood: ... without 'no answer'" "$(cat "$T/stop.err")" "no answer"

# --- protected paths against a compromised guest kernel --------------------------------------
PW=$T/pws
mkdir -p "$PW"
git -C "$PW" init -q
cp "$PW/.git/config" "$T/config.orig"
out=$(cd "$PW" && timeout 120 "$BB" run --upstream-dns 127.0.0.1:1 \
    --bottle-init "$BB_BUILD_DIR/tests/integration/hostile-init" -- true 2>&1)
like "hostile init: it ran as the guest's PID 1 and mounted the workspace" "$out" "HOSTILE mount ok"
like "hostile init: ... and finished" "$out" "HOSTILE-DONE"
check "hostile init: .git/config unchanged on the host (core.fsmonitor runs on git status)" \
    cmp -s "$T/config.orig" "$PW/.git/config"
check "hostile init: .git was not moved aside on the host (a .git of its own in its place)" \
    test ! -e "$PW/.git-aside"
check "hostile init: no hook created in .git/hooks on the host" test ! -e "$PW/.git/hooks/pre-commit"
like "hostile init: it mounted the host's /usr share" "$out" "HOSTILE mount-usr ok"
unlike "hostile init: ... but cannot write to it (QEMU's readonly=on)" "$out" "HOSTILE usr-write ok"
check "hostile init: ... nothing of it on the host's /usr" test ! -e /usr/bb-redteam3-hostile
rm -f /usr/bb-redteam3-hostile
# S10 rule 2 is the guest's seccomp filter: a guest kernel skips it, and only QEMU's own
# confinement (its uid, its seccomp filter: QEMU's jail, docs/microvm.md) is left on the host,
# and holds
setid=$(find "$PW" -perm /6000 -printf '%M %u %p\n' 2>/dev/null)
check "hostile init: no setuid/setgid file or directory on the host${setid:+ (found: $(tr '\n' ';' <<<"$setid"))}" \
    test -z "$setid"
check "hostile init: no file chowned to another user on the host ($(stat -c %u "$PW/chowned" 2>/dev/null))" \
    test "$(stat -c %u "$PW/chowned" 2>/dev/null)" != 1

done_testing

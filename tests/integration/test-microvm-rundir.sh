#!/usr/bin/env bash
# A microVM bottle's run directory (/tmp/bb-vm.XXXXXX) ends up owned by QEMU's user: the
# workspace's owner when root runs bot-bottle for another user's project. That user could
# swap a socket the supervisor just bound for a symlink before the supervisor chowns it by
# name, and have root chown any file (/etc/shadow) to itself. Played here by an LD_PRELOAD
# shim (helpers/swap-socket.c) that swaps ctl.sock for a symlink to a root-owned canary right
# after bind: the canary must stay root's. (The supervisor now makes the sockets while the
# directory is still root's, and chowns them without following a symlink.)
source "$(dirname "$0")/lib.sh"

unset BOT_BOTTLE_BACKEND
need_root "the run directory race" "needs root (QEMU runs as the workspace owner only for root)"
shim=$BB_BUILD_DIR/tests/integration/swap-socket.so
[ -f "$shim" ] || { _result 1 "the shim is built ($shim)"; done_testing; }
chmod 0711 "$T"
mkdir -p "$T/ws"
chown 4242:4242 "$T/ws"
echo secret >"$T/canary"
chmod 0600 "$T/canary"
# (an ASan build's runtime must come first in the library list; the shim goes after it)
out=$(cd "$T/ws" && BB_TEST_SWAP_TARGET=$T/canary ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
    LD_PRELOAD=$shim timeout 60 "$BB" run --allow-cidr 127.0.0.1/32 -- true 2>&1); rc=$?
diag "$out"
is "the canary is still root's after the swap (uid:gid)" "$(stat -c %u:%g "$T/canary")" "0:0"
is "... and its mode is unchanged" "$(stat -c %a "$T/canary")" 600
check "the bottle did not start on the swapped socket (exit $rc)" test "$rc" -ne 0
done_testing

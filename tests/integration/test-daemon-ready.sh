#!/usr/bin/env bash
# Nothing of the bottle runs before the egress daemon reported ready (S7, fail closed): a
# daemon that cannot start means the command never runs, `run` exits 125 and says why, and the
# set-up done before (workspace placeholders, cgroups, the state) is undone.
#
# The daemon is made to fail for sure by holding port 53 (TCP and UDP, every address) in a
# network namespace of the test's own, where `run` then runs: the daemon cannot bind its DNS
# filter on the bottle's alias.
source "$(dirname "$0")/lib.sh"

need_bottles "daemon start-up failure tests"
need_root "daemon start-up failure tests" "holding port 53 in a new network namespace needs root"

S=$BOT_BOTTLE_STATE_DIR
mkdir -p "$T/ws"
cd "$T/ws" || exit 1

cat >"$T/hold53.py" <<'PY'
import os, signal, socket, sys
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.bind(("0.0.0.0", 53)); t.listen(1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", 53))
open(sys.argv[1], "w").close()
signal.pause()
PY

# in_netns HOLD NAME: runs `run` in a new network namespace (loopback up), with port 53 held
# when HOLD is 1; prints run's exit status; run's stderr goes to $T/NAME.err.
in_netns() {
    unshare --net -- bash -c '
        ip link set lo up || exit 97
        if [ "$1" = 1 ]; then
            python3 "$T/hold53.py" "$T/$2.held" & holder=$!
            for _ in $(seq 200); do [ -e "$T/$2.held" ] && break; sleep 0.05; done
            [ -e "$T/$2.held" ] || exit 98
        fi
        "$BB" run --backend namespace --name "$2" -- sh -c "echo ran >\"$T/ws/$2.ran\"" \
            >/dev/null 2>"$T/$2.err"
        rc=$?
        [ -n "${holder:-}" ] && kill "$holder"
        echo "$rc"' in_netns "$1" "$2"
}
export T BB

# control: the same namespace set-up without the held port runs the command
is "without port 53 held, run works in the test's network namespace" "$(in_netns 0 ok)" 0
check "... and the command ran" test -e "$T/ws/ok.ran"
rm -f "$T/ws/ok.ran"

for i in 1 2 3; do
    rc=$(in_netns 1 held-$i)
    is "a daemon that cannot start: run exits 125 (try $i)" "$rc" 125
    like "... and says the daemon did not start" "$(cat "$T/held-$i.err")" \
        "egress daemon did not start"
    check "... and the command never ran" test ! -e "$T/ws/held-$i.ran"
done
is "no placeholder is left in the workspace" "$(ls -A "$T/ws")" ""
is "no state directory or alias lease is left" \
    "$(find "$S/bottles" "$S/aliases" -mindepth 1 ! -name .lock 2>/dev/null)" ""
is "no daemon or bottle process is left" "$(procs 'bot-bottle egress|bottle-init')" ""
done_testing

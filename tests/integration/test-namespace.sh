#!/usr/bin/env bash
# Integration test of the namespace backend and bottle-init, driven by the ns-launch helper
# (tests/integration/helpers/ns-launch.c): no supervisor, no egress daemon.
# Env: BB_BUILD_DIR (or NS_LAUNCH and BOTTLE_INIT). TAP output.
source "$(dirname "$0")/lib.sh"

NS_LAUNCH=${NS_LAUNCH:-}
BOTTLE_INIT=${BOTTLE_INIT:-}
if [ -z "$NS_LAUNCH" ]; then
    for c in "$BB_BUILD_DIR/tests/integration/helpers/ns-launch" \
        "$BB_BUILD_DIR/tests/integration/ns-launch" "$BB_BUILD_DIR/src/backend/ns-launch"; do
        [ -x "$c" ] && NS_LAUNCH=$c && break
    done
fi
[ -z "$BOTTLE_INIT" ] && BOTTLE_INIT=$BB_BUILD_DIR/src/guest/bottle-init

if [ ! -x "$NS_LAUNCH" ] || [ ! -x "$BOTTLE_INIT" ]; then
    echo "Bail out! ns-launch or bottle-init not built (meson builds both for this test)"
    exit 1
fi
if ! probe=$("$NS_LAUNCH" --init "$BOTTLE_INIT" --probe); then
    skip "namespace backend" "unavailable here: $probe"
    done_testing
fi

WS=$T/ws
mkdir -p "$WS" "$T/extra"
echo extra-content >"$T/extra/file"
echo outside >"$T/outside-file"
LOG=$T/log
HOME_MARKER=
trap '[ -n "$HOME_MARKER" ] && rm -f "$HOME_MARKER"; cleanup' EXIT

# run [ns-launch options] -- CMD...: output in $OUT, status in $RC
run() {
    OUT=$(cd "$WS" && "$NS_LAUNCH" --init "$BOTTLE_INIT" "$@" 2>"$LOG")
    RC=$?
}
sh_in() { run -- /bin/sh -c "$1"; }

mounts_before=$(wc -l </proc/self/mountinfo)

# 1. Only loopback in the network namespace; the host has more.
sh_in 'tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | sort | tr "\n" " "'
check "only lo inside the bottle (got: $OUT)" test "$OUT" = "lo "

# 2. PID 1 is bottle-init, the command is not.
sh_in 'echo "$(tr "\0" " " </proc/1/cmdline)|$$"'
is "pid 1 is bottle-init" "${OUT%%|*}" "bottle-init --spec-fd 4 "
check "... the command is not (it is ${OUT#*|})" test "${OUT#*|}" != 1

# 3-5. Environment: host variables do not leak, -e ones do.
export BB_NS_HOST_SECRET=leaked BB_NS_PASS=passed-through
run -e BB_NS_GIVEN=given -e BB_NS_PASS -- /usr/bin/env
check "host variable not visible" bash -c '! grep -q BB_NS_HOST_SECRET <<<"$0"' "$OUT"
check "-e NAME=VALUE visible" grep -qx 'BB_NS_GIVEN=given' <<<"$OUT"
check "-e NAME passes the host value" grep -qx 'BB_NS_PASS=passed-through' <<<"$OUT"
unset BB_NS_HOST_SECRET BB_NS_PASS

# 6. Proxy variables and BOT_BOTTLE are set; nothing else beyond the documented list.
names=$(sed 's/=.*//' <<<"$OUT")
want="ALL_PROXY BB_NS_GIVEN BB_NS_PASS BOT_BOTTLE BOT_BOTTLE_NAME HOME HTTPS_PROXY HTTP_PROXY LOGNAME NO_PROXY PATH ${TERM:+TERM }USER http_proxy https_proxy no_proxy"
want=$(tr ' ' '\n' <<<"$want" | sed '/^$/d' | LC_ALL=C sort | tr '\n' ' ')
names=$(tr ' ' '\n' <<<"$names" | sed '/^$/d' | LC_ALL=C sort | tr '\n' ' ')
check "environment is exactly the documented set (got: $names)" test "$names" = "$want"
check "HTTP_PROXY points at the alias" grep -qx 'HTTP_PROXY=http://127.77.0.2:3128' <<<"$OUT"

# 8. The host's home is not visible (a marker file there is absent inside).
HOME_MARKER=$HOME/.bb-ns-test-marker.$$
echo secret >"$HOME_MARKER"
sh_in "test -e '$HOME_MARKER' && echo visible || echo hidden"
check "host \$HOME content not visible" test "$OUT" = hidden
rm -f "$HOME_MARKER"

# 9. /etc/shadow and the rest of the host's /etc are not there.
sh_in 'for f in /etc/shadow /etc/ssh /etc/sudoers; do test -e $f && echo $f; done; echo end'
check "/etc/shadow etc. not visible (got: $OUT)" test "$OUT" = end

# 10. /usr is read-only; nothing reaches the host.
sh_in 'touch /usr/bb-ns-test 2>&1; echo rc=$?'
check "writing to /usr fails" bash -c 'grep -q "Read-only file system" <<<"$0" && [ ! -e /usr/bb-ns-test ]' "$OUT"

# 11. The root and /etc are read-only too.
sh_in 'touch /etc/x /bb 2>/dev/null; echo rc=$?'
check "root and /etc read-only" test "$OUT" = "rc=1"

# 12. The workspace is writable at the same path and visible on the host.
sh_in 'pwd; echo from-bottle > written-inside'
check "workspace writable at the same path" bash -c '[ "$0" = "$1" ] && [ "$(cat "$1/written-inside")" = from-bottle ]' "$OUT" "$(realpath "$WS")"

# 13. Something next to the workspace is not visible.
sh_in "test -e '$T/outside-file' && echo visible || echo hidden"
check "file outside the workspace not visible" test "$OUT" = hidden

# 14. --mount SRC:DST:ro is readable, not writable.
run --mount "$T/extra:/data:ro" -- /bin/sh -c 'cat /data/file; touch /data/new 2>/dev/null; echo rc=$?'
check "--mount ro: readable, not writable" test "$OUT" = "$(printf 'extra-content\nrc=1')"

# 15-18. Exit statuses.
run -- /bin/true
check "exit status 0" test "$RC" = 0
run -- /bin/sh -c 'exit 3'
check "exit status 3 propagates" test "$RC" = 3
printf '#!/bin/sh\necho hi\n' >"$WS/not-executable"
chmod 0644 "$WS/not-executable"
run -- ./not-executable
check "not executable -> 126" test "$RC" = 126
run -- bb-no-such-command-$$
check "not found -> 127 ($(cat "$LOG"))" bash -c '[ "$0" = 127 ] && grep -q "command not found" "$1"' "$RC" "$LOG"

# 19. seccomp: creating a user namespace fails with EPERM.
sh_in 'unshare -U true 2>&1; echo rc=$?'
check "unshare -U denied with EPERM" bash -c 'grep -q "Operation not permitted" <<<"$0" && grep -q "rc=1" <<<"$0"' "$OUT"

# 20. Capabilities all zero, no_new_privs, seccomp filter on.
sh_in 'grep -E "^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):" /proc/self/status | tr -s "\t" " " | tr "\n" ";"'
check "no capabilities, no_new_privs, seccomp ($OUT)" test "$OUT" = \
    "CapInh: 0000000000000000;CapPrm: 0000000000000000;CapEff: 0000000000000000;CapBnd: 0000000000000000;CapAmb: 0000000000000000;NoNewPrivs: 1;Seccomp: 2;"

# 21. The host's loopback services are unreachable (another network namespace).
PORT=$((20000 + $$ % 20000))
bg python3 -c "
import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $PORT)); s.listen(8); time.sleep(60)"
LISTENER=$BGPID
if wait_port "$PORT"; then
    run -- /bin/bash -c "timeout 2 bash -c 'echo > /dev/tcp/127.0.0.1/$PORT' 2>/dev/null && echo reached || echo refused"
    check "host 127.0.0.1:$PORT reachable from the host but not from the bottle" test "$OUT" = refused
else
    echo "Bail out! could not start a host listener on 127.0.0.1:$PORT"
    exit 1
fi
kill "$LISTENER" 2>/dev/null

# 22. Hostname is the bottle's name.
run --name bbtest -- /bin/cat /proc/sys/kernel/hostname
check "hostname is the bottle name" test "$OUT" = bbtest

# 23. SIGTERM to the launcher reaches the command (through bottle-init) and its status returns.
(cd "$WS" && exec "$NS_LAUNCH" --init "$BOTTLE_INIT" -- /bin/sh -c 'trap "exit 42" TERM; touch ready; while :; do sleep 0.05; done') &
LPID=$!
for _ in $(seq 100); do [ -e "$WS/ready" ] && break; sleep 0.05; done
kill -TERM "$LPID"
wait "$LPID"
check "SIGTERM forwarded, command's status returned" test "$?" = 42

# 24. No leftovers: background processes die with the bottle; no mounts leak to the host.
TAG=$((3000 + $$ % 1000))
sh_in "sleep $TAG.5 >/dev/null 2>&1 & echo started"
wait_gone "^sleep $TAG\.5$"
is "no processes left after exit (this test's own processes)" "$(procs "^sleep $TAG\.5$")" ""
check "no mounts left on the host" test "$(wc -l </proc/self/mountinfo)" = "$mounts_before"

# 26-27. Unprivileged: as uid 65534 (if the helper binaries are reachable for that user).
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null &&
    setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$NS_LAUNCH" -a -x "$BOTTLE_INIT" &&
    setpriv --reuid=65534 --regid=65534 --clear-groups "$NS_LAUNCH" --init "$BOTTLE_INIT" --probe >/dev/null; then
    UWS=$T/uws
    mkdir -p "$UWS"
    chown 65534:65534 "$UWS"
    chmod 0755 "$T"
    OUT=$(cd "$UWS" && setpriv --reuid=65534 --regid=65534 --clear-groups "$NS_LAUNCH" --init "$BOTTLE_INIT" -- \
        /bin/sh -c 'id -u; echo x > f; grep -E "^CapEff|^CapBnd" /proc/self/status | tr -s "\t" " " | tr "\n" ";"; unshare -U true 2>/dev/null; echo rc=$?' 2>"$LOG")
    check "unprivileged: runs as the caller, workspace writable, no caps (got: $(tr "\n" " " <<<"$OUT"))" test \
        "$OUT" = "$(printf '65534\nCapEff: 0000000000000000;CapBnd: 0000000000000000;rc=1')"
    check "unprivileged: file owned by the caller on the host" test "$(stat -c %u "$UWS/f")" = 65534
else
    skip "unprivileged run" "not root, no setpriv, or the build tree is not reachable as uid 65534"
fi
done_testing

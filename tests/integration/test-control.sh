#!/usr/bin/env bash
# The supervisor's control socket (docs/supervisor.md, "Control socket") with a real bottle:
# where it is and who may use it, `status`, `allow PATTERN` changing the running daemon's
# policy (a host refused with 403 is then reached, over connections the bottle opens after the
# change), and `stop`. Fake origin and DNS stub on the host's loopback.
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] && ! unshare -Ur true 2>/dev/null; then
    skip "control tests" "user namespaces are not available to this user"
    done_testing
fi
PY=/usr/bin/python3
CALL="$HELPERS/control-call.py"

HTTP=$(free_port); DNS=$(free_port)
bg "$PY" "$HELPERS/fake-upstream.py" --http "$HTTP" --dns "$DNS" --log "$T/origin.log" \
    --ready "$T/origin.ready" --zone allowed.test=127.0.0.1 --zone late.test=127.0.0.1
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }
mkdir -p "$T/ws"
SOCK="$BOT_BOTTLE_STATE_DIR/bottles/ctl/control"

# The bottle: one request to late.test (refused), then it waits for the test's go, then the
# same request again; then it waits to be stopped.
(cd "$T/ws" && timeout 90 "$BB" run --backend namespace --name ctl --allow "allowed.test:$HTTP" \
    --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" -- sh -c '
        curl -s -o /dev/null -w "before=%{http_code}\n" --max-time 10 "http://late.test:'"$HTTP"'/hello"
        ls "'"$BOT_BOTTLE_STATE_DIR"'" >/dev/null 2>&1 && echo state-visible
        echo waiting >ready
        for i in $(seq 300); do [ -e go ] && break; sleep 0.1; done
        curl -s -o /dev/null -w "after=%{http_code}\n" --max-time 10 "http://late.test:'"$HTTP"'/hello"
        echo done >finished
        sleep 60
    ' >"$T/out" 2>"$T/err"; echo "rc=$?" >"$T/rc") &
RUNPID=$!
_pids+=("$RUNPID")
wait_file "$T/ws/ready"; for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done

check "the control socket exists in the bottle's state directory" test -S "$SOCK"
is "it is mode 0600, owned by the invoking user" "$(stat -c '%a %u' "$SOCK")" "600 $(id -u)"

out=$("$PY" "$CALL" "$SOCK" status)
like "status: name, backend, alias, pids, state" "$out" \
    '"alias": "127\.77\.[0-9]+\.[0-9]+".*"backend": "namespace".*"bottle_pid": [1-9][0-9]*.*"daemon_pid": [1-9][0-9]*.*"name": "ctl".*"ok": true.*"pid": [1-9].*"state": "running"'

out=$("$PY" "$CALL" "$SOCK" reboot 2>&1); rc=$?
is "an unknown command is refused" "$rc" "1"
like "... with a reason" "$out" '"error": "unknown command'
out=$("$PY" "$CALL" "$SOCK" allow '*' 2>&1); rc=$?
is "allow '*' is refused by the daemon's pattern check" "$rc" "1"
like "... with the pattern's error" "$out" "would allow every host"

if [ "$(id -u)" = 0 ]; then
    chmod 0711 "$BOT_BOTTLE_STATE_DIR" "$BOT_BOTTLE_STATE_DIR/bottles" \
        "$BOT_BOTTLE_STATE_DIR/bottles/ctl"
    chmod 0666 "$SOCK"
    out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$PY" "$CALL" "$SOCK" status 2>&1)
    rc=$?
    is "another uid (socket made reachable for the test) gets no answer (SO_PEERCRED)" "$rc" "2"
    chmod 0700 "$BOT_BOTTLE_STATE_DIR" "$BOT_BOTTLE_STATE_DIR/bottles" \
        "$BOT_BOTTLE_STATE_DIR/bottles/ctl"
    chmod 0600 "$SOCK"
else
    skip "SO_PEERCRED refusal" "needs root to switch to another uid"
fi

out=$("$PY" "$CALL" "$SOCK" allow "late.test:$HTTP")
like "allow late.test:PORT through the control socket" "$out" '"ok": true'
touch "$T/ws/go"
wait_file "$T/ws/finished"
out=$(cat "$T/out")
like "before the allow, late.test got 403 inside the bottle" "$out" 'before=403'
like "after it, the same request gets 200 (no restart)" "$out" 'after=200'
unlike "the state root is not visible inside the bottle" "$out" 'state-visible'
pid=$(sed -n 's/.*"daemon_pid": \([0-9]*\).*/\1/p' <<<"$("$PY" "$CALL" "$SOCK" status)")
like "the daemon was started with --control-fd" "$(tr '\0' ' ' <"/proc/$pid/cmdline")" \
    '--control-fd 5'

out=$("$PY" "$CALL" "$SOCK" stop)
like "stop is acknowledged" "$out" '"ok": true'
for _ in $(seq 100); do [ -s "$T/rc" ] && break; sleep 0.1; done
like "... and the bottle ends (SIGTERM to its command: 143)" "$(cat "$T/rc" 2>/dev/null)" 'rc=143'
check "its state directory (and socket) is gone" test ! -e "$BOT_BOTTLE_STATE_DIR/bottles/ctl"
done_testing

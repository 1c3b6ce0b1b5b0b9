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

# --- out of descriptors: the listener sheds a connection (spare descriptor) instead of spinning
# on it. The supervisor's soft RLIMIT_NOFILE goes down to its lowest free descriptor number,
# so accept() gets EMFILE; a client then connects.
SV=$(sed -n 's/.*"pid": \([0-9]*\).*/\1/p' <<<"$("$PY" "$CALL" "$SOCK" status)")
ticks() { sed 's/.*) //' "/proc/$SV/stat" | awk '{print $12 + $13}'; } # utime + stime
soft=$(prlimit --pid "$SV" --nofile --noheadings --output SOFT)
low=$(ls "/proc/$SV/fd" | sort -n | awk '$1 == n { n++ } END { print n + 0 }')
prlimit --pid "$SV" --nofile="$low:"
( timeout 20 "$PY" "$CALL" "$SOCK" status >"$T/emfile.out" 2>&1; echo "rc=$?" >>"$T/emfile.out" ) &
for _ in $(seq 100); do [ -s "$T/emfile.out" ] && break; sleep 0.05; done
sleep 0.5 # (the listener's first events)
t0=$(ticks); sleep 2; t1=$(ticks)
check "out of descriptors: the supervisor does not spin ($((t1 - t0)) ticks of CPU in 2 s)" \
    test $((t1 - t0)) -lt 10
like "... the client's connection is closed at once, unanswered" "$(cat "$T/emfile.out")" \
    "no reply.*rc=2"
like "... said once in the supervisor's log" "$(cat "$T/err")" "out of file descriptors: control"
prlimit --pid "$SV" --nofile="$soft:"
like "descriptors free again: the control socket answers" "$("$PY" "$CALL" "$SOCK" status)" \
    '"ok": true.*"state": "running"'

out=$("$PY" "$CALL" "$SOCK" stop)
like "stop is acknowledged" "$out" '"ok": true'
for _ in $(seq 100); do [ -s "$T/rc" ] && break; sleep 0.1; done
like "... and the bottle ends (SIGTERM to its command: 143)" "$(cat "$T/rc" 2>/dev/null)" 'rc=143'
check "its state directory (and socket) is gone" test ! -e "$BOT_BOTTLE_STATE_DIR/bottles/ctl"

# --- the daemon's control fd on its own (`bot-bottle egress --control-fd`): allow, deny,
# errors, a tunnel opened before the changes keeps working, changes survive a SIGHUP reload
PX=$(free_port)
"$PY" - "$BB" "$PX" "$HTTP" "$DNS" "$T" >"$T/egress-ctl.out" 2>"$T/egress-ctl.err" <<'PY'
import signal, socket, subprocess, sys, time
bb, px, http, dns, t = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
d = subprocess.Popen([bb, "egress", "--quiet", "--listen", "127.0.0.1:%d" % px,
                      "--control-fd", str(theirs.fileno()), "--allow", "allowed.test:" + http,
                      "--allow-cidr", "127.0.0.1/32", "--upstream-dns", "127.0.0.1:" + dns,
                      "--audit", t + "/egress-ctl.audit"], pass_fds=[theirs.fileno()])
theirs.close()
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", px)).close(); break
    except OSError:
        time.sleep(0.05)
def ctl(msg):
    ours.send(msg.encode()); ours.settimeout(5)
    print("ctl %s -> %s" % (msg, ours.recv(4096).decode()))
def get(host):
    s = socket.create_connection(("127.0.0.1", px)); s.settimeout(10)
    s.sendall(b"GET http://%s:%s/hello HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n"
              % (host.encode(), http.encode(), host.encode(), http.encode()))
    r = b""
    while True:
        c = s.recv(65536)
        if not c: break
        r += c
    return r.split(b"\r\n")[0].decode()
tun = socket.create_connection(("127.0.0.1", px)); tun.settimeout(10)
tun.sendall(b"CONNECT allowed.test:%s HTTP/1.1\r\nHost: allowed.test:%s\r\n\r\n" % (http.encode(), http.encode()))
print("tunnel", tun.recv(200).split(b"\r\n")[0].decode())
print("late before", get("late.test"))
ctl("allow late.test:" + http)
print("late after allow", get("late.test"))
ctl("deny allowed.test:" + http)
print("allowed after deny", get("allowed.test"))
tun.sendall(b"GET /hello HTTP/1.0\r\nHost: allowed.test\r\n\r\n")
print("tunnel after changes", tun.recv(200).split(b"\r\n")[0].decode())
ctl("deny nothere.test")
ctl("allow *")
ctl("reboot now")
d.send_signal(signal.SIGHUP); time.sleep(0.5)
print("late after reload", get("late.test"))
print("allowed after reload", get("allowed.test"))
d.terminate(); print("exit", d.wait(10))
PY
out=$(cat "$T/egress-ctl.out")
like "egress: a tunnel is open" "$out" "tunnel HTTP/1.1 200"
like "egress: late.test refused at first" "$out" "late before HTTP/1.1 403"
like "egress: allow over the control fd answers ok" "$out" "ctl allow late.test:$HTTP -> ok"
like "egress: ... and late.test is reached" "$out" "late after allow HTTP/1.1 200"
like "egress: deny removes a pattern" "$out" "allowed after deny HTTP/1.1 403"
like "egress: the tunnel opened before both changes still works" "$out" \
    "tunnel after changes HTTP/1.[01] 200"
like "egress: deny of a pattern not in force is an error" "$out" \
    "ctl deny nothere.test -> error no such allow pattern"
like "egress: a bad pattern is refused" "$out" "ctl allow \* -> error '\*' alone"
like "egress: an unknown request is refused" "$out" "ctl reboot now -> error unknown request"
like "egress: after SIGHUP the run-time allow is still in force" "$out" \
    "late after reload HTTP/1.1 200"
like "egress: ... and so is the deny" "$out" "allowed after reload HTTP/1.1 403"
like "egress: it stops cleanly" "$out" "exit 0"
done_testing

#!/usr/bin/env bash
# `bot-bottle run --backend namespace` end to end: the security properties S1-S4, S7-S9 of
# DESIGN.md shown from inside a real bottle, plus exit codes, signals, the terminal, cleanup
# and two bottles at once. Fake origin and DNS stub on the host's loopback.
source "$(dirname "$0")/lib.sh"

need_bottles "run tests"

HTTP=$(free_port); DNS=$(free_port); OTHER=$(free_port)
bg "$PY" "$HELPERS/fake-upstream.py" --http "$HTTP" --dns "$DNS" --log "$T/origin.log" \
    --ready "$T/origin.ready" --zone allowed.test=127.0.0.1 --zone evil.test=127.0.0.1 \
    --zone other.test=127.0.0.1
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }
# a host-only service on 127.0.0.1 and on ::1 (S4, S1 over IPv6)
bg "$PY" -c "
import socket, threading
def serve(fam, addr):
    s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr); s.listen()
    while True:
        c, _ = s.accept(); c.sendall(b'host-secret\n'); c.close()
threading.Thread(target=serve, args=(socket.AF_INET6, ('::1', $OTHER)), daemon=True).start()
serve(socket.AF_INET, ('127.0.0.1', $OTHER))
"
wait_port "$OTHER"

mkdir -p "$T/ws" "$T/outside"
echo "secret" >"$T/outside/file"
export BB_TEST_HOST_SECRET=do-not-leak
run() {
    (cd "$T/ws" && timeout 60 "$BB" run --backend namespace --allow "allowed.test:$HTTP" \
        --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" "$@")
}
STATE=$BOT_BOTTLE_STATE_DIR

# --- S2: through the proxy
out=$(run -- curl -s --max-time 10 "http://allowed.test:$HTTP/hello")
is "S2: an allowlisted host works through the proxy from inside" "$out" "hello from fake upstream"
out=$(run -- curl -s -i --max-time 10 "http://evil.test:$HTTP/hello" 2>"$T/err")
like "S2: another host gets 403 with the reason header" "$out" "HTTP/1.1 403.*X-Bottle-Block: not-allowlisted"
like "S2: the user sees one line on stderr naming the host and how to allow it" "$(cat "$T/err")" \
    "blocked evil.test .*--allow evil.test"
is "S2: ... exactly once per host" "$(grep -c 'blocked evil.test' "$T/err")" "1"
is "S2: the origin never saw the blocked request" "$(grep -c 'http GET evil.test' "$T/origin.log")" "0"

# --- S3: DNS
out=$(run -- getent hosts allowed.test)
like "S3: an allowlisted name resolves inside" "$out" "^127.0.0.1 +allowed.test"
run -- sh -c 'getent hosts evil.test; getent hosts aGVsbG8td29ybGQ.tunnel.evil.test; echo rc=$?' >"$T/out"
like "S3: a denied name does not resolve" "$(cat "$T/out")" "rc=2"
is "S3: the upstream stub saw zero queries for denied names" \
    "$(grep -cE 'dns .*evil\.test' "$T/origin.log")" "0"
like "S3: ... but did see the allowed one" "$(cat "$T/origin.log")" "dns allowed.test"

# --- S1: no direct egress, fast, IPv4 and IPv6, any port, with proxy variables unset
check "S1 (control): the origin is reachable from the host directly" \
    curl -s --noproxy '*' --max-time 5 "http://127.0.0.1:$HTTP/hello"
cat >"$T/ws/direct.py" <<'PY'
import socket, sys, time
res = []
for fam, addr in [(socket.AF_INET, ("127.0.0.1", int(sys.argv[1]))),
                  (socket.AF_INET6, ("::1", int(sys.argv[2]))),
                  (socket.AF_INET, ("203.0.113.9", 443)),
                  (socket.AF_INET, ("8.8.8.8", 53)),
                  (socket.AF_INET6, ("2001:db8::1", 80))]:
    t = time.time()
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(5)
    try:
        s.connect(addr); r = "connected"
    except OSError as e:
        r = "failed"
    res.append("%s %s %.2f" % (addr[0], r, time.time() - t))
for fam, addr in [(socket.AF_INET, ("203.0.113.9", 53)), (socket.AF_INET6, ("2001:db8::1", 53))]:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.sendto(b"x", addr); r = "sent"
    except OSError:
        r = "failed"
    res.append("udp %s %s" % (addr[0], r))
print("\n".join(res))
PY
out=$(run -- env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy -u ALL_PROXY \
    /usr/bin/python3 "$T/ws/direct.py" "$HTTP" "$OTHER")
diag "$out"
is "S1: every direct TCP connect from inside fails" "$(grep -c connected <<<"$out")" "0"
is "S1: ... within 2 s each" "$(awk '$2=="failed" && $3 >= 2.0' <<<"$out" | wc -l)" "0"
is "S1: UDP sends to outside addresses fail" "$(grep -c 'udp .* sent' <<<"$out")" "0"

# --- S4: host loopback services and other bottles
out=$(run -- curl -s -x "" --noproxy '*' --max-time 3 "http://127.0.0.1:$OTHER/" 2>&1; echo "rc=$?")
unlike "S4: a host service on 127.0.0.1 is not reachable from inside" "$out" "host-secret"
check "S4 (control): it is reachable from the host" bash -c "exec 3<>/dev/tcp/127.0.0.1/$OTHER; grep -q host-secret <&3"
out=$(run -- curl -s --max-time 5 -x "" "http://127.0.0.1:$OTHER/" 2>&1; echo "rc=$?")
unlike "S4: ... nor through the proxy (ip-literal outside allow_cidr is refused)" "$out" "host-secret"

# two bottles at once, different allowlists; each one cannot reach the other's alias.
# a stays up until b has made its attempts (b-done), so b's failure is a's alias being
# unreachable from b, not a being gone.
rm -f "$T/ws/alias-a" "$T/ws/b-done"
(cd "$T/ws" && timeout 90 "$BB" run --backend namespace --name bb-test-a --allow "allowed.test:$HTTP" \
    --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" -- sh -c \
    'echo $HTTP_PROXY >alias-a; getent hosts allowed.test >/dev/null; getent hosts evil.test;
     i=0; while [ ! -e b-done ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done;
     curl -s --max-time 5 http://other.test:'"$HTTP"'/hello; echo a-rc=$?' >"$T/a.out" 2>&1) &
A=$!
wait_file "$T/ws/alias-a"
alias_a=$(sed 's#http://##; s#:3128##' "$T/ws/alias-a")
out=$(curl -s --max-time 5 -x "http://$alias_a:3128" "http://allowed.test:$HTTP/hello")
is "two bottles (control): a's proxy alias answers from the host" "$out" "hello from fake upstream"
(cd "$T/ws" && timeout 60 "$BB" run --backend namespace --name bb-test-b --allow "other.test:$HTTP" \
    --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" -- sh -c \
    'curl -s --max-time 5 http://other.test:'"$HTTP"'/hello; curl -s --max-time 3 -x "http://'"$alias_a"':3128" http://allowed.test:'"$HTTP"'/hello; echo b-rc=$?; touch b-done' >"$T/b.out" 2>&1)
touch "$T/ws/b-done"
wait "$A"
like "two bottles: b reaches its own allowlisted host" "$(cat "$T/b.out")" "hello from fake upstream"
like "two bottles: b cannot use a's proxy alias" "$(cat "$T/b.out")" "b-rc=[1-9]"
like "two bottles: a, running at the same time, does not get b's allowlist" "$(cat "$T/a.out")" "a-rc=0"
unlike "two bottles: ... its request for other.test was refused" "$(cat "$T/a.out")" "hello from fake upstream"

# --- S8: nothing of the host leaks in
out=$(run -- sh -c 'echo "env:${BB_TEST_HOST_SECRET:-unset}"; ls '"$T/outside"' 2>&1; cat /etc/shadow 2>&1 | head -1; ls -A "$HOME" | wc -l')
like "S8: host environment is not passed" "$out" "env:unset"
like "S8: files outside the workspace are invisible" "$out" "No such file or directory"
unlike "S8: the host's /etc/shadow is not there" "$out" "root:"
out=$(run -e BB_TEST_HOST_SECRET -- sh -c 'echo "env:$BB_TEST_HOST_SECRET"')
is "S8: -e NAME passes exactly that variable" "$out" "env:do-not-leak"
run -- sh -c 'echo data >inside-file; touch /usr/x 2>/dev/null && echo usr-writable; touch /etc/x 2>/dev/null && echo etc-writable; true' >"$T/out"
is "S8: the workspace is writable and the change is visible on the host" "$(cat "$T/ws/inside-file")" "data"
unlike "S8: /usr and /etc are read-only" "$(cat "$T/out")" "writable"

# --- S9: audit
log="$STATE/logs/bb-test-a.audit.log"
like "S9: the audit log of a bottle has its decisions (allow and deny)" "$(cat "$log" 2>/dev/null)" \
    '"decision":"deny".*|"decision":"allow"'
like "S9: ... including DNS decisions" "$(cat "$log" 2>/dev/null)" '"kind":"dns"'

# --- the config file: ./bottle.ini in the current directory, command line on top
mkdir -p "$T/cfgws"
cat >"$T/cfgws/bottle.ini" <<INI
[egress]
allow = allowed.test:$HTTP
allow_cidr = 127.0.0.1/32
upstream_dns = 127.0.0.1:$DNS
[env]
pass = BB_TEST_FROM_CONFIG=configured
INI
# (a project file is used only once approved: test-trust.sh tests that part)
"$BB" trust "$T/cfgws/bottle.ini" >/dev/null
out=$(cd "$T/cfgws" && timeout 60 "$BB" run --backend namespace -- sh -c \
    'echo "env:$BB_TEST_FROM_CONFIG"; curl -s --max-time 10 http://allowed.test:'"$HTTP"'/hello')
like "config: ./bottle.ini supplies the allowlist, resolver and [env] pass" "$out" \
    "env:configured.*hello from fake upstream"
out=$(cd "$T/cfgws" && timeout 60 "$BB" run --backend namespace --memory 256M -- true 2>&1; echo "rc=$?")
like "limits: a run with --memory succeeds" "$out" \
    "rc=0"
unlike "limits: --memory is enforced, never just a warning (test-limits.sh has the rest)" "$out" \
    "warning|ignored"

# --- exit codes
run -- sh -c 'exit 3'; is "exit: the command's status is returned" "$?" "3"
run -- /nonexistent-command 2>/dev/null; is "exit: command not found is 127" "$?" "127"
run -- "$T/ws" 2>/dev/null; is "exit: command not executable is 126" "$?" "126"
run --allow 'bad pattern' -- true 2>/dev/null; is "exit: a bad option is 125" "$?" "125"
out=$(cd "$T/ws" && BOT_BOTTLE_BACKEND=namespace timeout 20 "$BB" run -- uname -rv 2>"$T/err")
is "BOT_BOTTLE_BACKEND=namespace selects the namespace backend (the host's kernel) without --backend" \
    "$out" "$(uname -rv)"

# The supervisor's pid, from the bottle's state file.
supervisor_pid() {
    wait_file "$STATE/bottles/$1/info.json"
    "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$STATE/bottles/$1/info.json"
}
# This test's own live bottle-init processes (never another bottle's on the machine).
INIT_RE='^(\S*/)?bottle-init( |$)'

# --- signals: SIGTERM to bot-bottle reaches the command, whose status comes back
(cd "$T/ws" && "$BB" run --backend namespace --name bb-test-sig -- sh -c 'trap "exit 42" TERM; echo up >sig-ready; while :; do sleep 0.1; done') &
SUP=$!
wait_file "$T/ws/sig-ready"
kill -TERM "$(supervisor_pid bb-test-sig)"
wait "$SUP"; is "signals: SIGTERM reaches the command (status 42 comes back)" "$?" "42"

# --- TTY: the command gets a terminal of the caller's size
out=$(cd "$T/ws" && timeout 30 "$PY" "$HELPERS/pty-run.py" --size 37 101 -- "$BB" run --backend namespace -t -- sh -c 'stty size; test -t 0 && echo is-a-tty')
like "tty: the command's terminal has the caller's size" "$out" "37 101"
like "tty: stdin is a terminal inside" "$out" "is-a-tty"
like "tty: ... and the status comes back" "$out" "status=0"

# Ctrl-C typed at the terminal reaches the command (through the pty), not bot-bottle.
out=$(cd "$T/ws" && timeout 30 "$PY" "$HELPERS/pty-run.py" --when ready --send '\x03' -- "$BB" run --backend namespace -t -- sh -c 'trap "echo got-sigint; exit 7" INT; echo ready; while :; do sleep 0.1; done')
like "tty: Ctrl-C is delivered to the command" "$out" "got-sigint"
like "tty: ... and bot-bottle returns the command's status" "$out" "status=7"

# Without a terminal: stdin is passed with -i (EOF included), /dev/null otherwise.
out=$(printf 'line1\nline2\n' | run -i -- sh -c 'cat; echo eof-seen')
is "stdin: -i passes stdin and its EOF" "$out" "$(printf 'line1\nline2\neof-seen')"
out=$(printf 'secret-input\n' | run -- sh -c 'cat; echo done')
is "stdin: without -i the command reads /dev/null" "$out" "done"

# As an unprivileged user (the supervisor's DNS moves to A:5353 on the host; inside it is A:53).
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    mkdir -p "$T/uws" && chmod 777 "$T/uws" && chmod 755 "$T"
    out=$(cd "$T/uws" && timeout 60 setpriv --reuid=65534 --regid=65534 --clear-groups \
        env -i PATH=/usr/bin:/bin HOME=/tmp "$BB" run --backend namespace --no-limits \
        --allow "allowed.test:$HTTP" --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" \
        -- sh -c "id -u; getent hosts allowed.test; curl -s --max-time 10 http://allowed.test:$HTTP/hello" 2>&1)
    like "unprivileged: runs as the invoking user" "$(grep -v 'warning: --no-limits' <<<"$out")" "^65534"
    like "unprivileged: DNS and the proxy work" "$out" "127.0.0.1 +allowed.test.*hello from fake upstream"
else
    skip "unprivileged run" "needs root to switch to an unprivileged user for the test"
fi

# --- no leftovers (processes: of this test only; it is their subreaper, see lib.sh)
is "cleanup: no bottle state left after normal exits" "$(ls "$STATE/bottles" 2>/dev/null | wc -l)" "0"
wait_gone "$INIT_RE"
is "cleanup: no bottle-init process left" "$(procs "$INIT_RE")" ""
(cd "$T/ws" && "$BB" run --backend namespace --name bb-test-k -- sh -c 'echo up >k-ready; sleep 30') &
SUP=$!
wait_file "$T/ws/k-ready"
is "kill -9 (control): the bottle's bottle-init runs" "$(procs "$INIT_RE" | wc -l)" "1"
is "kill -9 (control): ... the command inside" "$(procs '^sleep 30$' | wc -l)" "1"
is "kill -9 (control): ... and its egress daemon" "$(procs ' egress .*--name bb-test-k ' | wc -l)" "1"
kill -9 "$(supervisor_pid bb-test-k)"; wait "$SUP" 2>/dev/null
wait_gone "$INIT_RE|^sleep 30$| egress .*--name bb-test-k "
is "kill -9: the bottle's processes die with the supervisor" "$(procs "$INIT_RE")" ""
is "kill -9: ... and so does the command inside" "$(procs '^sleep 30$')" ""
is "kill -9: ... and its egress daemon" "$(procs ' egress .*--name bb-test-k ')" ""
run -- true
is "kill -9: the next run removes the stale state" "$(ls "$STATE/bottles" 2>/dev/null | wc -l)" "0"

# --- S7: kill the egress daemon mid-run
(cd "$T/ws" && "$BB" run --backend namespace --name bb-test-s7 --allow "allowed.test:$HTTP" \
    --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" -- sh -c \
    'echo up >s7-ready; i=0; while [ ! -e s7-killed ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; curl -s --max-time 3 http://allowed.test:'"$HTTP"'/hello; echo curl-rc=$? >s7-out; sleep 20' \
    >"$T/s7.out" 2>"$T/s7.err") &
SUP=$!
wait_file "$T/ws/s7-ready"
DAEMON=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['daemon_pid'])" "$STATE/bottles/bb-test-s7/info.json")
diag "supervisor $(supervisor_pid bb-test-s7), egress daemon $DAEMON"
kill -9 "$DAEMON"
touch "$T/ws/s7-killed"
t0=$(date +%s)
wait "$SUP"; rc=$?
t1=$(date +%s)
is "S7: killing the egress daemon stops the bottle with status 125" "$rc" "125"
like "S7: ... with a clear message" "$(cat "$T/s7.err")" "egress daemon .* died"
unlike "S7: the command never got through after the daemon died" "$(cat "$T/ws/s7-out" 2>/dev/null)" "curl-rc=0"
check "S7: ... promptly (well before the command would have ended)" test $((t1 - t0)) -lt 10
done_testing

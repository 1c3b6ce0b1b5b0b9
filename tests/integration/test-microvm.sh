#!/usr/bin/env bash
# `bot-bottle run` with NO backend option: the default backend is the QEMU microVM
# (src/backend/microvm/microvm.c; TCG here, this host's KVM is PVM). The same egress, audit,
# notices and exit statuses as the namespace backend (test-run.sh), shown from inside a VM,
# in a few boots of ~2-5 s each. Fake origin (HTTP and HTTPS) and DNS stub on the host's
# loopback. As root, the workspace belongs to another uid, so QEMU runs as that uid (S10
# rule 1, docs/microvm.md).
source "$(dirname "$0")/lib.sh"

BB_INIT=$BB_BUILD_DIR/src/guest/bottle-init
unset BOT_BOTTLE_BACKEND

# No skip: QEMU and the guest kernel are the default backend's prerequisites
# (scripts/install-deps.sh builds the kernel); the probe says what is missing.
if ! "$BB" run --allow-cidr 127.0.0.1/32 -- true 2>"$T/probe.err" >/dev/null; then
    _result 1 "the default (microvm) backend runs here"
    diag "$(cat "$T/probe.err")"
    done_testing
fi
_result 0 "the default (microvm) backend runs here"
like "TCG on a PVM host is said once" "$(cat "$T/probe.err")" \
    "no usable KVM \(PVM host\): running under TCG emulation"
is "... exactly once" "$(grep -c 'running under TCG' "$T/probe.err")" 1

HTTP=$(free_port); HTTPS=$(free_port); DNS=$(free_port)
# 100 MB of random bytes to download through the proxy, and 8 MB to send up and get back
# (the channel's 64 KiB frames and windows, both ways, checked by hash).
mkdir -p "$T/static"
head -c 100000000 /dev/urandom >"$T/static/big"
head -c 8000000 /dev/urandom >"$T/static/up"
big_sum=$(sha256sum <"$T/static/big" | cut -d' ' -f1)
up_sum=$(sha256sum <"$T/static/up" | cut -d' ' -f1)
make_cert allowed.test
bg "$PY" "$HELPERS/fake-upstream.py" --http "$HTTP" --https "$HTTPS" --cert "$T/cert.pem" \
    --key "$T/key.pem" --dns "$DNS" --log "$T/origin.log" --ready "$T/origin.ready" \
    --zone allowed.test=127.0.0.1 --zone evil.test=127.0.0.1 --static "$T/static"
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }

QUID=$(id -u)
chmod 0711 "$T"
mkdir -p "$T/ws/.git" "$T/outside"
echo "[core]" >"$T/ws/.git/config"
echo secret >"$T/outside/file"
cp "$T/cert.pem" "$T/ws/cert.pem"
cp "$T/static/up" "$T/ws/up.bin"
if [ "$(id -u)" = 0 ]; then
    QUID=4242
    chown -R "$QUID:$QUID" "$T/ws"
fi
# world-writable: the command's uid (the invoker's) may not own the workspace (clock.py)
mkdir -m 0777 "$T/ws/clock" && chmod 0777 "$T/ws/clock"
export BB_TEST_HOST_SECRET=do-not-leak
STATE=$BOT_BOTTLE_STATE_DIR
run() {
    (cd "$T/ws" && timeout 240 "$BB" run --allow "allowed.test:$HTTPS" \
        --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" "$@")
}

# ---- boot 1: the bottle's world and its egress, then exit 3 ----
cat >"$T/ws/probe.sh" <<EOF
echo "https=\$(curl -s --max-time 20 --cacert cert.pem https://allowed.test:$HTTPS/hello)"
curl -s -i --max-time 20 http://evil.test:$HTTP/hello | tr -d '\r' | sed 's/^/evil: /'
echo "proxy=\$HTTP_PROXY https_proxy=\$HTTPS_PROXY"
big=http://127.0.0.1:$HTTP/static/big
echo "big=\$(curl -sS --max-time 200 --noproxy '' -x "\$HTTP_PROXY" "\$big" | sha256sum | cut -d' ' -f1)"
echo "up=\$(curl -sS --max-time 100 --noproxy '' -x "\$HTTP_PROXY" --data-binary @up.bin http://127.0.0.1:$HTTP/echo | sha256sum | cut -d' ' -f1)"
getent hosts denied-name.evil.test; echo "denied_dns_rc=\$?"
env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy -u ALL_PROXY python3 - <<'PY'
import socket, time
for addr in [("127.0.0.1", $HTTP), ("203.0.113.9", 443)]:
    t = time.time(); s = socket.socket(); s.settimeout(5)
    try:
        s.connect(addr); r = "connected"
    except OSError:
        r = "failed"
    print("direct %s %s %.2f" % (addr[0], r, time.time() - t))
PY
echo "ifaces=\$(python3 -c 'import socket; print(" ".join(n for _, n in socket.if_nameindex()))')"
echo "secret_env=\$(env | grep -c BB_TEST_HOST_SECRET)"
test -e "$T/outside/file" && echo outside=visible || echo outside=invisible
echo "home=\$(ls -A ~ | tr '\n' ' ')"
echo pwned >>.git/config 2>/dev/null && echo gitconfig=written || echo gitconfig=refused
echo "uid=\$(id -u)"
echo "stdin=[\$(cat)]"
echo probe-stderr >&2
echo "consoles=\$(ls /dev | grep -cE '^(hvc|console|vport|ttyS)')"
python3 clock.py
exit 3
EOF
# The guest's wall clock against the host's: a file written through 9p gets the host's time
# as its mtime, which must lie between the guest's clock before and after the write (0.1 s of
# slack). bottle-init sets the clock from the host's at start; the CMOS clock alone left the
# guest 0-1 s behind, and the file in its future.
cat >"$T/ws/clock.py" <<'EOF'
import os, time
path = "clock/probe.%d" % os.getpid()
a = time.time()
with open(path, "w") as f:
    f.write("x")
m = os.stat(path).st_mtime
b = time.time()
os.unlink(path)
print("clock=%s guest %.3f..%.3f, host mtime %.3f" % ("ok" if a - 0.1 <= m <= b + 0.1 else "off", a, b, m))
EOF
echo must-not-pass >"$T/stdin1"
out=$(run --name bb-mv-1 -- sh probe.sh <"$T/stdin1" 2>"$T/err1"); rc=$?
err=$(cat "$T/err1")
diag "$out"
is "boot 1: exit status 3 comes through" "$rc" 3
like "the guest's clock is the host's (a 9p file's mtime within 0.1 s)" "$out" "clock=ok"
like "HTTPS to an allowlisted host works (CONNECT through the proxy)" "$out" \
    "https=hello from fake upstream"
like "a non-allowlisted host gets 403 with X-Bottle-Block" "$out" \
    "evil: HTTP/1.1 403.*evil: X-Bottle-Block: not-allowlisted"
like "the blocked-host notice is on stderr" "$err" "blocked evil.test .*--allow evil.test"
is "the origin never saw the blocked request" "$(grep -c 'http GET evil.test' "$T/origin.log")" 0
is "100 MB downloaded through the proxy arrive whole (sha256)" "$(sed -n 's/^big=//p' <<<"$out")" "$big_sum"
is "8 MB sent up through the proxy come back whole (sha256)" "$(sed -n 's/^up=//p' <<<"$out")" "$up_sum"
alias_re='http://127\.77\.[0-9]+\.[0-9]+:3128'
like "HTTP_PROXY and HTTPS_PROXY are http://A:3128" "$out" \
    "proxy=$alias_re https_proxy=$alias_re"
like "a denied DNS name does not resolve" "$out" "denied_dns_rc=2"
is "... and never reached the upstream stub" "$(grep -c 'dns .*denied-name' "$T/origin.log")" 0
is "direct connections fail with the proxy variables unset" "$(grep -c 'direct .* connected' <<<"$out")" 0
is "... within 2 s" "$(awk '$1=="direct" && $3=="failed" && $4 < 2.0' <<<"$out" | wc -l)" 2
is "no interface but lo" "$(sed -n 's/^ifaces=//p' <<<"$out")" "lo"
is "the host's environment is invisible" "$(sed -n 's/^secret_env=//p' <<<"$out")" 0
like "files outside the workspace are invisible" "$out" "outside=invisible"
host_home=$(ls -A ~ 2>/dev/null | head -n 1)
if [ -n "$host_home" ]; then
    unlike "the host's home is invisible (no $host_home)" "$(sed -n 's/^home=//p' <<<"$out")" \
        "(^| )$(printf '%s' "$host_home" | sed 's/[.[\*^$]/\\&/g')( |$)"
else
    is "the host's home is invisible (empty inside)" "$(sed -n 's/^home=//p' <<<"$out")" ""
fi
like "a protected path (.git/config) cannot be written from inside" "$out" "gitconfig=refused"
is "... and is unchanged on the host" "$(cat "$T/ws/.git/config")" "[core]"
audit=$STATE/logs/bb-mv-1.audit.log
# stdio: separate streams over the channel, not the console (docs/microvm.md, "stdio")
like "stderr arrives on stderr" "$err" "probe-stderr"
unlike "... and not on stdout" "$out" "probe-stderr"
like "without -i the command's stdin is empty" "$out" "stdin=\[\]"
is "the VM's console and ports are not in the bottle's /dev" "$(sed -n 's/^consoles=//p' <<<"$out")" 0
like "the audit log has the allowed CONNECT" "$(cat "$audit")" "allowed\.test"
like "... and the blocked request" "$(grep evil.test "$audit")" "not-allowlisted"

# ---- boots 2 and 3: statuses 0 and 127; -i passes stdin; --pids inside the guest ----
cat >"$T/ws/forks.py" <<'EOF'
import os, time
n = 0
for i in range(100):
    try:
        if os.fork() == 0:
            time.sleep(5)
            os._exit(0)
        n += 1
    except OSError:
        break
print("forked=%d" % n)
EOF
out=$(printf 'hi\nthere' | run -i --cpus 1.5 --memory 640M --pids 40 -- sh -c \
    'echo "stdin=$(od -An -tx1 | tr -d " \n")"; head -c 1048576 /dev/zero | tr "\0" y; echo; python3 forks.py; echo cpus=$(nproc); awk "/^MemTotal/ {print \"memkb=\" \$2}" /proc/meminfo; python3 clock.py' 2>/dev/null)
is "boot 2: exit status 0 comes through" "$?" 0
like "boot 2: the guest's clock is the host's too" "$out" "clock=ok"
is "-i passes stdin byte for byte, then EOF" "$(sed -n 's/^stdin=//p' <<<"$out")" 68690a7468657265
is "1 MiB of stdout arrives whole" "$(grep -o y <<<"$out" | wc -l)" 1048576
forked=$(sed -n 's/^forked=//p' <<<"$out")
check "--pids 40 bounds the processes inside the guest (forked $forked of 100)" \
    test "${forked:-100}" -lt 40 -a "${forked:-0}" -gt 5
is "--cpus 1.5 gives the guest 2 vCPUs (-smp ceil)" "$(sed -n 's/^cpus=//p' <<<"$out")" 2
memkb=$(sed -n 's/^memkb=//p' <<<"$out")
check "--memory 640M: guest RAM fits under the limit with QEMU's overhead (${memkb} kB)" \
    test "${memkb:-0}" -gt 200000 -a "${memkb:-0}" -le $(((640 - 256) * 1024))
run -- /no/such-command >"$T/out3" 2>"$T/err3"; is "boot 3: command not found is 127" "$?" 127
like "... with bottle-init's message on stderr, as on namespace" "$(cat "$T/err3")" \
    "bottle-init: error: /no/such-command: No such file"
is "... and nothing on stdout" "$(cat "$T/out3")" ""

# Without QEMU the default backend says what is missing and how to fix it, and never falls
# back to another backend (no boot).
(cd "$T/ws" && PATH=/nonexistent "$BB" run -- true >/dev/null 2>"$T/err"); rc=$?
is "no QEMU: the default backend refuses to run: 125" "$rc" 125
like "... naming QEMU's package and --backend namespace" "$(cat "$T/err")" \
    "microvm backend \(the default\) cannot run here: qemu-system-x86_64 not found.*qemu-system-x86.*--backend namespace"

# ---- boot -t: a pty in the guest, the supervisor's tty path (size, SIGWINCH, Ctrl-C) ----
out=$(cd "$T/ws" && timeout 120 "$PY" "$HELPERS/pty-run.py" --size 37 101 --when ready \
    --resize 40 120 --send '\x03' -- "$BB" run -t -- sh -c 'trap "stty size; echo got-sigint; exit 7" INT
        stty size; test -t 0 && test -t 1 && test -t 2 && echo is-a-tty; tty; echo ready
        while :; do sleep 0.1; done' | tr -d '\r')
diag "$out"
like "-t: stdin, stdout and stderr are a terminal" "$out" "is-a-tty"
like "... a pty of the guest (tty prints /dev/pts/N)" "$out" "/dev/pts/[0-9]+"
like "... sized like the user's terminal" "$out" "37 101"
like "... resized on SIGWINCH" "$out" "40 120"
like "... Ctrl-C is SIGINT to the command" "$out" "got-sigint"
like "... whose status comes through" "$out" "status=7"

# ---- boots exec and exec -t: the backend's exec op in a running VM (vm-launch drives it
# as run does: attach, then exec; `bot-bottle exec` builds on the same op) ----
VL=$BB_BUILD_DIR/src/backend/vm-launch
(cd "$T/ws" && timeout 120 "$VL" --init "$BB_INIT" -w "$T/ws" --exec 'echo "exec-out cwd=$(pwd) extra=$BB_EXEC_EXTRA"
    echo exec-err >&2; grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status | tr -d "\t"
    test -t 0 || echo no-tty; exit 9' -- sh -c 'echo main-up; sleep 60' >"$T/xo" 2>"$T/xe")
rc=$?
diag "$(cat "$T/xo" "$T/xe")"
is "exec: the bottle's command then ends on the stop request (143)" "$rc" 143
is "exec: its status comes back" "$(sed -n 's/^vm-launch: exec status //p' "$T/xe")" 9
like "exec: its stdout on stdout, in the workspace, with the extra environment" "$(cat "$T/xo")" \
    "exec-out cwd=$T/ws extra=yes"
like "exec: its stderr on stderr" "$(cat "$T/xe")" "exec-err"
unlike "... not on stdout" "$(cat "$T/xo")" "exec-err"
like "exec: the bottle's confinement (no capabilities, no_new_privs, seccomp)" \
    "$(tr '\n' ' ' <"$T/xo")" "CapEff:0000000000000000 NoNewPrivs:1 Seccomp:2"
like "exec without a tty has none" "$(cat "$T/xo")" "no-tty"
(cd "$T/ws" && timeout 120 "$VL" --init "$BB_INIT" -w "$T/ws" --exec-tty \
    --exec 'test -t 0 && echo is-a-tty; tty; stty size; exit 4' -- sh -c 'sleep 60' \
    >"$T/xo" 2>"$T/xe")
out=$(tr -d '\r' <"$T/xo")
diag "$out"
is "exec -t: its status comes back" "$(sed -n 's/^vm-launch: exec status //p' "$T/xe")" 4
like "exec -t: a terminal of its own" "$out" "is-a-tty"
like "... a pty of the guest" "$out" "/dev/pts/[0-9]+"
like "... with the caller's pty size" "$out" "24 80"

# ---- boot 4: SIGTERM to bot-bottle reaches the command through bottle.ctl ("stop") ----
(cd "$T/ws" && timeout 120 "$BB" run --name bb-mv-4 -- sh -c \
    'trap "exit 42" TERM; echo up >ready4; while :; do sleep 0.1; done' >/dev/null 2>"$T/err4") &
SUP=$!
for _ in $(seq 300); do [ -s "$T/ws/ready4" ] && break; sleep 0.1; done
info=$STATE/bottles/bb-mv-4/info.json
is "the default backend is microvm (info.json)" \
    "$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['backend'])" "$info")" microvm
qpid=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['bottle_pid'])" "$info")
like "the bottle's top process is QEMU" "$(tr '\0' ' ' </proc/"$qpid"/cmdline)" "^qemu-system-x86_64|/qemu-system-x86_64 "
is "QEMU runs as the workspace's owner, not root" "$(awk '/^Uid:/ {print $2}' /proc/"$qpid"/status)" "$QUID"
rundir=$(tr '\0' '\n' </proc/"$qpid"/cmdline | sed -n 's|^socket,id=ctl,path=\(/.*\)/ctl.sock,server=off$|\1|p')
like "the bottle's run directory holds its ctl socket" "$rundir" "/bb-vm\."
kill -TERM "$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$info")"
wait "$SUP"; is "boot 4: SIGTERM reaches the command inside the VM (status 42)" "$?" 42

# ---- boot 4b: SIGHUP to bot-bottle: the command ends (SIGTERM in the guest), run says 129 ----
(cd "$T/ws" && timeout 120 "$BB" run --name bb-mv-4b -- sh -c \
    'echo up >ready4b; while :; do sleep 0.1; done' >/dev/null 2>"$T/err4b") &
SUP=$!
for _ in $(seq 300); do [ -s "$T/ws/ready4b" ] && break; sleep 0.1; done
kill -HUP "$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$STATE/bottles/bb-mv-4b/info.json")"
wait "$SUP"; is "boot 4b: SIGHUP to run gives 128+SIGHUP, as on namespace" "$?" 129

# ---- boot 4c: a supervisor killed with SIGKILL leaves its run directory; the next bottle
# removes it (its lock is free) ----
(cd "$T/ws" && timeout 120 "$BB" run --name bb-mv-4c -- sh -c \
    'echo up >ready4c; while :; do sleep 0.1; done' >/dev/null 2>"$T/err4c") &
SUP=$!
for _ in $(seq 300); do [ -s "$T/ws/ready4c" ] && break; sleep 0.1; done
info=$STATE/bottles/bb-mv-4c/info.json
qpid=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['bottle_pid'])" "$info")
rundir4c=$(tr '\0' '\n' </proc/"$qpid"/cmdline | sed -n 's|^socket,id=ctl,path=\(/.*\)/ctl.sock,server=off$|\1|p')
kill -KILL "$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$info")"
wait "$SUP" 2>/dev/null
wait_gone 'qemu-system-x86_64'
like "boot 4c: the killed bottle's run directory" "$rundir4c" "/bb-vm\."
if [ -d "$rundir4c" ]; then
    out=$(cd "$T/ws" && timeout 120 "$BB" run -- true 2>&1)
    check "... the next bottle removed it" test ! -e "$rundir4c"
    like "... and said so" "$out" "removed $rundir4c, which a microVM bottle whose supervisor was killed left behind"
else
    # (another test's bottle, started meanwhile, swept it: the same code, its own output)
    diag "the run directory was already removed by a concurrent bottle"
    check "... a later bottle removed it" test ! -e "$rundir4c"
fi

# ---- boot 5: S7, killing the egress daemon stops the bottle with 125 ----
(cd "$T/ws" && timeout 120 "$BB" run --name bb-mv-5 --allow "allowed.test:$HTTPS" \
    --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" -- sh -c \
    'echo up >ready5; while :; do sleep 0.1; done' >/dev/null 2>"$T/err5") &
SUP=$!
for _ in $(seq 300); do [ -s "$T/ws/ready5" ] && break; sleep 0.1; done
DAEMON=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['daemon_pid'])" "$STATE/bottles/bb-mv-5/info.json")
kill -9 "$DAEMON"
t0=$(date +%s)
wait "$SUP"; rc=$?
is "S7: killing the egress daemon stops the bottle with status 125" "$rc" 125
check "... within 10 s" test $(($(date +%s) - t0)) -le 10
like "... and says why" "$(cat "$T/err5")" "egress daemon .* died"

# ---- boot 6: a command that ignores SIGTERM: QEMU is killed after the grace period ----
(cd "$T/ws" && timeout 120 "$BB" run --name bb-mv-6 -- sh -c \
    'trap "" TERM; echo up >ready6; while :; do sleep 0.1; done' >/dev/null 2>"$T/err6") &
SUP=$!
for _ in $(seq 300); do [ -s "$T/ws/ready6" ] && break; sleep 0.1; done
kill -TERM "$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$STATE/bottles/bb-mv-6/info.json")"
wait "$SUP"; rc=$?
is "boot 6: a command ignoring the stop request is killed (SIGKILL to QEMU): 137" "$rc" 137
like "... after saying so" "$(cat "$T/err6")" "did not stop within 5 s; killing it"

# ---- boot 7: the start-up progress line, on a terminal only, gone before the output ----
unlike "no progress line when stderr is a file" "$(cat "$T/probe.err")" "starting microVM"
(cd "$T/ws" && "$PY" - "$BB" >"$T/pty.out" 2>"$T/pty.err" <<'PY'
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "run", "--", "sh", "-c",
                           "echo cmd-out; echo cmd-err >&2; exit 4"])
data = b""
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    data += chunk
_, st = os.waitpid(pid, 0)
sys.stdout.write(repr(data) + "\n")
print("rc=%d" % os.waitstatus_to_exitcode(st))
PY
)
pty_out=$(cat "$T/pty.out")
is "boot 7 (stderr a pty): the command's status" "$(sed -n 's/^rc=//p' "$T/pty.out")" 4
like "... a progress line while the VM boots" "$pty_out" \
    "bot-bottle: starting microVM \\(TCG emulation, no usable KVM\\)\\.\\.\\."
like "... erased before the command's first output" "$pty_out" \
    "starting microVM [^']*\\.\\.\\.\\\\r\\\\x1b\\[K[^']*cmd-out"
unlike "... and never after it" "$pty_out" "cmd-(out|err).*starting microVM"

# ---- no leftovers ----
wait_gone 'qemu-system-x86_64'
is "no QEMU process left" "$(procs 'qemu-system-x86_64')" ""
is "no bottle state left" "$(ls "$STATE/bottles" 2>/dev/null | wc -l)" 0
check "the run directory is removed" test -n "$rundir" -a ! -e "$rundir"

done_testing

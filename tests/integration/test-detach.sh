#!/usr/bin/env bash
# Detached bottles (docs/cli.md "start", "exec", "attach", "rm"): `start` from a session that
# goes away, generated and colliding names, `exec` (exit status, 126/127, stdout and stderr
# apart, -i, -e, signals forwarded, -t a terminal of its own with the window size), `attach`
# (recent output replayed and bounded, the detach key leaves the bottle running, the
# command's status when it ends while attached), two bottles side by side, `rm` (refused
# while running, -f), log retention, and nothing new reachable from inside (the control
# socket, descriptors). Namespace backend; a microVM round trip when the backend is there.
source "$(dirname "$0")/lib.sh"
need_bottles "detach tests"

ST=$BOT_BOTTLE_STATE_DIR
WS=$T/ws
mkdir -p "$WS"
cd "$WS" || exit 1
# nothing here resolves anything: the upstream resolver is a closed loopback port
START=("$BB" start --backend namespace --upstream-dns 127.0.0.1:1)
# ls_line NAME [-a]: NAME's own line of `ls` (a like/unlike on the whole listing would also
# match a generated name that ends in NAME, bb-66e5d2 for d2, or text on another line)
ls_line() { "$BB" ls ${2:-} | awk -v n="$1" '$1 == n'; }
info_pid() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$ST/bottles/$1/info.json"; }

# --- start from a session that exits at once ------------------------------------------------
setsid bash -c '"$@" --name d1 >"'"$T"'/d1.out" 2>"'"$T"'/d1.err"; echo $? >"'"$T"'/d1.rc"' _ \
    "${START[@]}" </dev/null >/dev/null 2>&1 &
wait $!
is "start: exit status 0" "$(cat "$T/d1.rc")" 0
is "start: prints the name" "$(cat "$T/d1.out")" d1
sleep 0.5 # the session that ran start is gone; the bottle must not care
is "ls: d1 runs after the starting session ended" \
    "$("$BB" ls --json | "$PY" -c 'import json,sys; print([b["state"] for b in json.load(sys.stdin)["bottles"] if b["name"]=="d1"])')" \
    "['running']"
SV=$(info_pid d1)
check "supervisor: not a session leader (it cannot get a terminal back)" \
    test "$(ps -o sid= -p "$SV" | tr -d ' ')" != "$SV"
unlike "supervisor: not the session of this test" "$(ps -o sid= -p "$SV" | tr -d ' ')" "^$(ps -o sid= -p $$ | tr -d ' ')\$"
is "supervisor: no controlling terminal" "$(ps -o tty= -p "$SV" | tr -d ' ')" "?"
is "supervisor: stdin is /dev/null" "$(readlink /proc/"$SV"/fd/0)" /dev/null
is "supervisor: stderr is its log" "$(readlink /proc/"$SV"/fd/2)" "$ST/logs/d1.log"
like "ls: the default command is a login shell" "$(ls_line d1)" " (bash|sh) -l"

# ... and from a real terminal that closes once start returned (SIGHUP to its session)
out=$("$PY" "$HELPERS/pty-run.py" -- bash -c '"$0" start --backend namespace --upstream-dns 127.0.0.1:1 --name d5 -- sleep 1000' "$BB")
like "start on a terminal: prints the name, exit 0" "$out" "d5.*status=0"
sleep 0.5
like "ls: d5 runs after its terminal closed" "$(ls_line d5)" " running "
is "stop: d5" "$("$BB" stop d5)" "stopped d5"
"$BB" rm d5 >/dev/null

# a supervisor that fails after it left: start says what it logged
ln -s "$T/elsewhere" "$ST/logs/bad.audit.log"
out=$("${START[@]}" --name bad -- true 2>&1); rc=$?
is "start: a failure in the daemonised supervisor: 125" "$rc" 125
like "start: ... with the supervisor's own message" "$out" "audit log .*bad.audit.log is a symbolic link"
like "start: ... and where its log is" "$out" "did not start \\(its log: .*/logs/bad.log\\)"
is "ls: no bottle 'bad'" "$(ls_line bad)" ""
rm -f "$ST/logs/bad.audit.log" "$ST/logs/bad.log"
"${START[@]}" --no-such-option >/dev/null 2>&1; rc=$?
is "start: an unknown option: 125" "$rc" 125

# --- names ------------------------------------------------------------------------------------
out=$("${START[@]}" --name d1 2>&1); rc=$?
is "start: a name in use is refused (125)" "$rc" 125
like "start: ... saying so" "$out" "already running; choose another --name"
gen=$("${START[@]}" -- sleep 1000 2>"$T/gen.err"); rc=$?
is "start without --name: exit 0" "$rc" 0
check "start without --name: a short generated name ($gen)" \
    bash -c '[[ $1 =~ ^bb-[0-9a-f]{6}$ ]]' _ "$gen"
like "ls: the generated name runs" "$("$BB" ls)" "$gen .*running.*sleep 1000"

# --- exec: status, streams, -i, -e -------------------------------------------------------------
"$BB" exec d1 -- sh -c 'echo out; echo err >&2; exit 3' >"$T/o" 2>"$T/e"; rc=$?
is "exec: the command's exit status" "$rc" 3
is "exec: stdout" "$(cat "$T/o")" out
is "exec: stderr apart" "$(cat "$T/e")" err
"$BB" exec d1 -- no-such-command-here >/dev/null 2>"$T/e"; rc=$?
is "exec: not found is 127" "$rc" 127
like "exec: ... saying so" "$(cat "$T/e")" "no-such-command-here: command not found in the bottle"
printf '#!/bin/sh\necho hi\n' >"$WS/notexec"; chmod 644 "$WS/notexec"
"$BB" exec d1 -- "$WS/notexec" >/dev/null 2>&1; rc=$?
is "exec: not executable is 126" "$rc" 126
is "exec -i: stdin passed, EOF too" "$(printf 'abc\ndef\n' | "$BB" exec -i d1 -- cat)" "abc
def"
is "exec without -i: stdin is /dev/null" "$(echo abc | "$BB" exec d1 -- cat)" ""
is "exec -e VAR: the host's value" "$(FOO=bar-1 "$BB" exec -e FOO d1 -- sh -c 'echo $FOO')" bar-1
is "exec -e VAR=VALUE (options after NAME)" "$("$BB" exec d1 -e FOO=v2 -- sh -c 'echo $FOO')" v2
is "exec: no terminal without -t" "$("$BB" exec d1 -- sh -c 'test -t 0 || test -t 1; echo $?')" 1
# a long command: refused at once, naming the limit, and the supervisor goes on answering
a100=$(head -c 100 /dev/zero | tr '\0' a); big=()
for _ in $(seq 2000); do big+=("$a100"); done
s0=$(date +%s%N)
out=$("$BB" exec d1 -- echo "${big[@]}" 2>&1); rc=$?
ms=$(( ($(date +%s%N) - s0) / 1000000 ))
is "exec: 200 KB of arguments: 125" "$rc" 125
like "exec: ... saying what the limit is" "$out" "[0-9]+ bytes; at most 4096 fit in a request"
check "exec: ... at once (${ms} ms)" test "$ms" -lt 3000
is "exec: the supervisor answers right after" "$("$BB" exec d1 -- echo still-here)" still-here
is "exec: runs as the bottle's main command does, in the workspace" \
    "$("$BB" exec d1 -- pwd)" "$WS"
is "exec: in d1's bottle (hostname)" "$("$BB" exec d1 -- cat /proc/sys/kernel/hostname)" d1
is "exec: in the other bottle (hostname)" "$("$BB" exec "$gen" -- cat /proc/sys/kernel/hostname)" "$gen"

# --- exec: signals ------------------------------------------------------------------------------
# Each exec writes a file of its own: with one file, the wait below could see the previous
# command's "ready" before this exec truncated it, and signal an exec that was not relaying
# yet (a background job ignores SIGINT; SIGTERM or SIGHUP would end exec itself), which
# made this flaky under load (137: the guard killed an exec whose command never got SIGINT).
for sig in TERM INT HUP; do
    "$BB" exec d1 -- sh -c 'trap "echo got-'$sig'; exit 7" '$sig'; echo ready; while :; do sleep 0.1; done' \
        >"$T/sig-$sig.out" 2>&1 &
    p=$!
    for _ in $(seq 200); do grep -q ready "$T/sig-$sig.out" 2>/dev/null && break; sleep 0.05; done
    kill -$sig $p
    # (not forwarded: the command loops forever; end it after 10 s so the test fails, not hangs)
    ( sleep 10; kill -9 $p 2>/dev/null ) &
    guard=$!
    wait $p; rc=$?
    kill $guard 2>/dev/null
    is "exec: SIG$sig to exec reaches the command (its status)" "$rc" 7
    like "exec: ... which trapped it" "$(cat "$T/sig-$sig.out")" "got-$sig"
done
"$BB" exec d1 -- sh -c 'echo ready; exec sleep 1000' >"$T/sig-kill.out" 2>&1 &
p=$!
for _ in $(seq 200); do grep -q ready "$T/sig-kill.out" 2>/dev/null && break; sleep 0.05; done
kill -TERM $p; wait $p; rc=$?
is "exec: a command killed by the forwarded SIGTERM: 143" "$rc" 143
# a signal that comes while exec's request is under way (d1's supervisor stopped for the test,
# so exec waits for its reply) is held and passed on once the command runs: not lost (a
# background job ignores SIGINT), nor the end of exec alone
kill -STOP "$SV"
"$BB" exec d1 -- sleep 1000 >"$T/held.out" 2>&1 &
p=$!
for _ in $(seq 200); do # until exec blocks SIGINT (bit 2 of SigBlk)
    blk=$(awk '/^SigBlk/ { print $2 }' "/proc/$p/status" 2>/dev/null)
    [ -n "$blk" ] && (( 0x$blk & 2 )) && break
    sleep 0.05
done
kill -INT $p
kill -CONT "$SV"
( sleep 30; kill -9 $p 2>/dev/null ) &
guard=$!
wait $p; rc=$?
kill $guard 2>/dev/null
is "exec: SIGINT sent while the request was under way reaches the command: 130" "$rc" 130

# --- exec -t ------------------------------------------------------------------------------------
out=$("$PY" "$HELPERS/pty-run.py" --size 33 111 -- "$BB" exec -t d1 -- sh -c 'test -t 0 && test -t 1 && echo TTY-YES; stty size; exit 4')
like "exec -t: a terminal (test -t 0)" "$out" "TTY-YES"
like "exec -t: the window size of ours" "$out" "33 111"
like "exec -t: the exit status" "$out" "status=4"
# S11: the command's terminal is one the supervisor made, never the terminal exec runs on
out=$("$PY" "$HELPERS/pty-run.py" -- bash -c '
    echo "outer=$(stat -L -c %t:%T /proc/self/fd/0)"
    "$0" exec -t d1 -- "$1" -c "import os; s = os.stat(0).st_rdev; print(\"inner=%x:%x\" % (os.major(s), os.minor(s)))"' "$BB" "$PY")
outer=$(grep -o 'outer=[0-9a-f:]*' <<<"$out" | cut -d= -f2)
inner=$(grep -o 'inner=[0-9a-f:]*' <<<"$out" | cut -d= -f2)
check "exec -t: both terminals seen ($outer, $inner)" test -n "$outer" -a -n "$inner"
check "exec -t: the command's terminal is not exec's own" test "$outer" != "$inner"
out=$("$BB" exec -t d1 -- true </dev/null 2>&1); rc=$?
is "exec -t without a terminal: 125" "$rc" 125

# --- nothing new reachable from inside ---------------------------------------------------------
out=$("$BB" exec d1 -- "$PY" -c '
import os, socket, sys
print("fds", sorted(int(f) for f in os.listdir("/proc/self/fd")))
for p in [sys.argv[1] + "/bottles/d1/control", sys.argv[1] + "/bottles/'"$gen"'/control"]:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(p); print("CONNECTED", p)
    except OSError as e:
        print("refused", e.strerror)
' "$ST")
like "exec: the command holds only its stdio (and the listing's own fd)" "$out" "fds \[0, 1, 2(, 3)?\]"
unlike "exec: the control sockets stay unreachable from inside" "$out" "CONNECTED"

# --- attach ---------------------------------------------------------------------------------------
cat >"$T/attach.py" <<'PY'
# attach.py BB NAME STEPS...: run `BB attach NAME` on a pty; each step is "w:TEXT" (wait up to
# 20 s for TEXT in the output), "p:SECONDS" (read for that long) or "s:BYTES" (type BYTES,
# Python escapes). Prints the output and
# "status=N" (N: the exit status, or "running" when it did not exit within 20 s).
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "attach", sys.argv[2]])
out = b""
def read_until(want, secs=20):
    global out
    end = time.time() + secs
    while (want is None or want not in out) and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                d = os.read(fd, 65536)
            except OSError:
                return
            if not d:
                return
            out += d
for step in sys.argv[3:]:
    if step.startswith("w:"):
        read_until(step[2:].encode())
    elif step.startswith("p:"):
        read_until(None, float(step[2:]))
    else:
        os.write(fd, step[2:].encode().decode("unicode_escape").encode("latin-1"))
status = "running"
end = time.time() + 20
while time.time() < end:
    read_until(None, 0.2)
    p, st = os.waitpid(pid, os.WNOHANG)
    if p:
        status = str(os.waitstatus_to_exitcode(st))
        break
sys.stdout.write(out.decode(errors="replace"))
print("\nstatus=" + status)
PY
"${START[@]}" --name d2 -- sh -c 'echo HELLO-FROM-MAIN; exec sh' >/dev/null
out=$("$PY" "$T/attach.py" "$BB" d2 "w:HELLO-FROM-MAIN" 's:echo MARK$((40+2))\r' "w:MARK42" 's:\x10\x11')
like "attach: shows what the command printed before anyone attached" "$out" "HELLO-FROM-MAIN"
like "attach: typing reaches the command's terminal" "$out" "MARK42"
like "attach: ctrl-p ctrl-q detaches, exit 0" "$out" "status=0"
like "attach: ... saying how to come back" "$out" "detached from d2; it still runs"
like "ls: d2 still runs after the detach" "$(ls_line d2)" " running "
n0=$(grep -c "attached to the terminal" "$ST/logs/d2.log")
"$PY" "$T/attach.py" "$BB" d2 'w:attached' 'p:4' 's:\x10\x11' >"$T/first.out" &
p=$!
for _ in $(seq 100); do
    [ "$(grep -c "attached to the terminal" "$ST/logs/d2.log")" -gt "$n0" ] && break
    sleep 0.05
done
out=$("$PY" "$T/attach.py" "$BB" d2)
like "attach: a second attach at the same time is refused (125)" "$out" "status=125"
like "attach: ... saying why" "$out" "someone is attached already"
wait $p
like "attach: the first one detached normally" "$(cat "$T/first.out")" "status=0"
out=$("$PY" "$T/attach.py" "$BB" d2 's:echo again$((1+1))\r' "w:again2" 's:\x10\r' 'w:not found' 's:exit 5\r')
like "attach: again after a detach" "$out" "again2"
like "attach: ctrl-p then another key: both reach the command" "$out" "\^P"
like "attach: the command ended while attached: its status" "$out" "status=5"
for _ in $(seq 100); do [ "$("$BB" ls --json | grep -c '"d2"')" = 0 ] && break; sleep 0.1; done
is "ls: d2 is gone after its command ended" "$(ls_line d2)" ""

# bounded: 300 KB printed while nobody was attached; attach shows at most the last 64 KiB
"${START[@]}" --name d3 -- sh -c 'head -c 300000 /dev/zero | tr "\0" x; echo; echo END-MARK; touch d3-done; exec sh' >/dev/null
for _ in $(seq 200); do [ -e "$WS/d3-done" ] && break; sleep 0.1; done
sleep 0.3 # (the supervisor's read of the last bytes)
out=$("$PY" "$T/attach.py" "$BB" d3 "w:END-MARK" 's:\x10\x11')
like "attach: the end of a long output" "$out" "END-MARK"
n=$(tr -cd x <<<"$out" | wc -c)
check "attach: at most the last 64 KiB kept ($n x)" test "$n" -le 65536 -a "$n" -gt 60000
out=$("$PY" "$T/attach.py" "$BB" nosuch)
like "attach: no such bottle: 1" "$out" "status=1"
out=$("$BB" attach d1 </dev/null 2>&1); rc=$?
is "attach without a terminal: 125" "$rc" 125

# --- stop, rm ---------------------------------------------------------------------------------
out=$("$BB" rm d1 2>&1); rc=$?
is "rm: a running bottle is refused (125)" "$rc" 125
like "rm: ... with the fix" "$out" "stop it first .* rm -f d1"
like "rm: ... and it still runs" "$(ls_line d1)" " running "
is "stop: d1" "$("$BB" stop d1)" "stopped d1"
like "ls -a: d1 stopped" "$(ls_line d1 -a)" " stopped "
check "d1's logs are there" test -e "$ST/logs/d1.audit.log" -a -e "$ST/logs/d1.log"
is "rm: d1" "$("$BB" rm d1)" "removed d1"
check "rm: its logs are gone" test ! -e "$ST/logs/d1.audit.log" -a ! -e "$ST/logs/d1.log"
is "ls -a: d1 is gone" "$(ls_line d1 -a)" ""
"$BB" rm d1 2>/dev/null; rc=$?
is "rm: no such bottle: 1" "$rc" 1
is "rm -f: stops a running bottle, then removes it" "$("$BB" rm -f d3 | tail -1)" "removed d3"
is "ls -a: d3 is gone" "$(ls_line d3 -a)" ""
"$BB" exec d3 -- true 2>/dev/null; rc=$?
is "exec into a bottle that is gone: 1" "$rc" 1

is "rm: a bottle whose command ended by itself" "$("$BB" rm d2)" "removed d2"

# --- retention -------------------------------------------------------------------------------------
for i in 1 2 3 4 5; do
    echo '{}' >"$ST/logs/old-$i.audit.log"
    echo x >"$ST/logs/old-$i.log"
    touch -d "$((10 - i)) hours ago" "$ST/logs/old-$i.audit.log" "$ST/logs/old-$i.log"
done
echo '{}' >"$ST/logs/ancient.audit.log"; touch -d '20 days ago' "$ST/logs/ancient.audit.log"
BOT_BOTTLE_KEEP_LOGS=3 "$BB" ls >/dev/null
left=$(cd "$ST/logs" && ls | sort | tr '\n' ' ')
like "retention: the newest ended bottles' logs are kept" "$left" "old-3.audit.log old-3.log old-4.audit.log old-4.log old-5.audit.log old-5.log"
unlike "retention: older ones beyond the count are removed" "$left" "old-1|old-2"
unlike "retention: logs older than 14 days are removed" "$left" "ancient"
like "retention: a running bottle's log is kept" "$left" "$gen.audit.log"
BOT_BOTTLE_KEEP_LOGS=1 "${START[@]}" --name d4 -- sleep 1000 >/dev/null
left=$(cd "$ST/logs" && ls | sort | tr '\n' ' ')
unlike "retention: also applied when a bottle starts" "$left" "old-3|old-4"
like "retention: ... keeping the newest" "$left" "old-5.audit.log"
"$BB" stop d4 >/dev/null
"$BB" stop "$gen" >/dev/null

# --- microVM: the same verbs (the pty and the exec'd command are in the guest) ----
if "$BB" start --backend microvm --name vm1 --upstream-dns 127.0.0.1:1 -- sleep 1000 \
    >"$T/vm.out" 2>"$T/vm.err"; then
    is "microvm: start prints the name" "$(cat "$T/vm.out")" vm1
    out=$("$BB" exec vm1 -- sh -c 'echo in-vm; exit 9' 2>"$T/vm.err"); rc=$?
    is "microvm: exec runs a command in the guest, its status back" "$rc $out" "9 in-vm"
    "$BB" exec vm1 -- sh -c 'trap "echo got-TERM; exit 7" TERM; echo ready; while :; do sleep 0.1; done' \
        >"$T/vmsig.out" 2>&1 &
    p=$!
    for _ in $(seq 600); do grep -q ready "$T/vmsig.out" 2>/dev/null && break; sleep 0.1; done
    kill -TERM $p
    ( sleep 30; kill -9 $p 2>/dev/null ) &
    guard=$!
    wait $p; rc=$?
    kill $guard 2>/dev/null
    is "microvm: SIGTERM to exec reaches the command in the guest (its status)" "$rc" 7
    like "microvm: ... which trapped it" "$(cat "$T/vmsig.out")" "got-TERM"
    out=$(timeout 60 "$PY" "$HELPERS/pty-run.py" -- "$BB" exec -t vm1 -- sh -c 'test -t 0 && tty' 2>&1)
    like "microvm: exec -t gets a terminal of the guest" "$out" "/dev/pts/"
    is "microvm: stop" "$("$BB" stop vm1)" "stopped vm1"
elif grep -q "backend cannot run here" "$T/vm.err"; then
    skip "microvm start/exec/stop" "$(head -1 "$T/vm.err")"
else
    _result 1 "microvm: start"
    diag "$(cat "$T/vm.err")"
fi
out=$("$BB" start --backend microvm --name vm0 --upstream-dns 127.0.0.1:1 2>&1); rc=$?
is "microvm: start without COMMAND gives the login shell a terminal" "$rc $out" "0 vm0"
is "microvm: ... which stops" "$("$BB" stop vm0)" "stopped vm0"

done_testing

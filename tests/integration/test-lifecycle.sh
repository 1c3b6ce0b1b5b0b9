#!/usr/bin/env bash
# Long-running bottles (docs/cli.md): `ls` (table and --json), `allow`/`deny` changing a running
# bottle's allowlist (also `--for`, expiring by itself), each bottle only its own grants,
# `stop`, `logs` (table, --json, --denied, --follow, a stopped bottle's log), `logs --verify`
# on an intact, an edited and a truncated log, the control socket unreachable from inside a
# bottle, and unknown names. Two bottles on the namespace backend; fake origin and DNS on the
# host's loopback.
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] && ! unshare -Ur true 2>/dev/null; then
    skip "lifecycle tests" "user namespaces are not available to this user"
    done_testing
fi
PY=/usr/bin/python3

HTTP=$(free_port); DNS=$(free_port)
bg "$PY" "$HELPERS/fake-upstream.py" --http "$HTTP" --dns "$DNS" --log "$T/origin.log" \
    --ready "$T/origin.ready" --zone allowed.test=127.0.0.1 --zone late.test=127.0.0.1 \
    --zone fresh.test=127.0.0.1
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }

# Inside each bottle: probe the control sockets (by path, through every /proc/PID/root the
# bottle can see, and the abstract namespace), then request http://$(cat target):PORT/hello
# every 0.2 s (at most 400 times) and keep the last status in `last`, until `quit` appears.
cat >"$T/probe.py" <<'PY'
import glob, os, socket, sys
state = sys.argv[1]
res = []
paths = [state + "/bottles/lc-a/control", state + "/bottles/lc-b/control"]
for pid_root in glob.glob("/proc/[0-9]*/root"):
    paths += [pid_root + p for p in paths[:2]]
for p in paths:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(p)
        res.append("CONNECTED " + p)
    except OSError as e:
        res.append("refused %s (%s)" % (p, e.strerror))
    s.close()
for name in ["\0bot-bottle", "\0" + state + "/bottles/lc-a/control"]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(name)
        res.append("CONNECTED abstract")
    except OSError as e:
        res.append("refused abstract (%s)" % e.strerror)
    s.close()
print("\n".join(res))
PY
start_bottle() { # NAME
    local ws="$T/ws-$1"
    mkdir -p "$ws"
    cp "$T/probe.py" "$ws/probe.py"
    (cd "$ws" && timeout 120 "$BB" run --backend namespace --name "$1" \
        --allow "allowed.test:$HTTP" --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" \
        -- sh -c '
            '"$PY"' probe.py "'"$BOT_BOTTLE_STATE_DIR"'" >probe.out 2>&1
            i=0
            while [ ! -e quit ] && [ $i -lt 400 ]; do
                h=$(cat target 2>/dev/null || echo late.test)
                c=$(curl -s -o /dev/null -w "%{http_code}" --max-time 5 "http://$h:'"$HTTP"'/hello")
                echo "$c" >last.tmp && mv last.tmp last
                i=$((i + 1)); sleep 0.2
            done
        ' >"$T/$1.out" 2>"$T/$1.err"; echo "rc=$?" >"$T/$1.rc") &
    _pids+=("$!")
}
# wait_code NAME CODE: until the bottle's last request got CODE (15 s at most)
wait_code() {
    for _ in $(seq 150); do
        [ "$(cat "$T/ws-$1/last" 2>/dev/null)" = "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

start_bottle lc-a
start_bottle lc-b
wait_code lc-a 403; wait_code lc-b 403

# --- ls
out=$("$BB" ls)
like "ls: a header" "$out" 'NAME +BACKEND +ALIAS +STATE +UPTIME +ALLOWED +DENIED +PENDING +COMMAND'
like "ls: lc-a running on the namespace backend, with its alias and command" "$out" \
    'lc-a +namespace +127\.77\.[0-9]+\.[0-9]+ +running +[0-9]+s +[0-9]+ +[1-9][0-9]* +0 +sh -c'
like "ls: lc-b beside it" "$out" 'lc-b +namespace +127\.77\.[0-9.]+ +running'
"$BB" ls --json >"$T/ls.json"
is "ls --json: the documented schema (docs/cli.md), both bottles" "$("$PY" - "$T/ls.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert set(d) == {"version", "bottles"} and d["version"] == 1, d
keys = {"name": str, "state": str, "backend": str, "alias": str, "pid": int, "started": int,
        "uptime_s": int, "command": str, "allowed": int, "denied": int, "pending": int,
        "audit": str}
for b in d["bottles"]:
    assert set(b) == set(keys), sorted(b)
    for k, t in keys.items():
        assert isinstance(b[k], t), (k, b[k])
    assert b["state"] == "running" and b["backend"] == "namespace" and b["uptime_s"] >= 0
    assert b["denied"] >= 1 and b["command"].startswith("sh -c")
print(" ".join(b["name"] for b in d["bottles"]))
PY
)" "lc-a lc-b"

# --- the control socket is unreachable from inside a bottle
wait_file "$T/ws-lc-a/probe.out"
probe=$(cat "$T/ws-lc-a/probe.out")
like "inside a bottle: the control socket's path does not exist" "$probe" \
    "refused $BOT_BOTTLE_STATE_DIR/bottles/lc-a/control \(No such file or directory\)"
like "... nor through /proc/PID/root of any process the bottle sees" "$probe" \
    "refused /proc/[0-9]+/root$BOT_BOTTLE_STATE_DIR/bottles/lc-a/control"
like "... nor as an abstract socket (the bottle has its own network namespace)" "$probe" \
    "refused abstract"
unlike "... no connect succeeded" "$probe" "CONNECTED"
# ... nor through the host's /proc mounted in (the supervisor's /proc/PID/root): the bottle may
# not look into a process outside its namespaces
spid=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' \
    "$BOT_BOTTLE_STATE_DIR/bottles/lc-a/info.json")
mkdir -p "$T/ws-p"
cat >"$T/ws-p/p.py" <<PY
import socket
p = "/hostproc/$spid/root$BOT_BOTTLE_STATE_DIR/bottles/lc-a/control"
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(p); print("CONNECTED " + p)
except OSError as e:
    print("refused %s (%s)" % (p, e.strerror))
PY
out=$(cd "$T/ws-p" && timeout 60 "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" \
    --mount /proc:/hostproc:ro -- "$PY" p.py 2>&1)
like "... nor through the host's /proc/SUPERVISOR/root mounted into a bottle" "$out" \
    "refused /hostproc/$spid/root.*/control \(Permission denied\)"
# ... and no option puts it there: a socket on a read-only mount still takes connections, and
# the peer check sees the invoking user
mkdir -p "$T/ws-m"; cp "$T/probe.py" "$T/ws-m/"
out=$(cd "$T/ws-m" && timeout 60 "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" \
    --mount "$BOT_BOTTLE_STATE_DIR:$BOT_BOTTLE_STATE_DIR:ro" -- "$PY" probe.py \
    "$BOT_BOTTLE_STATE_DIR" 2>&1); rc=$?
is "run --mount of the state directory is refused (125)" "$rc" "125"
like "... saying why" "$out" "would put the state directory .* inside the bottle"
unlike "... and no bottle reached a control socket" "$out" "CONNECTED"
out=$(cd "$T/ws-m" && timeout 60 "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" \
    --mount "$T:/mnt:ro" -- "$PY" probe.py /mnt/state 2>&1); rc=$?
is "run --mount of a directory above it is refused (125)" "$rc:$(grep -c CONNECTED <<<"$out")" "125:0"
out=$(cd "$T" && timeout 60 "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" \
    -- "$PY" ws-m/probe.py "$BOT_BOTTLE_STATE_DIR" 2>&1); rc=$?
is "a workspace that contains it is refused (125)" "$rc:$(grep -c CONNECTED <<<"$out")" "125:0"

# --- allow / deny / --for
"$BB" allow lc-a '*' >/dev/null 2>"$T/err"
is "allow: a bad pattern exits 125" "$?" "125"
like "... naming the accepted forms" "$(cat "$T/err")" \
    "a pattern is example.com, \*.example.com or example.com:8443"
out=$("$BB" allow lc-a "late.test:$HTTP"); rc=$?
is "allow exits 0" "$rc" "0"
like "... and says so" "$out" "allowed late.test:$HTTP in bottle lc-a"
check "allow: lc-a reaches late.test (200) without a restart" wait_code lc-a 200
sleep 1
is "... while lc-b is still refused (its own allowlist)" "$(cat "$T/ws-lc-b/last")" "403"
check "deny exits 0" "$BB" deny lc-a "late.test:$HTTP"
check "deny: lc-a is refused again" wait_code lc-a 403
"$BB" deny lc-a "late.test:$HTTP" >/dev/null 2>"$T/err"
is "deny of a pattern not in force exits 125" "$?" "125"
like "... saying so" "$(cat "$T/err")" "no such allow pattern in force"
check "allow --for 2s exits 0" "$BB" allow lc-a "late.test:$HTTP" --for 2s
check "allow --for: reached at once" wait_code lc-a 200
t0=$(date +%s)
check "allow --for: refused again once it expired (by itself)" wait_code lc-a 403
t1=$(date +%s)
check "... about 2 s later ($((t1 - t0)) s after the first 200)" test $((t1 - t0)) -ge 1 -a $((t1 - t0)) -le 12
"$BB" allow lc-a "allowed.test:$HTTP" --for 2s >/dev/null 2>"$T/err"
is "allow --for of a pattern given at start exits 125 (its expiry would revoke it)" "$?" "125"
like "... saying it is already in force" "$(cat "$T/err")" "already in force"
check "allow --for 2s, then a plain allow of it" bash -c \
    "'$BB' allow lc-a 'late.test:$HTTP' --for 2s && '$BB' allow lc-a 'late.test:$HTTP'"
check "... reached" wait_code lc-a 200
sleep 3.5
is "... and still reached after the 2 s (the plain allow made it permanent)" \
    "$(cat "$T/ws-lc-a/last")" "200"
check "... until denied" bash -c "'$BB' deny lc-a 'late.test:$HTTP'"
check "... refused again" wait_code lc-a 403
"$BB" allow lc-a x.test --for 10x >/dev/null 2>"$T/err"
is "allow --for with a bad duration exits 125" "$?" "125"

# --- logs
out=$("$BB" logs lc-a)
like "logs: a table with a header" "$out" "TIME +KIND +HOST:PORT +DECISION +REASON"
like "logs: the refused request" "$out" "http +late.test:$HTTP +deny +not-allowlisted"
like "logs: the allowed one, with bytes" "$out" "http +late.test:$HTTP +allow +[a-z-]+ +[0-9]+/[1-9][0-9]*"
like "logs: the policy changes" "$out" "policy +late.test:$HTTP +allow +control"
like "... and the deny (the expiry too)" "$out" "policy +late.test:$HTTP +deny +control"
"$BB" logs lc-a --json >"$T/logs.json"
is "logs --json: every line is a JSON record with the documented keys" "$("$PY" - "$T/logs.json" <<'PY'
import json, sys
n = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    assert {"ts", "bottle", "kind", "host", "port", "decision", "reason", "bytes_up",
            "bytes_down", "prev"} <= set(r), r
    assert r["bottle"] == "lc-a"
    n += 1
print("ok" if n > 3 else "only %d" % n)
PY
)" "ok"
out=$("$BB" logs lc-a --denied)
unlike "logs --denied: no allowed decision" "$out" " allow "
like "... but the denied ones" "$out" "late.test:$HTTP +deny"
out=$("$BB" logs lc-a --kind policy)
like "logs --kind policy: the policy changes" "$out" "policy +late.test:$HTTP +allow"
unlike "... only them" "$out" "(http|connect|dns) +"
"$BB" logs lc-a --kind nope >/dev/null 2>&1
is "logs --kind with an unknown kind exits 125" "$?" "125"
"$BB" logs lc-a --follow >"$T/follow.out" 2>&1 &
FPID=$!; _pids+=("$FPID")
sleep 1
echo fresh.test >"$T/ws-lc-a/target"
for _ in $(seq 100); do grep -q "fresh.test" "$T/follow.out" && break; sleep 0.1; done
like "logs --follow: sees a decision made after it started" "$(cat "$T/follow.out")" \
    "http +fresh.test:$HTTP +deny"
kill -INT "$FPID"; wait "$FPID"
is "... and ends with 0 when interrupted" "$?" "0"

# --- stop
out=$("$BB" stop lc-b); rc=$?
is "stop exits 0" "$rc" "0"
like "... and reports" "$out" "stopped lc-b"
for _ in $(seq 50); do [ -s "$T/lc-b.rc" ] && break; sleep 0.1; done
is "the bottle's run ended with 143 (SIGTERM)" "$(cat "$T/lc-b.rc")" "rc=143"
check "its state is cleaned up" test ! -e "$BOT_BOTTLE_STATE_DIR/bottles/lc-b"
"$BB" stop lc-b >/dev/null 2>"$T/err"
is "stop of a bottle that is gone exits 1" "$?" "1"
is "... with the documented message" "$(cat "$T/err")" \
    "bot-bottle: error: no running bottle named 'lc-b'; 'bot-bottle ls' lists them"
out=$("$BB" ls -a)
like "ls -a: a stopped bottle whose log is there" "$out" "lc-b +- +- +stopped"
unlike "ls: without -a, not listed" "$("$BB" ls)" "lc-b"
like "logs of a stopped bottle" "$("$BB" logs lc-b)" "late.test:$HTTP +deny"
check "stop --time 1 exits 0" "$BB" stop --time 1 lc-a

# --- a bottle whose supervisor was killed: stale
mkdir -p "$T/ws-c"
(cd "$T/ws-c" && timeout 60 "$BB" run --backend namespace --name lc-c \
    --upstream-dns "127.0.0.1:$DNS" -- sh -c '
        curl -s -o /dev/null --max-time 5 "http://late.test:'"$HTTP"'/"; sleep 30' \
    >/dev/null 2>&1) &
_pids+=("$!")
for _ in $(seq 100); do
    [ -s "$BOT_BOTTLE_STATE_DIR/bottles/lc-c/info.json" ] &&
        [ -s "$BOT_BOTTLE_STATE_DIR/logs/lc-c.audit.log" ] && break
    sleep 0.1
done
spid=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' \
    "$BOT_BOTTLE_STATE_DIR/bottles/lc-c/info.json")
kill -9 "$spid"
for _ in $(seq 50); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
like "ls: a killed supervisor's bottle is stale" "$("$BB" ls)" "lc-c +namespace +[0-9.]+ +stale +-"
"$BB" stop lc-c >/dev/null 2>&1
is "stop of a stale bottle exits 1" "$?" "1"
out=$("$BB" logs lc-c --verify); rc=$?
is "verify: a log whose daemon was killed has no closing record (exit 1)" "$rc" "1"
like "... and says it may have been killed" "$out" "or the daemon was killed"
"$BB" ls -a --json >"$T/ls-a.json"
is "ls -a --json: stopped and stale bottles with null where nothing is known" \
    "$("$PY" -c 'import json,sys
d = {b["name"]: b for b in json.load(open(sys.argv[1]))["bottles"]}
b, c = d["lc-b"], d["lc-c"]
print(b["state"], b["backend"], b["pid"], b["uptime_s"], c["state"], c["backend"], c["pid"])' \
    "$T/ls-a.json")" "stopped None None None stale namespace None"

# --- unknown names
for v in "stop nosuch" "allow nosuch x.test" "deny nosuch x.test"; do
    "$BB" $v >/dev/null 2>"$T/err"
    is "$v: exits 1" "$?" "1"
    is "... naming ls" "$(cat "$T/err")" \
        "bot-bottle: error: no running bottle named 'nosuch'; 'bot-bottle ls' lists them"
done
"$BB" logs nosuch >/dev/null 2>"$T/err"
is "logs nosuch: exits 1" "$?" "1"
is "... naming ls -a" "$(cat "$T/err")" \
    "bot-bottle: error: no bottle named 'nosuch'; 'bot-bottle ls -a' lists them"

# --- the hash chain
LOG="$BOT_BOTTLE_STATE_DIR/logs/lc-a.audit.log"
out=$("$BB" logs lc-a --verify); rc=$?
is "verify: an intact log exits 0" "$rc" "0"
like "... and says so" "$out" "^intact: [0-9]+ records of bottle lc-a"
cp "$LOG" "$T/orig.log"
n=$(grep -n 'late.test' "$LOG" | sed -n 2p | cut -d: -f1)
sed -i "${n}s/late\.test/lateX.test/" "$LOG"
out=$("$BB" logs lc-a --verify); rc=$?
is "verify: an edited line exits 1" "$rc" "1"
like "... naming the first bad line (the one after the edit)" "$out" \
    "altered: $LOG line $((n + 1)): \"prev\" is not the hash of the line before"
cp "$T/orig.log" "$LOG"
sed -i "${n}d" "$LOG"
out=$("$BB" logs lc-a --verify); rc=$?
is "verify: a removed line exits 1" "$rc:$out" "1:altered: $LOG line $n: \"prev\" is not the hash of the line before (a line was changed, removed or inserted)"
cp "$T/orig.log" "$LOG"
head -n -2 "$T/orig.log" >"$LOG"
out=$("$BB" logs lc-a --verify); rc=$?
is "verify: a file cut at a line boundary exits 1" "$rc" "1"
like "... (no closing record)" "$out" "ends without the daemon's closing record"
head -c $(($(stat -c %s "$T/orig.log") - 30)) "$T/orig.log" >"$LOG"
out=$("$BB" logs lc-a --verify); rc=$?
is "verify: a file cut inside a line exits 1" "$rc" "1"
like "... (the last line is cut)" "$out" "the last line is cut"
tail -n +4 "$T/orig.log" >"$LOG"
out=$("$BB" logs lc-a --verify); rc=$?
is "verify: a file whose start was cut exits 1" "$rc:$out" "1:altered: $LOG line 1: the log does not start with a chain's first record (its start was cut)"
cp "$T/orig.log" "$LOG"
check "verify: the restored log is intact again" "$BB" logs lc-a --verify
done_testing

#!/usr/bin/env bash
# A bottle must not be able to change its own (or the next bottle's) policy through a config
# file it can write (S10: a workspace bottle.ini is used only once the user trusted its exact
# content), nor redirect the audit log; and the egress daemon holds nothing of the host it does
# not need (exec'd with an empty environment and only its own descriptors).
# Fake origin and DNS stub on the host's loopback, as in test-run.sh.
source "$(dirname "$0")/lib.sh"

need_bottles "trust tests"

HTTP=$(free_port); DNS=$(free_port)
bg "$PY" "$HELPERS/fake-upstream.py" --http "$HTTP" --dns "$DNS" --log "$T/origin.log" \
    --ready "$T/origin.ready" --zone allowed.test=127.0.0.1 --zone evil.test=127.0.0.1 \
    --zone other.test=127.0.0.1 --zone other2.test=127.0.0.1
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }

WS=$T/ws
mkdir -p "$WS"
STATE=$BOT_BOTTLE_STATE_DIR
export BB_TEST_HOST_SECRET=host-secret-value
run() {
    (cd "$WS" && timeout 60 "$BB" run --backend namespace --allow "allowed.test:$HTTP" \
        --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" "$@")
}
info() { # info BOTTLE KEY
    wait_file "$STATE/bottles/$1/info.json" &&
        "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" \
            "$STATE/bottles/$1/info.json" "$2"
}
# The egress daemon of a running bottle: info.json's daemon_pid.
daemon_of() { info "$1" daemon_pid; }
# curl through the bottle's proxy: "CODE" of a request to host:$HTTP/hello
probe='curl -s -o /dev/null -w "%{http_code}" --max-time 10'

# --- a bottle writes ./bottle.ini to widen the next bottle's policy
# First layer: bottle.ini is a protected workspace path (docs/workspace.md), read-only inside.
run -- sh -c 'echo "[egress]" >bottle.ini' 2>/dev/null
check "by default the bottle cannot write ./bottle.ini at all" test ! -s "$WS/bottle.ini"
# Second layer, tested from here on: even when the user opened it (--allow-write bottle.ini),
# what the bottle wrote is never used unless approved.
run --allow-write bottle.ini -- sh -c "cat >bottle.ini <<INI
[egress]
allow = *.com
allow = evil.test:$HTTP
allow_cidr = 0.0.0.0/0
audit = $T/hijacked-audit.log
[env]
pass = BB_TEST_HOST_SECRET
INI" 2>/dev/null
check "attack: the bottle could write ./bottle.ini in its workspace" test -s "$WS/bottle.ini"
run -- sh -c "touch started; echo env:\${BB_TEST_HOST_SECRET:-unset}; $probe http://evil.test:$HTTP/hello" \
    >"$T/out" 2>"$T/err"
rc=$?
is "untrusted bottle.ini: run exits 125" "$rc" "125"
check "... before anything started (the command never ran)" test ! -e "$WS/started"
like "... the message names the file and says it is not trusted" "$(cat "$T/err")" \
    "$WS/bottle.ini is not trusted"
like "... shows what it would set" "$(cat "$T/err")" "\+ allow_cidr = 0\.0\.0\.0/0"
like "... and the command that approves it" "$(cat "$T/err")" "bot-bottle trust $WS/bottle.ini"
unlike "... the secret it asked for went nowhere" "$(cat "$T/out")" "host-secret-value"
is "... the origin never saw a request for evil.test" "$(cat "$T/origin.log" 2>/dev/null | grep -c 'evil.test')" "0"
check "... and its audit path was not created" test ! -e "$T/hijacked-audit.log"

# --- the user approves (a reviewed) content: then it is used, and bot-bottle says so
cat >"$WS/bottle.ini" <<INI
[egress]
allow = evil.test:$HTTP
[env]
pass = BB_TEST_HOST_SECRET
INI
out=$("$BB" trust --help); like "trust --help describes the command" "$out" "Usage: bot-bottle trust"
out=$(cd "$WS" && "$BB" trust 2>&1); rc=$?
is "bot-bottle trust (default ./bottle.ini) exits 0" "$rc" "0"
like "... and names the approved file and its hash" "$out" "trusted $WS/bottle.ini \(sha256 [0-9a-f]{64}\)"
like "trust --list shows it" "$("$BB" trust --list)" "$WS/bottle.ini +[0-9a-f]{12} +trusted"
out=$(run -- sh -c "echo env:\${BB_TEST_HOST_SECRET:-unset}; $probe http://evil.test:$HTTP/hello" 2>"$T/err")
like "trusted bottle.ini: its allow is used" "$out" "200"
like "trusted bottle.ini: its [env] pass is used" "$out" "env:host-secret-value"
like "the loaded line names the file as trusted" "$(cat "$T/err")" \
    "bot-bottle: config: ([^ ]+, )?$WS/bottle.ini \(trusted\)"

# --- the bottle changes it again: refused, with what changed
run --allow-write bottle.ini -- sh -c "echo 'allow = other.test:$HTTP' >>bottle.ini; sed -i '/pass = /d' bottle.ini" 2>/dev/null
run -- sh -c "touch started2; $probe http://other.test:$HTTP/hello" >"$T/out" 2>"$T/err"; rc=$?
is "changed bottle.ini: run exits 125" "$rc" "125"
check "... before anything started" test ! -e "$WS/started2"
like "... the message says it changed" "$(cat "$T/err")" "$WS/bottle.ini changed since you approved it"
like "... shows the added line" "$(cat "$T/err")" "\+ allow = other\.test:$HTTP"
like "... and the removed one" "$(cat "$T/err")" "- pass = BB_TEST_HOST_SECRET"
like "... and how to approve it" "$(cat "$T/err")" "bot-bottle trust $WS/bottle.ini"
like "trust --list says it changed" "$("$BB" trust --list)" "$WS/bottle.ini .*changed since approved"
cp "$WS/bottle.ini" "$T/changed.ini"

# --- a project bottle.ini that is a symlink (to a host file) or a FIFO is refused, not read
rm -f "$WS/bottle.ini"
ln -s "$T/origin.ready" "$WS/bottle.ini"
run -- true 2>"$T/err"; rc=$?
is "a symlinked ./bottle.ini: refused (125)" "$rc" "125"
like "... saying why" "$(cat "$T/err")" "bottle.ini is a symbolic link"
rm -f "$WS/bottle.ini"; mkfifo "$WS/bottle.ini"
run -- true 2>"$T/err"; rc=$?
is "a FIFO as ./bottle.ini: refused at once (125), not waited on" "$rc" "125"
rm -f "$WS/bottle.ini"; cp "$T/changed.ini" "$WS/bottle.ini"

# --- revoke
"$BB" trust >/dev/null 2>&1 "$WS/bottle.ini"
out=$("$BB" trust --revoke "$WS/bottle.ini"); rc=$?
is "trust --revoke exits 0" "$rc" "0"
run -- true 2>"$T/err"; rc=$?
is "after --revoke the file is refused again" "$rc" "125"
like "... as not trusted" "$(cat "$T/err")" "is not trusted"
unlike "trust --list no longer shows it" "$("$BB" trust --list)" "$WS/bottle.ini"

# --- SIGHUP reload during a run: re-reads only the approved files and refuses a changed one
printf '[egress]\nallow = evil.test:%s\n' "$HTTP" >"$WS/bottle.ini"
"$BB" trust "$WS/bottle.ini" >/dev/null
rm -f "$WS/rewrote" "$WS/hup-done" "$WS/hup.out"
(cd "$WS" && timeout 60 "$BB" run --backend namespace --name bb-trust-hup --allow-write bottle.ini --allow "allowed.test:$HTTP" \
    --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" -- sh -c \
    "echo 'allow = other.test:$HTTP' >>bottle.ini; touch rewrote;
     i=0; while [ ! -e hup-done ] && [ \$i -lt 300 ]; do sleep 0.1; i=\$((i+1)); done;
     echo other=\$($probe http://other.test:$HTTP/hello) evil=\$($probe http://evil.test:$HTTP/hello) >hup.out" \
    >/dev/null 2>"$T/hup.err") &
SUP=$!
wait_file "$WS/rewrote"
DAEMON=$(daemon_of bb-trust-hup)
kill -HUP "$DAEMON"
for _ in $(seq 50); do grep -q 'reload' "$T/hup.err" && break; sleep 0.1; done
touch "$WS/hup-done"
wait "$SUP"
like "reload: a host allowed only by the rewritten bottle.ini still gets 403" "$(cat "$WS/hup.out" 2>/dev/null)" "other=403"
like "reload: ... while the approved policy stays in force" "$(cat "$WS/hup.out" 2>/dev/null)" "evil=200"
like "reload: the daemon says why it refused, on stderr" "$(cat "$T/hup.err")" \
    "reload: $WS/bottle.ini changed since it was approved at start"

# ... while the user's own config file (outside every bottle) is re-read on reload as before
printf '[egress]\nallow = other.test:%s\n' "$HTTP" >"$T/user.ini"
rm -f "$WS/bottle.ini" "$WS/hup-done" "$WS/hup.out" "$WS/up"
(cd "$WS" && timeout 60 "$BB" run --backend namespace --name bb-trust-hup2 -c "$T/user.ini" \
    --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" -- sh -c \
    "touch up; i=0; while [ ! -e hup-done ] && [ \$i -lt 300 ]; do sleep 0.1; i=\$((i+1)); done;
     i=0; while [ \$i -lt 100 ]; do c=\$($probe http://other2.test:$HTTP/hello); [ \$c = 200 ] && break; sleep 0.1; i=\$((i+1)); done;
     echo other2=\$c >hup.out" >/dev/null 2>"$T/hup2.err") &
SUP=$!
wait_file "$WS/up"
echo "allow = other2.test:$HTTP" >>"$T/user.ini"
kill -HUP "$(daemon_of bb-trust-hup2)"
# (the daemon runs --quiet under run: the bottle itself polls, bounded, until the reload shows)
touch "$WS/hup-done"
wait "$SUP"
like "reload (control): the user's own config outside the workspace is re-read" \
    "$(cat "$WS/hup.out" 2>/dev/null)" "other2=200"

# --- -c FILE inside the workspace needs approval too
printf '[egress]\nallow = evil.test:%s\n' "$HTTP" >"$WS/other.ini"
run -c "$WS/other.ini" -- true 2>"$T/err"; rc=$?
is "-c FILE inside the workspace: refused until trusted (125)" "$rc" "125"
like "... naming it" "$(cat "$T/err")" "$WS/other.ini is not trusted"
mkdir -p "$T/rwmount"
printf '[egress]\nallow = evil.test:%s\n' "$HTTP" >"$T/rwmount/m.ini"
run --mount "$T/rwmount:/mnt/rw" -c "$T/rwmount/m.ini" -- true 2>"$T/err"; rc=$?
is "-c FILE inside a read-write --mount: refused until trusted (125)" "$rc" "125"
run --mount "$T/rwmount:/mnt/rw:ro" -c "$T/rwmount/m.ini" -- true 2>"$T/err"; rc=$?
is "... but not inside a read-only one (the bottle cannot write it)" "$rc" "0"

# --- the trust store itself inside the workspace (e.g. the workspace is $HOME)
mkdir -p "$T/home"
printf '[egress]\nallow = evil.test:%s\n' "$HTTP" >"$T/home/bottle.ini"
out=$(XDG_CONFIG_HOME="$T/home/.config" "$BB" trust "$T/home/bottle.ini" 2>&1); rc=$?
is "trust refuses when the store lies inside the project (125)" "$rc" "125"
like "... and says why" "$out" "trust store $T/home/.config/bot-bottle/trusted lies inside $T/home"
# an approval the bottle forged there (copied from a real one) is not believed
XDG_CONFIG_HOME="$T/forge" "$BB" trust "$T/home/bottle.ini" >/dev/null
mkdir -p "$T/home/.config/bot-bottle" && cp -r "$T/forge/bot-bottle/trusted" "$T/home/.config/bot-bottle/"
(cd "$T/home" && XDG_CONFIG_HOME="$T/home/.config" timeout 60 "$BB" run --backend namespace \
    --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" -- true 2>"$T/err"); rc=$?
is "run does not believe approvals stored inside the workspace (125)" "$rc" "125"
like "... and says why" "$(cat "$T/err")" "trust store .* lies inside $T/home, which the bottle can write"

# --- the audit log: never inside the workspace, never through a symlink
run --audit "$WS/audit.log" -- touch started3 2>"$T/err"; rc=$?
is "--audit inside the workspace: refused (125)" "$rc" "125"
like "... with a clear message" "$(cat "$T/err")" "audit log $WS/audit.log lies inside $WS"
check "... nothing started" test ! -e "$WS/started3"
mkdir -p "$WS/sub"
printf '[egress]\naudit = %s\n' "$WS/sub/audit.log" >"$WS/bottle.ini"
"$BB" trust "$WS/bottle.ini" >/dev/null
run -- true 2>"$T/err"; rc=$?
is "audit = inside the workspace, from a trusted bottle.ini: refused (125)" "$rc" "125"
like "... with a clear message" "$(cat "$T/err")" "audit log $WS/sub/audit.log lies inside $WS"
rm -f "$WS/bottle.ini"
ln -s "$T/victim" "$WS/audit-link"
run --audit "$WS/audit-link" -- true 2>"$T/err"; rc=$?
is "--audit through a symlink in the workspace (pointing outside): refused (125)" "$rc" "125"
echo "precious" >"$T/victim"
ln -s "$T/victim" "$T/audit-link"
run --audit "$T/audit-link" -- curl -s --max-time 5 "http://evil.test:$HTTP/" 2>"$T/err"; rc=$?
is "--audit naming a symlink (outside the workspace): refused (125)" "$rc" "125"
like "... saying it is a symbolic link" "$(cat "$T/err")" "symbolic link"
is "... and the file it points to is untouched" "$(cat "$T/victim")" "precious"

# --- the egress daemon: exec'd with an empty environment and only its own descriptors
out=$("$BB" egress --help)
like "egress --help documents --ready-fd and --handoff-fd for the supervisor" "$out" \
    "For the supervisor.*--ready-fd FD.*--handoff-fd FD"
rm -f "$WS/up" "$WS/go"
(cd "$WS" && HOST_SECRET=supervisor-env-secret timeout 60 "$BB" run --backend namespace \
    --name bb-trust-env --allow "allowed.test:$HTTP" --allow-cidr 127.0.0.1/32 \
    --upstream-dns "127.0.0.1:$DNS" -- sh -c \
    "$probe http://allowed.test:$HTTP/hello >/dev/null; touch up; i=0; while [ ! -e go ] && [ \$i -lt 300 ]; do sleep 0.1; i=\$((i+1)); done" \
    >/dev/null 2>"$T/env.err") &
SUP=$!
wait_file "$WS/up"
DAEMON=$(daemon_of bb-trust-env)
SUPPID=$(info bb-trust-env pid)
is "info.json records the daemon's pid" "$(info bb-trust-env daemon_pid 2>/dev/null)" "$DAEMON"
check "the daemon is alive" test -n "$DAEMON" -a -d "/proc/$DAEMON"
check "control: the supervisor itself has HOST_SECRET" grep -qa supervisor-env-secret "/proc/$SUPPID/environ"
is "the daemon's environment is empty" "$(wc -c <"/proc/$DAEMON/environ")" "0"
unlike "... it does not have HOST_SECRET" "$(tr '\0' '\n' <"/proc/$DAEMON/environ")" "supervisor-env-secret"
is "the daemon was started by exec (its own argv: bot-bottle egress ...)" \
    "$(tr '\0' ' ' <"/proc/$DAEMON/cmdline" | cut -d' ' -f2)" "egress"
fds=$(for f in /proc/"$DAEMON"/fd/*; do echo "$(basename "$f") $(readlink "$f")"; done)
diag "$fds"
is "daemon fd 0 is /dev/null" "$(awk '$1==0 {print $2}' <<<"$fds")" "/dev/null"
is "daemon fd 1 is /dev/null" "$(awk '$1==1 {print $2}' <<<"$fds")" "/dev/null"
is "daemon fd 2 is the supervisor's stderr" "$(awk '$1==2 {print $2}' <<<"$fds")" "$T/env.err"
like "daemon fd 4 is the hand-off socket" "$(awk '$1==4 {print $2}' <<<"$fds")" "^socket:"
audit_log=$(info bb-trust-env audit)
is "every other daemon fd is its own (sockets, epoll/signal/timer fds, its audit log, /dev/null)" \
    "$(awk '$1>2 {print $2}' <<<"$fds" | grep -vE "^(socket:\[[0-9]+\]|anon_inode:\[(eventpoll|signalfd|timerfd)\]|/dev/null|$audit_log)$")" ""
unlike "... nothing of the supervisor's (state dir lock, workspace, binary, pidfd, pipes)" \
    "$(awk '{print $2}' <<<"$fds")" "lock|$WS|bot-bottle$|pidfd|pipe:"
touch "$WS/go"
wait "$SUP"
done_testing

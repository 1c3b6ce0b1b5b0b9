#!/usr/bin/env bash
# Credentials (docs/credentials.md): the real secret stays on the host. The bottle gets a
# placeholder; the proxy swaps in the real value only in the credential's own header of
# requests to its own host and port, refuses the placeholder anywhere else (403
# credential-misuse, audited), the value never reaches the audit log, stderr or disk, and a
# daemon holding credentials has no TCP port a host process could use.
# Fake origin and DNS stub on the host's loopback, as in test-run.sh.
source "$(dirname "$0")/lib.sh"

need_bottles "credential tests"

HTTP=$(free_port); DNS=$(free_port)
bg "$PY" "$HELPERS/fake-upstream.py" --http "$HTTP" --dns "$DNS" --log "$T/origin.log" --log-headers \
    --ready "$T/origin.ready" --zone api.test=127.0.0.1 --zone other.test=127.0.0.1
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }

WS=$T/ws
mkdir -p "$WS"
STATE=$BOT_BOTTLE_STATE_DIR
REAL=sk-REAL-4d1f8a7c-value
export BB_TEST_API_KEY=$REAL
run() { # run BACKEND ARGS... -- CMD
    local backend=$1
    shift
    (cd "$WS" && timeout 120 "$BB" run --backend "$backend" --allow "api.test:$HTTP" \
        --allow "other.test:$HTTP" --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" \
        --credential "api:api.test:$HTTP:x-api-key:env:BB_TEST_API_KEY" "$@")
}
curl_='curl -s --max-time 20'
# the header fields the origin received with the requests whose path contains $1
got() { awk -v p="$1" '/^http / { f = index($0, p) > 0; next } f' "$T/origin.log"; }

# --- the swap, and where the placeholder may not go (namespace backend, -v: all of stderr)
cat >"$WS/inside.sh" <<EOF
echo "env=\$BB_TEST_API_KEY"
echo "swap: \$($curl_ -o /dev/null -w '%{http_code}' -H "X-Api-Key: \$BB_TEST_API_KEY" http://api.test:$HTTP/swap)"
# an origin that echoes the request (/headers) would hand the real value to the bottle
echo "reflect: \$($curl_ -H "X-Api-Key: \$BB_TEST_API_KEY" http://api.test:$HTTP/headers; echo " rc=\$?")"
code() { $curl_ -o /dev/null -w '%{http_code} %header{x-bottle-block}' "\$@"; echo; }
echo "other-host: \$(code -H "X-Api-Key: \$BB_TEST_API_KEY" http://other.test:$HTTP/headers)"
echo "url: \$(code "http://api.test:$HTTP/headers?key=\$BB_TEST_API_KEY")"
echo "other-header: \$(code -H "X-Other: \$BB_TEST_API_KEY" http://api.test:$HTTP/headers)"
echo "second-header: \$(code -H "X-Api-Key: \$BB_TEST_API_KEY" -H "x-api-key: \$BB_TEST_API_KEY" http://api.test:$HTTP/headers)"
echo "body: \$(code -H "X-Api-Key: \$BB_TEST_API_KEY" --data-binary "{\"k\":\"\$BB_TEST_API_KEY\"}" http://api.test:$HTTP/echo)"
# a body whose placeholder straddles the proxy's 64 KiB read, and a chunked one
$PY -c 'import os,sys; sys.stdout.write("a"*65520 + os.environ["BB_TEST_API_KEY"] + "b"*70000)' >/tmp/big
echo "big-body: \$(code --data-binary @/tmp/big http://api.test:$HTTP/echo)"
echo "chunked-body: \$(code -H 'Transfer-Encoding: chunked' --data-binary @/tmp/big http://api.test:$HTTP/echo)"
echo "clean-body: \$($curl_ -H "X-Api-Key: \$BB_TEST_API_KEY" --data-binary 'no secret here' http://api.test:$HTTP/echo)"
echo "wrong-port: \$(code -H "X-Api-Key: \$BB_TEST_API_KEY" http://api.test:80/headers)"
echo "files: \$(grep -rlsF -- "\$(echo "\$BB_B64" | base64 -d)" /etc /tmp "\$HOME" /proc/[0-9]*/environ 2>/dev/null | head -3)"
EOF
# (the script looks for the real value it gets base64-encoded: its own text must not hold it)
out=$(run namespace -v -e "BB_B64=$(printf %s "$REAL" | base64)" -- sh "$WS/inside.sh" 2>"$T/err1")
rc=$?
rm -f "$WS/inside.sh"
is "a bottle with a credential runs (exit 0)" "$rc" "0"
like "the bottle's variable holds a placeholder" "$out" "env=bb-cred-api-[0-9a-f]{32}"
unlike "... never the real value" "$(grep '^env=' <<<"$out")" "$REAL"
like "a request with the placeholder in the credential's header goes out" "$out" "swap: 404"
like "... and the origin gets the real value in that header" "$(got /swap)" "X-Api-Key: $REAL"
like "an origin reflecting the value: the connection is cut, the bottle gets nothing" "$out" \
    "reflect: *rc=(18|52|56)"
unlike "... (no value in what the bottle read)" "$(grep '^reflect:' <<<"$out")" "$REAL"
like "the placeholder to another allowed host: 403 credential-misuse" "$out" "other-host: 403 credential-misuse"
like "... in the URL: 403 credential-misuse" "$out" "url: 403 credential-misuse"
like "... in another header: 403 credential-misuse" "$out" "other-header: 403 credential-misuse"
like "... in a second header: 403 credential-misuse" "$out" "second-header: 403 credential-misuse"
like "... in the body: 403 credential-misuse" "$out" "body: 403 credential-misuse"
like "... across the 64 KiB read boundary of a body: 403" "$out" "big-body: 403 credential-misuse"
like "... in a chunked body: 403" "$out" "chunked-body: 403 credential-misuse"
like "a body without it passes" "$out" "clean-body: no secret here"
like "... to the credential's host on another port: 403" "$out" "wrong-port: 403 credential-misuse"
is "no file or environment in the bottle holds the real value" "$(grep '^files:' <<<"$out")" "files: "
is "the origin never saw a refused request (one GET /headers: the reflecting one)" \
    "$(grep -c 'http GET api.test:[0-9]* /headers' "$T/origin.log")" "1"
unlike "... nor any request for other.test" "$(cat "$T/origin.log")" "other.test"
audit=$(ls "$STATE"/logs/*.audit.log | head -1)
like "the refusals are audited as credential-misuse" "$(cat "$audit")" \
    '"host":"other.test".*"decision":"deny","reason":"credential-misuse"'
is "... every one of them (8 refusals)" \
    "$("$PY" -c 'import json,sys
n=0
for l in open(sys.argv[1]):
    r=json.loads(l)
    if r.get("reason")=="credential-misuse": n+=r.get("count",1)
print(n)' "$audit")" "8"
like "the reflection is audited" "$(cat "$audit")" '"host":"api.test".*"reason":"credential-reflected"'
unlike "the real value is not in the audit log" "$(cat "$STATE"/logs/*)" "$REAL"
unlike "... nor on run's stderr (-v)" "$(cat "$T/err1")" "$REAL"
is "... nor anywhere in the state directory" "$(grep -rlF -- "$REAL" "$STATE" | wc -l)" "0"

# --- credentials from the user's config file: command: and file: sources, env =
printf 'file-secret-value\n' >"$T/token"
cat >"$T/config.ini" <<EOF
[credential "npm"]
host = api.test
port = $HTTP
header = authorization
value = command:printf 'cmd-secret-%s' 42
env = NPM_TOKEN
[credential "gh"]
host = other.test
port = $HTTP
header = authorization
value = file:$T/token
env = GH_TOKEN
EOF
out=$(run namespace -c "$T/config.ini" -- sh -c "
    $curl_ -o /dev/null -H \"Authorization: Bearer \$NPM_TOKEN\" http://api.test:$HTTP/npm-swap
    $curl_ -o /dev/null -H \"Authorization: token \$GH_TOKEN\" http://other.test:$HTTP/gh-swap
    echo npm=\$NPM_TOKEN" 2>"$T/err2")
like "command: source, Bearer prefix kept" "$(got /npm-swap)" "Authorization: Bearer cmd-secret-42"
like "file: source (trailing newline dropped), to its own host" "$(got /gh-swap)" \
    "Authorization: token file-secret-value"
like "env = names the bottle's variable" "$out" "npm=bb-cred-npm-[0-9a-f]{32}"
unlike "neither value on stderr" "$(cat "$T/err2")" "cmd-secret|file-secret"

# --- a failing source stops the run before anything starts
out=$(cd "$WS" && "$BB" run --backend namespace \
    --credential "x:api.test:x-api-key:env:BB_TEST_UNSET_VAR" -- touch "$WS/started" 2>&1)
rc=$?
is "an unset env: source: run exits 125" "$rc" "125"
like "... saying which variable" "$out" "BB_TEST_UNSET_VAR is not set"
check "... before the command ran" test ! -e "$WS/started"
out=$(cd "$WS" && "$BB" run --backend namespace --credential "x:api.test:host:env:BB_TEST_API_KEY" \
    -- true 2>&1)
like "a framing header (Host) is refused" "$out" "header: expected"

# --- a project file (a bottle can write it) never defines a credential, even approved
cat >"$WS/bottle.ini" <<EOF
[credential "steal"]
host = other.test
header = x-api-key
value = file:/etc/shadow
EOF
(cd "$WS" && "$BB" trust >/dev/null 2>&1)
out=$(cd "$WS" && "$BB" run --backend namespace -- touch "$WS/started" 2>&1)
rc=$?
is "an approved bottle.ini with [credential]: run exits 125" "$rc" "125"
like "... saying credentials come only from the user's own config" "$out" "defines \[credential\] sections"
check "... before the command ran" test ! -e "$WS/started"
rm -f "$WS/bottle.ini"

# --- only the bottle reaches a credential-bearing daemon: nothing on A:3128 for host processes
(cd "$WS" && timeout 120 "$BB" run --backend namespace --name credbottle --allow "api.test:$HTTP" \
    --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" \
    --credential "api:api.test:$HTTP:x-api-key:env:BB_TEST_API_KEY" -- \
    sh -c "touch $WS/up; while [ ! -e $WS/done ]; do sleep 0.1; done" >"$T/bg.out" 2>&1) &
BOTTLE=$!
_pids+=("$BOTTLE")
wait_file "$STATE/bottles/credbottle/info.json"
for _ in $(seq 200); do [ -e "$WS/up" ] && break; sleep 0.05; done
info() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" \
    "$STATE/bottles/credbottle/info.json" "$1"; }
A=$(info alias)
DPID=$(info daemon_pid)
like "the bottle has an alias" "$A" "^127\.77\."
curl -s --max-time 5 --proxy "http://$A:3128" -H "X-Api-Key: whatever" \
    "http://api.test:$HTTP/headers" >"$T/host-probe" 2>&1
rc=$?
is "a host process connecting to A:3128 is refused (curl: couldn't connect, 7)" "$rc" "7"
unlike "... and gets nothing" "$(cat "$T/host-probe")" "$REAL|x-api-key"
is "the daemon listens on no TCP port but DNS (53 or 5353)" "$(ss -Hltnp | grep "pid=$DPID," | grep -vcE ":(53|5353) ")" "0"
like "the daemon runs with no core dump (RLIMIT_CORE 0)" "$(grep 'Max core file size' /proc/$DPID/limits)" \
    "Max core file size +0 +0"
like "... and keeps the values in memory excluded from dumps (MADV_DONTDUMP)" \
    "$(grep VmFlags /proc/$DPID/smaps)" " dd( |$)"
unlike "... its argv and environment do not hold the value" \
    "$(tr '\0' ' ' </proc/$DPID/cmdline; tr '\0' ' ' </proc/$DPID/environ)" "$REAL"
touch "$WS/done"
wait "$BOTTLE"
is "the bottle exits 0" "$?" "0"

# --- microVM backend: the channel's proxy streams reach the daemon through the supervisor's
# relay socket (no TCP port either)
out=$(run microvm -- sh -c "$curl_ -o /dev/null -H \"X-Api-Key: \$BB_TEST_API_KEY\" http://api.test:$HTTP/swap-vm; $curl_ -o /dev/null -w '%{http_code}\n' -H \"X-Api-Key: \$BB_TEST_API_KEY\" http://other.test:$HTTP/headers" 2>"$T/err3")
like "microvm: the origin gets the real value" "$(got /swap-vm)" "X-Api-Key: $REAL"
like "microvm: the placeholder to another host is refused" "$out" "403"
unlike "microvm: nothing on stderr holds the value" "$(cat "$T/err3")" "$REAL"

done_testing

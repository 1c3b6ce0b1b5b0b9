#!/usr/bin/env bash
# Held requests (--hold-blocked, issue 11): a request or CONNECT refused only because its host is
# not allowlisted waits instead of getting 403 at once; `ls` counts it as pending and the audit
# log has a "hold" record; a `bot-bottle allow` in that window lets it through without the
# client retrying; otherwise it gets the usual 403 when the time is up. Off by default.
# Namespace backend; fake origin (HTTP and HTTPS) and DNS on the host's loopback.
source "$(dirname "$0")/lib.sh"

need_bottles "held-request tests"

HTTP=$(free_port); HTTPS=$(free_port); DNS=$(free_port)
make_cert held.test
bg "$PY" "$HELPERS/fake-upstream.py" --http "$HTTP" --https "$HTTPS" --cert "$T/cert.pem" \
    --key "$T/key.pem" --dns "$DNS" --log "$T/origin.log" --ready "$T/origin.ready" \
    --zone held.test=127.0.0.1 --zone late.test=127.0.0.1 --zone never.test=127.0.0.1
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }
mkdir -p "$T/ws"
cp "$T/cert.pem" "$T/ws/cert.pem"
cd "$T/ws" || exit 1
S=$BOT_BOTTLE_STATE_DIR

# run_bottle NAME HOLD SCRIPT: a bottle in the background; its stdout in $T/NAME.out
run_bottle() {
    timeout 120 "$BB" run --backend namespace --name "$1" --hold-blocked "$2" \
        --allow "other.test" --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" \
        -- sh -c "$3" >"$T/$1.out" 2>"$T/$1.err" &
    _pids+=("$!")
    eval "PID_$(tr - _ <<<"$1")=$!"
}
pending() { "$BB" ls --json | "$PY" -c "
import json, sys
b = [x for x in json.load(sys.stdin)['bottles'] if x['name'] == '$1']
print(b[0]['pending'] if b else 'none')"; }

# 1. plain HTTP, held, then allowed: goes through on the same request
run_bottle h1 60 "curl -s -w ' %{http_code}' --max-time 60 http://held.test:$HTTP/hello"
wait_grep '"decision":"hold"' "$S/logs/h1.audit.log" ||
    diag "$(cat "$T/h1.err")"
like "a request to a host that is not allowlisted is held and audited as 'hold'" \
    "$(grep '"decision":"hold"' "$S/logs/h1.audit.log")" '"host":"held.test".*"reason":"pending"'
is "... ls counts it as pending" "$(pending h1)" "1"
is "... the origin has not seen it" "$(grep -c 'held.test' "$T/origin.log" 2>/dev/null || echo 0)" "0"
t0=$(date +%s)
"$BB" allow h1 "held.test:$HTTP" >/dev/null
wait "$PID_h1"
is "... an allow lets the same request through (no retry)" "$(cat "$T/h1.out")" \
    $'hello from fake upstream\n 200'
check "... well before the hold would have ended" test $(($(date +%s) - t0)) -lt 30
like "... and the notice said how to let it through" "$(cat "$T/h1.err")" \
    "holding a request to held.test port $HTTP \\(not in the allowlist\\); to let it through, run: bot-bottle allow h1 held.test:$HTTP"

# 2. CONNECT, held, then allowed: the tunnel opens
run_bottle h2 60 "curl -s --cacert cert.pem -w ' %{http_code}' --max-time 60 https://held.test:$HTTPS/hello"
wait_grep '"decision":"hold"' "$S/logs/h2.audit.log"
like "a CONNECT is held too" "$(grep '"decision":"hold"' "$S/logs/h2.audit.log")" '"kind":"connect"'
"$BB" allow h2 "held.test:$HTTPS" >/dev/null
wait "$PID_h2"
is "... and an allow opens the tunnel" "$(cat "$T/h2.out")" $'hello from fake upstream\n 200'

# 3. nobody allows it: the usual 403 once the hold is over; an allowlisted host is not held
run_bottle h3 1 "curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 30 http://never.test:$HTTP/ ; echo;
    curl -s -o /dev/null -w '%{http_code}' --max-time 30 http://127.0.0.1:$HTTP/hello"
wait "$PID_h3"
out=$(cat "$T/h3.out")
like "a hold that nobody answers ends in 403" "$out" "^403 "
check "... after the hold time (1 s)" "$PY" -c "import sys; sys.exit(0 if float('${out%%$'\n'*}'.split()[1]) >= 0.9 else 1)"
like "... an allowlisted target is never held" "$out" $'\n200$'
is "... and the hold was recorded, then the refusal" \
    "$(grep -o '"host":"never.test"[^}]*"decision":"[a-z]*"' "$S/logs/h3.audit.log" | grep -o 'decision":"[a-z]*' | tr '\n' ' ')" \
    'decision":"hold decision":"deny '
is "... nothing pending for a stopped bottle" "$(pending h3)" "none"

# 4. off by default: 403 at once
timeout 60 "$BB" run --backend namespace --name h4 --upstream-dns "127.0.0.1:$DNS" \
    -- curl -s -o /dev/null -w '%{http_code}' --max-time 30 "http://held.test:$HTTP/" >"$T/h4.out" 2>/dev/null
is "without --hold-blocked a request is refused at once" "$(cat "$T/h4.out")" "403"
check "... with no hold record" test "$(grep -c '"decision":"hold"' "$S/logs/h4.audit.log")" = 0

# 5. the option and the config key are validated
"$BB" run --backend namespace --hold-blocked 99999 -- true 2>"$T/bad.err"
is "--hold-blocked beyond 3600 s exits 125" "$?" "125"
like "... and says the range" "$(cat "$T/bad.err")" "expected a number of seconds from 0 to 3600"
printf '[egress]\nhold_blocked = soon\n' >"$T/bad.ini"
"$BB" policy check -c "$T/bad.ini" example.com >/dev/null 2>"$T/bad2.err"
like "a bad hold_blocked in a config file names file:line" "$(cat "$T/bad2.err")" "bad.ini:2: hold_blocked"
done_testing

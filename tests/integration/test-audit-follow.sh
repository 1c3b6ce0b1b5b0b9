#!/usr/bin/env bash
# `bot-bottle run` shows each blocked host once on stderr by following the bottle's audit log.
# The log is rotated (NAME.audit.log -> NAME.audit.log.1, then the daemon reopens the name):
# hosts blocked after the rotation must still be reported.
source "$(dirname "$0")/lib.sh"

need_bottles "audit follow"
HTTP=$(free_port); DNS=$(free_port)
bg python3 "$HELPERS/fake-upstream.py" --http "$HTTP" --dns "$DNS" --log "$T/origin.log" \
    --ready "$T/origin.ready" --zone allowed.test=127.0.0.1 --zone one.test=127.0.0.1 \
    --zone two.test=127.0.0.1
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }
STATE=$BOT_BOTTLE_STATE_DIR
mkdir -p "$T/ws"
(cd "$T/ws" && timeout 60 "$BB" run --backend namespace --name bb-test-follow \
    --allow "allowed.test:$HTTP" --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" -- \
    sh -c 'curl -s -o /dev/null --max-time 5 http://one.test:'"$HTTP"'/; echo 1 >step1
           while [ ! -e go ]; do sleep 0.1; done
           curl -s -o /dev/null --max-time 5 http://two.test:'"$HTTP"'/; sleep 1; echo done >step2' \
    >"$T/run.out" 2>"$T/run.err") &
SUP=$!
wait_file "$T/ws/step1" || { echo "Bail out! the bottle did not start: $(cat "$T/run.err")"; exit 1; }
for _ in $(seq 40); do grep -q "blocked one.test" "$T/run.err" && break; sleep 0.1; done
like "before rotation: the blocked host is reported" "$(cat "$T/run.err")" "blocked one.test"

LOG="$STATE/logs/bb-test-follow.audit.log"
DAEMON=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['daemon_pid'])" \
    "$STATE/bottles/bb-test-follow/info.json")
mv "$LOG" "$LOG.1"
kill -HUP "$DAEMON" # the daemon reopens the name: a new, empty NAME.audit.log
for _ in $(seq 40); do [ -e "$LOG" ] && break; sleep 0.05; done
check "the daemon started a new log file" test -e "$LOG"
touch "$T/ws/go"
wait_file "$T/ws/step2"
wait "$SUP"
like "after rotation: a host blocked then is still reported" "$(cat "$T/run.err")" "blocked two.test"
like "... and it is in the new log file" "$(cat "$LOG")" '"host":"two.test"'
done_testing

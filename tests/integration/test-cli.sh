#!/usr/bin/env bash
# The command-line contract: --help everywhere, version, exit codes, config errors naming
# file:line.
source "$(dirname "$0")/lib.sh"
plan 12

check "bot-bottle --help exits 0" "$BB" --help
check "version prints the version" bash -c "'$BB' version | grep -qE '^bot-bottle [0-9]+\.[0-9]+'"
for v in egress policy version run trust; do
    check "bot-bottle $v --help exits 0 and shows usage" bash -c "'$BB' $v --help | grep -q Usage"
done
"$BB" frobnicate >/dev/null 2>&1
is "an unknown command exits 125" "$?" "125"
"$BB" egress --no-such-option >/dev/null 2>&1
is "an unknown option exits 125" "$?" "125"
"$BB" egress --allow example.com >/dev/null 2>"$T/err"
is "egress without --listen exits 125" "$?" "125"
like "... and says what is missing" "$(cat "$T/err")" "--listen"
printf '[egress]\nallow = example.com\nallow = exa mple.com\n' >"$T/bad.ini"
"$BB" policy check -c "$T/bad.ini" example.com >/dev/null 2>"$T/err"
is "a bad config value exits 125" "$?" "125"
like "... and the error names file:line" "$(cat "$T/err")" "bad.ini:3: "
P=$(free_port)
python3 -c "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',$P)); s.listen(); time.sleep(30)" &
_pids+=($!)
wait_port "$P"
timeout 10 "$BB" egress --listen "127.0.0.1:$P" --allow example.com >/dev/null 2>"$T/err"
like "a busy listen address is a clear error" "$(cat "$T/err")" "cannot listen on 127.0.0.1:$P: Address already in use"
done_testing

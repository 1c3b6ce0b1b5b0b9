#!/usr/bin/env bash
# The command-line contract: --help everywhere, version, exit codes, config errors naming
# file:line.
source "$(dirname "$0")/lib.sh"

check "bot-bottle --help exits 0" "$BB" --help
check "version prints the version" bash -c "'$BB' version | grep -qE '^bot-bottle [0-9]+\.[0-9]+'"
for v in egress policy version run start exec attach rm trust ls stop allow deny logs doctor; do
    check "bot-bottle $v --help exits 0 and shows usage" bash -c "'$BB' $v --help | grep -q Usage"
done
"$BB" frobnicate >/dev/null 2>&1
is "an unknown command exits 125" "$?" "125"
"$BB" egress --no-such-option >/dev/null 2>&1
is "an unknown option exits 125" "$?" "125"
"$BB" egress --allow example.com >/dev/null 2>"$T/err"
is "egress without --listen exits 125" "$?" "125"
like "... and says what is missing" "$(cat "$T/err")" "--listen"
# the verbs share one option loop (src/cli/args.c cli_getopt): same refusal, naming the verb
for v in run start exec egress "policy check"; do
    "$BB" $v --no-such-option >/dev/null 2>"$T/err"
    is "$v: an unknown option exits 125" "$?" "125"
    is "... saying so, then how to get help" "$(cat "$T/err")" \
        "bot-bottle: unrecognized option '--no-such-option'
Try 'bot-bottle $v --help'."
done
"$BB" run --allow 'bad!pattern' -- true >/dev/null 2>"$T/err"
is "run: a bad policy option exits 125 with one line" "$?:$(cat "$T/err")" \
    "125:bot-bottle: error: 'bad!pattern': character not allowed in a host"
"$BB" run --backend no-such-backend -- true 2>"$T/err"
is "run: an unknown backend exits 125" "$?" "125"
is "... naming the backends this build has (backend_list) and auto" "$(cat "$T/err")" \
    "bot-bottle: error: unknown backend 'no-such-backend' (known: microvm, namespace, smolmachines, docker, auto)"
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
like "egress --help says where audit records go by default" "$("$BB" egress --help)" \
    "go to standard output unless --audit FILE"
P=$(free_port)
bg "$BB" egress --no-default-config --listen "127.0.0.1:$P" --allow example.com \
    --upstream-dns 127.0.0.1:1 --audit /dev/null 2>"$T/egress.err"
wait_port "$P"
r=$(curl -s --max-time 10 -x "http://127.0.0.1:$P" http://evil.test/ 2>/dev/null)
is "a 403 from a command-line policy names only the option" "$r" \
    "blocked by bot-bottle: evil.test is not in the allowlist; add it with --allow evil.test"
done_testing

#!/usr/bin/env bash
# The egress daemon resolves exactly the name that was asked: the host's resolv.conf search
# list and ndots never add a domain the bottle did not choose (a bottle-chosen label plus the
# host's search domain must not reach the host's resolver). The daemon runs in a private mount
# namespace where /etc/resolv.conf is a test file with `search corp.test` and `options ndots:5`;
# the fake upstream's DNS logs every name it is asked.
source "$(dirname "$0")/lib.sh"

if ! unshare -m true 2>/dev/null; then
    skip "resolv.conf search list is not applied" "unshare -m is not permitted here (needs root)"
    done_testing
fi

HTTP=$(free_port); DNS=$(free_port); PX=$(free_port); DF=$(free_port)
bg python3 "$HELPERS/fake-upstream.py" --http "$HTTP" --dns "$DNS" --log "$T/origin.log" \
    --ready "$T/origin.ready" --zone allowedname=127.0.0.1 \
    --zone allowedname.corp.test=127.0.0.1 --zone a.wild.corp.test=127.0.0.1
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }

cat >"$T/resolv.conf" <<CONF
nameserver 127.0.0.1
search corp.test
options ndots:5
CONF
cat >"$T/bottle.ini" <<INI
[egress]
allow = allowedname:$HTTP
allow = allowedname
allow = *.wild:$HTTP
allow = *.wild
allow_cidr = 127.0.0.1/32
upstream_dns = 127.0.0.1:$DNS
INI
# The mount stays inside the daemon's own mount namespace: nothing leaks to the host.
bg unshare -m --propagation private sh -c 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' \
    sh "$T/resolv.conf" "$BB" egress -c "$T/bottle.ini" --listen "127.0.0.1:$PX" \
    --dns "127.0.0.1:$DF" --audit "$T/audit.log" --name t-nosearch 2>"$T/egress.err"
wait_port "$PX" || { echo "Bail out! egress did not start: $(cat "$T/egress.err")"; exit 1; }
is "the host's /etc/resolv.conf is untouched" "$(grep -c corp.test /etc/resolv.conf)" "0"

code=$(curl -s --max-time 10 -x "http://127.0.0.1:$PX" -o /dev/null -w '%{http_code}' \
    "http://allowedname:$HTTP/hello")
is "a single-label allowlisted name works through the proxy" "$code" "200"
like "the proxy's resolver asked for allowedname itself" "$(cat "$T/origin.log")" "dns allowedname "
unlike "... and never for allowedname.corp.test (no search list)" "$(cat "$T/origin.log")" "corp\.test"

code=$(curl -s --max-time 10 -x "http://127.0.0.1:$PX" -o /dev/null -w '%{http_code}' \
    "http://a.wild:$HTTP/hello")
is "a name with a dot but fewer than ndots:5 does not resolve via the search list" "$code" "502"
unlike "... no a.wild.corp.test query went upstream" "$(cat "$T/origin.log")" "a\.wild\.corp\.test"

before=$(wc -l <"$T/origin.log")
r=$(python3 "$HELPERS/dns-stub.py" query --server "127.0.0.1:$DF" allowedname A)
like "the DNS filter forwards a single-label allowlisted name" "$r" "rcode=NOERROR"
new=$(tail -n +"$((before + 1))" "$T/origin.log")
like "... the upstream was asked for allowedname" "$new" "dns allowedname "
unlike "... and for nothing with a search domain appended" "$new" "corp\.test"
done_testing

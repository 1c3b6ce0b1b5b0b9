#!/usr/bin/env bash
# Method/path rules and data-loss checks end to end (docs/policy.md, docs/dlp.md): the real
# egress daemon against a fake origin and a DNS stub on loopback, and one bottle run with
# --backend namespace. A refusal is a 403 with X-Bottle-Block from the proxy, audited, and the
# origin never sees the request (or, for a body, never sees it complete).
source "$(dirname "$0")/lib.sh"

HTTP=$(free_port); DNS=$(free_port); PX=$(free_port); PX2=$(free_port); PXDNS=$(free_port)
SINK=$(free_port)
# A raw origin that records every byte it receives (to see what left before a refusal).
cat >"$T/sink.py" <<'PY'
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
open(sys.argv[3], "w").write("ready\n")
def serve(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        with open(sys.argv[2], "ab") as f:
            f.write(d)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
bg "$PY" "$T/sink.py" "$SINK" "$T/sink.bin" "$T/sink.ready"
wait_file "$T/sink.ready" || { echo "Bail out! sink did not start"; exit 1; }
bg "$PY" "$HELPERS/fake-upstream.py" --http "$HTTP" --dns "$DNS" --log "$T/origin.log" \
    --ready "$T/origin.ready" --zone allowed.test=127.0.0.1 --zone rules.test=127.0.0.1 \
    --zone sink.test=127.0.0.1 \
    --zone a.wild.test=127.0.0.1 --zone mzxw6ytboi4dsnrtgq2tmnzyhe3dmzrs.wild.test=127.0.0.1
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }

cat >"$T/bottle.ini" <<INI
[egress]
allow = allowed.test:$HTTP
allow = sink.test:$SINK
allow = *.wild.test:$HTTP
allow = *.wild.test
allow = rules.test:$HTTP GET,HEAD /repos/myorg/*
allow = rules.test:$HTTP POST /echo
allow_cidr = 127.0.0.1/32
upstream_dns = 127.0.0.1:$DNS
INI
bg "$BB" egress -c "$T/bottle.ini" --listen "127.0.0.1:$PX" --dns "127.0.0.1:$PXDNS" \
    --audit "$T/audit.log" --name t-dlp 2>"$T/egress.err"
wait_port "$PX" || { echo "Bail out! egress did not start: $(cat "$T/egress.err")"; exit 1; }
proxy="http://127.0.0.1:$PX"

# curl through the proxy; prints "CODE|X-Bottle-Block|body"
fetch() {
    local px=$1
    shift
    curl -s --max-time 10 -x "$px" -D "$T/h" -o "$T/b" -w '%{http_code}' "$@" >"$T/code" 2>/dev/null
    printf '%s|%s|%s' "$(cat "$T/code")" \
        "$(grep -i '^x-bottle-block:' "$T/h" | tail -1 | cut -d' ' -f2 | tr -d '\r')" \
        "$(head -c 400 "$T/b")"
}
origin_saw() { grep -c -- "$1" "$T/origin.log" 2>/dev/null || true; }

# ---- method/path rules on plain HTTP
R="http://rules.test:$HTTP"
r=$(fetch "$proxy" "$R/repos/myorg/x")
like "a GET the rule allows reaches the origin" "$r" "^404\|\|not found"
is "... the origin saw it" "$(origin_saw "GET rules.test:$HTTP /repos/myorg/x")" 1
r=$(fetch "$proxy" -I "$R/repos/myorg/y")
like "HEAD is allowed too" "$r" "^404\|\|"
r=$(fetch "$proxy" "$R/repos/myorg/x?next=/repos/other/y")
like "the query is not part of the match" "$r" "^404\|\|"
r=$(fetch "$proxy" -X DELETE "$R/repos/myorg/x")
like "DELETE on an allowed path: 403 method-not-allowed" "$r" "^403\|method-not-allowed\|"
like "... the body names the rule" "$r" "rules.test:$HTTP GET,HEAD /repos/myorg/\*"
r=$(fetch "$proxy" "$R/repos/other/x")
like "a path outside the rules: 403 path-not-allowed" "$r" "^403\|path-not-allowed\|"
r=$(fetch "$proxy" --path-as-is "$R/repos/myorg/../other/x")
like "a dot segment: 403 path-not-allowed" "$r" "^403\|path-not-allowed\|.*dot segment"
r=$(fetch "$proxy" --path-as-is "$R/repos/myorg/%2e%2e/other/x")
like "an encoded dot segment: 403" "$r" "^403\|path-not-allowed\|"
r=$(fetch "$proxy" --path-as-is "$R/repos/myorg/..%2Fother")
like "an encoded slash: 403" "$r" "^403\|path-not-allowed\|.*encoded"
r=$(fetch "$proxy" --path-as-is "$R/repos/myorg/..;/other")
like "a dot segment with ;params: 403" "$r" "^403\|path-not-allowed\|"
r=$(fetch "$proxy" --path-as-is "$R//repos/myorg/x")
like "an empty segment: 403" "$r" "^403\|path-not-allowed\|"
r=$(fetch "$proxy" --data 'x=1' "$R/echo")
is "POST /echo is allowed by its own rule" "$r" "200||x=1"
r=$(fetch "$proxy" "$R/echo")
like "GET /echo is not (method)" "$r" "^403\|method-not-allowed\|"
is "the origin saw none of the refused requests" \
    "$(grep -cE 'DELETE|/repos/other/x$|\.\.|//repos|GET rules.test:[0-9]+ /echo' "$T/origin.log")" 0
r=$(printf 'CONNECT rules.test:%s HTTP/1.1\r\nHost: rules.test:%s\r\n\r\n' "$HTTP" "$HTTP" |
    "$PY" "$HELPERS/rawreq.py" 127.0.0.1 "$PX")
like "CONNECT to a host with rules is not a blind tunnel: 403 needs-interception" "$r" \
    "^HTTP/1.1 403.*X-Bottle-Block: needs-interception.*needs TLS interception"
r=$(fetch "$proxy" -p "http://allowed.test:$HTTP/hello")
is "CONNECT to a host without rules still tunnels" "$r" "200||hello from fake upstream"

# ---- DLP on plain HTTP: URL, header, body
A="http://allowed.test:$HTTP"
AWS=AKIAIOSFODNN7EXAMPLE
GHP=ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789
JWT=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c
r=$(fetch "$proxy" "$A/hello?key=$AWS")
like "an AWS key id in the URL: 403 dlp:aws-key" "$r" "^403\|dlp:aws-key\|"
r=$(fetch "$proxy" "$A/v1/$GHP/x")
like "a GitHub token in the path: 403 dlp:github-token (the audit path is redacted)" "$r" \
    "^403\|dlp:github-token\|"
r=$(fetch "$proxy" -H "Authorization: Bearer $JWT" "$A/hello")
like "a JWT in a header: 403 dlp:jwt" "$r" "^403\|dlp:jwt\|"
like "... the body says how to turn the rule off" "$r" "--dlp-disable jwt"
r=$(fetch "$proxy" --data-binary "{\"token\": \"$GHP\"}" "$A/echo")
like "a GitHub token in a body: 403 dlp:github-token" "$r" "^403\|dlp:github-token\|"
r=$(fetch "$proxy" --data-binary "-----BEGIN OPENSSH PRIVATE KEY-----" "$A/echo")
like "a private key block in a body: 403 dlp:private-key" "$r" "^403\|dlp:private-key\|"
r=$(fetch "$proxy" --data-binary "card=4111 1111 1111 1111" "$A/echo")
like "a card number in a body: 403 dlp:card" "$r" "^403\|dlp:card\|"
r=$(fetch "$proxy" --data-binary @"$BB_SOURCE_DIR/tests/unit/data/dlp/benign/npm-metadata.json" "$A/echo")
like "a benign 37 kB JSON body goes through" "$r" "^200\|\|"

# A token split across reads and across HTTP chunks
out=$("$PY" "$HELPERS/slowpost.py" 127.0.0.1 "$PX" "$A/echo" "{\"k\":\"ghp_aBcDeFgHiJk" \
    "LmNoPqRsTuVwXyZ0" "123456789\"}")
like "a token straddling reads (Content-Length): 403 dlp:github-token" "$out" \
    "^HTTP/1.1 403.*X-Bottle-Block: dlp:github-token"
out=$("$PY" "$HELPERS/slowpost.py" 127.0.0.1 "$PX" "$A/echo" --chunked "x AKIAIOSF" "ODNN7" \
    "EXAMPLE y")
like "a token straddling HTTP chunks: 403 dlp:aws-key" "$out" \
    "^HTTP/1.1 403.*X-Bottle-Block: dlp:aws-key"
# No prefix of a token that completes in a later read has left: the last bytes scanned are
# held back until the next read (or the end of the body) is scanned.
filler=$(printf 'f%.0s' $(seq 1000))
out=$("$PY" "$HELPERS/slowpost.py" 127.0.0.1 "$PX" "http://sink.test:$SINK/up" --delay 0.3 \
    "${filler} ghp_aBcDeFgHiJk" "LmNoPqRsTuVwXyZ0123456789 end")
like "a token completed in a later read (to a raw origin): 403" "$out" "^HTTP/1.1 403.*dlp:github-token"
like "... the origin got the request's start" "$(cat "$T/sink.bin")" "^POST /up HTTP/1.1.*ffff"
unlike "... but no byte of the token" "$(cat "$T/sink.bin")" "ghp_"
: >"$T/sink.bin"
out=$("$PY" "$HELPERS/slowpost.py" 127.0.0.1 "$PX" "http://sink.test:$SINK/up" --delay 0.3 \
    --chunked "${filler} xoxb-1234" "56789012-abcdefghij ")
like "... the same with chunks: 403" "$out" "^HTTP/1.1 403.*dlp:slack-token"
unlike "... and no byte of the token reached the origin" "$(cat "$T/sink.bin")" "xoxb"
out=$("$PY" "$HELPERS/slowpost.py" 127.0.0.1 "$PX" "$A/echo" --chunked "hello " "world")
like "a clean chunked body in pieces goes through" "$out" "^HTTP/1.1 200.*hello world"
out=$("$PY" "$HELPERS/slowpost.py" 127.0.0.1 "$PX" "$A/echo" "aaaa ghp_aBcDeFgHiJkLmNoPqRsTu" \
    "VwXyZ0123456789 tail-that-must-not-echo")
unlike "a refused body is never echoed back (the upstream request was cut)" "$out" "tail-that-must-not-echo|aaaa"

# Host names and DNS questions with random-looking labels (DNS exfiltration)
r=$(fetch "$proxy" "http://mzxw6ytboi4dsnrtgq2tmnzyhe3dmzrs.wild.test:$HTTP/hello")
like "a random-looking label under an allowed wildcard: 403 dlp:dns-entropy" "$r" \
    "^403\|dlp:dns-entropy\|"
r=$(fetch "$proxy" "http://a.wild.test:$HTTP/hello")
is "an ordinary name under it works" "$r" "200||hello from fake upstream"
r=$(dig +short +tries=1 +time=3 -p "$PXDNS" @127.0.0.1 mzxw6ytboi4dsnrtgq2tmnzyhe3dmzrs.wild.test A)
is "the DNS filter answers nothing for it" "$r" ""
r=$(dig +tries=1 +time=3 -p "$PXDNS" @127.0.0.1 mzxw6ytboi4dsnrtgq2tmnzyhe3dmzrs.wild.test A)
like "... NXDOMAIN" "$r" "status: NXDOMAIN"
is "... and the question never reached the upstream resolver" \
    "$(origin_saw "dns mzxw6ytboi4dsnrtgq2tmnzyhe3dmzrs")" 0
r=$(dig +short +tries=1 +time=3 -p "$PXDNS" @127.0.0.1 a.wild.test A)
is "an ordinary name resolves through the filter" "$r" "127.0.0.1"

# ---- audit: rule names, never the secret
wait_grep '"reason":"dlp:dns-entropy"' "$T/audit.log"
audit=$(cat "$T/audit.log")
like "audit: method-not-allowed" "$audit" '"host":"rules.test".*"decision":"deny","reason":"method-not-allowed"'
like "audit: path-not-allowed" "$audit" '"reason":"path-not-allowed"'
like "audit: needs-interception" "$audit" '"kind":"connect","host":"rules.test".*"reason":"needs-interception"'
for rule in aws-key jwt github-token private-key card dns-entropy; do
    like "audit: dlp:$rule" "$audit" "\"decision\":\"deny\",\"reason\":\"dlp:$rule\""
done
# (the card as sent, or its digits: a bare "4111" also matched the records' random hex hashes
# and ports, about one run in twenty)
unlike "the audit log never holds a secret" "$audit" \
    "IOSFODNN7|aBcDeFgHiJk|SflKxwRJ|4111 1111|4111111111|OPENSSH|mzxw6ytboi"
like "... the refusals name the domain, not the random label" "$audit" \
    '"kind":"http","host":"\(redacted\)\.wild\.test".*"reason":"dlp:dns-entropy"'
unlike "nor does the daemon's stderr" "$(cat "$T/egress.err")" \
    "IOSFODNN7|aBcDeFgHiJk|SflKxwRJ|4111 1111|4111111111"

# ---- turning rules off by name: [dlp] disable and --dlp-disable
cat >"$T/off.ini" <<INI
[egress]
allow = allowed.test:$HTTP
allow_cidr = 127.0.0.1/32
upstream_dns = 127.0.0.1:$DNS
[dlp]
disable = jwt, card
INI
bg "$BB" egress -c "$T/off.ini" --dlp-disable aws-key --listen "127.0.0.1:$PX2" \
    --audit "$T/audit2.log" --name t-dlp-off 2>"$T/egress2.err"
wait_port "$PX2" || { echo "Bail out! second egress did not start: $(cat "$T/egress2.err")"; exit 1; }
r=$(fetch "http://127.0.0.1:$PX2" -H "Authorization: Bearer $JWT" "$A/hello")
is "[dlp] disable = jwt lets a JWT through" "$r" "200||hello from fake upstream"
r=$(fetch "http://127.0.0.1:$PX2" --data-binary "card=4111 1111 1111 1111" "$A/echo")
is "... and card numbers" "$r" "200||card=4111 1111 1111 1111"
r=$(fetch "http://127.0.0.1:$PX2" "$A/hello?key=$AWS")
is "--dlp-disable aws-key lets an AWS key id through (the origin answers)" "$r" "404||not found"
r=$(fetch "http://127.0.0.1:$PX2" --data-binary "$GHP" "$A/echo")
like "the other rules stay on" "$r" "^403\|dlp:github-token\|"
out=$("$BB" egress --dlp-disable nosuchrule --listen "127.0.0.1:$(free_port)" 2>&1)
like "an unknown rule name is refused with the list" "$out" "bot-bottle: .*--dlp-disable 'nosuchrule': unknown DLP rule .*jwt"
printf '[dlp]\ndisable = jwtx\n' >"$T/bad.ini"
out=$("$BB" egress -c "$T/bad.ini" --listen "127.0.0.1:$(free_port)" 2>&1)
like "... also in a config file, with file:line" "$out" "bad.ini:2: disable: 'jwtx': unknown DLP rule"
out=$("$BB" egress -a 'api.github.com GET /a/../b' --listen "127.0.0.1:$(free_port)" 2>&1)
like "a bad rule on the command line is refused" "$out" "dot segment"
out=$("$BB" egress -a 'http://api.github.com GET /a' --listen "127.0.0.1:$(free_port)" 2>&1)
like "a URL as the host of a rule is refused" "$out" "not a URL"

# ---- one bottle: rules and DLP through run --backend namespace
if [ "$(id -u)" != 0 ] && ! unshare -Ur true 2>/dev/null; then
    skip "bottle case" "user namespaces are not available to this user"
else
    mkdir -p "$T/ws"
    (cd "$T/ws" && timeout 90 "$BB" run --backend namespace --name t-dlp \
        --allow "rules.test:$HTTP GET /hello" --allow-cidr 127.0.0.1/32 \
        --upstream-dns "127.0.0.1:$DNS" -- sh -c '
            curl -s -o /dev/null -w "get=%{http_code}\n" --max-time 10 "http://rules.test:'"$HTTP"'/hello"
            curl -s -o /dev/null -w "delete=%{http_code}\n" --max-time 10 -X DELETE "http://rules.test:'"$HTTP"'/hello"
            curl -s -o /dev/null -w "other=%{http_code}\n" --max-time 10 "http://rules.test:'"$HTTP"'/headers"
            curl -s -o /dev/null -w "dlp=%{http_code}\n" --max-time 10 "http://rules.test:'"$HTTP"'/hello?k='"$AWS"'"
        ' >"$T/run.out" 2>"$T/run.err")
    out=$(cat "$T/run.out")
    like "in a bottle: the allowed GET works" "$out" "get=200"
    like "in a bottle: DELETE is refused by the rule" "$out" "delete=403"
    like "in a bottle: another path is refused" "$out" "other=403"
    like "in a bottle: an AWS key id in the URL is refused" "$out" "dlp=403"
fi

done_testing

#!/usr/bin/env bash
# The egress proxy end to end: the real daemon against a fake origin (HTTP and HTTPS) and a
# DNS stub, all on loopback. Shows allowed traffic works, and that every refusal happens at the
# proxy (403 + X-Bottle-Block + audit record) while the origin never sees the request.
source "$(dirname "$0")/lib.sh"
plan 46

HTTP=$(free_port); HTTPS=$(free_port); DNS=$(free_port); PX=$(free_port)
make_cert allowed.test
bg python3 "$HELPERS/fake-upstream.py" --http "$HTTP" --https "$HTTPS" --cert "$T/cert.pem" \
    --key "$T/key.pem" --dns "$DNS" --log "$T/origin.log" --ready "$T/origin.ready" \
    --zone allowed.test=127.0.0.1 --zone other.test=127.0.0.1 --zone a.wild.test=127.0.0.1 \
    --zone private.test=10.0.0.1 --zone meta.test=169.254.169.254 --zone loop.test=127.0.0.2 \
    --zone mixed.test=10.1.2.3 --zone mixed.test=127.0.0.1 --zone v6meta.test=fd00:ec2::254
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }

cat >"$T/bottle.ini" <<INI
[egress]
allow = allowed.test:$HTTP
allow = allowed.test:$HTTPS
allow = *.wild.test:$HTTP
allow = private.test:$HTTP
allow = meta.test:$HTTP
allow = loop.test:$HTTP
allow = mixed.test:$HTTP
allow = v6meta.test:$HTTP
allow = allowed.test
# the fake origin lives on 127.0.0.1: the test policy opens exactly that address
allow_cidr = 127.0.0.1/32
upstream_dns = 127.0.0.1:$DNS
INI
bg "$BB" egress -c "$T/bottle.ini" --listen "127.0.0.1:$PX" --audit "$T/audit.log" \
    --head-timeout-ms 1500 --name t-proxy 2>"$T/egress.err"
EGRESS=$BGPID
wait_port "$PX" || { echo "Bail out! egress did not start: $(cat "$T/egress.err")"; exit 1; }

proxy="http://127.0.0.1:$PX"
st=$(cat /proc/$EGRESS/status)
like "the daemon runs with no_new_privs" "$st" "NoNewPrivs:[[:space:]]+1"
like "the daemon runs under a seccomp filter" "$st" "Seccomp:[[:space:]]+2"
like "the daemon holds no capabilities" "$st" "CapEff:[[:space:]]+0+
CapBnd:[[:space:]]+0+"

# curl through the proxy; prints "CODE|X-Bottle-Block|body"
fetch() {
    curl -s --max-time 10 -x "$proxy" -D "$T/h" -o "$T/b" -w '%{http_code}' "$@" >"$T/code" 2>/dev/null
    printf '%s|%s|%s' "$(cat "$T/code")" \
        "$(grep -i '^x-bottle-block:' "$T/h" | tail -1 | cut -d' ' -f2 | tr -d '\r')" \
        "$(head -c 300 "$T/b")"
}
origin_saw() { grep -c "$1" "$T/origin.log" 2>/dev/null || true; }
raw() { python3 "$HELPERS/rawreq.py" 127.0.0.1 "$PX" "$@"; }

# --- allowed traffic (S2)
r=$(fetch "http://allowed.test:$HTTP/hello")
is "plain HTTP to an allowlisted host works" "$r" "200||hello from fake upstream"
r=$(curl -s --max-time 10 -x "$proxy" --cacert "$T/cert.pem" "https://allowed.test:$HTTPS/hello")
is "HTTPS via CONNECT to an allowlisted host works" "$r" "hello from fake upstream"
r=$(fetch "http://a.wild.test:$HTTP/hello")
is "a wildcard pattern admits a name below it" "$r" "200||hello from fake upstream"
r=$(fetch "http://ALLOWED.TEST.:$HTTP/hello")
is "case and one trailing dot are normalised" "$r" "200||hello from fake upstream"
r=$(curl -s --max-time 10 -x "$proxy" "http://allowed.test:$HTTP/size/3000000" | wc -c)
is "a 3 MB Content-Length body arrives whole" "$r" "3000000"
r=$(curl -s --max-time 10 -x "$proxy" "http://allowed.test:$HTTP/chunked/123457" | wc -c)
is "a chunked body arrives whole" "$r" "123457"
r=$(curl -s --max-time 10 -x "$proxy" "http://allowed.test:$HTTP/close/54321" | wc -c)
is "a close-delimited body arrives whole" "$r" "54321"
head -c 200000 /dev/urandom >"$T/post.bin"
curl -s --max-time 10 -x "$proxy" --data-binary @"$T/post.bin" -o "$T/post.out" \
    "http://allowed.test:$HTTP/echo"
check "a POST body goes up and comes back unchanged" cmp "$T/post.bin" "$T/post.out"
curl -s --max-time 10 -x "$proxy" -H 'Transfer-Encoding: chunked' --data-binary @"$T/post.bin" \
    -o "$T/post2.out" "http://allowed.test:$HTTP/echo"
check "a chunked POST body goes up unchanged" cmp "$T/post.bin" "$T/post2.out"
curl -s --max-time 10 -x "$proxy" -H 'Expect: 100-continue' --data-binary @"$T/post.bin" \
    -D "$T/post3.h" -o "$T/post3.out" "http://allowed.test:$HTTP/echo"
check "Expect: 100-continue works (interim responses relayed, body unchanged)" cmp "$T/post.bin" "$T/post3.out"
like "... the client saw the interim 100 before the 200" "$(cat "$T/post3.h")" "HTTP/1.1 100 Continue.*HTTP/1.1 200"
r=$(curl -s --max-time 10 -x "$proxy" -U user:secret -H 'Proxy-Connection: keep-alive' \
    "http://allowed.test:$HTTP/headers")
unlike "Proxy-Authorization and Proxy-Connection are never forwarded" "$r" "[Pp]roxy-([Aa]uthori[sz]ation|[Cc]onnection)"
like "the upstream request is in origin-form with the right Host" "$r" "^GET /headers HTTP/1.1"
r=$(printf 'GET http://allowed.test:%s/hello HTTP/1.1\\r\\nHost: allowed.test:%s\\r\\n\\r\\nGET http://allowed.test:%s/size/5 HTTP/1.1\\r\\nHost: allowed.test:%s\\r\\nConnection: close\\r\\n\\r\\n' "$HTTP" "$HTTP" "$HTTP" "$HTTP" | raw)
is "two pipelined requests on one keep-alive connection get two responses" \
    "$(grep -c '^HTTP/1.1 200' <<<"$r")" "2"

# --- refusals at the proxy (S2, S5, S6)
n0=$(origin_saw 'evil')
r=$(fetch "http://evil.test:$HTTP/hello")
like "a non-allowlisted host gets 403 not-allowlisted" "$r" "^403\|not-allowlisted\|blocked by bot-bottle: evil.test is not in the allowlist; add it with --allow evil.test"
like "... and, as the policy came from a config file, names the config key too" "$r" \
    "add it with --allow evil.test \\(or, in the config file, 'allow = evil.test' under \\[egress\\]\\)"
unlike "... but not the config file's host path (the text reaches the bottle)" "$r" "bottle.ini"
r=$(curl -s --max-time 10 -x "$proxy" -o /dev/null -w '%{http_code}' --cacert "$T/cert.pem" \
    "https://evil.test:$HTTPS/" 2>/dev/null; true)
r2=$(printf 'CONNECT evil.test:443 HTTP/1.1\\r\\nHost: evil.test:443\\r\\n\\r\\n' | raw)
like "CONNECT to a non-allowlisted host gets 403 with the reason header" "$r2" "^HTTP/1.1 403.*X-Bottle-Block: not-allowlisted"
r=$(fetch "http://allowed.test:$((HTTP + 1))/")
like "an allowlisted name on another port gets 403 port-not-allowed" "$r" "^403\|port-not-allowed"
r=$(fetch "http://private.test:$HTTP/")
like "a name resolving to RFC 1918 space gets 403 ssrf-private" "$r" "^403\|ssrf-private"
r=$(fetch "http://meta.test:$HTTP/")
like "a name resolving to the metadata address gets 403 ssrf-metadata" "$r" "^403\|ssrf-metadata"
r=$(fetch "http://v6meta.test:$HTTP/")
like "a name resolving to fd00:ec2::254 gets 403 ssrf-metadata" "$r" "^403\|ssrf-metadata"
r=$(fetch "http://loop.test:$HTTP/")
like "a name resolving to loopback outside allow_cidr gets 403 ssrf-private" "$r" "^403\|ssrf-private"
r=$(fetch "http://mixed.test:$HTTP/hello")
is "of several addresses only the vetted one is used" "$r" "200||hello from fake upstream"
r=$(fetch "http://127.0.0.3:$HTTP/")
like "an IP literal outside allow_cidr gets 403 ip-literal" "$r" "^403\|ip-literal"
r=$(fetch "http://[::1]:$HTTP/")
like "an IPv6 literal gets 403 ip-literal" "$r" "^403\|ip-literal"
for t in 2130706433 0x7f.1 0177.0.0.1 127.1; do
    r=$(printf 'GET http://%s:%s/ HTTP/1.1\\r\\nConnection: close\\r\\n\\r\\n' "$t" "$HTTP" | raw)
    like "non-canonical IPv4 $t is refused" "$r" "^HTTP/1.1 403.*|^HTTP/1.1 400"
done
r=$(printf 'GET http://allowed.test:%s@evil.test/ HTTP/1.1\\r\\nHost: evil.test\\r\\n\\r\\n' "$HTTP" | raw)
like "userinfo allowed.test@evil.test is refused" "$r" "^HTTP/1.1 (400|403)"
r=$(printf 'GET http://evil.test#@allowed.test/ HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\n' | raw)
like "a fragment trick evil.test#@allowed.test is refused" "$r" "^HTTP/1.1 (400|403)"
r=$(fetch "http://allowed.test.evil.test:$HTTP/")
like "allowed.test.evil.test is not allowed.test" "$r" "^403\|not-allowlisted"
r=$(printf 'GET http://%%61llowed.test:%s/ HTTP/1.1\\r\\nConnection: close\\r\\n\\r\\n' "$HTTP" | raw)
like "a percent-encoded host is refused" "$r" "^HTTP/1.1 (400|403)"
r=$(printf 'CONNECT allowed.test:%s HTTP/1.1\\r\\nHost: evil.test:%s\\r\\n\\r\\n' "$HTTPS" "$HTTPS" | raw)
like "CONNECT authority and Host header disagreeing is refused" "$r" "^HTTP/1.1 400"
r=$(printf 'GET http://allowed.test:%s/ HTTP/1.1\\r\\nHost: evil.test\\r\\n\\r\\n' "$HTTP" | raw)
like "absolute URI and Host header disagreeing is refused" "$r" "^HTTP/1.1 400"
is "the origin never saw a request for a refused host" "$(origin_saw 'evil')" "$n0"
is "the origin never saw the private/metadata/loopback names" \
    "$(grep -cE 'http .*(private|meta|loop)\.test' "$T/origin.log")" "0"

# --- malformed and hostile input (400, daemon keeps serving, no fd leak)
fds0=$(ls /proc/$EGRESS/fd | wc -l)
r=$(printf 'GET http://allowed.test/ HTTP/1.1\\r\\nContent-Length: 5\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n' | raw)
like "Content-Length with Transfer-Encoding is refused (400)" "$r" "^HTTP/1.1 400"
r=$(printf 'GET http://allowed.test/ HTTP/1.1\\r\\nContent-Length: 5\\r\\nContent-Length: 5\\r\\n\\r\\n' | raw)
like "duplicate Content-Length is refused (400)" "$r" "^HTTP/1.1 400"
r=$(printf 'GET http://allowed.test/ HTTP/1.1\\r\\nX-A: 1\\r\\n folded\\r\\n\\r\\n' | raw)
like "obs-fold is refused (400)" "$r" "^HTTP/1.1 400"
r=$(printf 'GET http://allowed.test/ HTTP/1.1\\rHost: x\\r\\n\\r\\n' | raw)
like "a bare CR is refused (400)" "$r" "^HTTP/1.1 400"
r=$(python3 -c "import sys; sys.stdout.write('GET http://allowed.test/ HTTP/1.1\\\\r\\\\nX: ' + 'a'*40000 + '\\\\r\\\\n\\\\r\\\\n')" | raw)
like "an oversized head gets 431" "$r" "^HTTP/1.1 431"
r=$(head -c 3000 /dev/urandom | tr -d '\\' | raw --timeout 3)
like "random bytes get a 400-class answer or a close" "$r" "^(HTTP/1.1 4|$)"
r=$(printf 'GET http://allowed.test/' | raw --timeout 4)
like "a head that never completes is cut off by the head timeout (408)" "$r" "^HTTP/1.1 408"
# the daemon closes the refused connections on its next loop pass: wait (bounded) for that
for _ in $(seq 100); do [ "$(ls /proc/$EGRESS/fd | wc -l)" -le "$fds0" ] && break; sleep 0.05; done
fds1=$(ls /proc/$EGRESS/fd | wc -l)
is "no descriptor leaked after the hostile requests" "$fds1" "$fds0"
r=$(fetch "http://allowed.test:$HTTP/hello")
is "the daemon still serves after all of that" "$r" "200||hello from fake upstream"

# --- audit (S9): the last request's record is written once its connection ended
wait_grep '"host":"allowed.test".*"decision":"allow"' "$T/audit.log" 2
like "audit has the allowed HTTP request with bytes" "$(cat "$T/audit.log")" \
    '"kind":"http","host":"allowed.test","port":'"$HTTP"',"decision":"allow","reason":"allowlisted","bytes_up":[1-9][0-9]*,"bytes_down":[1-9]'
like "audit has the CONNECT decision" "$(cat "$T/audit.log")" '"kind":"connect","host":"allowed.test".*"decision":"allow"'
like "audit has the denial with its reason" "$(cat "$T/audit.log")" '"host":"evil.test".*"decision":"deny","reason":"not-allowlisted"'
like "audit has the SSRF denial" "$(cat "$T/audit.log")" '"host":"private.test".*"decision":"deny","reason":"ssrf-private"'
check "every audit line is valid JSON with the bottle name" python3 -c "
import json,sys
for l in open('$T/audit.log'):
    o=json.loads(l); assert o['bottle']=='t-proxy', o; assert o['decision'] in ('allow','deny')
"

# --- reload (SIGHUP) keeps live tunnels and applies the new policy
python3 - "$PX" "$HTTPS" "$T/reloaded" >"$T/tunnel.out" 2>&1 <<'PY' &
import os, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"CONNECT allowed.test:%s HTTP/1.1\r\nHost: allowed.test:%s\r\n\r\n" % (sys.argv[2].encode(), sys.argv[2].encode()))
print(s.recv(100).split(b"\r\n")[0].decode(), flush=True)
# the test reloads the daemon now and creates the file once the reload is done
for _ in range(200):
    if os.path.exists(sys.argv[3]):
        break
    time.sleep(0.05)
s.sendall(b"\x16\x03\x01\x00\x05hello")  # junk TLS record: the origin answers with an alert or closes
s.settimeout(3)
try:
    d = s.recv(100)
    print("tunnel-alive" if d is not None else "x")
except Exception as e:
    print("tunnel-error", e)
PY
TUN=$!
wait_grep '^HTTP/1.1 200' "$T/tunnel.out" || diag "the tunnel did not open: $(cat "$T/tunnel.out")"
reloads=$(grep -c 'policy reloaded' "$T/egress.err")
echo "allow = other.test:$HTTP" >>"$T/bottle.ini"
kill -HUP "$EGRESS"
check "SIGHUP: the daemon says it reloaded the policy" \
    wait_grep 'egress: policy reloaded' "$T/egress.err" $((reloads + 1))
touch "$T/reloaded"
r=$(fetch "http://other.test:$HTTP/hello")
is "after SIGHUP the new pattern is in force" "$r" "200||hello from fake upstream"
wait "$TUN"
like "a tunnel opened before the reload survives it" "$(cat "$T/tunnel.out")" "HTTP/1.1 200.*tunnel-alive"

# --- SIGTERM drains and exits 0
kill -TERM "$EGRESS"
wait "$EGRESS"
is "SIGTERM: the daemon exits 0" "$?" "0"
done_testing

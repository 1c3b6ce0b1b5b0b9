#!/usr/bin/env bash
# The intercepted set changes at run time (docs/credentials.md, "Changing the intercepted set at
# run time"): a method/path rule added with `bot-bottle allow` to a running bottle, for a host
# that was a plain tunnel (or for a wildcard), makes the daemon intercept that host with a new
# CA constrained to it alone, added to the bottle's CA bundle under the same path; a new
# process in the bottle (curl with its default options) then gets the rule enforced over
# HTTPS. A process that loaded the bundle before does not trust the new CA. A deny leaves the
# host intercepted and applies to the next request of a session already open.
# Namespace backend (BB_TEST_BACKEND=microvm runs it on a microVM, where the bundle reaches the
# bottle over 9p: slow under TCG, so not the default); fake origin and DNS on the host's
# loopback, with a test CA of this test.
source "$(dirname "$0")/lib.sh"

need_bottles "run-time TLS interception tests"

test_origin_cert rt.test a.wild.test wild.test keep.test b.start.test
HTTPS=$(free_port); DNS=$(free_port)
bg "$PY" "$HELPERS/fake-upstream.py" --https "$HTTPS" --cert "$T/srv.pem" --key "$T/srv.key" \
    --dns "$DNS" --log "$T/origin.log" --ready "$T/origin.ready" \
    --zone rt.test=127.0.0.1 --zone a.wild.test=127.0.0.1 --zone wild.test=127.0.0.1 \
    --zone keep.test=127.0.0.1 --zone b.start.test=127.0.0.1
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }

WS=$T/ws
mkdir -p "$WS"
cd "$WS" || exit 1
S=$BOT_BOTTLE_STATE_DIR
printf '[tls]\nextra_ca = %s\n' "$T/oca.pem" >"$T/config.ini"
"$BB" start --backend "${BB_TEST_BACKEND:-namespace}" --name rt --no-default-config -c "$T/config.ini" \
    --allow "rt.test:$HTTPS" --allow "wild.test:$HTTPS" --allow "keep.test:$HTTPS" \
    --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" >"$T/start.out" 2>"$T/start.err" ||
    { diag "$(cat "$T/start.err")"; echo "Bail out! the bottle did not start"; exit 1; }
_pids+=("$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$S/bottles/rt/info.json")")

# wait_long FILE: until it exists (60 s max: a python starting in a bottle on a loaded machine)
wait_long() {
    for _ in $(seq 600); do
        [ -e "$1" ] && return 0
        sleep 0.1
    done
    return 1
}
inside() { timeout 60 "$BB" exec rt -- "$@"; }
code() { inside curl -s -o /dev/null -w '%{http_code} %header{x-bottle-block}' "$1"; }
issuer() {
    inside sh -c "openssl s_client -proxy \"\${HTTPS_PROXY#http://}\" -connect $1:$HTTPS \
        -servername $1 </dev/null 2>/dev/null | openssl x509 -noout -issuer"
}
# the bot-bottle CAs of the bottle's bundle, one "nameConstraints" text per CA, in order
constraints() { inside cat /etc/ssl/bot-bottle/ca-bundle.crt | bundle_ca_constraints; }

# --- before: no interception at all; the bundle exists (for CAs added later), without a CA
is "at start: a plain tunnel (the origin's own certificate)" "$(issuer rt.test)" \
    "issuer=CN = bb test origin CA"
is "... and no bot-bottle CA in the bundle" "$(constraints)" ""
is "... HTTPS works with curl's defaults" "$(code "https://rt.test:$HTTPS/headers")" "200 "
# a process that loads its trust now and connects only after the allow below
cat >"$WS/early.py" <<EOF
import os, ssl, time, urllib.request
ctx = ssl.create_default_context()          # reads SSL_CERT_FILE now
open("$WS/early.ready", "w").close()
while not os.path.exists("$WS/early.go"):
    time.sleep(0.05)
try:
    o = urllib.request.build_opener(urllib.request.ProxyHandler(), urllib.request.HTTPSHandler(context=ctx))
    print("early:", o.open("https://rt.test:$HTTPS/hello", timeout=30).status)
except Exception as e:
    print("early: failed:", e)
EOF
inside "$PY" "$WS/early.py" >"$T/early.out" 2>&1 &
EARLY=$!
wait_long "$WS/early.ready" || diag "the early process did not start"

# --- a rule added at run time for a host that was a plain tunnel
"$BB" allow rt "rt.test:$HTTPS GET /hello" >"$T/allow1.out" 2>&1
is "allow of a rule: exit 0" "$?" 0
like "... the output says the host is intercepted with a new CA" "$(cat "$T/allow1.out")" \
    "now intercepted with a new CA.*ca-bundle.crt"
like "... and that processes that loaded the bundle before do not trust it" \
    "$(cat "$T/allow1.out")" "loaded it before .*until it is restarted"
is "a new process: the allowed path over HTTPS is 200" "$(code "https://rt.test:$HTTPS/hello")" "200 "
is "... another path is 403 path-not-allowed" "$(code "https://rt.test:$HTTPS/headers")" \
    "403 path-not-allowed"
like "... intercepted: the bottle's new CA issued the certificate" "$(issuer rt.test)" \
    "issuer=CN *= *bot-bottle CA for bottle rt"
touch "$WS/early.go"
wait "$EARLY"
like "a process that loaded the bundle before the allow fails verification (documented)" \
    "$(cat "$T/early.out")" "early: failed:.*CERTIFICATE_VERIFY_FAILED"

# --- a wildcard rule: subdomains, not the base name
"$BB" allow rt "*.wild.test:$HTTPS GET /hello" >"$T/allow2.out" 2>&1
is "allow of a wildcard rule: exit 0" "$?" 0
is "a subdomain's allowed path is 200" "$(code "https://a.wild.test:$HTTPS/hello")" "200 "
is "... another path is 403 path-not-allowed" "$(code "https://a.wild.test:$HTTPS/headers")" \
    "403 path-not-allowed"
# git's HTTPS is libcurl with GnuTLS on Debian: it reads the .wild.test subtree the same way
inside git ls-remote "https://a.wild.test:$HTTPS/repo.git" >"$T/git.out" 2>&1
like "git (GnuTLS) verifies the subdomain under the wildcard's CA (then gets the rule's 403)" \
    "$(cat "$T/git.out")" "error: 403"
is "the wildcard's base name stays a plain tunnel" "$(issuer wild.test)" \
    "issuer=CN = bb test origin CA"

# --- what the bundle's CAs can sign: exactly the rules' names, no IP but 0.0.0.0/32 and ::/128
c=$(constraints)
is "two CAs, one per rule, each constrained to its own name" "$(wc -l <<<"$c")" 2
NOIP="IP:0.0.0.0/255.255.255.255 IP:0:0:0:0:0:0:0:0/FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF"
is "... the first: rt.test only (critical; the only IPs 0.0.0.0/32 and ::/128)" \
    "$(sed -n 1p <<<"$c")" "X509v3 Name Constraints: critical Permitted: DNS:rt.test $NOIP"
is "... the second: the names below wild.test only (.wild.test)" "$(sed -n 2p <<<"$c")" \
    "X509v3 Name Constraints: critical Permitted: DNS:.wild.test $NOIP"
# openssl verify: the leaves the daemon presents verify against the bundle; a leaf for a name
# outside a CA's constraint (made here with the CA's constraint copied onto a CA of our own,
# since the daemon's key never leaves it) is refused
inside sh -c "openssl s_client -proxy \"\${HTTPS_PROXY#http://}\" -connect a.wild.test:$HTTPS \
    -servername a.wild.test </dev/null 2>/dev/null | openssl x509" >"$T/leaf-wild.pem"
inside cat /etc/ssl/bot-bottle/ca.pem >"$T/bottle-ca.pem"
is "openssl verify: the subdomain's leaf is valid under the bottle's CAs" \
    "$(openssl verify -CAfile "$T/bottle-ca.pem" -purpose sslserver "$T/leaf-wild.pem" 2>&1)" \
    "$T/leaf-wild.pem: OK"
for name in wild.test evil.test rt.test.evil.test xwild.test; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=copy" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
        -addext "nameConstraints=critical,permitted;DNS:.wild.test,permitted;DNS:rt.test" \
        -keyout "$T/c.key" -out "$T/c.pem" >/dev/null 2>&1
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
        -addext "subjectAltName=DNS:$name" -keyout "$T/l.key" -out "$T/l.csr" >/dev/null 2>&1
    openssl x509 -req -in "$T/l.csr" -CA "$T/c.pem" -CAkey "$T/c.key" -days 1 \
        -copy_extensions copy -out "$T/l.pem" >/dev/null 2>&1
    like "openssl verify: those constraints refuse $name" \
        "$(openssl verify -CAfile "$T/c.pem" -purpose sslserver "$T/l.pem" 2>&1)" \
        "permitted subtree violation"
done

# --- revoke: the host stays intercepted; the rule goes, for new sessions and open ones
cat >"$WS/open.py" <<EOF
import http.client, os, ssl, time
p = os.environ["HTTPS_PROXY"].rsplit("/", 1)[-1].rsplit(":", 1)
c = http.client.HTTPSConnection(p[0], int(p[1]), context=ssl.create_default_context(), timeout=30)
c.set_tunnel("a.wild.test", $HTTPS)
c.request("GET", "/hello"); r = c.getresponse(); r.read(); print("first:", r.status)
open("$WS/open.ready", "w").close()
while not os.path.exists("$WS/open.go"):
    time.sleep(0.05)
c.request("GET", "/hello"); r = c.getresponse(); r.read()
print("second:", r.status, r.getheader("X-Bottle-Block"))
EOF
inside "$PY" "$WS/open.py" >"$T/open.out" 2>&1 &
OPEN=$!
wait_long "$WS/open.ready" || diag "the session was not opened: $(cat "$T/open.out")"
"$BB" deny rt "*.wild.test:$HTTPS GET /hello" >/dev/null 2>&1
"$BB" deny rt "rt.test:$HTTPS GET /hello" >"$T/deny.out" 2>&1
is "deny of a rule: exit 0" "$?" 0
touch "$WS/open.go"
wait "$OPEN"
is "an intercepted session open before the deny: its first request was 200, its next one is refused" \
    "$(tr '\n' ' ' <"$T/open.out")" "first: 200 second: 403 not-allowlisted "
is "after the deny: rt.test (still allowed as a host) is still intercepted" "$(issuer rt.test)" \
    "issuer=CN = bot-bottle CA for bottle rt"
is "... and without its rule every path goes through" "$(code "https://rt.test:$HTTPS/headers")" "200 "
is "a host that never had a rule is still a plain tunnel" "$(issuer keep.test)" \
    "issuer=CN = bb test origin CA"
is "the audit log has the changes (2 allows, 2 denies)" \
    "$(grep -c '"kind":"policy"' "$S/logs/rt.audit.log")" 4

# --- a SIGHUP reload that brings a rule for a host that was a plain tunnel (keep.test), an
# inspect host and a credential: a reload cannot start intercepting (the bottle must be given
# the new CA, which only an allow through the supervisor does) nor add a credential (its
# placeholder is in the bottle's environment from the start). It says so; HTTPS to the
# rule's host is refused needs-interception (never tunnelled past the rule that narrows it);
# `allow` of the same rule, already in force, then intercepts the host as for a new rule.
printf '[tls]\nextra_ca = %s\n[egress]\nallow = keep.test:%s GET /hello\ninspect = in.test\n[credential "late"]\nhost = late.test\nheader = x-api-key\nvalue = env:BB_TEST_NO_SUCH_VAR\n' \
    "$T/oca.pem" "$HTTPS" >"$T/config.ini"
D=$("$PY" "$HELPERS/control-call.py" "$S/bottles/rt/control" status |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["daemon_pid"])')
n0=$(grep -c "policy reloaded" "$S/logs/rt.log")
kill -HUP "$D"
for _ in $(seq 200); do [ "$(grep -c "policy reloaded" "$S/logs/rt.log")" -gt "$n0" ] && break; sleep 0.05; done
log=$(cat "$S/logs/rt.log")
like "reload: the rule for a plain-tunnel host: says it cannot intercept, and the fix" "$log" \
    "reload: the rule 'keep.test:$HTTPS GET /hello' needs HTTPS to its host intercepted, which a reload cannot start.*refused \(needs-interception\) until you run: bot-bottle allow rt 'keep.test:$HTTPS GET /hello'"
like "reload: a new credential is not used, and said so" "$log" \
    "reload: the credential \"late\" for late.test:443 is new since the start and is not used.*restart the bottle"
like "reload: a new inspect host likewise" "$log" "reload: the inspect = in.test is new since the start"
like "after the reload: HTTPS to the rule's host: the CONNECT is refused needs-interception" \
    "$(inside curl -sv -o /dev/null "https://keep.test:$HTTPS/hello" 2>&1 | tr -d '\r')" \
    "< HTTP/1.1 403.*< X-Bottle-Block: needs-interception"
"$BB" allow rt "keep.test:$HTTPS GET /hello" >"$T/allow3.out" 2>&1
is "allow of the rule the reload brought: exit 0" "$?" 0
like "... it intercepts the host with a new CA" "$(cat "$T/allow3.out")" "now intercepted with a new CA"
is "... the rule's path over HTTPS: 200" "$(code "https://keep.test:$HTTPS/hello")" "200 "
is "... another path: 403 path-not-allowed" "$(code "https://keep.test:$HTTPS/headers")" \
    "403 path-not-allowed"
out=$("$BB" allow rt "keep.test:$HTTPS GET /hello" 2>&1); rc=$?
like "... a second allow of it: already in force" "$rc $out" "^[1-9].*already in force"
printf '[tls]\nextra_ca = %s\n' "$T/oca.pem" >"$T/config.ini" # (as at start, for the run below)

"$BB" stop rt >/dev/null 2>&1

# --- a wildcard rule given at start is intercepted from the start (it was refused before)
out=$(timeout 120 "$BB" run --backend namespace --no-default-config -c "$T/config.ini" \
    --allow "*.start.test:$HTTPS GET /hello" --allow-cidr 127.0.0.1/32 \
    --upstream-dns "127.0.0.1:$DNS" -- sh -c "
    curl -s -o /dev/null -w '%{http_code} %header{x-bottle-block};' https://b.start.test:$HTTPS/hello
    curl -s -o /dev/null -w '%{http_code} %header{x-bottle-block}' https://b.start.test:$HTTPS/headers" 2>"$T/start-wild.err")
is "a wildcard rule from the start: the allowed path 200, another 403 path-not-allowed" "$out" \
    "200 ;403 path-not-allowed"
done_testing

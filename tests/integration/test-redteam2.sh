#!/usr/bin/env bash
# Red-team round 2, credentials (docs/credentials.md) and exec, from inside the bottle:
# - an honest origin that reflects the credential's header must not hand the bottle the real
#   value, or any usable part of it, however the reflection is framed (rule 4): split across
#   reads, compressed, in a 1xx head, in Range pieces, to a later request, under another name;
# - the value under another variable of the bottle (env = / -e), or by exec -e;
# - a credential for port 443 over plain HTTP; [tls] extra_ca copying a host file whole;
# - exec's resource limits against the main command's.
# The origin is helpers/echo-origin.py on loopback; names resolve through a local DNS stub.
source "$(dirname "$0")/lib.sh"

need_bottles "red-team credential tests"

ECHO=$(free_port); DNS=$(free_port)
bg "$PY" "$HELPERS/echo-origin.py" --port "$ECHO" --ready "$T/echo.ready"
bg "$PY" "$HELPERS/fake-upstream.py" --dns "$DNS" --ready "$T/dns.ready" \
    --zone api.test=127.0.0.1 --zone other.test=127.0.0.1
wait_file "$T/echo.ready" || { echo "Bail out! echo origin did not start"; exit 1; }
wait_file "$T/dns.ready" || { echo "Bail out! DNS stub did not start"; exit 1; }

WS=$T/ws
mkdir -p "$WS"
# a value with no piece in common with the placeholder (bb-cred-api-<hex>)
REAL=sk-REAL-QRSTUVWXYZ-mnopqrstuvwxyz
export BB_TEST_API_KEY=$REAL
# any 6 consecutive characters of the value but its first two
PIECES=$(for ((i = 2; i + 6 <= ${#REAL}; i++)); do printf '%s|' "${REAL:i:6}"; done)
PIECES=${PIECES%|}
run() {
    (cd "$WS" && timeout 120 "$BB" run --backend namespace --allow "api.test:$ECHO" \
        --allow "other.test:$ECHO" \
        --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" \
        --credential "api:api.test:$ECHO:x-api-key:env:BB_TEST_API_KEY" "$@")
}
got() { tr -d '\0' <"$WS/out-$1" 2>/dev/null; }

cat >"$WS/inside.sh" <<'EOF'
u=http://api.test:$ECHO
c() { curl -s --max-time 20 -H "X-Api-Key: $BB_TEST_API_KEY" "$@"; }
# a reflection that arrives in two reads, the first ending inside the value
c "$u/stream?split=20" >out-stream
# ... compressed because the bottle asked for it
c -H 'Accept-Encoding: gzip' "$u/gzip" >out-gzip
# ... in an interim (1xx) response
c -i "$u/hints" >out-hints
# ... a few bytes at a time with Range requests
for a in 4 10 16 22 28; do c -H "Range: bytes=$a-$((a + 5))" "$u/range"; echo; done >out-range
# ... later, to a request that carries no credential (an origin that shows what it received),
# on the credential's host and under another name of the same server
c -o /dev/null "$u/record"
curl -s --max-time 20 "$u/last" >out-last
curl -s --max-time 20 "http://other.test:$ECHO/last" >out-last-other
# what still works: a stream that reflects nothing arrives whole, and keep-alive still does
c "$u/sse" >out-sse
c -o /dev/null -w '%{http_code} %{num_connects}\n' "$u/sse" -o /dev/null "$u/sse" >out-keepalive
# a response the origin encodes although asked not to is searched inflated, never unsearched
c -o /dev/null -w '%{http_code}\n' -H 'Accept-Encoding: gzip' "$u/always-gzip" >out-always-gzip
echo probes-done
EOF
out=$(run -e "ECHO=$ECHO" -- sh "$WS/inside.sh" 2>"$T/err")
like "the bottle ran the probes" "$out" "probes-done"
unlike "the real value is not on run's stderr" "$(cat "$T/err")" "$PIECES"
unlike "a reflection split across reads: not one piece of the value reaches the bottle" \
    "$(got stream)" "$PIECES"
unlike "a gzip-encoded reflection: no piece of the value" \
    "$("$PY" -c 'import sys,zlib
b=open(sys.argv[1],"rb").read()
try: b=zlib.decompress(b, 47)
except Exception: pass
print(b.decode("latin-1"))' "$WS/out-gzip")" "$PIECES"
unlike "a reflection in a 1xx interim response: no piece of the value" "$(got hints)" "$PIECES"
unlike "a reflection in Range pieces: no piece of the value" "$(got range)" "$PIECES"
unlike "a later response without a credential in its request: no piece of the value" \
    "$(got last)" "$PIECES"
unlike "... from another name of the same server: no piece of the value" \
    "$(got last-other)" "$PIECES"
is "a streamed response that reflects nothing arrives whole (the held tail too)" \
    "$(got sse)" "$(printf 'data: one\n\ndata: two\n\ntail-without-newline')"
is "... over one kept-alive connection" "$(got keepalive | tr '\n' ' ')" "200 1 200 0 "
# (gzip the proxy now inflates for the search and relays as sent; br and the rest stay a 502,
# test-cred-gzip)
is "a response gzip-encoded against the request's identity, reflecting nothing: searched, 200" \
    "$(got always-gzip)" "200"

# --- the value under another variable of the bottle: `env =` names the placeholder's variable,
# and -e passes the source variable (or another holds the same value, or holds it inside)
mkdir -p "$T/config/bot-bottle"
cat >"$T/config/bot-bottle/config.ini" <<EOF
[credential "api"]
host = api.test
port = $ECHO
header = x-api-key
value = env:BB_TEST_API_KEY
env = API_PLACEHOLDER
EOF
out=$(cd "$WS" && BB_TEST_COPY=$REAL timeout 120 "$BB" run --backend namespace \
    --upstream-dns "127.0.0.1:$DNS" -e BB_TEST_API_KEY -e BB_TEST_COPY \
    -e "BB_TEST_URL=https://u:$REAL@example.test/" -- \
    sh -c 'echo "src=$BB_TEST_API_KEY copy=$BB_TEST_COPY url=${BB_TEST_URL:-unset} ph=$API_PLACEHOLDER"' \
    2>"$T/envs.err")
unlike "-e of the env: source under another env =: the bottle never gets the value" "$out" "$PIECES"
like "... it gets the placeholder in its place (and in every variable that held the value)" \
    "$out" "src=bb-cred-api-[0-9a-f]{32} copy=bb-cred-api-[0-9a-f]{32} url=unset ph=bb-cred-api-"
like "... said on stderr" "$(cat "$T/envs.err")" "BB_TEST_URL holds its value; the variable is not passed"
rm -f "$T/config/bot-bottle/config.ini"

# --- a credential for port 443 (HTTPS) is never put into a plain-HTTP request to that port: it
# would cross the network in clear text (nothing needs to listen: the refusal comes first)
out=$(cd "$WS" && timeout 120 "$BB" run --backend namespace --allow api.test \
    --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" \
    --credential "web:api.test:x-api-key:env:BB_TEST_API_KEY" -- \
    sh -c 'curl -s --max-time 20 -o /dev/null -w "%{http_code} %header{x-bottle-block}\n" \
        -H "X-Api-Key: $BB_TEST_API_KEY" http://api.test:443/' 2>"$T/plain443.err")
is "the placeholder over plain HTTP to the credential's port 443: 403 credential-misuse" \
    "$out" "403 credential-misuse"

# --- [tls] extra_ca in an approved project file: the host reads that file and puts it in the
# bottle's CA bundle. Only its certificates may go there: a host file holding a certificate
# and its private key (a combined PEM), or anything else, must not reach the bottle.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=corp test CA" -keyout "$T/corp.key" -out "$T/corp.crt" 2>/dev/null
{ cat "$T/corp.crt" "$T/corp.key"; echo "HOST-ONLY-SECRET-7f3e"; } >"$T/host-combined.pem"
mkdir -p "$T/proj"
cat >"$T/proj/bottle.ini" <<EOF
[egress]
inspect = api.test:443
[tls]
extra_ca = $T/host-combined.pem
EOF
(cd "$T/proj" && "$BB" trust >/dev/null 2>&1)
(cd "$T/proj" && timeout 120 "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" -- \
    sh -c 'cat /etc/ssl/bot-bottle/ca-bundle.crt >bundle.out' >"$T/ca.out" 2>&1)
is "a project with [tls] extra_ca runs" "$?" "0"
check "... its certificate is in the bottle's bundle" grep -qF "$(sed -n 2p "$T/corp.crt")" \
    "$T/proj/bundle.out"
unlike "... the private key next to it is not" "$(cat "$T/proj/bundle.out")" \
    "PRIVATE KEY|$(sed -n 2p "$T/corp.key" | cut -c1-40)"
unlike "... nor the rest of the host's file" "$(cat "$T/proj/bundle.out")" "HOST-ONLY-SECRET"

# --- exec: while the exec'd process starts it holds the supervisor's descriptors (sockets,
# the pty master of the main command, pidfds) until its execve; a process of the bottle must
# not be able to copy them (pidfd_getfd, or ptrace: the same permission) in that window.
cp "$BB_BUILD_DIR/tests/integration/fdgrab" "$WS/fdgrab"
grab() { # BACKEND EXECS: on the microVM, bottle-init's own descriptors (the host channel)
    local backend=$1 n=$2 stolen
    rm -f "$WS/stop" "$WS/grab.log"
    (cd "$WS" && timeout 200 "$BB" start --backend "$backend" --name rt2grab \
        --upstream-dns "127.0.0.1:$DNS" -- ./fdgrab grab.log >/dev/null 2>"$T/grab.err")
    is "$backend: start, a bottle running fdgrab" "$?" "0"
    for _ in $(seq "$n"); do (cd "$WS" && timeout 60 "$BB" exec rt2grab -- true >/dev/null 2>&1); done
    touch "$WS/stop"
    for _ in $(seq 200); do grep -q '^got=' "$WS/grab.log" 2>/dev/null && break; sleep 0.1; done
    (cd "$WS" && timeout 60 "$BB" stop rt2grab >/dev/null 2>&1)
    like "$backend: ... fdgrab ran to the end" "$(cat "$WS/grab.log" 2>/dev/null)" "got="
    # (after its execve, `true` opens its own libraries: those are the command's, not ours)
    stolen=$(grep '^pid' "$WS/grab.log" 2>/dev/null | grep -vE -- '-> (/usr/|/lib|/etc/ld\.so\.cache)')
    is "$backend: $n execs, the bottle got none of the descriptors of the process that started them" \
        "$stolen" ""
    rm -f "$WS/stop"
}
grab namespace 30
grab microvm 10

# --- exec: another command in a running bottle gets the main command's confinement, its
# resource limits included (bottle-init halves RLIMIT_SIGPENDING and RLIMIT_MSGQUEUE so a
# bottle cannot take the host user's whole budget of queued signals and message queues)
(cd "$WS" && timeout 60 "$BB" start --backend namespace --name rt2exec \
    --upstream-dns "127.0.0.1:$DNS" --allow "api.test:$ECHO" \
    --credential "api:api.test:$ECHO:x-api-key:env:BB_TEST_API_KEY" -- sleep 1000 \
    >/dev/null 2>"$T/start.err")
is "start: a detached bottle" "$?" "0"
limits=$(cd "$WS" && timeout 30 "$BB" exec rt2exec -- sh -c \
    'main=$(cat /proc/1/task/1/children | cut -d" " -f1)
     for f in limits status; do grep -E "^(Max|Cap|NoNewPrivs|Seccomp)" /proc/$main/$f >main.$f
         grep -E "^(Max|Cap|NoNewPrivs|Seccomp)" /proc/self/$f >self.$f; done
     diff main.limits self.limits && diff main.status self.status && echo same' 2>&1)
is "exec'd: the same limits, capabilities, no_new_privs and seccomp as the main command" \
    "$(tr -d '\r' <<<"$limits")" "same"
# exec -e VAR of a credential's variable: run would put the placeholder there; exec must not
# carry the host's real value into the bottle either
out=$(cd "$WS" && timeout 30 "$BB" exec rt2exec -e BB_TEST_API_KEY -- sh -c 'echo "v=$BB_TEST_API_KEY"' 2>&1)
rc=$?
unlike "exec -e of a credential's variable: the real value does not enter the bottle" "$out" "$PIECES"
is "... refused (125)" "$rc" "125"
like "... saying why" "$out" "BB_TEST_API_KEY holds the placeholder of a credential"
out=$(cd "$WS" && timeout 30 "$BB" exec rt2exec -- sh -c 'echo "v=$BB_TEST_API_KEY"' 2>&1)
like "... without -e the command has the placeholder" "$out" "v=bb-cred-api-[0-9a-f]{32}"
(cd "$WS" && timeout 30 "$BB" stop rt2exec >/dev/null 2>&1)

done_testing

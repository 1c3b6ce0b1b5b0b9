#!/usr/bin/env bash
# The upstream connection pool (docs/proxy.md, "Upstream connection pool"): intercepted HTTPS
# through the egress daemon on the host's loopback, one curl process (one client connection)
# per request, against a TLS origin that logs every connection it accepts (with its SNI) and
# every request it reads on it (helpers/pool-origin.py).
source "$(dirname "$0")/lib.sh"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bb pool test CA" -keyout "$T/oca.key" -out "$T/oca.pem" >/dev/null 2>&1
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=a.test" \
    -addext "subjectAltName=DNS:a.test,DNS:b.test" -keyout "$T/o.key" -out "$T/o.csr" >/dev/null 2>&1
openssl x509 -req -in "$T/o.csr" -CA "$T/oca.pem" -CAkey "$T/oca.key" -CAcreateserial -days 2 \
    -copy_extensions copy -out "$T/o.pem" >/dev/null 2>&1
[ -s "$T/o.pem" ] || { echo "Bail out! cannot make the test certificates"; exit 1; }

OP=$(free_port) DNS=$(free_port) PX=$(free_port) PX2=$(free_port)
bg "$PY" "$HELPERS/pool-origin.py" --port "$OP" --cert "$T/o.pem" --key "$T/o.key" \
    --log "$T/o.log" --ready "$T/o.ready"
bg "$PY" "$HELPERS/fake-upstream.py" --dns "$DNS" --zone a.test=127.0.0.1 \
    --zone b.test=127.0.0.1 --ready "$T/dns.ready"
wait_file "$T/o.ready" && wait_file "$T/dns.ready" || { echo "Bail out! origin did not start"; exit 1; }

printf '[egress]\ninspect = a.test:%s\ninspect = b.test:%s\n[tls]\nextra_ca = %s\n' "$OP" "$OP" \
    "$T/oca.pem" >"$T/bb.ini"
# (BB_TEST_START_TRIES: more 50 ms waits for a daemon started under valgrind, BB=a wrapper)
start_egress() { # PORT READYFILE EXTRA-OPTIONS...
    local port=$1 ready=$2
    shift 2
    bg "$BB" egress --no-default-config -c "$T/bb.ini" --listen "127.0.0.1:$port" \
        --allow "a.test:$OP" --allow "b.test:$OP" --allow-cidr 127.0.0.1/32 \
        --upstream-dns "127.0.0.1:$DNS" --ready-fd 3 "$@" 3>"$ready" 2>>"$T/egress.err"
    for _ in $(seq ${BB_TEST_START_TRIES:-100}); do grep -q END "$ready" 2>/dev/null && return 0; sleep 0.05; done
    return 1
}
start_egress "$PX" "$T/bb.ready" --audit "$T/audit.log" ||
    { echo "Bail out! egress did not start: $(cat "$T/egress.err")"; exit 1; }
sed -n '2,$p' "$T/bb.ready" >"$T/ca.pem"

get() { # PROXYPORT HOST PATH [CURL-OPTIONS...]: prints the status and the body
    local px=$1 host=$2 path=$3
    shift 3
    curl -s -m 20 -x "127.0.0.1:$px" --cacert "$T/ca.pem" -w ' %{http_code}' "$@" \
        "https://$host:$OP$path"
}
accepts() { grep -c "^accept " "$T/o.log"; }
accepts_for() { grep -c "^accept [0-9]* $1\$" "$T/o.log"; }
reqs() { grep -cE "^req [0-9]+ $1 $2 " "$T/o.log"; }

# --- reuse across client connections
out=""
for i in 1 2 3 4 5; do out="$out$(get "$PX" a.test /hello)|"; done
is "five GETs on five client connections all answered" "$out" "hello
 200|hello
 200|hello
 200|hello
 200|hello
 200|"
is "... over one upstream connection (the origin accepted one)" "$(accepts_for a.test)" 1
is "... four of the five CONNECTs audited as riding a pooled connection" \
    "$(grep '"kind":"connect"' "$T/audit.log" | grep -c '"reason":"intercepted".*"reused":true')" 4

# --- a name never rides another name's connection (same address and port)
out=$(get "$PX" b.test /hello)
like "a GET to b.test is answered" "$out" 'hello.* 200'
is "... on a connection of its own, opened for b.test (SNI)" "$(accepts_for b.test)" 1
is "... the origin saw no request whose Host is not its connection's name" "$(awk '
    $1 == "accept" { sni[$2] = $3 }
    $1 == "req" { h = $5; sub(/:[0-9]+$/, "", h); if (h != sni[$2]) bad++ }
    END { print bad + 0 }' "$T/o.log")" 0
get "$PX" a.test /hello >/dev/null
is "... and a.test still rides its own" "$(accepts_for a.test)" 1

# --- the origin closes a pooled connection while it is idle: no client-visible error
n0=$(accepts)
like "a GET whose connection the origin closes 0.3 s later" "$(get "$PX" a.test /idle-close)" ' 200'
c=$(grep -E '^req [0-9]+ GET /idle-close ' "$T/o.log" | cut -d' ' -f2)
wait_grep "^eof $c\$" "$T/o.log"
sleep 0.2
like "... the next GET is answered" "$(get "$PX" a.test /hello)" 'hello.* 200'
is "... on a new upstream connection" "$(accepts)" $((n0 + 1))

# --- the origin closes a pooled connection just as a request arrives on it (the race)
like "a GET that leaves a connection that will die on its next request" \
    "$(get "$PX" a.test /die-next)" ' 200'
n0=$(accepts)
g0=$(reqs GET /hello)
like "... a GET on it is answered all the same" "$(get "$PX" a.test /hello)" 'hello.* 200'
is "... sent once more, on a new connection" "$(reqs GET /hello)" $((g0 + 2))
is "... (one new connection)" "$(accepts)" $((n0 + 1))
like "a GET that leaves a connection that will die on its next request" \
    "$(get "$PX" a.test /die-next)" ' 200'
out=$(get "$PX" a.test /post -X POST -d 'pay=1')
like "... a POST on it fails with 502, not sent again" "$out" ' 502'
is "... the origin saw the POST once" "$(reqs POST /post)" 1
like "a GET that leaves a connection that will die on its next request" \
    "$(get "$PX" a.test /die-next)" ' 200'
out=$(get "$PX" a.test /post0 -X POST)
like "... a POST with no body on it fails with 502 too (not idempotent)" "$out" ' 502'
is "... the origin saw it once" "$(reqs POST /post0)" 1

# --- what must not go back to the pool
get "$PX" a.test /hello >/dev/null # one clean connection in the pool
n0=$(accepts)
like "a response with Connection: close" "$(get "$PX" a.test /close-keep)" 'closing.* 200'
like "... the next GET is answered" "$(get "$PX" a.test /hello)" 'hello.* 200'
is "... on a new connection (the origin left the old one open: it was not pooled)" \
    "$(accepts)" $((n0 + 1))
n0=$(accepts)
get "$PX" a.test /big --max-filesize 1000 >/dev/null
c=$(grep -E '^req [0-9]+ GET /big ' "$T/o.log" | tail -1 | cut -d' ' -f2)
check "a response whose body the client did not read: its connection is closed" \
    wait_grep "^eof $c\$" "$T/o.log"
like "... the next GET is answered" "$(get "$PX" a.test /hello)" 'hello.* 200'
is "... on a new connection" "$(accepts)" $((n0 + 1))

# --- the idle timeout, and no pool at all
start_egress "$PX2" "$T/bb2.ready" --upstream-idle-ms 300 --audit "$T/audit2.log" ||
    { echo "Bail out! egress did not start: $(cat "$T/egress.err")"; exit 1; }
sed -n '2,$p' "$T/bb2.ready" >"$T/ca.pem"
like "a GET through a daemon with --upstream-idle-ms 300" "$(get "$PX2" a.test /hello)" ' 200'
c=$(grep -E '^req [0-9]+ GET /hello ' "$T/o.log" | tail -1 | cut -d' ' -f2)
check "... its idle upstream connection is closed by the daemon" wait_grep "^eof $c\$" "$T/o.log"
unlike "... and the other daemon's pooled connection is still open" \
    "$(grep -E "^eof $(grep -E '^req [0-9]+ GET /hello ' "$T/o.log" | tail -2 | head -1 |
        cut -d' ' -f2)\$" "$T/o.log")" eof
PX3=$(free_port)
start_egress "$PX3" "$T/bb3.ready" --upstream-pool 0 --audit "$T/audit3.log" ||
    { echo "Bail out! egress did not start: $(cat "$T/egress.err")"; exit 1; }
sed -n '2,$p' "$T/bb3.ready" >"$T/ca.pem"
n0=$(accepts)
get "$PX3" a.test /hello >/dev/null
get "$PX3" a.test /hello >/dev/null
is "--upstream-pool 0: each client connection opens its own" "$(accepts)" $((n0 + 2))
unlike "no daemon logged an error" "$(cat "$T/egress.err")" 'error|assert'

done_testing

#!/usr/bin/env bash
# WebSocket upgrades through the egress proxy (src/proxy/upgrade.c): a GET asking for websocket
# gets the origin's 101 and then a relay of bytes both ways, in plain HTTP and inside an
# intercepted TLS session, with the credential put into the upgrade request (Codex's Responses
# API is a websocket to its credential host), compression refused (Sec-WebSocket-Extensions not
# forwarded, so what comes back can be searched), and an origin that sends a credential's value
# back cut off. Fake origins on the host's loopback with a test CA ([tls] extra_ca).
source "$(dirname "$0")/lib.sh"

need_bottles "WebSocket upgrade tests"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bb ws test CA" -keyout "$T/oca.key" -out "$T/oca.pem" >/dev/null 2>&1
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=ws.test" \
    -addext "subjectAltName=DNS:ws.test" -keyout "$T/srv.key" -out "$T/srv.csr" >/dev/null 2>&1
openssl x509 -req -in "$T/srv.csr" -CA "$T/oca.pem" -CAkey "$T/oca.key" -CAcreateserial \
    -days 2 -copy_extensions copy -out "$T/srv.pem" >/dev/null 2>&1
[ -s "$T/srv.pem" ] || { echo "Bail out! cannot make the test certificates"; exit 1; }

WSS=$(free_port) WSP=$(free_port) DNS=$(free_port)
bg "$PY" "$HELPERS/ws-origin.py" --port "$WSS" --cert "$T/srv.pem" --key "$T/srv.key" \
    --log "$T/wss.log" --ready "$T/wss.ready"
bg "$PY" "$HELPERS/ws-origin.py" --port "$WSP" --log "$T/wsp.log" --ready "$T/wsp.ready"
bg "$PY" "$HELPERS/fake-upstream.py" --dns "$DNS" --zone ws.test=127.0.0.1 \
    --zone plain.test=127.0.0.1 --ready "$T/dns.ready"
for f in wss wsp dns; do
    wait_file "$T/$f.ready" || { echo "Bail out! $f did not start"; exit 1; }
done

REAL=ws-REAL-token-71c3
export BB_WS_KEY=$REAL
cat >"$T/config.ini" <<INI
[tls]
extra_ca = $T/oca.pem
[credential "ws"]
host = ws.test
port = $WSS
header = authorization
value = env:BB_WS_KEY
INI
mkdir -p "$T/ws"
cat >"$T/ws/client.py" <<'PYEOF'
import os, socket, ssl, sys, urllib.parse
mode, host, port, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

def read_head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        d = s.recv(4096)
        if not d:
            return data, b""
        data += d
    head, rest = data.split(b"\r\n\r\n", 1)
    return head, rest

px = urllib.parse.urlsplit(os.environ["HTTPS_PROXY" if mode == "wss" else "HTTP_PROXY"])
s = socket.create_connection((px.hostname, px.port), timeout=20)
target = f"http://{host}:{port}{path}"
if mode == "wss":
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head, _ = read_head(s)
    if b" 200 " not in head.split(b"\r\n")[0]:
        print("connect:", head.split(b"\r\n")[0].decode())
        sys.exit(0)
    s = ssl.create_default_context().wrap_socket(s, server_hostname=host)
    target = path
auth = "Authorization: Bearer %s\r\n" % os.environ["BB_WS_KEY"] if mode == "wss" else ""
s.sendall((f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade\r\n"
           "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"
           f"{auth}\r\n").encode())
head, rest = read_head(s)
lines = head.decode("latin-1").split("\r\n")
print("status:", lines[0])
print("upgrade-fields:", "connection: upgrade" in head.decode().lower() and
      "upgrade: websocket" in head.decode().lower())
if " 101 " in lines[0]:
    s.sendall(b"ping-1234")
    got = rest
    try:
        while b"ping-1234" not in got:
            d = s.recv(4096)
            if not d:
                break
            got += d
    except OSError as e:
        got += b" (" + str(e).encode() + b")"
    print("after:", got.decode(errors="replace").replace("\n", " "))
PYEOF
run() {
    (cd "$T/ws" && timeout 120 "$BB" run --backend namespace --no-default-config -c "$T/config.ini" \
        -a "ws.test:$WSS" -a "plain.test:$WSP" --allow-cidr 127.0.0.1/32 \
        --upstream-dns "127.0.0.1:$DNS" "$@")
}
out=$(run --name wsb -- sh -c "
    echo '== wss'; python3 client.py wss ws.test $WSS /chat
    echo '== ws'; python3 client.py ws plain.test $WSP /chat
    echo '== reflect'; python3 client.py wss ws.test $WSS /reflect
    echo '== other'; python3 client.py ws plain.test $WSP /other-protocol
    echo '== no-upgrade'; python3 client.py ws plain.test $WSP /no-upgrade
    echo '== env'; echo \"key=\$BB_WS_KEY\"
" 2>"$T/err")
section() { awk -v s="== $1" '$0 == s {f = 1; next} /^== / {f = 0} f' <<<"$out"; }
diag "$(cat "$T/err")"
like "wss to a credential host: the origin's 101 reaches the client" "$(section wss)" \
    "status: HTTP/1.1 101 Switching Protocols"
like "... with the upgrade fields" "$(section wss)" "upgrade-fields: True"
like "... and bytes flow both ways after it (inside the intercepted session)" "$(section wss)" \
    "after: ping-1234"
like "... the origin got the upgrade request with the real credential" "$(cat "$T/wss.log")" \
    "hdr Authorization: Bearer $REAL"
like "... and the upgrade fields" "$(cat "$T/wss.log")" "hdr Upgrade: websocket"
unlike "... but no compression offer (what comes back must stay searchable)" \
    "$(cat "$T/wss.log")" "Sec-WebSocket-Extensions"
like "the bottle only had the placeholder" "$(section env)" "key=bb-cred-ws-[0-9a-f]{32}"
like "plain ws:// through the proxy: 101 and a relay" "$(section ws)" "after: ping-1234"
unlike "an origin that sends the credential's value back after the 101 is cut off" \
    "$(section reflect)" "$REAL|ping-1234"
like "... audited as credential-reflected" "$("$BB" logs wsb --json 2>/dev/null)" \
    '"reason":"credential-reflected"'
like "a 101 to another protocol than the one asked for is a 502" "$(section other)" \
    "status: HTTP/1.1 502"
like "an origin that does not switch answers as usual" "$(section no-upgrade)" "status: HTTP/1.1 200"
like "the upgrade is audited with its 101" "$("$BB" logs wsb --json 2>/dev/null)" \
    '"host":"ws.test".*"status":101'
unlike "the real value is not in the audit log" "$("$BB" logs wsb --json 2>/dev/null)" "$REAL"

done_testing

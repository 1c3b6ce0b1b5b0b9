#!/usr/bin/env bash
# Red-team round 4: the surfaces added last, attacked from inside a bottle (namespace backend),
# against a hostile origin on loopback (helpers/redteam4-origin.py) that knows the credential's
# real value and plays it back in the ways the proxy's reflection search must catch.
# - WebSocket relay: a reflection split across origin writes more than UPGRADE_HOLD_MS apart
#   (its first 20 bytes, a pause, the rest) used to leave its first part with the bottle: the
#   100 ms release let held bytes go whatever they were. A held beginning of a value of 8+
#   bytes (CRED_PREFIX_LONG) now waits until the origin resolves it, and an origin that ends on
#   one never delivers it; a short one still goes after 100 ms, so a stream is not stalled.
#   Also: 101s not asked for (POST, a body, no upgrade fields), a request pipelined behind the
#   upgrade, a placeholder in frames to another host.
# - Transfer-Encoding gzip from a credential host: the chunked framing was searched, its gzip
#   data not, and the coding reached the bottle, which can inflate it: refused now (502
#   credential-unscannable) like a Content-Encoding the search cannot read.
# - Content-Encoding lists, a preset dictionary, a stream cut short, gzip members.
# - Basic credentials: placeholders in both fields, two Authorization fields, encodings the
#   proxy does not decode, another host's placeholder.
# - Agent keys: nothing a bottle or a project file sets moves the key to another host.
source "$(dirname "$0")/lib.sh"

need_bottles "red-team round 4 tests"

REAL=rt4-REAL-0123456789abcdef-secret-tail
OTHER=rt4-OTHER-fedcba9876543210-value
P=$(free_port) DNS=$(free_port)
bg "$PY" "$HELPERS/redteam4-origin.py" --port "$P" --value "$REAL" --log "$T/origin.log" \
    --ready "$T/origin.ready"
bg "$PY" "$HELPERS/dns-stub.py" serve --port "$DNS" --log "$T/dns.log" --ready "$T/dns.ready"
for f in origin dns; do
    wait_file "$T/$f.ready" || { echo "Bail out! $f did not start"; exit 1; }
done
# (dns-stub answers allprivate.* with 127.0.0.1)
CH=allprivate.cred.test OH=allprivate.other.test
export RT4_KEY=$REAL RT4_OTHER=$OTHER
cat >"$T/config.ini" <<INI
[credential "rt"]
host = $CH
port = $P
header = authorization
value = env:RT4_KEY
[credential "ot"]
host = $OH
port = $P
header = x-other-key
value = env:RT4_OTHER
INI
mkdir -p "$T/ws"
cat >"$T/ws/c.py" <<'PYEOF'
# c.py HOST PORT REQUEST [SECONDS]: REQUEST (Python escapes; PH_RT/PH_OT become the
# placeholders) through the bottle's proxy; prints each piece received with the time since
# the first one ("+T.TTT repr"), then "end" at the close (or "timeout").
import base64, os, re, socket, sys, time, urllib.parse, zlib
host, port, req = sys.argv[1], int(sys.argv[2]), sys.argv[3]
wait = float(sys.argv[4]) if len(sys.argv) > 4 else 8
req = req.replace("PH_RT", os.environ["RT4_KEY"]).replace("PH_OT", os.environ["RT4_OTHER"])
req = req.encode().decode("unicode_escape").encode("latin-1")
# B64{...}: the base64 of what is between the braces; LONG: 7000 bytes of 'u'
req = req.replace(b"LONG", b"u" * 7000)
req = re.sub(rb"B64\{([^}]*)\}", lambda m: base64.b64encode(m.group(1)), req)
px = urllib.parse.urlsplit(os.environ["HTTP_PROXY"])
s = socket.create_connection((px.hostname, px.port), timeout=wait)
s.sendall(req)
t0 = None
try:
    while True:
        d = s.recv(65536)
        if not d:
            print("end")
            break
        now = time.monotonic()
        t0 = t0 or now
        print("+%.3f %r" % (now - t0, d))
        if b"permessage-deflate" in d and b"\r\n\r\n" in d:  # what the bottle can inflate
            frame = d.split(b"\r\n\r\n", 1)[1] or s.recv(65536)
            print("frame %r" % frame)
            print("inflated", zlib.decompressobj(-15).decompress(frame[2:] + b"\x00\x00\xff\xff"))
except socket.timeout:
    print("timeout")
except OSError as e:
    print("error", e)
PYEOF
ws_get() { # ws_get HOST PATH: the upgrade request
    printf 'GET http://%s:%s%s HTTP/1.1\\r\\nHost: %s:%s\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\nAuthorization: Bearer PH_RT\\r\\n\\r\\n' \
        "$1" "$P" "$2" "$1" "$P"
}
# (the upgrade to the other host carries no credential)
ws_other() {
    printf 'GET http://%s:%s%s HTTP/1.1\\r\\nHost: %s:%s\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n' \
        "$OH" "$P" "$1" "$OH" "$P"
}
req() { # req METHOD HOST PATH EXTRA-FIELDS [BODY]
    printf '%s http://%s:%s%s HTTP/1.1\\r\\nHost: %s:%s\\r\\n%sConnection: close\\r\\n\\r\\n%s' \
        "$1" "$2" "$P" "$3" "$2" "$P" "$4" "${5-}"
}
{
    echo 'set -u'
    q() { printf "echo '== %s'; python3 c.py %s %s %q %s\n" "$1" "$2" "$P" "$3" "${4-}"; }
    q split-long "$CH" "$(ws_get "$CH" /ws-split-long)"
    q split-b64 "$CH" "$(ws_get "$CH" /ws-split-b64)"
    q frag "$CH" "$(ws_get "$CH" /ws-frag)"
    q split-short "$CH" "$(ws_get "$CH" /ws-split-short)"
    q eof-long "$CH" "$(ws_get "$CH" /ws-eof-long)"
    q stream "$CH" "$(ws_get "$CH" /ws-stream)"
    q ws-ext "$CH" "$(ws_get "$CH" /ws-ext)" 4
    q post-upgrade "$OH" "$(printf 'POST http://%s:%s/ws-echo HTTP/1.1\\r\\nHost: %s:%s\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\nContent-Length: 0\\r\\n\\r\\n' "$OH" "$P" "$OH" "$P")" 4
    q body-upgrade "$OH" "$(printf 'GET http://%s:%s/ws-echo HTTP/1.1\\r\\nHost: %s:%s\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\nContent-Length: 5\\r\\n\\r\\nhello' "$OH" "$P" "$OH" "$P")" 4
    q chunked-upgrade "$OH" "$(printf 'GET http://%s:%s/ws-echo HTTP/1.1\\r\\nHost: %s:%s\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n5\\r\\nhello\\r\\n0\\r\\n\\r\\n' "$OH" "$P" "$OH" "$P")" 4
    q cl0-request "$OH" "$(req POST "$OH" /x 'Content-Length: 0\r\n')" 4
    q unasked "$OH" "$(req GET "$OH" /ws-echo '')" 4
    q pipelined "$OH" "$(ws_other /ws-echo)$(req GET "$CH" /after 'Authorization: Bearer PH_RT\r\n')" 4
    q frames-other "$OH" "$(ws_other /ws-echo)frame: Bearer PH_RT PH_OT\\n" 4
    q te-gzip "$CH" "$(req GET "$CH" /te-gzip 'Authorization: Bearer PH_RT\r\n')" 4
    q te-gzip-close "$CH" "$(req GET "$CH" /te-gzip-close 'Authorization: Bearer PH_RT\r\n')" 4
    q ce-twice "$CH" "$(req GET "$CH" /ce-twice 'Authorization: Bearer PH_RT\r\n')" 4
    q ce-id-gzip "$CH" "$(req GET "$CH" /ce-id-gzip 'Authorization: Bearer PH_RT\r\n')" 4
    q ce-members "$CH" "$(req GET "$CH" /ce-split-members 'Authorization: Bearer PH_RT\r\n')" 4
    q ce-fname "$CH" "$(req GET "$CH" /ce-fname 'Authorization: Bearer PH_RT\r\n')" 4
    q ce-dict "$CH" "$(req GET "$CH" /ce-dict 'Authorization: Bearer PH_RT\r\n')" 4
    q ce-truncated "$CH" "$(req GET "$CH" /ce-truncated 'Authorization: Bearer PH_RT\r\n')" 4
    b() { q "$1" "${3:-$CH}" "$(req GET "${3:-$CH}" "/$1" "$2")" 4; }
    b basic-user 'Authorization: Basic B64{PH_RT:pw}\r\n'
    b basic-both 'Authorization: Basic B64{PH_RT:PH_RT}\r\n'
    b basic-two-fields 'Authorization: Basic B64{u:PH_RT}\r\nAuthorization: Basic B64{v:PH_RT}\r\n'
    b basic-raw-and-basic 'Authorization: Bearer PH_RT\r\nAuthorization: Basic B64{v:PH_RT}\r\n'
    b basic-other-host 'Authorization: Basic B64{u:PH_RT}\r\n' "$OH"
    b basic-other-cred 'X-Other-Key: Basic B64{u:PH_OT}\r\n'
    b basic-other-field 'X-Api-Key: Basic B64{u:PH_RT}\r\n'
    b basic-space 'Authorization: Basic B64{u:PH_RT} \t\r\n'
    b basic-badpad 'Authorization: Basic B64{u:PH_RT}===\r\n'
    b basic-nonascii 'Authorization: Basic B64{\xff\xfe:PH_RT}\r\n'
    b basic-long 'Authorization: Basic B64{LONG:PH_RT}\r\n'
    # (last: the origin keeps this connection and serves nothing more on it)
    q cl0-response "$OH" "$(req GET "$OH" /empty '')" 4
} >"$T/ws/probes.sh"
out=$(cd "$T/ws" && timeout 300 "$BB" run --backend namespace --no-default-config -c "$T/config.ini" \
    -a "$CH:$P" -a "$OH:$P" --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" \
    --name rt4 -- sh probes.sh 2>"$T/err")
[ -n "${RT4_DUMP:-}" ] && { printf "%s\n" "$out" >"$RT4_DUMP"; cp "$T/origin.log" "$RT4_DUMP.origin"; cp "$T/err" "$RT4_DUMP.err"; }
section() { awk -v s="== $1" '$0 == s {f = 1; next} /^== / {f = 0} f' <<<"$out"; }
diag "$(tail -5 "$T/err")"
logs=$("$BB" logs rt4 --json 2>/dev/null)
B64_REAL=$(printf 'x:%s' "$REAL" | base64 -w0)
unlike "nothing the bottle received holds the value or its base64" "$out" "$REAL|${B64_REAL:4:20}"

# --- WebSocket relay ---
sec=$(section split-long)
unlike "ws: a reflection split 1.5 s apart: not one byte of the value's first 8 reaches the bottle" \
    "$sec" "${REAL:0:8}"
is "... the connection is cut when the rest arrives" "$(tail -1 <<<"$sec")" end
sec=$(section split-b64)
unlike "ws: the same with the value's base64 (a reflected Basic header)" "$sec" "${B64_REAL:4:8}"
sec=$(section frag)
unlike "ws: a value split across two fragments of a message (a ping between): none of it out" \
    "$sec" "${REAL:0:8}"
is "... the connection is cut when the second fragment arrives" "$(tail -1 <<<"$sec")" end
sec=$(section split-short)
like "ws: a short beginning (5 bytes) is let go after 100 ms (a stream is not stalled)" "$sec" \
    "${REAL:0:5}"
unlike "... but the value's rest never follows: cut" "$sec" "${REAL:5:5}"
sec=$(section eof-long)
unlike "ws: an origin that closes on 20 bytes of the value: they are dropped" "$sec" "${REAL:0:8}"
is "... and the relay ends" "$(tail -1 <<<"$sec")" end
like "... what came before them arrived" "$sec" "reflect: "
sec=$(section stream)
t1=$(sed -n "s/^+\([0-9.]*\) .*${REAL:0:4}.*/\1/p" <<<"$sec")
t2=$(sed -n 's/^+\([0-9.]*\) .*m3 end.*/\1/p' <<<"$sec")
diag "stream: m2 (ending in 4 bytes of the value) at +${t1:-?} s, m3 at +${t2:-?} s (sent 2.5 s apart)"
check "ws: an interactive message ending in a short beginning arrives long before the next one" \
    "$PY" -c 'import sys; sys.exit(not (float(sys.argv[2]) - float(sys.argv[1]) > 1.2))' "${t1:-9}" "${t2:-0}"
like "ws: reflections are audited" "$logs" '"reason":"credential-reflected"'

# --- upgrades not asked for, smuggled, pipelined ---
like "ws: a 101 choosing compression the client never offered is refused (502)" \
    "$(section ws-ext)" "HTTP/1.1 502.*credential-unscannable"
unlike "... the bottle cannot inflate the value out of its frames" "$(section ws-ext)" "inflated.*$REAL"
like "a POST with upgrade fields: the origin's 101 is refused (502)" "$(section post-upgrade)" \
    "HTTP/1.1 502"
like "a GET with upgrade fields and a body: 502, the body never relayed as frames" \
    "$(section body-upgrade)" "HTTP/1.1 502"
like "a chunked GET with upgrade fields: 502" "$(section chunked-upgrade)" "HTTP/1.1 502"
like "a request with Content-Length: 0 is answered (it used to wait for a body forever)" \
    "$(section cl0-request)" "HTTP/1.1 200"
like "a response with Content-Length: 0 is complete with its head" "$(section cl0-response)" \
    "HTTP/1.1 200.*end"
like "a 101 to a request that asked for none: 502" "$(section unasked)" "HTTP/1.1 502"
unlike "... none of those reached the origin with upgrade fields" \
    "$(grep -A8 'req POST /ws-echo' "$T/origin.log")" "hdr Upgrade"
sec=$(section pipelined)
like "a request pipelined behind an upgrade: relayed as frames (the 101 came)" "$sec" "101"
unlike "... its placeholder is not substituted (frames are not requests)" \
    "$(grep '^frame' "$T/origin.log")" "$REAL"
like "... the origin got it as it was, the placeholder worthless" "$(grep '^frame' "$T/origin.log")" \
    "Bearer bb-cred-rt-[0-9a-f]{32}"
like "placeholders in frames to another host: relayed as they are (no value)" \
    "$(section frames-other)" "frame: Bearer bb-cred-rt-[0-9a-f]{32} bb-cred-ot-"

# --- codings of a credential host's responses ---
like "Transfer-Encoding: gzip, chunked from a credential host: 502 credential-unscannable" \
    "$(section te-gzip)" "HTTP/1.1 502.*credential-unscannable"
like "Transfer-Encoding: gzip (until close): 502 credential-unscannable" \
    "$(section te-gzip-close)" "HTTP/1.1 502.*credential-unscannable"
like "Content-Encoding: gzip, gzip: refused (502)" "$(section ce-twice)" "HTTP/1.1 502"
like "Content-Encoding: identity, gzip: refused (502)" "$(section ce-id-gzip)" "HTTP/1.1 502"
# (cut: split-long, split-b64, frag, split-short, ce-members, ce-fname, ce-truncated; eof-long
# is dropped)
is "a reflection split across two gzip members, or in a gzip stream cut short: cut (7 cuts in all)" \
    "$(grep -c "sent the real value of credential 'rt' back" "$T/err")" 7
unlike "gzip with the value as the header's file name (FNAME, not inflated data): cut" \
    "$(section ce-fname)" "${REAL:0:12}"
like "a deflate stream with a preset dictionary: cut (credential-unscannable)" \
    "$(cat "$T/err")" "not valid gzip or deflate"

# --- Basic credentials ---
hdr_of() { grep -A12 "^req GET /$1\$" "$T/origin.log" | grep -i '^hdr authorization' | head -2; }
like "Basic, placeholder as the user: swapped for the value" "$(hdr_of basic-user)" \
    "Basic $(printf '%s:pw' "$REAL" | base64 -w0)"
for c in basic-both basic-two-fields basic-raw-and-basic basic-other-host basic-other-cred \
    basic-other-field; do
    like "Basic misuse ($c): 403 credential-misuse" "$(section $c)" "403.*credential-misuse"
done
like "Basic with trailing whitespace: swapped (the token is the same)" "$(hdr_of basic-space)" \
    "Basic $(printf 'u:%s' "$REAL" | base64 -w0)"
unlike "Basic with bad padding: not decoded, so not swapped" "$(hdr_of basic-badpad)" \
    "$(printf 'u:%s' "$REAL" | base64 -w0)"
like "Basic with a non-ASCII user: swapped, bytes kept" "$(hdr_of basic-nonascii)" \
    "Basic $(printf '\xff\xfe:%s' "$REAL" | base64 -w0)"
like "Basic too long to decode: answered, not swapped" "$(section basic-long)" "HTTP/1.1 (4[0-9][0-9]|200)"
unlike "... and no value in its request" "$(hdr_of basic-long)" "$(printf 'uuu:%s' "$REAL" | base64 -w0 | cut -c5-20)"
unlike "the real values are not in the audit log" "$logs" "$REAL|$OTHER"

# --- run-time interception: which names a CA can be made for, and the bundle's rename ---
# (no origin needed: what is checked is the CAs the daemon makes and the bundle the bottle reads)
S=$BOT_BOTTLE_STATE_DIR
(cd "$T/ws" && "$BB" start --backend namespace --name rt4b --no-default-config \
    --upstream-dns "127.0.0.1:$DNS" >"$T/start.out" 2>"$T/start.err") ||
    { diag "$(cat "$T/start.err")"; echo "Bail out! the bottle did not start"; exit 1; }
_pids+=("$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$S/bottles/rt4b/info.json")")
inside() { timeout 60 "$BB" exec rt4b -- "$@"; }
constraints() { # one line per bot-bottle CA of the bottle's bundle: its DNS constraints
    inside cat /etc/ssl/bot-bottle/ca-bundle.crt | bundle_ca_constraints | while read -r l; do
        w=$(tr ' ' '\n' <<<"$l" | grep '^DNS:' | paste -sd' ')
        echo "${w:-NO-DNS-CONSTRAINT}"
    done
}
# a reader in the bottle that reads the bundle over and over while CAs are added: every read
# must be a whole bundle (ends with a certificate's end), never fewer certificates than before
cat >"$T/ws/reader.py" <<'PYEOF'
import os, sys, time
last, bad, reads = 0, 0, 0
open(sys.argv[1] + ".ready", "w").close()
while not os.path.exists(sys.argv[1]):
    data = open("/etc/ssl/bot-bottle/ca-bundle.crt", "rb").read()
    n = data.count(b"-----END CERTIFICATE-----")
    if n < last or not data.rstrip().endswith(b"-----END CERTIFICATE-----"):
        bad += 1
    last, reads = max(last, n), reads + 1
print("reads=%d bad=%d" % (reads, bad))
PYEOF
timeout 600 "$BB" exec rt4b -- "$PY" "$T/ws/reader.py" "$T/ws/reader.stop" >"$T/reader.out" 2>&1 &
READER=$!
for _ in $(seq 600); do [ -e "$T/ws/reader.stop.ready" ] && break; sleep 0.1; done
allow() { "$BB" allow rt4b "$1" >"$T/allow.out" 2>&1; echo "rc=$? $(tail -1 "$T/allow.out")"; }
like "allow of a name in capitals with a trailing dot: accepted" \
    "$(allow 'API.Upper.TEST.:8443 GET /x')" "rc=0"
is "... its CA is constrained to the name as the daemon compares it (lowercase, no dot)" \
    "$(constraints)" "DNS:api.upper.test"
for pat in '127.0.0.1 GET /x' '[::1] GET /x' '* GET /x' '*.*.test GET /x' 'a*.test GET /x' \
    'a..b.test GET /x' '.lead.test GET /x' 'x.test/ GET /x' \
    '0x7f.1 GET /x' '2130706433 GET /x'; do
    unlike "allow '$pat': refused, or no CA (an IP or a malformed name)" "$(allow "$pat")" "rc=0.*intercepted"
done
like "allow of a UTF-8 name: accepted (as its IDNA A-label)" "$(allow 'bücher.test GET /x')" "rc=0"
like "... the same rule in punycode is the same rule" "$(allow 'xn--bcher-kva.test GET /x')" \
    "already in force"
like "fullwidth letters map to the name they spell (IDNA): covered, no new CA" \
    "$(allow 'ＡＰＩ.upper.test GET /z'; cat "$T/allow.out")" "rc=0"
unlike "... (the output names no new CA)" "$(cat "$T/allow.out")" "new CA"
like "allow of the same name on another port: no new CA (covered)" \
    "$(allow 'api.upper.test:9443 GET /y'; cat "$T/allow.out")" "rc=0"
unlike "... (the output names no new CA)" "$(cat "$T/allow.out")" "new CA"
like "allow of a host alone (no method/path rule): no interception, no CA" \
    "$(allow 'plain.test:8443'; cat "$T/allow.out")" "rc=0"
unlike "... (the output names no new CA)" "$(cat "$T/allow.out")" "new CA"
is "the CAs: one per intercepted name, each exactly that name; no IP, nothing wider" \
    "$(constraints)" "DNS:api.upper.test
DNS:xn--bcher-kva.test"
# several CAs in a row while the reader reads
for i in 1 2 3 4 5 6; do allow "r$i.race.test GET /x" >/dev/null; done
touch "$T/ws/reader.stop"
wait "$READER"
diag "bundle reader: $(cat "$T/reader.out")"
like "a reader of the bundle during 8 rename-updates never saw a partial or shorter one" \
    "$(cat "$T/reader.out")" "reads=[1-9][0-9]* bad=0"
is "... and 8 CAs are in it now" "$(constraints | wc -l)" 8
# (a limit, documented: a wildcard over a top-level name is a CA for all of it, at the user's word)
like "allow '*.test GET /x' (the user's own choice): accepted" "$(allow '*.test GET /x')" "rc=0"
is "... its CA is constrained to .test, the CAs before it unchanged" "$(constraints | sed -n '1p;$p')" \
    "DNS:api.upper.test
DNS:.test"
unlike "the bottle cannot write the bundle or rename in its directory" \
    "$(inside sh -c 'echo x >>/etc/ssl/bot-bottle/ca-bundle.crt && echo wrote; mv /etc/ssl/bot-bottle/ca.pem /etc/ssl/bot-bottle/x && echo moved; ln -s /tmp /etc/ssl/bot-bottle/y && echo linked' 2>&1)" \
    "wrote|moved|linked"
"$BB" stop rt4b >/dev/null 2>&1

# --- agent keys: a project file (approved) and the bottle's own variables cannot move the key
AKEY=sk-ant-rt4-REAL-agent-key-9f2c
mkdir -p "$T/agentws"
cat >"$T/agentws/bottle.ini" <<INI
[agent "claude"]
command = /bin/sh
env = ANTHROPIC_BASE_URL=http://$OH:$P
allow = $OH:$P
INI
(cd "$T/agentws" && "$BB" trust >/dev/null 2>&1) || diag "trust of the project file failed"
out=$(cd "$T/agentws" && ANTHROPIC_API_KEY=$AKEY timeout 120 "$BB" run -b namespace \
    --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" claude -c '
    echo "base=$ANTHROPIC_BASE_URL"
    curl -s -o /dev/null -w "via-base %{http_code} %header{x-bottle-block}\n" \
        -H "x-api-key: $ANTHROPIC_API_KEY" "$ANTHROPIC_BASE_URL/v1/messages"
    ANTHROPIC_BASE_URL=http://'"$OH:$P"'/other curl -s -o /dev/null \
        -w "via-auth %{http_code} %header{x-bottle-block}\n" \
        -H "authorization: Bearer $ANTHROPIC_API_KEY" "http://'"$OH:$P"'/agent2"' 2>&1)
like "agent key: the project's ANTHROPIC_BASE_URL reaches the bottle's variables" "$out" \
    "base=http://$OH:$P"
like "... but the key stays bound to api.anthropic.com:443 (the host's variable alone moves it)" \
    "$out" "ANTHROPIC_API_KEY stays on the host: .* requests to api.anthropic.com:443"
like "... the placeholder sent to the project's base URL is refused" "$out" \
    "via-base 403 credential-misuse"
like "... and in another header to another host" "$out" "via-auth 403 credential-misuse"
unlike "... the origin never saw the key" "$(cat "$T/origin.log")" "$AKEY"

done_testing

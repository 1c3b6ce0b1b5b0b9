#!/usr/bin/env bash
# Compressed responses from a credential host (docs/credentials.md, rule 4): a response to the
# credential's host that comes back gzip or deflate despite `Accept-Encoding: identity` is
# inflated for the reflection search only, while its original bytes pass on. An origin that
# gzips an echo of the real value is cut before the value reaches the bottle; a gzipped benign
# body arrives intact byte for byte; a decompression bomb costs bounded work and ends in a
# refusal (credential-unscannable); an encoding the proxy cannot read (br) is a 502 saying so.
# Origins and DNS on the host's loopback.
source "$(dirname "$0")/lib.sh"

need_bottles "compressed-response credential tests"

HTTP=$(free_port); GZ=$(free_port); DNS=$(free_port)
head -c 300000 /dev/urandom | base64 >"$T/benign.txt"
bg "$PY" "$HELPERS/gzip-origin.py" --port "$GZ" --log "$T/gz.log" --ready "$T/gz.ready" \
    --file "benign=$T/benign.txt"
bg "$PY" "$HELPERS/fake-upstream.py" --http "$HTTP" --dns "$DNS" --log "$T/origin.log" \
    --ready "$T/origin.ready" --zone api.test=127.0.0.1
wait_file "$T/gz.ready" && wait_file "$T/origin.ready" || { echo "Bail out! origins did not start"; exit 1; }

WS=$T/ws
mkdir -p "$WS"
STATE=$BOT_BOTTLE_STATE_DIR
REAL=sk-REAL-gzip-5c1d9e
export BB_TEST_API_KEY=$REAL
U=http://api.test:$GZ
cat >"$WS/inside.sh" <<EOF
k="X-Api-Key: \$BB_TEST_API_KEY"
for p in gzip-echo gzip-echo-chunked deflate-echo; do
    curl -s --compressed -H "\$k" $U/\$p >"\$HOME/\$p.out"; echo "\$p: rc=\$? \$(wc -c <"\$HOME/\$p.out")"
    grep -c "$REAL" "\$HOME/\$p.out"
done
curl -s -H "\$k" -o $WS/benign.got -w 'benign: %{http_code}\n' $U/gzip-file/benign
s=\$(date +%s); curl -s -H "\$k" -o /dev/null $U/bomb; echo "bomb: rc=\$? secs=\$(( \$(date +%s) - s ))"
echo "br: \$(curl -s -H "\$k" -w ' %{http_code} %header{x-bottle-error}' $U/br)"
EOF
out=$(cd "$WS" && timeout 300 "$BB" run --backend namespace --allow "api.test:$GZ" \
    --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" \
    --credential "api:api.test:$GZ:x-api-key:env:BB_TEST_API_KEY" -- sh "$WS/inside.sh" 2>"$T/err1")
rc=$?
is "a bottle with a credential runs (exit 0)" "$rc" "0"
diag "$out"
like "the origin got the requests" "$(cat "$T/gz.log")" "/gzip-echo"
unlike "a gzipped echo of the real value never reaches the bottle" "$out" "^[1-9]"
like "... the connection is cut (gzip, Content-Length)" "$out" "gzip-echo: rc=(18|52|56) "
like "... (gzip, chunked)" "$out" "gzip-echo-chunked: rc=(18|52|56) "
like "... (deflate)" "$out" "deflate-echo: rc=(18|52|56) "
like "a gzipped benign body from the credential host passes" "$out" "benign: 200"
is "... byte for byte (the compressed bytes as the origin sent them)" \
    "$(sha256sum <"$WS/benign.got" | cut -d' ' -f1)" "$(sha256sum <"$T/benign.txt.gz" | cut -d' ' -f1)"
like "a decompression bomb is cut" "$out" "bomb: rc=(18|52|56) "
like "an encoding the proxy cannot read (br): 502 with the reason" "$out" \
    'br: .*"br".*cannot decode.* 502 credential-unscannable'
audit=$(ls "$STATE"/logs/*.audit.log | head -1)
like "the reflections are audited" "$(cat "$audit")" '"reason":"credential-reflected"'
like "the bomb is audited" "$(cat "$audit")" '"reason":"credential-unscannable"'
like "... and said why on stderr" "$(cat "$T/err1")" "inflates past the proxy's limit"
unlike "the real value in no log" "$(cat "$STATE"/logs/*)" "$REAL"
unlike "... nor on stderr" "$(cat "$T/err1")" "$REAL"
done_testing

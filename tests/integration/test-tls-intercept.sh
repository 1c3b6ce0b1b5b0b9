#!/usr/bin/env bash
# TLS interception (docs/credentials.md): HTTPS to a credential host (or an [egress] inspect
# host) is decrypted by the egress daemon with a per-bottle CA the bottle trusts through the
# variables bot-bottle sets, so curl, python, node, git and npm work with no option of their
# own, the credential goes into the HTTPS request, and the same checks as for plain HTTP
# apply. Every other host stays a plain tunnel: the bottle sees the origin's own certificate.
# Fake origins on the host's loopback, with a test CA of this test ([tls] extra_ca).
source "$(dirname "$0")/lib.sh"

need_bottles "TLS interception tests"

# --- a test CA and an origin certificate for the test's names
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bb test origin CA" -keyout "$T/oca.key" -out "$T/oca.pem" >/dev/null 2>&1
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=api.test" \
    -addext "subjectAltName=DNS:api.test,DNS:plain.test,DNS:insp.test,DNS:registry.test" \
    -keyout "$T/srv.key" -out "$T/srv.csr" >/dev/null 2>&1
openssl x509 -req -in "$T/srv.csr" -CA "$T/oca.pem" -CAkey "$T/oca.key" -CAcreateserial \
    -days 2 -copy_extensions copy -out "$T/srv.pem" >/dev/null 2>&1
[ -s "$T/srv.pem" ] || { echo "Bail out! cannot make the test certificates"; exit 1; }

# --- what the origin serves: a dumb-HTTP git repository and a private npm registry
ST=$T/static
mkdir -p "$ST/private/reg" "$ST/private/tarballs" "$T/src/package"
git init -q --bare "$ST/repo.git"
git -C "$T/src" init -q && echo "hello from git" >"$T/src/README" &&
    git -C "$T/src" add README && git -C "$T/src" -c user.name=t -c user.email=t@t commit -qm one &&
    git -C "$T/src" push -q "$ST/repo.git" HEAD:refs/heads/main 2>/dev/null
git -C "$ST/repo.git" symbolic-ref HEAD refs/heads/main
git -C "$ST/repo.git" update-server-info
HTTPS=$(free_port); DNS=$(free_port)
cat >"$T/src/package/package.json" <<'EOF'
{"name":"bbpriv","version":"1.0.0","main":"index.js"}
EOF
echo 'module.exports = "private package ok";' >"$T/src/package/index.js"
tar -C "$T/src" -czf "$ST/private/tarballs/bbpriv-1.0.0.tgz" package
SHA1=$(sha1sum "$ST/private/tarballs/bbpriv-1.0.0.tgz" | cut -d' ' -f1)
cat >"$ST/private/reg/bbpriv" <<EOF
{"name":"bbpriv","dist-tags":{"latest":"1.0.0"},"versions":{"1.0.0":{"name":"bbpriv","version":"1.0.0","main":"index.js","dist":{"tarball":"https://registry.test:$HTTPS/static/private/tarballs/bbpriv-1.0.0.tgz","shasum":"$SHA1"}}}}
EOF
NPM_REAL=npm-REAL-token-8c2d
bg "$PY" "$HELPERS/fake-upstream.py" --https "$HTTPS" --cert "$T/srv.pem" --key "$T/srv.key" \
    --dns "$DNS" --log "$T/origin.log" --log-headers --ready "$T/origin.ready" --static "$ST" \
    --static-token "$NPM_REAL" \
    --zone api.test=127.0.0.1 --zone plain.test=127.0.0.1 --zone insp.test=127.0.0.1 \
    --zone registry.test=127.0.0.1
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }

WS=$T/ws
mkdir -p "$WS/npmproj"
STATE=$BOT_BOTTLE_STATE_DIR
REAL=sk-REAL-tls-5e0b
export BB_TEST_API_KEY=$REAL BB_TEST_NPM=$NPM_REAL
cat >"$T/config.ini" <<EOF
[egress]
inspect = insp.test:$HTTPS
[tls]
extra_ca = $T/oca.pem
[credential "api"]
host = api.test
port = $HTTPS
header = x-api-key
value = env:BB_TEST_API_KEY
[credential "npm"]
host = registry.test
port = $HTTPS
header = authorization
value = env:BB_TEST_NPM
env = NPM_TOKEN
EOF
# the project's npm configuration, as a user would write it (the token from the variable)
cat >"$WS/npmproj/.npmrc" <<EOF
registry=https://registry.test:$HTTPS/static/private/reg/
//registry.test:$HTTPS/:_authToken=\${NPM_TOKEN}
EOF
echo '{"name":"proj","version":"1.0.0"}' >"$WS/npmproj/package.json"
run() { # run BACKEND CMD...
    local backend=$1
    shift
    (cd "$WS" && timeout 300 "$BB" run --backend "$backend" --no-default-config -c "$T/config.ini" \
        --allow "api.test:$HTTPS" --allow "plain.test:$HTTPS" --allow "insp.test:$HTTPS" \
        --allow "registry.test:$HTTPS" --allow-cidr 127.0.0.1/32 \
        --upstream-dns "127.0.0.1:$DNS" "$@")
}
U=https://api.test:$HTTPS
# the header fields the origin received with the requests whose path contains $1
got() { awk -v p="$1" '/^http / { f = index($0, p) > 0; next } f' "$T/origin.log"; }

cat >"$WS/inside.sh" <<EOF
set -u
echo "curl: \$(curl -sS -o /dev/null -w '%{http_code}' -H "X-Api-Key: \$BB_TEST_API_KEY" $U/swap-curl)"
echo "python: \$($PY -c '
import os, urllib.request
r = urllib.request.Request("$U/hello", headers={"X-Api-Key": os.environ["BB_TEST_API_KEY"], "X-Who": "py"})
print(urllib.request.urlopen(r).read().decode().strip())')"
# node: a CONNECT through HTTPS_PROXY by hand (node 20 has no proxy support of its own), then
# TLS with node's default trust (plus NODE_EXTRA_CA_CERTS, which bot-bottle sets)
echo "node: \$(node -e '
const http = require("http"), tls = require("tls"), u = new URL(process.env.HTTPS_PROXY);
http.request({ host: u.hostname, port: u.port, method: "CONNECT", path: "api.test:$HTTPS",
               headers: { host: "api.test:$HTTPS" } })
  .on("connect", (res, sock) => {
    const s = tls.connect({ socket: sock, servername: "api.test" }, () =>
      s.write("GET /swap-node HTTP/1.1\r\nHost: api.test:$HTTPS\r\nX-Api-Key: " +
              process.env.BB_TEST_API_KEY + "\r\nConnection: close\r\n\r\n"));
    let d = ""; s.on("data", c => d += c);
    s.on("end", () => console.log(d.split(/\r?\n/)[0]));
    s.on("error", e => console.log("error " + e.message));
  }).end();' 2>&1)"
git clone -q $U/static/repo.git "\$HOME/clone" 2>"\$HOME/git.err"; echo "git: \$(cat "\$HOME/clone/README" 2>/dev/null || cat "\$HOME/git.err")"
(cd $WS/npmproj && npm install bbpriv --no-audit --no-fund --loglevel=error >"\$HOME/npm.out" 2>&1;
 echo "npm: \$(node -e 'console.log(require("bbpriv"))' 2>&1 || cat "\$HOME/npm.out")")
echo "inspect: \$(curl -sS https://insp.test:$HTTPS/hello)"
echo "body: \$(curl -s -o /dev/null -w '%{http_code} %header{x-bottle-block}' -H "X-Api-Key: \$BB_TEST_API_KEY" --data-binary "k=\$BB_TEST_API_KEY" $U/echo)"
echo "wrong-host: \$(curl -s -o /dev/null -w '%{http_code} %header{x-bottle-block}' -H "X-Api-Key: \$BB_TEST_API_KEY" https://insp.test:$HTTPS/headers)"
issuer() { openssl s_client -proxy "\${HTTPS_PROXY#http://}" -connect "\$1:$HTTPS" -servername "\$1" </dev/null 2>/dev/null | openssl x509 -noout -issuer; }
echo "issuer-api: \$(issuer api.test)"
echo "issuer-plain: \$(issuer plain.test)"
echo "issuer-insp: \$(issuer insp.test)"
openssl s_client -proxy "\${HTTPS_PROXY#http://}" -connect "api.test:$HTTPS" -servername api.test </dev/null 2>/dev/null | openssl x509 >"\$HOME/leaf.pem"
echo "verify: \$(openssl verify -CAfile /etc/ssl/bot-bottle/ca.pem -purpose sslserver "\$HOME/leaf.pem" 2>&1)"
cp /etc/ssl/bot-bottle/ca.pem $WS/bottle-ca.pem
EOF
out=$(run namespace -- sh "$WS/inside.sh" 2>"$T/err1")
rc=$?
is "a bottle with intercepted hosts runs (exit 0)" "$rc" "0"
like "curl: HTTPS to the credential host works" "$out" "curl: 404"
like "... the origin gets the real value" "$(got /swap-curl)" "X-Api-Key: $REAL"
like "python urllib: HTTPS works" "$out" "python: hello from fake upstream"
like "... the origin gets the real value" "$(got /hello | grep -A3 'X-Who: py')$(got /hello)" "X-Api-Key: $REAL"
like "node (tls with its default trust): HTTPS works" "$out" "node: HTTP/1.1 404"
like "... the origin gets the real value" "$(got /swap-node)" "X-Api-Key: $REAL"
like "git clone over intercepted HTTPS" "$out" "git: hello from git"
like "npm install of a private package: the registry got the real token" "$out" \
    "npm: private package ok"
like "an [egress] inspect host (no credential) works" "$out" "inspect: hello from fake upstream"
like "... and is intercepted (the bottle's CA as issuer)" "$out" "issuer-insp: issuer=CN *= *bot-bottle CA"
like "the placeholder in an HTTPS body: 403 credential-misuse" "$out" "body: 403 credential-misuse"
like "the placeholder to another intercepted host: 403 credential-misuse" "$out" \
    "wrong-host: 403 credential-misuse"
like "an intercepted host shows the bottle's CA as issuer" "$out" "issuer-api: issuer=CN *= *bot-bottle CA"
like "a host that is not intercepted is a plain tunnel: the origin's own certificate" "$out" \
    "issuer-plain: issuer=CN *= *bb test origin CA"
like "openssl verify: the leaf verifies under the bottle's CA" "$out" "verify: .*leaf.pem: OK"
ca=$(openssl x509 -in "$WS/bottle-ca.pem" -noout -text 2>/dev/null)
like "the bottle's CA is name-constrained (critical)" "$ca" "Name Constraints: critical"
like "... to the intercepted names" "$ca" "DNS:api.test.*DNS:registry.test.*DNS:insp.test"
unlike "... and to no other (plain.test is not there)" "$ca" "plain.test"
like "... and permits no IP address but 0.0.0.0/32" "$ca" "IP:0.0.0.0/255.255.255.255"
like "the origin saw the npm registry's requests" "$(cat "$T/origin.log")" "/static/private/tarballs/bbpriv"
audit=$(ls "$STATE"/logs/*.audit.log | head -1)
like "intercepted requests are audited like plain HTTP (method and path)" "$(cat "$audit")" \
    '"kind":"http","host":"api.test".*"method":"GET","path":"/swap-curl","status":404'
like "... the CONNECT as intercepted" "$(cat "$audit")" '"kind":"connect","host":"api.test".*"reason":"intercepted"'
unlike "neither real value in the audit log" "$(cat "$STATE"/logs/*)" "$REAL|$NPM_REAL"
unlike "... nor on stderr" "$(cat "$T/err1")" "$REAL|$NPM_REAL"
is "... nor in the state directory" "$(grep -rlE -- "$REAL|$NPM_REAL" "$STATE" | wc -l)" "0"

# --- method/path rules hold for HTTPS: a host with rules is intercepted (not a blind tunnel)
out=$(run namespace --allow "plain.test:$HTTPS GET /hello" -- sh -c "
    curl -sS https://plain.test:$HTTPS/hello; echo
    curl -s -o /dev/null -w '%{http_code} %header{x-bottle-block}' https://plain.test:$HTTPS/other; echo
    curl -s -o /dev/null -w '%{http_code} %header{x-bottle-block}' -X POST https://plain.test:$HTTPS/hello; echo
    echo insp: \$(curl -sS https://insp.test:$HTTPS/hello 2>&1)
" 2>"$T/err-rules")
like "a GET a rule allows goes through over HTTPS" "$out" "^hello from fake upstream"
like "... a path no rule covers is refused inside the intercepted session" "$out" "403 path-not-allowed"
like "... and a method the rule does not name" "$out" "403 method-not-allowed"
like "... while the other hosts work as before" "$out" "insp: hello from fake upstream"

# --- the microVM backend: the CA bundle reaches the VM, interception through the relay socket
out=$(run microvm -- sh -c "curl -sS -o /dev/null -H \"X-Api-Key: \$BB_TEST_API_KEY\" $U/swap-vm; curl -sS https://plain.test:$HTTPS/hello" 2>"$T/err2")
like "microvm: HTTPS to the credential host, real value at the origin" "$(got /swap-vm)" "X-Api-Key: $REAL"
like "microvm: a plain tunnel still works" "$out" "hello from fake upstream"
# (the CA bundle's directory used to stay behind, so every later run "removed the state that
# bottle left behind" and failed to)
is "a bottle that ended left no state behind, its CA bundle included" \
    "$(ls -A "$STATE/bottles" | grep -v '^\.lock$')" ""

done_testing

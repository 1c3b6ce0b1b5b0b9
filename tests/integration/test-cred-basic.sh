#!/usr/bin/env bash
# Credentials inside HTTP Basic authentication (docs/credentials.md, "HTTP Basic"): git over
# HTTPS sends its token as `Authorization: Basic base64(user:TOKEN)`. The bottle's git gets the
# placeholder as its password (a credential helper reading the variable); the proxy decodes the
# Basic credentials, swaps the placeholder for the real token and encodes them again, only in
# the credential's header to its host and port. `git clone` from a smart-HTTP origin that
# demands the real token works; the placeholder in Basic credentials anywhere else is 403
# credential-misuse; an origin that reflects the Authorization header is cut.
# Origins and DNS stub on the host's loopback, a test CA of this test ([tls] extra_ca).
source "$(dirname "$0")/lib.sh"

need_bottles "Basic-auth credential tests"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bb test origin CA" -keyout "$T/oca.key" -out "$T/oca.pem" >/dev/null 2>&1
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=git.test" \
    -addext "subjectAltName=DNS:git.test,DNS:insp.test" \
    -keyout "$T/srv.key" -out "$T/srv.csr" >/dev/null 2>&1
openssl x509 -req -in "$T/srv.csr" -CA "$T/oca.pem" -CAkey "$T/oca.key" -CAcreateserial \
    -days 2 -copy_extensions copy -out "$T/srv.pem" >/dev/null 2>&1
[ -s "$T/srv.pem" ] || { echo "Bail out! cannot make the test certificates"; exit 1; }

# a bare repository served by git http-backend (smart HTTP)
ROOT=$T/repos
mkdir -p "$ROOT" "$T/src"
git init -q --bare "$ROOT/repo.git"
git -C "$T/src" init -q && echo "hello from smart http" >"$T/src/README" &&
    git -C "$T/src" add README && git -C "$T/src" -c user.name=t -c user.email=t@t commit -qm one &&
    git -C "$T/src" push -q "$ROOT/repo.git" HEAD:refs/heads/main 2>/dev/null
git -C "$ROOT/repo.git" symbolic-ref HEAD refs/heads/main

REAL=ghp-REAL-basic-7f3e1a9c
GIT=$(free_port); HTTP=$(free_port); DNS=$(free_port)
bg "$PY" "$HELPERS/git-origin.py" --port "$GIT" --cert "$T/srv.pem" --key "$T/srv.key" \
    --root "$ROOT" --token "$REAL" --log "$T/git.log" --ready "$T/git.ready"
bg "$PY" "$HELPERS/fake-upstream.py" --http "$HTTP" --dns "$DNS" --log "$T/origin.log" \
    --log-headers --ready "$T/origin.ready" --zone git.test=127.0.0.1 --zone other.test=127.0.0.1 \
    --zone insp.test=127.0.0.1
wait_file "$T/git.ready" && wait_file "$T/origin.ready" || { echo "Bail out! origins did not start"; exit 1; }

# the request to git.test before anything: the origin refuses the placeholder and a wrong token
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$T/oca.pem" --resolve "git.test:$GIT:127.0.0.1" \
    -u "x:$REAL" "https://git.test:$GIT/repo.git/info/refs?service=git-upload-pack")
is "the git origin takes the real token (sanity)" "$code" "200"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$T/oca.pem" --resolve "git.test:$GIT:127.0.0.1" \
    -u "x:bb-cred-git-0123456789abcdef" "https://git.test:$GIT/repo.git/info/refs?service=git-upload-pack")
is "... and refuses anything else (sanity)" "$code" "401"
: >"$T/git.log"

WS=$T/ws
mkdir -p "$WS"
STATE=$BOT_BOTTLE_STATE_DIR
export BB_TEST_GIT_TOKEN=$REAL
cat >"$T/config.ini" <<EOF
[egress]
inspect = insp.test:$GIT
[tls]
extra_ca = $T/oca.pem
[credential "git"]
host = git.test
port = $GIT
header = authorization
value = env:BB_TEST_GIT_TOKEN
env = GIT_TOKEN
EOF
cat >"$WS/inside.sh" <<EOF
set -u
# git's credential helper hands it the placeholder as the password
helper='!f() { test "\$1" = get && echo username=x-access-token && echo "password=\$GIT_TOKEN"; }; f'
git -c credential.helper="\$helper" clone -q https://git.test:$GIT/repo.git "\$HOME/clone" 2>"\$HOME/git.err"
echo "git: \$(cat "\$HOME/clone/README" 2>/dev/null || cat "\$HOME/git.err")"
echo "env: \$GIT_TOKEN"
code() { curl -s -o /dev/null -w '%{http_code} %header{x-bottle-block}' "\$@"; echo; }
echo "basic-other-host: \$(code -u "x-access-token:\$GIT_TOKEN" http://other.test:$HTTP/headers)"
echo "basic-other-https: \$(code -u "x-access-token:\$GIT_TOKEN" https://insp.test:$GIT/headers)"
echo "basic-other-header: \$(code -H "X-Auth: Basic \$(printf 'u:%s' "\$GIT_TOKEN" | base64 -w0)" https://git.test:$GIT/repo.git/info/refs)"
echo "basic-twice: \$(code -u "\$GIT_TOKEN:\$GIT_TOKEN" https://git.test:$GIT/repo.git/info/refs)"
echo "basic-wrong-port: \$(code -u "x:\$GIT_TOKEN" http://git.test:$HTTP/headers)"
echo "reflect: \$(curl -s -u "x:\$GIT_TOKEN" https://git.test:$GIT/headers; echo " rc=\$?")"
EOF
out=$(cd "$WS" && timeout 300 "$BB" run --backend namespace --no-default-config -c "$T/config.ini" \
    --allow "git.test:$GIT" --allow "insp.test:$GIT" --allow "other.test:$HTTP" \
    --allow "git.test:$HTTP" --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" \
    -- sh "$WS/inside.sh" 2>"$T/err1")
rc=$?
is "a bottle with a Basic-auth credential runs (exit 0)" "$rc" "0"
like "git clone over intercepted HTTPS with Basic auth: the origin got the real token" "$out" \
    "git: hello from smart http"
like "... the smart-HTTP requests carried the real token" "$(cat "$T/git.log")" \
    "POST /repo.git/git-upload-pack auth=ok"
unlike "... and never the placeholder" "$(cat "$T/git.log")" "auth=bad"
like "the bottle's variable holds the placeholder" "$out" "env: bb-cred-git-[0-9a-f]{32}"
like "Basic credentials with the placeholder to another host: 403 credential-misuse" "$out" \
    "basic-other-host: 403 credential-misuse"
like "... to another intercepted HTTPS host: 403 credential-misuse" "$out" \
    "basic-other-https: 403 credential-misuse"
like "... in another header to the right host: 403 credential-misuse" "$out" \
    "basic-other-header: 403 credential-misuse"
like "... twice in one Basic value: 403 credential-misuse" "$out" "basic-twice: 403 credential-misuse"
like "... to the right host on another port: 403 credential-misuse" "$out" \
    "basic-wrong-port: 403 credential-misuse"
unlike "an origin reflecting the Basic header: the encoded real value never reaches the bottle" \
    "$out" "$(printf 'x:%s' "$REAL" | base64 -w0 | cut -c1-16)"
like "... the connection is cut" "$out" "reflect: .*rc=(52|56|18|92)"
unlike "the other origins never saw the token or its Basic form" "$(cat "$T/origin.log")" \
    "$REAL|$(printf 'x-access-token:%s' "$REAL" | base64 -w0 | cut -c21-40)"
audit=$(ls "$STATE"/logs/*.audit.log | head -1)
like "misuse is audited" "$(cat "$audit")" '"reason":"credential-misuse"'
unlike "the real value in no log, in no encoding" "$(cat "$STATE"/logs/*)" \
    "$REAL|$(printf 'x-access-token:%s' "$REAL" | base64 -w0 | cut -c21-40)"
unlike "... nor on stderr" "$(cat "$T/err1")" "$REAL"
done_testing

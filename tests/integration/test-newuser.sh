#!/usr/bin/env bash
# What a new user sees (issue 12): each blocked or failed host gets one line on stderr with the
# reason and the option that fixes it; with -t the lines wait until the program gave the
# terminal back; the bottle's name and audit log are said when anything went wrong.
# Fake origin and DNS on the host's loopback; nothing leaves the machine.
source "$(dirname "$0")/lib.sh"

need_bottles "new-user tests"

HTTP=$(free_port); DNS=$(free_port); CLOSED=$(free_port); SILENT=$(free_port); HANGUP=$(free_port)
bg "$PY" "$HELPERS/fake-upstream.py" --http "$HTTP" --dns "$DNS" --log "$T/origin.log" \
    --ready "$T/origin.ready" --zone allowed.test=127.0.0.1 --zone refused.test=127.0.0.1 \
    --zone priv.test=203.0.113.80 --zone evil.test=127.0.0.1 \
    --zone meta.test=169.254.169.254 --zone hangup.test=127.0.0.1
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }
# a resolver that never answers (UDP and TCP bound, nothing sent back)
bg "$PY" -c "
import socket, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', $SILENT))
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(('127.0.0.1', $SILENT)); t.listen()
open('$T/silent.ready', 'w').close()
time.sleep(600)"
wait_file "$T/silent.ready"
# a server that reads what it is sent and hangs up without a byte (a refused TLS handshake)
bg "$PY" -c "
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $HANGUP)); s.listen()
while True:
    c, _ = s.accept(); c.recv(4096); c.close()"
wait_port "$HANGUP"
mkdir -p "$T/ws"
run() {
    (cd "$T/ws" && timeout 60 "$BB" run --backend namespace --name bb-nu \
        --allow "allowed.test:$HTTP" --allow "refused.test:$CLOSED" --allow "nx.test:$HTTP" \
        --allow "priv.test:$HTTP" --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" "$@")
}
AUDIT=$BOT_BOTTLE_STATE_DIR/logs/bb-nu.audit.log

# --- 1: say what failed, and the fix
run -- sh -c "
curl -s -o /dev/null --max-time 10 http://nx.test:$HTTP/
curl -s -o /dev/null --max-time 10 http://refused.test:$CLOSED/
curl -s -o /dev/null --max-time 10 http://priv.test:$HTTP/
curl -s -o /dev/null --max-time 10 http://allowed.test:$((HTTP == 65535 ? 1 : HTTP + 1))/
curl -s -o /dev/null --max-time 10 http://127.0.0.2:$HTTP/
curl -s -o /dev/null --max-time 10 http://evil.test:$HTTP/
curl -s -o /dev/null --max-time 10 http://evil.test:$HTTP/again
curl -s -o /dev/null --max-time 10 http://allowed.test:$HTTP/hello
exit 3" >"$T/out" 2>"$T/err"
is "a run with failures keeps the command's status" "$?" "3"
E=$(cat "$T/err")
OTHER=$((HTTP == 65535 ? 1 : HTTP + 1))
like "no-address: one line, the reason and what to check" "$E" \
    "bot-bottle: nx.test failed \(no-address\): the name does not resolve; check the spelling, or the resolver \(--upstream-dns\)"
like "connect-refused: one line with the port and address" "$E" \
    "bot-bottle: refused.test port $CLOSED failed \(connect-refused at 127.0.0.1\): the server refused the connection"
like "ssrf-private: the address and the exact --allow-cidr" "$E" \
    "bot-bottle: blocked priv.test \(ssrf-private: it resolves to 203.0.113.80, a private, loopback or reserved address\); if that is intended, add --allow-cidr 203.0.113.80/32"
like "port-not-allowed: the --allow host:port form" "$E" \
    "bot-bottle: blocked allowed.test port $OTHER \(port-not-allowed: allowed.test is allowed on other ports\); to allow it, add --allow allowed.test:$OTHER"
like "ip-literal: the --allow-cidr form" "$E" \
    "bot-bottle: blocked 127.0.0.2 \(ip-literal: an IP address no --allow-cidr covers\); to allow it, add --allow-cidr 127.0.0.2/32"
is "a host blocked twice for one reason is said once" "$(grep -c 'blocked evil.test' "$T/err")" "1"
like "the closing line names the bottle and its audit log" "$E" \
    "bot-bottle: bottle bb-nu: every request is in its audit log $AUDIT"
unlike "no garbled line for a record without a host" "$E" "blocked  \(|blocked \* "
is "nothing else on stderr (6 notices and the closing line)" "$(wc -l <"$T/err")" "7"

# the same host blocked for a second, different reason is said again
run -- sh -c "
curl -s -o /dev/null --max-time 10 http://allowed.test:$OTHER/
curl -s -o /dev/null --max-time 10 http://allowed.test:$((OTHER == 65535 ? 2 : OTHER + 1))/
curl -s -o /dev/null --max-time 10 http://127.0.0.2:$HTTP/
curl -s -o /dev/null --max-time 10 http://127.0.0.2:$OTHER/" 2>"$T/err2"
is "per host and reason: two ports of one host are two lines" \
    "$(grep -c 'blocked allowed.test port' "$T/err2")" "2"
is "... and one IP literal on two ports is one" "$(grep -c 'blocked 127.0.0.2' "$T/err2")" "1"

# the audit record carries the resolved address
like "the audit record of a refused connect names the address" "$(grep refused.test "$AUDIT")" \
    '"reason":"upstream-connect-refused".*"addr":"127.0.0.1"'

# resolve-timeout: a resolver that never answers
(cd "$T/ws" && timeout 60 "$BB" run --backend namespace --name bb-nu2 --allow "slow.test:$HTTP" \
    --upstream-dns "127.0.0.1:$SILENT" -- curl -s -o /dev/null --max-time 20 \
    "http://slow.test:$HTTP/") 2>"$T/err3"
like "resolve-timeout: one line" "$(cat "$T/err3")" \
    "bot-bottle: slow.test failed \(resolve-timeout\): the resolver did not answer in time; check --upstream-dns or the host's resolver"

# upstream TLS/close: the server hangs up inside an HTTPS tunnel
(cd "$T/ws" && timeout 60 "$BB" run --backend namespace --name bb-nu4 --allow "hangup.test:$HANGUP" \
    --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" -- \
    curl -s -o /dev/null --max-time 10 "https://hangup.test:$HANGUP/") 2>"$T/err7"
like "upstream-closed: one line naming the host and port" "$(cat "$T/err7")" \
    "bot-bottle: hangup.test port $HANGUP failed \(upstream-closed at 127.0.0.1\): the server closed the connection before it answered \(a TLS handshake it refused looks like this\)"

# records without a host ("*" summaries, the 503 of a full proxy) never make a notice line
(cd "$T/ws" && rm -f go && timeout 60 "$BB" run --backend namespace --name bb-nu5 -- \
    sh -c 'echo >ready; while [ ! -e go ]; do sleep 0.1; done; sleep 0.5') 2>"$T/err8" &
SUP=$!
wait_file "$T/ws/ready"
L5=$BOT_BOTTLE_STATE_DIR/logs/bb-nu5.audit.log
printf '%s\n' \
    '{"ts":"x","bottle":"bb-nu5","kind":"http","host":"*","port":0,"decision":"deny","reason":"aggregated","count":7}' \
    '{"ts":"x","bottle":"bb-nu5","kind":"http","host":"","port":0,"decision":"deny","reason":"too-many-connections","status":503}' \
    '{"ts":"x","bottle":"bb-nu5","kind":"dns","host":"*","port":0,"decision":"deny","reason":"flood-dropped","count":3}' \
    >>"$L5"
touch "$T/ws/go"
wait "$SUP"
is "no line for '*' or empty hosts (aggregated, 503, flood)" "$(cat "$T/err8")" ""

# --quiet: no notices at all
run --quiet -- curl -s -o /dev/null --max-time 10 "http://evil.test:$HTTP/" 2>"$T/err4"
is "--quiet: nothing on stderr" "$(cat "$T/err4")" ""

# -v: the bottle's name and audit log at start, no alarming line at a normal exit
run -v -- true 2>"$T/err5"
like "-v: the name and the audit log at start" "$(cat "$T/err5")" \
    "bottle bb-nu started \(backend namespace\); audit log $AUDIT"
unlike "-v: no 'channel closed' at a normal exit" "$(cat "$T/err5")" "channel closed|Connection reset"
is "... and no closing line when nothing failed" "$(grep -c 'every request is in' "$T/err5")" "0"

# -t: no notice reaches the terminal while the program holds it in raw mode
cat >"$T/ws/raw.py" <<PY
import os, subprocess, sys, termios, time, tty
fd = sys.stdin.fileno()
old = termios.tcgetattr(fd)
tty.setraw(fd)
os.write(1, b"RAW-ON\r\n")
subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "10", "http://evil.test:$HTTP/"])
time.sleep(1.5)
os.write(1, b"RAW-OFF\r\n")
termios.tcsetattr(fd, termios.TCSADRAIN, old)
PY
"$PY" "$HELPERS/pty-run.py" -- sh -c "cd '$T/ws' && exec timeout 60 '$BB' run --backend namespace \
    --name bb-nu --allow-cidr 127.0.0.1/32 --upstream-dns 127.0.0.1:$DNS -t -- $PY raw.py" \
    >"$T/pty.out"
P=$(tr -d '\r' <"$T/pty.out")
like "-t: the program ran in raw mode" "$P" "RAW-ON"
between=$(sed -n '/RAW-ON/,/RAW-OFF/p' <<<"$P")
unlike "-t: no notice while the program holds the terminal" "$between" "bot-bottle:"
like "-t: the notice comes after the program gave the terminal back" "$(sed -n '/RAW-OFF/,$p' <<<"$P")" \
    "bot-bottle: blocked evil.test \(not in the allowlist\); to allow it, add --allow evil.test"
like "-t: ... with where the full log is" "$P" "bottle bb-nu: every request is in its audit log"
like "-t: the command's status" "$P" "status=0"

# --- 2: policy check answers what run would, over a table of targets
POL=(--allow "allowed.test:$HTTP" --allow "nx.test:$HTTP" --allow "priv.test:$HTTP"
    --allow "meta.test:$HTTP" --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS")
TARGETS=("http://allowed.test:$HTTP/hello" "http://priv.test:$HTTP/" "http://evil.test:$HTTP/"
    "http://allowed.test:$OTHER/" "http://127.0.0.2:$HTTP/" "http://nx.test:$HTTP/"
    "http://meta.test:$HTTP/" "http://169.254.169.254/" "http://127.0.0.1:$HTTP/hello")
WANT=(allow ssrf-private not-allowlisted port-not-allowed ip-literal no-address ssrf-metadata
    ssrf-metadata allow)
(cd "$T/ws" && timeout 60 "$BB" run --backend namespace --quiet "${POL[@]}" -- sh -c '
for t in "$@"; do
    h=$(curl -s --noproxy "" -o /dev/null -D - --max-time 10 "$t" | tr -d "\r")
    r=$(printf "%s\n" "$h" | sed -n "s/^X-Bottle-\(Block\|Error\): //p")
    case "$h" in "HTTP/1.1 200"*) r=allow ;; esac
    echo "$t ${r:-none}"
done' sh "${TARGETS[@]}") >"$T/table.run" 2>"$T/table.err"
for i in "${!TARGETS[@]}"; do
    t=${TARGETS[$i]}
    pc=$("$BB" policy check --no-default-config "${POL[@]}" "$t")
    case "$pc" in
        allow:*) p=allow ;;
        *) p=$(sed -E 's/^(deny|fail): ([a-z-]+):.*/\2/' <<<"$pc") ;;
    esac
    r=$(grep -F "$t " "$T/table.run" | cut -d' ' -f2)
    is "policy check and run agree on $t ($pc)" "$p" "$r"
    is "... and it is ${WANT[$i]}" "$p" "${WANT[$i]}"
done
out=$("$BB" policy check --no-default-config -a priv.test --upstream-dns "127.0.0.1:$DNS" https://priv.test/)
is "policy check -a NAME https://NAME/ says deny (ssrf-private) with the fix" "$?:$out" \
    "1:deny: ssrf-private: priv.test port 443 resolves to 203.0.113.80, a private, loopback or reserved address; if that is intended, add --allow-cidr 203.0.113.80/32"
"$BB" policy check --audit - -a x.test x.test >/dev/null 2>"$T/pcerr"
is "policy check --audit (not in its --help) is refused" "$?:$(cat "$T/pcerr")" \
    "125:bot-bottle: error: policy check: --audit does not apply (nothing is sent, nothing recorded)"
unlike "... and its --help does not list it" "$("$BB" policy check --help)" "--audit"
like "... but lists --resolve" "$("$BB" policy check --help)" "--resolve"

# --- 3: refuse what is wrong, early and clearly (exit 125, one line naming the problem)
touch "$T/ws/somefile"
refused() { # DESC WANT-LINE ARGS...
    local d=$1 want=$2
    shift 2
    (cd "$T/ws" && timeout 30 "$BB" run --backend namespace "$@" -- sh -c 'echo STARTED') \
        >"$T/r.out" 2>"$T/r.err"
    is "$d" "$?:$(cat "$T/r.err")" "125:$want"
    is "... before anything started" "$(cat "$T/r.out")" ""
}
refused "-a URL: a pattern is a host name" \
    "bot-bottle: error: --allow 'https://example.com/': a pattern is a host name, not a URL; use --allow example.com" \
    -a https://example.com/
refused "-a '*.com' covers a public suffix" \
    "bot-bottle: error: the allow pattern '*.com' covers the whole public suffix .com (every site under it); name the sites instead (--allow example.com), or confirm with --allow-public-suffix" \
    -a '*.com'
refused "-a '*.co.uk' (a multi-label suffix) too" \
    "bot-bottle: error: the allow pattern '*.co.uk' covers the whole public suffix .co.uk (every site under it); name the sites instead (--allow example.co.uk), or confirm with --allow-public-suffix" \
    -a '*.co.uk'
out=$("$BB" policy check --no-default-config -a '*.com' --allow-public-suffix x.com)
is "--allow-public-suffix confirms it" "$?:$out" "0:allow: x.com port 443"
out=$("$BB" policy check --no-default-config -a '*.example.co.uk' a.example.co.uk)
is "a wildcard below a public suffix is fine" "$?" "0"
out=$("$BB" policy check --no-default-config -a x.test ftp://x.test/)
is "policy check ftp:// says what forms are accepted" "$?:$out" \
    "1:deny: bad-host: 'ftp://x.test/' is not a valid target; give an http:// or https:// URL (https://example.com/path) or host[:port] (example.com:8443)"
out=$("$BB" policy check --no-default-config -a x.test x.test/path)
like "policy check host/path too" "$?:$out" "^1:deny: bad-host: 'x.test/path' is not a valid target; give an http"
refused "--mount from a missing source" \
    "bot-bottle: error: --mount /nonexistent-nu:/x: the source /nonexistent-nu does not exist" \
    --mount /nonexistent-nu:/x
refused "-w a file" \
    "bot-bottle: error: the workspace somefile is not a directory; give a project directory with -w DIR" \
    -w somefile
refused "-w /" \
    "bot-bottle: error: the workspace / is the root directory, which a bottle must never write; give a project directory with -w DIR" \
    -w /
for d in /usr /etc /boot; do
    refused "-w $d" \
        "bot-bottle: error: the workspace $d is the system directory $d, which a bottle must never write; give a project directory with -w DIR" \
        -w "$d"
done
refused "-w inside /usr" \
    "bot-bottle: error: the workspace /usr/share is inside the system directory /usr, which a bottle must never write; give a project directory with -w DIR" \
    -w /usr/share
mkdir -p "$BOT_BOTTLE_STATE_DIR"
refused "-w the state directory" \
    "bot-bottle: error: the workspace $BOT_BOTTLE_STATE_DIR is in or around bot-bottle's state directory, which a bottle must never write; give a project directory with -w DIR" \
    -w "$BOT_BOTTLE_STATE_DIR"
refused "--mount target under the read-only /usr" \
    "bot-bottle: error: --mount $T/ws:/usr/local/x: the target /usr/local/x is inside the system directory /usr, which the bottle has read-only or builds itself; choose a target elsewhere (like /data or under \$HOME)" \
    --mount "$T/ws:/usr/local/x"
refused "a writable --mount of /usr" \
    "bot-bottle: error: --mount /usr:/x: the source /usr is the system directory /usr, which a bottle must never write; add :ro to mount it read-only" \
    --mount /usr:/x
# the attack: as root, -w /usr made the host's /usr writable from the bottle
probe=/usr/.bb-newuser-probe-$$
(cd "$T/ws" && timeout 30 "$BB" run --backend namespace -w /usr -- sh -c "touch $probe") \
    >/dev/null 2>&1
is "security: a bottle given -w /usr cannot write the host's /usr" "$(ls "$probe" 2>&1 >/dev/null | wc -l)" "1"
rm -f "$probe"
# -e NAME not set on the host: one warning, and the bottle runs
unset BB_NU_UNSET
out=$(cd "$T/ws" && timeout 30 "$BB" run --backend namespace -e BB_NU_UNSET -e BB_NU_UNSET -- \
    sh -c 'echo "[${BB_NU_UNSET-unset}]"' 2>"$T/e.err")
is "-e NAME unset: the bottle runs without it" "$?:$out" "0:[unset]"
is "... with one warning" "$(cat "$T/e.err")" \
    "bot-bottle: warning: --env BB_NU_UNSET: the variable is not set here, so it is not passed; set it, or give a value with --env BB_NU_UNSET=VALUE"
# the CLI names options, not config keys
"$BB" policy check --no-default-config -a 127.0.0.1 x.test >/dev/null 2>"$T/o.err"
is "-a ADDR: the option to use" "$?:$(cat "$T/o.err")" \
    "125:bot-bottle: error: '127.0.0.1': IP literals are not patterns: allow addresses with --allow-cidr ADDR/32 (config: allow_cidr)"
"$BB" policy check --no-default-config --allow-cidr 10.0.0.0/33 x.test >/dev/null 2>"$T/o.err"
is "--allow-cidr errors name --allow-cidr" "$?:$(cat "$T/o.err")" \
    "125:bot-bottle: error: '10.0.0.0/33': bad prefix length in --allow-cidr (0-32 for IPv4, 0-128 for IPv6)"

# option-parser errors: the prefix and the Try line
"$BB" run --no-such-option >/dev/null 2>"$T/o.err"
is "an unknown option: prefix, Try line, 125" "$?:$(cat "$T/o.err")" \
    "125:bot-bottle: unrecognized option '--no-such-option'
Try 'bot-bottle run --help'."
"$BB" policy check --allow >/dev/null 2>"$T/o.err"
is "a missing argument: prefix, Try line, 125" "$?:$(cat "$T/o.err")" \
    "125:bot-bottle: option '--allow' requires an argument
Try 'bot-bottle policy check --help'."
# the argument-length limit, stated
big=$(head -c 120000 /dev/zero | tr '\0' a)
(cd "$T/ws" && timeout 30 "$BB" run --backend namespace -e "B1=$big" -e "B2=$big" -e "B3=$big" -e "B4=$big" -e "B5=$big" -e "B6=$big" -e "B7=$big" \
    -e "B8=$big" -e "B9=$big" -- true) 2>"$T/big.err"
like "the argument-length limit is stated" "$?:$(cat "$T/big.err")" \
    "^125:bot-bottle: error: the command and its variables take about [0-9]+ KiB; a bottle takes at most 960 KiB in all \\(Argument list too long: pass large data in a file in the workspace\\)"

# --- 4: signals like the tools people know: SIGINT to the supervisor alone 130, SIGTERM 143
for sig in INT TERM; do
    rm -f "$T/ws/sig-ready"
    (cd "$T/ws" && exec "$PY" -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)  # (a background job of a script ignores it)
os.execv(sys.argv[1], sys.argv[1:])' "$BB" run --backend namespace --name "bb-nu-$sig" -- \
        sh -c 'echo up >sig-ready; while :; do sleep 0.1; done') 2>"$T/sig.err" &
    SUP=$!
    wait_file "$T/ws/sig-ready"
    kill -"$sig" "$SUP"
    wait "$SUP"
    st=$?
    want=$([ "$sig" = INT ] && echo 130 || echo 143)
    is "SIG$sig to the supervisor alone: exit $want" "$st" "$want"
done

# -t: `tty` inside names the terminal, and writing to it reaches ours (GPG_TTY=$(tty) works)
out=$(cd "$T/ws" && timeout 60 "$PY" "$HELPERS/pty-run.py" -- "$BB" run --backend namespace -t \
    -- sh -c 'GPG_TTY=$(tty) && echo "tty=$GPG_TTY" && echo via-tty >"$GPG_TTY"' | tr -d '\r')
like "-t: tty prints the terminal's path inside the bottle" "$out" "tty=/dev/console"
like "-t: ... which is the terminal (writing to it reaches ours)" "$out" "via-tty"
like "-t: ... status 0" "$out" "status=0"
out=$(cd "$T/ws" && timeout 60 "$BB" run --backend namespace -- sh -c 'tty; ls /dev/console 2>&1')
like "without -t: not a tty, and no /dev/console" "$out" "not a tty.*No such file"

# audit records: the resolved address, and for plain HTTP the method and path (no query)
run -- curl -s -o /dev/null --max-time 10 \
    "http://allowed.test:$HTTP/hello/%22q%0a?token=SECRET" 2>/dev/null
rec=$(grep '"host":"allowed.test"' "$AUDIT" | grep '"status":' | tail -1)
like "HTTP record: method, path (escaped), address" "$rec" \
    '"method":"GET".*"path":"/hello/%22q%0a","addr":"127.0.0.1"'
unlike "... and never the query" "$(cat "$AUDIT")" "SECRET"
long=$(head -c 400 /dev/zero | tr '\0' a)
run -- curl -s -o /dev/null --max-time 10 "http://allowed.test:$HTTP/$long" 2>/dev/null
like "... a long path is bounded" "$(grep -o '"path":"/a*\.\.\."' "$AUDIT" | tail -1)" \
    "^\"path\":\"/a{255}\\.\\.\\.\""
# a DNS query whose upstream timed out says so
(cd "$T/ws" && timeout 60 "$BB" run --backend namespace --name bb-nu3 --allow "slow.test" \
    --upstream-dns "127.0.0.1:$SILENT" -- sh -c 'getent hosts slow.test; true') 2>"$T/err6"
like "DNS: an upstream timeout is on record, not only 'allow'" \
    "$(cat "$BOT_BOTTLE_STATE_DIR/logs/bb-nu3.audit.log")" \
    '"kind":"dns","host":"slow.test","port":0,"decision":"allow","reason":"upstream-timeout"'
like "... and the user is told" "$(cat "$T/err6")" "bot-bottle: slow.test failed \(resolve-timeout\)"

# the notices point at a help topic the binary has
H=$("$BB" help notices); st=$?
is "bot-bottle help notices exits 0" "$st" "0"
for r in not-allowlisted port-not-allowed ip-literal ssrf-private ssrf-metadata no-address \
    resolve-timeout connect-refused connect-timeout upstream-closed; do
    like "help notices explains $r" "$H" "$r"
done
"$BB" help nosuch >/dev/null 2>"$T/herr"
is "an unknown help topic exits 125" "$?" "125"
like "... and says so" "$(cat "$T/herr")" "^bot-bottle: no help topic 'nosuch'"

# --- 5: the docs stay inside the repository; messages never point at a source tree's docs
is "no page refers to files outside the repository" \
    "$(grep -rlE 'DESIGN\.md|STYLE\.md|\.\./shared|/work/shared' "$BB_SOURCE_DIR/docs" "$BB_SOURCE_DIR/README.md")" ""
check "the user guide exists and is linked from the README" \
    grep -q 'docs/guide.md' "$BB_SOURCE_DIR/README.md"
unlike "no message or help text of the binary names a docs/*.md path" \
    "$(strings "$BB" | grep -E 'docs/[a-z-]+\.md')" "docs/"

done_testing

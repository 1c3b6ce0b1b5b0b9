# Shared helpers for the integration tests (bash, TAP output; the one harness: no test has
# its own ok/not ok). Source it; then call `check DESC CMD...`, `is DESC GOT WANT`,
# `like DESC TEXT REGEX`, `unlike`, `skip DESC WHY`, `done_testing`.
# Every test runs in its own scratch directory ($T) and state root, sees only its own processes
# (`procs REGEX`, `wait_gone REGEX`: never ps/pgrep, which see every bottle on the machine),
# orders itself by events (`wait_file`, `wait_port`, `wait_grep`), not by sleeps, and
# everything it started is killed on exit.
set -uo pipefail

# The test is the subreaper of everything it starts (prctl PR_SET_CHILD_SUBREAPER, kept across
# this one re-exec): a process that outlives its parent, like a bottle-init whose supervisor
# was killed, is re-parented to this shell instead of the machine's init, so `procs` below
# still finds it. Nothing of another test or bottle on the machine is ever in that tree.
if [ "${_BB_TEST_SUBREAPER:-}" != $$ ] && [ "${#BASH_SOURCE[@]}" -gt 1 ]; then
    export _BB_TEST_SUBREAPER=$$
    exec python3 -c 'import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:
    sys.exit("lib.sh: prctl(PR_SET_CHILD_SUBREAPER) failed")
os.execv(sys.argv[1], sys.argv[1:])' "$BASH" "${BASH_SOURCE[-1]}" "$@"
fi

: "${BB:?BB must point at the bot-bottle binary (meson sets it)}"
: "${BB_SOURCE_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
HELPERS="$BB_SOURCE_DIR/tests/integration/helpers"
T=$(mktemp -d /tmp/bb-test.XXXXXX)
# Every test keeps its bottles' state (and audit logs) in its own directory, never the real
# /run/bot-bottle: tests running beside other bottles must not see or reclaim them.
export BOT_BOTTLE_STATE_DIR="$T/state"
# ... and its own config directory: the user's config.ini and trust store are not read, and
# approvals a test records (bot-bottle trust) land in $T.
export XDG_CONFIG_HOME="$T/config"
# (and bot-bottle's agent cache and state: never the user's, never shared between tests)
export XDG_CACHE_HOME="$T/cache" XDG_DATA_HOME="$T/data"
_n=0
_failed=0
_pids=()

cleanup() {
    local p
    for p in "${_pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    sleep 0.1
    for p in "${_pids[@]}"; do
        kill -9 "$p" 2>/dev/null
    done
    # whatever else this test started and left behind (its own process tree only)
    for p in $(procs . | cut -d' ' -f1); do
        kill -9 "$p" 2>/dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT

# The python the tests and the bottles run (a host path: a bottle sees the host's /usr).
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "Bail out! $PY is needed (scripts/install-deps.sh installs python3)"; exit 1; }

# The plan is printed at the end (TAP allows it), so counts never go stale.
plan() { :; }
diag() { sed 's/^/# /' <<<"$*"; }
_result() {
    _n=$((_n + 1))
    if [ "$1" = 0 ]; then
        echo "ok $_n - $2"
    else
        echo "not ok $_n - $2"
        _failed=$((_failed + 1))
    fi
}
# check DESC CMD... : passes when CMD exits 0
check() {
    local d=$1
    shift
    if "$@" >"$T/check.out" 2>&1; then
        _result 0 "$d"
    else
        _result 1 "$d"
        diag "command: $*"
        diag "$(head -c 2000 "$T/check.out")"
    fi
}
is() {
    if [ "$2" = "$3" ]; then
        _result 0 "$1"
    else
        _result 1 "$1"
        diag "got:  '$2'"
        diag "want: '$3'"
    fi
}
like() {
    if grep -qzE -- "$3" <<<"$2"; then
        _result 0 "$1"
    else
        _result 1 "$1"
        diag "text: $(head -c 1500 <<<"$2")"
        diag "does not match: $3"
    fi
}
unlike() {
    if grep -qzE -- "$3" <<<"$2"; then
        _result 1 "$1"
        diag "text: $(head -c 1500 <<<"$2")"
        diag "matches (must not): $3"
    else
        _result 0 "$1"
    fi
}
skip() { _n=$((_n + 1)); echo "ok $_n # SKIP $1: $2"; }
done_testing() {
    echo "1..$_n"
    exit $((_failed > 0))
}

# need_bottles WHAT: the rest of the test runs bottles; skip it all (saying why) when this user
# cannot (not root, and no unprivileged user namespaces).
need_bottles() {
    if [ "$(id -u)" != 0 ] && ! unshare -Ur true 2>/dev/null; then
        skip "$1" "user namespaces are not available to this user"
        done_testing
    fi
}
# need_root WHAT WHY: skip the rest of the test unless running as root.
need_root() {
    if [ "$(id -u)" != 0 ]; then
        skip "$1" "$2"
        done_testing
    fi
}

# test_origin_cert NAME...: a test CA ($T/oca.pem, .key) and an origin certificate for the
# names ($T/srv.pem, .key; CN the first), for fake TLS origins on loopback (the daemon trusts
# the CA through [tls] extra_ca). Bails out when openssl cannot make them.
test_origin_cert() {
    local san
    san=$(printf 'DNS:%s,' "$@")
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=bb test origin CA" -keyout "$T/oca.key" -out "$T/oca.pem" >/dev/null 2>&1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -addext "subjectAltName=${san%,}" -keyout "$T/srv.key" -out "$T/srv.csr" >/dev/null 2>&1
    openssl x509 -req -in "$T/srv.csr" -CA "$T/oca.pem" -CAkey "$T/oca.key" -CAcreateserial \
        -days 2 -copy_extensions copy -out "$T/srv.pem" >/dev/null 2>&1
    [ -s "$T/srv.pem" ] || { echo "Bail out! cannot make the test certificates"; exit 1; }
}

# A free TCP+UDP port on 127.0.0.1 (the kernel picks; tiny race accepted in tests).
free_port() {
    python3 - <<'PY'
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
    except OSError:
        t.close(); continue
    t.close(); u.close(); print(p); break
PY
}

# dns_stub: helpers/dns-stub.py on a free 127.0.0.1 port (TCP and UDP), in the background, as
# the upstream DNS of what the test starts (--upstream-dns 127.0.0.1:$DNS): it answers only
# with loopback/TEST-NET addresses and logs each name it is asked to $T/dns.log. Sets DNS.
# The bot-bottle CAs of a CA bundle read on stdin: one line per CA, the text of its
# nameConstraints extension on one line (e.g. "X509v3 Name Constraints: critical Permitted:
# DNS:.example.test").
bundle_ca_constraints() {
    "$PY" -c '
import re, subprocess, sys
for pem in re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", sys.stdin.read(), re.S):
    subj = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem, capture_output=True, text=True).stdout
    if "bot-bottle CA" not in subj:
        continue
    nc = subprocess.run(["openssl", "x509", "-noout", "-ext", "nameConstraints"], input=pem, capture_output=True, text=True).stdout
    print(" ".join(nc.split()))'
}

dns_stub() {
    DNS=$(free_port)
    bg "$PY" "$HELPERS/dns-stub.py" serve --port "$DNS" --log "$T/dns.log" --ready "$T/dns.ready"
    wait_file "$T/dns.ready" || { echo "Bail out! dns stub did not start"; exit 1; }
}

# bg CMD... : start in the background, remember the pid (in $BGPID) for cleanup.
bg() {
    "$@" &
    BGPID=$!
    _pids+=("$BGPID")
}

# wait_port PORT [HOST]: until something listens (5 s max)
wait_port() {
    local host=${2:-127.0.0.1}
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

wait_file() {
    for _ in $(seq 100); do
        [ -s "$1" ] && return 0
        sleep 0.05
    done
    return 1
}

# make_cert NAME...: self-signed cert for the names, in $T/cert.pem / $T/key.pem
make_cert() {
    local san=""
    for n in "$@"; do san="${san:+$san,}DNS:$n"; done
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" \
        -addext "subjectAltName=$san" -keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1
}

# procs REGEX: the live (not zombie) processes this test started, directly or not, orphans
# included (the test is their subreaper), whose command line (arguments joined by spaces)
# matches the extended REGEX; one "PID COMMAND LINE" a line. Never anything else on the machine.
procs() {
    python3 - "$$" "$1" <<'PY'
import os, re, sys
root, pat, me = int(sys.argv[1]), re.compile(sys.argv[2]), os.getpid()
kids, info = {}, {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        with open("/proc/%s/status" % d) as f:
            st = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        with open("/proc/%s/cmdline" % d, "rb") as f:
            cmd = f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        continue
    kids.setdefault(int(st["PPid"]), []).append(int(d))
    info[int(d)] = (st["State"].strip()[:1], cmd)
todo, seen = list(kids.get(root, [])), []
while todo:
    p = todo.pop()
    seen.append(p)
    todo += kids.get(p, [])
for p in sorted(seen):
    state, cmd = info[p]
    if p != me and state != "Z" and cmd and pat.search(cmd):
        print(p, cmd)
PY
}

# wait_gone REGEX: until no process of this test matches (5 s max); 1 if some still do.
wait_gone() {
    for _ in $(seq 100); do
        [ -z "$(procs "$1")" ] && return 0
        sleep 0.05
    done
    return 1
}

# wait_grep REGEX FILE [COUNT]: until FILE has at least COUNT (default 1) lines matching the
# extended REGEX (10 s max). For ordering a test by what a daemon says it did, not by sleeps.
wait_grep() {
    for _ in $(seq 200); do
        [ "$(grep -cE -- "$1" "$2" 2>/dev/null)" -ge "${3:-1}" ] && return 0
        sleep 0.05
    done
    return 1
}

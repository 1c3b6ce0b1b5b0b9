#!/usr/bin/env bash
# Integration test of the DNS filter (DESIGN.md S3, S5, S9) through the real daemon:
#   bot-bottle egress --dns ... --upstream-dns <stub> --allow ... --audit FILE
# with tests/integration/helpers/dns-stub.py as the upstream (it logs every name it is asked)
# and as the client. Everything on 127.0.0.1. TAP output.
source "$(dirname "$0")/lib.sh"

STUB=$HELPERS/dns-stub.py
PY=${PYTHON:-python3}
tmp=$T

# N distinct ports free for both UDP and TCP on 127.0.0.1 (held until all are chosen).
free_ports() {
    "$PY" - "$1" <<'EOF'
import socket, sys
held, ports = [], []
while len(ports) < int(sys.argv[1]):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    p = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", p))
    except OSError:
        continue
    held += [u, t]
    ports.append(p)
print(" ".join(map(str, ports)))
EOF
}

read -r SPORT DPORT PPORT <<<"$(free_ports 3)"
DNS="127.0.0.1:$DPORT"
stublog="$tmp/stub.log"
audit="$tmp/audit.log"
: >"$stublog"

bg "$PY" "$STUB" serve --port "$SPORT" --log "$stublog" --ready "$tmp/stub.ready"
bg "$BB" egress --listen "127.0.0.1:$PPORT" --dns "$DNS" --upstream-dns "127.0.0.1:$SPORT" \
    --allow allowed.test --allow '*.allowed.test' --audit "$audit" 2>"$tmp/egress.err"
egress_pid=$BGPID

q() { "$PY" "$STUB" query --server "$DNS" "$@"; }

# Wait (bounded) for both to answer.
up=0
for _ in $(seq 1 50); do
    if [ -e "$tmp/stub.ready" ] && q --timeout 0.2 ready.probe.invalid A 2>/dev/null |
        grep -q rcode=; then
        up=1
        break
    fi
    sleep 0.1
done
is "daemon answers DNS on $DNS" "$up" 1
[ $up = 1 ] || { echo "Bail out! the daemon did not answer: $(head -c 500 "$tmp/egress.err")"; exit 1; }

out=$(q www.allowed.test A)
check "allowlisted name is answered ($out)" grep -q 'rcode=NOERROR .*addrs=93.184.216.34' <<<"$out"
out=$(q WWW.Allowed.Test. AAAA)
check "allowlisted AAAA, any case, trailing dot ($out)" grep -q 'addrs=2606:2800::1' <<<"$out"
out=$(q allowed.test TXT)
check "other types pass for allowlisted names ($out)" grep -q 'rcode=NOERROR .*an=1' <<<"$out"

denied=(
    evil.test
    allowed.test.evil.test
    xallowed.test
    allowed.testx
    "aGVsbG8gd29ybGQgdGhpcyBpcyBleGZpbHRyYXRlZCBkYXRh.t.tunnel.evil.test"
    "0123456789abcdef0123456789abcdef01234567.89abcdef.x.tunnel.evil.test"
    localhost
    metadata.google.internal
)
bad=""
for name in "${denied[@]}"; do
    for t in A TXT AAAA; do
        out=$(q "$name" "$t")
        grep -q 'rcode=NXDOMAIN .*an=0' <<<"$out" || bad="$bad $name/$t:$out"
    done
done
check "non-allowlisted and tunnelling-shaped names get NXDOMAIN${bad:+ (bad:$bad)}" test -z "$bad"

# S3: the upstream stub never saw any of them.
seen=""
for name in "${denied[@]}"; do
    if grep -qiF " $name " "$stublog"; then seen="$seen $name"; fi
done
check "stub saw zero queries for denied names${seen:+ (saw:$seen)}" test -z "$seen"
check "stub saw the allowlisted names" grep -q '^udp www.allowed.test A$' "$stublog"

out=$(q private.allowed.test A)
check "private/metadata answers stripped, public kept ($out)" \
    grep -q 'rcode=NOERROR .*an=1 .*addrs=93.184.216.35 ' <<<"$out"
out=$(q allprivate.allowed.test A)
check "an answer left empty is NOERROR with no records ($out)" grep -q 'rcode=NOERROR .*an=0' <<<"$out"

out=$(q --tcp tcp.allowed.test A)
check "TCP works ($out)" grep -q 'rcode=NOERROR .*addrs=93.184.216.34' <<<"$out"
out=$(q --tcp evil.test A)
check "TCP denies too ($out)" grep -q 'rcode=NXDOMAIN' <<<"$out"
out=$(q big.allowed.test TXT)
out2=$(q --tcp big.allowed.test TXT)
check "big answer: TC over UDP, whole over TCP ($out / $out2)" \
    bash -c "grep -q 'tc=1' <<<'$out' && grep -q 'tc=0 an=12' <<<'$out2'"

out=$(q www.allowed.test ANY)
check "ANY is refused ($out)" grep -q 'rcode=REFUSED' <<<"$out"

# Malformed input: no crash, no hang; FORMERR / NOTIMP / silence as documented.
res=""
hdr="12340100"
for hex in \
    "" "1234" "123401000001" \
    "${hdr}000100000000000003777777c00c00010001" \
    "${hdr}0001000000000000c00c00010001" \
    "${hdr}00010000000000003f616263" \
    "${hdr}000200000000000003777777000001000100" \
    "${hdr}000100000000000503777777000001000100" \
    "12342100000100000000000003777777000001000100" \
    "12348180000100000000000003777777000001000100"; do
    r=$("$PY" "$STUB" raw --server "$DNS" "$hex" 2>&1)
    res="$res $r"
done
check "malformed packets: dropped or FORMERR/NOTIMP as documented (replies:$res)" \
    test "$res" = " none none none FORMERR FORMERR FORMERR FORMERR FORMERR NOTIMP none"
out=$(q after.malformed.allowed.test A)
check "malformed packets leave the filter answering ($out)" grep -q 'rcode=NOERROR' <<<"$out"
check "daemon still running" kill -0 "$egress_pid"

# The audit writer may still be flushing: wait (bounded) for the records, then check them.
check "audit has a DNS allow record" \
    wait_grep '"kind":"dns","host":"www.allowed.test",.*"decision":"allow"' "$audit"
check "audit has a DNS deny record with its reason" \
    wait_grep '"kind":"dns","host":"evil.test",.*"decision":"deny","reason":"not-allowlisted"' "$audit"
done_testing

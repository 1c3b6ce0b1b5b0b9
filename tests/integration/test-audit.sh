#!/usr/bin/env bash
# The audit log must not fail open. The real daemon writes its audit log to a 256 KiB tmpfs
# (mounted in a private mount namespace, so nothing leaks to the host); the tmpfs is filled;
# then nothing new may leave unrecorded: an allowlisted proxy request gets 503 audit-failed and
# the fake origin sees no request, an allowlisted DNS name gets SERVFAIL and the fake upstream
# resolver sees no query. Freeing space lets egress resume. Also: identical denials through the
# real daemon are aggregated, and the log is rotated at --audit-max-size.
if [ -z "${BB_AUDIT_IN_MNTNS:-}" ]; then
    if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
        BB_AUDIT_IN_MNTNS=1 exec unshare -m --propagation private bash "$0" "$@"
    fi
fi
source "$(dirname "$0")/lib.sh"

if [ -z "${BB_AUDIT_IN_MNTNS:-}" ]; then
    skip "audit fail-closed on a full filesystem" "needs root and unshare -m to mount a tmpfs"
    done_testing
fi

mkdir -p "$T/small"
mount -t tmpfs -o size=256k,mode=0700 bb-test-audit "$T/small" || {
    echo "Bail out! cannot mount a tmpfs"; exit 1; }
# lib.sh removes $T on exit; the mount goes with this namespace, but unmount it first.
trap 'umount -l "$T/small" 2>/dev/null; cleanup' EXIT

HTTP=$(free_port); DNS=$(free_port); PX=$(free_port); DF=$(free_port)
bg python3 "$HELPERS/fake-upstream.py" --http "$HTTP" --dns "$DNS" --log "$T/origin.log" \
    --ready "$T/origin.ready" --zone allowed.test=127.0.0.1 --zone www.allowed.test=127.0.0.1 \
    --zone other.allowed.test=127.0.0.1
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }
cat >"$T/bottle.ini" <<INI
[egress]
allow = allowed.test:$HTTP
allow = *.allowed.test:$HTTP
allow = allowed.test
allow = *.allowed.test
allow_cidr = 127.0.0.1/32
upstream_dns = 127.0.0.1:$DNS
INI
AUDIT="$T/small/t.audit.log"
bg "$BB" egress -c "$T/bottle.ini" --listen "127.0.0.1:$PX" --dns "127.0.0.1:$DF" \
    --audit "$AUDIT" --name t-audit 2>"$T/egress.err"
wait_port "$PX" || { echo "Bail out! egress did not start: $(cat "$T/egress.err")"; exit 1; }

proxy="http://127.0.0.1:$PX"
fetch() { # prints CODE|X-Bottle-Error
    curl -s --max-time 10 -x "$proxy" -D "$T/h" -o /dev/null -w '%{http_code}' "$@" >"$T/code"
    printf '%s|%s' "$(cat "$T/code")" \
        "$(grep -i '^x-bottle-error:' "$T/h" | cut -d' ' -f2 | tr -d '\r')"
}
http_seen() { grep -c '^http ' "$T/origin.log" 2>/dev/null || true; }
dns_seen() { grep -c "^dns $1 " "$T/origin.log" 2>/dev/null || true; }

is "before: an allowlisted request works" "$(fetch "http://allowed.test:$HTTP/hello")" "200|"
like "before: an allowlisted DNS name resolves" \
    "$(python3 "$HELPERS/dns-stub.py" query --server "127.0.0.1:$DF" www.allowed.test A)" \
    "rcode=NOERROR"

# --- 1000 identical denials: a bounded number of lines, and the counts add up
python3 - "$PX" >"$T/deny.out" <<'PY'
import socket, sys
codes = {}
for i in range(1000):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"GET http://evil.test/x HTTP/1.1\r\nHost: evil.test\r\n\r\n")
    r = s.recv(100).split(b" ")[1].decode()
    codes[r] = codes.get(r, 0) + 1
    s.close()
print(codes)
PY
is "1000 denied requests were all answered 403" "$(cat "$T/deny.out")" "{'403': 1000}"
sleep 1.3 # the aggregation window ends; its summary is written
read -r lines total < <(python3 - "$AUDIT" <<'PY'
import json, sys
lines = total = 0
for l in open(sys.argv[1]):
    try:
        o = json.loads(l)
    except ValueError:
        continue  # a broken line (a write cut short) stands for nothing
    if o["host"] == "evil.test":
        lines += 1
        total += o.get("count", 1)
print(lines, total)
PY
)
is "... their audit records add up to 1000 decisions" "$total" "1000"
check "... in a handful of lines, not 1000 (got $lines)" test "$lines" -le 10

# --- DNS: far above 100 decisions/s, every distinct name that went upstream is on record by name
python3 - "$DF" <<'PY'
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for i in range(300):
    name = f"x{i}.exfil.allowed.test"
    q = struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    q += struct.pack("!HH", 1, 1)
    s.sendto(q, ("127.0.0.1", int(sys.argv[1])))
    if i % 50 == 49:
        time.sleep(0.02)
end = time.time() + 3
got = 0
while got < 300 and time.time() < end:
    try:
        s.recv(4096); got += 1
    except socket.timeout:
        break
PY
# The last records may still be on their way to the file: look again (bounded) until every
# name that went upstream is there.
for _ in $(seq 50); do
    read -r fwd missing < <(python3 - "$T/origin.log" "$AUDIT" <<'PY'
import json, sys
up = {l.split()[1] for l in open(sys.argv[1]) if l.startswith("dns ") and ".exfil." in l}
named = set()
for l in open(sys.argv[2]):
    try:
        named.add(json.loads(l)["host"])
    except ValueError:
        pass
print(len(up), len(up - named))
PY
)
    [ "$missing" = 0 ] && break
    sleep 0.1
done
check "DNS: 300 distinct names under a wildcard went upstream (got $fwd)" test "$fwd" -ge 250
is "DNS: ... and every one of them is in the audit log by name" "$missing" "0"

# --- fill the filesystem that holds the audit log
dd if=/dev/zero of="$T/small/fill" bs=1k count=1024 2>/dev/null
check "the tmpfs is full" test "$(df --output=avail -k "$T/small" | tail -1 | tr -d ' ')" -eq 0
# The log's last page may still have room for a few records: distinct denials (each a new
# record) use it up until the daemon says the log cannot be written.
for i in $(seq 200); do
    grep -q "cannot write the audit log" "$T/egress.err" && break
    fetch "http://d$i.evil.test/" >/dev/null
done
like "the daemon says once on stderr that the audit log cannot be written" \
    "$(cat "$T/egress.err")" "cannot write the audit log .*refusing new egress"
is "... once" "$(grep -c 'cannot write the audit log' "$T/egress.err")" "1"

h0=$(http_seen)
is "full: an allowlisted request gets 503 audit-failed" \
    "$(fetch "http://allowed.test:$HTTP/after-full")" "503|audit-failed"
is "full: a CONNECT to an allowlisted host gets 503 audit-failed" \
    "$(curl -s --max-time 10 -x "$proxy" -p -o /dev/null -w '%{http_connect}' \
        "http://other.allowed.test:$HTTP/x")" "503"
is "full: the origin saw no request" "$(http_seen)" "$h0"
unlike "... and none for /after-full" "$(cat "$T/origin.log")" "after-full"
d0=$(dns_seen other.allowed.test)
like "full: an allowlisted DNS name gets SERVFAIL" \
    "$(python3 "$HELPERS/dns-stub.py" query --server "127.0.0.1:$DF" other.allowed.test A)" \
    "rcode=SERVFAIL"
sleep 0.2
is "full: the upstream resolver was not asked" "$(dns_seen other.allowed.test)" "$d0"
like "full: a denied DNS name still gets NXDOMAIN" \
    "$(python3 "$HELPERS/dns-stub.py" query --server "127.0.0.1:$DF" evil.test A)" \
    "rcode=NXDOMAIN"

# --- space comes back: the next write succeeds and egress resumes
rm -f "$T/small/fill"
h1=$(http_seen)
is "freed: an allowlisted request works again" "$(fetch "http://allowed.test:$HTTP/hello")" "200|"
is "... the origin saw it" "$(http_seen)" "$((h1 + 1))"
like "... and the daemon said so" "$(cat "$T/egress.err")" "can be written again"
like "... and the request is on record" "$(cat "$AUDIT")" '"host":"allowed.test".*"status":200'

# --- rotation: a small cap keeps two files, each under it
kill "$BGPID" 2>/dev/null; wait "$BGPID" 2>/dev/null
ROT="$T/rot.audit.log"
bg "$BB" egress -c "$T/bottle.ini" --listen "127.0.0.1:$PX" --audit "$ROT" \
    --audit-max-size 4K --name t-audit 2>"$T/egress2.err"
wait_port "$PX" || { echo "Bail out! egress did not restart: $(cat "$T/egress2.err")"; exit 1; }
for i in $(seq 60); do fetch "http://allowed.test:$HTTP/r$i" >/dev/null; done
check "rotation: the log was rotated to .1" test -s "$ROT.1"
check "rotation: the current file is under the cap" test "$(stat -c %s "$ROT")" -le 4096
check "rotation: the rotated file is under the cap" test "$(stat -c %s "$ROT.1")" -le 4096
check "rotation: no .2 is kept" test ! -e "$ROT.2"
like "rotation: the newest request is in the current file" "$(cat "$ROT")" '/r60|"host":"allowed.test"'
kill "$BGPID" 2>/dev/null; wait "$BGPID" 2>/dev/null
ln -s "$T/elsewhere" "$T/link.log"
timeout 10 "$BB" egress -c "$T/bottle.ini" --listen "127.0.0.1:$PX" --audit "$T/link.log" 2>"$T/egress3.err"
is "a symlink as audit path: the daemon refuses to start (125)" "$?" "125"
like "... saying it is a symlink" "$(cat "$T/egress3.err")" "symlink"
check "... and nothing was written through it" test ! -e "$T/elsewhere"
done_testing

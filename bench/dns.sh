#!/usr/bin/env bash
# DNS filter benchmark (prints numbers; not a test). Side by side, one run, all on 127.0.0.1:
#   bot-bottle egress --dns   vs   unbound   vs   dnsmasq, each set up as the same allowlist filter
#   (allowed.test and *.allowed.test forwarded to a fast C stub upstream, everything else NXDOMAIN).
# Mixes (dnsperf, max rate, -q 100 outstanding, DURATION s each):
#   denied    unique non-allowlisted names           -> q/s, resolver CPU us per query
#   forwarded unique allowlisted names (never cached) -> q/s, CPU us per query
#   cached    100 allowlisted names, warmed first     -> q/s, CPU us per query
# and p50/p99 latency at a fixed 2000 q/s for each mix (dnsperf -Q 2000 -v, per-query latencies).
# CPU per query = delta of utime+stime from /proc/PID/stat over the run / queries completed.
# Last throughput row "stub-floor": the bare stub answering the denied mix, i.e. the kernel's
# per-datagram cost that no resolver on UDP sockets can go below (see docs/dns.md).
# The upstream stub is a single-threaded recvmmsg/sendmmsg C responder: it answers ~10x faster
# than any of the resolvers forward, so it is not the bottleneck (its own CPU is printed too).
# Usage: bench/dns.sh [BB_BINARY]   env: DURATION (default 8), LAT_DURATION (default 4)
set -u
BB=${1:-${BB:-}}
if [ -z "$BB" ]; then
    for c in build/src/cli/bot-bottle build-*/src/cli/bot-bottle; do
        [ -x "$c" ] && BB=$c && break
    done
fi
[ -x "${BB:-}" ] || { echo "bot-bottle binary not found (pass it as \$1)" >&2; exit 1; }
for t in dnsperf unbound dnsmasq cc; do
    command -v "$t" >/dev/null || { echo "missing $t (apt-get install dnsperf unbound dnsmasq)" >&2; exit 1; }
done
DURATION=${DURATION:-8}
LAT_DURATION=${LAT_DURATION:-4}
TICK=$(getconf CLK_TCK)

tmp=$(mktemp -d /tmp/bb-bench-dns.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# ---- the upstream stub ----
cat >"$tmp/stub.c" <<'EOF'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#define B 64
int main(int argc, char **argv)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int sz = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        return 1;
    static unsigned char in[B][512], out[B][600];
    struct sockaddr_in peers[B];
    struct iovec iv[B], ov[B];
    struct mmsghdr im[B], om[B];
    for (;;) {
        for (int i = 0; i < B; i++) {
            iv[i] = (struct iovec){ in[i], sizeof(in[i]) };
            im[i].msg_hdr = (struct msghdr){ .msg_name = &peers[i], .msg_namelen = sizeof(peers[i]),
                                             .msg_iov = &iv[i], .msg_iovlen = 1 };
        }
        int n = recvmmsg(fd, im, B, MSG_WAITFORONE, NULL), k = 0;
        for (int i = 0; i < n; i++) {
            unsigned char *q = in[i], *o = out[k];
            size_t len = im[i].msg_len, p = 12;
            if (len < 17 || (q[2] & 0x80))
                continue;
            while (p < len && q[p] && q[p] < 64)
                p += q[p] + 1;
            p += 5;
            if (p > len)
                continue;
            memcpy(o, q, p);
            o[2] = 0x81 | (q[2] & 1); o[3] = 0x80;
            o[6] = 0; o[7] = 1; o[8] = o[9] = o[10] = o[11] = 0;
            static const unsigned char rr[] = { 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 93, 184, 216, 34 };
            memcpy(o + p, rr, sizeof(rr));
            ov[k] = (struct iovec){ o, p + sizeof(rr) };
            om[k].msg_hdr = (struct msghdr){ .msg_name = &peers[i], .msg_namelen = im[i].msg_hdr.msg_namelen,
                                             .msg_iov = &ov[k], .msg_iovlen = 1 };
            k++;
        }
        if (k)
            sendmmsg(fd, om, (unsigned)k, 0);
    }
}
EOF
cc -O2 -o "$tmp/stub" "$tmp/stub.c" || exit 1

free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
held, ports = [], []
while len(ports) < int(sys.argv[1]):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
    p = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", p))
    except OSError:
        continue
    held += [u, t]; ports.append(p)
print(" ".join(map(str, ports)))
EOF
}
read -r SP BBP BBPROXY UBP DMP <<<"$(free_ports 5)"

"$tmp/stub" "$SP" &
pids+=($!)
STUB_PID=$!

# ---- the three filters ----
"$BB" egress --listen "127.0.0.1:$BBPROXY" --dns "127.0.0.1:$BBP" --upstream-dns "127.0.0.1:$SP" \
    --allow allowed.test --allow '*.allowed.test' --audit "$tmp/bb-audit.log" 2>"$tmp/bb.err" &
pids+=($!)
BB_PID=$!

cat >"$tmp/unbound.conf" <<EOF
server:
    interface: 127.0.0.1@$UBP
    port: $UBP
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$tmp"
    pidfile: ""
    use-syslog: no
    logfile: "$tmp/unbound.log"
    verbosity: 0
    num-threads: 1
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    do-not-query-localhost: no
    qname-minimisation: no
    local-zone: "." always_nxdomain
    local-zone: "allowed.test." transparent
    msg-cache-size: 64m
    rrset-cache-size: 128m
    num-queries-per-thread: 4096
    outgoing-range: 8192
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$SP
EOF
unbound -d -c "$tmp/unbound.conf" 2>"$tmp/unbound.err" &
pids+=($!)
UB_PID=$!

dnsmasq -k --conf-file=/dev/null --port="$DMP" --listen-address=127.0.0.1 --bind-interfaces \
    --no-resolv --no-hosts --no-poll --user=root --pid-file= --cache-size=10000 \
    --dns-forward-max=1000 --address=/#/ --server="/allowed.test/127.0.0.1#$SP" \
    --log-facility="$tmp/dnsmasq.log" 2>"$tmp/dnsmasq.err" &
pids+=($!)
DM_PID=$!

sleep 1
for p in $BB_PID $UB_PID $DM_PID $STUB_PID; do
    kill -0 "$p" 2>/dev/null || { echo "a server failed to start:"; cat "$tmp"/*.err; exit 1; }
done

# ---- inputs ----
python3 - "$tmp" <<'EOF'
import sys
d = sys.argv[1]
with open(d + "/denied", "w") as f:
    for i in range(200000):
        f.write("d%d.tunnel.evil.test A\n" % i)
with open(d + "/cached", "w") as f:
    for i in range(100000):
        f.write("c%d.allowed.test A\n" % (i % 100))
for name in ("bb", "ub", "dm", "bbl", "ubl", "dml"):
    with open(d + "/fwd-" + name, "w") as f:
        for i in range(600000):
            f.write("%s%d.allowed.test A\n" % (name, i))
EOF

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run NAME PORT PID DATAFILE -> prints "qps cpu_us_per_query"
run() {
    local port=$2 pid=$3 data=$4 c0 c1 s0 s1 out q qps
    c0=$(cpu_ticks "$pid")
    s0=$(cpu_ticks "$STUB_PID")
    out=$(dnsperf -s 127.0.0.1 -p "$port" -d "$data" -l "$DURATION" -q 100 -n 1 2>&1)
    c1=$(cpu_ticks "$pid")
    s1=$(cpu_ticks "$STUB_PID")
    q=$(awk '/Queries completed:/ {print $3}' <<<"$out")
    qps=$(awk '/Queries per second:/ {print $4}' <<<"$out")
    awk -v q="$q" -v qps="$qps" -v c=$((c1 - c0)) -v s=$((s1 - s0)) -v t="$TICK" \
        'BEGIN { if (q > 0) printf "%10.0f %10.2f %10.2f\n", qps, c * 1e6 / t / q, s * 1e6 / t / q;
                 else print "failed" }'
}

# lat PORT DATAFILE -> "p50 p99" in microseconds at 2000 q/s
lat() {
    dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$LAT_DURATION" -Q 2000 -q 100 -n 1 -v 2>/dev/null |
        awk '$1 == ">" || $1 == "<" { v = $NF; if (v ~ /^[0-9.]+$/) print v * 1e6 }' | sort -n |
        awk '{ a[NR] = $1 } END { if (NR) printf "%8.0f %8.0f\n", a[int(NR * 0.5) + 1], a[int(NR * 0.99) + 1]; else print "n/a n/a" }'
}

echo "# DNS filter benchmark: $(nproc) cores, $DURATION s per throughput run, $LAT_DURATION s per latency run"
echo "# upstream stub CPU per query shown for the forwarded mix (the stub is not the bottleneck)"
printf "%-10s %-10s %10s %10s %10s\n" resolver mix "q/s" "cpu_us/q" "stub_us/q"
for r in "bot-bottle $BBP $BB_PID bb" "unbound $UBP $UB_PID ub" "dnsmasq $DMP $DM_PID dm"; do
    set -- $r
    name=$1 port=$2 pid=$3 tag=$4
    printf "%-10s %-10s %s\n" "$name" denied "$(run "$name" "$port" "$pid" "$tmp/denied")"
    printf "%-10s %-10s %s\n" "$name" forwarded "$(run "$name" "$port" "$pid" "$tmp/fwd-$tag")"
    dnsperf -s 127.0.0.1 -p "$port" -d "$tmp/cached" -n 1 -q 50 -l 2 >/dev/null 2>&1 # warm up
    printf "%-10s %-10s %s\n" "$name" cached "$(run "$name" "$port" "$pid" "$tmp/cached")"
done
# The floor: the stub itself answering the denied mix (recvmmsg/sendmmsg, no parsing, no
# policy, no audit). What it costs per query is the kernel's UDP receive + send + wakeups, which
# every resolver on UDP sockets pays on this machine whatever its own code does.
printf "%-10s %-10s %s\n" stub-floor denied "$(run stub "$SP" "$STUB_PID" "$tmp/denied")"
echo
echo "# latency at a fixed 2000 q/s (microseconds, from dnsperf -v per-query latencies)"
printf "%-10s %-10s %8s %8s\n" resolver mix p50 p99
for r in "bot-bottle $BBP bbl" "unbound $UBP ubl" "dnsmasq $DMP dml"; do
    set -- $r
    printf "%-10s %-10s %s\n" "$1" denied "$(lat "$2" "$tmp/denied")"
    printf "%-10s %-10s %s\n" "$1" forwarded "$(lat "$2" "$tmp/fwd-$3")"
    printf "%-10s %-10s %s\n" "$1" cached "$(lat "$2" "$tmp/cached")"
done

#!/usr/bin/env bash
# bench/intercept.sh: intercepted HTTPS through bot-bottle's egress daemon ([egress] inspect,
# docs/credentials.md) against squid with ssl-bump, on loopback.
#
# Prints numbers; not a test. Measures, for each proxy, with one curl process per run:
#   - GETs/s: N small GETs (/hello) on one kept-alive intercepted connection; the same N from
#     CONC (default 4) kept-alive clients at once; and N/10 GETs each on a fresh connection (a
#     TLS handshake on both sides each time);
#   - MB/s: one 64 MiB body (/size/...) through the intercepted connection.
# The origin is tests/integration/helpers/fake-upstream.py --https (Python, threaded): it bounds
# both proxies alike; compare the proxies with each other, not with other numbers.
#
# Usage: bench/intercept.sh [BOT-BOTTLE-BINARY]   (N from the environment, default 500;
# ROUNDS, default 2: the proxies are measured in turn, round by round; NOPOOL=1 adds a
# bot-bottle daemon with --upstream-pool 0)
# Needs squid built with OpenSSL (Debian: squid-openssl, which replaces squid); installs it with
# apt-get when missing and running as root, else says so and measures bot-bottle only.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
BB=${1:-$here/../build/src/cli/bot-bottle}
N=${N:-500}
ROUNDS=${ROUNDS:-2}
T=$(mktemp -d)
OP=$((20000 + RANDOM % 10000)) DP=$((OP + 1)) BP=$((OP + 2)) SQ=$((OP + 3))
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT

# A test CA for the origin, and the origin's certificate for bench.test.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench origin CA" \
    -keyout "$T/oca.key" -out "$T/oca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bench.test" \
    -addext "subjectAltName=DNS:bench.test" -keyout "$T/o.key" -out "$T/o.csr" 2>/dev/null
openssl x509 -req -in "$T/o.csr" -CA "$T/oca.pem" -CAkey "$T/oca.key" -CAcreateserial -days 2 \
    -copy_extensions copy -out "$T/o.pem" 2>/dev/null
python3 "$here/../tests/integration/helpers/fake-upstream.py" --https "$OP" --cert "$T/o.pem" \
    --key "$T/o.key" --dns "$DP" --zone bench.test=127.0.0.1 --ready "$T/ready" &
pids+=($!)
for _ in $(seq 50); do [ -e "$T/ready" ] && break; sleep 0.1; done
# The request-rate origin: bench/tools/origin.c (C, epoll, a fixed keep-alive 200 per head)
# behind socat's TLS, so the origin is not what bounds GETs/s (the Python one tops out near
# 1000/s, about both proxies' rate).
cc -std=gnu17 -O2 -Wall -o "$T/origin" "$here/tools/origin.c"
"$T/origin" "$T/ports" 900 &
pids+=($!)
for _ in $(seq 50); do [ -s "$T/ports" ] && break; sleep 0.1; done
FAST=$(cut -d' ' -f1 "$T/ports") FP=$((OP + 4))
socat "OPENSSL-LISTEN:$FP,reuseaddr,fork,bind=127.0.0.1,cert=$T/o.pem,key=$T/o.key,verify=0" \
    "TCP:127.0.0.1:$FAST" &
pids+=($!)
for _ in $(seq 50); do curl -s -o /dev/null --cacert "$T/oca.pem" --resolve "bench.test:$FP:127.0.0.1" \
    "https://bench.test:$FP/hello" && break; sleep 0.1; done

# bot-bottle: the CA certificate follows "ready" on the ready fd.
printf '[egress]\ninspect = bench.test:%s\ninspect = bench.test:%s\n[tls]\nextra_ca = %s\n' "$OP" "$FP" \
    "$T/oca.pem" >"$T/bb.ini"
"$BB" egress --no-default-config -c "$T/bb.ini" --listen "127.0.0.1:$BP" -q \
    --allow "bench.test:$OP" --allow "bench.test:$FP" --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DP" \
    --audit "$T/audit.log" --ready-fd 3 3>"$T/bb.ready" &
pids+=($!)
BBPID=$!
for _ in $(seq 50); do [ -s "$T/bb.ready" ] && grep -q END "$T/bb.ready" && break; sleep 0.1; done
sed -n '2,$p' "$T/bb.ready" >"$T/bbca.pem"
# NOPOOL=1: also a bot-bottle daemon without the upstream pool (--upstream-pool 0), to see
# what the pool does.
if [ "${NOPOOL:-0}" = 1 ]; then
    NP=$((OP + 5))
    "$BB" egress --no-default-config -c "$T/bb.ini" --listen "127.0.0.1:$NP" -q \
        --allow "bench.test:$OP" --allow "bench.test:$FP" --allow-cidr 127.0.0.1/32 \
        --upstream-dns "127.0.0.1:$DP" --audit "$T/audit-np.log" --upstream-pool 0 \
        --ready-fd 3 3>"$T/np.ready" &
    pids+=($!)
    NPPID=$!
    for _ in $(seq 50); do grep -q END "$T/np.ready" 2>/dev/null && break; sleep 0.1; done
    sed -n '2,$p' "$T/np.ready" >"$T/npca.pem"
fi

# CPU time (ns) a process has run, all its threads: the proxy's own cost, which the machine's
# load does not change the way it changes rates (both proxies are one event loop).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
measure() { # NAME PROXY CAFILE PID
    local name=$1 proxy=$2 ca=$3 pid=$4 urls=() t0 t1 c0 c1
    for _ in $(seq "$N"); do urls+=("https://bench.test:$FP/hello"); done
    c0=$(cpu_ns "$pid") t0=$(date +%s.%N)
    curl -s -x "$proxy" --cacert "$ca" "${urls[@]}" >/dev/null
    t1=$(date +%s.%N) c1=$(cpu_ns "$pid")
    printf '%-12s keep-alive   %8.0f GETs/s  %7.0f us CPU/GET\n' "$name" \
        "$(echo "$N / ($t1 - $t0)" | bc -l)" "$(echo "($c1 - $c0) / 1000 / $N" | bc -l)"
    # the same with CONC clients at once (default 4), N GETs in all: what the proxy serves when
    # it, not one client's round trips, is what the requests wait on
    local conc=${CONC:-4} part=() cp=()
    for _ in $(seq $((N / conc))); do part+=("https://bench.test:$FP/hello"); done
    c0=$(cpu_ns "$pid") t0=$(date +%s.%N)
    for _ in $(seq "$conc"); do
        curl -s -x "$proxy" --cacert "$ca" "${part[@]}" >/dev/null &
        cp+=($!)
    done
    wait "${cp[@]}"
    t1=$(date +%s.%N) c1=$(cpu_ns "$pid")
    printf '%-12s keep-alive x%d %6.0f GETs/s  %7.0f us CPU/GET\n' "$name" "$conc" \
        "$(echo "$conc * ${#part[@]} / ($t1 - $t0)" | bc -l)" \
        "$(echo "($c1 - $c0) / 1000 / ($conc * ${#part[@]})" | bc -l)"
    c0=$(cpu_ns "$pid") t0=$(date +%s.%N)
    for _ in $(seq $((N / 10))); do
        curl -s -o /dev/null -x "$proxy" --cacert "$ca" "https://bench.test:$FP/hello"
    done
    t1=$(date +%s.%N) c1=$(cpu_ns "$pid")
    printf '%-12s fresh conn.  %8.0f GETs/s  %7.0f us CPU/GET (rate incl. curl start-up)\n' \
        "$name" "$(echo "($N / 10) / ($t1 - $t0)" | bc -l)" \
        "$(echo "($c1 - $c0) / 1000 / ($N / 10)" | bc -l)"
    c0=$(cpu_ns "$pid") t0=$(date +%s.%N)
    curl -s -o /dev/null -x "$proxy" --cacert "$ca" "https://bench.test:$OP/size/67108864"
    t1=$(date +%s.%N) c1=$(cpu_ns "$pid")
    printf '%-12s bulk         %8.1f MB/s    %7.2f ms CPU/MB\n' "$name" \
        "$(echo "64 / ($t1 - $t0)" | bc -l)" "$(echo "($c1 - $c0) / 1000000 / 64" | bc -l)"
}

# squid with ssl-bump
if ! squid -v 2>/dev/null | grep -q -- '--with-openssl'; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q squid-openssl >/dev/null
    fi
fi
if ! squid -v 2>/dev/null | grep -q -- '--with-openssl'; then
    echo "squid: not built with OpenSSL (install squid-openssl); bot-bottle only"
    measure bot-bottle "http://127.0.0.1:$BP" "$T/bbca.pem" "$BBPID"
    exit 0
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=squid bump CA" \
    -keyout "$T/sq.key" -out "$T/sq.pem" 2>/dev/null
cat "$T/sq.pem" "$T/sq.key" >"$T/sq-bundle.pem"
/usr/lib/squid/security_file_certgen -c -s "$T/ssldb" -M 16MB >/dev/null
# squid started as root runs as its cache_effective_user (Debian: proxy): let it read the
# scratch directory and its bench-only keys, and own the certificate database.
if [ "$(id -u)" = 0 ]; then
    chmod 755 "$T"
    chmod 644 "$T/sq-bundle.pem" "$T/oca.pem"
    chown -R proxy:proxy "$T/ssldb"
    touch "$T/squid.log" && chown proxy:proxy "$T/squid.log"
fi
cat >"$T/squid.conf" <<EOF
http_port 127.0.0.1:$SQ ssl-bump cert=$T/sq-bundle.pem generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
sslcrtd_program /usr/lib/squid/security_file_certgen -s $T/ssldb -M 16MB
sslcrtd_children 4
ssl_bump bump all
tls_outgoing_options cafile=$T/oca.pem
http_access allow all
cache deny all
access_log none
cache_log $T/squid.log
pid_filename $T/squid.pid
coredump_dir $T
dns_nameservers 127.0.0.1
hosts_file $T/hosts
EOF
echo "127.0.0.1 bench.test" >"$T/hosts"
squid -N -f "$T/squid.conf" &
pids+=($!)
SQPID=$!
for _ in $(seq 100); do curl -s -o /dev/null -x "http://127.0.0.1:$SQ" --cacert "$T/sq.pem" \
    "https://bench.test:$OP/hello" && break; sleep 0.1; done
# Side by side: the two proxies take turns, ROUNDS times, so a change in the machine's load
# hits both alike (compare the numbers of one round).
for r in $(seq "$ROUNDS"); do
    echo "round $r (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    measure bot-bottle "http://127.0.0.1:$BP" "$T/bbca.pem" "$BBPID"
    measure squid-bump "http://127.0.0.1:$SQ" "$T/sq.pem" "$SQPID"
    if [ "${NOPOOL:-0}" = 1 ]; then
        measure bb-no-pool "http://127.0.0.1:$NP" "$T/npca.pem" "$NPPID"
    fi
done

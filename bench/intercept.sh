#!/usr/bin/env bash
# bench/intercept.sh: intercepted HTTPS through bot-bottle's egress daemon ([egress] inspect,
# docs/credentials.md) against squid with ssl-bump, on loopback.
#
# Prints numbers; not a test. Both proxies get the same C tools, the same origin and the same
# phases, taking turns phase by phase (who goes first changes every round) for ROUNDS rounds
# (default 3), so a change in the machine's load hits both alike; compare within a round. Per
# proxy and round:
#   ka1, ka4, ka16  bench/tools/bbtls.c: 1, 4 and 16 kept-alive intercepted connections, one GET
#                   in flight on each, for SECS seconds (default 3) after a 0.5 s warm-up
#   new             NEWCONNS (default 4) loops of a new connection per GET: CONNECT, a full TLS
#                   handshake with the proxy (verified: chain and name), GET, close
#   bulk            one GET of a 64 MiB body (BULK bytes) on one connection
#   curl            N (default 1000) GETs by one curl process on one kept-alive connection: what
#                   a user's client sees (curl's own cost included)
# and each proxy's own CPU time (all its threads, /proc/PID/task/*/schedstat) per GET or per MB.
# The origin is bench/tools/tlsorigin.c (C, one thread, epoll, OpenSSL): a fixed small 200 on
# every kept-alive head and /size/N bodies. Upstream TLS is verified by both proxies against the
# origin's test CA. squid runs in its default shape (one worker, one event loop, like
# bot-bottle's daemon) with `ssl_bump bump all`, no cache and no access log; bot-bottle runs as
# in production (upstream verification, DLP, credential checks and the audit log all on).
# Names: squid reads a hosts file (and caches); bot-bottle asks the tests' DNS stub and keeps
# the answer for its TTL (src/proxy/resolve.c).
#
# Usage: bench/intercept.sh [BOT-BOTTLE-BINARY]   (environment: ROUNDS, SECS, N, NEWCONNS,
# BULK, NICE; NOPOOL=1 adds a bot-bottle daemon with --upstream-pool 0; BASE=BINARY adds another
# bot-bottle build, e.g. the one before a change; PROXIES="bb squid" to choose; RAW=1 prints
# every client line)
# Needs squid built with OpenSSL (Debian: squid-openssl, which replaces squid); installs it with
# apt-get when missing and running as root, else says so and measures bot-bottle only. Needs
# cc and libssl-dev.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
BB=${1:-$here/../build/src/cli/bot-bottle}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-3}
N=${N:-1000}
NEWCONNS=${NEWCONNS:-4}
BULK=${BULK:-67108864}
PROXIES=${PROXIES:-bb squid}
T=$(mktemp -d)
DP=$((20000 + RANDOM % 10000)) BP=$((DP + 1)) SQ=$((DP + 2)) NP=$((DP + 3))
pids=()
autogroup_old=
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
    [ -z "$autogroup_old" ] || echo "$autogroup_old" >/proc/$$/autogroup 2>/dev/null || true
}
trap cleanup EXIT
# NICE=N (as bench/proxy.sh --nice): everything at nice N, and the session's autogroup too (with
# sched_autogroup, nice alone only ranks tasks within this session), put back on exit.
if [ -n "${NICE:-}" ]; then
    renice -n "$NICE" -p $$ >/dev/null || { echo "intercept.sh: cannot renice to $NICE" >&2; exit 2; }
    if [ -w /proc/$$/autogroup ]; then
        autogroup_old=$(sed -n 's/.* nice \(-\{0,1\}[0-9]*\).*/\1/p' /proc/$$/autogroup)
        echo "$NICE" >/proc/$$/autogroup 2>/dev/null || autogroup_old=
    fi
fi

cc -std=gnu17 -O2 -Wall -o "$T/tlsorigin" "$here/tools/tlsorigin.c" -lssl -lcrypto
cc -std=gnu17 -O2 -Wall -pthread -o "$T/bbtls" "$here/tools/bbtls.c" -lssl -lcrypto

# A test CA for the origin, and the origin's certificate for bench.test.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench origin CA" \
    -keyout "$T/oca.key" -out "$T/oca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bench.test" \
    -addext "subjectAltName=DNS:bench.test" -keyout "$T/o.key" -out "$T/o.csr" 2>/dev/null
openssl x509 -req -in "$T/o.csr" -CA "$T/oca.pem" -CAkey "$T/oca.key" -CAcreateserial -days 2 \
    -copy_extensions copy -out "$T/o.pem" 2>/dev/null
# DNS for bot-bottle (squid reads a hosts file): the tests' stub, answering bench.test only.
python3 "$here/../tests/integration/helpers/fake-upstream.py" --dns "$DP" \
    --zone bench.test=127.0.0.1 --ready "$T/dns.ready" &
pids+=($!)
"$T/tlsorigin" "$T/o.pem" "$T/o.key" "$T/oport" 900 &
pids+=($!)
ORIGIN_PID=$!
for _ in $(seq 50); do [ -e "$T/dns.ready" ] && [ -s "$T/oport" ] && break; sleep 0.1; done
OP=$(cat "$T/oport")

# bot-bottle: the CA certificate follows "ready" on the ready fd.
printf '[egress]\ninspect = bench.test:%s\n[tls]\nextra_ca = %s\n' "$OP" "$T/oca.pem" >"$T/bb.ini"
start_bb() { # PORT NAME EXTRA-ARGS...
    "${BIN:-$BB}" egress --no-default-config -c "$T/bb.ini" --listen "127.0.0.1:$1" -q \
        --allow "bench.test:$OP" --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DP" \
        --audit "$T/audit-$2.log" "${@:3}" --ready-fd 3 3>"$T/$2.ready" &
    pids+=($!)
    for _ in $(seq 50); do grep -q END "$T/$2.ready" 2>/dev/null && break; sleep 0.1; done
    sed -n '2,$p' "$T/$2.ready" >"$T/$2-ca.pem"
}
declare -A PORT PID CA
if [[ " $PROXIES " == *" bb "* ]]; then
    start_bb "$BP" bb
    PORT[bb]=$BP PID[bb]=$! CA[bb]=$T/bb-ca.pem
fi
# BASE=BINARY: another bot-bottle build measured in the same rounds (before/after a change).
if [ -n "${BASE:-}" ]; then
    BIN=$BASE start_bb "$((DP + 4))" base
    PORT[base]=$((DP + 4)) PID[base]=$! CA[base]=$T/base-ca.pem
    PROXIES="$PROXIES base"
fi
if [ "${NOPOOL:-0}" = 1 ]; then
    start_bb "$NP" np --upstream-pool 0
    PORT[np]=$NP PID[np]=$! CA[np]=$T/np-ca.pem
    PROXIES="$PROXIES np"
fi

# squid with ssl-bump
if [[ " $PROXIES " == *" squid "* ]]; then
    if ! squid -v 2>/dev/null | grep -q -- '--with-openssl'; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q squid-openssl >/dev/null
        fi
    fi
    if ! squid -v 2>/dev/null | grep -q -- '--with-openssl'; then
        echo "squid: not built with OpenSSL (install squid-openssl); bot-bottle only"
        PROXIES=${PROXIES//squid/}
    fi
fi
if [[ " $PROXIES " == *" squid "* ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=squid bump CA" -keyout "$T/sq.key" -out "$T/sq.pem" 2>/dev/null
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
pinger_enable off
dns_nameservers 127.0.0.1
hosts_file $T/hosts
EOF
    echo "127.0.0.1 bench.test" >"$T/hosts"
    squid -N -f "$T/squid.conf" &
    pids+=($!)
    PORT[squid]=$SQ PID[squid]=$! CA[squid]=$T/sq.pem
fi
for p in $PROXIES; do
    ok=0
    for _ in $(seq 100); do
        if curl -s -o /dev/null -x "http://127.0.0.1:${PORT[$p]}" --cacert "${CA[$p]}" \
            "https://bench.test:$OP/hello"; then
            ok=1
            break
        fi
        sleep 0.1
    done
    [ $ok = 1 ] || { echo "intercept.sh: $p does not answer through its interception" >&2; exit 1; }
done

kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
calc() { awk "BEGIN { v = $1; printf \"%.${2:-1}f\", v }" 2>/dev/null || echo NA; }
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
R=$T/results # lines: ROUND PROXY METRIC VALUE
rec() { echo "$1 $2 $3 $4" >>"$R"; }

tls() { # ROUND PROXY PHASE ARGS...: one bbtls run, recorded
    local r=$1 p=$2 ph=$3 line n
    if ! line=$(timeout $((SECS + 60)) "$T/bbtls" "${@:4}" --proxy "${PORT[$p]}" --host bench.test \
        --port "$OP" --cafile "${CA[$p]}" --pid "${PID[$p]}" --origin-pid "$ORIGIN_PID" \
        2>>"$T/bbtls.err"); then
        echo "intercept.sh: $p round $r $ph failed: $(tail -1 "$T/bbtls.err")" >&2
        return 0
    fi
    echo "  $p $ph: $line" >>"$T/raw"
    if [ "$ph" = bulk ]; then
        rec "$r" "$p" bulk "$(kv mbps "$line")"
        rec "$r" "$p" bulk_cpu "$(calc "$(kv proxy_cpu_us "$line") / 1000 / ($(kv bytes "$line") / 1e6)" 2)"
        return 0
    fi
    n=$(kv requests "$line")
    rec "$r" "$p" "$ph" "$(kv rate "$line")"
    rec "$r" "$p" "${ph}_cpu" "$(calc "$(kv proxy_cpu_us "$line") / $n" 0)"
    rec "$r" "$p" "${ph}_lat" "$(kv p50_us "$line")/$(kv p99_us "$line")"
    rec "$r" "$p" "${ph}_err" "$(kv errors "$line")"
}

curl_row() { # ROUND PROXY: N GETs by one curl process on one kept-alive connection
    local r=$1 p=$2 urls=() t0 t1 c0 c1
    for _ in $(seq "$N"); do urls+=("https://bench.test:$OP/hello"); done
    c0=$(cpu_ns "${PID[$p]}") t0=$(date +%s.%N)
    timeout 120 curl -s -x "http://127.0.0.1:${PORT[$p]}" --cacert "${CA[$p]}" "${urls[@]}" >/dev/null
    t1=$(date +%s.%N) c1=$(cpu_ns "${PID[$p]}")
    rec "$r" "$p" curl "$(calc "$N / ($t1 - $t0)" 0)"
    rec "$r" "$p" curl_cpu "$(calc "($c1 - $c0) / 1000 / $N" 0)"
}

# Phase by phase, the proxies one after the other (the first of them changes every round), so
# the two numbers a ratio is made of are taken seconds apart.
measure() { # ROUND PHASE ORDERED-PROXIES...
    local r=$1 ph=$2 p
    for p in "${@:3}"; do
        case $ph in
        ka1) tls "$r" "$p" ka1 get --conns 1 --seconds "$SECS" ;;
        ka4) tls "$r" "$p" ka4 get --conns 4 --seconds "$SECS" ;;
        ka16) tls "$r" "$p" ka16 get --conns 16 --seconds "$SECS" ;;
        new) tls "$r" "$p" new get --conns "$NEWCONNS" --new-conn --seconds "$SECS" ;;
        bulk) tls "$r" "$p" bulk bulk --size "$BULK" ;;
        curl) curl_row "$r" "$p" ;;
        *) ;;
        esac
    done
}

echo "intercept.sh: origin tlsorigin :$OP, proxies: $PROXIES; ROUNDS=$ROUNDS SECS=$SECS N=$N" \
    "NEWCONNS=$NEWCONNS BULK=$BULK; $(nproc) cores; nice $(nice)$([ -r /proc/$$/autogroup ] &&
        sed -n 's/.* nice \(.*\)/, session autogroup nice \1/p' /proc/$$/autogroup)"
echo "before: $(uptime)"
for r in $(seq "$ROUNDS"); do
    echo "round $r: load average $(cut -d' ' -f1-3 /proc/loadavg)" >>"$T/raw"
    rec "$r" - load "$(cut -d' ' -f1 /proc/loadavg)"
    read -r -a order <<<"$PROXIES"
    for _ in $(seq $(((r - 1) % ${#order[@]}))); do order=("${order[@]:1}" "${order[0]}"); done
    for ph in ka1 ka4 ka16 new bulk curl; do measure "$r" "$ph" "${order[@]}"; done
done
echo "after:  $(uptime)"

# One table per metric: a row per round, a column per proxy, and bot-bottle / squid.
get() { awk -v r="$1" -v p="$2" -v m="$3" '$1 == r && $2 == p && $3 == m { print $4 }' "$R"; }
row() { # LABEL METRIC KIND (rate: higher is better; cpu: lower is better; info: no ratio)
    local r line v b s
    printf '%-34s' "$1"
    for r in $(seq "$ROUNDS"); do
        line=""
        for p in $PROXIES; do
            v=$(get "$r" "$p" "$2")
            line+="${v:-NA} "
        done
        b=$(get "$r" bb "$2") s=$(get "$r" squid "$2")
        if [ "$3" != info ] && [ -n "$b" ] && [ -n "$s" ]; then
            if [ "$3" = rate ]; then line+="($(calc "$b / $s" 2)x)"; else line+="($(calc "$s / $b" 2)x less)"; fi
        fi
        printf ' | %-26s' "$line"
    done
    printf '\n'
}
echo
echo "per round: $PROXIES (ratio bot-bottle/squid); load average at each round's start:" \
    "$(for r in $(seq "$ROUNDS"); do printf '%s ' "$(get "$r" - load)"; done)"
row "GETs/s, 1 kept-alive conn" ka1 rate
row "  proxy CPU us/GET" ka1_cpu cpu
row "  latency p50/p99 us" ka1_lat info
row "GETs/s, 4 kept-alive conns" ka4 rate
row "  proxy CPU us/GET" ka4_cpu cpu
row "GETs/s, 16 kept-alive conns" ka16 rate
row "  proxy CPU us/GET" ka16_cpu cpu
row "  latency p50/p99 us" ka16_lat info
row "GETs/s, new conn each (x$NEWCONNS)" new rate
row "  proxy CPU us/GET" new_cpu cpu
row "  latency p50/p99 us" new_lat info
row "MB/s, one $((BULK >> 20)) MiB body" bulk rate
row "  proxy CPU ms/MB" bulk_cpu cpu
row "GETs/s, curl, 1 kept-alive conn" curl rate
row "  proxy CPU us/GET" curl_cpu cpu
errs=$(awk '$3 ~ /_err$/ && $4 != 0' "$R")
[ -z "$errs" ] || { echo "errors (round proxy phase count):"; echo "$errs"; }
[ -s "$T/bbtls.err" ] && { echo "client messages:"; sort "$T/bbtls.err" | uniq -c | head -10; }
[ "${RAW:-0}" = 1 ] && cat "$T/raw"
exit 0

#!/usr/bin/env bash
# bench/proxy.sh: benchmark bot-bottle's egress proxy against squid and tinyproxy on loopback.
#
# Prints numbers; it is not a test (it exits 0 whether targets are met or not, non-zero only
# when it could not run). See bench/README.md for what is measured and how to read it.
#
# Usage: bench/proxy.sh [--bin PATH] [--rounds N] [--seconds T] [--nice N] [--keep]
#   --bin PATH    bot-bottle binary (default: $BB, else build/src/cli/bot-bottle)
#   --rounds N    interleaved rounds (default 3); medians are over rounds
#   --seconds T   measured window per load phase (default 3; plus a 0.5 s warm-up)
#   --nice N      run everything (proxies, origin, client) at this nice value, and set the
#                 session's autogroup nice too, e.g. -10 to get ahead of other work on a shared
#                 machine (negative needs root); default: as is
#   --keep        keep the temp dir (configs, logs, raw results) and print its path
#
# Everything runs on 127.0.0.1. Each round starts every proxy afresh, in turn, and runs its
# phases; each phase is bounded with timeout(1), and the load tools have their own alarms.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"
bin=${BB:-$root/build/src/cli/bot-bottle}
rounds=3
secs=3
keep=0
nice_val=
while [ $# -gt 0 ]; do
    case $1 in
    --bin) bin=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --seconds) secs=$2; shift 2 ;;
    --nice) nice_val=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) bench_help "$0"; exit 0 ;;
    *) echo "proxy.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
case $rounds$secs in *[!0-9]*) echo "proxy.sh: --rounds/--seconds take numbers" >&2; exit 2 ;; esac
[ "$rounds" -ge 1 ] && [ "$secs" -ge 1 ] && [ "$secs" -le 30 ] || { echo "proxy.sh: bad --rounds/--seconds" >&2; exit 2; }
[ -z "$nice_val" ] || bench_nice proxy.sh "$nice_val"
bench_bin proxy.sh
bench_need proxy.sh squid tinyproxy cc ss timeout

IDLE_TUNNELS=1000
STREAMS=16
SETUP_WORKERS=4
GET_CONNS=16
PHASE_TIMEOUT=$((secs + 25))

# fds: 1000 tunnels cost bot-bottle 6 fds each (2 sockets, 2 pipes)
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 8192 ] || { echo "proxy.sh: ulimit -n $(ulimit -n) is too low for $IDLE_TUNNELS tunnels" >&2; exit 2; }

bench_start bb-bench
chmod 755 "$tmp" # squid, when started as root, drops to its cache_effective_user

# ---- tools ----
cc -std=gnu17 -O2 -Wall -o "$tmp/origin" "$here/tools/origin.c"
cc -std=gnu17 -O2 -Wall -o "$tmp/bbload" "$here/tools/bbload.c"

# ---- ports: listeners below the ephemeral range so no client socket can hold them ----
port_free() { [ -z "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }
pick_port() {
    local p=$((20000 + RANDOM % 12000))
    while ! port_free $p; do p=$((20000 + RANDOM % 12000)); done
    echo $p
}
BB_PORT=$(pick_port)
SQ_PORT=$(pick_port)
TP_PORT=$(pick_port)

wait_listen() { # PORT PID
    for _ in $(seq 100); do
        port_free "$1" || return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo NA; }

# ---- origin (lives for the whole run) ----
"$tmp/origin" "$tmp/ports" 900 &
ORIGIN_PID=$!
pids+=("$ORIGIN_PID")
for _ in $(seq 50); do [ -s "$tmp/ports" ] && break; sleep 0.1; done
read -r HTTP_PORT SRC_PORT SINK_PORT <"$tmp/ports"

# ---- proxies ----
mkdir -p "$tmp/bb" "$tmp/squid" "$tmp/tinyproxy"
chmod 777 "$tmp/squid"
cat >"$tmp/tinyproxy/tinyproxy.conf" <<EOF
# no ConnectPort lines: CONNECT to every port is allowed
Port $TP_PORT
Listen 127.0.0.1
Timeout 600
MaxClients 4000
Allow 127.0.0.1
DisableViaHeader Yes
LogFile "$tmp/tinyproxy/tinyproxy.log"
LogLevel Critical
PidFile "$tmp/tinyproxy/tinyproxy.pid"
EOF
cat >"$tmp/squid/squid.conf" <<EOF
http_port 127.0.0.1:$SQ_PORT
http_access allow all
cache deny all
cache_mem 0 MB
access_log none
cache_store_log none
cache_log $tmp/squid/cache.log
pid_filename $tmp/squid/squid.pid
coredump_dir $tmp/squid
max_filedescriptors 16384
shutdown_lifetime 0 seconds
visible_hostname bench.invalid
pinger_enable off
netdb_filename none
logfile_rotate 0
dns_nameservers 127.0.0.1
EOF

PROXY_PID=
start_proxy() { # NAME -> sets PROXY_PID, PROXY_PORT
    case $1 in
    bot-bottle)
        PROXY_PORT=$BB_PORT
        (cd "$tmp/bb" && XDG_CONFIG_HOME=$tmp/bb exec "$bin" egress \
            --listen "127.0.0.1:$BB_PORT" --allow-cidr 127.0.0.1/32 \
            --upstream-dns 127.0.0.1:9 --audit "$tmp/bb/audit.jsonl" >>"$tmp/bb/log" 2>&1) &
        ;;
    squid)
        PROXY_PORT=$SQ_PORT
        rm -f "$tmp/squid/squid.pid"
        squid -N -f "$tmp/squid/squid.conf" >>"$tmp/squid/out" 2>&1 &
        ;;
    tinyproxy)
        PROXY_PORT=$TP_PORT
        tinyproxy -d -c "$tmp/tinyproxy/tinyproxy.conf" >>"$tmp/tinyproxy/out" 2>&1 &
        ;;
    esac
    PROXY_PID=$!
    pids+=("$PROXY_PID")
    wait_listen "$PROXY_PORT" "$PROXY_PID" || { echo "proxy.sh: $1 did not start; see $tmp" >&2; keep=1; exit 1; }
}

stop_proxy() {
    kill -TERM "$PROXY_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    # let the port go before the next start (squid/tinyproxy may linger briefly)
    for _ in $(seq 30); do port_free "$PROXY_PORT" && break; sleep 0.1; done
}

# ---- measurements ----
res=$tmp/results
: >"$res"
record() { echo "$1 $2 $3 ${4:-NA}" >>"$res"; } # TARGET ROUND METRIC VALUE
kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
calc() { awk "BEGIN { v = $1; printf \"%.${2:-1}f\", v }" 2>/dev/null || echo NA; }

load() { # TARGET ROUND MODE ARGS... ; runs bbload, echoes its line, "" on failure
    local line
    if line=$(timeout $PHASE_TIMEOUT "$tmp/bbload" "$3" "${@:4}" --seconds "$secs" \
        2>>"$tmp/bbload.err"); then
        echo "$line"
    else
        echo "proxy.sh: $1 round $2 $3 failed (see $tmp/bbload.err)" >&2
        touch "$tmp/failed"
        echo ""
    fi
}

cpu_pct() { # LINE: proxy+origin+client CPU as % of the machine (all cores)
    calc "($(kv proxy_cpu_us "$1") + $(kv origin_cpu_us "$1") + $(kv client_cpu_us "$1")) / ($(kv secs "$1") * 1e6 * $(nproc)) * 100" 0
}

run_phases() { # TARGET ROUND
    local t=$1 r=$2 via=() pid=() line bytes n
    if [ "$t" != direct ]; then
        via=(--proxy "$PROXY_PORT")
        pid=(--pid "$PROXY_PID")
    fi
    line=$(load "$t" "$r" tput --port "$SRC_PORT" --streams 1 "${via[@]}" "${pid[@]}" --origin-pid "$ORIGIN_PID")
    if [ -n "$line" ]; then
        record "$t" "$r" tput1 "$(kv mbps "$line")"
        bytes=$(kv bytes "$line")
        [ "$t" = direct ] || record "$t" "$r" tput1_cpu_mb "$(calc "$(kv proxy_cpu_us "$line") / ($bytes / 1e6)" 2)"
    fi
    line=$(load "$t" "$r" tput --port "$SRC_PORT" --streams $STREAMS "${via[@]}" "${pid[@]}" --origin-pid "$ORIGIN_PID")
    if [ -n "$line" ]; then
        record "$t" "$r" tput16 "$(kv mbps "$line")"
        bytes=$(kv bytes "$line")
        [ "$t" = direct ] || record "$t" "$r" tput16_cpu_mb "$(calc "$(kv proxy_cpu_us "$line") / ($bytes / 1e6)" 2)"
        [ "$t" = direct ] || record "$t" "$r" tput16_proxy_pct "$(calc "$(kv proxy_cpu_us "$line") / ($(kv secs "$line") * 1e4)" 0)"
        record "$t" "$r" tput16_machine_pct "$(cpu_pct "$line")"
    fi
    line=$(load "$t" "$r" setup --port "$SINK_PORT" --workers $SETUP_WORKERS "${via[@]}" "${pid[@]}")
    if [ -n "$line" ]; then
        record "$t" "$r" setup_rate "$(kv rate "$line")"
        record "$t" "$r" setup_p50 "$(kv p50_us "$line")"
        record "$t" "$r" setup_p99 "$(kv p99_us "$line")"
        n=$(kv setups "$line")
        [ "$t" = direct ] || [ "$n" = 0 ] || record "$t" "$r" setup_cpu "$(calc "$(kv proxy_cpu_us "$line") / $n" 1)"
        record "$t" "$r" setup_errors "$(kv errors "$line")"
    fi
    line=$(load "$t" "$r" get --port "$HTTP_PORT" --conns $GET_CONNS "${via[@]}" "${pid[@]}" --origin-pid "$ORIGIN_PID")
    if [ -n "$line" ]; then
        record "$t" "$r" get_rate "$(kv rate "$line")"
        n=$(kv requests "$line")
        [ "$t" = direct ] || [ "$n" = 0 ] || record "$t" "$r" get_cpu "$(calc "$(kv proxy_cpu_us "$line") / $n" 1)"
        record "$t" "$r" get_reopened "$(kv reopened "$line")"
        record "$t" "$r" get_max_ms "$(kv max_latency_ms "$line")"
        record "$t" "$r" get_stalled "$(kv stalled "$line")"
        record "$t" "$r" get_machine_pct "$(cpu_pct "$line")"
    fi
}

run_idle() { # TARGET ROUND: RSS at start, then with IDLE_TUNNELS idle tunnels
    local t=$1 r=$2 start with opened lp
    sleep 0.3
    start=$(rss_kib "$PROXY_PID")
    record "$t" "$r" rss_start "$start"
    rm -f "$tmp/idle.ready"
    timeout 60 "$tmp/bbload" idle --proxy "$PROXY_PORT" --port "$SINK_PORT" \
        --count $IDLE_TUNNELS --ready-file "$tmp/idle.ready" --hold 40 \
        >/dev/null 2>>"$tmp/bbload.err" &
    lp=$!
    pids+=("$lp")
    for _ in $(seq 300); do [ -s "$tmp/idle.ready" ] && break; kill -0 $lp 2>/dev/null || break; sleep 0.1; done
    if [ -s "$tmp/idle.ready" ]; then
        sleep 0.5 # let the proxy finish the last handshakes
        with=$(rss_kib "$PROXY_PID")
        opened=$(sed -n 's/.*opened=\([0-9]*\).*/\1/p' "$tmp/idle.ready")
        record "$t" "$r" rss_idle "$with"
        record "$t" "$r" idle_opened "$opened"
        [ "${opened:-0}" -gt 0 ] && record "$t" "$r" idle_per_tunnel "$(calc "($with - $start) / $opened" 1)"
    else
        echo "proxy.sh: $t round $r: idle tunnels did not open (see $tmp/bbload.err)" >&2
        keep=1
    fi
    kill $lp 2>/dev/null || true
    wait $lp 2>/dev/null || true
    sleep 0.5 # tunnels close
}

# ---- header ----
others() { # busiest processes that are not ours, to show what else used the 2 cores
    ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 >= 5 { printf "%s%s(%s%%)", sep, $2, $1; sep=", " } END { if (!sep) printf "none" }'
}
echo "bot-bottle egress proxy benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo "command: bench/proxy.sh --bin $bin --rounds $rounds --seconds $secs${nice_val:+ --nice $nice_val}"
echo "host: $(uname -sr), $(nproc) cores; $(squid -v | head -1 | sed 's/ for .*//'), $(tinyproxy -v 2>&1 | head -1)"
echo "loopback only; client, origin and proxy share the $(nproc) cores (nothing pinned); nice $(nice)$([ -r /proc/$$/autogroup ] && sed -n 's/.* nice \(.*\)/, session autogroup nice \1/p' /proc/$$/autogroup)."
echo "windows: ${secs}s measured after 0.5s warm-up; $rounds interleaved rounds, medians shown;"
echo "  tunnels: CONNECT to the origin's source port, client recv()s; setups: $SETUP_WORKERS concurrent"
echo "  loops of connect+CONNECT+200+close (direct: TCP connect+close); GETs: $GET_CONNS keep-alive"
echo "  connections, one request in flight each; bot-bottle writes its audit log to a file in a tmp dir."
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); other busy processes: $(others)"
echo

start_ts=$(date +%s)
for r in $(seq "$rounds"); do
    for t in bot-bottle squid tinyproxy direct; do
        echo "round $r/$rounds: $t ($(($(date +%s) - start_ts))s, load $(cut -d' ' -f1 /proc/loadavg))" >&2
        if [ "$t" = direct ]; then
            run_phases "$t" "$r"
        else
            start_proxy "$t"
            run_idle "$t" "$r"
            run_phases "$t" "$r"
            stop_proxy
        fi
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); other busy processes: $(others); took $(($(date +%s) - start_ts))s"
[ -f "$tmp/bb/audit.jsonl" ] && echo "bot-bottle audit log: $(wc -l <"$tmp/bb/audit.jsonl") records, $(($(stat -c %s "$tmp/bb/audit.jsonl") / 1024)) KiB"
echo

# ---- report ----
awk -v rounds="$rounds" '
function median(key,   n, i, j, v, tmp, parts) {
    if (!(key in vals)) return "NA"
    n = split(vals[key], parts, " ")
    for (i = 1; i <= n; i++) v[i] = parts[i] + 0
    for (i = 2; i <= n; i++) { tmp = v[i]; for (j = i - 1; j >= 1 && v[j] > tmp; j--) v[j + 1] = v[j]; v[j + 1] = tmp }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function fmt(x) { return x == "NA" ? "-" : (x >= 100 ? sprintf("%.0f", x) : sprintf("%.1f", x)) }
function row(label, metric,   t, line) {
    line = sprintf("  %-34s", label)
    for (t = 1; t <= 4; t++) line = line sprintf(" %11s", fmt(median(tg[t] SUBSEP metric)))
    print line
}
function head(title) {
    printf "%s\n  %-34s %11s %11s %11s %11s\n", title, "", "bot-bottle", "squid", "tinyproxy", "direct"
}
function ratio(a, b) { return (a == "NA" || b == "NA" || b == 0) ? "NA" : a / b }
function target(label, got, op, want, unit,   ok) {
    if (got == "NA") { printf "  %-44s %10s   (target %s %s%s)  MISS (no data)\n", label, "-", op, want, unit; misses++; return }
    ok = (op == ">=") ? got >= want : (op == "<=") ? got <= want : got < want
    printf "  %-44s %10s   (target %s %s%s)  %s\n", label, sprintf("%.2f%s", got, unit), op, want, unit, ok ? "PASS" : "MISS"
    if (!ok) misses++
}
$4 != "NA" && $4 != "" { k = $1 SUBSEP $3; vals[k] = (k in vals) ? vals[k] " " $4 : $4 }
END {
    tg[1] = "bot-bottle"; tg[2] = "squid"; tg[3] = "tinyproxy"; tg[4] = "direct"
    printf "medians of %d rounds\n\n", rounds
    head("CONNECT tunnel throughput (MB/s = 10^6 B/s, origin -> client)")
    row("1 stream", "tput1"); row("16 streams", "tput16")
    row("proxy CPU us per MB, 1 stream", "tput1_cpu_mb"); row("proxy CPU us per MB, 16 streams", "tput16_cpu_mb")
    row("proxy CPU % of one core, 16 str.", "tput16_proxy_pct"); row("all 3 processes, % of machine", "tput16_machine_pct")
    print ""
    head("tunnel setups (connect, CONNECT, 200, close)")
    row("setups/s", "setup_rate"); row("p50 latency us", "setup_p50"); row("p99 latency us", "setup_p99")
    row("proxy CPU us per setup", "setup_cpu"); row("errors", "setup_errors")
    print ""
    head("absolute-URI GET over keep-alive")
    row("requests/s", "get_rate"); row("proxy CPU us per request", "get_cpu")
    row("client reconnects (no keep-alive)", "get_reopened"); row("longest wait for an answer, ms", "get_max_ms")
    row("stalled connections (>1 s, of 16)", "get_stalled"); row("all 3 processes, % of machine", "get_machine_pct")
    print ""
    head("memory (VmRSS, KiB; kernel socket/pipe memory not included)")
    row("RSS at start", "rss_start"); row("RSS with idle tunnels", "rss_idle"); row("idle tunnels opened", "idle_opened")
    row("per idle tunnel", "idle_per_tunnel")
    print ""
    bb_t16 = median("bot-bottle" SUBSEP "tput16"); sq_t16 = median("squid" SUBSEP "tput16"); d_t16 = median("direct" SUBSEP "tput16")
    bb_t1 = median("bot-bottle" SUBSEP "tput1"); sq_t1 = median("squid" SUBSEP "tput1"); d_t1 = median("direct" SUBSEP "tput1")
    print "ratios (bot-bottle vs others)"
    target("tunnels 16 streams: bot-bottle / squid", ratio(bb_t16, sq_t16), ">=", 3, "x")
    target("tunnels 16 streams: bot-bottle / direct", ratio(bb_t16, d_t16), ">=", 0.75, "x")
    target("setups/s: bot-bottle / tinyproxy", ratio(median("bot-bottle" SUBSEP "setup_rate"), median("tinyproxy" SUBSEP "setup_rate")), ">=", 2, "x")
    target("GETs/s: bot-bottle / squid", ratio(median("bot-bottle" SUBSEP "get_rate"), median("squid" SUBSEP "get_rate")), ">=", 3, "x")
    target("RSS per idle tunnel", median("bot-bottle" SUBSEP "idle_per_tunnel"), "<=", 8, " KiB")
    target("RSS at start", ratio(median("bot-bottle" SUBSEP "rss_start"), 1024), "<", 4, " MiB")
    printf "  (no target) tunnels 1 stream: bot-bottle / squid %.2fx, / direct %.2fx\n", ratio(bb_t1, sq_t1), ratio(bb_t1, d_t1)
    printf "  (no target) setups/s: bot-bottle / squid %.2fx; GETs/s: bot-bottle / tinyproxy %.2fx\n", \
        ratio(median("bot-bottle" SUBSEP "setup_rate"), median("squid" SUBSEP "setup_rate")), \
        ratio(median("bot-bottle" SUBSEP "get_rate"), median("tinyproxy" SUBSEP "get_rate"))
    printf "\n%d target(s) missed\n", misses
}' "$res"

#!/usr/bin/env bash
# bench/run.sh: bottle start-up (bot-bottle vs bubblewrap vs gVisor runsc) and channel
# throughput (a download through the bottle's proxy, inside vs outside the bottle).
#
# Prints numbers; it is not a test (it exits 0 whether targets are met or not, non-zero only
# when it could not run). See docs/benchmarks.md, "Bottle start-up and channel throughput".
#
# Usage: bench/run.sh [--bin PATH] [--rounds N] [--size BYTES] [--reps N] [--nice N] [--no-wait]
#                     [--keep]
#   --bin PATH     bot-bottle binary (default: $BB, else build/src/cli/bot-bottle); it finds
#                  bottle-init next to it or in its build tree
#   --rounds N     interleaved start-up rounds of {bot-bottle, bwrap, runsc} (default 20)
#   --size BYTES   download size for the throughput phase (default 1073741824 = 1 GiB)
#   --reps N       downloads per side (default 3); the median is reported
#   --nice N       run everything at this nice value (and the session's autogroup too), e.g.
#                  -10 to get ahead of other work on a shared machine (negative needs root)
#   --no-wait      do not wait for a running bench/proxy.sh or bench/dns.sh to finish first
#   --keep         keep the temp dir (raw samples, logs) and print its path
#
# Start-up: `bot-bottle run --backend namespace -- true` (supervisor + egress daemon + namespace
# bottle + bottle-init), `bwrap` with new namespaces (user, mount, pid, net, ipc, uts, cgroup),
# read-only /usr, tmpfs /tmp, /proc, /dev, no network, and `runsc --network=none do true`; each
# timed from fork to exit by tools/run-time.c. Throughput: tools/run-source.c serves SIZE bytes
# on 127.0.0.1; curl downloads it inside a bottle through the bottle's proxy (channel + host
# relay + egress daemon) and on the host through a standalone `bot-bottle egress` with the same
# policy (same proxy code, no channel). Every phase is bounded with a timeout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"
bin=${BB:-$root/build/src/cli/bot-bottle}
rounds=20
size=1073741824
reps=3
wait_other=1
keep=0
nice_val=
while [ $# -gt 0 ]; do
    case $1 in
    --bin) bin=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --nice) nice_val=$2; shift 2 ;;
    --no-wait) wait_other=0; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) bench_help "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
case $rounds$size$reps in *[!0-9]*) echo "run.sh: --rounds/--size/--reps take numbers" >&2; exit 2 ;; esac
[ "$rounds" -ge 1 ] && [ "$rounds" -le 200 ] && [ "$reps" -ge 1 ] && [ "$reps" -le 10 ] &&
    [ "$size" -ge 1 ] && [ "$size" -le 17179869184 ] || { echo "run.sh: bad --rounds/--size/--reps" >&2; exit 2; }
bench_bin run.sh
bench_need run.sh cc curl bwrap timeout ss awk

START_TIMEOUT_MS=20000 # one start-up sample
DL_TIMEOUT=$((60 + size / 20000000)) # one download, seconds (at least 20 MB/s)
T_START=$SECONDS

# ---- wait for the other benchmarks (they would load the same 2 cores) ----
# The pattern's escaped dot never matches a command line that merely quotes this pattern.
if [ "$wait_other" = 1 ]; then
    waited=0
    while pgrep -f 'bench/(proxy|dns)\.sh' >/dev/null; do
        if [ $waited -ge 1500 ]; then
            echo "run.sh: bench/proxy.sh or bench/dns.sh still running after 25 minutes; measuring anyway"
            break
        fi
        [ $waited = 0 ] && echo "run.sh: waiting for bench/proxy.sh / bench/dns.sh to finish (polling every 20 s)"
        sleep 20
        waited=$((waited + 20))
    done
    [ $waited -gt 0 ] && echo "run.sh: waited ${waited} s for bench/proxy.sh / bench/dns.sh"
fi

[ -z "$nice_val" ] || bench_nice run.sh "$nice_val"
bench_start bb-runbench

busy() { # processes using >= 5% of a core right now (top, 1 s sample), not this script's
    top -b -n 2 -d 1 -w 200 2>/dev/null | awk '/^top -/ { blk++ }
        blk == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 5 { printf "  %s %s%% (pid %s)\n", $12, $9, $1; n++ }
        END { if (!n) print "  (none)" }' | head -8
}
echo "== bench/run.sh  $(date -u +%FT%TZ)  $(uname -r)  $(nproc) cpus"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)${nice_val:+; nice $nice_val}"
echo "busy processes at start (>= 5% of a core over 1 s):"
busy || true

# ---- tools, bot-bottle's environment ----
cc -std=gnu17 -O2 -Wall -o "$tmp/run-time" "$here/tools/run-time.c"
cc -std=gnu17 -O2 -Wall -o "$tmp/run-source" "$here/tools/run-source.c"
mkdir -p "$tmp/ws" "$tmp/xdg" "$tmp/runsc-root" "$tmp/runsc-log"
# no bottle.ini of the caller's: run from an empty workspace with an empty config home
export XDG_CONFIG_HOME=$tmp/xdg
cd "$tmp/ws"

# ---- start-up commands ----
BB_CMD=("$bin" run --backend namespace -w "$tmp/ws" -- true)
BW_CMD=(bwrap --unshare-all --unshare-user --die-with-parent --new-session
    --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/sbin /sbin
    --symlink usr/lib /lib --symlink usr/lib64 /lib64
    --tmpfs /tmp --proc /proc --dev /dev --dir /etc -- true)
RS_CMD=()
runsc_why=
if ! command -v runsc >/dev/null; then
    runsc_why="runsc is not installed (apt-get install runsc)"
else
    # as root the plain form; --rootless otherwise (or if the plain one fails)
    for cand in plain rootless; do
        c=(runsc --root "$tmp/runsc-root")
        [ $cand = rootless ] && c+=(--rootless)
        c+=(--network=none "do" true)
        rc=0
        timeout 30 "${c[@]}" </dev/null >"$tmp/runsc-probe.out" 2>&1 || rc=$?
        if [ $rc = 0 ]; then
            RS_CMD=("${c[@]}")
            runsc_why=
            break
        fi
        runsc_why="${runsc_why:+$runsc_why; }\`${c[*]}\` exit $rc: $(grep -v '^[[:space:]]*$' "$tmp/runsc-probe.out" | tail -1 | cut -c1-200)"
    done
fi

sample() { # NAME CMD... ; appends "NAME ELAPSED_US STATUS" to $tmp/startup
    local line
    line=$("$tmp/run-time" $START_TIMEOUT_MS "${@:2}" 2>>"$tmp/startup.err" </dev/null) || line="NA error"
    echo "$1 $line" >>"$tmp/startup"
}

# ---- phase 1: start-up ----
echo
echo "== start-up: $rounds interleaved rounds (order rotates each round), after 2 warm-up rounds"
echo "bot-bottle: ${BB_CMD[*]}"
echo "bwrap:      ${BW_CMD[*]}"
if [ ${#RS_CMD[@]} -gt 0 ]; then echo "runsc:      ${RS_CMD[*]}"; fi
names=(bot-bottle bwrap)
[ ${#RS_CMD[@]} -gt 0 ] && names+=(runsc)
run_one() {
    case $1 in
    bot-bottle) sample "$1" "${BB_CMD[@]}" ;;
    bwrap) sample "$1" "${BW_CMD[@]}" ;;
    runsc) sample "$1" "${RS_CMD[@]}" ;;
    esac
}
: >"$tmp/startup"
for _ in 1 2; do for n in "${names[@]}"; do run_one "$n"; done; done
: >"$tmp/startup"
n_names=${#names[@]}
for r in $(seq "$rounds"); do
    for i in $(seq 0 $((n_names - 1))); do run_one "${names[$(((i + r) % n_names))]}"; done
done

stats() { # NAME -> "n median_ms p90_ms failures"
    awk -v n="$1" '$1 == n { if ($3 == "0") v[k++] = $2 / 1000; else bad++ }
        END {
            if (k == 0) { printf "0 NA NA %d\n", bad; exit }
            for (i = 0; i < k; i++) for (j = i + 1; j < k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            med = (k % 2) ? v[(k - 1) / 2] : (v[k / 2 - 1] + v[k / 2]) / 2
            p = int(0.9 * k + 0.999999); if (p < 1) p = 1
            printf "%d %.1f %.1f %d\n", k, med, v[p - 1], bad + 0
        }' "$tmp/startup"
}
printf '%-11s %5s %10s %10s %6s\n' "" n "median ms" "p90 ms" failed
declare -A MED
for n in bot-bottle bwrap runsc; do
    if [ "$n" = runsc ] && [ ${#RS_CMD[@]} -eq 0 ]; then
        echo "runsc: not measurable here: $runsc_why"
        continue
    fi
    read -r k med p90 bad <<<"$(stats "$n")"
    MED[$n]=$med
    printf '%-11s %5s %10s %10s %6s\n' "$n" "$k" "$med" "$p90" "$bad"
    [ "$bad" -gt 0 ] && { echo "  ($n: $bad samples failed or timed out: $(awk -v n="$n" '$1 == n && $3 != "0" { print $3 }' "$tmp/startup" | sort | uniq -c | tr -s ' ' | tr '\n' ';'))"; touch "$tmp/failed"; }
done
verdict() { awk -v v="$1" -v t="$2" -v d="$3" 'BEGIN { if (v == "NA") print "NA"; else if ((d == "le" && v <= t) || (d == "ge" && v >= t)) print "PASS"; else print "MISS" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b == 0) print "NA"; else printf "%.2f", a / b }'; }
r=$(ratio "${MED[bot-bottle]:-NA}" "${MED[bwrap]:-NA}")
echo "bot-bottle / bwrap median: ${r}x (target <= 3x): $(verdict "$r" 3 le)"
if [ -n "${MED[runsc]:-}" ]; then
    echo "runsc / bwrap median: $(ratio "${MED[runsc]}" "${MED[bwrap]}")x; bot-bottle / runsc: $(ratio "${MED[bot-bottle]}" "${MED[runsc]}")x"
fi

# ---- phase 2: channel throughput ----
echo
echo "== channel throughput: $size bytes from 127.0.0.1, $reps downloads per side, interleaved"
"$tmp/run-source" "$tmp/src.port" 600 &
pids+=("$!")
for i in $(seq 50); do [ -s "$tmp/src.port" ] && break; sleep 0.1; done
[ -s "$tmp/src.port" ] || { echo "run.sh: run-source did not start" >&2; touch "$tmp/failed"; exit 1; }
SRC_PORT=$(cat "$tmp/src.port")
URL=http://127.0.0.1:$SRC_PORT/$size

port_free() { [ -z "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }
EG_PORT=$((20000 + RANDOM % 12000))
while ! port_free $EG_PORT; do EG_PORT=$((20000 + RANDOM % 12000)); done
POLICY=(--allow-cidr 127.0.0.1/32 --upstream-dns 127.0.0.1:9)
"$bin" egress --listen "127.0.0.1:$EG_PORT" "${POLICY[@]}" --audit "$tmp/egress.audit" \
    >>"$tmp/egress.log" 2>&1 &
EG_PID=$!
pids+=("$EG_PID")
for i in $(seq 100); do port_free $EG_PORT || break; sleep 0.1; done
port_free $EG_PORT && { echo "run.sh: bot-bottle egress did not start; see $tmp/egress.log" >&2; touch "$tmp/failed"; exit 1; }

# NO_PROXY inside a bottle lists 127.0.0.1, so curl is told explicitly to use the proxy
CURL_W='%{http_code} %{size_download} %{time_total}'
echo "host:   curl --noproxy '' -x http://127.0.0.1:$EG_PORT $URL  (bot-bottle egress ${POLICY[*]})"
echo "bottle: ${bin##*/} run --backend namespace ${POLICY[*]} -- curl --noproxy '' -x \$HTTP_PROXY $URL"
: >"$tmp/tput"
HZ=$(getconf CLK_TCK)
# CPU ticks (user+sys) of this shell's reaped descendants; of a live process
cticks() { awk '{ print $16 + $17 }' /proc/$$/stat; }
pticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
download() { # SIDE ; appends "SIDE MB/S SECONDS CPU_SECONDS" (or "SIDE NA") to $tmp/tput
    local out c0 c1 e0 e1
    c0=$(cticks)
    e0=$(pticks $EG_PID)
    case $1 in
    host)
        out=$(timeout $DL_TIMEOUT curl -sS --noproxy '' -x "http://127.0.0.1:$EG_PORT" \
            --max-time $((DL_TIMEOUT - 5)) -o /dev/null -w "$CURL_W" "$URL" 2>>"$tmp/curl.err") || true ;;
    bottle)
        out=$(timeout $DL_TIMEOUT "$bin" run --backend namespace -w "$tmp/ws" "${POLICY[@]}" -- \
            sh -c 'exec curl -sS --noproxy "" -x "$HTTP_PROXY" --max-time "$1" -o /dev/null -w "$2" "$3"' \
            sh $((DL_TIMEOUT - 5)) "$CURL_W" "$URL" 2>>"$tmp/curl.err") || true ;;
    esac
    c1=$(cticks)
    e1=$(pticks $EG_PID)
    set -- "$1" $out
    if [ "${2:-}" = 200 ] && [ "${3:-}" = "$size" ]; then
        # CPU: host = curl + the standalone daemon; bottle = the whole `bot-bottle run` tree
        # (supervisor/host relay, daemon, bottle-init/guest relay, curl), start-up included
        echo "$1 $(awk -v b="$3" -v t="$4" 'BEGIN { printf "%.1f", b / t / 1e6 }') $4 $(awk -v c=$((c1 - c0 + e1 - e0)) -v hz="$HZ" 'BEGIN { printf "%.2f", c / hz }')" >>"$tmp/tput"
    else
        echo "run.sh: $1 download failed: '${*:2}' (see $tmp/curl.err)" >&2
        echo "$1 NA" >>"$tmp/tput"
        touch "$tmp/failed"
    fi
}
for r in $(seq "$reps"); do
    if [ $((r % 2)) = 1 ]; then download host; download bottle; else download bottle; download host; fi
done
tput_med() { # SIDE [COLUMN]: median of a column (2 = MB/s, 4 = CPU s) over the good runs
    awk -v s="$1" -v c="${2:-2}" '$1 == s && $2 != "NA" { v[k++] = $c }
    END { if (k == 0) { print "NA"; exit }
        for (i = 0; i < k; i++) for (j = i + 1; j < k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
        printf (c == 2 ? "%.1f" : "%.2f"), (k % 2) ? v[(k - 1) / 2] : (v[k / 2 - 1] + v[k / 2]) / 2 }' "$tmp/tput"; }
printf '%-7s %12s %14s   %s\n' "" "median MB/s" "CPU s per GiB" "all MB/s"
for s in host bottle; do
    cpu=$(tput_med $s 4)
    [ "$cpu" != NA ] && cpu=$(awk -v c="$cpu" -v b="$size" 'BEGIN { printf "%.2f", c * 1073741824 / b }')
    printf '%-7s %12s %14s   %s\n' "$s" "$(tput_med $s)" "$cpu" "$(awk -v s=$s '$1 == s { printf "%s ", $2 }' "$tmp/tput")"
done
echo "(CPU: host = curl + the standalone egress daemon; bottle = supervisor + daemon + bottle-init + curl,"
echo " start-up included; the origin's CPU is in neither)"
r=$(ratio "$(tput_med bottle)" "$(tput_med host)")
pct=$(awk -v r="$r" 'BEGIN { if (r == "NA") print "NA"; else printf "%.0f%%", r * 100 }')
echo "bottle / host: $pct (target >= 70%): $(verdict "$r" 0.70 ge)"

echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); total $((SECONDS - T_START)) s"
echo "busy processes at end:"
busy || true
exit 0

#!/usr/bin/env bash
# bench/microvm-run.sh: `bot-bottle run -- true` on the default backend (microvm: supervisor,
# egress daemon, per-bottle initramfs, QEMU, bottle-init's guest mode, exit status over
# bottle.ctl) against the floor of booting the same kernel with a trivial init
# (bench/boot-floor.sh), interleaved round by round under the same nice value, so both see
# the same machine load. Prints each round, the two medians and their ratio.
#
# Under TCG the run starts from the start-up snapshot (docs/microvm.md, "Start-up from a
# snapshot"): one untimed run first makes sure it exists. --cold adds, in each round, the same
# run with [microvm] snapshot = off (a boot of the guest kernel, as before snapshots).
#
# Prints numbers; it is not a test (exit 0 whatever the numbers, non-zero only when it could
# not run). Recorded results: docs/microvm.md ("Measured: bot-bottle run").
#
# With --trace, the run goes with BOT_BOTTLE_VM_TRACE=1: bottle-init prints a "bb-trace STAGE
# MS" line (guest CLOCK_BOOTTIME) at each stage of its start, and the script prints the median
# time of each stage, the guest's uptime when init started, and what is outside the guest's
# uptime (supervisor and egress daemon before QEMU, QEMU's own start and exit, tear-down).
#
# Usage: bench/microvm-run.sh [--runs N] [--build DIR] [--nice N] [--memory MIB] [--trace]
#   --runs N      rounds (default 10): one floor boot and one `bot-bottle run -- true` each
#   --build DIR   meson build dir (default build)
#   --nice N      nice value for both (default 10)
#   --memory MIB  the floor's guest RAM (default 1024, the backend's default guest RAM)
#   --trace       break the run's time down by stage (above)
#   --trace-fine  the same with finer stages (the root's steps, the spec, the event loop),
#                 and guest-idle: how long the guest waited (idle vCPU, 10 ms steps) from
#                 bottle-init's early init to its sync. Marks are kept in the guest's memory
#                 and written together at the end, so they cost the stages almost nothing
#   --kernel PATH boot this vmlinux in both (the run through [microvm] kernel in a config)
#   --also DIR    a second build dir (e.g. an older commit's) whose `bot-bottle run -- true`
#                 runs in each round too, after this one: before/after in the same minutes
#   --cold        also `bot-bottle run -- true` with [microvm] snapshot = off in each round
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
runs=10
build=$root/build
nice_val=10
memory=1024
trace=0
kernel=
also=
cold=0
die() {
    echo "bot-bottle: microvm-run: $*" >&2
    exit 1
}
while [ $# -gt 0 ]; do
    case $1 in
    --runs) runs=${2:?}; shift 2 ;;
    --build) build=${2:?}; shift 2 ;;
    --nice) nice_val=${2:?}; shift 2 ;;
    --memory) memory=${2:?}; shift 2 ;;
    --trace) trace=1; shift ;;
    --trace-fine) trace=2; shift ;;
    --kernel) kernel=${2:?}; shift 2 ;;
    --also) also=${2:?}; shift 2 ;;
    --cold) cold=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
case $runs in '' | *[!0-9]* | 0) die "--runs wants a positive number" ;; esac
bb=$build/src/cli/bot-bottle
[ -x "$bb" ] || die "$bb not found (build it: meson setup $build && ninja -C $build)"
also_bb=
if [ -n "$also" ]; then
    also_bb=$also/src/cli/bot-bottle
    [ -x "$also_bb" ] || die "$also_bb not found"
fi

tmp=$(mktemp -d /tmp/microvm-run.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -o "$tmp/run-time" "$here/tools/run-time.c" || die "cannot build tools/run-time.c"
mkdir -p "$tmp/ws" && mkdir -m 0700 "$tmp/state"
floor_kernel=()
run_cfg=()
if [ -n "$kernel" ]; then
    printf '[microvm]\nkernel = %s\n' "$kernel" >"$tmp/kernel.ini"
    floor_kernel=(--kernel "$kernel")
    run_cfg=(-c "$tmp/kernel.ini")
fi
if [ -n "$kernel" ]; then
    printf '[microvm]\nkernel = %s\nsnapshot = off\n' "$kernel" >"$tmp/cold.ini"
else
    printf '[microvm]\nsnapshot = off\n' >"$tmp/cold.ini"
fi
# the start-up snapshot for this build, kernel and trace setting, made now (untimed)
(cd "$tmp/ws" && BOT_BOTTLE_VM_TRACE=$trace BOT_BOTTLE_STATE_DIR=$tmp/state \
    "$bb" run ${run_cfg[@]+"${run_cfg[@]}"} -- true >/dev/null 2>"$tmp/warm-err") ||
    die "bot-bottle run -- true failed: $(cat "$tmp/warm-err")"

median() {
    printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}
echo "microvm-run: $runs rounds, nice $nice_val, floor guest ${memory} MiB, load $(cut -d' ' -f1-3 /proc/loadavg)"
floors=()
floor_up=()
runs_ms=()
also_ms=()
cold_ms=()
for i in $(seq 1 "$runs"); do
    fl=$("$here/boot-floor.sh" --runs 1 --build "$build" --nice "$nice_val" --memory "$memory" \
        ${floor_kernel[@]+"${floor_kernel[@]}"} |
        sed -n 's/^boot  *1: wall  *\([0-9]*\) ms, guest uptime at init  *\([0-9]*\) ms.*/\1 \2/p')
    f=${fl% *}
    [ -n "$f" ] || die "the floor boot failed (run bench/boot-floor.sh --keep)"
    floor_up+=("${fl#* }")
    # --also: which build goes first alternates, so neither always follows the floor
    also_run() {
        res=$(cd "$tmp/ws" && BOT_BOTTLE_STATE_DIR=$tmp/state nice -n "$nice_val" \
            "$tmp/run-time" 120000 "$also_bb" run ${run_cfg[@]+"${run_cfg[@]}"} -- true 2>"$tmp/also-err" |
            tail -n 1)
        [ "${res#* }" = 0 ] || die "$also_bb run -- true failed ($res): $(cat "$tmp/also-err")"
        also_ms+=($((${res%% *} / 1000)))
    }
    if [ -n "$also_bb" ] && [ $((i % 2)) = 0 ]; then also_run; fi
    res=$(cd "$tmp/ws" && BOT_BOTTLE_VM_TRACE=$trace BOT_BOTTLE_STATE_DIR=$tmp/state \
        nice -n "$nice_val" "$tmp/run-time" 120000 "$bb" run ${run_cfg[@]+"${run_cfg[@]}"} -- true 2>"$tmp/err.$i" |
        tee "$tmp/out.$i" | tail -n 1)
    [ "${res#* }" = 0 ] || die "bot-bottle run -- true failed ($res): $(cat "$tmp/err.$i")"
    r=$((${res%% *} / 1000))
    floors+=("$f")
    runs_ms+=("$r")
    if [ "$cold" = 1 ]; then
        res=$(cd "$tmp/ws" && BOT_BOTTLE_STATE_DIR=$tmp/state nice -n "$nice_val" \
            "$tmp/run-time" 120000 "$bb" run -c "$tmp/cold.ini" -- true 2>"$tmp/cold-err" |
            tail -n 1)
        [ "${res#* }" = 0 ] || die "run -- true with snapshot = off failed ($res): $(cat "$tmp/cold-err")"
        cold_ms+=($((${res%% *} / 1000)))
        printf 'round %2d: floor %5d ms, bot-bottle run -- true %5d ms, with snapshot = off %5d ms\n' "$i" "$f" "$r" "${cold_ms[-1]}"
        continue
    fi
    if [ -n "$also_bb" ]; then
        if [ $((i % 2)) = 1 ]; then also_run; fi
        printf 'round %2d: floor %5d ms, bot-bottle run -- true %5d ms, --also %5d ms\n' "$i" "$f" "$r" "${also_ms[-1]}"
    else
        printf 'round %2d: floor %5d ms, bot-bottle run -- true %5d ms\n' "$i" "$f" "$r"
    fi
done
if [ $trace != 0 ]; then
    # per round: the guest uptime at each stage and the wall time; stage = this mark - previous
    for i in $(seq 1 "$runs"); do
        wall=$(tail -n 1 "$tmp/out.$i" | cut -d' ' -f1)
        # (the console, where bottle-init writes its marks, is QEMU's stderr with streams)
        cat "$tmp/out.$i" "$tmp/err.$i" | tr -d '\r' | awk -v wall="$wall" '
            /^bb-trace / { t[$2] = $3; order[n++] = $2 }
            /^bb-idle / { idle[$2] = $3 }
            END {
                # the last mark: "reboot" (after the status), or "synced" (before it) when
                # the host ended QEMU on the status before the console had the next mark
                end = ("reboot" in t) ? "reboot" : "synced"
                # restored from the snapshot: the guest starts at "restored" (its uptime
                # goes on from the template boot, whose marks are not kept)
                start = ("restored" in t) ? "restored" : "early-init"
                if (!(start in t) || !(end in t)) exit
                if (start == "early-init")
                    printf "kernel-to-init %.1f\n", t["early-init"]
                prev = start
                for (k = 0; k < n; k++) {
                    s = order[k]
                    if (s == "init" || s == "early-init" || s == "restored") continue
                    printf "%s %.1f\n", s, t[s] - t[prev]; prev = s
                }
                printf "outside-guest %.1f\n", wall / 1000 - (t[end] - (start == "restored" ? t[start] : 0))
                if (("early-init" in idle) && ("synced" in idle))
                    printf "guest-idle %.1f\n", (idle["synced"] - idle["early-init"]) * 1000
            }'
        # the floor of the same round: its kernel to init, and its wall time outside that
        echo "floor-kernel-to-init ${floor_up[$((i - 1))]}"
        echo "floor-outside-init $((floors[i - 1] - floor_up[i - 1]))"
    done >"$tmp/stages"
    echo "microvm-run: stages of bot-bottle run -- true, median of $runs (ms; guest stages in guest time):"
    awk '{ if (!($1 in seen)) { seen[$1] = 1; order[n++] = $1 } v[$1] = v[$1] " " $2 }
         END { for (k = 0; k < n; k++) print order[k], v[order[k]] }' "$tmp/stages" |
        while read -r name vals; do
            # shellcheck disable=SC2086
            printf '  %-22s %8s\n' "$name" "$(printf '%s\n' $vals | sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }')"
        done
fi
mf=$(median "${floors[@]}")
mr=$(median "${runs_ms[@]}")
echo "microvm-run: floor median $mf ms, bot-bottle run -- true median $mr ms, ratio $(awk -v a="$mr" -v b="$mf" 'BEGIN { printf "%.2f", a / b }'); load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$cold" = 1 ]; then
    mc=$(median "${cold_ms[@]}")
    echo "microvm-run: with snapshot = off: median $mc ms, ratio $(awk -v a="$mc" -v b="$mf" 'BEGIN { printf "%.2f", a / b }'); snapshot / off $(awk -v a="$mr" -v b="$mc" 'BEGIN { printf "%.2f", a / b }')"
fi
if [ -n "$also_bb" ]; then
    ma=$(median "${also_ms[@]}")
    echo "microvm-run: --also $also: median $ma ms, ratio $(awk -v a="$ma" -v b="$mf" 'BEGIN { printf "%.2f", a / b }')"
    # per-round ratios, whose median is less sensitive to the load changing between rounds
    rr=(); ra=()
    for k in "${!floors[@]}"; do
        rr+=("$(awk -v a="${runs_ms[$k]}" -v b="${floors[$k]}" 'BEGIN { printf "%d", 1000 * a / b }')")
        ra+=("$(awk -v a="${also_ms[$k]}" -v b="${floors[$k]}" 'BEGIN { printf "%d", 1000 * a / b }')")
    done
    echo "microvm-run: median of per-round ratios: this build $(awk -v x="$(median "${rr[@]}")" 'BEGIN { printf "%.2f", x / 1000 }'), --also $(awk -v x="$(median "${ra[@]}")" 'BEGIN { printf "%.2f", x / 1000 }')"
fi

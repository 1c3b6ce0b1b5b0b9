# bench/lib.sh: sourced by bench/proxy.sh and bench/run.sh for what they share: --nice (with
# the session's autogroup) and the EXIT cleanup of their children and temp dir.
#
# bench_nice NAME N: renice this shell (and what it starts) to N. With sched_autogroup, nice
# only ranks tasks inside one session's group; the group's own nice ranks it against other
# sessions. Set it too; bench_cleanup puts it back. Exits 2 (naming NAME) when it cannot.
#
# bench_cleanup: the EXIT trap. Kills and waits for the pids in the array `pids` that are
# still our own children, restores the autogroup's nice, and removes $tmp unless $keep is 1
# (or $tmp/failed exists: then it prints the path).

autogroup_old=
bench_nice() {
    renice -n "$2" -p $$ >/dev/null || { echo "$1: cannot renice to $2" >&2; exit 2; }
    if [ -w /proc/$$/autogroup ]; then
        autogroup_old=$(sed -n 's/.* nice \(-\{0,1\}[0-9]*\).*/\1/p' /proc/$$/autogroup)
        echo "$2" >/proc/$$/autogroup 2>/dev/null || autogroup_old=
    fi
}

bench_cleanup() {
    local p
    for p in "${pids[@]}"; do # only our own children that are still running
        [ "$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')" = $$ ] && kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -n "$autogroup_old" ] && echo "$autogroup_old" >/proc/$$/autogroup 2>/dev/null
    [ -e "$tmp/failed" ] && keep=1
    if [ "$keep" = 1 ]; then echo "kept: $tmp"; else rm -rf "$tmp"; fi
}

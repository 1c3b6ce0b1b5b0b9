# bench/lib.sh: sourced by bench/proxy.sh, run.sh and microvm-exec.sh for what they share:
# --help, the checks before a run, --nice (with the session's autogroup), the temp dir and the
# EXIT cleanup of their children and temp dir.
#
# bench_help SCRIPT: prints SCRIPT's leading comment block (its usage) without the "# ".
#
# bench_bin NAME: exits 2 (naming NAME) unless $bin is an executable; makes $bin absolute.
#
# bench_need NAME TOOL...: exits 2 (naming NAME and the tool) unless every TOOL is on PATH.
#
# bench_nice NAME N: renice this shell (and what it starts) to N. With sched_autogroup, nice
# only ranks tasks inside one session's group; the group's own nice ranks it against other
# sessions. Set it too; bench_cleanup puts it back. Exits 2 (naming NAME) when it cannot.
#
# bench_start PREFIX: makes the temp dir $tmp (/tmp/PREFIX.XXXXXX), empties `pids` and sets the
# traps: bench_cleanup on EXIT, exit 130 on INT and TERM.
#
# bench_cleanup: the EXIT trap. Kills and waits for the pids in the array `pids` that are
# still our own children, restores the autogroup's nice, and removes $tmp unless $keep is 1
# (or $tmp/failed exists: then it prints the path).

bench_help() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$1"
}

bench_bin() {
    [ -x "$bin" ] || { echo "$1: no bot-bottle binary at $bin (build it, or pass --bin)" >&2; exit 2; }
    bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
}

bench_need() {
    local name=$1 t
    shift
    for t in "$@"; do
        command -v "$t" >/dev/null || { echo "$name: needs $t" >&2; exit 2; }
    done
}

autogroup_old=
bench_nice() {
    renice -n "$2" -p $$ >/dev/null || { echo "$1: cannot renice to $2" >&2; exit 2; }
    if [ -w /proc/$$/autogroup ]; then
        autogroup_old=$(sed -n 's/.* nice \(-\{0,1\}[0-9]*\).*/\1/p' /proc/$$/autogroup)
        echo "$2" >/proc/$$/autogroup 2>/dev/null || autogroup_old=
    fi
}

bench_start() {
    tmp=$(mktemp -d "/tmp/$1.XXXXXX")
    pids=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
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

#!/usr/bin/env bash
# A start-up interrupted at any moment (issue 12): SIGTERM or SIGHUP while `run` is still
# building the bottle ends it through the normal clean-up (no state directory, no alias lease,
# no daemon left behind; exit 128+N, the command never started). A supervisor killed with
# SIGKILL cannot clean up: the next run removes what it left and says which bottle that was.
source "$(dirname "$0")/lib.sh"

need_bottles "interrupted start-up tests"

S=$BOT_BOTTLE_STATE_DIR
mkdir -p "$T/ws"
cd "$T/ws" || exit 1
leftovers() { find "$S/bottles" "$S/aliases" -mindepth 1 ! -name .lock 2>/dev/null | sort | tr '\n' ' '; }

# Signal the supervisor as soon as its state directory exists: before the fix the signal
# arrived before any handler and killed it there, leaving the directory and the alias lease.
for sig in TERM HUP; do
    for name in early-$sig-1 early-$sig-2 early-$sig-3; do
        "$BB" run --backend namespace --name "$name" -- sh -c "echo started >'$T/ws/$name.ran'" \
            >/dev/null 2>"$T/$name.err" &
        pid=$!
        # (a tight loop: the window is a few milliseconds)
        while ! [ -d "$S/bottles/$name" ] && kill -0 "$pid" 2>/dev/null; do :; done
        kill -$sig "$pid" 2>/dev/null
        wait "$pid"
        rc=$?
        # either the signal came during start-up (128+N) or the command was already done (0)
        if [ "$rc" = 0 ]; then
            check "$sig during start-up of $name (the command finished first)" test -e "$T/ws/$name.ran"
        else
            is "$sig during start-up of $name exits 128+N" "$rc" \
                "$([ $sig = TERM ] && echo 143 || echo 129)"
            check "... and the command never ran" test ! -e "$T/ws/$name.ran"
        fi
        is "... and leaves no state directory or alias lease" "$(leftovers)" ""
    done
done
is "... nor a daemon or bottle process" "$(procs 'bot-bottle egress|bottle-init')" ""

# SIGKILL: nothing can clean up; the next run removes it and names it
"$BB" run --backend namespace --name killed-one -- sleep 30 >/dev/null 2>&1 &
pid=$!
wait_file "$S/bottles/killed-one/info.json"
kill -KILL "$pid"
wait "$pid" 2>/dev/null
wait_gone 'bot-bottle egress|bottle-init'
check "a supervisor killed with SIGKILL leaves its state directory" test -d "$S/bottles/killed-one"
check "... and its alias lease file" test -n "$(ls "$S/aliases")"
"$BB" run --backend namespace --name next-one -- true 2>"$T/next.err"
is "the next run works" "$?" "0"
like "... and says whose state it removed" "$(cat "$T/next.err")" \
    "removed the state that bottle 'killed-one' left behind"
is "... which is gone, with the stale alias lease" "$(leftovers)" ""
done_testing

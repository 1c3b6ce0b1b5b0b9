#!/usr/bin/env bash
# Red-team round 3: the microvm backend seen from a hostile guest. A compromised guest kernel
# writes what it likes on every virtio-serial port; helpers/hostile-guest.py plays one as a
# fake QEMU (BOT_BOTTLE_QEMU) on the backend's real chardev sockets, with the real
# supervisor, host relay and egress daemon behind them (no VM boots, so this is quick).
# - stream flood: the guest opens as many proxy streams as the channel allows (1024); each
#   costs the supervisor a descriptor. Under the common 1024-descriptor limit the supervisor
#   ran out: `bot-bottle stop` got no answer (and the control listener, level-triggered with a
#   connection it could not accept, spun the CPU).
source "$(dirname "$0")/lib.sh"

need_bottles "red-team microvm tests"
KCACHE=${BOT_BOTTLE_KERNEL_CACHE:-/var/cache/bot-bottle/kernel}
if ! ls "$KCACHE"/vmlinux-* >/dev/null 2>&1; then
    skip "red-team microvm tests" "no guest kernel in $KCACHE (scripts/build-guest-kernel.sh)"
    done_testing
fi

WS=$T/ws
mkdir -p "$WS"
# hostile_qemu NAME ARGS...: a QEMU stand-in at $T/NAME running hostile-guest.py ARGS
hostile_qemu() {
    local q=$T/$1
    shift
    printf '#!/bin/sh\nexec %s %s %s "$@"\n' "$PY" "$HELPERS/hostile-guest.py" "$*" >"$q"
    chmod +x "$q"
    echo "$q"
}
sv_pid() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' \
    "$BOT_BOTTLE_STATE_DIR/bottles/$1/info.json"; }

# --- stream flood under a 1024-descriptor limit ----------------------------------------------
Q=$(hostile_qemu q-flood --mode streams --count 1024 --ready "$T/flood.ready")
(
    cd "$WS" && ulimit -n 1024 &&
        BOT_BOTTLE_QEMU=$Q timeout 60 "$BB" start --upstream-dns 127.0.0.1:1 --name flood \
            -- true >"$T/flood.out" 2>"$T/flood.err"
)
is "flood: the bottle started (fake QEMU)" "$(cat "$T/flood.out")" flood
for _ in $(seq 600); do [ -s "$T/flood.ready" ] && break; sleep 0.1; done
like "flood: the guest's 1024 OPENs were all answered" "$(cat "$T/flood.ready")" "^opened [0-9]+ [0-9]+"
SV=$(sv_pid flood)
check "flood: it keeps descriptors in reserve ($(ls /proc/"$SV"/fd | wc -l) open, limit 1024)" \
    test "$(ls /proc/"$SV"/fd | wc -l)" -lt 1000
start=$(date +%s)
timeout 30 "$BB" stop flood >"$T/stop.out" 2>"$T/stop.err"
rc=$?
is "flood: bot-bottle stop still works (status)" "$rc" 0
check "flood: ... promptly ($(($(date +%s) - start)) s)" test $(($(date +%s) - start)) -lt 20
unlike "flood: ... without 'no answer'" "$(cat "$T/stop.err")" "no answer"

done_testing
fi

WS=$T/ws
mkdir -p "$WS"
# hostile_qemu NAME ARGS...: a QEMU stand-in at $T/NAME running hostile-guest.py ARGS
hostile_qemu() {
    local q=$T/$1
    shift
    printf '#!/bin/sh\nexec %s %s %s "$@"\n' "$PY" "$HELPERS/hostile-guest.py" "$*" >"$q"
    chmod +x "$q"
    echo "$q"
}
sv_pid() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' \
    "$BOT_BOTTLE_STATE_DIR/bottles/$1/info.json"; }

# --- stream flood under a 1024-descriptor limit ----------------------------------------------
Q=$(hostile_qemu q-flood --mode streams --count 1024 --ready "$T/flood.ready")
(
    cd "$WS" && ulimit -n 1024 &&
        BOT_BOTTLE_QEMU=$Q timeout 60 "$BB" start --upstream-dns 127.0.0.1:1 --name flood \
            -- true >"$T/flood.out" 2>"$T/flood.err"
)
is "flood: the bottle started (fake QEMU)" "$(cat "$T/flood.out")" flood
for _ in $(seq 600); do [ -s "$T/flood.ready" ] && break; sleep 0.1; done
like "flood: the guest's 1024 OPENs were all answered" "$(cat "$T/flood.ready")" "^opened [0-9]+ [0-9]+"
SV=$(sv_pid flood)
check "flood: it keeps descriptors in reserve ($(ls /proc/"$SV"/fd | wc -l) open, limit 1024)" \
    test "$(ls /proc/"$SV"/fd | wc -l)" -lt 1000
start=$(date +%s)
timeout 30 "$BB" stop flood >"$T/stop.out" 2>"$T/stop.err"
rc=$?
is "flood: bot-bottle stop still works (status)" "$rc" 0
check "flood: ... promptly ($(($(date +%s) - start)) s)" test $(($(date +%s) - start)) -lt 20
unlike "flood: ... without 'no answer'" "$(cat "$T/stop.err")" "no answer"
# the stop request left a connection in the control socket's queue: out of descriptors the
# level-triggered listener fired forever
if [ -d "/proc/$SV" ]; then
a=$(cpu_ticks "$SV")
sleep 2
b=$(cpu_ticks "$SV")
# a busy loop takes every tick it is given (>100 in 2 s even on a loaded machine); idle is ~0
check "flood: the supervisor does not spin with a connection pending ($((b - a)) ticks in 2 s)" \
    test $((b - a)) -lt 40
fi

done_testing

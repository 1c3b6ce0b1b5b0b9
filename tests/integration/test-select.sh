#!/usr/bin/env bash
# Backend selection (docs/backends.md): --backend > BOT_BOTTLE_BACKEND > [bottle] backend >
# microvm; auto's choice and its one line; a backend that cannot run is exit 125 before
# anything starts, naming what is missing and the fix, never a switch to another backend;
# no prompt and no hang without a terminal and with stdin closed.
# Unavailable backends are simulated with the probes' test hooks (BOT_BOTTLE_QEMU,
# BOT_BOTTLE_KERNEL_CACHE, BOT_BOTTLE_PROC_SYS), never by changing the machine.
source "$(dirname "$0")/lib.sh"

need_bottles "backend selection tests"

dns_stub
mkdir -p "$T/ws" "$T/empty" "$T/config/bot-bottle" "$T/sys-nouserns/user" "$T/sys-nonet/user"
echo 0 >"$T/sys-nouserns/user/max_user_namespaces"
echo 0 >"$T/sys-nonet/user/max_net_namespaces"
unset BOT_BOTTLE_BACKEND
# run's choice, with stdin closed, without a controlling terminal (setsid) and a time limit:
# nothing may ever wait for an answer. Prints stderr then "rc=N".
# brun [VAR=VALUE...] RUN-ARGS...: the variables are set for bot-bottle only.
brun() {
    local envs=()
    while [[ $# -gt 0 && $1 == [A-Z]*=* ]]; do
        envs+=("$1")
        shift
    done
    (cd "$T/ws" && setsid -w timeout 120 env "${envs[@]}" "$BB" run \
        --upstream-dns "127.0.0.1:$DNS" "$@" <&- >"$T/out" 2>"$T/err"; echo "rc=$?")
}
no_bottle_started() {
    [ -z "$(ls "$BOT_BOTTLE_STATE_DIR/bottles" 2>/dev/null)" ] && [ -z "$(procs 'qemu-system|bottle-init|bot-bottle egress')" ]
}
NOQEMU=BOT_BOTTLE_QEMU=/nonexistent/qemu

# --- precedence, observed through which backend the 125 message names and where it came from
rc=$(brun "$NOQEMU" -- true)
is "default: microvm; without QEMU that is exit 125" "$rc" "rc=125"
like "... naming the backend, that it is the default, what is missing and the fixes" "$(cat "$T/err")" \
    "^bot-bottle: error: the microvm backend \(the default\) cannot run here: QEMU /nonexistent/qemu: No such file or directory \(install Debian's qemu-system-x86: scripts/install-deps.sh\); or pick another: --backend auto or --backend namespace"
check "... before anything started (no bottle state, no process)" no_bottle_started
is "... and it said nothing else (one line)" "$(wc -l <"$T/err")" "1"

printf '[bottle]\nbackend = microvm\n' >"$T/config/bot-bottle/config.ini"
rc=$(brun "$NOQEMU" -- true)
is "config [bottle] backend = microvm: exit 125" "$rc" "rc=125"
like "... the message says it came from the config" "$(cat "$T/err")" \
    "the microvm backend \(from \[bottle\] backend in the config\) cannot run here"

printf '[bottle]\nbackend = namespace\n' >"$T/config/bot-bottle/config.ini"
rc=$(brun "$NOQEMU" -- true)
is "config beats the default: namespace runs although microvm cannot" "$rc" "rc=0"
rc=$(brun "$NOQEMU" BOT_BOTTLE_BACKEND=microvm -- true)
is "env beats config: BOT_BOTTLE_BACKEND=microvm is used (and cannot run)" "$rc" "rc=125"
like "... the message says it came from BOT_BOTTLE_BACKEND" "$(cat "$T/err")" \
    "the microvm backend \(from BOT_BOTTLE_BACKEND\) cannot run here"
rc=$(brun "$NOQEMU" BOT_BOTTLE_BACKEND=namespace --backend microvm -- true)
is "flag beats env: --backend microvm over BOT_BOTTLE_BACKEND=namespace" "$rc" "rc=125"
like "... the message says it came from --backend" "$(cat "$T/err")" \
    "the microvm backend \(from --backend\) cannot run here"
rc=$(brun "$NOQEMU" BOT_BOTTLE_BACKEND=microvm --backend namespace -- true)
is "flag beats env the other way: --backend namespace runs" "$rc" "rc=0"
rc=$(brun "$NOQEMU" BOT_BOTTLE_BACKEND= -- true)
is "an empty BOT_BOTTLE_BACKEND counts as unset (the config's namespace runs)" "$rc" "rc=0"
rm -f "$T/config/bot-bottle/config.ini"

# --- unknown names list the table's backends, and say where the name came from
rc=$(brun BOT_BOTTLE_BACKEND=qemu -- true)
is "an unknown name in BOT_BOTTLE_BACKEND: exit 125" "$rc" "rc=125"
known=$("$BB" run --backend nope -- true 2>&1 | sed -n 's/.*(known: \(.*\))$/\1/p')
like "... listing the known names (the same list as for --backend) and how to override" \
    "$(cat "$T/err")" "unknown backend 'qemu' \(from BOT_BOTTLE_BACKEND\) \(known: $known\); fix it, or override it with --backend NAME"

# --- each reason a backend cannot run, with its fix
rc=$(brun PATH=$T/empty --backend microvm -- true)
is "no QEMU in PATH: exit 125" "$rc" "rc=125"
like "... naming the binary and the install command" "$(cat "$T/err")" \
    "the microvm backend \(from --backend\) cannot run here: qemu-system-x86_64 not found in PATH \(install Debian's qemu-system-x86: scripts/install-deps.sh\)"
rc=$(brun BOT_BOTTLE_KERNEL_CACHE=$T/empty --backend microvm -- true)
is "no guest kernel in the cache: exit 125" "$rc" "rc=125"
like "... naming the cache and the build command" "$(cat "$T/err")" \
    "cannot run here: no guest kernel in $T/empty \(build it once: scripts/build-guest-kernel.sh\); or pick another: --backend auto or --backend namespace"
check "... before anything started" no_bottle_started
rc=$(brun BOT_BOTTLE_PROC_SYS=$T/sys-nouserns --backend namespace -- true)
is "user.max_user_namespaces=0: exit 125" "$rc" "rc=125"
like "... naming the sysctl and the command that fixes it" "$(cat "$T/err")" \
    "the namespace backend \(from --backend\) cannot run here: user namespaces are disabled \(user.max_user_namespaces=0\); run: sudo sysctl -w user.max_user_namespaces=15000; or pick another: --backend auto or --backend microvm"

# The probe's test clone3() leaves the (costly) network namespace out: the sysctl is read.
rc=$(brun BOT_BOTTLE_PROC_SYS=$T/sys-nonet --backend namespace -- true)
is "user.max_net_namespaces=0: exit 125" "$rc" "rc=125"
like "... naming the sysctl and the command that fixes it" "$(cat "$T/err")" \
    "the namespace backend \(from --backend\) cannot run here: network namespaces are disabled \(user.max_net_namespaces=0\); run: sudo sysctl -w user.max_net_namespaces=15000; or pick another"
check "... before anything started" no_bottle_started

# The unprivileged knobs stop only processes without CAP_SYS_ADMIN: checked as nobody (the
# choice is made before run needs anything a nobody lacks). As root they must not matter.
mkdir -p "$T/sys-clone/kernel" "$T/sys-aa/kernel"
echo 0 >"$T/sys-clone/kernel/unprivileged_userns_clone"
echo 1 >"$T/sys-aa/kernel/apparmor_restrict_unprivileged_userns"
chmod a+rx "$T" "$T/ws" "$T/empty"
chmod -R a+rX "$T/sys-clone" "$T/sys-aa"
asnobody() {
    (cd "$T/ws" && setsid -w timeout 60 setpriv --reuid=65534 --regid=65534 --clear-groups \
        env HOME="$T/empty" "$@" <&- >"$T/out" 2>"$T/err"; echo "rc=$?")
}
rc=$(asnobody BOT_BOTTLE_PROC_SYS="$T/sys-clone" "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" -- true)
is "kernel.unprivileged_userns_clone=0 (unprivileged): exit 125" "$rc" "rc=125"
like "... naming the sysctl and the fix" "$(cat "$T/err")" \
    "cannot run here: unprivileged user namespaces are disabled \(kernel.unprivileged_userns_clone=0\); run: sudo sysctl -w kernel.unprivileged_userns_clone=1"
rc=$(asnobody BOT_BOTTLE_PROC_SYS="$T/sys-aa" "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" -- true)
is "AppArmor's kernel.apparmor_restrict_unprivileged_userns=1 (unprivileged): exit 125" "$rc" "rc=125"
like "... naming the restriction (Ubuntu 24.04) and the fix" "$(cat "$T/err")" \
    "AppArmor restricts unprivileged user namespaces \(kernel.apparmor_restrict_unprivileged_userns=1, as on Ubuntu 24.04\); run: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
if [ "$(id -u)" = 0 ]; then
    for d in sys-clone sys-aa; do
        BOT_BOTTLE_PROC_SYS="$T/$d" "$BB" doctor --json --upstream-dns "127.0.0.1:$DNS" >"$T/doc.json"
        is "as root, $d does not stop the namespace backend" \
            "$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print([b["available"] for b in d["backends"] if b["name"]=="namespace"][0])' "$T/doc.json")" "True"
    done
fi

# --- auto
"$BB" doctor --json --upstream-dns "127.0.0.1:$DNS" >"$T/doc.json"
mv_slow=$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); m=[b for b in d["backends"] if b["name"]=="microvm"][0]; print("fast" if m["available"] and not m["slow"] else "slow" if m["available"] else "none")' "$T/doc.json")
rc=$(brun --backend auto -- true)
is "auto runs" "$rc" "rc=0"
is "... saying its choice in exactly one line" "$(grep -c 'backend auto' "$T/err")" "1"
if [ "$mv_slow" = fast ]; then
    like "... microvm on KVM is the strongest" "$(cat "$T/err")" "^bot-bottle: backend auto \(from --backend\) chose microvm: microvm can run here \(.*kvm"
else
    like "... microvm only under TCG here ($mv_slow): namespace at full speed comes first, and it says why" \
        "$(cat "$T/err")" "^bot-bottle: backend auto \(from --backend\) chose namespace: microvm (would be slow|cannot run here) \(.*\); namespace can run here \(user namespaces work"
fi
# namespace disabled: the VM under TCG (or KVM) is what is left; this boots one microVM
if [ "$mv_slow" != none ]; then
    rc=$(brun BOT_BOTTLE_PROC_SYS=$T/sys-nouserns BOT_BOTTLE_BACKEND=auto -- true)
    is "auto without user namespaces runs the microVM (stdin closed, no terminal)" "$rc" "rc=0"
    if [ "$mv_slow" = slow ]; then
        like "... saying why: emulated, but the only one left" "$(cat "$T/err")" \
            "^bot-bottle: backend auto \(from BOT_BOTTLE_BACKEND\) chose microvm: microvm would be slow \(.*TCG.*\); namespace cannot run here \(user namespaces are disabled \(user.max_user_namespaces=0\).*\); microvm is the only one that can run here \(emulated: slow\)"
    else
        like "... saying why" "$(cat "$T/err")" \
            "^bot-bottle: backend auto \(from BOT_BOTTLE_BACKEND\) chose microvm: microvm can run here \("
    fi
else
    skip "auto falls back to the microVM" "microvm cannot run here: $(grep -o '"reason": "[^"]*' "$T/doc.json" | head -1)"
fi
rc=$(brun "$NOQEMU" BOT_BOTTLE_PROC_SYS=$T/sys-nouserns --backend auto -- true)
is "auto with nothing that can run: exit 125" "$rc" "rc=125"
like "... saying why each could not, and where to look" "$(cat "$T/err")" \
    "^bot-bottle: error: no backend can run here \(backend auto \(from --backend\)\): microvm cannot run here \(QEMU /nonexistent/qemu: No such file or directory.*\); namespace cannot run here \(user namespaces are disabled.*\); 'bot-bottle doctor' shows what each one needs"
check "... before anything started" no_bottle_started

# --- no prompt, no hang: BOT_BOTTLE_BACKEND alone, stdin closed, no terminal
rc=$(brun BOT_BOTTLE_BACKEND=namespace -- sh -c 'echo out; read x; echo read=$?')
is "BOT_BOTTLE_BACKEND=namespace alone, stdin closed, no terminal: runs to the end" "$rc" "rc=0"
is "... the command's stdin is empty, not a terminal to wait on" "$(cat "$T/out")" "out
read=1"
done_testing

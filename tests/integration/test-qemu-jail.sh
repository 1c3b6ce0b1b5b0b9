#!/usr/bin/env bash
# QEMU's jail (src/backend/microvm/jail.c, docs/microvm.md "QEMU's jail"): QEMU parses all a
# hostile guest does, so a compromised QEMU must reach no more than the bottle. The honest
# reproduction of "QEMU compromised" is a fake QEMU (BOT_BOTTLE_QEMU, helpers/qemu-attacks.py)
# that tries from where QEMU runs what such an attacker would: host files, the home, other
# bottles' state, a host loopback service, and, through the workspace share, a set-user-ID
# file, file capabilities, a device node, a chown to another user. Twice: QEMU as root (a
# root-owned workspace: the dangerous case) and as the workspace's owner. Then a real VM:
# what QEMU's process looks like from the host while it runs, and that the guest's file
# operations through 9p still work (mkdir in a set-group-ID directory, chmod, chown).
source "$(dirname "$0")/lib.sh"

need_root "QEMU's jail" "the attacks that matter (QEMU as root) need root"
unset BOT_BOTTLE_BACKEND
chmod 0711 "$T"

dns_stub
# a host loopback service the fake QEMU tries to reach
PORT=$(free_port)
bg "$PY" -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); open(sys.argv[2], "w").write("ready")
while True:
    c, _ = s.accept(); open(sys.argv[3], "a").write("connected\n"); c.close()' \
    "$PORT" "$T/svc.ready" "$T/svc.log"
wait_file "$T/svc.ready" || { echo "Bail out! loopback service did not start"; exit 1; }

mkdir -p "$T/outside" "$T/ro"
echo secret >"$T/outside/secret"
chmod 0644 "$T/outside/secret"

# fake_qemu UID: the attacker, configured for this test
fake_qemu() {
    {
        echo "#!$PY"
        echo "CONF = {'uid': $1, 'port': $PORT, 'home': '$HOME', 'outside': '$T/outside/secret', 'state': '$BOT_BOTTLE_STATE_DIR'}"
        cat "$HELPERS/qemu-attacks.py"
    } >"$T/fake-qemu"
    chmod 0755 "$T/fake-qemu"
}

# attack_run WS: the fake QEMU behind a bottle with workspace WS and a read-only --mount;
# its report is in $T/err
attack_run() {
    rm -f "$1/jail-report"
    (cd "$1" && timeout 120 env BOT_BOTTLE_QEMU="$T/fake-qemu" "$BB" run --upstream-dns \
        "127.0.0.1:$DNS" --mount "$T/ro:/ro:ro" -- true >"$T/out" 2>"$T/run.err")
    echo "rc=$?"
    cat "$1/jail-report" >"$T/err" 2>/dev/null
    rm -f "$1/jail-report"
}

# attacks_blocked LABEL NAME...: each attack's line says blocked
attacks_blocked() {
    local label=$1 name
    shift
    for name in "$@"; do
        like "$label: $name is blocked" "$(grep "^attack $name:" "$T/err")" "^attack $name: blocked"
    done
}

# wait_exists FILE: up to 120 s (a VM under TCG on a loaded machine)
wait_exists() { for _ in $(seq 1200); do [ -e "$1" ] && return 0; sleep 0.1; done; return 1; }

host_clean() {
    local ws=$1
    [ ! -e "$ws/mem" ] && [ ! -e "$ws/new-file" ] && [ ! -e "$ws/suid-new" ] && [ -z "$(ls -A "$T/ro")" ] &&
        [ -z "$(find /usr -maxdepth 1 -name '.bb-jail-test-*')" ] &&
        [ -z "$(find "$ws" -perm /6000)" ] && [ "$("$PY" -c 'import os, sys; print(os.listxattr(sys.argv[1]))' "$ws/victim")" = "[]" ]
}

# ---- QEMU as root: a root-owned workspace ----
mkdir -p "$T/ws-root"
echo data >"$T/ws-root/victim"
fake_qemu 0
rc=$(attack_run "$T/ws-root")
diag "$(cat "$T/err")"
is "root workspace: the fake QEMU ran and the bottle failed as QEMU died (125)" "$rc" "rc=125"
like "... it could still do its job: write the workspace" "$(grep '^control ws-write:' "$T/err")" "DONE"
like "... chmod there" "$(grep '^control chmod-755:' "$T/err")" "DONE"
like "... reach its sockets" "$(grep '^control run-dir:' "$T/err")" "DONE"
# (cgroup v1: the child joins before exec; on v2 clone3 puts it there, and its cgroup
# namespace's root is that cgroup)
if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
    like "... and it was in the bottle's cgroups from its first instruction (v1)" \
        "$(grep '^control cgroup-at-exec:' "$T/err")" "DONE .*/bot-bottle/"
fi
attacks_blocked "QEMU as root" shadow passwd home outside state other-tmp loopback processes \
    caps usr-write ro-mount-write chmod-suid create-suid fcap mknod chown unshare mount dev-mem \
    proc-sys
is "... nothing reached the loopback service" "$(cat "$T/svc.log" 2>/dev/null)" ""
check "... and nothing it tried is left on the host" host_clean "$T/ws-root"
is "... the victim still belongs to root" "$(stat -c %u "$T/ws-root/victim")" 0

# ---- QEMU as the workspace's owner ----
mkdir -p "$T/ws-user"
echo data >"$T/ws-user/victim"
chown -R 4242:4242 "$T/ws-user"
fake_qemu 4242
rc=$(attack_run "$T/ws-user")
diag "$(cat "$T/err")"
is "user workspace: the fake QEMU ran as uid 4242 (125)" "$rc" "rc=125"
like "... it could write the workspace" "$(grep '^control ws-write:' "$T/err")" "DONE"
attacks_blocked "QEMU as uid 4242" passwd outside other-tmp loopback processes ro-mount-write \
    chmod-suid create-suid unshare
is "... nothing reached the loopback service" "$(cat "$T/svc.log" 2>/dev/null)" ""
check "... and nothing it tried is left on the host" host_clean "$T/ws-user"

# ---- an unprivileged invoker (uid 4242): the jail through an unprivileged user namespace
# (setgroups denied, QEMU's uid and gid mapped to themselves; no private share mounts) ----
mkdir -p "$T/ws-nr" "$T/nr-state" "$T/nr-home"
echo data >"$T/ws-nr/victim"
chown -R 4242:4242 "$T/ws-nr" "$T/nr-state" "$T/nr-home"
chmod 0700 "$T/nr-state"
rm -f "$T/svc.log"
(cd "$T/ws-nr" && timeout 120 setpriv --reuid=4242 --regid=4242 --clear-groups env -i \
    PATH=/usr/bin:/bin HOME="$T/nr-home" BOT_BOTTLE_STATE_DIR="$T/nr-state" \
    BOT_BOTTLE_QEMU="$T/fake-qemu" BOT_BOTTLE_KERNEL_CACHE=/var/cache/bot-bottle/kernel \
    "$BB" run --no-limits --upstream-dns "127.0.0.1:$DNS" --mount "$T/ro:/ro:ro" -- true \
    >"$T/out" 2>"$T/run.err")
rc=$?
cat "$T/ws-nr/jail-report" >"$T/err" 2>/dev/null
diag "$(cat "$T/run.err" "$T/err")"
is "unprivileged invoker: the fake QEMU ran (125)" "$rc" 125
like "... and died before connecting (nothing else failed)" "$(cat "$T/run.err")" \
    "QEMU exited before connecting"
unlike "... in its jail (no warning about user namespaces)" "$(cat "$T/run.err")" "user namespaces"
like "... it could write the workspace" "$(grep '^control ws-write:' "$T/err")" "DONE"
attacks_blocked "unprivileged invoker" passwd outside state other-tmp loopback processes caps \
    chmod-suid create-suid unshare proc-sys
is "... nothing reached the loopback service" "$(cat "$T/svc.log" 2>/dev/null)" ""
check "... and nothing it tried is left on the host" host_clean "$T/ws-nr"

# ---- a real VM: QEMU's process from the host, the guest's file operations ----
mkdir -p "$T/ws-vm/sg"
chmod 2775 "$T/ws-vm/sg"
git -C "$T/ws-vm" init -q
(cd "$T/ws-vm" && timeout 120 "$BB" run --upstream-dns "127.0.0.1:$DNS" -- sh -c '
    mkdir sg/sub && echo mkdir-sgid=ok; touch f && chmod 700 f && echo chmod=ok
    chown 0:0 f && echo chown=ok; touch ready; i=0
    while [ ! -e done ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done' \
    >"$T/vm.out" 2>"$T/vm.err") &
VM=$!
_pids+=("$VM")
if wait_exists "$T/ws-vm/ready"; then
    QPID=$(procs 'qemu-system' | head -1 | cut -d' ' -f1)
    st=/proc/$QPID/status
    is "real VM: QEMU has no capabilities" "$(awk '/^CapEff|^CapPrm|^CapBnd/ {print $2}' "$st" | sort -u)" \
        "0000000000000000"
    is "... no_new_privs" "$(awk '/^NoNewPrivs/ {print $2}' "$st")" 1
    is "... our seccomp filter under QEMU's own" "$(awk '/^Seccomp_filters/ {print $2}' "$st")" 2
    is "... it is pid 1 of its own pid namespace" "$(awk '/^NSpid/ {print $3}' "$st")" 1
    is "... its user namespace maps root only to itself" "$(tr -s ' ' <"/proc/$QPID/uid_map")" " 0 0 1"
    for ns in user mnt net ipc uts pid; do
        check "... its own $ns namespace" [ "$(readlink "/proc/$QPID/ns/$ns")" != "$(readlink "/proc/self/ns/$ns")" ]
    done
    is "... its root holds only what QEMU needs" "$(ls /proc/$QPID/root | tr '\n' ' ')" \
        "bin dev etc lib lib32 lib64 proc sbin shares tmp usr var "
    like "... the shares (workspace, CA bundle) at /shares/N, with the protected paths read-only" \
        "$(awk '$5 ~ "^/shares/" {print $5, $6}' /proc/$QPID/mountinfo | tr '\n' ';')" \
        "^/shares/0 rw,.*/shares/0/\.git/hooks ro,"
    is "... /dev: null and urandom (TCG: no kvm)" "$(ls /proc/$QPID/root/dev | tr '\n' ' ')" "null urandom "
    is "... /proc: its own process only" "$(ls /proc/$QPID/root/proc | tr '\n' ' ')" "1 self thread-self "
    is "... /etc: the loader's cache only" "$(ls /proc/$QPID/root/etc | tr '\n' ' ')" "ld.so.cache "
    is "... its network namespace has lo only, down" \
        "$(nsenter -t "$QPID" -n ip -o link | awk '{print $2 $3}')" "lo:<LOOPBACK>"
else
    _result 1 "real VM: the guest started"
fi
touch "$T/ws-vm/done"
wait "$VM"
like "... the guest made a directory in a set-group-ID directory" "$(cat "$T/vm.out")" "mkdir-sgid=ok"
like "... chmod" "$(cat "$T/vm.out")" "chmod=ok"
like "... chown to itself" "$(cat "$T/vm.out")" "chown=ok"
is "... and the new directory is set-group-ID as on the host" "$(stat -c %A "$T/ws-vm/sg/sub")" "drwxr-sr-x"
done_testing

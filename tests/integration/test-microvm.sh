#!/usr/bin/env bash
# `bot-bottle run` with NO backend option: the default backend is the QEMU microVM
# (src/backend/microvm/microvm.c; TCG here, this host's KVM is PVM). The same egress, audit,
# notices and exit statuses as the namespace backend (test-run.sh), shown from inside a VM,
# in a few boots of ~2-5 s each. Fake origin (HTTP and HTTPS) and DNS stub on the host's
# loopback. As root, the workspace belongs to another uid, so QEMU runs as that uid (S10
# rule 1, docs/microvm.md).
source "$(dirname "$0")/lib.sh"

BB_INIT=$BB_BUILD_DIR/src/guest/bottle-init
unset BOT_BOTTLE_BACKEND

# No skip: QEMU and the guest kernel are the default backend's prerequisites
# (scripts/install-deps.sh builds the kernel); the probe says what is missing.
if ! "$BB" run --allow-cidr 127.0.0.1/32 -- true 2>"$T/probe.err" >/dev/null; then
    _result 1 "the default (microvm) backend runs here"
    diag "$(cat "$T/probe.err")"
    done_testing
fi
_result 0 "the default (microvm) backend runs here"
like "TCG on a PVM host is said once" "$(cat "$T/probe.err")" \
    "no usable KVM \(PVM host\): running under TCG emulation"
is "... exactly once" "$(grep -c 'running under TCG' "$T/probe.err")" 1

HTTP=$(free_port); HTTPS=$(free_port); DNS=$(free_port)
make_cert allowed.test
bg "$PY" "$HELPERS/fake-upstream.py" --http "$HTTP" --https "$HTTPS" --cert "$T/cert.pem" \
    --key "$T/key.pem" --dns "$DNS" --log "$T/origin.log" --ready "$T/origin.ready" \
    --zone allowed.test=127.0.0.1 --zone evil.test=127.0.0.1
wait_file "$T/origin.ready" || { echo "Bail out! fake upstream did not start"; exit 1; }

QUID=$(id -u)
chmod 0711 "$T"
mkdir -p "$T/ws/.git" "$T/outside"
echo "[core]" >"$T/ws/.git/config"
echo secret >"$T/outside/file"
cp "$T/cert.pem" "$T/ws/cert.pem"
if [ "$(id -u)" = 0 ]; then
    QUID=4242
    chown -R "$QUID:$QUID" "$T/ws"
fi
export BB_TEST_HOST_SECRET=do-not-leak
STATE=$BOT_BOTTLE_STATE_DIR
run() {
    (cd "$T/ws" && timeout 120 "$BB" run --allow "allowed.test:$HTTPS" \
        --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" "$@")
}

# ---- boot 1: the bottle's world and its egress, then exit 3 ----
cat >"$T/ws/probe.sh" <<EOF
echo "https=\$(curl -s --max-time 20 --cacert cert.pem https://allowed.test:$HTTPS/hello)"
curl -s -i --max-time 20 http://evil.test:$HTTP/hello | tr -d '\r' | sed 's/^/evil: /'
echo "proxy=\$HTTP_PROXY https_proxy=\$HTTPS_PROXY"
getent hosts denied-name.evil.test; echo "denied_dns_rc=\$?"
env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy -u ALL_PROXY python3 - <<'PY'
import socket, time
for addr in [("127.0.0.1", $HTTP), ("203.0.113.9", 443)]:
    t = time.time(); s = socket.socket(); s.settimeout(5)
    try:
        s.connect(addr); r = "connected"
    except OSError:
        r = "failed"
    print("direct %s %s %.2f" % (addr[0], r, time.time() - t))
PY
echo "ifaces=\$(python3 -c 'import socket; print(" ".join(n for _, n in socket.if_nameindex()))')"
echo "secret_env=\$(env | grep -c BB_TEST_HOST_SECRET)"
test -e "$T/outside/file" && echo outside=visible || echo outside=invisible
echo "home=\$(ls -A ~ | tr '\n' ' ')"
echo pwned >>.git/config 2>/dev/null && echo gitconfig=written || echo gitconfig=refused
echo "uid=\$(id -u)"
exit 3
EOF
out=$(run --name bb-mv-1 -- sh probe.sh 2>"$T/err1"); rc=$?
err=$(cat "$T/err1")
diag "$out"
is "boot 1: exit status 3 comes through" "$rc" 3
like "HTTPS to an allowlisted host works (CONNECT through the proxy)" "$out" \
    "https=hello from fake upstream"
like "a non-allowlisted host gets 403 with X-Bottle-Block" "$out" \
    "evil: HTTP/1.1 403.*evil: X-Bottle-Block: not-allowlisted"
like "the blocked-host notice is on stderr" "$err" "blocked evil.test .*--allow evil.test"
is "the origin never saw the blocked request" "$(grep -c 'http GET evil.test' "$T/origin.log")" 0
alias_re='http://127\.77\.[0-9]+\.[0-9]+:3128'
like "HTTP_PROXY and HTTPS_PROXY are http://A:3128" "$out" \
    "proxy=$alias_re https_proxy=$alias_re"
like "a denied DNS name does not resolve" "$out" "denied_dns_rc=2"
is "... and never reached the upstream stub" "$(grep -c 'dns .*denied-name' "$T/origin.log")" 0
is "direct connections fail with the proxy variables unset" "$(grep -c 'direct .* connected' <<<"$out")" 0
is "... within 2 s" "$(awk '$1=="direct" && $3=="failed" && $4 < 2.0' <<<"$out" | wc -l)" 2
is "no interface but lo" "$(sed -n 's/^ifaces=//p' <<<"$out")" "lo"
is "the host's environment is invisible" "$(sed -n 's/^secret_env=//p' <<<"$out")" 0
like "files outside the workspace are invisible" "$out" "outside=invisible"
host_home=$(ls -A ~ 2>/dev/null | head -n 1)
if [ -n "$host_home" ]; then
    unlike "the host's home is invisible (no $host_home)" "$(sed -n 's/^home=//p' <<<"$out")" \
        "(^| )$(printf '%s' "$host_home" | sed 's/[.[\*^$]/\\&/g')( |$)"
else
    is "the host's home is invisible (empty inside)" "$(sed -n 's/^home=//p' <<<"$out")" ""
fi
like "a protected path (.git/config) cannot be written from inside" "$out" "gitconfig=refused"
is "... and is unchanged on the host" "$(cat "$T/ws/.git/config")" "[core]"
audit=$STATE/logs/bb-mv-1.audit.log
like "the audit log has the allowed CONNECT" "$(cat "$audit")" "allowed\.test"
like "... and the blocked request" "$(grep evil.test "$audit")" "not-allowlisted"

# ---- boots 2 and 3: statuses 0 and 127 ----
out=$(run --cpus 1.5 --memory 640M -- sh -c \
    'echo cpus=$(nproc); awk "/^MemTotal/ {print \"memkb=\" \$2}" /proc/meminfo' 2>/dev/null)
is "boot 2: exit status 0 comes through" "$?" 0
is "--cpus 1.5 gives the guest 2 vCPUs (-smp ceil)" "$(sed -n 's/^cpus=//p' <<<"$out")" 2
memkb=$(sed -n 's/^memkb=//p' <<<"$out")
check "--memory 640M: guest RAM fits under the limit with QEMU's overhead (${memkb} kB)" \
    test "${memkb:-0}" -gt 200000 -a "${memkb:-0}" -le $(((640 - 256) * 1024))
run -- /no/such-command >"$T/out3" 2>&1; is "boot 3: command not found is 127" "$?" 127
like "... with bottle-init's message (on the console: stdout)" "$(cat "$T/out3")" \
    "bottle-init: error: /no/such-command: No such file"

# Without QEMU the default backend says what is missing and how to fix it, and never falls
# back to another backend (no boot).
(cd "$T/ws" && PATH=/nonexistent "$BB" run -- true >/dev/null 2>"$T/err"); rc=$?
is "no QEMU: the default backend refuses to run: 125" "$rc" 125
like "... naming QEMU's package and --backend namespace" "$(cat "$T/err")" \
    "microvm backend \(the default\) cannot run here: qemu-system-x86_64 not found.*qemu-system-x86.*--backend namespace"

# -t and -i are refused (no boot), naming the backend that has them.
run -i -- true </dev/null 2>"$T/err"; is "-i is refused on the microvm backend: 125" "$?" 125
like "... naming --backend namespace" "$(cat "$T/err")" "--backend namespace"

# ---- boot 4: SIGTERM to bot-bottle reaches the command through bottle.ctl ("stop") ----
(cd "$T/ws" && timeout 120 "$BB" run --name bb-mv-4 -- sh -c \
    'trap "exit 42" TERM; echo up >ready4; while :; do sleep 0.1; done' >/dev/null 2>"$T/err4") &
SUP=$!
for _ in $(seq 300); do [ -s "$T/ws/ready4" ] && break; sleep 0.1; done
info=$STATE/bottles/bb-mv-4/info.json
is "the default backend is microvm (info.json)" \
    "$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['backend'])" "$info")" microvm
qpid=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['bottle_pid'])" "$info")
like "the bottle's top process is QEMU" "$(tr '\0' ' ' </proc/"$qpid"/cmdline)" "^qemu-system-x86_64|/qemu-system-x86_64 "
is "QEMU runs as the workspace's owner, not root" "$(awk '/^Uid:/ {print $2}' /proc/"$qpid"/status)" "$QUID"
rundir=$(tr '\0' '\n' </proc/"$qpid"/cmdline | sed -n 's,^\(/.*\)/initramfs.cpio$,\1,p')
like "the bottle's run directory holds its initramfs" "$rundir" "/bb-vm\."
kill -TERM "$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$info")"
wait "$SUP"; is "boot 4: SIGTERM reaches the command inside the VM (status 42)" "$?" 42

# ---- boot 5: S7, killing the egress daemon stops the bottle with 125 ----
(cd "$T/ws" && timeout 120 "$BB" run --name bb-mv-5 --allow "allowed.test:$HTTPS" \
    --allow-cidr 127.0.0.1/32 --upstream-dns "127.0.0.1:$DNS" -- sh -c \
    'echo up >ready5; while :; do sleep 0.1; done' >/dev/null 2>"$T/err5") &
SUP=$!
for _ in $(seq 300); do [ -s "$T/ws/ready5" ] && break; sleep 0.1; done
DAEMON=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['daemon_pid'])" "$STATE/bottles/bb-mv-5/info.json")
kill -9 "$DAEMON"
t0=$(date +%s)
wait "$SUP"; rc=$?
is "S7: killing the egress daemon stops the bottle with status 125" "$rc" 125
check "... within 10 s" test $(($(date +%s) - t0)) -le 10
like "... and says why" "$(cat "$T/err5")" "egress daemon .* died"

# ---- boot 6: a command that ignores SIGTERM: QEMU is killed after the grace period ----
(cd "$T/ws" && timeout 120 "$BB" run --name bb-mv-6 -- sh -c \
    'trap "" TERM; echo up >ready6; while :; do sleep 0.1; done' >/dev/null 2>"$T/err6") &
SUP=$!
for _ in $(seq 300); do [ -s "$T/ws/ready6" ] && break; sleep 0.1; done
kill -TERM "$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$STATE/bottles/bb-mv-6/info.json")"
wait "$SUP"; rc=$?
is "boot 6: a command ignoring the stop request is killed (SIGKILL to QEMU): 137" "$rc" 137
like "... after saying so" "$(cat "$T/err6")" "did not stop within 5 s; killing it"

# ---- no leftovers ----
wait_gone 'qemu-system-x86_64'
is "no QEMU process left" "$(procs 'qemu-system-x86_64')" ""
is "no bottle state left" "$(ls "$STATE/bottles" 2>/dev/null | wc -l)" 0
check "the run directory is removed" test -n "$rundir" -a ! -e "$rundir"

done_testing

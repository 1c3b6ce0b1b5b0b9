#!/usr/bin/env bash
# bot-bottle doctor: the --json schema (docs/backends.md) and its values on this machine,
# checked against the machine itself; the exit status follows the selected backend; the
# resolver check asks the local DNS stub only (--upstream-dns), exactly once; every message
# that sends the user to doctor points at something that exists.
source "$(dirname "$0")/lib.sh"

dns_stub
unset BOT_BOTTLE_BACKEND
mkdir -p "$T/ws" "$T/empty"
cd "$T/ws" || exit 1
doc() { setsid -w timeout 60 "$BB" doctor --upstream-dns "127.0.0.1:$DNS" "$@" <&-; }

doc --json >"$T/d.json" 2>"$T/err"
rc=$?
check "doctor --json prints one JSON object" "$PY" -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/d.json"
is "... the stub was asked exactly one question, for a harmless name" "$(cat "$T/dns.log")" "udp example.com A"
is "... nothing on stderr" "$(cat "$T/err")" ""

# the schema: every key, every type
check "the schema (docs/backends.md): keys and types" "$PY" - "$T/d.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert set(d) == {"schema", "backends", "host", "egress", "selected"}, sorted(d)
assert d["schema"] == 1
def findings(l):
    assert isinstance(l, list)
    for f in l:
        assert set(f) == {"name", "ok", "text"}, f
        assert isinstance(f["name"], str) and f["name"] and isinstance(f["ok"], bool)
        assert isinstance(f["text"], str) and f["text"]
assert d["backends"]
for b in d["backends"]:
    assert set(b) == {"name", "summary", "available", "slow", "auto", "shares_host_kernel",
                      "reason", "findings"}, sorted(b)
    for k in ("available", "slow", "auto", "shares_host_kernel"):
        assert isinstance(b[k], bool), k
    assert b["reason"] and b["summary"]
    assert not (b["slow"] and not b["available"])
    findings(b["findings"])
findings(d["host"]); findings(d["egress"])
s = d["selected"]
assert set(s) == {"requested", "source", "backend", "can_run", "slow", "config_ok", "message"}, sorted(s)
assert s["source"] in ("flag", "env", "config", "default")
assert s["backend"] is None or isinstance(s["backend"], str)
PY

# the backends: the same table, in the same order, as run's list of names
known=$("$BB" run --backend nope -- true 2>&1 | sed -n 's/.*(known: \(.*\), auto)$/\1/p')
J() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print($1)" "$T/d.json"; }
is "backends: the table run knows, strongest first" "$(J '", ".join(b["name"] for b in d["backends"])')" "$known"
F() { J "[f for b in d['backends'] if b['name']=='$1' for f in b['findings'] if f['name']=='$2'][0]['$3']"; }

# microvm's findings against the machine
qv=$(qemu-system-x86_64 -version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9.]*\).*/\1/p')
if [ -n "$qv" ]; then
    like "microvm: the QEMU version is the installed one" "$(F microvm qemu text)" "^QEMU $qv at /"
else
    like "microvm: no QEMU here, said with the fix" "$(F microvm qemu text)" "install-deps.sh"
fi
kv=$(sed -n 's/^version=//p' /var/cache/bot-bottle/kernel/kernel.meta 2>/dev/null)
if [ "$(id -u)" = 0 ] && [ -n "$kv" ]; then
    like "microvm: the guest kernel in the cache, and which" "$(F microvm kernel text)" "^guest kernel $kv \(fragment [0-9a-f]+\) at /var/cache/bot-bottle/kernel/vmlinux-"
else
    like "microvm: the kernel finding names the cache" "$(F microvm kernel text)" "kernel"
fi
like "microvm: the per-bottle initramfs and its bottle-init" "$(F microvm initramfs text)" "bottle-init"
if [ -e /sys/module/kvm_pvm ]; then
    is "microvm: a PVM host's KVM is not used (accelerator and why)" "$(F microvm kvm ok):$(F microvm kvm text)" \
        "False:no usable KVM (PVM host): running under TCG emulation"
    is "... so microvm is available but slow" "$(J '[(b["available"], b["slow"]) for b in d["backends"] if b["name"]=="microvm"][0]')" "(True, True)"
else
    like "microvm: the accelerator finding says KVM or why not" "$(F microvm kvm text)" "KVM"
fi
# namespace's
is "microvm does not share the host kernel" "$(J '[b["shares_host_kernel"] for b in d["backends"] if b["name"]=="microvm"][0]')" "False"
is "namespace: shares_host_kernel" "$(J '[b["shares_host_kernel"] for b in d["backends"] if b["name"]=="namespace"][0]')" "True"
is "namespace is available here (root, user namespaces)" "$(J '[b["available"] for b in d["backends"] if b["name"]=="namespace"][0]')" "True"
like "namespace: user namespaces, with the AppArmor restriction's state" "$(F namespace userns text)" \
    "namespaces work.*kernel.apparmor_restrict_unprivileged_userns $(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns 2>/dev/null || echo absent)"
if grep -q '^Seccomp:' /proc/self/status; then
    is "namespace: seccomp is available" "$(F namespace seccomp ok)" "True"
fi
# host
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
    like "host: cgroup v2 and its controllers" "$(J '[f["text"] for f in d["host"] if f["name"]=="cgroup"][0]')" \
        "^cgroup v2 at /sys/fs/cgroup, controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
else
    like "host: cgroup v1 and its hierarchies" "$(J '[f["text"] for f in d["host"] if f["name"]=="cgroup"][0]')" \
        "^cgroup v1 at /sys/fs/cgroup, hierarchies:"
fi
like "host: docker CLI and engine socket" "$(J '[f["text"] for f in d["host"] if f["name"]=="docker"][0]')" \
    "^docker CLI ($(command -v docker || echo 'not found in PATH')); engine socket /var/run/docker.sock: "
if command -v smolvm >/dev/null; then
    like "host: smolvm's version" "$(J '[f["text"] for f in d["host"] if f["name"]=="smolvm"][0]')" " at /"
else
    is "host: smolvm not installed" "$(J '[f["text"] for f in d["host"] if f["name"]=="smolvm"][0]')" "smolvm not found in PATH"
fi
# egress
is "egress: the resolver answered" "$(J '[f["text"] for f in d["egress"] if f["name"]=="resolver"][0]' | sed 's/in [0-9]* ms/in N ms/')" \
    "127.0.0.1:$DNS (--upstream-dns) answers: example.com NOERROR in N ms"
is "egress: 127.77/16 aliases bindable" "$(J '[f["ok"] for f in d["egress"] if f["name"]=="aliases"][0]')" "True"
is "egress: the state directory (not created by doctor)" "$(J '[f["text"] for f in d["egress"] if f["name"]=="state_dir"][0]'):$(test -e "$BOT_BOTTLE_STATE_DIR" && echo made)" \
    "$BOT_BOTTLE_STATE_DIR can be created:"
# selected: run's choice
mv_ok=$(J '[b["available"] for b in d["backends"] if b["name"]=="microvm"][0]')
is "selected: the default, microvm" "$(J 'd["selected"]["requested"], d["selected"]["source"], d["selected"]["backend"]')" \
    "microvm default microvm"
is "... can_run is microvm's availability, and the exit status follows it" "$(J 'd["selected"]["can_run"]'):$rc" \
    "$mv_ok:$([ "$mv_ok" = True ] && echo 0 || echo 1)"

# the exit status and the source follow the selection
BOT_BOTTLE_QEMU=/nonexistent/qemu doc --json >"$T/d.json"
is "microvm without QEMU: doctor exits 1" "$?" "1"
like "... selected says why and how to pick another" "$(J 'd["selected"]["can_run"], d["selected"]["message"]')" \
    "^False the microvm backend \(the default\) cannot run here: QEMU /nonexistent/qemu: No such file or directory.*--backend namespace"
BOT_BOTTLE_QEMU=/nonexistent/qemu doc --json --backend namespace >"$T/d.json"
is "... --backend namespace: exit 0, from the flag" "$?:$(J 'd["selected"]["source"], d["selected"]["backend"]')" "0:flag namespace"
BOT_BOTTLE_BACKEND=namespace doc --json >"$T/d.json"
is "BOT_BOTTLE_BACKEND: from env" "$(J 'd["selected"]["source"], d["selected"]["backend"]')" "env namespace"
mkdir -p "$T/config/bot-bottle"
printf '[bottle]\nbackend = auto\n' >"$T/config/bot-bottle/config.ini"
doc --json >"$T/d.json"
is "[bottle] backend = auto: from config, auto's choice" "$(J 'd["selected"]["requested"], d["selected"]["source"], d["selected"]["backend"] is not None')" \
    "auto config True"
like "... with auto's reason" "$(J 'd["selected"]["message"]')" "^backend auto \(from \[bottle\] backend in the config\) chose "
rm "$T/config/bot-bottle/config.ini"

# the egress checks failing
P2=$(free_port)
doc --json --upstream-dns "127.0.0.1:$P2" >"$T/d.json"
like "a resolver that does not answer is said, with the option" "$(J '[(f["ok"], f["text"]) for f in d["egress"] if f["name"]=="resolver"][0]')" \
    "^\(False, '127.0.0.1:$P2 \(--upstream-dns\) did not answer a query for example.com \(.*\); check it, or give another with --upstream-dns ADDR\[:PORT\]'\)"
: >"$T/resolv.conf"
BOT_BOTTLE_RESOLV_CONF=$T/resolv.conf setsid -w timeout 60 "$BB" doctor --json <&- >"$T/d.json"
like "no nameserver in resolv.conf: said without sending anything" "$(J '[(f["ok"], f["text"]) for f in d["egress"] if f["name"]=="resolver"][0]')" \
    "^\(False, 'no nameserver in $T/resolv.conf: allowlisted names cannot be resolved; give a resolver with --upstream-dns"
if [ "$(id -u)" = 0 ]; then
    chmod a+rx "$T" "$T/ws"
    (cd / && setsid -w timeout 60 setpriv --reuid=65534 --regid=65534 --clear-groups env BOT_BOTTLE_STATE_DIR=/root/bb-state \
        "$BB" doctor --json --upstream-dns "127.0.0.1:$DNS" <&- >"$T/d.json")
    like "a state directory that cannot be written is said, with the fix" "$(J '[(f["ok"], f["text"]) for f in d["egress"] if f["name"]=="state_dir"][0]')" \
        "^\(False, '/root/bb-state is not writable \(at /root\): set BOT_BOTTLE_STATE_DIR or XDG_RUNTIME_DIR"
fi

# human output
doc >"$T/out" 2>&1
like "human output: backends, findings, host, egress, and the selection" "$(cat "$T/out")" \
    "^Backends \(strongest isolation first, the order auto tries\):
  microvm .*
      ok   qemu .*
Host:
  ok   cgroup .*
Egress:
  ok   resolver .*
Selected: microvm
  backend microvm \(the default\): "
"$BB" doctor --json stray >/dev/null 2>"$T/err"
is "doctor takes no arguments: 125" "$?:$(cat "$T/err")" "125:bot-bottle: error: doctor takes no arguments ('stray'); see bot-bottle doctor --help"
check "bot-bottle doctor --help" bash -c "'$BB' doctor --help | grep -q 'Usage: bot-bottle doctor'"
check "bot-bottle help backends" bash -c "'$BB' help backends | grep -q doctor"

# every message that sends the user to doctor names a command that exists (this binary's)
msgs=$(grep -rhoE "bot-bottle doctor[^\"']*" "$BB_SOURCE_DIR/src" | sort -u)
like "the sources do point at doctor" "$msgs" "bot-bottle doctor"
while read -r m; do
    [ -n "$m" ] || continue
    opts=$(grep -oE -- '--[a-z-]+' <<<"$m" | grep -v -- '--help' || true)
    for o in $opts; do
        check "'$m': doctor has $o" bash -c "'$BB' doctor --help | grep -q -- '$o'"
    done
done <<<"$msgs"
check "'bot-bottle doctor' runs" bash -c "'$BB' doctor --upstream-dns 127.0.0.1:$DNS >/dev/null; [ \$? -le 1 ]"
# In a chroot (a plain directory as /), the kernel refuses new user namespaces: microvm (QEMU's
# jail) and namespace are not available, and doctor and run say why and the way out, instead
# of a bare "clone3: Operation not permitted" at start.
R=$T/chroot
mkdir -p "$R"/{usr,etc,proc,sys,dev,tmp,var/cache/bot-bottle,run} "$R$T" "$R$BB_SOURCE_DIR" "$R$BB_BUILD_DIR"
for l in bin sbin lib lib64; do [ -L "/$l" ] && ln -s "$(readlink "/$l")" "$R/$l"; done
in_chroot() {
    setsid -w timeout 120 unshare -m --propagation private bash -c '
        R=$1; shift
        for d in /usr /etc /proc /sys /dev "$T" "$BB_SOURCE_DIR" "$BB_BUILD_DIR"; do
            mount --rbind "$d" "$R$d" || exit 99
        done
        [ -d /var/cache/bot-bottle ] && mount --bind /var/cache/bot-bottle "$R/var/cache/bot-bottle"
        exec chroot "$R" "$@"' _ "$R" "$@" <&-
}
export T BB_BUILD_DIR BB_SOURCE_DIR
in_chroot "$BB" doctor --upstream-dns "127.0.0.1:$DNS" >"$T/chroot-doctor" 2>&1
like "in a chroot, doctor: microvm is not available, saying it is a chroot" "$(grep -A2 '^  microvm' "$T/chroot-doctor")" "NOT available.*QEMU's jail .* failed \(clone3: Operation not permitted\): this process runs in a chroot"
like "... namespace too" "$(grep -A2 '^  namespace' "$T/chroot-doctor")" "runs in a chroot, where the kernel refuses new user namespaces"
in_chroot "$BB" run -w "$T/ws" -- true >"$T/chroot-run" 2>&1
is "... run exits 125" "$?" 125
like "... and says why and what to do" "$(cat "$T/chroot-run")" "runs in a chroot.*run bot-bottle outside the chroot"
unlike "... not a bare clone3 error" "$(cat "$T/chroot-run")" "starting QEMU \(clone3\)"
done_testing

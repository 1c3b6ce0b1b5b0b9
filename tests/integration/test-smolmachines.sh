#!/usr/bin/env bash
# The smolmachines backend (docs/backends.md "smolmachines"): smolvm needs KVM and is not
# installed on the test machines, so a fake `smolvm` (helpers/fake-smolvm) on PATH records the
# command line and runs the bottle's command on the host. Checked: the exact command (the
# allowlist pinned to exactly the bottle's alias as a /32, DNS and HTTP(S)_PROXY at that alias,
# the workspace mounted, no broader network flag), that the supervisor's egress daemon
# answers on that alias while the bottle runs (a 403 through the proxy from the "guest"
# command), the exit status passed back, and exit 125 with the reason and a fix when smolvm or
# KVM is missing. Not exercised: a real smolvm (its allowlist enforcement, TSI reaching the
# host's 127.77.x.y, the image, the mounts).
source "$(dirname "$0")/lib.sh"
need_root "smolmachines tests" "the backend puts smolvm in a cgroup for the limits (root or a delegated cgroup)"

mkdir -p "$T/bin" "$T/empty" "$T/ws"
ln -s "$HELPERS/fake-smolvm" "$T/bin/smolvm"
export PATH="$T/bin:/usr/bin:/bin"
export FAKE_SMOLVM_LOG="$T/smolvm.log"
dns_stub
run() {
    (cd "$T/ws" && /usr/bin/timeout 60 "$BB" run --backend smolmachines --upstream-dns "127.0.0.1:$DNS" "$@")
}

# --- a run. The "guest" command asks the proxy at the alias the allowlist names for a host
# that is not allowlisted: the daemon's 403 shows it listens on exactly that address.
: >"$FAKE_SMOLVM_LOG"
out=$(run --name sm1 -a example.com -e SECRET_TOKEN=x -- sh -c '
    a=$(grep -o "allow-cidr [0-9.]*/32" "$FAKE_SMOLVM_LOG" | tail -1 | cut -d" " -f2)
    curl -s -o /dev/null -w "%{http_code}\n" --max-time 10 -x "http://${a%/32}:3128" http://not-allowed.invalid/
    dig +time=3 +tries=1 "@${a%/32}" not-allowed.invalid A | grep -o "status: [A-Z]*"
    exit 5' 2>"$T/err")
rc=$?
is "the command's exit status comes back" "$rc" 5
is "the egress daemon answers on the allowlisted alias: proxy 403, DNS filter NXDOMAIN on port 53 (what --dns names)" "$out" $'403\nstatus: NXDOMAIN'
is "... and the denied name never reached the upstream resolver" "$(grep -c not-allowed "$T/dns.log" 2>/dev/null)" 0
cmd=$(grep '^smolvm machine run --image ' "$FAKE_SMOLVM_LOG" | head -1)
alias=$(grep -oE -- '--allow-cidr 127\.77\.[0-9]+\.[0-9]+/32' <<<"$cmd" | cut -d' ' -f2)
alias=${alias%/32}
like "an ephemeral smolvm machine runs the bottle, on the virtio-net gateway (which enforces the allowlist)" "$cmd" "^smolvm machine run --image [^ ]+ --net-backend virtio-net "
like "the allowlist is the bottle's alias, a /32 in 127.77/16" "$alias" "^127\\.77\\.[0-9]+\\.[0-9]+"
is "... and nothing else is allowed (one --allow-cidr, no --allow-host, no bare --net)" \
    "$(grep -oE -- ' --(allow-cidr|allow-host|net|outbound-localhost-only|egress-proxy)( |$)' <<<"$cmd" | tr -d ' ' | tr '\n' ' ')" "--allow-cidr "
like "the guest's resolver is the DNS filter at the alias" "$cmd" " --dns $alias "
for v in HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY; do
    like "$v in the guest points at the alias" "$cmd" " -e $v=http://$alias:3128 "
done
like "NO_PROXY and BOT_BOTTLE_NAME are set" "$cmd" " -e NO_PROXY=localhost\\\\,127.0.0.1 .*-e BOT_BOTTLE_NAME=sm1 "
like "the workspace is mounted at the same path and is the working directory" "$cmd" " -v $T/ws:$T/ws .*-w $T/ws "
like "protected workspace directories are mounted read-only" "$cmd" " -v $T/ws/.git:$T/ws/.git:ro "
like "the command follows --" "$cmd" " -- sh -c "
like "the limits reach the VM (vCPUs, memory)" "$cmd" " --cpus 1 --mem [0-9]+ "
like "the audit log has the daemon's decision" "$(cat "$T/state/logs/sm1.audit.log")" '"host":"not-allowed.invalid".*"decision":"deny"'

# --- nothing smolvm started outlives the bottle (a VM left running would keep the alias
# reachable for the next bottle given it): a process it detached is killed with its cgroup
run --name sm2 -- sh -c 'setsid sleep 4242 </dev/null >/dev/null 2>&1 & exit 0' >/dev/null 2>"$T/err2"
is "a bottle whose smolvm left a detached process exits with the command's status" "$?" 0
for _ in $(seq 40); do [ -z "$(procs 'sleep 4242')" ] && break; sleep 0.05; done
is "... and that process is gone (killed with the bottle's cgroup)" "$(procs 'sleep 4242')" ""
unlike "... the cgroup was removed (no warning)" "$(cat "$T/err2")" "cannot remove the cgroup"
run --name sm3 --no-limits -- sh -c 'setsid sleep 4343 </dev/null >/dev/null 2>&1 & exit 0' >/dev/null 2>"$T/err3"
for _ in $(seq 40); do [ -z "$(procs 'sleep 4343')" ] && break; sleep 0.05; done
is "... also with --no-limits (a cgroup only to find them)" "$(procs 'sleep 4343')" ""

# --- unavailable: exit 125 before anything runs, with the reason and the fix
: >"$FAKE_SMOLVM_LOG"
err=$(PATH="$T/empty" run -- true 2>&1)
is "no smolvm: exit 125" "$?" 125
like "... says so, with the fix" "$err" "the smolmachines backend \\(from --backend\\) cannot run here: the smolvm CLI is not on PATH: install smolvm \\(https://github.com/smol-machines/smolvm\\); or pick another: --backend auto or --backend microvm or --backend namespace or --backend docker"
err=$(BOT_BOTTLE_KVM_DEVICE="$T/no-kvm" run -- true 2>&1)
is "no KVM: exit 125" "$?" 125
like "... says smolvm needs KVM, with the fix" "$err" "smolvm 1\\.6\\.11 is installed but smolvm needs KVM and $T/no-kvm cannot be opened .*--backend microvm --accel tcg"
err=$(FAKE_SMOLVM_OLD=1 run -- true 2>&1)
is "an smolvm without --allow-cidr/--net-backend: exit 125" "$?" 125
like "... names the missing flag and says to upgrade" "$err" "smolvm 1\\.6\\.11's 'machine run' has no --allow-cidr .*upgrade smolvm"
unlike "... and no machine was started in any of these" "$(cat "$FAKE_SMOLVM_LOG")" "machine run [^-]|machine run --image"

# --- a path smolvm's -v HOST:GUEST syntax cannot carry is refused
mkdir -p "$T/ws:x"
: >"$FAKE_SMOLVM_LOG"
err=$(cd "$T/ws:x" && /usr/bin/timeout 60 "$BB" run --backend smolmachines -- true 2>&1)
is "a workspace path with ':': exit 125" "$?" 125
like "... saying why" "$err" "the path $T/ws:x contains a ':' or a newline, which smolvm's -v HOST:GUEST syntax cannot carry"
unlike "... and no machine was started" "$(cat "$FAKE_SMOLVM_LOG")" "machine run --image"

# --- a protected file cannot be mounted read-only by smolvm (directories only): refused
mkdir -p "$T/ws/.git"
echo "[core]" >"$T/ws/.git/config"
err=$(run -- true 2>&1)
is "a workspace with a protected file: exit 125" "$?" 125
like "... says why and what to do" "$err" "$T/ws/.git/config must be read-only .*smolvm mounts directories only.*--allow-write \\.git/config"
done_testing

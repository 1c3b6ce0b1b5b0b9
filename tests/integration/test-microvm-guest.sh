#!/usr/bin/env bash
# bottle-init's guest mode, end to end inside a microVM: the vm-launch helper
# (tests/integration/helpers/vm-launch.c), through the microvm backend's ops (the code
# `bot-bottle run` uses), writes the spec and a per-run initramfs around the
# static bottle-init, boots the cached guest kernel under QEMU (TCG here: this host's KVM is
# PVM), serves bottle.ctl and bottle.chan, and exits with the status the guest reported.
# No supervisor, no egress daemon: in the first boot vm-launch runs the host relay on
# bottle.chan towards a local fake (HTTP origin and DNS, loopback only). Four boots, each a few
# seconds under TCG.
# Env: BB_BUILD_DIR (or VM_LAUNCH and BOTTLE_INIT). TAP output.
. "$(dirname "$0")/lib.sh"

VM_LAUNCH=${VM_LAUNCH:-$BB_BUILD_DIR/src/backend/vm-launch}
BOTTLE_INIT=${BOTTLE_INIT:-$BB_BUILD_DIR/src/guest/bottle-init}
ALIAS=127.77.0.9
BOTTLE_UID=4242 # no passwd entry on the host: the guest calls it "user"

check "vm-launch and bottle-init are built" test -x "$VM_LAUNCH" -a -x "$BOTTLE_INIT"
# No skip: QEMU and the kernel are prerequisites of the default backend. This test builds
# nothing itself (a kernel build takes minutes); it says what is missing and fails.
if ! probe=$("$VM_LAUNCH" --probe 2>&1); then
    _result 1 "a microVM can boot here"
    diag "$probe"
    diag "build the guest kernel into the cache with scripts/build-guest-kernel.sh" \
        "(QEMU: scripts/install-deps.sh)"
    # ---- no boot: a --mount source through a symlink never reaches QEMU ----
ln -s "$T/extra" "$T/extra-link"
boot --mount "$T/extra-link:/extra:ro" -- true
is "a symlinked --mount source is refused on the host" "$RC" 125
like "... naming it" "$ERR" 'extra-link is or passes through a symbolic link'

# ---- boot 4: the host end of the channel goes away: fail closed ----
boot --close-chan -- /bin/sh -c 'sleep 100; echo survived'
is "boot 4: without its channel the command is stopped (SIGTERM)" "$RC" 143
like "... and bottle-init says why" "$OUT" 'the channel to the host died; stopping the bottle'
unlike "... before the command finished" "$OUT" survived

done_testing
fi
_result 0 "a microVM can boot here ($probe)"

# QEMU runs as the workspace's owner (S10 rule 1), who must reach the workspace through $T.
chmod 0711 "$T"
WS=$T/ws
mkdir -p "$WS"
if [ "$(id -u)" = 0 ]; then
    chown "$BOTTLE_UID:$BOTTLE_UID" "$WS"
else # QEMU and the bottle run as we do
    BOTTLE_UID=$(id -u)
fi
mkdir -p "$T/extra"
echo extra-content >"$T/extra/file"
# The far end of the channel: a fake HTTP origin and DNS server on loopback (no egress daemon).
UP_HTTP=$(free_port)
UP_DNS=$(free_port)
bg python3 "$HELPERS/fake-upstream.py" --http "$UP_HTTP" --dns "$UP_DNS" \
    --zone guest-check.test=127.0.0.1 --log "$T/upstream.log" --ready "$T/upstream.ready"
wait_file "$T/upstream.ready" || diag "fake upstream did not start"

# boot [vm-launch options] -- CMD...: console in $OUT, vm-launch's stderr in $ERR, status in $RC
boot() {
    OUT=$(cd "$WS" && "$VM_LAUNCH" --init "$BOTTLE_INIT" -w "$WS" --alias "$ALIAS" \
        --timeout 150 "$@" 2>"$T/err")
    RC=$?
    ERR=$(cat "$T/err")
}
val() { sed -n "s/^$1=//p" <<<"$OUT" | head -n 1; }

# ---- boot 1: everything about the command's world, then exit 3 ----
cat >"$T/probe.sh" <<EOF
echo "uid=\$(id -u):\$(id -g)"
echo "caps=\$(grep -E '^Cap(Prm|Eff|Bnd|Amb|Inh)' /proc/self/status | awk '{print \$2}' | sort -u | tr '\n' ' ')"
echo "nnp=\$(awk '/^NoNewPrivs/ {print \$2}' /proc/self/status)"
echo "seccomp=\$(awk '/^Seccomp:/ {print \$2}' /proc/self/status)"
echo "pwd=\$(pwd)"
echo from-the-guest >"$WS/written" && echo ws_write=ok
touch /usr/bb-probe 2>/dev/null && echo usr_write=allowed || echo usr_write=refused
echo "usr_mount=\$(awk '\$2 == "/usr" {print \$3 " " \$4}' /proc/mounts)"
echo "extra=\$(cat /extra/file)"
touch /extra/new 2>/dev/null && echo extra_write=allowed || echo extra_write=refused
echo "extra_mount=\$(awk '\$2 == "/extra" {print \$1 " " \$3 " " \$4}' /proc/mounts)"
echo "ws_mount=\$(awk -v ws="$WS" '\$2 == ws {print \$3 " " \$4}' /proc/mounts)"
echo "links=\$(ip -o link | awk -F': ' '{print \$2}' | tr '\n' ' ')"
echo "netdev=\$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')"
echo "lo_addrs=\$(ip -o -4 addr show dev lo | awk '{print \$4}' | tr '\n' ' ')"
node --version >/dev/null && node -e 'require("crypto").randomBytes(4)' && echo node=ok
python3 -c 'import ssl,socket,sqlite3' && echo python=ok
git --version >/dev/null && echo git=ok
echo "git_checkstat=\$(git -C repo config core.checkStat)"
echo "git_clean=\$(git -C repo status --porcelain | wc -l)"
echo abcd >repo/f && echo "git_modified=\$(git -C repo status --porcelain)"
curl --version >/dev/null && echo curl=ok
awk 'BEGIN { exit 0 }' && echo alternatives=ok
test -s /etc/ssl/certs/ca-certificates.crt && echo ca_bundle=ok
touch suid-file
chmod 4755 suid-file 2>/dev/null && echo chmod_suid=allowed || echo chmod_suid=refused
chmod 2755 suid-file 2>/dev/null && echo chmod_sgid=allowed || echo chmod_sgid=refused
python3 -c 'import os; os.open("suid-new", os.O_CREAT | os.O_WRONLY, 0o6755)' 2>/dev/null \
    && echo open_suid=allowed || echo open_suid=refused
python3 -c 'import os; os.mkdir("sgid-dir", 0o2755)' 2>/dev/null \
    && echo mkdir_sgid=allowed || echo mkdir_sgid=refused
# the guest's clock: the TSC, not jiffies (4 ms steps when the clocksource watchdog took it)
python3 -c 'import time
step, a = 10**9, time.monotonic_ns()
for _ in range(20000):
    b = time.monotonic_ns()
    if b != a:
        step, a = min(step, b - a), b
print("clock_step=fine" if step < 1000000 else "clock_step=coarse %d ns" % step)'
echo "cmdline_bytes=\$(wc -c </proc/cmdline)"
echo "stdin=\$(readlink /proc/self/fd/0)"
# A:3128 and A:53 are the guest relay's; over bottle.chan they reach the host relay, which
# connects them to the fake (as --proxy and --dns).
echo "http=\$(curl -sS --max-time 20 --noproxy '*' http://$ALIAS:3128/hello 2>&1)"
echo "dns=\$(python3 -c 'import socket; print(socket.gethostbyname("guest-check.test"))' 2>&1)"
exit 3
EOF
cp "$T/probe.sh" "$WS/probe.sh"
# a repository made on the host: its index holds the host's inode numbers
mkdir -p "$WS/repo" && echo wxyz >"$WS/repo/f" && git -C "$WS/repo" init -q &&
    git -C "$WS/repo" add f && git -C "$WS/repo" -c user.name=t -c user.email=t@t commit -qm one &&
    touch -d '2 minutes ago' "$WS/repo/f" && git -C "$WS/repo" update-index --refresh >/dev/null &&
    chown -R --reference="$WS" "$WS/repo"
boot --chan-stats --proxy "127.0.0.1:$UP_HTTP" --dns "127.0.0.1:$UP_DNS" \
    --mount "$T/extra:/extra:ro" -- /bin/bash probe.sh
is "boot 1: the command's status comes through" "$RC" 3
is "runs as the spec's uid/gid" "$(val uid)" "$BOTTLE_UID:$(stat -c %g "$WS")"
is "no capabilities in any set" "$(val caps)" "0000000000000000 "
is "no_new_privs" "$(val nnp)" 1
is "seccomp filter loaded" "$(val seccomp)" 2
is "cwd is the workspace, at its host path" "$(val pwd)" "$WS"
is "the workspace is writable" "$(val ws_write)" ok
is "the guest's write reached the host" "$(cat "$WS/written" 2>&1)" from-the-guest
is "the host file belongs to the bottle's uid (QEMU unprivileged)" \
    "$(stat -c %u "$WS/written" 2>&1)" "$BOTTLE_UID"
is "/usr is read-only" "$(val usr_write)" refused
like "/usr is 9p, ro, nosuid, nodev, cache=loose" "$(val usr_mount)" '^9p ro,.*nosuid,nodev.*,loose,'
like "the workspace is 9p, rw, nosuid, nodev, cache=mmap" "$(val ws_mount)" '^9p rw,.*nosuid,nodev.*,mmap,'
is "--mount SRC:DST:ro is readable" "$(val extra)" extra-content
is "... and read-only" "$(val extra_write)" refused
like "... as 9p share m0, nosuid, nodev" "$(val extra_mount)" '^m0 9p ro,.*nosuid,nodev'
is "ip link: only lo" "$(val links)" "lo "
is "/proc/net/dev: only lo" "$(val netdev)" "lo "
is "lo carries 127.0.0.1 and the alias" "$(val lo_addrs)" "127.0.0.1/8 $ALIAS/32 "
is "node from /usr runs" "$(val node)" ok
is "python3 imports ssl, socket, sqlite3" "$(val python)" ok
is "the guest's clock steps by less than 1 ms (TSC, not jiffies)" "$(val clock_step)" fine
is "git runs" "$(val git)" ok
is "git compares mtime and size only over 9p (/etc/gitconfig: inode numbers differ)" \
    "$(val git_checkstat)" minimal
is "... so a repository whose index the host wrote is clean in the guest" "$(val git_clean)" 0
is "... and a change of the same size is still seen" "$(val git_modified)" " M f"
is "curl runs" "$(val curl)" ok
is "/etc/alternatives (awk) came through the initramfs" "$(val alternatives)" ok
is "the CA bundle came through the initramfs" "$(val ca_bundle)" ok
is "chmod 4755 in the workspace is refused" "$(val chmod_suid)" refused
is "chmod 2755 in the workspace is refused" "$(val chmod_sgid)" refused
is "open(O_CREAT, 06755) is refused" "$(val open_suid)" refused
is "mkdir(02755) is refused" "$(val mkdir_sgid)" refused
is "the host sees no setuid/setgid file in the workspace" "$(find "$WS" -perm /6000)" ""
is "/proc/cmdline shows nothing" "$(val cmdline_bytes)" 0
is "stdin is /dev/null" "$(val stdin)" /dev/null
is "HTTP to A:3128 crosses bottle.chan to the host relay and back" "$(val http)" \
    "hello from fake upstream"
is "DNS to A:53 (resolv.conf) crosses bottle.chan and back" "$(val dns)" 127.0.0.1
like "the fake saw both" "$(cat "$T/upstream.log" 2>&1)" "http GET $ALIAS:3128 /hello.*dns guest-check.test"
like "QEMU connected bottle.chan and vm-launch relayed it" "$ERR" 'channel: connected, relayed'
unlike "nothing of the host's paths on the console but the workspace" \
    "$(grep -v "$WS" <<<"$OUT")" "$T|/var/cache/bot-bottle"
[ "$RC" = 3 ] || diag "console: $OUT" "stderr: $ERR"

# ---- boot 2: success ----
boot -- true
is "boot 2: true exits 0" "$RC" 0
[ "$RC" = 0 ] || diag "console: $OUT" "stderr: $ERR"

# ---- boot 3: a missing command ----
boot -- bb-no-such-command
is "boot 3: a missing command exits 127" "$RC" 127
like "and says so on the console" "$OUT" 'bb-no-such-command: command not found'

# ---- no boot: a --mount source through a symlink never reaches QEMU ----
ln -s "$T/extra" "$T/extra-link"
boot --mount "$T/extra-link:/extra:ro" -- true
is "a symlinked --mount source is refused on the host" "$RC" 125
like "... naming it" "$ERR" 'extra-link is or passes through a symbolic link'

# ---- boot 4: the host end of the channel goes away: fail closed ----
boot --close-chan -- /bin/sh -c 'sleep 100; echo survived'
is "boot 4: without its channel the command is stopped (SIGTERM)" "$RC" 143
like "... and bottle-init says why" "$OUT" 'the channel to the host died; stopping the bottle'
unlike "... before the command finished" "$OUT" survived

done_testing

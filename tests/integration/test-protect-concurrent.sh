#!/usr/bin/env bash
# Two bottles started at the same time on one workspace that has no .git (docs/workspace.md,
# "Paths that do not exist yet"), on the namespace and the microVM backends. As root, the
# workspace belongs to another uid, so QEMU runs as that uid and cannot search a root-owned
# 0700 placeholder. Both bottles must start (they share the placeholders made by whichever
# planned first, instead of one failing on the other's: EACCES in QEMU's jail or in the
# guest, EEXIST between the two supervisors), neither may write .git/config or create
# .git/hooks or .vscode, and the last one out removes every placeholder (two bottles leaving
# at the same time must not each keep them for the other).
source "$(dirname "$0")/lib.sh"

need_bottles "two bottles at once on one workspace"
dns_stub
unset BOT_BOTTLE_BACKEND

WS=$T/ws
mkdir -p "$WS/sync"
chmod 0711 "$T"
chmod 0777 "$WS/sync"
if [ "$(id -u)" = 0 ]; then
    chown 4242:4242 "$WS"
fi
printf '[microvm]\nsnapshot = off\n' >"$T/off.ini"

# The command: says it is up, waits (bounded) for the other bottle, then tries to write what
# the host trusts. Both bottles are then surely up at once.
cat >"$WS/sync/try.sh" <<'EOF'
me=$1 other=$2
touch "sync/$me-up"
i=0
while [ ! -e "sync/$other-up" ] && [ ! -e sync/give-up ] && [ "$i" -lt 2400 ]; do
    sleep 0.1; i=$((i + 1))
done
[ -e "sync/$other-up" ] && echo "$me: both up"
try() { desc=$1; shift; if "$@" 2>/dev/null; then echo "$me: WROTE $desc"; fi; }
try ".git/config" sh -c 'printf "[core]\n\tfsmonitor = /bin/true\n" >>.git/config'
try ".git/hooks" sh -c 'mkdir -p .git/hooks && echo x >.git/hooks/post-checkout'
try ".git (git init)" sh -c 'git init -q . >/dev/null 2>&1 && test -s .git/HEAD'
try ".vscode" mkdir -p .vscode/x
try "bottle.ini" sh -c 'echo x >bottle.ini'
try "rmdir .git" rmdir .git
echo "$me: done"
EOF
chmod 0644 "$WS/sync/try.sh"

# two_at_once ROUND BACKEND...: starts bottles c1 and c2 together, checks both.
two_at_once() {
    local round=$1
    shift
    rm -f "$WS"/sync/*-up "$WS/sync/give-up"
    (cd "$WS" && timeout 400 "$BB" run --name c1 -c "$T/off.ini" --upstream-dns "127.0.0.1:$DNS" \
        "$@" -- sh sync/try.sh c1 c2 >"$T/c1.out" 2>"$T/c1.err"; echo $? >"$T/c1.rc"; touch sync/give-up) &
    local p1=$!
    (cd "$WS" && timeout 400 "$BB" run --name c2 -c "$T/off.ini" --upstream-dns "127.0.0.1:$DNS" \
        "$@" -- sh sync/try.sh c2 c1 >"$T/c2.out" 2>"$T/c2.err"; echo $? >"$T/c2.rc"; touch sync/give-up) &
    local p2=$!
    wait "$p1" "$p2"
    for c in c1 c2; do
        is "$round: bottle $c started and exited 0" "$(cat "$T/$c.rc")" 0
        [ "$(cat "$T/$c.rc")" = 0 ] || diag "$(head -c 2000 "$T/$c.err")"
        like "$round: ... $c ran beside the other one" "$(cat "$T/$c.out")" "$c: both up"
        unlike "$round: ... $c wrote nothing the host trusts" "$(cat "$T/$c.out")" "WROTE"
        like "$round: ... and its attempts ran" "$(cat "$T/$c.out")" "$c: done"
    done
    check "$round: the host has no .git (nor a hook, nor .vscode/x)" \
        test ! -e "$WS/.git" -a ! -e "$WS/.vscode/x"
    is "$round: the last one out removed every placeholder" "$(ls -A "$WS" | tr '\n' ' ')" "sync "
    [ -e "$WS/.git" ] && diag "$(ls -laR "$WS/.git" | head -30)"
    rm -rf "$WS/.git" "$WS/.vscode" "$WS/.idea" "$WS/.claude" "$WS/.mcp.json" "$WS/.envrc" \
        "$WS/bottle.ini" "$WS/.devcontainer" "$WS/.cursor" "$WS/.gemini" "$WS/.zed"
}

for i in 1 2 3; do
    two_at_once "namespace $i" --backend namespace
done
two_at_once "microvm" --allow-cidr 127.0.0.1/32

done_testing

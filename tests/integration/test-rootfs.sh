#!/usr/bin/env bash
# The bottle's file system seen from inside a real `bot-bottle run --backend namespace`:
# masked /proc (what runc masks), --mount sources that an earlier bottle swapped for a
# symlink, and the workspace paths the host runs later (.git/config, .git/hooks, editor and
# agent config) that must stay read-only (DESIGN.md S10, S11; docs/workspace.md).
source "$(dirname "$0")/lib.sh"

need_bottles "rootfs tests"

dns_stub

WS=$T/ws
mkdir -p "$WS"
# run [run options] -- CMD...: in $WS (no network needed; the stub is the only upstream)
run() {
    (cd "$WS" && timeout 60 "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" "$@")
}

# ---------------------------------------------------------------- /proc and /sys (item 13)
host_cmdline=$(head -c 4096 /proc/cmdline)
out=$(run -- sh -c 'wc -c </proc/cmdline; cat /proc/cmdline')
is "/proc/cmdline reads empty inside (the host's is ${#host_cmdline} bytes)" "$out" "0"
[ -n "$host_cmdline" ] || diag "the host's /proc/cmdline is empty: the test above proves little"

# every masked file the host has reads empty (or is absent), whoever reads it
for f in kcore keys timer_list timer_stats sched_debug latency_stats kmsg vmallocinfo; do
    if [ -e "/proc/$f" ]; then
        out=$(run -- sh -c "test -e /proc/$f || echo absent; head -c 64 /proc/$f | wc -c")
        is "/proc/$f reads nothing" "$out" "0"
    else
        out=$(run -- sh -c "test -e /proc/$f && head -c 64 /proc/$f | wc -c || echo 0")
        is "/proc/$f: absent on this kernel, absent or empty inside" "$out" "0"
    fi
done
for d in acpi scsi asound; do
    out=$(run -- sh -c "test -d /proc/$d || { echo 0; exit; }; ls -A /proc/$d | wc -l; mkdir /proc/$d/x 2>/dev/null && echo writable")
    is "/proc/$d is an empty read-only directory (or absent)" "$out" "0"
done
# read-only knobs: writing fails even for the bottle's root
for f in sys/kernel/hostname sysrq-trigger; do
    out=$(run -- sh -c "test -e /proc/$f || { echo refused; exit; }; (echo x >/proc/$f) 2>/dev/null && echo written || echo refused")
    is "/proc/$f is not writable" "$out" "refused"
done
out=$(run -- sh -c 'grep -E " /proc/(irq|bus|fs|sys) " /proc/self/mountinfo | grep -vc " ro,"')
is "/proc/irq, /proc/bus, /proc/fs, /proc/sys are read-only mounts" "$out" "0"
out=$(run -- sh -c 'test -e /sys && ls -A /sys | head -3; echo end')
is "no /sys (nothing of the host's firmware, devices or cgroups)" "$out" "end"

# ---------------------------------------------------------------- --mount through a symlink (item 4)
mkdir -p "$WS/data" "$T/host-private"
echo "host-marker-$$" >"$T/host-private/marker"
echo "ws-data" >"$WS/data/file"
out=$(run --mount "$WS/data:/data:ro" -- cat /data/file)
is "--mount of a real workspace directory works" "$out" "ws-data"
# bottle 1 swaps ws/data for a symlink to a host directory outside the workspace
run -- sh -c "rm -rf data && ln -s '$T/host-private' data"
check "bottle 1 replaced ws/data with a symlink" test -L "$WS/data"
out=$(run --mount "$WS/data:/data:ro" -- sh -c 'cat /data/marker; echo ran' 2>"$T/err")
rc=$?
is "bottle 2 with --mount \$WS/data:/data is refused with 125" "$rc" "125"
unlike "... the host directory's marker is not visible" "$out" "host-marker|ran"
like "... the error names the path and says it is a symlink" "$(cat "$T/err")" \
    "--mount $WS/data.*$WS/data is a symbolic link"
# bottle-init refuses it by itself too (no supervisor check in front of it)
NS_LAUNCH=
for c in "$BB_BUILD_DIR/tests/integration/helpers/ns-launch" "$BB_BUILD_DIR/src/backend/ns-launch"; do
    [ -x "$c" ] && NS_LAUNCH=$c && break
done
if [ -n "$NS_LAUNCH" ]; then
    out=$(cd "$WS" && "$NS_LAUNCH" --init "$BB_BUILD_DIR/src/guest/bottle-init" \
        --mount "$WS/data:/data:ro" -- sh -c 'cat /data/marker; echo ran' 2>"$T/err")
    rc=$?
    is "bottle-init alone refuses the symlinked source with 125" "$rc" "125"
    unlike "... and shows nothing of the host directory" "$out" "host-marker|ran"
    like "... naming the path" "$(cat "$T/err")" "--mount source $WS/data is or passes through a symbolic link"
else
    skip "bottle-init refuses a symlinked source" "the ns-launch helper is not built"
fi
# a symlink higher up in the source path counts too
mkdir -p "$T/real/sub" && ln -s "$T/real" "$T/link"
out=$(run --mount "$T/link/sub:/data" -- true 2>&1)
like "a source passing through a symlinked directory is refused" "$out" "$T/link is a symbolic link"
rm -f "$WS/data"

# ---------------------------------------------------------------- workspace poisoning (item 6)
G=$T/repo
PWNED=$T/pwned
mkdir -p "$G"
git_h() { git -C "$G" -c user.name=host -c user.email=host@example.invalid "$@"; }
git_h init -q -b main
echo one >"$G/file"
printf '#!/bin/sh\necho "$0 $*" >>%s\n' "$PWNED" >"$G/evil.sh"
chmod +x "$G/evil.sh"
git_h add file evil.sh && git_h commit -q -m first
hostsums() { (cd "$G" && sha256sum .git/config && find .git/hooks -type f | sort | xargs sha256sum); }
sum_before=$(hostsums)
ls_before=$(ls -A "$G")
runin() { (cd "$G" && timeout 60 "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" "$@"); }
# every way of writing every listed path, existing or not. Attempts that would break the
# repository put it back when they succeed, so that without the protection the poisoning at
# the end is what the host's git finds (the test fails then, as it must).
runin -- sh -c '
try() { desc=$1; shift; if "$@" 2>/dev/null; then echo "WROTE: $desc"; fi; }
E=$PWD/evil.sh
try "move .git away" sh -c "mv .git .git.old && mv .git.old .git"
try "move .git/hooks away" sh -c "mv .git/hooks .git/hooks.old && mv .git/hooks.old .git/hooks"
try "remove .git/config" sh -c "cp .git/config c.save && rm -f .git/config && mv c.save .git/config"
try "submodule gitdir" mkdir -p .git/modules/x/hooks
for d in .vscode .idea .claude; do
    try "mkdir $d" mkdir -p $d/sub
    try "replace $d" sh -c "rm -rf $d && ln -s /tmp $d"
done
try ".vscode/tasks.json" sh -c "echo {} >.vscode/tasks.json"
try ".claude/settings.json" sh -c "echo {} >.claude/settings.json"
for f in .mcp.json .envrc bottle.ini; do
    try "create $f" sh -c "echo x >$f"
    try "rename onto $f" sh -c "echo x >t.tmp && mv -f t.tmp $f"
    try "symlink $f" ln -sf evil.sh $f
done
try "git config core.fsmonitor" git config core.fsmonitor "$E"
try "git config alias" git config alias.st "!$E"
try "append to .git/config" sh -c "printf \"[core]\\n\\tfsmonitor = $E\\n\" >>.git/config"
try "rename over .git/config" sh -c "cp .git/config c.new && printf \"[core]\\n\\tfsmonitor = $E\\n\" >>c.new && mv -f c.new .git/config"
try "create hook pre-commit" cp "$E" .git/hooks/pre-commit
try "symlink hook post-commit" ln -s "$E" .git/hooks/post-commit
try "hard link hook post-checkout" ln "$E" .git/hooks/post-checkout
try "create hook reference-transaction" cp "$E" .git/hooks/reference-transaction
rm -f c.new c.save t.tmp
echo attempts-done
' >"$T/attempts" 2>&1
is "every write to a protected path failed inside the bottle" "$(grep -c WROTE "$T/attempts")" "0"
grep WROTE "$T/attempts" | head -8 | while read -r l; do diag "$l"; done
check "... and the attempts ran" grep -q attempts-done "$T/attempts"
# the host's git afterwards: status, commit, checkout run nothing the bottle wrote
git_h status >/dev/null 2>&1
git_h commit -q --allow-empty -m host-side >/dev/null 2>&1
git_h checkout -q -b host-branch >/dev/null 2>&1
git_h checkout -q main >/dev/null 2>&1
check "the host's git status/commit/checkout ran nothing the bottle wrote" test ! -e "$PWNED"
is ".git/config and .git/hooks are unchanged" "$(hostsums)" "$sum_before"
is "no placeholder or bottle-made entry is left in the workspace" "$(ls -A "$G")" "$ls_before"
check "no .git/modules left behind" test ! -e "$G/.git/modules"

# ordinary git work inside still works
out=$(runin -e GIT_AUTHOR_NAME=bot -e GIT_AUTHOR_EMAIL=bot@example.invalid \
    -e GIT_COMMITTER_NAME=bot -e GIT_COMMITTER_EMAIL=bot@example.invalid -- sh -c '
set -e
echo two >>file; echo new >new-file
git add file new-file
git commit -q -m "from the bottle"
git checkout -q -b bottle-branch
echo three >>file; git commit -q -am "on the branch"
git status --porcelain
git log --format=%s -n 2 | tr "\n" "|"' 2>&1)
is "git add, commit, checkout -b, status work inside the bottle" "$out" "on the branch|from the bottle|"
is "... and the host sees the commits" "$(git_h log --format=%s -n 2 bottle-branch | tr '\n' '|')" \
    "on the branch|from the bottle|"
git_h status >/dev/null 2>&1
check "... the host's git still runs nothing the bottle wrote" test ! -e "$PWNED"

# --allow-write opens exactly the named path
out=$(runin --allow-write .vscode -- sh -c 'mkdir -p .vscode && echo "{}" >.vscode/tasks.json && echo ok; mkdir .idea/x 2>/dev/null && echo idea-written')
is "--allow-write .vscode opens .vscode (and nothing else)" "$out" "ok"
is "... the host sees .vscode/tasks.json" "$(cat "$G/.vscode/tasks.json" 2>/dev/null)" "{}"
out=$(runin -- sh -c 'echo x >.vscode/tasks.json 2>/dev/null && echo written; echo done')
is "... without it, the now existing .vscode is read-only again" "$out" "done"
rm -rf "$G/.vscode"

# core.hooksPath in the workspace (husky): that directory is protected too
git_h config core.hooksPath .husky/_
mkdir -p "$G/.husky/_"
out=$(runin -- sh -c 'cp evil.sh .husky/pre-commit 2>/dev/null && echo wrote-husky; mv .husky .husky.old 2>/dev/null && echo moved; echo done')
is "core.hooksPath .husky/_: .husky is read-only and stays in place" "$out" "done"
git_h config core.hooksPath .githooks
out=$(runin -- sh -c 'mkdir -p .githooks && cp evil.sh .githooks/pre-commit 2>/dev/null && echo wrote; echo done')
is "core.hooksPath .githooks (not there yet): cannot be created" "$out" "done"
git_h commit -q --allow-empty -m hooks-path-check >/dev/null 2>&1
check "... the host's commit ran nothing" test ! -e "$PWNED"
check "... and the placeholder .githooks is gone again" test ! -e "$G/.githooks"
git_h config --unset core.hooksPath
rm -rf "$G/.husky"

# a workspace without .git: the bottle cannot git init one the host's git would use
N=$T/nogit
mkdir -p "$N"
runn() { (cd "$N" && timeout 60 "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" "$@"); }
out=$(runn -- sh -c 'git init -q . 2>/dev/null && echo initialized; mkdir .git/hooks 2>/dev/null && echo hooks; echo done')
is "no .git: git init inside fails" "$out" "done"
check "... and the host's workspace has no .git afterwards" test ! -e "$N/.git"
out=$(runn --allow-write .git -- sh -c 'git init -q . && echo initialized')
is "... --allow-write .git opens it" "$out" "initialized"
rm -rf "$N/.git"

# a .git file (worktree/submodule pointer) cannot be redirected
echo "gitdir: $T/elsewhere" >"$N/.git"
out=$(runn -- sh -c 'echo "gitdir: .evil" >.git 2>/dev/null && echo rewritten; rm -f .git 2>/dev/null && echo removed; echo done')
is "a .git file cannot be rewritten or removed" "$out" "done"
is "... it is unchanged" "$(cat "$N/.git")" "gitdir: $T/elsewhere"
rm -f "$N/.git"

# a protected path that is a symlink is refused before anything starts
ln -s "$T/host-private" "$N/.vscode"
out=$(runn -- true 2>&1)
rc=$?
is "a symlinked .vscode: run exits 125" "$rc" "125"
like "... saying what to do" "$out" "$N/.vscode is a symbolic link.*--allow-write .vscode"
rm -f "$N/.vscode"

# two bottles on one workspace: the one leaving first keeps the placeholders the other's
# protections sit on; the last one out removes them all
C=$T/shared
mkdir -p "$C"
runc() { (cd "$C" && timeout 60 "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" "$@"); }
# A starts first (and makes the placeholders), B starts while A runs, A leaves, then B writes
runc -- sh -c 'touch a-up; while [ ! -e b-up ]; do sleep 0.05; done' &
A=$!
for _ in $(seq 200); do [ -e "$C/a-up" ] && break; sleep 0.05; done
runc -- sh -c 'touch b-up; while [ ! -e a-gone ]; do sleep 0.05; done; mkdir -p .vscode/x 2>/dev/null && echo b-wrote; echo b-done' >"$T/b.out" 2>&1 &
B=$!
wait "$A"
touch "$C/a-gone"
wait "$B"
is "a bottle's protection outlives the bottle that made its placeholders" "$(cat "$T/b.out")" "b-done"
is "... and the last one out removed every placeholder" "$(ls -A "$C" | tr '\n' ' ')" "a-gone a-up b-up "
check "... nothing the bottle wrote" test ! -e "$C/.vscode/x"
# a supervisor killed with SIGKILL leaves its placeholders; the next bottle's exit removes them
rm -f "$C/a-up" "$C/b-up" "$C/a-gone"
(cd "$C" && exec "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" -- sh -c 'touch up; sleep 30') &
K=$!
for _ in $(seq 200); do [ -e "$C/up" ] && break; sleep 0.05; done
kill -9 "$K"
wait "$K" 2>/dev/null
check "SIGKILL: the placeholders are still there" test -d "$C/.vscode"
runc -- true
is "... and the next bottle on the workspace removes them" "$(ls -A "$C" | tr '\n' ' ')" "up "

done_testing

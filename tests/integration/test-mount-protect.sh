#!/usr/bin/env bash
# A read-write --mount gets the workspace's protection (docs/workspace.md, "--mount
# sources"): a repository mounted with `--mount ~/repo:/data` must not let the bottle write
# /data/.git/config (core.fsmonitor: the host's next `git status` in ~/repo runs the bottle's
# code), /data/.git/hooks, /data/.vscode, ...; --allow-write /data/PATH opens one of them.
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] && ! unshare -Ur true 2>/dev/null; then
    skip "mount protection tests" "user namespaces are not available to this user"
    done_testing
fi

dns_stub

WS=$T/ws
R=$T/repo
PWNED=$T/pwned
mkdir -p "$WS" "$R"
run() { (cd "$WS" && timeout 60 "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" "$@"); }
git_h() { git -C "$R" -c user.name=host -c user.email=host@example.invalid "$@"; }
git_h init -q -b main
echo one >"$R/file"
printf '#!/bin/sh\necho "$0 $*" >>%s\n' "$PWNED" >"$R/evil.sh"
chmod +x "$R/evil.sh"
git_h add file evil.sh && git_h commit -q -m first
ls_before=$(ls -A "$R")
sum_before=$(cd "$R" && sha256sum .git/config)

# The attack: append core.fsmonitor to the mounted repository's .git/config (and friends).
run --mount "$R:/data" -- sh -c '
try() { desc=$1; shift; if "$@" 2>/dev/null; then echo "WROTE: $desc"; fi; }
E=/data/evil.sh
try "append core.fsmonitor" sh -c "printf \"[core]\\n\\tfsmonitor = '"$R"'/evil.sh\\n\" >>/data/.git/config"
try "git config alias" git -C /data config alias.st "!$E"
try "create hook pre-commit" cp "$E" /data/.git/hooks/pre-commit
try "move .git/hooks away" sh -c "mv /data/.git/hooks /data/.git/h.old && mv /data/.git/h.old /data/.git/hooks"
try "mkdir .vscode" mkdir -p /data/.vscode/x
try "create .mcp.json" sh -c "echo {} >/data/.mcp.json"
try "create bottle.ini" sh -c "echo x >/data/bottle.ini"
echo attempts-done
' >"$T/attempts" 2>&1
is "a rw --mount's protected paths cannot be written" "$(grep -c WROTE "$T/attempts")" "0"
grep WROTE "$T/attempts" | head -8 | while read -r l; do diag "$l"; done
check "... and the attempts ran" grep -q attempts-done "$T/attempts"
git_h status >/dev/null 2>&1
git_h commit -q --allow-empty -m host-side >/dev/null 2>&1
check "... the host's git status/commit in the source ran nothing the bottle wrote" test ! -e "$PWNED"
is "... its .git/config is unchanged" "$(cd "$R" && sha256sum .git/config)" "$sum_before"
is "... and no placeholder is left in the source" "$(ls -A "$R")" "$ls_before"

# ordinary git work in the mount still works
out=$(run --mount "$R:/data" -e GIT_AUTHOR_NAME=bot -e GIT_AUTHOR_EMAIL=bot@example.invalid \
    -e GIT_COMMITTER_NAME=bot -e GIT_COMMITTER_EMAIL=bot@example.invalid -- sh -c '
set -e; cd /data
echo two >>file; git add file; git commit -q -m "from the bottle"; git checkout -q -b b2
git log --format=%s -n 1' 2>&1)
is "git add, commit, checkout -b work in a rw --mount" "$out" "from the bottle"
git_h checkout -q main

# --allow-write /DST/PATH opens one path of the mount, and nothing else
out=$(run --mount "$R:/data" --allow-write /data/.vscode -- sh -c 'mkdir -p /data/.vscode && echo "{}" >/data/.vscode/tasks.json && echo ok; mkdir /data/.idea/x 2>/dev/null && echo idea-written; echo x >>/data/.git/config 2>/dev/null && echo config-written')
is "--allow-write /data/.vscode opens /data/.vscode (only)" "$out" "ok"
is "... the host sees it" "$(cat "$R/.vscode/tasks.json" 2>/dev/null)" "{}"
rm -rf "$R/.vscode"
out=$(run --allow-write '/data/../x' -- true 2>&1)
like "--allow-write with .. is refused" "$out" "--allow-write '/data/../x'"

# a read-only mount is read-only as a whole (and gets no protect records, which would be refused)
out=$(run --mount "$R:/data:ro" -- sh -c 'cat /data/file; echo x >>/data/.git/config 2>/dev/null && echo written; echo done')
is "a :ro --mount still works and stays read-only" "$out" "$(printf 'one\ntwo\ndone')"

# a rw mount of a protected path itself (the gitdir, the config file) is refused
out=$(run --mount "$R/.git:/g" -- true 2>&1)
rc=$?
is "a rw --mount of a .git directory is refused with 125" "$rc" "125"
like "... saying what to do" "$out" "--mount $R/.git:/g.*\.git.*:ro.*--allow-write /g"
out=$(run --mount "$R/.git/config:/cfg" -- sh -c 'echo "[alias] x = !sh" >>/cfg' 2>&1)
like "a rw file --mount of .git/config is refused" "$out" "--mount $R/.git/config:/cfg"
is "... the file is unchanged" "$(cd "$R" && sha256sum .git/config)" "$sum_before"
out=$(run --mount "$R/.git/config:/cfg:ro" -- sh -c 'head -c 6 /cfg')
is "... read-only, it mounts" "$out" "[core]"
echo data >"$T/plain"
out=$(run --mount "$T/plain:/plain" -- sh -c 'echo more >>/plain && cat /plain')
is "a rw file --mount elsewhere works as before" "$out" "$(printf 'data\nmore')"

# two bottles with different workspaces share one mounted repository: the one leaving first
# keeps the placeholders the other's protection sits on
WS2=$T/ws2
mkdir -p "$WS2"
run --mount "$R:/data" -- sh -c 'touch /data/a-up; while [ ! -e /data/b-up ]; do sleep 0.05; done' &
A=$!
for _ in $(seq 200); do [ -e "$R/a-up" ] && break; sleep 0.05; done
(cd "$WS2" && timeout 60 "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" --mount "$R:/data" -- \
    sh -c 'touch /data/b-up; while [ ! -e /data/a-gone ]; do sleep 0.05; done; mkdir -p /data/.vscode/x 2>/dev/null && echo b-wrote; echo b-done') >"$T/b.out" 2>&1 &
B=$!
wait "$A"
touch "$R/a-gone"
wait "$B"
is "a mount's protection outlives the bottle that made its placeholders" "$(cat "$T/b.out")" "b-done"
rm -f "$R/a-up" "$R/b-up" "$R/a-gone"
is "... and the last one out removed every placeholder" "$(ls -A "$R")" "$ls_before"

done_testing

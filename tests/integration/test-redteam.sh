#!/usr/bin/env bash
# Red-team probes from inside a real bottle run as root (`bot-bottle run --backend namespace`),
# by routes the other integration tests do not take. Each one is an attack that failed (or
# was fixed); the test keeps it failing. Bounded and loopback only: the daemon's upstream DNS
# is the stub on 127.0.0.1, no name is allowlisted, nothing connects anywhere else.
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ]; then
    skip "red-team probes" "they need root (a bottle whose uid 0 is host root is the case tested)"
    done_testing
fi
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "Bail out! $PY is needed inside the bottle (install-deps installs python3)"; exit 1; }
command -v git >/dev/null || { echo "Bail out! git is needed (scripts/install-deps.sh)"; exit 1; }

DNS=$(free_port)
bg "$PY" "$HELPERS/dns-stub.py" serve --port "$DNS" --log "$T/dns.log" --ready "$T/dns.ready"
wait_file "$T/dns.ready" || { echo "Bail out! dns stub did not start"; exit 1; }

WS=$T/ws
mkdir -p "$WS"
run() {
    (cd "$WS" && env -u SUDO_UID -u SUDO_GID -u SUDO_USER timeout 60 "$BB" run \
        --backend namespace --upstream-dns "127.0.0.1:$DNS" "$@")
}
PWNED=$T/pwned

# --- .git/commondir: git reads config and hooks from the directory it names. A bottle that
# writes it points the host's git at a config of its own (core.fsmonitor runs on the next
# `git status`), past the read-only .git/config and .git/hooks.
G=$T/repo
git init -q -b main "$G"
git -C "$G" -c user.name=t -c user.email=t@example.invalid commit -q --allow-empty -m init
cat >"$G/evil.sh" <<SH
#!/bin/sh
touch "$PWNED"
exit 1
SH
chmod 755 "$G/evil.sh"
ls_before=$(ls -A "$G/.git" | sort)
out=$( (cd "$G" && env -u SUDO_UID -u SUDO_GID timeout 60 "$BB" run --backend namespace \
    --upstream-dns "127.0.0.1:$DNS" -- sh -c '
w() { desc=$1; shift; if "$@" 2>/dev/null; then echo "WROTE: $desc"; fi; }
mkdir -p .git/evil/hooks && cp -r .git/objects .git/refs .git/HEAD .git/evil/
printf "[core]\n\trepositoryformatversion = 0\n\tfsmonitor = $PWD/evil.sh\n" >.git/evil/config
cp evil.sh .git/evil/hooks/post-checkout
w "create .git/commondir" sh -c "echo evil >.git/commondir"
w "rename onto .git/commondir" sh -c "echo evil >.git/cd.tmp && mv -f .git/cd.tmp .git/commondir"
w "link onto .git/commondir" sh -c "echo evil >.git/cd.tmp && ln -f .git/cd.tmp .git/commondir"
rm -f .git/cd.tmp
git status >/dev/null 2>&1 && echo git-works-inside
echo attempts-done') 2>&1)
is "commondir: every write to .git/commondir failed inside the bottle" \
    "$(grep WROTE <<<"$out")" ""
like "commondir: git still works inside (the placeholder names the gitdir itself)" "$out" \
    "git-works-inside"
like "commondir: ... and the attempts ran" "$out" "attempts-done"
(cd "$G" && git status >/dev/null 2>&1; git checkout -q -b x >/dev/null 2>&1)
check "commondir: the host's git status/checkout ran nothing the bottle wrote" test ! -e "$PWNED"
rm -rf "$G/.git/evil"
is "commondir: no placeholder is left in .git" "$(ls -A "$G/.git" | sort)" "$ls_before"

# --- a linked worktree outside the workspace (git worktree add ../wt): git there takes its
# config and hooks from the directory .git/worktrees/ID/commondir names, a file inside the
# workspace. A bottle that rewrote it ran its code in the user's other checkout.
rm -f "$PWNED"
git -C "$G" worktree add -q "$T/other-wt" -b other 2>/dev/null
wt_id=$(basename "$(sed -n 's/^gitdir: //p' "$T/other-wt/.git")")
out=$( (cd "$G" && env -u SUDO_UID -u SUDO_GID timeout 60 "$BB" run --backend namespace \
    --upstream-dns "127.0.0.1:$DNS" -- sh -c '
mkdir -p .git/evil/hooks && cp -r .git/objects .git/refs .git/HEAD .git/evil/
printf "[core]\n\trepositoryformatversion = 0\n\tfsmonitor = $PWD/evil.sh\n" >.git/evil/config
W=.git/worktrees/'"$wt_id"'
(mv $W .git/wt.old && mv .git/wt.old $W) 2>/dev/null && echo "WROTE: moved the worktree gitdir"
(echo ../../evil >.git/cd.tmp && mv -f .git/cd.tmp $W/commondir) 2>/dev/null &&
    echo "WROTE: rename onto commondir"
(echo ../../evil >$W/commondir) 2>/dev/null && echo "WROTE: commondir"
rm -f .git/cd.tmp
git worktree add -q inside-wt 2>/dev/null && git -C inside-wt status >/dev/null 2>&1 && echo worktree-add-works
echo attempts-done') 2>&1)
is "worktree: the linked worktree's commondir cannot be rewritten inside the bottle" \
    "$(grep WROTE <<<"$out")" ""
like "worktree: git worktree add still works inside" "$out" "worktree-add-works"
(cd "$T/other-wt" && git status >/dev/null 2>&1)
check "worktree: the host's git status in the other worktree ran nothing the bottle wrote" \
    test ! -e "$PWNED"
is "worktree: its commondir is unchanged" "$(cat "$G/.git/worktrees/$wt_id/commondir")" "../.."
rm -rf "$G/.git/evil"

# --- /proc files only root may read: the bottle's uid 0 is host root, so without a mask it
# reads the host's physical page tables (kpageflags, kpagecount, kpagecgroup) and allocator
# state (slabinfo, pagetypeinfo). Every such file the host has reads nothing inside.
rootonly=$(find /proc -maxdepth 1 -type f ! -perm -004 -printf '%f ' 2>/dev/null)
[ -n "$rootonly" ] || diag "no root-only file at the top of the host's /proc: the check below proves little"
out=$(run -- sh -c 'for f in '"$rootonly"'; do test -e /proc/$f || continue; n=$(head -c 64 /proc/$f 2>/dev/null | wc -c); [ "$n" = 0 ] || echo "$f:$n"; done; echo read-done')
is "proc: every root-only host /proc file ($rootonly) reads nothing inside" "$out" "read-done"

# --- the home directory as the workspace: the workspace is mounted over the bottle's private
# $HOME, so a bottle started in ~ (the default workspace is the current directory) wrote the
# host's ~/.bashrc, ~/.gitconfig, ~/.ssh. Refused before anything is made or started.
H=$(getent passwd "$(id -u)" | cut -d: -f6)
if [ -d "$H" ] && [ "$H" != / ]; then
    home_before=$(ls -A "$H")
    out=$( (cd "$H" && env -u SUDO_UID -u SUDO_GID timeout 60 "$BB" run --backend namespace \
        --upstream-dns "127.0.0.1:$DNS" -- sh -c 'echo bottle-ran') 2>&1)
    rc=$?
    unlike "home: a bottle in the home directory $H does not run" "$out" "bottle-ran"
    like "home: ... it is refused, saying why and what to do" "$out" \
        "bot-bottle: .*the workspace $H is the home directory.*--workspace DIR"
    is "home: ... with a failure status" "$([ "$rc" != 0 ] && echo fail)" "fail"
    is "home: ... and nothing was made in $H" "$(ls -A "$H")" "$home_before"
    out=$(cd "$H" && cd .. && env -u SUDO_UID -u SUDO_GID timeout 60 "$BB" run --backend namespace \
        --upstream-dns "127.0.0.1:$DNS" -w "$(dirname "$H")" -- sh -c 'echo bottle-ran' 2>&1)
    if [ "$(dirname "$H")" = / ]; then
        unlike "home: a workspace holding $H (/) does not run either" "$out" "bottle-ran"
    else
        like "home: a workspace holding $H is refused too" "$out" "holds the home directory"
    fi
else
    skip "home: the workspace may not be the home directory" "uid $(id -u) has no home directory"
fi

done_testing

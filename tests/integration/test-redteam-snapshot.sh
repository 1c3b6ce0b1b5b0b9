#!/usr/bin/env bash
# Red team: microVM start-up snapshots (src/backend/microvm/snapshot.h) against another user of
# the host and against a compromised QEMU. A template is restored into every later bottle of its
# shape, whoever runs it, so nobody but the supervisor's own user may touch its making:
#
# - The bottle's user (root's supervisor runs QEMU as that uid; here a uid of this test's own)
#   watches for the template boot (helpers/snap-attacker.py): it must find nothing of it in its
#   run directory (before the fix: the template's initramfs, which it could replace, and the
#   template's ctl, chan and QMP sockets, chowned to it: connected first and answering QMP as
#   QEMU would, it was handed the template's file by getfd and wrote it), and the template's
#   QEMU must not run as its uid (before: it did, and without Yama this user could open its
#   memory for writing).
# - A restored bottle's QEMU reads the template through an fd; a compromised QEMU whose uid owns
#   the file (an unprivileged invoker) could open /proc/self/fd/N for writing and rewrite the
#   template of every later bottle. The fd must be on a read-only mount: the check opens the
#   running QEMU's fd for writing as root (it worked before the fix).
# - What restored bottles must not share: random bytes, boot_id.
# Tests run in a private kernel cache, with bottle-init's start-up trace (a restored guest's has
# a "restored" mark), as test-microvm-snapshot.sh does.
source "$(dirname "$0")/lib.sh"

unset BOT_BOTTLE_BACKEND
if [ "$(id -u)" != 0 ]; then
    skip "another user against the template" "needs root (the supervisor runs QEMU as the bottle's uid only as root)"
    done_testing
fi
# shellcheck source=snaplib.sh
source "$(dirname "$0")/snaplib.sh"
snap_private_cache
SNAP_RUN_TIMEOUT=180

# the attacker: a uid no other test uses (it touches only what that uid owns)
AU=$((61000 + RANDOM % 4000))
chmod 0711 "$T"
mkdir -p "$T/ws/.git"
echo "[core]" >"$T/ws/.git/config"
cat >"$T/ws/probe.sh" <<'EOF2'
echo "rand=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo "bootid=$(cat /proc/sys/kernel/random/boot_id)"
[ -n "${1:-}" ] && sleep "$1"
exit 0
EOF2
chown -R "$AU:$AU" "$T/ws"
install -m 0644 "$HELPERS/snap-attacker.py" "$T/snap-attacker.py"
install -m 0644 "$HELPERS/qemu-watch.py" "$T/qemu-watch.py"
install -o "$AU" -m 0644 /dev/null "$T/att.log"

run() { snap_run "$@"; }
field() { snap_field "$@"; }

# ---- the bottle's user against the making of the template ----
setpriv --reuid="$AU" --regid="$AU" --clear-groups "$PY" "$T/snap-attacker.py" \
    "$T/att.log" 400 "$T/att.stop" "$T" &
att=$!
_pids+=("$att")
out1=$(run -- sh probe.sh 2>"$T/err1"); rc1=$?
out2=$(run -- sh probe.sh 2>"$T/err2"); rc2=$?
touch "$T/att.stop"
wait "$att"
diag "attacker: $(cat "$T/att.log")"
[ "$rc1" = 0 ] || diag "$(cat "$T/err1")"
like "bottle 1 made the template" "$(cat "$T/err1")" "making a start-up snapshot"
is "bottle 1: exit 0, restored from it" "$rc1 $(field start "$out1")" "0 restored"
is "bottle 2: exit 0, restored" "$rc2 $(field start "$out2")" "0 restored"
# (the attacker was there: it saw its run directories and the template's QEMU)
like "the attacker watched the bottles' run directories" "$(cat "$T/att.log")" "SAW a run directory"
like "... and saw the template's QEMU" "$(cat "$T/att.log")" "SAW a template QEMU"
unlike "the bottle's user got no hold on the template's sockets (ctl, chan, QMP)" \
    "$(cat "$T/att.log")" "HIJACK|CONNECTED|WROTE|GOTFD"
unlike "... could not replace the template's initramfs" "$(cat "$T/att.log")" "REPLACED"
unlike "... the template's QEMU does not run as the bottle's user" "$(cat "$T/att.log")" \
    "TEMPLATE-UID"
unlike "... and its memory is not the bottle's user's to write" "$(cat "$T/att.log")" "MEM "
tpl=$(find "$SNAP" -maxdepth 1 -name '*.vmstate' | head -1)
check "the template is QEMU's, not the attacker's bytes" \
    sh -c "[ -s '$tpl' ] && ! grep -q 'not a VM' '$tpl'"
is "nothing of the template's making is left in the snapshot directory" \
    "$(find "$SNAP" -mindepth 1 -maxdepth 1 ! -name '*.vmstate' ! -name lock | wc -l)" 0

# ---- what restored bottles share: not their random bytes, not their boot_id ----
r1=$(field rand "$out1"); r2=$(field rand "$out2")
b1=$(field bootid "$out1"); b2=$(field bootid "$out2")
check "two restored bottles draw different random bytes" test -n "$r1" -a "$r1" != "$r2"
like "a restored bottle has a boot_id" "$b1" '^[0-9a-f]{8}-[0-9a-f-]{27}'
check "two restored bottles have different boot_ids ($b1, $b2)" test "$b1" != "$b2"

# ---- a compromised QEMU: the template's fd cannot be opened again for writing ----
# a compromised QEMU's move, played by helpers/qemu-watch.py (reopen), on the test's own QEMUs
"$PY" "$T/qemu-watch.py" "$AU" -incoming reopen >"$T/reopen" &
rp=$!
# a few bottles, in case the watcher came too late for one
for _ in 1 2 3 4 5; do
    out3=$(run -- sh probe.sh 2>"$T/err3"); rc3=$?
    [ -s "$T/reopen" ] && break
done
wait "$rp"
is "... a restored bottle ran (exit 0, restored)" "$rc3 $(field start "$out3")" "0 restored"
check "found a restoring QEMU with its state fd open ($(cat "$T/reopen"))" test -s "$T/reopen"
like "the template's fd in QEMU is on a read-only mount (reopened for writing: EROFS)" \
    "$(cat "$T/reopen")" ' EROFS'

# ---- QEMU killed while making the template, or while restoring ----
# killer UID PATTERN: SIGKILLs the first QEMU of UID with PATTERN in its command line
# (helpers/qemu-watch.py); prints its pid
killer() { "$PY" "$T/qemu-watch.py" "$1" "$2" kill; }
rm -f "$SNAP"/*.vmstate
killer 0 "$SNAP/make/" >"$T/killed-tpl" &
kp=$!
out=$(run -- sh probe.sh 2>"$T/err5"); rc=$?
wait "$kp"
check "the template's QEMU was killed while it booted" test -s "$T/killed-tpl"
is "... the bottle still ran (exit 0), booted" "$rc $(field start "$out")" "0 booted"
like "... saying why" "$(cat "$T/err5")" "no start-up snapshot"
is "... nothing of it is left (no template, no temporary file, no make directory)" \
    "$(find "$SNAP" -mindepth 1 -maxdepth 1 ! -name lock | wc -l)" 0
out=$(run -- sh probe.sh 2>"$T/err6"); rc=$?
is "the next bottle makes one (the lock was let go) and is restored" \
    "$rc $(field start "$out") $(grep -c 'making a start-up snapshot' "$T/err6")" "0 restored 1"
tpl=$(find "$SNAP" -maxdepth 1 -name '*.vmstate' | head -1)
ino=$(stat -c %i "$tpl")
# the bottle's user kills its own QEMU (it runs as that uid) during the restore
setpriv --reuid="$AU" --regid="$AU" --clear-groups "$PY" "$T/qemu-watch.py" "$AU" incoming kill \
    >"$T/killed-rst" &
kp=$!
out=$(run -- sh probe.sh 2>"$T/err7"); rc=$?
wait "$kp"
check "the bottle's user killed its restoring QEMU" test -s "$T/killed-rst"
is "... the bottle still ran (exit 0), booted" "$rc $(field start "$out")" "0 booted"
is "... and the template, not at fault, is kept for every other bottle" \
    "$(stat -c %i "$tpl" 2>/dev/null)" "$ino"

done_testing

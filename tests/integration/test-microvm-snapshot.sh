#!/usr/bin/env bash
# Start-up from a snapshot (docs/microvm.md, "Start-up from a snapshot";
# src/backend/microvm/snapshot.h): under TCG the first microVM bottle of a shape boots a
# template VM to bottle-init's wait and saves it in the kernel cache; later bottles restore it
# instead of booting. Checked here in a private copy of the kernel cache: the template is made
# once (also by two bottles starting together) and private; a restored bottle's random bytes
# differ from every other bottle's (the host reseeds the guest's generator) and its clock is
# the host's; a damaged or not-private template is never restored (the bottle boots and says
# why; a damaged one is removed and made again); a changed kernel gets a new template;
# [microvm] snapshot = off boots every bottle. The bottles run with bottle-init's start-up
# trace (BOT_BOTTLE_VM_TRACE=1, on stderr): a restored guest's has a "restored" mark, which is
# how the checks tell a restore from a boot (the trace is part of the template's kernel
# command line, so these templates are the test's own).
source "$(dirname "$0")/lib.sh"

unset BOT_BOTTLE_BACKEND
# shellcheck source=snaplib.sh
source "$(dirname "$0")/snaplib.sh"
snap_private_cache

chmod 0711 "$T"
# a project's workspace, with .git/config
mkdir -p "$T/ws/.git"
echo "[core]" >"$T/ws/.git/config"
if [ "$(id -u)" = 0 ]; then
    chown -R 4242:4242 "$T/ws"
fi
# what every bottle prints: 32 random bytes, its clock, and whether it was restored
cat >"$T/ws/probe.sh" <<'EOF2'
echo "rand=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo "time=$(date +%s.%N)"
EOF2
chmod 0644 "$T/ws/probe.sh"
run() { snap_run "$@"; }
field() { snap_field "$@"; }
templates() { find "$SNAP" -maxdepth 1 -name '*.vmstate' 2>/dev/null | wc -l; }

# ---- the first bottle makes the template, the next ones restore it ----
out1=$(run -- sh probe.sh 2>"$T/err1"); rc=$?
is "bottle 1: exit 0" "$rc" 0
like "bottle 1 says it makes the start-up snapshot" "$(cat "$T/err1")" "making a start-up snapshot"
is "... and is itself restored from it" "$(field start "$out1")" restored
is "one template in the cache" "$(templates)" 1
tpl=$(find "$SNAP" -maxdepth 1 -name '*.vmstate' | head -1)
is "the template is ours alone (0600)" "$(stat -c %a "$tpl")" 600
is "... in a private directory (0700)" "$(stat -c %a "$SNAP")" 700

t0=$(date +%s.%N)
out2=$(run -- sh probe.sh 2>"$T/err2"); rc2=$?
out3=$(run -- sh probe.sh 2>"$T/err3"); rc3=$?
t1=$(date +%s.%N)
is "bottles 2 and 3: exit 0" "$rc2 $rc3" "0 0"
is "bottle 2 is restored" "$(field start "$out2")" restored
unlike "... without making another template" "$(cat "$T/err2")" "making a start-up snapshot"
is "still one template" "$(templates)" 1
r1=$(field rand "$out1"); r2=$(field rand "$out2"); r3=$(field rand "$out3")
is "random bytes are 32 bytes" "${#r2}" 64
check "three restored bottles draw different random bytes (the host reseeds each)" \
    test "$r1" != "$r2" -a "$r2" != "$r3" -a "$r1" != "$r3"
g2=$(field time "$out2"); g3=$(field time "$out3")
check "a restored bottle's clock is the host's, not the template's ($t0 <= $g2, $g3 <= $t1)" \
    "$PY" -c "import sys; t0, g2, g3, t1 = map(float, sys.argv[1:]); sys.exit(not (t0 - 0.1 <= g2 <= g3 <= t1 + 0.1))" \
    "$t0" "$g2" "$g3" "$t1"

# ---- two bottles starting together with no template: one is made, both run ----
rm -f "$SNAP"/*.vmstate
run --name snap-a -- sh probe.sh >"$T/outA" 2>"$T/errA" & pa=$!
run --name snap-b -- sh probe.sh >"$T/outB" 2>"$T/errB" & pb=$!
wait $pa; ra=$?; wait $pb; rb=$?
[ "$ra $rb" = "0 0" ] || diag "$(cat "$T/errA" "$T/errB")"
is "two bottles at once with no template: both exit 0" "$ra $rb" "0 0"
is "... one of them made it (under the lock)" \
    "$(cat "$T/errA" "$T/errB" | grep -c 'making a start-up snapshot')" 1
is "... both were restored" "$(grep -h '^start=' "$T/outA" "$T/outB" | sort -u)" "start=restored"
is "... one template" "$(templates)" 1

# ---- a damaged template: QEMU cannot load it; the bottle boots, says so, and it is removed ----
tpl=$(find "$SNAP" -maxdepth 1 -name '*.vmstate' | head -1)
truncate -s $(( $(stat -c %s "$tpl") / 2 )) "$tpl"
out=$(run -- sh probe.sh 2>"$T/err4"); rc=$?
err=$(cat "$T/err4")
diag "$err"
is "a truncated template: the bottle still runs (exit 0)" "$rc" 0
is "... booted, not restored" "$(field start "$out")" booted
like "... and says the snapshot could not be used and was removed" "$err" \
    "could not start from the start-up snapshot .*removed it, the next bottle makes a new one"
is "... the damaged file is gone" "$(templates)" 0
out=$(run -- sh probe.sh 2>"$T/err5"); rc=$?
is "the next bottle makes a new one and is restored" "$rc $(field start "$out")" "0 restored"
# a template whose first bytes are not QEMU's
tpl=$(find "$SNAP" -maxdepth 1 -name '*.vmstate' | head -1)
printf 'garbage!' | dd of="$tpl" conv=notrunc status=none
out=$(run -- sh probe.sh 2>"$T/err6"); rc=$?
is "a template with a wrong header: the bottle boots (exit 0)" "$rc $(field start "$out")" "0 booted"
is "... and it is removed" "$(templates)" 0

# ---- a template others could write is never restored, and is left alone ----
out=$(run -- sh probe.sh 2>/dev/null)
tpl=$(find "$SNAP" -maxdepth 1 -name '*.vmstate' | head -1)
chmod 0620 "$tpl"
out=$(run -- sh probe.sh 2>"$T/err7"); rc=$?
is "a group-writable template: the bottle boots (exit 0)" "$rc $(field start "$out")" "0 booted"
like "... saying why" "$(cat "$T/err7")" "no start-up snapshot \(a template that is not ours alone"
is "... and the file is left as it was" "$(stat -c %a "$tpl")" 620
chmod 0600 "$tpl"
chmod 0755 "$SNAP"
out=$(run -- sh probe.sh 2>"$T/err8"); rc=$?
is "a snapshot directory others can read: the bottle boots (exit 0)" "$rc $(field start "$out")" "0 booted"
like "... saying why" "$(cat "$T/err8")" "not a private directory of ours"
chmod 0700 "$SNAP"

# ---- another kernel (here: the same file, rebuilt later) gets a template of its own ----
touch -d '+1 minute' "$SNAP_VMLINUX"
out=$(run -- sh probe.sh 2>"$T/err9"); rc=$?
is "a changed kernel: exit 0, restored" "$rc $(field start "$out")" "0 restored"
like "... from a template made for it" "$(cat "$T/err9")" "making a start-up snapshot"
is "... next to the old one" "$(templates)" 2

# ---- [microvm] snapshot = off: every bottle boots, nothing is made ----
rm -rf "$SNAP"
printf '[microvm]\nsnapshot = off\n' >"$T/off.ini"
out=$(run -c "$T/off.ini" -- sh probe.sh 2>"$T/err10"); rc=$?
is "snapshot = off: exit 0, booted" "$rc $(field start "$out")" "0 booted"
unlike "... nothing said about snapshots" "$(cat "$T/err10")" "snapshot"
check "... and no template made" test ! -e "$SNAP"

done_testing

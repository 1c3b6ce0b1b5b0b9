# Shared by the start-up snapshot tests (test-microvm-snapshot.sh, test-redteam-snapshot.sh);
# source it after lib.sh.
#
# snap_private_cache: a private copy of the guest kernel's cache in $T/kcache
#   (BOT_BOTTLE_KERNEL_CACHE), so the templates these tests make, damage and remove are their
#   own and never the shared cache's other tests use; SNAP is its snapshot directory.
# snap_run ARGS...: `bot-bottle run ARGS` in $T/ws with bottle-init's start-up trace; prints
#   the bottle's output, then start=restored|booted (a restored guest's trace has a
#   "restored" mark); the rest of its stderr goes to stderr. SNAP_RUN_TIMEOUT (120 s).
# snap_field NAME TEXT: the value of NAME=... in TEXT.

export BOT_BOTTLE_VM_TRACE=1

snap_private_cache() {
    local src vmlinux
    # shellcheck source=../../scripts/kernel-cache.sh
    . "$BB_SOURCE_DIR/scripts/kernel-cache.sh"
    src=${BOT_BOTTLE_KERNEL_CACHE:-$(kernel_cache_default)}
    # No skip: scripts/install-deps.sh builds the kernel (test-microvm says what is missing).
    vmlinux=$(sed -n 's/^vmlinux=//p' "$src/kernel.meta" 2>/dev/null)
    if [ -z "$vmlinux" ] || ! [ -f "$src/$vmlinux" ]; then
        _result 1 "the guest kernel is in the cache ($src; run scripts/install-deps.sh)"
        done_testing
    fi
    export BOT_BOTTLE_KERNEL_CACHE=$T/kcache
    mkdir -p "$BOT_BOTTLE_KERNEL_CACHE"
    cp "$src/kernel.meta" "$src/$vmlinux" "$BOT_BOTTLE_KERNEL_CACHE/"
    if [ -f "$src/qemu.version" ]; then cp "$src/qemu.version" "$BOT_BOTTLE_KERNEL_CACHE/"; fi
    SNAP=$BOT_BOTTLE_KERNEL_CACHE/snapshot
    SNAP_VMLINUX=$BOT_BOTTLE_KERNEL_CACHE/$vmlinux
}

snap_run() {
    local rc e=$T/err.$BASHPID
    (cd "$T/ws" && timeout "${SNAP_RUN_TIMEOUT:-120}" "$BB" run --allow-cidr 127.0.0.1/32 "$@") 2>"$e"
    rc=$?
    grep -q '^bb-trace restored ' "$e" && echo start=restored || echo start=booted
    grep -v '^bb-trace ' "$e" >&2
    rm -f "$e"
    return $rc
}

snap_field() { sed -n "s/^$1=//p" <<<"$2"; }

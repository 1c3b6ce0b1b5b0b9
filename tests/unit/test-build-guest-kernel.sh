#!/usr/bin/env bash
# Unit test (TAP) of scripts/build-guest-kernel.sh's logic that needs no kernel build: the
# fragment hash (what decides a rebuild), fragment syntax checking, and the up-to-date skip.
# Usage: test-build-guest-kernel.sh SOURCE_ROOT
set -uo pipefail
src=${1:-$(dirname "$0")/../..}
script=$src/scripts/build-guest-kernel.sh
frag=$src/guest/kernel/bottle.config
. "$src/tests/unit/tap.sh"
tap_scratch test-build-guest-kernel
hash_of() { "$script" --fragment "$1" --print-hash 2>/dev/null; }

echo "1..13"
ok "--help exits 0 and documents --cache-dir" \
    bash -c '"$1" --help | grep -q -- "--cache-dir DIR"' _ "$script"

h=$(hash_of "$frag")
ok "the repository's fragment hashes to 16 hex digits ($h)" \
    bash -c '[[ $1 =~ ^[0-9a-f]{16}$ ]]' _ "$h"

{ echo "# a new comment"; echo; sed 's/^\(CONFIG_.*\)$/\1   /' "$frag"; echo "   "; } >"$t/commented.config"
ok "comments, blank lines and trailing blanks do not change the hash" \
    test "$(hash_of "$t/commented.config")" = "$h"

printf 'CONFIG_A=y\nCONFIG_B=n\n' >"$t/a.config"
printf 'CONFIG_A=y\n# CONFIG_B is not set\n' >"$t/b.config"
ok "'# CONFIG_B is not set' is the same as CONFIG_B=n" \
    test "$(hash_of "$t/a.config")" = "$(hash_of "$t/b.config")"

printf 'CONFIG_A=y\nCONFIG_B=y\n' >"$t/c.config"
ok "changing a value changes the hash" test "$(hash_of "$t/a.config")" != "$(hash_of "$t/c.config")"

printf 'CONFIG_B=n\nCONFIG_A=y\n' >"$t/d.config"
ok "reordering lines changes the hash (merge order can matter)" \
    test "$(hash_of "$t/a.config")" != "$(hash_of "$t/d.config")"

printf 'CONFIG_A=y\nCONFIG_B = y\n' >"$t/bad.config"
out=$("$script" --fragment "$t/bad.config" --print-hash 2>&1)
rc=$?
ok "a line that is not CONFIG_X=value is refused, and named" \
    bash -c '[ "$1" -ne 0 ] && [[ $2 == *"CONFIG_B = y"* ]] && [[ $2 == "bot-bottle: "* ]]' _ "$rc" "$out"

mkdir -p "$t/cache"
: >"$t/cache/vmlinux-test"
printf 'version=6.1.0\nfragment_hash=%s\nvmlinux=vmlinux-test\n' "$h" >"$t/cache/kernel.meta"
out=$("$script" --cache-dir "$t/cache" --source-deb /nonexistent.deb 2>&1)
rc=$?
ok "a cached kernel built from the same fragment is up to date: exit 0, nothing built" \
    bash -c '[ "$1" -eq 0 ] && [[ $2 == *"up to date"* ]] && [ "$(ls "$3" | wc -l)" -eq 2 ]' \
    _ "$rc" "$out" "$t/cache"

printf 'version=6.1.0\nfragment_hash=0000000000000000\nvmlinux=vmlinux-test\n' >"$t/cache/kernel.meta"
out=$("$script" --cache-dir "$t/cache" --source-deb /nonexistent.deb 2>&1)
rc=$?
ok "a kernel from another fragment is not up to date (goes on to build, fails on the missing .deb)" \
    bash -c '[ "$1" -ne 0 ] && [[ $2 != *"up to date"* ]]' _ "$rc" "$out"

out=$("$script" --no-such-option 2>&1)
rc=$?
ok "an unknown option is an error naming it" \
    bash -c '[ "$1" -ne 0 ] && [[ $2 == *"--no-such-option"* ]]' _ "$rc" "$out"

# The default cache for a user other than root (in a user namespace, as uid 1000): the one the
# backend reads (microvm_cache_dir_for), which ignores a relative XDG_CACHE_HOME.
cache_as_user() {
    unshare --user --map-user=1000 env -i HOME=/home/u ${1:+XDG_CACHE_HOME=$1} bash -c \
        '. "$0"; kernel_cache_default' "$(dirname "$script")/kernel-cache.sh"
}
ok "as a user: \$XDG_CACHE_HOME/bot-bottle/kernel" test "$(cache_as_user /x/c)" = /x/c/bot-bottle/kernel
ok "as a user, a relative XDG_CACHE_HOME is ignored" \
    test "$(cache_as_user rel/c)" = /home/u/.cache/bot-bottle/kernel
ok "as a user without XDG_CACHE_HOME: ~/.cache/bot-bottle/kernel" \
    test "$(cache_as_user "")" = /home/u/.cache/bot-bottle/kernel

tap_done

#!/usr/bin/env bash
# `meson install` (what `make install` runs): bin/bot-bottle, libexec/bot-bottle/bottle-init and
# the man page land under DESTDIR; the installed binary finds its bottle-init in
# <prefix>/libexec/bot-bottle (the build tree's hidden, the staged tree mounted at the prefix in
# a private mount namespace), and the man page is made from the help texts.
source "$(dirname "$0")/lib.sh"

: "${BB_BUILD_DIR:?BB_BUILD_DIR must be set (meson sets it)}"
need_root "install test" "it mounts the staged tree at the prefix in a mount namespace"
PREFIX=$(meson introspect "$BB_BUILD_DIR" --buildoptions | "$PY" -c '
import json, sys
print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
D=$T/dest
meson install -C "$BB_BUILD_DIR" --destdir "$D" --no-rebuild --quiet >"$T/install.log" 2>&1
is "meson install --destdir succeeds" "$?" "0"
check "bin/bot-bottle is installed" test -x "$D$PREFIX/bin/bot-bottle"
check "libexec/bot-bottle/bottle-init is installed" test -x "$D$PREFIX/libexec/bot-bottle/bottle-init"
check "the man page is installed" test -s "$D$PREFIX/share/man/man1/bot-bottle.1"
like "the man page has each verb and help topic" \
    "$(grep '^\.SH' "$D$PREFIX/share/man/man1/bot-bottle.1" | tr '\n' ' ')" \
    'BOT-BOTTLE RUN.*BOT-BOTTLE POLICY|BOT-BOTTLE POLICY.*BOT-BOTTLE RUN'
like "... and the notices topic" "$(cat "$D$PREFIX/share/man/man1/bot-bottle.1")" \
    'blocked HOST \(not in the allowlist\)'
if command -v man >/dev/null; then
    like "man renders it" "$(MANWIDTH=100 man -l "$D$PREFIX/share/man/man1/bot-bottle.1" 2>&1)" \
        "BOT-BOTTLE\(1\)"
else
    skip "man renders it" "man is not installed"
fi

# The installed binary, at its prefix, with the build tree's bottle-init out of reach.
BUILD_INIT=$BB_BUILD_DIR/src/guest/bottle-init
mkdir -p "$T/ws"
out=$(cd "$T/ws" && timeout 60 unshare -m --propagation private sh -c '
    mount --bind "$1" "$2" && mount --bind /dev/null "$3" &&
    exec "$2/bin/bot-bottle" run --backend namespace -- sh -c "echo in-bottle"' sh \
    "$D$PREFIX" "$PREFIX" "$BUILD_INIT" 2>&1)
is "the installed binary finds <prefix>/libexec/bot-bottle/bottle-init and runs a bottle" \
    "$out" "in-bottle"
out=$(cd "$T/ws" && timeout 60 unshare -m --propagation private sh -c '
    mount --bind "$1" "$2" && mount --bind /dev/null "$3" && mount --bind /dev/null "$4" &&
    exec "$2/bin/bot-bottle" run --backend namespace -- true' sh \
    "$D$PREFIX" "$PREFIX" "$BUILD_INIT" "$PREFIX/libexec/bot-bottle/bottle-init" 2>&1)
like "(control: without it, run says where it looked)" "$out" "bottle-init was not found \\(looked next to the executable and in libexec\\)"

done_testing

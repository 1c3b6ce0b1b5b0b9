# shellcheck shell=bash
# tests/unit/tap.sh: sourced by the shell unit tests (test-build-guest-kernel.sh,
# test-fetch-stock-kernel.sh) for what they share: a scratch directory and TAP result lines.
#
# tap_scratch NAME: $t is a new directory /tmp/NAME.XXXXXX, removed on EXIT.
#
# ok DESCRIPTION CONDITION...: runs CONDITION; prints "ok N - DESCRIPTION", or "not ok ..."
# and counts the failure in $fails.
#
# tap_done: exits 0 when no check failed, else 1.

n=0
fails=0

tap_scratch() {
    t=$(mktemp -d "/tmp/$1.XXXXXX")
    trap 'rm -rf "$t"' EXIT
}

ok() {
    local d=$1
    shift
    n=$((n + 1))
    if "$@"; then echo "ok $n - $d"; else echo "not ok $n - $d"; fails=$((fails + 1)); fi
}

tap_done() {
    exit $((fails > 0))
}

#!/usr/bin/env bash
# Run libFuzzer targets from build-fuzz/ (make fuzz builds them).
#   scripts/fuzz.sh                  list the targets
#   scripts/fuzz.sh TARGET [SECONDS] fuzz one target (default 60 s), new inputs go to a scratch
#                                    corpus; at the end they are merged (minimised) into
#                                    tests/fuzz/corpus/TARGET
#   scripts/fuzz.sh all [SECONDS]    every target in turn
# Crashers are written to tests/fuzz/ as crash-*; once fixed, move them to
# tests/fuzz/regress/TARGET/ with a name that says what they were.
set -euo pipefail
cd "$(dirname "$0")/.."
bdir=build-fuzz
[ -d "$bdir" ] || { echo "fuzz: run 'make fuzz' first" >&2; exit 2; }
targets=$(find "$bdir/tests/fuzz" -maxdepth 1 -type f -executable -name 'fuzz-*' -printf '%f\n' |
    sed 's/^fuzz-//' | sort)
if [ $# -eq 0 ]; then
    echo "$targets"
    exit 0
fi
secs=${2:-60}
run_one() {
    local t=$1 corpus=tests/fuzz/corpus/$1 scratch
    scratch=$(mktemp -d)
    mkdir -p "$corpus"
    cp -r "$corpus"/. "$scratch"/ 2>/dev/null || true
    echo "fuzz: $t for ${secs}s"
    "$bdir/tests/fuzz/fuzz-$t" -max_total_time="$secs" -artifact_prefix=tests/fuzz/ \
        -print_final_stats=1 "$scratch" ${FUZZ_ARGS:-} || { rm -rf "$scratch"; return 1; }
    "$bdir/tests/fuzz/fuzz-$t" -merge=1 "$corpus" "$scratch" >/dev/null 2>&1 || true
    rm -rf "$scratch"
}
if [ "$1" = all ]; then
    for t in $targets; do run_one "$t"; done
else
    run_one "$1"
fi

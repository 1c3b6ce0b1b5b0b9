#!/usr/bin/env bash
# The lint suite: clang-format (dry run, as errors) and scripts/checksrc.sh. TAP output.
set -uo pipefail
src=${1:-$(dirname "$0")/..}
cd "$src"
echo "1..3"
files=$(git ls-files '*.c' '*.h' 2>/dev/null)
if out=$(clang-format --dry-run -Werror $files 2>&1); then
    echo "ok 1 - clang-format"
else
    echo "$out" | head -40 | sed 's/^/# /'
    echo "not ok 1 - clang-format (run: make format)"
fi
if out=$(scripts/checksrc.sh . 2>&1); then
    echo "ok 2 - checksrc (banned functions, comments, whitespace)"
else
    echo "$out" | head -40 | sed 's/^/# /'
    echo "not ok 2 - checksrc"
fi
# cppcheck: the warning and portability classes (style is clang-format's and checksrc's job).
if out=$(cppcheck --quiet --enable=warning,portability --inline-suppr --error-exitcode=1 \
    --suppress=missingIncludeSystem -I src -D__GNUC__ -D_GNU_SOURCE src 2>&1); then
    echo "ok 3 - cppcheck"
else
    echo "$out" | head -40 | sed 's/^/# /'
    echo "not ok 3 - cppcheck"
fi

#!/usr/bin/env bash
# The lint suite: clang-format (dry run, as errors), scripts/checksrc.sh (with the layering
# check), cppcheck, and a self-test showing the layering check fails on a planted violation.
# TAP output. clang-tidy is the suite's other test (scripts/clang-tidy.sh: it takes minutes).
set -uo pipefail
src=${1:-$(dirname "$0")/..}
cd "$src"
echo "1..5"
files=$(git ls-files '*.c' '*.h' 2>/dev/null)
if out=$(clang-format --dry-run -Werror $files 2>&1); then
    echo "ok 1 - clang-format"
else
    echo "$out" | head -40 | sed 's/^/# /'
    echo "not ok 1 - clang-format (run: make format)"
fi
if out=$(scripts/checksrc.sh . 2>&1); then
    echo "ok 2 - checksrc (banned functions, comments, whitespace, include layering)"
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
# The layering check must fail on a lower folder including a higher one, naming file:line and
# the rule (a temp copy of src/ with one planted include), and pass on the unchanged copy.
tmp=$(mktemp -d)
cp -r src "$tmp/"
if out=$(scripts/check-layers.sh "$tmp" 2>&1); then
    sed -i '0,/^#include "common\//s//#include "supervisor\/supervisor.h"\n&/' "$tmp/src/policy/policy.c"
    line=$(grep -n '#include "supervisor/supervisor.h"' "$tmp/src/policy/policy.c" | cut -d: -f1)
    if out=$(scripts/check-layers.sh "$tmp" 2>&1); then
        echo "$out" | head -20 | sed 's/^/# /'
        echo "not ok 4 - the layering check fails on a planted violation (it passed)"
    elif grep -q "^src/policy/policy.c:$line: src/policy may not include \"supervisor/supervisor.h\" (src/policy may include: common;" <<<"$out"; then
        echo "ok 4 - the layering check fails on a planted violation, naming file:line and the rule"
    else
        echo "$out" | head -20 | sed 's/^/# /'
        echo "not ok 4 - the layering check failed without naming src/policy/policy.c:$line and the rule"
    fi
else
    echo "$out" | head -20 | sed 's/^/# /'
    echo "not ok 4 - the layering check fails on an unchanged copy of src/"
fi
rm -rf "$tmp"
# docs/architecture.md carries exactly the table the check enforces, between its markers.
if out=$(diff <(scripts/check-layers.sh --table) \
    <(sed -n '/^<!-- layers:/,/^<!-- end layers -->/{/^<!--/d;p}' docs/architecture.md) 2>&1); then
    echo "ok 5 - docs/architecture.md has the layering table of scripts/check-layers.sh"
else
    echo "$out" | head -20 | sed 's/^/# /'
    echo "# paste the output of scripts/check-layers.sh --table into docs/architecture.md"
    echo "not ok 5 - docs/architecture.md has the layering table of scripts/check-layers.sh"
fi

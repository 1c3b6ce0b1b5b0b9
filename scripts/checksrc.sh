#!/usr/bin/env bash
# Lint: banned functions and C++ comments in committed C sources. Prints offending lines and
# exits 1 when any is found; also runs scripts/check-layers.sh (include edges between the
# folders of src/). Usage: scripts/checksrc.sh [SOURCE_DIR]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "${1:-$here/..}"
banned='strcpy|strcat|sprintf|vsprintf|strncpy|strtok|gets|atoi|atol|atoll|strtol|strtoul|strtoll|strtoull|dup|basename'
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find src tests -name '*.[ch]')
[ -n "$files" ] || { echo "checksrc: no sources"; exit 1; }
bad=0
# \b(name)\s*\( not preceded by a letter/underscore/dot/arrow (so snprintf, dup2, foo.dup( pass)
if grep -nE "(^|[^A-Za-z0-9_.>])($banned)[[:space:]]*\(" $files | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(\*|/\*)'; then
    echo "checksrc: banned function used (see STYLE.md section 7)"
    bad=1
fi
if grep -nE '^[^"]*//' $files | grep -vE '"[^"]*//|://' ; then
    echo "checksrc: C++ comment (use /* */)"
    bad=1
fi
if grep -nE '[[:space:]]+$' $files; then
    echo "checksrc: trailing whitespace"
    bad=1
fi
# Which folder of src/ may include which (the table and its reasons are in that script).
if ! "$here/check-layers.sh" .; then
    bad=1
fi
exit $bad

#!/usr/bin/env bash
# Print "N passed, N failed, N skipped" over the meson test logs of the given build dirs
# (default: build build-asan). Each meson test counts once per build dir.
set -uo pipefail
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(build build-asan)
python3 - "${dirs[@]}" <<'PY'
import json, sys
passed = failed = skipped = 0
for d in sys.argv[1:]:
    try:
        lines = open(f"{d}/meson-logs/testlog.json").read().splitlines()
    except OSError:
        continue
    for line in lines:
        if not line.strip():
            continue
        r = json.loads(line).get("result", "")
        if r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed += 1
            print(f"FAILED: {d}: {json.loads(line).get('name')} ({r})")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY

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
        try:
            rec = json.loads(line)
        except ValueError:
            # A damaged log (e.g. two runs writing it at once) never passes silently.
            failed += 1
            print(f"FAILED: {d}: an unreadable line in meson-logs/testlog.json")
            continue
        r = rec.get("result", "")
        if r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed += 1
            print(f"FAILED: {d}: {rec.get('name')} ({r})")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY

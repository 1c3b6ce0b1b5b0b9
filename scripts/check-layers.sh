#!/usr/bin/env bash
# Lint: the include edges between the folders of src/ (STYLE.md section 12 item 9). A file in
# src/F may include "G/..." only when G is F itself or listed for F below; every other
# `#include "folder/..."`, a relative `#include "../..."`, and a folder missing from the table
# fail with FILE:LINE and the rule. Lower layers never include higher ones.
#
# Usage: scripts/check-layers.sh [SOURCE_DIR]   check SOURCE_DIR/src (default: this tree)
#        scripts/check-layers.sh --table        the table as markdown (docs/architecture.md
#                                               carries exactly this; lint compares them)
set -uo pipefail

# layer | folder | may include (besides itself) | what it owns
# Bottom to top. Keep docs/architecture.md in step: `scripts/check-layers.sh --table`.
RULES='0|common||log, buf, str, net addresses, loop (epoll, timers, signals), xalloc, syscalls, cleanup.h, caps (limits.h); also built into the static bottle-init
1|policy|common|the allowlist: host patterns, CIDRs, the verdict and its reason
1|channel|common|the host<->guest channel: frames (proto), the stream mux, the relays, the connection hand-off to the daemon
1|dlp|common|data-loss checks: the streaming scanner for credentials and secret formats, host-name entropy
1|audit|common|the audit log: JSON records, aggregation, rotation, failing closed, the hash chain; its reader (parse, follow, verify)
2|proxy|common policy audit dlp|the HTTP/1 head parser, the forward proxy state machine, upstream resolution (c-ares)
2|dns|common policy audit dlp|the DNS wire format and the DNS filter
2|config|common policy dlp|INI files into a validated struct bb_config; the trust store of approved files
3|egress|common policy dlp channel audit proxy dns config|the egress daemon: one loop running proxy and DNS filter, reload (re-reads the config files it was given), its seccomp confinement
3|agent|common config|agent profiles (built-in claude and codex, [agent "NAME"] from the config), the agent cache and state directories, installed versions
3|guest|common channel|bottle-init (PID 1 of a bottle), its rootfs, network and seccomp filter; the bottle spec
4|backend|common channel guest|backend ops (probe, create, start, wait, request_stop, kill, exec, destroy), the namespace backend, the microvm pieces (probe, QEMU argv, initramfs), cgroups
5|supervisor|common policy channel audit config egress guest backend|one bottle per `run`: state (state.c, usable without a supervisor), alias lease, the daemon (daemon.c, fork+exec), notices, the control socket, host relay, stdio and tty, workspace protection
6|cli|common policy dlp audit proxy config agent egress guest backend supervisor|main and one file per verb; option parsing shared in args.c'

if [ "${1:-}" = --table ]; then
    echo "| layer | folder | owns | may include |"
    echo "|---|---|---|---|"
    while IFS='|' read -r layer folder deps owns; do
        echo "| $layer | src/$folder | $owns | ${deps:-(nothing)} |"
    done <<<"$RULES"
    exit 0
fi

cd "${1:-$(dirname "$0")/..}" || exit 1
[ -d src ] || { echo "check-layers: no src/ in $PWD"; exit 1; }
declare -A allowed
while IFS='|' read -r _ folder deps _; do
    allowed[$folder]=" $folder $deps "
done <<<"$RULES"

bad=0
for dir in src/*/; do
    folder=${dir#src/}
    folder=${folder%/}
    if [ -z "${allowed[$folder]+set}" ]; then
        echo "src/$folder: a folder missing from the layering table in scripts/check-layers.sh"
        bad=1
    fi
done
while IFS= read -r hit; do
    file=${hit%%:*}
    rest=${hit#*:}
    line=${rest%%:*}
    target=$(sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]*)".*/\1/p' <<<"${rest#*:}")
    folder=${file#src/}
    folder=${folder%%/*}
    case $target in
    ../* | */../* | ./*)
        echo "$file:$line: relative include \"$target\": name it from src/ (\"folder/file.h\")"
        bad=1
        continue
        ;;
    */*) ;;
    *) continue ;; # a header next to the file
    esac
    to=${target%%/*}
    [ -n "${allowed[$folder]+set}" ] || continue # reported above
    if [[ ${allowed[$folder]} != *" $to "* ]]; then
        deps=$(echo ${allowed[$folder]# $folder })
        echo "$file:$line: src/$folder may not include \"$target\" (src/$folder may include: ${deps:-only itself}; the table is in scripts/check-layers.sh)"
        bad=1
    fi
done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' src --include='*.c' --include='*.h' | sort)
[ $bad = 0 ] || echo "check-layers: include edge not allowed (STYLE.md section 12 item 9)"
exit $bad

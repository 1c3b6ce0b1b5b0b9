#!/usr/bin/env bash
# bench/proxy-syscalls.sh: count the egress daemon's syscalls (strace -c -f) for a fixed run, to
# compare two builds without timing anything (safe on a busy machine): N keep-alive GETs on one
# connection, M GETs on fresh connections, K CONNECT tunnels each carrying one GET, all through
# tests/integration/helpers/fake-upstream.py on 127.0.0.1.
#
# Usage: bench/proxy-syscalls.sh [BOT-BOTTLE-BINARY]   (N, M, K from the environment: 200 50 20)
# Compare the successful sendto/recvfrom/splice counts; epoll_* and EAGAIN counts vary with timing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
BB=${1:-$here/../build/src/cli/bot-bottle}
N=${N:-200} M=${M:-50} K=${K:-20}
T=$(mktemp -d)
HP=$((20000 + RANDOM % 10000)) PP=$((HP + 1))
UP= SP=
cleanup() {
    [ -n "$SP" ] && kill -TERM "$(pgrep -P "$SP")" 2>/dev/null && wait "$SP" 2>/dev/null
    [ -n "$UP" ] && kill "$UP" 2>/dev/null && wait "$UP" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

python3 "$here/../tests/integration/helpers/fake-upstream.py" --http "$HP" --ready "$T/ready" &
UP=$!
for _ in $(seq 50); do [ -e "$T/ready" ] && break; sleep 0.1; done
strace -f -c -o "$T/strace.txt" "$BB" egress --no-default-config --listen "127.0.0.1:$PP" \
    --allow-cidr "127.0.0.1/32:$HP" --upstream-dns 127.0.0.1:1 --audit "$T/audit.log" -q &
SP=$!
for _ in $(seq 50); do
    curl -s -o /dev/null --max-time 1 -x "http://127.0.0.1:$PP" "http://127.0.0.1:$HP/hello" && break
    sleep 0.2
done
: >"$T/audit.log"
urls=()
for _ in $(seq "$N"); do urls+=("http://127.0.0.1:$HP/hello"); done
curl -s -x "http://127.0.0.1:$PP" "${urls[@]}" >/dev/null
for _ in $(seq "$M"); do
    curl -s -o /dev/null -x "http://127.0.0.1:$PP" "http://127.0.0.1:$HP/size/100000"
done
for _ in $(seq "$K"); do
    curl -s -o /dev/null -p -x "http://127.0.0.1:$PP" "http://127.0.0.1:$HP/size/100000"
done
sleep 0.5
kill -TERM "$(pgrep -P "$SP")"
wait "$SP" || true
SP=
echo "GETs: $((N + M + K)); audit records with status 200: $(grep -c '"status":200' "$T/audit.log")"
cat "$T/strace.txt"

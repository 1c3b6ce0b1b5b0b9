#!/usr/bin/env bash
# Agent profiles, for real (docs/agents.md): `bot-bottle agent install` installs Claude Code and
# Codex from the npm registry this machine reaches (`npm config get registry`) inside a bottle
# whose only allowed host is that registry; `run claude --version` / `run codex --version` run
# them from bot-bottle's cache; the audit logs show which hosts each bottle reached. Then,
# without the network: a profile's allowlist seen from its DNS filter (a local stub upstream),
# the per-workspace state directory surviving from one bottle to the next, `run -- NAME`,
# `--agent`, and user profiles.
#
# The registry's name resolves to a TEST-NET address here, which the SSRF guard refuses, so the
# install (only) adds `--allow-cidr ADDR/32` for that one address. When the registry cannot be
# reached, the install part says so and skips. The install is cached across runs in
# build/agent-cache of the source tree (installed again when older than a day, or with
# BB_AGENT_REINSTALL=1), so `make check` does not download ~500 MB each time; every run still
# starts one install bottle (a version that does not exist: one small metadata request).
source "$(dirname "$0")/lib.sh"
need_bottles "agent profiles"

BE=namespace
export XDG_DATA_HOME="$T/data"
# One cache for build/ and build-asan/ (make check runs this test in both): the source tree's
# build/ (git-ignored), or BB_AGENT_TEST_CACHE.
export BOT_BOTTLE_AGENT_CACHE="${BB_AGENT_TEST_CACHE:-$BB_SOURCE_DIR/build/agent-cache}"
unset ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN ANTHROPIC_BASE_URL OPENAI_API_KEY OPENAI_BASE_URL
mkdir -p "$T/ws" "$T/ws2"

# hosts ... : every host in the JSON audit lines on stdin, one "kind host decision" a line.
hosts() { "$PY" -c '
import json, sys
for l in sys.stdin:
    r = json.loads(l)
    if r.get("host"):
        print(r["kind"], r["host"], r["decision"])' | sort -u; }

# ---- install, for real ----
REG=$(npm config get registry 2>/dev/null)
REGHOST=$("$PY" -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).hostname or "")' "${REG:-x}")
ADDR=$(getent hosts "$REGHOST" 2>/dev/null | awk '{print $1; exit}')
reachable=0
if [ -n "$REGHOST" ] && [ -n "$ADDR" ] &&
    [ "$(timeout 20 curl -s -o /dev/null -w '%{http_code}' "$REG" 2>/dev/null)" != 000 ]; then
    reachable=1
fi
diag "registry $REG ($REGHOST -> ${ADDR:-no address}); reachable: $reachable"

for agent in claude codex; do
    if [ $reachable = 0 ]; then
        skip "agent install $agent" "the npm registry '${REG:-unset}' cannot be reached from here"
        continue
    fi
    stamp="$BOT_BOTTLE_AGENT_CACHE/$agent/bin/$agent"
    if [ -x "$stamp" ] && [ -z "${BB_AGENT_REINSTALL:-}" ] &&
        [ -n "$(find "$BOT_BOTTLE_AGENT_CACHE/$agent" -maxdepth 0 -mmin -1440)" ]; then
        diag "$agent: using the install cached in $BOT_BOTTLE_AGENT_CACHE/$agent ($(stat -c %y "$BOT_BOTTLE_AGENT_CACHE/$agent" | cut -d. -f1); BB_AGENT_REINSTALL=1 installs again)"
        continue
    fi
    out=$(timeout 900 "$BB" agent install -b $BE --allow-cidr "$ADDR/32" "$agent" 2>&1)
    rc=$?
    is "agent install $agent exits 0" "$rc" 0 || diag "$out"
    like "... and says which version it installed and where" "$out" \
        "installed $agent [0-9][^ ]* \(@[a-z-]+/[a-z-]+\) in $BOT_BOTTLE_AGENT_CACHE/$agent"
    bottle=$(sed -n 's/.*audit: bot-bottle logs \([^ ]*\) .*/\1/p' <<<"$out")
    "$BB" logs "$bottle" --json >"$T/install-$agent.json" 2>"$T/install-$agent.err"
    got=$(hosts <"$T/install-$agent.json")
    diag "$agent install reached: $(tr '\n' ';' <<<"$got")"
    like "... its bottle reached the registry ($REGHOST)" "$got" "^connect $REGHOST allow"
    is "... and nothing else (no other host, no denial)" \
        "$(grep -v "^[a-z]* $REGHOST allow\$" <<<"$got")" ""
    is "... and left no staging directory behind" \
        "$(find "$BOT_BOTTLE_AGENT_CACHE" "$BOT_BOTTLE_AGENT_CACHE.staging" -maxdepth 1 -name ".$agent.*" 2>/dev/null | wc -l)" 0
done
# The install path every time, at the cost of one small metadata request: a version that does
# not exist fails in npm, inside the bottle, and changes nothing in the cache.
if [ $reachable = 1 ]; then
    before=$(ls -l --time-style=full-iso "$BOT_BOTTLE_AGENT_CACHE" 2>/dev/null | grep -v install.log)
    out=$(timeout 300 "$BB" agent install -b $BE --allow-cidr "$ADDR/32" codex@0.0.0-no-such-version 2>&1)
    rc=$?
    like "agent install of a missing version fails with npm's status and its output" "$rc:$out" \
        "^[1-9][0-9]*:.*installing codex failed.*the install bottle exited with status.*(ETARGET|No matching version|notarget)"
    is "... and changes nothing in the cache" \
        "$(ls -l --time-style=full-iso "$BOT_BOTTLE_AGENT_CACHE" 2>/dev/null | grep -v install.log)" "$before"
    is "... and leaves no staging directory" "$(ls -A "$BOT_BOTTLE_AGENT_CACHE.staging" 2>/dev/null)" ""
fi

# The default backend (microvm) too, when it runs here.
BACKENDS=namespace
if (cd "$T/ws" && timeout 120 "$BB" run --backend microvm -- true) >/dev/null 2>"$T/microvm.err"; then
    BACKENDS="namespace microvm"
else
    diag "the microvm backend does not run here: $(tail -1 "$T/microvm.err")"
fi

out=$("$BB" agent ls 2>&1)
json=$("$BB" agent ls --json 2>&1)
for agent in claude codex; do
    if [ ! -x "$BOT_BOTTLE_AGENT_CACHE/$agent/bin/$agent" ]; then
        skip "run $agent --version" "not installed (the registry cannot be reached)"
        continue
    fi
    version=$("$PY" -c 'import json, sys
for a in json.load(sys.stdin)["agents"]:
    if a["name"] == sys.argv[1]: print(a["version"] or "")' "$agent" <<<"$json")
    like "agent ls shows $agent's installed version" "$(grep "^$agent " <<<"$out")" "^$agent +$version +@"
    for be in $BACKENDS; do
        out2=$(cd "$T/ws" && timeout 300 "$BB" run -v -b $be --name "ver-$agent-$be" "$agent" --version 2>"$T/ver-$agent.err")
        rc=$?
        is "run -b $be $agent --version exits 0" "$rc" 0 || diag "$(cat "$T/ver-$agent.err")"
        like "... and prints the installed version ($version)" "$out2" "(^| )$(sed 's/[.]/[.]/g' <<<"$version")([^0-9.]|$)"
        like "... run from bot-bottle's cache, mounted read-only" "$(cat "$T/ver-$agent.err")" \
            "agent $agent: $agent from $BOT_BOTTLE_AGENT_CACHE/$agent, mounted read-only at /opt/bot-bottle/agents/$agent"
        "$BB" logs "ver-$agent-$be" --json >"$T/ver-$agent.json" 2>"$T/ver-$agent.logerr"
        is "... its audit log is complete (ends with the bottle's end record)" \
            "$?:$(tail -1 "$T/ver-$agent.json" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["kind"])')" "0:end"
        got=$(hosts <"$T/ver-$agent.json")
        diag "$agent --version ($be) reached: ${got:-nothing}"
        case $agent in
        claude) api=api.anthropic.com ;;
        codex) api=api.openai.com ;;
        esac
        like "... its profile allows its API host $api" "$(cat "$T/ver-$agent.err")" \
            "agent $agent: allows $api(,|$)"
        is "... and nothing outside its profile was reached or refused" \
            "$(grep -Ev " (api\.anthropic\.com|claude\.ai|platform\.claude\.com|console\.anthropic\.com|api\.openai\.com|chatgpt\.com|auth\.openai\.com) allow$" <<<"$got")" ""
    done
done

# ---- the profiles' allowlists, seen from the DNS filter (a local stub as the upstream) ----
dns_stub
mkdir -p "$T/cfg"
# The built-in profiles with a shell as their command: same hosts, variables and state.
cat >"$T/cfg/probe.ini" <<INI
[agent "claude"]
command = /bin/sh
[agent "codex"]
command = /bin/sh
[agent "probe"]
command = /bin/sh
allow = probe.example
env = PROBE_FIXED=fixed
env = PROBE_PASS
state = .probe/state
state_env = PROBE_HOME
INI
names="api.anthropic.com claude.ai platform.claude.com statsig.anthropic.com sentry.io storage.googleapis.com registry.npmjs.org api.openai.com chatgpt.com auth.openai.com api.github.com"
for agent in claude codex; do
    out=$(cd "$T/ws" && timeout 60 "$BB" run -b $BE -c "$T/cfg/probe.ini" --upstream-dns "127.0.0.1:$DNS" \
        --name "dns-$agent" "$agent" -c 'for n in '"$names"'; do getent hosts $n >/dev/null && echo "$n yes" || echo "$n no"; done; env' 2>&1)
    "$BB" logs "dns-$agent" --json 2>/dev/null | hosts >"$T/dns-$agent.txt"
    case $agent in
    claude) want="api.anthropic.com claude.ai platform.claude.com" ;;
    codex) want="api.openai.com chatgpt.com auth.openai.com" ;;
    esac
    resolved=$(awk '$2 == "yes" {print $1}' <<<"$out" | sort | tr '\n' ' ')
    is "$agent's bottle resolves exactly its profile's hosts" "$resolved" "$(tr ' ' '\n' <<<"$want" | sort | tr '\n' ' ')"
    like "... the DNS filter refused telemetry and update hosts" "$(cat "$T/dns-$agent.txt")" \
        "dns (statsig.anthropic.com|api.github.com) deny"
    unlike "... refused names never reached the upstream" "$(cat "$T/dns.log")" "statsig|sentry|googleapis|npmjs|github"
done
out=$(cd "$T/ws" && timeout 60 "$BB" run -b $BE -c "$T/cfg/probe.ini" --upstream-dns "127.0.0.1:$DNS" claude -c 'curl -s -o /dev/null https://downloads.claude.ai/x; curl -s -o /dev/null https://o1.ingest.sentry.io/; curl -s -o /dev/null https://other.example/' 2>&1)
like "a host the profile leaves out: the notice says why" "$out" \
    "blocked downloads.claude.ai \(not in the allowlist; the claude profile leaves it out: auto-update; 'bot-bottle agent install claude' updates it\); to allow it anyway, add --allow downloads.claude.ai"
like "... a *.SUFFIX entry covers the names below it" "$out" \
    "blocked o1.ingest.sentry.io \(not in the allowlist; the claude profile leaves it out: error reports, turned off\)"
like "... any other host gets the usual notice" "$out" \
    "blocked other.example \(not in the allowlist\); to allow it, add --allow other.example"
like "claude's bottle gets telemetry and auto-update turned off" "$(cd "$T/ws" && "$BB" run -b $BE -c "$T/cfg/probe.ini" claude -c env 2>&1)" \
    "DISABLE_TELEMETRY=1"
out=$(cd "$T/ws" && ANTHROPIC_API_KEY=sk-test-value timeout 60 "$BB" run -b $BE -c "$T/cfg/probe.ini" claude -c 'echo "key=$ANTHROPIC_API_KEY"; echo "cfg=$CLAUDE_CONFIG_DIR"; echo "base=${ANTHROPIC_BASE_URL-unset}"; cat /proc/self/environ; grep -rl sk-test-value / --exclude-dir=proc --exclude-dir=sys --exclude-dir=usr --exclude-dir=opt 2>/dev/null' 2>&1)
like "... its API key set on the host becomes a placeholder in the bottle" "$out" "key=bb-cred-anthropic-api-key-[0-9a-f]{32}"
like "... and bot-bottle says where the key goes instead" "$out" \
    "ANTHROPIC_API_KEY stays on the host: .* x-api-key header of requests to api.anthropic.com:443"
unlike "... the key itself is nowhere in the bottle (variables, files)" "$out" "sk-test-value"
like "... CLAUDE_CONFIG_DIR names its state directory" "$out" "cfg=$HOME/\.claude"
like "... an unset variable stays unset" "$out" "base=unset"

# ---- API keys stay on the host: the agents against a fake API (loopback, a test CA) ----
# The real Claude Code asks a fake Messages API for a reply; the key the origin receives is the
# host's, the bottle only ever had the placeholder. ANTHROPIC_BASE_URL names the fake's port.
test_origin_cert api.anthropic.com api.openai.com
API=$(free_port) ADNS=$(free_port)
REALKEY=sk-ant-REAL-agent-key-4d1e
bg "$PY" "$HELPERS/fake-upstream.py" --https "$API" --cert "$T/srv.pem" --key "$T/srv.key" \
    --dns "$ADNS" --zone api.anthropic.com=127.0.0.1 --zone api.openai.com=127.0.0.1 \
    --log "$T/api.log" --log-headers --messages-key "$REALKEY" --ready "$T/api.ready"
wait_file "$T/api.ready" || { echo "Bail out! fake API did not start"; exit 1; }
printf '[tls]\nextra_ca = %s\n' "$T/oca.pem" >"$T/cfg/api.ini"
# (the second API host is inspected, so a placeholder sent there is seen and refused)
{ cat "$T/cfg/probe.ini" "$T/cfg/api.ini"; printf '[egress]\ninspect = api.anthropic.com:%s\n' "$API"; } >"$T/cfg/api-probe.ini"
apirun() { # apirun BACKEND CONFIG ARGS...: a bottle that reaches the fake API only
    local be=$1 cfg=$2
    shift 2
    (cd "$T/ws" && timeout 300 "$BB" run -b "$be" --no-default-config -c "$cfg" \
        -a "api.anthropic.com:$API" -a "api.openai.com:$API" --allow-cidr 127.0.0.1/32 \
        --upstream-dns "127.0.0.1:$ADNS" "$@")
}
for be in $BACKENDS; do
    if [ ! -x "$BOT_BOTTLE_AGENT_CACHE/claude/bin/claude" ]; then
        skip "claude -p against a fake API ($be)" "claude is not installed (the registry cannot be reached)"
        continue
    fi
    : >"$T/api.log"
    out=$(ANTHROPIC_API_KEY=$REALKEY ANTHROPIC_BASE_URL=https://api.anthropic.com:$API \
        apirun "$be" "$T/cfg/api.ini" --name "api-claude-$be" claude -p "say hi" 2>"$T/api-claude.err")
    rc=$?
    is "claude -p in a $be bottle gets the fake API's reply with the host's key" "$rc:$out" \
        "0:bottled reply: ok" || diag "$(tail -5 "$T/api-claude.err")"
    like "... the origin received the host's key in x-api-key" "$(cat "$T/api.log")" "hdr x-api-key: $REALKEY"
    like "... over the intercepted connection, asking for /v1/messages" "$(cat "$T/api.log")" \
        "http POST api.anthropic.com:$API /v1/messages"
    "$BB" logs "api-claude-$be" --json >"$T/api-claude.json" 2>/dev/null
    unlike "... the key is not in the audit log" "$(cat "$T/api-claude.json")" "$REALKEY"
    unlike "... nor in what bot-bottle printed" "$(cat "$T/api-claude.err")" "$REALKEY"
done
# codex's key (OPENAI_API_KEY, a bearer token) the same way, with its profile around a shell
: >"$T/api.log"
cat "$T/cfg/api-probe.ini" - >"$T/cfg/api-codex.ini" <<INI
[credential "openai-api-key"]
host = api.openai.com
port = $API
header = authorization
value = env:OPENAI_API_KEY
INI
out=$(OPENAI_API_KEY=$REALKEY apirun $BE "$T/cfg/api-probe.ini" codex -c 'echo "key=$OPENAI_API_KEY"' 2>&1)
like "codex's OPENAI_API_KEY is a placeholder in the bottle" "$out" "key=bb-cred-openai-api-key-[0-9a-f]{32}"
like "... for api.openai.com:443, in Authorization" "$out" \
    "OPENAI_API_KEY stays on the host: .* authorization header of requests to api.openai.com:443"
unlike "... the key never reached the bottle" "$out" "$REALKEY"
# the swap itself: the fake API is not on port 443, so a credential of the same name for its
# port takes the profile's place (the user's wins)
out=$(OPENAI_API_KEY=$REALKEY apirun $BE "$T/cfg/api-codex.ini" codex -c \
    'echo "key=$OPENAI_API_KEY"; curl -sS -H "Authorization: Bearer $OPENAI_API_KEY" -H "content-type: application/json" -d "{}" https://api.openai.com:'"$API"'/v1/messages; echo; curl -s -o /dev/null -w "%{http_code} %header{x-bottle-block}\n" -H "Authorization: Bearer $OPENAI_API_KEY" https://api.anthropic.com:'"$API"'/v1/models' 2>&1)
like "the placeholder becomes the host's key in Authorization to api.openai.com" "$out" '"text": "bottled reply: ok"'
like "... and is refused towards another host (credential-misuse)" "$out" "403 credential-misuse"
unlike "... the key never reached the bottle" "$out" "$REALKEY"
out=$(ANTHROPIC_API_KEY=$REALKEY ANTHROPIC_BASE_URL=http://api.anthropic.com:$API \
    apirun $BE "$T/cfg/api-probe.ini" claude -c true 2>&1; echo "rc=$?")
like "a key with an http:// base URL is refused (it would go in clear)" "$out" \
    "ANTHROPIC_BASE_URL is 'http://.*must be an https://HOST\[:PORT\] URL \(or unset it\).*rc=125"
cat >"$T/cfg/own.ini" <<INI
[credential "mine"]
host = api.anthropic.com
port = $API
header = authorization
value = env:MY_OWN
env = ANTHROPIC_API_KEY
INI
out=$(MY_OWN=$REALKEY ANTHROPIC_API_KEY=ignored apirun $BE "$T/cfg/own.ini" -c "$T/cfg/probe.ini" claude -c 'echo "key=$ANTHROPIC_API_KEY"' 2>&1)
like "a credential of the user's for the same variable wins over the profile's" "$out" \
    "key=bb-cred-mine-[0-9a-f]{32}"
unlike "... and the profile's is not made" "$out" "stays on the host"

# ---- state: per agent and workspace, kept from one bottle to the next ----
(cd "$T/ws" && timeout 60 "$BB" run -b $BE -c "$T/cfg/probe.ini" claude -c 'echo onboarded >"$CLAUDE_CONFIG_DIR/marker"') >/dev/null 2>&1
out=$(cd "$T/ws" && timeout 60 "$BB" run -b $BE -c "$T/cfg/probe.ini" claude -c 'cat "$CLAUDE_CONFIG_DIR/marker"' 2>&1)
is "a file written in claude's config dir is there in the next bottle" "$out" onboarded
state=$(ls -d "$XDG_DATA_HOME"/bot-bottle/agents/claude/ws-* 2>/dev/null)
is "... kept in bot-bottle's state directory, outside the workspace" "$(cat "$state/marker" 2>/dev/null)" onboarded
is "... which is private (0700)" "$(stat -c %a "$state" 2>/dev/null)" 700
if [[ $BACKENDS == *microvm* ]]; then
    out=$(cd "$T/ws" && timeout 300 "$BB" run -b microvm -c "$T/cfg/probe.ini" claude -c 'cat "$CLAUDE_CONFIG_DIR/marker"' 2>/dev/null)
    is "... and in a microVM bottle of the same workspace" "$out" onboarded
fi
out=$(cd "$T/ws2" && timeout 60 "$BB" run -b $BE -c "$T/cfg/probe.ini" claude -c 'cat "$CLAUDE_CONFIG_DIR/marker" 2>/dev/null || echo none' 2>&1)
is "... another workspace has its own" "$out" none
out=$(cd "$T/ws" && timeout 60 "$BB" run -b $BE -c "$T/cfg/probe.ini" codex -c 'cat "$CODEX_HOME/marker" 2>/dev/null || echo none' 2>&1)
is "... and another agent too" "$out" none
out=$(cd "$T/ws" && timeout 60 "$BB" run -b $BE -c "$T/cfg/probe.ini" claude -c 'ls -a "$HOME"' 2>&1)
unlike "... the user's real home is not in the bottle" "$out" "^\.(bashrc|profile|npmrc)$"
out=$(cd "$T/ws" && XDG_DATA_HOME="$T/ws/.data" timeout 60 "$BB" run -b $BE -c "$T/cfg/probe.ini" claude -c true 2>&1; echo "rc=$?")
like "a state directory inside the workspace is refused" "$out" "state directory .* lies inside $T/ws, which the bottle can write.*rc=125"
mkdir -p "$T/data/bot-bottle/agents" "$BOT_BOTTLE_AGENT_CACHE"
out=$(cd "$T/data" && timeout 60 "$BB" run -b $BE -- true 2>&1; echo "rc=$?")
like "any bottle whose workspace holds the agents' state directories is refused" "$out" \
    "$T/data holds the agents' state directories .*rc=125"
out=$(cd "$T/ws" && timeout 60 "$BB" run -b $BE --mount "$BOT_BOTTLE_AGENT_CACHE:/data" -- true 2>&1; echo "rc=$?")
like "... and one with the agent cache as a read-write mount" "$out" "lies inside the agents' cache .*rc=125"
out=$(cd "$T/ws" && timeout 60 "$BB" run -b $BE --mount "$BOT_BOTTLE_AGENT_CACHE:/data:ro" -- true 2>&1; echo "rc=$?")
is "... but not a read-only one" "$out" "rc=0"

# ---- grammar: run NAME, run --agent NAME, run -- NAME, user profiles ----
out=$(cd "$T/ws" && PROBE_PASS=passed timeout 60 "$BB" run -b $BE -c "$T/cfg/probe.ini" --agent probe -- -c 'echo "$PROBE_FIXED $PROBE_PASS $PROBE_HOME"' 2>&1)
is "--agent NAME with a user profile: fixed and passed variables, its state variable" "$out" \
    "fixed passed $HOME/.probe/state"
out=$(cd "$T/ws" && timeout 60 "$BB" run -b $BE -c "$T/cfg/probe.ini" -- probe 2>&1; echo "rc=$?")
like "run -- NAME runs NAME as a plain command" "$out" "rc=127"
out=$(cd "$T/ws" && timeout 60 "$BB" run -b $BE --agent nosuch 2>&1; echo "rc=$?")
like "an unknown --agent is refused with the known ones" "$out" "no such agent profile \(built-in: claude, codex.*rc=125"
printf '[agent "bad"]\nallow = x.example\n' >"$T/cfg/bad.ini"
out=$(cd "$T/ws" && timeout 60 "$BB" run -b $BE -c "$T/cfg/bad.ini" bad 2>&1; echo "rc=$?")
like "a new profile without a command names its file and line" "$out" "bad.ini:1: \[agent \"bad\"\] has no command.*rc=125"
printf '[agent "claude"]\nbogus = 1\n' >"$T/cfg/bogus.ini"
out=$("$BB" agent ls -c "$T/cfg/bogus.ini" 2>&1; echo "rc=$?")
like "an unknown key in [agent] is an error" "$out" "bogus.ini:2: unknown key 'bogus' in \[agent \"claude\"\]"
done_testing

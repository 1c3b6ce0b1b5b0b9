#!/usr/bin/env bash
# The docker backend (an example; docs/backends.md "docker (example)"): no Docker engine exists
# on the test machines, so a fake `docker` (helpers/fake-docker) on PATH records every command
# the backend issues and runs the agent's command on the host. Checked: the exact commands
# (internal network, the egress sidecar with the policy, the agent on the internal network only
# with proxy variables and DNS at the sidecar, the workspace mounted, secrets passed through
# the environment, never argv), the exit status passed back, the "example" notice printed
# once, the teardown, and exit 125 with the reason and a fix when docker or its engine is
# missing. When the real docker CLI is installed, every recorded command is parsed by it too
# (against a socket that does not exist: nothing is sent anywhere). Not exercised: a real
# engine (networks, iptables, the sidecar actually filtering).
source "$(dirname "$0")/lib.sh"

REAL_DOCKER=$(command -v docker || true)
mkdir -p "$T/bin" "$T/empty" "$T/ws"
ln -s "$HELPERS/fake-docker" "$T/bin/docker"
export PATH="$T/bin:/usr/bin:/bin"
export FAKE_DOCKER_LOG="$T/docker.log"
export FAKE_DOCKER_IMAGE=bb-test-agent BOT_BOTTLE_DOCKER_IMAGE=bb-test-agent
DNS=$(free_port)
run() {
    (cd "$T/ws" && /usr/bin/timeout 60 "$BB" run --backend docker --upstream-dns "127.0.0.1:$DNS" "$@")
}

# --- a run: the commands, the status, the notice
: >"$FAKE_DOCKER_LOG"
out=$(SECRET_TOKEN=s3cr3t-value run --name dk1 -a example.com -e SECRET_TOKEN -- sh -c 'echo from-agent; exit 7' 2>"$T/err")
rc=$?
err=$(cat "$T/err")
log=$(cat "$FAKE_DOCKER_LOG")
cp "$FAKE_DOCKER_LOG" "$T/dk1.log"
is "the command's exit status comes back" "$rc" 7
is "its output reaches stdout" "$out" "from-agent"
is "the example notice is printed once" "$(grep -c 'docker backend is an example, not a tested security boundary' "$T/err")" 1
line() { grep -E -- "$1" "$FAKE_DOCKER_LOG" | head -1; }
int=$(line '^docker network create --internal ')
is "an internal network for the bottle" "$int" "docker network create --internal --label=org.bot-bottle.bottle=dk1 bb-dk1-int"
like "an outside network for the sidecar (not internal)" "$log" $'\ndocker network create --label=org.bot-bottle.bottle=dk1 bb-dk1-ext\n'
sidecar=$(line '^docker run -d ')
like "the sidecar runs bot-bottle egress on the internal network" "$sidecar" "--network=bb-dk1-int .* bot-bottle-egress bot-bottle egress "
like "... proxy and DNS filter on its addresses" "$sidecar" " --listen=0.0.0.0:3128 --dns=0.0.0.0:53 "
like "... with the bottle's policy" "$sidecar" "--no-default-config --allow example.com --upstream-dns 127.0.0.1:$DNS"
like "... appending to the bottle's audit log" "$sidecar" "--mount=type=bind\\\\,src=$T/state/logs/dk1.audit.log\\\\,dst=/var/log/bot-bottle/audit.log .* --audit=/var/log/bot-bottle/audit.log --audit-max-size=0"
like "... never pulled, no capabilities" "$sidecar" "--pull=never .*--cap-drop=ALL --security-opt=no-new-privileges"
like "... as the owner of the audit log (this process's user)" "$sidecar" " --user=$(id -u):$(id -g) "
is "the sidecar is connected to the outside network" "$(line '^docker network connect')" "docker network connect bb-dk1-ext bb-dk1-egress"
agent=$(grep -E '^docker run --rm ' "$FAKE_DOCKER_LOG" | head -1)
like "the agent runs on the internal network" "$agent" " --network=bb-dk1-int "
unlike "... and on no other (no host network, not the outside one)" "$agent" "--network=(host|bb-dk1-ext)|--net=|--network=bridge"
is "... exactly one --network" "$(grep -o -- '--network=' <<<"$agent" | wc -l)" 1
like "... its DNS is the sidecar's filter" "$agent" " --dns=172.30.5.2 "
for v in HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY; do
    like "... $v points at the sidecar" "$agent" " --env=$v=http://172.30.5.2:3128 "
done
like "... the workspace is mounted read-write at the same path" "$agent" " --mount=type=bind\\\\,src=$T/ws\\\\,dst=$T/ws --.*--workdir=$T/ws "
like "... protected workspace paths read-only" "$agent" "src=$T/ws/.git\\\\,dst=$T/ws/.git\\\\,readonly"
like "... with the limits" "$agent" "--memory=[0-9]+ --pids-limit=4096"
like "... image, then the command" "$agent" " bb-test-agent sh -c echo\\\\ from-agent\\\\;\\\\ exit\\\\ 7"
unlike "a secret passed with -e is not on docker's command line" "$log" "s3cr3t-value.*bb-test-agent"
like "... it reaches docker through its environment (--env=NAME)" "$log" $'--env=SECRET_TOKEN .*\nENV SECRET_TOKEN=s3cr3t-value\n'
order=$(grep -nE '^docker (network create --internal|run -d|network connect|inspect|run --rm)' "$FAKE_DOCKER_LOG" | cut -d: -f1 | tr '\n' ' ')
is "order: internal network, sidecar, connect, inspect, agent" "$(tr ' ' '\n' <<<"$order" | grep -c .)" 5
is "... in that order" "$order" "$(tr ' ' '\n' <<<"$order" | grep . | sort -n | tr '\n' ' ')"
like "teardown removes both containers, then both networks" "$log" $'docker rm -f bb-dk1\ndocker rm -f bb-dk1-egress\ndocker network rm bb-dk1-ext\ndocker network rm bb-dk1-int\n'
unlike "no egress daemon was started on the host (it is the sidecar)" "$(ls "$T/state/aliases" 2>/dev/null; cat "$T/err")" "egress: proxy listening"

# --- run-time policy changes cannot reach the sidecar: said plainly, not a socket error
: >"$FAKE_DOCKER_LOG"
run --name dk3 -- sh -c "touch $T/dk3.up; while [ ! -e $T/dk3.done ]; do sleep 0.05; done" >/dev/null 2>&1 &
dk3=$!
wait_file "$T/dk3.up" || touch "$T/dk3.up.missing"
err=$("$BB" allow dk3 example.org 2>&1)
rc=$?
touch "$T/dk3.done"
wait "$dk3"
check "a bottle of the docker backend ran" test -e "$T/dk3.up"
is "allow on a docker bottle fails (125)" "$rc" 125
like "... saying the sidecar takes no changes" "$err" "the docker backend's egress daemon runs outside bot-bottle and takes no changes; restart the bottle with the new policy"

# --- a path docker's --mount syntax cannot carry is refused, not spliced into the options
mkdir -p "$T/ws,dst=/etc"
: >"$FAKE_DOCKER_LOG"
err=$(cd "$T/ws,dst=/etc" && /usr/bin/timeout 60 "$BB" run --backend docker -- true 2>&1)
is "a workspace path with a comma: exit 125" "$?" 125
like "... saying why" "$err" "the path $T/ws,dst=/etc contains a comma, quote or newline, which docker's --mount syntax cannot carry"
unlike "... before anything was created" "$(cat "$FAKE_DOCKER_LOG")" "network create|run "

# --- stop: SIGTERM to the `docker run` client (docker forwards it to the container), then the
# teardown
: >"$FAKE_DOCKER_LOG"
run --name dk4 -- sh -c "touch $T/dk4.up; exec sleep 60" >/dev/null 2>&1 &
dk4=$!
wait_file "$T/dk4.up"
t0=$(date +%s)
"$BB" stop dk4 >/dev/null 2>&1
wait "$dk4"
rc=$?
is "stop ends a docker bottle: the command died of the SIGTERM (143)" "$rc" 143
check "... within the grace period, not by the kill after it" test $(($(date +%s) - t0)) -lt 5
like "... and the teardown ran" "$(cat "$FAKE_DOCKER_LOG")" $'docker rm -f bb-dk4\ndocker rm -f bb-dk4-egress\ndocker network rm bb-dk4-ext\ndocker network rm bb-dk4-int\n'

# --- the real CLI parses every command the backend issued (no engine: nothing is sent)
if [ -n "$REAL_DOCKER" ] && [ "$(readlink -f "$REAL_DOCKER")" != "$(readlink -f "$HELPERS/fake-docker")" ]; then
    bad=""
    while IFS= read -r l; do
        case "$l" in docker\ version*) continue ;; esac
        eval "set -- ${l#docker }"
        e=$(DOCKER_HOST="unix://$T/no-engine.sock" timeout 20 "$REAL_DOCKER" "$@" 2>&1 >/dev/null)
        grep -q 'Cannot connect to the Docker daemon' <<<"$e" || bad+="docker $* -> $e"$'\n'
    done < <(grep '^docker ' "$T/dk1.log")
    is "the real docker CLI ($("$REAL_DOCKER" --version)) accepts every command's flags ($(grep -c '^docker ' "$T/dk1.log") commands)" "$bad" ""
else
    skip "the real docker CLI accepts the flags" "no docker CLI is installed here"
fi

# --- unavailable: exit 125 before anything starts, with the reason and the fix
: >"$FAKE_DOCKER_LOG"
err=$(FAKE_DOCKER_NO_ENGINE=1 run -- true 2>&1)
rc=$?
is "no engine: exit 125" "$rc" 125
like "... says why and how to fix it" "$err" "no Docker engine answers .*Cannot connect to the Docker daemon.*start it \\(sudo systemctl start docker\\), get access to its socket, or point DOCKER_HOST at one; or pick another: --backend auto or --backend microvm"
unlike "... and nothing was created" "$(cat "$FAKE_DOCKER_LOG")" "network create|run "
err=$(PATH="$T/empty" run -- true 2>&1)
rc=$?
is "no docker CLI: exit 125" "$rc" 125
like "... says so, with the fix" "$err" "the docker CLI is not on PATH: install Docker Engine \\(https://docs.docker.com/engine/install/\\); or pick another: --backend auto"

# --- the sidecar image is missing: 125, how to build it, and what was made is removed
: >"$FAKE_DOCKER_LOG"
err=$(FAKE_DOCKER_FAIL=run-d run --name dk2 -- true 2>&1)
rc=$?
is "missing egress image: exit 125" "$rc" 125
like "... says how to build it" "$err" "No such image: bot-bottle-egress.*docker build -t bot-bottle-egress -f examples/docker/Dockerfile"
log=$(cat "$FAKE_DOCKER_LOG")
unlike "... the agent never started" "$log" "docker run --rm"
like "... the half-made sidecar and both networks are removed" "$log" $'docker rm -f bb-dk2-egress\ndocker network rm bb-dk2-ext\ndocker network rm bb-dk2-int\n'

# --- the compose example: the same shape (docker compose is not installed here: parsed as YAML)
compose="$BB_SOURCE_DIR/examples/docker/compose.yaml"
if "$PY" - "$compose" >"$T/compose.out" 2>&1 <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
nets, svc = c["networks"], c["services"]
agent, egress = svc["agent"], svc["egress"]
inner = [n for n, v in nets.items() if v and v.get("internal") is True]
assert len(inner) == 1, f"one internal network, got {inner}"
inner = inner[0]
assert list(agent["networks"]) == [inner], f"agent only on {inner}: {agent['networks']}"
assert "network_mode" not in agent, "agent has no network_mode"
assert set(egress["networks"]) == {inner, *[n for n in nets if n != inner]}, "sidecar on both"
ip = egress["networks"][inner]["ipv4_address"]
assert agent["dns"] == [ip] or agent["dns"] == ip, f"agent dns {agent['dns']} != sidecar {ip}"
env = agent["environment"]
for v in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
    assert env[v] == f"http://{ip}:3128", f"{v}={env.get(v)}"
cmd = egress["command"]
assert cmd[:2] == ["bot-bottle", "egress"] and "--listen" in cmd and "--dns" in cmd, cmd
print("ok")
PY
then
    check "the compose file: agent on an internal network only, DNS and proxy at the sidecar, sidecar on both" true
else
    check "the compose file: agent on an internal network only, DNS and proxy at the sidecar, sidecar on both" false
    diag "$(cat "$T/compose.out")"
fi
# (offline: config only parses and validates; Debian's docker-compose, from install-deps)
if command -v docker-compose >/dev/null 2>&1; then
    check "docker-compose config accepts the example" \
        env WORKSPACE="$T/ws" docker-compose -f "$compose" config -q
elif [ -n "$REAL_DOCKER" ] && "$REAL_DOCKER" compose version >/dev/null 2>&1; then
    check "docker compose config accepts the example" \
        env WORKSPACE="$T/ws" "$REAL_DOCKER" compose -f "$compose" config -q
else
    skip "docker compose config" "neither docker-compose nor the compose plugin is installed (scripts/install-deps.sh installs docker-compose)"
fi
done_testing

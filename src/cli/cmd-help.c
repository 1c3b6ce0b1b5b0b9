/*
 * bot-bottle help [TOPIC]: the user's reference, compiled in so that an installed binary
 * (and the notices, which point here) never depend on a source tree. The man page is made
 * from these texts and the verbs' --help (scripts/gen-man.sh).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/macro.h"

static const char notices_text[] =
    "Notices: what bot-bottle run says on stderr, and the fix\n"
    "\n"
    "Each blocked or failed host is said once per host and reason (once per port when the\n"
    "port matters), never inside the command's output. With -t the lines wait until the\n"
    "command exits, so they are never drawn over a full-screen program. --quiet turns them\n"
    "off. When anything was said, a last line names the bottle and its audit log, which has\n"
    "every decision (read it with: jq . FILE).\n"
    "\n"
    "blocked HOST (not in the allowlist); to allow it, add --allow HOST   [not-allowlisted]\n"
    "    HOST is not allowed. Add the --allow it names (or a pattern: --allow '*.example.com'),\n"
    "    or [egress] allow = HOST in the config file.\n"
    "blocked HOST (not in the allowlist; the claude profile leaves it out: WHY); ...\n"
    "    An agent profile leaves HOST out on purpose (telemetry, auto-update, plugins; see\n"
    "    'bot-bottle help agents'). Allow it only if you want what WHY names.\n"
    "blocked HOST port N (port-not-allowed: ...); to allow it, add --allow HOST:N\n"
    "    HOST is allowed on other ports (80 and 443 unless a pattern names one).\n"
    "blocked ADDR (ip-literal: ...); to allow it, add --allow-cidr ADDR/32\n"
    "    The program connected to an IP address, not a name. Allow the address, or use a name.\n"
    "blocked HOST (ssrf-private: it resolves to ADDR, ...); ... add --allow-cidr ADDR/32\n"
    "    An allowed name resolved to a private, loopback or reserved address (a way to reach\n"
    "    services on your network). If that is intended (a local registry), allow exactly\n"
    "    that address with --allow-cidr.\n"
    "blocked HOST (ssrf-metadata: ...)\n"
    "    A cloud metadata address (169.254.169.254 and similar): never allowed.\n"
    "blocked a request (bad-host: ...)\n"
    "    The target was not a valid host name; nothing to allow.\n"
    "blocked HOST (credential-misuse: ...)\n"
    "    A credential's placeholder (bb-cred-NAME-...) went to another host or port, into\n"
    "    the URL, the body, another header or a second header. bot-bottle puts the real\n"
    "    value only into the credential's own header to its own host (--credential).\n"
    "cut a response from HOST (credential-reflected: ...)\n"
    "    The credential's host sent the real value back (an echo of the request): the\n"
    "    connection was cut before those bytes reached the bottle.\n"
    "HOST failed (no-address): the name does not resolve\n"
    "    The host is allowed but has no address: check its spelling, or the resolver\n"
    "    (--upstream-dns ADDR[:PORT]; default: the host's).\n"
    "HOST failed (resolve-timeout) / (resolve-failed)\n"
    "    The resolver did not answer in time, or answered with an error: check\n"
    "    --upstream-dns, or the host's /etc/resolv.conf.\n"
    "HOST port N failed (connect-refused at ADDR)\n"
    "    Nothing listens on that port of that address.\n"
    "HOST port N failed (connect-timeout at ADDR) / (connect-failed)\n"
    "    The server did not accept the connection in time (a firewall, or it is down).\n"
    "HOST port N failed (upstream-closed) / (bad-upstream-response)\n"
    "    The server closed the connection early or sent something that is not HTTP.\n"
    "\n"
    "The same reasons are in the audit log (\"reason\") and in the proxy's answer to the\n"
    "program: 403 with X-Bottle-Block for a policy refusal, 502/504 with X-Bottle-Error for\n"
    "a failure. 'bot-bottle policy check' answers what run would decide for a target.\n";

static const char policy_text[] =
    "Policy: which hosts a bottle may reach\n"
    "\n"
    "The bottle reaches the network only through its egress proxy and DNS filter. They\n"
    "allow a host when a pattern matches it:\n"
    "\n"
    "  -a example.com        exactly that name, ports 80 and 443\n"
    "  -a '*.example.com'    every name below example.com (not example.com itself)\n"
    "  -a example.com:8443   that name, port 8443 only\n"
    "  --allow-cidr 203.0.113.0/24[:PORT]  IP-address targets in the range, and allowed\n"
    "                        names that resolve into it\n"
    "\n"
    "A pattern is a host name, not a URL: -a example.com, not -a https://example.com/.\n"
    "A pattern that covers a whole public suffix (*.com, *.co.uk) is refused unless\n"
    "--allow-public-suffix is given too.\n"
    "\n"
    "An allowed name must also resolve to a public address: private, loopback, link-local\n"
    "and reserved addresses are refused (ssrf-private) unless an --allow-cidr covers them;\n"
    "cloud metadata addresses are always refused.\n"
    "\n"
    "Try a target before running: bot-bottle policy check -a example.com\n"
    "https://example.com/ (with --upstream-dns or the host's resolver it also resolves the\n"
    "name and applies the address rules, like run).\n";

static const char config_text[] =
    "Config: the files behind the options\n"
    "\n"
    "bot-bottle reads $XDG_CONFIG_HOME/bot-bottle/config.ini (~/.config/bot-bottle/config.ini),\n"
    "then the project's ./bottle.ini once you approved its exact content with\n"
    "'bot-bottle trust bottle.ini' (a bottle can write that file; a changed one is refused\n"
    "with what changed). -c FILE names files instead; --no-default-config reads none.\n"
    "Command-line lists add to the files; scalars replace them.\n"
    "\n"
    "  [bottle]\n"
    "  backend = namespace        ; --backend\n"
    "  cpus = 2                   ; --cpus\n"
    "  memory = 2G                ; --memory\n"
    "  name = b1                  ; --name\n"
    "  allow_write = .vscode      ; --allow-write (repeatable)\n"
    "  [egress]\n"
    "  allow = api.anthropic.com  ; --allow (repeatable)\n"
    "  allow_cidr = 203.0.113.0/24  ; --allow-cidr (repeatable)\n"
    "  upstream_dns = 127.0.0.1:5399  ; --upstream-dns\n"
    "  audit = /path/to/audit.jsonl   ; --audit\n"
    "  allow = api.github.com GET,HEAD /repos/myorg/*   ; a method/path rule\n"
    "  [env]\n"
    "  pass = ANTHROPIC_API_KEY   ; --env (repeatable; NAME or NAME=VALUE)\n"
    "  [dlp]\n"
    "  disable = jwt,card         ; --dlp-disable (repeatable; rule names or 'all')\n"
    "  [microvm]\n"
    "  accel = auto               ; --accel (kvm, tcg or auto)\n"
    "  kernel = /opt/k/vmlinux    ; your own guest kernel (your config only, never bottle.ini)\n"
    "  [agent \"NAME\"]             ; an agent profile: command, allow, env, state, state_env,\n"
    "                             ; package (bot-bottle help agents)\n"
    "\n"
    "Unknown sections and keys are errors, so a typo in a security setting is never ignored.\n";

static const char workspace_text[] =
    "Workspace: what a bottle sees and writes\n"
    "\n"
    "The workspace (-w DIR, default the current directory) is mounted read-write at the\n"
    "same path. The host's /usr is read-only; /tmp and $HOME are private tmpfs. It must be\n"
    "a directory, and neither a home directory nor a system directory (/, /usr, /etc, /boot,\n"
    "...) nor one that holds one.\n"
    "\n"
    "Some workspace paths stay read-only even so, because the host runs or trusts them later\n"
    "(.git/hooks, .git/config, .vscode, .envrc, ...; 'bot-bottle run --help' lists them).\n"
    "--allow-write PATH leaves one writable.\n"
    "\n"
    "--mount SRC:DST[:ro] adds another host path at DST (an absolute path, not under a\n"
    "directory the bottle has read-only, like /usr). SRC must exist and is never followed\n"
    "through a symbolic link. Git identity: --mount ~/.gitconfig:$HOME/.gitconfig:ro.\n";

static const char agents_text[] =
    "Agents: run claude, run codex, agent install\n"
    "\n"
    "  bot-bottle agent install claude      # npm, inside a bottle that reaches only the registry\n"
    "  bot-bottle run -t -i claude          # Claude Code in a bottle (its hosts, keys, state)\n"
    "  bot-bottle run codex exec 'fix the tests'\n"
    "  bot-bottle agent ls                  # installed versions\n"
    "\n"
    "'run NAME [ARG...]' runs the agent profile NAME when the first argument names one and no\n"
    "'--' came before it; 'run --agent NAME [--] [ARG...]' says so explicitly; 'run -- NAME'\n"
    "runs NAME as a plain command. A profile gives the bottle:\n"
    "  - its command, from bot-bottle's cache ($XDG_CACHE_HOME/bot-bottle/agents/NAME, read-only\n"
    "    at /opt/bot-bottle/agents/NAME, first on PATH), else from the host's /usr;\n"
    "  - the hosts it needs: claude: api.anthropic.com (the API), claude.ai, platform.claude.com\n"
    "    and console.anthropic.com (sign-in); codex: api.openai.com (the API), chatgpt.com (the\n"
    "    ChatGPT-plan backend), auth.openai.com (sign-in). Telemetry, error reports, auto-update\n"
    "    and plugin hosts are not allowed, and turned off where the agent has a switch\n"
    "    (claude: DISABLE_TELEMETRY, DISABLE_ERROR_REPORTING, DISABLE_AUTOUPDATER,\n"
    "    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC);\n"
    "  - its API keys, when set on the host, stay there: claude: ANTHROPIC_API_KEY,\n"
    "    ANTHROPIC_AUTH_TOKEN, CLAUDE_CODE_OAUTH_TOKEN; codex: OPENAI_API_KEY. The bottle gets a\n"
    "    placeholder the egress proxy replaces with the key in requests to the API host (or the\n"
    "    https:// host of ANTHROPIC_BASE_URL), nowhere else;\n"
    "  - the host's variables it uses, when set: ANTHROPIC_BASE_URL, ANTHROPIC_MODEL;\n"
    "    OPENAI_BASE_URL, OPENAI_ORG_ID, OPENAI_PROJECT_ID;\n"
    "  - its own state directory per workspace, $XDG_DATA_HOME/bot-bottle/agents/NAME/DIR-HASH,\n"
    "    at $HOME/.claude (CLAUDE_CONFIG_DIR) or $HOME/.codex (CODEX_HOME): sign in once per\n"
    "    project, and 'claude --resume' finds the sessions of earlier bottles. Never your home.\n"
    "-a, -e and --mount add to a profile as usual.\n"
    "\n"
    "Your own profiles, or additions to a built-in one, in the config file:\n"
    "  [agent \"aider\"]\n"
    "  command = aider              # a program on the bottle's PATH, or an absolute path\n"
    "  allow = api.openai.com       # repeatable\n"
    "  env = OPENAI_API_KEY         # passed when set; NAME=VALUE: always (repeatable)\n"
    "  state = .aider               # under $HOME: a per-workspace state directory mounted there\n"
    "  state_env = AIDER_HOME       # set to $HOME/<state>\n"
    "  package = aider-js           # for 'bot-bottle agent install'\n"
    "A section named claude or codex adds its allow and env lines to the built-in profile and\n"
    "replaces its command, state, state_env or package.\n"
    "\n"
    "'agent install' uses the same backend as 'run' (default microvm; -b namespace is faster\n"
    "and shares the host's kernel), the registry of 'npm config get registry' (--registry URL)\n"
    "and the CA file the host's npm trusts. It never runs npm on the host itself.\n";
static const char backends_text[] =
    "Backends: what a bottle is made of, and which one run uses\n"
    "\n"
    "  microvm     a QEMU microVM with its own guest kernel (the default). Needs\n"
    "              qemu-system-x86_64 and a guest kernel built once with\n"
    "              scripts/build-guest-kernel.sh; KVM when usable, else TCG emulation (slow).\n"
    "  namespace   Linux namespaces + seccomp on the host's kernel: fast, but a kernel bug\n"
    "              is an escape. Needs user namespaces.\n"
    "\n"
    "Which one: --backend NAME, else $BOT_BOTTLE_BACKEND, else [bottle] backend in the\n"
    "config, else microvm. 'auto' takes the strongest that can run here: microvm on KVM,\n"
    "then namespace, then microvm under TCG, and says which and why in one line.\n"
    "\n"
    "A backend that cannot run here is an error (exit 125) naming what is missing and the\n"
    "fix; bot-bottle never switches to another one by itself and never asks. run works\n"
    "without a terminal and with stdin closed (scripts, CI, systemd).\n"
    "\n"
    "'bot-bottle doctor' shows every backend's findings, which one run would use now and\n"
    "why (--json for scripts).\n";

static const struct {
    const char *name, *summary, *text;
} topics[] = {
    { "notices", "each line bot-bottle run prints, what it means, the fix", notices_text },
    { "policy", "allow patterns, --allow-cidr, the address rules", policy_text },
    { "config", "the config files and their keys", config_text },
    { "workspace", "the workspace, mounts and protected paths", workspace_text },
    { "agents", "run claude / codex: agent profiles, install, state", agents_text },
    { "backends", "microvm or namespace, how run chooses, doctor", backends_text },
};

const char *help_topic_text(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(topics); i++)
        if (strcmp(name, topics[i].name) == 0)
            return topics[i].text;
    return NULL;
}

const char *help_topic_name(size_t i)
{
    return i < ARRAY_SIZE(topics) ? topics[i].name : NULL;
}

static void list_topics(FILE *f)
{
    fprintf(f, "Usage: bot-bottle help [TOPIC]\n\nTopics:\n");
    for (size_t i = 0; i < ARRAY_SIZE(topics); i++)
        fprintf(f, "  %-10s %s\n", topics[i].name, topics[i].summary);
    fprintf(f, "\nRun 'bot-bottle COMMAND --help' for a command's options.\n");
}

int cmd_help(int argc, char **argv)
{
    const char *text;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        list_topics(stdout);
        return 0;
    }
    text = help_topic_text(argv[1]);
    if (!text) {
        fprintf(stderr, "bot-bottle: no help topic '%s'\n", argv[1]);
        list_topics(stderr);
        return EXIT_BB_FAILURE;
    }
    fputs(text, stdout);
    return 0;
}

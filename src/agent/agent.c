/* Agent profiles, their directories and installed versions. See agent.h, docs/agents.md. */
#include "agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/str.h"
#include "common/macro.h"
#include "common/sha256.h"
#include "common/xalloc.h"

struct builtin {
    const char *name, *command, *package, *state, *state_env;
    const char *const *allow, *const *env;
    const struct agent_key *keys;
    const struct agent_left_out *left_out;
};

/*
 * Claude Code (docs: code.claude.com/docs/en/network-config, .../env-vars, .../setup).
 * Hosts it needs:
 *   api.anthropic.com     the Messages API: every model request.
 *   claude.ai             sign-in with a Claude Pro/Max/Team subscription (OAuth, /login).
 *   platform.claude.com   sign-in with an Anthropic Console (API billing) account (OAuth);
 *   console.anthropic.com   its former name, still used by the OAuth flow of older releases.
 * Left out (the variables below turn them off in the agent): statsig.anthropic.com (usage
 * telemetry), *.sentry.io (error reports), downloads.claude.ai / storage.googleapis.com and
 * registry.npmjs.org (auto-update and the native installer: a bottle's agent is updated with
 * `bot-bottle agent install`), github.com / raw.githubusercontent.com (plugin marketplaces).
 * CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 is DISABLE_AUTOUPDATER, DISABLE_BUG_COMMAND,
 * DISABLE_ERROR_REPORTING and DISABLE_TELEMETRY together; the three are set as well so that
 * a settings.json that sets the umbrella variable to 0 still leaves them off.
 * State: CLAUDE_CONFIG_DIR holds settings, credentials (.credentials.json), .claude.json
 * (onboarding) and the session transcripts `claude --resume` reads.
 */
static const char *const claude_allow[] = { "api.anthropic.com", "claude.ai", "platform.claude.com",
                                            "console.anthropic.com", NULL };
static const char *const claude_env[] = {
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
    "DISABLE_AUTOUPDATER=1",
    "DISABLE_TELEMETRY=1",
    "DISABLE_ERROR_REPORTING=1",
    NULL,
};
/* What the notice says when the agent still tries one of the hosts left out above. */
static const struct agent_left_out claude_left_out[] = {
    { "statsig.anthropic.com", "usage telemetry, turned off" },
    { "*.sentry.io", "error reports, turned off" },
    { "downloads.claude.ai", "auto-update; 'bot-bottle agent install claude' updates it" },
    { "storage.googleapis.com", "auto-update; 'bot-bottle agent install claude' updates it" },
    { "registry.npmjs.org", "auto-update; 'bot-bottle agent install claude' updates it" },
    { "github.com", "plugin marketplaces" },
    { "raw.githubusercontent.com", "plugin marketplaces" },
    { NULL, NULL },
};
/* The keys: an API key goes in x-api-key; a bearer token (ANTHROPIC_AUTH_TOKEN, e.g. for a
 * gateway, or the subscription token from `claude setup-token`) in Authorization. */
static const struct agent_key claude_keys[] = {
    { "ANTHROPIC_API_KEY", "x-api-key", "api.anthropic.com", "ANTHROPIC_BASE_URL" },
    { "ANTHROPIC_AUTH_TOKEN", "authorization", "api.anthropic.com", "ANTHROPIC_BASE_URL" },
    { "CLAUDE_CODE_OAUTH_TOKEN", "authorization", "api.anthropic.com", "ANTHROPIC_BASE_URL" },
    { NULL, NULL, NULL, NULL },
};

/*
 * Codex CLI (docs: developers.openai.com/codex/auth, .../codex/config).
 * Hosts it needs:
 *   api.openai.com    the Responses API when signed in with an API key (OPENAI_API_KEY).
 *   chatgpt.com       the Codex backend (chatgpt.com/backend-api/codex) when signed in
 *                     with a ChatGPT plan.
 *   auth.openai.com   ChatGPT sign-in (OAuth, device code) and its token refresh.
 * Left out: api.github.com (the update check at start; `check_for_update_on_startup = false`
 * in $CODEX_HOME/config.toml silences it), and OpenTelemetry export, which is off unless
 * configured.
 * State: CODEX_HOME holds config.toml, auth.json and the session rollouts `codex resume`
 * reads.
 */
static const char *const codex_allow[] = { "api.openai.com", "chatgpt.com", "auth.openai.com",
                                           NULL };
static const char *const codex_env[] = { "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID",
                                         NULL };
static const struct agent_left_out codex_left_out[] = {
    { "api.github.com", "its update check; 'bot-bottle agent install codex' updates it" },
    { NULL, NULL },
};
/* (Not moved by OPENAI_BASE_URL: this codex reaches api.openai.com with it set, at least for its
 * Responses websocket; a key for another endpoint is a [credential] of the user's.) */
static const struct agent_key codex_keys[] = {
    { "OPENAI_API_KEY", "authorization", "api.openai.com", NULL },
    { NULL, NULL, NULL, NULL },
};

static const struct builtin builtins[] = {
    { "claude", "claude", "@anthropic-ai/claude-code", ".claude", "CLAUDE_CONFIG_DIR", claude_allow,
      claude_env, claude_keys, claude_left_out },
    { "codex", "codex", "@openai/codex", ".codex", "CODEX_HOME", codex_allow, codex_env, codex_keys,
      codex_left_out },
};

const char *agent_builtin_name(size_t i)
{
    return i < ARRAY_SIZE(builtins) ? builtins[i].name : NULL;
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void replace(char **slot, const char *v)
{
    if (v) {
        free(*slot);
        *slot = xstrdup(v);
    }
}

int agent_profile_get(const struct bb_config *cfg, const char *name, struct agent_profile *ret)
{
    const struct bb_config_agent *u = cfg ? config_find_agent(cfg, name) : NULL;
    const struct builtin *b = NULL;
    struct agent_profile p = { 0 };

    for (size_t i = 0; i < ARRAY_SIZE(builtins); i++)
        if (strcmp(builtins[i].name, name) == 0)
            b = &builtins[i];
    if (!b && !u)
        return -ENOENT;
    if (!b && !u->command)
        return -EINVAL;
    p.name = xstrdup(name);
    if (b) {
        p.builtin = true;
        p.keys = b->keys;
        p.left_out = b->left_out;
        p.command = xstrdup(b->command);
        p.package = dup_or_null(b->package);
        p.state = dup_or_null(b->state);
        p.state_env = dup_or_null(b->state_env);
        for (const char *const *a = b->allow; *a; a++)
            strv_push(&p.allow, *a);
        for (const char *const *e = b->env; *e; e++)
            strv_push(&p.env, *e);
    }
    if (u) {
        p.user = u;
        replace(&p.command, u->command);
        replace(&p.package, u->package);
        replace(&p.state, u->state);
        replace(&p.state_env, u->state_env);
        for (size_t i = 0; i < u->allow.n; i++)
            strv_push(&p.allow, u->allow.v[i]);
        for (size_t i = 0; i < u->env.n; i++)
            strv_push(&p.env, u->env.v[i]);
    }
    *ret = p;
    return 0;
}

void agent_profile_done(struct agent_profile *p)
{
    free(p->name);
    free(p->command);
    free(p->package);
    strv_done(&p->allow);
    strv_done(&p->env);
    free(p->state);
    free(p->state_env);
    *p = (struct agent_profile){ 0 };
}

/* $VAR/sub, else $HOME/home_sub/sub (XDG: a relative value is ignored). */
static int xdg_dir(const char *var, const char *home_sub, const char *sub, char **ret)
{
    const char *x = getenv(var), *home = getenv("HOME");
    struct buf b = BUF_INIT(4096);
    int r;

    if (x && x[0] == '/')
        r = buf_printf(&b, "%s/%s", x, sub);
    else if (home && home[0] == '/')
        r = buf_printf(&b, "%s/%s/%s", home, home_sub, sub);
    else
        return -ENOENT;
    if (r < 0) {
        buf_done(&b);
        return -ENAMETOOLONG;
    }
    *ret = buf_take(&b);
    return 0;
}

int agent_cache_root(char **ret)
{
    const char *over = getenv("BOT_BOTTLE_AGENT_CACHE");

    if (over && over[0] == '/') {
        *ret = xstrdup(over);
        return 0;
    }
    return xdg_dir("XDG_CACHE_HOME", ".cache", "bot-bottle/agents", ret);
}

int agent_state_root(char **ret)
{
    return xdg_dir("XDG_DATA_HOME", ".local/share", "bot-bottle/agents", ret);
}

int agent_state_dir(const char *name, const char *workspace, char **ret)
{
    _cleanup_free_ char *root = NULL;
    char hex[SHA256_HEX_LEN + 1];
    const char *base = strrchr(workspace, '/');
    struct buf b = BUF_INIT(4096);
    size_t blen;
    int r;

    if (workspace[0] != '/' || !config_agent_name_valid(name))
        return -EINVAL;
    r = agent_state_root(&root);
    if (r < 0)
        return r;
    r = sha256_hex(workspace, strlen(workspace), hex);
    if (r < 0)
        return r;
    base = base && base[1] ? base + 1 : "root";
    blen = MIN(strlen(base), (size_t)40);
    /* The name is for people reading the directory; only the hash identifies it. A leading
     * '.' or anything outside [A-Za-z0-9._-] becomes '_'. */
    if (buf_printf(&b, "%s/%s/", root, name) < 0)
        goto toolong;
    for (size_t i = 0; i < blen; i++) {
        char c = base[i];
        bool ok = ascii_isalnum(c) || c == '-' || c == '_' || (c == '.' && i > 0);
        if (buf_append(&b, ok ? &c : "_", 1) < 0)
            goto toolong;
    }
    if (buf_printf(&b, "-%.16s", hex) < 0)
        goto toolong;
    *ret = buf_take(&b);
    return 0;
toolong:
    buf_done(&b);
    return -ENAMETOOLONG;
}

int agent_mkdir_p(const char *path, mode_t mode)
{
    _cleanup_free_ char *p = xstrdup(path);
    struct stat st;

    if (path[0] != '/')
        return -EINVAL;
    for (char *s = p + 1;; s++) {
        bool end = *s == '\0';
        if (*s != '/' && !end)
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return -errno;
        if (!end)
            *s = '/';
        else
            break;
    }
    if (lstat(path, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid())
        return -EPERM;
    return 0;
}

int agent_installed_version(const char *prefix, const char *package, char **ret)
{
    struct buf b = BUF_INIT(4096);
    _cleanup_free_ char *data = NULL;
    _cleanup_close_ int fd = -1;
    json_t *root, *v;
    json_error_t jerr;
    size_t len = 0;
    int r;

    if (buf_printf(&b, "%s/lib/node_modules/%s/package.json", prefix, package) < 0) {
        buf_done(&b);
        return -ENAMETOOLONG;
    }
    fd = open(buf_str(&b), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    buf_done(&b);
    if (fd < 0)
        return -errno;
    r = config_read_fd(fd, 1 << 20, &data, &len);
    if (r < 0)
        return r;
    root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return -EINVAL;
    v = json_object_get(root, "version");
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 64) {
        json_decref(root);
        return -EINVAL;
    }
    *ret = xstrdup(json_string_value(v));
    json_decref(root);
    return 0;
}

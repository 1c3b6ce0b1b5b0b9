/*
 * bot-bottle agent install|ls, and what `run claude` / `run --agent NAME` add to a bottle
 * (agent_run_prepare). Profiles and directories: src/agent, docs/agents.md.
 *
 * `agent install NAME` runs `npm install --global --prefix STAGING PACKAGE` inside a bottle
 * (`bot-bottle run`, a child process of this one) whose only allowed host is the npm registry,
 * so the package's install scripts never run unconfined on the host. STAGING is a fresh
 * directory next to the cache entry; on success it replaces the entry in one rename.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "backend/backend.h"
#include "cli/cli.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/progress.h"
#include "common/xalloc.h"

#define INSTALL_LOG_TAIL 30 /* lines of npm's output shown when an install fails */

/* ---- run NAME / run --agent NAME ---- */

static bool strv_has(const struct strv *v, const char *s)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->v[i], s) == 0)
            return true;
    return false;
}

static char *strf(const char *fmt, ...) _printf_(1, 2);
static char *strf(const char *fmt, ...)
{
    struct buf b = BUF_INIT(64 * 1024);
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (r < 0) {
        buf_done(&b);
        return NULL;
    }
    return buf_take(&b);
}

/* Appends s (which may be NULL: too long, said by the caller's check) and frees it. */
static int push_free(struct strv *v, char *s)
{
    if (!s)
        return -E2BIG;
    strv_push(v, s);
    free(s);
    return 0;
}

bool agent_run_known(const struct bb_config *cfg, const char *name)
{
    struct agent_profile p = { 0 };
    int r;

    if (!config_agent_name_valid(name))
        return false;
    r = agent_profile_get(cfg, name, &p);
    if (r == 0)
        agent_profile_done(&p);
    return r != -ENOENT; /* (-EINVAL: it is one, and agent_run_prepare says what is wrong) */
}

static void say_unknown_agent(const char *name)
{
    struct buf b = BUF_INIT(1024);

    for (size_t i = 0; agent_builtin_name(i); i++)
        (void)buf_printf(&b, "%s%s", i ? ", " : "", agent_builtin_name(i));
    log_error("--agent %s: no such agent profile (built-in: %s; more with [agent \"%s\"] in the "
              "config, bot-bottle help agents)",
              name, buf_str(&b), config_agent_name_valid(name) ? name : "NAME");
    buf_done(&b);
}

/* The host's copy of command under /usr (the bottle has the host's /usr), or NULL. */
static const char *host_command(const char *command, char *buf, size_t size)
{
    static const char *const dirs[] = { "/usr/local/bin", "/usr/bin", "/usr/local/sbin",
                                        "/usr/sbin" };

    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++)
        if (snprintf(buf, size, "%s/%s", dirs[i], command) < (int)size && access(buf, X_OK) == 0)
            return buf;
    return NULL;
}

/* A directory bot-bottle owns for agents may not be where a bottle writes (nor hold it). */
static int refuse_reachable(const char *what, const char *dir, const struct strv *writable)
{
    for (size_t i = 0; i < writable->n; i++)
        if (trust_path_within(dir, writable->v[i]) || trust_path_within(writable->v[i], dir)) {
            log_error("the agent %s %s %s %s, which the bottle can write, so a bottle could "
                      "change what the next one runs; set %s to a directory outside it (or run "
                      "from a narrower --workspace)",
                      what, dir, trust_path_within(dir, writable->v[i]) ? "lies inside" : "holds",
                      writable->v[i],
                      strcmp(what, "cache") == 0 ? "XDG_CACHE_HOME" : "XDG_DATA_HOME");
            return -EPERM;
        }
    return 0;
}

/* The host and port of an http:// or https:// URL (no userinfo, no IPv6 literal; port 0: none
 * given). Returns 0 with *ret_host (malloc'd) or -EINVAL. */
static int url_authority(const char *url, bool *ret_https, char **ret_host, uint16_t *ret_port)
{
    const char *h, *end, *colon;
    uint64_t port = 0;
    bool https;

    https = strncmp(url, "https://", 8) == 0;
    if (!https && strncmp(url, "http://", 7) != 0)
        return -EINVAL;
    h = url + (https ? 8 : 7);
    end = h + strcspn(h, "/?#");
    if (memchr(h, '@', (size_t)(end - h)) || h[0] == '[')
        return -EINVAL; /* (no userinfo; IPv6 literals: name the host by a host name) */
    colon = memchr(h, ':', (size_t)(end - h));
    if ((colon ? colon : end) == h)
        return -EINVAL;
    if (colon && (str_to_u64(slice_make(colon + 1, (size_t)(end - colon - 1)), 65535, &port) < 0 ||
                  port == 0))
        return -EINVAL;
    *ret_https = https;
    *ret_host = xstrndup(h, (size_t)((colon ? colon : end) - h));
    *ret_port = (uint16_t)port;
    return 0;
}

static bool is_key(const struct agent_profile *p, const char *var)
{
    for (const struct agent_key *k = p->keys; k && k->var; k++)
        if (strcmp(k->var, var) == 0)
            return true;
    return false;
}

/*
 * The profile's API keys set on the host become credentials in *creds (run adds them where no
 * credential of the user's names the same variable): the bottle gets a placeholder, the egress
 * daemon the key. A base URL variable moves the key to that URL's host, over https only.
 */
static int agent_keys(const struct agent_profile *p, struct bb_config *creds)
{
    for (const struct agent_key *k = p->keys; k && k->var; k++) {
        const char *base = k->base_url_var ? getenv(k->base_url_var) : NULL, *msg = NULL;
        _cleanup_free_ char *host = NULL, *name = NULL, *src = NULL;
        uint16_t port = 0;
        bool https = true;

        if (!getenv(k->var))
            continue;
        if (base && *base) {
            if (url_authority(base, &https, &host, &port) < 0 || !https) {
                log_error("agent %s: %s is '%s'; bot-bottle puts %s into requests itself and "
                          "only over HTTPS to a named host, so %s must be an https://HOST[:PORT] "
                          "URL (or unset it)",
                          p->name, k->base_url_var, base, k->var, k->base_url_var);
                return -EINVAL;
            }
        } else {
            host = xstrdup(k->host);
        }
        name = xstrdup(k->var);
        for (char *c = name; *c; c++)
            *c = *c == '_' ? '-' : (char)ascii_tolower(*c);
        src = strf("env:%s", k->var);
        if (config_add_credential(creds, name, host, port, k->header, src, k->var, &msg) < 0) {
            log_error("agent %s: %s for %s: %s", p->name, k->var, host, msg);
            return -EINVAL;
        }
    }
    return 0;
}

int agent_run_prepare(const char *name, const char *workspace, struct policy_args *args,
                      const struct bb_config *cfg, struct policy *policy,
                      const struct strv *writable, struct agent_run *ret)
{
    struct agent_profile p = { 0 };
    struct agent_run ar = { 0 };
    _cleanup_free_ char *cache = NULL, *prefix = NULL, *state = NULL, *home_state = NULL;
    const struct passwd *pw = getpwuid(getuid());
    /* the bottle's $HOME, as the supervisor sets it (supervisor.c) */
    const char *home = pw && pw->pw_dir[0] == '/' ? pw->pw_dir : "/home/user";
    char hostbuf[PATH_MAX], bin[PATH_MAX + 64];
    const char *msg = NULL;
    int r;

    r = agent_profile_get(cfg, name, &p);
    if (r == -ENOENT) {
        say_unknown_agent(name);
        return r;
    }
    if (r == -EINVAL) {
        const struct bb_config_agent *u = config_find_agent(cfg, name);
        log_error("%s:%u: [agent \"%s\"] has no command; add command = PROGRAM", u->file, u->line,
                  name);
        return r;
    }

    /* Where the agent comes from: bot-bottle's cache first, then the host's /usr. */
    if (p.command[0] != '/' && agent_cache_root(&cache) >= 0 &&
        (prefix = strf("%s/%s", cache, p.name)) &&
        snprintf(bin, sizeof(bin), "%s/bin/%s", prefix, p.command) < (int)sizeof(bin) &&
        access(bin, X_OK) == 0) {
        r = refuse_reachable("cache", prefix, writable);
        if (r < 0)
            goto out;
        (void)push_free(&ar.mounts, strf("%s:%s/%s:ro", prefix, AGENT_BOTTLE_ROOT, p.name));
        (void)push_free(&ar.env,
                        strf("PATH=%s/%s/bin:%s", AGENT_BOTTLE_ROOT, p.name, AGENT_DEFAULT_PATH));
        log_debug("agent %s: %s from %s, mounted read-only at %s/%s", p.name, p.command, prefix,
                  AGENT_BOTTLE_ROOT, p.name);
    } else if (p.command[0] != '/' && !host_command(p.command, hostbuf, sizeof(hostbuf))) {
        if (p.package)
            log_error("agent %s: %s is not installed; install it (inside a bottle) with: "
                      "bot-bottle agent install %s",
                      p.name, p.command, p.name);
        else
            log_error("agent %s: %s is not installed under the host's /usr, which is all of the "
                      "host a bottle sees; install it there, or set command = /ABSOLUTE/PATH in "
                      "[agent \"%s\"]",
                      p.name, p.command, p.name);
        r = -ENOENT;
        goto out;
    } else {
        log_debug("agent %s: %s from the host's /usr", p.name, p.command);
    }

    /* The hosts: on the command line of the policy, so the daemon and reloads have them. */
    for (size_t i = 0; i < p.allow.n; i++) {
        r = policy_add_allow(policy, p.allow.v[i], strlen(p.allow.v[i]), &msg);
        if (r < 0) {
            log_error("agent %s: allow '%s': %s", p.name, p.allow.v[i], msg ? msg : "invalid");
            goto out;
        }
        if (!strv_has(&args->cli.allow, p.allow.v[i]))
            strv_push(&args->cli.allow, p.allow.v[i]);
    }

    /* Variables: fixed ones always, the host's only when set (no warning: most are optional). */
    for (size_t i = 0; i < p.env.n; i++) {
        const char *e = p.env.v[i], *v;
        if (strchr(e, '=')) {
            strv_push(&ar.env, e);
            continue;
        }
        if (is_key(&p, e))
            continue; /* a key: a credential (agent_keys), never the value itself */
        v = getenv(e);
        if (!v) {
            log_debug("agent %s: %s is not set here; not passed", p.name, e);
            continue;
        }
        r = push_free(&ar.env, strf("%s=%s", e, v));
        if (r < 0) {
            log_error("agent %s: the value of %s is too long to pass", p.name, e);
            goto out;
        }
    }

    r = agent_keys(&p, &ar.creds);
    if (r < 0)
        goto out;
    for (const struct agent_left_out *l = p.left_out; l && l->host; l++)
        (void)push_free(&ar.left_out,
                        strf("%s the %s profile leaves it out: %s", l->host, p.name, l->why));

    /* The state directory: per agent and workspace, bot-bottle's, never the user's home. */
    if (p.state) {
        r = agent_state_dir(p.name, workspace, &state);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r,
                      "agent %s: cannot place its state directory (set XDG_DATA_HOME or HOME to "
                      "an absolute path)",
                      p.name);
            goto out;
        }
        r = refuse_reachable("state directory", state, writable);
        if (r < 0)
            goto out;
        /* A config file there would have been read without approval (args.c). */
        for (size_t i = 0; i < args->n_files; i++)
            if (trust_path_within(args->files[i].path, state)) {
                log_error("the config file %s lies in the agent's state directory %s, which the "
                          "bottle can write; move it",
                          args->files[i].path, state);
                r = -EPERM;
                goto out;
            }
        r = agent_mkdir_p(state, 0700);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "agent %s: state directory %s", p.name, state);
            goto out;
        }
        home_state = strf("%s/%s", strcmp(home, "/") == 0 ? "" : home, p.state);
        (void)push_free(&ar.mounts, strf("%s:%s", state, home_state));
        {
            char canon[PATH_MAX];
            ar.state = xstrdup(realpath(state, canon) ? canon : state);
        }
        if (p.state_env)
            (void)push_free(&ar.env, strf("%s=%s", p.state_env, home_state));
        log_debug("agent %s: state %s at %s", p.name, state, home_state);
    }
    {
        struct buf b = BUF_INIT(4096);
        for (size_t i = 0; i < p.allow.n; i++)
            (void)buf_printf(&b, "%s%s", i ? ", " : "", p.allow.v[i]);
        log_debug("agent %s: allows %s", p.name, p.allow.n ? buf_str(&b) : "no host");
        buf_done(&b);
    }
    ar.command = xstrdup(p.command);
    *ret = ar;
    ar = (struct agent_run){ 0 };
    r = 0;
out:
    agent_run_done(&ar);
    agent_profile_done(&p);
    return r;
}

int agent_run_check_roots(const struct strv *writable, const struct agent_run *ar)
{
    static const char *const what[] = { "cache", "state directories" };
    char *roots[2] = { NULL, NULL };
    int r = 0;

    (void)agent_cache_root(&roots[0]);
    (void)agent_state_root(&roots[1]);
    for (size_t k = 0; k < ARRAY_SIZE(roots) && r == 0; k++) {
        char canon[PATH_MAX];
        const char *root = roots[k];
        if (!root)
            continue;
        /* The canonical path when it exists (a symlink does not hide it), else as written. */
        if (realpath(root, canon))
            root = canon;
        for (size_t i = 0; i < writable->n; i++) {
            const char *w = writable->v[i];
            if (ar && ar->state && strcmp(w, ar->state) == 0)
                continue; /* (this agent's own state directory) */
            if (trust_path_within(w, root) || trust_path_within(root, w)) {
                log_error("%s %s the agents' %s %s, which are bot-bottle's and no bottle may "
                          "write; use another directory (or set %s elsewhere)",
                          w, trust_path_within(w, root) ? "lies inside" : "holds", what[k], root,
                          k == 0 ? "XDG_CACHE_HOME" : "XDG_DATA_HOME");
                r = -EPERM;
                break;
            }
        }
    }
    free(roots[0]);
    free(roots[1]);
    return r;
}

void agent_run_done(struct agent_run *ar)
{
    strv_done(&ar->mounts);
    strv_done(&ar->env);
    free(ar->command);
    free(ar->state);
    config_done(&ar->creds);
    strv_done(&ar->left_out);
    *ar = (struct agent_run){ 0 };
}

void agent_run_add_credentials(struct agent_run *ar, struct bb_config *cfg)
{
    struct bb_config add = { 0 };

    for (size_t i = 0; i < ar->creds.n_creds; i++) {
        struct bb_credential *c = &ar->creds.creds[i];
        const char *why = NULL;

        for (size_t k = 0; k < cfg->n_creds && !why; k++)
            if (cfg->creds[k].env && strcmp(cfg->creds[k].env, c->env) == 0)
                why = "a credential of the configuration puts its placeholder there";
            else if (strcmp(cfg->creds[k].name, c->name) == 0)
                why = "the configuration has a credential of that name";
        if (why) {
            log_debug("agent key %s: not made a credential (%s)", c->env, why);
            continue;
        }
        log_info("%s stays on the host: the bottle gets a placeholder that the egress proxy "
                 "replaces with it in the %s header of requests to %s:%u, and nowhere else",
                 c->env, c->header, c->host, c->port);
        if (config_add_credential(&add, c->name, c->host, c->port, c->header, c->value, c->env,
                                  &why) < 0)
            continue; /* (validated when it was made) */
    }
    config_merge_credentials(cfg, &add);
    config_done(&add);
}

/* ---- agent ls ---- */

static void usage_agent(FILE *f)
{
    fprintf(f,
            "Usage: bot-bottle agent install NAME[@VERSION] [options]\n"
            "       bot-bottle agent ls [--json]\n"
            "\n"
            "Agents (profiles: built-in claude and codex, more with [agent \"NAME\"] in the\n"
            "config; bot-bottle help agents). 'bot-bottle run NAME [ARGS]' runs one in a bottle\n"
            "with the hosts it needs, its API keys and its own state directory.\n"
            "\n"
            "install: installs the agent's npm package into bot-bottle's cache\n"
            "($XDG_CACHE_HOME/bot-bottle/agents/NAME, mounted read-only into the agent's\n"
            "bottles) by running npm INSIDE a bottle whose only allowed host is the npm\n"
            "registry, so install scripts never run unconfined on the host. The bottle uses\n"
            "the same backend as 'run' (-b, BOT_BOTTLE_BACKEND, [bottle] backend; default\n"
            "microvm, slow under TCG: -b namespace is faster and shares the host's kernel).\n"
            "  -b, --backend NAME       the install bottle's backend\n"
            "  -c, --config FILE        config file for [agent] profiles and [bottle] backend\n"
            "                           (repeatable; default: the user's config.ini)\n"
            "      --registry URL       the npm registry (default: 'npm config get registry')\n"
            "      --allow-cidr CIDR    let the registry's name resolve into CIDR (a registry\n"
            "                           on a private or local address; repeatable)\n"
            "      --upstream-dns ADDR[:PORT]  resolver for the registry's name\n"
            "      --quiet              no progress output\n"
            "  -v, --verbose            debug logging\n"
            "\n"
            "ls: the profiles, the installed version of each, and where it is run from.\n"
            "      --json               {\"version\":1, \"agents\":[{name, command, package,\n"
            "                           version, path, allow}]}\n");
}

static int agent_load_config(struct policy_args *args, struct bb_config *cfg)
{
    return policy_args_finish(args, cfg, NULL);
}

static int cmd_agent_ls(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "json", no_argument, NULL, 'j' },
        { "config", required_argument, NULL, 'c' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const struct cli_parser parser = { "agent ls", "+c:vh", longopts, usage_agent, NULL };
    struct policy_args args = { 0 };
    struct bb_config cfg = { 0 };
    struct strv names = { 0 };
    _cleanup_free_ char *cache = NULL;
    json_t *arr = NULL;
    bool json = false;
    int opt, ret = EXIT_BB_FAILURE;

    optind = 1;
    while ((opt = cli_getopt(&parser, argc, argv, &ret)) != -1) {
        if (opt == CLI_OPT_EXIT)
            goto out;
        if (opt == 'j')
            json = true;
        if (opt == 'c')
            (void)policy_args_handle(&args, 'c', optarg);
    }
    ret = EXIT_BB_FAILURE;
    if (optind < argc) {
        log_error("agent ls takes no arguments; try 'bot-bottle agent --help'");
        goto out;
    }
    if (agent_load_config(&args, &cfg) < 0)
        goto out;
    (void)agent_cache_root(&cache);
    for (size_t i = 0; agent_builtin_name(i); i++)
        strv_push(&names, agent_builtin_name(i));
    for (size_t i = 0; i < cfg.n_agents; i++)
        if (!strv_has(&names, cfg.agents[i].name))
            strv_push(&names, cfg.agents[i].name);
    arr = json_array();
    if (!json)
        printf("%-10s %-12s %-28s %s\n", "NAME", "VERSION", "PACKAGE", "RUNS FROM");
    for (size_t i = 0; i < names.n; i++) {
        struct agent_profile p;
        _cleanup_free_ char *prefix = NULL, *version = NULL, *where = NULL;
        char hostbuf[PATH_MAX], bin[PATH_MAX + 64];
        const char *hostcmd = NULL;
        json_t *o, *allow;

        if (agent_profile_get(&cfg, names.v[i], &p) < 0) {
            const struct bb_config_agent *u = config_find_agent(&cfg, names.v[i]);
            log_warn("%s:%u: [agent \"%s\"] has no command", u->file, u->line, names.v[i]);
            continue;
        }
        if (cache && p.package && (prefix = strf("%s/%s", cache, p.name)) &&
            snprintf(bin, sizeof(bin), "%s/bin/%s", prefix, p.command) < (int)sizeof(bin) &&
            access(bin, X_OK) == 0)
            (void)agent_installed_version(prefix, p.package, &version);
        if (version)
            where = xstrdup(prefix);
        else if (p.command[0] == '/')
            where = strf("%s (in the bottle)", p.command);
        else if ((hostcmd = host_command(p.command, hostbuf, sizeof(hostbuf))))
            where = strf("%s (the host's)", hostcmd);
        if (json) {
            o = json_object();
            allow = json_array();
            for (size_t k = 0; k < p.allow.n; k++)
                json_array_append_new(allow, json_string(p.allow.v[k]));
            json_object_set_new(o, "name", json_string(p.name));
            json_object_set_new(o, "command", json_string(p.command));
            json_object_set_new(o, "package", p.package ? json_string(p.package) : json_null());
            json_object_set_new(o, "version", version ? json_string(version) : json_null());
            json_object_set_new(o, "path", where ? json_string(where) : json_null());
            json_object_set_new(o, "builtin", json_boolean(p.builtin));
            json_object_set_new(o, "allow", allow);
            json_array_append_new(arr, o);
        } else {
            _cleanup_free_ char *hint =
                p.package ? strf("not installed: bot-bottle agent install %s", p.name)
                          : xstrdup("not installed");
            printf("%-10s %-12s %-28s %s\n", p.name, version ? version : "-",
                   p.package ? p.package : "-", where ? where : hint);
        }
        agent_profile_done(&p);
    }
    if (json) {
        json_t *root = json_pack("{s:i, s:O}", "version", 1, "agents", arr);
        char *s = json_dumps(root, JSON_COMPACT);
        puts(s);
        free(s);
        json_decref(root);
    }
    ret = 0;
out:
    json_decref(arr);
    strv_done(&names);
    config_done(&cfg);
    policy_args_done(&args);
    return ret;
}

/* ---- agent install ---- */

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP)
        return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
    return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* rm -rf of a directory bot-bottle made (never follows a symlink). */
static int rm_tree(const char *path)
{
    if (nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

/* The registry's host from its URL: *ret_pattern "host" or "host:port" (or, for an IP
 * literal, *ret_cidr "ADDR/32"). */
static int registry_target(const char *url, char **ret_pattern, char **ret_cidr)
{
    _cleanup_free_ char *host = NULL;
    unsigned char a[16];
    uint16_t port;
    bool https;

    if (url_authority(url, &https, &host, &port) < 0)
        return -EINVAL;
    if (inet_pton(AF_INET, host, a) == 1) {
        *ret_pattern = NULL;
        *ret_cidr = port ? strf("%s/32:%u", host, port) : strf("%s/32", host);
        return 0;
    }
    *ret_cidr = NULL;
    *ret_pattern = port && port != 80 && port != 443 ? strf("%s:%u", host, port) : xstrdup(host);
    return 0;
}

/* `npm config get KEY` on the host (npm reads the user's .npmrc; nothing is fetched), or NULL
 * when npm is missing or the key is unset. key is one of our literals. */
static char *host_npm_config(const char *key)
{
    char cmd[128];
    FILE *f;
    char line[1024];
    char *r = NULL;

    snprintf(cmd, sizeof(cmd), "npm config get %s 2>/dev/null", key);
    /* key is one of our constants ("registry", "cafile"): nothing from outside reaches sh */
    /* NOLINTNEXTLINE(cert-env33-c) */
    f = popen(cmd, "re");
    if (!f)
        return NULL;
    if (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] && strcmp(line, "undefined") != 0 && strcmp(line, "null") != 0)
            r = xstrdup(line);
    }
    (void)pclose(f);
    return r;
}

/* The last non-empty line of the log file (for the progress line). */
static void last_line(int fd, char *out, size_t size)
{
    char buf[4096];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
    char *s, *e;

    if (n <= 0)
        return;
    buf[n] = '\0';
    e = buf + n;
    while (e > buf && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' '))
        *--e = '\0';
    s = strrchr(buf, '\n');
    s = s ? s + 1 : buf;
    if (*s && size) {
        size_t len = MIN(strlen(s), size - 1);
        memcpy(out, s, len);
        out[len] = '\0';
    }
}

static void show_log_tail(const char *path)
{
    _cleanup_free_ char *data = NULL;
    struct config_error err;
    size_t len = 0, lines = 0;
    const char *p;

    if (config_read(path, true, &data, &len, &err) < 0)
        return;
    p = data + len;
    while (p > data && lines <= INSTALL_LOG_TAIL)
        if (*--p == '\n')
            lines++;
    if (*p == '\n')
        p++;
    fprintf(stderr, "%s", p);
    if (len && data[len - 1] != '\n')
        fputc('\n', stderr);
}

static int cmd_agent_install(int argc, char **argv)
{
    enum { OPT_REGISTRY = 0x2200, OPT_ALLOW_CIDR, OPT_UPSTREAM_DNS, OPT_QUIET };
    static const struct option longopts[] = {
        { "backend", required_argument, NULL, 'b' },
        { "config", required_argument, NULL, 'c' },
        { "registry", required_argument, NULL, OPT_REGISTRY },
        { "allow-cidr", required_argument, NULL, OPT_ALLOW_CIDR },
        { "upstream-dns", required_argument, NULL, OPT_UPSTREAM_DNS },
        { "quiet", no_argument, NULL, OPT_QUIET },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const struct cli_parser parser = { "agent install", "+b:c:vh", longopts, usage_agent, NULL };
    struct policy_args args = { 0 };
    struct bb_config cfg = { 0 };
    struct agent_profile p = { 0 };
    struct strv cidrs = { 0 }, rargv = { 0 };
    _cleanup_free_ char *registry = NULL, *pattern = NULL, *cidr = NULL, *cache = NULL,
                        *dest = NULL, *stage = NULL, *old = NULL, *logpath = NULL, *version = NULL,
                        *spec = NULL, *name = NULL, *regenv = NULL, *cafile = NULL, *caenv = NULL,
                        *camount = NULL, *bottle = NULL, *staging = NULL, *allow_scripts = NULL;
    const char *backend = NULL, *upstream = NULL, *want_version = NULL;
    _cleanup_close_ int logfd = -1;
    bool quiet = false, verbose = false;
    struct progress pr;
    int opt, ret = EXIT_BB_FAILURE, r, status = 0;
    pid_t pid;

    optind = 1;
    while ((opt = cli_getopt(&parser, argc, argv, &ret)) != -1) {
        switch (opt) {
        case CLI_OPT_EXIT:
            goto out;
        case 'b':
            backend = optarg;
            break;
        case 'c':
            (void)policy_args_handle(&args, 'c', optarg);
            break;
        case OPT_REGISTRY:
            free(registry);
            registry = xstrdup(optarg);
            break;
        case OPT_ALLOW_CIDR:
            strv_push(&cidrs, optarg);
            break;
        case OPT_UPSTREAM_DNS:
            upstream = optarg;
            break;
        case OPT_QUIET:
            quiet = true;
            break;
        default:
            break;
        }
    }
    ret = EXIT_BB_FAILURE;
    verbose = log_get_level() >= LOG_LVL_DEBUG;
    if (optind + 1 != argc) {
        log_error("agent install: name one agent (e.g. bot-bottle agent install claude)");
        goto out;
    }
    /* NAME[@VERSION] */
    name = xstrdup(argv[optind]);
    if (strchr(name, '@')) {
        *strchr(name, '@') = '\0';
        want_version = strchr(argv[optind], '@') + 1;
        if (!*want_version || strspn(want_version, "0123456789abcdefghijklmnopqrstuvwxyz.-+") !=
                                  strlen(want_version)) {
            log_error("agent install %s: expected NAME or NAME@VERSION (like claude@2.1.0)",
                      argv[optind]);
            goto out;
        }
    }
    if (agent_load_config(&args, &cfg) < 0)
        goto out;
    r = agent_profile_get(&cfg, name, &p);
    if (r == -ENOENT) {
        say_unknown_agent(name);
        goto out;
    }
    if (r < 0 || !p.package) {
        log_error("agent %s has no npm package to install (package = NAME in [agent \"%s\"])", name,
                  name);
        goto out;
    }
    if (!registry)
        registry = host_npm_config("registry");
    if (!registry)
        registry = xstrdup("https://registry.npmjs.org/");
    if (registry_target(registry, &pattern, &cidr) < 0) {
        log_error("the npm registry '%s' is not an http(s)://HOST[:PORT]/ URL; name one with "
                  "--registry URL",
                  registry);
        goto out;
    }
    if (agent_cache_root(&cache) < 0) {
        log_error("cannot place the agent cache: set XDG_CACHE_HOME or HOME to an absolute path");
        goto out;
    }
    r = agent_mkdir_p(cache, 0755);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "agent cache %s", cache);
        goto out;
    }
    dest = strf("%s/%s", cache, p.name);
    /* The staging directory is the install bottle's workspace, so it may not lie inside the
     * cache (no bottle writes there: agent_run_check_roots); next to it, on the same file
     * system, so that the rename below is one step. */
    staging = strf("%s.staging", cache);
    r = agent_mkdir_p(staging, 0755);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "agent staging directory %s", staging);
        goto out;
    }
    stage = strf("%s/%s.new-%ld", staging, p.name, (long)getpid());
    old = strf("%s/.%s.old-%ld", cache, p.name, (long)getpid());
    logpath = strf("%s/%s.install.log", cache, p.name);
    spec = strf("%s@%s", p.package, want_version ? want_version : "latest");
    regenv = strf("npm_config_registry=%s", registry);
    /* The CA file the host's npm trusts for the registry (often set in /usr/etc/npmrc, which
     * npm --prefix DIR does not read): the same file, read-only, wherever it is. */
    cafile = host_npm_config("cafile");
    if (cafile && cafile[0] == '/' && access(cafile, R_OK) == 0) {
        bool visible = strncmp(cafile, "/usr/", 5) == 0 ||
                       strcmp(cafile, "/etc/ssl/certs/ca-certificates.crt") == 0;
        caenv = strf("npm_config_cafile=%s", visible ? cafile : "/opt/bot-bottle/npm-cafile.pem");
        if (!visible)
            camount = strf("%s:/opt/bot-bottle/npm-cafile.pem:ro", cafile);
    }
    (void)rm_tree(stage);
    if (mkdir(stage, 0755) < 0) {
        log_errno(LOG_LVL_ERROR, -errno, "cannot create %s", stage);
        goto out;
    }
    logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (logfd < 0) {
        log_errno(LOG_LVL_ERROR, -errno, "cannot write the install log %s", logpath);
        goto out_stage;
    }

    /* The bottle: the staging directory is its workspace (the only place it writes); the
     * registry is its only host; no config file widens that. */
    strv_push(&rargv, "bot-bottle");
    strv_push(&rargv, "run");
    strv_push(&rargv, "--no-default-config");
    bottle = strf("install-%s-%ld", p.name, (long)getpid());
    strv_push(&rargv, "--name");
    strv_push(&rargv, bottle);
    strv_push(&rargv, "-w");
    strv_push(&rargv, stage);
    if (backend) {
        strv_push(&rargv, "-b");
        strv_push(&rargv, backend);
    } else if (!getenv("BOT_BOTTLE_BACKEND") && cfg.backend) {
        strv_push(&rargv, "-b");
        strv_push(&rargv, cfg.backend);
    }
    if (pattern) {
        strv_push(&rargv, "--allow");
        strv_push(&rargv, pattern);
    }
    if (cidr) {
        strv_push(&rargv, "--allow-cidr");
        strv_push(&rargv, cidr);
    }
    for (size_t i = 0; i < cidrs.n; i++) {
        strv_push(&rargv, "--allow-cidr");
        strv_push(&rargv, cidrs.v[i]);
    }
    if (upstream || cfg.upstream_dns) {
        strv_push(&rargv, "--upstream-dns");
        strv_push(&rargv, upstream ? upstream : cfg.upstream_dns);
    }
    if (verbose)
        strv_push(&rargv, "-v");
    strv_push(&rargv, "-e");
    strv_push(&rargv, regenv);
    if (caenv) {
        strv_push(&rargv, "-e");
        strv_push(&rargv, caenv);
    }
    if (camount) {
        strv_push(&rargv, "--mount");
        strv_push(&rargv, camount);
    }
    strv_push(&rargv, "--");
    strv_push(&rargv, "npm");
    strv_push(&rargv, "install");
    strv_push(&rargv, "--global");
    strv_push(&rargv, "--prefix");
    strv_push(&rargv, stage);
    strv_push(&rargv, "--no-fund");
    strv_push(&rargv, "--no-audit");
    strv_push(&rargv, "--no-update-notifier");
    strv_push(&rargv, "--loglevel=http");
    strv_push(&rargv, "--no-progress"); /* (a microVM's console looks like a terminal) */
    strv_push(&rargv, "--color=false");
    /* The package's own install scripts (Claude Code's postinstall links its native binary):
     * they run inside this bottle, which is the point; npm 11 warns that it will stop running
     * scripts not named here. Dependencies' scripts get no such allowance. */
    allow_scripts = strf("--allow-scripts=%s", p.package);
    strv_push(&rargv, allow_scripts);
    strv_push(&rargv, spec);

    {
        enum backend_source src;
        const char *be =
            backend_resolve_name(backend, getenv("BOT_BOTTLE_BACKEND"), cfg.backend, &src);
        progress_begin(&pr, quiet, "installing %s (%s from %s) in a %s bottle", p.name, spec,
                       registry, be);
        if (strcmp(be, "microvm") == 0 && !quiet) {
            progress_clear(&pr);
            log_info("the microvm backend can take minutes for this under TCG emulation; "
                     "-b namespace is faster (and shares the host's kernel)");
            progress_update(&pr, NULL);
        }
    }
    pid = fork();
    if (pid < 0) {
        progress_clear(&pr);
        log_errno(LOG_LVL_ERROR, -errno, "fork");
        goto out_stage;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
            _exit(EXIT_BB_FAILURE);
        execv("/proc/self/exe", rargv.v);
        _exit(EXIT_BB_FAILURE);
    }
    /* Ctrl-C reaches the child too, which stops its bottle; we wait for it to say so. */
    signal(SIGINT, SIG_IGN);
    for (;;) {
        char detail[160] = "";
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            status = EXIT_BB_FAILURE << 8;
            break;
        }
        last_line(logfd, detail, sizeof(detail));
        progress_update(&pr, "%s", detail);
        nanosleep(&(struct timespec){ 0, 200 * 1000 * 1000 }, NULL);
    }
    signal(SIGINT, SIG_DFL);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        progress_end(&pr, false, "installing %s failed", p.name);
        log_error("agent install %s: the install bottle exited with %s %d; the end of its output "
                  "(all of it in %s):",
                  p.name, WIFEXITED(status) ? "status" : "signal",
                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), logpath);
        show_log_tail(logpath);
        ret = WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : EXIT_BB_FAILURE;
        goto out_stage;
    }
    r = agent_installed_version(stage, p.package, &version);
    if (r < 0) {
        progress_end(&pr, false, "installing %s failed", p.name);
        log_errno(LOG_LVL_ERROR, r,
                  "agent install %s: npm finished but %s/lib/node_modules/%s/package.json is "
                  "missing or damaged (npm's output: %s)",
                  p.name, stage, p.package, logpath);
        goto out_stage;
    }
    /* Swap in the new one: rename the old out of the way, the new in, then drop the old. */
    if (rename(dest, old) < 0 && errno != ENOENT) {
        log_errno(LOG_LVL_ERROR, -errno, "cannot move the previous install %s aside", dest);
        goto out_stage;
    }
    if (rename(stage, dest) < 0) {
        log_errno(LOG_LVL_ERROR, -errno, "cannot move %s to %s", stage, dest);
        (void)rename(old, dest);
        goto out_stage;
    }
    (void)rm_tree(old);
    (void)rmdir(staging);
    progress_end(&pr, true, "installed %s %s (%s) in %s; audit: bot-bottle logs %s", p.name,
                 version, p.package, dest, bottle);
    ret = 0;
    goto out;
out_stage:
    (void)rm_tree(stage);
    (void)rmdir(staging); /* (when empty) */
out:
    strv_done(&cidrs);
    strv_done(&rargv);
    agent_profile_done(&p);
    config_done(&cfg);
    policy_args_done(&args);
    return ret;
}

int cmd_agent(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage_agent(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_BB_FAILURE : 0;
    }
    if (strcmp(argv[1], "install") == 0)
        return cmd_agent_install(argc - 1, argv + 1);
    if (strcmp(argv[1], "ls") == 0)
        return cmd_agent_ls(argc - 1, argv + 1);
    log_error("unknown agent command '%s'; try 'bot-bottle agent --help'", argv[1]);
    return EXIT_BB_FAILURE;
}

/* The policy options shared by `egress`, `policy check` and `run`, and the config files
 * behind them: which are read, which need the user's approval (docs/config.md "Trust"). */
#include <errno.h>
#include <getopt.h>
#include <libpsl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "dlp/dlp.h"

/* Changed lines shown when a file is refused. */
#define TRUST_DIFF_LINES 20

static struct policy_file *add_file(struct policy_args *a, const char *path)
{
    a->files = xrealloc(a->files, (a->n_files + 1) * sizeof(*a->files));
    a->files[a->n_files] = (struct policy_file){ .path = xstrdup(path) };
    return &a->files[a->n_files++];
}

/* -a https://example.com/path: a pattern is a host name; say which one was meant. */
static int refuse_url_pattern(const char *arg)
{
    const char *sep = strstr(arg, "://"), *h = sep ? sep + 3 : arg;
    size_t n = strcspn(h, "/?#");
    const char *at = memchr(h, '@', n);

    if (at) {
        n -= (size_t)(at + 1 - h);
        h = at + 1;
    }
    log_error("--allow '%s': a pattern is a host name, not a URL; use --allow %.*s", arg, (int)n,
              h);
    return -EINVAL;
}

int policy_args_handle(struct policy_args *a, int opt, const char *arg)
{
    switch (opt) {
    case 'a':
        /* "HOST METHODS PATH" is a method/path rule: only its host part must not be a URL */
        if (strstr(arg, "://") || strcspn(arg, "/") < strcspn(arg, " \t"))
            return refuse_url_pattern(arg);
        strv_push(&a->cli.allow, arg);
        return 1;
    case 0x1006:
        a->allow_public_suffix = true;
        return 1;
    case 0x1001:
        strv_push(&a->cli.allow_cidr, arg);
        return 1;
    case 0x1008: {
        uint32_t mask = 0;
        const char *why = NULL;
        if (dlp_parse_disable(arg, strlen(arg), &mask, &why) < 0) {
            log_error("--dlp-disable '%s': %s", arg, why);
            return -EINVAL;
        }
        strv_push(&a->cli.dlp_disable, arg);
        return 1;
    }
    case 'c':
        add_file(a, arg);
        return 1;
    case 0x1002: {
        struct net_addr na;
        if (net_addr_parse(arg, 53, &na) < 0) {
            log_error("--upstream-dns '%s': expected a numeric ADDR[:PORT], e.g. 127.0.0.1:5353 "
                      "or [::1]:53",
                      arg);
            return -EINVAL;
        }
        free(a->cli.upstream_dns);
        a->cli.upstream_dns = xstrdup(arg);
        return 1;
    }
    case 0x1007: {
        uint64_t v;
        if (str_to_u64_cstr(arg, HOLD_BLOCKED_MAX_S, &v) < 0) {
            log_error("--hold-blocked '%s': expected a number of seconds from 0 to %d (0: refuse "
                      "at once)",
                      arg, HOLD_BLOCKED_MAX_S);
            return -EINVAL;
        }
        a->cli.hold_blocked = (unsigned)v;
        a->cli.have_hold_blocked = true;
        return 1;
    }
    case 0x1003:
        free(a->cli.audit);
        a->cli.audit = xstrdup(arg);
        return 1;
    case 0x1004:
        if (a->n_files == 0 || a->files[a->n_files - 1].sha256[0]) {
            log_error("--config-sha256 applies to the -c FILE just before it");
            return -EINVAL;
        }
        if (!trust_hex_valid(arg)) {
            log_error("--config-sha256 '%s': expected 64 lowercase hex digits", arg);
            return -EINVAL;
        }
        memcpy(a->files[a->n_files - 1].sha256, arg, TRUST_HEX_LEN + 1);
        return 1;
    case 0x1005:
        a->no_default_config = true;
        return 1;
    default:
        return 0;
    }
}

int cli_getopt(const struct cli_parser *p, int argc, char **argv, int *ret_status)
{
    char *argv0 = argv[0];
    int opt, r;

    /* getopt's own messages start with argv[0] (the verb here): "bot-bottle: ..." instead */
    argv[0] = (char *)"bot-bottle";
    opt = getopt_long(argc, argv, p->shortopts, p->longopts, NULL);
    argv[0] = argv0;
    for (; opt != -1; argv[0] = (char *)"bot-bottle",
                      opt = getopt_long(argc, argv, p->shortopts, p->longopts, NULL),
                      argv[0] = argv0) {
        if (p->policy) {
            r = policy_args_handle(p->policy, opt, optarg);
            if (r < 0) {
                *ret_status = EXIT_BB_FAILURE;
                return CLI_OPT_EXIT;
            }
            if (r > 0)
                continue;
        }
        switch (opt) {
        case 'v':
            log_set_level(LOG_LVL_DEBUG);
            continue;
        case 'h':
            p->usage(stdout);
            *ret_status = 0;
            return CLI_OPT_EXIT;
        case '?':
        case ':':
            fprintf(stderr, "Try 'bot-bottle %s --help'.\n", p->verb);
            *ret_status = EXIT_BB_FAILURE;
            return CLI_OPT_EXIT;
        default:
            return opt;
        }
    }
    return -1;
}

static void merge_strv(struct strv *dst, const struct strv *src)
{
    for (size_t i = 0; i < src->n; i++)
        strv_push(dst, src->v[i]);
}

static void merge_str(char **dst, const char *src)
{
    if (src) {
        free(*dst);
        *dst = xstrdup(src);
    }
}

static bool in_writable_root(const struct policy_args *a, const char *canon, const char **ret_root)
{
    if (!a->writable_roots)
        return false;
    for (size_t i = 0; i < a->writable_roots->n; i++)
        if (trust_path_within(canon, a->writable_roots->v[i])) {
            if (ret_root)
                *ret_root = a->writable_roots->v[i];
            return true;
        }
    return false;
}

/* Fix the file list: the -c files or the search; canonical paths; which need trust. */
static int resolve_files(struct policy_args *a)
{
    struct stat st;
    int r;

    if (a->n_files == 0 && !a->no_default_config) {
        _cleanup_free_ char *user = NULL;
        r = config_default_path(&user);
        if (r < 0)
            return log_errno(LOG_LVL_ERROR, r, "cannot look for a config file");
        if (user)
            add_file(a, user);
        /* A directory there is no config file: it is the empty placeholder the supervisor
         * of a bottle running in this workspace keeps (docs/workspace.md), so it counts as
         * absent and a second bottle started meanwhile gets the same configuration. */
        if (lstat(CONFIG_PROJECT_FILE, &st) == 0 ? !S_ISDIR(st.st_mode) : errno != ENOENT)
            add_file(a, CONFIG_PROJECT_FILE)->project = true;
    }
    for (size_t i = 0; i < a->n_files; i++) {
        struct policy_file *f = &a->files[i];
        char rp[PATH_MAX];
        /* A bottle could point a project file at any host file (and get it shown on the
         * terminal as "what it contains", or hang us on a FIFO): only a regular file. */
        if (f->project && lstat(f->path, &st) == 0 && !S_ISREG(st.st_mode)) {
            log_error("./%s is %s; bot-bottle only uses a regular file there (name another file "
                      "with -c FILE)",
                      f->path, S_ISLNK(st.st_mode) ? "a symbolic link" : "not a regular file");
            return -EPERM;
        }
        if (!realpath(f->path, rp))
            return log_errno(LOG_LVL_ERROR, -errno, "config file %s", f->path);
        free(f->path);
        f->path = xstrdup(rp);
        f->needs_trust = f->project || in_writable_root(a, rp, NULL);
    }
    return 0;
}

/* The trust store for files that need approval; refused when a bottle could write it. */
static int trust_store(const struct policy_args *a, char **ret)
{
    _cleanup_free_ char *store = NULL, *canon = NULL;
    const char *root = NULL;
    int r;

    r = trust_store_dir(&store);
    if (r < 0) {
        log_error("cannot locate the trust store of approved config files: set HOME or "
                  "XDG_CONFIG_HOME to an absolute path");
        return r;
    }
    r = trust_canonicalize(store, &canon);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "trust store %s", store);
    if (in_writable_root(a, canon, &root)) {
        log_error("the trust store %s lies inside %s, which the bottle can write, so an approval "
                  "found there could have been forged by a bottle; no config file that needs "
                  "approval is used. Set XDG_CONFIG_HOME to a directory outside it (or run from "
                  "a narrower --workspace)",
                  canon, root);
        return -EPERM;
    }
    *ret = TAKE_PTR(canon);
    return 0;
}

/* Refuse f (content data, hash hex): say what changed and how to approve it. */
static int refuse_untrusted(const struct policy_file *f, const char *store, const char *data,
                            size_t len, const char *hex)
{
    _cleanup_free_ char *old = NULL;
    char old_hex[TRUST_HEX_LEN + 1];
    size_t old_len = 0;
    struct buf d = BUF_INIT(16384);
    int r;

    r = trust_lookup(store, f->path, old_hex, &old, &old_len);
    if (r == 0) {
        trust_diff(old, old_len, data, len, TRUST_DIFF_LINES, &d);
        log_error("%s changed since you approved it (sha256 %.12s... approved, %.12s... now), "
                  "so it is not used: a bottle can write this file. What changed:",
                  f->path, old_hex, hex);
    } else {
        if (r != -ENOENT)
            log_warn("the approval of %s in %s is damaged (%s); ignoring it", f->path, store,
                     strerror(-r));
        trust_diff(NULL, 0, data, len, TRUST_DIFF_LINES, &d);
        log_error("%s is not trusted, so it is not used: a bottle can write this file, and "
                  "bot-bottle uses such a file only once you approved its exact content. It "
                  "contains:",
                  f->path);
    }
    /* The lines, then the way out; both whatever the log level (this is the error). */
    fputs(buf_str(&d), stderr);
    fprintf(stderr, "bot-bottle: to use it as it is now, review it and run: bot-bottle trust %s\n",
            f->path);
    buf_done(&d);
    return -EPERM;
}

static void say_loaded(const struct policy_args *a)
{
    struct buf b = BUF_INIT(8192);
    bool any_trusted = false;

    for (size_t i = 0; i < a->n_files; i++) {
        const struct policy_file *f = &a->files[i];
        (void)buf_printf(&b, "%s%s%s", i ? ", " : "", f->path, f->trusted ? " (trusted)" : "");
        any_trusted |= f->trusted;
    }
    /* A file someone had to approve is always named; the user's own with -v. */
    if (any_trusted)
        log_info("config: %s", buf_str(&b));
    else
        log_debug("config: %s", a->n_files ? buf_str(&b) : "no file");
    buf_done(&b);
}

/* Read, vet and load one file into cfg. */
static int load_file(struct policy_args *a, struct policy_file *f, const char *store,
                     struct bb_config *cfg)
{
    _cleanup_free_ char *data = NULL;
    struct config_error err = { 0 };
    char hex[TRUST_HEX_LEN + 1], eb[1024];
    size_t len = 0;
    int r;

    /* Never through a symlink planted as the final component of a file that needs trust. */
    r = config_read(f->path, f->needs_trust, &data, &len, &err);
    if (r < 0) {
        log_error("%s", config_error_str(&err, eb, sizeof(eb)));
        return r;
    }
    r = trust_sha256_hex(data, len, hex);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot hash %s", f->path);
    if (f->sha256[0]) {
        if (strcmp(hex, f->sha256) != 0) {
            if (a->resolved)
                log_error("reload: %s changed since it was approved at start (sha256 %.12s..., "
                          "now %.12s...); the policy is not reloaded. Restart the bottle after "
                          "approving it with: bot-bottle trust %s",
                          f->path, f->sha256, hex, f->path);
            else
                log_error("%s does not have the expected content (sha256 %.12s..., found "
                          "%.12s...); it is not used",
                          f->path, f->sha256, hex);
            return -EPERM;
        }
    } else if (f->needs_trust) {
        char ok_hex[TRUST_HEX_LEN + 1];
        r = trust_lookup(store, f->path, ok_hex, NULL, NULL);
        if (r < 0 || strcmp(ok_hex, hex) != 0)
            return refuse_untrusted(f, store, data, len, hex);
        /* What reloads (and the daemon) must find again. */
        memcpy(f->sha256, hex, sizeof(hex));
        f->trusted = true;
    }
    if (f->needs_trust) {
        /* A file a bottle can write never defines a credential: it would name the command the
         * host runs or the file it reads for the secret, and the host it is sent to. */
        struct bb_config one = { 0 };
        size_t n;
        r = config_load_string(f->path, data, len, &one, &err);
        n = one.n_creds;
        config_done(&one);
        if (r == 0 && n) {
            log_error("%s defines [credential] sections, which bot-bottle reads only from your "
                      "own config file (%s) or --credential: a bottle can write %s",
                      f->path, "$XDG_CONFIG_HOME/bot-bottle/config.ini", f->path);
            return -EPERM;
        }
    }
    /* [microvm] kernel picks the code the bottle's own kernel runs: only from the user's
     * config, never from a file a project or a bottle can write (even an approved one). */
    char *kernel = cfg->kernel;
    cfg->kernel = NULL;
    r = config_load_string(f->path, data, len, cfg, &err);
    if (r < 0) {
        cfg->kernel = kernel;
        log_error("%s", config_error_str(&err, eb, sizeof(eb)));
        return r;
    }
    if (cfg->kernel && f->needs_trust) {
        free(kernel);
        log_error("%s: [microvm] kernel is not taken from a project's or workspace's config "
                  "file (it chooses the bottle's kernel); set it in your own config file",
                  f->path);
        return -EPERM;
    }
    if (!cfg->kernel)
        cfg->kernel = kernel;
    else
        free(kernel);
    return 0;
}

/*
 * A wildcard pattern over a whole public suffix (*.com, *.co.uk: ICANN section of the Public
 * Suffix List, through libpsl) allows most of the internet: refused unless confirmed with
 * --allow-public-suffix. Without the list's data, every single-label suffix (*.com) counts.
 */
static int refuse_public_suffix(const struct strv *allow)
{
    static psl_ctx_t *latest;
    static bool loaded;
    const psl_ctx_t *psl;

    if (!loaded) {
        latest = psl_latest(NULL);
        loaded = true;
    }
    psl = latest ? latest : psl_builtin();
    for (size_t i = 0; i < allow->n; i++) {
        const char *pat = allow->v[i], *base;
        char name[256];
        size_t n;
        bool pub;

        if (strncmp(pat, "*.", 2) != 0)
            continue;
        base = pat + 2;
        n = strcspn(base, ": \t");
        if (n == 0 || n >= sizeof(name))
            continue; /* (the policy parser says what is wrong with it) */
        memcpy(name, base, n);
        name[n] = '\0';
        for (size_t k = 0; k < n; k++)
            name[k] = (char)(name[k] >= 'A' && name[k] <= 'Z' ? name[k] + 32 : name[k]);
        if (n > 1 && name[n - 1] == '.')
            name[--n] = '\0';
        pub = psl ? psl_is_public_suffix2(psl, name, PSL_TYPE_ICANN | PSL_TYPE_NO_STAR_RULE)
                  : !strchr(name, '.');
        if (pub) {
            log_error(
                "the allow pattern '%s' covers the whole public suffix .%s (every site under it); "
                "name the sites instead (--allow example.%s), or confirm with "
                "--allow-public-suffix",
                pat, name, name);
            return -EPERM;
        }
    }
    return 0;
}

/* The settings of cfg that only a start reads, one text each (policy_args.at_start). */
static void start_only(const struct bb_config *cfg, struct strv *out)
{
    char line[1024];

    for (size_t i = 0; i < cfg->n_creds; i++)
        if (str_printf(line, sizeof(line), "credential \"%s\" for %s:%u", cfg->creds[i].name,
                       cfg->creds[i].host, (unsigned)cfg->creds[i].port) == 0)
            strv_push(out, line);
    for (size_t i = 0; i < cfg->inspect.n; i++)
        if (str_printf(line, sizeof(line), "inspect = %s", cfg->inspect.v[i]) == 0)
            strv_push(out, line);
}

int policy_args_finish(struct policy_args *a, struct bb_config *ret_cfg, struct policy **ret_policy)
{
    struct bb_config cfg = { 0 };
    _cleanup_free_ char *store = NULL;
    const char *msg = NULL, *item = NULL;
    int r;

    if (!a->resolved) {
        r = resolve_files(a);
        if (r < 0)
            return r;
        for (size_t i = 0; i < a->n_files; i++)
            if (a->files[i].needs_trust && !a->files[i].sha256[0]) {
                r = trust_store(a, &store);
                if (r < 0)
                    return r;
                break;
            }
    }
    for (size_t i = 0; i < a->n_files; i++) {
        r = load_file(a, &a->files[i], store, &cfg);
        if (r < 0) {
            config_done(&cfg);
            return r;
        }
    }
    if (!a->resolved) {
        a->resolved = true;
        say_loaded(a);
        start_only(&cfg, &a->at_start);
    }
    /* Command line over the file: lists add, scalars replace. */
    merge_strv(&cfg.allow, &a->cli.allow);
    merge_strv(&cfg.allow_cidr, &a->cli.allow_cidr);
    merge_strv(&cfg.env_pass, &a->cli.env_pass);
    merge_strv(&cfg.dlp_disable, &a->cli.dlp_disable);
    merge_str(&cfg.upstream_dns, a->cli.upstream_dns);
    merge_str(&cfg.audit, a->cli.audit);
    if (a->cli.have_hold_blocked) {
        cfg.have_hold_blocked = true;
        cfg.hold_blocked = a->cli.hold_blocked;
    }
    merge_str(&cfg.listen, a->cli.listen);
    merge_str(&cfg.dns, a->cli.dns);
    merge_str(&cfg.backend, a->cli.backend);
    merge_str(&cfg.name, a->cli.name);
    if (a->cli.cpus)
        cfg.cpus = a->cli.cpus;
    if (a->cli.memory)
        cfg.memory = a->cli.memory;

    if (!a->allow_public_suffix) {
        r = refuse_public_suffix(&cfg.allow);
        if (r < 0) {
            config_done(&cfg);
            return r;
        }
    }
    if (ret_policy) {
        r = config_build_policy(&cfg, ret_policy, &msg, &item);
        if (r < 0) {
            log_error("'%s': %s", item ? item : "?", msg ? msg : "invalid");
            config_done(&cfg);
            return r;
        }
    }
    *ret_cfg = cfg;
    return 0;
}

void policy_args_done(struct policy_args *a)
{
    for (size_t i = 0; i < a->n_files; i++)
        free(a->files[i].path);
    free(a->files);
    a->files = NULL;
    a->n_files = 0;
    config_done(&a->cli);
    strv_done(&a->at_start);
}

int policy_args_reload(void *userdata, struct policy **ret)
{
    struct policy_args *a = userdata;
    struct strv now = { 0 };
    struct bb_config cfg;
    int r = policy_args_finish(a, &cfg, ret);

    if (r < 0)
        return r;
    /* Credentials and [egress] inspect are read at start only: a credential's placeholder is
     * in the bottle's environment from its start, an intercepted host's CA in its trust. What
     * a reload adds of them is not used, and said so. */
    start_only(&cfg, &now);
    for (size_t i = 0; i < now.n; i++) {
        bool known = false;
        for (size_t k = 0; k < a->at_start.n && !known; k++)
            known = strcmp(now.v[i], a->at_start.v[k]) == 0;
        if (!known)
            log_warn("reload: the %s is new since the start and is not used: credentials and "
                     "inspect are read at start only (for a method/path rule's host, 'bot-bottle "
                     "allow NAME RULE' intercepts it at run time); restart the bottle to use it",
                     now.v[i]);
    }
    strv_done(&now);
    config_done(&cfg);
    return r;
}

void policy_args_daemon_argv(const struct policy_args *a, const struct bb_config *cfg,
                             struct strv *out)
{
    strv_push(out, "--no-default-config");
    if (a->allow_public_suffix)
        strv_push(out, "--allow-public-suffix");
    for (size_t i = 0; i < a->n_files; i++) {
        strv_push(out, "--config");
        strv_push(out, a->files[i].path);
        if (a->files[i].sha256[0]) {
            strv_push(out, "--config-sha256");
            strv_push(out, a->files[i].sha256);
        }
    }
    for (size_t i = 0; i < a->cli.allow.n; i++) {
        strv_push(out, "--allow");
        strv_push(out, a->cli.allow.v[i]);
    }
    for (size_t i = 0; i < a->cli.allow_cidr.n; i++) {
        strv_push(out, "--allow-cidr");
        strv_push(out, a->cli.allow_cidr.v[i]);
    }
    for (size_t i = 0; i < a->cli.dlp_disable.n; i++) {
        strv_push(out, "--dlp-disable");
        strv_push(out, a->cli.dlp_disable.v[i]);
    }
    if (cfg->upstream_dns) {
        strv_push(out, "--upstream-dns");
        strv_push(out, cfg->upstream_dns);
    }
    if (a->cli.have_hold_blocked) {
        char n[16];
        snprintf(n, sizeof(n), "%u", a->cli.hold_blocked);
        strv_push(out, "--hold-blocked");
        strv_push(out, n);
    }
}

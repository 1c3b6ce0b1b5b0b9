/*
 * The configuration file: INI parsed by libinih, every value validated on load so an error
 * always names file:line. See config.h and docs/config.md.
 *
 * libinih caveats (Debian's libinih 55): it reads lines into a fixed buffer (INI_MAX_LINE, 200
 * bytes) and silently splits a longer line, so the tail would be parsed as a line of its own
 * ("allow = <190 bytes>evil.com" -> a second key); it treats indented lines as continuations
 * of the previous value; and it does not stop at the first error. So we never let inih read
 * the text itself: our reader (ini_parse_stream) hands it exactly one physical line per call,
 * refuses a line that does not fit inih's buffer (inih tells the reader its size) or is longer
 * than BB_MAX_CONFIG_LINE, NUL and control bytes, unknown [sections], strips leading
 * whitespace (so there are no continuation lines), and reports EOF after the first error.
 */
#include "config/config.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/macro.h"
#include "common/str.h"
#include "common/xalloc.h"
#include "dlp/dlp.h"

void strv_push(struct strv *s, const char *str)
{
    s->v = xrealloc(s->v, (s->n + 2) * sizeof(*s->v));
    s->v[s->n++] = xstrdup(str);
    s->v[s->n] = NULL;
}

void strv_done(struct strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static void agent_done(struct bb_config_agent *a)
{
    free(a->name);
    /* the merges (config_load_string, config_merge_credentials) move a new entry into the slot */
    /* they emptied; the analyzer loses that struct copy and sees the old pointers freed twice */
    /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
    free(a->command);
    strv_done(&a->allow);
    strv_done(&a->env);
    free(a->state);
    free(a->state_env);
    free(a->package);
    *a = (struct bb_config_agent){ 0 };
}

bool config_agent_name_valid(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > BB_MAX_AGENT_NAME || !ascii_isalnum(name[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(name[i] >= 'a' && name[i] <= 'z') && !ascii_isdigit(name[i]) && name[i] != '-' &&
            name[i] != '_')
            return false;
    return true;
}

const struct bb_config_agent *config_find_agent(const struct bb_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_agents; i++)
        if (strcmp(cfg->agents[i].name, name) == 0)
            return &cfg->agents[i];
    return NULL;
}

static void credential_done(struct bb_credential *c)
{
    free(c->name);
    /* as in agent_done() */
    /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
    free(c->host);
    free(c->header);
    free(c->value);
    free(c->env);
    *c = (struct bb_credential){ 0 };
}

void config_done(struct bb_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_agents; i++)
        agent_done(&cfg->agents[i]);
    free(cfg->agents);
    free(cfg->backend);
    free(cfg->accel);
    free(cfg->kernel);
    free(cfg->snapshot);
    free(cfg->name);
    strv_done(&cfg->allow);
    strv_done(&cfg->allow_cidr);
    strv_done(&cfg->dlp_disable);
    free(cfg->upstream_dns);
    free(cfg->listen);
    free(cfg->dns);
    free(cfg->audit);
    strv_done(&cfg->inspect);
    free(cfg->tls_extra_ca);
    strv_done(&cfg->env_pass);
    strv_done(&cfg->allow_write);
    for (size_t i = 0; i < cfg->n_creds; i++)
        credential_done(&cfg->creds[i]);
    free(cfg->creds);
    *cfg = (struct bb_config){ 0 };
}

const char *config_error_str(const struct config_error *e, char *buf, size_t size)
{
    if (e->line)
        snprintf(buf, size, "%s:%u: %s", e->path, e->line, e->msg);
    else
        snprintf(buf, size, "%s: %s", e->path, e->msg);
    return buf;
}

int config_parse_size(const char *s, uint64_t *ret)
{
    size_t len;
    unsigned shift = 0;
    uint64_t v;

    if (!s)
        return -EINVAL;
    len = strlen(s);
    if (len == 0)
        return -EINVAL;
    switch (s[len - 1]) {
    case 'K':
    case 'k':
        shift = 10;
        break;
    case 'M':
    case 'm':
        shift = 20;
        break;
    case 'G':
    case 'g':
        shift = 30;
        break;
    case 'T':
    case 't':
        shift = 40;
        break;
    default:
        break;
    }
    if (shift)
        len--;
    if (str_to_u64(slice_make(s, len), UINT64_MAX >> shift, &v) < 0)
        return -EINVAL;
    *ret = v << shift;
    return 0;
}

enum scalar {
    SC_BACKEND,
    SC_ACCEL,
    SC_KERNEL,
    SC_SNAPSHOT,
    SC_CPUS,
    SC_MEMORY,
    SC_NAME,
    SC_UPSTREAM_DNS,
    SC_LISTEN,
    SC_DNS,
    SC_AUDIT,
    SC_EXTRA_CA,
    SC_MAX
};

struct load_ctx {
    const char *text;
    size_t len;
    size_t pos;
    unsigned lineno;
    bool failed;
    unsigned err_line;
    char err_msg[sizeof(((struct config_error *)0)->msg)];
    unsigned scalar_line[SC_MAX];  /* where each scalar was set, for "set twice" */
    struct bb_config cfg;          /* scratch: merged into the caller's only on success */
    const char *name;              /* the file, for agent sections */
    struct bb_config_agent *agent; /* the [agent "NAME"] section being read, or NULL */
    struct policy *scratch;        /* validates patterns and CIDRs as they come */
};

static int ctx_fail(struct load_ctx *c, const char *fmt, ...) _printf_(2, 3);
static int ctx_fail(struct load_ctx *c, const char *fmt, ...)
{
    va_list ap;

    if (c->failed)
        return 0;
    c->failed = true;
    c->err_line = c->lineno;
    va_start(ap, fmt);
    vsnprintf(c->err_msg, sizeof(c->err_msg), fmt, ap);
    va_end(ap);
    return 0; /* what an inih handler returns on error */
}

/*
 * The reader saw a section header: `agent "NAME"` starts a profile (once per file); every
 * other section ends the current one. Returns false after ctx_fail.
 */
static bool begin_section(struct load_ctx *c, const char *s, size_t len)
{
    char name[BB_MAX_AGENT_NAME + 1];
    size_t n;
    struct bb_config_agent *a;

    c->agent = NULL;
    if (len < 8 || memcmp(s, "agent \"", 7) != 0)
        return true;
    n = len - 8;
    if (s[len - 1] != '"' || n == 0 || n > BB_MAX_AGENT_NAME) {
        ctx_fail(c,
                 "write an agent section as [agent \"NAME\"] (NAME: 1-%d of a-z, 0-9, "
                 "'-', '_')",
                 BB_MAX_AGENT_NAME);
        return false;
    }
    memcpy(name, s + 7, n);
    name[n] = '\0';
    if (!config_agent_name_valid(name)) {
        ctx_fail(c,
                 "[agent \"%s\"]: an agent name is 1-%d of a-z, 0-9, '-', '_', starting with "
                 "a letter or digit",
                 name, BB_MAX_AGENT_NAME);
        return false;
    }
    for (size_t i = 0; i < c->cfg.n_agents; i++)
        if (strcmp(c->cfg.agents[i].name, name) == 0) {
            ctx_fail(c, "[agent \"%s\"] is already on line %u; keep one section per agent", name,
                     c->cfg.agents[i].line);
            return false;
        }
    if (c->cfg.n_agents == BB_MAX_CONFIG_AGENTS) {
        ctx_fail(c, "more than %d [agent] sections in one file", BB_MAX_CONFIG_AGENTS);
        return false;
    }
    c->cfg.agents = xrealloc(c->cfg.agents, (c->cfg.n_agents + 1) * sizeof(*c->cfg.agents));
    a = &c->cfg.agents[c->cfg.n_agents++];
    *a = (struct bb_config_agent){ .name = xstrdup(name), .line = c->lineno };
    snprintf(a->file, sizeof(a->file), "%s", c->name ? c->name : "(config)");
    c->agent = a;
    return true;
}

/* `credential "NAME"`: sets ret_name and ret_len to the NAME. */
static bool credential_section(const char *s, size_t len, const char **ret_name, size_t *ret_len)
{
    static const char pre[] = "credential \"";
    if (len < sizeof(pre) || memcmp(s, pre, sizeof(pre) - 1) != 0 || s[len - 1] != '"')
        return false;
    *ret_name = s + sizeof(pre) - 1;
    *ret_len = len - (sizeof(pre) - 1) - 1;
    return policy_cred_name_valid(*ret_name, *ret_len);
}

static bool known_section(const char *s, size_t len)
{
    static const char *const sections[] = { "bottle", "egress", "env", "tls", "dlp", "microvm" };
    const char *n;
    size_t nl;

    if (len > 7 && memcmp(s, "agent \"", 7) == 0)
        return true; /* (begin_section checks the rest) */
    for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
        if (strlen(sections[i]) == len && memcmp(sections[i], s, len) == 0)
            return true;
    return credential_section(s, len, &n, &nl);
}

/* inih's reader: one physical line per call, vetted before inih sees it. */
static char *config_reader(char *str, int num, void *stream)
{
    struct load_ctx *c = stream;
    const char *line, *nl;
    size_t len;

    if (c->failed || c->pos >= c->len)
        return NULL;
    line = c->text + c->pos;
    nl = memchr(line, '\n', c->len - c->pos);
    len = nl ? (size_t)(nl - line) : c->len - c->pos;
    c->pos += len + (nl ? 1 : 0);
    c->lineno++;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    /* A UTF-8 byte order mark; dropped here so the section check below sees line 1 too. */
    if (c->lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        line += 3;
        len -= 3;
    }

    if (memchr(line, '\0', len)) {
        ctx_fail(c, "NUL byte in line: this is not a text file");
        return NULL;
    }
    /* Detect over-long lines ourselves: inih would split them silently. */
    size_t max = MIN((size_t)BB_MAX_CONFIG_LINE, num > 1 ? (size_t)num - 1 : 0);
    if (len > max) {
        ctx_fail(c, "line is %zu bytes, longer than the %zu the INI parser handles; shorten it",
                 len, max);
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)line[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            ctx_fail(c, "control character 0x%02x in line; remove it", ch);
            return NULL;
        }
    }
    /* No leading whitespace: inih would take an indented line as a continuation. */
    while (len > 0 && (*line == ' ' || *line == '\t')) {
        line++;
        len--;
    }
    if (len > 0 && line[0] == '[') {
        const char *close = memchr(line, ']', len);
        if (!close) {
            ctx_fail(c, "section header without ']'; write [bottle], [egress], [env] or "
                        "[agent \"NAME\"]");
            return NULL;
        }
        for (const char *t = close + 1; t < line + len && *t != ';' && *t != '#'; t++) {
            if (*t != ' ' && *t != '\t') {
                ctx_fail(c, "text after the section header; put keys on their own lines");
                return NULL;
            }
        }
        if (!known_section(line + 1, (size_t)(close - line - 1))) {
            ctx_fail(c,
                     "unknown section [%.*s]; known sections are [bottle], [egress], [env], "
                     "[dlp], [tls], [microvm], [agent \"NAME\"] and [credential \"NAME\"] (NAME: "
                     "a-z, 0-9, '-', '_')",
                     (int)MIN((size_t)(close - line - 1), 64), line + 1);
            return NULL;
        }
        if (!begin_section(c, line + 1, (size_t)(close - line - 1)))
            return NULL;
    }
    memcpy(str, line, len);
    str[len] = '\0';
    return str;
}

static bool valid_backend(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(v[i] >= 'a' && v[i] <= 'z') && !ascii_isdigit(v[i]) && v[i] != '-' && v[i] != '_')
            return false;
    return true;
}

/* A canonical relative path: no leading or trailing '/', no empty, '.' or '..' component. */
static bool valid_rel_path(const char *v)
{
    return strlen(v) < PATH_MAX && str_path_rel_clean(v);
}

static bool valid_name(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > 64 || !ascii_isalnum(v[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!ascii_isalnum(v[i]) && v[i] != '-' && v[i] != '_' && v[i] != '.')
            return false;
    return true;
}

static bool valid_env_name(const char *v, size_t n)
{
    if (n == 0 || n > 255 || ascii_isdigit(v[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!ascii_isalnum(v[i]) && v[i] != '_')
            return false;
    return true;
}

/* Set a scalar once; a second setting in the same file is an error. */
static int set_scalar(struct load_ctx *c, enum scalar which, const char *key, char **slot,
                      const char *value)
{
    if (c->scalar_line[which])
        return ctx_fail(c, "%s is already set on line %u; keep one of them", key,
                        c->scalar_line[which]);
    c->scalar_line[which] = c->lineno;
    if (slot) {
        free(*slot);
        *slot = xstrdup(value);
    }
    return 1;
}

static int handle_bottle(struct load_ctx *c, const char *key, const char *value)
{
    uint64_t v;

    if (strcmp(key, "backend") == 0) {
        if (!valid_backend(value))
            return ctx_fail(c,
                            "backend: '%.64s' is not a backend name (e.g. microvm, "
                            "namespace, docker, auto)",
                            value);
        return set_scalar(c, SC_BACKEND, key, &c->cfg.backend, value);
    }
    if (strcmp(key, "cpus") == 0) {
        if (str_to_u64_cstr(value, 256, &v) < 0 || v == 0)
            return ctx_fail(c, "cpus: '%.32s' is not a number from 1 to 256", value);
        c->cfg.cpus = (unsigned)v;
        return set_scalar(c, SC_CPUS, key, NULL, value);
    }
    if (strcmp(key, "memory") == 0) {
        if (config_parse_size(value, &v) < 0 || v == 0)
            return ctx_fail(c, "memory: '%.32s' is not a size; write e.g. 512M or 2G", value);
        c->cfg.memory = v;
        return set_scalar(c, SC_MEMORY, key, NULL, value);
    }
    if (strcmp(key, "name") == 0) {
        if (!valid_name(value))
            return ctx_fail(c, "name: use 1-64 letters, digits, '-', '_', '.', starting with a "
                               "letter or digit");
        return set_scalar(c, SC_NAME, key, &c->cfg.name, value);
    }
    if (strcmp(key, "allow_write") == 0) {
        if (!valid_rel_path(value))
            return ctx_fail(c,
                            "allow_write: '%.80s' is not a path relative to the workspace "
                            "(like .vscode or .git/hooks: no leading '/', no '.' or '..')",
                            value);
        strv_push(&c->cfg.allow_write, value);
        return 1;
    }
    return ctx_fail(c,
                    "unknown key '%.64s' in [bottle]; known keys: backend, cpus, memory, name, "
                    "allow_write",
                    key);
}

/* [microvm] accel = auto|kvm|tcg, kernel = /absolute/vmlinux | stock, snapshot = on|off
 * (docs/microvm.md) */
static int handle_microvm(struct load_ctx *c, const char *key, const char *value)
{
    if (strcmp(key, "accel") == 0) {
        if (strcmp(value, "auto") != 0 && strcmp(value, "kvm") != 0 && strcmp(value, "tcg") != 0)
            return ctx_fail(c, "accel: '%.32s' is not auto, kvm or tcg", value);
        return set_scalar(c, SC_ACCEL, key, &c->cfg.accel, value);
    }
    if (strcmp(key, "kernel") == 0) {
        /* "stock": Debian's kernel from scripts/fetch-stock-kernel.sh, with its modules */
        if (strcmp(value, "stock") != 0 && (value[0] != '/' || strlen(value) >= PATH_MAX))
            return ctx_fail(
                c, "kernel: '%.80s' is neither 'stock' nor an absolute path to a vmlinux", value);
        return set_scalar(c, SC_KERNEL, key, &c->cfg.kernel, value);
    }
    if (strcmp(key, "snapshot") == 0) {
        if (strcmp(value, "on") != 0 && strcmp(value, "off") != 0)
            return ctx_fail(c, "snapshot: '%.32s' is not on or off", value);
        return set_scalar(c, SC_SNAPSHOT, key, &c->cfg.snapshot, value);
    }
    return ctx_fail(c, "unknown key '%.64s' in [microvm]; known keys: accel, kernel, snapshot",
                    key);
}

static int handle_addr(struct load_ctx *c, enum scalar which, const char *key, char **slot,
                       const char *value, uint16_t default_port)
{
    struct net_addr a;

    if (net_addr_parse(value, default_port, &a) < 0) {
        if (default_port)
            return ctx_fail(c, "%s: '%.64s' is not a numeric ADDR[:PORT] (IPv6 as [ADDR]:PORT)",
                            key, value);
        return ctx_fail(c, "%s: '%.64s' is not a numeric ADDR:PORT (IPv6 as [ADDR]:PORT)", key,
                        value);
    }
    return set_scalar(c, which, key, slot, value);
}

static int handle_egress(struct load_ctx *c, const char *key, const char *value)
{
    const char *msg = "invalid";
    int r;

    if (strcmp(key, "allow") == 0) {
        r = policy_add_allow(c->scratch, value, strlen(value), &msg);
        if (r < 0)
            return ctx_fail(c, "allow: '%.80s': %s", value, msg);
        strv_push(&c->cfg.allow, value);
        return 1;
    }
    if (strcmp(key, "allow_cidr") == 0) {
        r = policy_add_cidr(c->scratch, value, strlen(value), &msg);
        if (r < 0)
            return ctx_fail(c, "allow_cidr: '%.80s': %s", value, msg);
        strv_push(&c->cfg.allow_cidr, value);
        return 1;
    }
    if (strcmp(key, "upstream_dns") == 0)
        return handle_addr(c, SC_UPSTREAM_DNS, key, &c->cfg.upstream_dns, value, 53);
    if (strcmp(key, "listen") == 0)
        return handle_addr(c, SC_LISTEN, key, &c->cfg.listen, value, 0);
    if (strcmp(key, "dns") == 0)
        return handle_addr(c, SC_DNS, key, &c->cfg.dns, value, 0);
    if (strcmp(key, "audit") == 0) {
        if (strlen(value) >= PATH_MAX)
            return ctx_fail(c, "audit: path too long");
        return set_scalar(c, SC_AUDIT, key, &c->cfg.audit, value);
    }
    if (strcmp(key, "inspect") == 0) {
        struct host h;
        uint16_t port;
        const char *msg2 = NULL;
        if (host_parse_authority(value, strlen(value), 443, &h, &port, &msg2) < 0 ||
            h.kind != HOST_NAME || strchr(value, '*'))
            return ctx_fail(c, "inspect: '%.80s' is not HOST[:PORT] (one host name, no wildcard)",
                            value);
        strv_push(&c->cfg.inspect, value);
        return 1;
    }
    if (strcmp(key, "hold_blocked") == 0) {
        uint64_t v;
        if (str_to_u64_cstr(value, HOLD_BLOCKED_MAX_S, &v) < 0)
            return ctx_fail(c, "hold_blocked: '%.64s' is not a number of seconds from 0 to %d",
                            value, HOLD_BLOCKED_MAX_S);
        c->cfg.hold_blocked = (unsigned)v;
        c->cfg.have_hold_blocked = true;
        return 1;
    }
    return ctx_fail(c,
                    "unknown key '%.64s' in [egress]; known keys: allow, allow_cidr, "
                    "upstream_dns, listen, dns, audit, hold_blocked, inspect",
                    key);
}

static int handle_env(struct load_ctx *c, const char *key, const char *value)
{
    const char *eq;

    if (strcmp(key, "pass") != 0)
        return ctx_fail(c, "unknown key '%.64s' in [env]; the only key is pass = NAME[=VALUE]",
                        key);
    eq = strchr(value, '=');
    if (!valid_env_name(value, eq ? (size_t)(eq - value) : strlen(value)))
        return ctx_fail(c,
                        "pass: '%.64s' is not NAME or NAME=VALUE (NAME: letters, digits, "
                        "'_', not starting with a digit)",
                        value);
    strv_push(&c->cfg.env_pass, value);
    return 1;
}

static int handle_dlp(struct load_ctx *c, const char *key, const char *value)
{
    const char *msg = "invalid";
    uint32_t mask = 0;

    if (strcmp(key, "disable") != 0)
        return ctx_fail(c, "unknown key '%.64s' in [dlp]; the only key is disable = RULE[,RULE]",
                        key);
    if (dlp_parse_disable(value, strlen(value), &mask, &msg) < 0)
        return ctx_fail(c, "disable: '%.80s': %s", value, msg);
    strv_push(&c->cfg.dlp_disable, value);
    return 1;
}

/* An npm package name: name or @scope/name, lowercase URL-safe characters (npm's rules). */
static bool valid_package(const char *v)
{
    size_t n = strlen(v);
    const char *slash = strchr(v, '/');

    if (n == 0 || n > 214 || v[0] == '.' || v[0] == '_' || v[0] == '-')
        return false;
    if (v[0] == '@' ? (!slash || slash == v + 1 || !slash[1] || strchr(slash + 1, '/')) : !!slash)
        return false;
    for (size_t i = v[0] == '@' ? 1 : 0; i < n; i++)
        if (!(v[i] >= 'a' && v[i] <= 'z') && !ascii_isdigit(v[i]) && !strchr("-._~/", v[i]))
            return false;
    return true;
}

static int handle_agent(struct load_ctx *c, const char *key, const char *value)
{
    struct bb_config_agent *a = c->agent;
    const char *msg = "invalid", *eq;
    char **slot = NULL;

    if (!a)
        return ctx_fail(c, "'%.64s' outside an [agent \"NAME\"] section", key);
    if (strcmp(key, "command") == 0) {
        /* Exec'd as it is (no shell): a name on the bottle's PATH or an absolute path. */
        if (strlen(value) > 255 || (strchr(value, '/') && value[0] != '/') || strpbrk(value, " \t"))
            return ctx_fail(c,
                            "command: '%.64s' is not a program name (looked up on the "
                            "bottle's PATH) or an absolute path; arguments go after the agent "
                            "name on the command line",
                            value);
        slot = &a->command;
    } else if (strcmp(key, "allow") == 0) {
        if (policy_add_allow(c->scratch, value, strlen(value), &msg) < 0)
            return ctx_fail(c, "allow: '%.80s': %s", value, msg);
        strv_push(&a->allow, value);
        return 1;
    } else if (strcmp(key, "env") == 0) {
        eq = strchr(value, '=');
        if (!valid_env_name(value, eq ? (size_t)(eq - value) : strlen(value)))
            return ctx_fail(c, "env: '%.64s' is not NAME (passed when set here) or NAME=VALUE",
                            value);
        strv_push(&a->env, value);
        return 1;
    } else if (strcmp(key, "state") == 0) {
        if (!valid_rel_path(value))
            return ctx_fail(c,
                            "state: '%.80s' is not a path relative to $HOME (like .aider: no "
                            "leading '/', no '.' or '..')",
                            value);
        slot = &a->state;
    } else if (strcmp(key, "state_env") == 0) {
        if (!valid_env_name(value, strlen(value)))
            return ctx_fail(c, "state_env: '%.64s' is not a variable name", value);
        slot = &a->state_env;
    } else if (strcmp(key, "package") == 0) {
        if (!valid_package(value))
            return ctx_fail(c,
                            "package: '%.80s' is not an npm package name (name or "
                            "@scope/name)",
                            value);
        slot = &a->package;
    } else {
        return ctx_fail(c,
                        "unknown key '%.64s' in [agent \"%s\"]; known keys: command, allow, env, "
                        "state, state_env, package",
                        key, a->name);
    }
    if (*slot)
        return ctx_fail(c, "%s is set twice in [agent \"%s\"]; keep one", key, a->name);
    *slot = xstrdup(value);
    return 1;
}

/* env:NAME, file:/PATH or command:CMD */
static bool source_ok(const char *v)
{
    if (strncmp(v, "env:", 4) == 0)
        return valid_env_name(v + 4, strlen(v + 4));
    if (strncmp(v, "file:", 5) == 0)
        return v[5] == '/' && strlen(v) < PATH_MAX;
    if (strncmp(v, "command:", 8) == 0)
        return v[8] != '\0' && strspn(v + 8, " \t") < strlen(v + 8);
    return false;
}

/* The bottle's variable when none is named: VAR of an env:VAR source, else BB_CRED_<NAME>
 * (upper case, '-' as '_'). */
static char *default_env(const struct bb_credential *c)
{
    char v[64];
    size_t n;

    if (strncmp(c->value, "env:", 4) == 0)
        return xstrdup(c->value + 4);
    n = (size_t)snprintf(v, sizeof(v), "BB_CRED_%s", c->name);
    for (size_t i = 8; i < n && i < sizeof(v); i++)
        v[i] = v[i] == '-' ? '_' : (char)(v[i] >= 'a' && v[i] <= 'z' ? v[i] - 32 : v[i]);
    return xstrdup(v);
}

int config_add_credential(struct bb_config *cfg, const char *name, const char *host, uint16_t port,
                          const char *header, const char *value, const char *env,
                          const char **reterr_msg)
{
    struct host h;
    const char *herr = NULL;
    struct bb_credential *c;

    if (!policy_cred_name_valid(name, strlen(name))) {
        *reterr_msg = "a credential name is 1-32 of a-z, 0-9, '-', '_'";
        return -EINVAL;
    }
    if (host_parse(host, strlen(host), &h, &herr) < 0 || h.kind != HOST_NAME || strchr(host, '*')) {
        *reterr_msg = "host: expected one host name (no wildcard, no address), e.g. "
                      "api.anthropic.com";
        return -EINVAL;
    }
    if (!policy_cred_header_valid(header, strlen(header))) {
        *reterr_msg = "header: expected a request header name such as x-api-key or "
                      "authorization (not Host, Content-Length, Transfer-Encoding, "
                      "Proxy-Authorization or a hop-by-hop field)";
        return -EINVAL;
    }
    if (!source_ok(value)) {
        *reterr_msg = "value: expected env:VARIABLE, file:/ABSOLUTE/PATH or command:COMMAND";
        return -EINVAL;
    }
    if (env && !valid_env_name(env, strlen(env))) {
        *reterr_msg = "env: expected a variable name (letters, digits, '_')";
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->n_creds; i++)
        if (strcmp(cfg->creds[i].name, name) == 0) {
            *reterr_msg = "a credential of that name is already defined";
            return -EINVAL;
        }
    if (cfg->n_creds >= BB_MAX_CREDENTIALS) {
        *reterr_msg = "too many credentials (at most 64)";
        return -EINVAL;
    }
    cfg->creds = xrealloc(cfg->creds, (cfg->n_creds + 1) * sizeof(*cfg->creds));
    c = &cfg->creds[cfg->n_creds++];
    *c = (struct bb_credential){ 0 };
    c->name = xstrdup(name);
    c->host = xstrdup(h.name);
    c->port = port ? port : 443;
    c->header = xstrdup(header);
    c->value = xstrdup(value);
    c->env = env ? xstrdup(env) : default_env(c);
    return 0;
}

int config_parse_credential_arg(struct bb_config *cfg, const char *arg, const char **reterr_msg)
{
    /* NAME:HOST[:PORT]:HEADER:SOURCE; SOURCE (last) may hold ':' itself. */
    char *copy = xstrdup(arg), *f[4] = { NULL }, *p = copy, *src;
    uint64_t port = 0;
    size_t n = 0;
    int r;

    while (n < 4 && p) {
        char *colon = strchr(p, ':');
        if (!colon)
            break;
        *colon = '\0';
        f[n++] = p;
        p = colon + 1;
    }
    /* f[0] NAME, f[1] HOST, then PORT (all digits) or HEADER */
    if (n >= 3 && f[2][0] && strspn(f[2], "0123456789") == strlen(f[2])) {
        if (n < 4 || str_to_u64_cstr(f[2], 65535, &port) < 0 || port == 0) {
            *reterr_msg = "expected NAME:HOST[:PORT]:HEADER:SOURCE, the port 1..65535";
            free(copy);
            return -EINVAL;
        }
        src = p;
        r = config_add_credential(cfg, f[0], f[1], (uint16_t)port, f[3], src, NULL, reterr_msg);
    } else if (n >= 3) {
        /* the source started at f[3] (its own ':' was cut): glue it back */
        char *header = f[2];
        src = n == 4 ? f[3] : p;
        if (n == 4)
            src[strlen(src)] = ':';
        r = config_add_credential(cfg, f[0], f[1], 0, header, src, NULL, reterr_msg);
    } else {
        *reterr_msg = "expected NAME:HOST[:PORT]:HEADER:SOURCE, e.g. "
                      "anthropic:api.anthropic.com:x-api-key:env:ANTHROPIC_API_KEY";
        r = -EINVAL;
    }
    free(copy);
    return r;
}

/* [credential "NAME"] keys; the entry is created by its first key. */
static int handle_credential(struct load_ctx *c, const char *cname, size_t cname_len,
                             const char *key, const char *value)
{
    struct bb_credential *cr = NULL;
    char **slot = NULL;
    uint64_t v;

    for (size_t i = 0; i < c->cfg.n_creds; i++)
        if (strlen(c->cfg.creds[i].name) == cname_len &&
            memcmp(c->cfg.creds[i].name, cname, cname_len) == 0)
            cr = &c->cfg.creds[i];
    if (!cr) {
        if (c->cfg.n_creds >= BB_MAX_CREDENTIALS)
            return ctx_fail(c, "too many credentials (at most %d)", BB_MAX_CREDENTIALS);
        c->cfg.creds = xrealloc(c->cfg.creds, (c->cfg.n_creds + 1) * sizeof(*c->cfg.creds));
        cr = &c->cfg.creds[c->cfg.n_creds++];
        *cr = (struct bb_credential){ 0 };
        cr->name = xstrndup(cname, cname_len);
        cr->line = c->lineno;
    }
    if (strcmp(key, "host") == 0) {
        struct host h;
        const char *herr = NULL;
        if (host_parse(value, strlen(value), &h, &herr) < 0 || h.kind != HOST_NAME ||
            strchr(value, '*'))
            return ctx_fail(c, "host: '%.80s' is not one host name (no wildcard, no address)",
                            value);
        slot = &cr->host;
        value = h.name;
        if (*slot)
            return ctx_fail(c, "host is already set for credential %s", cr->name);
        *slot = xstrdup(value);
        return 1;
    }
    if (strcmp(key, "port") == 0) {
        if (cr->port)
            return ctx_fail(c, "port is already set for credential %s", cr->name);
        if (str_to_u64_cstr(value, 65535, &v) < 0 || v == 0)
            return ctx_fail(c, "port: '%.16s' is not a port (1..65535)", value);
        cr->port = (uint16_t)v;
        return 1;
    }
    if (strcmp(key, "header") == 0) {
        if (!policy_cred_header_valid(value, strlen(value)))
            return ctx_fail(c,
                            "header: '%.64s' is not a request header a credential can go in "
                            "(e.g. x-api-key, authorization)",
                            value);
        slot = &cr->header;
    } else if (strcmp(key, "value") == 0) {
        /* never echo it: it names where the secret is, and may be mistyped as the secret */
        if (!source_ok(value))
            return ctx_fail(c, "value: expected env:VARIABLE, file:/ABSOLUTE/PATH or "
                               "command:COMMAND (the secret itself never goes in a file)");
        slot = &cr->value;
    } else if (strcmp(key, "env") == 0) {
        if (!valid_env_name(value, strlen(value)))
            return ctx_fail(c, "env: '%.64s' is not a variable name", value);
        slot = &cr->env;
    } else {
        return ctx_fail(c,
                        "unknown key '%.64s' in [credential \"%s\"]; known keys: host, port, "
                        "header, value, env",
                        key, cr->name);
    }
    if (*slot)
        return ctx_fail(c, "%s is already set for credential %s", key, cr->name);
    *slot = xstrdup(value);
    return 1;
}

/* Each credential of the file must be complete. Returns 0 or fails c. */
static int check_credentials(struct load_ctx *c)
{
    for (size_t i = 0; i < c->cfg.n_creds; i++) {
        struct bb_credential *cr = &c->cfg.creds[i];
        const char *missing = !cr->host     ? "host"
                              : !cr->header ? "header"
                              : !cr->value  ? "value"
                                            : NULL;
        if (missing) {
            c->lineno = cr->line;
            ctx_fail(c, "credential %s has no %s; it needs host, header and value", cr->name,
                     missing);
            return -EINVAL;
        }
        if (!cr->port)
            cr->port = 443;
        if (!cr->env)
            cr->env = default_env(cr);
    }
    return 0;
}

static int handle_tls(struct load_ctx *c, const char *key, const char *value)
{
    if (strcmp(key, "extra_ca") == 0) {
        if (value[0] != '/' || strlen(value) >= PATH_MAX)
            return ctx_fail(c, "extra_ca: give the absolute path of a PEM file");
        return set_scalar(c, SC_EXTRA_CA, key, &c->cfg.tls_extra_ca, value);
    }
    return ctx_fail(c, "unknown key '%.64s' in [tls]; the only key is extra_ca = FILE", key);
}

static int config_handler(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *c = user;

    if (c->failed)
        return 0;
    if (!name || !*name)
        return ctx_fail(c, "no key before '='; write key = value");
    if (!value || !*value)
        return ctx_fail(c, "%.64s has an empty value; give a value or remove the line", name);
    if (!section || !*section)
        return ctx_fail(c,
                        "'%.64s' outside a section; put it under [bottle], [egress], [env] or "
                        "[agent \"NAME\"]",
                        name);
    if (strcmp(section, "bottle") == 0)
        return handle_bottle(c, name, value);
    if (strcmp(section, "egress") == 0)
        return handle_egress(c, name, value);
    if (strcmp(section, "env") == 0)
        return handle_env(c, name, value);
    if (strcmp(section, "dlp") == 0)
        return handle_dlp(c, name, value);
    if (strcmp(section, "microvm") == 0)
        return handle_microvm(c, name, value);
    if (strncmp(section, "agent \"", 7) == 0)
        return handle_agent(c, name, value);
    if (strcmp(section, "tls") == 0)
        return handle_tls(c, name, value);
    {
        const char *cn;
        size_t cl;
        if (credential_section(section, strlen(section), &cn, &cl))
            return handle_credential(c, cn, cl, name, value);
    }
    /* the reader refuses unknown sections; keep the check for safety */
    return ctx_fail(c, "unknown section [%.64s]", section);
}

static void move_str(char **dst, char **src)
{
    if (!*src)
        return;
    free(*dst);
    *dst = *src;
    *src = NULL;
}

static void move_strv(struct strv *dst, struct strv *src)
{
    for (size_t i = 0; i < src->n; i++)
        strv_push(dst, src->v[i]);
    strv_done(src);
}

static void set_error(struct config_error *e, const char *name, unsigned line, const char *msg)
{
    if (!e)
        return;
    snprintf(e->path, sizeof(e->path), "%s", name ? name : "(config)");
    e->line = line;
    snprintf(e->msg, sizeof(e->msg), "%s", msg);
}

void config_merge_credentials(struct bb_config *dst, struct bb_config *src)
{
    for (size_t i = 0; i < src->n_creds; i++) {
        /* a name defined before: the later definition replaces it */
        struct bb_credential *cr = &src->creds[i];
        size_t k = 0;
        while (k < dst->n_creds && strcmp(dst->creds[k].name, cr->name) != 0)
            k++;
        if (k == dst->n_creds) {
            if (dst->n_creds >= BB_MAX_CREDENTIALS)
                continue;
            dst->creds = xrealloc(dst->creds, (dst->n_creds + 1) * sizeof(*dst->creds));
            dst->n_creds++;
        } else {
            credential_done(&dst->creds[k]);
        }
        dst->creds[k] = *cr;
        *cr = (struct bb_credential){ 0 };
    }
}

int config_load_string(const char *name, const char *text, size_t len, struct bb_config *cfg,
                       struct config_error *reterr)
{
    struct load_ctx c = { .text = text, .len = len, .name = name };
    int r;

    if (!cfg || (!text && len))
        return -EINVAL;
    if (len > BB_MAX_CONFIG_FILE) {
        set_error(reterr, name, 0, "file larger than 1 MiB; this is not a bot-bottle config");
        return -EFBIG;
    }
    c.scratch = policy_new();
    r = ini_parse_stream(config_reader, &c, config_handler, &c);
    policy_free(c.scratch);

    if (r > 0 && (!c.failed || (unsigned)r < c.err_line)) {
        set_error(reterr, name, (unsigned)r,
                  "syntax error: expected [section], key = value, or a comment (# or ;)");
        config_done(&c.cfg);
        return -EINVAL;
    }
    if (!c.failed && r == 0)
        (void)check_credentials(&c);
    if (c.failed || r != 0) {
        set_error(reterr, name, c.err_line, c.failed ? c.err_msg : "cannot parse");
        config_done(&c.cfg);
        return r == -2 ? -ENOMEM : -EINVAL;
    }

    move_str(&cfg->backend, &c.cfg.backend);
    move_str(&cfg->accel, &c.cfg.accel);
    move_str(&cfg->kernel, &c.cfg.kernel);
    move_str(&cfg->snapshot, &c.cfg.snapshot);
    if (c.cfg.cpus)
        cfg->cpus = c.cfg.cpus;
    if (c.cfg.memory)
        cfg->memory = c.cfg.memory;
    move_str(&cfg->name, &c.cfg.name);
    move_strv(&cfg->allow, &c.cfg.allow);
    move_strv(&cfg->allow_cidr, &c.cfg.allow_cidr);
    move_str(&cfg->upstream_dns, &c.cfg.upstream_dns);
    move_str(&cfg->listen, &c.cfg.listen);
    move_str(&cfg->dns, &c.cfg.dns);
    move_str(&cfg->audit, &c.cfg.audit);
    move_strv(&cfg->inspect, &c.cfg.inspect);
    move_str(&cfg->tls_extra_ca, &c.cfg.tls_extra_ca);
    if (c.cfg.have_hold_blocked) {
        cfg->have_hold_blocked = true;
        cfg->hold_blocked = c.cfg.hold_blocked;
    }
    move_strv(&cfg->env_pass, &c.cfg.env_pass);
    move_strv(&cfg->dlp_disable, &c.cfg.dlp_disable);
    move_strv(&cfg->allow_write, &c.cfg.allow_write);
    config_merge_credentials(cfg, &c.cfg);
    /* A later file's profile replaces an earlier one of the same name as a whole. */
    for (size_t i = 0; i < c.cfg.n_agents; i++) {
        struct bb_config_agent *old =
            (struct bb_config_agent *)config_find_agent(cfg, c.cfg.agents[i].name);
        if (old) {
            agent_done(old);
        } else {
            cfg->agents = xrealloc(cfg->agents, (cfg->n_agents + 1) * sizeof(*cfg->agents));
            old = &cfg->agents[cfg->n_agents++];
        }
        *old = c.cfg.agents[i];
        c.cfg.agents[i] = (struct bb_config_agent){ 0 };
    }
    config_done(&c.cfg);
    return 0;
}

int config_read(const char *path, bool nofollow, char **ret_data, size_t *ret_len,
                struct config_error *reterr)
{
    _cleanup_close_ int fd = -1;
    _cleanup_free_ char *data = NULL;
    struct stat st;
    size_t got = 0;
    int r;

    if (!path || !ret_data || !ret_len)
        return -EINVAL;
    /* O_NONBLOCK: a FIFO planted there must not hang us (it is refused below). */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (nofollow ? O_NOFOLLOW : 0));
    if (fd < 0) {
        int err = errno;
        set_error(reterr, path, 0,
                  err == ELOOP && nofollow ? "is a symbolic link; bot-bottle does not follow it "
                                             "here (name the file it points to)"
                                           : strerror(err));
        return -err;
    }
    if (fstat(fd, &st) < 0) {
        int err = errno;
        set_error(reterr, path, 0, strerror(err));
        return -err;
    }
    if (!S_ISREG(st.st_mode)) {
        set_error(reterr, path, 0, "not a regular file");
        return -EINVAL;
    }
    r = config_read_fd(fd, BB_MAX_CONFIG_FILE, &data, &got);
    if (r < 0) {
        set_error(reterr, path, 0,
                  r == -EFBIG ? "file larger than 1 MiB; this is not a bot-bottle config"
                              : strerror(-r));
        return r;
    }
    *ret_data = TAKE_PTR(data);
    *ret_len = got;
    return 0;
}

int config_read_fd(int fd, size_t max, char **ret_data, size_t *ret_len)
{
    /* One byte past the cap is read, so an oversized file is noticed even if it grew. */
    _cleanup_free_ char *data = xmalloc(max + 1);
    size_t got = 0;

    for (;;) {
        ssize_t n = read(fd, data + got, max + 1 - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > max)
            return -EFBIG;
    }
    data[got] = '\0';
    *ret_data = TAKE_PTR(data);
    *ret_len = got;
    return 0;
}

int config_load(const char *path, struct bb_config *cfg, struct config_error *reterr)
{
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    int r;

    if (!path || !cfg)
        return -EINVAL;
    r = config_read(path, false, &data, &len, reterr);
    if (r < 0)
        return r;
    return config_load_string(path, data, len, cfg, reterr);
}

static int path_join(char **ret, const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 1;
    char *p = xmalloc(n);

    if (str_printf(p, n, "%s%s", a, b) < 0) {
        free(p);
        return -ENAMETOOLONG;
    }
    *ret = p;
    return 0;
}

int config_default_path(char **ret_path)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    char *p = NULL;
    int r;

    /* XDG Base Directory: a relative XDG_CONFIG_HOME is invalid and ignored. */
    if (xdg && xdg[0] == '/')
        r = path_join(&p, xdg, "/bot-bottle/config.ini");
    else if (home && home[0] == '/')
        r = path_join(&p, home, "/.config/bot-bottle/config.ini");
    else {
        *ret_path = NULL;
        return 0;
    }
    if (r < 0)
        return r;
    if (access(p, F_OK) != 0) {
        free(p);
        p = NULL;
    }
    *ret_path = p;
    return 0;
}

/* add(p, item) for each item of list; on failure the reason and the item, and the error. */
static int add_each(struct policy *p, const struct strv *list,
                    int (*add)(struct policy *, const char *, size_t, const char **),
                    const char **reterr_msg, const char **reterr_item)
{
    const char *msg = NULL;

    for (size_t i = 0; i < list->n; i++) {
        int r = add(p, list->v[i], strlen(list->v[i]), &msg);
        if (r < 0) {
            *reterr_msg = msg;
            *reterr_item = list->v[i];
            return r;
        }
    }
    return 0;
}

int config_build_policy(const struct bb_config *cfg, struct policy **ret, const char **reterr_msg,
                        const char **reterr_item)
{
    struct policy *p = policy_new();
    int r;

    if ((r = add_each(p, &cfg->allow, policy_add_allow, reterr_msg, reterr_item)) < 0 ||
        (r = add_each(p, &cfg->allow_cidr, policy_add_cidr, reterr_msg, reterr_item)) < 0) {
        policy_free(p);
        return r;
    }
    uint32_t off = 0;
    for (size_t i = 0; i < cfg->dlp_disable.n; i++)
        if (dlp_parse_disable(cfg->dlp_disable.v[i], strlen(cfg->dlp_disable.v[i]), &off,
                              reterr_msg) < 0) {
            *reterr_item = cfg->dlp_disable.v[i];
            policy_free(p);
            return -EINVAL;
        }
    policy_set_dlp_off(p, off);
    *ret = p;
    return 0;
}

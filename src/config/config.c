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
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/macro.h"
#include "common/str.h"
#include "common/xalloc.h"

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

void config_done(struct bb_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->backend);
    free(cfg->accel);
    free(cfg->kernel);
    free(cfg->name);
    strv_done(&cfg->allow);
    strv_done(&cfg->allow_cidr);
    free(cfg->upstream_dns);
    free(cfg->listen);
    free(cfg->dns);
    free(cfg->audit);
    strv_done(&cfg->env_pass);
    strv_done(&cfg->allow_write);
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
    SC_CPUS,
    SC_MEMORY,
    SC_NAME,
    SC_UPSTREAM_DNS,
    SC_LISTEN,
    SC_DNS,
    SC_AUDIT,
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
    unsigned scalar_line[SC_MAX]; /* where each scalar was set, for "set twice" */
    struct bb_config cfg;         /* scratch: merged into the caller's only on success */
    struct policy *scratch;       /* validates patterns and CIDRs as they come */
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

static bool known_section(const char *s, size_t len)
{
    static const char *const sections[] = { "bottle", "egress", "env", "microvm" };
    for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
        if (strlen(sections[i]) == len && memcmp(sections[i], s, len) == 0)
            return true;
    return false;
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
            ctx_fail(c, "section header without ']'; write [bottle], [egress] or [env]");
            return NULL;
        }
        for (const char *t = close + 1; t < line + len && *t != ';' && *t != '#'; t++) {
            if (*t != ' ' && *t != '\t') {
                ctx_fail(c, "text after the section header; put keys on their own lines");
                return NULL;
            }
        }
        if (!known_section(line + 1, (size_t)(close - line - 1))) {
            ctx_fail(
                c,
                "unknown section [%.*s]; known sections are [bottle], [egress], [env], [microvm]",
                (int)MIN((size_t)(close - line - 1), 64), line + 1);
            return NULL;
        }
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

/* [microvm] accel = auto|kvm|tcg, kernel = /absolute/vmlinux (docs/microvm.md) */
static int handle_microvm(struct load_ctx *c, const char *key, const char *value)
{
    if (strcmp(key, "accel") == 0) {
        if (strcmp(value, "auto") != 0 && strcmp(value, "kvm") != 0 && strcmp(value, "tcg") != 0)
            return ctx_fail(c, "accel: '%.32s' is not auto, kvm or tcg", value);
        return set_scalar(c, SC_ACCEL, key, &c->cfg.accel, value);
    }
    if (strcmp(key, "kernel") == 0) {
        if (value[0] != '/' || strlen(value) >= PATH_MAX)
            return ctx_fail(c, "kernel: '%.80s' is not an absolute path to a vmlinux", value);
        return set_scalar(c, SC_KERNEL, key, &c->cfg.kernel, value);
    }
    return ctx_fail(c, "unknown key '%.64s' in [microvm]; known keys: accel, kernel", key);
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
    return ctx_fail(c,
                    "unknown key '%.64s' in [egress]; known keys: allow, allow_cidr, "
                    "upstream_dns, listen, dns, audit",
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
        return ctx_fail(c, "'%.64s' outside a section; put it under [bottle], [egress] or [env]",
                        name);
    if (strcmp(section, "bottle") == 0)
        return handle_bottle(c, name, value);
    if (strcmp(section, "egress") == 0)
        return handle_egress(c, name, value);
    if (strcmp(section, "env") == 0)
        return handle_env(c, name, value);
    if (strcmp(section, "microvm") == 0)
        return handle_microvm(c, name, value);
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

int config_load_string(const char *name, const char *text, size_t len, struct bb_config *cfg,
                       struct config_error *reterr)
{
    struct load_ctx c = { .text = text, .len = len };
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
    if (c.failed || r != 0) {
        set_error(reterr, name, c.err_line, c.failed ? c.err_msg : "cannot parse");
        config_done(&c.cfg);
        return r == -2 ? -ENOMEM : -EINVAL;
    }

    move_str(&cfg->backend, &c.cfg.backend);
    move_str(&cfg->accel, &c.cfg.accel);
    move_str(&cfg->kernel, &c.cfg.kernel);
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
    move_strv(&cfg->env_pass, &c.cfg.env_pass);
    move_strv(&cfg->allow_write, &c.cfg.allow_write);
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
    *ret = p;
    return 0;
}

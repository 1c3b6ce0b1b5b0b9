/* The bottle spec: validation, canonical text encoding and a strict decoder. */
#include "guest/spec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/macro.h"
#include "common/str.h"
#include "common/xalloc.h"

/* One encoded line: key, SP, a value of at most MAX_STR bytes each escaped to 4, LF. */
#define SPEC_MAX_LINE (16 + 2 * 4 * (BOTTLE_SPEC_MAX_PATH + 1) + 4 * BOTTLE_SPEC_MAX_STR)

static const char *const rootfs_names[BOTTLE_ROOTFS_MAX] = {
    [BOTTLE_ROOTFS_BIND] = "bind",
    [BOTTLE_ROOTFS_9P] = "9p",
};

static const char *const reserved_env[] = {
    "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
    "all_proxy",  "NO_PROXY",    "no_proxy",   "BOT_BOTTLE",  "BOT_BOTTLE_NAME",
};

const char *bottle_rootfs_name(enum bottle_rootfs r)
{
    if ((unsigned)r >= BOTTLE_ROOTFS_MAX)
        return NULL;
    return rootfs_names[r];
}

void bottle_spec_free_strv(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

void bottle_spec_done(struct bottle_spec *s)
{
    free(s->name);
    free(s->hostname);
    free(s->user);
    free(s->home);
    free(s->workspace);
    free(s->channel);
    for (size_t i = 0; i < s->n_env; i++)
        free(s->env[i]);
    free(s->env);
    for (size_t i = 0; i < s->n_mounts; i++) {
        free(s->mounts[i].src);
        free(s->mounts[i].dst);
    }
    free(s->mounts);
    for (size_t i = 0; i < s->n_protect; i++)
        free(s->protect[i]);
    free(s->protect);
    for (size_t i = 0; i < s->argc; i++)
        free(s->argv[i]);
    free(s->argv);
    memset(s, 0, sizeof(*s));
}

/* ---- validation ---- */

bool bottle_path_is_canonical(const char *p)
{
    size_t n;

    if (!p || p[0] != '/')
        return false;
    n = strlen(p);
    if (n > BOTTLE_SPEC_MAX_PATH)
        return false;
    if (n == 1)
        return true;
    /* Every component between slashes must be non-empty and not "." or "..". */
    return str_path_rel_clean(p + 1);
}

/* Paths the bottle builds itself; a workspace or extra mount may not land on or under them. */
static bool path_is_system(const char *p)
{
    static const char *const sys[] = { "/proc", "/dev", "/sys" };

    if (strcmp(p, "/") == 0)
        return true;
    for (size_t i = 0; i < ARRAY_SIZE(sys); i++) {
        size_t n = strlen(sys[i]);
        if (strncmp(p, sys[i], n) == 0 && (p[n] == '\0' || p[n] == '/'))
            return true;
    }
    return false;
}

/* True when p is canonical and strictly beneath the canonical directory dir. */
static bool path_strictly_beneath(const char *p, const char *dir)
{
    size_t n = strlen(dir);

    return p && bottle_path_is_canonical(p) && strncmp(p, dir, n) == 0 && p[n] == '/' &&
           p[n + 1] != '\0';
}

const char *bottle_spec_protect_root(const struct bottle_spec *s, const char *path)
{
    const char *root = NULL;
    bool ro = false;

    if (s->workspace && path_strictly_beneath(path, s->workspace))
        root = s->workspace;
    /* The deepest wins (a later mount on the same DST sits on top): it is what the bottle
     * sees there. Beneath a read-only one, the path is read-only already. */
    for (size_t i = 0; s->mounts && i < s->n_mounts; i++) {
        const struct bottle_mount *m = &s->mounts[i];
        if (m->dst && path_strictly_beneath(path, m->dst) &&
            (!root || strlen(m->dst) >= strlen(root))) {
            root = m->dst;
            ro = m->ro;
        }
    }
    return ro ? NULL : root;
}

bool bottle_spec_protect_ok(const struct bottle_spec *s, const char *path)
{
    return bottle_spec_protect_root(s, path) != NULL;
}

/* [A-Za-z0-9_.-]{1,max}, first character alphanumeric or '_'. */
static bool name_ok(const char *s, size_t max)
{
    size_t n;

    if (!s)
        return false;
    n = strlen(s);
    if (n == 0 || n > max || s[0] == '-' || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!ascii_isalnum(s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return false;
    return true;
}

static bool env_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > BOTTLE_SPEC_MAX_ENV_NAME || ascii_isdigit(s[0]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!ascii_isalnum(s[i]) && s[i] != '_')
            return false;
    return true;
}

bool bottle_env_name_reserved(const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_SIZE(reserved_env); i++)
        if (strlen(reserved_env[i]) == len && memcmp(reserved_env[i], name, len) == 0)
            return true;
    return false;
}

static bool env_entry_ok(const char *e)
{
    const char *eq = strchr(e, '=');

    if (!eq || strlen(e) > BOTTLE_SPEC_MAX_STR)
        return false;
    return env_name_ok(e, (size_t)(eq - e)) && !bottle_env_name_reserved(e, (size_t)(eq - e));
}

static bool alias_ok(struct in_addr a)
{
    uint32_t h = ntohl(a.s_addr);

    /* 127.0.0.0/8 minus its network, broadcast and 127.0.0.1 ("localhost" in /etc/hosts). */
    return (h >> 24) == 127 && h != 0x7f000000u && h != 0x7fffffffu && h != 0x7f000001u;
}

static bool channel_ok(const char *c)
{
    uint64_t fd;

    if (!c)
        return false;
    if (strncmp(c, "fd:", 3) == 0) {
        /* canonical decimal: no leading zeros */
        if (c[3] == '0' && c[4] != '\0')
            return false;
        return str_to_u64_cstr(c + 3, 65535, &fd) == 0;
    }
    return strncmp(c, "/dev/", 5) == 0 && c[5] != '\0' && bottle_path_is_canonical(c);
}

/* Home goes into /etc/passwd, so it must not carry the field separator or a newline. */
static bool passwd_field_ok(const char *s)
{
    return s && !strpbrk(s, ":\n");
}

static bool tmpfs_sizes_ok(const struct bottle_spec *s)
{
    for (size_t i = 0; i < BOTTLE_TMPFS_MAX; i++)
        if (s->tmpfs_size[i] == 0 || s->tmpfs_size[i] > BOTTLE_SPEC_MAX_TMPFS)
            return false;
    return true;
}

int bottle_spec_validate(const struct bottle_spec *s, const char **reterr_field)
{
    const char *bad = NULL;

    if (!name_ok(s->name, BOTTLE_SPEC_MAX_NAME))
        bad = "name";
    else if (!name_ok(s->hostname, BOTTLE_SPEC_MAX_NAME))
        bad = "hostname";
    else if (!alias_ok(s->alias))
        bad = "alias";
    else if (!name_ok(s->user, BOTTLE_SPEC_MAX_USER))
        bad = "user";
    else if (s->uid == UINT32_MAX)
        bad = "uid";
    else if (s->gid == UINT32_MAX)
        bad = "gid";
    else if (!bottle_path_is_canonical(s->home) || !passwd_field_ok(s->home) ||
             path_is_system(s->home))
        bad = "home";
    else if (!bottle_path_is_canonical(s->workspace) || path_is_system(s->workspace))
        bad = "workspace";
    else if (!tmpfs_sizes_ok(s))
        bad = "tmpfs-size";
    else if (s->pids_max > BOTTLE_SPEC_MAX_PIDS)
        bad = "pids-max";
    else if (!channel_ok(s->channel))
        bad = "channel";
    else if ((unsigned)s->rootfs >= BOTTLE_ROOTFS_MAX)
        bad = "rootfs";
    else if (s->n_env > BOTTLE_SPEC_MAX_ENV || (s->n_env && !s->env))
        bad = "env";
    else if (s->n_mounts > BOTTLE_SPEC_MAX_MOUNTS || (s->n_mounts && !s->mounts))
        bad = "mount";
    else if (s->n_protect > BOTTLE_SPEC_MAX_PROTECT || (s->n_protect && !s->protect))
        bad = "protect";
    else if (s->argc == 0 || s->argc > BOTTLE_SPEC_MAX_ARGS || !s->argv || s->argv[s->argc])
        bad = "arg";
    for (size_t i = 0; !bad && i < s->n_env; i++) {
        const char *e = s->env[i];
        size_t nl;
        if (!e || !env_entry_ok(e)) {
            bad = "env";
            break;
        }
        nl = (size_t)(strchr(e, '=') - e);
        for (size_t j = 0; j < i; j++)
            if (strncmp(s->env[j], e, nl + 1) == 0)
                bad = "env"; /* duplicate name */
    }
    for (size_t i = 0; !bad && i < s->n_mounts; i++) {
        const struct bottle_mount *m = &s->mounts[i];
        if (!bottle_path_is_canonical(m->src) || !bottle_path_is_canonical(m->dst) ||
            path_is_system(m->dst))
            bad = "mount";
    }
    for (size_t i = 0; !bad && i < s->n_protect; i++)
        if (!bottle_spec_protect_root(s, s->protect[i]))
            bad = "protect";
    for (size_t i = 0; !bad && i < s->argc; i++)
        if (!s->argv[i] || strlen(s->argv[i]) > BOTTLE_SPEC_MAX_STR || (i == 0 && !*s->argv[0]))
            bad = "arg";
    if (bad) {
        if (reterr_field)
            *reterr_field = bad;
        return -EINVAL;
    }
    return 0;
}

/* ---- encoding ---- */

static bool byte_needs_escape(unsigned char c)
{
    return c <= 0x20 || c >= 0x7f || c == '\\';
}

static int put_escaped(struct buf *out, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *run = s;

    for (const char *c = s;; c++) {
        if (*c && !byte_needs_escape((unsigned char)*c))
            continue;
        if (c > run) {
            int r = buf_append(out, run, (size_t)(c - run));
            if (r < 0)
                return r;
        }
        if (!*c)
            return 0;
        char e[4] = { '\\', 'x', hex[(unsigned char)*c >> 4], hex[(unsigned char)*c & 15] };
        int r = buf_append(out, e, sizeof(e));
        if (r < 0)
            return r;
        run = c + 1;
    }
}

static int put_field(struct buf *out, const char *key, const char *value)
{
    int r = buf_append_str(out, key);
    if (r >= 0)
        r = buf_append(out, " ", 1);
    if (r >= 0)
        r = put_escaped(out, value);
    if (r >= 0)
        r = buf_append(out, "\n", 1);
    return r;
}

static int put_u32(struct buf *out, const char *key, uint32_t v)
{
    return buf_printf(out, "%s %u\n", key, v);
}

int bottle_spec_encode(const struct bottle_spec *s, struct buf *out)
{
    char alias[INET_ADDRSTRLEN];
    int r;

    r = bottle_spec_validate(s, NULL);
    if (r < 0)
        return r;
    if (!inet_ntop(AF_INET, &s->alias, alias, sizeof(alias)))
        return -EINVAL;

    r = buf_printf(out, "bottle-spec %d\n", BOTTLE_SPEC_VERSION);
    if (r >= 0)
        r = put_field(out, "name", s->name);
    if (r >= 0)
        r = put_field(out, "hostname", s->hostname);
    if (r >= 0)
        r = put_field(out, "alias", alias);
    if (r >= 0)
        r = put_field(out, "user", s->user);
    if (r >= 0)
        r = put_u32(out, "uid", s->uid);
    if (r >= 0)
        r = put_u32(out, "gid", s->gid);
    if (r >= 0)
        r = put_field(out, "home", s->home);
    if (r >= 0)
        r = put_field(out, "workspace", s->workspace);
    if (r >= 0)
        r = put_field(out, "tty", s->tty ? "1" : "0");
    if (r >= 0)
        r = buf_printf(out, "tmpfs-size %llu %llu %llu\n",
                       (unsigned long long)s->tmpfs_size[BOTTLE_TMPFS_TMP],
                       (unsigned long long)s->tmpfs_size[BOTTLE_TMPFS_HOME],
                       (unsigned long long)s->tmpfs_size[BOTTLE_TMPFS_SHM]);
    if (r >= 0)
        r = put_field(out, "channel", s->channel);
    if (r >= 0)
        r = put_field(out, "rootfs", rootfs_names[s->rootfs]);
    if (r >= 0 && s->pids_max)
        r = buf_printf(out, "pids-max %llu\n", (unsigned long long)s->pids_max);
    for (size_t i = 0; r >= 0 && i < s->n_env; i++)
        r = put_field(out, "env", s->env[i]);
    for (size_t i = 0; r >= 0 && i < s->n_mounts; i++) {
        r = buf_append_str(out, s->mounts[i].ro ? "mount ro " : "mount rw ");
        if (r >= 0)
            r = put_escaped(out, s->mounts[i].src);
        if (r >= 0)
            r = buf_append(out, " ", 1);
        if (r >= 0)
            r = put_escaped(out, s->mounts[i].dst);
        if (r >= 0)
            r = buf_append(out, "\n", 1);
    }
    for (size_t i = 0; r >= 0 && i < s->n_protect; i++)
        r = put_field(out, "protect", s->protect[i]);
    for (size_t i = 0; r >= 0 && i < s->argc; i++)
        r = put_field(out, "arg", s->argv[i]);
    if (r >= 0)
        r = buf_append_str(out, "end\n");
    if (r >= 0 && out->len > BOTTLE_SPEC_MAX_SIZE) {
        buf_done(out);
        r = -E2BIG;
    }
    return r;
}

/* ---- decoding ---- */

struct cursor {
    const char *p;
    const char *end;
    size_t line;
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* uppercase is not canonical */
}

/* Unescapes a canonical value; returns a new string or NULL when not canonical. */
static char *unescape(struct slice v, size_t max)
{
    _cleanup_free_ char *out = NULL;
    size_t n = 0;

    if (v.len > 4 * max)
        return NULL;
    out = xmalloc(v.len + 1);
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if (c == '\\') {
            int hi, lo;
            if (v.len - i < 4 || v.p[i + 1] != 'x')
                return NULL;
            hi = hexval(v.p[i + 2]);
            lo = hexval(v.p[i + 3]);
            if (hi < 0 || lo < 0)
                return NULL;
            c = (unsigned char)(hi << 4 | lo);
            if (c == 0 || !byte_needs_escape(c))
                return NULL;
            i += 3;
        } else if (byte_needs_escape(c)) {
            return NULL;
        }
        out[n++] = (char)c;
        if (n > max)
            return NULL;
    }
    out[n] = '\0';
    return TAKE_PTR(out);
}

/* Takes the next line "KEY VALUE" with the expected key; value excludes the LF. */
static int next_line(struct cursor *c, const char *key, struct slice *ret_value)
{
    size_t kl = strlen(key);
    const char *nl;

    c->line++;
    if (c->p >= c->end)
        return -EINVAL;
    nl = memchr(c->p, '\n', MIN((size_t)(c->end - c->p), (size_t)SPEC_MAX_LINE));
    if (!nl)
        return (size_t)(c->end - c->p) >= SPEC_MAX_LINE ? -E2BIG : -EINVAL;
    if ((size_t)(nl - c->p) < kl + 1 || memcmp(c->p, key, kl) != 0 || c->p[kl] != ' ')
        return -EINVAL;
    *ret_value = slice_make(c->p + kl + 1, (size_t)(nl - c->p) - kl - 1);
    c->p = nl + 1;
    return 0;
}

/* True when the next line starts with "key ". */
static bool peek_key(const struct cursor *c, const char *key)
{
    size_t kl = strlen(key);

    return (size_t)(c->end - c->p) > kl && memcmp(c->p, key, kl) == 0 && c->p[kl] == ' ';
}

static int take_str(struct cursor *c, const char *key, size_t max, char **ret)
{
    struct slice v;
    char *s;
    int r = next_line(c, key, &v);

    if (r < 0)
        return r;
    s = unescape(v, max);
    if (!s)
        return -EINVAL;
    *ret = s;
    return 0;
}

static int take_u32(struct cursor *c, const char *key, uint32_t *ret)
{
    struct slice v;
    uint64_t n;
    int r = next_line(c, key, &v);

    if (r < 0)
        return r;
    /* canonical: no leading zeros */
    if (v.len > 1 && v.p[0] == '0')
        return -EINVAL;
    r = str_to_u64(v, UINT32_MAX - 1, &n);
    if (r < 0)
        return -EINVAL;
    *ret = (uint32_t)n;
    return 0;
}

/* "T H S": three canonical decimal sizes separated by single spaces. */
static int take_tmpfs_sizes(struct cursor *c, struct bottle_spec *s)
{
    struct slice v;
    const char *q, *end;
    int r = next_line(c, "tmpfs-size", &v);

    if (r < 0)
        return r;
    q = v.p;
    end = v.p + v.len;
    for (size_t i = 0; i < BOTTLE_TMPFS_MAX; i++) {
        const char *sp = memchr(q, ' ', (size_t)(end - q));
        const char *fe = sp ? sp : end;
        uint64_t n;
        if ((i + 1 < BOTTLE_TMPFS_MAX) != (sp != NULL) || fe == q || (fe - q > 1 && q[0] == '0') ||
            str_to_u64(slice_make(q, (size_t)(fe - q)), BOTTLE_SPEC_MAX_TMPFS, &n) < 0 || n == 0)
            return -EINVAL;
        s->tmpfs_size[i] = n;
        q = fe + 1;
    }
    return 0;
}

static int decode_body(struct cursor *c, struct bottle_spec *s)
{
    _cleanup_free_ char *alias = NULL, *tty = NULL, *rootfs = NULL, *hdr = NULL;
    char canon[INET_ADDRSTRLEN];
    int r;

    r = take_str(c, "bottle-spec", 8, &hdr);
    if (r < 0)
        return r;
    if (strcmp(hdr, "1") != 0)
        return -EINVAL;
    if ((r = take_str(c, "name", BOTTLE_SPEC_MAX_NAME, &s->name)) < 0 ||
        (r = take_str(c, "hostname", BOTTLE_SPEC_MAX_NAME, &s->hostname)) < 0 ||
        (r = take_str(c, "alias", INET_ADDRSTRLEN, &alias)) < 0)
        return r;
    /* inet_pton rejects leading zeros and short forms; the round trip rejects the rest. */
    if (inet_pton(AF_INET, alias, &s->alias) != 1 ||
        !inet_ntop(AF_INET, &s->alias, canon, sizeof(canon)) || strcmp(canon, alias) != 0)
        return -EINVAL;
    if ((r = take_str(c, "user", BOTTLE_SPEC_MAX_USER, &s->user)) < 0 ||
        (r = take_u32(c, "uid", &s->uid)) < 0 || (r = take_u32(c, "gid", &s->gid)) < 0 ||
        (r = take_str(c, "home", BOTTLE_SPEC_MAX_PATH, &s->home)) < 0 ||
        (r = take_str(c, "workspace", BOTTLE_SPEC_MAX_PATH, &s->workspace)) < 0 ||
        (r = take_str(c, "tty", 1, &tty)) < 0)
        return r;
    if (strcmp(tty, "0") != 0 && strcmp(tty, "1") != 0)
        return -EINVAL;
    s->tty = tty[0] == '1';
    if ((r = take_tmpfs_sizes(c, s)) < 0)
        return r;
    if ((r = take_str(c, "channel", BOTTLE_SPEC_MAX_PATH, &s->channel)) < 0 ||
        (r = take_str(c, "rootfs", 8, &rootfs)) < 0)
        return r;
    for (s->rootfs = 0; s->rootfs < BOTTLE_ROOTFS_MAX; s->rootfs++)
        if (strcmp(rootfs, rootfs_names[s->rootfs]) == 0)
            break;
    if (s->rootfs == BOTTLE_ROOTFS_MAX)
        return -EINVAL;
    if (peek_key(c, "pids-max")) {
        struct slice v;
        if ((r = next_line(c, "pids-max", &v)) < 0)
            return r;
        /* canonical: no leading zeros, 1..BOTTLE_SPEC_MAX_PIDS */
        if ((v.len > 1 && v.p[0] == '0') || str_to_u64(v, BOTTLE_SPEC_MAX_PIDS, &s->pids_max) < 0 ||
            s->pids_max == 0)
            return -EINVAL;
    }

    while (peek_key(c, "env")) {
        char *e;
        if (s->n_env == BOTTLE_SPEC_MAX_ENV)
            return -E2BIG;
        if ((r = take_str(c, "env", BOTTLE_SPEC_MAX_STR, &e)) < 0)
            return r;
        s->env = xrealloc(s->env, (s->n_env + 1) * sizeof(*s->env));
        s->env[s->n_env++] = e;
    }
    while (peek_key(c, "mount")) {
        struct slice v, f[3];
        struct bottle_mount *m;
        size_t nf = 0;
        const char *q;

        if (s->n_mounts == BOTTLE_SPEC_MAX_MOUNTS)
            return -E2BIG;
        if ((r = next_line(c, "mount", &v)) < 0)
            return r;
        /* exactly three fields separated by single spaces (spaces inside are escaped) */
        for (q = v.p; nf < 3;) {
            const char *sp = memchr(q, ' ', (size_t)(v.p + v.len - q));
            const char *fe = sp ? sp : v.p + v.len;
            f[nf++] = slice_make(q, (size_t)(fe - q));
            if (!sp)
                break;
            q = sp + 1;
        }
        if (nf != 3 || f[2].p + f[2].len != v.p + v.len)
            return -EINVAL;
        if (!slice_eq(f[0], SLICE_LIT("ro")) && !slice_eq(f[0], SLICE_LIT("rw")))
            return -EINVAL;
        s->mounts = xrealloc(s->mounts, (s->n_mounts + 1) * sizeof(*s->mounts));
        m = &s->mounts[s->n_mounts];
        *m = (struct bottle_mount){ .ro = f[0].p[1] == 'o' };
        m->src = unescape(f[1], BOTTLE_SPEC_MAX_PATH);
        m->dst = unescape(f[2], BOTTLE_SPEC_MAX_PATH);
        s->n_mounts++; /* counted first so that bottle_spec_done() frees a half-built one */
        if (!m->src || !m->dst)
            return -EINVAL;
    }
    while (peek_key(c, "protect")) {
        char *pp;
        if (s->n_protect == BOTTLE_SPEC_MAX_PROTECT)
            return -E2BIG;
        if ((r = take_str(c, "protect", BOTTLE_SPEC_MAX_PATH, &pp)) < 0)
            return r;
        s->protect = xrealloc(s->protect, (s->n_protect + 1) * sizeof(*s->protect));
        s->protect[s->n_protect++] = pp;
    }
    while (peek_key(c, "arg")) {
        char *a;
        if (s->argc == BOTTLE_SPEC_MAX_ARGS)
            return -E2BIG;
        if ((r = take_str(c, "arg", BOTTLE_SPEC_MAX_STR, &a)) < 0)
            return r;
        s->argv = xrealloc(s->argv, (s->argc + 2) * sizeof(*s->argv));
        s->argv[s->argc++] = a;
        s->argv[s->argc] = NULL;
    }
    c->line++;
    if ((size_t)(c->end - c->p) != 4 || memcmp(c->p, "end\n", 4) != 0)
        return -EINVAL;
    c->p = c->end;
    /* Semantic rules (names, paths, alias range, duplicates) are shared with the encoder. */
    return bottle_spec_validate(s, NULL) < 0 ? -EINVAL : 0;
}

int bottle_spec_decode(const char *p, size_t len, struct bottle_spec *ret, size_t *reterr_line)
{
    struct bottle_spec s = { 0 };
    struct cursor c = { .p = p, .end = p + len, .line = 0 };
    int r;

    if (len > BOTTLE_SPEC_MAX_SIZE) {
        if (reterr_line)
            *reterr_line = 0;
        return -E2BIG;
    }
    r = decode_body(&c, &s);
    if (r < 0) {
        bottle_spec_done(&s);
        if (reterr_line)
            *reterr_line = c.line;
        return r;
    }
    *ret = s;
    return 0;
}

/* ---- host-side builders ---- */

int bottle_spec_set_str(char **field, const char *value)
{
    char *v = xstrdup(value);

    free(*field);
    *field = v;
    return 0;
}

int bottle_spec_set_env(struct bottle_spec *s, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    char *e;

    if (!env_name_ok(name, nl) || bottle_env_name_reserved(name, nl) ||
        nl + 1 + vl > BOTTLE_SPEC_MAX_STR)
        return -EINVAL;
    e = xmalloc(nl + 1 + vl + 1);
    memcpy(e, name, nl);
    e[nl] = '=';
    memcpy(e + nl + 1, value, vl + 1);
    for (size_t i = 0; i < s->n_env; i++)
        if (strncmp(s->env[i], name, nl) == 0 && s->env[i][nl] == '=') {
            free(s->env[i]);
            s->env[i] = e;
            return 0;
        }
    if (s->n_env == BOTTLE_SPEC_MAX_ENV) {
        free(e);
        return -E2BIG;
    }
    s->env = xrealloc(s->env, (s->n_env + 1) * sizeof(*s->env));
    s->env[s->n_env++] = e;
    return 0;
}

int bottle_spec_add_mount_arg(struct bottle_spec *s, const char *arg)
{
    const char *c1 = strchr(arg, ':'), *c2;
    _cleanup_free_ char *src = NULL, *dst = NULL;
    bool ro = false;

    if (!c1)
        return -EINVAL;
    c2 = strchr(c1 + 1, ':');
    if (c2) {
        if (strcmp(c2 + 1, "ro") == 0)
            ro = true;
        else if (strcmp(c2 + 1, "rw") != 0)
            return -EINVAL;
    }
    src = xstrndup(arg, (size_t)(c1 - arg));
    dst = c2 ? xstrndup(c1 + 1, (size_t)(c2 - c1 - 1)) : xstrdup(c1 + 1);
    if (!bottle_path_is_canonical(src) || !bottle_path_is_canonical(dst) || path_is_system(dst))
        return -EINVAL;
    if (s->n_mounts == BOTTLE_SPEC_MAX_MOUNTS)
        return -E2BIG;
    s->mounts = xrealloc(s->mounts, (s->n_mounts + 1) * sizeof(*s->mounts));
    s->mounts[s->n_mounts++] =
        (struct bottle_mount){ .src = TAKE_PTR(src), .dst = TAKE_PTR(dst), .ro = ro };
    return 0;
}

int bottle_spec_add_protect(struct bottle_spec *s, const char *path)
{
    if (s->n_protect == BOTTLE_SPEC_MAX_PROTECT)
        return -E2BIG;
    s->protect = xrealloc(s->protect, (s->n_protect + 1) * sizeof(*s->protect));
    s->protect[s->n_protect++] = xstrdup(path);
    return 0;
}

int bottle_spec_add_arg(struct bottle_spec *s, const char *arg)
{
    if (s->argc == BOTTLE_SPEC_MAX_ARGS)
        return -E2BIG;
    s->argv = xrealloc(s->argv, (s->argc + 2) * sizeof(*s->argv));
    s->argv[s->argc++] = xstrdup(arg);
    s->argv[s->argc] = NULL;
    return 0;
}

/* ---- the command's environment ---- */

static char *env_pair(const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    char *e = xmalloc(nl + vl + 2);

    memcpy(e, name, nl);
    e[nl] = '=';
    memcpy(e + nl + 1, value, vl + 1);
    return e;
}

int bottle_spec_environ(const struct bottle_spec *s, char ***ret)
{
    static const char *const proxy_vars[] = { "HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                              "https_proxy", "ALL_PROXY" };
    char alias[INET_ADDRSTRLEN], proxy[64];
    size_t n = 0, cap = 16 + s->n_env;
    char **v;

    if (!inet_ntop(AF_INET, &s->alias, alias, sizeof(alias)))
        return -EINVAL;
    if (str_printf(proxy, sizeof(proxy), "http://%s:%d", alias, BOTTLE_PROXY_PORT) < 0)
        return -EINVAL;
    v = xcalloc(cap + 1, sizeof(*v));
    v[n++] = env_pair("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin");
    v[n++] = env_pair("HOME", s->home);
    v[n++] = env_pair("USER", s->user);
    v[n++] = env_pair("LOGNAME", s->user);
    for (size_t i = 0; i < ARRAY_SIZE(proxy_vars); i++)
        v[n++] = env_pair(proxy_vars[i], proxy);
    v[n++] = env_pair("NO_PROXY", "localhost,127.0.0.1");
    v[n++] = env_pair("no_proxy", "localhost,127.0.0.1");
    v[n++] = env_pair("BOT_BOTTLE", "1");
    v[n++] = env_pair("BOT_BOTTLE_NAME", s->name);
    for (size_t i = 0; i < s->n_env; i++) {
        size_t nl = (size_t)(strchr(s->env[i], '=') - s->env[i]);
        size_t j;
        /* An explicit variable replaces a generated default of the same name (PATH, HOME). */
        for (j = 0; j < n; j++)
            if (strncmp(v[j], s->env[i], nl + 1) == 0)
                break;
        if (j < n)
            free(v[j]);
        else
            j = n++;
        v[j] = xstrdup(s->env[i]);
    }
    v[n] = NULL;
    *ret = v;
    return 0;
}

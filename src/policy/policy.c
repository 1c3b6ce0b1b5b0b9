/*
 * The allowlist: name patterns in two hash tables (exact names and wildcard suffixes) and the
 * allow_cidr list. A check hashes the name once, right to left, so the hash of every suffix
 * starting at a label boundary falls out of the same pass: one lookup per label, no allocation.
 * Grammar and rules: policy.h and docs/policy.md.
 */
#include "policy/policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "common/str.h"
#include "common/xalloc.h"

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

struct name_entry {
    uint64_t hash;
    size_t len;
    char *name;
    bool default_ports; /* pattern without a port: 80 and 443 */
    uint16_t *ports;    /* explicit ports */
    size_t n_ports;
    bool ruled_only; /* added by a method/path rule, no text of its own (yet) */
};

struct name_table {
    struct name_entry **slots; /* open addressing, linear probing; cap is a power of two */
    size_t cap;
    size_t n;
};

struct cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
    uint16_t port; /* 0: any */
};

/* A method/path rule. */
struct path_rule {
    char *name; /* normalised host name (wild: the suffix after "*.") */
    bool wild;
    uint16_t port;    /* 0: 80 and 443 */
    char *methods;    /* ",GET,HEAD," or NULL for any */
    char *path;       /* normalised path pattern */
    const char *text; /* the rule's normalised text (owned by texts[]) */
};

struct policy {
    struct path_rule *rules;
    size_t n_rules;
    uint32_t dlp_off;
    struct name_table exact;
    struct name_table wild; /* "*.example.com" stored as "example.com" */
    char **texts;           /* normalised pattern texts, in insertion order */
    size_t n_texts;
    struct cidr *cidrs;
    size_t n_cidrs;
};

static const char *const verdict_reasons[V_MAX] = {
    [V_ALLOW] = "allowlisted",
    [V_DENY_NOT_ALLOWLISTED] = "not-allowlisted",
    [V_DENY_PORT] = "port-not-allowed",
    [V_DENY_BAD_HOST] = "bad-host",
    [V_DENY_IP_LITERAL] = "ip-literal",
    [V_DENY_SSRF] = "ssrf-private",
    [V_DENY_METADATA] = "ssrf-metadata",
    [V_DENY_NO_ADDRESS] = "no-address",
    [V_DENY_METHOD] = "method-not-allowed",
    [V_DENY_PATH] = "path-not-allowed",
    [V_DENY_NEEDS_INTERCEPTION] = "needs-interception",
};

const char *verdict_reason(enum verdict v)
{
    if ((unsigned)v >= V_MAX || !verdict_reasons[v])
        return "unknown";
    return verdict_reasons[v];
}

/* FNV-1a over the bytes from last to first, so suffix hashes are prefixes of the pass. */
static uint64_t hash_step(uint64_t h, char c)
{
    return (h ^ (unsigned char)c) * FNV_PRIME;
}

static uint64_t hash_name(const char *s, size_t len)
{
    uint64_t h = FNV_OFFSET;
    for (size_t i = len; i > 0; i--)
        h = hash_step(h, s[i - 1]);
    return h;
}

static struct name_entry *table_find(const struct name_table *t, uint64_t hash, const char *s,
                                     size_t len)
{
    if (t->cap == 0)
        return NULL;
    for (size_t i = (size_t)hash & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        struct name_entry *e = t->slots[i];
        if (!e)
            return NULL;
        if (e->hash == hash && e->len == len && memcmp(e->name, s, len) == 0)
            return e;
    }
}

static void table_insert_slot(struct name_entry **slots, size_t cap, struct name_entry *e)
{
    size_t i = (size_t)e->hash & (cap - 1);
    while (slots[i])
        i = (i + 1) & (cap - 1);
    slots[i] = e;
}

static struct name_entry *table_get_or_add(struct name_table *t, const char *s, size_t len)
{
    uint64_t hash = hash_name(s, len);
    struct name_entry *e = table_find(t, hash, s, len);

    if (e)
        return e;
    /* keep the load factor <= 1/2 */
    if ((t->n + 1) * 2 > t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        /* an array of pointers: sizeof(*ns) is a pointer's size, as meant */
        /* NOLINTNEXTLINE(bugprone-sizeof-expression) */
        struct name_entry **ns = xcalloc(ncap, sizeof(*ns));
        for (size_t i = 0; i < t->cap; i++)
            if (t->slots[i])
                table_insert_slot(ns, ncap, t->slots[i]);
        free(t->slots);
        t->slots = ns;
        t->cap = ncap;
    }
    e = xcalloc(1, sizeof(*e));
    e->hash = hash;
    e->len = len;
    e->name = xstrndup(s, len);
    table_insert_slot(t->slots, t->cap, e);
    t->n++;
    return e;
}

static void table_done(struct name_table *t)
{
    for (size_t i = 0; i < t->cap; i++) {
        struct name_entry *e = t->slots[i];
        if (!e)
            continue;
        free(e->name);
        free(e->ports);
        free(e);
    }
    free(t->slots);
    *t = (struct name_table){ 0 };
}

struct policy *policy_new(void)
{
    return xcalloc(1, sizeof(struct policy));
}

struct policy *policy_free(struct policy *p)
{
    if (!p)
        return NULL;
    table_done(&p->exact);
    table_done(&p->wild);
    for (size_t i = 0; i < p->n_texts; i++)
        free(p->texts[i]);
    free(p->texts);
    free(p->cidrs);
    for (size_t i = 0; i < p->n_rules; i++) {
        free(p->rules[i].name);
        free(p->rules[i].methods);
        free(p->rules[i].path);
    }
    free(p->rules);
    free(p);
    return NULL;
}

size_t policy_n_allow(const struct policy *p)
{
    return p ? p->n_texts : 0;
}

size_t policy_n_cidr(const struct policy *p)
{
    return p ? p->n_cidrs : 0;
}

const char *policy_allow_text(const struct policy *p, size_t i)
{
    if (!p || i >= p->n_texts)
        return NULL;
    return p->texts[i];
}

struct policy *policy_copy(const struct policy *p, const char *without)
{
    struct policy *c = policy_new();
    const char *why;

    for (size_t i = 0; p && i < p->n_texts; i++)
        if (!without || strcmp(p->texts[i], without) != 0)
            (void)policy_add_allow(c, p->texts[i], strlen(p->texts[i]), &why); /* valid */
    if (p && p->n_cidrs) {
        c->cidrs = xmalloc(p->n_cidrs * sizeof(*c->cidrs));
        memcpy(c->cidrs, p->cidrs, p->n_cidrs * sizeof(*c->cidrs));
        c->n_cidrs = p->n_cidrs;
    }
    if (p)
        c->dlp_off = p->dlp_off;
    return c;
}

static bool entry_has_port(const struct name_entry *e, uint16_t port)
{
    for (size_t i = 0; i < e->n_ports; i++)
        if (e->ports[i] == port)
            return true;
    return false;
}

static int add_rule(struct policy *p, const char *text, size_t len, const char **reterr_msg);

/* A host pattern; record: keep its text (a rule keeps its own text instead). On success
 * *ret_norm (when not NULL, size BB_MAX_HOSTNAME + 16) gets the normalised pattern and
 * *ret_h / *ret_port / *ret_wild what it names. */
static int add_host_pattern(struct policy *p, const char *text, size_t len, bool record,
                            const char **reterr_msg, struct host *ret_h, uint16_t *ret_port,
                            bool *ret_wild, char *ret_norm);

int policy_add_allow(struct policy *p, const char *text, size_t len, const char **reterr_msg)
{
    if (text && (memchr(text, ' ', len) || memchr(text, '\t', len)))
        return add_rule(p, text, len, reterr_msg);
    return add_host_pattern(p, text, len, true, reterr_msg, NULL, NULL, NULL, NULL);
}

static int add_host_pattern(struct policy *p, const char *text, size_t len, bool record,
                            const char **reterr_msg, struct host *ret_h, uint16_t *ret_port,
                            bool *ret_wild, char *ret_norm)
{
    const char *name = text, *colon;
    size_t name_len = len;
    uint16_t port = 0;
    bool wild = false;
    struct host h;
    char norm[BB_MAX_HOSTNAME + 16];
    int r;

    if (!p || !text || len == 0) {
        *reterr_msg = "empty pattern";
        return -EINVAL;
    }
    if (len > BB_MAX_HOST_INPUT + 8) {
        *reterr_msg = "pattern too long";
        return -EINVAL;
    }
    if (memchr(text, '/', len)) {
        *reterr_msg = "a pattern is a host name (example.com), not a URL or a path";
        return -EINVAL;
    }
    colon = memchr(text, ':', len);
    if (text[0] == '[' || (colon && memchr(colon + 1, ':', len - (size_t)(colon - text) - 1))) {
        *reterr_msg = "IP literals are not patterns: allow addresses with --allow-cidr ADDR/32 "
                      "(config: allow_cidr)";
        return -EINVAL;
    }
    if (colon) {
        name_len = (size_t)(colon - text);
        if (str_to_port(slice_make(colon + 1, len - name_len - 1), &port) < 0) {
            *reterr_msg = "bad port in pattern (1-65535, decimal)";
            return -EINVAL;
        }
    }
    if (name_len == 1 && name[0] == '*') {
        *reterr_msg = "'*' alone would allow every host; list the names (or *.domain) instead";
        return -EINVAL;
    }
    if (name_len >= 2 && name[0] == '*' && name[1] == '.') {
        wild = true;
        name += 2;
        name_len -= 2;
    }
    if (memchr(name, '*', name_len)) {
        *reterr_msg = "'*' is only allowed as the whole first label (*.example.com)";
        return -EINVAL;
    }
    if (name_len == 0) {
        *reterr_msg = "empty host name in pattern";
        return -EINVAL;
    }
    if (host_parse(name, name_len, &h, reterr_msg) < 0)
        return -EINVAL;
    if (h.kind != HOST_NAME) {
        *reterr_msg = "IP literals are not patterns: allow addresses with --allow-cidr ADDR/32 "
                      "(config: allow_cidr)";
        return -EINVAL;
    }
    if (port)
        r = str_printf(norm, sizeof(norm), "%s%s:%u", wild ? "*." : "", h.name, port);
    else
        r = str_printf(norm, sizeof(norm), "%s%s", wild ? "*." : "", h.name);
    if (r < 0) {
        *reterr_msg = "pattern too long";
        return -EINVAL;
    }
    if (ret_h) {
        *ret_h = h;
        *ret_port = port;
        *ret_wild = wild;
        memcpy(ret_norm, norm, strlen(norm) + 1);
    }

    struct name_table *t = wild ? &p->wild : &p->exact;
    size_t hlen = strlen(h.name);
    struct name_entry *e = table_find(t, hash_name(h.name, hlen), h.name, hlen);
    if (e && (port ? entry_has_port(e, port) : e->default_ports)) {
        if (!record || !e->ruled_only)
            return 0; /* duplicate */
        /* added by a rule before: now also a pattern of its own */
        e->ruled_only = false;
        goto add_text;
    }
    if (p->n_texts >= BB_MAX_PATTERNS) {
        *reterr_msg = "too many allow patterns";
        return -ENOSPC;
    }
    e = table_get_or_add(t, h.name, hlen);
    if (port) {
        e->ports = xrealloc(e->ports, (e->n_ports + 1) * sizeof(*e->ports));
        e->ports[e->n_ports++] = port;
    } else {
        e->default_ports = true;
    }
    if (!record) {
        e->ruled_only = e->ruled_only || e->n_ports + e->default_ports == 1;
        return 0;
    }
add_text:
    p->texts = xrealloc(p->texts, (p->n_texts + 1) * sizeof(*p->texts));
    p->texts[p->n_texts++] = xstrdup(norm);
    return 0;
}

static int parse_prefix(const char *s, size_t len, unsigned max, unsigned *ret)
{
    uint64_t v;

    if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
        return -EINVAL;
    if (str_to_u64(slice_make(s, len), max, &v) < 0)
        return -EINVAL;
    *ret = (unsigned)v;
    return 0;
}

static bool host_bits_clear(const uint8_t *a, unsigned bytes, unsigned prefix)
{
    for (unsigned bit = prefix; bit < bytes * 8; bit++)
        if (a[bit / 8] & (0x80u >> (bit % 8)))
            return false;
    return true;
}

int policy_add_cidr(struct policy *p, const char *text, size_t len, const char **reterr_msg)
{
    char buf[128];
    const char *addr_s, *rest, *slash, *end;
    size_t addr_len, colons = 0;
    struct cidr c = { 0 };
    bool bracketed = false;

    if (!p || !text || len == 0) {
        *reterr_msg = "empty --allow-cidr";
        return -EINVAL;
    }
    if (len >= sizeof(buf)) {
        *reterr_msg = "--allow-cidr too long";
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (ch == '%') {
            *reterr_msg = "IPv6 zone ids are not allowed in --allow-cidr";
            return -EINVAL;
        }
        if (!ascii_isalnum(ch) && ch != '.' && ch != ':' && ch != '/' && ch != '[' && ch != ']') {
            *reterr_msg = "bad character in --allow-cidr (expected ADDR[/PREFIX][:PORT])";
            return -EINVAL;
        }
        if (ch == ':')
            colons++;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    end = buf + len;

    if (buf[0] == '[') {
        const char *close = strchr(buf, ']');
        if (!close) {
            *reterr_msg = "missing ']' in --allow-cidr";
            return -EINVAL;
        }
        bracketed = true;
        addr_s = buf + 1;
        addr_len = (size_t)(close - addr_s);
        rest = close + 1;
        slash = *rest == '/' ? rest : NULL;
    } else {
        addr_s = buf;
        /* IPv4 has at most one ':' (before the port); IPv6 has at least two and no port. */
        const char *stop = colons == 1 ? strchr(buf, ':') : end;
        slash = memchr(buf, '/', (size_t)(stop - buf));
        addr_len = (size_t)((slash ? slash : stop) - buf);
        rest = slash ? slash : stop;
    }
    /* rest: "[/N][:PORT]" */
    const char *port_s = NULL;
    size_t prefix_len = 0;
    if (slash) {
        const char *pc = strchr(slash, ':');
        prefix_len = (size_t)((pc ? pc : end) - (slash + 1));
        port_s = pc;
    } else if (*rest == ':') {
        port_s = rest;
    } else if (*rest != '\0') {
        *reterr_msg = "junk after address in --allow-cidr";
        return -EINVAL;
    }

    char a[INET6_ADDRSTRLEN + 1];
    if (addr_len == 0 || addr_len >= sizeof(a)) {
        *reterr_msg = "bad address in --allow-cidr";
        return -EINVAL;
    }
    memcpy(a, addr_s, addr_len);
    a[addr_len] = '\0';
    if (!bracketed && colons <= 1 && inet_pton(AF_INET, a, c.addr) == 1) {
        c.family = AF_INET;
    } else if ((bracketed || colons >= 2) && inet_pton(AF_INET6, a, c.addr) == 1) {
        c.family = AF_INET6;
    } else {
        *reterr_msg = "bad address in --allow-cidr (dotted-quad IPv4, or IPv6; a port needs "
                      "[v6]:PORT)";
        return -EINVAL;
    }
    unsigned max = c.family == AF_INET ? 32 : 128;
    c.prefix = max;
    if (slash && parse_prefix(slash + 1, prefix_len, max, &c.prefix) < 0) {
        *reterr_msg = "bad prefix length in --allow-cidr (0-32 for IPv4, 0-128 for IPv6)";
        return -EINVAL;
    }
    if (port_s && c.family == AF_INET6 && !bracketed) {
        *reterr_msg = "an IPv6 --allow-cidr with a port must be bracketed: [fd00::]/8:5432";
        return -EINVAL;
    }
    if (port_s && str_to_port(slice_cstr(port_s + 1), &c.port) < 0) {
        *reterr_msg = "bad port in --allow-cidr (1-65535)";
        return -EINVAL;
    }
    if (!host_bits_clear(c.addr, max / 8, c.prefix)) {
        *reterr_msg = "host bits set after the prefix length in --allow-cidr (write the network "
                      "address, e.g. 10.1.0.0/16)";
        return -EINVAL;
    }
    if (c.family == AF_INET6) {
        static const uint8_t mapped12[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (c.prefix >= 96 && memcmp(c.addr, mapped12, 12) == 0) {
            *reterr_msg = "IPv4-mapped --allow-cidr: write the range as IPv4 (it covers the mapped "
                          "form too)";
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < p->n_cidrs; i++) {
        const struct cidr *o = &p->cidrs[i];
        if (o->family == c.family && o->prefix == c.prefix && o->port == c.port &&
            memcmp(o->addr, c.addr, sizeof(c.addr)) == 0)
            return 0; /* duplicate */
    }
    if (p->n_cidrs >= BB_MAX_CIDRS) {
        *reterr_msg = "too many --allow-cidr entries";
        return -ENOSPC;
    }
    p->cidrs = xrealloc(p->cidrs, (p->n_cidrs + 1) * sizeof(*p->cidrs));
    p->cidrs[p->n_cidrs++] = c;
    return 0;
}

/* Does an allow_cidr entry cover sa (and port; 0 = any)? IPv4-mapped/compatible IPv6 is
 * matched as its IPv4 address. exact: only a single-address entry (/32, /128) counts, which
 * is what opening a metadata address takes. */
static bool cidr_covers(const struct policy *p, const struct sockaddr *sa, uint16_t port,
                        bool exact)
{
    struct sockaddr_in in4;
    const uint8_t *a;
    int family;

    if (addr_unmap_v4(sa, &in4))
        sa = (const struct sockaddr *)&in4;
    family = sa->sa_family;
    if (family == AF_INET)
        a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    else if (family == AF_INET6)
        a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    else
        return false;
    for (size_t i = 0; i < p->n_cidrs; i++) {
        const struct cidr *c = &p->cidrs[i];
        if (c->family != family)
            continue;
        if (c->port && port && c->port != port)
            continue;
        if (exact && c->prefix != (family == AF_INET ? 32u : 128u))
            continue;
        if (addr_prefix_match(a, c->addr, c->prefix))
            return true;
    }
    return false;
}

static bool entry_allows(const struct name_entry *e, uint16_t port)
{
    if (port == 0)
        return true;
    if (e->default_ports && (port == 80 || port == 443))
        return true;
    return entry_has_port(e, port);
}

static enum verdict check_name(const struct policy *p, const char *name, uint16_t port)
{
    size_t len = strnlen(name, BB_MAX_HOSTNAME + 1);
    uint64_t h = FNV_OFFSET;
    bool name_matched = false;
    const struct name_entry *e;

    if (len == 0 || len > BB_MAX_HOSTNAME)
        return V_DENY_BAD_HOST;
    for (size_t i = len; i > 0; i--) {
        h = hash_step(h, name[i - 1]);
        /* name[i-1..] is a proper suffix starting at a label: "*.suffix" patterns apply */
        if (i > 1 && name[i - 2] == '.' && p->wild.n) {
            e = table_find(&p->wild, h, name + i - 1, len - i + 1);
            if (e) {
                if (entry_allows(e, port))
                    return V_ALLOW;
                name_matched = true;
            }
        }
    }
    e = table_find(&p->exact, h, name, len);
    if (e) {
        if (entry_allows(e, port))
            return V_ALLOW;
        name_matched = true;
    }
    return name_matched ? V_DENY_PORT : V_DENY_NOT_ALLOWLISTED;
}

enum verdict policy_check_host(const struct policy *p, const struct host *h, uint16_t port)
{
    struct sockaddr_storage ss = { 0 };

    if (!p || !h)
        return V_DENY_BAD_HOST;
    switch (h->kind) {
    case HOST_NAME:
        return check_name(p, h->name, port);
    case HOST_IPV4: {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        in4->sin_family = AF_INET;
        in4->sin_addr = h->addr.v4;
        in4->sin_port = htons(port);
        break;
    }
    case HOST_IPV6: {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = h->addr.v6;
        in6->sin6_port = htons(port);
        break;
    }
    case HOST_KIND_MAX:
    default:
        return V_DENY_BAD_HOST;
    }
    const struct sockaddr *sa = (const struct sockaddr *)&ss;
    if (addr_is_metadata(sa))
        return cidr_covers(p, sa, port, true) ? V_ALLOW : V_DENY_METADATA;
    return cidr_covers(p, sa, port, false) ? V_ALLOW : V_DENY_IP_LITERAL;
}

enum verdict policy_check_addr(const struct policy *p, const struct sockaddr *sa, uint16_t port)
{
    if (!p || !sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
        return V_DENY_NO_ADDRESS;
    if (addr_is_metadata(sa))
        return cidr_covers(p, sa, port, true) ? V_ALLOW : V_DENY_METADATA;
    if (addr_is_restricted(sa))
        return cidr_covers(p, sa, port, false) ? V_ALLOW : V_DENY_SSRF;
    return V_ALLOW;
}

/* ---------------------------------------------------------------- method/path rules */

void policy_set_dlp_off(struct policy *p, uint32_t mask)
{
    p->dlp_off = mask;
}

uint32_t policy_dlp_off(const struct policy *p)
{
    return p ? p->dlp_off : 0;
}

static bool method_token_char(char c)
{
    return ascii_isalpha(c) || c == '-' || c == '_';
}

/* "HOST[:PORT] METHODS PATH" */
static int add_rule(struct policy *p, const char *text, size_t len, const char **reterr_msg)
{
    const char *tok[4];
    size_t tlen[4], n = 0, i = 0;
    char norm_host[BB_MAX_HOSTNAME + 16], methods[128], path[BB_MAX_RULE_PATH + 1];
    struct host h;
    uint16_t port = 0;
    bool wild = false;
    size_t mo = 0;
    int r;

    if (!p || len > BB_MAX_RULE_TEXT) {
        *reterr_msg = "rule too long";
        return -EINVAL;
    }
    while (i < len) {
        if (text[i] == ' ' || text[i] == '\t') {
            i++;
            continue;
        }
        if (n == 3) {
            *reterr_msg = "a rule is HOST[:PORT] METHODS PATH (three fields), e.g. "
                          "'api.github.com GET,HEAD /repos/myorg/*'";
            return -EINVAL;
        }
        tok[n] = text + i;
        while (i < len && text[i] != ' ' && text[i] != '\t')
            i++;
        tlen[n] = (size_t)(text + i - tok[n]);
        n++;
    }
    if (n != 3) {
        *reterr_msg = "a rule is HOST[:PORT] METHODS PATH (three fields), e.g. "
                      "'api.github.com GET,HEAD /repos/myorg/*'";
        return -EINVAL;
    }
    /* methods: "*" or a comma list of tokens, stored upper case as ",GET,HEAD," */
    if (tlen[1] == 1 && tok[1][0] == '*') {
        mo = 0;
    } else {
        methods[mo++] = ',';
        for (size_t k = 0; k < tlen[1]; k++) {
            char c = tok[1][k];
            if (c == ',') {
                if (methods[mo - 1] == ',') {
                    *reterr_msg = "empty method in a rule (METHODS is GET,HEAD or *)";
                    return -EINVAL;
                }
            } else if (!method_token_char(c)) {
                *reterr_msg = "bad method in a rule (letters only: GET,HEAD,POST ... or *)";
                return -EINVAL;
            }
            if (mo + 2 >= sizeof(methods)) {
                *reterr_msg = "too many methods in a rule";
                return -EINVAL;
            }
            methods[mo++] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
        }
        if (methods[mo - 1] == ',') {
            *reterr_msg = "empty method in a rule (METHODS is GET,HEAD or *)";
            return -EINVAL;
        }
        methods[mo++] = ',';
        methods[mo] = '\0';
    }
    /* path pattern, normalised like a request path ('*' is an ordinary byte there) */
    if (tlen[2] == 0 || tok[2][0] != '/') {
        *reterr_msg = "the path of a rule starts with '/' (e.g. /repos/myorg/*, /** for any)";
        return -EINVAL;
    }
    if (memchr(tok[2], '?', tlen[2]) || memchr(tok[2], '#', tlen[2])) {
        *reterr_msg = "the path of a rule has no query or fragment (the query is never matched)";
        return -EINVAL;
    }
    if (policy_path_normalise(tok[2], tlen[2], path, sizeof(path), reterr_msg) < 0)
        return -EINVAL;
    for (char *s = strstr(path, "**"); s; s = strstr(s + 2, "**"))
        if (s[2] != '\0' || s == path || s[-1] != '/') {
            *reterr_msg = "'**' is only allowed as the last segment of a rule's path (/a/**)";
            return -EINVAL;
        }
    r = add_host_pattern(p, tok[0], tlen[0], false, reterr_msg, &h, &port, &wild, norm_host);
    if (r < 0)
        return r;

    /* the normalised text: "host[:port] GET,HEAD /path" */
    char norm[BB_MAX_RULE_TEXT + BB_MAX_HOSTNAME + 64];
    if (str_printf(norm, sizeof(norm), "%s %.*s %s", norm_host, mo ? (int)(mo - 2) : 1,
                   mo ? methods + 1 : "*", path) < 0) {
        *reterr_msg = "rule too long";
        return -EINVAL;
    }
    for (size_t k = 0; k < p->n_texts; k++)
        if (strcmp(p->texts[k], norm) == 0)
            return 0; /* duplicate */
    if (p->n_texts >= BB_MAX_PATTERNS || p->n_rules >= BB_MAX_RULES) {
        *reterr_msg = "too many allow patterns";
        return -ENOSPC;
    }
    p->texts = xrealloc(p->texts, (p->n_texts + 1) * sizeof(*p->texts));
    p->texts[p->n_texts++] = xstrdup(norm);
    p->rules = xrealloc(p->rules, (p->n_rules + 1) * sizeof(*p->rules));
    p->rules[p->n_rules++] = (struct path_rule){
        .name = xstrdup(h.name),
        .wild = wild,
        .port = port,
        .methods = mo ? xstrdup(methods) : NULL,
        .path = xstrdup(path),
        .text = p->texts[p->n_texts - 1],
    };
    return 0;
}

static bool rule_covers(const struct path_rule *r, const struct host *h, uint16_t port)
{
    size_t n, rn;

    if (h->kind != HOST_NAME)
        return false;
    if (port && (r->port ? r->port != port : (port != 80 && port != 443)))
        return false;
    if (!r->wild)
        return strcmp(r->name, h->name) == 0;
    n = strlen(h->name);
    rn = strlen(r->name);
    return n > rn + 1 && h->name[n - rn - 1] == '.' && strcmp(h->name + n - rn, r->name) == 0;
}

bool policy_host_has_rules(const struct policy *p, const struct host *h, uint16_t port)
{
    for (size_t i = 0; p && h && i < p->n_rules; i++)
        if (rule_covers(&p->rules[i], h, port))
            return true;
    return false;
}

static bool method_in(const char *methods, const char *m, size_t n)
{
    if (!methods)
        return true;
    for (const char *s = strstr(methods, ","); s && s[1]; s = strchr(s + 1, ','))
        if (strncmp(s + 1, m, n) == 0 && s[1 + n] == ',')
            return true;
    return false;
}

enum verdict policy_check_request(const struct policy *p, const struct host *h, uint16_t port,
                                  const char *method, size_t method_len, const char *target,
                                  size_t target_len, const char **ret_rule, const char **ret_why)
{
    char path[BB_MAX_HTTP_TARGET + 1];
    const struct path_rule *first = NULL, *path_ok = NULL;
    const char *why = NULL;

    if (ret_rule)
        *ret_rule = NULL;
    if (ret_why)
        *ret_why = NULL;
    if (!policy_host_has_rules(p, h, port))
        return V_ALLOW;
    if (policy_path_normalise(target, target_len, path, sizeof(path), &why) < 0) {
        for (size_t i = 0; i < p->n_rules && !first; i++)
            if (rule_covers(&p->rules[i], h, port))
                first = &p->rules[i];
        if (ret_rule)
            /* policy_host_has_rules(): some rule covers h:port, so first is set */
            /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
            *ret_rule = first->text;
        if (ret_why)
            *ret_why = why;
        return V_DENY_PATH;
    }
    for (size_t i = 0; i < p->n_rules; i++) {
        const struct path_rule *r = &p->rules[i];
        if (!rule_covers(r, h, port))
            continue;
        if (!first)
            first = r;
        if (!policy_path_match(r->path, path))
            continue;
        if (method_in(r->methods, method, method_len)) {
            if (ret_rule)
                *ret_rule = r->text;
            return V_ALLOW;
        }
        if (!path_ok)
            path_ok = r;
    }
    if (ret_rule)
        /* policy_host_has_rules(): some rule covers h:port, so first is set */
        /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
        *ret_rule = (path_ok ? path_ok : first)->text;
    return path_ok ? V_DENY_METHOD : V_DENY_PATH;
}

bool policy_cred_name_valid(const char *s, size_t n)
{
    if (n == 0 || n > POLICY_CRED_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || ascii_isdigit(s[i]) || s[i] == '-' || s[i] == '_'))
            return false;
    return true;
}

bool policy_cred_header_valid(const char *s, size_t n)
{
    static const char *const refused[] = {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "proxy-connection",
        "proxy-authorization",
    };
    struct slice sl = slice_make(s, n);

    if (n == 0 || n > POLICY_CRED_HEADER_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!ascii_isalnum(s[i]) && !(s[i] && strchr("!#$%&'*+-.^_`|~", s[i])))
            return false;
    for (size_t i = 0; i < ARRAY_SIZE(refused); i++)
        if (slice_eq_nocase_cstr(sl, refused[i]))
            return false;
    return true;
}

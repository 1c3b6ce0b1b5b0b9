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

struct policy {
    struct name_table exact;
    struct name_table wild; /* "*.example.com" stored as "example.com" */
    char **texts;           /* normalised pattern texts, in insertion order */
    size_t n_texts;
    struct cidr *cidrs;
    size_t n_cidrs;
};

static const char *const verdict_reasons[V_MAX] = {
    [V_ALLOW] = "allowlisted",           [V_DENY_NOT_ALLOWLISTED] = "not-allowlisted",
    [V_DENY_PORT] = "port-not-allowed",  [V_DENY_BAD_HOST] = "bad-host",
    [V_DENY_IP_LITERAL] = "ip-literal",  [V_DENY_SSRF] = "ssrf-private",
    [V_DENY_METADATA] = "ssrf-metadata", [V_DENY_NO_ADDRESS] = "no-address",
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
    return c;
}

static bool entry_has_port(const struct name_entry *e, uint16_t port)
{
    for (size_t i = 0; i < e->n_ports; i++)
        if (e->ports[i] == port)
            return true;
    return false;
}

int policy_add_allow(struct policy *p, const char *text, size_t len, const char **reterr_msg)
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

    struct name_table *t = wild ? &p->wild : &p->exact;
    size_t hlen = strlen(h.name);
    struct name_entry *e = table_find(t, hash_name(h.name, hlen), h.name, hlen);
    if (e && (port ? entry_has_port(e, port) : e->default_ports))
        return 0; /* duplicate */
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

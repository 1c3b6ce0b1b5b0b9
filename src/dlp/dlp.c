/*
 * The DLP scanner (dlp.h, docs/dlp.md). One pass over the bytes finds word starts (an
 * alphanumeric byte after a non-alphanumeric one); only there, and only for the few first
 * bytes a rule can start with, does a rule look further, for a bounded number of bytes.
 * Credentials are literal needles (memmem) in each of their encodings.
 */
#include "dlp/dlp.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "common/xalloc.h"

static const char *const rule_names[DLP_RULE_MAX] = {
    [DLP_CREDENTIAL] = "credential",
    [DLP_AWS_KEY] = "aws-key",
    [DLP_GITHUB_TOKEN] = "github-token",
    [DLP_GITLAB_TOKEN] = "gitlab-token",
    [DLP_SLACK_TOKEN] = "slack-token",
    [DLP_PRIVATE_KEY] = "private-key",
    [DLP_JWT] = "jwt",
    [DLP_CARD] = "card",
    [DLP_DNS_ENTROPY] = "dns-entropy",
};
static const char *const rule_reasons[DLP_RULE_MAX] = {
    [DLP_CREDENTIAL] = "dlp:credential",
    [DLP_AWS_KEY] = "dlp:aws-key",
    [DLP_GITHUB_TOKEN] = "dlp:github-token",
    [DLP_GITLAB_TOKEN] = "dlp:gitlab-token",
    [DLP_SLACK_TOKEN] = "dlp:slack-token",
    [DLP_PRIVATE_KEY] = "dlp:private-key",
    [DLP_JWT] = "dlp:jwt",
    [DLP_CARD] = "dlp:card",
    [DLP_DNS_ENTROPY] = "dlp:dns-entropy",
};

const char *dlp_rule_name(int rule)
{
    return rule >= 0 && rule < DLP_RULE_MAX ? rule_names[rule] : NULL;
}

const char *dlp_rule_reason(int rule)
{
    return rule >= 0 && rule < DLP_RULE_MAX ? rule_reasons[rule] : "dlp:unknown";
}

int dlp_rule_by_name(const char *name, size_t len)
{
    for (int r = 0; r < DLP_RULE_MAX; r++)
        if (strlen(rule_names[r]) == len && memcmp(rule_names[r], name, len) == 0)
            return r;
    return DLP_NONE;
}

int dlp_parse_disable(const char *s, size_t len, uint32_t *mask, const char **reterr_msg)
{
    size_t i = 0;

    while (i < len) {
        size_t j;
        if (s[i] == ',' || s[i] == ' ' || s[i] == '\t') {
            i++;
            continue;
        }
        for (j = i; j < len && s[j] != ',' && s[j] != ' ' && s[j] != '\t'; j++)
            ;
        if (j - i == 3 && memcmp(s + i, "all", 3) == 0) {
            *mask |= DLP_ALL_RULES;
        } else {
            int r = dlp_rule_by_name(s + i, j - i);
            if (r == DLP_NONE) {
                *reterr_msg = "unknown DLP rule (credential, aws-key, github-token, gitlab-token, "
                              "slack-token, private-key, jwt, card, dns-entropy, all)";
                return -EINVAL;
            }
            *mask |= DLP_BIT(r);
        }
        i = j;
    }
    return 0;
}

/* ---------------------------------------------------------------- credentials */

#define NEEDLES_PER_SECRET 12

struct needle {
    unsigned char *p;
    size_t len;
};

struct secret {
    struct secret_host {
        char *name;
        uint16_t port;             /* 0: any */
    } hosts[DLP_MAX_SECRET_HOSTS]; /* where the value belongs (one value, several hosts) */
    size_t n_hosts;
    struct needle n[NEEDLES_PER_SECRET];
    size_t n_needles;
};

/* The needles are found through a hash of 8-byte windows: every needle's windows at offsets
 * 0..stride-1 are indexed, and the scan hashes only every stride-th position of the data (any
 * occurrence of a needle at least stride + 7 bytes long covers one of them). */
#define IDX_BUCKET_BITS 12

struct idx_entry {
    uint32_t h;
    int32_t next;
    uint16_t secret;
    uint8_t needle, off; /* off < stride <= 16 */
};

struct dlp {
    struct secret *s;
    size_t n;
    struct idx_entry *ents;
    size_t n_ents;
    unsigned stride;
    size_t max_len; /* the longest needle */
    /* bit (h >> 16) set: some indexed window has hash h (most positions stop here) */
    uint64_t filter[(1u << 16) / 64];
    int32_t heads[1u << IDX_BUCKET_BITS];
};

static inline uint32_t hash8(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return (uint32_t)((v * 0x9E3779B97F4A7C15ull) >> 32);
}

static void index_rebuild(struct dlp *d)
{
    size_t min_len = SIZE_MAX, n = 0;

    for (size_t i = 0; i < d->n; i++)
        for (size_t j = 0; j < d->s[i].n_needles; j++) {
            min_len = MIN(min_len, d->s[i].n[j].len);
            d->max_len = MAX(d->max_len, d->s[i].n[j].len);
        }
    d->stride = min_len == SIZE_MAX ? 1 : (unsigned)MIN((size_t)16, min_len - 7);
    free(d->ents);
    d->ents = NULL;
    d->n_ents = 0;
    for (size_t i = 0; i < d->n; i++)
        n += d->s[i].n_needles * d->stride;
    d->ents = xcalloc(n ? n : 1, sizeof(*d->ents));
    for (size_t b = 0; b < ARRAY_SIZE(d->heads); b++)
        d->heads[b] = -1;
    memset(d->filter, 0, sizeof(d->filter));
    for (size_t i = 0; i < d->n; i++)
        for (size_t j = 0; j < d->s[i].n_needles; j++)
            for (unsigned o = 0; o < d->stride; o++) {
                struct idx_entry *e = &d->ents[d->n_ents];
                e->h = hash8(d->s[i].n[j].p + o);
                e->secret = (uint16_t)i;
                e->needle = (uint8_t)j;
                e->off = (uint8_t)o;
                d->filter[e->h >> 22] |= 1ull << ((e->h >> 16) & 63);
                e->next = d->heads[e->h >> (32 - IDX_BUCKET_BITS)];
                d->heads[e->h >> (32 - IDX_BUCKET_BITS)] = (int32_t)d->n_ents++;
            }
}

struct dlp *dlp_new(void)
{
    return xcalloc(1, sizeof(struct dlp));
}

static void needle_wipe(struct needle *n)
{
    if (n->p) {
        explicit_bzero(n->p, n->len);
        free(n->p);
    }
    n->p = NULL;
    n->len = 0;
}

struct dlp *dlp_free(struct dlp *d)
{
    if (!d)
        return NULL;
    for (size_t i = 0; i < d->n; i++) {
        for (size_t j = 0; j < d->s[i].n_needles; j++)
            needle_wipe(&d->s[i].n[j]);
        for (size_t j = 0; j < d->s[i].n_hosts; j++)
            free(d->s[i].hosts[j].name);
    }
    free(d->s);
    free(d->ents);
    free(d);
    return NULL;
}

size_t dlp_n_secrets(const struct dlp *d)
{
    return d ? d->n : 0;
}

static void add_needle(struct secret *s, const unsigned char *p, size_t len)
{
    if (len < DLP_SECRET_MIN || s->n_needles >= NEEDLES_PER_SECRET)
        return;
    for (size_t i = 0; i < s->n_needles; i++)
        if (s->n[i].len == len && memcmp(s->n[i].p, p, len) == 0)
            return;
    s->n[s->n_needles].p = xmalloc(len);
    memcpy(s->n[s->n_needles].p, p, len);
    s->n[s->n_needles].len = len;
    s->n_needles++;
}

static const char b64std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The base64 characters that depend only on v when v starts at byte offset k (0..2) of the
 * encoded data: whatever surrounds it, these appear. */
static size_t b64_stable(const unsigned char *v, size_t len, unsigned k, const char *alpha,
                         unsigned char *out)
{
    size_t bits = 8 * (k + len), first = (8 * k + 5) / 6, last = bits / 6; /* [first, last) */
    size_t n = 0;

    for (size_t j = first; j < last; j++) {
        unsigned val = 0;
        for (unsigned b = 0; b < 6; b++) {
            size_t bit = 6 * j + b, byte = bit / 8;
            unsigned x = byte < k ? 0 : v[byte - k];
            val = (val << 1) | ((x >> (7 - bit % 8)) & 1);
        }
        out[n++] = (unsigned char)alpha[val];
    }
    return n;
}

int dlp_add_secret(struct dlp *d, const char *host, uint16_t port, const void *value, size_t len)
{
    static const char hexl[] = "0123456789abcdef", hexu[] = "0123456789ABCDEF";
    const unsigned char *v = value;
    unsigned char tmp[DLP_SECRET_PREFIX * 3];
    struct secret *s;

    if (!d || !host || !host[0] || !value || len < DLP_SECRET_MIN)
        return -EINVAL;
    if (len > DLP_SECRET_PREFIX)
        len = DLP_SECRET_PREFIX;
    /* the same value again: one more host it belongs to */
    for (size_t i = 0; i < d->n; i++) {
        s = &d->s[i];
        if (s->n[0].len != len || memcmp(s->n[0].p, v, len) != 0)
            continue;
        for (size_t j = 0; j < s->n_hosts; j++)
            if (strcmp(s->hosts[j].name, host) == 0 && s->hosts[j].port == port)
                return 0;
        if (s->n_hosts >= DLP_MAX_SECRET_HOSTS)
            return -ENOSPC;
        s->hosts[s->n_hosts].name = xstrdup(host);
        s->hosts[s->n_hosts++].port = port;
        return 0;
    }
    if (d->n >= DLP_MAX_SECRETS)
        return -ENOSPC;
    d->s = xrealloc(d->s, (d->n + 1) * sizeof(*d->s));
    s = &d->s[d->n++];
    memset(s, 0, sizeof(*s));
    s->hosts[0].name = xstrdup(host);
    s->hosts[0].port = port;
    s->n_hosts = 1;
    add_needle(s, v, len);
    for (unsigned k = 0; k < 3; k++) {
        add_needle(s, tmp, b64_stable(v, len, k, b64std, tmp));
        add_needle(s, tmp, b64_stable(v, len, k, b64url, tmp));
    }
    for (size_t i = 0; i < len; i++) {
        tmp[2 * i] = (unsigned char)hexl[v[i] >> 4];
        tmp[2 * i + 1] = (unsigned char)hexl[v[i] & 15];
    }
    add_needle(s, tmp, 2 * len);
    for (size_t i = 0; i < len; i++) {
        tmp[2 * i] = (unsigned char)hexu[v[i] >> 4];
        tmp[2 * i + 1] = (unsigned char)hexu[v[i] & 15];
    }
    add_needle(s, tmp, 2 * len);
    for (size_t i = 0; i < len; i++) {
        tmp[3 * i] = '%';
        tmp[3 * i + 1] = (unsigned char)hexu[v[i] >> 4];
        tmp[3 * i + 2] = (unsigned char)hexu[v[i] & 15];
    }
    add_needle(s, tmp, 3 * len);
    for (size_t i = 0; i < len; i++) {
        tmp[3 * i] = '%';
        tmp[3 * i + 1] = (unsigned char)hexl[v[i] >> 4];
        tmp[3 * i + 2] = (unsigned char)hexl[v[i] & 15];
    }
    add_needle(s, tmp, 3 * len);
    explicit_bzero(tmp, sizeof(tmp));
    index_rebuild(d);
    return 0;
}

static bool secret_exempt(const struct secret *s, const struct dlp_ctx *x)
{
    for (size_t i = 0; x->host && i < s->n_hosts; i++)
        if (strcmp(s->hosts[i].name, x->host) == 0 &&
            (s->hosts[i].port == 0 || s->hosts[i].port == x->port))
            return true;
    return false;
}

static bool scan_secrets(const struct dlp_ctx *x, const unsigned char *p, size_t len)
{
    const struct dlp *d = x->d;

    if (!d || !d->n || (x->disabled & DLP_BIT(DLP_CREDENTIAL)))
        return false;
    for (size_t i = 0; i + 8 <= len; i += d->stride) {
        uint32_t h = hash8(p + i);
        if (!(d->filter[h >> 22] & (1ull << ((h >> 16) & 63))))
            continue;
        for (int32_t k = d->heads[h >> (32 - IDX_BUCKET_BITS)]; k >= 0; k = d->ents[k].next) {
            const struct idx_entry *e = &d->ents[k];
            if (e->h != h || i < e->off)
                continue;
            const struct secret *sec = &d->s[e->secret];
            const struct needle *nd = &sec->n[e->needle];
            size_t start = i - e->off;
            if (start + nd->len <= len && memcmp(p + start, nd->p, nd->len) == 0 &&
                !secret_exempt(sec, x))
                return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------- formats */

enum { C_ALNUM = 1, C_DIGIT = 2, C_UPPER = 4, C_B64URL = 8, C_HEX = 16 };

static uint8_t cls[256];

static bool have_avx2;

static void cls_init(void)
{
    if (cls['a'])
        return;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    have_avx2 = __builtin_cpu_supports("avx2");
#endif
    for (int c = 0; c < 256; c++) {
        uint8_t v = 0;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            v |= C_ALNUM | C_B64URL;
        if (c >= '0' && c <= '9')
            v |= C_DIGIT | C_HEX;
        if (c >= 'A' && c <= 'Z')
            v |= C_UPPER;
        if ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
            v |= C_HEX;
        if (c == '-' || c == '_')
            v |= C_B64URL;
        cls[c] = v;
    }
}

/* A window over the bytes being scanned: where the region ends and whether its ends are the
 * real ends of the data (else what lies beyond is unknown and a match must not assume). */
struct region {
    const unsigned char *p;
    size_t len;
    bool start_b, end_b;
};

enum { NO = 0, YES = 1, MORE = 2 }; /* MORE: cannot tell within the region */

/* Count bytes of class `want` from i; stop at max. */
static size_t run_len(const struct region *r, size_t i, uint8_t want, size_t max)
{
    size_t n = 0;
    while (i + n < r->len && n < max && (cls[r->p[i + n]] & want))
        n++;
    return n;
}

/* After a token ending at i (exclusive): is the next byte not of class `stop`? */
static int ends_clean(const struct region *r, size_t i, uint8_t stop)
{
    if (i >= r->len)
        return r->end_b ? YES : MORE;
    return (cls[r->p[i]] & stop) ? NO : YES;
}

static bool has_prefix(const struct region *r, size_t i, const char *s, size_t n)
{
    return i + n <= r->len && memcmp(r->p + i, s, n) == 0;
}

/* AKIA/ASIA/... + 16 [A-Z0-9], not followed by an alphanumeric. */
static int match_aws(const struct region *r, size_t i)
{
    static const char *const pfx[] = { "AKIA", "ASIA", "AGPA", "AIDA", "AROA",
                                       "ANPA", "ANVA", "APKA", "ABIA", "ACCA" };
    bool ok = false;
    if (i + 4 > r->len || r->p[i + 3] != 'A') /* every prefix ends in 'A' */
        return NO;
    for (size_t k = 0; k < ARRAY_SIZE(pfx) && !ok; k++)
        ok = has_prefix(r, i, pfx[k], 4);
    if (!ok)
        return NO;
    size_t n = 0;
    while (i + 4 + n < r->len && n < 17 && (cls[r->p[i + 4 + n]] & (C_UPPER | C_DIGIT)))
        n++;
    if (n == 16)
        return ends_clean(r, i + 20, C_ALNUM);
    return (n < 16 && i + 4 + n >= r->len && !r->end_b) ? MORE : NO;
}

/* A fixed prefix, then at least min (at most max) bytes of class `body`, then a byte outside
 * `stop`. */
static int match_prefixed(const struct region *r, size_t i, const char *pfx, size_t min, size_t max,
                          uint8_t body, uint8_t stop)
{
    size_t pl = strlen(pfx), n;
    if (!has_prefix(r, i, pfx, pl))
        return (i + pl > r->len && !r->end_b) ? MORE : NO;
    n = run_len(r, i + pl, body, max + 1);
    if (n > max)
        return NO;
    if (i + pl + n >= r->len && !r->end_b)
        return MORE;
    if (n < min)
        return NO;
    return ends_clean(r, i + pl + n, stop);
}

static int match_g(const struct region *r, size_t i)
{
    int m;

    if (i + 4 > r->len)
        return DLP_NONE;
    switch (r->p[i + 1]) {
    case 'h': {
        /* ghp_ gho_ ghu_ ghs_ ghr_ */
        char pfx[5] = { 'g', 'h', (char)r->p[i + 2], '_', '\0' };
        if (r->p[i + 3] != '_' || !memchr("pousr", r->p[i + 2], 5))
            return DLP_NONE;
        m = match_prefixed(r, i, pfx, 36, 251, C_ALNUM, C_ALNUM);
        return m == YES ? DLP_GITHUB_TOKEN : DLP_NONE;
    }
    case 'i':
        m = match_prefixed(r, i, "github_pat_", 70, 255, C_B64URL, C_ALNUM);
        return m == YES ? DLP_GITHUB_TOKEN : DLP_NONE;
    case 'l':
        m = match_prefixed(r, i, "glpat-", 20, 255, C_B64URL, C_ALNUM);
        return m == YES ? DLP_GITLAB_TOKEN : DLP_NONE;
    default:
        return DLP_NONE;
    }
}

static int match_slack(const struct region *r, size_t i)
{
    static const char *const sl[] = { "xoxb-", "xoxa-", "xoxp-", "xoxr-", "xoxs-" };
    for (size_t k = 0; k < ARRAY_SIZE(sl); k++) {
        /* xoxb-NNN-NNN-XXXX: digits and dashes, then letters; at least 10 after the prefix,
         * with a digit among them. */
        if (!has_prefix(r, i, sl[k], 5))
            continue;
        size_t n = 0, digits = 0;
        while (i + 5 + n < r->len && n < 256 && (cls[r->p[i + 5 + n]] & C_B64URL) &&
               r->p[i + 5 + n] != '_') {
            digits += (cls[r->p[i + 5 + n]] & C_DIGIT) != 0;
            n++;
        }
        if (n >= 10 && digits >= 1 && ends_clean(r, i + 5 + n, C_ALNUM) == YES)
            return DLP_SLACK_TOKEN;
    }
    return DLP_NONE;
}

/* "-----BEGIN [WORDS ]PRIVATE KEY-----" (or "PRIVATE KEY BLOCK-----"), i at the B. */
static int match_pem(const struct region *r, size_t i)
{
    if (i < 5 || memcmp(r->p + i - 5, "-----", 5) != 0 || !has_prefix(r, i, "BEGIN ", 6))
        return NO;
    size_t end = MIN(r->len, i + 6 + 64);
    for (size_t j = i + 6; j < end; j++) {
        unsigned char ch = r->p[j];
        if (has_prefix(r, j, "PRIVATE KEY", 11)) {
            size_t k = j + 11;
            if (has_prefix(r, k, " BLOCK", 6))
                k += 6;
            return has_prefix(r, k, "-----", 5) ? YES : NO;
        }
        if (!((cls[ch] & C_UPPER) || (cls[ch] & C_DIGIT) || ch == ' '))
            return NO;
    }
    return NO;
}

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-' || c == '+')
        return 62;
    if (c == '_' || c == '/')
        return 63;
    return -1;
}

#define JWT_MAX_HEADER 560

/* "eyJ..." header that decodes to a JSON object with "alg", '.', >= 8 payload chars. */
static int match_jwt(const struct region *r, size_t i)
{
    unsigned char dec[JWT_MAX_HEADER];
    size_t n, dn = 0;
    unsigned acc = 0, bits = 0;

    if (!has_prefix(r, i, "eyJ", 3))
        return NO;
    n = run_len(r, i, C_B64URL, JWT_MAX_HEADER + 1);
    if (n > JWT_MAX_HEADER || n < 8)
        return NO;
    if (i + n >= r->len || r->p[i + n] != '.')
        return NO;
    for (size_t k = 0; k < n; k++) {
        int v = b64url_val(r->p[i + k]);
        if (v < 0)
            return NO;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            dec[dn++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* a JSON object naming an algorithm */
    if (dn < 8 || dec[0] != '{' || !memmem(dec, dn, "\"alg\"", 5))
        return NO;
    size_t pl = 0, s = i + n + 1;
    while (s + pl < r->len && pl < 8 && (cls[r->p[s + pl]] & C_B64URL))
        pl++;
    return pl >= 8 ? YES : NO;
}

static bool luhn_ok(const unsigned char *d, size_t n)
{
    unsigned sum = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned v = d[n - 1 - k];
        if (k & 1) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

/* Issuer prefixes and lengths of the card networks (Visa, Mastercard, Amex, Discover, JCB,
 * Diners, UnionPay). */
static bool card_iin_ok(const unsigned char *d, size_t n)
{
    unsigned p2 = d[0] * 10u + d[1], p3 = p2 * 10u + d[2], p4 = p3 * 10u + d[3];
    switch (d[0]) {
    case 4:
        return n == 13 || n == 16 || n == 19;
    case 5:
        return p2 >= 51 && p2 <= 55 && n == 16;
    case 2:
        return p4 >= 2221 && p4 <= 2720 && n == 16;
    case 3:
        if (p2 == 34 || p2 == 37)
            return n == 15;
        if (p4 >= 3528 && p4 <= 3589)
            return n >= 16 && n <= 19;
        return ((p3 >= 300 && p3 <= 305) || p2 == 36 || p2 == 38 || p2 == 39) && n >= 14 && n <= 19;
    case 6:
        return (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649) || p2 == 62) && n >= 16 &&
               n <= 19;
    default:
        return false;
    }
}

/* How far back match_card looks for the '[' or '":' of a JSON number: the bytes before a
 * match any rule needs stay within DLP_LOOKBACK. */
#define CARD_MAX_SPACES 8

/* 13-19 digits, contiguous or in groups separated by one ' ' or '-' (the same one), not part
 * of a longer number, a decimal fraction or a word. */
static int match_card(const struct region *r, size_t i)
{
    unsigned char d[20];
    size_t n = 0, j = i, group = 0, groups[8], ng = 0;
    unsigned char sep = 0;

    if (i == 1 && !r->start_b)
        return NO; /* what precedes is unknown here; a region with it decides */
    if (i > 0 &&
        (r->p[i - 1] == '.' || r->p[i - 1] == ',' ||
         ((r->p[i - 1] == '-' || r->p[i - 1] == ' ') && i > 1 && (cls[r->p[i - 2]] & C_DIGIT))))
        return NO; /* a fraction, or the continuation of a number list */
    if (i > 0) {
        /* an unquoted JSON number ("id":4599456696819948, [4599...]) is an id, not a card */
        size_t k = i;
        while (k > 0 && i - k < CARD_MAX_SPACES && r->p[k - 1] == ' ')
            k--;
        if (k > 0 && (r->p[k - 1] == '[' || (r->p[k - 1] == ':' && k > 1 && r->p[k - 2] == '"')))
            return NO;
        if (k == 0 && !r->start_b)
            return NO; /* unknown context */
    }
    for (;;) {
        if (j >= r->len) {
            if (!r->end_b)
                return MORE;
            break;
        }
        unsigned char ch = r->p[j];
        if (cls[ch] & C_DIGIT) {
            if (n == 19)
                return NO; /* longer than any card */
            d[n++] = (unsigned char)(ch - '0');
            group++;
            j++;
            continue;
        }
        if ((ch == ' ' || ch == '-') && (sep == 0 || sep == ch) && j + 1 < r->len &&
            (cls[r->p[j + 1]] & C_DIGIT) && ng < ARRAY_SIZE(groups) - 1) {
            sep = ch;
            groups[ng++] = group;
            group = 0;
            j++;
            continue;
        }
        if (ch == ' ' || ch == '-') {
            if (j + 1 >= r->len && !r->end_b)
                return MORE;
        }
        if (cls[ch] & C_ALNUM)
            return NO;
        break;
    }
    groups[ng++] = group;
    if (n < 13)
        return NO;
    if (ng > 1) {
        /* 4-4-4-4[-3], 4-6-5 (Amex), 4-4-4-1..4 */
        bool fours = true;
        for (size_t k = 0; k + 1 < ng; k++)
            fours = fours && groups[k] == 4;
        bool amex = ng == 3 && groups[0] == 4 && groups[1] == 6 && groups[2] == 5;
        if (!(fours && groups[ng - 1] >= 1 && groups[ng - 1] <= 4) && !amex)
            return NO;
    }
    if (!card_iin_ok(d, n) || !luhn_ok(d, n))
        return NO;
    return YES;
}

/* The rule that starts at word start i, if any fires. */
static int match_at(const struct region *r, size_t i, uint32_t off)
{
    switch (r->p[i]) {
    case 'A':
        if (!(off & DLP_BIT(DLP_AWS_KEY)) && match_aws(r, i) == YES)
            return DLP_AWS_KEY;
        break;
    case 'g': {
        int m = match_g(r, i);
        if (m != DLP_NONE && !(off & DLP_BIT(m)))
            return m;
        break;
    }
    case 'x':
        if (!(off & DLP_BIT(DLP_SLACK_TOKEN)) && match_slack(r, i) != DLP_NONE)
            return DLP_SLACK_TOKEN;
        break;
    case 'B':
        if (!(off & DLP_BIT(DLP_PRIVATE_KEY)) && match_pem(r, i) == YES)
            return DLP_PRIVATE_KEY;
        break;
    case 'e':
        if (!(off & DLP_BIT(DLP_JWT)) && match_jwt(r, i) == YES)
            return DLP_JWT;
        break;
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
        if (!(off & DLP_BIT(DLP_CARD)) && match_card(r, i) == YES)
            return DLP_CARD;
        break;
    default:
        break;
    }
    return DLP_NONE;
}

/* Can a rule start with this byte (match_at's cases)? */
static inline bool can_start(unsigned char c)
{
    return c == 'A' || c == 'g' || c == 'x' || c == 'B' || c == 'e' || (c >= '2' && c <= '6');
}

/* Where a stream keeps the starts a region could not decide (fewer than DLP_MAX_MATCH bytes
 * after them in the region): absolute stream positions, base + the region's index. */
struct rec {
    struct dlp_stream *s;
    uint64_t base;
};

static void note_start(struct rec *rc, const struct region *r, size_t i)
{
    /* a start with DLP_MAX_MATCH bytes after it (or the data's real end) is decided */
    if (!rc || r->end_b || r->len - i >= DLP_MAX_MATCH || !can_start(r->p[i]))
        return;
    /* at most one word start per two bytes, so DLP_MAX_PENDING is never reached */
    if (rc->s->n_pend < DLP_MAX_PENDING)
        rc->s->pend[rc->s->n_pend++] = rc->base + i;
}

/* Scalar: every word start (an alphanumeric byte after a non-alphanumeric one) in [i, to). */
static int scan_formats_scalar(const struct region *r, size_t i, size_t to, bool prev_al,
                               uint32_t off, struct rec *rc)
{
    for (; i < to; i++) {
        if (!(cls[r->p[i]] & C_ALNUM)) {
            prev_al = false;
            continue;
        }
        if (prev_al)
            continue;
        prev_al = true;
        int m = match_at(r, i, off);
        if (m != DLP_NONE)
            return m;
        note_start(rc, r, i);
    }
    return DLP_NONE;
}

/* Was the byte before from alphanumeric (unknown before a region that is not the start)? */
static bool prev_alnum(const struct region *r, size_t from)
{
    return from > 0 ? (cls[r->p[from - 1]] & C_ALNUM) != 0 : !r->start_b;
}

#ifdef __SSE2__
#include <emmintrin.h>

/* Bytes in [lo, lo+n) (unsigned), as a vector mask. */
static inline __m128i in_range(__m128i v, unsigned char lo, unsigned char n)
{
    const __m128i bias = _mm_set1_epi8((char)0x80);
    __m128i d = _mm_sub_epi8(v, _mm_set1_epi8((char)lo));
    return _mm_cmplt_epi8(_mm_xor_si128(d, bias), _mm_set1_epi8((char)(n ^ 0x80)));
}

static inline __m128i eq(__m128i v, char c)
{
    return _mm_cmpeq_epi8(v, _mm_set1_epi8(c));
}

/*
 * The rule starts in [from, to), 16 bytes at a time: the word starts whose first two bytes can
 * begin a rule ('A' + upper case, "gh", "gi", "gl", "xo", "BE", "ey", a digit 2-6 +
 * digit/' '/'-'); only those reach match_at(). Same result as the scalar loop, which finishes
 * the last bytes. Starts the region cannot decide go to rc (NULL: none is kept).
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_PATH 1

__attribute__((target("avx2"))) static inline __m256i in_range32(__m256i v, unsigned char lo,
                                                                 unsigned char n)
{
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    __m256i d = _mm256_sub_epi8(v, _mm256_set1_epi8((char)lo));
    return _mm256_cmpgt_epi8(_mm256_set1_epi8((char)(n ^ 0x80)), _mm256_xor_si256(d, bias));
}

__attribute__((target("avx2"))) static inline __m256i eq32(__m256i v, char c)
{
    return _mm256_cmpeq_epi8(v, _mm256_set1_epi8(c));
}

/* scan_formats' loop 32 bytes at a time where the CPU has AVX2 (the same filter); returns the
 * rule that fired or DLP_NONE with *at where the caller goes on, *carry for the byte before. */
__attribute__((target("avx2"))) static int scan_formats_avx2(const struct region *r, size_t *at,
                                                             size_t to, unsigned *carry,
                                                             uint32_t off, struct rec *rc)
{
    const unsigned char *p = r->p;
    size_t i = *at;
    unsigned c = *carry;

    for (; i + 32 <= to && i + 33 <= r->len; i += 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(p + i));
        __m256i w = _mm256_loadu_si256((const __m256i *)(p + i + 1));
        __m256i lower = _mm256_or_si256(v, _mm256_set1_epi8(0x20));
        __m256i digit = in_range32(v, '0', 10);
        uint32_t al =
            (uint32_t)_mm256_movemask_epi8(_mm256_or_si256(digit, in_range32(lower, 'a', 26)));
        uint32_t ws = al & ~((al << 1) | c);
        c = al >> 31;
        __m256i wd = in_range32(w, '0', 10);
        __m256i cand = _mm256_and_si256(eq32(v, 'A'), in_range32(w, 'A', 26));
        cand = _mm256_or_si256(
            cand,
            _mm256_and_si256(eq32(v, 'g'), _mm256_or_si256(in_range32(w, 'h', 2), eq32(w, 'l'))));
        cand = _mm256_or_si256(cand, _mm256_and_si256(eq32(v, 'x'), eq32(w, 'o')));
        cand = _mm256_or_si256(cand, _mm256_and_si256(eq32(v, 'B'), eq32(w, 'E')));
        cand = _mm256_or_si256(cand, _mm256_and_si256(eq32(v, 'e'), eq32(w, 'y')));
        cand = _mm256_or_si256(
            cand,
            _mm256_and_si256(in_range32(v, '2', 5),
                             _mm256_or_si256(wd, _mm256_or_si256(eq32(w, ' '), eq32(w, '-')))));
        uint32_t m = ws & (uint32_t)_mm256_movemask_epi8(cand);
        while (m) {
            size_t s = i + (size_t)__builtin_ctz(m);
            int hit = match_at(r, s, off);
            if (hit != DLP_NONE)
                return hit;
            note_start(rc, r, s);
            m &= m - 1;
        }
    }
    *at = i;
    *carry = c;
    return DLP_NONE;
}
#endif

static int scan_formats(const struct dlp_ctx *x, const struct region *r, size_t from, size_t to,
                        struct rec *rc)
{
    const unsigned char *p = r->p;
    uint32_t off = x->disabled;
    unsigned carry = prev_alnum(r, from); /* was the byte before the block alphanumeric? */
    size_t i = from;

#ifdef HAVE_AVX2_PATH
    if (have_avx2) {
        int hit = scan_formats_avx2(r, &i, to, &carry, off, rc);
        if (hit != DLP_NONE)
            return hit;
    }
#endif
    for (; i + 16 <= to && i + 17 <= r->len; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
        __m128i w = _mm_loadu_si128((const __m128i *)(p + i + 1));
        __m128i lower = _mm_or_si128(v, _mm_set1_epi8(0x20));
        __m128i digit = in_range(v, '0', 10);
        unsigned al = (unsigned)_mm_movemask_epi8(_mm_or_si128(digit, in_range(lower, 'a', 26)));
        unsigned ws = al & ~((al << 1) | carry);
        carry = (al >> 15) & 1;
        if (!ws)
            continue;
        __m128i wd = in_range(w, '0', 10);
        __m128i cand = _mm_and_si128(eq(v, 'A'), in_range(w, 'A', 26));
        cand = _mm_or_si128(
            cand, _mm_and_si128(eq(v, 'g'), _mm_or_si128(in_range(w, 'h', 2), eq(w, 'l'))));
        cand = _mm_or_si128(cand, _mm_and_si128(eq(v, 'x'), eq(w, 'o')));
        cand = _mm_or_si128(cand, _mm_and_si128(eq(v, 'B'), eq(w, 'E')));
        cand = _mm_or_si128(cand, _mm_and_si128(eq(v, 'e'), eq(w, 'y')));
        cand = _mm_or_si128(cand,
                            _mm_and_si128(in_range(v, '2', 5),
                                          _mm_or_si128(wd, _mm_or_si128(eq(w, ' '), eq(w, '-')))));
        unsigned m = ws & (unsigned)_mm_movemask_epi8(cand);
        while (m) {
            size_t at = i + (size_t)__builtin_ctz(m);
            int hit = match_at(r, at, off);
            if (hit != DLP_NONE)
                return hit;
            note_start(rc, r, at);
            m &= m - 1;
        }
    }
    return scan_formats_scalar(r, i, to, carry != 0, off, rc);
}
#else
static int scan_formats(const struct dlp_ctx *x, const struct region *r, size_t from, size_t to,
                        struct rec *rc)
{
    return scan_formats_scalar(r, from, to, prev_alnum(r, from), x->disabled, rc);
}
#endif

static bool secrets_on(const struct dlp_ctx *x)
{
    return x->d && x->d->n && !(x->disabled & DLP_BIT(DLP_CREDENTIAL));
}

int dlp_scan_buf(const struct dlp_ctx *x, const void *p, size_t len)
{
    struct region r = { p, len, true, true };

    cls_init();
    if (scan_secrets(x, r.p, r.len))
        return DLP_CREDENTIAL;
    return scan_formats(x, &r, 0, len, NULL);
}

/* ---------------------------------------------------------------- host names */

static bool label_random(const unsigned char *s, size_t n)
{
    unsigned counts[256] = { 0 };
    unsigned digits = 0, letters = 0;
    double h = 0;

    for (size_t i = 0; i < n; i++) {
        counts[s[i]]++;
        if (cls[s[i]] & C_DIGIT)
            digits++;
        else
            letters++;
    }
    for (unsigned c = 0; c < 256; c++)
        if (counts[c]) {
            double q = (double)counts[c] / (double)n;
            h -= q * log2(q);
        }
    /* hex-encoded data */
    if (n >= 24 && digits >= 3 && letters >= 3) {
        size_t k = 0;
        while (k < n && (cls[s[k]] & C_HEX) && !(cls[s[k]] & C_UPPER))
            k++;
        if (k == n)
            return true;
    }
    /* a long run mixing letters and digits with a flat distribution, or a very long run */
    if (n >= 20 && digits >= 3 && letters >= 3 && h >= 3.5)
        return true;
    return n >= 40 && h >= 3.8;
}

int dlp_check_host(const struct dlp_ctx *x, const char *name, size_t len)
{
    const unsigned char *s = (const unsigned char *)name;
    size_t i = 0;

    cls_init();
    if (x->disabled & DLP_BIT(DLP_DNS_ENTROPY))
        return DLP_NONE;
    /* runs of letters and digits (labels split further at '-' and '_') */
    while (i < len) {
        size_t j = i;
        while (j < len && (cls[s[j]] & C_ALNUM))
            j++;
        if (j - i >= 20 && label_random(s + i, j - i))
            return DLP_DNS_ENTROPY;
        i = j + 1;
    }
    return DLP_NONE;
}

size_t dlp_host_redact_len(const char *name, size_t len)
{
    const struct dlp_ctx x = { 0 };
    size_t start = 0, cut = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && name[i] != '.')
            continue;
        if (dlp_check_host(&x, name + start, i - start) != DLP_NONE)
            cut = i;
        start = i + 1;
    }
    return cut;
}

/* ---------------------------------------------------------------- streams */

/*
 * A stream is scanned chunk by chunk where the chunk lies, with a small carry of the bytes
 * before it:
 *   - credentials: a needle wholly inside a chunk is found there; one that straddles the
 *     junction is found in the carry's last (longest needle - 1) bytes joined to as many of the
 *     chunk's first ones;
 *   - formats: a rule start with DLP_MAX_MATCH bytes after it in the region scanned is decided
 *     (no rule looks further); the others, a handful of candidate starts near a chunk's end,
 *     are kept in s->pend and tried again with the next chunk joined (or at the end). The
 *     chunk's first DLP_LOOKBACK bytes are tried in that join too, where the bytes before
 *     them (a word start, "-----" before BEGIN, the '[' before a number) are known.
 * The carry is what those need: DLP_LOOKBACK bytes before the oldest pending start, and the
 * longest needle's length; every byte is scanned once plus a few hundred at each junction.
 */
void dlp_stream_init(struct dlp_stream *s)
{
    s->total = 0;
    s->carry_len = 0;
    s->n_pend = 0;
    s->hit = DLP_NONE;
}

/* Keep the last keep bytes of the carry followed by p[0..len). */
static void carry_keep(struct dlp_stream *s, const unsigned char *p, size_t len, size_t keep)
{
    if (len >= keep) {
        memcpy(s->carry, p + len - keep, keep);
        s->carry_len = keep;
        return;
    }
    size_t old = MIN(s->carry_len, keep - len);
    memmove(s->carry, s->carry + s->carry_len - old, old);
    memcpy(s->carry + old, p, len);
    s->carry_len = old + len;
}

/* The carry's tail joined to the chunk's head: needles across the junction, the pending
 * starts, and the starts in the chunk's first DLP_LOOKBACK bytes. */
static int scan_junction(struct dlp_stream *s, const struct dlp_ctx *x, const unsigned char *p,
                         size_t len, size_t nl)
{
    unsigned char join[DLP_CARRY + DLP_MAX_MATCH + DLP_LOOKBACK];
    uint64_t t = s->total, first = s->n_pend ? s->pend[0] : t;
    size_t back = MIN(s->carry_len, MAX((size_t)(t - first) + DLP_LOOKBACK, nl));
    size_t head = MIN(len, (size_t)DLP_LOOKBACK), fwd = nl;
    /* the formats need the chunk's bytes only for a pending start or a possible rule start in
     * its head (a byte that can start one, a non-alphanumeric byte before it) */
    bool starts = s->n_pend > 0;
    for (size_t k = 0; k < head && !starts; k++)
        starts = can_start(p[k]) && !(cls[k ? p[k - 1] : s->carry[s->carry_len - 1]] & C_ALNUM);
    if (starts)
        fwd = MAX(fwd, (size_t)DLP_MAX_MATCH + DLP_LOOKBACK);
    fwd = MIN(len, fwd);
    struct region j = { join, back + fwd, t - back == 0, false };
    struct rec rc = { s, t - back };
    size_t w = 0;
    int m;

    memcpy(join, s->carry + s->carry_len - back, back);
    memcpy(join + back, p, fwd);
    if (nl && scan_secrets(x, join + back - MIN(back, nl), MIN(back, nl) + MIN(fwd, nl)))
        return DLP_CREDENTIAL;
    for (size_t k = 0; k < s->n_pend; k++) {
        size_t at = (size_t)(s->pend[k] - rc.base);
        m = match_at(&j, at, x->disabled);
        if (m != DLP_NONE)
            return m;
        if (j.len - at < DLP_MAX_MATCH)
            s->pend[w++] = s->pend[k];
    }
    s->n_pend = w;
    return starts ? scan_formats(x, &j, back, back + head, &rc) : DLP_NONE;
}

int dlp_stream_feed(struct dlp_stream *s, const struct dlp_ctx *x, const void *pv, size_t len)
{
    const unsigned char *p = pv;
    size_t nl = secrets_on(x) ? x->d->max_len - 1 : 0, keep;
    int m;

    if (s->hit != DLP_NONE || len == 0)
        return s->hit;
    cls_init();
    if (s->total) {
        m = scan_junction(s, x, p, len, nl);
        if (m != DLP_NONE)
            return s->hit = m;
    }
    struct region r = { p, len, s->total == 0, false };
    struct rec rc = { s, s->total };
    if (scan_secrets(x, p, len))
        return s->hit = DLP_CREDENTIAL;
    m = scan_formats(x, &r, s->total ? MIN(len, (size_t)DLP_LOOKBACK) : 0, len, &rc);
    if (m != DLP_NONE)
        return s->hit = m;
    s->total += len;
    keep = MAX((size_t)DLP_LOOKBACK, nl);
    if (s->n_pend)
        keep = MAX(keep, (size_t)(s->total - s->pend[0]) + DLP_LOOKBACK);
    carry_keep(s, p, len, (size_t)MIN((uint64_t)keep, s->total));
    return DLP_NONE;
}

int dlp_stream_end(struct dlp_stream *s, const struct dlp_ctx *x)
{
    if (s->hit != DLP_NONE || s->n_pend == 0)
        return s->hit;
    cls_init();
    uint64_t base = s->total - s->carry_len;
    struct region r = { s->carry, s->carry_len, base == 0, true };
    for (size_t k = 0; k < s->n_pend && s->hit == DLP_NONE; k++)
        s->hit = match_at(&r, (size_t)(s->pend[k] - base), x->disabled);
    s->n_pend = 0;
    return s->hit;
}

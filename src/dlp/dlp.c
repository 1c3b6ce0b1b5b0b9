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
        for (size_t j = 0; j < d->s[i].n_needles; j++)
            min_len = MIN(min_len, d->s[i].n[j].len);
    d->stride = min_len == SIZE_MAX ? 1 : (unsigned)MIN((size_t)16, min_len - 7);
    free(d->ents);
    d->ents = NULL;
    d->n_ents = 0;
    for (size_t i = 0; i < d->n; i++)
        n += d->s[i].n_needles * d->stride;
    d->ents = xcalloc(n ? n : 1, sizeof(*d->ents));
    for (size_t b = 0; b < ARRAY_SIZE(d->heads); b++)
        d->heads[b] = -1;
    for (size_t i = 0; i < d->n; i++)
        for (size_t j = 0; j < d->s[i].n_needles; j++)
            for (unsigned o = 0; o < d->stride; o++) {
                struct idx_entry *e = &d->ents[d->n_ents];
                e->h = hash8(d->s[i].n[j].p + o);
                e->secret = (uint16_t)i;
                e->needle = (uint8_t)j;
                e->off = (uint8_t)o;
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

static void cls_init(void)
{
    if (cls['a'])
        return;
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
        while (k > 0 && r->p[k - 1] == ' ')
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

/* Scalar: every word start (an alphanumeric byte after a non-alphanumeric one) from i on. */
static int scan_formats_scalar(const struct region *r, size_t i, bool prev_al, uint32_t off)
{
    for (; i < r->len; i++) {
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
    }
    return DLP_NONE;
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
 * 16 bytes at a time: the word starts whose first two bytes can begin a rule ('A' + upper
 * case, "gh", "gi", "gl", "xo", "BE", "ey", a digit 2-6 + digit/' '/'-'); only those reach
 * match_at(). Same result as the scalar loop, which finishes the last bytes.
 */
static int scan_formats(const struct dlp_ctx *x, const struct region *r)
{
    const unsigned char *p = r->p;
    uint32_t off = x->disabled;
    unsigned carry = r->start_b ? 0 : 1; /* was the byte before the block alphanumeric? */
    size_t i = 0;

    for (; i + 17 <= r->len; i += 16) {
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
            int hit = match_at(r, i + (size_t)__builtin_ctz(m), off);
            if (hit != DLP_NONE)
                return hit;
            m &= m - 1;
        }
    }
    return scan_formats_scalar(r, i, carry != 0, off);
}
#else
static int scan_formats(const struct dlp_ctx *x, const struct region *r)
{
    return scan_formats_scalar(r, 0, !r->start_b, x->disabled);
}
#endif

static int scan_region(const struct dlp_ctx *x, const struct region *r)
{
    int m;

    cls_init();
    if (scan_secrets(x, r->p, r->len))
        return DLP_CREDENTIAL;
    m = scan_formats(x, r);
    return m;
}

int dlp_scan_buf(const struct dlp_ctx *x, const void *p, size_t len)
{
    struct region r = { p, len, true, true };
    return scan_region(x, &r);
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

void dlp_stream_init(struct dlp_stream *s)
{
    s->total = 0;
    s->tail_len = 0;
    s->hit = DLP_NONE;
}

static void tail_push(struct dlp_stream *s, const unsigned char *p, size_t len)
{
    if (len >= DLP_TAIL) {
        memcpy(s->tail, p + len - DLP_TAIL, DLP_TAIL);
        s->tail_len = DLP_TAIL;
        return;
    }
    if (s->tail_len + len > DLP_TAIL) {
        size_t drop = s->tail_len + len - DLP_TAIL;
        memmove(s->tail, s->tail + drop, s->tail_len - drop);
        s->tail_len -= drop;
    }
    memcpy(s->tail + s->tail_len, p, len);
    s->tail_len += len;
}

int dlp_stream_feed(struct dlp_stream *s, const struct dlp_ctx *x, const void *pv, size_t len)
{
    const unsigned char *p = pv;
    unsigned char join[2 * DLP_TAIL];
    int m;

    if (s->hit != DLP_NONE || len == 0)
        return s->hit;
    cls_init();
    /* the junction: the stream's last bytes joined to the chunk's first ones */
    if (s->tail_len) {
        size_t take = MIN(len, (size_t)DLP_TAIL);
        struct region j = { join, s->tail_len + take, s->total <= DLP_TAIL, false };
        memcpy(join, s->tail, s->tail_len);
        memcpy(join + s->tail_len, p, take);
        m = scan_region(x, &j);
        if (m != DLP_NONE)
            return s->hit = m;
    }
    struct region r = { p, len, s->total == 0, false };
    m = scan_region(x, &r);
    if (m != DLP_NONE)
        return s->hit = m;
    tail_push(s, p, len);
    s->total += len;
    return DLP_NONE;
}

int dlp_stream_end(struct dlp_stream *s, const struct dlp_ctx *x)
{
    if (s->hit != DLP_NONE || s->tail_len == 0)
        return s->hit;
    struct region r = { s->tail, s->tail_len, s->total <= DLP_TAIL, true };
    s->hit = scan_region(x, &r);
    return s->hit;
}

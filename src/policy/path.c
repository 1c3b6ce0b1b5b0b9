/*
 * Request paths for method/path rules (policy.h, docs/policy.md "Method and path rules"): the
 * normaliser that makes a path mean one thing to us and to any origin, and the matcher.
 * A path that could mean two things (an encoded slash, a dot segment, "//") is refused rather
 * than guessed at: a refusal only costs a 403 on a host that has rules.
 */
#include "policy/policy.h"

#include <errno.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* "." or ".." once path parameters (";...", which some servers strip) are left out. */
static bool dot_segment(const char *s, size_t n)
{
    const char *semi = memchr(s, ';', n);
    if (semi)
        n = (size_t)(semi - s);
    return (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

int policy_path_normalise(const char *in, size_t len, char *out, size_t size,
                          const char **reterr_msg)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0, seg = 0;

    if (!in || len == 0 || in[0] != '/') {
        *reterr_msg = "the path does not start with '/'";
        return -EINVAL;
    }
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = i < len ? (unsigned char)in[i] : '\0';
        bool end = i == len || c == '?' || c == '#';

        if (end || c == '/') {
            /* a segment ends at out[seg..o) */
            if (o > 0) {
                if (dot_segment(out + seg, o - seg)) {
                    *reterr_msg = "the path has a dot segment ('.' or '..', maybe encoded)";
                    return -EINVAL;
                }
                if (o == seg && !end) {
                    *reterr_msg = "the path has an empty segment ('//')";
                    return -EINVAL;
                }
            }
            if (end)
                break;
            if (o + 1 >= size)
                goto too_long;
            out[o++] = '/';
            seg = o;
            continue;
        }
        if (c == '%') {
            int hi = i + 2 < len ? hexval(in[i + 1]) : -1;
            int lo = i + 2 < len ? hexval(in[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                *reterr_msg = "a bad percent-encoding in the path";
                return -EINVAL;
            }
            unsigned char v = (unsigned char)(hi * 16 + lo);
            i += 2;
            if (v == '/' || v == '\\' || v == '%' || v < 0x20 || v == 0x7f) {
                *reterr_msg = "the path has an encoded '/', '\\', '%' or control character";
                return -EINVAL;
            }
            if (unreserved(v)) {
                if (o + 1 >= size)
                    goto too_long;
                out[o++] = (char)v;
            } else {
                if (o + 3 >= size)
                    goto too_long;
                out[o++] = '%';
                out[o++] = hex[v >> 4];
                out[o++] = hex[v & 15];
            }
            continue;
        }
        if (c == '\\' || c < 0x20 || c == 0x7f || c == ' ') {
            *reterr_msg = "the path has a backslash, space or control character";
            return -EINVAL;
        }
        if (o + 1 >= size)
            goto too_long;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
too_long:
    *reterr_msg = "the path is too long";
    return -EINVAL;
}

/* Glob within one segment: '*' matches any run of bytes (never a '/': segments are split). */
static bool seg_match(const char *p, size_t pn, const char *s, size_t sn)
{
    size_t pi = 0, si = 0, star = (size_t)-1, mark = 0;

    while (si < sn) {
        if (pi < pn && p[pi] == '*') {
            star = pi++;
            mark = si;
        } else if (pi < pn && p[pi] == s[si]) {
            pi++;
            si++;
        } else if (star != (size_t)-1) {
            pi = star + 1;
            si = ++mark;
        } else {
            return false;
        }
    }
    while (pi < pn && p[pi] == '*')
        pi++;
    return pi == pn;
}

#define MAX_SEGS 128

struct seg {
    const char *p;
    size_t n;
};

/* Split "/a/b/" into "a", "b", "" (a path always has at least one segment). Returns the count,
 * or 0 when there are more than MAX_SEGS. */
static size_t split(const char *s, struct seg *segs)
{
    size_t n = 0;
    const char *p = s + 1;

    for (;;) {
        const char *slash = strchr(p, '/');
        if (n == MAX_SEGS)
            return 0;
        segs[n].p = p;
        segs[n].n = slash ? (size_t)(slash - p) : strlen(p);
        n++;
        if (!slash)
            return n;
        p = slash + 1;
    }
}

bool policy_path_match(const char *pattern, const char *path)
{
    struct seg ps[MAX_SEGS], ss[MAX_SEGS];
    size_t np, ns;
    bool dstar, prefix;

    if (pattern[0] != '/' || path[0] != '/')
        return false;
    np = split(pattern, ps);
    ns = split(path, ss);
    if (!np || !ns)
        return false;
    /* a last segment "**": the base and everything below it; "*": anything below it */
    dstar = ps[np - 1].n == 2 && memcmp(ps[np - 1].p, "**", 2) == 0;
    prefix = ps[np - 1].n == 1 && ps[np - 1].p[0] == '*';
    for (size_t i = 0; i < np; i++) {
        bool last = i == np - 1;
        if (last && dstar)
            return true;
        if (i >= ns)
            return false;
        if (last && prefix)
            return true;
        if (!seg_match(ps[i].p, ps[i].n, ss[i].p, ss[i].n))
            return false;
    }
    return np == ns;
}

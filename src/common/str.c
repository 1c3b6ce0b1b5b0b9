#include "common/str.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

bool slice_eq_nocase(struct slice a, struct slice b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++)
        if (ascii_tolower(a.p[i]) != ascii_tolower(b.p[i]))
            return false;
    return true;
}

struct slice slice_trim_ows(struct slice s)
{
    while (s.len && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    return s;
}

int str_to_u64(struct slice s, uint64_t max, uint64_t *ret)
{
    uint64_t v = 0;

    if (s.len == 0)
        return -EINVAL;
    for (size_t i = 0; i < s.len; i++) {
        unsigned d;
        if (!ascii_isdigit(s.p[i]))
            return -EINVAL;
        d = (unsigned)(s.p[i] - '0');
        if (d > max || v > (max - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *ret = v;
    return 0;
}

int str_to_u64_cstr(const char *s, uint64_t max, uint64_t *ret)
{
    return str_to_u64(slice_cstr(s), max, ret);
}

int str_to_port(struct slice s, uint16_t *ret)
{
    uint64_t v;
    int r = str_to_u64(s, 65535, &v);
    if (r < 0)
        return r;
    if (v == 0)
        return -ERANGE;
    *ret = (uint16_t)v;
    return 0;
}

int str_hex_to_u64(struct slice s, uint64_t max, uint64_t *ret)
{
    uint64_t v = 0;

    if (s.len == 0)
        return -EINVAL;
    for (size_t i = 0; i < s.len; i++) {
        char c = ascii_tolower(s.p[i]);
        unsigned d;
        if (ascii_isdigit(c))
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return -EINVAL;
        if (d > max || v > (max - d) / 16)
            return -ERANGE;
        v = v * 16 + d;
    }
    *ret = v;
    return 0;
}

int str_printf(char *dst, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(dst, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size)
        return -ENAMETOOLONG;
    return 0;
}

bool str_path_rel_clean(const char *p)
{
    for (const char *c = p;;) {
        const char *e = strchr(c, '/');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        if (!e)
            return true;
        c = e + 1;
    }
}

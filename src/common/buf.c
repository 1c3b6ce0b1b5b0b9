#include "common/buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

void buf_init(struct buf *b, size_t max)
{
    *b = BUF_INIT(max);
}

void buf_done(struct buf *b)
{
    if (b->p)
        free(b->p - b->off);
    b->p = NULL;
    b->len = b->cap = b->off = 0;
}

/* Move the contents (and NUL) back to the start of the allocation. */
static void buf_compact(struct buf *b)
{
    if (!b->p || b->off == 0)
        return;
    memmove(b->p - b->off, b->p, b->len + 1);
    b->p -= b->off;
    b->cap += b->off;
    b->off = 0;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->p) {
        b->p[0] = '\0';
        buf_compact(b);
    }
}

static int buf_reserve(struct buf *b, size_t add)
{
    size_t need, ncap;

    if (add > b->max || b->len > b->max - add) {
        buf_done(b);
        return -E2BIG;
    }
    need = b->len + add;
    if (need <= b->cap && b->p)
        return 0;
    buf_compact(b); /* no room after the contents: reuse the consumed prefix first */
    if (need <= b->cap && b->p)
        return 0;
    ncap = b->cap ? b->cap : 64;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    if (ncap > b->max)
        ncap = b->max;
    b->p = xrealloc(b->p, ncap + 1);
    b->cap = ncap;
    return 0;
}

int buf_append(struct buf *b, const void *p, size_t len)
{
    int r = buf_reserve(b, len);
    if (r < 0)
        return r;
    if (len)
        memcpy(b->p + b->len, p, len);
    b->len += len;
    b->p[b->len] = '\0';
    return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n, r;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -EINVAL;
    r = buf_reserve(b, (size_t)n);
    if (r < 0)
        return r;
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        buf_reset(b);
        return;
    }
    b->p += n;
    b->off += n;
    b->cap -= n;
    b->len -= n;
}

char *buf_take(struct buf *b)
{
    char *p;

    buf_compact(b);
    p = b->p ? b->p : xstrdup("");
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

/*
 * struct buf: a growable byte buffer with a hard cap (modelled on curl's dynbuf).
 * The bytes are always NUL-terminated (the terminator is not counted in len and
 * does not count against max). A failed append (cap exceeded) frees the contents
 * and returns -E2BIG, so a half-built value is never used by mistake.
 *
 * buf_consume() is O(1): it moves p forward over the consumed bytes (off counts them) instead of
 * moving the rest down. The unconsumed bytes go back to the front of the allocation only when
 * an append finds no room after them (or on buf_take()). So p..p+len is always the contents,
 * p - off is the allocation, and off + cap + 1 its size.
 */
#pragma once

#include <stdarg.h>
#include <stddef.h>

#include "common/macro.h"

struct buf {
    char *p;    /* the contents; NULL until the first append */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated from p on (excluding room for the NUL) */
    size_t max; /* hard cap on len */
    size_t off; /* consumed bytes before p in the allocation */
};

#define BUF_INIT(maxlen) ((struct buf){ .p = NULL, .len = 0, .cap = 0, .max = (maxlen), .off = 0 })

void buf_init(struct buf *b, size_t max);
/* Frees the contents; the buf is reusable (empty, same max). */
void buf_done(struct buf *b);
/* Empties without freeing. */
void buf_reset(struct buf *b);
int buf_append(struct buf *b, const void *p, size_t len);
int buf_append_str(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) _printf_(2, 3);
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) _printf_(2, 0);
/* Removes the first n bytes (O(1): no bytes move). */
void buf_consume(struct buf *b, size_t n);
/* Hands out the bytes (caller frees); never NULL (an empty string when nothing was appended). */
char *buf_take(struct buf *b);
/* A pointer to the contents, "" when empty. */
static inline const char *buf_str(const struct buf *b)
{
    return b->p ? b->p : "";
}

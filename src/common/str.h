/*
 * String helpers: non-owning slices and strict number parsing (no strtol/atoi anywhere).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A non-owning view of bytes; not NUL-terminated. */
struct slice {
    const char *p;
    size_t len;
};

#define SLICE_LIT(s) ((struct slice){ .p = (s), .len = sizeof(s) - 1 })
#define SLICE_NULL ((struct slice){ .p = NULL, .len = 0 })

static inline struct slice slice_make(const char *p, size_t len)
{
    return (struct slice){ .p = p, .len = len };
}

static inline struct slice slice_cstr(const char *s)
{
    return (struct slice){ .p = s, .len = s ? strlen(s) : 0 };
}

static inline bool slice_eq(struct slice a, struct slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* ASCII case-insensitive comparison (locale independent). */
bool slice_eq_nocase(struct slice a, struct slice b);
static inline bool slice_eq_nocase_cstr(struct slice a, const char *b)
{
    return slice_eq_nocase(a, slice_cstr(b));
}

/* Strip leading and trailing SP/HTAB. */
struct slice slice_trim_ows(struct slice s);

static inline char ascii_tolower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}
static inline bool ascii_isdigit(char c)
{
    return c >= '0' && c <= '9';
}
static inline bool ascii_isalpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static inline bool ascii_isalnum(char c)
{
    return ascii_isdigit(c) || ascii_isalpha(c);
}

/*
 * Parse a decimal unsigned integer that is exactly the whole slice: no sign, no spaces,
 * no leading '+', at least one digit, at most `max`. Leading zeros are accepted.
 * Returns 0, -EINVAL (not a number) or -ERANGE (> max). *ret written only on success.
 */
int str_to_u64(struct slice s, uint64_t max, uint64_t *ret);
/* Same for a NUL-terminated string. */
int str_to_u64_cstr(const char *s, uint64_t max, uint64_t *ret);
/* Parse a TCP/UDP port 1..65535. */
int str_to_port(struct slice s, uint16_t *ret);
/* Parse hex digits (whole slice), at most max. */
int str_hex_to_u64(struct slice s, uint64_t max, uint64_t *ret);

/* A relative path of one or more '/'-separated components, none empty, "." or "..": so no
 * leading, trailing or doubled '/'. ("a/b" yes; "", "/a", "a/", "a//b", "a/../b" no.) */
bool str_path_rel_clean(const char *p);

/* snprintf that reports truncation: returns 0 or -ENAMETOOLONG. */
int str_printf(char *dst, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

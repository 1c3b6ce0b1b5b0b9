/* Parses a command-line number for the bench load tools (bbload.c, origin.c, exec-loop.c): decimal
 * digits only, at most about 10^9. -EINVAL for anything else (empty, a sign, other characters). */
#pragma once

#include <errno.h>

static inline int parse_uint(const char *s, unsigned *ret)
{
    unsigned v = 0;

    if (!s || *s == '\0')
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 100000000u)
            return -EINVAL;
        v = v * 10 + (unsigned)(*s - '0');
    }
    *ret = v;
    return 0;
}

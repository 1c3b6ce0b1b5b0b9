/*
 * Scope-bound cleanup, modelled on systemd's cleanup-fundamental.h and bubblewrap's
 * steal_pointer(). Destructors used with these accept NULL / -1.
 */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static inline void freep(void *p)
{
    free(*(void **)p);
}

static inline void closep(const int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Define a cleanup helper "fnp" for pointers of "type" freed by "fn". */
/* A type cannot be parenthesised. NOLINTBEGIN(bugprone-macro-parentheses) */
#define DEFINE_CLEANUP(type, fn)                                                                   \
    static inline void fn##p(type **p)                                                             \
    {                                                                                              \
        if (*p)                                                                                    \
            fn(*p);                                                                                \
    }
/* NOLINTEND(bugprone-macro-parentheses) */

/* Move ownership out of a cleanup variable. */
#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        typeof(p) _tp = (p);                                                                       \
        (p) = NULL;                                                                                \
        _tp;                                                                                       \
    })
#define TAKE_FD(fd)                                                                                \
    ({                                                                                             \
        int _tf = (fd);                                                                            \
        (fd) = -1;                                                                                 \
        _tf;                                                                                       \
    })

/* Small macros used everywhere (host and guest). */
#pragma once

#include <stddef.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define _unused_ __attribute__((unused))
#define _noreturn_ __attribute__((noreturn))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Retry a syscall expression while it fails with EINTR. */
#define RETRY_EINTR(expr)                                                                          \
    ({                                                                                             \
        typeof(expr) _r;                                                                           \
        do {                                                                                       \
            _r = (expr);                                                                           \
        } while (_r < 0 && errno == EINTR);                                                        \
        _r;                                                                                        \
    })

#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static enum log_level level = LOG_LVL_INFO;
static const char *prefix = "bot-bottle";

void log_set_level(enum log_level lvl)
{
    level = lvl;
}

enum log_level log_get_level(void)
{
    return level;
}

void log_set_prefix(const char *p)
{
    prefix = p;
}

static _printf_(3, 0) void vlog(enum log_level lvl, int err, const char *fmt, va_list ap)
{
    static const char *const names[LOG_LVL_MAX] = { "error", "warning", "", "debug" };
    char line[2048];
    int n;

    if (lvl > level)
        return;
    n = vsnprintf(line, sizeof(line), fmt, ap);
    if (n < 0)
        return;
    /* One write per message so concurrent processes do not interleave mid-line. */
    if (err)
        fprintf(stderr, "%s: %s%s%s: %s\n", prefix, names[lvl], *names[lvl] ? ": " : "", line,
                strerror(err));
    else
        fprintf(stderr, "%s: %s%s%s\n", prefix, names[lvl], *names[lvl] ? ": " : "", line);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    va_list ap;
    int saved = errno;

    va_start(ap, fmt);
    vlog(lvl, 0, fmt, ap);
    va_end(ap);
    errno = saved;
}

int log_errno(enum log_level lvl, int err, const char *fmt, ...)
{
    va_list ap;
    int saved = errno;

    va_start(ap, fmt);
    vlog(lvl, err < 0 ? -err : err, fmt, ap);
    va_end(ap);
    errno = saved;
    return err < 0 ? err : -err;
}

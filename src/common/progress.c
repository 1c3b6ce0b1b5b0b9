/* Progress lines for long operations. See progress.h. */
#include "common/progress.h"

#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Keep one line: control bytes become spaces (a detail often is a program's output). */
static void sanitize(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = ' ';
}

uint64_t progress_elapsed_ms(const struct progress *p)
{
    return now_ms() - p->start_ms;
}

static void draw(struct progress *p)
{
    char line[512];
    int n;

    n = snprintf(line, sizeof(line), "bot-bottle: %s%s%s (%llu s)", p->what,
                 p->detail[0] ? ": " : "", p->detail,
                 (unsigned long long)(progress_elapsed_ms(p) / 1000));
    if (n < 0)
        return;
    if (p->tty) {
        /* Cut to the terminal's width so the line never wraps (\r would then redraw only
         * its last row). */
        int w = p->width > 1 ? p->width - 1 : 79;
        fprintf(p->f, "\r\033[K%.*s", w, line);
        p->drawn = true;
    } else {
        fprintf(p->f, "%s\n", line);
    }
    fflush(p->f);
    p->last_ms = now_ms();
}

_printf_(6, 0) static void begin(struct progress *p, FILE *f, bool tty, int width, bool quiet,
                                 const char *fmt, va_list ap)
{
    *p = (struct progress){ .f = f, .tty = tty, .quiet = quiet, .width = width > 0 ? width : 80 };
    vsnprintf(p->what, sizeof(p->what), fmt, ap);
    sanitize(p->what);
    p->start_ms = now_ms();
    if (!quiet)
        draw(p);
}

void progress_begin_to(struct progress *p, FILE *f, bool tty, int width, bool quiet,
                       const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    begin(p, f, tty, width, quiet, fmt, ap);
    va_end(ap);
}

void progress_begin(struct progress *p, bool quiet, const char *fmt, ...)
{
    struct winsize ws;
    bool tty = isatty(STDERR_FILENO) == 1;
    int width = 80;
    va_list ap;

    if (tty && ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        width = ws.ws_col;
    va_start(ap, fmt);
    begin(p, stderr, tty, width, quiet, fmt, ap);
    va_end(ap);
}

void progress_update(struct progress *p, const char *fmt, ...)
{
    char detail[sizeof(p->detail)];
    bool changed = false;
    uint64_t since;
    va_list ap;

    if (fmt) {
        va_start(ap, fmt);
        vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
        sanitize(detail);
        changed = strcmp(detail, p->detail) != 0;
        if (changed)
            memcpy(p->detail, detail, sizeof(detail));
    }
    if (p->quiet)
        return;
    since = now_ms() - p->last_ms;
    if (p->tty ? since >= PROGRESS_TTY_INTERVAL_MS || !p->drawn
               : (changed && p->detail[0]) || since >= PROGRESS_PLAIN_INTERVAL_MS)
        draw(p);
}

void progress_clear(struct progress *p)
{
    if (p->quiet || !p->tty || !p->drawn)
        return;
    fputs("\r\033[K", p->f);
    fflush(p->f);
    p->drawn = false;
}

void progress_end(struct progress *p, bool ok, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    (void)ok;
    if (p->quiet)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    progress_clear(p);
    fprintf(p->f, "bot-bottle: %s (%llu s)\n", msg,
            (unsigned long long)(progress_elapsed_ms(p) / 1000));
    fflush(p->f);
}

/*
 * Progress of something that takes more than a second (agent install; meant for the guest
 * kernel build and a microVM boot under TCG too), on stderr:
 *   - on a terminal: one line, redrawn in place ("bot-bottle: WHAT: DETAIL (12 s)"), at most
 *     a few times a second, replaced by the final line at the end;
 *   - otherwise: plain lines: the start, each new DETAIL (at most one line every
 *     PROGRESS_PLAIN_INTERVAL_MS unless the detail changed), and the end;
 *   - with quiet: nothing (errors are the caller's to print).
 *
 *   struct progress p;
 *   progress_begin(&p, quiet, "installing %s", name);
 *   while (...) progress_update(&p, "%s", last_line);   // or NULL: only the elapsed time
 *   progress_end(&p, ok, "installed %s %s", name, version);
 *
 * Never call log_* between begin and end on a terminal without progress_clear() first (the
 * line would be overwritten). Not thread-safe; one progress at a time.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/macro.h"

#define PROGRESS_PLAIN_INTERVAL_MS 15000
#define PROGRESS_TTY_INTERVAL_MS 200

struct progress {
    FILE *f;
    bool tty, quiet, drawn;
    char what[160];
    char detail[160];
    uint64_t start_ms, last_ms;
    int width; /* terminal columns (80 when unknown) */
};

void progress_begin(struct progress *p, bool quiet, const char *fmt, ...) _printf_(3, 4);
/* The same on f, a terminal of width columns when tty (tests; stderr is what users get). */
void progress_begin_to(struct progress *p, FILE *f, bool tty, int width, bool quiet,
                       const char *fmt, ...) _printf_(6, 7);
/* A new detail (fmt NULL: the same one); draws when due. */
void progress_update(struct progress *p, const char *fmt, ...) _printf_(2, 3);
/* Erases the line on a terminal (before other output); the next update draws it again. */
void progress_clear(struct progress *p);
/* The final line ("bot-bottle: MESSAGE (N s)"); on failure too, unless quiet. */
void progress_end(struct progress *p, bool ok, const char *fmt, ...) _printf_(3, 4);
/* Milliseconds since begin. */
uint64_t progress_elapsed_ms(const struct progress *p);

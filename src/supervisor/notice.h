/*
 * The blocked-host notices (docs/supervisor.md, step 6): the supervisor follows the bottle's
 * audit log, across the daemon's rotation (NAME.audit.log -> NAME.audit.log.1) and truncation,
 * and reports each denied host once on its stderr, never inside the command's output.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "audit/reader.h"
#include "common/loop.h"

#define NOTICE_MAX_HOSTS 256

struct notice {
    struct audit_follow f; /* the log, followed (audit/reader.h) */
    bool crlf;             /* the terminal is in raw mode (-t): end lines with \r\n */
    char *notified[NOTICE_MAX_HOSTS];
    size_t n_notified;
    struct loop *loop;
    struct loop_timer timer;
};

/*
 * Create the audit log (0600, never through a symlink: -ELOOP) if missing and open it for
 * following, from its current end. Returns 0 or -errno; the caller logs.
 */
int notice_open(struct notice *n, const char *audit_path);
/* Poll the log every 200 ms on loop. */
void notice_start(struct notice *n, struct loop *loop);
/* Read what is new and report the new denied hosts now. */
void notice_poll(struct notice *n);
/* Stop polling and free. Accepts a never-opened one (zeroed, f.fd -1). */
void notice_done(struct notice *n);

/*
 * The blocked-host notices (docs/supervisor.md, step 6): the supervisor follows the bottle's
 * audit log, across the daemon's rotation (NAME.audit.log -> NAME.audit.log.1) and truncation,
 * and reports each denied host, and each allowlisted host that failed (no-address,
 * resolve-timeout, connect-refused, ...), once per host and reason on its stderr, never
 * inside the command's output, with the option that fixes it. With -t the lines are held
 * while the program has the terminal and printed when it exits (notice_finish), so none is
 * drawn over a full-screen program. `bot-bottle help notices` explains each line.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "audit/reader.h"
#include "common/buf.h"
#include "config/config.h"
#include "common/loop.h"

#define NOTICE_MAX_HOSTS 256
#define NOTICE_HELD_MAX (64 * 1024)

struct notice {
    struct audit_follow f; /* the log, followed (audit/reader.h) */
    const char *bottle;    /* the bottle's name, for the closing line */
    bool hold;  /* -t: keep the lines until notice_finish (the program has the terminal) */
    bool quiet; /* --quiet: no lines at all (the audit log still has everything) */
    const struct strv *left_out; /* "HOST WHY" (supervisor.h); may be NULL */
    struct buf held;
    char *notified[NOTICE_MAX_HOSTS]; /* "reason host" already said */
    size_t n_notified;
    size_t n_events; /* distinct hosts and reasons blocked or failed */
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
/*
 * After the program gave the terminal back: print the held lines, then, when anything was
 * blocked or failed, the bottle's name and where the full log is.
 */
void notice_finish(struct notice *n);
/* Stop polling and free. Accepts a never-opened one (zeroed, f.fd -1). */
void notice_done(struct notice *n);

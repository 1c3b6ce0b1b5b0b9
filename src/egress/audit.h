/*
 * The audit log: one JSON line per egress decision (DESIGN.md section 3), written with a
 * single write(2) to a file opened O_APPEND so lines from concurrent writers never interleave.
 *
 * {"ts":"2026-11-28T12:00:00.123Z","bottle":"b1","kind":"connect","host":"x","port":443,
 *  "decision":"allow","reason":"allowlisted","bytes_up":0,"bytes_down":0}
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "policy/policy.h"

enum audit_kind { AUDIT_CONNECT, AUDIT_HTTP, AUDIT_DNS, AUDIT_KIND_MAX };

struct audit_event {
    enum audit_kind kind;
    const char *host; /* as normalised, or the raw text (escaped) when it failed to parse */
    uint16_t port;    /* 0: not applicable (DNS) */
    bool allow;
    const char *reason; /* verdict_reason() for denials; "allowlisted" or similar for allows;
                         * also upstream outcomes ("upstream-connect-failed") */
    uint64_t bytes_up;  /* client -> upstream payload bytes (allowed connections, at close) */
    uint64_t bytes_down;
    const char *method; /* HTTP method (AUDIT_HTTP), NULL otherwise */
    const char *qtype;  /* DNS query type name (AUDIT_DNS), NULL otherwise */
    int status;         /* HTTP status sent to the client, 0 when none */
    uint32_t count;     /* >1: an aggregate record standing for this many decisions */
};

struct audit;

/*
 * Open the audit sink. path: a file (created 0600, appended), "-" for stdout, NULL for none
 * (events are dropped). bottle: name recorded in every line (copied).
 * Returns 0 and *ret, or -errno.
 */
int audit_open(const char *path, const char *bottle, struct audit **ret);
struct audit *audit_close(struct audit *a);
/* Reopen the file (after logrotate, on SIGHUP). */
int audit_reopen(struct audit *a);

/* Write one record. Failures are counted, never fatal (see audit_write_errors()). */
void audit_emit(struct audit *a, const struct audit_event *ev);
uint64_t audit_write_errors(const struct audit *a);

/* Clock used for "ts" (wall clock by default; tests pin it). Returns ns since the epoch. */
void audit_set_clock(struct audit *a, uint64_t (*fn)(void));

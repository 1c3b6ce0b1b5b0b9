/*
 * The audit log's reader (docs/cli.md, "logs"): one line parsed into a record with bounded
 * fields, filters, following a log across the daemon's rotation (NAME.audit.log ->
 * NAME.audit.log.1) and truncation, and the hash chain's verifier (audit.h). Used by
 * `bot-bottle logs` and `ls` and by the supervisor's blocked-host notices (supervisor/notice.c).
 *
 * Library code: returns -errno, never logs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/sha256.h"

#define AUDIT_LINE_MAX (64 * 1024) /* a longer line is skipped (never written by audit.c) */

/* One record. Strings are NUL-terminated and cut to their buffer (host: 253 is a DNS name's
 * limit; a longer, hostile raw name is cut and `host_cut` set). */
struct audit_record {
    char ts[32];
    char bottle[64 + 1];
    char kind[16];
    char host[256];
    bool host_cut;
    uint16_t port;
    char decision[8]; /* "allow", "deny" */
    char reason[128];
    uint64_t bytes_up, bytes_down;
    char method[24];
    char qtype[16];
    char addr[64];  /* the resolved address connected to or refused for ("" when absent) */
    char path[257]; /* plain HTTP: the request path, as the daemon bounded it */
    int status;
    uint32_t count; /* 0: one decision; else a summary of this many */
    bool has_prev;
    char prev[SHA256_HEX_LEN + 1];
    bool has_nonce;
    char nonce[SHA256_HEX_LEN + 1];
    bool rotated;
};

/*
 * Parse one line (without its newline; at most AUDIT_LINE_MAX bytes): a JSON object with at
 * least "ts", "kind" and "decision" as strings; known keys must have their type (unknown keys
 * are ignored). Returns 0 and *ret, or -EBADMSG.
 */
int audit_record_parse(const char *line, size_t len, struct audit_record *ret);

/* How many decisions a record stands for (count, or 1). */
uint64_t audit_record_weight(const struct audit_record *r);
/* An egress decision (connect, http, dns), not a policy change or the closing record. */
bool audit_record_is_decision(const struct audit_record *r);

/* A filter on records: each field NULL (any) or the value it must have. decisions_only: only
 * egress decisions (audit_record_is_decision). */
struct audit_filter {
    const char *kind;     /* "connect", "http", "dns", "policy", "end" */
    const char *decision; /* "allow", "deny" */
    bool decisions_only;
};
bool audit_record_match(const struct audit_record *r, const struct audit_filter *f);

/* Following a log. */
struct audit_follow {
    char path[1024];
    int fd; /* -1: not open (yet) */
    struct buf tail;
};

typedef void (*audit_line_fn)(void *userdata, const char *line, size_t len);

/*
 * Open path for following. from_start: read the rotated PATH.1 first (when it exists), then
 * PATH, from their starts; else start at PATH's current end. Never through a symlink. A
 * missing PATH is not an error (-ENOENT only when from_start finds neither file).
 */
int audit_follow_open(struct audit_follow *f, const char *path, bool from_start);
/*
 * Read what is new and call fn for each complete line. When PATH names another file than the
 * one read (the daemon rotated it), the old one is read to its end first and PATH reopened; a
 * file that shrank (truncated) is read again from its start. Returns 0 or -errno.
 */
int audit_follow_poll(struct audit_follow *f, audit_line_fn fn, void *userdata);
/* Bytes of an incomplete last line (no newline yet). */
size_t audit_follow_pending(const struct audit_follow *f);
void audit_follow_close(struct audit_follow *f);

/* The verifier of the hash chain, fed line by line in order (PATH.1, then PATH). */
struct audit_verify {
    uint64_t lines;    /* lines seen */
    uint64_t bad_line; /* 0: none yet; else the first bad line (1-based, over both files) */
    char why[160];
    bool have_prev;
    char prev[SHA256_HEX_LEN + 1]; /* hash of the last line */
    bool starts_rotated;           /* the first record continues a file that was rotated away */
    bool last_is_end;              /* the last record is the daemon's closing record */
};

void audit_verify_init(struct audit_verify *v);
/* Check one line (without its newline). Returns 0, or -EBADMSG once a line is bad (later
 * lines are not checked). */
int audit_verify_line(struct audit_verify *v, const char *line, size_t len);

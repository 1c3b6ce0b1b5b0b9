/*
 * The audit log: one JSON line per egress decision (DESIGN.md section 3), written with a
 * single write(2) to a file opened O_APPEND so lines from concurrent writers never interleave.
 *
 * {"ts":"2026-11-28T12:00:00.123Z","bottle":"b1","kind":"connect","host":"x","port":443,
 *  "decision":"allow","reason":"allowlisted","bytes_up":0,"bytes_down":0,"prev":"<64 hex>"}
 *
 * Hash chain (docs/cli.md, "The audit hash chain"): every record ends with "prev", the SHA-256
 * of the previous record's bytes (its newline included). The first record of a chain (a new
 * file, or one whose last line could not be read) carries "nonce" (64 random hex digits) and
 * prev = nonce; the first record of the file a rotation starts carries "rotated":true and
 * continues the chain of NAME.audit.log.1. audit_seal() writes an "end" record. The reader
 * (audit/reader.h) verifies it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* connect/http/dns: egress decisions. policy: a run-time policy change (host = the pattern,
 * decision allow/deny, reason why). end: the daemon closed the log (audit_seal). */
enum audit_kind { AUDIT_CONNECT, AUDIT_HTTP, AUDIT_DNS, AUDIT_POLICY, AUDIT_END, AUDIT_KIND_MAX };

/* Name of a kind ("connect", ...), "?" when out of range. */
const char *audit_kind_name(enum audit_kind k);

struct audit_event {
    enum audit_kind kind;
    const char *host; /* as normalised, or the raw text (escaped) when it failed to parse */
    uint16_t port;    /* 0: not applicable (DNS) */
    bool allow;
    bool held;          /* not decided yet: held, waiting for an allow ("decision":"hold") */
    const char *reason; /* verdict_reason() for denials; "allowlisted" or similar for allows;
                         * also upstream outcomes ("upstream-connect-failed") */
    uint64_t bytes_up;  /* client -> upstream payload bytes (allowed connections, at close) */
    uint64_t bytes_down;
    const char *method; /* HTTP method (AUDIT_HTTP), NULL otherwise */
    const char *path;   /* plain HTTP: the request path without its query (bounded, "path"),
                         * NULL otherwise; not part of the aggregation key */
    const char *addr;   /* the resolved address it was connected to or refused for ("addr"),
                         * NULL when none; not part of the aggregation key */
    const char *qtype;  /* DNS query type name (AUDIT_DNS), NULL otherwise */
    int status;         /* HTTP status sent to the client, 0 when none */
    bool reused;        /* the exchange rode an idle upstream connection (pooled or kept):
                         * written as "reused":true; not part of the aggregation key */
    uint32_t count;     /* > 0: a summary record standing for this many decisions (written as
                         * "count"); 0: one decision */
};

struct audit;
struct loop;

/* Defaults (docs/proxy.md "Audit records"). */
#define AUDIT_DEFAULT_MAX_SIZE (4ull * 1024 * 1024) /* bytes per file; one rotated file kept */
#define AUDIT_AGG_WINDOW_MS 1000                    /* repeats are summarised per window */
#define AUDIT_AGG_MAX 4096                          /* distinct decisions tracked per window */

/*
 * Open the audit sink. path: a file (created 0600, appended, never through a symlink), "-" for
 * stdout, NULL for none (events are dropped). bottle: name recorded in every line (copied).
 * Returns 0 and *ret, or -errno (-ELOOP: path is a symlink).
 */
int audit_open(const char *path, const char *bottle, struct audit **ret);
/* Writes the pending summaries, then frees. Accepts NULL; returns NULL. */
struct audit *audit_close(struct audit *a);
/* Reopen the file (after logrotate, on SIGHUP). */
int audit_reopen(struct audit *a);

/*
 * Size cap of the file (0: none; default AUDIT_DEFAULT_MAX_SIZE). A record that would take the
 * file past it first renames PATH to PATH.1 (replacing the previous PATH.1) and starts a new
 * PATH, so a bottle's log never takes more than about twice the cap.
 */
void audit_set_max_size(struct audit *a, uint64_t max);

/*
 * Let the sink use l's clock for the aggregation windows and a timer on l to write the
 * summaries when a window ends. NULL: write the pending summaries and detach (do this before
 * the loop is freed). Without a loop, windows use the audit clock and close on the next record.
 */
void audit_attach_loop(struct audit *a, struct loop *l);

/*
 * Write one record at once (allowed exchanges with byte counts, closing records). Returns 0, or
 * -errno when it could not be written. A failed write puts the sink in the failed state (said
 * once on stderr) until a later write succeeds; see audit_failed().
 */
int audit_emit(struct audit *a, const struct audit_event *ev);

/* The record's JSON (audit_emit writes it itself; exposed for tests/unit/test-audit.c, which
 * compares it with jansson's): whether s is UTF-8 as jansson's json_string() takes it, and s
 * appended to b as jansson's JSON_ENSURE_ASCII dump writes it (-EILSEQ when not valid). */
struct buf;
bool audit_json_valid(const char *s);
int audit_json_str(struct buf *b, const char *s);

/*
 * Record a decision that may repeat (denials, DNS decisions): the first of each distinct
 * (kind, host, port, decision, reason, method, qtype, status) in a window is written at once;
 * repeats are counted and written as one record with "count" when the window ends. When
 * AUDIT_AGG_MAX distinct decisions are already tracked, a new allowed one is written on its own
 * (a name that leaves the machine is never hidden) and a new denied one is counted in a
 * `"host":"*","reason":"aggregated"` record. While the sink is failed every decision is
 * written on its own (each try may find the disk writable again).
 * Returns 0 when recorded (written, or counted after a written first), -errno when not: the
 * caller must then refuse the egress it was about to allow.
 */
int audit_note(struct audit *a, const struct audit_event *ev);

/* True while the last write failed: new egress must be refused (fail closed). A sink with no
 * file (path NULL) never fails. */
bool audit_failed(const struct audit *a);
uint64_t audit_write_errors(const struct audit *a);

/*
 * Write the closing record (kind "end", reason "closed") after the pending summaries: a log
 * whose last record is not one was cut, or its daemon was killed. Returns 0 or -errno.
 */
int audit_seal(struct audit *a);

/* Clock used for "ts" (wall clock by default; tests pin it). Returns ns since the epoch. */
void audit_set_clock(struct audit *a, uint64_t (*fn)(void));

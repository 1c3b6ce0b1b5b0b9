/*
 * Data-loss checks on what leaves a bottle (docs/dlp.md): a scanner over request URLs, heads
 * and bodies, and a check of host names, for
 *   - configured credentials' real values (raw, base64 at all three alignments, base64url, hex,
 *     percent-encoded) going anywhere but their own host ("credential"),
 *   - well-known secret formats: AWS access key ids ("aws-key"), GitHub tokens
 *     ("github-token"), GitLab tokens ("gitlab-token"), Slack tokens ("slack-token"), private
 *     key blocks ("private-key"), JWTs ("jwt"), card numbers with a Luhn check ("card"),
 *   - long random-looking labels in host names, the shape of DNS exfiltration ("dns-entropy").
 * Every rule has a name and can be turned off by it (a mask of DLP_BIT(rule)).
 *
 * Streaming with bounded state: a struct dlp_stream scans each chunk where it lies and keeps
 * only what a match across the junction with the next chunk needs (the longest needle's
 * length, the few rule starts near the end that need more bytes to decide, DLP_LOOKBACK bytes
 * before them), so a match is found however the stream is cut (every rule's match is at most
 * DLP_MAX_MATCH bytes long). A match is decided once DLP_TAIL bytes follow its start. Nothing
 * else is buffered.
 *
 * Pure functions over bytes, no I/O, no allocation while scanning.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dlp_rule {
    DLP_CREDENTIAL,
    DLP_AWS_KEY,
    DLP_GITHUB_TOKEN,
    DLP_GITLAB_TOKEN,
    DLP_SLACK_TOKEN,
    DLP_PRIVATE_KEY,
    DLP_JWT,
    DLP_CARD,
    DLP_DNS_ENTROPY,
    DLP_RULE_MAX
};
#define DLP_NONE (-1)
#define DLP_BIT(r) (1u << (r))
#define DLP_ALL_RULES ((1u << DLP_RULE_MAX) - 1)

/* The longest match any rule needs to see whole (with one byte of context each side). */
#define DLP_MAX_MATCH 640
#define DLP_TAIL DLP_MAX_MATCH
/* The most bytes before a match's start a rule looks at (a word start, "-----" before BEGIN,
 * the '[' or '":' before a number). */
#define DLP_LOOKBACK 16
#define DLP_CARRY (DLP_MAX_MATCH + DLP_LOOKBACK)
#define DLP_MAX_PENDING (DLP_MAX_MATCH / 2 + 2) /* word starts are at least 2 bytes apart */
/* A credential longer than this is looked for by its first DLP_SECRET_PREFIX bytes. */
#define DLP_SECRET_PREFIX 128
#define DLP_SECRET_MIN 8 /* shorter values are refused by dlp_add_secret (-EINVAL) */
#define DLP_MAX_SECRETS 64
#define DLP_MAX_SECRET_HOSTS 16 /* hosts one value may belong to */

/* "credential", "aws-key", ...; NULL past the end. */
const char *dlp_rule_name(int rule);
/* "dlp:credential", ... (the X-Bottle-Block value and the audit reason). */
const char *dlp_rule_reason(int rule);
/* The rule named name[0..len), or DLP_NONE. */
int dlp_rule_by_name(const char *name, size_t len);
/* Parse a list of rule names separated by ',' and/or spaces ("jwt,card"; "all" is every rule)
 * and OR their bits into *mask. Returns 0, or -EINVAL with *reterr_msg naming the problem. */
int dlp_parse_disable(const char *s, size_t len, uint32_t *mask, const char **reterr_msg);

/* The registered credentials (the real values, held only in the daemon's memory). */
struct dlp;
struct dlp *dlp_new(void);
/* Overwrites the needles before freeing them. */
struct dlp *dlp_free(struct dlp *d);
/*
 * Register a credential's real value and the host (normalised name) and port (0: any) it
 * belongs to. The scanner then reports DLP_CREDENTIAL when the value or an encoding of it goes
 * to any other host. Registering the same value again adds a host it belongs to (it may go to
 * any of them). Returns 0, -EINVAL (value shorter than DLP_SECRET_MIN, no host) or -ENOSPC
 * past DLP_MAX_SECRETS values or DLP_MAX_SECRET_HOSTS hosts for one value.
 */
int dlp_add_secret(struct dlp *d, const char *host, uint16_t port, const void *value, size_t len);
size_t dlp_n_secrets(const struct dlp *d);

/* What a scan is about: the credentials (may be NULL), the rules turned off, the destination. */
struct dlp_ctx {
    const struct dlp *d;
    uint32_t disabled; /* DLP_BIT(rule) set: rule off */
    const char *host;  /* normalised destination host (credential exemption) */
    uint16_t port;
};

/* Scan a complete buffer (a URL, a request head). Returns the first rule that fires, or
 * DLP_NONE. */
int dlp_scan_buf(const struct dlp_ctx *x, const void *p, size_t len);

/* Check a host name (CONNECT target, Host, DNS question) for random-looking labels. Returns
 * DLP_DNS_ENTROPY or DLP_NONE. */
int dlp_check_host(const struct dlp_ctx *x, const char *name, size_t len);

/* For an audit record of a dns-entropy refusal: how many leading bytes of name (through the
 * last label with a random-looking run) to replace by "(redacted)", 0 when none. */
size_t dlp_host_redact_len(const char *name, size_t len);

struct dlp_stream {
    uint64_t total;   /* bytes fed so far */
    size_t carry_len; /* the last carry_len bytes fed, <= DLP_CARRY */
    unsigned char carry[DLP_CARRY];
    size_t n_pend;                  /* rule starts not decided yet (stream positions) */
    uint64_t pend[DLP_MAX_PENDING]; /* ascending, within DLP_MAX_MATCH of the end */
    int hit;                        /* first rule that fired, DLP_NONE */
};

void dlp_stream_init(struct dlp_stream *s);
/* Feed the next len bytes of the stream. Returns the rule that fired (also kept in s->hit; a
 * stream that fired keeps returning it) or DLP_NONE. */
int dlp_stream_feed(struct dlp_stream *s, const struct dlp_ctx *x, const void *p, size_t len);
/* The stream ended (a match may end at the very end). Returns a rule or DLP_NONE. */
int dlp_stream_end(struct dlp_stream *s, const struct dlp_ctx *x);

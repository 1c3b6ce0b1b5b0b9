/*
 * The configuration file (INI, parsed with libinih) and the validated settings it yields.
 *
 * Where the files come from (DESIGN.md section 3, docs/config.md): `-c FILE` (repeatable),
 * else $XDG_CONFIG_HOME/bot-bottle/config.ini (~/.config/... when XDG_CONFIG_HOME is unset)
 * if present, plus the project's ./bottle.ini if present, which is used only once the user
 * approved its exact content (config/trust.h; the CLI does that part, src/cli/args.c).
 * Command-line options win: scalar options replace the file's value, list options (--allow,
 * --allow-cidr, --env) add to the file's lists.
 *
 *   [bottle]  backend = NAME   cpus = N   memory = SIZE (K/M/G suffix)   name = N
 *             allow_write = PATH (repeatable; a protected workspace path to leave writable)
 *   [egress]  allow = PATTERN (repeatable)   allow_cidr = CIDR (repeatable)
 *             upstream_dns = ADDR[:PORT]   listen = ADDR:PORT   dns = ADDR:PORT   audit = FILE
 *             hold_blocked = SECONDS (hold a not-allowlisted request for a live `allow`)
 *             inspect = HOST[:PORT] (repeatable; TLS interception, docs/credentials.md)
 *   [tls]     extra_ca = FILE (PEM; trusted for origins, and inside bottles)
 *   [env]     pass = NAME[=VALUE] (repeatable)
 *   [dlp]     disable = RULE[,RULE...] (repeatable; DLP rules to turn off, docs/dlp.md)
 *   [agent "NAME"]  command = PROGRAM   allow = PATTERN (repeatable)   env = NAME[=VALUE]
 *             (repeatable)   state = DIR (relative to $HOME)   state_env = NAME
 *             package = NPM-PACKAGE   (a user agent profile; src/agent, docs/agents.md)
 *   [credential "NAME"]  host = HOST   port = N   header = FIELD   value = SOURCE   env = VAR
 *             (only in files that need no approval: a bottle must not be able to name a
 *             command the host runs or a file it reads; the CLI enforces that)
 *   [microvm] accel = auto|kvm|tcg   kernel = /path/to/vmlinux (not from a project's bottle.ini)
 *
 * Every value is validated at load time (patterns and CIDRs with the policy parser), so an
 * error always names file:line. Unknown sections and keys are errors, not warnings: a typo
 * in a security setting must not be silently ignored.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/net.h"
#include "policy/policy.h"

struct strv {
    char **v; /* NULL-terminated when n > 0 */
    size_t n;
};

void strv_push(struct strv *s, const char *str); /* copies */
void strv_done(struct strv *s);

/* An [agent "NAME"] section: what a user profile sets (src/agent merges it over a built-in
 * profile of the same name). Unset scalars are NULL. */
struct bb_config_agent {
    char *name;
    char *command;     /* a program name looked up on the bottle's PATH, or absolute */
    struct strv allow; /* host patterns (validated like [egress] allow) */
    struct strv env;   /* NAME (passed when set on the host) or NAME=VALUE */
    char *state;       /* relative path under $HOME where the state directory is mounted */
    char *state_env;   /* a variable set to the state directory's path inside the bottle */
    char *package;     /* npm package for `bot-bottle agent install` */
    char file[256];    /* where the section is, for messages about it */
    unsigned line;
};

#define BB_MAX_CONFIG_AGENTS 32
#define BB_MAX_AGENT_NAME 32
/* [credential "NAME"] (docs/credentials.md): a secret the proxy puts into requests to one host;
 * the bottle only ever holds a placeholder. */
struct bb_credential {
    char *name;    /* [a-z0-9_-]{1,32} */
    char *host;    /* a host name, normalised (lower case), no wildcard */
    uint16_t port; /* 443 unless set */
    char *header;  /* the request header the value goes into, e.g. x-api-key */
    char *value;   /* where the value comes from: env:NAME, file:/PATH or command:CMD */
    char *env;     /* the bottle's variable that holds the placeholder (default: VAR of an
                    * env:VAR value, else BB_CRED_<NAME>) */
    unsigned line; /* the section's line (0: the command line) */
};

#define BB_MAX_CREDENTIALS 64
#define HOLD_BLOCKED_MAX_S 3600 /* the longest hold_blocked / --hold-blocked */

struct bb_config {
    /* [bottle] */
    char *backend;   /* NULL: not set */
    unsigned cpus;   /* 0: not set */
    uint64_t memory; /* bytes, 0: not set */
    char *name;
    struct strv allow_write; /* relative, canonical (docs/workspace.md) */
    /* [egress] */
    struct strv allow;
    struct strv allow_cidr;
    char *upstream_dns; /* validated "ADDR[:PORT]" (numeric), NULL: host resolver */
    char *listen;       /* validated "ADDR:PORT" */
    char *dns;          /* validated "ADDR:PORT" */
    char *audit;        /* path */
    bool have_hold_blocked;
    unsigned hold_blocked; /* seconds a not-allowlisted request is held (0: refused at once) */
    struct strv inspect;   /* "host[:port]" (port 443 by default): TLS-intercepted hosts */
    /* [tls] */
    char *tls_extra_ca; /* a PEM file of CA certificates also trusted upstream and in bottles */
    /* [env] */
    struct strv env_pass;
    /* [dlp] */
    struct strv dlp_disable; /* validated lists of rule names */
    /* [agent "NAME"]: a later file's section of the same name replaces an earlier one */
    struct bb_config_agent *agents;
    size_t n_agents;
    /* [credential "NAME"] */
    struct bb_credential *creds;
    size_t n_creds;
    /* [microvm] */
    char *accel;  /* "auto", "kvm" or "tcg"; NULL: not set */
    char *kernel; /* absolute path of a vmlinux; NULL: the cache's */
    /* "on" or "off" (start-up snapshots under TCG, backend/microvm/snapshot.h); NULL: on */
    char *snapshot;
};

/* The [agent "NAME"] section of cfg named name, or NULL. */
const struct bb_config_agent *config_find_agent(const struct bb_config *cfg, const char *name);
/* An agent profile name: 1-32 of [a-z0-9_-], starting with a letter or digit. */
bool config_agent_name_valid(const char *name);

/* Validate and append a credential to cfg (copies the strings; port 0: 443; env NULL: the
 * variable of an env: source, else BB_CRED_<NAME>). Returns 0 or -EINVAL with *reterr_msg (static).
 * Used for --credential; the file parser applies the same rules. */
int config_add_credential(struct bb_config *cfg, const char *name, const char *host, uint16_t port,
                          const char *header, const char *value, const char *env,
                          const char **reterr_msg);
/* Move src's credentials into dst; one of the same name is replaced (the later one wins). */
void config_merge_credentials(struct bb_config *dst, struct bb_config *src);
/* Parse --credential NAME:HOST[:PORT]:HEADER:SOURCE into cfg. Returns 0 or -EINVAL (*reterr_msg).
 */
int config_parse_credential_arg(struct bb_config *cfg, const char *arg, const char **reterr_msg);

struct config_error {
    char path[512];
    unsigned line; /* 0: not about a line (e.g. cannot open) */
    char msg[256];
};

/*
 * Parse the INI file at path into cfg (adding to what is already there). Returns 0, or
 * -errno / -EINVAL with *reterr filled ("file:line: what is wrong"). Lines longer than
 * BB_MAX_CONFIG_LINE and files larger than BB_MAX_CONFIG_FILE are refused, never split.
 */
/* Added: format e as "FILE:LINE: message" (or "FILE: message" when line is 0) into buf;
 * returns buf. */
const char *config_error_str(const struct config_error *e, char *buf, size_t size);

int config_load(const char *path, struct bb_config *cfg, struct config_error *reterr);
/*
 * Read a config file's bytes (what config_load parses; callers that hash the content parse
 * exactly the bytes they hashed with config_load_string). nofollow: refuse a symlink as the
 * final component. Returns 0 and *ret_data (malloc'd, NUL-terminated) / *ret_len, or -errno
 * with *reterr filled.
 */
int config_read(const char *path, bool nofollow, char **ret_data, size_t *ret_len,
                struct config_error *reterr);
/* All of fd, at most max bytes (-EFBIG past them), into *ret_data (malloc'd, NUL-terminated)
 * and *ret_len. Returns 0 or -errno; the outputs are written only on success. */
int config_read_fd(int fd, size_t max, char **ret_data, size_t *ret_len);
/* Same, from a memory buffer (used by the fuzzer and unit tests); `name` is used in errors. */
int config_load_string(const char *name, const char *text, size_t len, struct bb_config *cfg,
                       struct config_error *reterr);

/* The project file looked for in the current directory (only used once trusted). */
#define CONFIG_PROJECT_FILE "bottle.ini"

/*
 * The user's config file ($XDG_CONFIG_HOME/bot-bottle/config.ini, or under ~/.config), or
 * NULL when none exists. The project file is not looked for here.
 * Returns 0 and *ret_path (malloc'd or NULL), or -errno.
 */
int config_default_path(char **ret_path);

void config_done(struct bb_config *cfg);

/* Parse a size like "512M", "2G", "1048576" (K/M/G/T, binary multiples). */
int config_parse_size(const char *s, uint64_t *ret);

/*
 * Build the policy from cfg's allow and allow_cidr lists (and the DLP rules turned off). Returns 0
 * and *ret, or -EINVAL with *reterr_msg pointing at a static description and *reterr_item at the
 * offending entry.
 */
int config_build_policy(const struct bb_config *cfg, struct policy **ret, const char **reterr_msg,
                        const char **reterr_item);

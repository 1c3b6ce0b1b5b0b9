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
 *   [env]     pass = NAME[=VALUE] (repeatable)
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
    /* [env] */
    struct strv env_pass;
    /* [microvm] */
    char *accel;  /* "auto", "kvm" or "tcg"; NULL: not set */
    char *kernel; /* absolute path of a vmlinux; NULL: the cache's */
};

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
 * Build the policy from cfg's allow and allow_cidr lists. Returns 0 and *ret, or -EINVAL with
 * *reterr_msg pointing at a static description and *reterr_item at the offending entry.
 */
int config_build_policy(const struct bb_config *cfg, struct policy **ret, const char **reterr_msg,
                        const char **reterr_item);

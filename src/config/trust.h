/*
 * Trusted config files (direnv-style approval; docs/config.md "Trust").
 *
 * A config file a bottle could have written (the project's ./bottle.ini, or any file inside
 * the workspace or a read-write mount) is used only once the user approved its exact content
 * with `bot-bottle trust FILE`. An approval is one file in the store,
 * $XDG_CONFIG_HOME/bot-bottle/trusted/ (~/.config/... when XDG_CONFIG_HOME is unset), named
 * after the SHA-256 of the file's canonical path and holding:
 *
 *   bot-bottle-trust 1\n
 *   path /canonical/path/bottle.ini\n
 *   sha256 <64 hex>\n
 *   \n
 *   <the approved content, verbatim>
 *
 * The copy of the content lets a refusal say what changed. Like the rest of src/config, this
 * never logs; errors come back as -errno.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"

#define TRUST_HEX_LEN 64

/* SHA-256 of data as 64 lowercase hex digits plus NUL. Returns 0 or -EIO (libcrypto). */
int trust_sha256_hex(const void *data, size_t len, char ret_hex[TRUST_HEX_LEN + 1]);
/* Whether s is 64 lowercase hex digits. */
bool trust_hex_valid(const char *s);

/* The store directory (need not exist): 0 and *ret (malloc'd), or -ENOENT when neither
 * XDG_CONFIG_HOME nor HOME is an absolute path. */
int trust_store_dir(char **ret);

/*
 * Canonical form of a path that may not exist yet: realpath() of its longest existing prefix
 * with the remaining components appended (no "." or ".." allowed among those). Returns 0 and
 * *ret (malloc'd), or -errno.
 */
int trust_canonicalize(const char *path, char **ret);

/* Whether canonical path p is root or below it (both canonical, absolute). */
bool trust_path_within(const char *p, const char *root);

/*
 * The approval of canonical path `path` in store `store`: 0 with ret_hex filled and, when
 * ret_content is not NULL, *ret_content and *ret_len the approved copy (malloc'd); -ENOENT when
 * there is none; -EBADMSG for a damaged entry; other -errno.
 */
int trust_lookup(const char *store, const char *path, char ret_hex[TRUST_HEX_LEN + 1],
                 char **ret_content, size_t *ret_len);

/* Record approval of content for canonical path; creates the store (mode 0700) if needed and
 * replaces an earlier approval atomically. Returns 0 or -errno (-EINVAL: path has a newline). */
int trust_save(const char *store, const char *path, const char *content, size_t len);

/* Remove the approval of canonical path. Returns 0, -ENOENT (none), or -errno. */
int trust_revoke(const char *store, const char *path);

/* Call fn for every approval in the store (path and hash). Returns 0, -ENOENT (no store), or
 * -errno. */
int trust_list(const char *store, void (*fn)(const char *path, const char *hex, void *ud),
               void *ud);

/*
 * What changed from old to new, line by line: lines only in new as "  + line", lines only in
 * old as "  - line", each ending in '\n', at most max_lines of them (then "  ... and N more");
 * over-long lines are cut. Appends to out (whose cap bounds it further).
 */
void trust_diff(const char *old, size_t old_len, const char *new_, size_t new_len, size_t max_lines,
                struct buf *out);

/*
 * The host's side of what a bottle may not write (docs/workspace.md): the workspace paths the
 * host runs or trusts later (.git/config, .git/hooks, editor and agent config, ...), which
 * bottle-init makes read-only from the spec's `protect` records, and the check that a host
 * path handed to the bottle (a --mount source) is not, and does not pass through, a symlink.
 *
 * A protected path that does not exist yet still needs a mount point: the supervisor creates
 * an empty placeholder at the first missing component before the bottle starts, records
 * what it created (device and inode), and removes it after the bottle is gone if it is
 * still that empty placeholder.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/buf.h"
#include "config/config.h"

#define PROTECT_MAX 48                 /* protected paths, placeholders */
#define PROTECT_GIT_CONFIG_MAX 1048576 /* bytes of .git/config read to find core.hooksPath */

struct protect_made {
    char *path; /* absolute */
    char *root; /* the directory it protects: the workspace or a --mount source (or NULL) */
    dev_t dev;
    ino_t ino;
    bool dir;
};

struct protect_plan {
    struct strv paths; /* absolute paths inside the bottle, beneath the workspace or a
                        * read-write --mount destination, for the spec */
    struct strv roots; /* the host directories protected: the workspace, rw --mount sources */
    struct protect_made made[PROTECT_MAX];
    size_t n_made;
};

/*
 * Checks that no component of the absolute path is a symlink, and that it exists. Returns 0,
 * -ELOOP with the first symlink's path in reterr_at, or another -errno (reterr_at then names
 * the component that failed).
 */
int protect_check_nofollow(const char *path, char *reterr_at, size_t size);

/* True when rel is a usable allow_write value: relative, canonical. --allow-write also takes
 * an absolute path inside the bottle ("/" + such a path), e.g. /data/.git/hooks for
 * --mount SRC:/data. */
bool protect_rel_path_valid(const char *rel);

/*
 * Scans git config text for the values that name workspace paths git runs or reads config
 * from: core.hooksPath (the last one) into ret_hooks ("" when unset); include.path,
 * includeIf.*.path and, when extensions.worktreeConfig is true, "config.worktree" into
 * ret_includes (appended; relative ones are relative to the directory of the config file). Bounded:
 * refuses len > PROTECT_GIT_CONFIG_MAX with -EFBIG. Does not follow includes. Returns 0 or -errno.
 */
int protect_scan_git_config(const char *text, size_t len, char *ret_hooks, size_t hooks_size,
                            struct strv *ret_includes);

/* The placeholder registry (below), locked and read: see protect_registry_lock(). */
struct protect_registry {
    int fd; /* -1: none (not locked) */
    struct buf text;
};

/*
 * Works out the protected paths of workspace ws (absolute, canonical) minus allow_write
 * (relative paths; each opens the list entries equal to or beneath it), creates the
 * placeholders, and fills *p (zeroed first). reg (NULL or locked): an existing path that is a
 * placeholder it lists for ws, still pristine, was made by another bottle of the state root
 * and is protected as a whole, as a missing path's placeholder (a shared one is not in
 * p->made). Logs what went wrong, naming the path, and returns -errno; placeholders created
 * before a failure are removed again.
 */
int protect_plan_build(const char *ws, const struct strv *allow_write,
                       const struct protect_registry *reg, struct protect_plan *p);

/*
 * The same for a read-write --mount SRC:DST (absolute, canonical): appends to *p the
 * protected paths of the directory src translated to dst, and src's placeholders (registered
 * under src). allow_write: the absolute ones beneath dst open paths of the mount (DST/rel),
 * DST itself opens the whole mount; relative ones are the workspace's. A source that is or
 * passes through a top-level list entry (.git, .vscode, bottle.ini, ...) is refused (-EPERM)
 * unless allow_write names DST; a file source gets nothing else. Logs, returns 0 or -errno;
 * on failure *p is as before (the call's own placeholders are removed).
 */
int protect_plan_add_mount(const char *src, const char *dst, const struct strv *allow_write,
                           const struct protect_registry *reg, struct protect_plan *p);

/* Removes the placeholders that are still the empty ones created (when remove is true; when
 * false they stay, e.g. because another bottle uses the workspace) and frees *p. */
void protect_plan_done(struct protect_plan *p, bool remove);

/*
 * The placeholder registry: a file (<state root>/placeholders) listing the placeholders of
 * every bottle of this state root, and which bottle uses which protected directory (the
 * plan's roots), so that the last bottle to leave a workspace removes them all, including
 * those of a bottle that left while another still used the workspace, or whose supervisor
 * was killed. Every change holds an exclusive flock on the file.
 *
 * A bottle starting locks it (protect_registry_lock()) around building its plan and
 * recording it (protect_registry_record(): the plan's placeholders, and that `name` uses each
 * of its roots), then unlocks it: bottles starting at once plan one after the other, the
 * second sharing the first one's placeholders instead of tripping over them. Leaving,
 * protect_registry_leave() drops the bottle's use of its roots and, for each root that no
 * other bottle still uses (alive(NAME) true), removes its placeholders that are still
 * pristine and drops them; *ret_shared tells whether a root was still used (the bottle's own
 * placeholders then stay too; also when it fails). protect_registry_add() and
 * protect_registry_clean() do one step each: record placeholders (no user), remove those of
 * ws. All return 0 or -errno.
 */
int protect_registry_lock(const char *reg, struct protect_registry *ret);
void protect_registry_unlock(struct protect_registry *reg);
int protect_registry_record(struct protect_registry *reg, const char *ws, const char *name,
                            const struct protect_plan *p);
int protect_registry_leave(const char *reg, const char *name, const struct strv *roots,
                           bool (*alive)(const char *name, void *userdata), void *userdata,
                           bool *ret_shared);
int protect_registry_add(const char *reg, const char *ws, const struct protect_plan *p);
int protect_registry_clean(const char *reg, const char *ws);

/* The fixed list, for --help and the docs: entry i (NULL past the end). */
const char *protect_list_entry(size_t i);

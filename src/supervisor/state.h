/*
 * The state root and the bottles in it (docs/supervisor.md, "State"), as crun's status.c keeps
 * container state: a directory per bottle under <root>/bottles, its `lock` held (flock) by the
 * bottle's supervisor for the bottle's life, its `info.json` written atomically (aside and
 * renamed). This API is also for processes other than the supervisor (`ls`, `stop`, `logs`):
 * a bottle runs exactly while its lock is held, so a reader needs no supervisor to tell a live
 * bottle from the leftovers of one whose supervisor was killed.
 *
 * Layout under the root (each directory 0700 and owned by us, else refused):
 *   bottles/.lock          serialises creating a bottle with reclaiming stale ones
 *   bottles/NAME/lock      held LOCK_EX by the supervisor while the bottle lives
 *   bottles/NAME/info.json name, backend, alias, pids, audit path, workspace
 *   bottles/NAME/control   the supervisor's control socket (supervisor/control.h)
 *   aliases/               alias leases (supervisor/alias.h)
 *   logs/NAME.audit.log    audit logs (kept after the bottle is gone)
 * The state root is never mounted into a bottle.
 *
 * Library code: returns -errno, never logs above debug.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config/config.h"
#include "guest/spec.h"

#define STATE_PATH_MAX 512

struct state {
    char root[STATE_PATH_MAX];
    char bottles[STATE_PATH_MAX + 16];
    char logs[STATE_PATH_MAX + 16];
    char aliases[STATE_PATH_MAX + 16];
};

/* A bottle's state directory as its supervisor holds it. */
struct state_bottle {
    char name[BOTTLE_SPEC_MAX_NAME + 1];
    char dir[STATE_PATH_MAX + 32 + BOTTLE_SPEC_MAX_NAME];
    int lock_fd; /* -1: not held */
};

/* What info.json says about a bottle. */
struct state_info {
    char name[BOTTLE_SPEC_MAX_NAME + 1];
    char backend[32];
    char alias[64];
    pid_t pid;        /* the supervisor */
    pid_t bottle_pid; /* bottle-init / QEMU */
    pid_t daemon_pid; /* the egress daemon */
    char audit[1024];
    char workspace[4096];
    char command[512]; /* the main command, its arguments joined by spaces (cut) */
    int64_t started;   /* unix time the bottle started; 0: unknown */
    /* The host directories whose protected paths this bottle holds read-only (the workspace
     * and read-write --mount sources; docs/workspace.md). Written as given; read into a list
     * the reader owns (state_info_done). */
    struct strv protect_roots;
};

/* The state root: $BOT_BOTTLE_STATE_DIR when set to an absolute path (tests use it to keep
 * their bottles apart), else /run/bot-bottle for root, else $XDG_RUNTIME_DIR/bot-bottle, else
 * /tmp/bot-bottle-<uid>. Writes it to buf. Returns 0 or -errno. */
int state_root_path(char *buf, size_t size);

/*
 * Fill *ret for the state root `root` (NULL: state_root_path()). With create, make the root
 * and its bottles/, logs/ and aliases/ (0700); either way refuse a directory that is not ours
 * or is accessible to others (-EPERM). Returns 0 or -errno (-ENOENT without create when the
 * root does not exist).
 */
int state_open(const char *root, bool create, struct state *ret);

/* Up to BOTTLE_SPEC_MAX_NAME letters, digits, '-', '_', '.', starting with a letter or digit. */
bool state_name_valid(const char *name);

/*
 * Remove the state of bottles whose lock is free (their supervisor is gone, e.g. kill -9:
 * their processes died with it through PDEATHSIG, the kernel dropped their alias lock).
 * Returns the number removed or -errno.
 */
int state_reclaim_stale(const struct state *st);

/*
 * Reclaim stale bottles, then create bottles/NAME and take its lock. Returns 0 and *ret,
 * -EEXIST when a bottle of that name runs, or -errno.
 */
int state_bottle_create(const struct state *st, const char *name, struct state_bottle *ret);
/* Remove the bottle's state directory and drop its lock. Accepts a never-created one. */
void state_bottle_remove(const struct state *st, struct state_bottle *b);
/* Path of a file in the bottle's directory. Returns 0 or -ENAMETOOLONG. */
int state_bottle_path(const struct state *st, const char *name, const char *file, char *buf,
                      size_t size);

/* Write info.json (aside, then renamed: a reader never sees half a file). */
int state_info_write(const struct state_bottle *b, const struct state_info *info);
/* Read bottles/NAME/info.json. Returns 0, -ENOENT (no such bottle, or not written yet),
 * -EBADMSG, or -errno. */
int state_info_read(const struct state *st, const char *name, struct state_info *ret);
/* Frees what state_info_read() allocated. Accepts a zeroed struct. */
void state_info_done(struct state_info *info);

/* 1 when the bottle's supervisor holds its lock, 0 when not (stale or absent), or -errno. */
int state_bottle_running(const struct state *st, const char *name);

/*
 * Names of running bottles into names: the first max of them in sorted order. Returns the count
 * (may exceed max: only max are written) or -errno.
 */
int state_list(const struct state *st, char (*names)[BOTTLE_SPEC_MAX_NAME + 1], size_t max);

/*
 * Ended bottles' logs in logs/ (NAME.audit.log, NAME.audit.log.1, NAME.log: the supervisor's
 * log of a `start`ed bottle). Retention (docs/cli.md, "Retention"): of the bottles that do not
 * run, the logs of the newest `keep` (by their newest file's mtime) are kept, unless older
 * than `days` days (0: no age limit); the rest are removed. Applied when a bottle starts and
 * by `ls`. Defaults below; BOT_BOTTLE_KEEP_LOGS and BOT_BOTTLE_KEEP_DAYS override them.
 */
#define STATE_KEEP_LOGS 50
#define STATE_KEEP_DAYS 14
/* Remove an ended bottle's logs. Returns how many files were removed, or -errno. */
int state_logs_remove(const struct state *st, const char *name);
/* Apply the retention at time now (unix seconds). Returns the number of bottles whose logs
 * were removed, or -errno. */
int state_logs_retention(const struct state *st, unsigned keep, unsigned days, int64_t now);
/* The policy in force: the defaults, or the environment's override. */
void state_retention_policy(unsigned *ret_keep, unsigned *ret_days);

/* The state root and the bottles in it (state.h). */
#include "supervisor/state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/str.h"

int state_root_path(char *buf, size_t size)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    const char *over = getenv("BOT_BOTTLE_STATE_DIR");

    if (over && over[0] == '/')
        return str_printf(buf, size, "%s", over);
    if (geteuid() == 0)
        return str_printf(buf, size, "/run/bot-bottle");
    if (xdg && xdg[0] == '/')
        return str_printf(buf, size, "%s/bot-bottle", xdg);
    return str_printf(buf, size, "/tmp/bot-bottle-%u", (unsigned)geteuid());
}

/* Refuse a directory someone else planted for us (e.g. in /tmp). */
static int check_private(const char *path)
{
    struct stat st;

    if (lstat(path, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0077))
        return -EPERM;
    return 0;
}

static int mkdir_private(const char *path, bool create)
{
    if (create && mkdir(path, 0700) < 0 && errno != EEXIST)
        return -errno;
    return check_private(path);
}

int state_open(const char *root, bool create, struct state *ret)
{
    int r;

    memset(ret, 0, sizeof(*ret));
    if (root)
        r = str_printf(ret->root, sizeof(ret->root), "%s", root);
    else
        r = state_root_path(ret->root, sizeof(ret->root));
    if (r < 0)
        return r;
    if ((r = str_printf(ret->bottles, sizeof(ret->bottles), "%s/bottles", ret->root)) < 0 ||
        (r = str_printf(ret->logs, sizeof(ret->logs), "%s/logs", ret->root)) < 0 ||
        (r = str_printf(ret->aliases, sizeof(ret->aliases), "%s/aliases", ret->root)) < 0)
        return r;
    if ((r = mkdir_private(ret->root, create)) < 0 ||
        (r = mkdir_private(ret->bottles, create)) < 0 ||
        (r = mkdir_private(ret->logs, create)) < 0 || (r = mkdir_private(ret->aliases, create)) < 0)
        return r;
    return 0;
}

bool state_name_valid(const char *n)
{
    size_t len = strlen(n);

    if (len == 0 || len > BOTTLE_SPEC_MAX_NAME || !ascii_isalnum(n[0]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!ascii_isalnum(n[i]) && n[i] != '-' && n[i] != '_' && n[i] != '.')
            return false;
    return true;
}

int state_bottle_path(const struct state *st, const char *name, const char *file, char *buf,
                      size_t size)
{
    if (file)
        return str_printf(buf, size, "%s/%s/%s", st->bottles, name, file);
    return str_printf(buf, size, "%s/%s", st->bottles, name);
}

/* Remove the files of the directory sub of dir (the supervisor's own, flat: the bottle's CA
 * bundle in tls/), then the directory. */
static void remove_flat_subdir(const char *dir, const char *sub)
{
    char p[STATE_PATH_MAX + 128];
    struct dirent *de;
    DIR *d;
    int fd;

    if (str_printf(p, sizeof(p), "%s/%s", dir, sub) < 0)
        return;
    fd = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    while ((de = readdir(d)))
        if (de->d_type != DT_DIR)
            unlinkat(fd, de->d_name, 0);
    closedir(d);
    rmdir(p);
}

/* Remove a state directory's known files and the directory: 0 or -errno of the rmdir. */
static int remove_state_dir(const char *dir)
{
    static const char *const files[] = { "info.json", ".info.json.tmp", "control", "lock" };
    char p[STATE_PATH_MAX + 128];

    for (size_t i = 0; i < ARRAY_SIZE(files); i++)
        if (str_printf(p, sizeof(p), "%s/%s", dir, files[i]) == 0)
            unlink(p);
    remove_flat_subdir(dir, "tls");
    return rmdir(dir) < 0 ? -errno : 0;
}

/* 1 when someone holds the lock file at path, 0 when it is free, -errno (-ENOENT: none). */
static int lock_held(const char *path)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_SH | LOCK_NB) == 0)
        return 0;
    return errno == EWOULDBLOCK ? 1 : -errno;
}

/*
 * The lock over the bottles directory (bottles/.lock, LOCK_EX), held while a bottle's
 * directory is created and locked, while stale ones are reclaimed and while one is removed.
 * Without it a reclaim could remove a directory between another supervisor's mkdir and its
 * lock, or, having found a new lock file not yet flock'ed, delete a live bottle's state.
 * Every holder keeps it for a few syscalls only. Returns the fd or -errno.
 */
static int bottles_lock(const struct state *st)
{
    char p[sizeof(st->bottles) + 8];
    int fd, r;

    r = str_printf(p, sizeof(p), "%s/.lock", st->bottles);
    if (r < 0)
        return r;
    fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    if (RETRY_EINTR(flock(fd, LOCK_EX)) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

/*
 * Alias lease files nobody holds (their supervisor was killed): removed, so they do not pile
 * up. A supervisor that opened one just before we unlink it notices (alias_acquire compares
 * the inode it locked with the path's) and tries again.
 */
static void sweep_aliases(const struct state *st)
{
    DIR *d = opendir(st->aliases);
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d))) {
        char p[STATE_PATH_MAX + 64];
        size_t n = strlen(de->d_name);

        if (de->d_name[0] == '.' || n < 6 || strcmp(de->d_name + n - 5, ".lock") != 0)
            continue;
        if (str_printf(p, sizeof(p), "%s/%s", st->aliases, de->d_name) < 0)
            continue;
        if (lock_held(p) == 0)
            unlink(p);
    }
    closedir(d);
}

static int reclaim_locked(const struct state *st)
{
    DIR *d = opendir(st->bottles);
    struct dirent *de;
    int n = 0;

    if (!d)
        return -errno;
    while ((de = readdir(d))) {
        char dir[STATE_PATH_MAX + 64], lock[STATE_PATH_MAX + 96];
        int r;
        if (de->d_name[0] == '.')
            continue;
        if (str_printf(dir, sizeof(dir), "%s/%s", st->bottles, de->d_name) < 0 ||
            str_printf(lock, sizeof(lock), "%s/lock", dir) < 0)
            continue;
        r = lock_held(lock);
        if (r == 1)
            continue;
        /* r == 0: its supervisor is gone; -ENOENT: a half-created directory */
        if (r == 0 || r == -ENOENT) {
            r = remove_state_dir(dir);
            if (r < 0) {
                log_errno(LOG_LVL_WARN, r,
                          "cannot remove the state that bottle '%s' left behind; check what is "
                          "in %s and remove it (rm -r)",
                          de->d_name, dir);
                continue;
            }
            log_info("removed the state that bottle '%s' left behind (its supervisor ended without "
                     "cleaning up, e.g. killed with SIGKILL)",
                     de->d_name);
            n++;
        }
    }
    closedir(d);
    sweep_aliases(st);
    return n;
}

int state_reclaim_stale(const struct state *st)
{
    _cleanup_close_ int lk = bottles_lock(st);

    if (lk < 0)
        return lk;
    return reclaim_locked(st);
}

int state_bottle_create(const struct state *st, const char *name, struct state_bottle *ret)
{
    char lock[sizeof(ret->dir) + 8];
    _cleanup_close_ int lk = -1;
    int r;

    memset(ret, 0, sizeof(*ret));
    ret->lock_fd = -1;
    if (!state_name_valid(name))
        return -EINVAL;
    lk = bottles_lock(st);
    if (lk < 0)
        return lk;
    (void)reclaim_locked(st);
    if ((r = str_printf(ret->name, sizeof(ret->name), "%s", name)) < 0 ||
        (r = state_bottle_path(st, name, NULL, ret->dir, sizeof(ret->dir))) < 0 ||
        (r = str_printf(lock, sizeof(lock), "%s/lock", ret->dir)) < 0)
        return r;
    if (mkdir(ret->dir, 0700) < 0) {
        r = -errno;
        ret->dir[0] = '\0';
        return r;
    }
    ret->lock_fd = open(lock, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (ret->lock_fd < 0 || flock(ret->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        r = -errno;
        remove_state_dir(ret->dir);
        ret->dir[0] = '\0';
        if (ret->lock_fd >= 0)
            close(ret->lock_fd);
        ret->lock_fd = -1;
        return r;
    }
    return 0;
}

void state_bottle_remove(const struct state *st, struct state_bottle *b)
{
    /* under the bottles lock too: a bottle of the same name created meanwhile never sees
     * our half-removed directory (it would be refused as running) */
    _cleanup_close_ int lk = b->dir[0] ? bottles_lock(st) : -1;

    if (b->dir[0])
        remove_state_dir(b->dir);
    b->dir[0] = '\0';
    if (b->lock_fd >= 0)
        close(b->lock_fd);
    b->lock_fd = -1;
}

int state_info_write(const struct state_bottle *b, const struct state_info *i)
{
    char path[sizeof(b->dir) + 16], tmp[sizeof(b->dir) + 16];
    json_t *o;
    int r = 0;

    o = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:s, s:I}", "name", i->name, "backend",
                  i->backend, "alias", i->alias, "pid", (int)i->pid, "bottle_pid",
                  (int)i->bottle_pid, "daemon_pid", (int)i->daemon_pid, "audit", i->audit,
                  "workspace", i->workspace, "command", i->command, "started",
                  (json_int_t)i->started);
    if (!o)
        return -ENOMEM;
    {
        json_t *roots = json_array();
        for (size_t k = 0; roots && k < i->protect_roots.n; k++)
            json_array_append_new(roots, json_string(i->protect_roots.v[k]));
        if (!roots || json_object_set_new(o, "protect_roots", roots) < 0) {
            json_decref(o);
            return -ENOMEM;
        }
    }
    if ((r = str_printf(tmp, sizeof(tmp), "%s/.info.json.tmp", b->dir)) < 0 ||
        (r = str_printf(path, sizeof(path), "%s/info.json", b->dir)) < 0)
        goto out;
    /* Written aside and renamed, so a reader never sees half a file. */
    if (json_dump_file(o, tmp, JSON_COMPACT) < 0)
        r = -EIO;
    else if (rename(tmp, path) < 0)
        r = -errno;
out:
    json_decref(o);
    return r;
}

static void copy_str(char *dst, size_t size, const char *src)
{
    if (str_printf(dst, size, "%s", src ? src : "") < 0)
        dst[0] = '\0';
}

int state_info_read(const struct state *st, const char *name, struct state_info *ret)
{
    char path[STATE_PATH_MAX + 128];
    const char *n = NULL, *be = NULL, *al = NULL, *au = NULL, *ws = NULL, *cmd = NULL;
    json_int_t started = 0;
    int pid = 0, bpid = 0, dpid = 0, r;
    json_t *o;

    memset(ret, 0, sizeof(*ret));
    if (!state_name_valid(name))
        return -EINVAL;
    r = state_bottle_path(st, name, "info.json", path, sizeof(path));
    if (r < 0)
        return r;
    if (access(path, F_OK) < 0)
        return -errno;
    o = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
    if (!o)
        return -EBADMSG;
    if (json_unpack(o, "{s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:s, s?:s, s?:I}", "name", &n,
                    "backend", &be, "alias", &al, "pid", &pid, "bottle_pid", &bpid, "daemon_pid",
                    &dpid, "audit", &au, "workspace", &ws, "command", &cmd, "started",
                    &started) < 0) {
        json_decref(o);
        return -EBADMSG;
    }
    copy_str(ret->name, sizeof(ret->name), n);
    copy_str(ret->backend, sizeof(ret->backend), be);
    copy_str(ret->alias, sizeof(ret->alias), al);
    copy_str(ret->audit, sizeof(ret->audit), au);
    copy_str(ret->workspace, sizeof(ret->workspace), ws);
    copy_str(ret->command, sizeof(ret->command), cmd);
    ret->started = started;
    ret->pid = pid;
    ret->bottle_pid = bpid;
    ret->daemon_pid = dpid;
    {
        /* Bounded: the workspace plus one per --mount at most. */
        json_t *roots = json_object_get(o, "protect_roots");
        for (size_t k = 0;
             json_is_array(roots) && k < json_array_size(roots) && k <= BOTTLE_SPEC_MAX_MOUNTS;
             k++) {
            const char *root = json_string_value(json_array_get(roots, k));
            if (root)
                strv_push(&ret->protect_roots, root);
        }
    }
    json_decref(o);
    return 0;
}

void state_info_done(struct state_info *info)
{
    strv_done(&info->protect_roots);
}

int state_bottle_running(const struct state *st, const char *name)
{
    char lock[STATE_PATH_MAX + 128];
    int r;

    if (!state_name_valid(name))
        return -EINVAL;
    r = state_bottle_path(st, name, "lock", lock, sizeof(lock));
    if (r < 0)
        return r;
    r = lock_held(lock);
    return r == -ENOENT ? 0 : r;
}

/* Insert name into the sorted names[0..*n) keeping the max smallest. */
static void insert_sorted(char (*names)[BOTTLE_SPEC_MAX_NAME + 1], size_t max, size_t *n,
                          const char *name)
{
    size_t i = *n < max ? *n : max;

    if (max == 0 || (i == max && strcmp(name, names[max - 1]) >= 0))
        return;
    if (i == max)
        i--;
    for (; i > 0 && strcmp(names[i - 1], name) > 0; i--)
        memcpy(names[i], names[i - 1], sizeof(names[i]));
    copy_str(names[i], sizeof(names[i]), name);
    if (*n < max)
        (*n)++;
}

int state_list(const struct state *st, char (*names)[BOTTLE_SPEC_MAX_NAME + 1], size_t max)
{
    DIR *d = opendir(st->bottles);
    struct dirent *de;
    size_t n = 0, kept = 0;

    if (!d)
        return -errno;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !state_name_valid(de->d_name) ||
            state_bottle_running(st, de->d_name) != 1)
            continue;
        insert_sorted(names, max, &kept, de->d_name);
        n++;
    }
    closedir(d);
    return (int)(n > INT32_MAX ? INT32_MAX : n);
}

/* ---- ended bottles' logs: rm and retention ---- */

DEFINE_CLEANUP(DIR, closedir)

static const char *const log_suffixes[] = { ".audit.log", ".audit.log.1", ".log" };

/* The bottle a file in logs/ belongs to (NAME.audit.log, NAME.audit.log.1, NAME.log), or
 * false. */
static bool log_owner(const char *file, char *name, size_t size)
{
    size_t n = strlen(file);

    for (size_t i = 0; i < ARRAY_SIZE(log_suffixes); i++) {
        size_t k = strlen(log_suffixes[i]);
        if (n > k && n - k < size && strcmp(file + n - k, log_suffixes[i]) == 0) {
            memcpy(name, file, n - k);
            name[n - k] = '\0';
            if (state_name_valid(name))
                return true;
        }
    }
    return false;
}

int state_logs_remove(const struct state *st, const char *name)
{
    char path[STATE_PATH_MAX + 64 + BOTTLE_SPEC_MAX_NAME];
    int n = 0;

    if (!state_name_valid(name))
        return -EINVAL;
    for (size_t i = 0; i < ARRAY_SIZE(log_suffixes); i++) {
        if (str_printf(path, sizeof(path), "%s/%s%s", st->logs, name, log_suffixes[i]) < 0)
            return -ENAMETOOLONG;
        if (unlink(path) == 0)
            n++;
        else if (errno != ENOENT)
            return -errno;
    }
    return n;
}

struct ended {
    char name[BOTTLE_SPEC_MAX_NAME + 1];
    int64_t mtime; /* the newest of its files */
};

static int cmp_newest_first(const void *a, const void *b)
{
    const struct ended *x = a, *y = b;
    return x->mtime < y->mtime ? 1 : x->mtime > y->mtime ? -1 : strcmp(x->name, y->name);
}

int state_logs_retention(const struct state *st, unsigned keep, unsigned days, int64_t now)
{
    _cleanup_(closedirp) DIR *d = opendir(st->logs);
    struct ended *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int removed = 0;

    if (!d)
        return -errno;
    while ((de = readdir(d))) {
        char name[BOTTLE_SPEC_MAX_NAME + 1];
        struct stat sb;
        size_t i;

        if (!log_owner(de->d_name, name, sizeof(name)) ||
            fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(sb.st_mode))
            continue;
        for (i = 0; i < n && strcmp(v[i].name, name) != 0; i++)
            ;
        if (i == n) {
            if (n == cap) {
                struct ended *nv = realloc(v, (cap ? cap * 2 : 64) * sizeof(*v));
                if (!nv) {
                    free(v);
                    return -ENOMEM;
                }
                v = nv;
                cap = cap ? cap * 2 : 64;
            }
            snprintf(v[n].name, sizeof(v[n].name), "%s", name);
            v[n].mtime = 0;
            n++;
        }
        if ((int64_t)sb.st_mtime > v[i].mtime)
            v[i].mtime = (int64_t)sb.st_mtime;
    }
    if (n) /* (qsort with NULL is undefined, even for 0 items) */
        qsort(v, n, sizeof(*v), cmp_newest_first);
    for (size_t i = 0, kept = 0; i < n; i++) {
        /* a bottle that runs (or is starting: its directory exists) keeps its logs */
        char dir[STATE_PATH_MAX + 32 + BOTTLE_SPEC_MAX_NAME];
        struct stat sb;
        if (str_printf(dir, sizeof(dir), "%s/%s", st->bottles, v[i].name) < 0 ||
            lstat(dir, &sb) == 0 || state_bottle_running(st, v[i].name) == 1)
            continue;
        if (kept < keep && (days == 0 || now - v[i].mtime < (int64_t)days * 86400)) {
            kept++;
            continue;
        }
        if (state_logs_remove(st, v[i].name) > 0)
            removed++;
    }
    free(v);
    return removed;
}

void state_retention_policy(unsigned *ret_keep, unsigned *ret_days)
{
    const char *k = getenv("BOT_BOTTLE_KEEP_LOGS"), *dd = getenv("BOT_BOTTLE_KEEP_DAYS");
    uint64_t v;

    *ret_keep = STATE_KEEP_LOGS;
    *ret_days = STATE_KEEP_DAYS;
    if (k && str_to_u64_cstr(k, 1000000, &v) == 0)
        *ret_keep = (unsigned)v;
    if (dd && str_to_u64_cstr(dd, 36500, &v) == 0)
        *ret_days = (unsigned)v;
}

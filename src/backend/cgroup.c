#include "backend/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fileio.h"
#include "common/macro.h"
#include "common/str.h"

#define CGROUP_DEFAULT_ROOT "/sys/fs/cgroup"
#define CGROUP_DIR "bot-bottle"
#define CPU_PERIOD_US 100000u

static const char *const ctl_names[CGROUP_CTL_MAX] = { "pids", "memory", "cpu" };

static const char *cgroup_root(void)
{
    const char *r = getenv("BOT_BOTTLE_CGROUP_ROOT");
    return r && r[0] == '/' ? r : CGROUP_DEFAULT_ROOT;
}

void cgroup_init(struct bb_cgroup *cg)
{
    memset(cg, 0, sizeof(*cg));
    cg->fd = -1;
}

static int write_str(const char *dir, const char *file, const char *data)
{
    char path[PATH_MAX + 64];

    if (str_printf(path, sizeof(path), "%s/%s", dir, file) < 0)
        return -ENAMETOOLONG;
    return file_write_str(path, data);
}

static bool fs_is(const char *path, long magic)
{
    struct statfs sfs;
    return statfs(path, &sfs) == 0 && (long)sfs.f_type == magic;
}

/* Our own cgroup in the v2 hierarchy (ctl NULL) or in the v1 hierarchy holding ctl. */
static int own_cgroup(const char *ctl, char *buf, size_t size)
{
    char data[4096], *save = NULL;

    if (file_read_small("/proc/self/cgroup", data, sizeof(data)) < 0)
        return -ENOENT;
    for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        bool match = false;
        if (!c2)
            continue;
        *c2 = '\0';
        if (!ctl) {
            match = strcmp(line, "0:") == 0; /* "0::/path" */
        } else {
            char *save2 = NULL;
            for (char *t = strtok_r(c1 + 1, ",", &save2); t; t = strtok_r(NULL, ",", &save2))
                if (strcmp(t, ctl) == 0)
                    match = true;
        }
        if (match)
            return str_printf(buf, size, "%s", strcmp(c2 + 1, "/") == 0 ? "" : c2 + 1);
    }
    return -ENOENT;
}

/* Remove bottle cgroups whose supervisor (the pid after the last '.') is gone. */
static void reclaim_stale(const char *parent)
{
    DIR *d = opendir(parent);
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d))) {
        const char *dot = strrchr(de->d_name, '.');
        char path[PATH_MAX + 300];
        uint64_t pid;
        if (de->d_type != DT_DIR || !dot || str_to_u64_cstr(dot + 1, INT32_MAX, &pid) < 0)
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        if (str_printf(path, sizeof(path), "%s/%s", parent, de->d_name) == 0)
            (void)rmdir(path); /* fails harmlessly while something is still in it */
    }
    closedir(d);
}

static int fail(char *reterr, size_t errsize, int r, const char *what, const char *path)
{
    (void)str_printf(reterr, errsize, "%s %s: %s", what, path, strerror(-r));
    return r;
}

static int make_dir(const char *path)
{
    return mkdir(path, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

static int set_limits(const struct cgroup_limits *lim, struct bb_cgroup *cg, char *reterr,
                      size_t errsize)
{
    char val[64];
    const char *pids = cg->version == 2 ? cg->path[0] : cg->path[CGROUP_CTL_PIDS];
    const char *mem = cg->version == 2 ? cg->path[0] : cg->path[CGROUP_CTL_MEMORY];
    const char *cpu = cg->version == 2 ? cg->path[0] : cg->path[CGROUP_CTL_CPU];
    int r;

    if (lim->pids_max) {
        (void)str_printf(val, sizeof(val), "%llu", (unsigned long long)lim->pids_max);
        if ((r = write_str(pids, "pids.max", val)) < 0)
            return fail(reterr, errsize, r, "cannot write pids.max in", pids);
    }
    if (lim->memory_bytes) {
        (void)str_printf(val, sizeof(val), "%llu", (unsigned long long)lim->memory_bytes);
        r = write_str(mem, cg->version == 2 ? "memory.max" : "memory.limit_in_bytes", val);
        if (r < 0)
            return fail(reterr, errsize, r, "cannot set the memory limit in", mem);
        /* No swapping around the limit (best effort: absent without swap accounting). */
        if (cg->version == 2)
            (void)write_str(mem, "memory.swap.max", "0");
        else
            (void)write_str(mem, "memory.memsw.limit_in_bytes", val);
    }
    if (lim->cpus_milli) {
        if (cg->version == 2) {
            (void)str_printf(val, sizeof(val), "%u %u", lim->cpus_milli * (CPU_PERIOD_US / 1000),
                             CPU_PERIOD_US);
            r = write_str(cpu, "cpu.max", val);
        } else {
            (void)str_printf(val, sizeof(val), "%u", CPU_PERIOD_US);
            r = write_str(cpu, "cpu.cfs_period_us", val);
            (void)str_printf(val, sizeof(val), "%u", lim->cpus_milli * (CPU_PERIOD_US / 1000));
            if (r >= 0)
                r = write_str(cpu, "cpu.cfs_quota_us", val);
        }
        if (r < 0)
            return fail(reterr, errsize, r, "cannot set the CPU limit in", cpu);
    }
    return 0;
}

/* "+pids +memory [+cpu]" for the controllers lim needs. */
static void needed_controllers(const struct cgroup_limits *lim, bool need[CGROUP_CTL_MAX])
{
    need[CGROUP_CTL_PIDS] = lim->pids_max != 0;
    need[CGROUP_CTL_MEMORY] = lim->memory_bytes != 0;
    need[CGROUP_CTL_CPU] = lim->cpus_milli != 0;
}

static bool word_in(const char *list, const char *w)
{
    size_t n = strlen(w);
    for (const char *p = list; (p = strstr(p, w)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

/* Enables the needed controllers for dir's children; checks they are available. */
static int enable_controllers(const char *dir, const bool need[CGROUP_CTL_MAX], char *reterr,
                              size_t errsize)
{
    char path[PATH_MAX + 32], have[512], ctl[16];
    int r;

    (void)str_printf(path, sizeof(path), "%s/cgroup.controllers", dir);
    if ((r = file_read_small(path, have, sizeof(have))) < 0)
        return fail(reterr, errsize, r, "cannot read", path);
    for (size_t i = 0; i < CGROUP_CTL_MAX; i++) {
        if (!need[i])
            continue;
        if (!word_in(have, ctl_names[i])) {
            (void)str_printf(reterr, errsize,
                             "the %s controller is not available in %s (cgroup.controllers: %s)",
                             ctl_names[i], dir, have);
            return -EOPNOTSUPP;
        }
        (void)str_printf(ctl, sizeof(ctl), "+%s", ctl_names[i]);
        if ((r = write_str(dir, "cgroup.subtree_control", ctl)) < 0)
            return fail(reterr, errsize, r,
                        r == -EBUSY ? "other processes share the cgroup"
                                    : "cannot enable the controllers in",
                        dir);
    }
    return 0;
}

static int create_v2(const struct cgroup_limits *lim, const char *name, struct bb_cgroup *cg,
                     char *reterr, size_t errsize)
{
    const char *root = cgroup_root();
    char own[PATH_MAX], parent[PATH_MAX], leaf[PATH_MAX + 32];
    bool need[CGROUP_CTL_MAX];
    int r;

    needed_controllers(lim, need);
    if (geteuid() == 0) {
        /* As root: our own subtree at the top, as before delegation existed. */
        if ((r = enable_controllers(root, need, reterr, errsize)) < 0)
            return r;
        if (str_printf(parent, sizeof(parent), "%s/" CGROUP_DIR, root) < 0)
            return -ENAMETOOLONG;
        if ((r = make_dir(parent)) < 0)
            return fail(reterr, errsize, r, "cannot create", parent);
    } else {
        /* Unprivileged: only a cgroup delegated to us (systemd Delegate=yes) is writable. Its
         * controllers can only be enabled once no process sits in it ("no internal
         * processes"), so we move ourselves to a leaf first. */
        if (own_cgroup(NULL, own, sizeof(own)) < 0 ||
            str_printf(parent, sizeof(parent), "%s%s", root, own) < 0) {
            (void)str_printf(reterr, errsize, "cannot find our own cgroup in /proc/self/cgroup");
            return -ENOENT;
        }
        r = enable_controllers(parent, need, reterr, errsize);
        if (r == -EBUSY) {
            char pid[24];
            (void)str_printf(leaf, sizeof(leaf), "%s/supervisor.%d", parent, (int)getpid());
            (void)str_printf(pid, sizeof(pid), "%d", (int)getpid());
            if ((r = make_dir(leaf)) < 0 || (r = write_str(leaf, "cgroup.procs", pid)) < 0)
                return fail(reterr, errsize, r, "cannot move ourselves to", leaf);
            r = enable_controllers(parent, need, reterr, errsize);
        }
        if (r < 0)
            return r;
    }
    reclaim_stale(parent);
    if (str_printf(cg->path[0], sizeof(cg->path[0]), "%s/%s", parent, name) < 0)
        return -ENAMETOOLONG;
    if (mkdir(cg->path[0], 0755) < 0) {
        r = fail(reterr, errsize, -errno, "cannot create", cg->path[0]);
        cg->path[0][0] = '\0';
        return r;
    }
    cg->version = 2;
    if ((r = set_limits(lim, cg, reterr, errsize)) < 0)
        return r;
    cg->fd = open(cg->path[0], O_DIRECTORY | O_PATH | O_CLOEXEC);
    if (cg->fd < 0)
        return fail(reterr, errsize, -errno, "cannot open", cg->path[0]);
    return 0;
}

static int create_v1(const struct cgroup_limits *lim, const char *name, struct bb_cgroup *cg,
                     char *reterr, size_t errsize)
{
    const char *root = cgroup_root();
    bool need[CGROUP_CTL_MAX];
    int r;

    needed_controllers(lim, need);
    cg->version = 1;
    for (size_t i = 0; i < CGROUP_CTL_MAX; i++) {
        char mnt[PATH_MAX], own[PATH_MAX], parent[PATH_MAX + 16];
        if (!need[i])
            continue;
        if (str_printf(mnt, sizeof(mnt), "%s/%s", root, ctl_names[i]) < 0)
            return -ENAMETOOLONG;
        if (!fs_is(mnt, CGROUP_SUPER_MAGIC) || own_cgroup(ctl_names[i], own, sizeof(own)) < 0) {
            (void)str_printf(reterr, errsize, "no cgroup v1 %s hierarchy at %s", ctl_names[i], mnt);
            return -EOPNOTSUPP;
        }
        if (str_printf(parent, sizeof(parent), "%s%s/" CGROUP_DIR, mnt, own) < 0 ||
            str_printf(cg->path[i], sizeof(cg->path[i]), "%s/%s", parent, name) < 0)
            return -ENAMETOOLONG;
        if ((r = make_dir(parent)) < 0) {
            cg->path[i][0] = '\0';
            return fail(reterr, errsize, r, "cannot create", parent);
        }
        reclaim_stale(parent);
        if (mkdir(cg->path[i], 0755) < 0) {
            r = fail(reterr, errsize, -errno, "cannot create", cg->path[i]);
            cg->path[i][0] = '\0';
            return r;
        }
    }
    return set_limits(lim, cg, reterr, errsize);
}

int cgroup_create(const struct cgroup_limits *lim, const char *name, struct bb_cgroup *cg,
                  char *reterr, size_t errsize)
{
    const char *root = cgroup_root();
    int r;

    cgroup_init(cg);
    reterr[0] = '\0';
    if (!lim->pids_max && !lim->memory_bytes && !lim->cpus_milli)
        return 0;
    /* v2 when the root is the unified hierarchy; else the v1 hierarchies below it (a hybrid
     * setup's empty /sys/fs/cgroup/unified has no controllers to offer). */
    if (fs_is(root, CGROUP2_SUPER_MAGIC))
        r = create_v2(lim, name, cg, reterr, errsize);
    else
        r = create_v1(lim, name, cg, reterr, errsize);
    if (r < 0) {
        if (!reterr[0])
            (void)str_printf(reterr, errsize, "%s", strerror(-r));
        (void)cgroup_remove(cg, NULL);
    }
    return r;
}

int cgroup_attach(const struct bb_cgroup *cg, pid_t pid)
{
    char val[24];
    int r;

    (void)str_printf(val, sizeof(val), "%d", (int)pid);
    for (size_t i = 0; i < CGROUP_CTL_MAX; i++)
        if (cg->path[i][0] && (r = write_str(cg->path[i], "cgroup.procs", val)) < 0)
            return r;
    return 0;
}

int cgroup_open_tasks(const struct bb_cgroup *cg, int ret_fds[CGROUP_CTL_MAX])
{
    for (size_t i = 0; i < CGROUP_CTL_MAX; i++)
        ret_fds[i] = -1;
    for (size_t i = 0; i < CGROUP_CTL_MAX; i++) {
        char path[PATH_MAX + 64];
        if (!cg->path[i][0])
            continue;
        if (str_printf(path, sizeof(path), "%s/tasks", cg->path[i]) < 0) {
            cgroup_close_tasks(ret_fds);
            return -ENAMETOOLONG;
        }
        ret_fds[i] = open(path, O_WRONLY | O_CLOEXEC);
        if (ret_fds[i] < 0) {
            int r = -errno;
            cgroup_close_tasks(ret_fds);
            return r;
        }
    }
    return 0;
}

int cgroup_enter_self(const int fds[CGROUP_CTL_MAX])
{
    for (size_t i = 0; i < CGROUP_CTL_MAX; i++) {
        ssize_t w = fds[i] >= 0 ? write(fds[i], "0", 1) : 1;
        if (w != 1)
            return w < 0 ? -errno : -EIO;
    }
    return 0;
}

void cgroup_close_tasks(int fds[CGROUP_CTL_MAX])
{
    for (size_t i = 0; i < CGROUP_CTL_MAX; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        fds[i] = -1;
    }
}

/* rmdir, retried for up to 2 s while the bottle's last processes are still leaving (a pid
 * namespace is torn down asynchronously: EBUSY for a moment). */
static int remove_dir(const char *path)
{
    const struct timespec ms20 = { 0, 20 * 1000 * 1000 };

    for (int tries = 0;; tries++) {
        if (rmdir(path) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY || tries == 100)
            return -errno;
        nanosleep(&ms20, NULL);
    }
}

int cgroup_remove(struct bb_cgroup *cg, const char **reterr_path)
{
    int ret = 0, r;

    if (cg->fd >= 0)
        close(cg->fd);
    cg->fd = -1;
    for (size_t i = 0; i < CGROUP_CTL_MAX; i++) {
        if (!cg->path[i][0])
            continue;
        r = remove_dir(cg->path[i]);
        if (r == 0) {
            cg->path[i][0] = '\0';
        } else if (!ret) {
            ret = r;
            if (reterr_path)
                *reterr_path = cg->path[i];
        }
    }
    if (!ret)
        cg->version = 0;
    return ret;
}

/*
 * Per-bottle cgroups (docs/namespace.md, "Limits"), shared by the backends: the namespace
 * backend puts bottle-init in it before it runs anything, the microvm backend will put QEMU
 * there the same way.
 *
 * cgroup v2: one cgroup, /sys/fs/cgroup/bot-bottle/NAME as root, else a child of our own
 * (delegated) cgroup; entered with clone3(CLONE_INTO_CGROUP) through `fd`.
 * cgroup v1: one cgroup per needed hierarchy (pids, memory, cpu), each
 * <mount>/<our own cgroup there>/bot-bottle/NAME, so the bottle also stays inside whatever
 * limits we run under; the namespace backend's child enters them itself before it execs
 * bottle-init (cgroup_enter_self), the microvm backend writes QEMU's pid to each cgroup.procs.
 *
 * The mount root is $BOT_BOTTLE_CGROUP_ROOT when set (tests point it at an empty directory to
 * see the "cannot enforce" path), else /sys/fs/cgroup.
 */
#pragma once

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cgroup_limits {
    uint64_t pids_max;     /* 0: none */
    uint64_t memory_bytes; /* 0: none; also caps tmpfs pages and swap */
    uint32_t cpus_milli;   /* 0: none; thousandths of a CPU */
};

enum { CGROUP_CTL_PIDS, CGROUP_CTL_MEMORY, CGROUP_CTL_CPU, CGROUP_CTL_MAX };

struct bb_cgroup {
    int version;                         /* 0: nothing created; 1 or 2 */
    char path[CGROUP_CTL_MAX][PATH_MAX]; /* v2: path[0] only; "": none */
    int fd;                              /* v2: O_PATH of path[0] (CLONE_INTO_CGROUP); else -1 */
};

/* A zeroed cgroup with fd = -1. */
void cgroup_init(struct bb_cgroup *cg);

/*
 * Creates the cgroup(s) named `name` (unique per bottle: the caller appends its pid) with the
 * limits set. All limits zero: nothing to do, 0. Returns 0 and fills *cg, or -errno with one
 * sentence in reterr saying what could not be done (the caller adds the fix); *cg is then
 * left with nothing created.
 */
int cgroup_create(const struct cgroup_limits *lim, const char *name, struct bb_cgroup *cg,
                  char *reterr, size_t errsize);

/* Moves pid into every cgroup of cg (v1; v2 when CLONE_INTO_CGROUP was not used). 0 or -errno. */
int cgroup_attach(const struct bb_cgroup *cg, pid_t pid);

/*
 * cgroup v1, the fast way in: cgroup_open_tasks opens the `tasks` file of each cgroup of cg
 * for writing (ret_fds[i] -1 where there is none), before the child is created; the child
 * then calls cgroup_enter_self (async-signal-safe: it writes "0" to each), which moves the
 * calling thread, the child's only one, into them. Writing a pid to cgroup.procs (what
 * cgroup_attach does) takes the kernel's global threadgroup lock, whose RCU grace period cost
 * 4 to 15 ms per bottle; a thread moving itself does not take it. The files are opened by the
 * caller, so the kernel checks the caller's permission, not the child's. Both return 0 or
 * -errno (cgroup_open_tasks then closes what it opened).
 */
int cgroup_open_tasks(const struct bb_cgroup *cg, int ret_fds[CGROUP_CTL_MAX]);
int cgroup_enter_self(const int fds[CGROUP_CTL_MAX]);
/* Closes the fds of cgroup_open_tasks (and sets them to -1). */
void cgroup_close_tasks(int fds[CGROUP_CTL_MAX]);

/* Removes the cgroup(s), waiting briefly for exiting processes to leave. Returns 0, or the
 * first error (the path is in reterr_path when not NULL). Idempotent. */
int cgroup_remove(struct bb_cgroup *cg, const char **reterr_path);

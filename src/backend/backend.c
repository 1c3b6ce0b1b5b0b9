/* Backend registry: select by name, list, probe; the `auto` order. */
#include "backend/backend.h"

#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/docker/docker.h"
#include "backend/microvm/microvm.h"
#include "backend/namespace/ns.h"
#include "backend/smolmachines/smolvm.h"
#include "common/macro.h"
#include "common/str.h"
#include "common/xalloc.h"

/* Strongest isolation first: `auto` tries them in this order (backend_choose). */
static const struct backend_ops *const backends[] = {
    &backend_microvm_ops,
    &backend_namespace_ops,
    /* BACKEND_NOT_AUTO: only by name */
    &backend_smolmachines_ops,
    &backend_docker_ops,
};

/* The process's root is not its mount namespace's root: a chroot, where the kernel refuses
 * CLONE_NEWUSER with EPERM. Told by PID 1's root where we may look at it, else by the mount
 * table: mount points are shown relative to our root, and no mount is at "/" in a chroot into
 * a plain directory. */
static bool in_chroot(void)
{
    struct stat self, init;
    FILE *f;
    char *line = NULL;
    size_t cap = 0;
    bool root_mounted = false;

    if (stat("/", &self) == 0 && stat("/proc/1/root/", &init) == 0)
        return self.st_dev != init.st_dev || self.st_ino != init.st_ino;
    f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return false;
    /* "ID PARENT MAJ:MIN ROOT MOUNT-POINT ..." */
    while (!root_mounted && getline(&line, &cap, f) > 0) {
        char *sp = line;
        for (int i = 0; i < 4 && sp; i++)
            sp = strchr(sp + 1, ' ');
        root_mounted = sp && strncmp(sp, " / ", 3) == 0;
    }
    free(line);
    fclose(f);
    return !root_mounted;
}

int backend_try_namespaces(uint64_t flags, const char *what, char *why, size_t n)
{
    struct clone_args a = { .flags = flags, .exit_signal = SIGCHLD };
    long pid = syscall(SYS_clone3, &a, sizeof(a));
    int e = errno, status;
    const char *hint = "";

    if (pid == 0)
        _exit(0);
    if (pid > 0) {
        while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR)
            ;
        return 0;
    }
    if (e == ENOSYS)
        hint = "; Linux 5.3 or newer is needed";
    else if (e == EPERM && (flags & CLONE_NEWUSER) && in_chroot())
        hint = ": this process runs in a chroot, where the kernel refuses new user namespaces; "
               "run bot-bottle outside the chroot (or in a container with a mount namespace of "
               "its own, which pivot_root gives)";
    else if (e == EPERM && geteuid() == 0)
        hint = ": refused by a policy (a container's seccomp profile or a security module); run "
               "bot-bottle on the host, or let the container create user namespaces";
    (void)str_printf(why, n, "creating %s failed (clone3: %s)%s", what, strerror(e), hint);
    return -e;
}

const struct backend_ops *const *backend_list(size_t *ret_n)
{
    *ret_n = ARRAY_SIZE(backends);
    return backends;
}

const struct backend_ops *backend_find(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(backends); i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}

void backend_probe_add_finding(struct backend_probe *p, const char *name, bool ok, const char *fmt,
                               ...)
{
    struct backend_finding *f;
    va_list ap;

    if (p->n_findings >= BACKEND_FINDINGS_MAX)
        return;
    f = &p->findings[p->n_findings++];
    f->name = name;
    f->ok = ok;
    va_start(ap, fmt);
    if (vsnprintf(f->text, sizeof(f->text), fmt, ap) < 0)
        f->text[0] = '\0';
    va_end(ap);
}

static const char *const source_names[] = {
    [BACKEND_SRC_FLAG] = "--backend",
    [BACKEND_SRC_ENV] = "BOT_BOTTLE_BACKEND",
    [BACKEND_SRC_CONFIG] = "[bottle] backend in the config",
    [BACKEND_SRC_DEFAULT] = "the default",
};

const char *backend_source_name(enum backend_source s)
{
    return (unsigned)s < ARRAY_SIZE(source_names) ? source_names[s] : "?";
}

const char *backend_resolve_name(const char *flag, const char *env, const char *config,
                                 enum backend_source *ret_source)
{
    if (flag && *flag) {
        *ret_source = BACKEND_SRC_FLAG;
        return flag;
    }
    if (env && *env) {
        *ret_source = BACKEND_SRC_ENV;
        return env;
    }
    if (config && *config) {
        *ret_source = BACKEND_SRC_CONFIG;
        return config;
    }
    *ret_source = BACKEND_SRC_DEFAULT;
    return BACKEND_DEFAULT;
}

void backend_names(char *buf, size_t size)
{
    size_t len = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(backends); i++) {
        (void)str_printf(buf + len, size - len, "%s, ", backends[i]->name);
        len = strlen(buf);
    }
    (void)str_printf(buf + len, size - len, "auto");
}

static int choose_auto(const struct backend_ops *const *list, size_t n,
                       const struct backend_paths *paths, struct backend_choice *ret)
{
    struct backend_probe probe;
    size_t slow_i = n, len = 0;
    int r;

    for (size_t i = 0; i < n; i++) {
        if (list[i]->flags & BACKEND_NOT_AUTO)
            continue;
        memset(&probe, 0, sizeof(probe));
        r = list[i]->probe(paths, &probe);
        if (r < 0) {
            probe.available = false;
            (void)str_printf(probe.reason, sizeof(probe.reason), "probing failed: %s",
                             strerror(-r));
        } else if (probe.available && !probe.slow) {
            ret->ops = list[i];
            ret->probe = probe;
            /* why the stronger ones were passed over is already in ret->why */
            (void)str_printf(ret->why + len, sizeof(ret->why) - len, "%s%s can run here (%s)",
                             len ? "; " : "", list[i]->name, probe.reason);
            return 0;
        } else if (probe.available && slow_i == n) {
            slow_i = i;
            ret->probe = probe;
        }
        (void)str_printf(ret->why + len, sizeof(ret->why) - len, "%s%s %s (%s)", len ? "; " : "",
                         list[i]->name, probe.available ? "would be slow" : "cannot run here",
                         probe.reason);
        len = strlen(ret->why);
    }
    if (slow_i < n) {
        ret->ops = list[slow_i];
        (void)str_printf(ret->why + len, sizeof(ret->why) - len,
                         "; %s is the only one that can run here (emulated: slow)",
                         list[slow_i]->name);
        return 0;
    }
    memset(&ret->probe, 0, sizeof(ret->probe));
    return -EOPNOTSUPP;
}

int backend_choose(const struct backend_ops *const *list, size_t n, const char *name,
                   const struct backend_paths *paths, struct backend_choice *ret)
{
    const struct backend_ops *ops = NULL;
    int r;

    memset(ret, 0, sizeof(*ret));
    if (strcmp(name, "auto") == 0)
        return choose_auto(list, n, paths, ret);
    for (size_t i = 0; i < n && !ops; i++)
        if (strcmp(list[i]->name, name) == 0)
            ops = list[i];
    if (!ops)
        return -ENOENT;
    r = ops->probe(paths, &ret->probe);
    if (r < 0)
        return r;
    if (!ret->probe.available)
        return -EOPNOTSUPP;
    ret->ops = ops;
    return 0;
}

int backend_select(const char *name, const struct backend_paths *paths,
                   const struct backend_ops **ret, struct backend_probe *reterr_probe)
{
    struct backend_choice *c = xcalloc(1, sizeof(*c));
    int r;

    r = backend_choose(backends, ARRAY_SIZE(backends), name, paths, c);
    if (reterr_probe) {
        *reterr_probe = c->probe;
        if (r == -EOPNOTSUPP && strcmp(name, "auto") == 0)
            (void)str_printf(reterr_probe->reason, sizeof(reterr_probe->reason),
                             "no backend can run here: %s", c->why);
    }
    if (r == 0)
        *ret = c->ops;
    free(c);
    return r;
}

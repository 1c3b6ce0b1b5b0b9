/* Confinement and exec of a bottle's commands (command.h). */
#include "guest/command.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/macro.h"

/*
 * Drops every capability for good: bounding set, ambient set, securebits that stop uid 0
 * from regaining any on exec, then the ids, then the permitted/effective/inheritable sets.
 */
int guest_drop_privileges(uint32_t uid, uint32_t gid_)
{
    struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];
    gid_t gid = gid_;

    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -errno;
    for (unsigned long cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL)
                break; /* past the kernel's last capability */
            return -errno;
        }
    if (prctl(PR_SET_SECUREBITS,
              SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                  SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                  SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
              0, 0, 0) < 0)
        return -errno;
    /* setgroups is denied in an unprivileged user namespace ("deny" in /proc/self/setgroups):
     * the supplementary groups are then the (unmapped) host ones, shown as nogroup. */
    if (setgroups(1, &gid) < 0 && errno != EPERM)
        return -errno;
    if (setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
        return -errno;
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -errno;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    /* Verify rather than trust: all sets must read back empty. */
    if (syscall(SYS_capget, &hdr, data) < 0)
        return -errno;
    for (size_t i = 0; i < ARRAY_SIZE(data); i++)
        if (data[i].effective || data[i].permitted || data[i].inheritable)
            return -EPERM;
    return 0;
}

static const char *env_get(char **envp, const char *name)
{
    size_t n = strlen(name);

    for (char **e = envp; *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

/* execvpe() with PATH taken from the command's environment, not ours. Returns -errno. */
int guest_exec_command(char *const argv[], char **envp)
{
    const char *path = env_get(envp, "PATH");
    bool saw_eacces = false;

    if (strchr(argv[0], '/')) {
        execve(argv[0], argv, envp);
        return -errno;
    }
    if (!path)
        path = "/usr/bin:/bin";
    for (const char *p = path;;) {
        const char *colon = strchr(p, ':');
        size_t dl = colon ? (size_t)(colon - p) : strlen(p);
        char full[PATH_MAX];

        if (dl == 0)
            dl = 1, p = ".";
        if (dl + 1 + strlen(argv[0]) < sizeof(full)) {
            memcpy(full, p, dl);
            full[dl] = '/';
            memcpy(full + dl + 1, argv[0], strlen(argv[0]) + 1);
            execve(full, argv, envp);
            switch (errno) {
            case EACCES:
                saw_eacces = true;
                break;
            case ENOENT:
            case ENOTDIR:
            case ELOOP:
            case ENAMETOOLONG:
            case ESTALE:
                break;
            default:
                return -errno;
            }
        }
        if (!colon)
            break;
        p = colon + 1;
    }
    return saw_eacces ? -EACCES : -ENOENT;
}

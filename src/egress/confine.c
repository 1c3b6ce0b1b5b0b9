#include "egress/confine.h"

#include <errno.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/macro.h"
#include "common/syscalls.h"

/* LeakSanitizer stops the world at exit with ptrace; sanitizer builds (tests only) keep it. */
#if defined(__SANITIZE_ADDRESS__)
#define BB_SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BB_SANITIZER_BUILD 1
#endif
#endif

/* On top of the common list (common/syscalls.h): the daemon never runs a program, never
 * creates namespaces, and has no use for personality flags. */
static const char *const daemon_denied[] = {
    "execve",
    "execveat",
    "unshare",
    "personality",
};

static int drop_caps(void)
{
    struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2] = { { 0 } };

    for (int cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL && errno != EPERM)
            return -errno;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -errno;
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -errno;
    return 0;
}

int egress_confine(void)
{
    scmp_filter_ctx ctx;
    int r;

    r = drop_caps();
    if (r < 0)
        return r;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return -ENOMEM;
    for (size_t i = 0; i < bb_n_denied_syscalls + ARRAY_SIZE(daemon_denied); i++) {
        const char *name = i < bb_n_denied_syscalls ? bb_denied_syscalls[i]
                                                    : daemon_denied[i - bb_n_denied_syscalls];
        int nr;
#ifdef BB_SANITIZER_BUILD
        if (strcmp(name, "ptrace") == 0)
            continue;
#endif
        nr = seccomp_syscall_resolve_name(name);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not on this architecture */
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
        if (r < 0)
            goto out;
    }
    r = seccomp_load(ctx);
out:
    seccomp_release(ctx);
    return r;
}

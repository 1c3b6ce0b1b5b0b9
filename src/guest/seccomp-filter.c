/* The bottle's seccomp filter. */
#include "common/syscalls.h"
#include "guest/seccomp-filter.h"

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <sys/ioctl.h>

#include "common/cleanup.h"
#include "common/macro.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

const unsigned long guest_seccomp_ns_flags[] = {
    CLONE_NEWUSER, CLONE_NEWNS,  CLONE_NEWPID,    CLONE_NEWNET,
    CLONE_NEWIPC,  CLONE_NEWUTS, CLONE_NEWCGROUP, CLONE_NEWTIME,
};
const size_t guest_seccomp_n_ns_flags = ARRAY_SIZE(guest_seccomp_ns_flags);

static void ctx_releasep(scmp_filter_ctx *c)
{
    if (*c)
        seccomp_release(*c);
}

/* Adds a rule for a syscall by name; names this architecture lacks are skipped. */
static int deny_name(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n_args,
                     const struct scmp_arg_cmp *args)
{
    int nr = seccomp_syscall_resolve_name(name);
    int r;

    if (nr == __NR_SCMP_ERROR)
        return 0;
    r = seccomp_rule_add_array(ctx, action, nr, n_args, args);
    /* A pseudo-syscall (negative) that no configured architecture has is not an error. */
    if (r < 0 && nr < 0)
        return 0;
    return r;
}

int guest_seccomp_build(int err, scmp_filter_ctx *ret)
{
    __attribute__((cleanup(ctx_releasep))) scmp_filter_ctx ctx = NULL;
    uint32_t deny = SCMP_ACT_ERRNO((uint32_t)err);
    int r;

    ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return -ENOMEM;
    if (seccomp_arch_native() == SCMP_ARCH_X86_64) {
        /* Without these, a 32-bit syscall would get the "bad arch" action instead. */
        r = seccomp_arch_add(ctx, SCMP_ARCH_X86);
        if (r < 0 && r != -EEXIST)
            return r;
        r = seccomp_arch_add(ctx, SCMP_ARCH_X32);
        if (r < 0 && r != -EEXIST)
            return r;
    }
    for (size_t i = 0; i < bb_n_denied_syscalls; i++) {
        r = deny_name(ctx, deny, bb_denied_syscalls[i], 0, NULL);
        if (r < 0)
            return r;
    }
    /* A rule's comparisons are ANDed, so "any namespace flag" is one rule per flag. */
    for (size_t i = 0; i < guest_seccomp_n_ns_flags; i++) {
        struct scmp_arg_cmp a =
            SCMP_A0(SCMP_CMP_MASKED_EQ, guest_seccomp_ns_flags[i], guest_seccomp_ns_flags[i]);
        r = deny_name(ctx, deny, "unshare", 1, &a);
        if (r >= 0)
            r = deny_name(ctx, deny, "clone", 1, &a);
        if (r < 0)
            return r;
    }
    r = deny_name(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL);
    if (r < 0)
        return r;
    /* TIOCSTI pushes bytes into a terminal's input: a bottle sharing the user's terminal
     * could type commands into the host shell. The command number is 32 bits. */
    {
        struct scmp_arg_cmp sti = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI);
        struct scmp_arg_cmp lnx = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX);
        r = deny_name(ctx, deny, "ioctl", 1, &sti);
        if (r >= 0)
            r = deny_name(ctx, deny, "ioctl", 1, &lnx);
        if (r < 0)
            return r;
    }
    *ret = TAKE_PTR(ctx);
    return 0;
}

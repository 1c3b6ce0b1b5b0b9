/* The bottle's seccomp filter. */
#include "common/syscalls.h"
#include "guest/seccomp-filter.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

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

const struct guest_seccomp_mode_call guest_seccomp_mode_calls[] = {
    { "chmod", 1, -1 },   { "fchmod", 1, -1 }, { "fchmodat", 2, -1 }, { "fchmodat2", 2, -1 },
    { "creat", 1, -1 },   { "mkdir", 1, -1 },  { "mkdirat", 2, -1 },  { "mknod", 1, -1 },
    { "mknodat", 2, -1 }, { "open", 2, 1 },    { "openat", 3, 2 },
};
const size_t guest_seccomp_n_mode_calls = ARRAY_SIZE(guest_seccomp_mode_calls);

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

/*
 * Refuses S_ISUID and S_ISGID in the mode argument of every call that sets or creates a mode
 * (the bottle's uid 0 may be host root, and the workspace is the host's: a setuid file left
 * there is a host escape). open/openat use the mode only with O_CREAT or O_TMPFILE, so only
 * those are refused; the kernel reads modes as 16 bits, so the masks see what it sees.
 */
static int deny_setid_modes(scmp_filter_ctx ctx, uint32_t deny)
{
    static const unsigned long bits[] = { S_ISUID, S_ISGID };
    /* The bit the kernel tests for O_TMPFILE (O_TMPFILE also includes O_DIRECTORY). */
    static const unsigned long creat_flags[] = { O_CREAT, O_TMPFILE & ~O_DIRECTORY };
    int r;

    for (size_t i = 0; i < guest_seccomp_n_mode_calls; i++) {
        const struct guest_seccomp_mode_call *c = &guest_seccomp_mode_calls[i];
        for (size_t b = 0; b < ARRAY_SIZE(bits); b++) {
            struct scmp_arg_cmp a[2] = {
                { .arg = (unsigned)c->mode_arg,
                  .op = SCMP_CMP_MASKED_EQ,
                  .datum_a = bits[b],
                  .datum_b = bits[b] },
            };
            if (c->flags_arg < 0) {
                r = deny_name(ctx, deny, c->name, 1, a);
                if (r < 0)
                    return r;
                continue;
            }
            for (size_t f = 0; f < ARRAY_SIZE(creat_flags); f++) {
                a[1] = (struct scmp_arg_cmp){ .arg = (unsigned)c->flags_arg,
                                              .op = SCMP_CMP_MASKED_EQ,
                                              .datum_a = creat_flags[f],
                                              .datum_b = creat_flags[f] };
                r = deny_name(ctx, deny, c->name, 2, a);
                if (r < 0)
                    return r;
            }
        }
    }
    /* openat2's mode is in a struct a filter cannot read: ENOSYS, and libc falls back to
     * openat, whose mode it can. */
    return deny_name(ctx, SCMP_ACT_ERRNO(ENOSYS), "openat2", 0, NULL);
}

/*
 * Socket families by list: AF_UNIX, AF_INET, AF_INET6, and AF_NETLINK with NETLINK_ROUTE only
 * (socketpair: AF_UNIX only). Everything else (AF_VSOCK to the hypervisor, AF_PACKET, AF_ALG,
 * ...) fails with af_err. The comparisons are on the full 64-bit argument, so a family with
 * garbage in the upper half (which the kernel would truncate to an allowed int) is refused.
 */
static int deny_socket_families(scmp_filter_ctx ctx, uint32_t af_deny)
{
    /* The gaps around the allowed families 1, 2, 10 and 16, as [lo, hi] (hi ~0: no end). */
    static const struct {
        unsigned long lo, hi;
    } socket_gaps[] = { { AF_UNSPEC, AF_UNSPEC },
                        { AF_INET + 1, AF_INET6 - 1 },
                        { AF_INET6 + 1, AF_NETLINK - 1 },
                        { AF_NETLINK + 1, ~0UL } };
    struct scmp_arg_cmp a[2];
    int r;

    _Static_assert(AF_UNIX == 1 && AF_INET == 2 && AF_INET6 == 10 && AF_NETLINK == 16,
                   "socket family numbers");
    for (size_t i = 0; i < ARRAY_SIZE(socket_gaps); i++) {
        unsigned long hi = socket_gaps[i].hi;
        if (hi == ~0UL) {
            a[0] = SCMP_A0(SCMP_CMP_GE, socket_gaps[i].lo);
            r = deny_name(ctx, af_deny, "socket", 1, a);
            if (r < 0)
                return r;
            continue;
        }
        for (unsigned long v = socket_gaps[i].lo; v <= hi; v++) {
            a[0] = SCMP_A0(SCMP_CMP_EQ, v);
            r = deny_name(ctx, af_deny, "socket", 1, a);
            if (r < 0)
                return r;
        }
    }
    /* Netlink: only the routing protocol (addresses and routes; the others reach audit,
     * uevents, socket diagnostics of the host's kernel, ...). */
    a[0] = SCMP_A0(SCMP_CMP_EQ, AF_NETLINK);
    a[1] = SCMP_A2(SCMP_CMP_NE, NETLINK_ROUTE);
    r = deny_name(ctx, af_deny, "socket", 2, a);
    if (r < 0)
        return r;
    a[0] = SCMP_A0(SCMP_CMP_EQ, AF_UNSPEC);
    r = deny_name(ctx, af_deny, "socketpair", 1, a);
    if (r < 0)
        return r;
    a[0] = SCMP_A0(SCMP_CMP_GE, AF_UNIX + 1);
    r = deny_name(ctx, af_deny, "socketpair", 1, a);
    if (r < 0)
        return r;
    /* i386's socketcall multiplexes every socket call with its arguments in memory: ENOSYS,
     * and libc uses the direct socket syscalls the rules above see. */
    return deny_name(ctx, SCMP_ACT_ERRNO(ENOSYS), "socketcall", 0, NULL);
}

int guest_seccomp_build(int err, int af_err, scmp_filter_ctx *ret)
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
     * could type commands into the host shell. TIOCSETD changes the line discipline of the
     * bottle's pty (-t), which makes the host kernel autoload tty-ldisc modules (n_gsm,
     * n_hdlc, ppp: a history of privilege escalations) when dev.tty.ldisc_autoload is 1, as
     * on Debian. The command number is 32 bits. */
    {
        static const unsigned long tty_denied[] = { TIOCSTI, TIOCLINUX, TIOCSETD };
        for (size_t i = 0; i < ARRAY_SIZE(tty_denied); i++) {
            struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, tty_denied[i]);
            r = deny_name(ctx, deny, "ioctl", 1, &c);
            if (r < 0)
                return r;
        }
    }
    r = deny_setid_modes(ctx, deny);
    if (r >= 0)
        r = deny_socket_families(ctx, SCMP_ACT_ERRNO((uint32_t)af_err));
    if (r < 0)
        return r;
    *ret = TAKE_PTR(ctx);
    return 0;
}

int guest_seccomp_export(int err, int af_err, void **ret, size_t *ret_len)
{
    __attribute__((cleanup(ctx_releasep))) scmp_filter_ctx ctx = NULL;
    _cleanup_close_ int fd = -1;
    struct stat st;
    char *p;
    size_t got = 0;
    int r;

    r = guest_seccomp_build(err, af_err, &ctx);
    if (r < 0)
        return r;
    fd = memfd_create("bb-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    r = seccomp_export_bpf(ctx, fd);
    if (r < 0)
        return r;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (st.st_size <= 0 || st.st_size % 8 || (size_t)st.st_size > GUEST_SECCOMP_BPF_MAX)
        return -E2BIG;
    p = malloc((size_t)st.st_size);
    if (!p)
        return -ENOMEM;
    while (got < (size_t)st.st_size) {
        ssize_t n = pread(fd, p + got, (size_t)st.st_size - got, (off_t)got);
        if (n <= 0) {
            r = n < 0 ? -errno : -EIO;
            free(p);
            return r;
        }
        got += (size_t)n;
    }
    *ret = p;
    *ret_len = got;
    return 0;
}

int guest_seccomp_load_bpf(const void *prog, size_t len)
{
    struct sock_fprog fp = { .len = (unsigned short)(len / sizeof(struct sock_filter)),
                             .filter = (struct sock_filter *)prog };

    if (!prog || len == 0 || len % sizeof(struct sock_filter) || len > GUEST_SECCOMP_BPF_MAX)
        return -EINVAL;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp) < 0)
        return -errno;
    return 0;
}

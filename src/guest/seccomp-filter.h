/*
 * The bottle's seccomp filter (libseccomp), applied by bottle-init in the command's process
 * just before exec. Denied calls fail with an errno (EPERM in production) instead of killing
 * the process, so tools degrade gracefully. See docs/bottle-init.md for the list and why.
 */
#pragma once

#include <seccomp.h>
#include <stddef.h>

/* Syscalls denied outright: bb_denied_syscalls (common/syscalls.h). */

/* The namespace flags refused by unshare(2) and clone(2) (any one of them denies the call). */
extern const unsigned long guest_seccomp_ns_flags[];
extern const size_t guest_seccomp_n_ns_flags;

/*
 * The calls whose mode argument may not carry S_ISUID or S_ISGID: the argument index of the
 * mode and, for open/openat, of the flags (the mode only counts with O_CREAT or O_TMPFILE;
 * -1: always).
 */
struct guest_seccomp_mode_call {
    const char *name;
    int mode_arg;
    int flags_arg;
};
extern const struct guest_seccomp_mode_call guest_seccomp_mode_calls[];
extern const size_t guest_seccomp_n_mode_calls;

/*
 * Builds the filter: default allow; these fail with `err`:
 *  - every bb_denied_syscalls call, unshare/clone with any namespace flag, ioctl
 *    TIOCSTI/TIOCLINUX;
 *  - S_ISUID/S_ISGID in the mode of guest_seccomp_mode_calls;
 * these with `af_err` (EAFNOSUPPORT in production):
 *  - socket() of any family but AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK/NETLINK_ROUTE;
 *    socketpair() of any but AF_UNIX;
 * and these with ENOSYS, because their arguments live in memory a filter cannot read and libc
 * falls back to a call it can: clone3 (to clone), openat2 (to openat), socketcall (i386; to
 * the direct socket calls). On x86_64 the same rules cover the i386 and x32 ABIs. Returns 0
 * and *ret (the caller owns it: load with seccomp_load(), free with seccomp_release()) or a
 * negative errno.
 */
int guest_seccomp_build(int err, int af_err, scmp_filter_ctx *ret);

/*
 * The same filter as a classic BPF program, exactly what seccomp_load() of
 * guest_seccomp_build()'s context installs (libseccomp's seccomp_export_bpf). The microvm
 * backend builds it on the host, where libseccomp runs natively, and ships it in the
 * initramfs (GUEST_VM_SECCOMP): a TCG guest then only loads it (guest_seccomp_load_bpf)
 * instead of building and compiling the rules under emulation. Returns 0 and *ret (malloc'd,
 * *ret_len bytes, a multiple of 8) or a negative errno.
 */
int guest_seccomp_export(int err, int af_err, void **ret, size_t *ret_len);

/* Longest program the kernel accepts (BPF_MAXINSNS instructions of 8 bytes). */
#define GUEST_SECCOMP_BPF_MAX (4096u * 8u)

/*
 * Installs an exported program in the calling thread as seccomp_load() does with the default
 * attributes: no_new_privs set, then seccomp(SECCOMP_SET_MODE_FILTER) with no flags. Returns
 * 0 or a negative errno (-EINVAL for a length that is not a whole program).
 */
int guest_seccomp_load_bpf(const void *prog, size_t len);

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
 * Builds the filter: default allow; every bb_denied_syscalls call, unshare/clone with any
 * namespace flag, and ioctl TIOCSTI/TIOCLINUX fail with `err`; clone3 fails with ENOSYS (its
 * flags live in memory a filter cannot read, and libc falls back to clone). On x86_64 the
 * same rules cover the i386 and x32 ABIs. Returns 0 and *ret (the caller owns it: load with
 * seccomp_load(), free with seccomp_release()) or a negative errno.
 */
int guest_seccomp_build(int err, scmp_filter_ctx *ret);

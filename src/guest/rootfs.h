/*
 * The bottle's root file system plan, executed by bottle-init (see docs/bottle-init.md):
 * a tmpfs root holding the host's /usr read-only (plus the /bin, /lib, ... links), a
 * generated /etc, a new /proc with the host-wide knobs masked, a minimal /dev, tmpfs /tmp and
 * $HOME, the workspace read-write at its host path, the extra mounts, and nothing else.
 */
#pragma once

#include "guest/spec.h"

/* Public host files copied into the bottle's generated /etc (never anything with secrets). The
 * microvm backend puts them into the guest's initramfs under GUEST_VM_ETC. */
#define GUEST_ETC_PUBLIC_FILES                                                                     \
    "ssl/certs/ca-certificates.crt", "ld.so.cache", "protocols", "services", "localtime"

/*
 * In a microVM (spec `rootfs 9p`) the guest has no host paths: the spec and the host's public
 * /etc files arrive in the initramfs (backend/microvm/initramfs.h writes them), host
 * directories as 9p shares with these tags (the backend creates them in this order).
 */
#define GUEST_VM_SPEC "/bottle/spec"
#define GUEST_VM_ETC "/bottle/etc"
/* The bottle's seccomp program, built on the host (guest_seccomp_export). */
#define GUEST_VM_SECCOMP "/bottle/seccomp.bpf"
#define GUEST_9P_TAG_USR "usr"
#define GUEST_9P_TAG_WORKSPACE "ws"
#define GUEST_9P_TAG_MOUNT_FMT "m%zu" /* the i-th `mount` record of the spec, from 0 */

/*
 * Builds the root and pivots into it. Needs CAP_SYS_ADMIN over the current mount namespace
 * (which must be private to the bottle) and an owned pid namespace for /proc. On success the
 * old root is detached, the root tmpfs is read-only and the cwd is the workspace. Returns 0
 * or a negative errno with *reterr_what naming the failed step (static string).
 */
/* Start-up tracing (bench/microvm-run.sh --trace): called with a stage name at each step of
 * guest_rootfs_setup when set (a VM's init sets it with bbtrace=1). */
extern void (*guest_rootfs_trace)(const char *stage);
/* Called once /usr is mounted (detached, not yet in place) with that tree's fd, when set: a
 * microVM's bottle-init starts warming its page cache there (init.c, vm_prefetch). */
extern void (*guest_rootfs_usr_ready)(int usr_fd);

int guest_rootfs_setup(const struct bottle_spec *s, const char **reterr_what);

/*
 * Writes the generated /etc files (passwd, group, hosts, resolv.conf, nsswitch.conf,
 * hostname) into the directory dirfd. Exposed for tests. Returns 0 or a negative errno.
 */
int guest_rootfs_write_etc(int dirfd, const struct bottle_spec *s);

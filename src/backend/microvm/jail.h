/*
 * QEMU's jail (docs/microvm.md, "QEMU's jail"): what the microvm backend's child does between
 * clone3() and exec so that a compromised QEMU (a virtio or 9p bug exploited by a hostile
 * guest kernel) reaches no more than the bottle itself.
 *
 * - Namespaces: its own user namespace mapping only QEMU's uid and gid to themselves, pid,
 *   mount, network (no interface), IPC, UTS and cgroup namespaces (clone3 flags).
 * - A minimal root: a read-only tmpfs holding /usr (read-only), the merged-/usr symlinks,
 *   /etc/ld.so.cache, the guest kernel and QEMU binary when /usr does not hold them (read-only),
 *   the bottle's run directory (read-only: the initramfs and the two sockets), /dev/null,
 *   /dev/urandom, /dev/kvm under KVM, and a /proc of its own pid namespace (subset=pid) (9p's chmod
 * goes through /proc/self/fd). The shares are not in the tree: QEMU gets each as a private detached
 * copy of the host mount (jail_share), read-only for read-only shares.
 * - No capabilities in any namespace (empty bounding set, no ambient, SECBIT_NOROOT),
 *   no_new_privs, no core dumps, and a seccomp filter (jail_build_filter) under QEMU's own
 *   -sandbox that refuses what a 9p server must never do here.
 *
 * Without user namespaces (an unprivileged invoker on a host that forbids them) QEMU runs
 * with no_new_privs, the rlimits and the seccomp filter only, and start() says so once.
 */
#pragma once

#include <limits.h>
#include <linux/filter.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define JAIL_FILTER_MAX 320
#define JAIL_MAX_SHARES 66 /* the workspace and every --mount */

/*
 * A share as QEMU sees it: the host directory src bound at /shares/N in the jail's root
 * (checked to be the directory fd names), nosuid, nodev, read-only when ro, with each of the
 * protect paths (relative to src) bound read-only over itself, so that not even a compromised
 * guest kernel driving QEMU's 9p server can write what the host runs later (.git/config,
 * .git/hooks, ...: supervisor/protect.h). fd is then that bind's directory, at the same number.
 */
struct jail_share_view {
    const char *src;
    char at[24]; /* "/shares/N" (made by the parent: the child formats nothing) */
    int fd;
    bool ro;
    bool detached; /* fd is jail_share()'s private copy: moved into place, not bound by path
                    * (QEMU's uid may not be able to walk to src) */
    const char *protect[64];
    size_t n_protect;
};

struct microvm_jail {
    bool ns;        /* namespaces and the minimal root (false: filter, rlimits only) */
    bool kvm;       /* bind /dev/kvm */
    bool setgroups; /* the parent is root: the child may (must) set its groups */
    uid_t uid;      /* QEMU's uid and gid (mapped to themselves) */
    gid_t gid;
    char root[PATH_MAX]; /* an empty directory the tmpfs root is mounted on */
    const char *run_dir; /* the bottle's run directory (initramfs, sockets) */
    const char *qemu;    /* QEMU's binary (bound read-only when outside /usr) */
    const char *kernel;  /* the guest kernel (likewise) */
    struct sock_filter filter[JAIL_FILTER_MAX];
    unsigned short n_filter;
    struct jail_share_view shares[JAIL_MAX_SHARES];
    size_t n_shares;
};

/* Builds the seccomp filter for QEMU running as uid/gid (chown is limited to them).
 * 0 or -E2BIG. */
int jail_build_filter(struct microvm_jail *j);

/*
 * A share for QEMU: replaces *fd (an O_PATH directory) by a private, detached copy of its
 * mount tree (open_tree OPEN_TREE_CLONE), nosuid and nodev, read-only when ro, so QEMU can
 * neither write a read-only share nor see anything of the host's mount table. Needs
 * CAP_SYS_ADMIN (root); without it *fd is kept (-EPERM is returned, and QEMU's readonly=on is
 * then the only write protection of a read-only share). 0 or -errno.
 */
int jail_share(int *fd, bool ro);

/* clone3() flags for the jail (0 without it). */
uint64_t jail_clone_flags(const struct microvm_jail *j);

/* In the parent after clone3(): writes the child's uid and gid maps. 0 or -errno. */
int jail_map_ids(const struct microvm_jail *j, pid_t pid);

/*
 * In the child (async-signal-safe), after the id maps are written and stdio is in place:
 * switches to QEMU's ids, builds and enters the minimal root, drops every capability, sets
 * rlimits and no_new_privs and installs the filter. On failure returns -errno and sets *step
 * to what failed.
 */
int jail_enter(const struct microvm_jail *j, const char **step);

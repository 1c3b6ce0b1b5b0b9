/* QEMU's jail (jail.h, docs/microvm.md "QEMU's jail"). */
#include "backend/microvm/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/macro.h"
#include "common/str.h"

#ifndef __NR_fchmodat2
#define __NR_fchmodat2 452
#endif
#ifndef __NR_setxattrat
#define __NR_setxattrat 463
#endif
#ifndef __NR_removexattrat
#define __NR_removexattrat 466
#endif
#ifndef SECBIT_NOROOT
#define SECBIT_NOROOT (1 << 0)
#define SECBIT_NOROOT_LOCKED (1 << 1)
#define SECBIT_NO_SETUID_FIXUP_LOCKED (1 << 3)
#define SECBIT_KEEP_CAPS_LOCKED (1 << 5)
#endif
#ifndef __O_TMPFILE
#define __O_TMPFILE 020000000
#endif

/* ---- the seccomp filter ---- */

struct bpf {
    struct sock_filter *f;
    size_t n, max;
    int err;
};

static void emit(struct bpf *p, unsigned short code, unsigned char jt, unsigned char jf, uint32_t k)
{
    if (p->n >= p->max) {
        p->err = -E2BIG;
        return;
    }
    p->f[p->n++] = (struct sock_filter){ code, jt, jf, k };
}

#define LD_ABS(off) (BPF_LD | BPF_W | BPF_ABS), 0, 0, (uint32_t)(off)
#define RET(v) (BPF_RET | BPF_K), 0, 0, (uint32_t)(v)
#define ERR(e) (SECCOMP_RET_ERRNO | ((uint32_t)(e)&SECCOMP_RET_DATA))
/* The low 32 bits of argument i (little-endian): all the kernel reads of a mode, a uid, an
 * int flag word or an ioctl number. */
#define ARG(i) (offsetof(struct seccomp_data, args) + (size_t)(i) * sizeof(uint64_t))
#define SETID_BITS (S_ISUID | S_ISGID)

/* Syscalls QEMU never makes here, refused outright: with the errno they get. */
static const struct {
    int nr;
    int err;
} denied[] = {
    /* reaching into other processes */
    { __NR_ptrace, EPERM },
    { __NR_process_vm_readv, EPERM },
    { __NR_process_vm_writev, EPERM },
    { __NR_kcmp, EPERM },
    { __NR_pidfd_getfd, EPERM },
    /* the kernel itself */
    { __NR_init_module, EPERM },
    { __NR_finit_module, EPERM },
    { __NR_delete_module, EPERM },
    { __NR_kexec_load, EPERM },
    { __NR_kexec_file_load, EPERM },
    { __NR_bpf, EPERM },
    { __NR_perf_event_open, EPERM },
    { __NR_userfaultfd, EPERM },
    { __NR_keyctl, EPERM },
    { __NR_add_key, EPERM },
    { __NR_request_key, EPERM },
    { __NR_reboot, EPERM },
    { __NR_swapon, EPERM },
    { __NR_swapoff, EPERM },
    { __NR_acct, EPERM },
    { __NR_quotactl, EPERM },
    { __NR_syslog, EPERM },
    { __NR_iopl, EPERM },
    { __NR_ioperm, EPERM },
    { __NR_lookup_dcookie, EPERM },
    { __NR_settimeofday, EPERM },
    { __NR_clock_settime, EPERM },
    { __NR_clock_adjtime, EPERM },
    { __NR_adjtimex, EPERM },
    { __NR_vhangup, EPERM },
    { __NR_uselib, EPERM },
    { __NR_fanotify_init, EPERM },
    /* the mount table and namespaces (the jail is final) */
    { __NR_mount, EPERM },
    { __NR_umount2, EPERM },
    { __NR_pivot_root, EPERM },
    { __NR_chroot, EPERM },
    { __NR_fsopen, EPERM },
    { __NR_fsconfig, EPERM },
    { __NR_fsmount, EPERM },
    { __NR_fspick, EPERM },
    { __NR_move_mount, EPERM },
    { __NR_open_tree, EPERM },
    { __NR_mount_setattr, EPERM },
    { __NR_unshare, EPERM },
    { __NR_setns, EPERM },
    { __NR_sethostname, EPERM },
    { __NR_setdomainname, EPERM },
    /* file handles bypass path-based confinement (the "shocker" escape) */
    { __NR_open_by_handle_at, EPERM },
    { __NR_name_to_handle_at, EPERM },
    /* identities and capabilities */
    { __NR_setuid, EPERM },
    { __NR_setgid, EPERM },
    { __NR_setreuid, EPERM },
    { __NR_setregid, EPERM },
    { __NR_setresuid, EPERM },
    { __NR_setresgid, EPERM },
    { __NR_setfsuid, EPERM },
    { __NR_setfsgid, EPERM },
    { __NR_setgroups, EPERM },
    { __NR_capset, EPERM },
    /* Extended attributes: the names are pointers a filter cannot read, and a 9p server
     * with security_model=none has no use for any but user.* (the guest mounts without
     * posixacl; QEMU itself answers security.* and trusted.* with EOPNOTSUPP). Setting
     * security.capability would give a workspace file host capabilities. Reading stays. */
    { __NR_setxattr, EOPNOTSUPP },
    { __NR_lsetxattr, EOPNOTSUPP },
    { __NR_fsetxattr, EOPNOTSUPP },
    { __NR_removexattr, EOPNOTSUPP },
    { __NR_lremovexattr, EOPNOTSUPP },
    { __NR_fremovexattr, EOPNOTSUPP },
    { __NR_setxattrat, EOPNOTSUPP },
    { __NR_removexattrat, EOPNOTSUPP },
    /* Calls whose arguments a filter cannot see, answered "not implemented" so that callers
     * fall back: clone3 (glibc then uses clone, whose flags are checked below), openat2 (its
     * mode is in a struct), io_uring (its operations, open and setxattr among them, bypass
     * seccomp; QEMU's event loop falls back to ppoll/epoll). */
    { __NR_clone3, ENOSYS },
    { __NR_openat2, ENOSYS },
    { __NR_io_uring_setup, ENOSYS },
    { __NR_io_uring_enter, ENOSYS },
    { __NR_io_uring_register, ENOSYS },
};

/* chmod-like calls: mode argument */
static const struct {
    int nr, mode;
} mode_calls[] = {
    { __NR_chmod, 1 },
    { __NR_fchmod, 1 },
    { __NR_fchmodat, 2 },
    { __NR_fchmodat2, 2 },
};

/*
 * chmod family, arg `mode`: S_ISUID is refused (EPERM). S_ISGID alone is answered 0 without
 * doing anything: the guest's v9fs asks for it on every directory created in a set-group-ID
 * directory (which the host's mkdir already made set-group-ID, as the guest expects), while
 * the guest's own seccomp filter refuses it to the command; so only a compromised QEMU or
 * guest kernel ever asks for it on a file, and then it gets a no-op.
 */
static void rule_mode(struct bpf *p, int nr, int mode)
{
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 6, (uint32_t)nr);
    emit(p, LD_ABS(ARG(mode)));
    emit(p, BPF_JMP | BPF_JSET | BPF_K, 2, 0, S_ISUID);
    emit(p, BPF_JMP | BPF_JSET | BPF_K, 2, 0, S_ISGID);
    emit(p, RET(SECCOMP_RET_ALLOW));
    emit(p, RET(ERR(EPERM)));
    emit(p, RET(ERR(0)));
}

/* open/openat: the mode counts only with O_CREAT or O_TMPFILE. */
static void rule_open(struct bpf *p, int nr, int flags, int mode)
{
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 6, (uint32_t)nr);
    emit(p, LD_ABS(ARG(flags)));
    emit(p, BPF_JMP | BPF_JSET | BPF_K, 0, 3, O_CREAT | __O_TMPFILE);
    emit(p, LD_ABS(ARG(mode)));
    emit(p, BPF_JMP | BPF_JSET | BPF_K, 0, 1, SETID_BITS);
    emit(p, RET(ERR(EPERM)));
    emit(p, RET(SECCOMP_RET_ALLOW));
}

/* mknod/mknodat: FIFOs, sockets and regular files (guest mkfifo), never a device, never a
 * set-id mode. */
static void rule_mknod(struct bpf *p, int nr, int mode)
{
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 7, (uint32_t)nr);
    emit(p, LD_ABS(ARG(mode)));
    emit(p, BPF_JMP | BPF_JSET | BPF_K, 4, 0, SETID_BITS);
    emit(p, BPF_ALU | BPF_AND | BPF_K, 0, 0, S_IFMT);
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 2, 0, S_IFCHR);
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, S_IFBLK);
    emit(p, RET(SECCOMP_RET_ALLOW));
    emit(p, RET(ERR(EPERM)));
}

/* chown family: only to QEMU's own uid and gid (or -1, unchanged). */
static void rule_chown(struct bpf *p, int nr, int u, int g, uid_t uid, gid_t gid)
{
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 8, (uint32_t)nr);
    emit(p, LD_ABS(ARG(u)));
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 0xffffffffU);
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 4, (uint32_t)uid);
    emit(p, LD_ABS(ARG(g)));
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 0xffffffffU);
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, (uint32_t)gid);
    emit(p, RET(SECCOMP_RET_ALLOW));
    emit(p, RET(ERR(EPERM)));
}

int jail_build_filter(struct microvm_jail *j)
{
    struct bpf p = { .f = j->filter, .n = 0, .max = ARRAY_SIZE(j->filter), .err = 0 };
    const uint32_t ns_flags = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
                              CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;

    /* x86-64 only: any other ABI (i386 through int 0x80) ends the process */
    emit(&p, LD_ABS(offsetof(struct seccomp_data, arch)));
    emit(&p, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, AUDIT_ARCH_X86_64);
    emit(&p, RET(SECCOMP_RET_KILL_PROCESS));
    emit(&p, LD_ABS(offsetof(struct seccomp_data, nr)));
    /* x32 numbers (bit 30) would reach the same syscalls under other numbers */
    emit(&p, BPF_JMP | BPF_JGE | BPF_K, 0, 1, 0x40000000U);
    emit(&p, RET(ERR(ENOSYS)));
    for (size_t i = 0; i < ARRAY_SIZE(denied); i++) {
        emit(&p, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, (uint32_t)denied[i].nr);
        emit(&p, RET(ERR(denied[i].err)));
    }
    /* Each block below starts with A = nr and ends in a RET when nr matches. */
    for (size_t i = 0; i < ARRAY_SIZE(mode_calls); i++)
        rule_mode(&p, mode_calls[i].nr, mode_calls[i].mode);
    /* creat: always creates */
    emit(&p, BPF_JMP | BPF_JEQ | BPF_K, 0, 4, __NR_creat);
    emit(&p, LD_ABS(ARG(1)));
    emit(&p, BPF_JMP | BPF_JSET | BPF_K, 0, 1, SETID_BITS);
    emit(&p, RET(ERR(EPERM)));
    emit(&p, RET(SECCOMP_RET_ALLOW));
    rule_open(&p, __NR_open, 1, 2);
    rule_open(&p, __NR_openat, 2, 3);
    rule_mknod(&p, __NR_mknod, 1);
    rule_mknod(&p, __NR_mknodat, 2);
    rule_chown(&p, __NR_chown, 1, 2, j->uid, j->gid);
    rule_chown(&p, __NR_lchown, 1, 2, j->uid, j->gid);
    rule_chown(&p, __NR_fchown, 1, 2, j->uid, j->gid);
    rule_chown(&p, __NR_fchownat, 2, 3, j->uid, j->gid);
    /* no network: unix sockets only (the chardevs) */
    emit(&p, BPF_JMP | BPF_JEQ | BPF_K, 0, 4, __NR_socket);
    emit(&p, LD_ABS(ARG(0)));
    emit(&p, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, AF_UNIX);
    emit(&p, RET(SECCOMP_RET_ALLOW));
    emit(&p, RET(ERR(EAFNOSUPPORT)));
    /* threads, never new namespaces */
    emit(&p, BPF_JMP | BPF_JEQ | BPF_K, 0, 4, __NR_clone);
    emit(&p, LD_ABS(ARG(0)));
    emit(&p, BPF_JMP | BPF_JSET | BPF_K, 0, 1, ns_flags);
    emit(&p, RET(ERR(EPERM)));
    emit(&p, RET(SECCOMP_RET_ALLOW));
    /* QEMU's stdio may be the user's terminal: no typing into it, no console tricks */
    emit(&p, BPF_JMP | BPF_JEQ | BPF_K, 0, 5, __NR_ioctl);
    emit(&p, LD_ABS(ARG(1)));
    emit(&p, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, TIOCSTI);
    emit(&p, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, TIOCLINUX);
    emit(&p, RET(ERR(EPERM)));
    emit(&p, RET(SECCOMP_RET_ALLOW));
    emit(&p, RET(SECCOMP_RET_ALLOW));
    if (p.err)
        return p.err;
    j->n_filter = (unsigned short)p.n;
    return 0;
}

/* ---- shares ---- */

int jail_share(int *fd, bool ro)
{
    struct mount_attr attr = {
        .attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (ro ? MOUNT_ATTR_RDONLY : 0),
    };
    int t = open_tree(*fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);

    if (t < 0)
        return -errno;
    if (mount_setattr(t, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0) {
        int e = -errno;
        close(t);
        return e;
    }
    close(*fd);
    *fd = t;
    return 0;
}

/* ---- namespaces ---- */

uint64_t jail_clone_flags(const struct microvm_jail *j)
{
    if (!j->ns)
        return 0;
    return CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
           CLONE_NEWCGROUP;
}

static int write_file(const char *path, const char *text)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -errno;
    n = write(fd, text, strlen(text));
    if (n < 0)
        return -errno;
    return (size_t)n == strlen(text) ? 0 : -EIO;
}

int jail_map_ids(const struct microvm_jail *j, pid_t pid)
{
    char path[64], line[64];
    int r;

    /* Unprivileged: the kernel lets us map our own ids only after refusing setgroups. */
    if (geteuid() != 0) {
        (void)str_printf(path, sizeof(path), "/proc/%d/setgroups", (int)pid);
        if ((r = write_file(path, "deny")) < 0)
            return r;
    }
    (void)str_printf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
    (void)str_printf(line, sizeof(line), "%u %u 1\n", (unsigned)j->uid, (unsigned)j->uid);
    if ((r = write_file(path, line)) < 0)
        return r;
    (void)str_printf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
    (void)str_printf(line, sizeof(line), "%u %u 1\n", (unsigned)j->gid, (unsigned)j->gid);
    return write_file(path, line);
}

/* ---- the child: async-signal-safe from here on ---- */

/* dst = root + path, for absolute paths. */
static int under(char *dst, size_t size, const char *root, const char *path)
{
    size_t a = strlen(root), b = strlen(path);

    if (path[0] != '/' || a + b + 1 > size)
        return -ENAMETOOLONG;
    memcpy(dst, root, a);
    memcpy(dst + a, path, b + 1);
    return 0;
}

/* mkdir -p of path below root (the tmpfs: nothing there is a symlink). The last component
 * becomes a directory, or an empty file when file. */
static int make_path(const char *root, const char *path, bool file)
{
    char p[PATH_MAX];
    size_t start = strlen(root) + 1;
    int r = under(p, sizeof(p), root, path);

    if (r < 0)
        return r;
    for (size_t i = start; p[i]; i++) {
        if (p[i] != '/')
            continue;
        p[i] = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return -errno;
        p[i] = '/';
    }
    if (file) {
        int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
            return -errno;
        close(fd);
    } else if (mkdir(p, 0755) < 0 && errno != EEXIST) {
        return -errno;
    }
    return 0;
}

/* Binds host path src at the same path below root, with attrs (MOUNT_ATTR_*). */
static int jbind(const char *root, const char *src, bool file, uint64_t attrs)
{
    struct mount_attr attr = { .attr_set = attrs };
    char dst[PATH_MAX];
    int r = under(dst, sizeof(dst), root, src);

    if (r < 0 || (r = make_path(root, src, file)) < 0)
        return r;
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
        return -errno;
    if (attrs && mount_setattr(AT_FDCWD, dst, AT_RECURSIVE, &attr, sizeof(attr)) < 0)
        return -errno;
    return 0;
}

/* A file the root already shows, e.g. through /usr or a merged-/usr symlink such as /bin. */
static bool visible(const char *root, const char *path)
{
    char p[PATH_MAX];
    struct stat st;

    return under(p, sizeof(p), root, path) == 0 && stat(p, &st) == 0;
}

#define RO (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)

/* rel beneath dirfd, never through a symlink: an O_PATH fd or -errno */
static int open_beneath(int dirfd, const char *rel)
{
    struct open_how how = {
        .flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));

    return fd < 0 ? -errno : fd;
}

/* Whether fd is the root of a mount (not only a directory on one). */
static bool is_mount_root(int fd)
{
    struct statx a, b;

    return statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &a) == 0 &&
           statx(fd, "..", AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &b) == 0 &&
           a.stx_mnt_id != b.stx_mnt_id;
}

/* The path at fd bound over itself with attrs (a copy of its mount, moved on top). */
static int bind_over(int fd, uint64_t attrs)
{
    struct mount_attr attr = { .attr_set = attrs };
    int t = open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
    int r = 0;

    if (t < 0)
        return -errno;
    if (mount_setattr(t, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0 ||
        move_mount(t, "", fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        r = -errno;
    close(t);
    return r;
}

/* A protect path: itself, or (missing) the deepest part of it that exists, which is the
 * placeholder the supervisor made for it (protect.h), bound read-only; and, as bottle-init does
 * in the guest (docs/workspace.md), every directory between the share's root and it a mount
 * point of its own (writable), which rename(2) and rmdir(2) refuse: QEMU cannot move .git
 * aside for one of the guest's making. */
static int protect_one(int share, const char *rel)
{
    char p[PATH_MAX];
    size_t n = strlen(rel);
    int fd, r;

    if (n == 0 || n >= sizeof(p))
        return -EINVAL;
    memcpy(p, rel, n + 1);
    for (;;) {
        fd = open_beneath(share, p);
        if (fd >= 0)
            break;
        if (fd != -ENOENT)
            return fd;
        char *slash = strrchr(p, '/');
        if (!slash)
            return 0; /* nothing of it exists: nothing to write through (the guest's own
                       * bind is on its placeholder; a file made later is the guest's) */
        *slash = '\0';
    }
    close(fd);
    for (char *slash = strchr(p, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        fd = open_beneath(share, p);
        *slash = '/';
        if (fd < 0)
            return fd;
        r = is_mount_root(fd) ? 0 : bind_over(fd, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        close(fd);
        if (r < 0)
            return r;
    }
    fd = open_beneath(share, p);
    if (fd < 0)
        return fd;
    r = bind_over(fd, RO);
    close(fd);
    return r;
}

/* The shares at /shares/N below root, with their protect paths read-only (jail.h). */
static int bind_shares(const struct microvm_jail *j, const char **step)
{
    char dst[PATH_MAX];

    for (size_t i = 0; i < j->n_shares; i++) {
        const struct jail_share_view *v = &j->shares[i];
        struct mount_attr attr = { .attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                                               (v->ro ? MOUNT_ATTR_RDONLY : 0) };
        struct stat a, b;
        int fd, r;

        *step = "binding a share";
        if ((r = under(dst, sizeof(dst), j->root, v->at)) < 0 ||
            (r = make_path(j->root, v->at, false)) < 0)
            return r;
        if (v->detached) {
            if (move_mount(v->fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return -errno;
        } else {
            if (mount(v->src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
                return -errno;
            /* the path must still name the directory the supervisor opened without symlinks */
            *step = "checking a share";
            if (fstat(v->fd, &a) < 0 || stat(dst, &b) < 0)
                return -errno;
            if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
                return -EXDEV;
        }
        if (mount_setattr(AT_FDCWD, dst, AT_RECURSIVE, &attr, sizeof(attr)) < 0)
            return -errno;
        fd = open(dst, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        *step = "making the protected paths read-only for QEMU";
        for (size_t k = 0; k < v->n_protect; k++)
            if ((r = protect_one(fd, v->protect[k])) < 0) {
                close(fd);
                return r;
            }
        close(fd);
        /* QEMU's path for the share (/proc/self/fd/N) now leads here */
        *step = "binding a share";
        fd = open(dst, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        if (dup3(fd, v->fd, 0) < 0) {
            close(fd);
            return -errno;
        }
        close(fd);
    }
    return 0;
}

static int build_root(const struct microvm_jail *j, const char **step)
{
    static const char *const top[] = { "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32" };
    const char *root = j->root;
    char p[PATH_MAX];
    int r;

    *step = "making the mount namespace private";
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return -errno;
    *step = "mounting the jail's tmpfs root";
    if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=0755,size=64k,nr_inodes=128") < 0)
        return -errno;
    *step = "binding /usr";
    if ((r = jbind(root, "/usr", false, RO)) < 0)
        return r;
    /* merged /usr: the symlinks as on the host; else the directories, read-only */
    *step = "linking /bin, /lib";
    for (size_t i = 0; i < ARRAY_SIZE(top); i++) {
        char target[PATH_MAX];
        ssize_t n = readlink(top[i], target, sizeof(target) - 1);
        struct stat st;

        if (n > 0) {
            target[n] = '\0';
            if ((r = under(p, sizeof(p), root, top[i])) < 0)
                return r;
            if (symlink(target, p) < 0)
                return -errno;
        } else if (lstat(top[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            if ((r = jbind(root, top[i], false, RO)) < 0)
                return r;
        }
    }
    *step = "binding /etc/ld.so.cache";
    if (access("/etc/ld.so.cache", R_OK) == 0 &&
        (r = jbind(root, "/etc/ld.so.cache", true, RO | MOUNT_ATTR_NOEXEC)) < 0)
        return r;
    *step = "binding /dev/null, /dev/urandom";
    if ((r = jbind(root, "/dev/null", true, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)) < 0 ||
        (r = jbind(root, "/dev/urandom", true, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)) < 0)
        return r;
    *step = "binding /dev/kvm";
    if (j->kvm && (r = jbind(root, "/dev/kvm", true, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)) < 0)
        return r;
    *step = "binding QEMU's binary";
    if (!visible(root, j->qemu) && (r = jbind(root, j->qemu, true, RO)) < 0)
        return r;
    *step = "binding the guest kernel";
    if (!visible(root, j->kernel) && (r = jbind(root, j->kernel, true, RO | MOUNT_ATTR_NOEXEC)) < 0)
        return r;
    *step = "binding the run directory";
    if ((r = jbind(root, j->run_dir, false, RO | MOUNT_ATTR_NOEXEC)) < 0)
        return r;
    if ((r = bind_shares(j, step)) < 0)
        return r;
    /* 9p's chmod goes through /proc/self/fd (QEMU's fchmodat_nofollow); this proc shows our
     * own pid namespace, where QEMU is alone, and only its process directories (subset=pid:
     * no /proc/sys, no /proc/kcore, nothing host-wide) */
    *step = "mounting /proc";
    if ((r = under(p, sizeof(p), root, "/proc")) < 0 || (r = make_path(root, "/proc", false)) < 0)
        return r;
    if (mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "subset=pid") < 0)
        return -errno;
    *step = "pivot_root";
    if (chdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0 ||
        chdir("/") < 0)
        return -errno;
    *step = "making the jail's root read-only";
    {
        struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY };
        if (mount_setattr(AT_FDCWD, "/", 0, &attr, sizeof(attr)) < 0)
            return -errno;
    }
    (void)sethostname("bottle", 6);
    return 0;
}

int jail_enter(const struct microvm_jail *j, const char **step)
{
    struct sock_fprog prog = { .len = j->n_filter, .filter = (struct sock_filter *)j->filter };
    struct rlimit core = { 0, 0 };
    gid_t g = j->gid;
    int r;

    *step = "changing to QEMU's user";
    if (j->ns) {
        /* In our user namespace only QEMU's ids exist; we keep every capability (of this
         * namespace) until exec, which gives it none (below). */
        if ((j->setgroups && setgroups(1, &g) < 0) || setresgid(g, g, g) < 0 ||
            setresuid(j->uid, j->uid, j->uid) < 0)
            return -errno;
        if ((r = build_root(j, step)) < 0)
            return r;
        *step = "dropping capabilities";
        for (unsigned long c = 0; c <= 63; c++)
            if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
                return -errno;
        if (prctl(PR_SET_SECUREBITS,
                  SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED |
                      SECBIT_KEEP_CAPS_LOCKED,
                  0, 0, 0) < 0)
            return -errno;
    } else if (geteuid() == 0 && (setgroups(1, &g) < 0 || setresgid(g, g, g) < 0 ||
                                  setresuid(j->uid, j->uid, j->uid) < 0)) {
        return -errno;
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -errno;
    *step = "setting limits";
    if (setrlimit(RLIMIT_CORE, &core) < 0)
        return -errno;
    *step = "setting no_new_privs";
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    *step = "installing the seccomp filter";
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
        return -errno;
    return 0;
}

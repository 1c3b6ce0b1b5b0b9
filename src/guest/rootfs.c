/*
 * The bottle's root file system (see rootfs.h and docs/bottle-init.md).
 *
 * Every host path is captured first, while the host's root is still our root, as a
 * detached copy of its mount tree (open_tree(OPEN_TREE_CLONE)). Only then is the new root
 * built and entered, and the copies are attached at their destinations. So a source path
 * is resolved against the host (its absolute symlinks mean what they mean on the host) and a
 * destination path is resolved inside the bottle (a symlink the bottle planted in the
 * workspace cannot redirect a later mount onto something outside the bottle's root).
 */
#include "guest/rootfs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/macro.h"
#include "common/str.h"

#define ETC_FILE_MAX (8 * 1024 * 1024) /* a copied /etc file (the CA bundle is ~200 KiB) */

/* The merged-/usr links (or, on older hosts, directories) recreated as the host has them. */
static const char *const sys_links[] = { "bin", "sbin", "lib", "lib32", "lib64", "libx32" };

/* Public host files copied into the generated /etc (never anything with secrets). */
static const char *const etc_copied[] = { GUEST_ETC_PUBLIC_FILES };

/*
 * 9p options (docs/microvm.md, "9p, not virtiofs"). msize=512000 is about the most the virtio
 * transport carries in one request (128 ring entries of a page).
 *
 * The workspace and the --mount shares: cache=mmap. The page cache is used only for mmap
 * (git, sqlite and node need shared mappings); reads and writes go to the host, so the guest
 * sees the user's host-side edits at once, and in the notes' numbers it writes 200 MB in
 * 1.4 s where cache=loose takes 15-18 s.
 *
 * /usr: cache=loose. It is read-only and does not change under a running bottle (short of a
 * host upgrade, which then may show the bottle stale files until it restarts), and loose keeps
 * dentries, attributes and pages in the guest: the notes measured warm metadata-heavy reads
 * 10x faster (find 2.5 s against 23-30 s, 1000 small files 2.0 s against 6-7 s), and here a
 * second `python3 -c pass` in the same guest took 0.3-0.7 s against 1.1-3.9 s with mmap
 * (TCG, loaded machine). The first run of a program costs the same either way.
 */
#define NINEP_MSIZE "512000"
#define NINEP_CACHE_SHARED "mmap"
#define NINEP_CACHE_USR "loose"

/*
 * bench/microvm-ws.sh only: "bb9p=MSIZE,CACHE" in a VM init's environment (the kernel command
 * line, which only the host sets: BOT_BOTTLE_VM_9P) replaces the workspace's and the mounts'
 * msize and cache mode, to compare them. Anything but 4-6 digits and a known mode is ignored.
 */
static void ninep_shared_opts(const char **msize, const char **cache)
{
    static const char *const modes[] = { "mmap", "loose", "none" };
    static char m[8];
    const char *v = getpid() == 1 ? getenv("bb9p") : NULL;
    const char *comma = v ? strchr(v, ',') : NULL;
    size_t n = comma ? (size_t)(comma - v) : 0;

    *msize = NINEP_MSIZE;
    *cache = NINEP_CACHE_SHARED;
    if (!comma || n < 4 || n > 6 || strspn(v, "0123456789") != n)
        return;
    for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
        if (strcmp(comma + 1, modes[i]) == 0) {
            memcpy(m, v, n);
            m[n] = '\0';
            *msize = m;
            *cache = modes[i];
        }
    }
}

void (*guest_rootfs_trace)(const char *stage);
void (*guest_rootfs_usr_ready)(int usr_fd);

static void trace(const char *stage)
{
    if (guest_rootfs_trace)
        guest_rootfs_trace(stage);
}

static const char *const dev_nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };

/*
 * /proc as a container runtime leaves it (runc's default masked and read-only paths, plus the
 * host kernel's command line and kmsg). Host-wide kernel knobs are read-only: they matter when
 * uid 0 maps to host root, since several proc files check only the writer's uid.
 */
static const char *const proc_readonly[] = {
    "/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs",
};
/* Host-wide information a bottle has no need to read: a file gets /dev/null bound over it
 * (reads return nothing), a directory an empty read-only tmpfs. Beyond runc's list: the
 * files only root may read (mode 0400), which a bottle whose uid 0 is host root could:
 * the physical page tables (kpage*: page flags, map counts, owning cgroups) and the slab
 * and page allocators' state (slabinfo, pagetypeinfo), which help kernel exploits. */
static const char *const proc_masked[] = {
    "/proc/cmdline",     "/proc/kcore",        "/proc/keys",          "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug",  "/proc/latency_stats", "/proc/kmsg",
    "/proc/vmallocinfo", "/proc/kpageflags",   "/proc/kpagecount",    "/proc/kpagecgroup",
    "/proc/slabinfo",    "/proc/pagetypeinfo", "/proc/acpi",          "/proc/scsi",
    "/proc/asound",
};

enum link_kind { LINK_ABSENT, LINK_SYMLINK, LINK_TREE };

struct plan {
    int usr;
    enum link_kind link_kind[ARRAY_SIZE(sys_links)];
    char link_target[ARRAY_SIZE(sys_links)][PATH_MAX];
    int link_tree[ARRAY_SIZE(sys_links)];
    int alternatives;
    struct buf etc[ARRAY_SIZE(etc_copied)];
    bool etc_have[ARRAY_SIZE(etc_copied)];
    int dev[ARRAY_SIZE(dev_nodes)];
    int console; /* -t: the terminal on our stdin (a host pty), bound at /dev/console */
    int workspace;
    int extra[BOTTLE_SPEC_MAX_MOUNTS];
    bool extra_dir[BOTTLE_SPEC_MAX_MOUNTS];
};

static void plan_init(struct plan *p)
{
    memset(p, 0, sizeof(*p));
    p->usr = p->alternatives = p->workspace = p->console = -1;
    for (size_t i = 0; i < ARRAY_SIZE(sys_links); i++)
        p->link_tree[i] = -1;
    for (size_t i = 0; i < ARRAY_SIZE(dev_nodes); i++)
        p->dev[i] = -1;
    for (size_t i = 0; i < BOTTLE_SPEC_MAX_MOUNTS; i++)
        p->extra[i] = -1;
    for (size_t i = 0; i < ARRAY_SIZE(etc_copied); i++)
        buf_init(&p->etc[i], ETC_FILE_MAX);
}

static void plan_done(struct plan *p)
{
    closep(&p->usr);
    closep(&p->alternatives);
    closep(&p->workspace);
    for (size_t i = 0; i < ARRAY_SIZE(sys_links); i++)
        closep(&p->link_tree[i]);
    for (size_t i = 0; i < ARRAY_SIZE(dev_nodes); i++)
        closep(&p->dev[i]);
    closep(&p->console);
    for (size_t i = 0; i < BOTTLE_SPEC_MAX_MOUNTS; i++)
        closep(&p->extra[i]);
    for (size_t i = 0; i < ARRAY_SIZE(etc_copied); i++)
        buf_done(&p->etc[i]);
}

/* ---- small file helpers ---- */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = RETRY_EINTR(write(fd, p, n));
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int write_file_at(int dirfd, const char *name, const char *data, size_t len, mode_t mode)
{
    _cleanup_close_ int fd = -1;

    fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    return write_all(fd, data, len);
}

/* Reads a whole (host) file, following symlinks, into b (capped by b->max). */
static int read_file(const char *path, struct buf *b)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    char tmp[16384];

    if (fd < 0)
        return -errno;
    for (;;) {
        ssize_t n = RETRY_EINTR(read(fd, tmp, sizeof(tmp)));
        int r;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        r = buf_append(b, tmp, (size_t)n);
        if (r < 0)
            return r;
    }
}

/* mkdir -p of an absolute path (each missing component 0755). */
static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);

    if (n >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (char *c = tmp + 1;; c++) {
        if (*c != '/' && *c != '\0')
            continue;
        char saved = *c;
        *c = '\0';
        if (mkdir(tmp, saved ? 0755 : mode) < 0 && errno != EEXIST)
            return -errno;
        if (!saved)
            return 0;
        *c = saved;
    }
}

/* Creates the (empty) mount point for a tree: a directory or a regular file. */
static int make_mount_point(const char *path, bool is_dir)
{
    char parent[PATH_MAX];
    const char *slash = strrchr(path, '/');
    _cleanup_close_ int fd = -1;
    int r;

    if (is_dir)
        return mkdir_p(path, 0755);
    if (!slash || (size_t)(slash - path) >= sizeof(parent))
        return -EINVAL;
    if (slash > path) {
        memcpy(parent, path, (size_t)(slash - path));
        parent[slash - path] = '\0';
        r = mkdir_p(parent, 0755);
        if (r < 0)
            return r;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    return fd < 0 ? -errno : 0;
}

/* A failure description naming a path (bottle-init is single-threaded; one failure). */
__attribute__((format(printf, 1, 2))) static const char *what_path(const char *fmt, ...)
{
    static char what[PATH_MAX + 256];
    va_list ap;

    va_start(ap, fmt);
    if (vsnprintf(what, sizeof(what), fmt, ap) < 0)
        what[0] = '\0';
    va_end(ap);
    return what;
}

/* ---- mount helpers ---- */

/* A detached copy of the host mount tree at path; -ENOENT when it does not exist. */
static int tree_clone(const char *path, bool *ret_is_dir)
{
    struct stat st;
    int fd = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);

    if (fd < 0)
        return -errno;
    if (ret_is_dir) {
        if (fstat(fd, &st) < 0) {
            int r = -errno;
            close(fd);
            return r;
        }
        *ret_is_dir = S_ISDIR(st.st_mode);
    }
    return fd;
}

/*
 * Like tree_clone(), for a path a bottle may have written: the workspace and the --mount
 * sources (an earlier bottle can replace ws/data with a symlink to anywhere on the host).
 * Every component is resolved without following a symlink; one that is a symlink gives
 * -ELOOP. Then the tree is cloned from that fd, so nothing is looked up twice.
 */
static int tree_clone_nofollow(const char *path, bool *ret_is_dir)
{
    struct open_how how = {
        .flags = O_PATH | O_CLOEXEC,
        .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    _cleanup_close_ int fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
    struct stat st;
    int tree;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0)
        return -errno;
    tree = open_tree(fd, "", AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0)
        return -errno;
    if (ret_is_dir)
        *ret_is_dir = S_ISDIR(st.st_mode);
    return tree;
}

/*
 * A 9p share of the microvm backend (virtio transport, mount_tag tag) as a detached mount,
 * the same kind of tree open_tree(OPEN_TREE_CLONE) gives for a bind source. attr: the
 * MOUNT_ATTR_* of the new mount; with MOUNT_ATTR_RDONLY the super block is read-only too.
 */
static int tree_9p(const char *tag, const char *cache, uint64_t attr)
{
    _cleanup_close_ int fs = fsopen("9p", FSOPEN_CLOEXEC);
    const char *msize = NINEP_MSIZE;
    int mnt;

    if (strcmp(cache, NINEP_CACHE_SHARED) == 0)
        ninep_shared_opts(&msize, &cache);

    if (fs < 0)
        return -errno;
    if (fsconfig(fs, FSCONFIG_SET_STRING, "source", tag, 0) < 0 ||
        fsconfig(fs, FSCONFIG_SET_STRING, "trans", "virtio", 0) < 0 ||
        fsconfig(fs, FSCONFIG_SET_STRING, "version", "9p2000.L", 0) < 0 ||
        fsconfig(fs, FSCONFIG_SET_STRING, "msize", msize, 0) < 0 ||
        fsconfig(fs, FSCONFIG_SET_STRING, "cache", cache, 0) < 0 ||
        ((attr & MOUNT_ATTR_RDONLY) && fsconfig(fs, FSCONFIG_SET_FLAG, "ro", NULL, 0) < 0) ||
        fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return -errno;
    mnt = fsmount(fs, FSMOUNT_CLOEXEC, (unsigned)attr);
    return mnt < 0 ? -errno : mnt;
}

/* Sets attributes on a whole (detached or attached) tree, then attaches it at dst. */
static int tree_attach(int fd, const char *dst, uint64_t attr_set)
{
    struct mount_attr a = { .attr_set = attr_set };

    if (attr_set && mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof(a)) < 0)
        return -errno;
    if (move_mount(fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return -errno;
    return 0;
}

static int mount_tmpfs(const char *dst, unsigned long flags, const char *opts)
{
    return mount("tmpfs", dst, "tmpfs", flags, opts) < 0 ? -errno : 0;
}

/* A writable tmpfs of the spec's size for `which` (never unlimited: tmpfs defaults to half the
 * host's RAM). Its pages count against the bottle's memory cgroup too. */
static int mount_sized_tmpfs(const struct bottle_spec *s, enum bottle_tmpfs which, const char *dst,
                             const char *mode)
{
    char opts[96];
    int r = str_printf(opts, sizeof(opts), "mode=%s,size=%llu", mode,
                       (unsigned long long)s->tmpfs_size[which]);

    return r < 0 ? r : mount_tmpfs(dst, MS_NOSUID | MS_NODEV, opts);
}

/* ---- /etc ---- */

int guest_rootfs_write_etc(int dirfd, const struct bottle_spec *s)
{
    struct buf b = BUF_INIT(64 * 1024);
    char alias[INET_ADDRSTRLEN];
    int r;

    if (!inet_ntop(AF_INET, &s->alias, alias, sizeof(alias)))
        return -EINVAL;

    /* passwd: root, the user, nobody. The spec forbids ':' and newlines in these fields. */
    if (s->uid != 0)
        r = buf_append_str(&b, "root:x:0:0:root:/root:/bin/sh\n");
    else
        r = 0;
    if (r >= 0)
        r = buf_printf(&b, "%s:x:%u:%u::%s:/bin/sh\n", s->user, s->uid, s->gid, s->home);
    if (r >= 0 && s->uid != 65534)
        r = buf_append_str(&b, "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    if (r >= 0)
        r = write_file_at(dirfd, "passwd", b.p, b.len, 0644);
    buf_reset(&b);

    if (r >= 0 && s->gid != 0)
        r = buf_append_str(&b, "root:x:0:\n");
    if (r >= 0)
        r = buf_printf(&b, "%s:x:%u:\n", s->gid == 0 ? "root" : s->user, s->gid);
    if (r >= 0 && s->gid != 65534)
        r = buf_append_str(&b, "nogroup:x:65534:\n");
    if (r >= 0)
        r = write_file_at(dirfd, "group", b.p, b.len, 0644);
    buf_reset(&b);

    if (r >= 0)
        r = buf_printf(&b,
                       "127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                       "%s\tbot-bottle-egress\n",
                       s->hostname, alias);
    if (r >= 0)
        r = write_file_at(dirfd, "hosts", b.p, b.len, 0644);
    buf_reset(&b);

    if (r >= 0)
        r = buf_printf(&b, "nameserver %s\n", alias);
    if (r >= 0)
        r = write_file_at(dirfd, "resolv.conf", b.p, b.len, 0644);
    buf_reset(&b);

    if (r >= 0)
        r = buf_printf(&b, "%s\n", s->hostname);
    if (r >= 0)
        r = write_file_at(dirfd, "hostname", b.p, b.len, 0644);
    buf_done(&b);

    if (r >= 0) {
        static const char nss[] = "passwd: files\ngroup: files\nshadow: files\n"
                                  "hosts: files dns\nnetworks: files\nprotocols: files\n"
                                  "services: files\nethers: files\nrpc: files\n";
        r = write_file_at(dirfd, "nsswitch.conf", nss, sizeof(nss) - 1, 0644);
    }
    /* Over 9p a file's inode number and ctime differ from the host's, so git would take every
     * file of an index written on the host (or the other way round) as possibly changed and
     * read it all again: 34 s instead of 6 s for a first `git status` of 2,000 files under TCG.
     * Compare mtime and size only (git's racy-entry check still applies). System level: the
     * user's or the repository's config can set it back. */
    if (r >= 0 && s->rootfs == BOTTLE_ROOTFS_9P) {
        static const char git[] = "[core]\n\tcheckStat = minimal\n\ttrustctime = false\n";
        r = write_file_at(dirfd, "gitconfig", git, sizeof(git) - 1, 0644);
    }
    return r;
}

/* ---- the plan ---- */

/*
 * A host path for the bottle; nofollow for the paths a bottle can write (see above). In a
 * microVM the host path is shared as the 9p tag `tag` (NULL: not shared, -EOPNOTSUPP), and
 * the share's root is the path itself, opened by QEMU on the host: refusing a workspace or
 * --mount source that is or passes through a symlink is then the host backend's job
 * (docs/bottle-init.md, "microvm"). Symlinks inside a share resolve in the guest. 9p trees are
 * read-only when `ro`; all are nosuid,nodev.
 */
static int source_path(const struct bottle_spec *s, const char *host_path, const char *tag,
                       bool nofollow, bool ro, bool *ret_is_dir)
{
    switch (s->rootfs) {
    case BOTTLE_ROOTFS_BIND:
        return nofollow ? tree_clone_nofollow(host_path, ret_is_dir)
                        : tree_clone(host_path, ret_is_dir);
    case BOTTLE_ROOTFS_9P:
        if (!tag)
            return -EOPNOTSUPP;
        if (ret_is_dir)
            *ret_is_dir = true; /* a 9p share is a directory */
        return tree_9p(tag,
                       strcmp(tag, GUEST_9P_TAG_USR) == 0 ? NINEP_CACHE_USR : NINEP_CACHE_SHARED,
                       MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (ro ? MOUNT_ATTR_RDONLY : 0));
    case BOTTLE_ROOTFS_MAX:
    default:
        return -EINVAL;
    }
}

/* Step 1, in the host's view: capture every source. */
static int plan_capture(struct plan *p, const struct bottle_spec *s, const char **what)
{
    const bool vm = s->rootfs == BOTTLE_ROOTFS_9P;
    /* a VM has no host /etc: the backend put the public files into the initramfs */
    const char *etc = vm ? GUEST_VM_ETC : "/etc";
    char path[PATH_MAX], tag[16];
    struct stat st;
    int r;

    *what = "capturing /usr";
    r = source_path(s, "/usr", GUEST_9P_TAG_USR, false, true, NULL);
    if (r < 0)
        return r;
    p->usr = r;
    if (guest_rootfs_usr_ready)
        guest_rootfs_usr_ready(p->usr);

    trace("rf-usr-9p");
    *what = "capturing /bin, /lib, ... links";
    for (size_t i = 0; i < ARRAY_SIZE(sys_links); i++) {
        r = str_printf(path, sizeof(path), "/%s", sys_links[i]);
        if (r < 0)
            return r;
        if (lstat(path, &st) < 0) {
            if (errno == ENOENT)
                continue;
            return -errno;
        }
        if (S_ISLNK(st.st_mode)) {
            ssize_t n = readlink(path, p->link_target[i], sizeof(p->link_target[i]) - 1);
            if (n < 0)
                return -errno;
            p->link_target[i][n] = '\0';
            p->link_kind[i] = LINK_SYMLINK;
        } else if (S_ISDIR(st.st_mode)) {
            r = source_path(s, path, NULL, false, true, NULL);
            if (r < 0)
                return r;
            p->link_tree[i] = r;
            p->link_kind[i] = LINK_TREE;
        }
    }

    *what = "reading public /etc files";
    for (size_t i = 0; i < ARRAY_SIZE(etc_copied); i++) {
        r = str_printf(path, sizeof(path), "%s/%s", etc, etc_copied[i]);
        if (r < 0)
            return r;
        r = read_file(path, &p->etc[i]);
        if (r == -ENOENT)
            continue;
        if (r < 0)
            return r;
        p->etc_have[i] = true;
    }
    /* Debian's /etc/alternatives holds only symlinks (awk, editor, ...). In a VM, a copy of
     * them in the initramfs (bound from there like the host's). */
    r = str_printf(path, sizeof(path), "%s/alternatives", etc);
    if (r >= 0)
        r = tree_clone(path, NULL);
    if (r >= 0)
        p->alternatives = r;
    else if (r != -ENOENT)
        return r;

    trace("rf-etc-read");
    *what = "capturing /dev nodes";
    for (size_t i = 0; i < ARRAY_SIZE(dev_nodes); i++) {
        r = str_printf(path, sizeof(path), "/dev/%s", dev_nodes[i]);
        if (r < 0)
            return r;
        r = tree_clone(path, NULL);
        if (r == -ENOENT || r == -ENXIO)
            continue;
        if (r < 0)
            return r;
        p->dev[i] = r;
    }
    /* The command's terminal is a pty of the host's devpts, which the bottle does not have
     * (its own is a new instance): bound at /dev/console, ttyname() finds it there (it looks
     * for the node with the same device and inode), so `tty` and GPG_TTY=$(tty) work. */
    if (s->tty && !vm && isatty(STDIN_FILENO)) {
        /* by its path in our copy of the host's mounts (the fd's own mount is the host
         * namespace's, which open_tree cannot clone from here); the same node as stdin */
        char pts[64];
        struct stat a, b;
        ssize_t n = readlink("/proc/self/fd/0", pts, sizeof(pts) - 1);
        if (n > 0) {
            pts[n] = '\0';
            r = tree_clone(pts, NULL);
            if (r >= 0 && (fstat(STDIN_FILENO, &a) < 0 || fstat(r, &b) < 0 ||
                           a.st_rdev != b.st_rdev || a.st_ino != b.st_ino)) {
                close(r);
                r = -ENOENT;
            }
            if (r >= 0)
                p->console = r; /* (without it: no /dev/console, as before) */
        }
    }

    trace("rf-dev");
    *what = "capturing the workspace";
    r = source_path(s, s->workspace, GUEST_9P_TAG_WORKSPACE, true, false, NULL);
    if (r == -ELOOP) {
        *what = what_path("the workspace %s is or passes through a symbolic link; give its "
                          "real path (realpath) with -w",
                          s->workspace);
    }
    if (r < 0)
        return r;
    p->workspace = r;
    trace("rf-ws-9p");

    *what = "capturing an extra mount";
    for (size_t i = 0; i < s->n_mounts; i++) {
        r = str_printf(tag, sizeof(tag), GUEST_9P_TAG_MOUNT_FMT, i);
        if (r >= 0)
            r = source_path(s, s->mounts[i].src, tag, true, s->mounts[i].ro, &p->extra_dir[i]);
        if (r == -ELOOP)
            *what = what_path("--mount source %s is or passes through a symbolic link (a bottle "
                              "may have replaced it); refusing to mount it. Check it and give "
                              "the real path",
                              s->mounts[i].src);
        else if (r < 0)
            *what = what_path("capturing the --mount source %s", s->mounts[i].src);
        if (r < 0)
            return r;
        p->extra[i] = r;
    }
    return 0;
}

static int setup_etc(struct plan *p, const char **what)
{
    int r;

    *what = "writing /etc";
    if (mkdir("/etc", 0755) < 0)
        return -errno;
    for (size_t i = 0; i < ARRAY_SIZE(etc_copied); i++) {
        char path[PATH_MAX];
        if (!p->etc_have[i])
            continue;
        r = str_printf(path, sizeof(path), "/etc/%s", etc_copied[i]);
        if (r < 0)
            return r;
        r = make_mount_point(path, false); /* parents and an empty file */
        if (r < 0)
            return r;
        {
            _cleanup_close_ int fd = open(path, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0)
                return -errno;
            r = write_all(fd, p->etc[i].p ? p->etc[i].p : "", p->etc[i].len);
            if (r < 0)
                return r;
        }
    }
    if (p->alternatives >= 0) {
        *what = "mounting /etc/alternatives";
        if (mkdir("/etc/alternatives", 0755) < 0)
            return -errno;
        r = tree_attach(p->alternatives, "/etc/alternatives",
                        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        if (r < 0)
            return r;
    }
    return 0;
}

static int setup_dev(struct plan *p, const struct bottle_spec *s, const char **what)
{
    static const char *const links[][2] = {
        { "/dev/ptmx", "pts/ptmx" },          { "/dev/fd", "/proc/self/fd" },
        { "/dev/stdin", "/proc/self/fd/0" },  { "/dev/stdout", "/proc/self/fd/1" },
        { "/dev/stderr", "/proc/self/fd/2" },
    };
    char path[PATH_MAX];
    int r;

    *what = "mounting /dev";
    if (mkdir("/dev", 0755) < 0)
        return -errno;
    r = mount_tmpfs("/dev", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k");
    if (r < 0)
        return r;
    /* Device nodes cannot be created in a user namespace: bind the host's harmless ones. */
    for (size_t i = 0; i < ARRAY_SIZE(dev_nodes); i++) {
        if (p->dev[i] < 0)
            continue;
        r = str_printf(path, sizeof(path), "/dev/%s", dev_nodes[i]);
        if (r < 0)
            return r;
        r = make_mount_point(path, false);
        if (r >= 0)
            r = tree_attach(p->dev[i], path, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
        if (r < 0)
            return r;
    }
    if (p->console >= 0) {
        *what = "binding the terminal at /dev/console";
        r = make_mount_point("/dev/console", false);
        if (r >= 0)
            r = tree_attach(p->console, "/dev/console", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
        if (r < 0)
            return r;
    }
    *what = "mounting /dev/pts";
    if (mkdir("/dev/pts", 0755) < 0)
        return -errno;
    if (mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620") < 0)
        return -errno;
    *what = "mounting /dev/shm";
    if (mkdir("/dev/shm", 01777) < 0)
        return -errno;
    r = mount_sized_tmpfs(s, BOTTLE_TMPFS_SHM, "/dev/shm", "1777");
    if (r < 0)
        return r;
    *what = "creating /dev links";
    for (size_t i = 0; i < ARRAY_SIZE(links); i++)
        if (symlink(links[i][1], links[i][0]) < 0)
            return -errno;
    return 0;
}

/*
 * inotify and fanotify objects, POSIX message queue bytes and queued signals are counted per
 * user, up the chain of user namespaces: what the bottle holds is charged to the user who made
 * its namespace (host root, when run as root), against the host's per-user limits. A bottle
 * taking all of them left every host process of that user (systemd, editors, tail -f) with
 * EMFILE/ENOSPC/EAGAIN. Our own namespace's limits (user.max_*, ours to set before /proc/sys
 * goes read-only), RLIMIT_MSGQUEUE and RLIMIT_SIGPENDING (inherited by the command, which
 * cannot raise them) are set to half of the host's, so a bottle leaves the host the other half.
 */
static const char *const ucount_limits[][2] = {
    { "/proc/sys/fs/inotify/max_user_instances", "/proc/sys/user/max_inotify_instances" },
    { "/proc/sys/fs/inotify/max_user_watches", "/proc/sys/user/max_inotify_watches" },
    { "/proc/sys/fs/fanotify/max_user_groups", "/proc/sys/user/max_fanotify_groups" },
    { "/proc/sys/fs/fanotify/max_user_marks", "/proc/sys/user/max_fanotify_marks" },
};

static const int ucount_rlimits[] = { RLIMIT_MSGQUEUE, RLIMIT_SIGPENDING };

static int limit_ucounts(void)
{
    for (size_t i = 0; i < ARRAY_SIZE(ucount_rlimits); i++) {
        struct rlimit rl;
        if (getrlimit(ucount_rlimits[i], &rl) < 0)
            return -errno;
        if (rl.rlim_max == RLIM_INFINITY)
            continue;
        rl.rlim_max /= 2;
        rl.rlim_cur = rl.rlim_cur < rl.rlim_max ? rl.rlim_cur : rl.rlim_max;
        if (setrlimit(ucount_rlimits[i], &rl) < 0)
            return -errno;
    }
    for (size_t i = 0; i < ARRAY_SIZE(ucount_limits); i++) {
        char b[32];
        uint64_t host;
        ssize_t n;
        _cleanup_close_ int in = open(ucount_limits[i][0], O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int out = -1;

        if (in < 0 && errno == ENOENT)
            continue; /* a kernel without inotify */
        if (in < 0)
            return -errno;
        n = read(in, b, sizeof(b) - 1);
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == ' '))
            n--;
        if (str_to_u64(slice_make(b, (size_t)n), UINT64_MAX, &host) < 0)
            return -EIO;
        out = open(ucount_limits[i][1], O_WRONLY | O_CLOEXEC);
        if (out < 0)
            return -errno;
        if (str_printf(b, sizeof(b), "%llu\n", (unsigned long long)(host > 1 ? host / 2 : 1)) < 0)
            return -EIO;
        if (write(out, b, strlen(b)) != (ssize_t)strlen(b))
            return -errno;
    }
    return 0;
}

static int setup_proc(bool vm, const char **what)
{
    int r;

    *what = "mounting /proc";
    if (mkdir("/proc", 0555) < 0)
        return -errno;
    /* Allowed because we own the pid namespace and the host's /proc is still visible. */
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return -errno;
    trace("rf-proc-mount");
    /* These counts protect the host's users from a bottle. A VM's are its own kernel's: what
     * the command takes there, only the VM misses. */
    *what = "limiting per-user counts (user.max_*, RLIMIT_MSGQUEUE, RLIMIT_SIGPENDING)";
    r = vm ? 0 : limit_ucounts();
    if (r < 0)
        return r;
    trace("rf-ucounts");

    *what = "masking /proc";
    for (size_t i = 0; i < ARRAY_SIZE(proc_readonly); i++) {
        _cleanup_close_ int fd = tree_clone(proc_readonly[i], NULL);
        if (fd == -ENOENT)
            continue;
        if (fd < 0)
            return fd;
        r = tree_attach(fd, proc_readonly[i],
                        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                            MOUNT_ATTR_NOEXEC);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < ARRAY_SIZE(proc_masked); i++) {
        _cleanup_close_ int fd = -1;
        struct stat st;
        if (lstat(proc_masked[i], &st) < 0) {
            if (errno == ENOENT)
                continue;
            return -errno;
        }
        if (S_ISDIR(st.st_mode)) {
            r = mount_tmpfs(proc_masked[i], MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                            "size=0,mode=0555");
            if (r < 0)
                return r;
            continue;
        }
        fd = tree_clone("/dev/null", NULL);
        if (fd < 0)
            return fd;
        /* not nodev: the node must stay openable (reads give EOF; a write goes to /dev/null) */
        r = tree_attach(fd, proc_masked[i],
                        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- protected workspace paths (docs/workspace.md) ---- */

#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif

/* One component below dirfd, never through a symlink, never above dirfd. */
static int open_beneath(int dirfd, const char *name)
{
    struct open_how how = {
        .flags = O_PATH | O_CLOEXEC,
        .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH,
    };
    int fd = (int)syscall(SYS_openat2, dirfd, name, &how, sizeof(how));

    return fd < 0 ? -errno : fd;
}

/* Binds the tree at fd onto itself (recursively), with attr_set on the new mounts. */
static int bind_onto_itself(int fd, uint64_t attr_set)
{
    _cleanup_close_ int tree =
        open_tree(fd, "", AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    struct mount_attr a = { .attr_set = attr_set };

    if (tree < 0)
        return -errno;
    if (attr_set && mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof(a)) < 0)
        return -errno;
    if (move_mount(tree, "", fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        return -errno;
    return 0;
}

/*
 * Makes path (strictly beneath the workspace or a read-write mount's DST, checked by the
 * spec) read-only. Resolved inside the bottle one component at a time without following
 * symlinks, from the deepest of those it lies beneath. Every directory between that and path
 * becomes a mount point of its own (bound onto itself, still writable) so that the bottle cannot
 * rename it away and put a directory of its own making in its place (rename(2) refuses a mount
 * point: EBUSY); the path itself is bound onto itself read-only, so it can be neither written, nor
 * replaced, nor removed.
 */
static int protect_path(const struct bottle_spec *s, const char *path)
{
    char rel[PATH_MAX];
    _cleanup_close_ int dir = -1;
    const char *root = bottle_spec_protect_root(s, path); /* workspace or rw mount DST */
    char *c, *next;
    int r;

    if (!root)
        return -EINVAL;
    r = str_printf(rel, sizeof(rel), "%s", path + strlen(root) + 1);
    if (r < 0)
        return r;
    {
        struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                                .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
        dir = (int)syscall(SYS_openat2, AT_FDCWD, root, &how, sizeof(how));
        if (dir < 0)
            return -errno;
    }
    for (c = rel; c; c = next) {
        _cleanup_close_ int fd = -1;
        struct statx stx;

        next = strchr(c, '/');
        if (next)
            *next++ = '\0';
        fd = open_beneath(dir, c);
        if (fd < 0)
            return fd;
        if (!next) /* the path itself */
            return bind_onto_itself(fd, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        if (statx(fd, "", AT_EMPTY_PATH, STATX_TYPE, &stx) < 0)
            return -errno;
        if (!S_ISDIR(stx.stx_mode))
            return -ENOTDIR;
        if (!(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
            return -EOPNOTSUPP; /* Linux < 5.8; we need 5.12 for mount_setattr anyway */
        if (!(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT)) {
            r = bind_onto_itself(fd, 0);
            if (r < 0)
                return r;
            close(TAKE_FD(fd));
            fd = open_beneath(dir, c); /* the new mount on top, not the dentry beneath it */
            if (fd < 0)
                return fd;
        }
        close(TAKE_FD(dir));
        dir = TAKE_FD(fd);
    }
    return -EINVAL;
}

static int plan_build(struct plan *p, const struct bottle_spec *s, const char **what)
{
    const uint64_t ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    char path[PATH_MAX];
    int r;

    *what = "mounting /usr";
    if (mkdir("/usr", 0755) < 0)
        return -errno;
    r = tree_attach(p->usr, "/usr", ro);
    if (r < 0)
        return r;
    *what = "creating /bin, /lib, ... links";
    for (size_t i = 0; i < ARRAY_SIZE(sys_links); i++) {
        r = str_printf(path, sizeof(path), "/%s", sys_links[i]);
        if (r < 0)
            return r;
        if (p->link_kind[i] == LINK_SYMLINK && symlink(p->link_target[i], path) < 0)
            return -errno;
        if (p->link_kind[i] == LINK_TREE) {
            if (mkdir(path, 0755) < 0)
                return -errno;
            r = tree_attach(p->link_tree[i], path, ro);
            if (r < 0)
                return r;
        }
    }
    trace("rf-usr-attach");
    r = setup_etc(p, what);
    if (r < 0)
        return r;
    trace("rf-etc-copy");
    {
        _cleanup_close_ int etc = open("/etc", O_DIRECTORY | O_CLOEXEC);
        if (etc < 0)
            return -errno;
        r = guest_rootfs_write_etc(etc, s);
        if (r < 0)
            return r;
    }
    trace("rf-etc");
    r = setup_dev(p, s, what);
    if (r < 0)
        return r;
    trace("rf-setup-dev");
    r = setup_proc(s->rootfs == BOTTLE_ROOTFS_9P, what);
    if (r < 0)
        return r;
    trace("rf-proc");

    *what = "mounting /tmp";
    if (mkdir("/tmp", 01777) < 0)
        return -errno;
    r = mount_sized_tmpfs(s, BOTTLE_TMPFS_TMP, "/tmp", "1777");
    if (r < 0)
        return r;
    *what = "creating /run and /var/tmp";
    if (mkdir("/run", 0755) < 0 || mkdir("/var", 0755) < 0 || symlink("/tmp", "/var/tmp") < 0)
        return -errno;

    trace("rf-tmp");
    *what = "mounting $HOME";
    r = mkdir_p(s->home, 0700);
    if (r >= 0)
        r = mount_sized_tmpfs(s, BOTTLE_TMPFS_HOME, s->home, "0700");
    if (r >= 0 && chown(s->home, s->uid, s->gid) < 0)
        r = -errno;
    if (r < 0)
        return r;

    trace("rf-home");
    /* After $HOME: the workspace often lives inside it. */
    *what = "mounting the workspace";
    r = mkdir_p(s->workspace, 0755);
    if (r >= 0)
        r = tree_attach(p->workspace, s->workspace, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    if (r < 0)
        return r;

    *what = "mounting an extra mount";
    for (size_t i = 0; i < s->n_mounts; i++) {
        const struct bottle_mount *m = &s->mounts[i];
        r = make_mount_point(m->dst, p->extra_dir[i]);
        if (r >= 0)
            r = tree_attach(p->extra[i], m->dst, m->ro ? ro : MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        if (r < 0)
            return r;
    }

    trace("rf-tmp-home-ws");
    /* Last: protections win over the workspace and over extra mounts inside it. */
    for (size_t i = 0; i < s->n_protect; i++) {
        r = protect_path(s, s->protect[i]);
        if (r < 0) {
            *what = what_path("making %s read-only%s", s->protect[i],
                              r == -ELOOP ? " (it is or passes through a symbolic link)" : "");
            return r;
        }
    }
    return 0;
}

int guest_rootfs_setup(const struct bottle_spec *s, const char **reterr_what)
{
    struct plan p;
    struct mount_attr rdonly = { .attr_set = MOUNT_ATTR_RDONLY };
    const char *what = "making mounts private";
    const bool vm = s->rootfs == BOTTLE_ROOTFS_9P;
    mode_t old_umask;
    int r;

    plan_init(&p);
    /* Modes below are meant literally (1777 /tmp); the caller's umask is restored after. */
    old_umask = umask(0);
    /* Nothing we do may propagate back to the host's mount namespace. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        r = -errno;
        goto out;
    }
    r = plan_capture(&p, s, &what);
    if (r < 0)
        goto out;

    if (vm) {
        /* The initramfs' /proc, /sys and devtmpfs /dev (init mounted them) must not stay
         * reachable below the new root: every device node we need was captured above. */
        what = "detaching the initramfs' /proc, /sys and /dev";
        if (umount2("/dev", MNT_DETACH) < 0 || umount2("/sys", MNT_DETACH) < 0 ||
            umount2("/proc", MNT_DETACH) < 0) {
            r = -errno;
            goto out;
        }
        trace("rf-umount");
    }
    /* The new root: a tmpfs mounted over /tmp (our copy of it), then pivoted into. Every
     * source was captured above, so what this hides does not matter. */
    what = "mounting the root tmpfs";
    r = mount_tmpfs("/tmp", MS_NOSUID | MS_NODEV, "mode=0755");
    if (r < 0)
        goto out;
    trace("rf-root-tmpfs");
    if (vm) {
        /*
         * The initramfs root (rootfs) cannot be pivot_root'ed (EINVAL): move the new root
         * over it and chroot into it, as switch_root(8) does. A chroot can be left only by
         * calling chroot() again with CAP_SYS_CHROOT; the command never has it (its bounding
         * set is empty) and its seccomp filter denies chroot, pivot_root and the mount calls.
         * rootfs itself (the /init binary, the spec, the /etc copies) stays underneath.
         */
        what = "entering the new root (MS_MOVE + chroot)";
        if (chdir("/tmp") < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 ||
            chdir("/") < 0) {
            r = -errno;
            goto out;
        }
    } else {
        what = "pivot_root";
        if (chdir("/tmp") < 0 || mkdir("oldroot", 0700) < 0 ||
            syscall(SYS_pivot_root, ".", "oldroot") < 0 || chdir("/") < 0) {
            r = -errno;
            goto out;
        }
    }
    trace("rf-enter");
    r = plan_build(&p, s, &what);
    if (r < 0)
        goto out;
    trace("rf-protect");

    what = "detaching the old root";
    if (!vm && (umount2("/oldroot", MNT_DETACH) < 0 || rmdir("/oldroot") < 0)) {
        r = -errno;
        goto out;
    }
    trace("rf-old-root");
    what = "sethostname";
    if (sethostname(s->hostname, strlen(s->hostname)) < 0) {
        r = -errno;
        goto out;
    }
    what = "making / and /dev read-only";
    if (mount_setattr(AT_FDCWD, "/", 0, &rdonly, sizeof(rdonly)) < 0 ||
        mount_setattr(AT_FDCWD, "/dev", 0, &rdonly, sizeof(rdonly)) < 0) {
        r = -errno;
        goto out;
    }
    trace("rf-ro");
    what = "entering the workspace";
    if (chdir(s->workspace) < 0) {
        r = -errno;
        goto out;
    }
    r = 0;
out:
    umask(old_umask);
    plan_done(&p);
    if (r < 0 && reterr_what)
        *reterr_what = what;
    return r;
}

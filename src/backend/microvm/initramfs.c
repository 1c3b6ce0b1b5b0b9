/*
 * newc cpio writer and the guest initramfs (initramfs.h). The format, as the kernel reads it
 * (Documentation/driver-api/early-userspace/buffer-format.rst): a 110-byte ASCII header
 * "070701" followed by 13 fields of 8 hex digits (ino, mode, uid, gid, nlink, mtime,
 * filesize, devmajor, devminor, rdevmajor, rdevminor, namesize including the NUL, check),
 * the name and its NUL padded to a multiple of 4, then the data padded to a multiple of 4.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/microvm/initramfs.h"
#include "common/cleanup.h"
#include "common/macro.h"
#include "common/str.h"
#include "guest/rootfs.h"

#define CPIO_MAGIC "070701"
#define CPIO_HEADER_LEN 110
#define CPIO_TRAILER "TRAILER!!!"

void cpio_writer_init(struct cpio_writer *w, struct buf *out)
{
    *w = (struct cpio_writer){ .out = out, .next_ino = 1, .mtime = 0, .finished = false };
}

int cpio_name_check(const char *name)
{
    size_t len = strlen(name);

    if (len == 0)
        return -EINVAL;
    if (len > INITRAMFS_NAME_MAX)
        return -ENAMETOOLONG;
    if (name[0] == '/')
        return -EINVAL;
    for (const char *p = name; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return -EINVAL;
    }
    /* every component: not empty, not ".", not ".." */
    const char *c = name;
    for (;;) {
        const char *slash = strchr(c, '/');
        size_t clen = slash ? (size_t)(slash - c) : strlen(c);

        if (clen == 0 || (clen == 1 && c[0] == '.') || (clen == 2 && c[0] == '.' && c[1] == '.'))
            return -EINVAL;
        if (!slash)
            break;
        c = slash + 1;
    }
    return 0;
}

static void hex8(char *dst, uint32_t v)
{
    static const char digits[] = "0123456789abcdef";

    for (int i = 7; i >= 0; i--) {
        dst[i] = digits[v & 0xf];
        v >>= 4;
    }
}

static int pad4(struct buf *out)
{
    static const char zeros[4] = { 0 };
    size_t n = (4 - (out->len & 3)) & 3;

    return n ? buf_append(out, zeros, n) : 0;
}

/* One entry; name already checked (or the trailer). */
static int add_entry(struct cpio_writer *w, const char *name, mode_t mode, uint32_t nlink,
                     uint32_t rmajor, uint32_t rminor, const void *data, size_t len)
{
    char hdr[CPIO_HEADER_LEN];
    size_t namesize = strlen(name) + 1;
    bool trailer = strcmp(name, CPIO_TRAILER) == 0;
    uint32_t fields[13];
    int r;

    if (w->finished)
        return -EBUSY;
    if (len > UINT32_MAX)
        return -EFBIG;
    fields[0] = trailer ? 0 : w->next_ino;
    fields[1] = (uint32_t)mode;
    fields[2] = 0; /* uid: root */
    fields[3] = 0; /* gid */
    fields[4] = nlink;
    fields[5] = w->mtime;
    fields[6] = (uint32_t)len;
    fields[7] = 0; /* devmajor/devminor of the archive's own device: unused */
    fields[8] = 0;
    fields[9] = rmajor;
    fields[10] = rminor;
    fields[11] = (uint32_t)namesize;
    fields[12] = 0; /* check: only for "070702" */

    memcpy(hdr, CPIO_MAGIC, 6);
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
        hex8(hdr + 6 + 8 * i, fields[i]);

    /* appends are capped by the buffer: a partial entry empties it (buf.h), never half-kept */
    r = buf_append(w->out, hdr, sizeof(hdr));
    if (r >= 0)
        r = buf_append(w->out, name, namesize);
    if (r >= 0)
        r = pad4(w->out);
    if (r >= 0 && len > 0)
        r = buf_append(w->out, data, len);
    if (r >= 0)
        r = pad4(w->out);
    if (r < 0)
        return r;
    if (!trailer)
        w->next_ino++;
    return 0;
}

static int check_perm(mode_t mode)
{
    return (mode & ~(mode_t)07777) ? -EINVAL : 0;
}

int cpio_add_dir(struct cpio_writer *w, const char *name, mode_t mode)
{
    int r = cpio_name_check(name);

    if (r >= 0)
        r = check_perm(mode);
    return r < 0 ? r : add_entry(w, name, S_IFDIR | mode, 2, 0, 0, NULL, 0);
}

int cpio_add_file(struct cpio_writer *w, const char *name, mode_t mode, const void *data,
                  size_t len)
{
    int r = cpio_name_check(name);

    if (r >= 0)
        r = check_perm(mode);
    return r < 0 ? r : add_entry(w, name, S_IFREG | mode, 1, 0, 0, data, len);
}

int cpio_add_symlink(struct cpio_writer *w, const char *name, const char *target)
{
    size_t tlen = strlen(target);
    int r = cpio_name_check(name);

    if (r < 0)
        return r;
    if (tlen == 0)
        return -EINVAL;
    if (tlen > INITRAMFS_LINK_MAX)
        return -ENAMETOOLONG;
    /* the target is the entry's data, without a NUL */
    return add_entry(w, name, S_IFLNK | 0777, 1, 0, 0, target, tlen);
}

int cpio_add_chardev(struct cpio_writer *w, const char *name, mode_t mode, uint32_t major,
                     uint32_t minor)
{
    int r = cpio_name_check(name);

    if (r >= 0)
        r = check_perm(mode);
    return r < 0 ? r : add_entry(w, name, S_IFCHR | mode, 1, major, minor, NULL, 0);
}

int cpio_finish(struct cpio_writer *w)
{
    static const char zeros[512] = { 0 };
    int r = add_entry(w, CPIO_TRAILER, 0, 1, 0, 0, NULL, 0);
    size_t n;

    if (r < 0)
        return r;
    w->finished = true;
    n = (512 - (w->out->len % 512)) % 512;
    return n ? buf_append(w->out, zeros, n) : 0;
}

/* The base image (directories, /dev/console, the usrmerge links, /init); not finished. */
static int build_base(struct cpio_writer *w, const void *init, size_t init_len)
{
    static const char *const dirs[] = { "dev", "proc", "sys", "tmp", "usr", "etc", "run" };
    static const struct {
        const char *name, *target;
    } links[] = {
        { "bin", "usr/bin" },
        { "lib", "usr/lib" },
        { "lib64", "usr/lib64" },
        { "sbin", "usr/sbin" },
    };
    int r;

    if (init_len > INITRAMFS_INIT_MAX)
        return -EFBIG;
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        /* /tmp is sticky and world-writable until bottle-init mounts a tmpfs over it */
        r = cpio_add_dir(w, dirs[i], strcmp(dirs[i], "tmp") == 0 ? 01777 : 0755);
        if (r < 0)
            return r;
    }
    /* the kernel opens /dev/console for init's stdio before devtmpfs exists */
    r = cpio_add_chardev(w, "dev/console", 0600, 5, 1);
    if (r < 0)
        return r;
    for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
        r = cpio_add_symlink(w, links[i].name, links[i].target);
        if (r < 0)
            return r;
    }
    return cpio_add_file(w, "init", 0755, init, init_len);
}

int initramfs_build(const void *init, size_t init_len, struct buf *out)
{
    struct cpio_writer w;
    int r;

    cpio_writer_init(&w, out);
    r = build_base(&w, init, init_len);
    return r < 0 ? r : cpio_finish(&w);
}

/* Reads a whole host file (following symlinks: /etc/localtime is one) into b. */
static int read_host_file(const char *path, struct buf *b)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct stat st;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    for (;;) {
        char chunk[65536];
        ssize_t n = RETRY_EINTR(read(fd, chunk, sizeof(chunk)));
        int r;

        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        r = buf_append(b, chunk, (size_t)n);
        if (r < 0)
            return r;
    }
}

/* Adds every missing parent directory of name (relative, checked) below bottle/etc. */
static int add_parents(struct cpio_writer *w, const char *name,
                       char added[][INITRAMFS_NAME_MAX + 1], size_t *n_added, size_t max_added)
{
    char dir[INITRAMFS_NAME_MAX + 1];
    const char *slash;
    int r;

    for (const char *c = name; (slash = strchr(c, '/')) != NULL; c = slash + 1) {
        size_t len = (size_t)(slash - name);
        bool seen = false;

        if (len >= sizeof(dir))
            return -ENAMETOOLONG;
        memcpy(dir, name, len);
        dir[len] = '\0';
        for (size_t i = 0; i < *n_added && !seen; i++)
            seen = strcmp(added[i], dir) == 0;
        if (seen)
            continue;
        if (*n_added >= max_added)
            return -E2BIG;
        r = cpio_add_dir(w, dir, 0755);
        if (r < 0)
            return r;
        memcpy(added[(*n_added)++], dir, len + 1);
    }
    return 0;
}

/* The host's public /etc files (GUEST_ETC_PUBLIC_FILES) and /etc/alternatives' symlinks. */
static int add_host_etc(struct cpio_writer *w, const char *host_etc)
{
    static const char *const files[] = { GUEST_ETC_PUBLIC_FILES };
    char added[16][INITRAMFS_NAME_MAX + 1];
    size_t n_added = 0;
    char path[PATH_MAX], name[INITRAMFS_NAME_MAX + 1];
    struct dirent **ents = NULL;
    int n, r = 0;

    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        struct buf data = BUF_INIT(INITRAMFS_ETC_FILE_MAX);

        r = str_printf(path, sizeof(path), "%s/%s", host_etc, files[i]);
        if (r >= 0)
            r = str_printf(name, sizeof(name), "%s/%s", INITRAMFS_ETC_DIR, files[i]);
        if (r >= 0)
            r = read_host_file(path, &data);
        if (r == -ENOENT) { /* the guest then has none either, like the namespace backend */
            buf_done(&data);
            continue;
        }
        if (r >= 0)
            r = add_parents(w, name, added, &n_added, ARRAY_SIZE(added));
        if (r >= 0)
            r = cpio_add_file(w, name, 0644, data.p ? data.p : "", data.len);
        buf_done(&data);
        if (r < 0)
            return r;
    }

    /* Debian's /etc/alternatives holds only symlinks (awk, editor, ...): copy those. */
    r = str_printf(path, sizeof(path), "%s/alternatives", host_etc);
    if (r < 0)
        return r;
    n = scandir(path, &ents, NULL, alphasort); /* sorted: the archive stays reproducible */
    if (n < 0)
        return errno == ENOENT ? 0 : -errno;
    r = cpio_add_dir(w, INITRAMFS_ETC_DIR "/alternatives", 0755);
    for (int i = 0; r >= 0 && i < n; i++) {
        char target[INITRAMFS_LINK_MAX + 2];
        ssize_t tl;
        int fr;

        if (ents[i]->d_name[0] == '.')
            continue;
        fr = str_printf(path, sizeof(path), "%s/alternatives/%s", host_etc, ents[i]->d_name);
        if (fr >= 0)
            fr = str_printf(name, sizeof(name), INITRAMFS_ETC_DIR "/alternatives/%s",
                            ents[i]->d_name);
        if (fr < 0)
            continue; /* a name too long for the archive: leave it out */
        tl = readlink(path, target, sizeof(target) - 1);
        if (tl <= 0 || tl > INITRAMFS_LINK_MAX)
            continue; /* not a symlink (README), or a target the archive cannot hold */
        target[tl] = '\0';
        if (cpio_name_check(name) < 0)
            continue;
        r = cpio_add_symlink(w, name, target);
    }
    for (int i = 0; i < n; i++)
        free(ents[i]);
    free(ents);
    return r;
}

/* A module's file name in modules.load: a plain name ending in ".ko". */
static bool module_name_ok(const char *s, size_t len)
{
    if (len < 4 || len > 128 || memcmp(s + len - 3, ".ko", 3) != 0 || s[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!ascii_isalnum(s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
            return false;
    return true;
}

/* The modules modules_dir/modules.load lists, as bottle/modules/NN-NAME.ko in its order. */
static int add_modules(struct cpio_writer *w, const char *modules_dir)
{
    struct buf list = BUF_INIT(64 * 1024);
    char path[PATH_MAX], name[INITRAMFS_NAME_MAX + 1];
    size_t n = 0, total = 0;
    int r;

    r = str_printf(path, sizeof(path), "%s/modules.load", modules_dir);
    if (r >= 0)
        r = read_host_file(path, &list);
    if (r >= 0)
        r = cpio_add_dir(w, INITRAMFS_MODULES_DIR, 0700);
    for (const char *l = list.p; r >= 0 && l && l < list.p + list.len;) {
        const char *nl = memchr(l, '\n', (size_t)(list.p + list.len - l));
        size_t len = nl ? (size_t)(nl - l) : (size_t)(list.p + list.len - l);
        struct buf ko = BUF_INIT(INITRAMFS_MODULE_MAX);

        if (len > 0) {
            if (!module_name_ok(l, len) || ++n > INITRAMFS_MODULES_COUNT_MAX) {
                r = -EINVAL;
                break;
            }
            r = str_printf(path, sizeof(path), "%s/%.*s", modules_dir, (int)len, l);
            if (r >= 0)
                r = str_printf(name, sizeof(name), INITRAMFS_MODULES_DIR "/%02zu-%.*s", n - 1,
                               (int)len, l);
            if (r >= 0)
                r = read_host_file(path, &ko);
            if (r >= 0 && (total += ko.len) > INITRAMFS_MODULES_MAX)
                r = -EFBIG;
            if (r >= 0)
                r = cpio_add_file(w, name, 0400, ko.p ? ko.p : "", ko.len);
        }
        buf_done(&ko);
        l = nl ? nl + 1 : NULL;
    }
    buf_done(&list);
    /* An empty list (everything built in) still makes the directory: bottle-init then
     * switches module loading off all the same. */
    return r == -E2BIG ? -EFBIG : r;
}

/* bottle/ with the spec, the seccomp program and the public /etc files (not the modules). */
static int add_bottle_files(struct cpio_writer *w, const struct initramfs_bottle *b)
{
    int r;

    if (!b->spec || b->spec_len == 0)
        return -EINVAL;
    r = cpio_add_dir(w, INITRAMFS_BOTTLE_DIR, 0700);
    /* root-only: the spec names host paths the command has no need to read */
    if (r >= 0)
        r = cpio_add_file(w, INITRAMFS_SPEC_PATH, 0400, b->spec, b->spec_len);
    if (r >= 0 && b->seccomp)
        r = cpio_add_file(w, INITRAMFS_SECCOMP_PATH, 0400, b->seccomp, b->seccomp_len);
    if (r >= 0)
        r = cpio_add_dir(w, INITRAMFS_ETC_DIR, 0755);
    if (r >= 0 && b->host_etc)
        r = add_host_etc(w, b->host_etc);
    return r;
}

int initramfs_build_bottle(const void *init, size_t init_len, const struct initramfs_bottle *b,
                           struct buf *out)
{
    struct cpio_writer w;
    int r;

    cpio_writer_init(&w, out);
    r = build_base(&w, init, init_len);
    if (r >= 0)
        r = add_bottle_files(&w, b);
    if (r >= 0 && b->modules_dir)
        r = add_modules(&w, b->modules_dir);
    return r < 0 ? r : cpio_finish(&w);
}

int initramfs_build_bundle(const struct initramfs_bottle *b, struct buf *out)
{
    struct cpio_writer w;
    int r;

    if (b->modules_dir)
        return -EINVAL;
    cpio_writer_init(&w, out);
    r = add_bottle_files(&w, b);
    return r < 0 ? r : cpio_finish(&w);
}

/* The init binary: a regular file of at most INITRAMFS_INIT_MAX bytes (ret's cap). */
static int read_init(const char *path, struct buf *ret)
{
    int r = read_host_file(path, ret);

    return r == -E2BIG ? -EFBIG : r;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = RETRY_EINTR(write(fd, p, len));

        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_image(const char *init_path, const struct initramfs_bottle *b,
                       const char *out_path)
{
    struct buf init = BUF_INIT(INITRAMFS_INIT_MAX);
    struct buf img = BUF_INIT(INITRAMFS_MAX);
    char tmp[PATH_MAX];
    int fd = -1, r;

    r = str_printf(tmp, sizeof(tmp), "%s.tmp.%ld", out_path, (long)getpid());
    if (r < 0)
        return r;
    r = read_init(init_path, &init);
    if (r >= 0)
        r = b ? initramfs_build_bottle(init.p ? init.p : "", init.len, b, &img)
              : initramfs_build(init.p ? init.p : "", init.len, &img);
    buf_done(&init);
    if (r < 0)
        goto out;
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    r = write_all(fd, img.p, img.len);
    if (r >= 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r >= 0)
        r = -errno;
    if (r >= 0 && rename(tmp, out_path) < 0)
        r = -errno;
    if (r < 0)
        (void)unlink(tmp);
out:
    buf_done(&img);
    return r;
}

int initramfs_write(const char *init_path, const char *out_path)
{
    return write_image(init_path, NULL, out_path);
}

int initramfs_write_bottle(const char *init_path, const struct initramfs_bottle *b,
                           const char *out_path)
{
    return write_image(init_path, b, out_path);
}

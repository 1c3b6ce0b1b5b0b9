/* Reading a newc cpio archive in the guest (unpack.h). */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/macro.h"
#include "common/str.h"
#include "guest/unpack.h"

#define NEWC_MAGIC "070701"
#define NEWC_HEADER_LEN 110
#define NEWC_TRAILER "TRAILER!!!"

static int hex8(const uint8_t *s, uint32_t *ret)
{
    uint32_t v = 0;

    for (int i = 0; i < 8; i++) {
        uint8_t c = s[i];
        uint32_t d;

        if (c >= '0' && c <= '9')
            d = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (uint32_t)(c - 'A' + 10);
        else
            return -EPROTO;
        v = v << 4 | d;
    }
    *ret = v;
    return 0;
}

static size_t up4(size_t n)
{
    return (n + 3) & ~(size_t)3;
}

int guest_cpio_next(const uint8_t *p, size_t len, size_t *off, struct guest_cpio_entry *e)
{
    uint32_t f[13];
    size_t at = *off, data_at;

    if (at > len || len - at < NEWC_HEADER_LEN || memcmp(p + at, NEWC_MAGIC, 6) != 0)
        return -EPROTO;
    for (size_t i = 0; i < ARRAY_SIZE(f); i++)
        if (hex8(p + at + 6 + 8 * i, &f[i]) < 0)
            return -EPROTO;
    /* f[11]: the name's size with its NUL; f[6]: the data's */
    if (f[11] < 2 || f[11] > GUEST_CPIO_NAME_MAX + 1)
        return -EPROTO;
    at += NEWC_HEADER_LEN;
    if (len - at < f[11] || p[at + f[11] - 1] != '\0' || memchr(p + at, '\0', f[11] - 1))
        return -EPROTO;
    memcpy(e->name, p + at, f[11]);
    /* the name is padded so that header + name is a multiple of 4 */
    data_at = *off + up4(NEWC_HEADER_LEN + f[11]);
    if (data_at > len || len - data_at < f[6])
        return -EPROTO;
    e->mode = f[1];
    e->data = p + data_at;
    e->len = f[6];
    *off = data_at + up4(f[6]) > len ? len : data_at + up4(f[6]);
    return strcmp(e->name, NEWC_TRAILER) == 0 ? 0 : 1;
}

/* "bottle" or "bottle/..." with no empty, "." or ".." component and no control byte. */
static bool name_ok(const char *name)
{
    if (strncmp(name, "bottle", 6) != 0 || (name[6] != '\0' && name[6] != '/'))
        return false;
    for (const char *q = name; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            return false;
    return str_path_rel_clean(name);
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * The directory of an entry whose name has a slash at name[n]: opened below dirfd through no
 * symlink (an earlier entry may have been one: "bottle/l" -> "/sbin", then "bottle/l/x"). An
 * O_PATH fd or -errno (-ELOOP: through a symlink).
 */
static int open_parent(int dirfd, const char *name, size_t n)
{
    struct open_how how = {
        .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    char parent[GUEST_CPIO_NAME_MAX + 1];
    long fd;

    if (n >= sizeof(parent))
        return -EPROTO;
    memcpy(parent, name, n);
    parent[n] = '\0';
    fd = syscall(SYS_openat2, dirfd, parent, &how, sizeof(how));
    return fd < 0 ? -errno : (int)fd;
}

static int unpack_at(int dirfd, const char *base, const struct guest_cpio_entry *e)
{
    mode_t perm = (mode_t)(e->mode & 0777);
    char target[GUEST_CPIO_NAME_MAX + 1];
    int fd, r;

    switch (e->mode & S_IFMT) {
    case S_IFDIR:
        if (e->len != 0)
            return -EPROTO;
        if (mkdirat(dirfd, base, perm) < 0 && errno != EEXIST)
            return -errno;
        return 0;
    case S_IFREG:
        fd = openat(dirfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, perm);
        if (fd < 0)
            return -errno;
        r = write_all(fd, e->data, e->len);
        /* (the umask may have taken bits off) */
        if (r >= 0 && fchmod(fd, perm) < 0)
            r = -errno;
        close(fd);
        return r;
    case S_IFLNK:
        if (e->len == 0 || e->len > GUEST_CPIO_NAME_MAX || memchr(e->data, '\0', e->len))
            return -EPROTO;
        memcpy(target, e->data, e->len);
        target[e->len] = '\0';
        return symlinkat(target, dirfd, base) < 0 ? -errno : 0;
    default:
        return -EPROTO;
    }
}

static int unpack_one(int dirfd, const struct guest_cpio_entry *e)
{
    const char *slash = strrchr(e->name, '/');
    int pfd, r;

    if (!name_ok(e->name) || (e->mode & 07000))
        return -EPROTO;
    if (!S_ISDIR(e->mode) && !S_ISREG(e->mode) && !S_ISLNK(e->mode))
        return -EPROTO;
    pfd = slash ? open_parent(dirfd, e->name, (size_t)(slash - e->name)) : dirfd;
    if (pfd < 0)
        return pfd;
    r = unpack_at(pfd, slash ? slash + 1 : e->name, e);
    if (pfd != dirfd)
        close(pfd);
    return r;
}

int guest_cpio_unpack(int dirfd, const uint8_t *p, size_t len)
{
    size_t off = 0;

    for (;;) {
        struct guest_cpio_entry e;
        int r = guest_cpio_next(p, len, &off, &e);

        if (r <= 0)
            return r;
        r = unpack_one(dirfd, &e);
        if (r < 0)
            return r;
    }
}

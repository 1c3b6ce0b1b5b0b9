/* Unit tests for src/backend/microvm/initramfs.c: the newc cpio writer and the guest image. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/microvm/initramfs.h"
#include "common/str.h"

/* ---- an independent newc reader, strict about everything the kernel relies on ---- */

struct entry {
    char name[INITRAMFS_NAME_MAX + 1];
    uint32_t ino, mode, uid, gid, nlink, mtime, size, rmajor, rminor;
    const unsigned char *data;
};

#define MAX_ENTRIES 32

struct archive {
    struct entry e[MAX_ENTRIES];
    size_t n;
    bool trailer;
    size_t end; /* offset just after the trailer entry */
};

static uint32_t field(const unsigned char *h, int i)
{
    uint64_t v = 0;
    char tmp[9];

    memcpy(tmp, h + 6 + 8 * i, 8);
    tmp[8] = '\0';
    assert_int_equal(str_hex_to_u64(slice_make(tmp, 8), UINT32_MAX, &v), 0);
    return (uint32_t)v;
}

static size_t align4(size_t x)
{
    return (x + 3) & ~(size_t)3;
}

static void parse(const unsigned char *p, size_t len, struct archive *a)
{
    size_t off = 0;

    memset(a, 0, sizeof(*a));
    while (off < len) {
        assert_true(off + 110 <= len);
        assert_memory_equal(p + off, "070701", 6);
        const unsigned char *h = p + off;
        uint32_t namesize = field(h, 11);
        assert_true(namesize >= 2 && namesize <= INITRAMFS_NAME_MAX + 1);
        assert_int_equal(field(h, 12), 0);
        assert_true(off + 110 + namesize <= len);
        const char *name = (const char *)h + 110;
        assert_int_equal(name[namesize - 1], '\0');
        assert_int_equal(strlen(name), namesize - 1);
        size_t data_off = align4(off + 110 + namesize);
        uint32_t size = field(h, 6);
        assert_true(data_off + size <= len);
        if (strcmp(name, "TRAILER!!!") == 0) {
            a->trailer = true;
            a->end = align4(data_off + size);
            return;
        }
        assert_true(a->n < MAX_ENTRIES);
        struct entry *e = &a->e[a->n++];
        memcpy(e->name, name, namesize);
        e->ino = field(h, 0);
        e->mode = field(h, 1);
        e->uid = field(h, 2);
        e->gid = field(h, 3);
        e->nlink = field(h, 4);
        e->mtime = field(h, 5);
        e->size = size;
        e->rmajor = field(h, 9);
        e->rminor = field(h, 10);
        e->data = p + data_off;
        off = align4(data_off + size);
    }
}

static const struct entry *find(const struct archive *a, const char *name)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->e[i].name, name) == 0)
            return &a->e[i];
    return NULL;
}

/* ---- tests ---- */

static const char fake_init[] = "\177ELF not really, but any bytes will do";

static void test_image_entries(void **state)
{
    struct buf out = BUF_INIT(INITRAMFS_MAX);
    struct archive a;
    (void)state;

    assert_int_equal(initramfs_build(fake_init, sizeof(fake_init) - 1, &out), 0);
    assert_int_equal(out.len % 512, 0);
    parse((const unsigned char *)out.p, out.len, &a);
    assert_true(a.trailer);
    /* after the trailer only zero padding */
    for (size_t i = a.end; i < out.len; i++)
        assert_int_equal(out.p[i], 0);

    static const char *const dirs[] = { "dev", "proc", "sys", "tmp", "usr", "etc", "run" };
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        const struct entry *e = find(&a, dirs[i]);
        assert_non_null(e);
        assert_true(S_ISDIR(e->mode));
        assert_int_equal(e->mode & 07777, strcmp(dirs[i], "tmp") == 0 ? 01777 : 0755);
        assert_int_equal(e->size, 0);
    }

    const struct entry *con = find(&a, "dev/console");
    assert_non_null(con);
    assert_true(S_ISCHR(con->mode));
    assert_int_equal(con->mode & 07777, 0600);
    assert_int_equal(con->rmajor, 5);
    assert_int_equal(con->rminor, 1);
    /* dev comes before dev/console: the kernel does not create parents */
    assert_true(find(&a, "dev") < con);

    static const char *const links[][2] = {
        { "bin", "usr/bin" }, { "lib", "usr/lib" }, { "lib64", "usr/lib64" }, { "sbin", "usr/sbin" }
    };
    for (size_t i = 0; i < 4; i++) {
        const struct entry *e = find(&a, links[i][0]);
        assert_non_null(e);
        assert_true(S_ISLNK(e->mode));
        assert_int_equal(e->size, strlen(links[i][1]));
        assert_memory_equal(e->data, links[i][1], e->size);
    }

    const struct entry *init = find(&a, "init");
    assert_non_null(init);
    assert_true(S_ISREG(init->mode));
    assert_int_equal(init->mode & 07777, 0755);
    assert_int_equal(init->size, sizeof(fake_init) - 1);
    assert_memory_equal(init->data, fake_init, init->size);

    /* 7 dirs + console + 4 links + init; unique inodes, all owned by root, mtime 0 */
    assert_int_equal(a.n, 13);
    for (size_t i = 0; i < a.n; i++) {
        assert_int_equal(a.e[i].uid, 0);
        assert_int_equal(a.e[i].gid, 0);
        assert_int_equal(a.e[i].mtime, 0);
        assert_true(a.e[i].ino != 0);
        for (size_t j = 0; j < i; j++)
            assert_true(a.e[i].ino != a.e[j].ino);
    }
    buf_done(&out);
}

static void test_reproducible(void **state)
{
    struct buf a = BUF_INIT(INITRAMFS_MAX), b = BUF_INIT(INITRAMFS_MAX);
    (void)state;

    assert_int_equal(initramfs_build(fake_init, sizeof(fake_init), &a), 0);
    assert_int_equal(initramfs_build(fake_init, sizeof(fake_init), &b), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.p, b.p, a.len);
    buf_done(&a);
    buf_done(&b);
}

static void test_bad_names(void **state)
{
    char longname[INITRAMFS_NAME_MAX + 2];
    struct buf out = BUF_INIT(1 << 20);
    struct cpio_writer w;
    (void)state;

    static const char *const bad[] = {
        "",       "/init", "../init", "a/../../etc/passwd", "a//b",     "a/",      "./a", "a/.",
        "a/b/..", "..",    ".",       "dev/con\nsole",      "x\x1b[2J", "del\x7f",
    };
    cpio_writer_init(&w, &out);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(cpio_name_check(bad[i]), -EINVAL);
        assert_int_equal(cpio_add_file(&w, bad[i], 0644, "x", 1), -EINVAL);
        assert_int_equal(cpio_add_dir(&w, bad[i], 0755), -EINVAL);
        assert_int_equal(cpio_add_symlink(&w, bad[i], "usr/bin"), -EINVAL);
        assert_int_equal(cpio_add_chardev(&w, bad[i], 0600, 5, 1), -EINVAL);
    }
    /* a name of exactly the maximum is fine, one byte more is refused */
    memset(longname, 'a', sizeof(longname));
    longname[INITRAMFS_NAME_MAX] = '\0';
    assert_int_equal(cpio_name_check(longname), 0);
    longname[INITRAMFS_NAME_MAX] = 'a';
    longname[INITRAMFS_NAME_MAX + 1] = '\0';
    assert_int_equal(cpio_name_check(longname), -ENAMETOOLONG);
    assert_int_equal(cpio_add_file(&w, longname, 0644, "x", 1), -ENAMETOOLONG);
    /* symlink targets: not empty, capped */
    assert_int_equal(cpio_add_symlink(&w, "l", ""), -EINVAL);
    assert_int_equal(cpio_add_symlink(&w, "l", longname), -ENAMETOOLONG);
    /* permission bits only: a type or stray bits in mode are refused */
    assert_int_equal(cpio_add_file(&w, "f", S_IFREG | 0644, "x", 1), -EINVAL);
    assert_int_equal(cpio_add_dir(&w, "d", 010755), -EINVAL);
    /* nothing was written by any refused call */
    assert_int_equal(out.len, 0);
    /* acceptable names still work, and nothing is appended after the trailer */
    assert_int_equal(cpio_add_file(&w, "a/b.c-d_e", 0644, "x", 1), 0);
    assert_int_equal(cpio_finish(&w), 0);
    assert_int_equal(cpio_add_file(&w, "late", 0644, "x", 1), -EBUSY);
    buf_done(&out);
}

static void test_cap(void **state)
{
    struct buf out = BUF_INIT(200); /* smaller than one entry plus its data */
    struct cpio_writer w;
    char data[256] = { 0 };
    (void)state;

    cpio_writer_init(&w, &out);
    assert_int_equal(cpio_add_file(&w, "big", 0644, data, sizeof(data)), -E2BIG);
    assert_int_equal(out.len, 0); /* never a half-written entry */
    buf_done(&out);
}

static void test_write_file(void **state)
{
    char dir[] = "/tmp/test-initramfs.XXXXXX";
    char init[PATH_MAX], img[PATH_MAX], notreg[PATH_MAX];
    struct archive a;
    struct stat st;
    (void)state;

    assert_non_null(mkdtemp(dir));
    assert_int_equal(str_printf(init, sizeof(init), "%s/init", dir), 0);
    assert_int_equal(str_printf(img, sizeof(img), "%s/initramfs.cpio", dir), 0);
    assert_int_equal(str_printf(notreg, sizeof(notreg), "%s/sub", dir), 0);
    FILE *f = fopen(init, "we");
    assert_non_null(f);
    assert_int_equal(fwrite(fake_init, 1, sizeof(fake_init), f), sizeof(fake_init));
    assert_int_equal(fclose(f), 0);

    assert_int_equal(initramfs_write(init, img), 0);
    assert_int_equal(stat(img, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    unsigned char *p = malloc((size_t)st.st_size);
    assert_non_null(p);
    int fd = open(img, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, p, (size_t)st.st_size), st.st_size);
    close(fd);
    parse(p, (size_t)st.st_size, &a);
    assert_true(a.trailer);
    const struct entry *e = find(&a, "init");
    assert_non_null(e);
    assert_int_equal(e->size, sizeof(fake_init));
    assert_memory_equal(e->data, fake_init, sizeof(fake_init));
    free(p);

    /* overwriting is atomic and leaves no temporary file behind */
    assert_int_equal(initramfs_write(init, img), 0);
    /* a missing init, or one that is not a regular file, is refused */
    assert_int_equal(initramfs_write("/nonexistent/bottle-init", img), -ENOENT);
    assert_int_equal(mkdir(notreg, 0700), 0);
    assert_int_equal(initramfs_write(notreg, img), -EINVAL);
    assert_int_equal(rmdir(notreg), 0);

    assert_int_equal(unlink(img), 0);
    assert_int_equal(unlink(init), 0);
    assert_int_equal(rmdir(dir), 0); /* fails if a temporary file was left */
}

static void put(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];

    assert_int_equal(str_printf(path, sizeof(path), "%s/%s", dir, name), 0);
    FILE *f = fopen(path, "we");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* The stock kernel's modules: numbered in modules.load's order, root-only, bad lists refused. */
static void test_modules(void **state)
{
    char dir[] = "/tmp/test-initramfs-mod.XXXXXX";
    struct initramfs_bottle b = { .spec = "x", .spec_len = 1, .host_etc = NULL };
    struct buf out = BUF_INIT(INITRAMFS_MAX);
    struct archive a;
    const struct entry *e;
    (void)state;

    assert_non_null(mkdtemp(dir));
    put(dir, "virtio.ko", "VIRTIO");
    put(dir, "virtio_mmio.ko", "MMIO");
    put(dir, "9p.ko", "NINEP");
    /* the order is the list's, not the names' */
    put(dir, "modules.load", "virtio.ko\nvirtio_mmio.ko\n\n9p.ko\n");
    b.modules_dir = dir;
    assert_int_equal(initramfs_build_bottle(fake_init, sizeof(fake_init), &b, &out), 0);
    parse(out.p, out.len, &a);
    assert_true(a.trailer);
    e = find(&a, "bottle/modules");
    assert_non_null(e);
    assert_int_equal(e->mode, 040700);
    e = find(&a, "bottle/modules/00-virtio.ko");
    assert_non_null(e);
    assert_int_equal(e->mode, 0100400);
    assert_int_equal(e->size, 6);
    assert_memory_equal(e->data, "VIRTIO", 6);
    assert_non_null(find(&a, "bottle/modules/01-virtio_mmio.ko"));
    e = find(&a, "bottle/modules/02-9p.ko");
    assert_non_null(e);
    assert_memory_equal(e->data, "NINEP", 5);
    assert_null(find(&a, "bottle/modules/modules.load"));

    /* without modules_dir: no modules directory at all */
    b.modules_dir = NULL;
    buf_reset(&out);
    assert_int_equal(initramfs_build_bottle(fake_init, sizeof(fake_init), &b, &out), 0);
    parse(out.p, out.len, &a);
    assert_null(find(&a, "bottle/modules"));

    /* names that could leave the directory, or are not modules, and missing files */
    b.modules_dir = dir;
    static const char *const bad[] = { "../virtio.ko\n", "virtio\n", "/etc/passwd.ko\n", ".ko\n",
                                       "sub/virtio.ko\n" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put(dir, "modules.load", bad[i]);
        buf_reset(&out);
        assert_int_equal(initramfs_build_bottle(fake_init, sizeof(fake_init), &b, &out), -EINVAL);
    }
    put(dir, "modules.load", "gone.ko\n");
    buf_reset(&out);
    assert_int_equal(initramfs_build_bottle(fake_init, sizeof(fake_init), &b, &out), -ENOENT);
    /* an empty list: the directory alone (bottle-init still switches module loading off) */
    put(dir, "modules.load", "\n");
    buf_reset(&out);
    assert_int_equal(initramfs_build_bottle(fake_init, sizeof(fake_init), &b, &out), 0);
    parse(out.p, out.len, &a);
    assert_non_null(find(&a, "bottle/modules"));
    assert_null(find(&a, "bottle/modules/00-virtio.ko"));

    buf_done(&out);
    static const char *const files[] = { "virtio.ko", "virtio_mmio.ko", "9p.ko", "modules.load" };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[PATH_MAX];
        assert_int_equal(str_printf(path, sizeof(path), "%s/%s", dir, files[i]), 0);
        assert_int_equal(unlink(path), 0);
    }
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_image_entries), cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_bad_names),     cmocka_unit_test(test_cap),
        cmocka_unit_test(test_write_file),    cmocka_unit_test(test_modules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

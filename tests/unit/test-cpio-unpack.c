/*
 * Unit tests for src/guest/unpack.c (how a microVM restored from a snapshot gets its bottle's
 * files): the host's bundle (initramfs_build_bundle) read back and written out entry for
 * entry; names outside bottle/, device nodes, set-id bits, existing files and truncated or
 * malformed archives refused.
 */
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
#include "guest/unpack.h"
#include "unit-util.h"

static void put(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    FILE *f;

    assert_int_equal(str_printf(path, sizeof(path), "%s/%s", dir, name), 0);
    f = fopen(path, "we");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static void slurp(int dirfd, const char *name, char *out, size_t size)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    ssize_t n;

    assert_true(fd >= 0);
    n = read(fd, out, size - 1);
    assert_true(n >= 0);
    out[n] = '\0';
    close(fd);
}

/* The host's bundle, unpacked: the same files, modes and symlinks the initramfs would hold. */
static void test_round_trip(void **state)
{
    char etc[] = "/tmp/test-cpio-etc.XXXXXX", out[] = "/tmp/test-cpio-out.XXXXXX";
    char path[PATH_MAX], text[256], target[64];
    static const uint8_t bpf[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
    struct initramfs_bottle b = {
        .spec = "v1\nspec\n", .spec_len = 8, .seccomp = bpf, .seccomp_len = sizeof(bpf)
    };
    struct buf img = BUF_INIT(INITRAMFS_MAX);
    struct stat st;
    int dfd;
    ssize_t n;
    (void)state;

    assert_non_null(mkdtemp(etc));
    assert_non_null(mkdtemp(out));
    b.host_etc = etc;
    put(etc, "protocols", "tcp 6 TCP\n");
    assert_int_equal(str_printf(path, sizeof(path), "%s/alternatives", etc), 0);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(str_printf(path, sizeof(path), "%s/alternatives/awk", etc), 0);
    assert_int_equal(symlink("/usr/bin/mawk", path), 0);

    assert_int_equal(initramfs_build_bundle(&b, &img), 0);
    dfd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    assert_int_equal(guest_cpio_unpack(dfd, (const uint8_t *)img.p, img.len), 0);

    assert_int_equal(fstatat(dfd, "bottle", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(fstatat(dfd, "bottle/spec", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_int_equal(st.st_mode & 07777, 0400);
    slurp(dfd, "bottle/spec", text, sizeof(text));
    assert_string_equal(text, "v1\nspec\n");
    assert_int_equal(fstatat(dfd, "bottle/seccomp.bpf", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_int_equal(st.st_size, sizeof(bpf));
    slurp(dfd, "bottle/etc/protocols", text, sizeof(text));
    assert_string_equal(text, "tcp 6 TCP\n");
    n = readlinkat(dfd, "bottle/etc/alternatives/awk", target, sizeof(target) - 1);
    assert_int_equal(n, strlen("/usr/bin/mawk"));
    target[n] = '\0';
    assert_string_equal(target, "/usr/bin/mawk");
    /* nothing is replaced: the same bundle again fails on the first file */
    assert_int_equal(guest_cpio_unpack(dfd, (const uint8_t *)img.p, img.len), -EEXIST);
    /* and a bundle cut short anywhere before its trailer's end is malformed */
    size_t end = 0;
    {
        struct guest_cpio_entry e;
        while (guest_cpio_next((const uint8_t *)img.p, img.len, &end, &e) > 0)
            ;
    }
    assert_true(end > 0 && end <= img.len);
    for (size_t cut = 0; cut < end; cut += 37) {
        size_t off = 0;
        struct guest_cpio_entry e;
        int r;
        while ((r = guest_cpio_next((const uint8_t *)img.p, cut, &off, &e)) > 0)
            ;
        assert_int_equal(r, -EPROTO);
    }
    close(dfd);
    buf_done(&img);
    assert_int_equal(rm_rf(etc), 0);
    assert_int_equal(rm_rf(out), 0);
}

/* One entry written by the initramfs writer (names it accepts) into its own archive. */
static int unpack_one(const char *dir, void (*add)(struct cpio_writer *w))
{
    struct buf img = BUF_INIT(1 << 20);
    struct cpio_writer w;
    int dfd, r;

    cpio_writer_init(&w, &img);
    add(&w);
    assert_int_equal(cpio_finish(&w), 0);
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    r = guest_cpio_unpack(dfd, (const uint8_t *)img.p, img.len);
    close(dfd);
    buf_done(&img);
    return r;
}

static void add_outside(struct cpio_writer *w)
{
    assert_int_equal(cpio_add_file(w, "init", 0755, "x", 1), 0);
}
static void add_prefix(struct cpio_writer *w)
{
    assert_int_equal(cpio_add_file(w, "bottlex", 0644, "x", 1), 0);
}
static void add_dev(struct cpio_writer *w)
{
    assert_int_equal(cpio_add_chardev(w, "bottle/console", 0600, 5, 1), 0);
}
static void add_setuid(struct cpio_writer *w)
{
    assert_int_equal(cpio_add_file(w, "bottle/su", 04755, "x", 1), 0);
}
static void add_link_then_file(struct cpio_writer *w)
{
    /* a file written through a symlink the archive made first */
    assert_int_equal(cpio_add_dir(w, "bottle", 0700), 0);
    assert_int_equal(cpio_add_symlink(w, "bottle/x", "/tmp/test-cpio-escaped"), 0);
    assert_int_equal(cpio_add_file(w, "bottle/x", 0644, "x", 1), 0);
}

/* entries below a symlink an earlier entry made: a directory, then a file, through it */
static char escape_dir[64];
static void add_dir_through_link(struct cpio_writer *w)
{
    assert_int_equal(cpio_add_dir(w, "bottle", 0700), 0);
    assert_int_equal(cpio_add_symlink(w, "bottle/l", escape_dir), 0);
    assert_int_equal(cpio_add_dir(w, "bottle/l/d", 0755), 0);
}
static void add_file_through_link(struct cpio_writer *w)
{
    assert_int_equal(cpio_add_dir(w, "bottle", 0700), 0);
    assert_int_equal(cpio_add_symlink(w, "bottle/l", escape_dir), 0);
    assert_int_equal(cpio_add_file(w, "bottle/l/f", 0644, "x", 1), 0);
}

static void test_through_symlink(void **state)
{
    char out[] = "/tmp/test-cpio-link.XXXXXX", out2[] = "/tmp/test-cpio-link.XXXXXX", p[128];
    struct stat st;
    (void)state;

    (void)snprintf(escape_dir, sizeof(escape_dir), "/tmp/test-cpio-escdir.XXXXXX");
    assert_non_null(mkdtemp(escape_dir));
    assert_non_null(mkdtemp(out));
    assert_int_equal(unpack_one(out, add_dir_through_link), -ELOOP);
    (void)snprintf(p, sizeof(p), "%s/d", escape_dir);
    assert_int_equal(lstat(p, &st), -1);
    assert_int_equal(rm_rf(out), 0);
    assert_non_null(mkdtemp(out2));
    assert_int_equal(unpack_one(out2, add_file_through_link), -ELOOP);
    (void)snprintf(p, sizeof(p), "%s/f", escape_dir);
    assert_int_equal(lstat(p, &st), -1);
    assert_int_equal(rm_rf(out2), 0);
    assert_int_equal(rm_rf(escape_dir), 0);
}

static void test_refused(void **state)
{
    char out[] = "/tmp/test-cpio-bad.XXXXXX";
    struct stat st;
    (void)state;

    assert_non_null(mkdtemp(out));
    assert_int_equal(unpack_one(out, add_outside), -EPROTO);
    assert_int_equal(unpack_one(out, add_prefix), -EPROTO);
    assert_int_equal(unpack_one(out, add_dev), -EPROTO);
    assert_int_equal(unpack_one(out, add_setuid), -EPROTO);
    (void)unlink("/tmp/test-cpio-escaped");
    assert_int_equal(unpack_one(out, add_link_then_file), -EEXIST);
    assert_int_equal(lstat("/tmp/test-cpio-escaped", &st), -1);
    assert_int_equal(rm_rf(out), 0);
}

/* Hand-made headers: names with "..", a name without its NUL, lengths past the end. */
static size_t entry(uint8_t *p, const char *name, uint32_t namesize, uint32_t mode,
                    uint32_t filesize)
{
    char h[111];
    size_t n;

    (void)snprintf(h, sizeof(h), "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x", 1u,
                   mode, 0u, 0u, 1u, 0u, filesize, 0u, 0u, 0u, 0u, namesize, 0u);
    memcpy(p, h, 110);
    n = strlen(name);
    memcpy(p + 110, name, n);
    p[110 + n] = '\0';
    return (110 + namesize + 3) & ~(size_t)3;
}

static void test_malformed(void **state)
{
    uint8_t p[1024];
    struct guest_cpio_entry e;
    size_t off = 0, n;
    char out[] = "/tmp/test-cpio-mal.XXXXXX";
    int dfd;
    (void)state;

    memset(p, 0, sizeof(p));
    n = entry(p, "bottle/../etc", 14, 0100644, 0);
    n += entry(p + n, "TRAILER!!!", 11, 0, 0);
    assert_non_null(mkdtemp(out));
    dfd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_int_equal(guest_cpio_unpack(dfd, p, n), -EPROTO);
    close(dfd);
    assert_int_equal(rm_rf(out), 0);

    /* the name's size says 4 but its NUL comes later */
    memset(p, 0, sizeof(p));
    (void)entry(p, "bottle", 4, 040755, 0);
    assert_int_equal(guest_cpio_next(p, sizeof(p), &off, &e), -EPROTO);
    /* a file size past the input */
    off = 0;
    (void)entry(p, "bottle", 7, 0100644, 4096);
    assert_int_equal(guest_cpio_next(p, sizeof(p), &off, &e), -EPROTO);
    /* a name size of 0, and one over the limit */
    off = 0;
    (void)entry(p, "", 0, 0100644, 0);
    assert_int_equal(guest_cpio_next(p, sizeof(p), &off, &e), -EPROTO);
    off = 0;
    (void)entry(p, "b", 300, 0100644, 0);
    assert_int_equal(guest_cpio_next(p, sizeof(p), &off, &e), -EPROTO);
    /* bad magic, a non-hex digit */
    off = 0;
    (void)entry(p, "bottle", 7, 040755, 0);
    p[5] = '2';
    assert_int_equal(guest_cpio_next(p, sizeof(p), &off, &e), -EPROTO);
    p[5] = '1';
    p[20] = 'g';
    assert_int_equal(guest_cpio_next(p, sizeof(p), &off, &e), -EPROTO);
    /* an offset past the end */
    off = sizeof(p) + 1;
    assert_int_equal(guest_cpio_next(p, sizeof(p), &off, &e), -EPROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_through_symlink),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

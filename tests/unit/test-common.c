/* Unit tests for src/common: buf, str, net. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/fileio.h"
#include "common/net.h"
#include "common/progress.h"
#include "common/str.h"

static void test_buf_cap(void **state)
{
    struct buf b = BUF_INIT(8);
    (void)state;

    assert_int_equal(buf_append_str(&b, "abcd"), 0);
    assert_int_equal(buf_append_str(&b, "efgh"), 0);
    assert_string_equal(buf_str(&b), "abcdefgh");
    /* Exceeding the cap fails and frees, so a truncated value is never used. */
    assert_int_equal(buf_append_str(&b, "i"), -E2BIG);
    assert_int_equal(b.len, 0);
    assert_string_equal(buf_str(&b), "");
    assert_int_equal(buf_printf(&b, "%d-%s", 42, "x"), 0);
    assert_string_equal(buf_str(&b), "42-x");
    buf_consume(&b, 3);
    assert_string_equal(buf_str(&b), "x");
    char *t = buf_take(&b);
    assert_string_equal(t, "x");
    free(t);
    assert_null(b.p);
    buf_done(&b);
}

/* buf_consume moves no bytes; an append that runs out of room reuses the consumed prefix. */
static void test_buf_consume_offset(void **state)
{
    struct buf b = BUF_INIT(64);
    char *base;
    (void)state;

    assert_int_equal(buf_append_str(&b, "0123456789"), 0);
    base = b.p;
    buf_consume(&b, 4);
    assert_ptr_equal(b.p, base + 4); /* nothing moved */
    assert_int_equal(b.off, 4);
    assert_string_equal(buf_str(&b), "456789");
    buf_consume(&b, 2);
    assert_ptr_equal(b.p, base + 6);
    assert_string_equal(buf_str(&b), "6789");
    /* Fill to the allocation's end (64): the contents go back to the front, same memory. */
    while (b.len < b.cap)
        assert_int_equal(buf_append(&b, "x", 1), 0);
    assert_ptr_equal(b.p, base + 6);
    assert_int_equal(buf_append(&b, "yz", 2), 0);
    assert_ptr_equal(b.p, base);
    assert_int_equal(b.off, 0);
    assert_int_equal(memcmp(b.p, "6789", 4), 0);
    assert_int_equal(b.p[b.len], '\0');
    assert_int_equal(b.p[b.len - 1], 'z');
    /* The cap still counts only unconsumed bytes. */
    buf_consume(&b, b.len - 3);
    assert_int_equal(
        buf_append(&b, "0123456789012345678901234567890123456789012345678901234567890", 61), 0);
    assert_int_equal(b.len, 64);
    assert_int_equal(buf_append(&b, "!", 1), -E2BIG);
    /* buf_take hands out a pointer free() accepts even after consuming. */
    assert_int_equal(buf_append_str(&b, "abcdef"), 0);
    buf_consume(&b, 3);
    char *t = buf_take(&b);
    assert_string_equal(t, "def");
    free(t);
    buf_done(&b);
}

static void test_str_to_u64(void **state)
{
    uint64_t v = 7;
    uint16_t port;
    (void)state;

    assert_int_equal(str_to_u64(SLICE_LIT("0"), 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(str_to_u64(SLICE_LIT("18446744073709551615"), UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(str_to_u64(SLICE_LIT("18446744073709551616"), UINT64_MAX, &v), -ERANGE);
    assert_int_equal(str_to_u64(SLICE_LIT("11"), 10, &v), -ERANGE);
    assert_int_equal(str_to_u64(SLICE_LIT("5"), 0, &v), -ERANGE);
    assert_int_equal(str_to_u64(SLICE_LIT(""), 10, &v), -EINVAL);
    assert_int_equal(str_to_u64(SLICE_LIT("+1"), 10, &v), -EINVAL);
    assert_int_equal(str_to_u64(SLICE_LIT(" 1"), 10, &v), -EINVAL);
    assert_int_equal(str_to_u64(SLICE_LIT("1x"), 10, &v), -EINVAL);
    assert_int_equal(str_hex_to_u64(SLICE_LIT("fF"), 255, &v), 0);
    assert_int_equal(v, 255);
    assert_int_equal(str_hex_to_u64(SLICE_LIT("100"), 255, &v), -ERANGE);
    assert_int_equal(str_to_port(SLICE_LIT("0"), &port), -ERANGE);
    assert_int_equal(str_to_port(SLICE_LIT("65536"), &port), -ERANGE);
    assert_int_equal(str_to_port(SLICE_LIT("443"), &port), 0);
    assert_int_equal(port, 443);
}

static void test_str_path_rel_clean(void **state)
{
    (void)state;
    static const char *const good[] = { "a", "a/b", ".git/hooks", "..a", "a../b", ".x" };
    static const char *const bad[] = { "",  "/",  "/a",    "a/",   "a//b",
                                       ".", "..", "a/./b", "a/..", "../a" };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(str_path_rel_clean(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(str_path_rel_clean(bad[i]));
}

static void test_fileio(void **state)
{
    char dir[] = "/tmp/bb-test-fileio.XXXXXX", path[64], buf[8];
    FILE *f;
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/f", dir);
    /* write needs an existing file (as for /proc and cgroup files) */
    assert_int_equal(file_write_str(path, "x"), -ENOENT);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(file_write_str(path, "first\nsecond\n"), 0);
    /* bounded: size-1 bytes at most, NUL-terminated */
    assert_int_equal(file_read_small(path, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "first\ns");
    assert_int_equal(file_read_line(path, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "first");
    assert_int_equal(file_read_small(path, buf, 0), -EINVAL);
    unlink(path);
    assert_int_equal(file_read_line(path, buf, sizeof(buf)), -ENOENT);
    rmdir(dir);
}

static void test_slice(void **state)
{
    (void)state;
    assert_true(slice_eq_nocase(SLICE_LIT("Content-Length"), SLICE_LIT("content-length")));
    assert_false(slice_eq_nocase(SLICE_LIT("Content-Lengt"), SLICE_LIT("content-length")));
    struct slice t = slice_trim_ows(SLICE_LIT(" \t v \t"));
    assert_true(slice_eq(t, SLICE_LIT("v")));
}

/* net_accept out of descriptors: the pending connection is accepted and closed through the
 * spare (the peer sees EOF, nothing stays pending), and accepts work again afterwards. */
static void test_net_accept_shed(void **state)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct rlimit old, low;
    int lfd, c1, c2, spare, fd, lowest;
    char b;
    (void)state;

    /* an abstract unix socket: no file, no port */
    (void)snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "bb-test-accept-%d", (int)getpid());
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 8), 0);
    spare = net_spare_fd_open();
    assert_true(spare >= 0);
    assert_int_equal(net_accept(lfd, 0, &spare), -EAGAIN);
    c1 = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    c2 = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c1 >= 0 && c2 >= 0);
    lowest = fcntl(0, F_DUPFD_CLOEXEC, 0); /* the lowest free number */
    assert_true(lowest >= 0);
    close(lowest);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)lowest;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    assert_int_equal(connect(c1, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(net_accept(lfd, 0, &spare), -ECONNREFUSED);
    assert_true(spare >= 0);
    assert_int_equal(net_accept(lfd, 0, &spare), -EAGAIN); /* nothing left pending */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_int_equal(recv(c1, &b, 1, 0), 0); /* closed unanswered */
    assert_int_equal(connect(c2, (struct sockaddr *)&sa, sizeof(sa)), 0);
    fd = net_accept(lfd, 0, &spare);
    assert_true(fd >= 0);
    close(fd);
    close(c1);
    close(c2);
    close(spare);
    close(lfd);
}

static void test_net_addr(void **state)
{
    struct net_addr a;
    char s[NET_ADDRSTR_MAX];
    (void)state;

    assert_int_equal(net_addr_parse("127.0.0.1:3128", 0, &a), 0);
    net_addr_format((struct sockaddr *)&a.ss, s);
    assert_string_equal(s, "127.0.0.1:3128");
    assert_int_equal(net_addr_parse("[::1]:53", 0, &a), 0);
    net_addr_format((struct sockaddr *)&a.ss, s);
    assert_string_equal(s, "[::1]:53");
    assert_int_equal(net_addr_parse("127.0.0.1", 53, &a), 0);
    assert_int_equal(net_addr_port((struct sockaddr *)&a.ss), 53);
    assert_int_equal(net_addr_parse("127.0.0.1", 0, &a), -EINVAL);
    assert_int_equal(net_addr_parse("::1:53", 0, &a), -EINVAL);
    assert_int_equal(net_addr_parse("localhost:53", 0, &a), -EINVAL);
    assert_int_equal(net_addr_parse("1.2.3.4:0", 0, &a), -EINVAL);
    assert_int_equal(net_addr_parse("1.2.3.4:99999", 0, &a), -EINVAL);
    assert_int_equal(net_addr_parse("[::1]x", 0, &a), -EINVAL);
    assert_int_equal(net_addr_parse("", 0, &a), -EINVAL);
}

/* Everything written to f so far (a memstream), then emptied. */
static char *drain(FILE *f, char **buf, size_t *len)
{
    char *copy;

    fflush(f);
    copy = strndup(*buf, *len);
    rewind(f);
    fflush(f);
    (*buf)[0] = '\0';
    return copy;
}

static void test_progress(void **state)
{
    char *buf = NULL, *got;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct progress p;
    (void)state;

    assert_non_null(f);
    /* not a terminal: plain lines; a new detail is a line, the same one is not */
    progress_begin_to(&p, f, false, 0, false, "installing %s", "x");
    got = drain(f, &buf, &len);
    assert_string_equal(got, "bot-bottle: installing x (0 s)\n");
    free(got);
    progress_update(&p, "step %d", 1);
    progress_update(&p, "step %d", 1);
    progress_update(&p, NULL);
    got = drain(f, &buf, &len);
    assert_string_equal(got, "bot-bottle: installing x: step 1 (0 s)\n");
    free(got);
    progress_update(&p, "line\twith\033[1mescape");
    got = drain(f, &buf, &len);
    assert_string_equal(got, "bot-bottle: installing x: line with [1mescape (0 s)\n");
    free(got);
    progress_end(&p, true, "installed %s", "x");
    got = drain(f, &buf, &len);
    assert_string_equal(got, "bot-bottle: installed x (0 s)\n");
    free(got);

    /* a terminal: one line redrawn in place, cut to the width, erased at the end */
    progress_begin_to(&p, f, true, 20, false, "a long description of the work");
    got = drain(f, &buf, &len);
    assert_string_equal(got, "\r\033[Kbot-bottle: a long ");
    free(got);
    progress_update(&p, "more"); /* (drawn at most every PROGRESS_TTY_INTERVAL_MS) */
    got = drain(f, &buf, &len);
    assert_string_equal(got, "");
    free(got);
    progress_end(&p, false, "failed");
    got = drain(f, &buf, &len);
    assert_string_equal(got, "\r\033[Kbot-bottle: failed (0 s)\n");
    free(got);

    /* quiet: nothing at all */
    progress_begin_to(&p, f, true, 80, true, "x");
    progress_update(&p, "y");
    progress_clear(&p);
    progress_end(&p, true, "z");
    progress_begin_to(&p, f, false, 80, true, "x");
    progress_update(&p, "y");
    progress_end(&p, false, "z");
    got = drain(f, &buf, &len);
    assert_string_equal(got, "");
    free(got);
    fclose(f);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_cap),    cmocka_unit_test(test_buf_consume_offset),
        cmocka_unit_test(test_str_to_u64), cmocka_unit_test(test_str_path_rel_clean),
        cmocka_unit_test(test_slice),      cmocka_unit_test(test_fileio),
        cmocka_unit_test(test_net_addr),   cmocka_unit_test(test_net_accept_shed),
        cmocka_unit_test(test_progress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

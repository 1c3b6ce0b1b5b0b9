/* Unit tests for src/common/bufq: cap, chunk wraparound, reserve/commit, iovecs, spare pool,
 * fd I/O, and a random differential run against a flat array. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/bufq.h"

/* Copy the whole queue out through bufq_peek_iov, to compare with what went in. */
static size_t drain_copy(const struct bufq *q, uint8_t *out, size_t cap)
{
    struct iovec iov[64];
    size_t n = bufq_peek_iov(q, iov, 64), off = 0;

    for (size_t i = 0; i < n; i++) {
        assert_true(off + iov[i].iov_len <= cap);
        memcpy(out + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    return off;
}

static void test_bufq_cap(void **state)
{
    struct bufq q;
    uint8_t big[100], *p;
    size_t avail;
    (void)state;

    memset(big, 'x', sizeof(big));
    bufq_init(&q, 8, 20, 0);
    assert_int_equal(bufq_append(&q, big, 20), 0);
    assert_int_equal(bufq_len(&q), 20);
    assert_int_equal(q.nchunks, 3);
    /* Over the cap: refused whole, nothing changes. */
    assert_int_equal(bufq_append(&q, big, 1), -ENOBUFS);
    assert_int_equal(bufq_len(&q), 20);
    assert_int_equal(bufq_reserve(&q, 1, &p, &avail), -ENOBUFS);
    bufq_consume(&q, 5);
    assert_int_equal(bufq_room(&q), 5);
    assert_int_equal(bufq_append(&q, big, 6), -ENOBUFS);
    assert_int_equal(bufq_len(&q), 15);
    assert_int_equal(bufq_append(&q, big, 5), 0);
    assert_int_equal(bufq_len(&q), 20);
    /* A reservation never offers more than the cap allows, nor more than a chunk. */
    bufq_consume(&q, 3);
    assert_int_equal(bufq_reserve(&q, 9, &p, &avail), -EINVAL);
    assert_int_equal(bufq_reserve(&q, 0, &p, &avail), -EINVAL);
    assert_int_equal(bufq_reserve(&q, 2, &p, &avail), 0);
    assert_true(avail >= 2 && avail <= 3);
    bufq_done(&q);
    assert_int_equal(bufq_len(&q), 0);
    assert_null(q.head);
}

static void test_bufq_wraparound(void **state)
{
    struct bufq q;
    uint8_t in[256], out[256];
    size_t len, got;
    const uint8_t *h;
    uint8_t next = 0, expect = 0;
    (void)state;

    /* A queue far smaller than what flows through it: bytes cross chunk boundaries and
     * chunks are recycled through the spare pool many times, in order. */
    bufq_init(&q, 7, 30, 2);
    for (int round = 0; round < 1000; round++) {
        size_t n = (size_t)(round * 13 % 29) + 1;
        if (n > bufq_room(&q))
            n = bufq_room(&q);
        for (size_t i = 0; i < n; i++)
            in[i] = next++;
        assert_int_equal(bufq_append(&q, in, n), 0);
        assert_true(q.nspare <= 2);
        assert_true(q.nchunks <= 30 / 7 + 2);
        got = drain_copy(&q, out, sizeof(out));
        assert_int_equal(got, bufq_len(&q));
        for (size_t i = 0; i < got; i++)
            assert_int_equal(out[i], (uint8_t)(expect + i));
        h = bufq_peek(&q, &len);
        assert_non_null(h);
        assert_true(len >= 1 && len <= 7);
        assert_int_equal(h[0], expect);
        size_t c = (size_t)(round * 7 % 23) + 1;
        if (c > bufq_len(&q))
            c = bufq_len(&q);
        bufq_consume(&q, c);
        expect = (uint8_t)(expect + c);
    }
    bufq_consume(&q, bufq_len(&q));
    assert_true(bufq_empty(&q));
    assert_null(bufq_peek(&q, &len));
    assert_int_equal(len, 0);
    assert_int_equal(q.nchunks, 0);
    assert_int_equal(q.nspare, 2); /* kept within the pool bound, the rest freed */
    bufq_done(&q);
    assert_int_equal(q.nspare, 0);
}

static void test_bufq_reserve(void **state)
{
    struct bufq q;
    uint8_t *p, *p2, out[64];
    size_t avail;
    (void)state;

    bufq_init(&q, 16, 64, 1);
    assert_int_equal(bufq_append(&q, "0123456789", 10), 0);
    /* 6 bytes left in the tail: a reservation of 6 fits there, one of 7 opens a chunk. */
    assert_int_equal(bufq_reserve(&q, 6, &p, &avail), 0);
    assert_int_equal(avail, 6);
    assert_int_equal(q.nchunks, 1);
    assert_int_equal(bufq_reserve(&q, 7, &p, &avail), 0);
    assert_int_equal(avail, 16);
    assert_int_equal(q.nchunks, 2);
    /* Nothing committed: the empty tail is reused, not left behind. */
    assert_int_equal(bufq_reserve(&q, 7, &p2, &avail), 0);
    assert_ptr_equal(p, p2);
    assert_int_equal(q.nchunks, 2);
    memcpy(p, "abcdefg", 7);
    bufq_commit(&q, 7);
    assert_int_equal(bufq_len(&q), 17);
    assert_int_equal(drain_copy(&q, out, sizeof(out)), 17);
    assert_memory_equal(out, "0123456789abcdefg", 17);
    /* Consuming across the gap the reservation skipped. */
    bufq_consume(&q, 12);
    assert_int_equal(drain_copy(&q, out, sizeof(out)), 5);
    assert_memory_equal(out, "cdefg", 5);
    bufq_done(&q);
}

static void test_bufq_fd(void **state)
{
    struct bufq q;
    int sv[2];
    uint8_t data[10000], back[10000];
    ssize_t n;
    size_t got = 0;
    (void)state;

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 31 + 7);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    bufq_init(&q, 1024, 4096, 1);
    assert_int_equal(bufq_write_fd(&q, sv[0], true), 0); /* empty */
    assert_int_equal(bufq_read_fd(&q, sv[1], 4096), -EAGAIN);
    assert_int_equal(write(sv[0], data, sizeof(data)), (ssize_t)sizeof(data));
    /* Reads stop at the cap, one chunk's room at a time. */
    while ((n = bufq_read_fd(&q, sv[1], 100000)) > 0)
        assert_true(n <= 1024);
    assert_int_equal(n, -ENOBUFS);
    assert_int_equal(bufq_len(&q), 4096);
    /* write-out sends several chunks at once (one sendmsg with an iovec per chunk). */
    n = bufq_write_fd(&q, sv[1], true);
    assert_int_equal(n, 4096);
    assert_true(bufq_empty(&q));
    while (got < 4096) {
        n = read(sv[0], back + got, sizeof(back) - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_memory_equal(back, data, 4096);
    /* writev path on a pipe, and EOF. */
    int pf[2];
    assert_int_equal(pipe2(pf, O_NONBLOCK), 0);
    assert_int_equal(bufq_append(&q, data, 3000), 0);
    assert_int_equal(bufq_write_fd(&q, pf[1], false), 3000);
    close(pf[1]);
    assert_int_equal(bufq_read_fd(&q, pf[0], 5000), 1024);
    assert_int_equal(bufq_read_fd(&q, pf[0], 5000), 1024);
    assert_int_equal(bufq_read_fd(&q, pf[0], 5000), 952);
    assert_int_equal(bufq_read_fd(&q, pf[0], 5000), 0);
    assert_int_equal(drain_copy(&q, back, sizeof(back)), 3000);
    assert_memory_equal(back, data, 3000);
    close(pf[0]);
    close(sv[0]);
    close(sv[1]);
    bufq_done(&q);
}

/* Random appends, reservations and consumes against a flat array model. */
static void test_bufq_model(void **state)
{
    enum { CAP = 300 };
    struct bufq q;
    uint8_t model[CAP], out[CAP], tmp[CAP];
    size_t mlen = 0;
    uint32_t seed = 12345;
    uint8_t next = 0;
    (void)state;

    bufq_init(&q, 13, CAP, 3);
    for (int i = 0; i < 20000; i++) {
        seed = seed * 1103515245u + 12345u;
        uint32_t op = (seed >> 16) % 3, arg = (seed >> 4) % 40;
        if (op == 0) {
            for (uint32_t k = 0; k < arg; k++)
                tmp[k] = next++;
            int r = bufq_append(&q, tmp, arg);
            if (mlen + arg > CAP) {
                assert_int_equal(r, -ENOBUFS);
                next = (uint8_t)(next - arg);
            } else {
                assert_int_equal(r, 0);
                memcpy(model + mlen, tmp, arg);
                mlen += arg;
            }
        } else if (op == 1) {
            uint8_t *p;
            size_t avail, min = arg % 13 + 1;
            int r = bufq_reserve(&q, min, &p, &avail);
            if (mlen + min > CAP) {
                assert_int_equal(r, -ENOBUFS);
                continue;
            }
            assert_int_equal(r, 0);
            assert_true(avail >= min && avail <= 13 && mlen + avail <= CAP);
            size_t c = arg % (avail + 1);
            for (size_t k = 0; k < c; k++)
                p[k] = model[mlen + k] = next++;
            bufq_commit(&q, c);
            mlen += c;
        } else {
            size_t c = arg > mlen ? mlen : arg;
            bufq_consume(&q, c);
            memmove(model, model + c, mlen - c);
            mlen -= c;
        }
        assert_int_equal(bufq_len(&q), mlen);
        assert_true(q.nspare <= 3);
        assert_int_equal(drain_copy(&q, out, sizeof(out)), mlen);
        assert_memory_equal(out, model, mlen);
    }
    bufq_done(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bufq_cap),     cmocka_unit_test(test_bufq_wraparound),
        cmocka_unit_test(test_bufq_reserve), cmocka_unit_test(test_bufq_fd),
        cmocka_unit_test(test_bufq_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

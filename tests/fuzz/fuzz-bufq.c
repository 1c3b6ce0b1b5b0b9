/*
 * Differential fuzz of src/common/bufq against a flat array: the input is a program of
 * append / reserve+commit / consume operations on a small queue (small chunks, small cap, a
 * spare pool), so chunk boundaries, the cap and chunk recycling are all hit. After every
 * operation the queue must hold exactly the model's bytes, in order, within its caps.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/bufq.h"
#include "fuzz.h"

#define CAP 512

static void check(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bufq q;
    static uint8_t model[CAP], out[CAP];
    struct iovec iov[CAP];
    size_t mlen = 0, i = 0;
    uint8_t next = 0;

    if (size < 2)
        return 0;
    /* Byte 0: chunk size 1..16; byte 1: spare pool bound 0..3 and cap (1..CAP). */
    bufq_init(&q, (size_t)(data[0] % 16) + 1, (size_t)(data[1] * 2 % CAP) + 1, data[1] >> 6);
    for (i = 2; i + 1 < size; i += 2) {
        uint8_t op = data[i] & 3, arg = data[i + 1];
        if (op == 0) {
            uint8_t tmp[256];
            for (size_t k = 0; k < arg; k++)
                tmp[k] = (uint8_t)(next + k);
            int r = bufq_append(&q, tmp, arg);
            if (mlen + arg > q.max) {
                check(r == -ENOBUFS);
            } else {
                check(r == 0);
                memcpy(model + mlen, tmp, arg);
                mlen += arg;
                next = (uint8_t)(next + arg);
            }
        } else if (op == 1) {
            uint8_t *p;
            size_t avail, min = (size_t)(arg & 15) + 1;
            int r = bufq_reserve(&q, min, &p, &avail);
            if (min > q.chunk_size) {
                check(r == -EINVAL);
            } else if (mlen + min > q.max) {
                check(r == -ENOBUFS);
            } else {
                check(r == 0 && avail >= min && avail <= q.chunk_size && mlen + avail <= q.max);
                size_t c = (size_t)(arg >> 4) % (avail + 1);
                for (size_t k = 0; k < c; k++)
                    p[k] = model[mlen + k] = next++;
                bufq_commit(&q, c);
                mlen += c;
            }
        } else if (op == 2) {
            size_t c = arg > mlen ? mlen : arg;
            bufq_consume(&q, c);
            memmove(model, model + c, mlen - c);
            mlen -= c;
        } else {
            bufq_reset(&q);
            mlen = 0;
        }
        check(bufq_len(&q) == mlen && mlen <= q.max && q.nspare <= q.max_spare);
        size_t n = bufq_peek_iov(&q, iov, CAP), off = 0;
        for (size_t k = 0; k < n; k++) {
            check(iov[k].iov_len > 0 && off + iov[k].iov_len <= mlen);
            memcpy(out + off, iov[k].iov_base, iov[k].iov_len);
            off += iov[k].iov_len;
        }
        check(off == mlen && memcmp(out, model, mlen) == 0);
        size_t hl;
        const uint8_t *h = bufq_peek(&q, &hl);
        check(mlen == 0 ? h == NULL && hl == 0 : h != NULL && hl >= 1 && h[0] == model[0]);
    }
    bufq_done(&q);
    return 0;
}

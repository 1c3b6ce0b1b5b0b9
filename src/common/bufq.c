#include "common/bufq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/macro.h"
#include "common/xalloc.h"

struct bufq_chunk {
    struct bufq_chunk *next;
    size_t r; /* offset of the first unread byte */
    size_t w; /* offset of the first unwritten byte; r <= w <= chunk_size */
    uint8_t data[];
};

void bufq_init(struct bufq *q, size_t chunk_size, size_t max, size_t max_spare)
{
    *q = (struct bufq){ .chunk_size = chunk_size ? chunk_size : 1,
                        .max = max,
                        .max_spare = max_spare };
}

static void chunk_list_free(struct bufq_chunk *c)
{
    while (c) {
        struct bufq_chunk *next = c->next;
        free(c);
        c = next;
    }
}

void bufq_done(struct bufq *q)
{
    chunk_list_free(q->head);
    chunk_list_free(q->spare);
    q->head = q->tail = q->spare = NULL;
    q->len = q->nchunks = q->nspare = 0;
}

/* A chunk leaves the chain: to the spare pool if it has room, else freed. */
static void chunk_release(struct bufq *q, struct bufq_chunk *c)
{
    if (q->nspare < q->max_spare) {
        c->next = q->spare;
        q->spare = c;
        q->nspare++;
    } else {
        free(c);
    }
}

void bufq_reset(struct bufq *q)
{
    while (q->head) {
        struct bufq_chunk *c = q->head;
        q->head = c->next;
        chunk_release(q, c);
    }
    q->tail = NULL;
    q->len = q->nchunks = 0;
}

/* Append an empty chunk to the chain (from the spare pool when there is one). */
static struct bufq_chunk *chunk_push(struct bufq *q)
{
    struct bufq_chunk *c = q->spare;

    if (c) {
        q->spare = c->next;
        q->nspare--;
    } else {
        c = xmalloc(sizeof(*c) + q->chunk_size);
    }
    c->next = NULL;
    c->r = c->w = 0;
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    q->nchunks++;
    return c;
}

int bufq_append(struct bufq *q, const void *p, size_t n)
{
    const uint8_t *src = p;

    if (n > bufq_room(q))
        return -ENOBUFS;
    while (n > 0) {
        struct bufq_chunk *c = q->tail;
        size_t k;

        if (!c || c->w == q->chunk_size)
            c = chunk_push(q);
        k = MIN(n, q->chunk_size - c->w);
        memcpy(c->data + c->w, src, k);
        c->w += k;
        q->len += k;
        src += k;
        n -= k;
    }
    return 0;
}

int bufq_reserve(struct bufq *q, size_t min, uint8_t **ret, size_t *avail)
{
    struct bufq_chunk *c = q->tail;

    if (min == 0 || min > q->chunk_size)
        return -EINVAL;
    if (min > bufq_room(q))
        return -ENOBUFS;
    if (!c || q->chunk_size - c->w < min) {
        /* An empty tail (reserved, nothing committed) is reused rather than skipped. */
        if (c && c->r == c->w)
            c->r = c->w = 0;
        else
            c = chunk_push(q);
    }
    *ret = c->data + c->w;
    *avail = MIN(q->chunk_size - c->w, bufq_room(q));
    return 0;
}

void bufq_commit(struct bufq *q, size_t n)
{
    if (n == 0)
        return;
    q->tail->w += n;
    q->len += n;
}

const uint8_t *bufq_peek(const struct bufq *q, size_t *len)
{
    const struct bufq_chunk *c = q->head;

    /* Only the tail may be empty, and then the queue is. */
    if (!c || c->r == c->w) {
        *len = 0;
        return NULL;
    }
    *len = c->w - c->r;
    return c->data + c->r;
}

size_t bufq_peek_iov(const struct bufq *q, struct iovec *iov, size_t n)
{
    size_t i = 0;

    for (const struct bufq_chunk *c = q->head; c && i < n; c = c->next) {
        if (c->r == c->w)
            continue;
        iov[i].iov_base = (void *)(c->data + c->r);
        iov[i].iov_len = c->w - c->r;
        i++;
    }
    return i;
}

void bufq_consume(struct bufq *q, size_t n)
{
    if (n > q->len)
        n = q->len;
    q->len -= n;
    while (q->head) {
        struct bufq_chunk *c = q->head;
        size_t k = MIN(n, c->w - c->r);

        c->r += k;
        n -= k;
        if (c->r < c->w)
            break;
        /* Drained: leave the chain (an empty queue keeps no chunk in it). */
        q->head = c->next;
        if (!q->head)
            q->tail = NULL;
        q->nchunks--;
        chunk_release(q, c);
    }
}

ssize_t bufq_read_fd(struct bufq *q, int fd, size_t max)
{
    uint8_t *p;
    size_t avail;
    ssize_t n;
    int r;

    if (max == 0)
        return -EINVAL;
    r = bufq_reserve(q, 1, &p, &avail);
    if (r < 0)
        return r;
    avail = MIN(avail, max);
    do {
        n = read(fd, p, avail);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    bufq_commit(q, (size_t)n);
    return n;
}

ssize_t bufq_write_fd(struct bufq *q, int fd, bool sock)
{
    struct iovec iov[BUFQ_IOV_MAX];
    size_t cnt = bufq_peek_iov(q, iov, BUFQ_IOV_MAX);
    ssize_t n;

    if (cnt == 0)
        return 0;
    do {
        if (sock) {
            struct msghdr msg = { .msg_iov = iov, .msg_iovlen = cnt };
            n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        } else {
            n = writev(fd, iov, (int)cnt);
        }
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    bufq_consume(q, (size_t)n);
    return n;
}

/*
 * struct bufq: a byte queue made of a chain of fixed-size chunks, with a hard cap on the bytes
 * it holds (set at creation). Bytes are appended at the tail and consumed from the head; no
 * byte is ever moved once written (no memmove, no realloc), so a consumer can hand several
 * chunks to writev()/sendmsg() at once. The idea comes from curl's bufq
 * (curl:docs/internals/BUFQ.md); this is our own, smaller version.
 *
 * Invariants (checked by tests/unit/test-bufq.c and the bufq fuzz target):
 *   - len == the sum over the chain of (chunk w - chunk r), and len <= max, always. An append
 *     that would exceed max fails with -ENOBUFS and changes nothing (all or nothing).
 *   - Every chunk in the chain but the tail holds at least one unread byte (the tail may be
 *     empty: bufq_reserve() opened it and less, or nothing, was committed).
 *   - Chunks are never resized: bytes stay where they were written until consumed, so a
 *     pointer from bufq_peek()/bufq_peek_iov() is valid until the next consume or done.
 *   - Memory: chain chunks hold the queued bytes plus, per chunk, the consumed prefix of the
 *     head and the tail room a bufq_reserve(min) skipped (< min bytes); at most max_spare
 *     empty chunks are kept for reuse (the spare pool), the rest are freed at once.
 *     So memory <= (max / (chunk_size - min + 1) + 2 + max_spare) * chunk_size.
 *
 * Not thread-safe. Allocation failure aborts (xmalloc), like the rest of the project.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct bufq_chunk;

struct bufq {
    struct bufq_chunk *head, *tail; /* chain of chunks holding bytes (NULL when empty) */
    struct bufq_chunk *spare;       /* empty chunks kept for reuse */
    size_t chunk_size;              /* bytes of data per chunk */
    size_t max;                     /* hard cap on len */
    size_t max_spare;               /* cap on nspare */
    size_t len;                     /* bytes queued */
    size_t nchunks;                 /* chunks in the chain */
    size_t nspare;                  /* chunks in the spare pool */
};

/* A queue of at most max bytes in chunks of chunk_size bytes (> 0), keeping at most max_spare
 * empty chunks around. Allocates nothing until the first append. */
void bufq_init(struct bufq *q, size_t chunk_size, size_t max, size_t max_spare);
/* Frees every chunk (chain and spares); the queue is empty and reusable with the same sizes. */
void bufq_done(struct bufq *q);
/* Drops every queued byte; chunks go to the spare pool (within max_spare). */
void bufq_reset(struct bufq *q);

static inline size_t bufq_len(const struct bufq *q)
{
    return q->len;
}
static inline bool bufq_empty(const struct bufq *q)
{
    return q->len == 0;
}
/* Bytes that may still be appended before the cap. */
static inline size_t bufq_room(const struct bufq *q)
{
    return q->max - q->len;
}

/* Append n bytes (copied, across chunks as needed). Returns 0, or -ENOBUFS (nothing appended)
 * when len + n > max. */
int bufq_append(struct bufq *q, const void *p, size_t n);
/*
 * Make at least min contiguous bytes (0 < min <= chunk_size) writable at the tail: the tail
 * chunk's room if it has min, else a new chunk. Returns 0, *ret and *avail (>= min, at most
 * the contiguous room and bufq_room()); or -ENOBUFS when len + min > max, or -EINVAL for a
 * bad min. Bytes written there are queued only by bufq_commit().
 */
int bufq_reserve(struct bufq *q, size_t min, uint8_t **ret, size_t *avail);
/* Queue n bytes written at the pointer the last bufq_reserve() returned (n <= its *avail).
 * A reservation lasts until the next call on the queue: commit before anything else. */
void bufq_commit(struct bufq *q, size_t n);

/* The first contiguous run of queued bytes (in the head chunk): returns it and *len, or NULL
 * and 0 when empty. */
const uint8_t *bufq_peek(const struct bufq *q, size_t *len);
/* Fill up to n iovecs with the queued bytes in order, one per chunk; returns how many. */
size_t bufq_peek_iov(const struct bufq *q, struct iovec *iov, size_t n);
/* Drop the first n bytes (n <= len). Emptied chunks go to the spare pool or are freed. */
void bufq_consume(struct bufq *q, size_t n);

/*
 * Read once from fd into the tail (at most max bytes and bufq_room(); one read()).
 * Returns bytes read (> 0), 0 at end of file, -ENOBUFS when the queue is full, -EAGAIN, or
 * -errno (EINTR is retried).
 */
ssize_t bufq_read_fd(struct bufq *q, int fd, size_t max);
/*
 * Write queued bytes to fd with one writev() (or, when sock, one sendmsg() with MSG_NOSIGNAL
 * | MSG_DONTWAIT) of up to BUFQ_IOV_MAX chunks, and consume what was written. Returns bytes
 * written (>= 0; 0 only when the queue is empty), -EAGAIN, or -errno (EINTR is retried).
 */
#define BUFQ_IOV_MAX 16
ssize_t bufq_write_fd(struct bufq *q, int fd, bool sock);

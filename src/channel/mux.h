/*
 * struct mux: one end of a bottle channel, driven by the project loop (common/loop.h).
 *
 * A mux owns one connected, byte-stream fd (a unix socket, or a virtio-serial port
 * /dev/vportNpM in the guest) and multiplexes streams over it with the protocol in
 * channel/proto.h. Each stream is bound to a local endpoint:
 *   - an fd the mux owns: a TCP socket (guest: the accepted client; host: the socket connected
 *     or connecting to the egress daemon), any byte-stream socket for the host-opened kinds
 *     (exec, status; the host opens them with mux_open_fd, the guest owner accepts them in
 *     ops->open_stream) or, host side, a connected UDP socket (one datagram per DATA frame);
 *   - guest side, a datagram sink (mux_open_dgram): the owner feeds datagrams in and gets the
 *     replies through a callback (the UDP relay keeps the client address).
 *
 * Guarantees:
 *   - Memory is bounded: per stream at most one receive window (CHANNEL_WINDOW on the host,
 *     CHANNEL_WINDOW_GUEST in the guest) waits for a slow local reader;
 *     the channel output queue is bounded (local fds are not read while it is over its
 *     high-water mark, the channel fd is not read while control frames back up further).
 *   - A stream whose local reader stalls only stops its own sender (per-stream credit).
 *   - Half-close: local EOF -> FIN; FIN -> shutdown(SHUT_WR) once queued bytes are written.
 *   - Fail closed: when the channel fd fails, reaches EOF or the peer breaks the protocol,
 *     every stream is torn down (TCP clients get a RST), the mux becomes dead (no new
 *     streams: mux_open_* fail with -EPIPE) and ops->dead is called once.
 *
 * Not thread-safe; all calls from the loop's thread. The mux never logs above debug.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "channel/proto.h"
#include "common/loop.h"

struct mux;
struct mux_stream;

struct mux_ops {
    /*
     * The peer opened a stream of `kind` (host role: a guest kind; guest role: EXEC or
     * STATUS). Return a non-blocking, close-on-exec fd whose connect may still be in progress
     * (the mux answers OPEN_OK once it completes, or RESET(REFUSED) if it fails): a
     * SOCK_STREAM socket (or one end of a socketpair) for the byte-stream kinds, a connected
     * SOCK_DGRAM socket for CHANNEL_KIND_UDP_DNS. The mux owns it from then on. Return -errno
     * to refuse the stream (RESET(REFUSED)). Required for the host role; a guest without it
     * refuses every host-opened stream.
     */
    int (*open_stream)(void *userdata, enum channel_kind kind);
    /*
     * The channel died (err: -EPROTO protocol violation by the peer, -EPROTONOSUPPORT the
     * peer speaks another protocol version (mux_peer_version), -ECONNRESET peer closed the
     * channel, -ENOBUFS output overflow, other -errno I/O error). Called once, from the
     * loop's deferred work, never from inside a mux_* call. The mux is inert afterwards; the
     * callback may call mux_free().
     */
    void (*dead)(void *userdata, int err);
};

/* Guest role: the local side of a datagram stream that has no fd of its own. */
struct mux_dgram_ops {
    /* One datagram from the host (1..CHANNEL_MAX_PAYLOAD bytes; p valid during the call). */
    void (*recv)(struct mux_stream *s, const uint8_t *p, size_t len, void *userdata);
    /* The stream is gone (reset by the peer, or the channel died); s is invalid after this. */
    void (*closed)(struct mux_stream *s, void *userdata);
};

/* Counters for tests and diagnostics. */
struct mux_stats {
    size_t streams;    /* live stream objects */
    size_t out_queued; /* bytes waiting to be written to the channel fd */
    size_t out_max;    /* high-water mark of out_queued */
    size_t rx_queued;  /* bytes waiting for local readers, all streams */
    size_t rx_max;     /* high-water mark of rx_queued */
    uint64_t frames_in;
    uint64_t frames_out;
    uint64_t resets_in;
    uint64_t resets_out;
    uint64_t dgrams_dropped; /* datagrams dropped for lack of credit or queue space */
};

/*
 * Create a mux over fd (ownership passes to the mux, even on failure; it is made
 * non-blocking). ops->open_stream is required for CHANNEL_ROLE_HOST; ops->dead is optional.
 * The HELLO is queued at once. Returns 0 and *ret, or -errno.
 */
int mux_new(struct loop *loop, int fd, enum channel_role role, const struct mux_ops *ops,
            void *userdata, struct mux **ret);
/*
 * Close the channel fd and every stream (their fds too) and free the mux. Does not call
 * ops->dead. Accepts NULL; returns NULL. Safe from inside ops->dead.
 */
struct mux *mux_free(struct mux *m);
/* True once the channel has died (ops->dead has been or is about to be called). */
bool mux_is_dead(const struct mux *m);
/* The version in the peer's HELLO (0 before it arrived), e.g. to explain -EPROTONOSUPPORT. */
unsigned mux_peer_version(const struct mux *m);

/*
 * Open a byte stream of `kind` to the peer, bound to the connected socket fd (owned by the mux
 * from now on; closed on failure too): the guest opens TCP_PROXY / TCP_DNS, the host EXEC /
 * STATUS. Data read from fd may be sent before OPEN_OK arrives. Returns 0, -EPIPE (channel
 * dead), -ENOSPC (stream limit), -EINVAL (a kind this role may not open) or -errno.
 */
int mux_open_fd(struct mux *m, enum channel_kind kind, int fd);
/*
 * Guest role: open a datagram stream of `kind` without an fd. Replies come through ops->recv.
 * Returns 0 and *ret (valid until ops->closed or mux_stream_close), or -EPIPE / -ENOSPC.
 */
int mux_open_dgram(struct mux *m, enum channel_kind kind, const struct mux_dgram_ops *ops,
                   void *userdata, struct mux_stream **ret);
/*
 * Send one datagram on a stream from mux_open_dgram. Returns 0, -EMSGSIZE (empty or larger
 * than CHANNEL_MAX_PAYLOAD), -EAGAIN (no credit or the channel is backed up: the datagram was
 * not sent; UDP is lossy, drop it) or -EPIPE (stream or channel gone).
 */
int mux_stream_send_dgram(struct mux_stream *s, const void *p, size_t len);
/* Reset a stream from mux_open_dgram (RESET(reason) to the peer); ops->closed is not called. */
void mux_stream_close(struct mux_stream *s, enum channel_reason reason);

void mux_get_stats(const struct mux *m, struct mux_stats *ret);

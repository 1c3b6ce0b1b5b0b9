/*
 * Fuzz the channel frame decoder and the session state machine (src/channel/proto.c).
 *
 * Input: byte 0 picks the role we play (bit 0), how many streams of our own to pre-allocate
 * (bits 1-4; guest: proxy streams, host: exec streams, protocol v3) and the chunking seed (all
 * bits); the rest is the byte stream from the peer.
 * When bit 7 of byte 0 is set, the bytes instead go through a real struct mux (host role with
 * an exec stream open, or guest role with a few streams open, serving host-opened streams)
 * over a socketpair, on the project loop, under ASan.
 * Checks:
 *   - no crash, no leak, and the mux stays within its caps (streams, queues);
 *   - whole-buffer and chunked (incremental, like the mux) decoding agree frame by frame;
 *   - every accepted frame re-encodes to exactly the bytes it came from (strict, canonical);
 *   - the session never exceeds its caps (streams, credit), keeps ids sorted, and stops at
 *     the first protocol violation.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel/mux.h"
#include "channel/proto.h"
#include "common/loop.h"
#include "fuzz.h"

#define MAX_FRAMES 4096

struct rec {
    uint8_t type;
    uint32_t stream;
    uint16_t len;
    size_t off; /* offset of the frame in the input */
};

static struct rec whole[MAX_FRAMES];
static struct channel_stream_state pool[CHANNEL_MAX_STREAMS + 16];
static uint8_t chunkbuf[65536];

static void check(int cond)
{
    if (!cond)
        abort();
}

static void check_session(const struct channel_session *s)
{
    check(s->n <= CHANNEL_MAX_STREAMS);
    for (size_t i = 0; i < s->n; i++) {
        check(s->streams[i]->recv_window == channel_recv_window(s->role));
        check(s->streams[i]->send_window == channel_recv_window(s->role == CHANNEL_ROLE_HOST
                                                                    ? CHANNEL_ROLE_GUEST
                                                                    : CHANNEL_ROLE_HOST));
        check(s->streams[i]->recv_avail <= s->streams[i]->recv_window);
        check(s->streams[i]->send_credit <= s->streams[i]->send_window);
        check(s->streams[i]->id != 0);
        if (i > 0)
            check(s->streams[i - 1]->id < s->streams[i]->id);
    }
}

static void check_reencode(const struct channel_frame *f, const uint8_t *orig)
{
    uint8_t buf[CHANNEL_HDR_LEN + 8];
    uint32_t arg = 0;

    if (f->type == CHANNEL_T_DATA) {
        channel_frame_header(buf, CHANNEL_T_DATA, f->stream, f->len);
        check(memcmp(buf, orig, CHANNEL_HDR_LEN) == 0);
        check(f->payload == orig + CHANNEL_HDR_LEN);
        return;
    }
    switch (f->type) {
    case CHANNEL_T_HELLO:
        arg = f->role;
        break;
    case CHANNEL_T_OPEN:
        arg = f->kind;
        break;
    case CHANNEL_T_RESET:
        arg = f->reason;
        break;
    case CHANNEL_T_WINDOW:
        arg = f->increment;
        break;
    default:
        break;
    }
    size_t n = channel_frame_encode_ctl(buf, (enum channel_type)f->type, f->stream, arg);
    check(n == CHANNEL_HDR_LEN + (size_t)f->len);
    if (f->type == CHANNEL_T_HELLO) {
        /* The version byte is checked by the session, not the decoder. */
        buf[CHANNEL_HDR_LEN + 4] = f->version;
    }
    check(memcmp(buf, orig, n) == 0);
}

/* ---- mode 2: the real mux ---- */

#define MUX_MAX_PEERS (CHANNEL_MAX_STREAMS + 16)

struct mux_fz {
    int peers[MUX_MAX_PEERS];
    size_t npeers;
    int dead;
    bool refuse_odd;
    unsigned opens;
};

static int fz_open(void *ud, enum channel_kind kind)
{
    struct mux_fz *z = ud;
    int sv[2];
    (void)kind;

    z->opens++;
    if ((z->refuse_odd && (z->opens & 1)) || z->npeers >= MUX_MAX_PEERS)
        return -ECONNREFUSED;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    z->peers[z->npeers++] = sv[1];
    /* Something for the host to send back, so DATA/WINDOW paths run both ways. */
    (void)!write(sv[1], "reply", 5);
    if (z->opens % 3 == 0)
        shutdown(sv[1], SHUT_WR);
    return sv[0];
}

static void fz_dead(void *ud, int err)
{
    struct mux_fz *z = ud;
    (void)err;
    z->dead++;
}

static const struct mux_ops fz_ops = { .open_stream = fz_open, .dead = fz_dead };

static void fz_dgram_recv(struct mux_stream *st, const uint8_t *p, size_t len, void *ud)
{
    (void)st;
    (void)p;
    (void)ud;
    check(len >= 1 && len <= CHANNEL_MAX_PAYLOAD);
}

static void fz_dgram_closed(struct mux_stream *st, void *ud)
{
    (void)st;
    *(struct mux_stream **)ud = NULL;
}

static const struct mux_dgram_ops fz_dops = { .recv = fz_dgram_recv, .closed = fz_dgram_closed };

static void run_mux(const uint8_t *data, size_t size)
{
    static struct loop *loop;
    static uint8_t sink[65536];
    struct mux_fz z = { .refuse_odd = data[0] & 2 };
    struct mux *m = NULL;
    struct mux_stats st;
    struct mux_stream *dg = NULL;
    bool guest = data[0] & 1;
    size_t off = 1;
    int sp[2];

    if (!loop && loop_new(&loop) < 0)
        abort();
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) < 0)
        return;
    if (mux_new(loop, sp[0], guest ? CHANNEL_ROLE_GUEST : CHANNEL_ROLE_HOST, &fz_ops, &z, &m) < 0) {
        close(sp[1]);
        return;
    }
    if (guest) {
        /* A few streams the hostile host can answer (ids 1..4), one of them a datagram one. */
        for (int i = 0; i < 3; i++) {
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
                break;
            (void)!write(sv[1], "request", 7);
            z.peers[z.npeers++] = sv[1];
            (void)mux_open_fd(m, i == 1 ? CHANNEL_KIND_TCP_DNS : CHANNEL_KIND_TCP_PROXY, sv[0]);
        }
        if (mux_open_dgram(m, CHANNEL_KIND_UDP_DNS, &fz_dops, &dg, &dg) == 0)
            (void)mux_stream_send_dgram(dg, "q", 1);
    } else {
        /* A host-opened exec stream (id 0x80000001) the hostile guest can answer. */
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0) {
            (void)!write(sv[1], "command", 7);
            z.peers[z.npeers++] = sv[1];
            (void)mux_open_fd(m, CHANNEL_KIND_EXEC, sv[0]);
        }
    }
    for (int round = 0; round < 16 && !z.dead; round++) {
        if (off < size) {
            ssize_t n = send(sp[1], data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0)
                off += (size_t)n;
        } else if (data[0] & 4) {
            shutdown(sp[1], SHUT_WR); /* then the channel dies of EOF */
        }
        while (recv(sp[1], sink, sizeof(sink), MSG_DONTWAIT) > 0)
            ;
        for (size_t i = 0; i < z.npeers; i++)
            while (recv(z.peers[i], sink, sizeof(sink), MSG_DONTWAIT) > 0)
                ;
        if (loop_run_once(loop, 0) < 0)
            break;
        mux_get_stats(m, &st);
        check(st.streams <= CHANNEL_MAX_STREAMS + 4);
        check(st.out_max <= 2u * 1024 * 1024 + CHANNEL_MAX_FRAME);
        check(st.rx_queued <= st.streams * (size_t)channel_recv_window(guest ? CHANNEL_ROLE_GUEST
                                                                             : CHANNEL_ROLE_HOST));
        if (dg && (data[0] & 8))
            (void)mux_stream_send_dgram(dg, "again", 5);
    }
    check(z.dead <= 1);
    m = mux_free(m);
    loop_run_once(loop, 0); /* reap */
    close(sp[1]);
    for (size_t i = 0; i < z.npeers; i++)
        close(z.peers[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *in, *end, *cur;
    struct channel_session *s;
    size_t nwhole = 0, used = 0, k = 0;
    int werr = 0;
    uint32_t rng;

    if (size < 1)
        return 0;
    if (data[0] & 0x80) {
        run_mux(data, size);
        return 0;
    }
    rng = data[0] * 2654435761u + 1;
    in = data + 1;
    end = data + size;

    /* Pass 1: decode the whole input at once. */
    cur = in;
    while (nwhole < MAX_FRAMES) {
        struct channel_frame f;
        const uint8_t *before = cur;
        int r = channel_frame_decode(&cur, end, &f);
        if (r < 0) {
            check(r == -EBADMSG && cur == before);
            werr = 1;
            break;
        }
        if (r == 0) {
            check(cur == before);
            break;
        }
        check(f.len <= CHANNEL_MAX_PAYLOAD);
        check(cur == before + CHANNEL_HDR_LEN + f.len && cur <= end);
        check_reencode(&f, before);
        whole[nwhole++] = (struct rec){ f.type, f.stream, f.len, (size_t)(before - in) };
    }

    /* Pass 2: feed the same bytes in random-sized chunks through a bounded buffer, the way
     * the mux reads the channel, and run every frame through the session. */
    s = calloc(1, sizeof(*s));
    if (!s)
        return 0;
    channel_session_init(s, (data[0] & 1) ? CHANNEL_ROLE_HOST : CHANNEL_ROLE_GUEST);
    for (int i = 0; i < ((data[0] >> 1) & 15); i++)
        check(channel_session_add(s, &pool[used++], 0,
                                  s->role == CHANNEL_ROLE_GUEST ? CHANNEL_KIND_TCP_PROXY
                                                                : CHANNEL_KIND_EXEC,
                                  NULL) == 0);
    {
        size_t fed = 0, have = 0, consumed_total = 0;
        int dead = 0;
        while (!dead) {
            size_t chunk;
            rng = rng * 1103515245u + 12345u;
            chunk = 1 + (rng >> 16) % 20000;
            if (chunk > sizeof(chunkbuf) - have)
                chunk = sizeof(chunkbuf) - have;
            if (chunk > (size_t)(end - in) - fed)
                chunk = (size_t)(end - in) - fed;
            memcpy(chunkbuf + have, in + fed, chunk);
            have += chunk;
            fed += chunk;
            cur = chunkbuf;
            for (;;) {
                struct channel_frame f;
                struct channel_stream_state *ss = NULL;
                int r = channel_frame_decode(&cur, chunkbuf + have, &f);
                if (r < 0) {
                    /* The chunked decoder fails exactly where the whole-buffer one did. */
                    check(werr && k == nwhole);
                    dead = 1;
                    break;
                }
                if (r == 0)
                    break;
                if (k == MAX_FRAMES) {
                    dead = 1; /* the whole-buffer pass stopped here too */
                    break;
                }
                check(k < nwhole);
                check(whole[k].type == f.type && whole[k].stream == f.stream &&
                      whole[k].len == f.len);
                check(whole[k].off ==
                      consumed_total + (size_t)((cur - chunkbuf) - (CHANNEL_HDR_LEN + f.len)));
                k++;
                r = channel_session_recv(s, &f, &ss);
                if (r < 0) {
                    check(r == -EPROTO || (r == -EPROTONOSUPPORT && f.type == CHANNEL_T_HELLO &&
                                           f.version != CHANNEL_VERSION));
                    dead = 1;
                    break;
                }
                check(r > 0 && r < CHANNEL_EV_MAX);
                switch (r) {
                case CHANNEL_EV_OPEN:
                    /* Only the peer's kinds, in the peer's id space. */
                    check(s->n < CHANNEL_MAX_STREAMS && channel_kind_opener(f.kind) != s->role &&
                          ((f.stream & CHANNEL_ID_HOST) != 0) == (s->role == CHANNEL_ROLE_GUEST));
                    check(used < sizeof(pool) / sizeof(pool[0]));
                    check(channel_session_add(s, &pool[used], f.stream, (enum channel_kind)f.kind,
                                              NULL) == 0);
                    /* Pool slots are recycled through RESET; keep the index bounded. */
                    used = (used + 1) % (sizeof(pool) / sizeof(pool[0]));
                    while (channel_session_find(s, pool[used].id) == &pool[used])
                        used = (used + 1) % (sizeof(pool) / sizeof(pool[0]));
                    break;
                case CHANNEL_EV_DATA:
                    /* Half the time the "local reader" consumes at once and grants it back. */
                    if (f.payload[0] & 1)
                        check(channel_stream_granted(ss, f.len) == 0);
                    /* Try to send on the stream within credit, as the mux would. */
                    if ((f.payload[0] & 2) && !(ss->flags & CHANNEL_SS_LOCAL_FIN)) {
                        size_t want = f.len < ss->send_credit ? f.len : ss->send_credit;
                        if (want)
                            check(channel_stream_sent_data(ss, want) == 0);
                        check(channel_stream_sent_data(ss, ss->send_credit + 1) < 0);
                    }
                    break;
                case CHANNEL_EV_FIN:
                    if (channel_stream_finished(ss))
                        channel_session_remove(s, ss);
                    else if (f.stream & 1)
                        ss->flags |= CHANNEL_SS_LOCAL_FIN;
                    break;
                case CHANNEL_EV_RESET:
                    channel_session_remove(s, ss);
                    check(channel_session_find(s, f.stream) == NULL);
                    break;
                default:
                    break;
                }
                check_session(s);
            }
            consumed_total += (size_t)(cur - chunkbuf);
            have -= (size_t)(cur - chunkbuf);
            memmove(chunkbuf, cur, have);
            if (fed == (size_t)(end - in))
                break;
        }
        if (!dead) {
            /* Everything the whole-buffer pass decoded was seen, no more and no less. */
            check(k == nwhole || nwhole == MAX_FRAMES);
        }
    }
    free(s);
    return 0;
}

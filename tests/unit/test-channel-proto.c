/* Unit tests for src/channel/proto.c: frame codec and the session state machine. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "channel/proto.h"
#include "common/macro.h"

/* ---- codec ---- */

static void test_roundtrip_ctl(void **state)
{
    static const struct {
        enum channel_type type;
        uint32_t stream, arg;
        size_t len;
    } cases[] = {
        { CHANNEL_T_HELLO, 0, CHANNEL_ROLE_GUEST, CHANNEL_HDR_LEN + 6 },
        { CHANNEL_T_OPEN, 7, CHANNEL_KIND_UDP_DNS, CHANNEL_HDR_LEN + 1 },
        { CHANNEL_T_OPEN_OK, 0xfffffffe, 0, CHANNEL_HDR_LEN },
        { CHANNEL_T_RESET, 3, CHANNEL_RESET_LIMIT, CHANNEL_HDR_LEN + 1 },
        { CHANNEL_T_FIN, 1, 0, CHANNEL_HDR_LEN },
        { CHANNEL_T_WINDOW, 0x01020304, CHANNEL_WINDOW, CHANNEL_HDR_LEN + 4 },
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        uint8_t buf[32];
        const uint8_t *cur = buf;
        struct channel_frame f;
        size_t n = channel_frame_encode_ctl(buf, cases[i].type, cases[i].stream, cases[i].arg);

        assert_int_equal(n, cases[i].len);
        assert_int_equal(channel_frame_decode(&cur, buf + n, &f), 1);
        assert_ptr_equal(cur, buf + n);
        assert_int_equal(f.type, cases[i].type);
        assert_int_equal(f.stream, cases[i].stream);
        switch (f.type) {
        case CHANNEL_T_HELLO:
            assert_int_equal(f.version, CHANNEL_VERSION);
            assert_int_equal(f.role, cases[i].arg);
            break;
        case CHANNEL_T_OPEN:
            assert_int_equal(f.kind, cases[i].arg);
            break;
        case CHANNEL_T_RESET:
            assert_int_equal(f.reason, cases[i].arg);
            break;
        case CHANNEL_T_WINDOW:
            assert_int_equal(f.increment, cases[i].arg);
            break;
        default:
            break;
        }
    }
}

static void test_wire_layout(void **state)
{
    /* The byte layout documented in docs/channel.md, spelled out. */
    static const uint8_t want[] = { 7, 0, 0, 4, 0x12, 0x34, 0x56, 0x78, 0, 0, 0x10, 0 };
    uint8_t buf[32];
    (void)state;

    assert_int_equal(channel_frame_encode_ctl(buf, CHANNEL_T_WINDOW, 0x12345678, 4096), 12);
    assert_memory_equal(buf, want, sizeof(want));
    channel_frame_header(buf, CHANNEL_T_DATA, 1, 16384);
    assert_memory_equal(buf, ((uint8_t[]){ 5, 0, 0x40, 0, 0, 0, 0, 1 }), 8);
}

static void test_incremental(void **state)
{
    uint8_t buf[CHANNEL_HDR_LEN + 100 + 12];
    struct channel_frame f;
    size_t total;
    (void)state;

    channel_frame_header(buf, CHANNEL_T_DATA, 9, 100);
    for (size_t i = 0; i < 100; i++)
        buf[CHANNEL_HDR_LEN + i] = (uint8_t)i;
    total = CHANNEL_HDR_LEN + 100;
    total += channel_frame_encode_ctl(buf + total, CHANNEL_T_FIN, 9, 0);

    /* Every prefix of the first frame is "need more", and the cursor does not move. */
    for (size_t n = 0; n < CHANNEL_HDR_LEN + 100; n++) {
        const uint8_t *cur = buf;
        assert_int_equal(channel_frame_decode(&cur, buf + n, &f), 0);
        assert_ptr_equal(cur, buf);
    }
    const uint8_t *cur = buf;
    assert_int_equal(channel_frame_decode(&cur, buf + total, &f), 1);
    assert_int_equal(f.type, CHANNEL_T_DATA);
    assert_int_equal(f.len, 100);
    assert_ptr_equal(f.payload, buf + CHANNEL_HDR_LEN);
    assert_int_equal(f.payload[99], 99);
    assert_int_equal(channel_frame_decode(&cur, buf + total, &f), 1);
    assert_int_equal(f.type, CHANNEL_T_FIN);
    assert_ptr_equal(cur, buf + total);
    assert_int_equal(channel_frame_decode(&cur, buf + total, &f), 0);
}

/* Frames (given as raw bytes, header + payload) that must be rejected outright. */
static void test_reject(void **state)
{
    static const struct {
        const char *name;
        uint8_t b[16];
        size_t n;
    } cases[] = {
        { "type 0", { 0, 0, 0, 0, 0, 0, 0, 1 }, 8 },
        { "type 8", { 8, 0, 0, 0, 0, 0, 0, 1 }, 8 },
        { "type 255", { 255, 0, 0, 0, 0, 0, 0, 1 }, 8 },
        { "flags", { CHANNEL_T_FIN, 1, 0, 0, 0, 0, 0, 1 }, 8 },
        { "hello on stream 1", { 1, 0, 0, 6, 0, 0, 0, 1, 'B', 'B', 'C', 'H', 1, 1 }, 14 },
        { "hello bad magic", { 1, 0, 0, 6, 0, 0, 0, 0, 'B', 'B', 'C', 'X', 1, 1 }, 14 },
        { "hello role 0", { 1, 0, 0, 6, 0, 0, 0, 0, 'B', 'B', 'C', 'H', 1, 0 }, 14 },
        { "hello role 3", { 1, 0, 0, 6, 0, 0, 0, 0, 'B', 'B', 'C', 'H', 1, 3 }, 14 },
        { "hello short", { 1, 0, 0, 5, 0, 0, 0, 0, 'B', 'B', 'C', 'H', 1 }, 13 },
        { "data on stream 0", { CHANNEL_T_DATA, 0, 0, 1, 0, 0, 0, 0, 'x' }, 9 },
        { "fin on stream 0", { CHANNEL_T_FIN, 0, 0, 0, 0, 0, 0, 0 }, 8 },
        { "open on stream 0", { CHANNEL_T_OPEN, 0, 0, 1, 0, 0, 0, 0, 1 }, 9 },
        { "data empty", { CHANNEL_T_DATA, 0, 0, 0, 0, 0, 0, 1 }, 8 },
        { "open len 2", { CHANNEL_T_OPEN, 0, 0, 2, 0, 0, 0, 1, 1, 1 }, 10 },
        { "open kind 0", { CHANNEL_T_OPEN, 0, 0, 1, 0, 0, 0, 1, 0 }, 9 },
        { "open kind 6", { CHANNEL_T_OPEN, 0, 0, 1, 0, 0, 0, 1, 6 }, 9 },
        { "open_ok len 1", { CHANNEL_T_OPEN_OK, 0, 0, 1, 0, 0, 0, 1, 0 }, 9 },
        { "fin len 1", { CHANNEL_T_FIN, 0, 0, 1, 0, 0, 0, 1, 0 }, 9 },
        { "reset reason 0", { CHANNEL_T_RESET, 0, 0, 1, 0, 0, 0, 1, 0 }, 9 },
        { "reset reason 6", { CHANNEL_T_RESET, 0, 0, 1, 0, 0, 0, 1, 6 }, 9 },
        { "reset len 0", { CHANNEL_T_RESET, 0, 0, 0, 0, 0, 0, 1 }, 8 },
        { "window len 3", { CHANNEL_T_WINDOW, 0, 0, 3, 0, 0, 0, 1, 0, 0, 1 }, 11 },
        { "window 0", { CHANNEL_T_WINDOW, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0 }, 12 },
        { "window > max", { CHANNEL_T_WINDOW, 0, 0, 4, 0, 0, 0, 1, 0, 0x10, 0, 1 }, 12 },
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const uint8_t *cur = cases[i].b;
        struct channel_frame f;
        int r = channel_frame_decode(&cur, cases[i].b + cases[i].n, &f);
        if (r != -EBADMSG)
            fail_msg("%s: got %d", cases[i].name, r);
        assert_ptr_equal(cur, cases[i].b);
    }
}

static void test_oversized_early(void **state)
{
    /* An oversized DATA is refused from its header alone, without waiting for 64 KiB. */
    uint8_t hdr[8];
    const uint8_t *cur = hdr;
    struct channel_frame f;
    (void)state;

    channel_frame_header(hdr, CHANNEL_T_DATA, 1, CHANNEL_MAX_PAYLOAD + 1);
    assert_int_equal(channel_frame_decode(&cur, hdr + 8, &f), -EBADMSG);
    assert_int_equal(channel_frame_decode(&cur, hdr + 4, &f), -EBADMSG);
    /* Garbage is refused from its first byte. */
    {
        static const uint8_t g[] = { 'G', 'E', 'T', ' ' };
        const uint8_t *c2 = g;
        assert_int_equal(channel_frame_decode(&c2, g + 1, &f), -EBADMSG);
    }
    /* The largest DATA is fine. */
    channel_frame_header(hdr, CHANNEL_T_DATA, 1, CHANNEL_MAX_PAYLOAD);
    assert_int_equal(channel_frame_decode(&cur, hdr + 8, &f), 0);
}

/* ---- session ---- */

struct feeder {
    struct channel_session s;
    struct channel_stream_state pool[CHANNEL_MAX_STREAMS + 4];
    size_t used;
};

/* Encode a frame, decode it, run it through the session; handles EV_OPEN like the mux. */
static int feed(struct feeder *fd, enum channel_type type, uint32_t stream, uint32_t arg)
{
    static uint8_t buf[CHANNEL_MAX_FRAME];
    const uint8_t *cur = buf;
    struct channel_frame f;
    struct channel_stream_state *ss = NULL;
    size_t n;
    int r;

    if (type == CHANNEL_T_DATA) {
        channel_frame_header(buf, type, stream, (uint16_t)arg);
        memset(buf + CHANNEL_HDR_LEN, 'd', arg);
        n = CHANNEL_HDR_LEN + arg;
    } else {
        n = channel_frame_encode_ctl(buf, type, stream, arg);
    }
    r = channel_frame_decode(&cur, buf + n, &f);
    if (r != 1)
        return -1000 + r;
    r = channel_session_recv(&fd->s, &f, &ss);
    if (r == CHANNEL_EV_OPEN) {
        assert_true(fd->used < ARRAY_SIZE(fd->pool));
        assert_int_equal(channel_session_add(&fd->s, &fd->pool[fd->used++], f.stream,
                                             (enum channel_kind)f.kind, NULL),
                         0);
    }
    if (r == CHANNEL_EV_RESET)
        channel_session_remove(&fd->s, ss);
    return r;
}

#define EP (-EPROTO)
#define W CHANNEL_WINDOW
#define H CHANNEL_ROLE_HOST
#define G CHANNEL_ROLE_GUEST
#define HID(n) (CHANNEL_ID_HOST + (n)) /* the host's n-th stream id */
#define EXEC CHANNEL_KIND_EXEC
#define STATUS CHANNEL_KIND_STATUS

struct step {
    enum channel_type type;
    uint32_t stream, arg;
    int expect;
};

/* Each scenario: the role we play, streams we open first (guest: TCP_PROXY, ids 1, 2, ...;
 * host: EXEC, ids HID(1), HID(2), ...), and frames in. */
static const struct {
    const char *name;
    enum channel_role role;
    int local_streams;
    struct step steps[8];
} scenarios[] = {
    { "hello then open",
      H,
      0,
      { { CHANNEL_T_HELLO, 0, G, CHANNEL_EV_HELLO }, { CHANNEL_T_OPEN, 1, 1, CHANNEL_EV_OPEN } } },
    { "frame before hello", H, 0, { { CHANNEL_T_OPEN, 1, 1, EP } } },
    { "second hello",
      H,
      0,
      { { CHANNEL_T_HELLO, 0, G, CHANNEL_EV_HELLO }, { CHANNEL_T_HELLO, 0, G, EP } } },
    { "hello from same role", H, 0, { { CHANNEL_T_HELLO, 0, H, EP } } },
    { "guest gets open",
      G,
      0,
      { { CHANNEL_T_HELLO, 0, H, CHANNEL_EV_HELLO }, { CHANNEL_T_OPEN, 1, 1, EP } } },
    { "duplicate open",
      H,
      0,
      { { CHANNEL_T_HELLO, 0, G, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN, 5, 1, CHANNEL_EV_OPEN },
        { CHANNEL_T_OPEN, 5, 1, EP } } },
    { "open with smaller id",
      H,
      0,
      { { CHANNEL_T_HELLO, 0, G, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN, 5, 1, CHANNEL_EV_OPEN },
        { CHANNEL_T_OPEN, 4, 1, EP } } },
    { "reuse of a reset id",
      H,
      0,
      { { CHANNEL_T_HELLO, 0, G, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN, 1, 1, CHANNEL_EV_OPEN },
        { CHANNEL_T_RESET, 1, 1, CHANNEL_EV_RESET },
        { CHANNEL_T_OPEN, 1, 1, EP } } },
    { "data on never-opened stream",
      H,
      0,
      { { CHANNEL_T_HELLO, 0, G, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN, 1, 1, CHANNEL_EV_OPEN },
        { CHANNEL_T_DATA, 2, 10, EP } } },
    { "data on closed stream is a race",
      H,
      0,
      { { CHANNEL_T_HELLO, 0, G, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN, 2, 1, CHANNEL_EV_OPEN },
        { CHANNEL_T_RESET, 2, 1, CHANNEL_EV_RESET },
        { CHANNEL_T_DATA, 2, 10, CHANNEL_EV_IGNORE },
        { CHANNEL_T_DATA, 1, 10, CHANNEL_EV_IGNORE },
        { CHANNEL_T_WINDOW, 2, 10, CHANNEL_EV_IGNORE } } },
    { "data up to the window",
      H,
      0,
      { { CHANNEL_T_HELLO, 0, G, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN, 1, 1, CHANNEL_EV_OPEN },
        { CHANNEL_T_DATA, 1, 16384, CHANNEL_EV_DATA },
        { CHANNEL_T_DATA, 1, 16384, CHANNEL_EV_DATA } } },
    { "data after fin",
      H,
      0,
      { { CHANNEL_T_HELLO, 0, G, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN, 1, 1, CHANNEL_EV_OPEN },
        { CHANNEL_T_FIN, 1, 0, CHANNEL_EV_FIN },
        { CHANNEL_T_DATA, 1, 1, EP } } },
    { "duplicate fin",
      H,
      0,
      { { CHANNEL_T_HELLO, 0, G, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN, 1, 1, CHANNEL_EV_OPEN },
        { CHANNEL_T_FIN, 1, 0, CHANNEL_EV_FIN },
        { CHANNEL_T_FIN, 1, 0, EP } } },
    { "window beyond max credit",
      H,
      0,
      { { CHANNEL_T_HELLO, 0, G, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN, 1, 1, CHANNEL_EV_OPEN },
        { CHANNEL_T_WINDOW, 1, 1, EP } } },
    { "open_ok to the host",
      H,
      0,
      { { CHANNEL_T_HELLO, 0, G, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN, 1, 1, CHANNEL_EV_OPEN },
        { CHANNEL_T_OPEN_OK, 1, 0, EP } } },
    { "guest: open_ok then data",
      G,
      1,
      { { CHANNEL_T_HELLO, 0, H, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN_OK, 1, 0, CHANNEL_EV_OPEN_OK },
        { CHANNEL_T_DATA, 1, 100, CHANNEL_EV_DATA } } },
    { "guest: data before open_ok",
      G,
      1,
      { { CHANNEL_T_HELLO, 0, H, CHANNEL_EV_HELLO }, { CHANNEL_T_DATA, 1, 100, EP } } },
    { "guest: fin before open_ok",
      G,
      1,
      { { CHANNEL_T_HELLO, 0, H, CHANNEL_EV_HELLO }, { CHANNEL_T_FIN, 1, 0, EP } } },
    { "guest: second open_ok",
      G,
      1,
      { { CHANNEL_T_HELLO, 0, H, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN_OK, 1, 0, CHANNEL_EV_OPEN_OK },
        { CHANNEL_T_OPEN_OK, 1, 0, EP } } },
    { "guest: open_ok for unallocated id",
      G,
      1,
      { { CHANNEL_T_HELLO, 0, H, CHANNEL_EV_HELLO }, { CHANNEL_T_OPEN_OK, 2, 0, EP } } },
    /* v2: host-opened streams (exec, status) */
    { "guest: host opens exec",
      G,
      0,
      { { CHANNEL_T_HELLO, 0, H, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN, HID(1), EXEC, CHANNEL_EV_OPEN },
        { CHANNEL_T_DATA, HID(1), 100, CHANNEL_EV_DATA }, /* pipelined behind the OPEN */
        { CHANNEL_T_FIN, HID(1), 0, CHANNEL_EV_FIN },
        { CHANNEL_T_OPEN, HID(7), STATUS, CHANNEL_EV_OPEN },
        { CHANNEL_T_WINDOW, HID(3), 10, CHANNEL_EV_IGNORE }, /* skipped id: a closed stream */
        { CHANNEL_T_OPEN, HID(5), STATUS, EP } } },
    { "guest: host opens in the guest id space",
      G,
      1,
      { { CHANNEL_T_HELLO, 0, H, CHANNEL_EV_HELLO }, { CHANNEL_T_OPEN, 2, EXEC, EP } } },
    { "guest: host opens a guest kind",
      G,
      0,
      { { CHANNEL_T_HELLO, 0, H, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN, HID(1), CHANNEL_KIND_TCP_DNS, EP } } },
    { "guest: open_ok to the acceptor",
      G,
      0,
      { { CHANNEL_T_HELLO, 0, H, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN, HID(1), EXEC, CHANNEL_EV_OPEN },
        { CHANNEL_T_OPEN_OK, HID(1), 0, EP } } },
    { "guest: host id 0x80000000 is never valid",
      G,
      0,
      { { CHANNEL_T_HELLO, 0, H, CHANNEL_EV_HELLO }, { CHANNEL_T_OPEN, HID(0), EXEC, EP } } },
    { "host: guest opens exec",
      H,
      0,
      { { CHANNEL_T_HELLO, 0, G, CHANNEL_EV_HELLO }, { CHANNEL_T_OPEN, 1, EXEC, EP } } },
    { "host: guest opens in the host id space",
      H,
      0,
      { { CHANNEL_T_HELLO, 0, G, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN, HID(9), CHANNEL_KIND_TCP_PROXY, EP } } },
    { "host: own stream, open_ok then data",
      H,
      2,
      { { CHANNEL_T_HELLO, 0, G, CHANNEL_EV_HELLO },
        { CHANNEL_T_OPEN, 1, CHANNEL_KIND_TCP_PROXY, CHANNEL_EV_OPEN }, /* both spaces live */
        { CHANNEL_T_OPEN_OK, HID(2), 0, CHANNEL_EV_OPEN_OK },
        { CHANNEL_T_DATA, HID(2), 100, CHANNEL_EV_DATA },
        { CHANNEL_T_DATA, HID(1), 100, EP } } }, /* the guest sends nothing before OPEN_OK */
    { "host: own stream refused",
      H,
      1,
      { { CHANNEL_T_HELLO, 0, G, CHANNEL_EV_HELLO },
        { CHANNEL_T_RESET, HID(1), CHANNEL_RESET_REFUSED, CHANNEL_EV_RESET },
        { CHANNEL_T_OPEN_OK, HID(1), 0, CHANNEL_EV_IGNORE },
        { CHANNEL_T_OPEN_OK, HID(2), 0, EP } } },
    { "guest: reset while opening",
      G,
      2,
      { { CHANNEL_T_HELLO, 0, H, CHANNEL_EV_HELLO },
        { CHANNEL_T_RESET, 2, CHANNEL_RESET_REFUSED, CHANNEL_EV_RESET },
        { CHANNEL_T_OPEN_OK, 2, 0, CHANNEL_EV_IGNORE } } },
};

static void test_session_scenarios(void **state)
{
    (void)state;

    for (size_t i = 0; i < ARRAY_SIZE(scenarios); i++) {
        struct feeder *fd = calloc(1, sizeof(*fd));
        channel_session_init(&fd->s, scenarios[i].role);
        for (int k = 0; k < scenarios[i].local_streams; k++)
            assert_int_equal(
                channel_session_add(&fd->s, &fd->pool[fd->used++], 0,
                                    scenarios[i].role == G ? CHANNEL_KIND_TCP_PROXY : EXEC, NULL),
                0);
        for (size_t j = 0; j < ARRAY_SIZE(scenarios[i].steps); j++) {
            const struct step *st = &scenarios[i].steps[j];
            int r;
            if (st->type == 0)
                break;
            r = feed(fd, st->type, st->stream, st->arg);
            if (r != st->expect)
                fail_msg("%s: step %zu (%s): got %d, want %d", scenarios[i].name, j,
                         channel_type_name(st->type), r, st->expect);
        }
        free(fd);
    }
}

static void test_session_credit(void **state)
{
    struct feeder *fd = calloc(1, sizeof(*fd));
    struct channel_stream_state *ss;
    (void)state;

    channel_session_init(&fd->s, H);
    assert_int_equal(feed(fd, CHANNEL_T_HELLO, 0, G), CHANNEL_EV_HELLO);
    assert_int_equal(feed(fd, CHANNEL_T_OPEN, 1, 1), CHANNEL_EV_OPEN);
    ss = channel_session_find(&fd->s, 1);
    assert_non_null(ss);
    /* Fill the window exactly; one more byte is a violation. */
    for (uint32_t sent = 0, n; sent < W; sent += n) {
        n = W - sent < CHANNEL_MAX_PAYLOAD ? W - sent : CHANNEL_MAX_PAYLOAD;
        assert_int_equal(feed(fd, CHANNEL_T_DATA, 1, n), CHANNEL_EV_DATA);
    }
    assert_int_equal(ss->recv_avail, 0);
    /* After granting 100 bytes back, exactly 100 more are allowed. */
    assert_int_equal(channel_stream_granted(ss, 100), 0);
    assert_int_equal(feed(fd, CHANNEL_T_DATA, 1, 100), CHANNEL_EV_DATA);
    assert_int_equal(feed(fd, CHANNEL_T_DATA, 1, 1), EP);
    /* Granting more than was received is refused locally. */
    assert_int_equal(channel_stream_granted(ss, W + 1), -EINVAL);

    /* Send side: never beyond credit (the host may send a guest its larger window); WINDOW
     * restores it, and cannot overflow it. */
    assert_int_equal(ss->send_credit, CHANNEL_WINDOW_GUEST);
    assert_int_equal(channel_stream_sent_data(ss, 16384), 0);
    assert_int_equal(ss->send_credit, CHANNEL_WINDOW_GUEST - 16384);
    assert_int_equal(feed(fd, CHANNEL_T_WINDOW, 1, 16385), EP);
    free(fd);

    /* The guest's side of the same stream: it receives up to its own (larger) window from
     * the host, exactly, and may send only the host's. */
    fd = calloc(1, sizeof(*fd));
    channel_session_init(&fd->s, G);
    assert_int_equal(feed(fd, CHANNEL_T_HELLO, 0, H), CHANNEL_EV_HELLO);
    ss = calloc(1, sizeof(*ss));
    assert_int_equal(channel_session_add(&fd->s, ss, 0, CHANNEL_KIND_TCP_PROXY, NULL), 0);
    assert_int_equal(feed(fd, CHANNEL_T_OPEN_OK, 1, 0), CHANNEL_EV_OPEN_OK);
    assert_int_equal(ss->recv_avail, CHANNEL_WINDOW_GUEST);
    assert_int_equal(ss->send_credit, W);
    for (uint32_t got = 0, n; got < CHANNEL_WINDOW_GUEST; got += n) {
        n = CHANNEL_WINDOW_GUEST - got < CHANNEL_MAX_PAYLOAD ? CHANNEL_WINDOW_GUEST - got
                                                             : CHANNEL_MAX_PAYLOAD;
        assert_int_equal(feed(fd, CHANNEL_T_DATA, 1, n), CHANNEL_EV_DATA);
    }
    assert_int_equal(feed(fd, CHANNEL_T_DATA, 1, 1), EP);
    assert_int_equal(channel_stream_sent_data(ss, W), -EINVAL); /* > one frame */
    for (uint32_t sent = 0, n; sent < W; sent += n) {
        n = W - sent < CHANNEL_MAX_PAYLOAD ? W - sent : CHANNEL_MAX_PAYLOAD;
        assert_int_equal(channel_stream_sent_data(ss, n), 0);
    }
    assert_int_equal(channel_stream_sent_data(ss, 1), -EINVAL);
    assert_int_equal(feed(fd, CHANNEL_T_WINDOW, 1, W + 1), EP); /* beyond the host's window */
    free(ss);
    free(fd);

    fd = calloc(1, sizeof(*fd));
    channel_session_init(&fd->s, H);
    assert_int_equal(feed(fd, CHANNEL_T_HELLO, 0, G), CHANNEL_EV_HELLO);
    assert_int_equal(feed(fd, CHANNEL_T_OPEN, 1, 1), CHANNEL_EV_OPEN);
    ss = channel_session_find(&fd->s, 1);
    for (uint32_t sent = 0, n; sent < CHANNEL_WINDOW_GUEST; sent += n) {
        n = CHANNEL_WINDOW_GUEST - sent < CHANNEL_MAX_PAYLOAD ? CHANNEL_WINDOW_GUEST - sent
                                                              : CHANNEL_MAX_PAYLOAD;
        assert_int_equal(channel_stream_sent_data(ss, n), 0);
    }
    assert_int_equal(channel_stream_sent_data(ss, 1), -EINVAL);
    assert_int_equal(feed(fd, CHANNEL_T_WINDOW, 1, 1000), CHANNEL_EV_WINDOW);
    assert_int_equal(channel_stream_sent_data(ss, 1000), 0);
    assert_int_equal(channel_stream_sent_data(ss, 1), -EINVAL);
    /* No DATA after our own FIN. */
    assert_int_equal(feed(fd, CHANNEL_T_WINDOW, 1, 10), CHANNEL_EV_WINDOW);
    ss->flags |= CHANNEL_SS_LOCAL_FIN;
    assert_int_equal(channel_stream_sent_data(ss, 1), -EINVAL);
    free(fd);
}

static void test_session_limit(void **state)
{
    struct feeder *fd = calloc(1, sizeof(*fd));
    (void)state;

    channel_session_init(&fd->s, H);
    assert_int_equal(feed(fd, CHANNEL_T_HELLO, 0, G), CHANNEL_EV_HELLO);
    for (uint32_t id = 1; id <= CHANNEL_MAX_STREAMS; id++)
        assert_int_equal(feed(fd, CHANNEL_T_OPEN, id * 3, 1), CHANNEL_EV_OPEN);
    assert_int_equal(fd->s.n, CHANNEL_MAX_STREAMS);
    /* Over the limit: refused, nothing kept, but the id is used up. */
    assert_int_equal(feed(fd, CHANNEL_T_OPEN, 5000, 1), CHANNEL_EV_REFUSE);
    assert_int_equal(fd->s.n, CHANNEL_MAX_STREAMS);
    assert_int_equal(feed(fd, CHANNEL_T_DATA, 5000, 1), CHANNEL_EV_IGNORE);
    assert_int_equal(feed(fd, CHANNEL_T_OPEN, 5000, 1), EP);
    /* Lookup finds every stream (sorted table). */
    for (uint32_t id = 1; id <= CHANNEL_MAX_STREAMS; id++) {
        assert_non_null(channel_session_find(&fd->s, id * 3));
        assert_null(channel_session_find(&fd->s, id * 3 + 1));
    }
    /* After one reset there is room again. */
    assert_int_equal(feed(fd, CHANNEL_T_RESET, 300, 1), CHANNEL_EV_RESET);
    assert_null(channel_session_find(&fd->s, 300));
    assert_non_null(channel_session_find(&fd->s, 303));
    assert_int_equal(feed(fd, CHANNEL_T_OPEN, 5001, 1), CHANNEL_EV_OPEN);
    free(fd);

    /* Guest side: the 1025th allocation fails. */
    fd = calloc(1, sizeof(*fd));
    channel_session_init(&fd->s, G);
    for (size_t i = 0; i < CHANNEL_MAX_STREAMS; i++)
        assert_int_equal(channel_session_add(&fd->s, &fd->pool[i], 0, 1, NULL), 0);
    assert_int_equal(channel_session_add(&fd->s, &fd->pool[CHANNEL_MAX_STREAMS], 0, 1, NULL),
                     -ENOSPC);
    assert_int_equal(fd->pool[CHANNEL_MAX_STREAMS - 1].id, CHANNEL_MAX_STREAMS);
    free(fd);
}

/* v2 id spaces: each side opens only its own kinds, in its own space, until it runs out. */
static void test_session_ids(void **state)
{
    struct feeder *fd = calloc(1, sizeof(*fd));
    (void)state;

    channel_session_init(&fd->s, H);
    assert_int_equal(channel_session_add(&fd->s, &fd->pool[0], 0, CHANNEL_KIND_TCP_PROXY, NULL),
                     -EINVAL);
    assert_int_equal(channel_session_add(&fd->s, &fd->pool[0], 0, STATUS, NULL), 0);
    assert_int_equal(fd->pool[0].id, HID(1));
    assert_true(fd->pool[0].flags & CHANNEL_SS_OPENING);
    assert_int_equal(channel_kind_opener(EXEC), H);
    assert_int_equal(channel_kind_opener(CHANNEL_KIND_UDP_DNS), G);
    assert_int_equal(channel_kind_opener(CHANNEL_KIND_MAX), 0);
    /* The last host id is 0xffffffff; then the host must restart the channel. */
    fd->s.last_local = UINT32_MAX - 1;
    assert_int_equal(channel_session_add(&fd->s, &fd->pool[1], 0, EXEC, NULL), 0);
    assert_int_equal(fd->pool[1].id, UINT32_MAX);
    assert_int_equal(channel_session_add(&fd->s, &fd->pool[2], 0, EXEC, NULL), -ENOSPC);
    free(fd);

    fd = calloc(1, sizeof(*fd));
    channel_session_init(&fd->s, G);
    assert_int_equal(channel_session_add(&fd->s, &fd->pool[0], 0, EXEC, NULL), -EINVAL);
    fd->s.last_local = CHANNEL_ID_HOST - 2;
    assert_int_equal(channel_session_add(&fd->s, &fd->pool[0], 0, CHANNEL_KIND_TCP_DNS, NULL), 0);
    assert_int_equal(fd->pool[0].id, CHANNEL_ID_HOST - 1);
    assert_int_equal(channel_session_add(&fd->s, &fd->pool[1], 0, CHANNEL_KIND_TCP_DNS, NULL),
                     -ENOSPC);
    /* A v1 HELLO is refused with its own error, and its version is kept for the message. */
    assert_int_equal(feed(fd, CHANNEL_T_HELLO, 0, H), CHANNEL_EV_HELLO);
    free(fd);
    {
        uint8_t b[32];
        const uint8_t *cur = b;
        struct channel_frame f;
        struct channel_stream_state *ss = NULL;
        struct channel_session *s = calloc(1, sizeof(*s));
        size_t n = channel_frame_encode_ctl(b, CHANNEL_T_HELLO, 0, H);

        b[CHANNEL_HDR_LEN + 4] = 1;
        channel_session_init(s, G);
        assert_int_equal(channel_frame_decode(&cur, b + n, &f), 1);
        assert_int_equal(channel_session_recv(s, &f, &ss), -EPROTONOSUPPORT);
        assert_int_equal(s->peer_version, 1);
        free(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_ctl),   cmocka_unit_test(test_wire_layout),
        cmocka_unit_test(test_incremental),     cmocka_unit_test(test_reject),
        cmocka_unit_test(test_oversized_early), cmocka_unit_test(test_session_scenarios),
        cmocka_unit_test(test_session_credit),  cmocka_unit_test(test_session_limit),
        cmocka_unit_test(test_session_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

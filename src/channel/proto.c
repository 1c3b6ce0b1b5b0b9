#include "channel/proto.h"

#include <errno.h>
#include <string.h>

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Is len a valid payload length for type? (type already known to be valid) */
static bool len_ok(uint8_t type, uint16_t len)
{
    switch (type) {
    case CHANNEL_T_HELLO:
        return len == CHANNEL_HELLO_LEN;
    case CHANNEL_T_OPEN:
    case CHANNEL_T_RESET:
        return len == 1;
    case CHANNEL_T_OPEN_OK:
    case CHANNEL_T_FIN:
        return len == 0;
    case CHANNEL_T_DATA:
        return len >= 1 && len <= CHANNEL_MAX_PAYLOAD;
    case CHANNEL_T_WINDOW:
        return len == 4;
    default:
        return false;
    }
}

int channel_frame_decode(const uint8_t **cursor, const uint8_t *end, struct channel_frame *ret)
{
    const uint8_t *p = *cursor;
    struct channel_frame f = { 0 };
    size_t avail;

    if (p > end)
        return -EINVAL;
    avail = (size_t)(end - p);
    if (avail < CHANNEL_HDR_LEN) {
        /* Reject what the bytes we have already rule out, so garbage fails fast. */
        if (avail >= 1 && (p[0] == 0 || p[0] >= CHANNEL_T_MAX))
            return -EBADMSG;
        if (avail >= 2 && p[1] != 0)
            return -EBADMSG;
        if (avail >= 4 && !len_ok(p[0], rd16(p + 2)))
            return -EBADMSG;
        return 0;
    }
    f.type = p[0];
    if (f.type == 0 || f.type >= CHANNEL_T_MAX || p[1] != 0)
        return -EBADMSG;
    f.len = rd16(p + 2);
    f.stream = rd32(p + 4);
    if (!len_ok(f.type, f.len))
        return -EBADMSG;
    if ((f.type == CHANNEL_T_HELLO) != (f.stream == 0))
        return -EBADMSG;
    if (avail - CHANNEL_HDR_LEN < f.len)
        return 0;
    f.payload = p + CHANNEL_HDR_LEN;

    switch (f.type) {
    case CHANNEL_T_HELLO:
        if (memcmp(f.payload, CHANNEL_MAGIC, 4) != 0)
            return -EBADMSG;
        f.version = f.payload[4];
        f.role = f.payload[5];
        if (f.role == 0 || f.role >= CHANNEL_ROLE_MAX)
            return -EBADMSG;
        break;
    case CHANNEL_T_OPEN:
        f.kind = f.payload[0];
        if (f.kind == 0 || f.kind >= CHANNEL_KIND_MAX)
            return -EBADMSG;
        break;
    case CHANNEL_T_RESET:
        f.reason = f.payload[0];
        if (f.reason == 0 || f.reason >= CHANNEL_RESET_MAX)
            return -EBADMSG;
        break;
    case CHANNEL_T_WINDOW:
        f.increment = rd32(f.payload);
        if (f.increment == 0 || f.increment > CHANNEL_WINDOW_MAX)
            return -EBADMSG;
        break;
    default:
        break;
    }
    *cursor = p + CHANNEL_HDR_LEN + f.len;
    *ret = f;
    return 1;
}

void channel_frame_header(uint8_t out[CHANNEL_HDR_LEN], enum channel_type type, uint32_t stream,
                          uint16_t len)
{
    out[0] = (uint8_t)type;
    out[1] = 0;
    wr16(out + 2, len);
    wr32(out + 4, stream);
}

size_t channel_frame_encode_ctl(uint8_t *out, enum channel_type type, uint32_t stream, uint32_t arg)
{
    uint8_t *p = out + CHANNEL_HDR_LEN;
    uint16_t len = 0;

    switch (type) {
    case CHANNEL_T_HELLO:
        memcpy(p, CHANNEL_MAGIC, 4);
        p[4] = CHANNEL_VERSION;
        p[5] = (uint8_t)arg;
        len = CHANNEL_HELLO_LEN;
        break;
    case CHANNEL_T_OPEN:
    case CHANNEL_T_RESET:
        p[0] = (uint8_t)arg;
        len = 1;
        break;
    case CHANNEL_T_WINDOW:
        wr32(p, arg);
        len = 4;
        break;
    default:
        break;
    }
    channel_frame_header(out, type, stream, len);
    return CHANNEL_HDR_LEN + (size_t)len;
}

uint32_t channel_recv_window(enum channel_role receiver)
{
    switch (receiver) {
    case CHANNEL_ROLE_HOST:
        return CHANNEL_WINDOW;
    case CHANNEL_ROLE_GUEST:
        return CHANNEL_WINDOW_GUEST;
    default:
        return 0;
    }
}

enum channel_role channel_kind_opener(enum channel_kind kind)
{
    switch (kind) {
    case CHANNEL_KIND_TCP_PROXY:
    case CHANNEL_KIND_TCP_DNS:
    case CHANNEL_KIND_UDP_DNS:
        return CHANNEL_ROLE_GUEST;
    case CHANNEL_KIND_EXEC:
    case CHANNEL_KIND_STATUS:
        return CHANNEL_ROLE_HOST;
    default:
        return 0;
    }
}

/* ---- session ---- */

/* Which side's id space an id is in. */
static enum channel_role id_space(uint32_t id)
{
    return (id & CHANNEL_ID_HOST) ? CHANNEL_ROLE_HOST : CHANNEL_ROLE_GUEST;
}

static enum channel_role peer_role(const struct channel_session *s)
{
    return s->role == CHANNEL_ROLE_GUEST ? CHANNEL_ROLE_HOST : CHANNEL_ROLE_GUEST;
}

void channel_session_init(struct channel_session *s, enum channel_role role)
{
    memset(s, 0, sizeof(*s));
    s->role = role;
    /* Each side's ids start just above the bottom of its space. */
    s->last_local = role == CHANNEL_ROLE_HOST ? CHANNEL_ID_HOST : 0;
    s->last_peer = role == CHANNEL_ROLE_HOST ? 0 : CHANNEL_ID_HOST;
}

/* Index of the first stream with id >= the given one. */
static size_t lower_bound(const struct channel_session *s, uint32_t id)
{
    size_t lo = 0, hi = s->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->streams[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

struct channel_stream_state *channel_session_find(struct channel_session *s, uint32_t id)
{
    size_t i = lower_bound(s, id);

    if (i < s->n && s->streams[i]->id == id)
        return s->streams[i];
    return NULL;
}

int channel_session_add(struct channel_session *s, struct channel_stream_state *ss, uint32_t id,
                        enum channel_kind kind, void *owner)
{
    bool local = id == 0;
    size_t i;

    if (s->n >= CHANNEL_MAX_STREAMS)
        return -ENOSPC;
    if (local) {
        uint32_t top = s->role == CHANNEL_ROLE_GUEST ? CHANNEL_ID_HOST - 1 : UINT32_MAX;
        if (channel_kind_opener(kind) != s->role)
            return -EINVAL;
        if (s->last_local == top)
            return -ENOSPC;
        id = ++s->last_local;
    } else if (id != s->last_peer || id_space(id) == s->role || channel_session_find(s, id)) {
        return -EINVAL;
    }
    *ss = (struct channel_stream_state){
        .id = id,
        .kind = (uint8_t)kind,
        .flags = local ? CHANNEL_SS_OPENING : 0,
        .send_credit = channel_recv_window(peer_role(s)),
        .recv_avail = channel_recv_window(s->role),
        .send_window = channel_recv_window(peer_role(s)),
        .recv_window = channel_recv_window(s->role),
        .owner = owner,
    };
    /* Ids only grow within a space, so a new stream goes at the end of its space (all guest
     * ids sort before all host ids): at most the host-space streams move up one slot. */
    i = lower_bound(s, id);
    /* an array of pointers: a pointer's size, as meant */
    /* NOLINTNEXTLINE(bugprone-sizeof-expression) */
    memmove(&s->streams[i + 1], &s->streams[i], (s->n - i) * sizeof(s->streams[0]));
    s->streams[i] = ss;
    s->n++;
    return 0;
}

void channel_session_remove(struct channel_session *s, struct channel_stream_state *ss)
{
    size_t i = lower_bound(s, ss->id);

    if (i >= s->n || s->streams[i] != ss)
        return;
    /* as above */
    /* NOLINTNEXTLINE(bugprone-sizeof-expression) */
    memmove(&s->streams[i], &s->streams[i + 1], (s->n - i - 1) * sizeof(s->streams[0]));
    s->n--;
}

int channel_session_recv(struct channel_session *s, const struct channel_frame *f,
                         struct channel_stream_state **ret_ss)
{
    struct channel_stream_state *ss;
    enum channel_role peer = peer_role(s);
    bool peers_id = id_space(f->stream) == peer;

    if (f->type == CHANNEL_T_HELLO) {
        if (s->hello_recv || f->role != peer)
            return -EPROTO;
        s->peer_version = f->version;
        /* Both ends come from one build; another version is refused, not negotiated. */
        if (f->version != CHANNEL_VERSION)
            return -EPROTONOSUPPORT;
        s->hello_recv = true;
        return CHANNEL_EV_HELLO;
    }
    if (!s->hello_recv || f->stream == 0)
        return -EPROTO;

    if (f->type == CHANNEL_T_OPEN) {
        /* Each side opens only its own kinds, in its own id space, with strictly increasing
         * ids (no reuse, no duplicates). */
        if (channel_kind_opener((enum channel_kind)f->kind) != peer || !peers_id ||
            f->stream <= s->last_peer)
            return -EPROTO;
        s->last_peer = f->stream;
        if (s->n >= CHANNEL_MAX_STREAMS)
            return CHANNEL_EV_REFUSE;
        return CHANNEL_EV_OPEN;
    }
    /* OPEN_OK answers our OPEN: never valid for a stream the peer opened. */
    if (f->type == CHANNEL_T_OPEN_OK && peers_id)
        return -EPROTO;

    ss = channel_session_find(s, f->stream);
    if (!ss) {
        /* A stream that was opened and has since closed: frames still in flight when it
         * closed are normal. One that was never opened: the peer made it up. */
        if (f->stream != CHANNEL_ID_HOST && f->stream <= (peers_id ? s->last_peer : s->last_local))
            return CHANNEL_EV_IGNORE;
        return -EPROTO;
    }

    switch (f->type) {
    case CHANNEL_T_OPEN_OK:
        if (!(ss->flags & CHANNEL_SS_OPENING))
            return -EPROTO;
        ss->flags &= (uint8_t)~CHANNEL_SS_OPENING;
        *ret_ss = ss;
        return CHANNEL_EV_OPEN_OK;
    case CHANNEL_T_DATA:
        /* The acceptor sends nothing but RESET before OPEN_OK; the opener may pipeline DATA
         * and FIN right behind its OPEN. */
        if ((ss->flags & (CHANNEL_SS_PEER_FIN | CHANNEL_SS_OPENING)) || f->len > ss->recv_avail)
            return -EPROTO;
        ss->recv_avail -= f->len;
        *ret_ss = ss;
        return CHANNEL_EV_DATA;
    case CHANNEL_T_FIN:
        if (ss->flags & (CHANNEL_SS_PEER_FIN | CHANNEL_SS_OPENING))
            return -EPROTO;
        ss->flags |= CHANNEL_SS_PEER_FIN;
        *ret_ss = ss;
        return CHANNEL_EV_FIN;
    case CHANNEL_T_WINDOW:
        /* Credit is only returned for bytes received, so it never exceeds the window. */
        if (f->increment > ss->send_window - ss->send_credit)
            return -EPROTO;
        ss->send_credit += f->increment;
        *ret_ss = ss;
        return CHANNEL_EV_WINDOW;
    case CHANNEL_T_RESET:
        *ret_ss = ss;
        return CHANNEL_EV_RESET;
    default:
        return -EPROTO;
    }
}

int channel_stream_sent_data(struct channel_stream_state *ss, size_t len)
{
    if (len == 0 || len > CHANNEL_MAX_PAYLOAD || len > ss->send_credit ||
        (ss->flags & CHANNEL_SS_LOCAL_FIN))
        return -EINVAL;
    ss->send_credit -= (uint32_t)len;
    return 0;
}

int channel_stream_granted(struct channel_stream_state *ss, uint32_t inc)
{
    if (inc == 0 || inc > ss->recv_window - ss->recv_avail)
        return -EINVAL;
    ss->recv_avail += inc;
    return 0;
}

bool channel_stream_finished(const struct channel_stream_state *ss)
{
    return (ss->flags & (CHANNEL_SS_LOCAL_FIN | CHANNEL_SS_PEER_FIN)) ==
           (CHANNEL_SS_LOCAL_FIN | CHANNEL_SS_PEER_FIN);
}

const char *channel_type_name(uint8_t type)
{
    static const char *const names[CHANNEL_T_MAX] = {
        [CHANNEL_T_HELLO] = "HELLO",   [CHANNEL_T_OPEN] = "OPEN", [CHANNEL_T_OPEN_OK] = "OPEN_OK",
        [CHANNEL_T_RESET] = "RESET",   [CHANNEL_T_DATA] = "DATA", [CHANNEL_T_FIN] = "FIN",
        [CHANNEL_T_WINDOW] = "WINDOW",
    };
    if (type >= CHANNEL_T_MAX || !names[type])
        return "?";
    return names[type];
}

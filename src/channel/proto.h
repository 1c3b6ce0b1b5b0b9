/*
 * The bottle channel wire protocol (version 3): one byte stream between a bottle (guest) and
 * its host, carrying many streams: the guest opens TCP connections to the proxy / DNS and DNS
 * datagram flows; the host opens exec and status streams toward the guest.
 *
 * Frame = 8-byte header + payload (all integers big-endian):
 *   byte 0     type     (enum channel_type)
 *   byte 1     flags    (must be 0)
 *   bytes 2-3  length   (payload bytes, <= CHANNEL_MAX_PAYLOAD, exact per type)
 *   bytes 4-7  stream   (0 only for HELLO, non-zero for everything else)
 * docs/channel.md has the byte layout of every payload and the state machine.
 *
 * Two layers, both pure (no I/O, no allocation) and fuzzed:
 *   - channel_frame_decode(): incremental, stateless syntax check of one frame.
 *   - struct channel_session: the per-channel state machine (HELLO, stream table, ids, FINs,
 *     per-stream credit). Every received frame goes through channel_session_recv(), which
 *     says what to do with it or that the peer broke the protocol (the channel must die).
 * Stream state objects are owned by the caller (embedded in its stream object); the session
 * only keeps pointers to them.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/limits.h" /* CHANNEL_MAX_STREAMS */

/* v1 (guest-opened streams only) and v2 (16 KiB frames) are refused: -EPROTONOSUPPORT */
#define CHANNEL_VERSION 3
#define CHANNEL_MAGIC "BBCH"
#define CHANNEL_HDR_LEN 8
/* Protocol facts (both ends must agree, the decoder enforces them): they stay here, while the
 * caps each endpoint chooses (CHANNEL_MAX_STREAMS, the mux queues) live in common/limits.h. */
/* Bytes of payload in one frame: a whole frame is 64 KiB (one mux output chunk). */
#define CHANNEL_MAX_PAYLOAD (65536 - CHANNEL_HDR_LEN)
#define CHANNEL_MAX_FRAME (CHANNEL_HDR_LEN + CHANNEL_MAX_PAYLOAD)
/* Per-stream credit, set by the receiving side's role: initial = maximum. Data toward the host
 * waits in the host's memory (at most CHANNEL_MAX_STREAMS x CHANNEL_WINDOW, however hostile the
 * guest); data toward the guest waits in the guest's, whose larger window keeps a download's
 * port busy across host scheduling delays (docs/channel.md, "Flow control"). */
#define CHANNEL_WINDOW (256u * 1024u)           /* the host's receive window (guest -> host) */
#define CHANNEL_WINDOW_GUEST (1024u * 1024u)    /* the guest's receive window (host -> guest) */
#define CHANNEL_WINDOW_MAX CHANNEL_WINDOW_GUEST /* the largest WINDOW increment on the wire */
#define CHANNEL_HELLO_LEN 6                     /* magic[4] version role */
/* Stream ids: the guest opens 1..0x7fffffff, the host 0x80000001..0xffffffff; each side's ids
 * strictly increase and are never reused. */
#define CHANNEL_ID_HOST 0x80000000u

enum channel_type {
    CHANNEL_T_HELLO = 1,   /* stream 0; payload "BBCH" version role; first frame each way */
    CHANNEL_T_OPEN = 2,    /* opener -> acceptor (either way, by kind); payload: kind (1 byte) */
    CHANNEL_T_OPEN_OK = 3, /* acceptor -> opener; empty */
    CHANNEL_T_RESET = 4,   /* either way; payload: reason (1 byte); the stream is gone */
    CHANNEL_T_DATA = 5,    /* either way; 1..CHANNEL_MAX_PAYLOAD bytes (one datagram for UDP) */
    CHANNEL_T_FIN = 6,     /* either way; empty; sender will send no more DATA (half-close) */
    CHANNEL_T_WINDOW = 7,  /* either way; payload: u32 credit increment, >= 1 */
    CHANNEL_T_MAX
};

/* What a stream is for; each kind has one side that may open it. The host maps a guest kind
 * to a target; the guest never names an address. */
enum channel_kind {
    CHANNEL_KIND_TCP_PROXY = 1, /* guest opens: TCP to the egress proxy (A:3128) */
    CHANNEL_KIND_TCP_DNS = 2,   /* guest opens: TCP to the DNS filter (A:53) */
    CHANNEL_KIND_UDP_DNS = 3,   /* guest opens: datagrams to the DNS filter, one per DATA frame */
    CHANNEL_KIND_EXEC = 4,      /* host opens (v2): run a command in the bottle (byte stream) */
    CHANNEL_KIND_STATUS = 5,    /* host opens (v2): ask the guest for its status (byte stream) */
    CHANNEL_KIND_MAX
};

enum channel_reason {
    CHANNEL_RESET_ABORTED = 1,  /* local socket error or abort */
    CHANNEL_RESET_REFUSED = 2,  /* host could not or would not connect the target */
    CHANNEL_RESET_LIMIT = 3,    /* too many streams (stream error, see docs/channel.md) */
    CHANNEL_RESET_TIMEOUT = 4,  /* idle (UDP flows) */
    CHANNEL_RESET_SHUTDOWN = 5, /* the endpoint is going away */
    CHANNEL_RESET_MAX
};

enum channel_role {
    CHANNEL_ROLE_GUEST = 1, /* opens the proxy/DNS kinds, accepts exec/status */
    CHANNEL_ROLE_HOST = 2,  /* opens exec/status, accepts the proxy/DNS kinds */
    CHANNEL_ROLE_MAX
};

/* The credit a receiver in role grants per stream: CHANNEL_WINDOW (host) or
 * CHANNEL_WINDOW_GUEST (guest); 0 for an unknown role. */
uint32_t channel_recv_window(enum channel_role receiver);

/* The role that may open streams of kind (0 for an unknown kind). */
enum channel_role channel_kind_opener(enum channel_kind kind);

/* A decoded frame. payload points into the decoder's input (valid while that buffer is). */
struct channel_frame {
    uint8_t type;
    uint32_t stream;
    uint16_t len;
    const uint8_t *payload;
    /* Decoded per-type fields (valid for the matching type only). */
    uint8_t kind;       /* OPEN */
    uint8_t reason;     /* RESET */
    uint8_t version;    /* HELLO */
    uint8_t role;       /* HELLO */
    uint32_t increment; /* WINDOW */
};

/*
 * Decode one frame from [*cursor, end). Returns 1 and *ret (cursor advanced past the frame),
 * 0 when more bytes are needed (cursor untouched), or -EBADMSG when the bytes can never be a
 * valid frame (unknown type, flags, bad length for the type, stream 0 misuse, unknown kind or
 * reason, zero WINDOW). Errors are reported as soon as the header shows them, before the
 * payload arrives. Stateless: the session checks the rest.
 */
int channel_frame_decode(const uint8_t **cursor, const uint8_t *end, struct channel_frame *ret);

/* Write a frame header for `type` into out. len must be valid for the type. */
void channel_frame_header(uint8_t out[CHANNEL_HDR_LEN], enum channel_type type, uint32_t stream,
                          uint16_t len);
/*
 * Encode a whole control frame (anything but DATA) into out (at least CHANNEL_HDR_LEN + 6
 * bytes). arg is the kind (OPEN), reason (RESET), role (HELLO), increment (WINDOW), ignored
 * otherwise. Returns the frame length.
 */
size_t channel_frame_encode_ctl(uint8_t *out, enum channel_type type, uint32_t stream,
                                uint32_t arg);

/* Per-stream protocol state; embedded in the caller's stream object. */
enum {
    CHANNEL_SS_OPENING = 1u << 0,   /* we opened: OPEN sent, OPEN_OK not yet received */
    CHANNEL_SS_LOCAL_FIN = 1u << 1, /* we sent FIN */
    CHANNEL_SS_PEER_FIN = 1u << 2,  /* peer sent FIN */
};

struct channel_stream_state {
    uint32_t id;
    uint8_t kind;
    uint8_t flags;        /* CHANNEL_SS_* */
    uint32_t send_credit; /* bytes we may still send */
    uint32_t recv_avail;  /* bytes the peer may still send (granted minus received) */
    uint32_t send_window; /* the peer's receive window: send_credit's maximum */
    uint32_t recv_window; /* our receive window: recv_avail's maximum */
    void *owner;          /* the caller's stream object */
};

struct channel_session {
    enum channel_role role;
    bool hello_recv;
    uint8_t peer_version; /* from the peer's HELLO (also when it was refused) */
    uint32_t last_local;  /* last id we allocated (in our id space) */
    uint32_t last_peer;   /* highest id the peer opened (in its id space) */
    size_t n;             /* live streams */
    struct channel_stream_state *streams[CHANNEL_MAX_STREAMS]; /* sorted by id */
};

/* What the caller must do with a frame channel_session_recv() accepted. */
enum channel_event {
    CHANNEL_EV_IGNORE = 1, /* frame for a stream that is already closed (a race): drop it */
    CHANNEL_EV_HELLO,      /* the peer's HELLO */
    CHANNEL_EV_OPEN,       /* peer opened a stream: channel_session_add() it with frame->stream,
                              or answer RESET */
    CHANNEL_EV_REFUSE,     /* OPEN over the stream limit: send RESET(LIMIT), keep nothing */
    CHANNEL_EV_OPEN_OK,    /* a stream we opened is established */
    CHANNEL_EV_DATA,       /* payload for *ret_ss (credit already taken) */
    CHANNEL_EV_FIN,        /* peer half-closed *ret_ss */
    CHANNEL_EV_WINDOW,     /* send credit of *ret_ss grew */
    CHANNEL_EV_RESET,      /* peer reset *ret_ss: remove it */
    CHANNEL_EV_MAX
};

void channel_session_init(struct channel_session *s, enum channel_role role);
/*
 * Check a decoded frame against the session and update state. Returns a channel_event (> 0)
 * and, for stream events, *ret_ss; -EPROTONOSUPPORT when the peer's HELLO has another
 * version (peer_version says which); or -EPROTO when the peer violated the protocol (frame
 * before HELLO, second HELLO, wrong role, OPEN of a kind the peer may not open, in the wrong
 * id space or with a reused id, frames for never-opened streams, DATA beyond the granted
 * credit or after FIN, duplicate FIN, OPEN_OK for a stream we did not open or twice, credit
 * overflow). After either error the channel must be torn down.
 */
int channel_session_recv(struct channel_session *s, const struct channel_frame *f,
                         struct channel_stream_state **ret_ss);
/* Look a live stream up by id (NULL when not live). */
struct channel_stream_state *channel_session_find(struct channel_session *s, uint32_t id);
/*
 * Add a stream: after CHANNEL_EV_OPEN with id = the frame's stream (the peer opened it); or
 * with id = 0 to open one ourselves (the next id of our space; kind must be one our role
 * opens; the stream starts CHANNEL_SS_OPENING). Initialises *ss (credit both ways =
 * CHANNEL_WINDOW). Returns 0, -ENOSPC (stream limit or ids exhausted) or -EINVAL (id not the
 * one just opened by the peer, or a kind we may not open).
 */
int channel_session_add(struct channel_session *s, struct channel_stream_state *ss, uint32_t id,
                        enum channel_kind kind, void *owner);
/* Remove a stream (no-op when not present). */
void channel_session_remove(struct channel_session *s, struct channel_stream_state *ss);
/* Account for sending len DATA bytes (requires len <= send_credit and no local FIN). */
int channel_stream_sent_data(struct channel_stream_state *ss, size_t len);
/* Account for returning inc bytes of credit to the peer (WINDOW sent). */
int channel_stream_granted(struct channel_stream_state *ss, uint32_t inc);
/* True when both sides sent FIN: nothing more will be said about the stream. */
bool channel_stream_finished(const struct channel_stream_state *ss);

const char *channel_type_name(uint8_t type);

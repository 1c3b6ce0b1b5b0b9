/*
 * The forward proxy's insides, shared by its four parts (proxy.h is the interface for callers):
 *
 *   conn.c      the connection state machine: one step per state, conn_run(), timers
 *   reply.c     refusals and error replies, each with its audit record
 *   tunnel.c    CONNECT tunnels: splice(2) through two kernel pipes
 *   listener.c  accept, adopt a handed-off fd, drain, free
 *
 * Invariants:
 *  - A handler never frees a connection: conn_close() marks it, unregisters its fds and queues
 *    the free as deferred work that runs after the dispatch pass.
 *  - Every byte a client or upstream can make us hold is capped: heads by BB_MAX_HTTP_HEAD,
 *    bodies pass through bounded buffers (BB_RELAY_CHUNK), tunnels through kernel pipes.
 *  - The upstream address is the one that was vetted by policy_check_addr(); there is no
 *    second lookup.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "common/buf.h"
#include "common/limits.h"
#include "proxy/cred.h"
#include "dlp/dlp.h"
#include "proxy/http1.h"
#include "proxy/pool.h"
#include "proxy/tls.h"
#include "proxy/proxy.h"

/* The caps a peer can push against are in common/limits.h (BB_RELAY_CHUNK, BB_PIPE_*, ...). */
#define PIPE_CHUNK (1 << 20) /* bytes asked of splice(2) per call */
#define ACCEPT_BATCH 64      /* accept() calls per readiness event (fairness) */

enum conn_state {
    CS_READ_HEAD,
    CS_RESOLVE,
    CS_HOLD, /* refused for now, held: waits for a policy change or its deadline */
    CS_CONNECT,
    CS_SEND_REQ,
    CS_READ_RESP,
    CS_SEND_RESP,
    CS_TUNNEL,
    CS_TLS_UP,   /* TLS handshake with the origin (intercepted host) */
    CS_TLS_DOWN, /* 200 sent to the bottle's CONNECT, TLS handshake with it as the origin */
    CS_UPGRADED, /* after a 101 to websocket: bytes relayed both ways (upgrade.c) */
    CS_DRAIN,
    CS_CLOSED,
    CS_MAX
};

struct side;

/*
 * How bytes cross one side of a connection (the client's or the upstream's): a small ops table,
 * so that a TLS transport can later sit beside plain TCP without the state machine knowing
 * (modelled on curl's connection filters, docs/internals/CONNECTION-FILTERS.md, cut down to one
 * transport per side). Only plain TCP (transport_tcp, transport.c) exists; its ops are the very
 * syscalls the state machine made before, one each, called indirectly.
 */
struct transport_ops {
    const char *name;
    /* Returns > 0 bytes read, 0 would block, -EPIPE at the end of the stream, or -errno. */
    ssize_t (*recv)(struct side *s, void *p, size_t len);
    /* Returns > 0 bytes written, 0 would block, or -errno. Never raises SIGPIPE. */
    ssize_t (*send)(struct side *s, const void *p, size_t len);
    /* End our write direction (TCP: FIN). Returns 0 or -errno. */
    int (*shutdown)(struct side *s);
    /* Release the transport's state and close the fd. */
    void (*close)(struct side *s);
    /* Bytes already read from the fd and held by the transport (a TLS record read ahead): no
     * readiness event will announce them. NULL: the transport never holds any. */
    size_t (*pending)(const struct side *s);
    /* The payload travels on the fd as is, so a tunnel may splice(2) it. */
    bool can_splice;
};

extern const struct transport_ops transport_tcp;
extern const struct transport_ops transport_tls; /* tls.c */

struct side {
    int fd;
    const struct transport_ops *tp; /* how bytes cross this side; set with the fd */
    void *tp_ctx;                   /* the transport's state (TCP: none) */
    struct loop_source src;
    bool eof;      /* read returned 0 */
    bool wshut;    /* we shut down our write side */
    uint32_t want; /* readiness the transport needs besides what the state asks (TLS) */
    bool rpending; /* TLS: the last read filled the caller's room with records still buffered */
};

/* Bytes the transport holds that no readiness event will announce. */
static inline size_t side_pending(const struct side *s)
{
    return s->fd >= 0 && s->tp->pending ? s->tp->pending(s) : 0;
}

struct conn {
    struct proxy *px;
    struct conn *prev, *next;
    enum conn_state state;
    struct side c, u;
    struct loop_timer timer;
    struct loop_defer free_defer;
    struct loop_defer rerun_defer; /* conn_run() again on the next pass (fairness cut-off) */
    bool u_ready;                  /* the upstream socket reported writable/error since the
                                    * connect started: its SO_ERROR is final */
    bool c_unwanted; /* the client socket woke us while its exchange waited (set_interest) */
    uint64_t last_active;
    uint64_t deadline; /* head / connect / resolve deadline; 0 = idle timeout applies */

    struct buf cin; /* client bytes not yet consumed (head, pipelined data, body start) */
    size_t head_scan;
    struct buf toup; /* bytes to write upstream */
    struct buf tocl; /* bytes to write to the client */
    struct buf uin;  /* upstream bytes not yet consumed (response head) */
    size_t resp_scan;

    /* the current exchange */
    struct host host;
    uint16_t port;
    bool is_connect;
    bool is_head;
    bool ws;         /* the request asks for a WebSocket upgrade (upgrade.c) */
    bool ws_release; /* CS_UPGRADED: the bytes held back waited UPGRADE_HOLD_MS; let them go */
    bool client_keep_alive;
    bool upstream_reusable;
    bool audited;
    /* The request was held and the hold is over (deadline passed): decide for good. */
    bool hold_over;
    /* The head is decided a second time (after a hold): not a new request for the stats. */
    bool redecide;
    enum http_body req_body, resp_body;
    uint64_t req_remaining, resp_remaining;
    struct http_chunked req_chunked, resp_chunked;
    bool scan_body;            /* credentials are held: look for placeholders in the body */
    struct cred_scan req_scan; /* (docs/credentials.md) */
    bool scan_resp;            /* values are held: refuse a response that reflects one */
    bool resp_identity;        /* asked for an unencoded, whole response (credential host) */
    struct cred_scan reflect_scan;
    size_t resp_hold; /* bytes at tocl's end kept back: a reflection could end in the next read */
    int status;       /* status sent to the client */
    char method[16];
    char addr_text[NET_ADDRSTR_MAX];  /* the address connected to or refused for ("" none) */
    char path[BB_AUDIT_PATH_MAX + 4]; /* plain HTTP: the path for the audit record, no query */
    uint64_t bytes_up, bytes_down;
    /* DLP over the request body: the decoded data, and the raw bytes (chunk framing,
     * extensions and trailers included) */
    struct dlp_stream dlp_body, dlp_raw;
    size_t req_scanned;                   /* body bytes at the start of cin already scanned */
    struct http_chunked req_scan_chunked; /* the framing state after them (chunked) */
    bool req_scan_done;                   /* the scan saw the chunked body's end */

    const char *close_reason; /* for the final audit record; NULL: "closed" / "aborted" */
    struct resolve_req *rq;
    struct sockaddr_storage addrs[BB_MAX_ADDRS];
    size_t naddrs, addr_idx;
    char up_host[BB_MAX_HOSTNAME + 1]; /* what the open upstream connection is for */
    uint16_t up_port;
    struct sockaddr_storage up_addr; /* the vetted address it is connected to */
    /* The upstream pool (pool.h): u_idle: the open upstream carries no exchange now and may go
     * back to the pool; u_exchanges: exchanges it completed (a pooled one counts as 1);
     * reused: this exchange rides a connection that was idle before it (audited "reused");
     * replay: the request as sent, kept while it may be sent again on a fresh connection
     * (an idempotent request with no body, on a reused connection that fails before any
     * response byte); retried: it was, once. */
    bool u_idle;
    bool reused;
    bool retried;
    bool replay_ok;
    unsigned u_exchanges;
    struct buf replay;

    /* TLS interception: the client side is a decrypted session for ic_host:ic_port (kept
     * across exchanges); up_tls: the upstream connection needs TLS (an intercepted host). */
    bool intercept;
    bool up_tls;
    struct host ic_host;
    uint16_t ic_port;

    /* CS_TUNNEL: kernel pipes for splice, client->upstream and upstream->client */
    int pipe_cu[2], pipe_uc[2];
    size_t in_pipe_cu, in_pipe_uc;
    bool grown_cu, grown_uc; /* pipe enlarged for bulk data (tried once) */
};

struct proxy {
    struct loop *loop;
    struct resolver *res;
    struct audit *audit;
    const struct policy *policy;
    const struct cred_store *creds; /* NULL: none (docs/credentials.md) */
    struct tls_ctx *tls;            /* NULL: no interception (tls.h) */
    struct upool *pool;             /* idle upstream connections (pool.h) */
    struct dlp *dlp;                /* the registered credentials (proxy_add_secret) */
    /* The policy came (partly) from config files: refusals also name the config key. */
    bool policy_from_file;
    struct proxy_limits lim;
    int lfd;
    struct loop_source lsrc;
    int spare_fd; /* held in reserve to shed connections when out of descriptors */
    struct conn *conns;
    struct proxy_stats st;
    void (*drain_fn)(void *);
    void *drain_ud;
    struct loop_defer drain_defer;
    /* Deferred work still pointing at us (connection frees, the drain check). proxy_free()
     * leaves the last of them to free the struct. */
    unsigned pending;
    bool dead;
};

/* conn.c */
int conn_new(struct proxy *px, int fd);
/* A side with no fd: plain TCP transport, no state (conn.c). */
void side_init(struct side *s);
void conn_close(struct conn *c);
/* The policy changed: a held request it now allows goes on (at the next loop pass). */
void conn_policy_changed(struct conn *c);
void side_close(struct proxy *px, struct side *s);
/* Write as much of b as the side takes. Returns > 0 progress, 0 would block, < 0 error. */
int side_flush(struct side *s, struct buf *b, uint64_t *counter);

/* reply.c */
/* Record sa's address (no port) as the exchange's "addr" for the audit record. */
void conn_set_addr(struct conn *c, const struct sockaddr *sa);
int conn_audit(struct conn *c, bool allow, const char *reason);
void conn_deny(struct conn *c, enum verdict v, const struct sockaddr *addr);
/* A refusal with its own reason and text: 403 + X-Bottle-Block: reason + audit. */
void conn_deny_text(struct conn *c, const char *reason, const char *text);
void conn_audit_failed(struct conn *c);
void conn_upstream_error(struct conn *c, int status, const char *reason, const char *text);
void conn_bad_request(struct conn *c, const struct http_error *e);
/* A credential placeholder where it may not be: 403 credential-misuse, the upstream aborted. */
void conn_cred_misuse(struct conn *c, size_t cred, const char *where);
/* The origin sent a credential's real value back: cut the connection, audited. */
void conn_cred_reflected(struct conn *c, size_t cred);
/* Searches tocl from byte from on for a credential's value while values are held: true when
 * the connection was cut for it (credential-reflected, or credential-unscannable when the
 * search cannot read the response). */
bool conn_reflected(struct conn *c, size_t from);
bool proxy_refuse_if_busy(struct proxy *px, int fd);
void proxy_audit_refused_conn(struct proxy *px, const char *reason, int status);

/* tunnel.c */
/* upgrade.c: WebSocket upgrades. After the 101, bytes from the origin that could begin a
 * credential's value wait at most this long for the rest (the stream is interactive). */
#define UPGRADE_HOLD_MS 100
bool upgrade_requested(const struct http_request *req);
bool upgrade_accepted(const struct http_response *resp);
int upgrade_finish_request(struct buf *head);
int upgrade_finish_response(struct buf *head);
void upgrade_start(struct conn *c);
int upgrade_step(struct conn *c);
/* conn.c's read: > 0 bytes, 0 would block, -EPIPE at the end (sets s->eof), < 0 error */
int conn_read_into(struct side *s, struct buf *b, size_t max);
void tunnel_start(struct conn *c);
int tunnel_step(struct conn *c);
void tunnel_pipes_close(struct conn *c);

/* listener.c */
void proxy_deferred_done(struct proxy *px);

/*
 * Every cap on something a peer (bottle, agent, upstream) can make grow lives here.
 */
#pragma once

/* HTTP request/response heads */
#define BB_MAX_HTTP_HEAD 16384  /* bytes of a request or response head, CRLFCRLF included */
#define BB_MAX_HTTP_HEADERS 100 /* header fields in one head */
#define BB_MAX_HTTP_LINE 8192   /* one request line or header line */
#define BB_MAX_HTTP_TARGET 8192 /* request-target length */
#define BB_MAX_CHUNK_LINE 1024  /* chunk-size line incl. extensions */

/* Host names (RFC 1035 2.3.4) */
#define BB_MAX_HOSTNAME 253
#define BB_MAX_LABEL 63
#define BB_MAX_HOST_INPUT                                                                          \
    1024 /* raw host text we are willing to look at (IDN before conversion)                        \
          */

/* Policy */
#define BB_MAX_PATTERNS 4096
#define BB_MAX_RULES 1024     /* method/path rules (policy.h) */
#define BB_MAX_RULE_TEXT 1024 /* bytes of one rule as written */
#define BB_MAX_RULE_PATH 512  /* bytes of a rule's path pattern */
#define BB_MAX_CIDRS 1024

/* Proxy */
#define BB_MAX_CONNS 4096           /* simultaneous client connections per daemon */
#define BB_HEAD_TIMEOUT_MS 30000    /* client must send a complete head within this */
#define BB_IDLE_TIMEOUT_MS 600000   /* idle keep-alive / tunnel with no bytes either way */
#define BB_CONNECT_TIMEOUT_MS 10000 /* upstream TCP connect */
#define BB_RESOLVE_TIMEOUT_MS 10000 /* upstream name resolution */
#define BB_AUDIT_PATH_MAX 256       /* bytes of an HTTP path kept in its audit record */
#define BB_MAX_ADDRS 16             /* resolved addresses considered per name */
#define BB_RELAY_CHUNK 65536        /* bytes per read when relaying bodies (buffers: head + this) */
#define BB_PIPE_DEFAULT_CAP 65536   /* a tunnel pipe's capacity until it carries bulk data */
#define BB_PIPE_BULK_CAP (1 << 20)  /* what a tunnel's pipe grows to (per direction) */
#define BB_DRAIN_LINGER_MS 2000     /* after an error response, discard client input this long */
#define BB_RESOLVER_MAX_SOCKS 16    /* c-ares sockets watched at once (more are not watched) */

/* Channel (docs/channel.md; the wire-format limits CHANNEL_MAX_PAYLOAD and CHANNEL_WINDOW
 * are protocol facts both ends must share: they stay in channel/proto.h) */
#define CHANNEL_MAX_STREAMS 1024       /* concurrently open streams per channel */
#define CHANNEL_HOST_FD_RESERVE 128    /* host: descriptors guest-opened streams leave free */
#define CHANNEL_MAX_UDP_FLOWS 64       /* guest: client addresses with a live DNS datagram stream */
#define CHANNEL_UDP_IDLE_MS 30000      /* guest: a UDP flow with no datagram either way is reset */
#define MUX_IN_CAP (256u * 1024u)      /* channel input buffer (>= one whole frame) */
#define MUX_OUT_HIGH (128u * 1024u)    /* output queue: stop reading local sockets at this */
#define MUX_OUT_LOW (64u * 1024u)      /* ... and resume below this */
#define MUX_OUT_STOP_IN (512u * 1024u) /* output queue: stop reading the channel at this */
#define MUX_OUT_MAX (2u * 1024u * 1024u) /* output queue hard cap: beyond it the channel dies */

/* Config */
#define BB_MAX_CONFIG_LINE 4096
#define BB_MAX_CONFIG_FILE (1024 * 1024)

/* DNS filter (src/dns; see docs/dns.md). Protocol facts (a name is at most 255 octets, a
 * message 65535, ...) stay in dns/wire.h: they are not ours to tune. */
#define DNS_UDP_RECV 4096              /* larger client datagrams are dropped */
#define DNS_MAX_CLIENT_UDP 4096        /* largest UDP answer we send, whatever a client offers */
#define DNS_MAX_RRS 512                /* resource records in one upstream answer we accept */
#define DNS_MAX_PTR_HOPS 64            /* compression pointers followed for one name */
#define DNS_UPSTREAM_TIMEOUT_MS 1500   /* per upstream try */
#define DNS_UPSTREAM_TRIES 2           /* UDP tries before SERVFAIL */
#define DNS_MAX_OUTSTANDING 1024       /* upstream queries in flight, whole filter */
#define DNS_MAX_CLIENT_OUTSTANDING 256 /* upstream queries in flight per client address */
#define DNS_MAX_CLIENTS 256            /* client addresses tracked (outstanding, flood count) */
#define DNS_MAX_TCP_CONNS 64           /* more are accepted and closed */
#define DNS_TCP_BACKLOG 64             /* listen() backlog */
#define DNS_TCP_MAX_QUERY 4096         /* a longer length prefix closes the connection */
#define DNS_TCP_MAX_PENDING 16         /* queries in flight per connection, then reading stops */
#define DNS_TCP_WBUF_PAUSE 65536       /* unread answers past which reading stops */
#define DNS_TCP_WBUF_MAX (512 * 1024)  /* unread answers past which the connection is closed */
#define DNS_TCP_IDLE_MS 10000          /* a connection with nothing in flight or unsent */
#define DNS_CACHE_MAX_ENTRIES 4096     /* cached answers */
#define DNS_CACHE_MAX_TTL 3600         /* s, positive answers */
#define DNS_CACHE_MAX_NEG_TTL 300      /* s, NXDOMAIN / NODATA (RFC 2308) */
/* Bytes of the cache (entry structs + messages + TTL offsets); an answer larger than a 16th of
 * that is not cached. */
#define DNS_CACHE_MAX_BYTES (4u * 1024 * 1024)
#define DNS_CACHE_MAX_ENTRY_BYTES (DNS_CACHE_MAX_BYTES / 16)

/* Supervisor control socket (src/supervisor/control.h): one request or reply per frame */
#define BB_MAX_CONTROL_FRAME 4096 /* bytes of JSON after the 4-byte length */
#define BB_MAX_CONTROL_CONNS 16   /* connections served at once per bottle */
#define BB_CONTROL_IDLE_MS 10000  /* a connection with no complete request for this long */

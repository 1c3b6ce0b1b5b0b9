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
#define BB_MAX_CIDRS 1024

/* Proxy */
#define BB_MAX_CONNS 4096           /* simultaneous client connections per daemon */
#define BB_RELAY_BUF 65536          /* bytes per direction per connection (ring) */
#define BB_HEAD_TIMEOUT_MS 30000    /* client must send a complete head within this */
#define BB_IDLE_TIMEOUT_MS 600000   /* idle keep-alive / tunnel with no bytes either way */
#define BB_CONNECT_TIMEOUT_MS 10000 /* upstream TCP connect */
#define BB_RESOLVE_TIMEOUT_MS 10000 /* upstream name resolution */
#define BB_MAX_ADDRS 16             /* resolved addresses considered per name */

/* Config */
#define BB_MAX_CONFIG_LINE 4096
#define BB_MAX_CONFIG_FILE (1024 * 1024)

/* Audit */
#define BB_MAX_AUDIT_LINE 4096

/* Supervisor control socket (src/supervisor/control.h): one request or reply per frame */
#define BB_MAX_CONTROL_FRAME 4096 /* bytes of JSON after the 4-byte length */
#define BB_MAX_CONTROL_CONNS 8    /* connections served at once per bottle */
#define BB_CONTROL_IDLE_MS 10000  /* a connection with no complete request for this long */

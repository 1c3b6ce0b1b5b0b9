/*
 * The supervisor's control socket (docs/supervisor.md, "Control socket"): a unix stream
 * socket at bottles/NAME/control (mode 0600, in the 0700 state directory of the invoking
 * user), served on the supervisor's loop, for the commands other processes send to a running
 * bottle (`bot-bottle stop`, `allow`, ... build on it).
 *
 * Framing: a 4-byte big-endian length, then that many bytes (1..BB_MAX_CONTROL_FRAME) of one
 * JSON object; one request per frame, one reply frame per request, in order.
 *   requests  {"cmd":"status"}  {"cmd":"stop"[,"time":S]}
 *             {"cmd":"allow","pattern":"example.com"[,"for":S]}  {"cmd":"deny","pattern":"..."}
 *             {"cmd":"attach"}
 * {"cmd":"exec","argv":[...][,"env":[...]][,"tty":B][,"interactive":B]}
 *             {"cmd":"signal","signal":N} (on an exec connection)
 *   attach and exec replies carry descriptors (SCM_RIGHTS); the connection then stays open:
 *   the server sends {"exit":STATUS} when the command ends.
 *   replies   {"ok":true, ...}  or  {"ok":false,"error":"what went wrong"}
 * A frame that is too long or not a request ends the connection (after an error reply when
 * the frame itself was well-formed). Peers are checked with SO_PEERCRED: the same uid as the
 * supervisor, or root; anyone else is disconnected before a byte is read.
 *
 * The state root is never mounted into a bottle, so no bottle can reach this socket.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/limits.h"
#include "common/loop.h"

#define CONTROL_HDR_LEN 4
#define CONTROL_MAX_PATTERN 1024
#define CONTROL_MAX_STOP_TIME 3600         /* stop's "time": at most an hour */
#define CONTROL_MAX_GRANT (30 * 24 * 3600) /* allow's "for": at most 30 days */
#define CONTROL_MAX_ARGS 128               /* exec's argv and env entries, each */
#define CONTROL_MAX_FDS 4                  /* descriptors passed with one reply */

struct control_conn;

enum control_cmd {
    CONTROL_STATUS = 1, /* name, backend, alias, pids, state */
    CONTROL_STOP,       /* ask the bottle to end (non-blocking; the reply comes first) */
    CONTROL_ALLOW,      /* add an allow pattern to the running daemon's policy */
    CONTROL_DENY,       /* remove an allow pattern from it */
    CONTROL_ATTACH,     /* the main command's terminal: its pty master and recent output */
    CONTROL_EXEC,       /* another command in the bottle: argv, env, tty, interactive */
    CONTROL_SIGNAL,     /* on an exec connection: a signal for the exec'd command */
    CONTROL_CMD_MAX
};

struct control_request {
    enum control_cmd cmd;
    char pattern[CONTROL_MAX_PATTERN + 1]; /* CONTROL_ALLOW, CONTROL_DENY */
    bool has_seconds; /* stop: "time" (grace before the kill); allow: "for" (expiry) */
    uint32_t seconds;
    /* exec: "argv" (1..CONTROL_MAX_ARGS strings), "env" (NAME=VALUE strings, at most
     * CONTROL_MAX_ARGS), "tty" and "interactive" (booleans). The strings are copied into
     * strings[] and argv/env point there (NULL-terminated); nothing to free. */
    char *argv[CONTROL_MAX_ARGS + 1];
    char *env[CONTROL_MAX_ARGS + 1];
    bool tty, interactive;
    uint16_t rows, cols; /* exec with tty: "rows", "cols" (the client's window; 0: unknown) */
    int signo;           /* signal: "signal", one of CONTROL_SIGNALS */
    char strings[BB_MAX_CONTROL_FRAME];
    /* The connection the request came on (set by the server before the handler runs; NULL
     * for a request parsed elsewhere): for control_conn_hold() and control_conn_set_fds(). */
    struct control_conn *conn;
};

/*
 * Decode one frame from [*cursor, end): 1 with the payload in *ret_p and *ret_len (cursor
 * advanced), 0 when more bytes are needed, -EMSGSIZE when the length is 0 or over
 * BB_MAX_CONTROL_FRAME (known from the header alone).
 */
int control_frame_decode(const uint8_t **cursor, const uint8_t *end, const uint8_t **ret_p,
                         size_t *ret_len);
/*
 * Parse a request payload (strict: an object with "cmd", "pattern" for allow and deny only,
 * "time" for stop and "for" for allow only (integer seconds); no other keys, no duplicates).
 * Returns 0 and *ret, or -EBADMSG with *reterr_msg (static).
 */
int control_request_parse(const uint8_t *p, size_t len, struct control_request *ret,
                          const char **reterr_msg);
/* Encode msg as one frame into out (cap: CONTROL_HDR_LEN + BB_MAX_CONTROL_FRAME). Returns the
 * frame length, or -EMSGSIZE. */
int control_frame_encode(const json_t *msg, uint8_t *out, size_t size);

/*
 * The command's handler: fill reply (an object; "ok" is set from the return value) and return
 * 0, or return -errno after setting reply's "error" (else a generic one is used).
 */
typedef int (*control_handler_fn)(void *userdata, const struct control_request *req, json_t *reply);

struct control_server;

/*
 * Serve on loop: listen_fd (a listening unix stream socket, owned from now on; -1: none, for
 * tests that only adopt() connections). Returns 0 and *ret, or -errno.
 */
int control_server_new(struct loop *loop, int listen_fd, control_handler_fn handler, void *userdata,
                       struct control_server **ret);
/* Serve an already connected socket (owned from now on), after the same peer check. */
int control_server_adopt(struct control_server *s, int fd);
struct control_server *control_server_free(struct control_server *s);

/*
 * A connection that outlives its request (attach, exec): no idle timeout; closed(userdata)
 * is called once when it closes (the client went away, or the server is freed), after which
 * conn must not be used. closed may be NULL.
 */
void control_conn_hold(struct control_conn *c, void (*closed)(void *userdata), void *userdata);
/* Stop holding: no callback any more (the idle timeout is back). */
void control_conn_release(struct control_conn *c);
/* Descriptors to pass (SCM_RIGHTS) with the reply to the current request; they are dup'd here
 * (the caller keeps its own). Returns 0 or -errno. */
int control_conn_set_fds(struct control_conn *c, const int *fds, size_t n);
/* Queue an unsolicited frame (e.g. {"exit":N}) to a held connection. Returns 0 or -errno. */
int control_conn_send(struct control_conn *c, const json_t *msg);

/* True when the peer of the unix socket fd is the same uid as we are, or root. */
bool control_peer_allowed(int fd);

/*
 * Create the listening socket `dir`/control (dir must exist; a path too long for sun_path is
 * reached through /proc/self/fd). Removes a stale socket first; mode 0600. Returns the fd
 * (close-on-exec, non-blocking) or -errno.
 */
int control_listen(const char *dir);

/*
 * Client: connect to `dir`/control, send request (a JSON object), wait up to timeout_ms for
 * the reply. Returns 0 and *ret_reply (caller decrefs), or -errno (-ETIMEDOUT, -ECONNREFUSED:
 * no supervisor there, -EBADMSG: not a reply).
 */
int control_call(const char *dir, const json_t *request, int timeout_ms, json_t **ret_reply);
/*
 * As control_call, but keeps the connection: returns 0 with *ret_reply, up to max_fds
 * descriptors received with it in fds (close-on-exec; *ret_nfds of them) and the connected
 * socket in *ret_fd (blocking), or -errno.
 */
int control_call_keep(const char *dir, const json_t *request, int timeout_ms, json_t **ret_reply,
                      int *fds, size_t max_fds, size_t *ret_nfds, int *ret_fd);
/* Read one frame from the blocking socket fd: 0 with *ret (an object), -ECONNRESET at EOF, or
 * -errno (-EBADMSG). */
int control_read_frame(int fd, json_t **ret);
/* Write one frame to the blocking socket fd. Returns 0 or -errno. */
int control_write_frame(int fd, const json_t *msg);

/*
 * The bottle's stdio without -t (docs/supervisor.md, "stdio"): the bottle never holds a file
 * descriptor of the user's terminal or of any file our own stdio refers to. Its stdout and
 * stderr are pipes whose read ends the supervisor's loop relays to our stdout and stderr; its
 * stdin is /dev/null, or with -i a pipe the loop feeds from our stdin (EOF is passed on by
 * closing the pipe).
 *
 * Each direction is one stream: `from` -> a fixed ring of STDIO_RING bytes -> `to`. Invariants
 * of the ring: 0 <= head < STDIO_RING, 0 <= len <= STDIO_RING; bytes leave in the order they
 * came. Backpressure: `from` is not read while the ring is more than half full, so a slow
 * reader of our stdout stops the bottle's writer (its pipe fills up) instead of growing memory.
 * Our own stdio is never switched to O_NONBLOCK (the file description is shared with the
 * shell): pipes, FIFOs and terminals are reopened through /proc/self/fd as a private
 * non-blocking description, sockets use MSG_DONTWAIT, regular files are read/written directly.
 * A write that fails (EPIPE: `run ... | head -1`) ends the stream: its pipe's read end is
 * closed, so the bottle's writer gets SIGPIPE/EPIPE. When our stdout or stderr is a
 * terminal, what the bottle writes there goes through the terminal filter (termfilter.h).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/loop.h"
#include "supervisor/termfilter.h"

#define STDIO_RING (64 * 1024)

enum { STDIO_IN, STDIO_OUT, STDIO_ERR, STDIO_MAX };

struct stdio_relay;

struct stdio_stream {
    struct stdio_relay *relay;
    int from, to;              /* -1 when closed */
    bool from_owned, to_owned; /* ours to close (else: the devnull we were given) */
    bool from_poll, to_poll;   /* registered with the loop (else: a regular file, always ready) */
    bool from_sock, to_sock;
    bool to_blocking; /* a blocking description (reopen failed): write <= PIPE_BUF per EPOLLOUT */
    bool eof;         /* `from` ended */
    bool dead;        /* `to` failed: the stream is dropped */
    struct loop_source from_src, to_src;
    char *ring;
    size_t head, len;
    struct termfilter *filter; /* `to` is a terminal: the bottle's output is filtered */
};

struct stdio_relay {
    bool opened;
    struct loop *loop;
    struct stdio_stream s[STDIO_MAX];
    /* The bottle's ends, for backend_create_args.stdio; closed by stdio_relay_close_child()
     * once the bottle holds them. */
    int child[STDIO_MAX];
    bool child_owned[STDIO_MAX];
    void (*done)(void *userdata);
    void *userdata;
    bool finished;
};

/*
 * Creates the pipes. interactive: stdin is fed from in_fd, else the bottle's stdin is devnull
 * (not owned). out_fd/err_fd: where the bottle's stdout/stderr go. Returns 0 or -errno.
 */
int stdio_relay_open(struct stdio_relay *r, struct loop *l, bool interactive, int devnull,
                     int in_fd, int out_fd, int err_fd);
/*
 * The same relay for pipes someone else made (exec: the supervisor made them and passed our
 * ends): host[STDIO_IN] the write end of the command's stdin (-1: none), host[STDIO_OUT] and
 * host[STDIO_ERR] the read ends of its stdout and stderr; owned from now on (also on failure).
 */
int stdio_relay_adopt(struct stdio_relay *r, struct loop *l, const int host[STDIO_MAX], int in_fd,
                      int out_fd, int err_fd);
/* Closes our copies of the bottle's ends (after the backend started the bottle). */
void stdio_relay_close_child(struct stdio_relay *r);
/* Starts relaying; done(userdata) is called once, when stdout and stderr both reached EOF (or
 * failed) and everything read was written. Returns 0 or -errno. */
int stdio_relay_start(struct stdio_relay *r, void (*done)(void *userdata), void *userdata);
/* True once stdout and stderr are finished (see above). */
bool stdio_relay_finished(const struct stdio_relay *r);
/* Unregisters and closes everything. Idempotent; a no-op on a zeroed relay. */
void stdio_relay_done(struct stdio_relay *r);

/*
 * The host's ends of one command's streams in a microVM (the protocol is in
 * guest/vmsession.h): our ends of the socketpairs whose other ends the channel's mux carries,
 * and copies of the caller's stdio (pipes, or the pty slave with tty) that pumps join to them.
 * Session 0 is the bottle's own command (its status comes on bottle.ctl); the others are
 * backend_exec's, whose status comes back on their ctl stream and is announced on an eventfd.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "common/buf.h"
#include "common/loop.h"
#include "common/pump.h"

struct mux;

enum { SIO_IN, SIO_OUT, SIO_ERR };

struct vm_session {
    struct backend_exec base; /* exec sessions only */
    struct loop *loop;
    struct mux *mux;
    uint32_t id;
    bool tty, open;
    int ctl;
    int sock[3]; /* in, out, err; tty: sock[0] (to the guest) and sock[1] (a dup, from it) */
    int io[3];   /* in, out, err; tty: io[0] (read) and io[1] (a dup, written) */
    struct pump p[3];
    bool p_on[3];
    struct loop_source ctl_src;
    /* The request not yet written to ctl: a long one (long argv) waits for the mux, which
     * our own loop runs, to drain the socket; req_fd (a dup of ctl) watches for room. */
    struct buf req;
    int req_fd;
    struct loop_source req_src;
    char ctl_buf[64];
    size_t ctl_len;
    bool exited, reported;
    int status;
    int efd; /* exec: readable once exited and the output is across */
    struct loop_defer free_later;
    /* Session 0 only, set before session_open: hold the command's output until the guest
     * says "started" on ctl (or ctl ends), then call on_started (the caller erases its
     * progress line there, so it never mixes with the command's output). */
    void (*on_started)(void *ud);
    void *started_ud;
    bool held;
};

void session_init(struct vm_session *x, uint32_t id);
/*
 * Opens x's streams on mux and sends the request: ctl, then in/out/err (or tty). io[] are the
 * caller's stdio (copied; with tty io[0] is the pty slave, made raw). argv NULL: session 0
 * (the spec's command). Never waits: what the socket does not take at once is written from
 * the loop. Returns 0, -E2BIG for a request over VMS_MAX_REQUEST (the guest's limit: about
 * 512 KiB of arguments, environment and directory, hex-encoded), or -errno (the caller
 * closes x).
 */
int session_open(struct vm_session *x, struct loop *loop, struct mux *mux, const int io[3],
                 bool tty, char *const *argv, char *const *env, const char *cwd);
/* exec: watch ctl for "exit N" (x->efd must be an eventfd). Returns 0 or -errno. */
int session_watch_exit(struct vm_session *x);
/* The pty's size (of io[0]) to the guest. */
void session_resize(struct vm_session *x);
/* One ctl line ("signal N\n", ...) to the guest; 0 or -errno. */
int send_ctl_line(struct vm_session *x, const char *line);
/* Unregisters and closes everything (not the struct). */
void session_close(struct vm_session *x);

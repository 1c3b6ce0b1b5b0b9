/*
 * A one-way byte pump on the loop: reads `from`, writes `to`, one buffer at a time (so a slow
 * writer stops the reader: back-pressure reaches the producer, memory stays PUMP_BUF).
 * Used where the microvm backend and bottle-init join a pipe or a pty to a channel stream's
 * socket (docs/microvm.md, "stdio").
 *
 * Both fds are made non-blocking; they are not owned (the owner closes them after `done`).
 * EOF on `from` (read 0, or EIO from a pty master whose slave is gone) ends the pump once the
 * buffer is written: when `to` is a socket, shutdown(SHUT_WR) passes the EOF on. A failed
 * write (EPIPE: the reader went away) ends it too. done(p, err) is called once, from the
 * loop's dispatch (err 0: EOF passed on), after the pump unregistered itself.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/loop.h"

#define PUMP_BUF 16384

struct pump {
    struct loop *loop;
    int from, to;
    struct loop_source rsrc, wsrc;
    size_t off, len;
    bool running, to_sock;
    void (*done)(struct pump *p, int err);
    void *userdata;
    char buf[PUMP_BUF];
};

/* Starts pumping. Returns 0 or -errno (nothing registered). */
int pump_start(struct pump *p, struct loop *l, int from, int to,
               void (*done)(struct pump *p, int err), void *userdata);
/* Reads what `from` has now (non-blocking) and writes it out as far as `to` takes it, then
 * ends the pump as at EOF (done is called). For a last drain at exit. */
void pump_drain_and_finish(struct pump *p);
/* Unregisters without calling done. Idempotent; a no-op on a zeroed pump. */
void pump_stop(struct pump *p);

/*
 * The terminal of `run -t`: a pty whose slave becomes the bottle's stdin/stdout/stderr (and
 * controlling terminal), while the host terminal is put in raw mode and relayed to the pty
 * master by the supervisor's loop. The bottle never gets the host's terminal itself, so it
 * cannot push input into it (TIOCSTI) or change its settings. Ctrl-C is a byte on the pty,
 * delivered to the bottle's foreground process by the pty's line discipline; window-size
 * changes (SIGWINCH) are copied to the pty. What the bottle prints goes through the terminal
 * filter (termfilter.h) when our stdout is a terminal; on the way out the terminal is
 * restored with TCSAFLUSH after late replies to the bottle's queries are read and dropped.
 */
#pragma once

#include <stdbool.h>
#include <termios.h>

#include "common/buf.h"
#include "common/loop.h"
#include "supervisor/termfilter.h"

struct tty_relay {
    struct loop *loop;
    int master, slave;
    int in_fd, out_fd; /* host terminal */
    struct termios saved;
    bool raw;
    struct loop_source in_src, master_src, out_src;
    struct buf to_master, to_out;
    bool master_eof;
    struct termfilter filter; /* what the bottle prints, on its way to our terminal */
    bool filtered;            /* out_fd is a terminal */
    /* attach: ctrl-p ctrl-q typed on in_fd calls detach(detach_ud) instead of reaching the
     * pty (ctrl-p followed by anything else passes both on) */
    void (*detach)(void *userdata);
    void *detach_ud;
    bool ctrl_p; /* a ctrl-p was typed and is held */
};

#define TTY_DETACH_1 0x10 /* ctrl-p */
#define TTY_DETACH_2 0x11 /* ctrl-q */

/* Open the pty, sized like in_fd's terminal. Returns 0 or -errno. */
int tty_relay_open(struct tty_relay *t, struct loop *l, int in_fd, int out_fd);
/* As tty_relay_open, for a pty master someone else opened (attach, exec -t: the supervisor
 * passed it): owned from now on; sized like in_fd's terminal. Returns 0 or -errno. */
int tty_relay_adopt(struct tty_relay *t, struct loop *l, int master, int in_fd, int out_fd);
/* Put the host terminal in raw mode and start relaying. Returns 0 or -errno. */
int tty_relay_start(struct tty_relay *t);
/* Copy the host terminal's size to the pty (on SIGWINCH). */
void tty_relay_resize(struct tty_relay *t);
/* Write out what the bottle printed that is still buffered (after it exited). */
void tty_relay_flush(struct tty_relay *t);
/* Restore the host terminal (dropping pending input: replies to the bottle's queries) and
 * close everything. Idempotent. */
void tty_relay_done(struct tty_relay *t);

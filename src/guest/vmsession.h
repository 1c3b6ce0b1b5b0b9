/*
 * Commands run over the channel in a microVM (docs/microvm.md, "stdio and exec"): the host
 * opens CHANNEL_KIND_EXEC streams; each starts with one header line naming its session and
 * role, then carries that role's bytes.
 *
 *   header (host -> guest, first line of every stream):  "<session-id> <role>\n"
 *     roles: ctl (requests and the exit status), in, out, err (the command's stdio, without
 *     a terminal), tty (the guest pty's master, both ways). Session 0 is the bottle's own
 *     command (argv and environment from the spec); others are `exec`.
 *   ctl, host -> guest, one request per line:
 *     arg HEX     one argv element (hex of its bytes; exec only; at least one)
 *     env HEX     NAME=VALUE added to the bottle's environment (exec only)
 *     cwd HEX     the working directory (exec only; default: the workspace)
 *     tty R C     give the command a pty of R rows and C columns (then one tty stream)
 *     start       run it once its streams are there (in, out, err; or tty)
 *     winsize R C the pty's new size (SIGWINCH to its foreground process group)
 *     signal N    send signal N to the command
 *   ctl, guest -> host: "exit N\n" (N as a shell's $?: 125/126/127, the command's, 128+sig),
 *     then EOF.
 *
 * The in/out/err sockets are the command's fds 0-2 themselves; a tty session's pty master is
 * pumped to and from its stream by bottle-init. When the command ends, its out/err (or tty)
 * streams are shut down after a last drain, so the host sees EOF once everything is across.
 * Session 0 waits for the host's EOF on them too (the host closes its end once it wrote
 * everything out): only then does bottle-init report the status and power off.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/loop.h"

#define VMS_MAX_SESSIONS 64
#define VMS_MAX_ARGS 4096
#define VMS_MAX_REQUEST (1024 * 1024) /* bytes of ctl requests per session before start */

struct vms_spawn {
    uint32_t id;
    char **argv;     /* NULL: the spec's command (session 0) */
    char **env;      /* extra NAME=VALUE, NULL-terminated (may be empty) */
    const char *cwd; /* NULL: the workspace */
    bool tty;        /* stdio[0..2] are a pty slave: make it the controlling terminal */
    int stdio[3];
};

struct vms_ops {
    /* Fork and exec the command; returns its pid, or a negative exit code's opposite when it
     * never ran (-125, -126, -127), having written the reason to stdio[2]. */
    pid_t (*spawn)(void *ud, const struct vms_spawn *req);
    /* Session 0 ended and its output is across (or the wait timed out): status N. */
    void (*main_done)(void *ud, int status);
    void *ud;
    uint32_t uid, gid; /* owner of the ptys */
};

struct vms;

int vms_new(struct loop *loop, const struct vms_ops *ops, struct vms **ret);
void vms_free(struct vms *v);
/* The channel's open_stream for CHANNEL_KIND_EXEC (channel/relay.h). */
int vms_open_stream(void *vms, int kind);
/* A child was reaped: if it is a session's command, finish that session. Returns true when
 * pid was one. */
bool vms_reaped(struct vms *v, pid_t pid, int status);

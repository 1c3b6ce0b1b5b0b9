/*
 * CONNECT tunnels: after the 200, bytes move in the kernel, splice(2) through one pipe per
 * direction, with half-close.
 */
#include "proxy/proxy-int.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

void tunnel_pipes_close(struct conn *c)
{
    for (int i = 0; i < 2; i++) {
        if (c->pipe_cu[i] >= 0)
            close(c->pipe_cu[i]);
        if (c->pipe_uc[i] >= 0)
            close(c->pipe_uc[i]);
        c->pipe_cu[i] = c->pipe_uc[i] = -1;
    }
    c->in_pipe_cu = c->in_pipe_uc = 0;
}

/* ---------------------------------------------------------------- CS_TUNNEL */

void tunnel_start(struct conn *c)
{
    /* splice(2) moves what is on the fds as it is: only for transports that carry the payload as
     * is (plain TCP). A relay through the transports' recv/send is not written yet. */
    if (!c->c.tp->can_splice || !c->u.tp->can_splice) {
        conn_upstream_error(c, 502, "proxy-unsupported-transport",
                            "this connection's transport cannot carry a tunnel");
        return;
    }
    if (pipe2(c->pipe_cu, O_CLOEXEC | O_NONBLOCK) < 0 ||
        pipe2(c->pipe_uc, O_CLOEXEC | O_NONBLOCK) < 0) {
        conn_upstream_error(c, 502, "proxy-out-of-resources", "out of file descriptors");
        return;
    }
    buf_reset(&c->tocl);
    buf_append_str(&c->tocl, "HTTP/1.1 200 Connection established\r\n\r\n");
    /* Whatever the client sent after the CONNECT head (a TLS ClientHello) goes upstream first. */
    if (c->cin.len)
        buf_append(&c->toup, c->cin.p, c->cin.len);
    buf_done(&c->cin);
    buf_done(&c->uin);
    c->state = CS_TUNNEL;
}

/*
 * One direction of a tunnel: src -> pipe -> dst. Returns > 0 progress, 0 nothing to do, < 0
 * error.
 */
static int splice_dir(struct side *src, struct side *dst, int pipefd[2], size_t *in_pipe,
                      bool *grown, uint64_t *counter)
{
    int progress = 0;
    ssize_t n;

    for (int round = 0; round < 4; round++) {
        if (*in_pipe) {
            n = splice(pipefd[0], NULL, dst->fd, NULL, *in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n < 0) {
                if (errno == EAGAIN)
                    break;
                return -errno;
            }
            *in_pipe -= (size_t)n;
            *counter += (uint64_t)n;
            progress = 1;
            if (*in_pipe)
                break; /* dst is full */
        }
        if (src->eof)
            break;
        n = splice(src->fd, NULL, pipefd[1], NULL, PIPE_CHUNK, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0) {
            if (errno == EAGAIN)
                break;
            return -errno;
        }
        if (n == 0) {
            src->eof = true;
            progress = 1;
            break;
        }
        *in_pipe += (size_t)n;
        progress = 1;
        if (*in_pipe >= BB_PIPE_DEFAULT_CAP && !*grown) {
            /* Bulk data: a larger pipe means fewer splice calls per byte. Best effort: the
             * per-user pipe quota may refuse it, and 64 KiB still works. */
            *grown = true;
            (void)fcntl(pipefd[1], F_SETPIPE_SZ, BB_PIPE_BULK_CAP);
        }
    }
    if (src->eof && !*in_pipe && !dst->wshut) {
        dst->tp->shutdown(dst);
        dst->wshut = true;
        progress = 1;
    }
    return progress;
}

int tunnel_step(struct conn *c)
{
    int r1, r2, r;

    /* Buffered bytes from before the tunnel started go first, in order. */
    if (c->tocl.len) {
        r = side_flush(&c->c, &c->tocl, NULL);
        if (r < 0)
            return r;
    }
    if (c->toup.len) {
        r = side_flush(&c->u, &c->toup, &c->bytes_up);
        if (r < 0)
            return r;
    }
    if (c->tocl.len || c->toup.len)
        return 0;
    r1 = splice_dir(&c->c, &c->u, c->pipe_cu, &c->in_pipe_cu, &c->grown_cu, &c->bytes_up);
    if (r1 < 0)
        return r1;
    r2 = splice_dir(&c->u, &c->c, c->pipe_uc, &c->in_pipe_uc, &c->grown_uc, &c->bytes_down);
    if (r2 < 0)
        return r2;
    /* The server hung up without a byte while the client was still there (a refused TLS
     * handshake looks like this): the closing record says so. */
    if (c->u.eof && !c->c.eof && c->bytes_down == 0 && !c->close_reason)
        c->close_reason = "upstream-closed";
    if (c->c.wshut && c->u.wshut) {
        conn_close(c);
        return 0;
    }
    return 0; /* splice_dir loops internally; wait for readiness */
}

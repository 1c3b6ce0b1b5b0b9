/*
 * Fuzz the supervisor's control-socket framing and request parser (src/supervisor/control.c).
 *
 * Input: the bytes a client sends on the control socket. Byte 0 seeds the chunking; the rest
 * is decoded frame by frame, whole and in chunks (as the server receives it), and every frame
 * is parsed as a request. Checks: no crash or leak; whole and chunked decoding agree; a frame
 * never exceeds BB_MAX_CONTROL_FRAME; an accepted request is a known command, carries a
 * pattern exactly when it is allow or deny, and the pattern is NUL-free text of at most 1024
 * bytes; seconds only for stop ("time", <= 3600) and allow ("for", 1..30 days); argv/env
 * only for exec (argv non-empty, env NAME=VALUE), a signal only for signal.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "supervisor/control.h"

static void check(int cond)
{
    if (!cond)
        abort();
}

static void check_request(const uint8_t *p, size_t len)
{
    struct control_request q;
    const char *why = NULL;
    int r = control_request_parse(p, len, &q, &why);

    if (r < 0) {
        check(r == -EBADMSG && why != NULL);
        return;
    }
    check(why == NULL);
    check(q.cmd >= CONTROL_STATUS && q.cmd < CONTROL_CMD_MAX);
    if (q.cmd == CONTROL_ALLOW || q.cmd == CONTROL_DENY) {
        size_t n = strnlen(q.pattern, sizeof(q.pattern));
        check(n >= 1 && n <= CONTROL_MAX_PATTERN);
    } else {
        check(q.pattern[0] == '\0');
    }
    /* exec: a non-empty argv, env entries NAME=VALUE, all inside the request's own buffer */
    if (q.cmd == CONTROL_EXEC) {
        check(q.argv[0] != NULL);
        for (size_t i = 0; q.env[i]; i++)
            check(strchr(q.env[i], '=') != NULL && q.env[i][0] != '=');
    } else {
        check(q.argv[0] == NULL && q.env[0] == NULL && !q.tty && !q.interactive && !q.rows &&
              !q.cols);
    }
    for (size_t i = 0; q.argv[i]; i++)
        check(q.argv[i] >= q.strings && q.argv[i] < q.strings + sizeof(q.strings));
    check(q.cmd == CONTROL_SIGNAL ? q.signo > 0 && q.signo != SIGSTOP : q.signo == 0);
    if (q.has_seconds) {
        check(q.cmd == CONTROL_STOP || q.cmd == CONTROL_ALLOW);
        check(q.cmd == CONTROL_STOP ? q.seconds <= CONTROL_MAX_STOP_TIME
                                    : q.seconds >= 1 && q.seconds <= CONTROL_MAX_GRANT);
    } else {
        check(q.seconds == 0);
    }
}

#define MAX_FRAMES 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t whole_off[MAX_FRAMES], n_whole = 0, n_chunked = 0;
    const uint8_t *cur, *end, *p;
    size_t len, have = 0, step;
    static uint8_t buf[CONTROL_HDR_LEN + BB_MAX_CONTROL_FRAME];
    int r = 0;

    if (size < 1)
        return 0;
    step = (size_t)data[0] % 64 + 1;
    data++;
    size--;

    /* whole */
    cur = data;
    end = data + size;
    while (n_whole < MAX_FRAMES && (r = control_frame_decode(&cur, end, &p, &len)) == 1) {
        check(len >= 1 && len <= BB_MAX_CONTROL_FRAME);
        check(p == cur - len);
        whole_off[n_whole++] = (size_t)(p - data);
        check_request(p, len);
    }
    check(r == 1 || r == 0 || r == -EMSGSIZE);

    /* chunked, through a buffer of the server's size */
    for (size_t off = 0; off < size && n_chunked < n_whole;) {
        size_t take = step < size - off ? step : size - off;
        if (take > sizeof(buf) - have)
            take = sizeof(buf) - have;
        memcpy(buf + have, data + off, take);
        have += take;
        off += take;
        for (;;) {
            const uint8_t *c = buf;
            r = control_frame_decode(&c, buf + have, &p, &len);
            if (r != 1)
                break;
            check(n_chunked < n_whole);
            check(memcmp(p, data + whole_off[n_chunked], len) == 0);
            n_chunked++;
            memmove(buf, c, (size_t)(buf + have - c));
            have = (size_t)(buf + have - c);
        }
        if (r < 0)
            break;
        check(have < sizeof(buf)); /* a full buffer always holds a whole frame */
    }
    check(n_chunked == n_whole || n_whole == MAX_FRAMES);
    return 0;
}

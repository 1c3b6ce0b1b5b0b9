/*
 * The supervisor's control socket (src/supervisor/control.c): frame and request parsing,
 * the server over a socketpair (pipelined and split frames, errors end the connection), the
 * client over a real socket, and the SO_PEERCRED check against another uid.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "supervisor/control.h"
#include "unit-util.h"

static char dir[] = "/tmp/bb-control-test.XXXXXX";

static int parse(const char *json, struct control_request *req)
{
    const char *why = NULL;
    int r = control_request_parse((const uint8_t *)json, strlen(json), req, &why);
    assert_true(r == 0 ? why == NULL : why != NULL);
    return r;
}

static void test_parse(void **unused)
{
    struct control_request q;
    (void)unused;

    assert_int_equal(parse("{\"cmd\":\"status\"}", &q), 0);
    assert_int_equal(q.cmd, CONTROL_STATUS);
    assert_int_equal(parse(" {\"cmd\":\"stop\"} ", &q), 0);
    assert_int_equal(q.cmd, CONTROL_STOP);
    assert_int_equal(parse("{\"cmd\":\"allow\",\"pattern\":\"*.example.com\"}", &q), 0);
    assert_int_equal(q.cmd, CONTROL_ALLOW);
    assert_string_equal(q.pattern, "*.example.com");
    assert_false(q.has_seconds);
    assert_int_equal(parse("{\"cmd\":\"deny\",\"pattern\":\"x.test\"}", &q), 0);
    assert_int_equal(q.cmd, CONTROL_DENY);
    assert_string_equal(q.pattern, "x.test");
    assert_int_equal(parse("{\"cmd\":\"allow\",\"pattern\":\"x.test\",\"for\":600}", &q), 0);
    assert_true(q.has_seconds);
    assert_int_equal(q.seconds, 600);
    assert_int_equal(parse("{\"cmd\":\"stop\",\"time\":0}", &q), 0);
    assert_true(q.has_seconds);
    assert_int_equal(q.seconds, 0);
    /* seconds: only for their command, in range, integers */
    assert_int_equal(parse("{\"cmd\":\"deny\"}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"deny\",\"pattern\":\"x\",\"for\":5}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"stop\",\"for\":5}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"allow\",\"pattern\":\"x\",\"time\":5}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"allow\",\"pattern\":\"x\",\"for\":0}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"allow\",\"pattern\":\"x\",\"for\":2592001}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"stop\",\"time\":3601}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"stop\",\"time\":-1}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"stop\",\"time\":\"5\"}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"stop\",\"time\":1.5}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"stop\",\"time\":1,\"for\":1}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"status\",\"time\":1}", &q), -EBADMSG);

    assert_int_equal(parse("", &q), -EBADMSG);
    assert_int_equal(parse("[\"status\"]", &q), -EBADMSG);
    assert_int_equal(parse("{}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"reboot\"}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":1}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"status\",\"cmd\":\"stop\"}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"status\",\"x\":1}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"status\",\"pattern\":\"a\"}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"allow\"}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"allow\",\"pattern\":\"\"}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"allow\",\"pattern\":\"a\\u0000b\"}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"stop\"}{\"cmd\":\"stop\"}", &q), -EBADMSG);
    {
        char big[2100];
        memset(big, 'a', sizeof(big));
        memcpy(big, "{\"cmd\":\"allow\",\"pattern\":\"", 26);
        memcpy(big + sizeof(big) - 3, "\"}", 3);
        assert_int_equal(parse(big, &q), -EBADMSG); /* pattern over 1024 bytes */
    }
}

static void test_parse_exec(void **unused)
{
    struct control_request q;
    (void)unused;

    assert_int_equal(parse("{\"cmd\":\"attach\"}", &q), 0);
    assert_int_equal(q.cmd, CONTROL_ATTACH);
    assert_int_equal(parse("{\"cmd\":\"exec\",\"argv\":[\"sh\",\"-c\",\"x\"],"
                           "\"env\":[\"A=1\"],\"tty\":true,\"interactive\":false}",
                           &q),
                     0);
    assert_int_equal(q.cmd, CONTROL_EXEC);
    assert_string_equal(q.argv[0], "sh");
    assert_string_equal(q.argv[2], "x");
    assert_null(q.argv[3]);
    assert_string_equal(q.env[0], "A=1");
    assert_null(q.env[1]);
    assert_true(q.tty);
    assert_false(q.interactive);
    assert_int_equal(parse("{\"cmd\":\"exec\",\"argv\":[\"true\"]}", &q), 0);
    assert_null(q.env[0]);
    assert_int_equal(parse("{\"cmd\":\"exec\",\"argv\":[\"x\"],\"rows\":33,\"cols\":111}", &q), 0);
    assert_int_equal(q.rows, 33);
    assert_int_equal(q.cols, 111);
    assert_int_equal(parse("{\"cmd\":\"exec\",\"argv\":[\"x\"],\"rows\":65536}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"status\",\"cols\":80}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"signal\",\"signal\":15}", &q), 0);
    assert_int_equal(q.signo, 15);
    /* exec needs a non-empty argv of strings; env entries are NAME=VALUE */
    assert_int_equal(parse("{\"cmd\":\"exec\"}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"exec\",\"argv\":[]}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"exec\",\"argv\":[1]}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"exec\",\"argv\":[\"a\\u0000b\"]}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"exec\",\"argv\":[\"x\"],\"env\":[\"NOEQ\"]}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"exec\",\"argv\":[\"x\"],\"env\":[\"=v\"]}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"exec\",\"argv\":[\"x\"],\"tty\":1}", &q), -EBADMSG);
    /* the exec keys only for exec; signal only for signal, and only a few signals */
    assert_int_equal(parse("{\"cmd\":\"status\",\"argv\":[\"x\"]}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"attach\",\"tty\":true}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"exec\",\"argv\":[\"x\"],\"signal\":15}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"signal\"}", &q), -EBADMSG);
    assert_int_equal(parse("{\"cmd\":\"signal\",\"signal\":19}", &q), -EBADMSG); /* STOP */
    assert_int_equal(parse("{\"cmd\":\"signal\",\"signal\":0}", &q), -EBADMSG);
    {
        /* more than 128 arguments */
        char big[1200];
        size_t n = (size_t)snprintf(big, sizeof(big), "{\"cmd\":\"exec\",\"argv\":[");
        for (int i = 0; i < 129; i++)
            n += (size_t)snprintf(big + n, sizeof(big) - n, i ? ",\"a\"" : "\"a\"");
        snprintf(big + n, sizeof(big) - n, "]}");
        assert_int_equal(parse(big, &q), -EBADMSG);
        big[n - 4] = '\0'; /* 128 of them: fine */
        snprintf(big + n - 4, sizeof(big) - n + 4, "]}");
        assert_int_equal(parse(big, &q), 0);
    }
}

static void test_frame(void **unused)
{
    uint8_t b[16] = { 0, 0, 0, 2, '{', '}', 0, 0 };
    const uint8_t *cur = b, *p;
    size_t len;
    (void)unused;

    assert_int_equal(control_frame_decode(&cur, b + 3, &p, &len), 0);
    assert_int_equal(control_frame_decode(&cur, b + 5, &p, &len), 0);
    assert_ptr_equal(cur, b);
    assert_int_equal(control_frame_decode(&cur, b + 6, &p, &len), 1);
    assert_ptr_equal(cur, b + 6);
    assert_int_equal(len, 2);
    assert_int_equal(control_frame_decode(&cur, b + 10, &p, &len), -EMSGSIZE); /* length 0 */
    {
        uint32_t n = BB_MAX_CONTROL_FRAME + 1;
        uint8_t h[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
        cur = h;
        assert_int_equal(control_frame_decode(&cur, h + 4, &p, &len), -EMSGSIZE);
    }
}

static int n_status, n_stop;

static int handler(void *ud, const struct control_request *req, json_t *reply)
{
    (void)ud;
    if (req->cmd == CONTROL_STATUS) {
        n_status++;
        json_object_set_new(reply, "state", json_string("running"));
        return 0;
    }
    if (req->cmd == CONTROL_STOP) {
        n_stop++;
        return 0;
    }
    json_object_set_new(reply, "error", json_string("no"));
    return -EOPNOTSUPP;
}

static size_t frame(const char *json, uint8_t *out)
{
    size_t n = strlen(json);
    out[0] = (uint8_t)(n >> 24);
    out[1] = (uint8_t)(n >> 16);
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
    memcpy(out + 4, json, n);
    return n + 4;
}

/* Read one reply frame from fd while running the loop; NULL at EOF. */
static json_t *read_reply(struct loop *l, int fd, uint8_t *buf, size_t *have)
{
    for (int i = 0; i < 200; i++) {
        const uint8_t *cur = buf, *p;
        size_t len;
        ssize_t k;
        int r = control_frame_decode(&cur, buf + *have, &p, &len);
        assert_true(r >= 0);
        if (r > 0) {
            json_t *o = json_loadb((const char *)p, len, 0, NULL);
            memmove(buf, cur, (size_t)(buf + *have - cur));
            *have = (size_t)(buf + *have - cur);
            assert_non_null(o);
            return o;
        }
        loop_run_once(l, 10);
        k = recv(fd, buf + *have, 8192 - *have, MSG_DONTWAIT);
        if (k == 0)
            return NULL;
        if (k > 0)
            *have += (size_t)k;
    }
    fail_msg("no reply");
    return NULL;
}

static void test_server_socketpair(void **unused)
{
    struct loop *l;
    struct control_server *srv;
    int sp[2];
    uint8_t req[256], buf[8192];
    size_t n = 0, have = 0;
    json_t *o;
    (void)unused;

    n_status = n_stop = 0;
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(control_server_new(l, -1, handler, NULL, &srv), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    assert_int_equal(control_server_adopt(srv, sp[0]), 0);

    /* two requests in one write, and half of a third */
    n += frame("{\"cmd\":\"status\"}", req + n);
    n += frame("{\"cmd\":\"stop\"}", req + n);
    n += frame("{\"cmd\":\"allow\",\"pattern\":\"x.example\"}", req + n);
    assert_int_equal(write(sp[1], req, n - 10), (ssize_t)(n - 10));
    o = read_reply(l, sp[1], buf, &have);
    assert_true(json_is_true(json_object_get(o, "ok")));
    assert_string_equal(json_string_value(json_object_get(o, "state")), "running");
    json_decref(o);
    o = read_reply(l, sp[1], buf, &have);
    assert_true(json_is_true(json_object_get(o, "ok")));
    json_decref(o);
    assert_int_equal(n_status, 1);
    assert_int_equal(n_stop, 1);
    /* the rest of the third */
    assert_int_equal(write(sp[1], req + n - 10, 10), 10);
    o = read_reply(l, sp[1], buf, &have);
    assert_true(json_is_false(json_object_get(o, "ok")));
    assert_string_equal(json_string_value(json_object_get(o, "error")), "no");
    json_decref(o);

    /* a malformed request: an error reply, then the connection ends */
    n = frame("{\"cmd\":\"status\",\"cmd\":\"x\"}", req);
    assert_int_equal(write(sp[1], req, n), (ssize_t)n);
    o = read_reply(l, sp[1], buf, &have);
    assert_true(json_is_false(json_object_get(o, "ok")));
    json_decref(o);
    assert_null(read_reply(l, sp[1], buf, &have));
    close(sp[1]);

    /* an oversized length: refused from the header alone */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    assert_int_equal(control_server_adopt(srv, sp[0]), 0);
    have = 0;
    assert_int_equal(write(sp[1], "\x7f\xff\xff\xff{", 5), 5);
    o = read_reply(l, sp[1], buf, &have);
    assert_true(json_is_false(json_object_get(o, "ok")));
    json_decref(o);
    assert_null(read_reply(l, sp[1], buf, &have));
    close(sp[1]);
    assert_int_equal(n_status, 1);

    control_server_free(srv);
    loop_run_once(l, 0);
    loop_free(l);
}

/* Run the loop until child exits; return its exit status. */
static int serve_until_exit(struct loop *l, pid_t pid)
{
    int status;
    for (int i = 0; i < 1000; i++) {
        loop_run_once(l, 10);
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return 101;
}

static void test_client_and_peer_check(void **unused)
{
    struct loop *l;
    struct control_server *srv;
    char sock[700];
    int fd;
    pid_t pid;
    (void)unused;

    n_status = 0;
    assert_int_equal(loop_new(&l), 0);
    fd = control_listen(dir);
    assert_true(fd >= 0);
    {
        struct stat st;
        snprintf(sock, sizeof(sock), "%s/control", dir);
        assert_int_equal(stat(sock, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0600);
    }
    assert_int_equal(control_server_new(l, fd, handler, NULL, &srv), 0);

    /* same uid: answered */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        json_t *q = json_pack("{s:s}", "cmd", "status"), *a = NULL;
        int r = control_call(dir, q, 5000, &a);
        _exit(r == 0 && json_is_true(json_object_get(a, "ok")) ? 0 : 1);
    }
    assert_int_equal(serve_until_exit(l, pid), 0);
    assert_int_equal(n_status, 1);

    if (geteuid() == 0) {
        /* another uid that could reach the socket (made reachable for the test) is refused
         * by SO_PEERCRED: no reply, the connection ends */
        assert_int_equal(chmod(dir, 0777), 0);
        assert_int_equal(chmod(sock, 0777), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            json_t *q = json_pack("{s:s}", "cmd", "status"), *a = NULL;
            int r;
            if (setgid(65534) < 0 || setuid(65534) < 0)
                _exit(3);
            r = control_call(dir, q, 5000, &a);
            _exit(r == -ECONNRESET || r == -EPIPE ? 0 : 2);
        }
        assert_int_equal(serve_until_exit(l, pid), 0);
        assert_int_equal(n_status, 1);
        assert_int_equal(chmod(dir, 0700), 0);
    } else {
        print_message("# SO_PEERCRED refusal needs root to switch uid; not run\n");
    }
    control_server_free(srv);
    loop_run_once(l, 0);
    loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_exec),
        cmocka_unit_test(test_frame),
        cmocka_unit_test(test_server_socketpair),
        cmocka_unit_test(test_client_and_peer_check),
    };
    int r;

    signal(SIGPIPE, SIG_IGN);
    if (!mkdtemp(dir))
        return 1;
    r = cmocka_run_group_tests(tests, NULL, NULL);
    (void)rm_rf(dir);
    return r;
}

/* Connection hand-off: only a connected TCP socket passes; every other descriptor or message
 * shape is refused and nothing leaks. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "channel/handoff.h"
#include "unit-util.h"

/* A connected TCP pair on loopback. */
static void tcp_pair(int *ret_client, int *ret_server, int *ret_listener)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    socklen_t sl = sizeof(sin);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), c;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(l, 1), 0);
    getsockname(l, (struct sockaddr *)&sin, &sl);
    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sin, sizeof(sin)), 0);
    *ret_server = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    *ret_client = c;
    *ret_listener = l;
}

static void send_fds(int sock, const int *fds, size_t n, char byte)
{
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    char buf[CMSG_SPACE(4 * sizeof(int))];
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

    if (n) {
        struct cmsghdr *cm;
        memset(buf, 0, sizeof(buf));
        msg.msg_control = buf;
        msg.msg_controllen = CMSG_SPACE(n * sizeof(int));
        cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(n * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
    }
    assert_int_equal(sendmsg(sock, &msg, 0), 1);
}

static void test_valid_and_refused(void **state)
{
    int sp[2], cl, sv, lis, got = -1, before, p[2], udp, us[2];
    (void)state;

    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
    tcp_pair(&cl, &sv, &lis);
    udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, us), 0);
    before = count_fds();

    /* nothing pending */
    assert_int_equal(handoff_recv(sp[1], &got), 0);

    /* the good case: a connected TCP socket, through the real sender */
    assert_int_equal(handoff_send(sp[0], sv), 0);
    assert_int_equal(handoff_recv(sp[1], &got), 1);
    assert_true(got >= 0);
    assert_int_equal(write(cl, "x", 1), 1);
    {
        char c = 0;
        assert_int_equal(read(got, &c, 1), 1);
        assert_int_equal(c, 'x');
    }
    close(got);
    assert_int_equal(count_fds(), before);

    /* refused: a listening socket, a UDP socket, a pipe, a unix socket */
    int bad[] = { lis, udp, p[0], us[0] };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        send_fds(sp[0], &bad[i], 1, 'C');
        got = -1;
        assert_int_equal(handoff_recv(sp[1], &got), -EBADMSG);
        assert_int_equal(got, -1);
        assert_int_equal(count_fds(), before);
    }
    /* refused: two descriptors in one message, none, or the wrong byte */
    {
        int two[] = { sv, sv };
        send_fds(sp[0], two, 2, 'C');
        assert_int_equal(handoff_recv(sp[1], &got), -EBADMSG);
        assert_int_equal(count_fds(), before);
        send_fds(sp[0], NULL, 0, 'C');
        assert_int_equal(handoff_recv(sp[1], &got), -EBADMSG);
        send_fds(sp[0], &sv, 1, 'X');
        assert_int_equal(handoff_recv(sp[1], &got), -EBADMSG);
        assert_int_equal(count_fds(), before);
    }
    /* the sender is gone */
    close(sp[0]);
    assert_int_equal(handoff_recv(sp[1], &got), -EPIPE);
    close(sp[1]);
    close(cl);
    close(sv);
    close(lis);
    close(udp);
    close(p[0]);
    close(p[1]);
    close(us[0]);
    close(us[1]);
}

static void test_send_to_dead_receiver(void **state)
{
    int sp[2], cl, sv, lis;
    (void)state;

    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
    tcp_pair(&cl, &sv, &lis);
    close(sp[1]);
    /* fail closed: the guest relay resets the connection when this fails */
    assert_true(handoff_send(sp[0], sv) < 0);
    close(sp[0]);
    close(cl);
    close(sv);
    close(lis);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_and_refused),
        cmocka_unit_test(test_send_to_dead_receiver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

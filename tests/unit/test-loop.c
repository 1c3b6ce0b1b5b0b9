/* Unit tests for the event loop: fd dispatch, timers on a fake clock, deferred work, deletion
 * during dispatch. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/loop.h"

static uint64_t fake_now;
static uint64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

static int fired[8];
static void timer_cb(struct loop_timer *t)
{
    fired[(intptr_t)t->userdata]++;
}

static void test_timers(void **state)
{
    struct loop *l;
    struct loop_timer t[4];
    (void)state;

    assert_int_equal(loop_new(&l), 0);
    fake_now = 1000;
    loop_set_clock(l, fake_clock, NULL);
    for (intptr_t i = 0; i < 4; i++)
        loop_timer_init(&t[i], timer_cb, (void *)i);
    loop_timer_set(l, &t[0], 5000);
    loop_timer_set(l, &t[1], 3000);
    loop_timer_set(l, &t[2], 4000);
    loop_timer_set(l, &t[3], 9000);
    loop_timer_stop(l, &t[2]);
    assert_false(loop_timer_armed(&t[2]));
    fake_now = 5000;
    loop_run_once(l, 0);
    assert_int_equal(fired[0], 1);
    assert_int_equal(fired[1], 1);
    assert_int_equal(fired[2], 0);
    assert_int_equal(fired[3], 0);
    /* Re-arming earlier works. */
    loop_timer_set(l, &t[3], 5500);
    fake_now = 6000;
    loop_run_once(l, 0);
    assert_int_equal(fired[3], 1);
    loop_free(l);
}

struct pair {
    struct loop *l;
    struct loop_source a, b;
    int calls_a, calls_b;
};

/* a's callback unregisters b; b must not be dispatched in the same pass. */
static void on_a(struct loop_source *s, uint32_t ev)
{
    struct pair *p = s->userdata;
    (void)ev;
    p->calls_a++;
    loop_del(p->l, &p->b);
    loop_del(p->l, &p->a);
}
static void on_b(struct loop_source *s, uint32_t ev)
{
    struct pair *p = s->userdata;
    (void)ev;
    p->calls_b++;
    loop_del(p->l, &p->a);
    loop_del(p->l, &p->b);
}

static void test_delete_during_dispatch(void **state)
{
    int sv1[2], sv2[2];
    struct pair p = { 0 };
    (void)state;

    assert_int_equal(loop_new(&p.l), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv1), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2), 0);
    assert_int_equal(write(sv1[1], "x", 1), 1);
    assert_int_equal(write(sv2[1], "x", 1), 1);
    assert_int_equal(loop_add(p.l, &p.a, sv1[0], EPOLLIN, on_a, &p), 0);
    assert_int_equal(loop_add(p.l, &p.b, sv2[0], EPOLLIN, on_b, &p), 0);
    loop_run_once(p.l, 100);
    /* Exactly one of them ran; it removed the other. */
    assert_int_equal(p.calls_a + p.calls_b, 1);
    loop_run_once(p.l, 0);
    assert_int_equal(p.calls_a + p.calls_b, 1);
    loop_free(p.l);
    close(sv1[0]);
    close(sv1[1]);
    close(sv2[0]);
    close(sv2[1]);
}

static int deferred;
static void on_defer(struct loop_defer *d)
{
    (void)d;
    deferred++;
}

static void test_defer(void **state)
{
    struct loop *l;
    struct loop_defer d = { 0 };
    (void)state;

    assert_int_equal(loop_new(&l), 0);
    loop_defer(l, &d, on_defer, NULL);
    loop_defer(l, &d, on_defer, NULL); /* twice is once */
    loop_run_once(l, 0);
    assert_int_equal(deferred, 1);
    loop_run_once(l, 0);
    assert_int_equal(deferred, 1);
    loop_free(l);
}

/*
 * Item: a stale event must never reach the next user of a source. Two readable sockets are
 * reported in one epoll batch; whichever callback runs first closes the other's socket and
 * registers the same loop_source on a fresh socket that reuses the fd number (exactly what the
 * proxy does with its upstream side when a CONNECT replaces an idle upstream whose RST is in the
 * same batch). The old readiness event of that fd must not be delivered to the new registration.
 */
struct reuse {
    struct loop *l;
    struct loop_source s[2];
    int fds[2][2]; /* the socketpairs; [i][0] is watched */
    int calls[2];
    int replaced; /* index replaced by the first callback, -1 if none yet */
    int reused_fd_ok;
};

static void on_reuse(struct loop_source *src, uint32_t ev)
{
    struct reuse *r = src->userdata;
    int me = src == &r->s[0] ? 0 : 1, other = 1 - me;
    int old_fd, sv[2];
    (void)ev;

    r->calls[me]++;
    if (r->replaced >= 0)
        return;
    r->replaced = other;
    old_fd = r->fds[other][0];
    loop_del(r->l, &r->s[other]);
    close(r->fds[other][0]);
    close(r->fds[other][1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    r->reused_fd_ok = sv[0] == old_fd;
    r->fds[other][0] = sv[0];
    r->fds[other][1] = sv[1];
    /* Same source, same fd number, new socket with nothing to read: any event now is stale. */
    assert_int_equal(loop_add(r->l, &r->s[other], sv[0], EPOLLIN | EPOLLOUT, on_reuse, r), 0);
    loop_mod(r->l, &r->s[other], EPOLLIN);
}

static void test_stale_event_after_fd_reuse(void **state)
{
    struct reuse r = { .replaced = -1 };
    (void)state;

    assert_int_equal(loop_new(&r.l), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, r.fds[i]), 0);
        assert_int_equal(write(r.fds[i][1], "x", 1), 1);
        assert_int_equal(loop_add(r.l, &r.s[i], r.fds[i][0], EPOLLIN, on_reuse, &r), 0);
    }
    loop_run_once(r.l, 100);
    assert_true(r.replaced >= 0);
    assert_true(r.reused_fd_ok); /* the new socket did get the old fd number */
    /* The replaced source's event came from the old socket: it must not have been delivered. */
    assert_int_equal(r.calls[r.replaced], 0);
    assert_int_equal(r.calls[1 - r.replaced], 1);
    /* The new registration works: data on the new socket is delivered on a later pass. */
    assert_int_equal(write(r.fds[r.replaced][1], "y", 1), 1);
    loop_run_once(r.l, 100);
    assert_int_equal(r.calls[r.replaced], 1);
    for (int i = 0; i < 2; i++) {
        loop_del(r.l, &r.s[i]);
        close(r.fds[i][0]);
        close(r.fds[i][1]);
    }
    loop_free(r.l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers),
        cmocka_unit_test(test_delete_during_dispatch),
        cmocka_unit_test(test_defer),
        cmocka_unit_test(test_stale_event_after_fd_reuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#include "common/loop.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "common/xalloc.h"

#define LOOP_MAX_EVENTS 256
#define LOOP_MAX_SIGNALS 8

struct loop_sig {
    int signo;
    void (*cb)(struct loop *l, int signo, void *ud);
    void *userdata;
};

struct loop {
    int epfd;
    uint64_t now;
    loop_clock_fn clock;
    void *clock_ud;

    struct loop_timer **heap;
    size_t nheap, heap_cap;

    struct loop_defer *defer_head, *defer_tail;

    int sigfd;
    struct loop_source sig_src;
    sigset_t sigmask;
    struct loop_sig sigs[LOOP_MAX_SIGNALS];
    size_t nsigs;

    /* Incremented when an epoll batch is fetched; a source registered during the dispatch of
     * a batch carries the batch's generation, and the batch's events are not for it. */
    uint64_t gen;

    bool quit;
    int quit_code;
};

static uint64_t monotonic_ns(void *ud)
{
    struct timespec ts;
    (void)ud;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void run_deferred(struct loop *l);

int loop_new(struct loop **ret)
{
    struct loop *l = xcalloc(1, sizeof(*l));

    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        int r = -errno;
        free(l);
        return r;
    }
    l->sigfd = -1;
    l->clock = monotonic_ns;
    l->now = l->clock(NULL);
    sigemptyset(&l->sigmask);
    *ret = l;
    return 0;
}

struct loop *loop_free(struct loop *l)
{
    if (!l)
        return NULL;
    /* Run pending deferred work (and what it queues) so owners get to free what they queued. */
    while (l->defer_head)
        run_deferred(l);
    if (l->sigfd >= 0) {
        close(l->sigfd);
        sigprocmask(SIG_UNBLOCK, &l->sigmask, NULL);
    }
    close(l->epfd);
    free(l->heap);
    free(l);
    return NULL;
}

void loop_set_clock(struct loop *l, loop_clock_fn fn, void *userdata)
{
    l->clock = fn ? fn : monotonic_ns;
    l->clock_ud = userdata;
    l->now = l->clock(l->clock_ud);
}

uint64_t loop_now(struct loop *l)
{
    return l->now;
}

void loop_update_now(struct loop *l)
{
    l->now = l->clock(l->clock_ud);
}

int loop_add(struct loop *l, struct loop_source *src, int fd, uint32_t events, loop_io_fn cb,
             void *userdata)
{
    struct epoll_event ev = { .events = events, .data.ptr = src };

    src->fd = fd;
    src->events = events;
    src->cb = cb;
    src->userdata = userdata;
    src->gen = l->gen;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        src->registered = false;
        return -errno;
    }
    src->registered = true;
    return 0;
}

int loop_mod(struct loop *l, struct loop_source *src, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = src };

    if (!src->registered)
        return -EBADF;
    if (src->events == events)
        return 0;
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, src->fd, &ev) < 0)
        return -errno;
    src->events = events;
    return 0;
}

void loop_del(struct loop *l, struct loop_source *src)
{
    if (!src->registered)
        return;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, src->fd, NULL);
    src->registered = false;
}

/* ---- timers: a binary min-heap on deadline ---- */

static void heap_swap(struct loop *l, size_t a, size_t b)
{
    struct loop_timer *t = l->heap[a];
    l->heap[a] = l->heap[b];
    l->heap[b] = t;
    l->heap[a]->heap_idx = a;
    l->heap[b]->heap_idx = b;
}

static void heap_up(struct loop *l, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent]->deadline <= l->heap[i]->deadline)
            break;
        heap_swap(l, i, parent);
        i = parent;
    }
}

static void heap_down(struct loop *l, size_t i)
{
    for (;;) {
        size_t left = 2 * i + 1, right = left + 1, m = i;
        if (left < l->nheap && l->heap[left]->deadline < l->heap[m]->deadline)
            m = left;
        if (right < l->nheap && l->heap[right]->deadline < l->heap[m]->deadline)
            m = right;
        if (m == i)
            break;
        heap_swap(l, i, m);
        i = m;
    }
}

void loop_timer_init(struct loop_timer *t, loop_timer_fn cb, void *userdata)
{
    t->deadline = 0;
    t->cb = cb;
    t->userdata = userdata;
    t->heap_idx = (size_t)-1;
}

void loop_timer_stop(struct loop *l, struct loop_timer *t)
{
    size_t i = t->heap_idx;

    if (i == (size_t)-1)
        return;
    t->heap_idx = (size_t)-1;
    l->nheap--;
    if (i == l->nheap)
        return;
    l->heap[i] = l->heap[l->nheap];
    l->heap[i]->heap_idx = i;
    heap_down(l, i);
    heap_up(l, i);
}

void loop_timer_set(struct loop *l, struct loop_timer *t, uint64_t deadline)
{
    if (t->heap_idx != (size_t)-1) {
        uint64_t old = t->deadline;
        t->deadline = deadline;
        if (deadline < old)
            heap_up(l, t->heap_idx);
        else
            heap_down(l, t->heap_idx);
        return;
    }
    if (l->nheap == l->heap_cap) {
        l->heap_cap = l->heap_cap ? l->heap_cap * 2 : 64;
        /* an array of pointers: sizeof(*l->heap) is a pointer's size, as meant */
        /* NOLINTNEXTLINE(bugprone-sizeof-expression) */
        l->heap = xrealloc(l->heap, l->heap_cap * sizeof(*l->heap));
    }
    t->deadline = deadline;
    t->heap_idx = l->nheap;
    l->heap[l->nheap++] = t;
    heap_up(l, t->heap_idx);
}

void loop_timer_set_in(struct loop *l, struct loop_timer *t, uint64_t ms)
{
    loop_timer_set(l, t, l->now + ms * 1000000ull);
}

static void run_timers(struct loop *l)
{
    /* Fire everything due; a callback may re-arm its own or other timers. */
    while (l->nheap && l->heap[0]->deadline <= l->now) {
        struct loop_timer *t = l->heap[0];
        loop_timer_stop(l, t);
        t->cb(t);
    }
}

static int next_timeout_ms(struct loop *l, int timeout_ms)
{
    uint64_t delta, ms;

    if (!l->nheap)
        return timeout_ms;
    if (l->heap[0]->deadline <= l->now)
        return 0;
    delta = l->heap[0]->deadline - l->now;
    ms = (delta + 999999) / 1000000; /* round up: never wake before the deadline */
    if (ms > INT32_MAX)
        ms = INT32_MAX;
    if (timeout_ms >= 0 && (uint64_t)timeout_ms < ms)
        return timeout_ms;
    return (int)ms;
}

/* ---- deferred work ---- */

void loop_defer(struct loop *l, struct loop_defer *d, void (*cb)(struct loop_defer *),
                void *userdata)
{
    if (d->queued)
        return;
    d->cb = cb;
    d->userdata = userdata;
    d->next = NULL;
    d->queued = true;
    if (l->defer_tail)
        l->defer_tail->next = d;
    else
        l->defer_head = d;
    l->defer_tail = d;
}

/*
 * Run the work queued so far. Work queued while it runs waits for the next pass (after the next
 * epoll_wait, which then does not block), so an owner that re-queues itself cannot starve the
 * loop.
 */
static void run_deferred(struct loop *l)
{
    struct loop_defer *d = l->defer_head;

    l->defer_head = l->defer_tail = NULL;
    while (d) {
        struct loop_defer *next = d->next;
        d->queued = false;
        d->cb(d);
        d = next;
    }
}

/* ---- signals ---- */

static void on_signal(struct loop_source *src, uint32_t events)
{
    struct loop *l = src->userdata;
    struct signalfd_siginfo si;
    (void)events;

    while (read(l->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        for (size_t i = 0; i < l->nsigs; i++)
            if (l->sigs[i].signo == (int)si.ssi_signo)
                l->sigs[i].cb(l, (int)si.ssi_signo, l->sigs[i].userdata);
    }
}

int loop_add_signal(struct loop *l, int signo, void (*cb)(struct loop *l, int signo, void *ud),
                    void *userdata)
{
    int fd, r;

    if (l->nsigs == LOOP_MAX_SIGNALS)
        return -ENOSPC;
    sigaddset(&l->sigmask, signo);
    if (sigprocmask(SIG_BLOCK, &l->sigmask, NULL) < 0)
        return -errno;
    fd = signalfd(l->sigfd, &l->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (l->sigfd < 0) {
        l->sigfd = fd;
        r = loop_add(l, &l->sig_src, fd, EPOLLIN, on_signal, l);
        if (r < 0)
            return r;
    }
    l->sigs[l->nsigs++] = (struct loop_sig){ .signo = signo, .cb = cb, .userdata = userdata };
    return 0;
}

/* ---- dispatch ---- */

int loop_run_once(struct loop *l, int timeout_ms)
{
    struct epoll_event evs[LOOP_MAX_EVENTS];
    int n;

    l->now = l->clock(l->clock_ud);
    n = epoll_wait(l->epfd, evs, LOOP_MAX_EVENTS,
                   l->defer_head ? 0 : next_timeout_ms(l, timeout_ms));
    if (n < 0 && errno != EINTR)
        return -errno;
    l->now = l->clock(l->clock_ud);
    l->gen++;
    for (int i = 0; i < n; i++) {
        struct loop_source *src = evs[i].data.ptr;
        /* An earlier callback in this pass may have unregistered it (its owner frees it only
         * in deferred work, so the pointer is still valid), or unregistered it and registered
         * it again, maybe on a new socket that reuses the fd number: the event was for the old
         * one (a reset seen as "connected", say), so the new registration must not get it.
         * Like redis:src/ae.c re-checking the mask after each callback. */
        if (!src->registered || src->gen == l->gen)
            continue;
        src->cb(src, evs[i].events);
    }
    run_timers(l);
    run_deferred(l);
    return n < 0 ? 0 : n;
}

int loop_run(struct loop *l)
{
    while (!l->quit) {
        int r = loop_run_once(l, -1);
        if (r < 0)
            return r;
    }
    return l->quit_code;
}

void loop_quit(struct loop *l, int code)
{
    l->quit = true;
    l->quit_code = code;
}

bool loop_quitting(const struct loop *l)
{
    return l->quit;
}

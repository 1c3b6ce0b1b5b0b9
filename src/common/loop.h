/*
 * The event loop: level-triggered epoll, a timer heap, signals via signalfd, and deferred
 * work that runs after each dispatch pass (where objects closed during the pass are freed).
 *
 * Ownership: a loop_source / loop_timer / loop_defer is embedded in its owner; the loop only
 * keeps pointers. An owner must loop_del()/loop_timer_stop() before freeing, and should free
 * from a loop_defer callback when it is closed from inside a dispatch pass, because a later
 * event of the same pass may still point at it (loop_del() makes the loop skip such events).
 * A source unregistered and registered again (even on a new fd with the same number) during a
 * dispatch pass gets none of that pass's events: they were for its previous user.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct loop;
struct loop_source;
struct loop_timer;

typedef void (*loop_io_fn)(struct loop_source *src, uint32_t events);
typedef void (*loop_timer_fn)(struct loop_timer *t);
typedef uint64_t (*loop_clock_fn)(void *userdata);

struct loop_source {
    int fd;
    uint32_t events;
    loop_io_fn cb;
    void *userdata;
    bool registered; /* private */
    /* private: the loop's generation when this registration was made. Events fetched before
     * it (in the batch being dispatched) belong to a previous user of the source or its fd and
     * are never delivered to this one. */
    uint64_t gen;
};

struct loop_timer {
    uint64_t deadline; /* ns on the loop's clock */
    loop_timer_fn cb;
    void *userdata;
    size_t heap_idx; /* private; SIZE_MAX when not armed */
};

struct loop_defer {
    void (*cb)(struct loop_defer *d);
    void *userdata;
    struct loop_defer *next; /* private */
    bool queued;             /* private */
};

/* Returns 0 and *ret, or -errno. */
int loop_new(struct loop **ret);
struct loop *loop_free(struct loop *l);

/* Clock used for timers (default CLOCK_MONOTONIC); tests inject a fake one. */
void loop_set_clock(struct loop *l, loop_clock_fn fn, void *userdata);
/* The loop's current time in ns, sampled once per iteration. */
uint64_t loop_now(struct loop *l);
/* Re-sample the clock (used by tests driving a fake clock). */
void loop_update_now(struct loop *l);

/* Register fd with EPOLLIN/EPOLLOUT interest. src is owned by the caller. */
int loop_add(struct loop *l, struct loop_source *src, int fd, uint32_t events, loop_io_fn cb,
             void *userdata);
/* Change interest; a no-op when unchanged. */
int loop_mod(struct loop *l, struct loop_source *src, uint32_t events);
/* Unregister (does not close the fd). Safe to call twice or on a never-added source. */
void loop_del(struct loop *l, struct loop_source *src);

void loop_timer_init(struct loop_timer *t, loop_timer_fn cb, void *userdata);
/* Arm (or re-arm) a timer to fire at `deadline` (loop clock, ns). */
void loop_timer_set(struct loop *l, struct loop_timer *t, uint64_t deadline);
/* Arm relative to loop_now(). */
void loop_timer_set_in(struct loop *l, struct loop_timer *t, uint64_t ms);
void loop_timer_stop(struct loop *l, struct loop_timer *t);
static inline bool loop_timer_armed(const struct loop_timer *t)
{
    return t->heap_idx != (size_t)-1;
}

/* Queue work to run after the current dispatch pass. Queuing twice is a no-op. Work queued
 * from deferred work runs after the next pass, whose epoll_wait then does not block. */
void loop_defer(struct loop *l, struct loop_defer *d, void (*cb)(struct loop_defer *),
                void *userdata);

/*
 * Route a signal to a callback through the loop's signalfd. The signal is blocked in the
 * calling thread. cb receives the signal number.
 */
int loop_add_signal(struct loop *l, int signo, void (*cb)(struct loop *l, int signo, void *ud),
                    void *userdata);

/* Run one iteration: wait at most timeout_ms (-1: until an event or timer). Returns events handled
 * or -errno. */
int loop_run_once(struct loop *l, int timeout_ms);
/* Run until loop_quit(); returns the code given to loop_quit(). */
int loop_run(struct loop *l);
void loop_quit(struct loop *l, int code);
bool loop_quitting(const struct loop *l);

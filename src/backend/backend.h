/*
 * Backends: one ops table per way of building a bottle (namespace, microvm, docker example).
 *
 * Life cycle, driven by the per-bottle supervisor:
 *   probe   can this host run the backend? If not, one human sentence saying why (doctor,
 *           test skips, and the error `run` prints: a backend is never swapped silently).
 *   create  validate the request and prepare (resources, cgroup); nothing runs yet.
 *   start   launch the bottle. Returns a pidfd for the bottle's top process (namespace:
 *           bottle-init; microvm: QEMU) for the supervisor's loop, and the host end of the
 *           channel, which the supervisor hands to channel_host_relay_start().
 *   wait    after the pidfd became readable: the bottle's exit status (the command's).
 *   stop    ask the bottle to end (SIGTERM to bottle-init, which forwards it to the command),
 *           then kill it after a grace period.
 *   destroy reap and release everything (idempotent teardown of a half-built bottle too).
 *
 * Backends log once, at this boundary, with context; callers do not log the same failure.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "guest/spec.h"

#define BACKEND_REASON_MAX 512

struct backend_probe {
    bool available;
    /* When not available: what is missing and how to fix it, one sentence. When available:
     * a short note (e.g. "user namespaces work; running as root: uid 0 maps to host root"). */
    char reason[BACKEND_REASON_MAX];
};

/* Where backend files live. Any field may be NULL for the default lookup. */
struct backend_paths {
    /* The bottle-init binary. Default: next to the running executable, then
     * <libexecdir>/bot-bottle/bottle-init, then the build tree's. */
    const char *init;
    /* microvm: the cache holding the guest kernel and initramfs. */
    const char *cache_dir;
};

struct backend_create_args {
    const struct bottle_spec *spec; /* validated and copied by create; the channel field is
                                       filled in by the backend */
    struct backend_paths paths;
    /* The bottle's stdin/stdout/stderr (namespace: inherited by bottle-init; -1: this
     * process's own). microvm connects them to the virtio console. Not owned. */
    int stdio[3];
    /* namespace: a SOCK_SEQPACKET socket to the egress daemon for handing over proxy
     * connections (channel/handoff.h), given to bottle-init as fd 5; -1: none. Not owned.
     * Backends without a shared kernel ignore it. */
    int handoff_fd;
    /* Resource limits; 0 = none. cpus in thousandths of a CPU. A non-zero limit the backend
     * cannot enforce fails create (logged with the reason and the fix): never a warning. */
    uint32_t cpus_milli;
    uint64_t memory_bytes;
    uint64_t pids_max;
};

struct backend_started {
    pid_t pid;      /* the bottle's top process (bottle-init or QEMU) */
    int pidfd;      /* owned by the bottle (closed by destroy): poll it for exit */
    int channel_fd; /* host end of the channel; ownership passes to the caller */
};

/* A bottle: backends embed this as the first member of their own state. */
struct bottle {
    const struct backend_ops *ops;
};

struct backend_ops {
    const char *name;
    /* One-line description for `doctor`. */
    const char *summary;
    /* Fills *ret; returns 0 (even when not available) or a negative errno if probing itself
     * broke. paths may be NULL. */
    int (*probe)(const struct backend_paths *paths, struct backend_probe *ret);
    /* Returns 0 and *ret (free with destroy), or a negative errno (logged). */
    int (*create)(const struct backend_create_args *args, struct bottle **ret);
    /* Launches the bottle; *ret as above. Returns 0 or a negative errno (logged). */
    int (*start)(struct bottle *b, struct backend_started *ret);
    /* Runs another command in a running bottle (`bot-bottle exec`). May be NULL. */
    int (*exec)(struct bottle *b, char *const argv[]);
    /* Blocks until the bottle ended; *ret_status is the command's exit status (125 when the
     * bottle itself failed, 128+N when bottle-init died of signal N). */
    int (*wait)(struct bottle *b, int *ret_status);
    /* Sends the stop request; after timeout_ms kills the bottle. Returns 0 or -errno. */
    int (*stop)(struct bottle *b, int timeout_ms);
    /* Kills what is left, reaps, removes resources, frees b. Accepts NULL. */
    void (*destroy)(struct bottle *b);
};

/* Every compiled-in backend, strongest isolation first (the order `auto` tries). */
const struct backend_ops *const *backend_list(size_t *ret_n);
/* By name; NULL when unknown. */
const struct backend_ops *backend_find(const char *name);

/*
 * Selects a backend by name ("auto": the first available one of backend_list()) and probes
 * it. Returns 0 and *ret; -ENOENT for an unknown name; -EOPNOTSUPP when the named backend is
 * not available here (or none is, for "auto"), with the probe's sentence in *reterr_probe
 * (may be NULL). Never falls back from a named backend to another one.
 */
int backend_select(const char *name, const struct backend_paths *paths,
                   const struct backend_ops **ret, struct backend_probe *reterr_probe);

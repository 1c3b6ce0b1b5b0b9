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
 *   request_stop  ask the bottle to end, without blocking (namespace: SIGTERM to bottle-init
 *           through its pidfd, which forwards it to the command; microvm: a guest shutdown
 *           request, not a signal). The supervisor's loop then waits for the pidfd, and after
 *           its grace period calls kill.
 *   kill    end the bottle now, without blocking (SIGKILL to its top process).
 *   exec    run another command in a running bottle (`bot-bottle exec`, the lifecycle issue).
 *   destroy reap and release everything (idempotent teardown of a half-built bottle too).
 *
 * What differs between backends is said by flags (BACKEND_*), which the supervisor reads
 * instead of assuming the namespace backend's shape.
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

/* What a backend is like (backend_ops.flags). */
enum {
    /* The bottle runs on the host's kernel (namespace): a kernel bug is an escape; `doctor`
     * and `status` say so. A VM backend does not set it. */
    BACKEND_SHARES_HOST_KERNEL = 1u << 0,
    /* The bottle hands accepted proxy connections to the daemon over a SOCK_SEQPACKET socket
     * (channel/handoff.h): the supervisor creates it with the daemon and passes it in
     * backend_create_args.handoff_fd. Only possible with a shared kernel. */
    BACKEND_NEEDS_HANDOFF = 1u << 1,
    /* start() returns the host end of the bottle channel (channel/proto.h) in
     * backend_started.channel_fd; the supervisor runs the host relay on it. */
    BACKEND_HAS_CHANNEL = 1u << 2,
    /* The egress daemon does not run as the supervisor's child on this host (e.g. a sidecar
     * VM); the supervisor does not start one. Not supported by the supervisor yet. */
    BACKEND_DAEMON_ELSEWHERE = 1u << 3,
    /* The command's stdout and stderr arrive merged on stdio[1] (microvm: the virtio console
     * is QEMU's stdout); stdin is not passed and there is no terminal: `run` refuses -t and
     * -i. */
    BACKEND_STDIO_CONSOLE = 1u << 4,
};

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
    /* Read only by BACKEND_NEEDS_HANDOFF backends (namespace: given to bottle-init as fd 5):
     * a SOCK_SEQPACKET socket to the egress daemon for handing over proxy connections
     * (channel/handoff.h); -1: none. Not owned. */
    int handoff_fd;
    /* Resource limits; 0 = none. cpus in thousandths of a CPU. A non-zero limit the backend
     * cannot enforce fails create (logged with the reason and the fix): never a warning. */
    uint32_t cpus_milli;
    uint64_t memory_bytes;
    uint64_t pids_max;
    /* Read only by the microvm backend: the accelerator ("auto" or NULL, "kvm", "tcg"; kvm
     * fails create when KVM is not usable), a user's own guest kernel (NULL: the cache's), and
     * whether the memory limit was asked for (the guest then gets all of it, else 1 GiB). */
    struct {
        const char *accel;
        const char *kernel;
        bool memory_given; /* memory_bytes came from --memory or the config, not the default */
    } vm;
};

struct backend_started {
    pid_t pid;      /* the bottle's top process (bottle-init or QEMU) */
    int pidfd;      /* owned by the bottle (closed by destroy): poll it for exit */
    int channel_fd; /* BACKEND_HAS_CHANNEL: host end of the channel; ownership passes to the
                       caller. -1 otherwise. */
};

/* A command to run in a running bottle (`bot-bottle exec`). */
struct backend_exec_args {
    char *const *argv; /* NULL-terminated; argv[0] is looked up in the bottle's PATH */
    char *const *env;  /* NAME=VALUE, NULL-terminated: added to the bottle's environment */
    const char *cwd;   /* NULL: the workspace */
    /* stdin/stdout/stderr (never the user's terminal: a pty slave or pipes, as for run);
     * not owned. With tty, all three are the same pty slave, made the controlling terminal. */
    int stdio[3];
    bool tty;
};

/* A running exec'd command: backends embed this as the first member of their own state. */
struct backend_exec {
    const struct backend_ops *ops;
};

/* A bottle: backends embed this as the first member of their own state. */
struct bottle {
    const struct backend_ops *ops;
};

struct backend_ops {
    const char *name;
    /* One-line description for `doctor`. */
    const char *summary;
    unsigned flags; /* BACKEND_* */
    /* Fills *ret; returns 0 (even when not available) or a negative errno if probing itself
     * broke. paths may be NULL. */
    int (*probe)(const struct backend_paths *paths, struct backend_probe *ret);
    /* Returns 0 and *ret (free with destroy), or a negative errno (logged). */
    int (*create)(const struct backend_create_args *args, struct bottle **ret);
    /* Launches the bottle; *ret as above. Returns 0 or a negative errno (logged). */
    int (*start)(struct bottle *b, struct backend_started *ret);
    /* After the pidfd became readable: *ret_status is the command's exit status (125 when
     * the bottle itself failed, 128+N when bottle-init died of signal N). (Blocks otherwise.) */
    int (*wait)(struct bottle *b, int *ret_status);
    /* Ask the bottle to end; never blocks. Returns 0 (also when it is already gone) or -errno.
     * The caller watches the pidfd and calls kill after its grace period. */
    int (*request_stop)(struct bottle *b);
    /* End the bottle now; never blocks. Returns 0 (also when it is already gone) or -errno. */
    int (*kill)(struct bottle *b);
    /*
     * Run a command in the running bottle with the bottle's confinement (namespace: join its
     * namespaces through bottle-init's pidfd, the same seccomp filter, no capabilities,
     * no_new_privs, in the bottle's cgroup, with the bottle's environment plus args->env).
     * Returns 0 and *ret once the command was exec'd, or -errno (logged; -ENOENT/-EACCES: the
     * command was not found / not executable). NULL: not supported by this backend.
     */
    int (*exec)(struct bottle *b, const struct backend_exec_args *args, struct backend_exec **ret);
    /* The exec'd command's pidfd (owned by e): poll it on the loop. */
    int (*exec_pidfd)(struct backend_exec *e);
    /* After the pidfd became readable: its exit status (as wait). Then free with exec_free. */
    int (*exec_wait)(struct backend_exec *e, int *ret_status);
    /* Kill (if still running), reap, free. Accepts NULL. */
    void (*exec_free)(struct backend_exec *e);
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

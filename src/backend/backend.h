/*
 * Backends: one ops table per way of building a bottle (namespace, microvm, docker example,
 * smolmachines).
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
 *   attach  (optional) after start: the supervisor's loop and the channel's host mux, for
 *           backends that carry stdio and exec over the channel (microvm).
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

#include "common/loop.h"
#include "common/macro.h"
#include "guest/spec.h"

struct mux;

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
     * VM, or the docker example's sidecar container): the supervisor does not start one and
     * passes the policy in backend_create_args.egress_args instead. */
    BACKEND_DAEMON_ELSEWHERE = 1u << 3,
    /* (1u << 4 was BACKEND_STDIO_CONSOLE: microvm's stdio now rides on channel streams.) */
    /* Never chosen by `auto` (nor as the default): only when named (--backend,
     * BOT_BOTTLE_BACKEND, [bottle] backend). For examples and adapters whose boundary this
     * project does not test (docker, smolmachines). */
    BACKEND_NOT_AUTO = 1u << 5,
};

/* The backend used when neither --backend, BOT_BOTTLE_BACKEND nor the config names one. */
#define BACKEND_DEFAULT "microvm"
#define BACKEND_FINDINGS_MAX 12
#define BACKEND_FINDING_MAX 320

/* One fact a probe established, for `doctor` (e.g. "qemu": "QEMU 7.2.22 at ..."). */
struct backend_finding {
    const char *name; /* a static string: "qemu", "kernel", "userns", ... */
    bool ok;          /* false: this fact keeps the backend from running, or slows it */
    char text[BACKEND_FINDING_MAX];
};

struct backend_probe {
    bool available;
    /* When not available: what is missing and how to fix it, one sentence. When available:
     * a short note (e.g. "user namespaces work; running as root: uid 0 maps to host root"). */
    char reason[BACKEND_REASON_MAX];
    /* Available, but emulated and slow (microvm under TCG, no usable KVM): `auto` takes it
     * only when no faster backend can run (backend_choose). */
    bool slow;
    /* What the probe found, for `doctor` (backend_probe_add_finding); may be empty. */
    size_t n_findings;
    struct backend_finding findings[BACKEND_FINDINGS_MAX];
};

/* Appends a finding (dropped silently past BACKEND_FINDINGS_MAX; the text is cut to fit). */
void backend_probe_add_finding(struct backend_probe *p, const char *name, bool ok, const char *fmt,
                               ...) _printf_(4, 5);

/*
 * Creates the namespaces in flags (CLONE_NEW*) in a child that exits at once. Returns 0, or
 * -errno with why filled: "creating <what> failed (clone3: <error>)" and, where the cause can
 * be told, why and what to do (a chroot, where the kernel refuses new user namespaces; a
 * container's or a security module's policy; a kernel too old for clone3).
 */
int backend_try_namespaces(uint64_t flags, const char *what, char *why, size_t n);

/* Where backend files live. Any field may be NULL for the default lookup. */
struct backend_paths {
    /* The bottle-init binary. Default: next to the running executable, then
     * <libexecdir>/bot-bottle/bottle-init, then the build tree's. */
    const char *init;
    /* microvm: the cache holding the guest kernel and initramfs. */
    const char *cache_dir;
    /* microvm: [microvm] kernel ("stock": Debian's kernel from the cache); NULL: default */
    const char *kernel;
};

struct backend_create_args {
    const struct bottle_spec *spec; /* validated and copied by create; the channel field is
                                       filled in by the backend */
    struct backend_paths paths;
    /* The bottle's stdin/stdout/stderr (namespace: inherited by bottle-init; -1: this
     * process's own). microvm keeps copies and pumps them to and from channel streams (the
     * VM's console, diagnostics only, goes to stdio[2]). Not owned. */
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
    /* Read only by BACKEND_DAEMON_ELSEWHERE backends (docker: the sidecar): the policy as
     * `bot-bottle egress` arguments (NULL-terminated, may be NULL) and the audit log the
     * daemon appends to (created by the supervisor). Not owned. */
    char *const *egress_args;
    const char *audit;
    /* Read only by the microvm backend: the accelerator ("auto" or NULL, "kvm", "tcg"; kvm
     * fails create when KVM is not usable), a user's own guest kernel (NULL: the cache's), and
     * whether the memory limit was asked for (the guest then gets all of it, else 1 GiB). */
    struct {
        const char *accel;
        const char *kernel;
        bool memory_given; /* memory_bytes came from --memory or the config, not the default */
        /* [microvm] snapshot = off: boot every bottle, never restore a start-up snapshot
         * (backend/microvm/snapshot.h) */
        bool no_snapshot;
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
     * microvm: needs attach (-ENOTCONN before); returns at once, the command starts in the
     * guest a moment later, and one that cannot run ends with 125/126/127 and the reason on
     * its stderr (as `run` says it), not with -ENOENT.
     */
    int (*exec)(struct bottle *b, const struct backend_exec_args *args, struct backend_exec **ret);
    /* An fd (owned by e) that becomes readable once the command has ended and exec_wait will
     * not block: poll it on the loop. namespace: the command's pidfd; microvm: an eventfd,
     * readable once the guest reported the status and the command's output is across. */
    int (*exec_pidfd)(struct backend_exec *e);
    /* After the pidfd became readable: its exit status (as wait). Then free with exec_free. */
    int (*exec_wait)(struct backend_exec *e, int *ret_status);
    /* Kill (if still running), reap, free. Accepts NULL. */
    void (*exec_free)(struct backend_exec *e);
    /* Kills what is left, reaps, removes resources, frees b. Accepts NULL. */
    void (*destroy)(struct bottle *b);
    /*
     * Optional (NULL: nothing to do). Right after the supervisor started the host relay on
     * the channel: its loop and mux, which the backend may use until destroy (microvm: the
     * command's stdio streams, exec). Returns 0 or -errno (logged).
     */
    int (*attach)(struct bottle *b, struct loop *loop, struct mux *mux);
    /* Optional: the pty whose slave is the bottle's stdio (tty) changed size; pass it on
     * (microvm: to the guest's pty). The namespace bottle holds that pty itself. */
    void (*resize)(struct bottle *b);
    /* Optional: as resize, for an exec'd command with tty. */
    void (*exec_resize)(struct backend_exec *e);
    /* Optional: send signal signo to the exec'd command (namespace: through its pidfd). */
    int (*exec_signal)(struct backend_exec *e, int signo);
};

/* Every compiled-in backend, strongest isolation first (the order `auto` tries). */
const struct backend_ops *const *backend_list(size_t *ret_n);
/* By name; NULL when unknown. */
const struct backend_ops *backend_find(const char *name);

/* Where the backend's name came from, in precedence order. */
enum backend_source {
    BACKEND_SRC_FLAG,    /* --backend */
    BACKEND_SRC_ENV,     /* BOT_BOTTLE_BACKEND */
    BACKEND_SRC_CONFIG,  /* [bottle] backend in a config file */
    BACKEND_SRC_DEFAULT, /* BACKEND_DEFAULT */
};
/* "--backend", "BOT_BOTTLE_BACKEND", "[bottle] backend in the config", "the default" */
const char *backend_source_name(enum backend_source s);

/*
 * The precedence, pure: the first of flag, env, config that is set and not empty, else
 * BACKEND_DEFAULT. Each may be NULL. Returns the name and *ret_source.
 */
const char *backend_resolve_name(const char *flag, const char *env, const char *config,
                                 enum backend_source *ret_source);

/* The names `--backend` takes: every backend of the table, then auto ("microvm, namespace,
 * auto"). */
void backend_names(char *buf, size_t size);

struct backend_choice {
    const struct backend_ops *ops; /* the chosen backend; NULL on failure */
    /* the chosen backend's probe; on -EOPNOTSUPP for a named backend its (failed) probe */
    struct backend_probe probe;
    /* auto: one sentence saying why this one (or, when none can run, why each could not) */
    char why[3 * BACKEND_REASON_MAX];
};

/*
 * Chooses from list (backend_list() or a test's table) by name and probes the choice.
 * "auto": the first available backend without BACKEND_NOT_AUTO that is not slow, in list
 * order; failing that the first available slow one (a VM under emulation still beats nothing,
 * but a shared-kernel backend at full speed is taken before it). Backends with
 * BACKEND_NOT_AUTO are never probed by auto.
 * Returns 0 and *ret; -ENOENT for an unknown name; -EOPNOTSUPP when the named backend is not
 * available here (or none is, for auto), the reason in ret->probe.reason (auto: ret->why);
 * or a probe's own negative errno. Never falls back from a named backend to another one.
 */
int backend_choose(const struct backend_ops *const *list, size_t n, const char *name,
                   const struct backend_paths *paths, struct backend_choice *ret);

/*
 * Selects a backend by name from backend_list() ("auto": as backend_choose) and probes it. Returns
 * 0 and *ret; -ENOENT for an unknown name; -EOPNOTSUPP when the named backend is not available here
 * (or none is, for "auto"), with the probe's sentence in *reterr_probe (may be NULL). Never falls
 * back from a named backend to another one.
 */
int backend_select(const char *name, const struct backend_paths *paths,
                   const struct backend_ops **ret, struct backend_probe *reterr_probe);

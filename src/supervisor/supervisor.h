/*
 * The per-bottle supervisor behind `bot-bottle run` (docs/supervisor.md): it owns the bottle's
 * alias, state directory and egress daemon, starts the backend, relays the channel to the
 * daemon and the terminal to the user, and returns the command's exit status.
 *
 * Order of events (each step undone on failure, in reverse):
 *   state dir + lock -> alias lease -> egress daemon (fork + exec of `bot-bottle egress`,
 *   empty environment; must report ready) ->
 *   backend create/start -> host channel relay -> loop until the bottle exits ->
 *   stop daemon -> destroy backend -> release alias -> remove state dir (audit log kept).
 * Fail closed: the bottle never starts before its daemon is listening, and if the daemon dies
 * the bottle is stopped (and, meanwhile, the host relay refuses every connection).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/net.h"
#include "config/config.h"
#include "policy/policy.h"

struct backend_ops;

struct supervisor_opts {
    const char *backend; /* a backend name; "auto" picks the strongest available */
    /* Already chosen and probed by the caller (run: backend_choose, before anything starts);
     * NULL: the supervisor selects `backend` itself. */
    const struct backend_ops *backend_ops;
    const char *name;      /* NULL: generated */
    const char *workspace; /* absolute path */
    char **argv;           /* the command, NULL-terminated */
    struct strv env;       /* NAME=VALUE to pass in */
    struct strv mounts;    /* SRC:DST[:ro] */
    bool tty, interactive;
    bool quiet; /* no blocked/failed-host notices on stderr */
    /* "HOST WHY": hosts an agent profile leaves out on purpose; a notice for one says WHY
     * (HOST: a name or *.SUFFIX) */
    struct strv left_out;
    struct strv allow_write; /* workspace-relative protected paths to leave writable */
    /* cgroup limits (0: none; the CLI fills in the defaults) and the tmpfs sizes in bytes
     * (/tmp, $HOME, /dev/shm; must be non-zero). */
    uint32_t cpus_milli;
    uint64_t memory_bytes;
    uint64_t pids_max;
    uint64_t tmp_size, home_size, shm_size;
    const char *audit_path; /* NULL: <state root>/logs/<name>.audit.log */
    bool have_upstream_dns;
    struct net_addr upstream_dns;
    const char *init_path; /* bottle-init override (tests); NULL: default lookup */
    /* microvm: "auto" (NULL), "kvm" or "tcg"; a user's own guest kernel (NULL: the cache's) */
    const char *accel;
    const char *kernel;
    bool no_snapshot;  /* [microvm] snapshot = off */
    bool memory_given; /* memory_bytes from --memory or the config (microvm sizes its guest) */
    /* The policy as `bot-bottle egress` arguments (policy_args_daemon_argv): the daemon is
     * started by exec with an empty environment, and reloads (SIGHUP) from these. */
    struct strv daemon_args;
    /* The credentials for the daemon (proxy/cred.h wire format; cli/credentials.c), sent over
     * a pipe, never argv or the environment. NULL: none. A daemon holding credentials listens
     * on no TCP port (docs/credentials.md). */
    const char *cred_wire;
    size_t cred_wire_len;
    const char *tls_extra_ca; /* [tls] extra_ca: also trusted inside the bottle; NULL: none */
    /* `start` (supervisor_start): no terminal of ours; the main command gets a pty the
     * supervisor holds for `attach` (a backend without a terminal: its output goes to the
     * supervisor's log), and "ok\n" is written to ready_fd once the bottle runs. */
    bool detach;
    int ready_fd; /* -1: none */
};

/* Bytes of the main command's recent output kept for `attach` while nobody is attached. */
#define SV_CONSOLE_RING (64 * 1024)

/*
 * Run the command in a new bottle. Takes ownership of policy. Returns the exit status to exit
 * with: the command's, or 125 when bot-bottle itself failed (after logging why).
 */
int supervisor_run(const struct supervisor_opts *o, struct policy *policy);

/*
 * `bot-bottle start`: run supervisor_run() with o->detach in a daemon (double fork, setsid,
 * stdin /dev/null, stdout and stderr appended to <state>/logs/NAME.log), wait until the bottle
 * runs, print its name (generated when o->name is NULL) and return 0; or print what the
 * supervisor logged and return 125. Takes ownership of policy.
 */
int supervisor_start(const struct supervisor_opts *o, struct policy *policy);

/* The state root and the bottles in it (also for other processes): supervisor/state.h. */

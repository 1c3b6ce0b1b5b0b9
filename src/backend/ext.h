/*
 * Driving an external CLI (the docker and smolmachines backends): find it on PATH, build its
 * argument vectors, run a short command and capture its output, spawn the long-running one
 * with the bottle's stdio and a pidfd.
 *
 * The tools run with this process's environment (DOCKER_HOST, PATH, HOME for their own
 * config), stdin /dev/null for the short commands, and nothing else of ours open.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A growable NULL-terminated argument vector. Zero-initialised is empty. */
struct ext_argv {
    char **v;
    size_t n;
};

/* Appends a copy. */
void ext_argv_push(struct ext_argv *a, const char *s);
/* Appends a formatted string. */
void ext_argv_pushf(struct ext_argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ext_argv_done(struct ext_argv *a);
/* One line, shell-quoted where needed (for debug logs and error messages); truncated to size. */
void ext_argv_format(char *const *argv, char *buf, size_t size);

/*
 * The program `name` (no '/') on $PATH: 0 and its path in buf, -ENOENT when not found (or not
 * executable), -ENAMETOOLONG.
 */
int ext_find(const char *name, char *buf, size_t size);

/*
 * Runs argv (argv[0] a path), stdin /dev/null, and waits up to timeout_ms (then SIGKILL).
 * Its stdout goes to out and its stderr to err (each NUL-terminated, truncated to size - 1,
 * a trailing newline removed; either may be NULL to discard). Returns 0 and *ret_status (the
 * exit code, 128+N for signal N), -ETIMEDOUT, or -errno when it could not be started.
 */
int ext_run(char *const *argv, char *out, size_t out_size, char *err, size_t err_size,
            int timeout_ms, int *ret_status);

struct bb_cgroup;
/*
 * Starts argv (argv[0] a path) with stdio[0..2] as its stdin/stdout/stderr (-1: ours), our
 * environment plus env (NAME=VALUE, NULL-terminated, may be NULL; these win), in the cgroup(s)
 * cg (NULL: ours; v2: clone3 into it; v1: moved there before it may run anything), and nothing
 * else open; it gets SIGKILL when this process dies. Returns 0, *ret_pid and *ret_pidfd
 * (close-on-exec, owned by the caller), or -errno (also when exec failed or the cgroup could
 * not be entered; the child is then gone).
 */
int ext_spawn(char *const *argv, char *const *env, const int stdio[3], const struct bb_cgroup *cg,
              pid_t *ret_pid, int *ret_pidfd);

struct backend_started;
/*
 * The long-running tool a backend runs as the bottle (`docker run`, `smolvm machine run`):
 * started once, reaped once. ext_proc_init before anything else; ext_proc_done in destroy.
 */
struct ext_proc {
    pid_t pid; /* -1 until started */
    int pidfd; /* -1 until started; owned here */
    bool reaped;
    int status; /* once reaped: the exit code, 128+N for signal N */
};
void ext_proc_init(struct ext_proc *p);
/*
 * ext_spawn() (its arguments as there) after a debug log of the command line prefixed with
 * who ("docker backend"); on success, *ret's pid and pidfd are the process's and its channel
 * fd -1. Returns 0 or -errno (not logged: the caller names what it started).
 */
int ext_proc_start(struct ext_proc *p, const char *who, char *const *argv, char *const *env,
                   const int stdio[3], const struct bb_cgroup *cg, struct backend_started *ret);
/* Reaps it once (blocks until it exits): *ret_status; later calls give the kept status. */
int ext_proc_wait(struct ext_proc *p, int *ret_status);
/* Sends sig; 0 also when it is gone (or never started), else -errno. Never blocks. */
int ext_proc_signal(struct ext_proc *p, int sig);
/* SIGKILL and reap it when it still runs, and close the pidfd. */
void ext_proc_done(struct ext_proc *p);

struct bottle_spec;
/* The first path of the spec (workspace, home, mounts, protected paths) that contains one of
 * the characters in bad (a tool's option syntax could not carry it), or NULL. */
const char *ext_spec_bad_path(const struct bottle_spec *spec, const char *bad);
/* The bottle's generated variables as NAME=VALUE (DESIGN.md section 2, "Inside the bottle"):
 * HTTP_PROXY, HTTPS_PROXY, http_proxy, https_proxy, ALL_PROXY = http://PROXY_HOST:3128,
 * NO_PROXY/no_proxy, BOT_BOTTLE=1, BOT_BOTTLE_NAME; appended to out. */
void ext_bottle_env(const struct bottle_spec *spec, const char *proxy_host, struct ext_argv *out);

/*
 * The bottle spec: everything bottle-init needs to build a bottle, passed from the host
 * (the namespace launcher, later the microvm backend) to bottle-init (PID 1 inside).
 * Shared by host and guest; bottle-init trusts nothing it did not validate here.
 *
 * Wire format (text, one record per line, fixed order, canonical, so that
 * encode(decode(x)) == x for every accepted x):
 *
 *   bottle-spec 1
 *   name NAME            BOT_BOTTLE_NAME
 *   hostname HOST
 *   alias A              dotted quad in 127.0.0.0/8
 *   user NAME
 *   uid N
 *   gid N
 *   home PATH
 *   workspace PATH       bind/9p-mounted read-write at the same path
 *   tty 0|1
 *   tmpfs-size T H S     sizes in bytes of /tmp, $HOME and /dev/shm (each 1..2^50)
 *   channel fd:N | /dev/PATH
 *   rootfs bind|9p       how host paths reach the bottle (namespace | microvm)
 *   env NAME=VALUE       0..BOTTLE_SPEC_MAX_ENV, explicitly passed variables (-e, TERM)
 *   mount ro|rw SRC DST  0..BOTTLE_SPEC_MAX_MOUNTS
 *   protect PATH         0..BOTTLE_SPEC_MAX_PROTECT, a path strictly beneath the workspace or
 *                        a read-write mount's DST (and beneath no read-only mount's DST) that
 *                        bottle-init makes read-only (docs/workspace.md); it must exist
 *   arg ARG              1..BOTTLE_SPEC_MAX_ARGS
 *   end
 *
 * A value is its bytes with '\\', SP and every byte outside 0x21..0x7e written as \xHH
 * (lowercase hex); no other escape is accepted. NUL never appears in a value.
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define BOTTLE_SPEC_VERSION 1
#define BOTTLE_SPEC_MAX_SIZE (1024 * 1024) /* encoded bytes */
#define BOTTLE_SPEC_MAX_ARGS 4096
#define BOTTLE_SPEC_MAX_ENV 256
#define BOTTLE_SPEC_MAX_MOUNTS 64
#define BOTTLE_SPEC_MAX_PROTECT 64
#define BOTTLE_SPEC_MAX_STR (128 * 1024) /* one argument or NAME=VALUE (MAX_ARG_STRLEN) */
#define BOTTLE_SPEC_MAX_PATH 4095
#define BOTTLE_SPEC_MAX_NAME 63 /* bottle name, host name */
#define BOTTLE_SPEC_MAX_USER 32 /* user name */
#define BOTTLE_SPEC_MAX_ENV_NAME 255
#define BOTTLE_SPEC_MAX_TMPFS (1ULL << 50) /* bytes, one tmpfs mount */
#define BOTTLE_SPEC_MAX_PIDS 4194304ULL    /* the kernel's PID_MAX_LIMIT */

/* The proxy port and DNS port bottle-init's relay listens on at the alias. */
#define BOTTLE_PROXY_PORT 3128
#define BOTTLE_DNS_PORT 53
/* By convention the namespace launcher hands the channel to bottle-init as this fd. */
#define BOTTLE_CHANNEL_FD 3
#define BOTTLE_SPEC_FD 4
/* Namespace backend only: a SOCK_SEQPACKET socket to the egress daemon for handing over proxy
 * connections (channel/handoff.h). Absent (not a socket) elsewhere. */
#define BOTTLE_HANDOFF_FD 5

enum bottle_rootfs {
    BOTTLE_ROOTFS_BIND, /* host paths are visible to bottle-init (namespace backend) */
    BOTTLE_ROOTFS_9P,   /* host paths arrive as 9p shares (microvm backend, see bottle-init.md) */
    BOTTLE_ROOTFS_MAX,
};

/* The bottle's writable tmpfs mounts, each with a size (0 would mean "unlimited" to tmpfs). */
enum bottle_tmpfs {
    BOTTLE_TMPFS_TMP,  /* /tmp (and /var/tmp) */
    BOTTLE_TMPFS_HOME, /* $HOME */
    BOTTLE_TMPFS_SHM,  /* /dev/shm */
    BOTTLE_TMPFS_MAX,
};

struct bottle_mount {
    char *src; /* host path, canonical absolute */
    char *dst; /* path inside the bottle, canonical absolute */
    bool ro;
};

struct bottle_spec {
    char *name;
    char *hostname;
    struct in_addr alias; /* network byte order */
    char *user;
    uint32_t uid;
    uint32_t gid;
    char *home;
    char *workspace;
    bool tty;
    uint64_t tmpfs_size[BOTTLE_TMPFS_MAX]; /* bytes, 1..BOTTLE_SPEC_MAX_TMPFS */
    char *channel;
    enum bottle_rootfs rootfs;
    /* rootfs 9p only: bottle-init bounds the guest's processes with a pids cgroup (0: none;
     * the "pids-max N" line, written only when set). The namespace backend's limit is the
     * host cgroup's. */
    uint64_t pids_max;
    char **env; /* n_env entries "NAME=VALUE" */
    size_t n_env;
    struct bottle_mount *mounts;
    size_t n_mounts;
    char **protect; /* n_protect absolute paths beneath the workspace, made read-only */
    size_t n_protect;
    char **argv; /* argc entries plus a terminating NULL */
    size_t argc;
};

/* Frees the contents; the spec is zeroed afterwards (safe to call twice). */
void bottle_spec_done(struct bottle_spec *s);

/*
 * Checks every rule of the format on a spec built in memory (the decoder applies the same
 * rules). Returns 0 or -EINVAL, with *reterr_field (may be NULL) naming the bad field.
 */
int bottle_spec_validate(const struct bottle_spec *s, const char **reterr_field);

/*
 * Validates and appends the encoding to out (whose max should be >= BOTTLE_SPEC_MAX_SIZE).
 * Returns 0, -EINVAL (invalid spec) or -E2BIG (too large; out is then emptied).
 */
int bottle_spec_encode(const struct bottle_spec *s, struct buf *out);

/*
 * Strictly decodes len bytes at p. On success fills *ret (caller frees with
 * bottle_spec_done()) and returns 0. On failure returns -EINVAL or -E2BIG and, when
 * reterr_line is not NULL, the 1-based line at fault; *ret is untouched.
 */
int bottle_spec_decode(const char *p, size_t len, struct bottle_spec *ret, size_t *reterr_line);

/* Host-side builders. Each copies its arguments and returns 0 or a negative errno. */
int bottle_spec_set_str(char **field, const char *value);
/*
 * Adds or replaces an explicitly passed variable. -EINVAL for a bad name, a name the
 * bottle reserves (bottle_env_name_reserved()), or a value containing NUL/too long.
 */
int bottle_spec_set_env(struct bottle_spec *s, const char *name, const char *value);
/* Parses "SRC:DST[:ro|:rw]" (both absolute, canonical) and appends it. -EINVAL, -E2BIG. */
int bottle_spec_add_mount_arg(struct bottle_spec *s, const char *arg);
/*
 * The directory a protect path is resolved from inside the bottle: the deepest of the
 * workspace and the read-write mount destinations it lies strictly beneath; NULL when there
 * is none or it lies beneath a read-only mount's destination (not a valid protect path).
 */
const char *bottle_spec_protect_root(const struct bottle_spec *s, const char *path);
bool bottle_spec_protect_ok(const struct bottle_spec *s, const char *path);
/* Appends a protect path (absolute, canonical, beneath the workspace or a rw mount: checked
 * by validate).
 * -E2BIG past BOTTLE_SPEC_MAX_PROTECT. */
int bottle_spec_add_protect(struct bottle_spec *s, const char *path);
/* Appends argv (keeps it NULL-terminated). -E2BIG past BOTTLE_SPEC_MAX_ARGS. */
int bottle_spec_add_arg(struct bottle_spec *s, const char *arg);

/* True for names the bottle sets itself (proxy variables, NO_PROXY, BOT_BOTTLE*). */
bool bottle_env_name_reserved(const char *name, size_t len);

/*
 * The complete environment of the command: generated PATH/HOME/USER/LOGNAME (overridable
 * by spec env), the proxy variables for the alias, NO_PROXY, BOT_BOTTLE=1,
 * BOT_BOTTLE_NAME, then the spec's env. Nothing else. Returns a NULL-terminated array the
 * caller frees with bottle_spec_free_strv(), or -ENOMEM.
 */
int bottle_spec_environ(const struct bottle_spec *s, char ***ret);
void bottle_spec_free_strv(char **v);

/* True when p is absolute and canonical: no "//", "." or ".." component, no trailing '/'. */
bool bottle_path_is_canonical(const char *p);

/* The wire name of r ("bind", "9p"), or NULL when out of range. */
const char *bottle_rootfs_name(enum bottle_rootfs r);

/*
 * Per-bottle loopback aliases (DESIGN.md section 2): each bottle gets its own address A in
 * 127.77.0.0/16. The egress daemon binds A on the host (all of 127/8 is local on Linux, so no
 * interface change is needed) and bottle-init binds the same A inside the bottle.
 *
 * Allocation is by lock file: <dir>/127.77.X.Y.lock held with flock(LOCK_EX) for the life of
 * the supervisor. The kernel drops the lock when the process dies however it dies, so a
 * crashed bottle's alias is reclaimed by the next allocation without any cleanup step.
 */
#pragma once

#include <netinet/in.h>

struct alias_lease {
    struct in_addr addr; /* network byte order */
    char text[16];       /* "127.77.x.y" */
    int lock_fd;         /* holds the lease; -1 when none */
};

/*
 * Take a free alias; dir is created (0700) if missing. Candidates are tried from a random
 * start so concurrent supervisors rarely contend. Also checks that A:proxy_port is free to
 * bind on the host (skips aliases someone else uses). Returns 0 and *ret, -EADDRNOTAVAIL when
 * all 65024 are taken, or -errno.
 */
int alias_acquire(const char *dir, unsigned short proxy_port, struct alias_lease *ret);
/* Release (close the lock and remove its file). Idempotent. */
void alias_release(const char *dir, struct alias_lease *l);

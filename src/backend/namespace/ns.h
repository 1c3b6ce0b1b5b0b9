/*
 * The namespace backend (docs/namespace.md): bottle-init runs as PID 1 of new user, mount,
 * pid, net, ipc, uts and cgroup namespaces, launched with clone3(CLONE_PIDFD).
 */
#pragma once

#include "backend/backend.h"

extern const struct backend_ops backend_namespace_ops;

/*
 * The uid/gid map lines the launcher writes for a bottle run by host_uid/host_gid
 * (exposed for tests): the invoking ids map to themselves, one line each. Returns 0 or
 * -ENAMETOOLONG.
 */
int ns_format_id_map(uint32_t host_id, char *buf, size_t size);

/*
 * Finds bottle-init: `explicit` if given, else next to /proc/self/exe, else the installed
 * libexec path, else the build tree's. Writes the path to buf. Returns 0, -ENOENT, or
 * -ENAMETOOLONG.
 */
int ns_find_init(const char *explicit, char *buf, size_t size);

/*
 * Syscalls that neither a bottle's command nor the egress daemon ever needs, by name (so this
 * list needs no libseccomp and those an architecture lacks can be skipped). Both seccomp
 * filters start from it: the bottle's (src/guest/seccomp-filter.c) adds namespace-creating
 * clone/unshare flags and terminal ioctls; the daemon's (src/egress/confine.c) adds exec.
 */
#pragma once

#include <stddef.h>

extern const char *const bb_denied_syscalls[];
extern const size_t bb_n_denied_syscalls;

/*
 * pidfd helpers: the one place that wraps pidfd_open(2) and pidfd_send_signal(2) (glibc 2.36
 * has wrappers, bookworm's 2.36 does, but the raw syscalls keep older builds working).
 */
#pragma once

#include <sys/types.h>

/* A pidfd (close-on-exec) for pid; or -errno. */
int bb_pidfd_open(pid_t pid);
/* Send sig to the process behind pidfd. Returns 0 or -errno (-ESRCH: it has exited). */
int bb_pidfd_send_signal(int pidfd, int sig);

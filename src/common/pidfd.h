/*
 * pidfd helpers: the one place that wraps pidfd_open(2) and pidfd_send_signal(2) (glibc 2.36
 * has wrappers, bookworm's 2.36 does, but the raw syscalls keep older builds working).
 */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

/* A pidfd (close-on-exec) for pid; or -errno. */
int bb_pidfd_open(pid_t pid);
/* Send sig to the process behind pidfd. Returns 0 or -errno (-ESRCH: it has exited). */
int bb_pidfd_send_signal(int pidfd, int sig);
/* Reap the exited child behind pidfd (blocks until it exits); *ret gets its siginfo.
 * Returns 0 or -errno. */
int bb_pidfd_wait(int pidfd, siginfo_t *ret);
/* The shell-style status of a reaped child: its exit code, or 128 + the signal that killed it. */
int bb_siginfo_status(const siginfo_t *si);
/* Reap the child behind pidfd once (blocks until it exits) and keep its bb_siginfo_status in
 * *status; later calls (*reaped set) give the kept status. Returns 0 or -errno. */
int bb_pidfd_reap_once(int pidfd, bool *reaped, int *status);

/*
 * Confinement of the egress daemon once its sockets are bound and its audit file is open
 * (STYLE.md section 9: the proxy and the DNS filter parse hostile input, so the process that
 * does it keeps as little power as possible):
 *   - every capability dropped (effective, permitted, inheritable, bounding, ambient), so a
 *     daemon started as root keeps uid 0 only for file ownership checks;
 *   - no_new_privs;
 *   - a seccomp filter refusing (EPERM) what a proxy never needs: executing programs, ptrace
 *     and process_vm_*, mounts and namespaces, kexec, bpf, perf, keyrings, modules, reboot,
 *     swap, io_uring, userfaultfd, handle-based opens.
 */
#pragma once

/* Returns 0 or -errno; on failure the caller must not go on serving. */
int egress_confine(void);

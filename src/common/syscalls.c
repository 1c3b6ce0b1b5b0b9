/* The syscalls no part of bot-bottle and nothing in a bottle needs (see syscalls.h). */
#include "common/syscalls.h"

#include "common/macro.h"

const char *const bb_denied_syscalls[] = {
    /* changing namespaces or the mount table after setup */
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "mount_setattr",
    /* reaching into other processes */
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    /* kernel attack surface a coding agent never needs */
    "kexec_load",
    "kexec_file_load",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    /* the kernel keyring is not namespaced: it could carry host secrets */
    "keyctl",
    "add_key",
    "request_key",
    /* modules, power, swap, accounting, quotas */
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    /* file handles bypass path-based confinement (the "shocker" escape) */
    "open_by_handle_at",
    "name_to_handle_at",
    /* host-wide information and raw hardware */
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "syslog",
};
const size_t bb_n_denied_syscalls = ARRAY_SIZE(bb_denied_syscalls);

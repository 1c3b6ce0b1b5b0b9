#include "common/pidfd.h"

#include <errno.h>
#include <string.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/macro.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

int bb_pidfd_open(pid_t pid)
{
    long fd = syscall(SYS_pidfd_open, pid, 0);

    return fd < 0 ? -errno : (int)fd;
}

int bb_pidfd_send_signal(int pidfd, int sig)
{
    return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

int bb_pidfd_wait(int pidfd, siginfo_t *ret)
{
    memset(ret, 0, sizeof(*ret));
    return RETRY_EINTR(waitid((idtype_t)P_PIDFD, (id_t)pidfd, ret, WEXITED)) < 0 ? -errno : 0;
}

int bb_siginfo_status(const siginfo_t *si)
{
    return si->si_code == CLD_EXITED ? si->si_status : 128 + si->si_status;
}

int bb_pidfd_reap_once(int pidfd, bool *reaped, int *status)
{
    siginfo_t si;
    int r;

    if (*reaped)
        return 0;
    r = bb_pidfd_wait(pidfd, &si);
    if (r < 0)
        return r;
    *reaped = true;
    *status = bb_siginfo_status(&si);
    return 0;
}

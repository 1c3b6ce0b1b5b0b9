/*
 * LD_PRELOAD shim for test-microvm-rundir.sh: plays the owner of a microVM bottle's run
 * directory winning a race. Right after the supervisor binds a unix socket whose path ends in
 * /ctl.sock, the socket file is replaced by a symlink to $BB_TEST_SWAP_TARGET; whatever the
 * supervisor then does to that path by name (it chowns the socket to QEMU's user) must not
 * reach the target.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    int (*real)(int, const struct sockaddr *, socklen_t) =
        (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    const char *target = getenv("BB_TEST_SWAP_TARGET");
    int r = real(fd, addr, len);

    if (r == 0 && target && addr->sa_family == AF_UNIX) {
        const char *p = ((const struct sockaddr_un *)addr)->sun_path;
        size_t n = strnlen(p, sizeof(((struct sockaddr_un *)0)->sun_path));
        if (n > 9 && strcmp(p + n - 9, "/ctl.sock") == 0 && unlink(p) == 0)
            (void)!symlink(target, p);
    }
    return r;
}

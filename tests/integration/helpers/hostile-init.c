/* tests/integration/helpers/hostile-init.c: a compromised guest for test-redteam3.sh.
 *
 * Static, run as the microVM's PID 1 in place of bottle-init (`bot-bottle run --bottle-init
 * THIS`): guest root with the guest kernel's full power, which is what an exploit of the
 * guest kernel from the agent's command would get. It mounts the workspace's 9p share (tag
 * "ws") the way bottle-init does, but without the read-only binds bottle-init puts over the
 * protected paths (.git/config, .git/hooks, docs/workspace.md), and tries to leave code for
 * the host to run: a git hook and a core.fsmonitor line in .git/config, then (S10, rule 2 of
 * docs/microvm.md is the guest's seccomp filter, which a guest kernel ignores) a setuid file,
 * a setuid chmod, a setgid directory and a file chowned to uid 1. One line per attempt on the
 * console ("HOSTILE <what> <ok|error>"), then "HOSTILE-DONE" and a reboot.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static void report(const char *what, int r)
{
    printf("HOSTILE %s %s\n", what, r < 0 ? strerror(errno) : "ok");
}

static int write_file(const char *path, int flags, mode_t mode, const char *text)
{
    int fd = open(path, flags | O_WRONLY | O_CLOEXEC, mode);
    ssize_t n;

    if (fd < 0)
        return -1;
    n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

int main(void)
{
    int fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);

    if (fd < 0) {
        (void)mkdir("/dev", 0755);
        (void)mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
        fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
    }
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    (void)mkdir("/ws", 0755);
    report("mount", mount("ws", "/ws", "9p", MS_NOSUID | MS_NODEV,
                          "trans=virtio,version=9p2000.L,msize=512000,cache=mmap"));
    report("git-config", write_file("/ws/.git/config", O_APPEND, 0644,
                                    "[core]\n\tfsmonitor = touch /tmp/pwned-by-guest\n"));
    report("git-hook", write_file("/ws/.git/hooks/pre-commit", O_CREAT | O_TRUNC, 0755,
                                  "#!/bin/sh\ntouch /tmp/pwned-by-guest\n"));
    /* the second route: .git moved aside, a .git of our making in its place */
    report("git-rename", rename("/ws/.git", "/ws/.git-aside"));
    report("git-new", mkdir("/ws/.git", 0755) < 0
                          ? -1
                          : write_file("/ws/.git/config", O_CREAT | O_TRUNC, 0644,
                                       "[core]\n\tfsmonitor = touch /tmp/pwned-by-guest\n"));
    report("create-06755", write_file("/ws/created-setuid", O_CREAT, 06755, "x"));
    report("chmod-04755",
           write_file("/ws/chmodded", O_CREAT, 0755, "x") < 0 ? -1 : chmod("/ws/chmodded", 04755));
    report("mkdir-02755", mkdir("/ws/dir-setgid", 02755));
    report("chown-1",
           write_file("/ws/chowned", O_CREAT, 0644, "x") < 0 ? -1 : chown("/ws/chowned", 1, 1));
    /* /usr is shared read-only (QEMU's readonly=on): the one guard on the host's /usr */
    (void)mkdir("/hostusr", 0755);
    report("mount-usr", mount("usr", "/hostusr", "9p", MS_NOSUID | MS_NODEV,
                              "trans=virtio,version=9p2000.L,msize=512000,cache=loose"));
    report("usr-write", write_file("/hostusr/bb-redteam3-hostile", O_CREAT, 0644, "x"));
    printf("HOSTILE-DONE\n");
    sync();
    reboot(RB_AUTOBOOT);
    return 0;
}

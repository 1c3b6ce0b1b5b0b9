/* bench/tools/9p-s10-init.c: the guest side of bench/9p-s10.sh.
 *
 * Built static into an initramfs as PID 1. As guest root it mounts the 9p share tagged "ws"
 * on /tmp and tries what a hostile bottle would do to leave something runnable on the host
 * (DESIGN.md S10): create files with setuid/setgid bits, chmod them on, mknod, set file
 * capabilities and trusted xattrs, chown; it also checks symlinks both ways. One line per
 * attempt on the console,
 *     "S10 <what> <ok|error text>"
 * then "S10-DONE", and reboot(RB_AUTOBOOT) ends QEMU. The host script looks at the result.
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
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

static void report(const char *what, int r)
{
    printf("S10 %s %s\n", what, r < 0 ? strerror(errno) : "ok");
}

static void try_create(const char *path, mode_t mode, const char *what)
{
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, mode);

    report(what, fd);
    if (fd >= 0)
        close(fd);
}

int main(void)
{
    /* VFS_CAP_REVISION_2, cap_net_raw (bit 13) permitted, effective flag set */
    static const unsigned char cap[20] = { 0x01, 0x00, 0x00, 0x02, 0x00, 0x20 };
    char target[256];
    int fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);

    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    umask(0);
    report("mount", mount("ws", "/tmp", "9p", MS_NOSUID | MS_NODEV,
                          "trans=virtio,version=9p2000.L,msize=512000,cache=mmap"));
    try_create("/tmp/created-setuid", 06755, "create-06755");
    try_create("/tmp/chmodded", 0755, "create-0755");
    report("chmod-04755", chmod("/tmp/chmodded", 04755));
    report("mkdir-02755", mkdir("/tmp/dir-setgid", 02755));
    report("mknod-c-1-3", mknod("/tmp/devnode", S_IFCHR | 0666, makedev(1, 3)));
    try_create("/tmp/capped", 0755, "create-capped");
    report("setxattr-security.capability",
           setxattr("/tmp/capped", "security.capability", cap, sizeof(cap), 0));
    report("setxattr-trusted", setxattr("/tmp/capped", "trusted.bb", "1", 1, 0));
    try_create("/tmp/chowned", 0644, "create-chowned");
    report("chown-1:1", chown("/tmp/chowned", 1, 1));
    report("symlink", symlink("chmodded", "/tmp/guest-link"));
    ssize_t n = readlink("/tmp/host-link", target, sizeof(target) - 1);
    if (n >= 0) {
        target[n] = '\0';
        printf("S10 readlink-host-link -> %s\n", target);
    } else {
        report("readlink-host-link", -1);
    }
    printf("S10-DONE\n");
    sync();
    reboot(RB_AUTOBOOT);
    for (;;)
        pause();
}

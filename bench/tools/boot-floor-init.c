/* bench/tools/boot-floor-init.c: the trivial /init of bench/boot-floor.sh.
 *
 * Built static (cc -static) into an initramfs as PID 1 of a microVM guest. It prints one
 * line to the console,
 *     "BOOT-FLOOR-MARKER uptime_ms=<CLOCK_BOOTTIME in ms>"
 * and reboots at once: with reboot=t on the kernel command line and -no-reboot on QEMU's,
 * that ends QEMU (the guest has no ACPI to power off with). It does nothing else, so the time
 * from QEMU's launch to its exit is the floor of any microVM bottle: QEMU start-up, kernel
 * boot, initramfs unpack, exec of init, and shutdown.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdio.h>
#include <sys/reboot.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    struct timespec ts;
    char line[96];

    clock_gettime(CLOCK_BOOTTIME, &ts);
    int n = snprintf(line, sizeof(line), "BOOT-FLOOR-MARKER uptime_ms=%lld\n",
                     (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    /* the kernel gave PID 1 /dev/console as fds 0-2; open it again in case it did not */
    int fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        fd = 1;
    if (n > 0)
        (void)!write(fd, line, (size_t)n);
    fsync(fd);
    reboot(RB_AUTOBOOT);
    /* not reached; PID 1 must not exit (that panics, which also ends QEMU with panic=-1) */
    for (;;)
        pause();
}

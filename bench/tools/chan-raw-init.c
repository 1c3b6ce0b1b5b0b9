/* bench/tools/chan-raw-init.c: the /init of bench/microvm-chan.sh's raw port measurement.
 *
 * Built static into an initramfs as PID 1 of a microVM guest booted with the bottle.chan
 * virtio-serial port (microvm-argv --chan-socket). It mounts sysfs and devtmpfs, finds the port
 * by name (/sys/class/virtio-ports/NAME/name, as bottle-init does) and moves SIZE bytes
 * through it in CHUNK-byte reads or writes (kernel command line: chanraw=SIZE,CHUNK,DIR;
 * default 100 MB, 64 KiB, in). DIR "in": the host writes, the guest reads (a download's
 * direction); "out": the guest writes, the host reads. Prints "CHAN-RAW bytes=N ms=T" (guest
 * CLOCK_MONOTONIC from the first byte to the last) on the console and reboots.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int open_port(const char *name)
{
    for (int tries = 0; tries < 5000; tries++) {
        DIR *d = opendir("/sys/class/virtio-ports");
        struct dirent *e;

        while (d && (e = readdir(d)) != NULL) {
            char path[512], got[64] = { 0 };
            int fd;

            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
            fd = open(path, O_RDONLY);
            if (fd < 0)
                continue;
            if (read(fd, got, sizeof(got) - 1) > 0 && strncmp(got, name, strlen(name)) == 0 &&
                got[strlen(name)] == '\n') {
                close(fd);
                closedir(d);
                snprintf(path, sizeof(path), "/dev/%s", e->d_name);
                return open(path, O_RDWR);
            }
            close(fd);
        }
        if (d)
            closedir(d);
        usleep(2000);
    }
    return -1;
}

/* Decimal digits at *p (advanced past them); 0 when there are none. */
static unsigned long long parse_num(const char **p)
{
    unsigned long long v = 0;

    while (**p >= '0' && **p <= '9' && v < (1ULL << 40))
        v = v * 10 + (unsigned long long)(*(*p)++ - '0');
    return v;
}

int main(void)
{
    unsigned long long size = 100ULL * 1000 * 1000, chunk = 64 * 1024, done = 0;
    const char *arg = getenv("chanraw");
    int in = 1;
    char line[128], *buf;
    double t0, t1;
    int fd, n;

    if (arg) {
        const char *p = arg;
        size = parse_num(&p);
        if (*p == ',') {
            p++;
            chunk = parse_num(&p);
        }
        if (*p == ',')
            in = strcmp(p + 1, "out") != 0;
        if (!size || !chunk || chunk > (64ULL << 20)) {
            size = 0; /* reported as 0 bytes moved */
            chunk = 65536;
        }
    }
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    buf = calloc(1, chunk);
    fd = open_port("bottle.chan");
    if (fd < 0 || !buf) {
        n = snprintf(line, sizeof(line), "CHAN-RAW error: no bottle.chan port\n");
    } else {
        memset(buf, 'x', chunk);
        t0 = now_ms();
        while (done < size) {
            size_t want = size - done < chunk ? size - done : chunk;
            ssize_t k = in ? read(fd, buf, want) : write(fd, buf, want);
            if (k <= 0)
                break;
            if (done == 0 && in)
                t0 = now_ms(); /* from the first byte: the host connects when QEMU starts */
            done += (unsigned long long)k;
        }
        if (!in)
            fsync(fd);
        t1 = now_ms();
        n = snprintf(line, sizeof(line), "CHAN-RAW bytes=%llu ms=%.1f\n", done, t1 - t0);
    }
    fd = open("/dev/console", O_WRONLY | O_NOCTTY);
    (void)!write(fd < 0 ? 1 : fd, line, (size_t)n);
    reboot(RB_AUTOBOOT);
    for (;;)
        pause();
}

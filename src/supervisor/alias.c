#include "supervisor/alias.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/str.h"

#define ALIAS_FIRST 2     /* 127.77.0.2 */
#define ALIAS_COUNT 65024 /* up to 127.77.254.254 */

static void alias_of(uint32_t i, struct in_addr *a, char text[16])
{
    uint32_t host = (127u << 24) | (77u << 16) | (i & 0xffff);
    a->s_addr = htonl(host);
    snprintf(text, 16, "127.77.%u.%u", (i >> 8) & 0xff, i & 0xff);
}

static bool port_free(const struct in_addr *a, unsigned short port)
{
    _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = *a };
    int one = 1;

    if (fd < 0)
        return false;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    return bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
}

int alias_acquire(const char *dir, unsigned short proxy_port, struct alias_lease *ret)
{
    uint32_t start = 0;

    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -errno;
    if (getrandom(&start, sizeof(start), 0) != sizeof(start))
        start = (uint32_t)getpid();
    for (uint32_t k = 0; k < ALIAS_COUNT; k++) {
        uint32_t i = ALIAS_FIRST + (start + k) % ALIAS_COUNT;
        struct in_addr a;
        char text[16], path[4096];
        int fd;

        /* skip x.y.0 and x.y.255 style addresses: some tools treat them specially */
        if ((i & 0xff) == 0 || (i & 0xff) == 255)
            continue;
        alias_of(i, &a, text);
        if (str_printf(path, sizeof(path), "%s/%s.lock", dir, text) < 0)
            return -ENAMETOOLONG;
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            close(fd);
            continue; /* a live supervisor holds it */
        }
        /* The previous holder may have unlinked the file between our open and flock: then we
         * locked an orphan inode while another process may lock a new file at the path. */
        struct stat st_fd, st_path;
        if (fstat(fd, &st_fd) < 0 || stat(path, &st_path) < 0 || st_fd.st_ino != st_path.st_ino ||
            st_fd.st_dev != st_path.st_dev) {
            close(fd);
            k--; /* try the same alias again */
            continue;
        }
        if (!port_free(&a, proxy_port)) {
            close(fd);
            continue;
        }
        ret->addr = a;
        snprintf(ret->text, sizeof(ret->text), "%s", text);
        ret->lock_fd = fd;
        return 0;
    }
    return -EADDRNOTAVAIL;
}

void alias_release(const char *dir, struct alias_lease *l)
{
    char path[4096];

    if (l->lock_fd < 0)
        return;
    /* Unlink while still holding the lock, so nobody else can be holding this inode. */
    if (str_printf(path, sizeof(path), "%s/%s.lock", dir, l->text) == 0)
        unlink(path);
    close(l->lock_fd);
    l->lock_fd = -1;
}

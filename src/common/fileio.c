#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/macro.h"

int file_write_str(const char *path, const char *data)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    size_t n = strlen(data);
    ssize_t w;

    if (fd < 0)
        return -errno;
    w = RETRY_EINTR(write(fd, data, n));
    if (w < 0)
        return -errno;
    return (size_t)w == n ? 0 : -EIO;
}

int file_read_small(const char *path, char *buf, size_t size)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (size == 0)
        return -EINVAL;
    if (fd < 0)
        return -errno;
    n = RETRY_EINTR(read(fd, buf, size - 1));
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return 0;
}

int file_read_line(const char *path, char *buf, size_t size)
{
    int r = file_read_small(path, buf, size);
    char *nl;

    if (r < 0)
        return r;
    nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    return 0;
}

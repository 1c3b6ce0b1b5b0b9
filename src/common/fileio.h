/*
 * Small whole-file helpers for /proc, /sys and cgroup files: one open, one read or write.
 */
#pragma once

#include <stddef.h>

/* Write data (a string) to an existing file in one write(2). Returns 0, -EIO on a short write,
 * or -errno. */
int file_write_str(const char *path, const char *data);
/* Read at most size-1 bytes of a small file into buf, NUL-terminated. Returns 0 or -errno. */
int file_read_small(const char *path, char *buf, size_t size);
/* As file_read_small, cut at the first newline: the file's first line. */
int file_read_line(const char *path, char *buf, size_t size);

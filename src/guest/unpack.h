/*
 * Reading a newc cpio archive in the guest (the format backend/microvm/initramfs.h writes):
 * how a microVM started from a snapshot gets its bottle's files (the spec, the seccomp
 * program, the public /etc files), which a cold boot finds in its initramfs. The host sends
 * the same entries over bottle.ctl after the restore (docs/microvm.md, "Start-up from a
 * snapshot"), and bottle-init writes them where the initramfs would have put them.
 *
 * The reader is bounded and fuzzed (tests/fuzz/fuzz-cpio-read.c): every length is checked
 * against what is left of the input before it is used.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define GUEST_CPIO_NAME_MAX 255

struct guest_cpio_entry {
    char name[GUEST_CPIO_NAME_MAX + 1];
    uint32_t mode; /* type and permission bits, as in the archive */
    const uint8_t *data;
    size_t len;
};

/*
 * The entry at *off of the archive p[0..len); moves *off past it. Returns 1 for an entry, 0 at
 * the trailer (the archive's end), -EPROTO for anything malformed (bad magic or hex, a name
 * without its NUL or longer than GUEST_CPIO_NAME_MAX, a length past the input).
 */
int guest_cpio_next(const uint8_t *p, size_t len, size_t *off, struct guest_cpio_entry *e);

/*
 * Writes the archive's entries below dirfd: only names under "bottle" ("bottle" itself or
 * "bottle/..."), with components that are not empty, "." or "..", and only directories,
 * regular files and symbolic links (permission bits 0777 at most: no set-id, no sticky).
 * Nothing is followed or replaced: each entry's directory is reached through no symlink
 * (openat2 RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH: -ELOOP through one an earlier entry made),
 * directories are made with mkdirat (an existing one is fine), files with O_CREAT | O_EXCL |
 * O_NOFOLLOW. 0, or -EPROTO for a malformed archive or an entry outside those rules, or the
 * -errno of a failed write.
 */
int guest_cpio_unpack(int dirfd, const uint8_t *p, size_t len);

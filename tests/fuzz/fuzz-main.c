/*
 * Replays fuzz inputs without libFuzzer: every file under the directories (or files) named on
 * the command line is fed once to LLVMFuzzerTestOneInput. Used by the fuzz-regress suite so
 * every build re-runs the corpus and the saved crashers. Prints TAP-ish progress on stderr.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

static int run_file(const char *path, size_t *count)
{
    struct stat st;
    unsigned char *data;
    ssize_t n;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "fuzz-main: %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    data = malloc((size_t)st.st_size + 1);
    if (!data) {
        close(fd);
        return -1;
    }
    while (got < (size_t)st.st_size && (n = read(fd, data + got, (size_t)st.st_size - got)) > 0)
        got += (size_t)n;
    close(fd);
    /* Copy into an exact-size allocation so ASan catches reads past the input. */
    unsigned char *exact = malloc(got ? got : 1);
    if (got)
        memcpy(exact, data, got);
    free(data);
    LLVMFuzzerTestOneInput(exact, got);
    free(exact);
    (*count)++;
    return 0;
}

static int run_path(const char *path, size_t *count)
{
    struct stat st;
    DIR *d;
    struct dirent *de;
    int rc = 0;

    if (stat(path, &st) < 0) {
        fprintf(stderr, "fuzz-main: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return run_file(path, count);
    d = opendir(path);
    if (!d)
        return -1;
    while ((de = readdir(d))) {
        char sub[4096];
        if (de->d_name[0] == '.')
            continue;
        if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) >= sizeof(sub))
            continue;
        if (run_path(sub, count) < 0)
            rc = -1;
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    int rc = 0;

    for (int i = 1; i < argc; i++)
        if (run_path(argv[i], &count) < 0)
            rc = 1;
    /* Always exercise the empty input too. */
    LLVMFuzzerTestOneInput((const unsigned char *)"", 0);
    fprintf(stderr, "fuzz-main: replayed %zu inputs\n", count);
    return rc;
}

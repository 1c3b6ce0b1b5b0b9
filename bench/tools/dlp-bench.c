/*
 * DLP scanner CPU cost per MB (bench/dlp.sh builds and runs it). Reads the files given on the
 * command line into one mixed corpus, then scans it repeatedly for at least --seconds of CPU
 * time per case, through dlp_stream_feed() in chunks of a given size (as the proxy does with
 * request bodies) and through dlp_scan_buf() whole, with 0 and 4 registered credentials.
 * Prints "case  MB scanned  CPU ms per MB" lines. CPU time is CLOCK_PROCESS_CPUTIME_ID.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dlp/dlp.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void run(const char *name, const struct dlp_ctx *x, const char *p, size_t len, size_t chunk,
                double secs)
{
    double t0 = cpu_now(), t;
    size_t total = 0;
    int hits = 0;

    do {
        if (chunk == 0) {
            hits += dlp_scan_buf(x, p, len) != DLP_NONE;
        } else {
            struct dlp_stream s;
            dlp_stream_init(&s);
            for (size_t i = 0; i < len; i += chunk)
                hits +=
                    dlp_stream_feed(&s, x, p + i, len - i < chunk ? len - i : chunk) != DLP_NONE;
            hits += dlp_stream_end(&s, x) != DLP_NONE;
        }
        total += len;
        t = cpu_now() - t0;
    } while (t < secs);
    printf("%-40s %8.1f MB  %7.3f ms CPU/MB  %s\n", name, (double)total / 1e6,
           t * 1e3 / ((double)total / 1e6), hits ? "(FINDINGS!)" : "");
}

int main(int argc, char **argv)
{
    double secs = 2.0;
    size_t cap = 1 << 20, len = 0;
    char *corpus = malloc(cap);
    int i = 1, files = 0;

    if (argc > 2 && strcmp(argv[1], "--seconds") == 0) {
        secs = atof(argv[2]);
        i = 3;
    }
    for (; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        size_t n;
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        for (;;) {
            if (len + 65536 > cap)
                corpus = realloc(corpus, cap *= 2);
            n = fread(corpus + len, 1, 65536, f);
            if (n == 0)
                break;
            len += n;
        }
        fclose(f);
        files++;
    }
    if (!corpus || len == 0) {
        fprintf(stderr, "dlp-bench: no input\n");
        return 1;
    }
    printf("mixed corpus: %zu bytes from %d files\n", len, files);

    struct dlp *d = dlp_new();
    struct dlp_ctx none = { NULL, 0, "example.com", 443 };
    struct dlp_ctx creds = { d, 0, "example.com", 443 };
    dlp_add_secret(d, "api.anthropic.com", 443, "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
                   50);
    dlp_add_secret(d, "api.github.com", 443, "ghp_notreallyatokenbutlongenough0123456789", 42);
    dlp_add_secret(d, "registry.npmjs.org", 443, "npm_AbCdEfGhIjKlMnOpQrStUvWxYz012345", 40);
    dlp_add_secret(d, "gitlab.example.com", 443, "glpat-0123456789abcdefghij", 26);

    run("stream 16 KiB chunks, formats only", &none, corpus, len, 16384, secs);
    run("stream 64 KiB chunks, formats only", &none, corpus, len, 65536, secs);
    run("whole buffer, formats only", &none, corpus, len, 0, secs);
    run("stream 64 KiB chunks, + 4 credentials", &creds, corpus, len, 65536, secs);
    run("stream 1460 B chunks, + 4 credentials", &creds, corpus, len, 1460, secs);
    dlp_free(d);
    free(corpus);
    return 0;
}

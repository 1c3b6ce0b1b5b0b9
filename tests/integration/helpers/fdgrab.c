/*
 * fdgrab: run inside a bottle (test-redteam2.sh). Waits for the next processes of the bottle's
 * pid namespace (those `bot-bottle exec` starts) and tries, as fast as it can, to copy their
 * file descriptors 3..63 with pidfd_getfd(2) while they start: a process that still holds
 * the supervisor's descriptors (sockets, the pty master, pidfds) must not let it.
 *
 *   fdgrab LOGFILE   (until a file named "stop" appears in the current directory, 60 s at most)
 *
 * Writes "pid P fd N -> TARGET" for every descriptor it got, then "got=N".
 */
#include <errno.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

int main(int argc, char **argv)
{
    time_t end = time(NULL) + 60;
    int next = getpid() + 1, got = 0;
    FILE *log;

    if (argc != 2 || !(log = fopen(argv[1], "w")))
        return 2;
    for (unsigned long spin = 0; time(NULL) < end; spin++) {
        if (spin % 4096 == 0 && access("stop", F_OK) == 0)
            break;
        for (int p = next; p < next + 8; p++) {
            int pfd = (int)syscall(SYS_pidfd_open, p, 0);
            if (pfd < 0)
                continue;
            /* until it has exec'd (its descriptors then are its own) or is gone */
            for (long t = 0; t < 3000000; t++) {
                int any = 0, gone = 0;
                for (int fd = 3; fd < 64; fd++) {
                    int g = (int)syscall(SYS_pidfd_getfd, pfd, fd, 0);
                    if (g >= 0) {
                        char path[64], target[256] = "";
                        ssize_t n;
                        snprintf(path, sizeof(path), "/proc/self/fd/%d", g);
                        n = readlink(path, target, sizeof(target) - 1);
                        if (n > 0)
                            target[n] = '\0';
                        fprintf(log, "pid %d fd %d -> %s\n", p, fd, target);
                        close(g);
                        got++;
                        any = 1;
                    } else if (errno == ESRCH) {
                        gone = 1;
                        break;
                    }
                }
                if (any || gone)
                    break;
            }
            close(pfd);
            next = p + 1;
            break;
        }
    }
    fprintf(log, "got=%d\n", got);
    fclose(log);
    return 0;
}

#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "config.h"

int cmd_version(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("Usage: bot-bottle version\n\nPrint the version of bot-bottle.\n");
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "bot-bottle: version takes no arguments\n");
        return EXIT_BB_FAILURE;
    }
    printf("bot-bottle %s\n", BB_VERSION);
    return 0;
}

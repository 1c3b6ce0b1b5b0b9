/*
 * bot-bottle: run AI coding agents in a bottle whose only way out is an allowlisting egress
 * daemon. This file only dispatches to the verbs.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/log.h"
#include "common/macro.h"

static const struct cli_command commands[] = {
    { "agent", "install and list agents (agent install NAME, agent ls)", cmd_agent },
    { "allow", "add a pattern to a running bottle's allowlist (allow N PATTERN)", cmd_allow },
    { "attach", "connect to the terminal of a started bottle (detach: ctrl-p ctrl-q)", cmd_attach },
    { "deny", "remove a pattern from a running bottle's allowlist", cmd_deny },
    { "doctor", "say which backends can run here and why (doctor [--json])", cmd_doctor },
    { "egress", "run the egress daemon (HTTP proxy + DNS filter) on its own", cmd_egress },
    { "exec", "run another command in a running bottle (exec N [-t] [-i] CMD)", cmd_exec },
    { "help", "help on a topic: notices, policy, config, workspace, backends, agents", cmd_help },
    { "logs", "a bottle's egress decisions (logs N [--follow] [--verify])", cmd_logs },
    { "ls", "list the bottles", cmd_ls },
    { "policy", "check a target against a policy (policy check ...)", cmd_policy },
    { "rm", "remove an ended bottle's logs (rm N [-f])", cmd_rm },
    { "run", "run a command in a new bottle", cmd_run },
    { "start", "start a bottle in the background (start [--name N] [-- CMD])", cmd_start },
    { "stop", "stop a running bottle (stop N)", cmd_stop },
    { "trust", "approve a project's bottle.ini (its exact content)", cmd_trust },
    { "version", "print the version", cmd_version },
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: bot-bottle COMMAND [OPTIONS]\n\n"
               "Run AI coding agents in a sandbox whose only network path is an allowlisting\n"
               "egress proxy and DNS filter.\n\nCommands:\n");
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nHelp topics (bot-bottle help TOPIC):");
    for (size_t i = 0; help_topic_name(i); i++)
        fprintf(f, " %s", help_topic_name(i));
    fprintf(f, "\n");
    fprintf(f,
            "\nRun 'bot-bottle COMMAND --help' for a command's options, 'bot-bottle help TOPIC'\n"
            "for a topic.\n");
}

int main(int argc, char **argv)
{
    const char *verb;

    if (argc < 2) {
        usage(stderr);
        return EXIT_BB_FAILURE;
    }
    verb = argv[1];
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 ||
        (strcmp(verb, "help") == 0 && argc == 2)) {
        usage(stdout);
        return 0;
    }
    if (strcmp(verb, "--version") == 0)
        verb = "version";
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        if (strcmp(verb, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    log_error("unknown command '%s'; run 'bot-bottle --help' for the list", verb);
    return EXIT_BB_FAILURE;
}

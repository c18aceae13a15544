/* main.c - the stalltrace command: a table of subcommands, one file each
 * (cmd_NAME.c), as perf's commands[]; a new command is a file and a row. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;             /* its arguments, then what it does */
};

static const struct command commands[] = {
    {"run", cmd_run, "[-o PATH] [--threshold MS] [--buffer-mb N] [--] CMD [ARGS...]\n"
                     "        run CMD with the recorder preloaded, then summarize its dumps"},
    {"report", cmd_report, "[--format FORMAT] [--threshold MS] [--native-only] [--all-frames]\n"
                           "         [-o FILE] DUMP...\n"
                           "        report the event-loop stalls recorded in dumps (formats: "
                           "stalltrace report --help)"},
    {"check", cmd_check, "[--max-stall-ms N] [--max-loop-p99-ms N] [--max-loop-utilization R]\n"
                         "        [--max-saturated-s N] [--max-lock-wait-ms N] [--junit FILE] DUMP...\n"
                         "        exit 1 when a dump breaks a bound (a CI gate), one line per violation"},
    {"diff", cmd_diff, "BASE.dump NEW.dump [--format text|json] [--fail-over PCT]\n"
                       "        what changed between two recordings; exit 1 when worse by more than PCT"},
    {"top", cmd_top, "PID|DUMP [--interval S] [--once]\n"
                     "        live view of a running process: loops, recent stalls, pools, locks"},
    {"metrics", cmd_metrics, "--listen ADDR:PORT DUMP...\n"
                             "        serve the OpenMetrics figures of (live) dumps over HTTP for Prometheus"},
    {"attach", cmd_attach, "PID [-o PATH] [--threshold MS] [--duration S] [--seccomp-ok]\n"
                           "        start recording a running process (no restart); --duration: detach after S"},
    {"detach", cmd_detach, "PID\n"
                           "        stop recording it; the process runs on unchanged"},
    {NULL, NULL, NULL},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: stalltrace COMMAND [ARGS...]\n\n");
    for (const struct command *c = commands; c->name; c++)
        fprintf(out, "  %s %s\n", c->name, c->usage);
    fprintf(out, "\n  --help      this text\n  --version   the version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("stalltrace %s\n", STALLTRACE_VERSION);
        return 0;
    }
    for (const struct command *c = commands; c->name; c++)
        if (strcmp(argv[1], c->name) == 0)
            return c->run(argc - 1, argv + 1);
    fprintf(stderr, "stalltrace: unknown command '%s' (see stalltrace --help)\n", argv[1]);
    return 2;
}

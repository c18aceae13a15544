/* main.c - the stalltrace command: dispatches to one subcommand per file
 * (run, report, check, diff, top, metrics). */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: stalltrace COMMAND [ARGS...]\n"
            "\n"
            "  run [-o PATH] [--threshold MS] [--buffer-mb N] [--] CMD [ARGS...]\n"
            "        run CMD with the recorder preloaded, then summarize its dumps\n"
            "  report [--format text|json|html|folded|chrome|openmetrics] [--threshold MS]\n"
            "         [--native-only] [-o FILE] DUMP...\n"
            "        report the event-loop stalls recorded in dumps\n"
            "  check [--max-stall-ms N] [--max-loop-p99-ms N] [--max-loop-utilization R]\n"
            "        [--max-saturated-s N] [--max-lock-wait-ms N] [--junit FILE] DUMP...\n"
            "        exit 1 when a dump breaks a bound (a CI gate), one line per violation\n"
            "  diff BASE.dump NEW.dump [--format text|json] [--fail-over PCT]\n"
            "        what changed between two recordings; exit 1 when worse by more than PCT\n"
            "  top PID|DUMP [--interval S] [--once]\n"
            "        live view of a running process: loops, recent stalls, pools, locks\n"
            "  metrics --listen ADDR:PORT DUMP...\n"
            "        serve the OpenMetrics figures of (live) dumps over HTTP for Prometheus\n"
            "\n"
            "  --help      this text\n"
            "  --version   the version\n");
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
    if (strcmp(argv[1], "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "report") == 0)
        return cmd_report(argc - 1, argv + 1);
    if (strcmp(argv[1], "check") == 0)
        return cmd_check(argc - 1, argv + 1);
    if (strcmp(argv[1], "diff") == 0)
        return cmd_diff(argc - 1, argv + 1);
    if (strcmp(argv[1], "top") == 0)
        return cmd_top(argc - 1, argv + 1);
    if (strcmp(argv[1], "metrics") == 0)
        return cmd_metrics(argc - 1, argv + 1);
    fprintf(stderr, "stalltrace: unknown command '%s' (see stalltrace --help)\n", argv[1]);
    return 2;
}

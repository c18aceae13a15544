/* cmd_report.c - `stalltrace report`: options, loading every dump given,
 * then printing them in the chosen format. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "report_util.h"

int report_dumps(FILE *out, char **paths, int n, const struct report_format *format,
                 const struct model_options *mopt, const struct report_options *ropt)
{
    struct loaded_dumps l;
    int rc = load_dumps(paths, (size_t)n, mopt, &l);

    if (rc != 0)
        return rc;
    if (format->write(out, l.procs, l.n, ropt) != 0 || fflush(out) != 0) {
        fprintf(stderr, "stalltrace: cannot write the report: %s\n", strerror(errno));
        rc = 2;
    }
    free_loaded_dumps(&l);
    return rc;
}

static void report_usage(FILE *out)
{
    char names[160];
    report_format_names(names, sizeof(names), "|");
    fprintf(out, "usage: stalltrace report [--format %s]\n"
                 "                         [--threshold MS] [--native-only] [--all-frames] [-o FILE]\n"
                 "                         DUMP...\n", names);
    for (const struct report_format *f = report_formats; f->name; f++)
        fprintf(out, "  %-12s %s\n", f->name, f->summary);
    fprintf(out, "  --all-frames   text, folded: every frame, runtime machinery included (folded and the\n"
                 "                 HTML flame graph otherwise start at the program's own frames)\n");
}

int cmd_report(int argc, char **argv)
{
    static const struct option opts[] = {
        {"format", required_argument, NULL, 'f'},
        {"threshold", required_argument, NULL, 't'},
        {"native-only", no_argument, NULL, 'n'},
        {"all-frames", no_argument, NULL, 'a'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *format_name = "text", *output = NULL;
    struct model_options mopt = {.threshold_ms = -1};
    FILE *out = stdout;
    int c, rc;
    bool all_frames = false;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "f:t:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            format_name = optarg;
            break;
        case 't':
            if (!parse_number(optarg, 1e12, &mopt.threshold_ms)) {
                fprintf(stderr, "stalltrace: report: --threshold wants milliseconds, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'n':
            mopt.native_only = true;    /* raw native stacks: no Python frames spliced */
            break;
        case 'a':
            all_frames = true;
            break;
        case 'o':
            output = optarg;
            break;
        case 'h':
            report_usage(stdout);
            return 0;
        default:
            fprintf(stderr, "stalltrace: report: bad option '%s' (see stalltrace --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    const struct report_format *format = report_format_find(format_name);
    if (!format) {
        char names[160];
        report_format_names(names, sizeof(names), ", ");
        fprintf(stderr, "stalltrace: report: unknown format '%s' (%s)\n", format_name, names);
        return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "stalltrace: report: no dump given\n");
        return 2;
    }
    if (format->binary && !output && isatty(STDOUT_FILENO)) {
        fprintf(stderr, "stalltrace: report: %s is a binary format: give -o FILE or a pipe\n",
                format->name);
        return 2;
    }
    if (output) {
        out = fopen(output, "we");
        if (!out) {
            fprintf(stderr, "stalltrace: %s: %s\n", output, strerror(errno));
            return 2;
        }
    }
    static const struct text_limits everything = {(size_t)-1, (size_t)-1, true};
    struct report_options ropt = {.limits = all_frames ? &everything : NULL, .all_frames = all_frames};
    rc = report_dumps(out, argv + optind, argc - optind, format, &mopt, &ropt);
    if (out != stdout && fclose(out) != 0 && rc == 0) {
        fprintf(stderr, "stalltrace: %s: %s\n", output, strerror(errno));
        rc = 2;
    }
    return rc;
}

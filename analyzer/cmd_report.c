/* cmd_report.c - `stalltrace report`: options, loading every dump given,
 * then printing them in the chosen format. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

/* Parse a non-negative number of milliseconds; -1 if malformed. */
static double parse_ms(const char *s)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0) || v > 1e12)
        return -1;
    return v;
}

/* --native-only: kept here so report_dumps keeps its signature for `run`. */
static bool native_only;

int report_dumps(FILE *out, char **paths, int n, const char *format, double threshold_ms,
                 const struct text_limits *lim)
{
    struct dump **dumps = calloc((size_t)n + 1, sizeof(*dumps));
    struct m_process **procs = calloc((size_t)n + 1, sizeof(*procs));
    struct model_options opt = {.threshold_ms = threshold_ms, .native_only = native_only};
    int i, rc = 0;

    if (!dumps || !procs) {
        fprintf(stderr, "stalltrace: out of memory\n");
        rc = 2;
        goto out;
    }
    /* Load everything first: one bad dump means no half-written report. */
    for (i = 0; i < n; i++) {
        char *err = NULL;
        dumps[i] = dump_open_path(paths[i], &err);
        if (!dumps[i]) {
            fprintf(stderr, "stalltrace: %s\n", err ? err : "out of memory");
            free(err);
            rc = 2;
            goto out;
        }
        procs[i] = model_build(dumps[i], &opt);
        if (!procs[i]) {
            fprintf(stderr, "stalltrace: %s: out of memory\n", paths[i]);
            rc = 2;
            goto out;
        }
    }
    if (strcmp(format, "json") == 0)
        rc = report_json(out, procs, (size_t)n);
    else if (strcmp(format, "folded") == 0)
        rc = report_folded(out, procs, (size_t)n);
    else if (strcmp(format, "chrome") == 0)
        rc = report_chrome(out, procs, (size_t)n);
    else if (strcmp(format, "openmetrics") == 0)
        rc = report_openmetrics(out, procs, (size_t)n);
    else if (strcmp(format, "html") == 0)
        rc = report_html(out, procs, (size_t)n);
    else
        rc = report_text(out, procs, (size_t)n, lim);
    if (rc != 0 || fflush(out) != 0) {
        fprintf(stderr, "stalltrace: cannot write the report: %s\n", strerror(errno));
        rc = 2;
    }
out:
    for (i = 0; procs && dumps && i < n; i++) {
        model_free(procs[i]);
        dump_free(dumps[i]);
    }
    free(procs);
    free(dumps);
    return rc;
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
    const char *format = "text", *output = NULL;
    double threshold = -1;
    FILE *out = stdout;
    int c, rc;
    bool all_frames = false;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "f:t:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            format = optarg;
            break;
        case 't':
            threshold = parse_ms(optarg);
            if (threshold < 0) {
                fprintf(stderr, "stalltrace: report: --threshold wants milliseconds, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'n':
            native_only = true;    /* raw native stacks: no Python frames spliced */
            break;
        case 'a':
            all_frames = true;
            break;
        case 'o':
            output = optarg;
            break;
        case 'h':
            printf("usage: stalltrace report [--format text|json|html|folded|chrome|openmetrics]\n"
                   "                         [--threshold MS] [--native-only] [--all-frames] [-o FILE]\n"
                   "                         DUMP...\n");
            return 0;
        default:
            fprintf(stderr, "stalltrace: report: bad option '%s' (see stalltrace --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (strcmp(format, "text") != 0 && strcmp(format, "json") != 0 && strcmp(format, "html") != 0 &&
        strcmp(format, "folded") != 0 && strcmp(format, "chrome") != 0 &&
        strcmp(format, "openmetrics") != 0) {
        fprintf(stderr, "stalltrace: report: unknown format '%s' "
                        "(text, json, html, folded, chrome or openmetrics)\n", format);
        return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "stalltrace: report: no dump given\n");
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
    rc = report_dumps(out, argv + optind, argc - optind, format, threshold,
                      all_frames ? &everything : NULL);
    if (out != stdout && fclose(out) != 0 && rc == 0) {
        fprintf(stderr, "stalltrace: %s: %s\n", output, strerror(errno));
        rc = 2;
    }
    return rc;
}

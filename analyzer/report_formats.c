/* report_formats.c - the table of `report --format` names: each format is a
 * file of its own (report_NAME.c) and one row here. */
#include <stdio.h>
#include <string.h>

#include "report.h"

const struct report_format report_formats[] = {
    {"text", report_text, "for a person at a terminal (the default)", false},
    {"json", report_json, "the versioned document for scripts and CI (SPEC.md)", false},
    {"html", report_html, "one self-contained page: timeline, flame graph, tables", false},
    {"folded", report_folded, "folded stacks for flamegraph.pl and speedscope", false},
    {"chrome", report_chrome, "a trace for Perfetto and chrome://tracing", false},
    {"openmetrics", report_openmetrics, "the figures for Prometheus", false},
    {"pprof", report_pprof, "gzipped profile.proto for go tool pprof, Pyroscope, Parca", true},
    {NULL, NULL, NULL, false},
};

const struct report_format *report_format_find(const char *name)
{
    for (const struct report_format *f = report_formats; f->name; f++)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

void report_format_names(char *buf, size_t len, const char *sep)
{
    size_t used = 0;

    buf[0] = '\0';
    for (const struct report_format *f = report_formats; f->name && used < len; f++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", f == report_formats ? "" : sep, f->name);
}

/* report_formats.c - the table of `report --format` names: a format is a
 * file of its own (report_NAME.c, listed in analyzer/meson.build) and one row here. */
#include <stdio.h>
#include <string.h>

#include "report.h"

/* One row per format, NAME as in --format NAME; the row declares the
 * format's function, report_NAME, so report.h need not (it does for the
 * formats other code calls directly). */
#define REPORT_FORMATS(X)                                                              \
    X(text, "for a person at a terminal (the default)", false)                         \
    X(json, "the versioned document for scripts and CI (SPEC.md)", false)              \
    X(html, "one self-contained page: timeline, flame graph, tables", false)           \
    X(folded, "folded stacks for flamegraph.pl and speedscope", false)                 \
    X(chrome, "a trace for Perfetto and chrome://tracing", false)                      \
    X(openmetrics, "the figures for Prometheus", false)                                \
    X(pprof, "gzipped profile.proto for go tool pprof, Pyroscope, Parca", true)

#define REPORT_FORMAT_DECLARE(name, summary, binary) report_write_fn report_##name;
REPORT_FORMATS(REPORT_FORMAT_DECLARE)
#undef REPORT_FORMAT_DECLARE

const struct report_format report_formats[] = {
#define REPORT_FORMAT_ROW(name, summary, binary) {#name, report_##name, summary, binary},
    REPORT_FORMATS(REPORT_FORMAT_ROW)
#undef REPORT_FORMAT_ROW
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

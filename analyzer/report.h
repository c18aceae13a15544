/* report.h - the output formats of `report` (and the summary `run` prints),
 * each writing the models of one or more processes to a stream. */
#ifndef STALLTRACE_REPORT_H
#define STALLTRACE_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "model.h"

/* Limits of the text report; `run` prints a trimmed one. */
struct text_limits {
    size_t sites;                  /* stall sites shown per process */
    size_t frames;                 /* frames shown per site */
    bool all_frames;               /* every frame, plumbing included (--all-frames) */
};

/* What a format may be told; NULL means the defaults. */
struct report_options {
    const struct text_limits *limits;  /* text: NULL, everything */
    bool all_frames;               /* flame graphs: every frame, not the flame view (--all-frames) */
};

/* A format writes the models of one or more processes; 0, or -1 when the
 * stream failed. */
typedef int report_write_fn(FILE *out, struct m_process **procs, size_t n,
                            const struct report_options *opt);

struct report_format {
    const char *name;              /* --format NAME */
    report_write_fn *write;
    const char *summary;           /* for the usage text */
    bool binary;                   /* not for a terminal: written only with -o or to a pipe */
};

/* Every format `report --format` knows, NULL-terminated (report_formats.c):
 * a new format is a file of its own and a row there (and its file in
 * analyzer/meson.build). */
extern const struct report_format report_formats[];
const struct report_format *report_format_find(const char *name);
/* "text|json|html|..." (sep between names) into buf. */
void report_format_names(char *buf, size_t len, const char *sep);

/* Folded stacks ("root;outer;...;inner MS" lines) of the stalls of procs
 * into a malloc'ed string (*len its length), in the flame view of
 * frames_flame_view unless all; NULL when out of memory. The folded format
 * and the HTML report's flame graph both draw from it. */
char *report_folded_text(struct m_process **procs, size_t n, bool all, size_t *len);

/* The HTML page's extra data, a JSON object by pid: "flame" {"view", "all"}
 * (folded text) and "pools" {id: {"spans": [[tid, start_ms, ms]...],
 * "partial"}}; malloc'ed, NULL when out of memory. */
char *report_html_views(struct m_process **procs, size_t n);

/* The formats other code calls by name (run's summary, html's embedded
 * document, metrics, the tests); the table declares every format itself. */
report_write_fn report_json, report_text, report_folded, report_chrome, report_openmetrics,
    report_html, report_pprof;

#endif /* STALLTRACE_REPORT_H */

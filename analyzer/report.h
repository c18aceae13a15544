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

int report_json(FILE *out, struct m_process **procs, size_t n);
int report_text(FILE *out, struct m_process **procs, size_t n, const struct text_limits *lim);
int report_folded(FILE *out, struct m_process **procs, size_t n);
int report_chrome(FILE *out, struct m_process **procs, size_t n);
int report_openmetrics(FILE *out, struct m_process **procs, size_t n);
int report_html(FILE *out, struct m_process **procs, size_t n);

#endif /* STALLTRACE_REPORT_H */

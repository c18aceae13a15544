/* model.h - the report model: what one dump says about its process (threads,
 * loop figures, stalls with named stacks, sites, diagnosis), for any format. */
#ifndef STALLTRACE_MODEL_H
#define STALLTRACE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dump.h"
#include "symbolize.h"

/* Named frames, innermost first, recorder frames left out. */
struct m_stack {
    size_t n;
    const struct sym_frame **frames;
    bool truncated;                /* the recorder cut deeper frames */
};

struct m_sample {
    double at_ms;                  /* after the stall's start */
    struct m_stack stack;
};

struct m_stall {
    uint32_t tid;
    uint64_t iter_seq;
    double start_s, duration_ms;
    const char *call;              /* NULL: CPU-bound (no wrapped call) */
    bool in_progress;              /* still running when a killed process stopped */
    struct m_stack stack;
    struct m_sample *samples;
    size_t nsamples;
    size_t site;                   /* index into m_process.sites */
};

struct m_slow_call {
    uint32_t tid;
    const char *call;
    double start_s, duration_ms;
    uint64_t object;
    struct m_stack stack;
};

struct m_loop {
    uint64_t iterations;
    double busy_s, utilization, p50_ms, p99_ms, max_ms;
};

struct m_thread {
    uint32_t tid;
    char name[ST_NAME_MAX + 1];
    bool is_loop;
    bool exited;
    struct m_loop loop;            /* meaningful when is_loop */
};

/* Stalls grouped by where they blocked: call + named stack. */
struct m_site {
    const char *call;
    struct m_stack stack;          /* borrowed from its first stall */
    size_t count;
    double max_ms, total_ms;
};

struct m_diagnosis {
    const char *culprit;           /* "event_loop_blocking", ... */
    char *summary;                 /* one sentence */
};

struct m_process {
    const struct dump *dump;
    struct symbolizer *sym;
    int32_t pid, parent_pid;
    const char *exe;
    int argc;
    char **argv;
    double duration_s, threshold_ms;
    bool complete;
    uint64_t dropped;
    uint32_t end_reason;
    int32_t end_signal;

    struct m_thread *threads;
    size_t nthreads;
    struct m_stall *stalls;        /* by start time */
    size_t nstalls;
    struct m_slow_call *slow_calls;
    size_t nslow_calls;
    struct m_site *sites;          /* by total time, largest first */
    size_t nsites;
    struct m_diagnosis *diagnosis;
    size_t ndiagnosis;
};

struct model_options {
    double threshold_ms;           /* drop stalls shorter than this; < 0: keep all */
    bool native_only;              /* accepted; raw native stacks (no effect yet) */
    const char *perf_map_dir;      /* NULL: /tmp */
};

/* Build the model of a loaded dump; NULL only when out of memory. */
struct m_process *model_build(const struct dump *d, const struct model_options *opt);
void model_free(struct m_process *p);

/* Quantile q (0..1) in ns of a busy-time histogram, interpolated within its
 * bucket and never above max_ns (when max_ns > 0). 0 for an empty one. */
double model_hist_quantile(const uint64_t *hist, uint64_t max_ns, double q);

/* libc, the dynamic loader, the recorder or interpreter machinery: frames a
 * person does not want named as the place that blocked. */
bool model_frame_is_plumbing(const struct sym_frame *f);

/* "function (file:line)", "function (module)" or "0x1234 (module)". */
void model_frame_describe(const struct sym_frame *f, char *buf, size_t len);

/* Human durations: "0.40 ms", "3.5 ms", "301 ms", "1.2 s". */
void model_fmt_ms(char *buf, size_t len, double ms);

/* The base name of a path (the part after the last '/'). */
const char *model_basename(const char *path);

#endif /* STALLTRACE_MODEL_H */

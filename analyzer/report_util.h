/* report_util.h - small helpers the export formats and the gates share:
 * frame labels, the stack top worth naming, loading dumps, thread lookup. */
#ifndef STALLTRACE_REPORT_UTIL_H
#define STALLTRACE_REPORT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "model.h"

/* Dumps loaded and modelled together: one bad dump fails the whole set. */
struct loaded_dumps {
    struct dump **dumps;
    struct m_process **procs;
    size_t n;
};

/* Load and model every path; on failure prints one line to stderr, frees
 * what was loaded and returns 2 (0 on success). opt NULL: every stall. */
int load_dumps(char **paths, size_t n, const struct model_options *opt, struct loaded_dumps *out);
void free_loaded_dumps(struct loaded_dumps *l);

/* A frame's name for tools that merge frames by name: the function, else
 * "[module]", else "[unknown]". Never contains ';' or a newline. */
void frame_label(const struct sym_frame *f, char *buf, size_t len);

/* The innermost frame a person should look at (the first that is not libc or
 * interpreter plumbing), described as "function (file:line)"; falls back to
 * the innermost frame; "(no stack)" for an empty one. */
void stack_top_describe(const struct m_stack *s, char *buf, size_t len);

const struct m_thread *thread_by_tid(const struct m_process *p, uint32_t tid);

/* The recorder's table entry of a thread (busy histogram), or NULL. */
const struct st_thread *dump_thread_by_tid(const struct m_process *p, uint32_t tid);

/* The stack a stall's time is charged to in flame graphs; for a CPU-bound
 * stall with samples, *nsamples > 0 and the time is split over them. */
const struct m_stack *stall_stack(const struct m_stall *st, size_t *nsamples);

/* Bytes outside printable ASCII become '?', so names from a hostile dump
 * cannot break a line-based format or an XML/HTML document. */
void sanitize_ascii(char *s);

/* The program as its user knows it: the script or module an interpreter ran
 * (uvicorn, app.py), else argv[0] as run (redis-server, not the
 * redis-check-rdb it links to), else the executable. */
/* Why a stall's stack is empty (for text and JSON alike); NULL when it is not. */
const char *stall_stack_note(const struct m_process *p, const char *call, const struct m_stack *s);

void program_name(const struct m_process *p, char *buf, size_t len);

/* The analyzer's one number parser, for every option: a non-negative
 * number (ms, s, %, ratio, MiB) of at most max; false when malformed, and
 * then out is left as it was. */
bool parse_number(const char *s, double max, double *out);

/* A busy process can record a slow call every few ms for hours: reports list
 * at most `max` of them, the longest, in time order. Returns how many are in
 * *out (to be freed), or (size_t)-1 when out of memory. */
size_t longest_slow_calls(const struct m_process *p, size_t max, const struct m_slow_call ***out);

#endif /* STALLTRACE_REPORT_UTIL_H */

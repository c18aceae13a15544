/* annotate.h - the optional annotation API: a program or runtime binding marks
 * tasks submitted to a named queue, started and finished, for exact queue wait.
 *
 * Usage:
 *
 *     #include <stalltrace/annotate.h>
 *     stalltrace_task_submitted("jobs", (uint64_t)(uintptr_t)job);   // producer, before the hand-off
 *     stalltrace_task_started("jobs", (uint64_t)(uintptr_t)job);     // worker, when it takes the job
 *     stalltrace_task_finished("jobs", (uint64_t)(uintptr_t)job);    // worker, when the job is done
 *
 * How it links and what it costs without stalltrace: header only, nothing to
 * link. The recorder (libstalltrace.so) exports stalltrace_mark_submitted,
 * stalltrace_mark_started, stalltrace_mark_finished and
 * stalltrace_mark_discarded; this header declares them as *weak* undefined
 * references. A program run without the preload resolves them to NULL, and
 * each stalltrace_task_*() below is a load of a GOT entry and a not-taken
 * branch (about a nanosecond). Under `stalltrace run` (or LD_PRELOAD) the
 * dynamic loader binds them to the recorder's functions at start-up. This
 * needs the references to go through the GOT: position-independent code,
 * which is the default on Debian (PIE executables, shared libraries); a
 * non-PIE executable built with -fno-pic may have them resolved to NULL at
 * link time, i.e. the marks are silently off. Other languages (Python's
 * ctypes, ...) look the stalltrace_mark_* symbols up in the process and call
 * them when they exist.
 *
 * Arguments:
 *   queue    the queue's name, NUL-terminated; a task is known by (queue,
 *            task_id). Up to 47 bytes are kept; names are compared in full
 *            up to that length, so "db-pool" and "http-pool" are two queues.
 *            The same name always means the same queue in one process.
 *   task_id  any 64-bit value unique among the queue's tasks in flight (an
 *            address, a counter). Reusing it once the task finished (or was
 *            discarded) is fine; submitting an id still in flight replaces
 *            the earlier submission.
 *
 * Rules: call submitted before the task becomes visible to a worker (a start
 * seen before its submission counts as unmatched), started when a worker
 * takes it, finished when it ends (whatever the outcome); discarded when a
 * submitted task will never start (cancelled), so it leaves the in-flight
 * table. All four are thread-safe, async-signal-safe, never block, never
 * allocate and never fail the program: a full table is counted in the dump,
 * never reported as an error. A mark the recorder cannot pair is counted as
 * unmatched.
 */
#ifndef STALLTRACE_ANNOTATE_H
#define STALLTRACE_ANNOTATE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The recorder's entry points (weak: NULL when stalltrace is not loaded). */
extern void stalltrace_mark_submitted(const char *queue, uint64_t task_id) __attribute__((weak));
extern void stalltrace_mark_started(const char *queue, uint64_t task_id) __attribute__((weak));
extern void stalltrace_mark_finished(const char *queue, uint64_t task_id) __attribute__((weak));
extern void stalltrace_mark_discarded(const char *queue, uint64_t task_id) __attribute__((weak));

/* 1 when the recorder is loaded and the marks go somewhere. */
static inline int stalltrace_annotations_active(void)
{
    return stalltrace_mark_submitted != 0;
}

/* The task was handed to the queue (producer side). */
static inline void stalltrace_task_submitted(const char *queue, uint64_t task_id)
{
    if (stalltrace_mark_submitted)
        stalltrace_mark_submitted(queue, task_id);
}

/* A worker took the task: its queue wait ends here. */
static inline void stalltrace_task_started(const char *queue, uint64_t task_id)
{
    if (stalltrace_mark_started)
        stalltrace_mark_started(queue, task_id);
}

/* The task ended (returned, failed or raised): its run time ends here. */
static inline void stalltrace_task_finished(const char *queue, uint64_t task_id)
{
    if (stalltrace_mark_finished)
        stalltrace_mark_finished(queue, task_id);
}

/* The task was submitted but will never start (cancelled, queue dropped). */
static inline void stalltrace_task_discarded(const char *queue, uint64_t task_id)
{
    if (stalltrace_mark_discarded)
        stalltrace_mark_discarded(queue, task_id);
}

#ifdef __cplusplus
}
#endif

#endif /* STALLTRACE_ANNOTATE_H */

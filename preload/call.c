/* call.c - the slow path of a wrapped blocking call: it took long enough
 * to be worth a stack. Inside a loop iteration it may become
 * the stall's culprit; elsewhere, past the threshold, it is a slow call.
 */
#include "recorder.h"

/* The entry of this call's kind; a new kind takes a free entry, or the
 * smallest one's if it already took longer than that one in all. */
static struct st_iter_call *iter_call_entry(struct st_tls *t, uint16_t call, uint64_t elapsed)
{
    unsigned smallest = 0;
    for (unsigned i = 0; i < t->ncalls; i++) {
        if (t->calls[i].call == call)
            return &t->calls[i];
        if (t->calls[i].total_ns < t->calls[smallest].total_ns)
            smallest = i;
    }
    struct st_iter_call *e;
    if (t->ncalls < ST_STALL_CALLS)
        e = &t->calls[t->ncalls++];
    else if (t->calls[smallest].total_ns < elapsed)
        e = &t->calls[smallest];
    else
        return NULL;
    e->call = call;
    e->count = 0;
    e->total_ns = e->max_ns = 0;
    return e;
}

static void note_call(struct st_tls *t, uint16_t call, uint64_t elapsed, void *real_fn)
{
    t->calls_ns += elapsed;
    struct st_iter_call *e = iter_call_entry(t, call, elapsed);
    if (e == NULL)
        return;
    if (e->count < UINT16_MAX)
        e->count++;
    e->total_ns += elapsed;
    if (elapsed > e->max_ns) {
        e->max_ns = elapsed;
        st_capture_here(&e->stack, real_fn);
    }
}

void st_call_slow(uint16_t call, uint64_t start_ns, uint64_t elapsed, void *real_fn)
{
    struct st_tls *t = &st_tls;
    if (!st_recording())
        return;
    int saved_errno = st_recorder_enter(t);
    /* Before a thread's first loop wait its slow calls count toward its
     * first iteration (loop.c) and, in case none comes, are slow calls. */
    if (t->in_iteration || t->pre_iteration)
        note_call(t, call, elapsed, real_fn);
    if (!t->in_iteration && elapsed >= st_rec.threshold_ns && t->start_routine != 0) {
        /* Only threads someone started to do work (pool workers and the
         * like): a main thread waiting for its child is no news. */
        struct st_captured c;
        st_capture_here(&c, real_fn);
        st_emit_slow_call(t, call, start_ns, elapsed, 0, &c);
    }
    st_recorder_leave(t, saved_errno);
}

/* From a fast path, which measured in ticks: the precise figures. */
void st_call_slow_ticks(uint16_t call, uint64_t elapsed_ticks, void *real_fn)
{
    int saved_errno = errno;
    uint64_t elapsed = st_clock_to_ns(&st_hot.clock, elapsed_ticks), now = st_now_ns();
    if (elapsed >= st_rec.slow_bar_ns && elapsed <= now)
        st_call_slow(call, now - elapsed, elapsed, real_fn);
    errno = saved_errno;
}

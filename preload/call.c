/* call.c - the slow path of a wrapped blocking call: it took long enough
 * to be worth a stack. Inside a loop iteration it may become
 * the stall's culprit; elsewhere, past the threshold, it is a slow call.
 */
#include "recorder.h"

void st_call_slow(uint16_t call, uint64_t start_ns, uint64_t elapsed, void *real_fn)
{
    struct st_tls *t = &st_tls;
    t->busy++;
    if (t->in_iteration) {
        t->calls_ns += elapsed;
        if (elapsed > t->top_call_ns) {
            t->top_call = call;
            t->top_call_ns = elapsed;
            st_capture_here(&t->top_stack, real_fn);
        }
    } else if (elapsed >= st_rec.threshold_ns && t->start_routine != 0) {
        /* Only threads someone started to do work (pool workers and the
         * like): a main thread waiting for its child is no news. */
        struct st_captured c;
        st_capture_here(&c, real_fn);
        st_emit_slow_call(t, call, start_ns, elapsed, 0, &c);
    }
    t->busy--;
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

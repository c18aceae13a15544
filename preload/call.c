/* call.c - the slow path of a wrapped blocking call: it took long enough
 * (coarse clock) to be worth a stack. Inside a loop iteration it may become
 * the stall's culprit; elsewhere, past the threshold, it is a slow call.
 */
#include "recorder.h"

static int in_iteration(const struct st_tls *t)
{
    return t->is_loop && t->slot->live_iter_start_ns != 0;
}

void st_call_slow(uint16_t call, uint64_t t0, uint64_t elapsed, void *real_fn)
{
    struct st_tls *t = &st_tls;
    t->busy++;
    if (in_iteration(t)) {
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
        st_emit_slow_call(t, call, st_coarse_to_rel(t0), elapsed, 0, &c);
    }
    t->busy--;
}

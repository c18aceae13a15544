/* model_slow_calls.c - the slow-calls step of model_build(): blocking calls
 * of threads outside any loop iteration that took past the threshold. */
#include <stdlib.h>

#include "model_build.h"
#include "model_helpers.h"

/* A slow call its thread made before its first loop wait is recorded both
 * as a slow call and as part of the first iteration (preload/loop.c): the
 * stall has it. */
static bool inside_stall(const struct m_process *p, uint32_t tid, double start_s,
                         double duration_ms)
{
    for (size_t i = 0; i < p->nstalls; i++) {
        const struct m_stall *st = &p->stalls[i];
        if (st->tid == tid && start_s >= st->start_s - 1e-6 &&
            start_s + duration_ms / 1e3 <= st->start_s + st->duration_ms / 1e3 + 1e-6)
            return true;
    }
    return false;
}

int model_build_slow_calls(struct m_process *p, const struct dump *d)
{
    size_t i, n = 0;

    for (i = 0; i < d->nevents; i++)
        n += d->events[i].type == ST_REC_SLOW_CALL;
    p->slow_calls = calloc(n ? n : 1, sizeof(*p->slow_calls));
    if (!p->slow_calls)
        return -1;
    for (i = 0; i < d->nevents; i++) {
        const struct dump_event *e = &d->events[i];
        if (e->type != ST_REC_SLOW_CALL ||
            inside_stall(p, e->tid, (double)e->start_ns / 1e9, (double)e->duration_ns / 1e6))
            continue;
        struct m_slow_call *c = &p->slow_calls[p->nslow_calls++];
        c->tid = e->tid;
        c->call = model_call_name(e->call);
        c->start_s = (double)e->start_ns / 1e9;
        c->duration_ms = (double)e->duration_ns / 1e6;
        c->object = e->object;
        if (model_make_stack(p, &e->stack, e->start_ns, &c->stack) < 0)
            return -1;
    }
    return 0;
}

void model_free_slow_calls(struct m_process *p)
{
    for (size_t i = 0; i < p->nslow_calls; i++)
        free(p->slow_calls[i].stack.frames);
    free(p->slow_calls);
}

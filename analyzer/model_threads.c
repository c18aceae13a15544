/* model_threads.c - step one of model_build(): a model thread per slot of
 * the dump's thread table, with its loop figures from the busy histogram. */
#include <stdio.h>
#include <stdlib.h>

#include "model_build.h"
#include "model_helpers.h"

int model_build_threads(struct m_process *p, const struct dump *d)
{
    uint32_t i;

    p->threads = calloc(d->nthreads ? d->nthreads : 1, sizeof(*p->threads));
    if (!p->threads)
        return -1;
    for (i = 0; i < d->nthreads; i++) {
        const struct st_thread *t = &d->threads[i];
        struct m_thread *m = &p->threads[p->nthreads++];

        m->tid = t->tid;
        snprintf(m->name, sizeof(m->name), "%s", t->name);
        m->is_loop = (t->flags & ST_THREAD_LOOP) != 0;
        m->exited = (t->flags & ST_THREAD_EXITED) != 0;
        m->pool = -1;
        m->loop.iterations = t->iterations;
        m->loop.stalls = t->stalls;
        m->loop.busy_s = (double)t->busy_ns / 1e9;
        double all = (double)t->busy_ns + (double)t->idle_ns;
        m->loop.utilization = all > 0 ? (double)t->busy_ns / all : 0;
        m->loop.p50_ms = model_hist_quantile(t->busy_hist, t->max_busy_ns, 0.50) / 1e6;
        m->loop.p99_ms = model_hist_quantile(t->busy_hist, t->max_busy_ns, 0.99) / 1e6;
        m->loop.max_ms = (double)t->max_busy_ns / 1e6;
    }
    return 0;
}

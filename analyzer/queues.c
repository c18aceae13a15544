/* queues.c - task queues marked through the annotation API: counts, queue-wait
 * and run-time distributions, long waits with the submitter's stack, and the
 * pool whose workers ran each queue's tasks.
 *
 * Matching a queue to a pool: the recorder notes (by thread slot) every thread
 * that started one of the queue's tasks; the queue belongs to the pool with
 * the most of those threads among its workers. That holds whatever the
 * workers idle on (a condvar, a semaphore, CPython 3.13's per-thread parking
 * lot) and needs no name. A queue whose workers form no pool stays on its own.
 *
 * Exactness: every paired task's wait is measured (exact: true). The long
 * waits (>= threshold) each have a record with the wait to the nanosecond;
 * when none of those records was lost, quantiles that fall among them are
 * those exact values, and lower ones come from the histogram (12.5% buckets).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "model_build.h"

static uint64_t hist_total(const uint64_t *hist)
{
    uint64_t n = 0;
    for (unsigned b = 0; b < ST_HIST_BUCKETS; b++)
        n += hist[b];
    return n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A distribution from a histogram plus, optionally, the exact values of its
 * top `nexact` members (sorted ascending). */
static struct m_dist make_dist(const uint64_t *hist, uint64_t max_ns, uint64_t total_ns,
                               const double *exact_ms, size_t nexact)
{
    struct m_dist r = {0};
    static const double qs[2] = {0.50, 0.99};
    double *out[2] = {&r.p50_ms, &r.p99_ms};

    r.count = hist_total(hist);
    if (r.count == 0)
        return r;
    r.known = true;
    r.exact = true;
    r.max_ms = (double)max_ns / 1e6;
    r.total_ms = (double)total_ns / 1e6;
    if (nexact > r.count)
        nexact = 0;            /* inconsistent: trust the histogram alone */
    for (int i = 0; i < 2; i++) {
        /* Nearest rank, 1-based. */
        uint64_t k = (uint64_t)ceil(qs[i] * (double)r.count);
        if (k < 1)
            k = 1;
        if (nexact > 0 && k > r.count - nexact)
            *out[i] = exact_ms[k - (r.count - nexact) - 1];
        else
            *out[i] = model_hist_quantile(hist, max_ns, qs[i]) / 1e6;
    }
    if (nexact > 0)
        r.max_ms = exact_ms[nexact - 1] > r.max_ms ? exact_ms[nexact - 1] : r.max_ms;
    return r;
}

static int cmp_long(const void *a, const void *b)
{
    const struct m_task_wait *x = a, *y = b;
    return (x->submit_s > y->submit_s) - (x->submit_s < y->submit_s);
}

static bool bit_set(const uint64_t *bits, uint32_t i)
{
    return i < ST_THREAD_BITS && (bits[i / 64] >> (i % 64)) & 1;
}

static int queue_long_waits(struct m_process *p, const struct dump *d, struct m_queue *q)
{
    size_t cap = 0;

    for (size_t i = 0; i < d->nevents; i++) {
        const struct dump_event *ev = &d->events[i];
        if (ev->type != ST_REC_TASK_WAIT || ev->queue != q->slot)
            continue;
        if (GROW(q->longs, cap, q->nlong + 1, 16) < 0)
            return -1;
        struct m_task_wait *w = &q->longs[q->nlong++];
        memset(w, 0, sizeof(*w));
        w->task_id = ev->task_id;
        w->submit_tid = ev->submit_tid;
        w->worker_tid = ev->tid;
        w->submit_s = (double)ev->start_ns / 1e9;
        w->start_s = (double)(ev->start_ns + ev->duration_ns) / 1e9;
        w->wait_ms = (double)ev->duration_ns / 1e6;
        w->stack_kind = ev->stack_kind == ST_TASK_STACK_OWN      ? "own"
                        : ev->stack_kind == ST_TASK_STACK_SHARED ? "shared"
                                                                 : NULL;
        if (ev->stack.nframes || ev->stack.npython)
            if (model_make_stack(p, &ev->stack, ev->stack_at_ns, &w->stack) < 0)
                return -1;
    }
    if (q->nlong > 1)
        qsort(q->longs, q->nlong, sizeof(*q->longs), cmp_long);
    q->long_complete = q->nlong == q->long_waits;
    return 0;
}

/* Sorted exact waits of the long waits of queues[idx[0..n)], or NULL (none,
 * or some record was lost so ranks cannot be placed). */
static double *exact_waits(const struct m_process *p, const size_t *idx, size_t n, size_t *count)
{
    size_t total = 0, k = 0;

    *count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!p->queues[idx[i]].long_complete)
            return NULL;
        total += p->queues[idx[i]].nlong;
    }
    double *v = malloc((total ? total : 1) * sizeof(*v));
    if (!v)
        return NULL;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < p->queues[idx[i]].nlong; j++)
            v[k++] = p->queues[idx[i]].longs[j].wait_ms;
    qsort(v, k, sizeof(*v), cmp_double);
    *count = k;
    return v;
}

/* The merged distributions of the queues idx[0..n). */
static void merged(const struct m_process *p, const struct dump *d, const size_t *idx, size_t n,
                   struct m_dist *wait, struct m_dist *run)
{
    uint64_t wh[ST_HIST_BUCKETS] = {0}, rh[ST_HIST_BUCKETS] = {0};
    uint64_t wmax = 0, rmax = 0, wsum = 0, rsum = 0;
    size_t nexact;

    for (size_t i = 0; i < n; i++) {
        const struct st_queue *raw = &d->queues[idx[i]];
        for (unsigned b = 0; b < ST_HIST_BUCKETS; b++) {
            wh[b] += raw->wait_hist[b];
            rh[b] += raw->run_hist[b];
        }
        wmax = raw->max_wait_ns > wmax ? raw->max_wait_ns : wmax;
        rmax = raw->max_run_ns > rmax ? raw->max_run_ns : rmax;
        wsum += raw->wait_ns;
        rsum += raw->run_ns;
    }
    double *exact = exact_waits(p, idx, n, &nexact);
    *wait = make_dist(wh, wmax, wsum, exact, exact ? nexact : 0);
    *run = make_dist(rh, rmax, rsum, NULL, 0);
    free(exact);
}

/* The Python hook names its queues "label#kind:max" (sitecustomize.py):
 * what the pool is and the most threads it may start. Strips the suffix
 * from q->name when it is one of those. */
static void take_pool_suffix(struct m_queue *q)
{
    static const char *const kinds[] = {"cpython-executor", "anyio", "twisted"};
    char *hash = strrchr(q->name, '#');
    char *colon = hash ? strchr(hash, ':') : NULL;

    if (!hash || !colon)
        return;
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        if ((size_t)(colon - hash - 1) != strlen(kinds[k]) || strncmp(hash + 1, kinds[k], strlen(kinds[k])) != 0)
            continue;
        unsigned long most = 0;
        const char *c = colon + 1;
        for (; *c >= '0' && *c <= '9' && most < 1000000; c++)
            most = most * 10 + (unsigned long)(*c - '0');
        if (*c != '\0')
            return;
        q->pool_kind = kinds[k];
        q->max_threads = (uint32_t)most;
        *hash = '\0';
        return;
    }
}

int model_build_queues(struct m_process *p, const struct dump *d)
{
    p->queues = calloc(d->nqueues ? d->nqueues : 1, sizeof(*p->queues));
    if (!p->queues)
        return -1;
    for (uint32_t i = 0; i < d->nqueues; i++) {
        const struct st_queue *raw = &d->queues[i];
        struct m_queue *q = &p->queues[p->nqueues++];

        memcpy(q->name, raw->name, ST_QUEUE_NAME_MAX);
        q->name[ST_QUEUE_NAME_MAX] = '\0';
        take_pool_suffix(q);
        q->slot = d->queue_slots[i];
        q->pool = -1;
        q->submitted = raw->submitted;
        q->started = raw->started;
        q->finished = raw->finished;
        q->discarded = raw->discarded;
        q->unmatched = raw->unmatched;
        q->long_waits = raw->long_waits;
        q->peak_running = raw->peak_running;
        q->waiting = raw->submitted > raw->started + raw->discarded
                         ? raw->submitted - raw->started - raw->discarded : 0;
        q->running = raw->started > raw->finished ? raw->started - raw->finished : 0;
        q->workers = calloc(d->nthreads ? d->nthreads : 1, sizeof(*q->workers));
        if (!q->workers)
            return -1;
        for (uint32_t t = 0; t < d->nthreads; t++)
            if (bit_set(raw->worker_bits, d->thread_slots[t]))
                q->workers[q->nworkers++] = d->threads[t].tid;
        if (queue_long_waits(p, d, q) < 0)
            return -1;
        size_t self = i;
        merged(p, d, &self, 1, &q->wait, &q->run);

        /* The pool with the most of its workers. */
        size_t best = 0;
        for (size_t k = 0; k < p->npools; k++) {
            const struct m_pool *pool = &p->pools[k];
            size_t overlap = 0;
            for (size_t a = 0; a < pool->nthreads; a++)
                for (size_t b = 0; b < q->nworkers; b++)
                    overlap += pool->tids[a] == q->workers[b];
            if (overlap > best) {
                best = overlap;
                q->pool = pool->id;
            }
        }
    }
    for (size_t k = 0; k < p->npools; k++) {
        struct m_pool *pool = &p->pools[k];
        pool->queues = calloc(p->nqueues ? p->nqueues : 1, sizeof(*pool->queues));
        if (!pool->queues)
            return -1;
        for (size_t i = 0; i < p->nqueues; i++)
            if (p->queues[i].pool == pool->id)
                pool->queues[pool->nqueues++] = i;
        if (pool->nqueues)
            merged(p, d, pool->queues, pool->nqueues, &pool->queue_wait, &pool->run);
    }
    return 0;
}

void model_free_queues(struct m_process *p)
{
    for (size_t i = 0; i < p->nqueues; i++) {
        for (size_t j = 0; j < p->queues[i].nlong; j++)
            free(p->queues[i].longs[j].stack.frames);
        free(p->queues[i].longs);
        free(p->queues[i].workers);
    }
    free(p->queues);
    for (size_t k = 0; k < p->npools; k++)
        free(p->pools[k].queues);
}

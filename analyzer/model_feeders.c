/* model_feeders.c - who filled a saturated pool: the submissions the recorder
 * saw queue up, grouped per pool by their culprit frame, and the queue wait they imply.
 */
#include <stdlib.h>
#include <string.h>

#include "model_build.h"

static bool pool_has_object(const struct m_pool *pool, uint64_t object)
{
    for (size_t i = 0; i < pool->nobjects; i++)
        if (pool->objects[i] == object)
            return true;
    return false;
}

/* A wake that took the pool's last idle worker filled it only if a span
 * with none idle began right after (the woken worker's return marks its
 * start); within the threshold, or a few ms on a loaded machine. */
static bool began_saturation(const struct m_process *p, const struct m_pool *pool, uint64_t at_ns)
{
    double at_s = (double)at_ns / 1e9, within_s = p->threshold_ms / 1e3;
    for (size_t i = 0; i < pool->nsaturations; i++) {
        const struct m_span *s = &pool->saturations[i];
        if (!s->retroactive && s->start_s >= at_s - 0.001 && s->start_s <= at_s + within_s)
            return true;
    }
    return false;
}

static int cmp_feeder(const void *a, const void *b)
{
    const struct m_feeder *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return strcmp(x->where, y->where);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The queued tasks of one drain epoch: n fed since the last drain (epoch[]
 * are those with a record, the first of them, in order), the queue empty
 * again at drain_ns. Workers busy all along pick up the k-th of them at
 * the k-th task that ends, and the (n+1)-th ends with nothing left: the
 * drain. With those ends taken evenly spaced from the first feed to the
 * drain, the k-th waited from its feed to first + (drain - first) * k / (n + 1). */
static void epoch_waits(const struct dump *d, const size_t *epoch, size_t nepoch, uint64_t n,
                        uint64_t drain_ns, double *waits, size_t *nwaits)
{
    if (nepoch == 0)
        return;
    if (n < nepoch)
        n = nepoch;
    uint64_t first = d->events[epoch[0]].at_ns;
    double span = drain_ns > first ? (double)(drain_ns - first) : 0;
    for (size_t k = 0; k < nepoch; k++) {
        double pick = (double)first + span * (double)(k + 1) / (double)(n + 1);
        double at = (double)d->events[epoch[k]].at_ns;
        waits[(*nwaits)++] = pick > at ? (pick - at) / 1e6 : 0;
    }
}

/* Queue waits of the feeds of one work queue, epoch by epoch; feeds after
 * the last drain (still queued when the recording ended) have none. */
static void object_waits(const struct dump *d, uint64_t object, size_t *epoch, double *waits,
                         size_t *nwaits)
{
    size_t nepoch = 0;
    for (size_t i = 0; i < d->nevents; i++) {
        const struct dump_event *e = &d->events[i];
        if (e->object != object)
            continue;
        if (e->type == ST_REC_POOL_FEED && !(e->feed_flags & ST_FEED_LAST_IDLE))
            epoch[nepoch++] = i;
        else if (e->type == ST_REC_POOL_DRAIN) {
            epoch_waits(d, epoch, nepoch, e->count, e->at_ns, waits, nwaits);
            nepoch = 0;
        }
    }
}

/* Without an exact figure from annotated queues, the feeds give an
 * estimate of how long their tasks waited: what SPEC.md's
 * queue_wait_ms.exact = false stands for. */
static void estimate_queue_wait(struct m_pool *pool, double *waits, size_t n)
{
    if (pool->queue_wait.known || n == 0)
        return;
    qsort(waits, n, sizeof(*waits), cmp_double);
    struct m_dist *w = &pool->queue_wait;
    w->known = true;
    w->exact = false;
    w->count = n;
    w->p50_ms = waits[(n - 1) / 2];
    w->p99_ms = waits[(size_t)((double)(n - 1) * 0.99)];
    w->max_ms = waits[n - 1];
    for (size_t i = 0; i < n; i++)
        w->total_ms += waits[i];
}

static int build_pool(struct m_process *p, const struct dump *d, struct m_pool *pool)
{
    size_t nfeeds = 0, since_drain = 0, nwaits = 0;

    for (size_t i = 0; i < d->nevents; i++)
        nfeeds += d->events[i].type == ST_REC_POOL_FEED && pool_has_object(pool, d->events[i].object);
    if (nfeeds == 0)
        return 0;
    pool->fed_by = calloc(nfeeds, sizeof(*pool->fed_by));
    double *waits = calloc(nfeeds, sizeof(*waits));
    size_t *epoch = calloc(nfeeds, sizeof(*epoch));
    if (!pool->fed_by || !waits || !epoch) {
        free(waits);
        free(epoch);
        return -1;
    }
    for (size_t i = 0; i < pool->nobjects; i++)
        object_waits(d, pool->objects[i], epoch, waits, &nwaits);
    free(epoch);
    for (size_t i = 0; i < d->nevents; i++) {
        const struct dump_event *e = &d->events[i];
        if (!pool_has_object(pool, e->object))
            continue;
        if (e->type == ST_REC_POOL_DRAIN) {
            pool->fed_total += e->count;
            since_drain = 0;
            continue;
        }
        if (e->type != ST_REC_POOL_FEED)
            continue;
        if (e->feed_flags & ST_FEED_LAST_IDLE) {
            /* It found a worker; its task did not wait. */
            if (!began_saturation(p, pool, e->at_ns))
                continue;
            pool->fed_total++;
        } else {
            since_drain++;
        }
        struct m_stack st;
        if (model_make_stack(p, &e->stack, e->at_ns, &st) < 0) {
            free(waits);
            return -1;
        }
        /* The culprit frame and the user's frame that called it. */
        char where[400] = "";
        if (frames_culprit(&st) != SIZE_MAX)
            frames_where(&st, where, sizeof(where));
        struct m_feeder *g = NULL;
        for (size_t k = 0; k < pool->nfed_by && !g; k++)
            if (strcmp(pool->fed_by[k].where, where) == 0)
                g = &pool->fed_by[k];
        if (g) {
            g->count++;
            free(st.frames);
            continue;
        }
        g = &pool->fed_by[pool->nfed_by];
        g->where = strdup(where);
        if (!g->where) {
            free(st.frames);
            free(waits);
            return -1;
        }
        pool->nfed_by++;
        g->count = 1;
        g->tid = e->tid;
        g->thread = model_thread_name(p, e->tid);
        g->call = model_call_name(e->call);
        g->stack = st;
    }
    /* Feeds after the last drain are in no drain's count yet. */
    pool->fed_total += since_drain;
    /* A pool that was never out of workers for a threshold had nothing that
     * filled it: a task that queued a moment is no news (a healthy run). */
    if (pool->nsaturations == 0) {
        for (size_t k = 0; k < pool->nfed_by; k++) {
            free(pool->fed_by[k].where);
            free(pool->fed_by[k].stack.frames);
        }
        pool->nfed_by = 0;
        pool->fed_total = 0;
    }
    qsort(pool->fed_by, pool->nfed_by, sizeof(*pool->fed_by), cmp_feeder);
    estimate_queue_wait(pool, waits, nwaits);
    free(waits);
    return 0;
}

int model_build_feeders(struct m_process *p, const struct dump *d)
{
    for (size_t i = 0; i < p->npools; i++)
        if (build_pool(p, d, &p->pools[i]) < 0)
            return -1;
    return 0;
}

void model_free_feeders(struct m_process *p)
{
    for (size_t i = 0; i < p->npools; i++) {
        for (size_t j = 0; j < p->pools[i].nfed_by; j++) {
            free(p->pools[i].fed_by[j].where);
            free(p->pools[i].fed_by[j].stack.frames);
        }
        free(p->pools[i].fed_by);
    }
}

/* pools.c - thread pools from the dump's object table: which objects are work
 * queues, who works on them, when all were busy at once and on what. */
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "model_build.h"

/* A worker that never had to wait for work never idles on its queue, so
 * the recorder cannot see it there; a thread with the same start routine,
 * created within this long of the pool's known workers, is taken as one. */
#define SAME_BATCH_NS 250000000ull

/* A pool while it is being put together: indices into d->threads. */
struct draft {
    const struct st_object **objs;
    size_t nobjs;
    size_t *threads;
    size_t nthreads;
    size_t added;                  /* threads joined by start routine */
};

bool model_is_futex_parker(const struct st_object *o)
{
    return o->kind == ST_OBJ_COND && (o->flags & ST_OBJ_FUTEX_SEEN) && o->members < 2;
}

static bool bit_set(const uint64_t *bits, uint32_t i)
{
    return i < ST_THREAD_BITS && (bits[i / 64] >> (i % 64) & 1) != 0;
}

/* SPEC.md's work queue: a cond or sem that threads wait on without a timeout
 * and that some thread which never waits on it wakes. Timed waits that keep
 * retrying (the GIL) and semaphores posted by their holders (a lock) are not. */
static bool is_work_queue(const struct st_object *o)
{
    unsigned i;

    if (o->kind != ST_OBJ_COND && o->kind != ST_OBJ_SEM)
        return false;
    if ((o->flags & ST_OBJ_TIMED_RETRY) || o->members == 0 || o->handoffs == 0)
        return false;
    if (model_is_futex_parker(o))
        return false;
    for (i = 0; i < ST_THREAD_BITS / 64; i++)
        if (o->waker_bits[i] & ~o->member_bits[i])
            return true;
    return false;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_draft(const void *a, const void *b)
{
    const struct draft *x = a, *y = b;
    /* Drafts are never empty; their threads are sorted. */
    return cmp_size(&x->threads[0], &y->threads[0]);
}

static int add_thread(struct draft *dr, size_t idx)
{
    if (GROW_ONE(dr->threads, dr->nthreads) < 0)
        return -1;
    dr->threads[dr->nthreads++] = idx;
    return 0;
}

static void free_drafts(struct draft *drafts, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(drafts[i].objs);
        free(drafts[i].threads);
    }
    free(drafts);
}

/* Longest total wait first: a worker belongs to the queue it idled on most
 * (on 3.13 a worker may park on several semaphores of its own). */
static int by_wait_desc(const void *a, const void *b)
{
    const struct st_object *x = *(const struct st_object *const *)a;
    const struct st_object *y = *(const struct st_object *const *)b;
    return x->wait_ns < y->wait_ns ? 1 : x->wait_ns > y->wait_ns ? -1 : 0;
}

/* The one member of a queue, or -1. */
static long sole_member(const long *at_slot, uint32_t nslots, const struct st_object *o)
{
    long found = -1;

    if (o->members != 1)
        return -1;
    for (uint32_t slot = 0; slot < nslots; slot++)
        if (bit_set(o->member_bits, slot))
            found = at_slot[slot];
    return found;
}

/* A queue left with one thread (its only member, or the one not taken by
 * a queue of its own) that never idled there a threshold at a time, or
 * less than that in all its life, was waited on for something else than
 * work: puma's reaper and trimmer sleep in timed waits and wait on theirs
 * only for the GVL; CPython 3.13's new threads wait once for their start.
 * Such a thread is no pool (though named alike, with others like it), and
 * starts none by its batch. */
static bool never_idled_alone(const struct dump *d, const struct draft *dr, const struct st_object *o)
{
    return dr->nthreads == 1 &&
           (o->long_waits == 0 || d->threads[dr->threads[0]].pool_idle_ns < d->hdr.threshold_ns);
}

/* The one thread that idles untimed on a condition of its own, or -1.
 * CRuby's threads sleep on one condition each (ConditionVariable#wait
 * parks there) and, when they stand in as the GVL's timer, wait on it in
 * timed retries too: such a condition is still the worker's queue when the
 * worker really idled there, a threshold at a time (as it waits for its
 * first job) and a threshold in all. puma's reaper and trimmer sleep in
 * timed waits and wait on theirs only for the GVL, briefly. */
static long own_parking(const struct dump *d, const long *at_slot, uint32_t nslots,
                        const struct st_object *o)
{
    long found = sole_member(at_slot, nslots, o);

    if (o->kind != ST_OBJ_COND || o->handoffs == 0 || o->long_waits == 0 || found < 0 ||
        d->threads[found].pool_idle_ns < d->hdr.threshold_ns)
        return -1;
    for (unsigned i = 0; i < ST_THREAD_BITS / 64; i++)
        if (o->waker_bits[i] & ~o->member_bits[i])
            return found;
    return -1;
}

/* One draft per work queue that has workers left once loop threads (busy
 * in their loop, not idle workers) and threads already taken are out. */
static int draft_queues(struct m_process *p, const struct dump *d, struct draft **out, size_t *nout)
{
    uint32_t nslots = d->hdr.thread_count < ST_THREAD_BITS ? d->hdr.thread_count : ST_THREAD_BITS;
    long *at_slot = malloc((nslots ? nslots : 1) * sizeof(*at_slot));
    bool *taken = calloc(d->nthreads ? d->nthreads : 1, sizeof(*taken));
    struct draft *drafts = calloc(d->nobjects ? d->nobjects : 1, sizeof(*drafts));
    const struct st_object **order = malloc((d->nobjects ? d->nobjects : 1) * sizeof(*order));
    size_t n = 0, i;
    uint32_t slot;
    char sym[320];
    bool py_runtime;

    if (!at_slot || !taken || !drafts || !order)
        goto fail;
    for (i = 0; i < d->nobjects; i++)
        order[i] = &d->objects[i];
    qsort(order, d->nobjects, sizeof(*order), by_wait_desc);
    for (slot = 0; slot < nslots; slot++)
        at_slot[slot] = -1;
    for (i = 0; i < d->nthreads; i++)
        if (d->thread_slots[i] < nslots)
            at_slot[d->thread_slots[i]] = (long)i;

    for (i = 0; i < d->nobjects; i++) {
        const struct st_object *o = order[i];
        struct draft *dr = &drafts[n];

        if (!is_work_queue(o) && own_parking(d, at_slot, nslots, o) < 0)
            continue;
        /* CPython's GIL hand-over (switch_cond) looks like a work queue. */
        model_data_symbol(p, o->addr, sym, sizeof(sym), &py_runtime);
        if (py_runtime)
            continue;
        for (slot = 0; slot < nslots; slot++) {
            long t = at_slot[slot];
            if (t < 0 || !bit_set(o->member_bits, slot) || taken[t] ||
                (d->threads[t].flags & ST_THREAD_LOOP))
                continue;
            if (add_thread(dr, (size_t)t) < 0)
                goto fail;
            taken[t] = true;
        }
        if (never_idled_alone(d, dr, o)) {
            taken[dr->threads[0]] = false;
            free(dr->threads);
            dr->threads = NULL;
            dr->nthreads = 0;
        }
        if (dr->nthreads == 0)
            continue;
        dr->objs = malloc(sizeof(*dr->objs));
        if (!dr->objs)
            goto fail;
        dr->objs[0] = o;
        dr->nobjs = 1;
        n++;
    }
    free(order);
    free(at_slot);
    free(taken);
    *out = drafts;
    *nout = n;
    return 0;
fail:
    free(order);
    free(at_slot);
    free(taken);
    free_drafts(drafts, d->nobjects);
    return -1;
}

/* A thread's name without its number: "pool-1-thread-" of "pool-1-thread-2",
 * "GC Thread#" of "GC Thread#0". */
static size_t name_stem(const char *name)
{
    size_t len = strnlen(name, ST_NAME_MAX);
    while (len > 0 && name[len - 1] >= '0' && name[len - 1] <= '9')
        len--;
    return len;
}

static bool same_stem(const struct st_thread *a, const struct st_thread *b)
{
    size_t len = name_stem(a->name);
    return len == name_stem(b->name) && strncmp(a->name, b->name, len) == 0;
}

/* CPython 3.13 parks each waiting thread on a semaphore of its own: an
 * executor of 4 shows as 4 queues of one worker each; so does Java's
 * ThreadPoolExecutor (each worker parks on its own). One-worker queues whose
 * workers share a start routine and a name but for its number are one pool:
 * a runtime starts all its threads at one routine (HotSpot's GC, compiler
 * and pool threads alike), and names them by what they do. */
static int merge_parked(const struct dump *d, struct draft *drafts, size_t *n)
{
    size_t i, j, k;

    for (i = 0; i < *n; i++) {
        struct draft *a = &drafts[i];
        uint64_t routine;
        if (a->nthreads != 1 || a->nobjs != 1)
            continue;
        const struct st_thread *first = &d->threads[a->threads[0]];
        routine = first->start_routine;
        if (routine == 0)
            continue;
        for (j = i + 1; j < *n;) {
            struct draft *b = &drafts[j];
            if (b->nthreads != 1 || b->nobjs != 1 || d->threads[b->threads[0]].start_routine != routine ||
                !same_stem(first, &d->threads[b->threads[0]])) {
                j++;
                continue;
            }
            if (GROW_ONE(a->objs, a->nobjs) < 0 || add_thread(a, b->threads[0]) < 0)
                return -1;
            a->objs[a->nobjs++] = b->objs[0];
            free(b->objs);
            free(b->threads);
            for (k = j; k + 1 < *n; k++)
                drafts[k] = drafts[k + 1];
            (*n)--;
        }
    }
    return 0;
}

/* Workers that never idled: same start routine, created in the same batch,
 * and named alike (a runtime starts its housekeeping threads at the same
 * routine as its workers, and with them: puma's reaper beside its pool). */
static int add_never_idle(const struct dump *d, struct draft *drafts, size_t n)
{
    bool *in_pool = calloc(d->nthreads ? d->nthreads : 1, sizeof(*in_pool));
    size_t i, j, t;

    if (!in_pool)
        return -1;
    for (i = 0; i < n; i++)
        for (j = 0; j < drafts[i].nthreads; j++)
            in_pool[drafts[i].threads[j]] = true;
    for (i = 0; i < n; i++) {
        struct draft *dr = &drafts[i];
        const struct st_thread *first = &d->threads[dr->threads[0]];
        uint64_t routine = first->start_routine, lo = first->created_ns, hi = lo;
        size_t known = dr->nthreads;

        for (j = 0; j < known; j++) {
            const struct st_thread *w = &d->threads[dr->threads[j]];
            if (w->start_routine != routine)
                routine = 0;       /* workers of mixed origins: no batch to match */
            lo = w->created_ns < lo ? w->created_ns : lo;
            hi = w->created_ns > hi ? w->created_ns : hi;
        }
        if (routine == 0)
            continue;
        lo = lo > SAME_BATCH_NS ? lo - SAME_BATCH_NS : 0;
        hi = hi + SAME_BATCH_NS;
        for (t = 0; t < d->nthreads; t++) {
            const struct st_thread *c = &d->threads[t];
            if (in_pool[t] || c->start_routine != routine || (c->flags & (ST_THREAD_LOOP | ST_THREAD_MAIN)) ||
                c->created_ns < lo || c->created_ns > hi || !same_stem(first, c))
                continue;
            if (add_thread(dr, t) < 0) {
                free(in_pool);
                return -1;
            }
            in_pool[t] = true;
            dr->added++;
        }
        qsort(dr->threads, dr->nthreads, sizeof(*dr->threads), cmp_size);
    }
    free(in_pool);
    return 0;
}

/* ---- Saturation ----------------------------------------------------------- */

static int cmp_span(const void *a, const void *b)
{
    const struct m_span *x = a, *y = b;
    if (x->start_s != y->start_s)
        return x->start_s < y->start_s ? -1 : 1;
    return x->duration_ms < y->duration_ms ? -1 : x->duration_ms > y->duration_ms;
}

static int push_span(struct m_span **spans, size_t *n, const struct m_span *s)
{
    if (GROW_ONE(*spans, *n) < 0)
        return -1;
    (*spans)[(*n)++] = *s;
    return 0;
}

/* The recorded spans of one work queue, plus the one still open when a
 * killed process stopped; sorted by start. */

static uint32_t members_started_before(const struct dump *d, const struct st_object *o,
                                       uint64_t end_ns, uint32_t recorded)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < d->nthreads; i++) {
        uint32_t bit = d->thread_slots[i];
        if (bit < ST_THREAD_BITS && (o->member_bits[bit / 64] >> (bit % 64) & 1) &&
            d->threads[i].created_ns < end_ns)
            n++;
    }
    return n > recorded ? n : recorded;
}

static int object_spans(const struct m_process *p, const struct dump *d, const struct st_object *o,
                        struct m_span **spans, size_t *n)
{
    size_t i;

    *spans = NULL;
    *n = 0;
    for (i = 0; i < d->nevents; i++) {
        const struct dump_event *e = &d->events[i];
        if (e->type != ST_REC_SATURATION || e->object != o->addr)
            continue;
        struct m_span s = {.start_s = (double)e->start_ns / 1e9, .duration_ms = (double)e->duration_ns / 1e6,
                           .members = e->members, .retroactive = e->retroactive};
        /* A span dated back is recorded when its first worker is seen idle,
         * before the others are known: count the members started by then. */
        if (e->retroactive)
            s.members = members_started_before(d, o, e->start_ns + e->duration_ns, e->members);
        if (push_span(spans, n, &s) < 0)
            return -1;
    }
    uint64_t since = o->live_saturated_since_ns, end = d->hdr.last_update_ns;
    if (!p->complete && since != 0 && end > since && end - since >= d->hdr.threshold_ns) {
        struct m_span s = {.start_s = (double)since / 1e9, .duration_ms = (double)(end - since) / 1e6,
                           .members = o->live_members, .in_progress = true};
        if (push_span(spans, n, &s) < 0)
            return -1;
    }
    if (*n > 1)
        qsort(*spans, *n, sizeof(**spans), cmp_span);
    return 0;
}

/* Spans during which both lists say "busy": the pool of parked workers is
 * saturated when each of its one-worker queues is. Spans within a list may
 * not overlap each other much, but nothing here relies on it. */
static int intersect(const struct m_span *a, size_t na, const struct m_span *b, size_t nb,
                     struct m_span **out, size_t *nout)
{
    size_t i, j;

    *out = NULL;
    *nout = 0;
    for (i = 0; i < na; i++)
        for (j = 0; j < nb; j++) {
            double s = a[i].start_s > b[j].start_s ? a[i].start_s : b[j].start_s;
            double ea = a[i].start_s + a[i].duration_ms / 1e3, eb = b[j].start_s + b[j].duration_ms / 1e3;
            double e = ea < eb ? ea : eb;
            if (e <= s)
                continue;
            struct m_span x = {.start_s = s, .duration_ms = (e - s) * 1e3,
                               .members = a[i].members + b[j].members,
                               .retroactive = a[i].retroactive || b[j].retroactive,
                               .in_progress = a[i].in_progress && b[j].in_progress};
            if (push_span(out, nout, &x) < 0)
                return -1;
        }
    return 0;
}

/* A parked worker not started yet is no idle worker: its queue counts as
 * busy until then, so a pool that grows later (anyio now and then starts a
 * 41st thread) keeps the saturation it had before. *born_s: its start. */
static int add_unborn(const struct dump *d, const struct st_object *o, struct m_span **spans, size_t *n,
                      double *born_s)
{
    uint64_t born = UINT64_MAX;

    for (uint32_t i = 0; i < d->nthreads; i++)
        if (bit_set(o->member_bits, d->thread_slots[i]) && d->threads[i].created_ns < born)
            born = d->threads[i].created_ns;
    *born_s = born == UINT64_MAX ? 0 : (double)born / 1e9;
    if (born == UINT64_MAX || born == 0)
        return 0;
    struct m_span s = {.start_s = 0, .duration_ms = (double)born / 1e6};
    if (push_span(spans, n, &s) < 0)
        return -1;
    qsort(*spans, *n, sizeof(**spans), cmp_span);
    return 0;
}

static int pool_saturation(struct m_process *p, const struct dump *d, const struct draft *dr,
                           struct m_pool *pool)
{
    size_t i;
    double born_s, first_born_s;

    if (object_spans(p, d, dr->objs[0], &pool->saturations, &pool->nsaturations) < 0)
        return -1;
    if (dr->nobjs > 1 && add_unborn(d, dr->objs[0], &pool->saturations, &pool->nsaturations, &first_born_s) < 0)
        return -1;
    if (dr->nobjs == 1) {
        const struct st_object *o = dr->objs[0];
        pool->saturated_s = (double)o->saturated_ns / 1e9;
        for (i = 0; i < pool->nsaturations; i++)
            if (pool->saturations[i].in_progress)
                pool->saturated_s += pool->saturations[i].duration_ms / 1e3;
    } else {
        /* Only spans of at least the threshold are known per worker, and
         * only those can overlap into a span that long. */
        for (i = 1; i < dr->nobjs; i++) {
            struct m_span *other, *both;
            size_t nother, nboth;
            if (object_spans(p, d, dr->objs[i], &other, &nother) < 0)
                return -1;
            if (add_unborn(d, dr->objs[i], &other, &nother, &born_s) < 0) {
                free(other);
                return -1;
            }
            first_born_s = born_s < first_born_s ? born_s : first_born_s;
            int rc = intersect(pool->saturations, pool->nsaturations, other, nother, &both, &nboth);
            free(other);
            free(pool->saturations);
            pool->saturations = both;
            pool->nsaturations = rc < 0 ? 0 : nboth;
            if (rc < 0)
                return -1;
        }
        size_t kept = 0;
        for (i = 0; i < pool->nsaturations; i++) {
            struct m_span *s = &pool->saturations[i];
            double end_s = s->start_s + s->duration_ms / 1e3;
            if (s->start_s < first_born_s) {      /* before any worker existed */
                s->start_s = first_born_s;
                s->duration_ms = end_s > first_born_s ? (end_s - first_born_s) * 1e3 : 0;
            }
            if (s->duration_ms * 1e6 < (double)d->hdr.threshold_ns)
                continue;
            s->members = (uint32_t)dr->nobjs;
            pool->saturations[kept++] = *s;
            pool->saturated_s += s->duration_ms / 1e3;
        }
        pool->nsaturations = kept;
        if (kept > 1)
            qsort(pool->saturations, kept, sizeof(*pool->saturations), cmp_span);
    }
    for (i = 0; i < pool->nsaturations; i++) {
        pool->spans_s += pool->saturations[i].duration_ms / 1e3;
        if (pool->saturations[i].duration_ms > pool->longest_ms)
            pool->longest_ms = pool->saturations[i].duration_ms;
    }
    return 0;
}

/* busy_ratio over the workers' lifetimes; a worker blocked idle right now
 * (a live dump, or daemon threads at exit) is idle up to the end. */
static void pool_busy(const struct dump *d, const struct draft *dr, struct m_pool *pool)
{
    double life = 0, idle = 0;
    uint64_t last = d->hdr.last_update_ns;
    size_t i;

    for (i = 0; i < dr->nthreads; i++) {
        const struct st_thread *t = &d->threads[dr->threads[i]];
        uint64_t end = (t->flags & ST_THREAD_EXITED) && t->exited_ns ? t->exited_ns : last;
        uint64_t span = end > t->created_ns ? end - t->created_ns : 0, idle_ns = t->pool_idle_ns;
        if (!(t->flags & ST_THREAD_EXITED) && t->live_idle_since_ns && last > t->live_idle_since_ns)
            idle_ns += last - t->live_idle_since_ns;
        life += (double)span;
        idle += (double)(idle_ns < span ? idle_ns : span);
    }
    pool->busy_ratio = life > 0 ? 1 - idle / life : 0;
    if (pool->busy_ratio < 0)
        pool->busy_ratio = 0;
    if (pool->busy_ratio > 1)
        pool->busy_ratio = 1;
    pool->busy_s = (life - idle) / 1e9;
}

/* ---- What the busy workers were in ---------------------------------------- */

struct busy_item {
    const char *call;
    const struct m_stack *stack;
    double start_s, duration_ms;
};

static int cmp_item(const void *a, const void *b)
{
    const struct busy_item *x = a, *y = b;
    return model_cmp_place(x->call, x->stack, y->call, y->stack);
}

static int cmp_busy(const void *a, const void *b)
{
    const struct m_busy *x = a, *y = b;
    if (x->total_ms != y->total_ms)
        return x->total_ms > y->total_ms ? -1 : 1;
    return x->count > y->count ? -1 : x->count < y->count;
}

/* Milliseconds of [start, start + ms) inside the sorted spans. */
static double overlap_ms(const struct m_span *spans, size_t n, double start_s, double ms)
{
    double end_s = start_s + ms / 1e3, sum = 0;
    size_t lo = 0, hi = n;

    /* Spans of a pool do not nest; find the first that ends after start. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (spans[mid].start_s + spans[mid].duration_ms / 1e3 <= start_s)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < n && spans[lo].start_s < end_s; lo++) {
        double s = spans[lo].start_s > start_s ? spans[lo].start_s : start_s;
        double e = spans[lo].start_s + spans[lo].duration_ms / 1e3;
        e = e < end_s ? e : end_s;
        if (e > s)
            sum += (e - s) * 1e3;
    }
    return sum;
}

static bool has_tid(const uint32_t *sorted, size_t n, uint32_t tid)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sorted[mid] < tid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && sorted[lo] == tid;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Time in the place busy_in[0] names: the same call reached from the same
 * code can come through different interpreter frames, and a person reads
 * "clock_nanosleep called from time_sleep" as one place. */
static double top_place_ms(const struct m_pool *pool)
{
    char top[600], other[600];
    double sum = 0;
    size_t i;

    frames_where(&pool->busy_in[0].stack, top, sizeof(top));
    for (i = 0; i < pool->nbusy; i++) {
        const struct m_busy *b = &pool->busy_in[i];
        if (i > 0) {
            if ((b->call == NULL) != (pool->busy_in[0].call == NULL) ||
                (b->call && strcmp(b->call, pool->busy_in[0].call) != 0))
                continue;
            frames_where(&b->stack, other, sizeof(other));
            if (strcmp(top, other) != 0)
                continue;
        }
        sum += pool->nsaturations ? b->saturated_ms : b->total_ms;
    }
    return sum;
}

static int pool_busy_in(struct m_process *p, struct m_pool *pool)
{
    size_t n = 0, i, start;
    struct busy_item *items = calloc(p->nslow_calls + p->nlock_waits + 1, sizeof(*items));
    uint32_t *tids = malloc((pool->nthreads ? pool->nthreads : 1) * sizeof(*tids));

    if (!items || !tids) {
        free(items);
        free(tids);
        return -1;
    }
    memcpy(tids, pool->tids, pool->nthreads * sizeof(*tids));
    qsort(tids, pool->nthreads, sizeof(*tids), cmp_u32);
    /* Waits on a work queue are a worker idling, not working. */
    for (i = 0; i < p->nslow_calls; i++) {
        const struct m_slow_call *c = &p->slow_calls[i];
        if (has_tid(tids, pool->nthreads, c->tid) && !(c->object && model_is_pool_object(p, c->object)))
            items[n++] = (struct busy_item){c->call, &c->stack, c->start_s, c->duration_ms};
    }
    for (i = 0; i < p->nlock_waits; i++) {
        const struct m_lock_wait *w = &p->lock_waits[i];
        if (has_tid(tids, pool->nthreads, w->tid) && !model_is_pool_object(p, w->object))
            items[n++] = (struct busy_item){w->call, &w->stack, w->start_s, w->duration_ms};
    }
    free(tids);
    if (n > 1)
        qsort(items, n, sizeof(*items), cmp_item);

    pool->busy_in = calloc(n ? n : 1, sizeof(*pool->busy_in));
    if (!pool->busy_in) {
        free(items);
        return -1;
    }
    for (start = 0; start < n; start = i) {
        struct m_busy *b = &pool->busy_in[pool->nbusy++];
        b->call = items[start].call;
        b->stack = *items[start].stack;
        for (i = start; i < n && cmp_item(&items[start], &items[i]) == 0; i++) {
            b->count++;
            b->total_ms += items[i].duration_ms;
            if (items[i].duration_ms > b->max_ms)
                b->max_ms = items[i].duration_ms;
            b->saturated_ms += overlap_ms(pool->saturations, pool->nsaturations, items[i].start_s,
                                          items[i].duration_ms);
        }
    }
    free(items);
    if (pool->nbusy > 1)
        qsort(pool->busy_in, pool->nbusy, sizeof(*pool->busy_in), cmp_busy);

    /* Shares of the saturated worker time when there was any, else of all
     * busy time: what a person asks is "busy in what, while it was full". */
    double all = 0, denom;
    for (i = 0; i < pool->nbusy; i++)
        all += pool->nsaturations ? pool->busy_in[i].saturated_ms : pool->busy_in[i].total_ms;
    pool->shares_of_saturation = pool->nsaturations > 0;
    denom = pool->nsaturations ? pool->spans_s * 1e3 * (double)pool->nthreads : pool->busy_s * 1e3;
    if (denom > 0 && pool->nbusy > 0) {
        double top = top_place_ms(pool);
        pool->top_share = top / denom > 1 ? 1 : top / denom;
        pool->wrapped_share = all / denom > 1 ? 1 : all / denom;
    }
    return 0;
}

/* ---- The pools ------------------------------------------------------------- */

bool model_is_pool_object(const struct m_process *p, uint64_t addr)
{
    size_t i, j;

    for (i = 0; i < p->npools; i++)
        for (j = 0; j < p->pools[i].nobjects; j++)
            if (p->pools[i].objects[j] == addr)
                return true;
    return false;
}

int model_build_pools(struct m_process *p, const struct dump *d)
{
    struct draft *drafts = NULL;
    size_t n = 0, i, j;

    if (draft_queues(p, d, &drafts, &n) < 0)
        return -1;
    if (merge_parked(d, drafts, &n) < 0 || add_never_idle(d, drafts, n) < 0)
        goto fail;
    /* Stable ids: by the first worker's place in the thread table. */
    if (n > 1)
        qsort(drafts, n, sizeof(*drafts), cmp_draft);
    p->pools = calloc(n ? n : 1, sizeof(*p->pools));
    if (!p->pools)
        goto fail;
    for (i = 0; i < n; i++) {
        struct draft *dr = &drafts[i];
        struct m_pool *pool = &p->pools[p->npools++];

        pool->id = (int)i;
        pool->object_kind = model_object_kind(dr->objs[0]->kind);
        pool->objects = calloc(dr->nobjs, sizeof(*pool->objects));
        pool->tids = calloc(dr->nthreads, sizeof(*pool->tids));
        if (!pool->objects || !pool->tids)
            goto fail;
        for (j = 0; j < dr->nobjs; j++)
            pool->objects[j] = dr->objs[j]->addr;
        pool->nobjects = dr->nobjs;
        if (dr->nobjs > 1)
            qsort(pool->objects, dr->nobjs, sizeof(*pool->objects), cmp_u64);
        for (j = 0; j < dr->nthreads; j++) {
            pool->tids[j] = d->threads[dr->threads[j]].tid;
            /* m_process.threads mirrors d->threads index for index. */
            p->threads[dr->threads[j]].pool = pool->id;
        }
        pool->nthreads = dr->nthreads;
        pool->added_by_routine = dr->added;
        pool_busy(d, dr, pool);
        if (pool_saturation(p, d, dr, pool) < 0)
            goto fail;
    }
    free_drafts(drafts, n);
    return 0;
fail:
    free_drafts(drafts, n);
    return -1;
}

/* ---- What a pool is, and whether work waited for it ----------------------- */

static const struct st_thread *first_worker(const struct dump *d, const struct m_pool *pool)
{
    for (uint32_t i = 0; i < d->nthreads; i++)
        if (d->threads[i].tid == pool->tids[0])
            return &d->threads[i];
    return NULL;
}

/* Without the Python hook's word, the start routine of its threads: libuv's
 * `worker` (threadpool.c), V8's platform workers in node, CPython's
 * thread_run, CRuby's thread start (puma's pool), or a C program's own. */
static const char *kind_from_routine(struct m_process *p, const struct st_thread *t)
{
    const struct sym_frame *f = t && t->start_routine ? sym_lookup(p->sym, t->start_routine, true, t->created_ns)
                                                      : NULL;
    const char *fn = f && f->function ? f->function : "", *mod = f && f->module ? f->module : "";

    if (strncmp(mod, "libuv", 5) == 0 ||
        (strcmp(fn, "worker") == 0 && (strcmp(mod, "node") == 0 || strncmp(mod, "libnode", 7) == 0)))
        return "libuv";
    if (strstr(fn, "PlatformWorkerThread"))
        return "v8-platform";
    if (strncmp(mod, "libpython", 9) == 0 || strncmp(mod, "python", 6) == 0)
        return "python";
    if (strncmp(mod, "libruby", 7) == 0)
        return "ruby";
    return "c";
}

/* Started all at once and never more: the pool is at its maximum whenever
 * every thread it has is busy. */
static bool fixed_size(const struct dump *d, const struct m_pool *pool, uint64_t *last_born)
{
    uint64_t lo = UINT64_MAX, hi = 0;

    for (uint32_t i = 0; i < d->nthreads; i++)
        for (size_t j = 0; j < pool->nthreads; j++)
            if (d->threads[i].tid == pool->tids[j]) {
                lo = d->threads[i].created_ns < lo ? d->threads[i].created_ns : lo;
                hi = d->threads[i].created_ns > hi ? d->threads[i].created_ns : hi;
            }
    *last_born = hi;
    return lo == UINT64_MAX || hi - lo <= SAME_BATCH_NS;
}

/* Adds [s, s + ms) to the sorted, disjoint spans, merging what it meets. */
static int add_union(struct m_span **spans, size_t *n, double s, double ms)
{
    double e = s + ms / 1e3;
    size_t i = 0, j;

    while (i < *n && (*spans)[i].start_s + (*spans)[i].duration_ms / 1e3 < s)
        i++;
    for (j = i; j < *n && (*spans)[j].start_s <= e; j++) {
        double je = (*spans)[j].start_s + (*spans)[j].duration_ms / 1e3;
        s = (*spans)[j].start_s < s ? (*spans)[j].start_s : s;
        e = je > e ? je : e;
    }
    struct m_span x = {.start_s = s, .duration_ms = (e - s) * 1e3};
    if (j == i) {
        if (push_span(spans, n, &x) < 0)
            return -1;
        memmove(&(*spans)[i + 1], &(*spans)[i], (*n - 1 - i) * sizeof(**spans));
    } else {
        memmove(&(*spans)[i + 1], &(*spans)[j], (*n - j) * sizeof(**spans));
        *n -= j - i - 1;
    }
    (*spans)[i] = x;
    return 0;
}

/* Takes [s, e) out of the sorted, disjoint spans. */
static int cut_out(struct m_span **spans, size_t *n, double s, double e)
{
    struct m_span *out = NULL;
    size_t nout = 0;

    for (size_t i = 0; i < *n; i++) {
        struct m_span a = (*spans)[i], b;
        double ae = a.start_s + a.duration_ms / 1e3;
        if (ae <= s || a.start_s >= e) {
            if (push_span(&out, &nout, &a) < 0)
                goto fail;
            continue;
        }
        b = a;
        if (a.start_s < s) {
            a.duration_ms = (s - a.start_s) * 1e3;
            if (push_span(&out, &nout, &a) < 0)
                goto fail;
        }
        if (ae > e) {
            b.start_s = e;
            b.duration_ms = (ae - e) * 1e3;
            if (push_span(&out, &nout, &b) < 0)
                goto fail;
        }
    }
    free(*spans);
    *spans = out;
    *n = nout;
    return 0;
fail:
    free(out);
    return -1;
}

/* Saturation from the queue: the times some task waited a threshold or
 * more for a worker (it found none idle and none was started for it).
 * anyio hands a task to its thread from the event loop, so a wait that a
 * stalled loop caused is the loop's, not the pool's. */
static int spans_from_queue_waits(const struct m_process *p, const struct dump *d, struct m_pool *pool)
{
    struct m_span *spans = NULL;
    size_t n = 0, i, j;
    bool lost = false;

    for (i = 0; i < pool->nqueues; i++) {
        const struct m_queue *q = &p->queues[pool->queues[i]];
        lost |= !q->long_complete;
        for (j = 0; j < q->nlong; j++)
            if (add_union(&spans, &n, q->longs[j].submit_s, q->longs[j].wait_ms) < 0)
                goto fail;
        lost |= !p->complete && q->waiting > 0;
    }
    /* Waits whose records were lost, or tasks still waiting when a killed
     * process stopped: the recorder's all-busy spans stand in for them. */
    for (i = 0; lost && i < pool->nsaturations; i++)
        if (add_union(&spans, &n, pool->saturations[i].start_s, pool->saturations[i].duration_ms) < 0)
            goto fail;
    if (pool->kind && strcmp(pool->kind, "anyio") == 0)
        for (i = 0; i < p->nstalls; i++)
            if (cut_out(&spans, &n, p->stalls[i].start_s, p->stalls[i].start_s + p->stalls[i].duration_ms / 1e3) < 0)
                goto fail;
    size_t kept = 0;
    for (i = 0; i < n; i++) {
        if (spans[i].duration_ms * 1e6 < (double)d->hdr.threshold_ns)
            continue;
        spans[i].members = (uint32_t)pool->nthreads;
        spans[kept++] = spans[i];
    }
    free(pool->saturations);
    pool->saturations = spans;
    pool->nsaturations = kept;
    pool->saturated_s = 0;
    for (i = 0; i < kept; i++)
        pool->saturated_s += spans[i].duration_ms / 1e3;
    return 0;
fail:
    free(spans);
    return -1;
}

/* A pool that grew during the recording was starting threads for its work:
 * only once it stopped growing can all-busy mean work waited. */
static void keep_spans_after(const struct dump *d, struct m_pool *pool, double after_s)
{
    size_t kept = 0;

    pool->saturated_s = 0;
    for (size_t i = 0; i < pool->nsaturations; i++) {
        struct m_span s = pool->saturations[i];
        double e = s.start_s + s.duration_ms / 1e3;
        if (s.start_s < after_s) {
            s.start_s = after_s;
            s.duration_ms = e > after_s ? (e - after_s) * 1e3 : 0;
        }
        if (s.duration_ms * 1e6 < (double)d->hdr.threshold_ns)
            continue;
        pool->saturations[kept++] = s;
        pool->saturated_s += s.duration_ms / 1e3;
    }
    pool->nsaturations = kept;
}

/* A pool whose workers never once waited for work (ThreadPoolExecutor(4)
 * given 10 tasks at once takes each next task straight from its queue) has
 * no work queue object to be found by; the hook's queue still names its
 * threads, what it is, and how long its tasks waited. */
static int add_queue_pools(struct m_process *p, const struct dump *d)
{
    for (size_t i = 0; i < p->nqueues; i++) {
        struct m_queue *q = &p->queues[i];
        if (q->pool >= 0 || !q->pool_kind || q->nworkers == 0)
            continue;
        if (GROW_ONE(p->pools, p->npools) < 0)
            return -1;
        struct m_pool *pool = &p->pools[p->npools];
        memset(pool, 0, sizeof(*pool));
        pool->id = (int)p->npools;
        pool->tids = calloc(q->nworkers, sizeof(*pool->tids));
        pool->queues = calloc(1, sizeof(*pool->queues));
        if (!pool->tids || !pool->queues) {
            free(pool->tids);
            free(pool->queues);
            return -1;
        }
        p->npools++;
        pool->object_kind = "none";
        pool->queues[pool->nqueues++] = i;
        pool->queue_wait = q->wait;
        pool->run = q->run;
        q->pool = pool->id;
        for (uint32_t t = 0; t < d->nthreads; t++)
            for (size_t w = 0; w < q->nworkers; w++)
                if (d->threads[t].tid == q->workers[w] && !(d->threads[t].flags & ST_THREAD_LOOP) &&
                    p->threads[t].pool < 0) {
                    pool->tids[pool->nthreads++] = q->workers[w];
                    p->threads[t].pool = pool->id;
                }
        /* Its threads never idled on a queue object: busy all their lives. */
        struct draft dr = {.threads = calloc(pool->nthreads ? pool->nthreads : 1, sizeof(size_t))};
        if (!dr.threads)
            return -1;
        for (uint32_t t = 0; t < d->nthreads; t++)
            if (p->threads[t].pool == pool->id)
                dr.threads[dr.nthreads++] = t;
        pool_busy(d, &dr, pool);
        free(dr.threads);
    }
    return 0;
}

int model_judge_pools(struct m_process *p, const struct dump *d)
{
    if (add_queue_pools(p, d) < 0)
        return -1;
    for (size_t i = 0; i < p->npools; i++) {
        struct m_pool *pool = &p->pools[i];
        const struct st_thread *first = first_worker(d, pool);
        bool queued = false;
        uint64_t last_born;

        pool->kind = NULL;
        for (size_t j = 0; j < pool->nqueues; j++) {
            const struct m_queue *q = &p->queues[pool->queues[j]];
            queued |= q->submitted > 0 && q->started > 0;
            if (!pool->kind && q->pool_kind) {
                pool->kind = q->pool_kind;
                pool->max_threads = q->max_threads;
            }
        }
        if (!pool->kind)
            pool->kind = kind_from_routine(p, first);
        bool fixed = fixed_size(d, pool, &last_born);
        /* libuv starts UV_THREADPOOL_SIZE threads at its first use, V8 its
         * platform workers at start-up: the threads it has are its maximum. */
        if (!pool->max_threads && (strcmp(pool->kind, "libuv") == 0 || strcmp(pool->kind, "v8-platform") == 0))
            pool->max_threads = (uint32_t)pool->nthreads;
        if (queued) {
            pool->saturation_basis = "queue_wait";
            if (spans_from_queue_waits(p, d, pool) < 0)
                return -1;
        } else if (fixed || (pool->max_threads && pool->nthreads >= pool->max_threads)) {
            pool->saturation_basis = "fixed_size";
        } else {
            pool->saturation_basis = "largest_size";
            keep_spans_after(d, pool, (double)last_born / 1e9);
        }
        /* One busy thread is not a pool out of workers: a runtime's own
         * housekeeping thread (HotSpot's "G1 Service", woken by others and
         * busy in its timed waits) looks the same. Only tasks seen waiting
         * for it say it is. */
        if (!queued && pool->nthreads == 1) {
            pool->nsaturations = 0;
            pool->saturated_s = 0;
        }
        pool->spans_s = pool->longest_ms = 0;
        for (size_t j = 0; j < pool->nsaturations; j++) {
            pool->spans_s += pool->saturations[j].duration_ms / 1e3;
            if (pool->saturations[j].duration_ms > pool->longest_ms)
                pool->longest_ms = pool->saturations[j].duration_ms;
        }
    }
    /* busy_in leaves out waits on any pool's queue: all pools first. */
    for (size_t i = 0; i < p->npools; i++)
        if (pool_busy_in(p, &p->pools[i]) < 0)
            return -1;
    return 0;
}

void model_free_pools(struct m_process *p)
{
    size_t i;

    for (i = 0; i < p->npools; i++) {
        free(p->pools[i].objects);
        free(p->pools[i].tids);
        free(p->pools[i].saturations);
        free(p->pools[i].busy_in);
    }
    free(p->pools);
}

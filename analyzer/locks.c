/* locks.c - contended locks: the long waits recorded with stacks and the
 * object table's totals, per object, named by the variable they lie in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_build.h"

int model_build_lock_waits(struct m_process *p, const struct dump *d)
{
    size_t i, n = 0;

    for (i = 0; i < d->nevents; i++)
        n += d->events[i].type == ST_REC_LOCK_WAIT;
    p->lock_waits = calloc(n ? n : 1, sizeof(*p->lock_waits));
    if (!p->lock_waits)
        return -1;
    for (i = 0; i < d->nevents; i++) {
        const struct dump_event *e = &d->events[i];
        if (e->type != ST_REC_LOCK_WAIT)
            continue;
        struct m_lock_wait *w = &p->lock_waits[p->nlock_waits++];
        w->tid = e->tid;
        w->call = model_call_name(e->call);
        w->kind = e->kind;
        w->retries = e->retries;
        w->object = e->object;
        w->start_s = (double)e->start_ns / 1e9;
        w->duration_ms = (double)e->duration_ns / 1e6;
        if (model_make_stack(p, &e->stack, e->start_ns, &w->stack) < 0)
            return -1;
    }
    return 0;
}

/* Long waits by object, then by place, so each object's waits and each of
 * its stacks are runs. */
static int cmp_wait(const void *a, const void *b)
{
    const struct m_lock_wait *x = *(const struct m_lock_wait *const *)a;
    const struct m_lock_wait *y = *(const struct m_lock_wait *const *)b;
    if (x->object != y->object)
        return x->object < y->object ? -1 : 1;
    return model_cmp_place(x->call, &x->stack, y->call, &y->stack);
}

static int cmp_object(const void *a, const void *b)
{
    const struct st_object *x = *(const struct st_object *const *)a;
    const struct st_object *y = *(const struct st_object *const *)b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int cmp_lock(const void *a, const void *b)
{
    const struct m_lock *x = a, *y = b;
    if (x->wait_total_ms != y->wait_total_ms)
        return x->wait_total_ms > y->wait_total_ms ? -1 : 1;
    if (x->contentions != y->contentions)
        return x->contentions > y->contentions ? -1 : 1;
    return x->object < y->object ? -1 : x->object > y->object;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Fill a lock from its long waits w[0..n) (one object, sorted by place):
 * counts, distinct waiters, and the stack seen most often (the longest
 * total on a tie). */
static int from_waits(struct m_lock *l, const struct m_lock_wait **w, size_t n)
{
    uint32_t *tids = malloc((n ? n : 1) * sizeof(*tids));
    size_t i, run, best_count = 0;
    double best_total = -1;

    if (!tids)
        return -1;
    for (i = 0; i < n; i++) {
        tids[i] = w[i]->tid;
        l->wait_total_ms += w[i]->duration_ms;
        if (w[i]->duration_ms > l->wait_max_ms)
            l->wait_max_ms = w[i]->duration_ms;
    }
    l->long_waits = n;
    qsort(tids, n, sizeof(*tids), cmp_u32);
    for (i = 0; i < n; i++)
        l->waiters += i == 0 || tids[i] != tids[i - 1];
    free(tids);

    for (run = 0; run < n; run = i) {
        double total = 0;
        for (i = run; i < n && model_cmp_place(w[run]->call, &w[run]->stack, w[i]->call, &w[i]->stack) == 0; i++)
            total += w[i]->duration_ms;
        if (i - run > best_count || (i - run == best_count && total > best_total)) {
            best_count = i - run;
            best_total = total;
            l->call = w[run]->call;
            l->stack = w[run]->stack;
        }
    }
    return 0;
}

/* The object table counts every wait that blocked, short ones included:
 * a GIL taken in 5 ms slices may never wait a whole threshold at once. */
static void from_table(struct m_lock *l, const struct st_object *o)
{
    double total = (double)o->wait_ns / 1e6, max = (double)o->max_wait_ns / 1e6;

    l->flags = o->flags;
    l->kind = model_object_kind(o->kind);
    l->timeouts = o->timeouts;
    l->releases = o->releases;
    l->handoffs = o->handoffs;
    l->contentions = o->waits > l->long_waits ? o->waits : l->long_waits;
    if (total > l->wait_total_ms)
        l->wait_total_ms = total;
    if (max > l->wait_max_ms)
        l->wait_max_ms = max;
}

static int name_lock(struct m_process *p, struct m_lock *l)
{
    char sym[320];
    bool py_runtime;

    if (!model_data_symbol(p, l->object, sym, sizeof(sym), &py_runtime))
        return 0;
    l->symbol = strdup(sym);
    if (!l->symbol)
        return -1;
    /* The GIL's mutex and conditions all live in _PyRuntime (3.12 and 3.13
     * keep the main interpreter's GIL there too). */
    if (py_runtime && ((l->flags & ST_OBJ_TIMED_RETRY) || strcmp(l->kind, "cond") == 0 ||
                       strcmp(l->kind, "mutex") == 0))
        l->label = "GIL";
    return 0;
}

int model_build_locks(struct m_process *p, const struct dump *d)
{
    const struct m_lock_wait **waits = calloc(p->nlock_waits + 1, sizeof(*waits));
    const struct st_object **objs = calloc(d->nobjects + 1, sizeof(*objs));
    size_t nw = 0, no = 0, i = 0, j = 0;
    double keep_ms = (double)d->hdr.threshold_ns / 1e6;

    if (!waits || !objs)
        goto fail;
    /* Untimed waits on a work queue are workers idling, not contention. */
    for (i = 0; i < p->nlock_waits; i++)
        if (!model_is_pool_object(p, p->lock_waits[i].object))
            waits[nw++] = &p->lock_waits[i];
    for (i = 0; i < d->nobjects; i++)
        if (!model_is_pool_object(p, d->objects[i].addr))
            objs[no++] = &d->objects[i];
    if (nw > 1)
        qsort(waits, nw, sizeof(*waits), cmp_wait);
    if (no > 1)
        qsort(objs, no, sizeof(*objs), cmp_object);
    p->locks = calloc(nw + no + 1, sizeof(*p->locks));
    if (!p->locks)
        goto fail;

    /* Walk both sorted lists: an object may have long waits, a table
     * slot, or both (the table can be full; the ring can wrap). */
    for (i = 0, j = 0; i < nw || j < no;) {
        uint64_t addr = i < nw && (j >= no || waits[i]->object <= objs[j]->addr) ? waits[i]->object
                                                                                  : objs[j]->addr;
        struct m_lock *l = &p->locks[p->nlocks];
        size_t run = i;

        memset(l, 0, sizeof(*l));
        l->object = addr;
        while (i < nw && waits[i]->object == addr)
            i++;
        if (from_waits(l, waits + run, i - run) < 0)
            goto fail;
        l->kind = i > run ? model_object_kind(waits[run]->kind) : "unknown";
        if (j < no && objs[j]->addr == addr)
            from_table(l, objs[j++]);
        if (l->contentions < l->long_waits)
            l->contentions = l->long_waits;
        /* Blocked less than a threshold in all: not worth a line. */
        if (l->long_waits == 0 && l->wait_total_ms < keep_ms)
            continue;
        if (name_lock(p, l) < 0)
            goto fail;
        p->nlocks++;
    }
    if (p->nlocks > 1)
        qsort(p->locks, p->nlocks, sizeof(*p->locks), cmp_lock);
    free(waits);
    free(objs);
    return 0;
fail:
    free(waits);
    free(objs);
    return -1;
}

void model_free_locks(struct m_process *p)
{
    size_t i;

    for (i = 0; i < p->nlocks; i++)
        free(p->locks[i].symbol);
    free(p->locks);
    for (i = 0; i < p->nlock_waits; i++)
        free(p->lock_waits[i].stack.frames);
    free(p->lock_waits);
}

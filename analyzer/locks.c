/* locks.c - contended locks: the long waits recorded with stacks and the
 * object table's totals, per object, named by the variable they lie in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_build.h"

/* A lock matters when its waits take this share of the time of the threads
 * that block on locks (a healthy memcached under load: under 1%), or when
 * one wait reached the threshold. */
#define LOCK_MIN_WAIT_SHARE 0.1
/* A mutex this close to a pool's work queue is that queue's own lock (a
 * pool's mutex and condition live side by side in one struct). */
#define POOL_LOCK_REACH 128u

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

/* Modules whose own objects are the runtime's business, not the program's:
 * interpreters, libuv, allocators, the C library. Matched by name prefix. */
static const char *const runtime_modules[] = {
    "libuv", "libnode", "node", "libpython", "python", "libjemalloc", "libtcmalloc",
    "libc.so", "libpthread", "ld-linux", "libstdc++", "libgcc_s", NULL,
};

static bool is_runtime_module(const char *name)
{
    size_t i;

    for (i = 0; name && runtime_modules[i]; i++)
        if (strncmp(name, runtime_modules[i], strlen(runtime_modules[i])) == 0)
            return true;
    return false;
}

/* The runtime module a stack waited from when no frame of it is the
 * program's (a libuv worker, jemalloc's background thread), else NULL. */
static const char *runtime_of_stack(const struct m_stack *s)
{
    const char *runtime = NULL;
    size_t i;

    for (i = 0; i < s->n; i++) {
        const struct sym_frame *f = s->frames[i];
        if (strcmp(f->kind, "native") != 0)
            return NULL;           /* interpreted code: the program's own */
        if (!f->module || (frames_is_plumbing(f) && !is_runtime_module(f->module)))
            continue;
        if (!is_runtime_module(f->module))
            return NULL;
        if (!runtime)
            runtime = f->module;
    }
    return runtime;
}

/* Names the lock (its variable, else module+offset for a stripped binary),
 * labels the GIL and says when the object is a runtime's or a pool's own. */
static int name_lock(struct m_process *p, struct m_lock *l)
{
    char sym[320], owner[320] = "";
    const char *module = NULL, *runtime;
    uint64_t off = 0;
    bool py_runtime, in_module;
    size_t i, j;

    in_module = sym_module_offset(p->sym, l->object, p->dump->hdr.last_update_ns, &module, &off);
    if (model_data_symbol(p, l->object, sym, sizeof(sym), &py_runtime)) {
        /* The GIL's mutex and conditions all live in _PyRuntime (3.12 and
         * 3.13 keep the main interpreter's GIL there too). */
        if (py_runtime && ((l->flags & ST_OBJ_TIMED_RETRY) || strcmp(l->kind, "cond") == 0 ||
                           strcmp(l->kind, "mutex") == 0))
            l->label = "GIL";
    } else if (in_module) {
        snprintf(sym, sizeof(sym), "%s+0x%llx", module, (unsigned long long)off);
    } else {
        sym[0] = '\0';
    }
    if (sym[0] && !(l->symbol = strdup(sym)))
        return -1;
    if (l->label)
        return 0;                  /* the GIL is what Python threads compete for */

    for (i = 0; i < p->npools && !owner[0]; i++)
        for (j = 0; j < p->pools[i].nobjects; j++) {
            uint64_t q = p->pools[i].objects[j];
            if ((l->object > q ? l->object - q : q - l->object) < POOL_LOCK_REACH) {
                snprintf(owner, sizeof(owner), "pool %d's queue", p->pools[i].id);
                break;
            }
        }
    if (!owner[0] && in_module && is_runtime_module(module))
        snprintf(owner, sizeof(owner), "%s", module);
    if (!owner[0] && !in_module && l->long_waits > 0 && (runtime = runtime_of_stack(&l->stack)))
        snprintf(owner, sizeof(owner), "%s", runtime);
    if (owner[0] && !(l->internal = strdup(owner)))
        return -1;
    return 0;
}

/* Thread-seconds of the threads that blocked on a lock (all threads in a
 * dump without that counter): what a lock's waits are a share of. */
static double lock_thread_seconds(const struct dump *d)
{
    double all = 0, waiting = 0;
    uint32_t i;

    for (i = 0; i < d->nthreads; i++) {
        const struct st_thread *t = &d->threads[i];
        uint64_t end = t->exited_ns ? t->exited_ns : d->hdr.last_update_ns;
        double life = end > t->created_ns ? (double)(end - t->created_ns) / 1e9 : 0;
        all += life;
        if (t->lock_wait_ns)
            waiting += life;
    }
    return waiting > 0 ? waiting : all;
}

/* Waits that mean threads competing for one lock: a mutex or rwlock, the
 * GIL, or a semaphore its holders release (CPython's threading.Lock) that
 * was waited for more than once. A wait on any other condition or
 * semaphore is a thread waiting for another's work (a join, an event, a
 * result, a timer): its length is that work's, not the lock's. */
static bool competes(const struct m_lock *l)
{
    if (l->label)
        return true;
    if (strcmp(l->kind, "mutex") == 0 || strcmp(l->kind, "rwlock") == 0)
        return true;
    if (strcmp(l->kind, "sem") == 0)
        return ((l->flags & ST_OBJ_RELEASED) || l->releases > 0) && l->long_waits >= 2;
    return false;
}

/* How much of the waiting shows competition, and whether the lock is a
 * culprit. The GIL is waited for in 5 ms slices by every thread that wakes
 * up while another runs Python: only a wait that timed out (the holder kept
 * it a whole interval while this thread wanted to run) shows threads
 * competing for the CPU, and a run of those reaching the threshold is one
 * long wait. */
static void judge_lock(struct m_lock *l, const struct m_lock_wait **w, size_t n, double thread_s,
                       double threshold_ms)
{
    bool one_long;
    size_t i;

    if (l->label) {
        double runs = 0;
        for (i = 0; i < n; i++)
            runs += w[i]->duration_ms;
        l->contended_ms = l->contentions ? l->wait_total_ms * (double)l->timeouts / (double)l->contentions : 0;
        if (runs > l->contended_ms)
            l->contended_ms = runs;
        one_long = n > 0;
    } else {
        l->contended_ms = l->wait_total_ms;
        one_long = l->wait_max_ms >= threshold_ms;
    }
    l->wait_share = thread_s > 0 ? l->contended_ms / (thread_s * 1e3) : 0;
    l->culprit = !l->internal && competes(l) && l->contended_ms >= threshold_ms &&
                 (one_long || l->wait_share >= LOCK_MIN_WAIT_SHARE);
}

/* Whether the one thread that waited on l waited on nothing else: then its
 * timed-out waits are its own sleep between rounds of work. */
static bool only_object_of_its_waiter(const struct m_process *p, const struct m_lock *l)
{
    uint32_t tid = 0;

    for (size_t i = 0; i < p->nlock_waits; i++) {
        const struct m_lock_wait *w = &p->lock_waits[i];
        if (w->object == l->object)
            tid = w->tid;
    }
    if (tid == 0)
        return true;               /* no long wait: only the table's counts */
    for (size_t i = 0; i < p->nlock_waits; i++)
        if (p->lock_waits[i].tid == tid && p->lock_waits[i].object != l->object)
            return false;
    return true;
}

static bool idle_wait(const struct m_process *p, const struct m_lock *l)
{
    if (l->culprit || competes(l) || l->waiters > 1 || l->timeouts == 0)
        return false;
    return only_object_of_its_waiter(p, l);
}

static bool is_parker(const struct dump *d, uint64_t addr)
{
    for (size_t i = 0; i < d->nobjects; i++)
        if (d->objects[i].addr == addr)
            return model_is_futex_parker(&d->objects[i]);
    return false;
}

int model_build_locks(struct m_process *p, const struct dump *d)
{
    const struct m_lock_wait **waits = calloc(p->nlock_waits + 1, sizeof(*waits));
    const struct st_object **objs = calloc(d->nobjects + 1, sizeof(*objs));
    size_t nw = 0, no = 0, i = 0, j = 0;
    double keep_ms = (double)d->hdr.threshold_ns / 1e6, thread_s = lock_thread_seconds(d);

    if (!waits || !objs)
        goto fail;
    /* Untimed waits on a work queue are workers idling, not contention;
     * so are a thread's waits on its own parker. */
    for (i = 0; i < p->nlock_waits; i++)
        if (!model_is_pool_object(p, p->lock_waits[i].object) &&
            !is_parker(d, p->lock_waits[i].object))
            waits[nw++] = &p->lock_waits[i];
    for (i = 0; i < d->nobjects; i++)
        if (!model_is_pool_object(p, d->objects[i].addr) && !model_is_futex_parker(&d->objects[i]))
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
        judge_lock(l, waits + run, i - run, thread_s, keep_ms);
        l->idle = idle_wait(p, l);
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

    for (i = 0; i < p->nlocks; i++) {
        free(p->locks[i].symbol);
        free(p->locks[i].internal);
    }
    free(p->locks);
    for (i = 0; i < p->nlock_waits; i++)
        free(p->lock_waits[i].stack.frames);
    free(p->lock_waits);
}

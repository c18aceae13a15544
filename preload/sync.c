/* sync.c - what happens when a sync wait actually blocks: object statistics,
 * pool membership and idleness, lock-wait records with stacks, runs of timed
 * waits (CPython's GIL), and wake-ups that reveal producers.
 * Only reached from a wrapper's slow path: uncontended operations never get here.
 */
#include "recorder.h"

/* A timed wait that starts this soon after the last one timed out on the
 * same object continues the same run. */
#define ST_RUN_GAP_NS 2000000u

/* A thread adds its short waits on one object up before it adds them to the
 * object: the object's counters share a cache line every waiter writes, and
 * an atomic add on a line another core holds cost more than the rest of the
 * bookkeeping (a ThreadPoolExecutor round trip spent 7% of its CPU there).
 * At most this many waits, or this much time, wait in a thread; a wait of
 * a quarter threshold or more goes in at once. */
#define ST_BATCH_WAITS 32u
#define ST_BATCH_NS 1000000u

static unsigned slot_index(const struct st_thread *slot)
{
    return (unsigned)(slot - st_rec.threads);
}

static void emit_span(const struct st_object *o, const struct st_span *span)
{
    struct st_rec_saturation r = {0};
    r.object = o->addr;
    r.start_ns = span->start_ns;
    r.duration_ns = span->duration_ns;
    r.members = span->members;
    r.retroactive = span->retroactive;
    st_ring_put(&st_rec.ring, ST_REC_SATURATION, &r, sizeof r);
}

/* The run of timed waits is over: record it if it was long. */
static void flush_run(struct st_tls *t)
{
    if (t->run_object == 0)
        return;
    uint64_t duration = t->run_last_end_ns - t->run_start_ns;
    static const struct st_captured none;
    if (duration >= st_rec.threshold_ns && t->run_retries > 1)
        st_emit_lock_wait(t, t->run_call, ST_OBJ_COND, t->run_object, t->run_start_ns, duration,
                       t->run_retries, t->run_has_stack ? &t->run_stack : &none);
    t->run_object = 0;
}

int st_sync_begin(struct st_sync *s, void *object, uint16_t kind, uint16_t call, int untimed)
{
    struct st_tls *t = &st_tls;
    s->active = 0;
    s->holder_tid = 0;
    s->holder_unconfirmed = 0;
    s->gil_candidate = 0;
    s->readers = 0;
    if (!st_thread_records(t) || !st_recording())
        return 0;
    int saved_errno = st_recorder_enter(t);
    uint64_t now = st_now_ns();
    s->active = 1;
    s->object = (uint64_t)(uintptr_t)object;
    s->kind = kind;
    s->call = call;
    s->untimed = (uint8_t)untimed;
    s->start_ns = now;
    s->obj = st_object_get(&st_rec.objects, s->object, kind, now);
    if (!untimed && kind == ST_OBJ_COND) {
        if (t->run_object != s->object || now - t->run_last_end_ns > ST_RUN_GAP_NS) {
            flush_run(t);
            t->run_object = s->object;
            t->run_call = call;
            t->run_start_ns = now;
            t->run_retries = 0;
            t->run_has_stack = 0;
        } else if (s->obj != NULL) {
            __atomic_fetch_or(&s->obj->flags, ST_OBJ_TIMED_RETRY, __ATOMIC_RELAXED);
        }
    }
    /* Only threads someone started can be pool workers: a main thread
     * blocked untimed is joining or waiting for a lock. */
    s->idles = untimed && s->obj != NULL && (kind == ST_OBJ_COND || kind == ST_OBJ_SEM) &&
               t->slot->start_routine != 0;
    if (s->idles) {
        struct st_thread *slot = t->slot;
        struct st_span span;
        uint64_t busy_since = slot->start_routine ? slot->created_ns : 0;
        if (st_pool_idle_begin(s->obj, slot_index(slot), now, busy_since, st_rec.threshold_ns,
                               &span))
            emit_span(s->obj, &span);
        slot->idle_object = s->object;
        slot->live_idle_since_ns = now;
        st_feeders_drain(s->object, now);
    }
    /* A loop waiting in a timed condition wait may wait for the GIL: the
     * watchdog names its holder if the iteration stalls. */
    if (!untimed && kind == ST_OBJ_COND && t->is_loop && t->in_iteration) {
        s->gil_candidate = 1;
        st_holder_wait_begin(slot_index(t->slot), s->object, kind, 0, now);
    }
    t->live_call = call;
    st_recorder_leave(t, saved_errno);
    return 1;
}

/* Adds a thread's batch to its object. */
static void flush_batch(struct st_tls *t)
{
    struct st_object *o = t->batch_object;
    if (o == NULL)
        return;
    __atomic_fetch_add(&o->waits, t->batch_waits, __ATOMIC_RELAXED);
    __atomic_fetch_add(&o->wait_ns, t->batch_ns, __ATOMIC_RELAXED);
    if (t->batch_timeouts)
        __atomic_fetch_add(&o->timeouts, t->batch_timeouts, __ATOMIC_RELAXED);
    uint64_t max = __atomic_load_n(&o->max_wait_ns, __ATOMIC_RELAXED);
    while (t->batch_max_ns > max &&
           !__atomic_compare_exchange_n(&o->max_wait_ns, &max, t->batch_max_ns, 0,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    t->batch_object = NULL;
    t->batch_waits = t->batch_timeouts = 0;
    t->batch_ns = t->batch_max_ns = 0;
}

static void count_wait(struct st_tls *t, struct st_object *o, uint64_t waited, int timed_out)
{
    if (t->batch_object != o)
        flush_batch(t);
    t->batch_object = o;
    t->batch_waits++;
    t->batch_ns += waited;
    t->batch_timeouts += timed_out != 0;
    if (waited > t->batch_max_ns)
        t->batch_max_ns = waited;
    if (t->batch_waits >= ST_BATCH_WAITS || t->batch_ns >= ST_BATCH_NS ||
        waited >= st_rec.slow_bar_ns)
        flush_batch(t);
}

void st_sync_end(struct st_sync *s, int timed_out, void *real_fn)
{
    if (!s->active)
        return;
    struct st_tls *t = &st_tls;
    int saved_errno = st_recorder_enter(t);
    struct st_thread *slot = t->slot;
    uint64_t now = st_now_ns(), waited = now - s->start_ns;
    t->live_call = 0;
    struct st_object *o = s->obj;
    if (o != NULL)
        count_wait(t, o, waited, timed_out);
    if (s->holder_tid != 0 || s->readers != 0) {
        if (st_holder_wait_end(slot_index(slot)))
            s->holder_unconfirmed = 1;
        if (waited >= st_rec.threshold_ns && !s->holder_unconfirmed)
            st_emit_lock_holder(t, s->call, s->kind, s->object, s->holder_tid, s->readers, s->start_ns,
                                waited);
    }
    if (s->gil_candidate) {
        st_holder_wait_end(slot_index(slot));
        if (t->gil_seq != slot->live_iter_seq) {
            t->gil_seq = slot->live_iter_seq;
            t->gil_ns = 0;
            t->gil_object = s->object;
        }
        if (t->gil_object == s->object)
            t->gil_ns += waited;
    }
    if (s->idles) {
        st_pool_idle_end(o, now);
        st_feeders_taken(s->object, __atomic_load_n(&o->idle, __ATOMIC_RELAXED));
        slot->pool_idle_ns += waited;
        slot->live_idle_since_ns = 0;
    } else {
        slot->lock_wait_ns += waited;
    }

    int in_iteration = t->in_iteration;
    int long_wait = waited >= st_rec.threshold_ns;
    int timed_run = !s->untimed && s->kind == ST_OBJ_COND;
    if (timed_run) {
        t->run_last_end_ns = now;
        t->run_retries++;
        if (now - t->run_start_ns >= st_rec.threshold_ns && !t->run_has_stack) {
            st_capture_here(&t->run_stack, real_fn);
            t->run_has_stack = 1;
        }
        /* One timed wait that ran out its long time is a sleep (CRuby's
         * `sleep` waits on its thread's own condition), not the first try
         * of a run: a slow call of a started thread (an iteration has it
         * already), with no object, since nobody was to wake it. */
        if (timed_out && t->run_retries == 1 && long_wait && !in_iteration && slot->start_routine != 0) {
            st_emit_slow_call(t, s->call, s->start_ns, waited, 0, &t->run_stack);
            t->run_object = 0;
        } else if (!timed_out) {
            flush_run(t);
        }
    }
    if (in_iteration && waited >= st_rec.slow_bar_ns) {
        t->recorder_depth--;
        st_call_slow(s->call, now - waited, waited, real_fn);
        t->recorder_depth++;
    } else if (!in_iteration && long_wait && !timed_run) {
        struct st_captured c;
        st_capture_here(&c, real_fn);
        if (o != NULL)
            __atomic_fetch_add(&o->long_waits, 1, __ATOMIC_RELAXED);
        st_emit_lock_wait(t, s->call, s->kind, s->object, s->start_ns, waited, 1, &c);
    }
    st_recorder_leave(t, saved_errno);
}

void st_sync_holder(struct st_sync *s, uint32_t tid)
{
    struct st_tls *t = &st_tls;
    /* A worker idling on its queue waits for work, not for a holder: an
     * untimed wait of a thread the program started counts only on an object
     * its holders released and nobody else ever posted (a lock). */
    if (!s->active || tid == 0 || tid == t->slot->tid)
        return;
    if (s->idles && (s->obj == NULL || __atomic_load_n(&s->obj->releases, __ATOMIC_RELAXED) == 0 ||
                     __atomic_load_n(&s->obj->handoffs, __ATOMIC_RELAXED) != 0))
        return;
    int saved_errno = st_recorder_enter(t);
    s->holder_tid = tid;
    st_holder_wait_begin(slot_index(t->slot), s->object, s->kind, tid, s->start_ns);
    st_watchdog_ensure();
    st_recorder_leave(t, saved_errno);
}

void st_sync_readers(struct st_sync *s, uint32_t readers)
{
    struct st_tls *t = &st_tls;
    if (!s->active || readers == 0)
        return;
    int saved_errno = st_recorder_enter(t);
    s->readers = readers;
    /* The watchdog checks at the threshold that readers still hold it: a
     * writer that took it meanwhile would be whom the rest was waited for. */
    st_holder_wait_begin(slot_index(t->slot), s->object, s->kind, 0, s->start_ns);
    st_watchdog_ensure();
    st_recorder_leave(t, saved_errno);
}

/* A thread woke `object`: waiters exist (the caller checked), or none do
 * and some pool was saturated (the wake may feed it: feeders.c). */
void st_sync_wake(void *object, uint16_t kind, int by_holder, int waiters, int broadcast,
                  uint16_t call, void *real_fn)
{
    struct st_tls *t = &st_tls;
    if (t->state != ST_T_READY || t->recorder_depth || !st_recording())
        return;
    int saved_errno = errno;
    uint64_t addr = (uint64_t)(uintptr_t)object;
    struct st_object *o = waiters ? st_object_get(&st_rec.objects, addr, kind, st_now_ns())
                                  : st_object_find(&st_rec.objects, addr);
    if (o != NULL && waiters)
        st_object_woken(o, slot_index(t->slot), by_holder);
    if (o != NULL && !by_holder)
        st_feeders_wake(o, waiters, broadcast, call, real_fn);
    errno = saved_errno;
}

/* Thread exit: it leaves its pool, and a pending run and batch are recorded. */
void st_sync_thread_exit(struct st_tls *t)
{
    flush_run(t);
    flush_batch(t);
    struct st_thread *slot = t->slot;
    if (slot == NULL || slot->idle_object == 0)
        return;
    struct st_object *o = st_object_get(&st_rec.objects, slot->idle_object, ST_OBJ_COND, 0);
    struct st_span span;
    if (o != NULL && st_pool_member_exit(o, slot_index(slot), st_now_ns(), st_rec.threshold_ns,
                                         &span))
        emit_span(o, &span);
}

void st_sync_flush_waits(void)
{
    if (st_tls.state == ST_T_READY)
        flush_batch(&st_tls);
}

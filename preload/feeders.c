/* feeders.c - who fed a saturated pool: wakes of a work queue no idle worker was left
 * to take, recorded with the waker's stack, a few per span (wrap_sync.c's slow paths only).
 */
#include <string.h>

#include "recorder.h"

/* Wakes given and not yet taken, per woken work queue: a burst of signals
 * before any woken worker has run leaves the idle count as it was, so
 * "none idle" alone would miss every submission of the burst. A small
 * table of the recorder's own (not in the dump): few objects are pools. */
#define FEED_SLOTS 64u

struct feed_state {
    uint64_t addr;                 /* 0: free */
    uint32_t pending;              /* wakes not yet taken by a worker */
    uint32_t feeds;                /* feeds since the last drain */
    uint32_t stacks;               /* ... of which recorded with a stack */
    uint32_t full;                 /* 1: a wake took its last idle worker; until one idles */
    uint64_t last_idle_ns;         /* the last ST_FEED_LAST_IDLE record */
};

static struct feed_state feeds[FEED_SLOTS];

/* The wake that takes a pool's last idle worker is most often no sign of
 * trouble (the pool is busy, not behind): its stack costs tens of us, so it
 * is taken at most once a second per pool, and never for a pool of one
 * worker, whose every wake takes its last idle worker. */
#define LAST_IDLE_GAP_NS 1000000000ull

static struct feed_state *state_of(uint64_t addr, int claim)
{
    uint32_t start = (uint32_t)((addr >> 4) * 0x9e3779b1u) % FEED_SLOTS;
    for (uint32_t i = 0; i < FEED_SLOTS; i++) {
        struct feed_state *f = &feeds[(start + i) % FEED_SLOTS];
        uint64_t seen = __atomic_load_n(&f->addr, __ATOMIC_ACQUIRE);
        if (seen == addr)
            return f;
        if (seen != 0)
            continue;
        if (!claim)
            return NULL;
        uint64_t expected = 0;
        if (__atomic_compare_exchange_n(&f->addr, &expected, addr, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE) || expected == addr)
            return f;
    }
    return NULL;
}

static void emit_feed(struct st_tls *t, uint16_t call, uint64_t object, uint16_t flags,
                      void *real_fn)
{
    union {
        struct st_rec_pool_feed rec;
        uint8_t bytes[sizeof(struct st_rec_pool_feed) + ST_STACK_BYTES];
    } buf;
    struct st_captured c;
    st_capture_here(&c, real_fn);
    struct st_rec_pool_feed *r = &buf.rec;
    memset(r, 0, sizeof *r);
    r->tid = t->slot->tid;
    r->call = call;
    r->flags = flags;
    r->object = object;
    r->at_ns = st_now_ns();
    st_ring_put(&st_rec.ring, ST_REC_POOL_FEED, r,
                sizeof *r + st_put_stack(&r->stack, &c, ST_UNWIND_LIBUNWIND));
}

static void feed(struct st_tls *t, struct feed_state *f, uint16_t call, uint64_t object,
                 void *real_fn)
{
    __atomic_fetch_add(&f->feeds, 1, __ATOMIC_RELAXED);
    if (__atomic_fetch_add(&f->stacks, 1, __ATOMIC_RELAXED) < ST_FEED_STACKS)
        emit_feed(t, call, object, 0, real_fn);
}

/* A pool whose idle workers are all claimed makes a wake with no waiter
 * look further (st_pools_saturated). Set when a wake takes the last one,
 * cleared when a member idles again: the shared word changes at those
 * moments only, not at every hand-off. */
static void set_full(struct feed_state *f, uint32_t full)
{
    if (__atomic_exchange_n(&f->full, full, __ATOMIC_RELAXED) != full)
        __atomic_fetch_add(&st_pools_saturated, full ? 1u : (uint32_t)-1, __ATOMIC_RELAXED);
}

void st_feeders_wake(struct st_object *o, int waiters, int broadcast, uint16_t call,
                     void *real_fn)
{
    struct st_tls *t = &st_tls;
    /* A member waking its own queue passes work along (libuv's workers
     * do), it does not feed the pool from outside. */
    unsigned self = (unsigned)(t->slot - st_rec.threads);
    if (o == NULL || !st_object_is_work_queue(o) ||
        __atomic_load_n(&o->live_members, __ATOMIC_RELAXED) == 0 ||
        (self < ST_THREAD_BITS && (o->member_bits[self / 64] >> (self % 64)) & 1))
        return;
    uint32_t idle = __atomic_load_n(&o->idle, __ATOMIC_RELAXED);
    int saturated = idle == 0 && __atomic_load_n(&o->live_saturated_since_ns, __ATOMIC_RELAXED) != 0;
    struct feed_state *f = state_of(o->addr, waiters || saturated);
    if (f == NULL)
        return;
    if (waiters && broadcast) {
        uint32_t p = __atomic_load_n(&f->pending, __ATOMIC_RELAXED);
        if (p < idle)
            __atomic_fetch_add(&f->pending, idle - p, __ATOMIC_RELAXED);
        return;
    }
    /* A wake with idle workers all claimed by earlier wakes (a burst, before
     * any woken worker ran; or glibc already counts them gone, so the wake
     * finds no waiter) or none idle at all announces a task that queues. */
    uint32_t p = __atomic_load_n(&f->pending, __ATOMIC_RELAXED);
    if (!saturated && p < idle) {
        if (!waiters)
            return;
        __atomic_fetch_add(&f->pending, 1, __ATOMIC_RELAXED);
        if (p + 1 != idle || __atomic_load_n(&o->live_members, __ATOMIC_RELAXED) < 2)
            return;
        set_full(f, 1);
        uint64_t now = st_now_ns(), last = __atomic_load_n(&f->last_idle_ns, __ATOMIC_RELAXED);
        if ((last == 0 || now - last >= LAST_IDLE_GAP_NS) &&
            __atomic_compare_exchange_n(&f->last_idle_ns, &last, now, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            emit_feed(t, call, o->addr, ST_FEED_LAST_IDLE, real_fn);
        return;
    }
    if (!waiters && !saturated && idle == 0)
        return;
    feed(t, f, call, o->addr, real_fn);
}

/* A member's idle wait ended: it took a wake, if one was pending. No more
 * wakes can be pending than members still idle (a wake a thread outside the
 * pool took would otherwise stay pending for good, and keep every wake with
 * no waiter looking further). */
void st_feeders_taken(uint64_t object, uint32_t idle_now)
{
    struct feed_state *f = state_of(object, 0);
    if (f == NULL)
        return;
    uint32_t p = __atomic_load_n(&f->pending, __ATOMIC_RELAXED);
    while (p > 0) {
        uint32_t next = p - 1 < idle_now ? p - 1 : idle_now;
        if (__atomic_compare_exchange_n(&f->pending, &p, next, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            return;
    }
}

void st_feeders_drain(uint64_t object, uint64_t now)
{
    struct feed_state *f = state_of(object, 0);
    if (f == NULL)
        return;
    if (__atomic_load_n(&f->full, __ATOMIC_RELAXED))
        set_full(f, 0);
    if (__atomic_load_n(&f->feeds, __ATOMIC_RELAXED) == 0)
        return;
    struct st_rec_pool_drain r;
    memset(&r, 0, sizeof r);
    r.object = object;
    r.at_ns = now;
    r.feeds = __atomic_exchange_n(&f->feeds, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&f->stacks, 0, __ATOMIC_RELAXED);
    st_ring_put(&st_rec.ring, ST_REC_POOL_DRAIN, &r, sizeof r);
}

void st_feeders_forget(void)
{
    memset(feeds, 0, sizeof feeds);
    __atomic_store_n(&st_pools_saturated, 0, __ATOMIC_RELAXED);
}

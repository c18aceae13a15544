/* objects.c - sync objects threads blocked on, and the pools they reveal:
 * who waits, who wakes, how many idle now, and spans with none idle.
 */
#include <sched.h>

#include "objects.h"

static uint64_t hash_addr(uint64_t addr)
{
    addr ^= addr >> 33;
    addr *= 0xff51afd7ed558ccdULL;
    return addr ^ (addr >> 33);
}

uint32_t st_pools_saturated;

/* Every change of live_saturated_since_ns goes through here (under o->lock),
 * so st_pools_saturated counts the objects saturated right now. */
static void set_saturated_since(struct st_object *o, uint64_t since)
{
    if ((o->live_saturated_since_ns != 0) != (since != 0))
        __atomic_fetch_add(&st_pools_saturated, since != 0 ? 1u : (uint32_t)-1, __ATOMIC_RELAXED);
    o->live_saturated_since_ns = since;
}

/* The slot of addr; with claim, a free one is taken for it on the way. */
static struct st_object *probe(const struct st_objects *objs, uint64_t addr, int claim,
                               uint32_t kind, uint64_t now)
{
    if (objs->table == NULL || addr == 0)
        return NULL;
    uint32_t mask = objs->capacity - 1;
    uint32_t start = (uint32_t)hash_addr(addr) & mask;
    /* Probe at most a quarter of the table: a full table must stay cheap. */
    for (uint32_t i = 0; i <= mask / 4; i++) {
        struct st_object *o = &objs->table[(start + i) & mask];
        uint64_t seen = __atomic_load_n(&o->addr, __ATOMIC_ACQUIRE);
        if (seen == addr)
            return o;
        if (seen != 0)
            continue;
        if (!claim)
            return NULL;
        uint64_t expected = 0;
        if (__atomic_compare_exchange_n(&o->addr, &expected, addr, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            o->kind = kind;
            o->first_seen_ns = now;
            __atomic_fetch_add(objs->count, 1, __ATOMIC_RELAXED);
            return o;
        }
        if (expected == addr)
            return o;
    }
    if (claim)
        __atomic_fetch_add(objs->untracked, 1, __ATOMIC_RELAXED);
    return NULL;
}

struct st_object *st_object_find(const struct st_objects *objs, uint64_t addr)
{
    return probe(objs, addr, 0, 0, 0);
}

struct st_object *st_object_get(struct st_objects *objs, uint64_t addr, uint32_t kind,
                                uint64_t now)
{
    return probe(objs, addr, 1, kind, now);
}

/* Our own lock: never one the application also takes. */
static void lock(struct st_object *o)
{
    while (__atomic_exchange_n(&o->lock, 1, __ATOMIC_ACQUIRE))
        sched_yield();
}

static void unlock(struct st_object *o) { __atomic_store_n(&o->lock, 0, __ATOMIC_RELEASE); }

static int bit_test(const uint64_t *bits, unsigned i)
{
    return i < ST_THREAD_BITS && (bits[i / 64] >> (i % 64)) & 1;
}

static void bit_set(uint64_t *bits, unsigned i)
{
    if (i < ST_THREAD_BITS)
        __atomic_fetch_or(&bits[i / 64], (uint64_t)1 << (i % 64), __ATOMIC_RELAXED);
}

/* Ends the span [start, now); counts it and reports it when long enough. */
static int close_span(struct st_object *o, uint64_t start, uint64_t now, uint32_t members,
                      uint32_t retroactive, uint64_t threshold, struct st_span *span)
{
    if (start == 0 || now <= start)
        return 0;
    uint64_t duration = now - start;
    o->saturated_ns += duration;
    if (duration < threshold)
        return 0;
    o->saturations++;
    *span = (struct st_span){start, duration, members, retroactive};
    return 1;
}

int st_pool_idle_begin(struct st_object *o, unsigned thread_index, uint64_t now,
                       uint64_t busy_since, uint64_t threshold, struct st_span *span)
{
    int closed = 0;
    lock(o);
    if (!bit_test(o->member_bits, thread_index)) {
        bit_set(o->member_bits, thread_index);
        o->members++;
        o->live_members++;
        /* The first member was busy from its start until now: the pool was
         * saturated all along, it just had not been seen idle yet. */
        if (o->live_members == 1 && busy_since != 0)
            closed = close_span(o, busy_since, now, 1, 1, threshold, span);
    }
    if (!closed)
        closed = close_span(o, o->live_saturated_since_ns, now, o->live_members, 0, threshold,
                            span);
    set_saturated_since(o, 0);
    o->idle++;
    unlock(o);
    return closed;
}

void st_pool_idle_end(struct st_object *o, uint64_t now)
{
    lock(o);
    if (o->idle > 0)
        o->idle--;
    if (o->idle == 0 && o->live_members > 0)
        set_saturated_since(o, now ? now : 1);
    unlock(o);
}

int st_pool_member_exit(struct st_object *o, unsigned thread_index, uint64_t now,
                        uint64_t threshold, struct st_span *span)
{
    int closed = 0;
    lock(o);
    if (bit_test(o->member_bits, thread_index) && o->live_members > 0) {
        /* A pool shrinking at shutdown is not a saturated pool. */
        closed = close_span(o, o->live_saturated_since_ns, now, o->live_members, 0, threshold,
                            span);
        o->live_members--;
        set_saturated_since(o, o->idle == 0 && o->live_members > 0 ? (now ? now : 1) : 0);
    }
    unlock(o);
    return closed;
}

void st_object_woken(struct st_object *o, unsigned waker_index, int by_holder)
{
    if (by_holder) {
        __atomic_fetch_add(&o->releases, 1, __ATOMIC_RELAXED);
        return;
    }
    __atomic_fetch_add(&o->handoffs, 1, __ATOMIC_RELAXED);
    bit_set(o->waker_bits, waker_index);
}

int st_object_is_work_queue(const struct st_object *o)
{
    if (o->kind != ST_OBJ_COND && o->kind != ST_OBJ_SEM)
        return 0;
    if ((o->flags & ST_OBJ_TIMED_RETRY) || o->members == 0 || o->handoffs == 0)
        return 0;
    for (unsigned i = 0; i < ST_THREAD_BITS / 64; i++)
        if (o->waker_bits[i] & ~o->member_bits[i])
            return 1;
    return 0;
}

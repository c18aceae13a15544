/* test_objects.c - the sync object table and pool bookkeeping, linked
 * directly: lookup under collisions, saturation spans (retroactive, live,
 * on exit), and the work-queue/lock classification of SPEC.md. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "stalltrace/format.h"
#include "../../preload/objects.h"

#define MS 1000000ull

static struct st_object table[64];
static uint32_t count;
static uint64_t untracked;
static struct st_objects objs = {table, 64, &count, &untracked};

static void reset(void)
{
    memset(table, 0, sizeof table);
    count = 0;
    untracked = 0;
}

Test(objects, the_same_address_finds_the_same_slot, .init = reset)
{
    struct st_object *a = st_object_get(&objs, 0x1000, ST_OBJ_MUTEX, 5);
    struct st_object *b = st_object_get(&objs, 0x2000, ST_OBJ_SEM, 6);
    cr_assert_not_null(a);
    cr_assert_neq(a, b);
    cr_assert_eq(st_object_get(&objs, 0x1000, ST_OBJ_MUTEX, 7), a);
    cr_assert_eq(a->kind, ST_OBJ_MUTEX);
    cr_assert_eq(a->first_seen_ns, 5);
    cr_assert_eq(count, 2);
}

Test(objects, a_full_table_says_no_and_counts_it, .init = reset)
{
    unsigned got = 0;
    for (uint64_t i = 1; i <= 200; i++)
        got += st_object_get(&objs, i * 64, ST_OBJ_COND, 0) != NULL;
    cr_assert_leq(got, 64);
    cr_assert_eq(untracked, 200 - got);
    cr_assert_eq(count, got);
}

/* Four workers started at 0, all busy until 4 s: the classic executor. */
Test(objects, first_member_dates_the_saturation_back_to_its_start, .init = reset)
{
    struct st_object *q = st_object_get(&objs, 0x5000, ST_OBJ_SEM, 0);
    struct st_span span;
    cr_assert_eq(st_pool_idle_begin(q, 1, 4000 * MS, 10 * MS, 20 * MS, &span), 1);
    cr_assert_eq(span.start_ns, 10 * MS);
    cr_assert_eq(span.duration_ns, 3990 * MS);
    cr_assert_eq(span.retroactive, 1);
    /* Later members join an idle pool: no new span. */
    cr_assert_eq(st_pool_idle_begin(q, 2, 4001 * MS, 10 * MS, 20 * MS, &span), 0);
    cr_assert_eq(q->members, 2);
    cr_assert_eq(q->idle, 2);
    cr_assert_eq(q->saturations, 1);
}

Test(objects, a_pool_with_no_idle_member_is_saturated_until_one_idles, .init = reset)
{
    struct st_object *q = st_object_get(&objs, 0x6000, ST_OBJ_COND, 0);
    struct st_span span;
    st_pool_idle_begin(q, 1, 100 * MS, 0, 20 * MS, &span);
    st_pool_idle_begin(q, 2, 100 * MS, 0, 20 * MS, &span);
    st_pool_idle_end(q, 200 * MS);
    cr_assert_eq(q->live_saturated_since_ns, 0, "one member is still idle");
    st_pool_idle_end(q, 300 * MS);
    cr_assert_eq(q->live_saturated_since_ns, 300 * MS);
    /* A short saturation is counted in the total but not reported. */
    cr_assert_eq(st_pool_idle_begin(q, 1, 310 * MS, 0, 20 * MS, &span), 0);
    cr_assert_eq(q->saturated_ns, 10 * MS);
    st_pool_idle_end(q, 400 * MS);
    cr_assert_eq(st_pool_idle_begin(q, 2, 900 * MS, 0, 20 * MS, &span), 1);
    cr_assert_eq(span.start_ns, 400 * MS);
    cr_assert_eq(span.duration_ns, 500 * MS);
    cr_assert_eq(span.members, 2);
    cr_assert_eq(q->saturated_ns, 510 * MS);
}

Test(objects, an_exiting_member_ends_a_span_and_leaves_the_pool, .init = reset)
{
    struct st_object *q = st_object_get(&objs, 0x7000, ST_OBJ_COND, 0);
    struct st_span span;
    st_pool_idle_begin(q, 3, 0, 0, 20 * MS, &span);
    st_pool_idle_end(q, 100 * MS);
    cr_assert_eq(st_pool_member_exit(q, 3, 200 * MS, 20 * MS, &span), 1);
    cr_assert_eq(span.duration_ns, 100 * MS);
    cr_assert_eq(q->live_members, 0);
    cr_assert_eq(q->live_saturated_since_ns, 0, "an empty pool is not saturated");
    cr_assert_eq(q->members, 1, "it was a member");
}

Test(objects, woken_by_an_outsider_is_a_work_queue, .init = reset)
{
    struct st_object *q = st_object_get(&objs, 0x8000, ST_OBJ_COND, 0);
    struct st_span span;
    st_pool_idle_begin(q, 1, 0, 0, 20 * MS, &span);
    cr_assert_not(st_object_is_work_queue(q), "nobody woke it yet");
    st_object_woken(q, 0, 0);
    cr_assert(st_object_is_work_queue(q));
}

Test(objects, released_by_its_holders_is_a_lock, .init = reset)
{
    struct st_object *l = st_object_get(&objs, 0x9000, ST_OBJ_SEM, 0);
    struct st_span span;
    st_pool_idle_begin(l, 1, 0, 0, 20 * MS, &span);
    st_object_woken(l, 2, 1);
    st_object_woken(l, 1, 1);
    cr_assert_not(st_object_is_work_queue(l));
    cr_assert_eq(l->releases, 2);
}

Test(objects, woken_only_by_its_own_waiters_is_not_a_work_queue, .init = reset)
{
    struct st_object *c = st_object_get(&objs, 0xa000, ST_OBJ_COND, 0);
    struct st_span span;
    st_pool_idle_begin(c, 1, 0, 0, 20 * MS, &span);
    st_pool_idle_begin(c, 2, 0, 0, 20 * MS, &span);
    st_object_woken(c, 1, 0);
    st_object_woken(c, 2, 0);
    cr_assert_not(st_object_is_work_queue(c), "a barrier or a handshake");
}

Test(objects, timed_retries_and_mutexes_are_never_work_queues, .init = reset)
{
    struct st_object *gil = st_object_get(&objs, 0xb000, ST_OBJ_COND, 0);
    struct st_span span;
    st_pool_idle_begin(gil, 1, 0, 0, 20 * MS, &span);
    st_object_woken(gil, 0, 0);
    gil->flags |= ST_OBJ_TIMED_RETRY;
    cr_assert_not(st_object_is_work_queue(gil));
    struct st_object *m = st_object_get(&objs, 0xc000, ST_OBJ_MUTEX, 0);
    st_object_woken(m, 0, 0);
    cr_assert_not(st_object_is_work_queue(m));
}

/* The one word a wake with no waiter reads: it counts the pools saturated
 * right now, up when the last idle member leaves, down when one idles or
 * the pool empties; find never claims a slot. */
Test(objects, the_saturated_count_follows_the_pools, .init = reset)
{
    uint32_t before = st_pools_saturated;
    struct st_object *a = st_object_get(&objs, 0x8000, ST_OBJ_COND, 0);
    struct st_object *b = st_object_get(&objs, 0x9000, ST_OBJ_SEM, 0);
    struct st_span span;
    st_pool_idle_begin(a, 1, 0, 0, 20 * MS, &span);
    st_pool_idle_begin(b, 2, 0, 0, 20 * MS, &span);
    st_pool_idle_end(a, 10 * MS);
    cr_assert_eq(st_pools_saturated, before + 1);
    st_pool_idle_end(b, 10 * MS);
    cr_assert_eq(st_pools_saturated, before + 2);
    st_pool_idle_begin(a, 1, 50 * MS, 0, 20 * MS, &span);
    cr_assert_eq(st_pools_saturated, before + 1, "a member idles: its pool is not saturated");
    cr_assert_eq(st_pool_member_exit(b, 2, 60 * MS, 20 * MS, &span), 1);
    cr_assert_eq(st_pools_saturated, before, "an empty pool is not saturated");
    cr_assert_eq(st_object_find(&objs, 0x8000), a);
    cr_assert_null(st_object_find(&objs, 0xa000));
    cr_assert_eq(count, 2, "find claims nothing");
}

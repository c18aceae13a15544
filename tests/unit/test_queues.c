/* test_queues.c - the task queue table and the in-flight task table behind
 * the annotation API, linked directly: lookup by name, histograms, pairing
 * of submissions with starts, replacement, removal and a full table. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "stalltrace/format.h"
#include "../../preload/queues.h"

#define MS 1000000ull

static struct st_queue table[8];
static uint32_t count;
static uint64_t untracked;
static struct st_queues qs = {table, 8, &count, &untracked};
static struct st_tasks *tasks;

static void reset(void)
{
    memset(table, 0, sizeof table);
    count = 0;
    untracked = 0;
    free(tasks);
    tasks = calloc(1, sizeof *tasks);
}

static struct st_task sub(uint32_t queue, uint64_t id, uint64_t at)
{
    return (struct st_task){.id = id, .queue_plus1 = queue + 1, .submit_tid = 7, .submit_ns = at};
}

Test(queues, a_name_finds_the_same_slot_and_a_long_name_is_cut, .init = reset)
{
    struct st_queue *a = st_queue_get(&qs, "ThreadPoolExecutor-0", 5);
    struct st_queue *b = st_queue_get(&qs, "db", 6);
    cr_assert_not_null(a);
    cr_assert_neq(a, b);
    cr_assert_eq(st_queue_get(&qs, "ThreadPoolExecutor-0", 9), a);
    cr_assert_str_eq(a->name, "ThreadPoolExecutor-0");
    cr_assert_eq(a->valid, 1);
    cr_assert_eq(a->first_seen_ns, 5);
    cr_assert_eq(count, 2);
    char longname[100];
    memset(longname, 'q', sizeof longname - 1);
    longname[99] = '\0';
    struct st_queue *c = st_queue_get(&qs, longname, 0);
    cr_assert_eq(strlen(c->name), ST_QUEUE_NAME_MAX - 1);
    longname[80] = 'x';            /* differs past what is kept: the same queue */
    cr_assert_eq(st_queue_get(&qs, longname, 0), c);
}

Test(queues, a_full_queue_table_says_no_and_counts_it, .init = reset)
{
    char name[16];
    unsigned got = 0;
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "q%d", i);
        got += st_queue_get(&qs, name, 0) != NULL;
    }
    cr_assert_eq(got, 8);
    cr_assert_eq(untracked, 12);
    cr_assert_null(st_queue_get(&qs, NULL, 0));
}

Test(queues, the_histogram_counts_and_keeps_the_max, .init = reset)
{
    struct st_queue *q = st_queue_get(&qs, "h", 0);
    st_hist_add(q->wait_hist, &q->max_wait_ns, 2000 * MS);
    st_hist_add(q->wait_hist, &q->max_wait_ns, 4000 * MS);
    st_hist_add(q->wait_hist, &q->max_wait_ns, 50);
    cr_assert_eq(q->max_wait_ns, 4000 * MS);
    cr_assert_eq(q->wait_hist[0], 1);
    cr_assert_eq(q->wait_hist[st_hist_bucket(2000 * MS)], 1);
    cr_assert_eq(q->wait_hist[st_hist_bucket(4000 * MS)], 1);
}

Test(queues, a_start_pairs_with_its_submission_once, .init = reset)
{
    struct st_task e;
    struct st_task s = sub(1, 42, 10 * MS);
    cr_assert_eq(st_task_submit(tasks, &s), 0);
    cr_assert_eq(st_task_start(tasks, 0, 42, 11 * MS, &e), -1, "another queue, same id");
    cr_assert_eq(st_task_start(tasks, 1, 42, 30 * MS, &e), 0);
    cr_assert_eq(e.submit_ns, 10 * MS);
    cr_assert_eq(e.start_ns, 30 * MS);
    cr_assert_eq(e.submit_tid, 7);
    cr_assert_eq(st_task_start(tasks, 1, 42, 31 * MS, &e), -1, "started twice");
    cr_assert_eq(st_task_remove(tasks, 1, 42, &e), 0);
    cr_assert(e.started);
    cr_assert_eq(e.start_ns, 30 * MS);
    cr_assert_eq(st_task_remove(tasks, 1, 42, &e), -1, "gone");
}

Test(queues, resubmitting_an_id_in_flight_replaces_it, .init = reset)
{
    struct st_task e;
    struct st_task a = sub(0, 5, 1), b = sub(0, 5, 2);
    cr_assert_eq(st_task_submit(tasks, &a), 0);
    cr_assert_eq(st_task_submit(tasks, &b), 1);
    cr_assert_eq(st_task_start(tasks, 0, 5, 3, &e), 0);
    cr_assert_eq(e.submit_ns, 2);
}

/* Ids that all land in one stripe: the stripe fills (one slot stays free),
 * removals in any order keep every other entry findable. */
Test(queues, a_full_stripe_refuses_and_removal_keeps_the_rest_findable, .init = reset)
{
    struct st_task e;
    uint64_t ids[4096];
    unsigned n = 0, refused = 0;
    for (uint64_t id = 1; id < 200000 && n < 4096; id++) {
        struct st_task t = sub(0, id, id);
        int rc = st_task_submit(tasks, &t);
        if (rc < 0)
            refused++;
        else
            ids[n++] = id;
    }
    cr_assert_eq(n, 4096);
    /* 64 stripes of 256 slots, one kept free: up to 16320 fit. */
    cr_assert_eq(refused, 0);
    for (uint64_t id = 200000; n < ST_TASK_STRIPES * (ST_TASK_STRIPE_SLOTS - 1); id++) {
        struct st_task t = sub(0, id, id);
        if (st_task_submit(tasks, &t) == 0)
            n++;
        else
            refused++;
        cr_assert_lt(id, 10000000);
    }
    struct st_task more = sub(0, 99999999, 1);
    cr_assert_eq(st_task_submit(tasks, &more), -1, "every stripe is full now");
    for (unsigned i = 0; i < 4096; i += 2)
        cr_assert_eq(st_task_remove(tasks, 0, ids[i], &e), 0);
    for (unsigned i = 1; i < 4096; i += 2) {
        cr_assert_eq(st_task_start(tasks, 0, ids[i], 5, &e), 0, "id %llu lost", (unsigned long long)ids[i]);
        cr_assert_eq(e.submit_ns, ids[i]);
    }
}

static void *hammer(void *arg)
{
    uint64_t base = (uint64_t)(uintptr_t)arg * 1000000;
    struct st_task e;
    for (uint64_t i = 0; i < 20000; i++) {
        struct st_task t = sub(3, base + i, i);
        if (st_task_submit(tasks, &t) != 0 || st_task_start(tasks, 3, base + i, i + 1, &e) != 0 ||
            e.submit_ns != i || st_task_remove(tasks, 3, base + i, &e) != 0)
            return (void *)1;
    }
    return NULL;
}

Test(queues, threads_pair_their_tasks_concurrently, .init = reset)
{
    pthread_t th[4];
    for (uintptr_t i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, hammer, (void *)(i + 1));
    for (int i = 0; i < 4; i++) {
        void *rc;
        pthread_join(th[i], &rc);
        cr_assert_null(rc);
    }
    for (unsigned s = 0; s < ST_TASK_STRIPES; s++)
        cr_assert_eq(tasks->stripe[s].used, 0);
}

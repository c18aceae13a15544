/* test_pools_locks.c - pools, locks and their diagnosis from synthetic dumps:
 * work queue classification, saturation, busy time, lock aggregation. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dump.h"
#include "dump_builder.h"
#include "model.h"
#include "report.h"

#define MS 1000000ull
#define S 1000000000ull

/* Stands for CPython's runtime state: the GIL lives in it. */
struct { uint64_t words[64]; } _PyRuntime __attribute__((used));

static const uint64_t sleep_stack[] = {0x1000, 0x2000, 0x3000};
static const uint64_t other_stack[] = {0x1000, 0x2100, 0x3100};
static const uint64_t lock_stack[] = {0x5000, 0x6000};

static struct m_process *build(struct dump_builder *b, struct dump **d)
{
    char *err = NULL;
    *d = dump_open_mem(b->buf, b->len, "pools.dump", &err);
    cr_assert_not_null(*d, "%s", err);
    struct model_options opt = {.threshold_ms = -1, .perf_map_dir = "/nonexistent"};
    struct m_process *p = model_build(*d, &opt);
    cr_assert_not_null(p);
    return p;
}

static void done(struct m_process *p, struct dump *d, struct dump_builder *b)
{
    model_free(p);
    dump_free(d);
    db_free(b);
}

static const struct m_thread *thread(const struct m_process *p, uint32_t tid)
{
    for (size_t i = 0; i < p->nthreads; i++)
        if (p->threads[i].tid == tid)
            return &p->threads[i];
    cr_assert_fail("no thread %u", tid);
    return NULL;
}

static const struct m_lock *lock_at(const struct m_process *p, uint64_t addr)
{
    for (size_t i = 0; i < p->nlocks; i++)
        if (p->locks[i].object == addr)
            return &p->locks[i];
    return NULL;
}

static bool has_culprit(const struct m_process *p, const char *culprit)
{
    for (size_t i = 0; i < p->ndiagnosis; i++)
        if (strcmp(p->diagnosis[i].culprit, culprit) == 0)
            return true;
    return false;
}

static struct st_thread *worker(struct dump_builder *b, uint32_t tid, uint64_t routine, uint64_t created,
                                uint64_t exited)
{
    struct st_thread *t = db_add_thread(b, tid, "worker", ST_THREAD_EXITED);
    t->start_routine = routine;
    t->created_ns = created;
    t->exited_ns = exited;
    return t;
}

/* Slots: 0 main loop, 1 worker, 2 free, 3 worker, 4 a thread using a lock. */
static struct dump_builder *four_objects(void)
{
    struct dump_builder *b = db_new_objects(2, 8, 8, 1 << 16);
    const char *argv[] = {"python3", "app.py"};
    db_set_process(b, 100, "/usr/bin/python3.11", 2, argv);
    struct st_thread *m = db_add_thread(b, 100, "python3", ST_THREAD_LOOP | ST_THREAD_MAIN);
    m->iterations = 100;
    m->busy_ns = 10 * MS;
    m->idle_ns = 990 * MS;
    worker(b, 101, 0x4000, 0, 10 * S)->pool_idle_ns = 1 * S;
    db_add_free_thread_slot(b);
    worker(b, 103, 0x4000, 0, 10 * S)->pool_idle_ns = 1 * S;
    worker(b, 104, 0x9000, 0, 10 * S);

    /* A work queue: slots 1 and 3 idle on it, the main thread posts it. */
    struct st_object *q = db_add_object(b, 0xa000, ST_OBJ_SEM);
    q->members = 2;
    q->handoffs = 10;
    db_set_bit(q->member_bits, 1);
    db_set_bit(q->member_bits, 3);
    db_set_bit(q->waker_bits, 0);
    /* A semaphore used as a lock: its waiters release it themselves. */
    struct st_object *l = db_add_object(b, 0xb000, ST_OBJ_SEM);
    l->members = 1;
    l->releases = 5;
    l->flags = ST_OBJ_RELEASED;
    db_set_bit(l->member_bits, 4);
    db_set_bit(l->waker_bits, 4);
    /* Timed waits that keep retrying: contention, even if others wake it. */
    struct st_object *g = db_add_object(b, 0xc000, ST_OBJ_COND);
    g->flags = ST_OBJ_TIMED_RETRY;
    g->members = 1;
    g->handoffs = 3;
    db_set_bit(g->member_bits, 4);
    db_set_bit(g->waker_bits, 0);
    /* Woken only by its own waiters: no producer, no work queue. */
    struct st_object *c = db_add_object(b, 0xd000, ST_OBJ_COND);
    c->members = 2;
    c->handoffs = 2;
    db_set_bit(c->member_bits, 1);
    db_set_bit(c->member_bits, 3);
    db_set_bit(c->waker_bits, 3);
    return b;
}

Test(pools, only_work_queues_make_pools_and_slots_count_free_ones)
{
    struct dump_builder *b = four_objects();
    db_complete(b, 10 * S);
    struct dump *d;
    struct m_process *p = build(b, &d);

    cr_assert_eq(d->nthreads, 4);
    cr_assert_eq(d->thread_slots[2], 3, "the free slot keeps the next thread at slot 3");
    cr_assert_eq(p->npools, 1);
    cr_assert_eq(p->pools[0].objects[0], 0xa000);
    cr_assert_eq(p->pools[0].nthreads, 2);
    cr_assert_eq(p->pools[0].tids[0], 101);
    cr_assert_eq(p->pools[0].tids[1], 103);
    cr_assert_eq(thread(p, 101)->pool, 0);
    cr_assert_eq(thread(p, 103)->pool, 0);
    cr_assert_eq(thread(p, 104)->pool, -1);
    cr_assert_eq(thread(p, 100)->pool, -1, "a loop thread is never a worker");
    /* 2 s idle of 20 s lived. */
    cr_assert_float_eq(p->pools[0].busy_ratio, 0.9, 1e-9);
    cr_assert_eq(p->pools[0].nsaturations, 0);
    cr_assert(!has_culprit(p, "thread_pool_exhaustion"));
    done(p, d, b);
}

/* A word only one thread parks on through syscall(SYS_futex) (a tokio
 * worker's): woken by others, long waits, yet neither a pool nor a lock. A
 * word two threads park on (tokio's blocking pool) is a pool. */
Test(pools, a_futex_parker_is_no_pool_nor_lock)
{
    struct dump_builder *b = db_new_objects(2, 8, 8, 1 << 16);
    const char *argv[] = {"tokio_service"};
    db_set_process(b, 100, "/srv/tokio_service", 1, argv);
    db_add_thread(b, 100, "tokio_service", ST_THREAD_MAIN);
    worker(b, 101, 0x4000, 0, 10 * S)->pool_idle_ns = 5 * S;
    worker(b, 102, 0x4000, 0, 10 * S)->pool_idle_ns = 5 * S;
    worker(b, 103, 0x4000, 0, 10 * S)->pool_idle_ns = 5 * S;
    struct st_object *parker = db_add_object(b, 0xa000, ST_OBJ_COND);
    parker->flags = ST_OBJ_FUTEX_SEEN | ST_OBJ_FUTEX_COUNTER;
    parker->members = 1;
    parker->handoffs = 20;
    parker->waits = 20;
    parker->wait_ns = 5 * S;
    parker->saturations = 1;
    db_set_bit(parker->member_bits, 1);
    db_set_bit(parker->waker_bits, 0);
    struct st_object *queue = db_add_object(b, 0xb000, ST_OBJ_COND);
    queue->flags = ST_OBJ_FUTEX_SEEN | ST_OBJ_FUTEX_COUNTER;
    queue->members = 2;
    queue->handoffs = 4;
    db_set_bit(queue->member_bits, 2);
    db_set_bit(queue->member_bits, 3);
    db_set_bit(queue->waker_bits, 1);
    db_lock_wait(b, 101, ST_CALL_FUTEX_WAIT, ST_OBJ_COND, 0xa000, 1 * S, 2 * S, 1, lock_stack, 2);
    db_complete(b, 10 * S);
    struct dump *d;
    struct m_process *p = build(b, &d);

    cr_assert_eq(p->npools, 1, "only the shared word is a pool");
    cr_assert_eq(p->pools[0].objects[0], 0xb000);
    cr_assert_null(lock_at(p, 0xa000), "a parker's waits are its thread's idleness");
    cr_assert(!has_culprit(p, "lock_contention"));
    done(p, d, b);
}

Test(pools, saturation_spans_and_busy_in)
{
    struct dump_builder *b = four_objects();
    struct st_file_header *h = db_header(b);
    struct st_object *q = (struct st_object *)(b->buf + h->objects_offset);
    q->saturated_ns = 4 * S + 30 * MS;     /* a short span too, below the threshold */
    q->saturations = 1;
    db_saturation(b, 0xa000, 1 * S, 4 * S, 2);
    db_saturation(b, 0xb000, 1 * S, 4 * S, 1);  /* not a pool: ignored */
    /* Four 2 s sleeps from the same place, and one elsewhere half outside. */
    db_slow_call(b, 101, ST_CALL_CLOCK_NANOSLEEP, 1 * S, 2 * S, sleep_stack, 3);
    db_slow_call(b, 103, ST_CALL_CLOCK_NANOSLEEP, 1 * S, 2 * S, sleep_stack, 3);
    db_slow_call(b, 101, ST_CALL_CLOCK_NANOSLEEP, 3 * S, 2 * S, sleep_stack, 3);
    db_slow_call(b, 103, ST_CALL_RECV, 4 * S, 2 * S, other_stack, 3);
    db_slow_call(b, 104, ST_CALL_CLOCK_NANOSLEEP, 1 * S, 9 * S, sleep_stack, 3);  /* not a worker */
    /* A worker waiting for work: idleness, not busy time nor a lock. */
    db_lock_wait(b, 101, ST_CALL_SEM_WAIT, ST_OBJ_SEM, 0xa000, 5 * S, 3 * S, 1, lock_stack, 2);
    db_complete(b, 10 * S);
    struct dump *d;
    struct m_process *p = build(b, &d);

    const struct m_pool *pool = &p->pools[0];
    cr_assert_float_eq(pool->saturated_s, 4.03, 1e-9);
    cr_assert_eq(pool->nsaturations, 1);
    cr_assert_float_eq(pool->longest_ms, 4000, 1e-9);
    cr_assert_eq(pool->nbusy, 2);
    cr_assert_str_eq(pool->busy_in[0].call, "clock_nanosleep");
    cr_assert_eq(pool->busy_in[0].count, 3);
    cr_assert_float_eq(pool->busy_in[0].total_ms, 6000, 1e-6);
    /* Spans [1, 5) s: 2 + 2 + 2 s of sleep inside, 1 s of recv. */
    cr_assert_float_eq(pool->busy_in[0].saturated_ms, 6000, 1e-6);
    cr_assert_float_eq(pool->busy_in[1].saturated_ms, 1000, 1e-6);
    cr_assert_float_eq(pool->top_share, 0.75, 1e-9);
    cr_assert_float_eq(pool->wrapped_share, 0.875, 1e-9);
    cr_assert_null(lock_at(p, 0xa000), "waits on a work queue are not contention");

    /* 4.03 s of 10 s: exhausted, and said first. */
    cr_assert(p->ndiagnosis >= 1);
    cr_assert_str_eq(p->diagnosis[0].culprit, "thread_pool_exhaustion");
    const char *s = p->diagnosis[0].summary;
    cr_assert(strstr(s, "pool of 2 workers (thread 101 and 1 other) was saturated for 4.0 s of 10.0 s"), "%s", s);
    cr_assert(strstr(s, "event loop was idle 99%"), "%s", s);
    cr_assert(strstr(s, "75% of the workers' time while it was saturated was in clock_nanosleep"), "%s", s);
    cr_assert(strstr(s, "max_workers"), "%s", s);
    done(p, d, b);
}

Test(pools, cpu_bound_workers_are_said_to_be)
{
    struct dump_builder *b = four_objects();
    struct st_file_header *h = db_header(b);
    struct st_object *q = (struct st_object *)(b->buf + h->objects_offset);
    q->saturated_ns = 3 * S;
    db_saturation(b, 0xa000, 1 * S, 3 * S, 2);
    db_complete(b, 10 * S);
    struct dump *d;
    struct m_process *p = build(b, &d);

    cr_assert_eq(p->pools[0].nbusy, 0);
    cr_assert(has_culprit(p, "thread_pool_exhaustion"));
    cr_assert(strstr(p->diagnosis[0].summary, "busy outside any wrapped call (CPU-bound work)"), "%s",
              p->diagnosis[0].summary);
    done(p, d, b);
}

Test(pools, a_worker_that_never_idled_joins_by_start_routine)
{
    struct dump_builder *b = four_objects();
    worker(b, 105, 0x4000, 100 * MS, 10 * S);   /* same batch: a worker */
    worker(b, 106, 0x4000, 5 * S, 10 * S);      /* much later: some other thread */
    worker(b, 107, 0x9999, 0, 10 * S);          /* another routine */
    db_complete(b, 10 * S);
    struct dump *d;
    struct m_process *p = build(b, &d);

    cr_assert_eq(p->pools[0].nthreads, 3);
    cr_assert_eq(p->pools[0].added_by_routine, 1);
    cr_assert_eq(thread(p, 105)->pool, 0);
    cr_assert_eq(thread(p, 106)->pool, -1);
    cr_assert_eq(thread(p, 107)->pool, -1);
    done(p, d, b);
}

/* CPython 3.13: each idle worker parks on a semaphore of its own. */
Test(pools, parked_workers_make_one_pool_saturated_when_all_are_busy)
{
    struct dump_builder *b = db_new_objects(1, 4, 4, 1 << 14);
    db_set_process(b, 200, "/usr/bin/python3.13", 0, NULL);
    db_add_thread(b, 200, "main", ST_THREAD_MAIN);
    for (uint32_t i = 0; i < 2; i++) {
        /* Each idled on its own semaphore for its first task, a long wait. */
        worker(b, 201 + i, 0x4000, 0, 8 * S)->pool_idle_ns = 1 * S;
        struct st_object *o = db_add_object(b, 0xe000 + i * 0x100, ST_OBJ_SEM);
        o->members = 1;
        o->handoffs = 1;
        o->long_waits = 1;
        o->saturated_ns = 3 * S;
        db_set_bit(o->member_bits, 1 + i);
        db_set_bit(o->waker_bits, 0);
    }
    /* Worker 201 busy [1, 4) s, worker 202 busy [2, 6) s: both in [2, 4). */
    db_saturation(b, 0xe000, 1 * S, 3 * S, 1);
    db_saturation(b, 0xe100, 2 * S, 4 * S, 1);
    db_complete(b, 8 * S);
    struct dump *d;
    struct m_process *p = build(b, &d);

    cr_assert_eq(p->npools, 1);
    cr_assert_eq(p->pools[0].nthreads, 2);
    cr_assert_eq(p->pools[0].nobjects, 2);
    cr_assert_eq(p->pools[0].nsaturations, 1);
    cr_assert_float_eq(p->pools[0].saturations[0].start_s, 2, 1e-9);
    cr_assert_float_eq(p->pools[0].saturated_s, 2, 1e-9);
    done(p, d, b);
}

/* puma on CRuby: each request thread parks on a condition of its own, which
 * it also waits on in timed retries as the GVL's timer; the reaper and the
 * trimmer, started with them and named alike, wait on theirs only briefly
 * for the GVL. One pool of the two request threads, and no other. */
Test(pools, puma_request_threads_are_one_pool_and_its_housekeepers_none)
{
    static const char *const names[] = {"puma srv tp 001", "puma srv tp 002", "puma srv thread", "puma srv thread"};
    struct dump_builder *b = db_new_objects(1, 5, 6, 1 << 14);
    db_set_process(b, 300, "/usr/bin/ruby3.1", 0, NULL);
    db_add_thread(b, 300, "puma", ST_THREAD_MAIN);
    for (uint32_t i = 0; i < 4; i++) {
        struct st_thread *t = db_add_thread(b, 301 + i, names[i], ST_THREAD_EXITED);
        t->start_routine = 0x4000;
        t->created_ns = 100 * MS + i * MS;
        t->exited_ns = 8 * S;
        t->pool_idle_ns = i < 2 ? 5 * S : MS / 3;
        struct st_object *o = db_add_object(b, 0xe000 + i * 0x100, ST_OBJ_COND);
        o->members = 1;
        o->handoffs = 5;
        o->long_waits = i < 2 ? 3 : 0;
        o->flags = i < 2 ? ST_OBJ_TIMED_RETRY : 0;
        o->wait_ns = i < 2 ? 5 * S : MS;
        db_set_bit(o->member_bits, 1 + i);
        db_set_bit(o->waker_bits, 0);
    }
    /* A condition some of them shared once, briefly (a thread's start). */
    struct st_object *shared = db_add_object(b, 0xe800, ST_OBJ_COND);
    shared->members = 3;
    shared->handoffs = 3;
    shared->wait_ns = MS / 4;
    for (uint32_t slot = 1; slot <= 3; slot++)
        db_set_bit(shared->member_bits, slot);
    db_set_bit(shared->waker_bits, 0);
    /* Two requests at once: both busy for 250 ms. */
    db_saturation(b, 0xe000, 1 * S, 300 * MS, 1);
    db_saturation(b, 0xe100, 1050 * MS, 260 * MS, 1);
    db_complete(b, 8 * S);
    struct dump *d;
    struct m_process *p = build(b, &d);

    cr_assert_eq(p->npools, 1);
    cr_assert_eq(p->pools[0].nobjects, 2);
    cr_assert_eq(p->pools[0].nsaturations, 1);
    cr_assert_float_eq(p->pools[0].saturations[0].duration_ms, 250, 1e-6);
    cr_assert_eq(thread(p, 301)->pool, 0);
    cr_assert_eq(thread(p, 302)->pool, 0);
    cr_assert_eq(thread(p, 303)->pool, -1);
    cr_assert_eq(thread(p, 304)->pool, -1);
    cr_assert_str_eq(p->pools[0].kind ? p->pools[0].kind : "c", "c");   /* no libruby module here */
    done(p, d, b);
}

Test(pools, a_killed_process_shows_its_open_saturation)
{
    struct dump_builder *b = four_objects();
    struct st_file_header *h = db_header(b);
    struct st_object *q = (struct st_object *)(b->buf + h->objects_offset);
    q->saturated_ns = 1 * S;
    q->live_saturated_since_ns = 7 * S;
    q->live_members = 2;
    h->last_update_ns = 10 * S;            /* not complete */
    struct dump *d;
    struct m_process *p = build(b, &d);

    cr_assert_eq(p->pools[0].nsaturations, 1);
    cr_assert(p->pools[0].saturations[0].in_progress);
    cr_assert_float_eq(p->pools[0].saturated_s, 4, 1e-9);
    done(p, d, b);
}

Test(locks, waits_aggregate_per_object_with_the_table)
{
    struct dump_builder *b = four_objects();
    struct st_file_header *h = db_header(b);
    /* A mutex: three long waits by two threads, more short ones in the table. */
    struct st_object *m = db_add_object(b, 0xf000, ST_OBJ_MUTEX);
    m->waits = 10;
    m->wait_ns = 450 * MS;
    m->max_wait_ns = 200 * MS;
    db_lock_wait(b, 101, ST_CALL_MUTEX_LOCK, ST_OBJ_MUTEX, 0xf000, 1 * S, 100 * MS, 1, lock_stack, 2);
    db_lock_wait(b, 103, ST_CALL_MUTEX_LOCK, ST_OBJ_MUTEX, 0xf000, 2 * S, 200 * MS, 1, lock_stack, 2);
    db_lock_wait(b, 101, ST_CALL_MUTEX_LOCK, ST_OBJ_MUTEX, 0xf000, 3 * S, 120 * MS, 1, sleep_stack, 3);
    /* The timed-retry cond: short waits only, known from the table. */
    struct st_object *g = (struct st_object *)(b->buf + h->objects_offset + 2 * h->object_size);
    g->waits = 300;
    g->wait_ns = 900 * MS;
    g->max_wait_ns = 9 * MS;
    g->timeouts = 200;
    /* The sem lock, waited for 5 ms in all: below the threshold, left out. */
    struct st_object *l = (struct st_object *)(b->buf + h->objects_offset + 1 * h->object_size);
    l->waits = 1;
    l->wait_ns = 5 * MS;
    /* A lock wait on an object the table never got (it was full). */
    db_lock_wait(b, 104, ST_CALL_SEM_WAIT, ST_OBJ_SEM, 0x12000, 4 * S, 50 * MS, 1, lock_stack, 2);
    db_complete(b, 10 * S);
    struct dump *d;
    struct m_process *p = build(b, &d);

    cr_assert_eq(p->nlocks, 3);
    cr_assert_eq(p->locks[0].object, 0xc000, "sorted by total wait");
    const struct m_lock *x = lock_at(p, 0xf000);
    cr_assert_not_null(x);
    cr_assert_str_eq(x->kind, "mutex");
    cr_assert_eq(x->contentions, 10);
    cr_assert_eq(x->long_waits, 3);
    cr_assert_eq(x->waiters, 2);
    cr_assert_float_eq(x->wait_total_ms, 450, 1e-6);
    cr_assert_float_eq(x->wait_max_ms, 200, 1e-6);
    cr_assert_str_eq(x->call, "pthread_mutex_lock");
    cr_assert_eq(x->stack.n, 2, "the stack seen most often");
    cr_assert_null(x->symbol, "no module: heap");
    const struct m_lock *g2 = lock_at(p, 0xc000);
    cr_assert_eq(g2->contentions, 300);
    cr_assert_eq(g2->long_waits, 0);
    cr_assert_float_eq(g2->wait_total_ms, 900, 1e-6);
    cr_assert_null(lock_at(p, 0xb000));
    cr_assert_not_null(lock_at(p, 0x12000));
    cr_assert_str_eq(lock_at(p, 0x12000)->kind, "sem");

    /* The worst contended lock is diagnosed; the one-off sem wait is not. */
    cr_assert(has_culprit(p, "lock_contention"));
    done(p, d, b);
}

Test(locks, one_off_waits_on_a_semaphore_are_not_contention)
{
    struct dump_builder *b = four_objects();
    struct st_file_header *h = db_header(b);
    struct st_object *l = (struct st_object *)(b->buf + h->objects_offset + 1 * h->object_size);
    l->waits = 1;
    l->wait_ns = 900 * MS;
    l->max_wait_ns = 900 * MS;
    db_lock_wait(b, 100, ST_CALL_SEM_WAIT, ST_OBJ_SEM, 0xb000, 1 * S, 900 * MS, 1, lock_stack, 2);
    db_complete(b, 10 * S);
    struct dump *d;
    struct m_process *p = build(b, &d);

    cr_assert_not_null(lock_at(p, 0xb000), "listed");
    cr_assert(!has_culprit(p, "lock_contention"), "a thread join is not contention");
    done(p, d, b);
}

/* The main executable as a module of the dump, so _PyRuntime has a name. */
static int main_module(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct st_module *m = arg;
    uint64_t lo = UINT64_MAX, hi = 0;

    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        lo = info->dlpi_addr + ph->p_vaddr < lo ? info->dlpi_addr + ph->p_vaddr : lo;
        if (info->dlpi_addr + ph->p_vaddr + ph->p_memsz > hi)
            hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
    }
    m->start = lo;
    m->end = hi;
    m->bias = info->dlpi_addr;
    return 1;                      /* the first entry is the program */
}

/* A Python process of 2 s whose executable is this test (so _PyRuntime
 * has a name): a main thread and two workers. */
static struct dump_builder *python_process(struct st_thread **w1, struct st_thread **w2)
{
    struct st_module self = {0};
    char exe[ST_PATH_MAX] = "";
    dl_iterate_phdr(main_module, &self);
    cr_assert_gt(readlink("/proc/self/exe", exe, sizeof(exe) - 1), 0);

    struct dump_builder *b = db_new_objects(2, 4, 4, 1 << 14);
    db_set_process(b, 300, "/usr/bin/python3.12", 0, NULL);
    db_add_module(b, exe, self.start, self.end, self.bias, ST_MODULE_MAIN);
    db_add_thread(b, 300, "main", ST_THREAD_MAIN);
    *w1 = worker(b, 301, 0x4000, 0, 2 * S);
    *w2 = worker(b, 302, 0x4000, 0, 2 * S);
    return b;
}

Test(locks, the_gil_is_named_and_its_switch_is_no_pool)
{
    struct st_thread *w1, *w2;
    struct dump_builder *b = python_process(&w1, &w2);
    uint64_t gil = (uint64_t)(uintptr_t)&_PyRuntime.words[4];
    uint64_t sw = (uint64_t)(uintptr_t)&_PyRuntime.words[12];
    struct st_object *g = db_add_object(b, gil, ST_OBJ_COND);
    g->flags = ST_OBJ_TIMED_RETRY;
    g->waits = 400;
    g->wait_ns = 1500 * MS;
    g->max_wait_ns = 9 * MS;
    g->timeouts = 250;             /* holders kept it whole intervals: CPU-bound threads */
    /* The GIL's hand-over looks like a work queue; it must not be a pool. */
    struct st_object *s = db_add_object(b, sw, ST_OBJ_COND);
    s->members = 2;
    s->handoffs = 50;
    s->saturated_ns = 1 * S;
    db_set_bit(s->member_bits, 1);
    db_set_bit(s->member_bits, 2);
    db_set_bit(s->waker_bits, 0);
    db_saturation(b, sw, 100 * MS, 900 * MS, 2);
    db_complete(b, 2 * S);
    struct dump *d;
    struct m_process *p = build(b, &d);

    cr_assert_eq(p->npools, 0);
    const struct m_lock *l = lock_at(p, gil);
    cr_assert_not_null(l);
    cr_assert_str_eq(l->symbol, "_PyRuntime+0x20");
    cr_assert_str_eq(l->label, "GIL");
    cr_assert(has_culprit(p, "lock_contention"));
    cr_assert(!has_culprit(p, "thread_pool_exhaustion"));
    cr_assert(strstr(p->diagnosis[0].summary, "for the GIL"), "%s", p->diagnosis[0].summary);
    done(p, d, b);
}

Test(locks, a_gil_taken_by_waking_sleepers_is_no_culprit)
{
    struct st_thread *w1, *w2;
    struct dump_builder *b = python_process(&w1, &w2);
    w1->lock_wait_ns = w2->lock_wait_ns = 200 * MS;
    /* Many short waits, a fifth of the threads' time, none timed out: each
     * waiter got the GIL within one interval. */
    uint64_t gil = (uint64_t)(uintptr_t)&_PyRuntime.words[4];
    struct st_object *g = db_add_object(b, gil, ST_OBJ_COND);
    g->flags = ST_OBJ_TIMED_RETRY;
    g->waits = 2000;
    g->wait_ns = 800 * MS;
    g->max_wait_ns = 4 * MS;
    db_complete(b, 2 * S);
    struct dump *d;
    struct m_process *p = build(b, &d);

    const struct m_lock *l = lock_at(p, gil);
    cr_assert_not_null(l, "listed");
    cr_assert_str_eq(l->label, "GIL");
    cr_assert_float_eq(l->contended_ms, 0, 1e-9);
    cr_assert(!l->culprit);
    cr_assert(!has_culprit(p, "lock_contention"));
    done(p, d, b);
}

Test(locks, short_waits_matter_by_their_share_of_the_waiting_threads_time)
{
    struct dump_builder *b = four_objects();
    struct st_file_header *h = db_header(b);
    struct st_thread *t = (struct st_thread *)(b->buf + h->threads_offset);
    /* Slots 1 and 4 blocked on locks: 20 thread-seconds between them. */
    t[1].lock_wait_ns = 1 * S;
    t[4].lock_wait_ns = 1 * S;
    struct st_object *small = db_add_object(b, 0xf000, ST_OBJ_MUTEX);
    small->waits = 500;
    small->wait_ns = 1 * S;        /* 5% */
    small->max_wait_ns = 10 * MS;
    struct st_object *big = db_add_object(b, 0xf800, ST_OBJ_MUTEX);
    big->waits = 2000;
    big->wait_ns = 4 * S;          /* 20% */
    big->max_wait_ns = 10 * MS;
    /* libuv's pool mutex next to the pool's queue: the pool's own. */
    struct st_object *own = db_add_object(b, 0xa040, ST_OBJ_MUTEX);
    own->waits = 3000;
    own->wait_ns = 6 * S;
    own->max_wait_ns = 10 * MS;
    db_complete(b, 10 * S);
    struct dump *d;
    struct m_process *p = build(b, &d);

    const struct m_lock *a = lock_at(p, 0xf000), *c = lock_at(p, 0xf800), *q = lock_at(p, 0xa040);
    cr_assert(a && c && q);
    cr_assert_float_eq(a->wait_share, 0.05, 1e-3);
    cr_assert(!a->culprit, "5%% of the threads' time in waits of 2 ms is no culprit");
    cr_assert_float_eq(c->wait_share, 0.2, 1e-3);
    cr_assert(c->culprit);
    cr_assert_str_eq(q->internal, "pool 0's queue");
    cr_assert(!q->culprit, "a pool's own queue lock is not the program's to fix");
    cr_assert(has_culprit(p, "lock_contention"));
    cr_assert(strstr(p->diagnosis[0].summary, "0xf800"), "%s", p->diagnosis[0].summary);
    done(p, d, b);
}

Test(report, json_and_text_show_pools_and_locks)
{
    struct dump_builder *b = four_objects();
    struct st_file_header *h = db_header(b);
    struct st_object *q = (struct st_object *)(b->buf + h->objects_offset);
    q->saturated_ns = 4 * S;
    db_saturation(b, 0xa000, 1 * S, 4 * S, 2);
    for (uint64_t at = 1; at <= 3; at += 2) {
        db_slow_call(b, 101, ST_CALL_CLOCK_NANOSLEEP, at * S, 2 * S, sleep_stack, 3);
        db_slow_call(b, 103, ST_CALL_CLOCK_NANOSLEEP, at * S, 2 * S, sleep_stack, 3);
    }
    struct st_object *m = db_add_object(b, 0xf000, ST_OBJ_MUTEX);
    m->waits = 3;
    m->wait_ns = 300 * MS;
    db_lock_wait(b, 104, ST_CALL_MUTEX_LOCK, ST_OBJ_MUTEX, 0xf000, 1 * S, 300 * MS, 1, lock_stack, 2);
    db_complete(b, 10 * S);
    struct dump *d;
    struct m_process *p = build(b, &d);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    report_json(f, &p, 1, NULL);
    fclose(f);
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);
    cr_assert_not_null(doc, "%s", jerr.text);
    json_t *proc = json_array_get(json_object_get(doc, "processes"), 0);
    json_t *pool = json_array_get(json_object_get(proc, "pools"), 0);
    cr_assert_eq(json_integer_value(json_object_get(pool, "id")), 0);
    cr_assert_eq(json_integer_value(json_object_get(pool, "threads")), 2);
    cr_assert_float_eq(json_real_value(json_object_get(pool, "saturated_s")), 4, 1e-9);
    cr_assert(json_is_null(json_object_get(pool, "queue_wait_ms")));
    json_t *span = json_array_get(json_object_get(pool, "saturations"), 0);
    cr_assert_float_eq(json_real_value(json_object_get(span, "duration_ms")), 4000, 1e-9);
    json_t *busy = json_array_get(json_object_get(pool, "busy_in"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(busy, "call")), "clock_nanosleep");
    cr_assert_eq(json_array_size(json_object_get(busy, "stack")), 3);
    json_t *lock = json_array_get(json_object_get(proc, "locks"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(lock, "object")), "0xf000");
    cr_assert(json_is_null(json_object_get(lock, "symbol")));
    cr_assert_str_eq(json_string_value(json_object_get(lock, "kind")), "mutex");
    cr_assert_eq(json_integer_value(json_object_get(lock, "contentions")), 3);
    json_t *threads = json_object_get(proc, "threads");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(threads, 0), "role")), "loop");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(threads, 1), "role")), "worker");
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(threads, 1), "pool")), 0);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(threads, 3), "role")), "other");
    json_t *dg = json_object_get(proc, "diagnosis");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(dg, 0), "culprit")),
                     "thread_pool_exhaustion");
    json_decref(doc);
    free(text);

    f = open_memstream(&text, &len);
    report_text(f, &p, 1, NULL);
    fclose(f);
    cr_assert(strstr(text, "Thread pools"), "%s", text);
    cr_assert(strstr(text, "2/2 workers busy for 4.0 s, 100% of it in clock_nanosleep"), "%s", text);
    cr_assert(strstr(text, "Locks waited for"), "%s", text);
    cr_assert(strstr(text, "mutex 0xf000: 3 waits"), "%s", text);
    free(text);
    done(p, d, b);
}

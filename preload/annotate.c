/* annotate.c - the recorder side of the annotation API (annotate.h): the
 * exported stalltrace_mark_* functions behind queue wait and run time.
 *
 * Common path of a mark: the thread check, one CLOCK_MONOTONIC read, a hash
 * of the queue name and an insert or removal in the in-flight table under
 * a stripe spinlock, then atomic adds to the queue's counters and histogram.
 * A stack is taken at submission only when the queue looks backed up (a
 * task already pending, or as many running as ever), at most once per queue
 * every ST_CAPTURE_GAP_NS; it is kept in a small table of recent submission
 * stacks and named by a token in the task's entry, so the record of a task
 * that then waits past the threshold can carry it. A task submitted without
 * one borrows the last stack its thread took for the same queue.
 */
#include <string.h>

#include "queues.h"
#include "recorder.h"

#define ST_CAPTURE_GAP_NS 5000000u      /* 5 ms between stacks of one queue */
#define ST_SHARED_STACK_MAX_AGE_NS 2000000000u
#define ST_SUBMIT_STACKS 32u            /* a power of two */
#define ST_SUBMIT_STACK_BITS 5u
#define ST_SEQ_MASK 0x1ffffffu          /* sequence bits kept in a 30-bit token */

ST_EXPORT void stalltrace_mark_submitted(const char *queue, uint64_t task_id);
ST_EXPORT void stalltrace_mark_started(const char *queue, uint64_t task_id);
ST_EXPORT void stalltrace_mark_finished(const char *queue, uint64_t task_id);
ST_EXPORT void stalltrace_mark_discarded(const char *queue, uint64_t task_id);

/* The queue table lives in the dump (dumpfile.c lays it out). */
struct st_queues st_queues ST_HIDDEN;

/* Private: in the BSS, its pages touched only once tasks arrive. */
static struct st_tasks tasks;
static int tasks_pid;                   /* the process the table belongs to */
static uint32_t tasks_reset_lock;
static uint64_t last_capture_ns[1024];  /* per queue slot (capacity <= 1024) */

/* Recent submission stacks under a sequence lock: even seq = stable. */
struct submit_stack {
    uint32_t seq;
    uint64_t at_ns;
    struct st_captured c;
};
static struct submit_stack stacks[ST_SUBMIT_STACKS];
static uint32_t stacks_next;

/* The last stack this thread took, for the submissions that follow it. */
static ST_TLS struct {
    uint32_t queue_plus1, token;
    uint64_t at_ns;
} last_stack;

enum mark { MARK_SUBMITTED, MARK_STARTED, MARK_FINISHED, MARK_DISCARDED };

/* A forked child inherits the parent's in-flight tasks, which name the
 * parent's queue slots: start it empty. */
static void tasks_own(void)
{
    int pid = st_rec.proc_pid;
    if (ST_LIKELY(__atomic_load_n(&tasks_pid, __ATOMIC_ACQUIRE) == pid))
        return;
    while (__atomic_exchange_n(&tasks_reset_lock, 1, __ATOMIC_ACQUIRE))
        ;
    if (tasks_pid != pid) {
        memset(&tasks, 0, sizeof tasks);
        memset(last_capture_ns, 0, sizeof last_capture_ns);
        __atomic_store_n(&tasks_pid, pid, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&tasks_reset_lock, 0, __ATOMIC_RELEASE);
}

static unsigned slot_index(const struct st_thread *slot)
{
    return (unsigned)(slot - st_rec.threads);
}

static void bit_set(uint64_t *bits, unsigned i)
{
    if (i < ST_THREAD_BITS && !((bits[i / 64] >> (i % 64)) & 1))
        __atomic_fetch_or(&bits[i / 64], (uint64_t)1 << (i % 64), __ATOMIC_RELAXED);
}

/* Would a task submitted now wait? Only if one is pending already, or the
 * workers seem all busy (as many running as ever ran at once). */
static int backed_up(const struct st_queue *q)
{
    uint64_t sub = __atomic_load_n(&q->submitted, __ATOMIC_RELAXED);
    uint64_t started = __atomic_load_n(&q->started, __ATOMIC_RELAXED);
    uint64_t fin = __atomic_load_n(&q->finished, __ATOMIC_RELAXED);
    uint64_t dis = __atomic_load_n(&q->discarded, __ATOMIC_RELAXED);
    uint64_t running = started > fin ? started - fin : 0;
    return sub > started + dis || (running > 0 && running >= q->peak_running);
}

/* Take the submitter's stack into the table; its token, or 0. */
static uint32_t take_stack(uint64_t now)
{
    uint32_t i = __atomic_fetch_add(&stacks_next, 1, __ATOMIC_RELAXED) & (ST_SUBMIT_STACKS - 1);
    struct submit_stack *s = &stacks[i];
    uint32_t seq = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);
    if ((seq & 1) || !__atomic_compare_exchange_n(&s->seq, &seq, seq + 1, 0, __ATOMIC_ACQUIRE,
                                                  __ATOMIC_RELAXED))
        return 0;      /* another thread is writing it */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    st_capture_here(&s->c, (void *)stalltrace_mark_submitted);
    s->at_ns = now;
    __atomic_store_n(&s->seq, seq + 2, __ATOMIC_RELEASE);
    return ((seq + 2) & ST_SEQ_MASK) << ST_SUBMIT_STACK_BITS | i;
}

/* Copy the stack of a token if it is still there; 0 if overwritten. */
static int read_stack(uint32_t token, struct st_captured *c, uint64_t *at_ns)
{
    struct submit_stack *s = &stacks[token & (ST_SUBMIT_STACKS - 1)];
    uint32_t want = token >> ST_SUBMIT_STACK_BITS;
    if ((__atomic_load_n(&s->seq, __ATOMIC_ACQUIRE) & ST_SEQ_MASK) != want)
        return 0;
    memcpy(c, &s->c, sizeof *c);
    *at_ns = s->at_ns;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return (__atomic_load_n(&s->seq, __ATOMIC_RELAXED) & ST_SEQ_MASK) == want &&
           c->nframes <= ST_MAX_FRAMES && c->npython <= ST_MAX_PYFRAMES;
}

static uint32_t submit_stack_token(struct st_queue *q, uint32_t qi, uint64_t now, uint16_t *kind)
{
    *kind = ST_TASK_STACK_NONE;
    if (backed_up(q) && qi < sizeof last_capture_ns / sizeof last_capture_ns[0]) {
        uint64_t last = __atomic_load_n(&last_capture_ns[qi], __ATOMIC_RELAXED);
        if ((last == 0 || now - last >= ST_CAPTURE_GAP_NS) &&
            __atomic_compare_exchange_n(&last_capture_ns[qi], &last, now ? now : 1, 0,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            uint32_t token = take_stack(now);
            if (token) {
                last_stack.queue_plus1 = qi + 1;
                last_stack.token = token;
                last_stack.at_ns = now;
                *kind = ST_TASK_STACK_OWN;
                return token;
            }
        }
    }
    if (last_stack.queue_plus1 == qi + 1 && now - last_stack.at_ns <= ST_SHARED_STACK_MAX_AGE_NS) {
        *kind = ST_TASK_STACK_SHARED;
        return last_stack.token;
    }
    return 0;
}

static void emit_long_wait(uint32_t qi, uint64_t id, const struct st_task *e, uint32_t start_tid)
{
    union {
        struct st_rec_task_wait rec;
        uint8_t bytes[sizeof(struct st_rec_task_wait) + ST_STACK_BYTES];
    } buf;
    static const struct st_captured none;
    struct st_captured c;
    struct st_rec_task_wait *r = &buf.rec;
    memset(r, 0, sizeof *r);
    r->queue = qi;
    r->submit_tid = e->submit_tid;
    r->start_tid = start_tid;
    r->task_id = id;
    r->submit_ns = e->submit_ns;
    r->start_ns = e->start_ns;
    const struct st_captured *stack = &none;
    uint16_t kind = (uint16_t)(e->stack_ref >> 30);
    if (kind != ST_TASK_STACK_NONE && read_stack(e->stack_ref & 0x3fffffffu, &c, &r->stack_at_ns)) {
        r->stack_kind = kind;
        stack = &c;
    }
    uint32_t len = sizeof *r + st_put_stack(&r->stack, stack, ST_UNWIND_LIBUNWIND);
    st_ring_put(&st_rec.ring, ST_REC_TASK_WAIT, r, len);
}

static void mark(enum mark what, const char *queue, uint64_t id)
{
    struct st_tls *t = &st_tls;
    if (!st_thread_records(t) || queue == NULL || st_queues.table == NULL ||
        st_rec.state != ST_ACTIVE)
        return;
    int saved_errno = st_recorder_enter(t);
    tasks_own();
    uint64_t now = st_now_ns();
    struct st_queue *q = st_queue_get(&st_queues, queue, now);
    if (q == NULL)
        goto out;
    uint32_t qi = (uint32_t)(q - st_queues.table);
    struct st_task e;

    switch (what) {
    case MARK_SUBMITTED: {
        uint16_t kind;
        uint32_t token = submit_stack_token(q, qi, now, &kind);
        e = (struct st_task){.id = id, .queue_plus1 = qi + 1, .submit_tid = t->slot->tid,
                             .submit_ns = now};
        e.stack_ref = token ? (uint32_t)kind << 30 | (token & 0x3fffffffu) : 0;
        bit_set(q->submitter_bits, slot_index(t->slot));
        if (st_task_submit(&tasks, &e) < 0)
            __atomic_fetch_add(&st_rec.hdr->tasks_untracked, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&q->submitted, 1, __ATOMIC_RELAXED);
        break;
    }
    case MARK_STARTED: {
        uint64_t started = __atomic_add_fetch(&q->started, 1, __ATOMIC_RELAXED);
        uint64_t fin = __atomic_load_n(&q->finished, __ATOMIC_RELAXED);
        uint32_t running = started > fin ? (uint32_t)(started - fin) : 0;
        uint32_t peak = __atomic_load_n(&q->peak_running, __ATOMIC_RELAXED);
        while (running > peak && !__atomic_compare_exchange_n(&q->peak_running, &peak, running, 1,
                                                              __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            ;
        bit_set(q->worker_bits, slot_index(t->slot));
        if (st_task_start(&tasks, qi, id, now, &e) < 0) {
            __atomic_fetch_add(&q->unmatched, 1, __ATOMIC_RELAXED);
            break;
        }
        uint64_t wait = now > e.submit_ns ? now - e.submit_ns : 0;
        __atomic_fetch_add(&q->wait_ns, wait, __ATOMIC_RELAXED);
        st_hist_add(q->wait_hist, &q->max_wait_ns, wait);
        if (wait >= st_rec.threshold_ns) {
            __atomic_fetch_add(&q->long_waits, 1, __ATOMIC_RELAXED);
            emit_long_wait(qi, id, &e, t->slot->tid);
        }
        break;
    }
    case MARK_FINISHED:
        __atomic_fetch_add(&q->finished, 1, __ATOMIC_RELAXED);
        if (st_task_remove(&tasks, qi, id, &e) < 0 || !e.started) {
            __atomic_fetch_add(&q->unmatched, 1, __ATOMIC_RELAXED);
            break;
        }
        uint64_t run = now > e.start_ns ? now - e.start_ns : 0;
        __atomic_fetch_add(&q->run_ns, run, __ATOMIC_RELAXED);
        st_hist_add(q->run_hist, &q->max_run_ns, run);
        break;
    case MARK_DISCARDED:
        if (st_task_remove(&tasks, qi, id, &e) == 0 && !e.started)
            __atomic_fetch_add(&q->discarded, 1, __ATOMIC_RELAXED);
        else
            __atomic_fetch_add(&q->unmatched, 1, __ATOMIC_RELAXED);
        break;
    }
out:
    st_recorder_leave(t, saved_errno);
}

ST_EXPORT void stalltrace_mark_submitted(const char *queue, uint64_t task_id)
{
    mark(MARK_SUBMITTED, queue, task_id);
}

ST_EXPORT void stalltrace_mark_started(const char *queue, uint64_t task_id)
{
    mark(MARK_STARTED, queue, task_id);
}

ST_EXPORT void stalltrace_mark_finished(const char *queue, uint64_t task_id)
{
    mark(MARK_FINISHED, queue, task_id);
}

ST_EXPORT void stalltrace_mark_discarded(const char *queue, uint64_t task_id)
{
    mark(MARK_DISCARDED, queue, task_id);
}

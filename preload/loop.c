/* loop.c - loop threads and their iterations. A thread that keeps coming
 * back to the same event wait is a loop thread; the time between two of its
 * loop waits is an iteration's busy time, and a long one is a stall.
 */
#include <errno.h>
#include <string.h>
#include <sys/prctl.h>

#include "recorder.h"

/* Consecutive returns to another epoll fd after which it is the new loop
 * (a program that closed its loop and made another). */
#define ST_NEW_LOOP_RUN 8

static int is_epoll(uint16_t call)
{
    return call == ST_CALL_EPOLL_WAIT || call == ST_CALL_EPOLL_PWAIT ||
           call == ST_CALL_EPOLL_PWAIT2;
}

static int key_eq(const struct st_wait_key *a, const struct st_wait_key *b)
{
    return a->call == b->call && a->fd == b->fd && a->site == b->site;
}

/* No iteration runs now (the watchdog and a post-mortem read the slot). */
static void no_iteration(struct st_tls *t)
{
    t->in_iteration = 0;
    t->slot->live_iter_start_ns = 0;
}

static void become_loop(struct st_tls *t, const struct st_wait_key *key)
{
    struct st_thread *s = t->slot;
    t->is_loop = 1;
    t->loop_key = *key;
    t->other_run = 0;
    s->loop_call = key->call;
    s->loop_fd = key->fd;
    s->loop_site = key->site;
    no_iteration(t);
    prctl(PR_GET_NAME, s->name, 0, 0, 0);
    __atomic_fetch_or(&s->flags, ST_THREAD_LOOP, __ATOMIC_RELEASE);
    int saved_errno = st_recorder_enter(t);
    st_stack_warm_up();
    st_watchdog_start();
    st_recorder_leave(t, saved_errno);
}

/* The candidate entry for this wait: its own, or the least used one. */
static unsigned candidate_slot(struct st_tls *t, const struct st_wait_key *key)
{
    unsigned least = 0;
    for (unsigned i = 0; i < 4; i++) {
        if (t->cand_hits[i] && key_eq(&t->cand[i], key))
            return i;
        if (t->cand_hits[i] < t->cand_hits[least])
            least = i;
    }
    t->cand[least] = *key;
    t->cand_hits[least] = 0;
    return least;
}

/* Is this wait (not the loop wait) the loop wait from now on? A probe is
 * not: puma's request threads ppoll their client with a zero (or 200 ms)
 * timeout before each job and then idle on a condition, which is a pool
 * worker's life, not a loop's. */
static int claims_loop(struct st_tls *t, const struct st_wait_key *key, int probe)
{
    if (probe)
        return 0;
    if (t->is_loop) {
        if (!is_epoll(key->call))
            return 0;
        if (key_eq(key, &t->other_key)) {
            t->other_run++;
        } else {
            t->other_key = *key;
            t->other_run = 1;
        }
        if (t->other_run < ST_NEW_LOOP_RUN)
            return 0;
        become_loop(t, key);    /* the old loop's last iteration is void */
        return 1;
    }
    unsigned slot = candidate_slot(t, key);
    /* epoll on one fd is a loop on its second return; poll/select from one
     * site need a third, since one-off polls (socket timeouts) are common. */
    if (++t->cand_hits[slot] < (is_epoll(key->call) ? 2u : 3u))
        return 0;
    become_loop(t, key);
    return 1;
}

static void end_iteration(struct st_tls *t, uint64_t busy)
{
    struct st_thread *s = t->slot;
    s->iterations++;
    s->busy_ns += busy;
    s->busy_hist[st_hist_bucket(busy)]++;
    if (busy > s->max_busy_ns)
        s->max_busy_ns = busy;
    if (ST_UNLIKELY(busy >= st_rec.threshold_ns) && st_recording()) {
        int saved_errno = st_recorder_enter(t);
        s->stalls++;
        s->stall_ns += busy;
        st_emit_stall(t, busy);
        st_recorder_leave(t, saved_errno);
    }
}

/* The loop wait is called: the iteration that ran until now is over. */
void st_iteration_end(struct st_tls *t, uint64_t now)
{
    no_iteration(t);
    end_iteration(t, st_ticks_elapsed_ns(t->iter_start_ticks, now));
}

/* An iteration (or a first iteration in waiting) starts now; the watchdog
 * sees it from the last store on. */
static inline void open_iteration(struct st_tls *t, uint64_t now)
{
    struct st_thread *s = t->slot;
    t->iter_start_ticks = now;
    t->iter_start_ns = st_ticks_at(t, now) | 1;    /* 0 means "no iteration" */
    t->ncalls = 0;
    t->calls_ns = 0;
    s->live_iter_seq++;
    __atomic_store_n(&s->live_iter_start_ns, t->iter_start_ns, __ATOMIC_RELEASE);
}

/* The loop wait returned: the next iteration starts. */
void st_iteration_begin(struct st_tls *t, uint64_t now)
{
    t->slot->idle_ns += st_ticks_elapsed_ns(t->wait_start_ticks, now);
    t->in_iteration = 1;
    open_iteration(t, now);
    if (ST_UNLIKELY(__atomic_load_n(&st_hot.watchdog_down, __ATOMIC_RELAXED)))
        st_watchdog_restart();
}

/* ---- Before a thread is a loop thread -------------------------------------
 * A thread becomes one only on its second return to an epoll wait: the work
 * it did after the first (a tokio worker's first request) would be lost. So
 * after an epoll wait or a parked wait of a thread that is not one yet, its
 * time is also taken as an iteration's; if the next wait makes it a loop
 * thread, that ends the iteration (a stall when long), and the analyzer
 * takes the slow calls recorded inside the stall for part of it. A
 * program's start-up, before any such wait, is no iteration. */

/* The watchdog samples it as it samples iterations: a CPU-bound first
 * iteration needs its stack too. */
static void pre_iteration_begin(struct st_tls *t, uint64_t now)
{
    t->pre_iteration = 1;
    open_iteration(t, now);
}

static void pre_iteration_drop(struct st_tls *t)
{
    if (!t->pre_iteration)
        return;
    t->pre_iteration = 0;
    t->slot->live_iter_start_ns = 0;
}

/* The wait that made the thread a loop thread ends its first iteration. */
static void pre_iteration_close(struct st_tls *t, uint64_t now)
{
    pre_iteration_drop(t);
    end_iteration(t, st_ticks_elapsed_ns(t->iter_start_ticks, now));
}

void st_idle_wait_enter(struct st_tls *t)
{
    if (t->state != ST_T_READY || t->recorder_depth)
        return;
    uint64_t now = st_ticks();
    if (t->in_iteration)
        st_iteration_end(t, now);
    else
        pre_iteration_drop(t);
    t->wait_start_ticks = now;
}

/* Has the thread returned from an epoll wait: can its next one make it a
 * loop thread? */
static int epoll_candidate(const struct st_tls *t)
{
    for (unsigned i = 0; i < 4; i++)
        if (t->cand_hits[i] && is_epoll(t->cand[i].call))
            return 1;
    return 0;
}

/* A thread that never waited in epoll (a pool worker) has no first
 * iteration to wait for: it is not timed, nor sampled. */
void st_idle_wait_leave(struct st_tls *t)
{
    if (t->state != ST_T_READY || t->recorder_depth || !st_recording())
        return;
    uint64_t now = st_ticks();
    if (t->is_loop)
        st_iteration_begin(t, now);
    else if (epoll_candidate(t))
        pre_iteration_begin(t, now);
}

/* Any wait but a loop thread's return to its loop wait (recorder.h has
 * that one): the first calls of a thread, a blocking call inside an
 * iteration, or the wait that makes a thread a loop thread. */
void st_wait_enter_other(struct st_wait *w, uint16_t call, int fd, uintptr_t site, int probe)
{
    struct st_tls *t = &st_tls;
    w->kind = ST_WAIT_PASS;
    if (!st_thread_records(t))
        return;
    if (!st_recording())
        return;
    int epoll = is_epoll(call);
    struct st_wait_key key = {call, epoll ? fd : -1, epoll ? 0 : site};
    int saved_errno = errno;
    int loop = (t->is_loop && key_eq(&key, &t->loop_key)) || claims_loop(t, &key, probe);
    errno = saved_errno;
    if (!loop) {
        if (!t->is_loop)
            pre_iteration_drop(t);
        w->kind = ST_WAIT_CALL;
        w->probe = (uint8_t)probe;
        w->t0 = st_ticks();
        t->live_call = call;
        return;
    }
    t->other_run = 0;
    uint64_t now = st_ticks();
    if (t->in_iteration)
        st_iteration_end(t, now);
    else if (t->pre_iteration)
        pre_iteration_close(t, now);
    t->wait_start_ticks = now;
    w->kind = ST_WAIT_LOOP;
}

/* A wait that was not the loop wait returned. Waiting for events outside
 * an iteration is idleness, not slowness; but a probe of one fd that a
 * thread of no loop sat in is a blocking call (CRuby's `sleep` may wait
 * in ppoll on its signal fd). */
void st_wait_leave_other(struct st_wait *w, void *real_fn)
{
    struct st_tls *t = &st_tls;
    t->live_call = 0;
    uint64_t now = st_ticks(), elapsed = now - w->t0;
    if (ST_UNLIKELY(elapsed >= st_hot.slow_bar_ticks) && (t->in_iteration || (w->probe && !t->is_loop)))
        st_call_slow_ticks(w->call, elapsed, real_fn);
    if (!t->is_loop && is_epoll(w->call) && st_recording())
        pre_iteration_begin(t, now);
}

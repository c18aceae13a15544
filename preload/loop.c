/* loop.c - loop threads and their iterations. A thread that keeps coming
 * back to the same event wait is a loop thread; the time between two of its
 * loop waits is an iteration's busy time, and a long one is a stall.
 */
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

static void become_loop(struct st_tls *t, const struct st_wait_key *key)
{
    struct st_thread *s = t->slot;
    t->is_loop = 1;
    t->loop_key = *key;
    t->other_run = 0;
    s->loop_call = key->call;
    s->loop_fd = key->fd;
    s->loop_site = key->site;
    s->live_iter_start_ns = 0;
    prctl(PR_GET_NAME, s->name, 0, 0, 0);
    __atomic_fetch_or(&s->flags, ST_THREAD_LOOP, __ATOMIC_RELEASE);
    st_stack_warm_up();
    st_watchdog_start();
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

/* Is this wait (not the loop wait) the loop wait from now on? */
static int claims_loop(struct st_tls *t, const struct st_wait_key *key)
{
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
        t->slot->live_iter_start_ns = 0;    /* the old loop's last iteration is void */
        become_loop(t, key);
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

static void end_iteration(struct st_tls *t, uint64_t now)
{
    struct st_thread *s = t->slot;
    uint64_t busy = now - t->iter_start_ns;
    s->iterations++;
    s->busy_ns += busy;
    s->busy_hist[st_hist_bucket(busy)]++;
    if (busy > s->max_busy_ns)
        s->max_busy_ns = busy;
    if (busy >= st_rec.threshold_ns) {
        s->stalls++;
        st_emit_stall(t, busy);
    }
}

void st_wait_enter(struct st_wait *w, uint16_t call, int fd, uintptr_t site)
{
    struct st_tls *t = &st_tls;
    w->kind = ST_WAIT_PASS;
    w->call = call;
    if (ST_UNLIKELY(t->state != ST_T_READY)) {
        if (t->state != ST_T_NEW)
            return;
        st_thread_attach();
        if (t->state != ST_T_READY)
            return;
    }
    if (t->busy)
        return;
    t->sampler_hit = 0;
    struct st_wait_key key = {call, is_epoll(call) ? fd : -1, is_epoll(call) ? 0 : site};
    int saved_errno = errno;
    if (!(t->is_loop && key_eq(&key, &t->loop_key)) && !claims_loop(t, &key)) {
        w->kind = ST_WAIT_CALL;
        w->t0 = st_coarse_ns();
        t->slot->live_call = call;
        errno = saved_errno;
        return;
    }
    t->other_run = 0;
    uint64_t now = st_now_ns();
    if (t->slot->live_iter_start_ns != 0) {
        t->busy++;
        end_iteration(t, now);
        t->busy--;
    }
    t->slot->live_iter_start_ns = 0;
    w->kind = ST_WAIT_LOOP;
    w->precise_start = now;
    errno = saved_errno;
}

void st_wait_leave(struct st_wait *w, void *real_fn)
{
    struct st_tls *t = &st_tls;
    if (w->kind == ST_WAIT_CALL) {
        /* Waiting for events outside an iteration is idleness, not slowness. */
        t->slot->live_call = 0;
        uint64_t elapsed = st_coarse_ns() - w->t0;
        if (ST_UNLIKELY(elapsed >= st_rec.slow_bar_ns) && t->is_loop &&
            t->slot->live_iter_start_ns != 0) {
            int saved_errno = errno;
            st_call_slow(w->call, w->t0, elapsed, real_fn);
            errno = saved_errno;
        }
        return;
    }
    if (w->kind != ST_WAIT_LOOP)
        return;
    uint64_t now = st_now_ns();
    struct st_thread *s = t->slot;
    s->idle_ns += now - w->precise_start;
    t->iter_start_ns = now ? now : 1;
    t->top_call = ST_CALL_NONE;
    t->top_call_ns = 0;
    t->top_stack.nframes = t->top_stack.npython = 0;
    t->calls_ns = 0;
    s->live_iter_seq++;
    __atomic_store_n(&s->live_iter_start_ns, t->iter_start_ns, __ATOMIC_RELEASE);
}

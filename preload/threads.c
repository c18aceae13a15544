/* threads.c - a slot in the dump's thread table for each thread we see.
 * A thread claims its slot on its first wrapped call; at exit the slot is
 * kept if it holds something worth reporting, else freed for reuse.
 */
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "recorder.h"

ST_TLS struct st_tls st_tls;

static uint32_t gettid_raw(void) { return (uint32_t)syscall(SYS_gettid); }

struct st_thread *st_thread_claim(uint32_t tid, uint64_t start_routine)
{
    struct st_file_header *h = st_rec.hdr;
    if (h == NULL)
        return NULL;
    for (uint32_t i = 0; i < h->thread_capacity; i++) {
        struct st_thread *slot = &st_rec.threads[i];
        uint32_t expected = 0;
        if (__atomic_load_n(&slot->tid, __ATOMIC_RELAXED) != 0 ||
            !__atomic_compare_exchange_n(&slot->tid, &expected, tid, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            continue;
        /* Zero everything but tid, which marks the slot taken. */
        memset((char *)slot + sizeof slot->tid, 0, sizeof *slot - sizeof slot->tid);
        slot->start_routine = start_routine;
        slot->created_ns = st_now_ns();
        slot->loop_fd = -1;
        if (tid == (uint32_t)getpid())
            slot->flags |= ST_THREAD_MAIN;
        uint32_t used = i + 1, seen = __atomic_load_n(&h->thread_count, __ATOMIC_RELAXED);
        while (used > seen &&
               !__atomic_compare_exchange_n(&h->thread_count, &seen, used, 0,
                                            __ATOMIC_RELEASE, __ATOMIC_RELAXED))
            ;
        return slot;
    }
    __atomic_fetch_add(&h->threads_untracked, 1, __ATOMIC_RELAXED);
    return NULL;
}

volatile uint16_t *st_live_call_at[ST_THREAD_BITS];

void st_thread_attach(void)
{
    struct st_tls *t = &st_tls;
    if (st_rec.state == ST_CHILD_PENDING)
        st_recorder_child_start();
    if (st_rec.state != ST_ACTIVE) {
        if (st_rec.state == ST_OFF)
            t->state = ST_T_IGNORED;
        return;          /* not started yet: try again on the next call */
    }
    int saved_errno = st_recorder_enter(t);
    uint64_t routine = t->start_routine;
#ifdef ST_ATTACH_BUILD
    if (routine == 0)              /* started before attach: glibc knows its routine */
        routine = t->start_routine = st_attach_start_routine();
#endif
    t->slot = st_thread_claim(gettid_raw(), routine);
    if (t->slot != NULL) {
        st_live_call_at[t->slot - st_rec.threads] = &t->live_call;
        t->tid = t->slot->tid;
        prctl(PR_GET_NAME, t->slot->name, 0, 0, 0);
        t->state = ST_T_READY;
    } else {
        t->state = ST_T_IGNORED;
    }
    st_recorder_leave(t, saved_errno);
}

/* Loop threads and threads with recorded events keep their slot. */
void st_thread_detach(void)
{
    struct st_tls *t = &st_tls;
    struct st_thread *slot = t->slot;
    /* A loop thread can leave its loop in the middle of an iteration
     * (libmicrohttpd's pool threads return once they see the daemon
     * stopping, without another epoll_wait): it was busy until now, so its
     * last iteration ends here, a stall when long, instead of vanishing. */
    if (slot != NULL && t->state == ST_T_READY && st_rec.hdr != NULL && t->is_loop && t->in_iteration &&
        !t->recorder_depth && st_recording())
        st_iteration_end(t, st_ticks());
    if (slot != NULL && t->state == ST_T_READY && st_rec.hdr != NULL) {
        int saved_errno = st_recorder_enter(t);
        st_sync_thread_exit(t);
        st_recorder_leave(t, saved_errno);
    }
    t->state = ST_T_IGNORED;
    t->slot = NULL;
    t->tid = 0;
    t->live_call = 0;
    if (slot == NULL || st_rec.hdr == NULL)
        return;
    st_live_call_at[slot - st_rec.threads] = NULL;
    t->in_iteration = 0;
    slot->live_iter_start_ns = 0;
    slot->live_call = 0;
    slot->exited_ns = st_now_ns();
    if (slot->flags & ST_THREAD_LOOP || slot->stalls || slot->slow_calls || slot->idle_object ||
        slot->lock_wait_ns) {
        __atomic_fetch_or(&slot->flags, ST_THREAD_EXITED, __ATOMIC_RELEASE);
        return;
    }
    __atomic_store_n(&slot->tid, 0, __ATOMIC_RELEASE);
}

/* holders.c - who held a lock a long wait was for: the watchdog asks the
 * holder of a wait past the threshold to sample its own stack by signal.
 * Only contended waits that named their holder get here; nothing on a fast path.
 */
#include <stddef.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "recorder.h"
#include "procstat.h"
#include "rwlock_word.h"

/* glibc keeps a robust or PI mutex's flags in the owner word's top bits. */
#define OWNER_TID_MASK 0x3fffffffu

/* A blocked wait whose holder is known, by the waiter's slot: the waiter
 * writes it (start_ns last), the watchdog reads it. */
struct holder_wait {
    uint64_t object;
    uint32_t holder, waiter;
    uint16_t kind;
    volatile uint64_t start_ns;      /* 0: not waiting */
    uint64_t asked_for;              /* the watchdog's: start_ns it asked for */
    volatile uint64_t passed_on;     /* start_ns of a wait whose lock changed hands by the threshold */
    /* A loop's GIL waits (holder 0): the watchdog names the GIL's holder
     * once per stalled iteration; the loop reads it when the stall ends. */
    volatile uint64_t gil_seq;       /* the iteration it was named in */
    uint32_t gil_holder;
    uint64_t gil_wait_start_ns;      /* the wait it was named in */
    volatile uint64_t gil_sampled_ns;/* the holder's handler: the wait it sampled itself in */
    uint32_t gil_asks;               /* in this iteration: a holder that let the GIL go
                                        before our signal came is asked again */
};

/* Asks of the GIL's holder per stalled iteration, at most. */
#define GIL_ASKS_MAX 8u

/* A request to a holder, by the holder's slot: the watchdog fills it and
 * sets pending; the holder's handler copies it and clears pending. */
struct holder_ask {
    uint64_t object, wait_start_ns;
    uint16_t kind;
    uint16_t waiter_slot;
    uint64_t asked_ns;               /* a request never answered goes stale */
    uint32_t waiter;
    volatile uint32_t pending;
};

static struct holder_wait waits[ST_THREAD_BITS];

/* How soon the watchdog looks again at a stalled loop between GIL waits. */
#define GIL_LOOK_NS 2000000u
static struct holder_ask asks[ST_THREAD_BITS];

void st_holder_wait_begin(unsigned slot, uint64_t object, uint16_t kind, uint32_t holder,
                          uint64_t start_ns)
{
    if (slot >= ST_THREAD_BITS)
        return;
    struct holder_wait *w = &waits[slot];
    w->object = object;
    w->kind = kind;
    w->holder = holder;
    w->waiter = st_rec.threads[slot].tid;
    __atomic_store_n(&w->start_ns, start_ns ? start_ns : 1, __ATOMIC_RELEASE);
}

int st_holder_wait_end(unsigned slot)
{
    if (slot >= ST_THREAD_BITS)
        return 0;
    uint64_t start = waits[slot].start_ns;
    __atomic_store_n(&waits[slot].start_ns, 0, __ATOMIC_RELEASE);
    return __atomic_load_n(&waits[slot].passed_on, __ATOMIC_ACQUIRE) == start;
}

/* Calls our signal interrupts without the program seeing it: the sleeps and
 * event waits our wrappers redo, and futex waits glibc redoes (a condition
 * wait may wake spuriously anyway). */
static int call_redone(uint16_t call)
{
    switch (call) {
    case ST_CALL_NANOSLEEP: case ST_CALL_CLOCK_NANOSLEEP: case ST_CALL_USLEEP:
    case ST_CALL_MUTEX_LOCK: case ST_CALL_RWLOCK_RDLOCK: case ST_CALL_RWLOCK_WRLOCK:
    case ST_CALL_COND_WAIT: case ST_CALL_COND_TIMEDWAIT: case ST_CALL_COND_CLOCKWAIT:
        return 1;
    default:
        return 0;
    }
}

static int slot_of_tid(uint32_t tid, uint32_t count)
{
    for (uint32_t i = 0; i < count && i < ST_THREAD_BITS; i++)
        if (__atomic_load_n(&st_rec.threads[i].tid, __ATOMIC_ACQUIRE) == tid)
            return (int)i;
    return -1;
}

/* CPython's GIL (3.11-3.13): the condition its waiters wait on is preceded
 * by the switch interval, the last holder's PyThreadState and the locked
 * flag. A condition that does not look so is no GIL: 0. */
static uint32_t gil_holder_of(uint64_t cond)
{
    uint64_t g[3], ntid = 0;
    uint32_t off = st_py_native_tid_offset();
    if (off == 0 || cond < 4096 + 24 || !st_safe_read(g, cond - 32, sizeof g))
        return 0;
    if (g[0] == 0 || g[0] > 10000000u || (uint32_t)g[2] != 1 || g[1] < 4096 || (g[1] & 7) ||
        !st_safe_read(&ntid, g[1] + off, sizeof ntid) || ntid == 0 || ntid > 0x3fffffffu)
        return 0;
    return (uint32_t)ntid;
}

/* Is the lock still this thread's? Then the stack is the one it holds it
 * in. A mutex names its owner, an rwlock its writer (tid 0: readers, any);
 * a semaphore used as a lock is held while its value is 0 and this thread
 * acquired it last. */
static int still_holds(uint64_t object, uint16_t kind, uint32_t tid)
{
    if (kind == ST_OBJ_COND)
        return gil_holder_of(object) == tid;
    if (kind == ST_OBJ_SEM) {
        uint32_t words[8];
        return st_safe_read(words, object, sizeof words) && words[0] == 0 &&
               words[ST_SEM_ACQUIRER_WORD] == tid;
    }
    if (kind == ST_OBJ_RWLOCK) {
        pthread_rwlock_t l;
        if (!st_safe_read(&l, object, sizeof l))
            return 0;
        return tid ? (uint32_t)l.__data.__cur_writer == tid : st_rwlock_readers(l.__data.__readers) != 0;
    }
    uint32_t owner = 0;
    return st_safe_read(&owner, object + offsetof(pthread_mutex_t, __data.__owner), sizeof owner) &&
           (owner & OWNER_TID_MASK) == tid;
}

/* Asks thread holder for its stack while waiter's wait (from start) on
 * object lasts, if a signal can reach it without the program noticing. */
static void ask(uint32_t holder, unsigned waiter_slot, uint64_t object, uint16_t kind, uint64_t start,
                uint32_t count, uint64_t now)
{
    uint32_t waiter = waits[waiter_slot].waiter;
    int h = slot_of_tid(holder, count);
    int sig = __atomic_load_n(&st_rec.sample_signal, __ATOMIC_SEQ_CST);
    if (h < 0 || sig == 0 || (__atomic_load_n(&asks[h].pending, __ATOMIC_ACQUIRE) &&
                              now - asks[h].asked_ns < st_rec.threshold_ns))
        return;
    uint16_t call = 0;
    volatile uint16_t *at = st_live_call_at[h];
    if (at == NULL || !st_safe_read(&call, (uintptr_t)at, sizeof call))
        return;                        /* gone, or a thread we never attached */
    int running;
    if (!st_thread_signal_unblocked(holder, sig, &running) || !(running || call_redone(call)))
        return;
    struct holder_ask *a = &asks[h];
    __atomic_store_n(&a->pending, 0, __ATOMIC_RELEASE);
    a->asked_ns = now;
    a->object = object;
    a->kind = kind;
    a->wait_start_ns = start;
    a->waiter = waiter;
    a->waiter_slot = (uint16_t)waiter_slot;
    __atomic_store_n(&a->pending, 1, __ATOMIC_RELEASE);
    sig = __atomic_load_n(&st_rec.sample_signal, __ATOMIC_SEQ_CST);
    if (sig == 0 || syscall(SYS_tgkill, st_rec.proc_pid, holder, sig) != 0)
        __atomic_store_n(&a->pending, 0, __ATOMIC_RELEASE);
}

/* The holder of wait w (started at start), a threshold old: asked for its
 * stack while it still holds the lock; a lock that changed hands is noted. */
static void ask_holder(struct holder_wait *w, unsigned i, uint64_t start, uint32_t count, uint64_t now)
{
    uint64_t object = w->object;
    uint32_t holder = w->holder;
    uint16_t kind = w->kind;
    if (__atomic_load_n(&w->start_ns, __ATOMIC_ACQUIRE) != start)
        return;                        /* it ended as we read it */
    /* Short holds one after another: the first holder is not whom it waited for. */
    if (!still_holds(object, kind, holder)) {
        __atomic_store_n(&w->passed_on, start, __ATOMIC_RELEASE);
        return;
    }
    if (holder == 0)
        return;                        /* readers: no tid to ask */
    ask(holder, i, object, kind, start, count, now);
}

/* A loop's GIL wait in an iteration past the threshold: the GIL's holder,
 * once per iteration. */
static void name_gil_holder(struct holder_wait *w, unsigned i, uint64_t start, uint32_t count,
                            uint64_t now)
{
    const struct st_thread *slot = &st_rec.threads[i];
    uint64_t iter = __atomic_load_n(&slot->live_iter_start_ns, __ATOMIC_ACQUIRE);
    uint64_t seq = slot->live_iter_seq;
    if (iter == 0 || now < iter || now - iter < st_rec.threshold_ns)
        return;
    if (w->gil_seq == seq) {
        /* Named: again only if its last answer did not come for this wait's ask. */
        int h = slot_of_tid(w->gil_holder, count);
        if (w->gil_sampled_ns == w->gil_wait_start_ns || w->gil_asks >= GIL_ASKS_MAX || h < 0 ||
            __atomic_load_n(&asks[h].pending, __ATOMIC_ACQUIRE) || w->gil_wait_start_ns == start)
            return;
    } else {
        w->gil_asks = 0;
    }
    uint64_t object = w->object;
    uint32_t holder = gil_holder_of(object);
    if (holder == 0 || holder == w->waiter || slot_of_tid(holder, count) < 0 ||
        __atomic_load_n(&w->start_ns, __ATOMIC_ACQUIRE) != start)
        return;
    w->gil_holder = holder;
    w->gil_wait_start_ns = start;
    w->gil_asks++;
    __atomic_store_n(&w->gil_seq, seq, __ATOMIC_RELEASE);
    ask(holder, i, object, ST_OBJ_COND, start, count, now);
}

/* A stalled iteration of a loop that waits for the GIL, its holder not
 * named yet. */
static int gil_unnamed(const struct holder_wait *w, unsigned i, uint64_t now)
{
    const struct st_thread *slot = &st_rec.threads[i];
    uint64_t iter = __atomic_load_n(&slot->live_iter_start_ns, __ATOMIC_ACQUIRE);
    return iter != 0 && now >= iter && now - iter >= st_rec.threshold_ns &&
           (w->gil_seq != slot->live_iter_seq ||
            (w->gil_sampled_ns != w->gil_wait_start_ns && w->gil_asks < GIL_ASKS_MAX));
}

int st_holders_gil_of_iteration(unsigned slot, uint64_t seq, uint32_t *holder, uint64_t *wait_start_ns)
{
    if (slot >= ST_THREAD_BITS || __atomic_load_n(&waits[slot].gil_seq, __ATOMIC_ACQUIRE) != seq)
        return 0;
    *holder = waits[slot].gil_holder;
    *wait_start_ns = waits[slot].gil_wait_start_ns;
    return *holder != 0;
}

uint64_t st_holders_scan(uint64_t now, uint64_t sleep)
{
    uint32_t count = st_rec.hdr->thread_count;
    for (uint32_t i = 0; i < count && i < ST_THREAD_BITS; i++) {
        struct holder_wait *w = &waits[i];
        uint64_t start = __atomic_load_n(&w->start_ns, __ATOMIC_ACQUIRE);
        if (w->holder == 0 && w->kind == ST_OBJ_COND) {
            /* A loop between its GIL waits: look again soon, to catch one. */
            if (start != 0 && now >= start)
                name_gil_holder(w, i, start, count, now);
            if (gil_unnamed(w, i, now) && GIL_LOOK_NS < sleep)
                sleep = GIL_LOOK_NS;
            continue;
        }
        if (start == 0 || now < start)
            continue;
        if (w->asked_for == start)
            continue;
        uint64_t age = now - start;
        if (age < st_rec.threshold_ns) {
            if (st_rec.threshold_ns - age < sleep)
                sleep = st_rec.threshold_ns - age;
            continue;
        }
        w->asked_for = start;          /* once per wait */
        ask_holder(w, i, start, count, now);
    }
    return sleep;
}

/* Our wrappers' frames say nothing of the holder: the call they wrap is there. */
static unsigned drop_own_frames(uintptr_t *frames, unsigned n)
{
    unsigned out = 0;
    for (unsigned i = 0; i < n; i++)
        if (i == 0 || frames[i] < st_rec.self_start || frames[i] >= st_rec.self_end)
            frames[out++] = frames[i];
    return out;
}

/* Async-signal-safe: no locks, no allocation; the ring put is lock-free. */
int st_holders_on_signal(struct st_tls *t, void *ucontext, int unsafe)
{
    if (t->slot == NULL)
        return 0;
    size_t i = (size_t)(t->slot - st_rec.threads);
    if (i >= ST_THREAD_BITS || !__atomic_load_n(&asks[i].pending, __ATOMIC_ACQUIRE))
        return 0;
    struct holder_ask a = asks[i];
    __atomic_store_n(&asks[i].pending, 0, __ATOMIC_RELEASE);
    if (t->live_call != 0)
        t->sampler_hit = 1;            /* its wrapper redoes the call we cut short */
    if (!still_holds(a.object, a.kind, t->slot->tid))
        return 1;
    if (t->recorder_depth || unsafe || !t->unwind_warm) {
        __atomic_fetch_add(&st_rec.hdr->samples_skipped, 1, __ATOMIC_RELAXED);
        return 1;
    }
    t->recorder_depth++;
    struct st_captured c;
    st_capture_signal(&c, ucontext);
    c.nframes = (uint16_t)drop_own_frames(c.frames, c.nframes);
    st_emit_holder_sample(t, a.waiter, a.object, a.wait_start_ns, &c);
    if (a.kind == ST_OBJ_COND && a.waiter_slot < ST_THREAD_BITS)
        waits[a.waiter_slot].gil_sampled_ns = a.wait_start_ns;
    t->recorder_depth--;
    return 1;
}

void st_holders_thread_start(void)
{
    struct st_tls *t = &st_tls;
    if (!st_recording() || st_rec.sample_signal == 0 || t->recorder_depth)
        return;
    int saved_errno = st_recorder_enter(t);
    st_stack_warm_up();
    st_recorder_leave(t, saved_errno);
}

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
};

/* A request to a holder, by the holder's slot: the watchdog fills it and
 * sets pending; the holder's handler copies it and clears pending. */
struct holder_ask {
    uint64_t object, wait_start_ns;
    uint16_t kind;
    uint64_t asked_ns;               /* a request never answered goes stale */
    uint32_t waiter;
    volatile uint32_t pending;
};

static struct holder_wait waits[ST_THREAD_BITS];
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

/* Is the lock still this thread's? Then the stack is the one it holds it
 * in. A mutex names its owner; a semaphore used as a lock is held while
 * its value is 0 and this thread acquired it last. */
static int still_holds(uint64_t object, uint16_t kind, uint32_t tid)
{
    if (kind == ST_OBJ_SEM) {
        uint32_t words[8];
        return st_safe_read(words, object, sizeof words) && words[0] == 0 &&
               words[ST_SEM_ACQUIRER_WORD] == tid;
    }
    uint32_t owner = 0;
    return st_safe_read(&owner, object + offsetof(pthread_mutex_t, __data.__owner), sizeof owner) &&
           (owner & OWNER_TID_MASK) == tid;
}

/* Asks the holder of wait w (started at start) for its stack, if a signal
 * can reach it without the program noticing; notes a lock that changed hands. */
static void ask_holder(struct holder_wait *w, uint64_t start, uint32_t count, uint64_t now)
{
    uint64_t object = w->object;
    uint32_t holder = w->holder, waiter = w->waiter;
    uint16_t kind = w->kind;
    if (__atomic_load_n(&w->start_ns, __ATOMIC_ACQUIRE) != start)
        return;                        /* it ended as we read it */
    /* Short holds one after another: the first holder is not whom it waited for. */
    if (!still_holds(object, kind, holder)) {
        __atomic_store_n(&w->passed_on, start, __ATOMIC_RELEASE);
        return;
    }
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
    __atomic_store_n(&a->pending, 1, __ATOMIC_RELEASE);
    sig = __atomic_load_n(&st_rec.sample_signal, __ATOMIC_SEQ_CST);
    if (sig == 0 || syscall(SYS_tgkill, st_rec.proc_pid, holder, sig) != 0)
        __atomic_store_n(&a->pending, 0, __ATOMIC_RELEASE);
}

uint64_t st_holders_scan(uint64_t now, uint64_t sleep)
{
    uint32_t count = st_rec.hdr->thread_count;
    for (uint32_t i = 0; i < count && i < ST_THREAD_BITS; i++) {
        struct holder_wait *w = &waits[i];
        uint64_t start = __atomic_load_n(&w->start_ns, __ATOMIC_ACQUIRE);
        if (start == 0 || w->asked_for == start || now < start)
            continue;
        uint64_t age = now - start;
        if (age < st_rec.threshold_ns) {
            if (st_rec.threshold_ns - age < sleep)
                sleep = st_rec.threshold_ns - age;
            continue;
        }
        w->asked_for = start;          /* once per wait */
        ask_holder(w, start, count, now);
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

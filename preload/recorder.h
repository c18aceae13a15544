/* recorder.h - state shared by the preload's units, and the inline fast path
 * every wrapper takes: a thread-local check and a tick read.
 *
 * Design: a wrapped call that returns quickly costs two reads of the tick
 * clock (clock.h: rdtsc, ~10 ns, no memory touched) and a few stores;
 * everything else (precise timing, stacks, records) happens only in the
 * out-of-line slow paths, when a call or an iteration was actually slow.
 */
#ifndef STALLTRACE_RECORDER_H
#define STALLTRACE_RECORDER_H

#include <errno.h>
#include <stdint.h>
#include <time.h>

#include "stalltrace/format.h"
#include "clock.h"
#include "objects.h"
#include "pyframes.h"
#include "rbframes.h"
#include "queues.h"
#include "ring.h"

#define ST_HIDDEN __attribute__((visibility("hidden")))
#define ST_EXPORT __attribute__((visibility("default")))   /* what the target binds to */
#define ST_LIKELY(x) __builtin_expect(!!(x), 1)
#define ST_UNLIKELY(x) __builtin_expect(!!(x), 0)
#ifdef ST_ATTACH_BUILD
/* dlopen'ed by attach: the static TLS block has no room for st_tls. */
#define ST_TLS __thread
#else
#define ST_TLS __thread __attribute__((tls_model("initial-exec")))
#endif

/* ---- Process-wide state (recorder.c) ------------------------------------- */

enum st_state {
    ST_UNINIT = 0,       /* constructor not run yet: wrappers pass through */
    ST_ACTIVE,           /* recording */
    ST_OFF,              /* disabled, or could not record: steps aside */
    ST_CHILD_PENDING,    /* forked child: its dump is made on its first call */
    ST_CHILD_CREATING,
};

struct st_recorder {
    volatile int state;              /* st_state */
    int dump_fd;
    char dump_path[4096 + 32];    void *map;                       /* the whole dump, MAP_SHARED */
    uint64_t map_size;
    struct st_file_header *hdr;
    struct st_process *proc;
    struct st_module *modules;
    struct st_thread *threads;
    struct st_ring ring;
    struct st_objects objects;

    uint64_t start_mono_ns;          /* CLOCK_MONOTONIC at start */
    uint64_t threshold_ns;
    uint64_t slow_bar_ns;            /* a call this long gets a stack */
    uint64_t sample_interval_ns;
    volatile int sample_signal;      /* 0: no in-stall sampling (or given back) */
    int follow_fork;
    int proc_pid;                    /* getpid(), cached for the signal handler */
    uintptr_t self_start, self_end;  /* the recorder's own text: frames hidden */
    uintptr_t ldso_start, ldso_end;  /* the dynamic loader: never sampled in */
    int modules_stale;               /* a sample saw an unknown address */
};
extern struct st_recorder st_rec ST_HIDDEN;

/* What every wrapped call reads shares one page with the real functions'
 * cache (section st_hot_data): with page-table isolation each system call
 * flushes the TLB, and a wrapper that touched three pages after one would
 * pay three refills. */
#define ST_HOT_DATA __attribute__((section("st_hot_data")))
struct st_hot {
    struct st_clock clock;
    uint64_t slow_bar_ticks;         /* st_rec.slow_bar_ns in ticks */
    uint64_t anchor_ticks;           /* a thread re-anchors after this many */
    int watchdog_down;               /* a fork stopped it: the next iteration remakes it */
};
extern struct st_hot st_hot ST_HIDDEN;
/* The task queue table in the dump (annotate.c; laid out by dumpfile.c). */
extern struct st_queues st_queues ST_HIDDEN;

/* ---- A stack as taken: native frames, and Python frames when it runs CPython -- */

struct st_captured {
    uint16_t nframes, npython;
    uint8_t truncated;             /* native frames were cut */
    uint8_t python;                /* st_python_walk */
    uint8_t jit_marked;            /* jit_map_bytes is set: see ST_STACK_JIT_MARK */
    uint64_t jit_map_bytes;
    uintptr_t frames[ST_MAX_FRAMES];
    struct st_pyframe py[ST_MAX_PYFRAMES];
};

/* ---- Per-thread state (threads.c) ------------------------------------------ */

/* One kind of wrapped call in the running iteration, with the stack of its
 * longest. */
struct st_iter_call {
    uint16_t call;
    uint16_t count;
    uint64_t total_ns, max_ns;
    struct st_captured stack;
};

enum st_tls_state { ST_T_NEW = 0, ST_T_READY, ST_T_IGNORED };

struct st_wait_key {
    uint16_t call;                   /* st_call of the event-wait function */
    int32_t fd;                      /* epoll fd, or -1 */
    uintptr_t site;                  /* call site, for poll/select */
};

struct st_tls {
    uint64_t start_routine;          /* from our pthread_create trampoline */

    /* Loop detection: the event-wait that keeps coming back is the loop wait. */
    struct st_wait_key cand[4];
    uint32_t cand_hits[4];
    struct st_wait_key other_key;    /* another wait repeating: maybe a new loop */

    /* The iteration running now: its slow wrapped calls, by kind. */
    uint64_t iter_start_ns;          /* since start_mono_ns */
    uint64_t calls_ns;               /* in all of them */
    uint8_t ncalls;
    /* Not a loop thread yet, back from an event wait or a parked wait: its
     * slow calls wait here for the wait that may make it one (loop.c). */
    uint8_t pre_iteration;
    struct st_iter_call calls[ST_STALL_CALLS];

    /* A run of timed waits on one object (sync.c). */
    uint64_t run_object;
    uint16_t run_call;
    uint8_t run_has_stack;
    uint32_t run_retries;
    uint64_t run_start_ns, run_last_end_ns;
    struct st_captured run_stack;

    /* Short waits on one object not yet added to it (sync.c). */
    struct st_object *batch_object;
    uint32_t batch_waits, batch_timeouts;
    uint64_t batch_ns, batch_max_ns;

    /* Semaphores this thread acquired lately: its posts of them are
     * releases of a lock, not hand-offs of work (wrap_sync.c). */
    void *held_sems[8];
    uint32_t tid;                    /* set when attached: what sems note as acquirer */
    /* A loop's timed condition waits (maybe the GIL) in iteration gil_seq. */
    uint64_t gil_seq, gil_ns, gil_object;
    uint8_t held_next;
    /* libunwind has run in this thread outside a signal handler: a signal
     * may ask it for its stack (holders.c). */
    uint8_t unwind_warm;

    /* What every wrapped call reads, last: the end of the block lies next to
     * the thread's own descriptor, on the page libc's calls touch anyway. */
    struct st_anchor anchor;         /* for this thread's tick readings */
    uint64_t iter_start_ticks, wait_start_ticks;
    struct st_wait_key loop_key;
    uint32_t other_run;              /* returns to other_key in a row */
    struct st_thread *slot;
    volatile uint16_t live_call;     /* wrapped call it is inside now, or 0 */
    uint8_t anchor_ok;               /* 0: not yet, or a fork restarted the clock */
    uint8_t is_loop;
    uint8_t in_iteration;            /* a loop thread between two loop waits */
    volatile uint8_t sampler_hit;    /* our signal interrupted a wrapped call */
    uint8_t recorder_depth;          /* inside the recorder (nested): wrappers pass through */
    uint8_t state;                   /* st_tls_state */
};
extern ST_TLS struct st_tls st_tls ST_HIDDEN;

/* The recorder's own work, between this pair: calls it makes through our
 * wrappers pass through them, and the target finds its errno as it left
 * it. Pairs nest; a TLS increment and an errno load, each way. */
static inline int st_recorder_enter(struct st_tls *t)
{
    t->recorder_depth++;
    return errno;
}

static inline void st_recorder_leave(struct st_tls *t, int saved_errno)
{
    errno = saved_errno;
    t->recorder_depth--;
}

ST_HIDDEN void st_thread_attach(void);
/* Where each slot's thread keeps its live_call (in its TLS), for the watchdog. */
extern volatile uint16_t *st_live_call_at[ST_THREAD_BITS] ST_HIDDEN;
ST_HIDDEN void st_thread_detach(void);
ST_HIDDEN struct st_thread *st_thread_claim(uint32_t tid, uint64_t start_routine);

/* Whether the process still records: slow paths ask before doing anything
 * that makes a system call (the recorder may have stepped aside since). */
static inline int st_recording(void)
{
    return __atomic_load_n(&st_rec.state, __ATOMIC_RELAXED) == ST_ACTIVE;
}

/* Whether the calling thread records: attached (on its first call) and not
 * inside the recorder already. */
static inline int st_thread_records(struct st_tls *t)
{
    if (ST_UNLIKELY(t->state != ST_T_READY)) {
        if (t->state != ST_T_NEW)
            return 0;
        st_thread_attach();
        if (t->state != ST_T_READY)
            return 0;
    }
    return !ST_UNLIKELY(t->recorder_depth);
}

/* ---- Clocks (clock.h; chosen and calibrated in timebase.c) ------------------ */

/* Precise time since the recording started: for slow paths. */
static inline uint64_t st_now_ns(void)
{
    return st_clock_read_ns(CLOCK_MONOTONIC) - st_rec.start_mono_ns;
}

static inline uint64_t st_ticks(void)
{
    return st_clock_ticks(&st_hot.clock);
}

static inline uint64_t st_ticks_elapsed_ns(uint64_t from, uint64_t to)
{
    return st_clock_elapsed_ns(&st_hot.clock, from, to);
}

ST_HIDDEN void st_clock_start(void);
ST_HIDDEN void st_clock_settle(void);
ST_HIDDEN void st_anchor_refresh(struct st_tls *t);

/* The time since start of a tick reading this thread took. */
static inline uint64_t st_ticks_at(struct st_tls *t, uint64_t ticks)
{
    if (ST_UNLIKELY(!t->anchor_ok || ticks - t->anchor.ticks > st_hot.anchor_ticks))
        st_anchor_refresh(t);
    return st_clock_at(&st_hot.clock, &t->anchor, ticks);
}

/* ---- The blocking-call fast path (call.c) ----------------------------------- */

ST_HIDDEN void st_call_slow(uint16_t call, uint64_t start_ns, uint64_t elapsed_ns, void *real_fn);
ST_HIDDEN void st_call_slow_ticks(uint16_t call, uint64_t elapsed_ticks, void *real_fn);

/* Returns 0 when this call is not to be timed (recorder off, own call). */
static inline uint64_t st_call_enter(uint16_t call)
{
    struct st_tls *t = &st_tls;
    if (!st_thread_records(t))
        return 0;
    t->live_call = call;
    return st_ticks();
}

static inline void st_call_leave(uint16_t call, uint64_t t0, void *real_fn)
{
    if (t0 == 0)
        return;
    struct st_tls *t = &st_tls;
    t->live_call = 0;
    uint64_t elapsed = st_ticks() - t0;
    if (ST_UNLIKELY(elapsed >= st_hot.slow_bar_ticks))
        st_call_slow_ticks(call, elapsed, real_fn);
}

/* ---- Event waits (loop.c) ----------------------------------------------------- */

enum st_wait_kind { ST_WAIT_PASS = 0, ST_WAIT_LOOP, ST_WAIT_CALL };

struct st_wait {
    uint8_t kind;                    /* st_wait_kind */
    uint8_t probe;                   /* for ST_WAIT_CALL: it waits on one fd */
    uint16_t call;
    uint64_t t0;                     /* for ST_WAIT_CALL: ticks at its start */
};

ST_HIDDEN void st_wait_enter_other(struct st_wait *w, uint16_t call, int fd, uintptr_t site, int probe);
ST_HIDDEN void st_wait_leave_other(struct st_wait *w, void *real_fn);
ST_HIDDEN void st_iteration_end(struct st_tls *t, uint64_t now);
ST_HIDDEN void st_iteration_begin(struct st_tls *t, uint64_t now);
/* Around a wait that parks a worker until there is work (wrap_futex.c):
 * for a loop thread, an iteration ends and the next begins there. */
ST_HIDDEN void st_idle_wait_enter(struct st_tls *t);
ST_HIDDEN void st_idle_wait_leave(struct st_tls *t);

/* A loop thread's return to its loop wait costs a tick read on each side
 * and the counters of the iteration that ended; anything else goes out of
 * line (loop.c). poll and select are told apart by their call site. A
 * probe (a wait that does not wait: zero timeout, or one fd for a short
 * while) never makes a thread a loop thread. */
static inline void st_wait_enter(struct st_wait *w, uint16_t call, int fd, uintptr_t site, int probe)
{
    struct st_tls *t = &st_tls;
    w->call = call;
    if (ST_LIKELY(t->is_loop && t->state == ST_T_READY && !t->recorder_depth && t->loop_key.call == call &&
                  t->loop_key.fd == (t->loop_key.site ? -1 : fd) &&
                  t->loop_key.site == (t->loop_key.site ? site : 0))) {
        uint64_t now = st_ticks();
        t->other_run = 0;
        if (t->in_iteration)
            st_iteration_end(t, now);
        t->wait_start_ticks = now;
        w->kind = ST_WAIT_LOOP;
        return;
    }
    st_wait_enter_other(w, call, fd, site, probe);
}

static inline void st_wait_leave(struct st_wait *w, void *real_fn)
{
    if (ST_LIKELY(w->kind == ST_WAIT_LOOP))
        st_iteration_begin(&st_tls, st_ticks());
    else if (w->kind == ST_WAIT_CALL)
        st_wait_leave_other(w, real_fn);
}

/* ---- Sync waits (sync.c) ------------------------------------------------------ */

struct st_sync {
    uint8_t active, untimed;
    uint8_t idles;                   /* a possible pool worker going idle */
    uint16_t kind, call;
    uint64_t object;
    uint64_t start_ns;
    uint32_t holder_tid;             /* the mutex's owner when the wait began, or 0 */
    uint8_t holder_unconfirmed;      /* a sem's acquirer that did not post it to us */
    uint8_t gil_candidate;           /* a loop's timed condition wait: maybe the GIL */
    uint32_t readers;                /* an rwlock's readers when the wait began (no writer), or 0 */
    struct st_object *obj;
};

ST_HIDDEN int st_sync_begin(struct st_sync *s, void *object, uint16_t kind, uint16_t call,
                            int untimed);
ST_HIDDEN void st_sync_end(struct st_sync *s, int timed_out, void *real_fn);
/* The wait is for an rwlock that readers (this many) hold: nobody to name. */
ST_HIDDEN void st_sync_readers(struct st_sync *s, uint32_t readers);
ST_HIDDEN void st_sync_wake(void *object, uint16_t kind, int by_holder, int waiters, int broadcast,
                            uint16_t call, void *real_fn);
/* Who fed a saturated pool (feeders.c): a wake of work queue o, one of its
 * members picking a wake up, and a member idling again (the queue drained). */
ST_HIDDEN void st_feeders_wake(struct st_object *o, int waiters, int broadcast, uint16_t call,
                               void *real_fn);
ST_HIDDEN void st_feeders_taken(uint64_t object, uint32_t idle_now);
ST_HIDDEN void st_feeders_drain(uint64_t object, uint64_t now);
/* A forked child: its pools and their wakes are the parent's, not its own. */
ST_HIDDEN void st_feeders_forget(void);
ST_HIDDEN void st_sync_thread_exit(struct st_tls *t);
/* The wait s is for a lock thread tid holds (holders.c samples it). */
ST_HIDDEN void st_sync_holder(struct st_sync *s, uint32_t tid);

/* ---- Lock holders (holders.c) ------------------------------------------------- */

/* A waiter (by thread slot) blocks on object, which thread holder owns. */
ST_HIDDEN void st_holder_wait_begin(unsigned slot, uint64_t object, uint16_t kind,
                                    uint32_t holder, uint64_t start_ns);
/* glibc's sem_t is 32 bytes and uses the first 16: in the rest a semaphore
 * notes the thread that acquired it last (every acquisition: the store
 * lands on the line the acquisition just wrote) and the one that posted it
 * last while someone waited. */
#define ST_SEM_ACQUIRER_WORD 6
#define ST_SEM_RELEASER_WORD 7
/* 1 when the lock had changed hands by the time the wait was a threshold
 * old: its first holder is not whom it waited for. */
ST_HIDDEN int st_holder_wait_end(unsigned slot);
/* The GIL's holder the watchdog named in iteration seq of the loop in slot,
 * and the wait it was named in; 0 when none. */
ST_HIDDEN int st_holders_gil_of_iteration(unsigned slot, uint64_t seq, uint32_t *holder,
                                          uint64_t *wait_start_ns);
/* The watchdog asks holders of waits past the threshold for their stack;
 * returns how long it may sleep, at most `sleep`. */
ST_HIDDEN uint64_t st_holders_scan(uint64_t now, uint64_t sleep);
/* In the sampling signal's handler: 1 when the signal was a holder's
 * request (answered, or refused at an unsafe moment). */
ST_HIDDEN int st_holders_on_signal(struct st_tls *t, void *ucontext, int unsafe);
/* A thread the program started, before its start routine: libunwind warmed
 * so that it can be asked for its stack by signal. */
ST_HIDDEN void st_holders_thread_start(void);
ST_HIDDEN void st_emit_lock_holder(struct st_tls *t, uint16_t call, uint16_t kind, uint64_t object,
                                   uint32_t holder, uint32_t readers, uint64_t wait_start_ns,
                                   uint64_t held_ns);
/* From the holder's signal handler: its stack while waiter waited. */
ST_HIDDEN void st_emit_holder_sample(struct st_tls *t, uint32_t waiter, uint64_t object,
                                     uint64_t wait_start_ns, const struct st_captured *c);
/* The calling thread's waits not yet added to their object (at exit). */
ST_HIDDEN void st_sync_flush_waits(void);

/* ---- Stacks (stack.c) --------------------------------------------------------- */

/* Stack of the calling thread with the recorder's frames replaced by real_fn. */
ST_HIDDEN void st_capture_here(struct st_captured *c, void *real_fn);
/* Stack of the interrupted context, from a signal handler. */
ST_HIDDEN void st_capture_signal(struct st_captured *c, void *ucontext);
ST_HIDDEN void st_stack_warm_up(void);
/* Waits (up to 1 s) until no stack capture is under way once the recorder is
 * off: 0, or -1 if one still is. */
ST_HIDDEN int st_stack_quiesce(void);
ST_HIDDEN int st_safe_read(void *dst, uintptr_t src, size_t n);

/* ---- Records (events.c) -------------------------------------------------------- */

ST_HIDDEN void st_emit_stall(struct st_tls *t, uint64_t busy_ns);
ST_HIDDEN void st_emit_lock_wait(struct st_tls *t, uint16_t call, uint16_t kind, uint64_t object,
                                 uint64_t start_ns, uint64_t duration_ns, uint32_t retries,
                                 const struct st_captured *c);
ST_HIDDEN void st_emit_sample(struct st_tls *t, const struct st_captured *c, uint64_t at_ns);
ST_HIDDEN void st_emit_slow_call(struct st_tls *t, uint16_t call, uint64_t start_ns,
                                 uint64_t duration_ns, uint64_t object,
                                 const struct st_captured *c);
/* Writes c as a struct st_stack and its frames at `stack`; returns the bytes
 * that follow the struct. */
ST_HIDDEN uint32_t st_put_stack(struct st_stack *stack, const struct st_captured *c,
                                uint8_t unwinder);
#define ST_STACK_BYTES (ST_MAX_FRAMES * sizeof(uint64_t) + ST_MAX_PYFRAMES * sizeof(struct st_pyframe) + \
                        sizeof(uint64_t))

/* ---- Modules (modules.c), watchdog & sampler (watchdog.c), config (config.c) -- */

ST_HIDDEN void st_modules_refresh(void);
ST_HIDDEN int st_modules_cover(const uintptr_t *frames, unsigned n);
ST_HIDDEN void st_watchdog_start(void);
ST_HIDDEN void st_watchdog_forget(void);
ST_HIDDEN void st_watchdog_restart(void);
/* fork handlers: no watchdog thread while the program forks. */
ST_HIDDEN void st_watchdog_before_fork(void);
ST_HIDDEN void st_watchdog_after_fork_parent(void);
/* Waits (briefly) until the watchdog thread has seen the recorder off. */
ST_HIDDEN void st_watchdog_stop(void);
ST_HIDDEN void st_watchdog_yield_signal(void);
/* Whether sig's disposition is still the sampling handler (the program has
 * not taken the signal since). */
ST_HIDDEN int st_watchdog_owns_signal(int sig);
/* Starts the watchdog if it is not running yet (a plain load when it is). */
ST_HIDDEN void st_watchdog_ensure(void);
struct st_cpu_reading;
/* The watchdog's CPU reading of slot's thread from before iteration seq
 * began; 0 when it has one. */
ST_HIDDEN int st_watchdog_cpu_before(const struct st_thread *slot, uint64_t seq,
                                     struct st_cpu_reading *r);

struct st_config {
    char output[4096];
    uint64_t threshold_ns;
    uint64_t buffer_bytes;
    int sample_signal;
    int follow_fork;
    int disabled;
};
ST_HIDDEN void st_config_read(struct st_config *cfg);
/* attach.c: the settings `stalltrace attach` left (-1: none we trust), then
 * taking over the GOT slots and starting the detach poller. */
ST_HIDDEN int st_attach_config(struct st_config *cfg);
ST_HIDDEN int st_attach_begin(void);
ST_HIDDEN void *st_attach_libc(void);
/* The start routine glibc keeps for the calling thread, started before
 * attach (0 for the main thread, or when it cannot be found). */
ST_HIDDEN uint64_t st_attach_start_routine(void);
ST_HIDDEN void st_warn(const char *msg1, const char *msg2);

/* ---- The dump file (dumpfile.c) ----------------------------------------------- */

ST_HIDDEN int st_dump_create(const struct st_config *cfg, int forked_from);
ST_HIDDEN void st_dump_finish(uint32_t end_reason, int end_signal);
ST_HIDDEN void st_dump_abandon(void);
ST_HIDDEN void st_recorder_child_start(void);
/* The program is about to filter its system calls (seccomp): the dump is
 * finished as it stands and the recorder makes no system call from now on. */
ST_HIDDEN void st_step_aside(void);
ST_HIDDEN void st_recorder_stop(uint32_t end_reason);
/* syscall(SYS_seccomp, op, ...) is about to run (wrap_seccomp.c). */
ST_HIDDEN void st_seccomp_syscall(long op);
ST_HIDDEN void st_jitmap_copy(void);
/* At exit: node's perf map and V8 log, when only `stalltrace run` asked for them. */
ST_HIDDEN void st_jitmap_remove_requested(void);
ST_HIDDEN void st_jitmap_note_start(void);
/* After a capture: if a frame lies outside every module (JIT code), note
 * the perf map's length then. Async-signal-safe. */
ST_HIDDEN void st_jitmap_mark(struct st_captured *c);
/* Code of modules mapped again elsewhere (codecopy.c): noted when a stack
 * runs outside every module, at most once a second unless now. */
ST_HIDDEN void st_code_copies_note(int now);
/* Is addr in such a copy, as noted so far? Async-signal-safe. */
ST_HIDDEN int st_code_copies_cover(uintptr_t addr);
/* An untrusted path, opened only if a regular file of ours, never blocking. */
ST_HIDDEN int st_open_own_regular(const char *path, int flags);
/* Before the process gives up privileges: keep a descriptor of the dump. */
ST_HIDDEN void st_dump_hold(void);

/* Resolved real functions (real.c). */
ST_HIDDEN void *st_real(void **cache, const char *name);
ST_HIDDEN void *st_real_versioned(void **cache, const char *name, const char *version);
/* The cached pointer is checked inline: the call out happens once. */
#define ST_REAL(fn)                                                             \
    ({ static void *st_real_cache_ ST_HOT_DATA;                                 \
       void *st_real_p_ = __atomic_load_n(&st_real_cache_, __ATOMIC_RELAXED);   \
       if (ST_UNLIKELY(st_real_p_ == NULL))                                     \
           st_real_p_ = st_real(&st_real_cache_, #fn);                          \
       (__typeof__(&fn))st_real_p_; })
/* pthread_cond_* exist twice in glibc; the old GLIBC_2.2.5 ones hang if mixed. */
#define ST_REAL_VERSIONED(fn, version)                                          \
    ({ static void *st_real_cache_ ST_HOT_DATA;                                 \
       void *st_real_p_ = __atomic_load_n(&st_real_cache_, __ATOMIC_RELAXED);   \
       if (ST_UNLIKELY(st_real_p_ == NULL))                                     \
           st_real_p_ = st_real_versioned(&st_real_cache_, #fn, version);       \
       (__typeof__(&fn))st_real_p_; })

#endif /* STALLTRACE_RECORDER_H */

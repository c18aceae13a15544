/* watchdog.c - notices loop iterations running past the threshold with no
 * wrapped call to blame (CPU-bound work) and has the stalled thread sample
 * its own stack from a signal handler, again and again while it lasts.
 */
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "recorder.h"
#include "procstat.h"

#define ST_SAMPLES_PER_STALL 100u

struct sampled {
    uint64_t iter_seq;
    uint64_t last_ns;
    uint32_t count;
    /* The thread's CPU figures at the last scan, and at the scan before its
     * current iteration began: the start of the window a stall's CPU time is
     * measured over (the loop thread cannot afford a reading per iteration). */
    struct st_cpu_reading last, before;
    uint64_t before_seq;
};

static int started;
/* Set before the thread is made, cleared by it as it leaves (or by its
 * maker when it backs off): while set, a thread of ours may exist. */
static volatile int watchdog_alive;
/* The watchdog sleeps on this word: non-zero asks it to leave now. */
static int stop_asked;
/* The last watchdog's kernel tid, published just before it leaves. */
static int exited_tid;
/* A fork is under way: no watchdog may be made until it is done. */
static int forking;
static int schedstat_works = 1;
static struct sampled sampled[1024];

static int unsafe_pc(const void *ucontext)
{
    const ucontext_t *uc = ucontext;
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    return (pc >= st_rec.ldso_start && pc < st_rec.ldso_end) ||
           (pc >= st_rec.self_start && pc < st_rec.self_end);
}

/* Async-signal-safe: no locks, no allocation; the ring put is lock-free. */
static void on_sample_signal(int sig, siginfo_t *info, void *ucontext)
{
    (void)sig;
    int saved_errno = errno;
    struct st_tls *t = &st_tls;
    if (info->si_code != SI_TKILL || info->si_pid != st_rec.proc_pid ||
        t->state != ST_T_READY || st_rec.state != ST_ACTIVE)
        goto out;
    if (st_holders_on_signal(t, ucontext, unsafe_pc(ucontext)) || !t->is_loop)
        goto out;
    if (t->live_call != 0 || !t->in_iteration) {
        t->sampler_hit = 1;      /* we may have interrupted a call: its wrapper retries */
        goto out;
    }
    if (t->recorder_depth || unsafe_pc(ucontext)) {
        __atomic_fetch_add(&st_rec.hdr->samples_skipped, 1, __ATOMIC_RELAXED);
        goto out;
    }
    t->recorder_depth++;         /* the handler saved errno already, for every way out */
    struct st_captured c;
    st_capture_signal(&c, ucontext);
    st_emit_sample(t, &c, st_now_ns());
    t->recorder_depth--;
out:
    errno = saved_errno;
}

static void note_cpu(struct sampled *sp, uint32_t tid, uint64_t live_seq, uint64_t now)
{
    if (!schedstat_works)
        return;
    if (live_seq != 0 && sp->before_seq != live_seq && sp->last.at_ns != 0) {
        __atomic_store_n(&sp->before_seq, 0, __ATOMIC_RELEASE);
        sp->before = sp->last;
        __atomic_store_n(&sp->before_seq, live_seq, __ATOMIC_RELEASE);
    }
    if (st_schedstat_read(tid, now, &sp->last) != 0)
        schedstat_works = 0;
}

int st_watchdog_cpu_before(const struct st_thread *slot, uint64_t seq, struct st_cpu_reading *r)
{
    size_t i = (size_t)(slot - st_rec.threads);
    if (i >= sizeof sampled / sizeof sampled[0])
        return -1;
    struct sampled *sp = &sampled[i];
    if (__atomic_load_n(&sp->before_seq, __ATOMIC_ACQUIRE) != seq)
        return -1;
    *r = sp->before;
    return __atomic_load_n(&sp->before_seq, __ATOMIC_ACQUIRE) == seq ? 0 : -1;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, NULL);
}

/* Sleeps as sleep_ns does, but a stop request wakes it at once: a fork
 * waits for the watchdog to be gone and must not wait out its nap. */
static void nap_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    syscall(SYS_futex, &stop_asked, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
}

/* Signals the loop threads due for a sample; returns how long the watchdog
 * may sleep: until the next running iteration could pass the threshold, or
 * the next sample of a stall is due, and never longer than half a threshold
 * (iterations that start meanwhile are unseen until the next look). */
static uint64_t scan_loops(uint64_t now)
{
    uint64_t sleep = st_rec.threshold_ns / 2;
    uint32_t count = st_rec.hdr->thread_count;
    for (uint32_t i = 0; i < count && i < sizeof sampled / sizeof sampled[0]; i++) {
        struct st_thread *s = &st_rec.threads[i];
        uint32_t tid = __atomic_load_n(&s->tid, __ATOMIC_ACQUIRE);
        uint64_t start = __atomic_load_n(&s->live_iter_start_ns, __ATOMIC_ACQUIRE);
        /* A thread not yet a loop thread may be in its first iteration. */
        if (tid == 0 || (!(s->flags & ST_THREAD_LOOP) && start == 0))
            continue;
        note_cpu(&sampled[i], tid, start ? s->live_iter_seq : 0, now);
        if (start == 0 || now < start)
            continue;
        uint64_t age = now - start;
        if (age < st_rec.threshold_ns) {
            if (s->live_call != 0)
                s->live_call = 0;
            if (st_rec.threshold_ns - age < sleep)
                sleep = st_rec.threshold_ns - age;
            continue;
        }
        /* Inside a wrapped call: its stack is taken when it returns. The
         * call lives in the thread's TLS, which may go away as we look. */
        uint16_t call = 0;
        volatile uint16_t *at = st_live_call_at[i];
        if (at == NULL || !st_safe_read(&call, (uintptr_t)at, sizeof call))
            call = 0;
        s->live_call = call;    /* for a post-mortem of this stall */
        if (st_rec.sample_signal == 0 || call != 0)
            continue;
        struct sampled *sp = &sampled[i];
        uint64_t seq = s->live_iter_seq;
        if (sp->iter_seq != seq) {
            sp->iter_seq = seq;
            sp->count = 0;
            sp->last_ns = 0;
        }
        /* Dense at first, then thinner, so a long stall keeps a shape. */
        uint64_t spacing = st_rec.sample_interval_ns;
        if (sp->count >= 32 && age / 8 > spacing)
            spacing = age / 8;
        if (sp->count >= ST_SAMPLES_PER_STALL)
            continue;
        if (now - sp->last_ns < spacing) {
            if (spacing - (now - sp->last_ns) < sleep)
                sleep = spacing - (now - sp->last_ns);
            continue;
        }
        sp->last_ns = now;
        sp->count++;
        if (spacing < sleep)
            sleep = spacing;
        /* Only a thread running on a CPU with our signal unblocked: one
         * asleep in a call we do not wrap (pause, sigtimedwait) would return
         * EINTR, and one that blocks the signal would receive it itself. */
        int sig = __atomic_load_n(&st_rec.sample_signal, __ATOMIC_SEQ_CST);
        if (sig != 0 && st_thread_takes_signal(tid, sig))
            syscall(SYS_tgkill, st_rec.proc_pid, tid, sig);
    }
    return sleep < 1000000u ? 1000000u : sleep;
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    st_tls.state = ST_T_IGNORED;
    prctl(PR_SET_NAME, "stalltrace", 0, 0, 0);
    /* Read now: once the program filters its system calls (seccomp), the
     * way out must make none it did not allow. */
    int tid = (int)syscall(SYS_gettid);
    for (;;) {
        uint64_t now = st_now_ns();
        if (st_rec.state != ST_ACTIVE || st_rec.hdr == NULL ||
            __atomic_load_n(&stop_asked, __ATOMIC_ACQUIRE)) {
            __atomic_store_n(&exited_tid, tid, __ATOMIC_RELEASE);
            __atomic_store_n(&watchdog_alive, 0, __ATOMIC_SEQ_CST);
            return NULL;
        }
        st_rec.hdr->last_update_ns = now;
        if (st_rec.modules_stale) {
            st_rec.modules_stale = 0;
            st_modules_refresh();
        }
        nap_ns(st_holders_scan(now, scan_loops(now)));
    }
}

/* The target may own the signal: then sampling steps aside. */
static int install_handler(void)
{
    int sig = st_rec.sample_signal;
    struct sigaction old, sa;
    if (sig == 0 || sigaction(sig, NULL, &old) != 0)
        return 0;
    if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == on_sample_signal)
        return 1;        /* ours, inherited across fork */
    if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)
        return 0;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sample_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL) == 0;
}

int st_watchdog_owns_signal(int sig)
{
    struct sigaction cur;
    return sig != 0 && sigaction(sig, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
           cur.sa_sigaction == on_sample_signal;
}

/* Makes the watchdog thread, unless a fork is under way (then the next
 * loop iteration tries again). */
static void spawn(void)
{
    __atomic_store_n(&stop_asked, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&watchdog_alive, 1, __ATOMIC_SEQ_CST);
    /* Paired with the forking thread's store to forking and load of
     * watchdog_alive: one of the two sees the other. */
    if (__atomic_load_n(&forking, __ATOMIC_SEQ_CST)) {
        __atomic_store_n(&watchdog_alive, 0, __ATOMIC_SEQ_CST);
        __atomic_store_n(&st_hot.watchdog_down, 1, __ATOMIC_RELEASE);
        return;
    }
    /* The watchdog must never take a signal meant for the target. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_t tid;
    int (*create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *) =
        ST_REAL(pthread_create);
    if (create == NULL || create(&tid, &attr, watchdog_main, NULL) != 0) {
        st_rec.sample_signal = 0;
        __atomic_store_n(&watchdog_alive, 0, __ATOMIC_SEQ_CST);
    }
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void st_watchdog_start(void)
{
    if (__atomic_exchange_n(&started, 1, __ATOMIC_ACQ_REL))
        return;
    int saved_errno = st_recorder_enter(&st_tls);   /* our own sigaction calls must not make us yield */
    int installed = install_handler();
    st_recorder_leave(&st_tls, saved_errno);
    if (installed)
        __atomic_fetch_or(&st_rec.hdr->flags, ST_FLAG_SAMPLING, __ATOMIC_RELAXED);
    else
        st_rec.sample_signal = 0;
    spawn();
}

/* A loop iteration begins while the watchdog is down (a fork stopped it):
 * it is made again, by the first loop thread to get here. */
void st_watchdog_restart(void)
{
    int expected = 1;
    if (!__atomic_compare_exchange_n(&st_hot.watchdog_down, &expected, 0, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
        return;
    if (st_rec.state != ST_ACTIVE)
        return;
    if (__atomic_load_n(&watchdog_alive, __ATOMIC_SEQ_CST)) {
        /* The one asked to stop has not left yet: the next iteration looks again. */
        __atomic_store_n(&st_hot.watchdog_down, 1, __ATOMIC_RELEASE);
        return;
    }
    int saved_errno = st_recorder_enter(&st_tls);
    spawn();
    st_recorder_leave(&st_tls, saved_errno);
}

/* Waits for the thread with kernel id tid to be reaped: pthread_join's
 * signal (the cleared tid) comes before the kernel counts it out of the
 * process, and CPython reads that count (/proc/self/stat) after fork. */
static void wait_reaped(int tid, uint64_t limit_ns)
{
    for (uint64_t waited = 0; waited < limit_ns; waited += 20000u) {
        if (syscall(SYS_tgkill, st_rec.proc_pid, tid, 0) != 0 && errno == ESRCH)
            return;
        sleep_ns(20000u);
    }
}

/* Asks the watchdog to leave and waits (at most limit_ns) until it is gone;
 * 0 once no thread of ours is left. */
static int stop_and_wait(uint64_t limit_ns)
{
    __atomic_store_n(&stop_asked, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &stop_asked, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    uint64_t waited = 0;
    while (__atomic_load_n(&watchdog_alive, __ATOMIC_SEQ_CST)) {
        if (waited >= limit_ns)
            return -1;
        sleep_ns(50000u);
        waited += 50000u;
    }
    int tid = __atomic_exchange_n(&exited_tid, 0, __ATOMIC_ACQ_REL);
    if (tid > 0)
        wait_reaped(tid, limit_ns);
    return 0;
}

/* fork (not vfork, not posix_spawn: they run no fork handlers): the
 * program counts its threads (CPython 3.12 warns when it has more than one)
 * and the watchdog must not be among them. It runs in the forking thread;
 * the watchdog, mid-scan or asleep, leaves at its next look, which takes
 * no lock the forking thread may hold. */
void st_watchdog_before_fork(void)
{
    int saved_errno = errno;
    __atomic_store_n(&forking, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&watchdog_alive, __ATOMIC_SEQ_CST)) {
        /* Gone or not (bounded: a fork must not hang), it is made again
         * at the next loop iteration. */
        stop_and_wait(500000000u);
        __atomic_store_n(&st_hot.watchdog_down, 1, __ATOMIC_RELEASE);
    }
    errno = saved_errno;
}

void st_watchdog_after_fork_parent(void)
{
    __atomic_store_n(&forking, 0, __ATOMIC_SEQ_CST);
}

/* A wait whose holder is to be sampled, in a program that may run no loop:
 * the watchdog is made now, or again after a fork stopped it. */
void st_watchdog_ensure(void)
{
    if (st_rec.sample_signal == 0)
        return;
    if (!__atomic_load_n(&started, __ATOMIC_RELAXED))
        st_watchdog_start();
    else if (__atomic_load_n(&st_hot.watchdog_down, __ATOMIC_RELAXED))
        st_watchdog_restart();
}

/* The target wants the signal: stop sending it. A sample already in flight
 * finds our handler gone and lands in the target's, so none must be: the
 * watchdog checks sample_signal right before every tgkill. */
void st_watchdog_yield_signal(void)
{
    __atomic_store_n(&st_rec.sample_signal, 0, __ATOMIC_SEQ_CST);
    if (st_rec.hdr != NULL)
        __atomic_fetch_and(&st_rec.hdr->flags, ~ST_FLAG_SAMPLING, __ATOMIC_RELAXED);
}

void st_watchdog_stop(void)
{
    __atomic_store_n(&st_rec.sample_signal, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&st_hot.watchdog_down, 0, __ATOMIC_RELEASE);
    if (__atomic_load_n(&watchdog_alive, __ATOMIC_SEQ_CST))
        stop_and_wait(st_rec.threshold_ns + 100000000u);
}

/* After fork: the child has no watchdog thread. */
void st_watchdog_forget(void)
{
    started = 0;
    watchdog_alive = 0;
    stop_asked = 0;
    exited_tid = 0;
    forking = 0;
    st_hot.watchdog_down = 0;
    memset(sampled, 0, sizeof sampled);
}

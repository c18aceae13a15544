/* recorder.c - start-up, fork and exit of the recorder.
 * If anything needed to record is missing, the state goes to ST_OFF and
 * every wrapper simply calls through: the target runs as before.
 */
#include <pthread.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "recorder.h"

struct st_recorder st_rec = {.dump_fd = -1};
static struct st_config config;

static void apply_config(void)
{
    st_rec.threshold_ns = config.threshold_ns;
    /* Calls this long get a stack: a quarter of the threshold
     * catches the one that makes a stall without paying for every call. */
    st_rec.slow_bar_ns = config.threshold_ns / 4 ? config.threshold_ns / 4 : 1;
    uint64_t interval = config.threshold_ns / 4;
    st_rec.sample_interval_ns = interval < 2000000u ? 2000000u : interval;
    st_rec.sample_signal = config.sample_signal;
    st_rec.follow_fork = config.follow_fork;
    st_rec.proc_pid = getpid();
}

static int start_recording(int forked_from)
{
    st_rec.start_mono_ns = st_clock_read_ns(CLOCK_MONOTONIC);
    apply_config();
    st_clock_start();
    if (st_dump_create(&config, forked_from) != 0)
        return -1;
    st_modules_refresh();
    st_clock_settle();
    return 0;
}

static void on_fork_child(void)
{
    int parent = st_rec.proc_pid;
    st_dump_abandon();
    st_watchdog_forget();
    st_py_forget();
    st_feeders_forget();
    memset(&st_tls, 0, sizeof st_tls);     /* the forking thread starts afresh */
    if (st_rec.state != ST_ACTIVE || !st_rec.follow_fork) {
        st_rec.state = ST_OFF;
        return;
    }
    /* Made lazily: a child that only execs never leaves an empty dump. */
    st_rec.proc_pid = parent;
    st_rec.state = ST_CHILD_PENDING;
}

void st_recorder_child_start(void)
{
    int expected = ST_CHILD_PENDING;
    if (!__atomic_compare_exchange_n(&st_rec.state, &expected, ST_CHILD_CREATING, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return;
    /* Made inside the child's first wrapped call: that call's errno is the
     * program's, whatever creating the dump left (EEXIST of a taken name). */
    int saved_errno = st_recorder_enter(&st_tls);
    int ok = start_recording(st_rec.proc_pid) == 0;
    st_recorder_leave(&st_tls, saved_errno);
    __atomic_store_n(&st_rec.state, ok ? ST_ACTIVE : ST_OFF, __ATOMIC_RELEASE);
}

__attribute__((constructor)) static void st_init(void)
{
    int saved_errno = errno;
#ifdef ST_ATTACH_BUILD
    if (st_attach_config(&config) != 0) {
        st_warn("loaded without `stalltrace attach`'s settings: not recording", NULL);
        st_rec.state = ST_OFF;
        errno = saved_errno;
        return;
    }
#else
    st_config_read(&config);
#endif
    /* setuid/setgid: never write files with someone else's rights. */
    if (config.disabled || getauxval(AT_SECURE)) {
        st_rec.state = ST_OFF;
        return;
    }
    st_tls.recorder_depth++;        /* errno: saved above, for every way out */
    int ok = start_recording(0) == 0;
    if (ok) {
        pthread_atfork(st_watchdog_before_fork, st_watchdog_after_fork_parent, on_fork_child);
        st_jitmap_note_start();
    }
    st_tls.recorder_depth--;
    st_rec.state = ok ? ST_ACTIVE : ST_OFF;
#ifdef ST_ATTACH_BUILD
    if (ok && st_attach_begin() != 0) {
        st_warn("attach: cannot start the detach poller; not recording", NULL);
        st_step_aside();
    }
#endif
    errno = saved_errno;
}

void st_step_aside(void)
{
    st_recorder_stop(ST_END_STEPPED_ASIDE);
}

/* Ends recording for good while the program runs on: wrappers pass through
 * from here, the dump is finished (complete) with end_reason. */
void st_recorder_stop(uint32_t end_reason)
{
    int expected = ST_ACTIVE;
    if (!__atomic_compare_exchange_n(&st_rec.state, &expected, ST_OFF, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
        return;
    int saved_errno = st_recorder_enter(&st_tls);
    st_watchdog_stop();
    st_sync_flush_waits();
    st_dump_finish(end_reason, 0);
    st_recorder_leave(&st_tls, saved_errno);
}

__attribute__((destructor)) static void st_fini(void)
{
    if (st_rec.state == ST_ACTIVE) {
        /* The thread running exit is shutting down, not stalling: its open
         * iteration is dropped. Other threads' open iterations stay in their
         * slots, for the analyzer to report those that ran long. */
        if (st_tls.state == ST_T_READY) {
            st_tls.in_iteration = 0;
            if (st_tls.slot != NULL)
                st_tls.slot->live_iter_start_ns = 0;
        }
        st_sync_flush_waits();
        st_dump_finish(ST_END_EXIT, 0);
    }
}

/* wrap_futex.c - libc's syscall(), for the futex waits and wakes programs
 * make through it (Rust's std: Condvar, Mutex, thread parking; tokio).
 * Every other number goes straight to the kernel (seccomp: wrap_seccomp.c).
 */
#include <linux/futex.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "rawsys.h"
#include "recorder.h"


/* A timed wait this long is an idle wait with a keep-alive (tokio's blocking
 * pool waits 10 s for work), not a short retry. */
#define ST_FUTEX_IDLE_TIMEOUT_NS 1000000000ull

/* std's futex Mutex waits for the word to leave 2 ("locked, contended"), as
 * glibc's low-level locks do; a condition or a parker waits on a counter. */
#define ST_FUTEX_LOCKED_CONTENDED 2u

static int is_wait(int cmd) { return cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET; }
static int is_wake(int cmd) { return cmd == FUTEX_WAKE || cmd == FUTEX_WAKE_BITSET; }

static uint64_t ts_ns(const struct timespec *ts)
{
    return (uint64_t)ts->tv_sec * 1000000000ull + (uint64_t)ts->tv_nsec;
}

/* Is the wait's timeout long enough to make it an idle wait? FUTEX_WAIT's
 * timeout is relative; FUTEX_WAIT_BITSET's is a deadline on the monotonic
 * clock, or the real-time one when asked. */
static int long_timeout(int op, const struct timespec *ts)
{
    if (ts->tv_sec < 0 || ts->tv_nsec < 0)
        return 0;
    uint64_t want = ts_ns(ts);
    if ((op & FUTEX_CMD_MASK) == FUTEX_WAIT)
        return want >= ST_FUTEX_IDLE_TIMEOUT_NS;
    struct timespec now;
    clockid_t clock = (op & FUTEX_CLOCK_REALTIME) ? CLOCK_REALTIME : CLOCK_MONOTONIC;
    if (clock_gettime(clock, &now) != 0)
        return 0;
    uint64_t at = ts_ns(&now);
    return want > at && want - at >= ST_FUTEX_IDLE_TIMEOUT_NS;
}

/* A word waited on with 2 every time is a lock; one waited on with other
 * values is a condition or a parker, whose counter passes through 2 once.
 * So a word is a lock from its second wait on, if all its waits were with 2
 * and untimed: a lock's first contended wait is taken for an idle one. */
static uint16_t futex_kind(uint32_t *word, uint32_t val, int timed)
{
    struct st_object *o = st_object_get(&st_rec.objects, (uint64_t)(uintptr_t)word, ST_OBJ_COND,
                                        st_now_ns());
    if (o == NULL)
        return ST_OBJ_COND;
    int counter = timed || val != ST_FUTEX_LOCKED_CONTENDED;
    uint32_t was = __atomic_fetch_or(&o->flags,
                                     ST_OBJ_FUTEX_SEEN | (counter ? ST_OBJ_FUTEX_COUNTER : 0),
                                     __ATOMIC_RELAXED);
    if (counter || !(was & ST_OBJ_FUTEX_SEEN) || (was & ST_OBJ_FUTEX_COUNTER))
        return ST_OBJ_COND;
    if (__atomic_load_n(&o->kind, __ATOMIC_RELAXED) != ST_OBJ_MUTEX)
        __atomic_store_n(&o->kind, ST_OBJ_MUTEX, __ATOMIC_RELAXED);
    return ST_OBJ_MUTEX;
}

static __attribute__((noinline)) long futex_wait(long nr, uint32_t *word, int op, uint32_t val,
                                                 const struct timespec *ts, long a4, long a5)
{
    struct st_tls *t = &st_tls;
    if (!st_thread_records(t) || !st_recording())
        return st_rawsys6_errno(nr, (long)word, op, val, (long)ts, a4, a5);
    int saved_errno = errno;
    int untimed = ts == NULL || long_timeout(op, ts);
    uint16_t kind = futex_kind(word, val, ts != NULL);
    errno = saved_errno;
    /* A worker parked for work is idle: a loop thread's iteration ends
     * there, as at its event wait (a tokio worker parks on its condition
     * whenever another worker holds the I/O driver). Parkers wait with a
     * bitset (Rust's std, abseil, folly); a plain FUTEX_WAIT is a pause
     * inside the work, such as HotSpot's safepoint barrier, which a loop
     * thread's running code stops at and which must not cut its stall. */
    int idle = untimed && kind == ST_OBJ_COND && (op & FUTEX_CMD_MASK) == FUTEX_WAIT_BITSET;
    if (idle)
        st_idle_wait_enter(t);
    struct st_sync s;
    st_sync_begin(&s, word, kind, ST_CALL_FUTEX_WAIT, untimed);
    long r = st_rawsys6_errno(nr, (long)word, op, val, (long)ts, a4, a5);
    /* The stack shows libc's syscall, as if the call had not been ours. */
    st_sync_end(&s, r < 0 && errno == ETIMEDOUT, (void *)ST_REAL(syscall));
    if (idle)
        st_idle_wait_leave(t);
    return r;
}

static __attribute__((noinline)) long futex_wake(long nr, uint32_t *word, int op, long a2,
                                                 long a3, long a4, long a5)
{
    long r = st_rawsys6_errno(nr, (long)word, op, a2, a3, a4, a5);
    /* Only a wake that woke someone: std's notify_one always makes the call. */
    if (r > 0) {
        int saved_errno = errno;
        st_sync_wake(word, ST_OBJ_COND, 0, 1, 0, ST_CALL_NONE, NULL);
        errno = saved_errno;
    }
    return r;
}

#if defined(SYS_futex_time64) && SYS_futex_time64 != SYS_futex
#define IS_FUTEX(n) ((n) == SYS_futex || (n) == SYS_futex_time64)
#else
#define IS_FUTEX(n) ((n) == SYS_futex)
#endif

/* Six arguments are read whatever the call takes, as libc's own syscall()
 * passes six registers: the extra ones are garbage the kernel ignores. The
 * recorder's own raw calls come here too, from signal handlers among them:
 * nothing is resolved on the way to the kernel. */
ST_EXPORT long syscall(long number, ...)
{
    va_list ap;
    va_start(ap, number);
    long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
    long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
    va_end(ap);
    if (ST_LIKELY(!IS_FUTEX(number))) {
        if (ST_UNLIKELY(number == SYS_seccomp))
            st_seccomp_syscall(a1);
        return st_rawsys6_errno(number, a1, a2, a3, a4, a5, a6);
    }
    int cmd = (int)a2 & FUTEX_CMD_MASK;
    if (is_wait(cmd))
        return futex_wait(number, (uint32_t *)a1, (int)a2, (uint32_t)a3,
                          (const struct timespec *)a4, a5, a6);
    if (is_wake(cmd))
        return futex_wake(number, (uint32_t *)a1, (int)a2, a3, a4, a5, a6);
    return st_rawsys6_errno(number, a1, a2, a3, a4, a5, a6);
}

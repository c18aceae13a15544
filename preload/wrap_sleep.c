/* wrap_sleep.c - the sleeps. nanosleep and clock_nanosleep are redone with
 * the time left when our sampling signal, not the target's, cut them short.
 * glibc's sleep and usleep call nanosleep internally, bypassing our wrapper.
 */
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "recorder.h"

ST_EXPORT int nanosleep(const struct timespec *req, struct timespec *rem)
{
    __typeof__(&nanosleep) real = ST_REAL(nanosleep);
    if (ST_UNLIKELY(real == NULL))
        return (int)syscall(SYS_nanosleep, req, rem);
    struct timespec left = *req;
    int r;
    uint64_t t0 = st_call_enter(ST_CALL_NANOSLEEP);
    do {
        st_tls.sampler_hit = 0;
        r = real(&left, &left);
    } while (r < 0 && errno == EINTR && st_tls.sampler_hit);
    st_call_leave(ST_CALL_NANOSLEEP, t0, (void *)real);
    if (r < 0 && errno == EINTR && rem != NULL)
        *rem = left;
    return r;
}

ST_EXPORT int clock_nanosleep(clockid_t clock, int flags, const struct timespec *req,
                              struct timespec *rem)
{
    __typeof__(&clock_nanosleep) real = ST_REAL(clock_nanosleep);
    if (ST_UNLIKELY(real == NULL))
        return (int)syscall(SYS_clock_nanosleep, clock, flags, req, rem);
    /* An absolute sleep is simply redone; a relative one with what is left. */
    struct timespec left = *req;
    int absolute = flags & TIMER_ABSTIME, r;
    uint64_t t0 = st_call_enter(ST_CALL_CLOCK_NANOSLEEP);
    do {
        st_tls.sampler_hit = 0;
        r = real(clock, flags, &left, absolute ? NULL : &left);
    } while (r == EINTR && st_tls.sampler_hit);
    st_call_leave(ST_CALL_CLOCK_NANOSLEEP, t0, (void *)real);
    if (r == EINTR && rem != NULL && !absolute)
        *rem = left;
    return r;
}

/* glibc's usleep keeps no time left: when our signal cut it short (a lock
 * holder asked for its stack) the rest is slept from the clock. */
ST_EXPORT int usleep(useconds_t usec)
{
    __typeof__(&usleep) real = ST_REAL(usleep);
    if (ST_UNLIKELY(real == NULL)) {
        struct timespec ts = {usec / 1000000, (long)(usec % 1000000) * 1000};
        return (int)syscall(SYS_nanosleep, &ts, NULL);
    }
    uint64_t t0 = st_call_enter(ST_CALL_USLEEP);
    uint64_t began = st_clock_read_ns(CLOCK_MONOTONIC), end = began + (uint64_t)usec * 1000u;
    int saved_errno = errno;
    st_tls.sampler_hit = 0;
    int r = real(usec);
    while (r < 0 && errno == EINTR && st_tls.sampler_hit) {
        errno = saved_errno;
        uint64_t now = st_clock_read_ns(CLOCK_MONOTONIC);
        if (now >= end) {
            r = 0;
            break;
        }
        st_tls.sampler_hit = 0;
        r = real((useconds_t)((end - now + 999u) / 1000u));
    }
    st_call_leave(ST_CALL_USLEEP, t0, (void *)real);
    return r;
}

ST_EXPORT unsigned int sleep(unsigned int seconds)
{
    __typeof__(&sleep) real = ST_REAL(sleep);
    if (ST_UNLIKELY(real == NULL)) {
        struct timespec ts = {seconds, 0};
        return syscall(SYS_nanosleep, &ts, &ts) == 0 ? 0 : (unsigned)ts.tv_sec;
    }
    uint64_t t0 = st_call_enter(ST_CALL_SLEEP);
    unsigned int r = real(seconds);
    st_call_leave(ST_CALL_SLEEP, t0, (void *)real);
    return r;
}

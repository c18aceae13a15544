/* wrap_event.c - the event-wait calls: epoll, poll and select. The one a
 * thread keeps returning to is its loop wait (loop.c); any other is a
 * blocking call inside the current iteration.
 */
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>

#include "recorder.h"

#define CALL_SITE ((uintptr_t)__builtin_return_address(0))

int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout,
                const sigset_t *ss, size_t fdslen);

/* Our sampling signal may land just as a wait starts; the target must not
 * see an EINTR it would not have had without us, so such a wait is redone. */
#define SAMPLER_EINTR(r) ((r) < 0 && errno == EINTR && st_tls.sampler_hit)

/* A wait on one fd for at most this long probes that fd (a socket timeout,
 * puma's check of its client before each request) rather than waits for
 * events. An epoll set is never a probe: a busy loop polls it with a zero
 * timeout while callbacks are ready. */
#define PROBE_MAX_MS 1000

static int ts_probe(const struct timespec *ts, unsigned nfds)
{
    if (nfds != 1 || ts == NULL || ts->tv_sec < 0)
        return 0;
    return ts->tv_sec < PROBE_MAX_MS / 1000 || (ts->tv_sec == PROBE_MAX_MS / 1000 && ts->tv_nsec == 0);
}

static int ms_probe(int timeout, nfds_t nfds)
{
    return nfds == 1 && timeout >= 0 && timeout <= PROBE_MAX_MS;
}

/* The fds a select watches, up to 2 (nfds is the highest plus one, not a
 * count): a word at a time, since a loop's select comes by here each turn. */
static unsigned fds_in(int nfds, const fd_set *rd, const fd_set *wr, const fd_set *ex)
{
    const fd_set *sets[3] = {rd, wr, ex};
    const int word_bits = (int)(8 * sizeof(__FDS_BITS(rd)[0]));
    unsigned n = 0;
    if (nfds <= 0 || nfds > FD_SETSIZE)
        return 0;
    for (int s = 0; s < 3; s++)
        for (int w = 0; sets[s] != NULL && w * word_bits < nfds && n < 2; w++) {
            unsigned long bits = (unsigned long)__FDS_BITS(sets[s])[w];
            int left = nfds - w * word_bits;
            if (left < word_bits)
                bits &= (1ul << left) - 1;
            n += (unsigned)__builtin_popcountl(bits);
        }
    return n;
}

static int tv_probe(const struct timeval *tv, unsigned nfds)
{
    struct timespec ts;
    if (tv == NULL)
        return 0;
    ts.tv_sec = tv->tv_sec;
    ts.tv_nsec = tv->tv_usec * 1000;
    return ts_probe(&ts, nfds);
}

#define EVENT_WAIT(call_id, fd, probe, real, args)                            \
    do {                                                                      \
        struct st_wait w_;                                                    \
        st_wait_enter(&w_, call_id, fd, CALL_SITE, probe);                    \
        do {                                                                  \
            st_tls.sampler_hit = 0;                                           \
            r = real args;                                                    \
        } while (SAMPLER_EINTR(r));                                           \
        st_wait_leave(&w_, (void *)real);                                     \
    } while (0)

ST_EXPORT int epoll_wait(int epfd, struct epoll_event *events, int max, int timeout)
{
    __typeof__(&epoll_wait) real = ST_REAL(epoll_wait);
    int r;
    if (real == NULL)
        return (int)syscall(SYS_epoll_wait, epfd, events, max, timeout);
    EVENT_WAIT(ST_CALL_EPOLL_WAIT, epfd, 0, real, (epfd, events, max, timeout));
    return r;
}

ST_EXPORT int epoll_pwait(int epfd, struct epoll_event *events, int max, int timeout,
                          const sigset_t *sigmask)
{
    __typeof__(&epoll_pwait) real = ST_REAL(epoll_pwait);
    int r;
    if (real == NULL)
        return (int)syscall(SYS_epoll_pwait, epfd, events, max, timeout, sigmask, _NSIG / 8);
    EVENT_WAIT(ST_CALL_EPOLL_PWAIT, epfd, 0, real, (epfd, events, max, timeout, sigmask));
    return r;
}

ST_EXPORT int epoll_pwait2(int epfd, struct epoll_event *events, int max,
                           const struct timespec *timeout, const sigset_t *sigmask)
{
    __typeof__(&epoll_pwait2) real = ST_REAL(epoll_pwait2);
    int r;
    if (real == NULL)
        return errno = ENOSYS, -1;
    EVENT_WAIT(ST_CALL_EPOLL_PWAIT2, epfd, 0, real, (epfd, events, max, timeout, sigmask));
    return r;
}

ST_EXPORT int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    __typeof__(&poll) real = ST_REAL(poll);
    int r;
    if (real == NULL)
        return (int)syscall(SYS_poll, fds, nfds, timeout);
    EVENT_WAIT(ST_CALL_POLL, -1, ms_probe(timeout, nfds), real, (fds, nfds, timeout));
    return r;
}

ST_EXPORT int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen)
{
    __typeof__(&__poll_chk) real = ST_REAL(__poll_chk);
    int r;
    if (real == NULL)
        return (int)syscall(SYS_poll, fds, nfds, timeout);
    EVENT_WAIT(ST_CALL_POLL, -1, ms_probe(timeout, nfds), real, (fds, nfds, timeout, fdslen));
    return r;
}

ST_EXPORT int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout,
                    const sigset_t *sigmask)
{
    __typeof__(&ppoll) real = ST_REAL(ppoll);
    int r;
    if (real == NULL)
        return (int)syscall(SYS_ppoll, fds, nfds, timeout, sigmask, _NSIG / 8);
    EVENT_WAIT(ST_CALL_PPOLL, -1, ts_probe(timeout, (unsigned)nfds), real, (fds, nfds, timeout, sigmask));
    return r;
}

ST_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout,
                          const sigset_t *sigmask, size_t fdslen)
{
    __typeof__(&__ppoll_chk) real = ST_REAL(__ppoll_chk);
    int r;
    if (real == NULL)
        return (int)syscall(SYS_ppoll, fds, nfds, timeout, sigmask, _NSIG / 8);
    EVENT_WAIT(ST_CALL_PPOLL, -1, ts_probe(timeout, (unsigned)nfds), real, (fds, nfds, timeout, sigmask, fdslen));
    return r;
}

/* On EINTR select leaves its fd sets as they were (Linux counts the timeout
 * down), so redoing one after our signal is safe. */
ST_EXPORT int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *timeout)
{
    __typeof__(&select) real = ST_REAL(select);
    int r;
    if (real == NULL)
        return (int)syscall(SYS_select, nfds, rd, wr, ex, timeout);
    EVENT_WAIT(ST_CALL_SELECT, -1, tv_probe(timeout, fds_in(nfds, rd, wr, ex)), real, (nfds, rd, wr, ex, timeout));
    return r;
}

ST_EXPORT int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex,
                      const struct timespec *timeout, const sigset_t *sigmask)
{
    __typeof__(&pselect) real = ST_REAL(pselect);
    int r;
    if (real == NULL)
        return errno = ENOSYS, -1;
    EVENT_WAIT(ST_CALL_PSELECT, -1, ts_probe(timeout, fds_in(nfds, rd, wr, ex)), real, (nfds, rd, wr, ex, timeout, sigmask));
    return r;
}

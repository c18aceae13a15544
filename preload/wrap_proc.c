/* wrap_proc.c - process and thread life: thread start and exit (to reclaim
 * table slots), exec and _exit (to close the dump). dlopen is deliberately
 * not wrapped: glibc resolves a relative name from its caller's RUNPATH.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "recorder.h"

#define ST_EXPORT __attribute__((visibility("default")))

struct st_start {
    void *(*fn)(void *);
    void *arg;
};

static void thread_cleanup(void *arg)
{
    (void)arg;
    st_thread_detach();
}

static void *thread_trampoline(void *p)
{
    struct st_start start = *(struct st_start *)p;
    free(p);
    st_tls.start_routine = (uint64_t)(uintptr_t)start.fn;
    void *ret;
    pthread_cleanup_push(thread_cleanup, NULL);
    ret = start.fn(start.arg);
    pthread_cleanup_pop(1);
    return ret;
}

ST_EXPORT int pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                             void *(*fn)(void *), void *arg)
{
    __typeof__(&pthread_create) real = ST_REAL(pthread_create);
    if (real == NULL)
        return EAGAIN;
    struct st_start *start = NULL;
    if (st_rec.state == ST_ACTIVE && !st_tls.busy)
        start = malloc(sizeof *start);
    if (start == NULL)
        return real(thread, attr, fn, arg);
    start->fn = fn;
    start->arg = arg;
    int r = real(thread, attr, thread_trampoline, start);
    if (r != 0)
        free(start);
    return r;
}

ST_EXPORT void _exit(int status)
{
    if (st_rec.state == ST_ACTIVE)
        st_dump_finish(ST_END_EXIT, 0);
    syscall(SYS_exit_group, status);
    __builtin_unreachable();
}

ST_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    __typeof__(&execve) real = ST_REAL(execve);
    int active = st_rec.state == ST_ACTIVE;
    if (active)
        st_dump_finish(ST_END_EXEC, 0);
    int r = real ? real(path, argv, envp) : (int)syscall(SYS_execve, path, argv, envp);
    if (active && st_rec.hdr != NULL) {   /* exec failed: we are still recording */
        int saved_errno = errno;
        st_rec.hdr->end_reason = ST_END_RUNNING;
        __atomic_fetch_and(&st_rec.hdr->flags, ~ST_FLAG_COMPLETE, __ATOMIC_RELEASE);
        errno = saved_errno;
    }
    return r;
}

/* The target takes our sampling signal for itself: sampling steps aside for
 * good and the target's handler is installed as asked. */
ST_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    __typeof__(&sigaction) real = ST_REAL(sigaction);
    if (ST_UNLIKELY(real == NULL))
        return (int)syscall(SYS_rt_sigaction, sig, act, old, _NSIG / 8);
    if (act != NULL && sig != 0 && sig == st_rec.sample_signal && !st_tls.busy)
        st_watchdog_yield_signal();
    return real(sig, act, old);
}

ST_EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
    __typeof__(&signal) real = ST_REAL(signal);
    if (ST_UNLIKELY(real == NULL))
        return SIG_ERR;
    if (sig != 0 && sig == st_rec.sample_signal && !st_tls.busy)
        st_watchdog_yield_signal();
    return real(sig, handler);
}

/* wrap_proc.c - process and thread life: thread start, naming and exit (to
 * reclaim table slots and keep names), exec and _exit (to close the dump).
 * dlopen is deliberately not wrapped: glibc resolves a relative name from its
 * caller's RUNPATH.
 */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <errno.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "recorder.h"

/* A thread's start routine and argument, handed from pthread_create to the
 * new thread in a static slot rather than on the heap: a free() in a thread
 * that never used malloc has glibc reserve it an arena (64 MiB of address
 * space), which a program under ulimit -v then misses for its own threads.
 * When every slot is in flight the thread starts untracked. */
#define START_SLOTS 256
static struct st_start {
    void *(*fn)(void *);
    void *arg;
    int used;
} start_slots[START_SLOTS];

static struct st_start *claim_start_slot(void)
{
    for (unsigned i = 0; i < START_SLOTS; i++) {
        int expected = 0;
        if (__atomic_compare_exchange_n(&start_slots[i].used, &expected, 1, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            return &start_slots[i];
    }
    return NULL;
}

static void release_start_slot(struct st_start *slot)
{
    __atomic_store_n(&slot->used, 0, __ATOMIC_RELEASE);
}

static void thread_cleanup(void *arg)
{
    (void)arg;
    st_thread_detach();
}

static void *thread_trampoline(void *p)
{
    struct st_start start = *(struct st_start *)p;
    release_start_slot(p);
    st_tls.start_routine = (uint64_t)(uintptr_t)start.fn;
    st_holders_thread_start();
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
    if (st_rec.state == ST_ACTIVE && !st_tls.recorder_depth)
        start = claim_start_slot();
    if (start == NULL)
        return real(thread, attr, fn, arg);
    start->fn = fn;
    start->arg = arg;
    int r = real(thread, attr, thread_trampoline, start);
    if (r != 0)
        release_start_slot(start);
    return r;
}

/* Runtimes name their threads once they run (HotSpot's "C2 CompilerThre",
 * "pool-1-thread-1"): the name read when a thread first met the recorder is
 * often the one it inherited. Only a thread's own name is copied, by itself. */
ST_EXPORT int pthread_setname_np(pthread_t thread, const char *name)
{
    __typeof__(&pthread_setname_np) real = ST_REAL(pthread_setname_np);
    if (real == NULL)
        return ENOSYS;
    int r = real(thread, name);
    if (r == 0 && st_tls.slot != NULL && st_tls.state == ST_T_READY && pthread_equal(thread, pthread_self())) {
        int saved = errno;
        prctl(PR_GET_NAME, st_tls.slot->name, 0, 0, 0);
        errno = saved;
    }
    return r;
}

/* A vforked child runs on its parent's memory until it execs or exits: it
 * must touch nothing of the parent's recording. */
static int owns_recording(void)
{
    return st_rec.state == ST_ACTIVE && syscall(SYS_getpid) == st_rec.proc_pid;
}

ST_EXPORT void _exit(int status)
{
    if (owns_recording())
        st_dump_finish(ST_END_EXIT, 0);
    syscall(SYS_exit_group, status);
    __builtin_unreachable();
}

/* exec replaces the image: the dump ends here, complete, unless the exec
 * fails and we go on recording. glibc's own exec functions call execve
 * internally, bypassing this wrapper, so each one is wrapped. */
static int exec_begin(void)
{
    if (!owns_recording())
        return 0;
    st_dump_finish(ST_END_EXEC, 0);
    return 1;
}

static void exec_failed(int began)
{
    if (!began || st_rec.hdr == NULL)
        return;
    int saved_errno = errno;
    st_rec.hdr->end_reason = ST_END_RUNNING;
    __atomic_fetch_and(&st_rec.hdr->flags, ~ST_FLAG_COMPLETE, __ATOMIC_RELEASE);
    errno = saved_errno;
}

#define WRAP_EXEC(name, params, args, fallback)                                \
    ST_EXPORT int name params                                                 \
    {                                                                         \
        __typeof__(&name) real = ST_REAL(name);                               \
        int began = exec_begin();                                             \
        int r = real ? real args : (fallback);                                \
        exec_failed(began);                                                   \
        return r;                                                             \
    }

WRAP_EXEC(execve, (const char *path, char *const argv[], char *const envp[]), (path, argv, envp),
          (int)syscall(SYS_execve, path, argv, envp))
WRAP_EXEC(execv, (const char *path, char *const argv[]), (path, argv),
          (int)syscall(SYS_execve, path, argv, environ))
WRAP_EXEC(execvp, (const char *file, char *const argv[]), (file, argv), (errno = ENOSYS, -1))
WRAP_EXEC(execvpe, (const char *file, char *const argv[], char *const envp[]), (file, argv, envp),
          (errno = ENOSYS, -1))

/* The execl family passes argv as variadic arguments: gather them. */
#define GATHER_ARGS(first, argv, extra)                                        \
    va_list ap;                                                               \
    size_t argc = 1;                                                          \
    va_start(ap, first);                                                      \
    while (va_arg(ap, char *) != NULL)                                        \
        argc++;                                                               \
    va_end(ap);                                                               \
    char *argv[argc + 1];                                                     \
    argv[0] = (char *)first;                                                  \
    va_start(ap, first);                                                      \
    for (size_t i = 1; i <= argc; i++)                                        \
        argv[i] = va_arg(ap, char *);                                         \
    extra;                                                                    \
    va_end(ap)

ST_EXPORT int execl(const char *path, const char *arg, ...)
{
    GATHER_ARGS(arg, argv, (void)0);
    return execv(path, argv);
}

ST_EXPORT int execlp(const char *file, const char *arg, ...)
{
    GATHER_ARGS(arg, argv, (void)0);
    return execvp(file, argv);
}

ST_EXPORT int execle(const char *path, const char *arg, ...)
{
    char *const *envp;
    GATHER_ARGS(arg, argv, envp = va_arg(ap, char *const *));
    return execve(path, argv, envp);
}

/* The target takes our sampling signal for itself: sampling steps aside for
 * good and the target's handler is installed as asked. */
ST_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    __typeof__(&sigaction) real = ST_REAL(sigaction);
    if (ST_UNLIKELY(real == NULL))
        return (int)syscall(SYS_rt_sigaction, sig, act, old, _NSIG / 8);
    if (act != NULL && sig != 0 && sig == st_rec.sample_signal && !st_tls.recorder_depth)
        st_watchdog_yield_signal();
    return real(sig, act, old);
}

ST_EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
    __typeof__(&signal) real = ST_REAL(signal);
    if (ST_UNLIKELY(real == NULL))
        return SIG_ERR;
    if (sig != 0 && sig == st_rec.sample_signal && !st_tls.recorder_depth)
        st_watchdog_yield_signal();
    return real(sig, handler);
}

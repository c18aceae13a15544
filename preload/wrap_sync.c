/* wrap_sync.c - mutex, rwlock, condition variable and semaphore waits.
 * The uncontended path is the real trylock and nothing else; only a wait
 * that would block is timed (sync.c). Wakes look at glibc's waiter count
 * first, so a signal or post with nobody waiting costs one load.
 */
#include <pthread.h>
#include <semaphore.h>
#include <sys/syscall.h>

#include "recorder.h"

#define ST_EXPORT __attribute__((visibility("default")))
#define COND_VERSION "GLIBC_2.3.2"

/* glibc's internal layouts, read (never written) to skip wakes with no
 * waiter: bits 3.. of a condition's __wrefs count its waiters, and the high
 * half of a semaphore's 64-bit word counts its sleepers. */
static int cond_has_waiters(pthread_cond_t *c)
{
    return __atomic_load_n(&c->__data.__wrefs, __ATOMIC_RELAXED) >> 3 != 0;
}

static int sem_has_waiters(sem_t *s)
{
    return __atomic_load_n((uint64_t *)s, __ATOMIC_RELAXED) >> 32 != 0;
}

static void sem_acquired(sem_t *s)
{
    struct st_tls *t = &st_tls;
    t->held_sems[t->held_next++ & 7] = s;
}

static int sem_was_acquired_here(sem_t *s)
{
    for (unsigned i = 0; i < 8; i++)
        if (st_tls.held_sems[i] == s)
            return 1;
    return 0;
}

/* ---- mutex and rwlock: trylock first --------------------------------------- */

#define TRY_THEN_WAIT(kind, call_id, obj, try_fn, wait_fn, wait_args, timed)   \
    do {                                                                      \
        int r_ = try_fn(obj);                                                 \
        if (ST_LIKELY(r_ != EBUSY))                                           \
            return r_;                                                        \
        struct st_sync s_;                                                    \
        st_sync_begin(&s_, obj, kind, call_id, 0);                            \
        r_ = wait_fn wait_args;                                               \
        st_sync_end(&s_, (timed) && r_ == ETIMEDOUT, (void *)wait_fn);        \
        return r_;                                                            \
    } while (0)

ST_EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
    __typeof__(&pthread_mutex_trylock) try = ST_REAL(pthread_mutex_trylock);
    __typeof__(&pthread_mutex_lock) real = ST_REAL(pthread_mutex_lock);
    if (ST_UNLIKELY(try == NULL || real == NULL))
        return real ? real(m) : EAGAIN;
    TRY_THEN_WAIT(ST_OBJ_MUTEX, ST_CALL_MUTEX_LOCK, m, try, real, (m), 0);
}

ST_EXPORT int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *abstime)
{
    __typeof__(&pthread_mutex_trylock) try = ST_REAL(pthread_mutex_trylock);
    __typeof__(&pthread_mutex_timedlock) real = ST_REAL(pthread_mutex_timedlock);
    if (ST_UNLIKELY(try == NULL || real == NULL))
        return real ? real(m, abstime) : EAGAIN;
    TRY_THEN_WAIT(ST_OBJ_MUTEX, ST_CALL_MUTEX_TIMEDLOCK, m, try, real, (m, abstime), 1);
}

ST_EXPORT int pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
    __typeof__(&pthread_rwlock_tryrdlock) try = ST_REAL(pthread_rwlock_tryrdlock);
    __typeof__(&pthread_rwlock_rdlock) real = ST_REAL(pthread_rwlock_rdlock);
    if (ST_UNLIKELY(try == NULL || real == NULL))
        return real ? real(l) : EAGAIN;
    TRY_THEN_WAIT(ST_OBJ_RWLOCK, ST_CALL_RWLOCK_RDLOCK, l, try, real, (l), 0);
}

ST_EXPORT int pthread_rwlock_wrlock(pthread_rwlock_t *l)
{
    __typeof__(&pthread_rwlock_trywrlock) try = ST_REAL(pthread_rwlock_trywrlock);
    __typeof__(&pthread_rwlock_wrlock) real = ST_REAL(pthread_rwlock_wrlock);
    if (ST_UNLIKELY(try == NULL || real == NULL))
        return real ? real(l) : EAGAIN;
    TRY_THEN_WAIT(ST_OBJ_RWLOCK, ST_CALL_RWLOCK_WRLOCK, l, try, real, (l), 0);
}

/* ---- condition variables: every wait blocks -------------------------------- */

ST_EXPORT int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    __typeof__(&pthread_cond_wait) real = ST_REAL_VERSIONED(pthread_cond_wait, COND_VERSION);
    if (ST_UNLIKELY(real == NULL))
        return EINVAL;
    struct st_sync s;
    st_sync_begin(&s, c, ST_OBJ_COND, ST_CALL_COND_WAIT, 1);
    int r = real(c, m);
    st_sync_end(&s, 0, (void *)real);
    return r;
}

ST_EXPORT int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                                     const struct timespec *abstime)
{
    __typeof__(&pthread_cond_timedwait) real =
        ST_REAL_VERSIONED(pthread_cond_timedwait, COND_VERSION);
    if (ST_UNLIKELY(real == NULL))
        return EINVAL;
    struct st_sync s;
    st_sync_begin(&s, c, ST_OBJ_COND, ST_CALL_COND_TIMEDWAIT, 0);
    int r = real(c, m, abstime);
    st_sync_end(&s, r == ETIMEDOUT, (void *)real);
    return r;
}

ST_EXPORT int pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m, clockid_t clock,
                                     const struct timespec *abstime)
{
    __typeof__(&pthread_cond_clockwait) real = ST_REAL(pthread_cond_clockwait);
    if (ST_UNLIKELY(real == NULL))
        return EINVAL;
    struct st_sync s;
    st_sync_begin(&s, c, ST_OBJ_COND, ST_CALL_COND_CLOCKWAIT, 0);
    int r = real(c, m, clock, abstime);
    st_sync_end(&s, r == ETIMEDOUT, (void *)real);
    return r;
}

ST_EXPORT int pthread_cond_signal(pthread_cond_t *c)
{
    __typeof__(&pthread_cond_signal) real = ST_REAL_VERSIONED(pthread_cond_signal, COND_VERSION);
    if (ST_UNLIKELY(real == NULL))
        return EINVAL;
    if (cond_has_waiters(c))
        st_sync_wake(c, ST_OBJ_COND, 0);
    return real(c);
}

ST_EXPORT int pthread_cond_broadcast(pthread_cond_t *c)
{
    __typeof__(&pthread_cond_broadcast) real =
        ST_REAL_VERSIONED(pthread_cond_broadcast, COND_VERSION);
    if (ST_UNLIKELY(real == NULL))
        return EINVAL;
    if (cond_has_waiters(c))
        st_sync_wake(c, ST_OBJ_COND, 0);
    return real(c);
}

/* ---- semaphores: trywait first; remember what this thread acquired ---------- */

#define SEM_TRY_THEN_WAIT(call_id, untimed, wait_fn, wait_args)                \
    do {                                                                      \
        int saved_errno_ = errno;                                             \
        if (ST_LIKELY(try(s) == 0)) {                                         \
            sem_acquired(s);                                                  \
            return 0;                                                         \
        }                                                                     \
        errno = saved_errno_;                                                 \
        struct st_sync s_;                                                    \
        st_sync_begin(&s_, s, ST_OBJ_SEM, call_id, untimed);                  \
        int r_ = wait_fn wait_args;                                           \
        int timed_out_ = r_ != 0 && errno == ETIMEDOUT;                       \
        st_sync_end(&s_, timed_out_, (void *)wait_fn);                        \
        if (r_ == 0)                                                          \
            sem_acquired(s);                                                  \
        return r_;                                                            \
    } while (0)

ST_EXPORT int sem_wait(sem_t *s)
{
    __typeof__(&sem_trywait) try = ST_REAL(sem_trywait);
    __typeof__(&sem_wait) real = ST_REAL(sem_wait);
    if (ST_UNLIKELY(try == NULL || real == NULL))
        return real ? real(s) : (errno = EINVAL, -1);
    SEM_TRY_THEN_WAIT(ST_CALL_SEM_WAIT, 1, real, (s));
}

ST_EXPORT int sem_timedwait(sem_t *s, const struct timespec *abstime)
{
    __typeof__(&sem_trywait) try = ST_REAL(sem_trywait);
    __typeof__(&sem_timedwait) real = ST_REAL(sem_timedwait);
    if (ST_UNLIKELY(try == NULL || real == NULL))
        return real ? real(s, abstime) : (errno = EINVAL, -1);
    SEM_TRY_THEN_WAIT(ST_CALL_SEM_TIMEDWAIT, 0, real, (s, abstime));
}

ST_EXPORT int sem_clockwait(sem_t *s, clockid_t clock, const struct timespec *abstime)
{
    __typeof__(&sem_trywait) try = ST_REAL(sem_trywait);
    __typeof__(&sem_clockwait) real = ST_REAL(sem_clockwait);
    if (ST_UNLIKELY(try == NULL || real == NULL))
        return real ? real(s, clock, abstime) : (errno = EINVAL, -1);
    SEM_TRY_THEN_WAIT(ST_CALL_SEM_CLOCKWAIT, 0, real, (s, clock, abstime));
}

ST_EXPORT int sem_post(sem_t *s)
{
    __typeof__(&sem_post) real = ST_REAL(sem_post);
    if (ST_UNLIKELY(real == NULL))
        return errno = EINVAL, -1;
    if (sem_has_waiters(s))
        st_sync_wake(s, ST_OBJ_SEM, sem_was_acquired_here(s));
    return real(s);
}

/* CPython tries every lock without blocking first: those acquisitions make
 * its later posts releases, so they are remembered too. */
ST_EXPORT int sem_trywait(sem_t *s)
{
    __typeof__(&sem_trywait) real = ST_REAL(sem_trywait);
    if (ST_UNLIKELY(real == NULL))
        return errno = EINVAL, -1;
    int r = real(s);
    if (r == 0)
        sem_acquired(s);
    return r;
}

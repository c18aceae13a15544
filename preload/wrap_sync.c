/* wrap_sync.c - mutex, rwlock, condition variable and semaphore waits.
 * The uncontended path is a look at the lock word and the real call (an
 * rwlock: the real trylock); only a wait that would block is timed
 * (sync.c). Wakes look at glibc's waiter count first, so a signal or post
 * with nobody waiting costs one load.
 */
#include <pthread.h>
#include <semaphore.h>
#include <sys/syscall.h>

#include "recorder.h"
#include "rwlock_word.h"

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
    __atomic_store_n((uint32_t *)s + ST_SEM_ACQUIRER_WORD, t->tid, __ATOMIC_RELAXED);
}

static uint32_t sem_word(sem_t *s, unsigned word)
{
    return __atomic_load_n((uint32_t *)s + word, __ATOMIC_RELAXED);
}

static int sem_was_acquired_here(sem_t *s)
{
    for (unsigned i = 0; i < 8; i++)
        if (st_tls.held_sems[i] == s)
            return 1;
    return 0;
}

/* ---- mutex and rwlock: uncontended first ----------------------------------- */

/* The wrapper itself is one test and a real call; all else (timing,
 * bookkeeping) is out of line, so the fast path needs no frame. The blocking
 * half tries once more before it times anything: a recursive mutex its
 * owner takes again, or a lock freed meanwhile, is not a wait. */
#define LOCK_SLOW_PATH(name, trylock, kind, call_id, params, args, timed, owner, readers) \
    static __attribute__((noinline, cold)) int name##_blocking params         \
    {                                                                         \
        __typeof__(&name) real = ST_REAL(name);                               \
        __typeof__(&trylock) try = ST_REAL(trylock);                          \
        if (ST_UNLIKELY(real == NULL || try == NULL))                         \
            return EAGAIN;                                                    \
        int r = try(obj);                                                     \
        if (r != EBUSY)                                                       \
            return r;                                                         \
        uint32_t holder = owner, held_by = holder ? 0 : (readers);            \
        struct st_sync s;                                                     \
        if (st_sync_begin(&s, obj, kind, call_id, 0)) {                       \
            if (holder != 0)                                                  \
                st_sync_holder(&s, holder);                                   \
            else if (held_by != 0)                                            \
                st_sync_readers(&s, held_by);                                 \
        }                                                                     \
        r = real args;                                                        \
        st_sync_end(&s, (timed) && r == ETIMEDOUT, (void *)real);             \
        return r;                                                             \
    }

/* glibc's mutex trylock costs twice its lock (4 ns more here), more than
 * the whole budget; so a mutex whose lock word is free goes straight to the
 * real lock. A lock taken in the nanoseconds between the look and the real
 * call blocks untimed: one wait in many is missed under heavy contention,
 * and none when there is none. */
static inline int mutex_looks_free(pthread_mutex_t *m)
{
#if defined(__x86_64__)
    /* Ask for the line to write: a plain read of a lock another core held
     * would fetch it shared, and the real lock's write would fetch it again. */
    __asm__ volatile("prefetchw %0" : : "m"(m->__data.__lock));
#endif
    return __atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED) == 0;
}

/* The thread that holds a mutex its trylock found busy: glibc keeps the
 * owner's tid for normal, error-checking and recursive mutexes (a robust or
 * PI one has flags in the top bits). Read only once a wait is certain. */
static inline uint32_t mutex_owner(pthread_mutex_t *m)
{
    return (uint32_t)__atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED) & 0x3fffffffu;
}

#define MUTEX_WRAPPER(name, call_id, params, args, timed)                      \
    LOCK_SLOW_PATH(name, pthread_mutex_trylock, ST_OBJ_MUTEX, call_id, params, args, timed,   \
                   mutex_owner(obj), 0)                                                     \
    ST_EXPORT int name params                                                 \
    {                                                                         \
        __typeof__(&name) real = ST_REAL(name);                               \
        if (ST_LIKELY(real != NULL && mutex_looks_free(obj)))                 \
            return real args;                                                 \
        return name##_blocking args;                                          \
    }

/* glibc's rwlock (nptl/pthread_rwlock_common.c, 2.25 on): a writer that
 * holds it keeps its tid in __cur_writer; readers leave no tid, only their
 * count in __readers above its three flag bits, bit 0 clear (the read
 * phase: in the write phase the count is of readers waiting). Read only
 * once a wait is certain. */
static inline uint32_t rwlock_writer(pthread_rwlock_t *l)
{
    return (uint32_t)__atomic_load_n(&l->__data.__cur_writer, __ATOMIC_RELAXED);
}

static inline uint32_t rwlock_readers(pthread_rwlock_t *l)
{
    return st_rwlock_readers(__atomic_load_n(&l->__data.__readers, __ATOMIC_RELAXED));
}

/* An rwlock's trylock is as cheap as its lock, and its lock word is two. */
#define RWLOCK_WRAPPER(name, trylock, call_id)                                 \
    LOCK_SLOW_PATH(name, trylock, ST_OBJ_RWLOCK, call_id, (pthread_rwlock_t *obj), (obj), 0, \
                   rwlock_writer(obj), rwlock_readers(obj))                   \
    ST_EXPORT int name(pthread_rwlock_t *obj)                                 \
    {                                                                         \
        __typeof__(&trylock) try = ST_REAL(trylock);                          \
        if (ST_LIKELY(try != NULL)) {                                         \
            int r = try(obj);                                                 \
            if (ST_LIKELY(r != EBUSY))                                        \
                return r;                                                     \
        }                                                                     \
        return name##_blocking(obj);                                          \
    }

MUTEX_WRAPPER(pthread_mutex_lock, ST_CALL_MUTEX_LOCK, (pthread_mutex_t *obj), (obj), 0)
MUTEX_WRAPPER(pthread_mutex_timedlock, ST_CALL_MUTEX_TIMEDLOCK,
              (pthread_mutex_t *obj, const struct timespec *abstime), (obj, abstime), 1)
RWLOCK_WRAPPER(pthread_rwlock_rdlock, pthread_rwlock_tryrdlock, ST_CALL_RWLOCK_RDLOCK)
RWLOCK_WRAPPER(pthread_rwlock_wrlock, pthread_rwlock_trywrlock, ST_CALL_RWLOCK_WRLOCK)

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
        st_sync_wake(c, ST_OBJ_COND, 0, 1, 0, ST_CALL_COND_SIGNAL, (void *)real);
    else if (ST_UNLIKELY(__atomic_load_n(&st_pools_saturated, __ATOMIC_RELAXED) != 0))
        st_sync_wake(c, ST_OBJ_COND, 0, 0, 0, ST_CALL_COND_SIGNAL, (void *)real);
    return real(c);
}

ST_EXPORT int pthread_cond_broadcast(pthread_cond_t *c)
{
    __typeof__(&pthread_cond_broadcast) real =
        ST_REAL_VERSIONED(pthread_cond_broadcast, COND_VERSION);
    if (ST_UNLIKELY(real == NULL))
        return EINVAL;
    if (cond_has_waiters(c))
        st_sync_wake(c, ST_OBJ_COND, 0, 1, 1, ST_CALL_COND_BROADCAST, (void *)real);
    else if (ST_UNLIKELY(__atomic_load_n(&st_pools_saturated, __ATOMIC_RELAXED) != 0))
        st_sync_wake(c, ST_OBJ_COND, 0, 0, 1, ST_CALL_COND_BROADCAST, (void *)real);
    return real(c);
}

/* ---- semaphores: trywait first; remember what this thread acquired ---------- */

/* glibc keeps a semaphore's value in the low half of its first word: when it
 * is positive a trywait will almost surely succeed, and an attempt that
 * cannot succeed is not made, so the fast path never touches errno. */
static int sem_has_value(sem_t *s)
{
    return (uint32_t)__atomic_load_n((uint64_t *)s, __ATOMIC_RELAXED) != 0;
}

#define SEM_WRAPPER(name, call_id, untimed, params, args)                       \
    static __attribute__((noinline, cold)) int name##_blocking params         \
    {                                                                         \
        __typeof__(&name) real = ST_REAL(name);                               \
        if (ST_UNLIKELY(real == NULL))                                        \
            return errno = EINVAL, -1;                                        \
        uint32_t holder = sem_word(s, ST_SEM_ACQUIRER_WORD);                  \
        struct st_sync st;                                                    \
        if (st_sync_begin(&st, s, ST_OBJ_SEM, call_id, untimed) && holder)    \
            st_sync_holder(&st, holder);                                      \
        int r = real args;                                                    \
        /* A holder only if it posted the semaphore to us: a lock's release. */ \
        st.holder_unconfirmed = r != 0 || sem_word(s, ST_SEM_RELEASER_WORD) != st.holder_tid; \
        st_sync_end(&st, r != 0 && errno == ETIMEDOUT, (void *)real);         \
        if (r == 0)                                                           \
            sem_acquired(s);                                                  \
        return r;                                                             \
    }                                                                         \
    ST_EXPORT int name params                                                 \
    {                                                                         \
        __typeof__(&sem_trywait) try = ST_REAL(sem_trywait);                  \
        if (ST_LIKELY(try != NULL && sem_has_value(s)) && try(s) == 0) {      \
            sem_acquired(s);                                                  \
            return 0;                                                         \
        }                                                                     \
        return name##_blocking args;                                          \
    }

SEM_WRAPPER(sem_wait, ST_CALL_SEM_WAIT, 1, (sem_t *s), (s))
SEM_WRAPPER(sem_timedwait, ST_CALL_SEM_TIMEDWAIT, 0, (sem_t *s, const struct timespec *abstime),
            (s, abstime))
SEM_WRAPPER(sem_clockwait, ST_CALL_SEM_CLOCKWAIT, 0,
            (sem_t *s, clockid_t clock, const struct timespec *abstime), (s, clock, abstime))

ST_EXPORT int sem_post(sem_t *s)
{
    __typeof__(&sem_post) real = ST_REAL(sem_post);
    if (ST_UNLIKELY(real == NULL))
        return errno = EINVAL, -1;
    if (sem_has_waiters(s)) {
        int by_holder = sem_was_acquired_here(s);
        if (by_holder)
            __atomic_store_n((uint32_t *)s + ST_SEM_RELEASER_WORD, st_tls.tid, __ATOMIC_RELAXED);
        st_sync_wake(s, ST_OBJ_SEM, by_holder, 1, 0, ST_CALL_SEM_POST, (void *)real);
    } else if (ST_UNLIKELY(__atomic_load_n(&st_pools_saturated, __ATOMIC_RELAXED) != 0) &&
               !sem_was_acquired_here(s)) {
        st_sync_wake(s, ST_OBJ_SEM, 0, 0, 0, ST_CALL_SEM_POST, (void *)real);
    }
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

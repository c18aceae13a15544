/* micro.c - cost per call of the operations the recorder wraps, in the
 * states that must stay cheap (uncontended, no waiter, data already there).
 * Run plain and preloaded by bench/run.py.
 *
 *   micro [ITERATIONS [OP]]
 *
 * prints "name ns_per_op wrapped_calls_per_op" for every operation (or only
 * OP), the best of three passes. Each operation is its own non-inlined
 * function op_NAME(n), so that callgrind can count it alone:
 *   valgrind --tool=callgrind --toggle-collect='op_*' micro 100000
 * The `control_` operations are not wrapped: they are the floors (a precise
 * and a coarse clock read, rdtsc, a bare system call), and their difference
 * between plain and preloaded is the noise of the run.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rwlock = PTHREAD_RWLOCK_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static sem_t sem;
static int sv[2], ep;
static struct epoll_event ev;
static char byte = 'x';
static const struct timespec zero;

#if defined(__x86_64__) || defined(__i386__)
#define TICK() __builtin_ia32_rdtsc()
#else
#define TICK() 0
#endif

#define NOINLINE __attribute__((noinline, noclone))

/* One operation: its body, its iterations (a fraction of n), and how many
 * wrapped calls one pass of the body makes. */
#define OPS(X)                                                                         \
    X(control_clock_gettime, 1, 0, { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); \
                                     __asm__ volatile("" : : "r"(&t) : "memory"); })      \
    X(control_clock_coarse, 1, 0, { struct timespec t; clock_gettime(CLOCK_MONOTONIC_COARSE, &t); \
                                    __asm__ volatile("" : : "r"(&t) : "memory"); })       \
    X(control_rdtsc, 1, 0, { unsigned long long t_ = TICK(); __asm__ volatile("" : : "r"(t_)); }) \
    X(control_getppid_syscall, 10, 0, syscall(SYS_getppid))                                \
    X(mutex_lock_unlock, 1, 1, { pthread_mutex_lock(&mutex); pthread_mutex_unlock(&mutex); }) \
    X(rwlock_rdlock_unlock, 1, 1, { pthread_rwlock_rdlock(&rwlock); pthread_rwlock_unlock(&rwlock); }) \
    X(rwlock_wrlock_unlock, 1, 1, { pthread_rwlock_wrlock(&rwlock); pthread_rwlock_unlock(&rwlock); }) \
    X(sem_post_wait, 1, 2, { sem_post(&sem); sem_wait(&sem); })                            \
    X(cond_signal_no_waiter, 1, 1, pthread_cond_signal(&cond))                             \
    X(cond_broadcast_no_waiter, 1, 1, pthread_cond_broadcast(&cond))                       \
    X(recv_nonblocking_with_data, 10, 1, recv(sv[0], &byte, 1, MSG_PEEK))                 \
    X(read_nonblocking_eagain, 10, 1, read(sv[1], &byte, 1))                               \
    X(nanosleep_0, 1000, 1, nanosleep(&zero, NULL))                                          \
    X(epoll_wait_0, 10, 1, epoll_wait(ep, &ev, 1, 0))

#define DEFINE_OP(name, div, calls, body)                                      \
    NOINLINE void op_##name(long n)                                            \
    {                                                                          \
        for (long i = 0; i < n; i++) {                                         \
            body;                                                              \
            __asm__ volatile("" ::: "memory");                                 \
        }                                                                      \
    }
OPS(DEFINE_OP)

struct op {
    const char *name;
    void (*fn)(long);
    int div, calls;
};
#define LIST_OP(name, div, calls, body) {#name, op_##name, div, calls},
static const struct op ops[] = {OPS(LIST_OP)};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 5000000;
    const char *only = argc > 2 ? argv[2] : NULL;
    sem_init(&sem, 0, 0);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0 ||
        send(sv[1], &byte, 1, 0) != 1 || (ep = epoll_create1(0)) < 0) {
        perror("micro: set-up");
        return 1;
    }
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        const struct op *o = &ops[k];
        if (only != NULL && strcmp(only, o->name) != 0)
            continue;
        long iters = n / o->div > 0 ? n / o->div : 1;
        o->fn(16);    /* warm: resolve symbols, fault pages in */
        double best = 0;
        for (int pass = 0; pass < 3; pass++) {
            double t0 = now_ns();
            o->fn(iters);
            double per = (now_ns() - t0) / iters;
            if (pass == 0 || per < best)
                best = per;
        }
        printf("%s %.3f %d\n", o->name, best, o->calls);
    }
    return 0;
}

/* micro.c - cost per call of the operations the recorder wraps, in the
 * states that must stay cheap (uncontended, no waiter, data already there).
 * Run plain and preloaded by bench/run.py.
 *
 *   micro [ITERATIONS [OP]]     per-process figures
 *   micro --ab [ROUNDS [OP]]    in-process A/B: wrapped against libc's own
 *
 * The first form prints "name ns_per_op wrapped_calls_per_op" for every
 * operation (or only OP), the best of three passes. Each operation is its
 * own non-inlined function op_NAME(n, fns), so that callgrind can count it:
 *   valgrind --tool=callgrind --toggle-collect='op_*' micro 100000
 * The `control_` operations are not wrapped: they are the floors (a precise
 * and a coarse clock read, rdtsc, a bare system call), and their difference
 * between plain and preloaded is the noise of the run.
 *
 * The second form answers "what does the wrapper add" without comparing two
 * processes: a system call's own cost moves by tens of ns between processes
 * (page layout, TLB refills after each kernel entry), more than the budget.
 * Every operation calls through a table of function pointers; the A/B mode
 * alternates blocks through the table of the symbols as linked (under the
 * preload: its wrappers) and the table of libc's own definitions, and prints
 * "name added_ns median_difference_ns rounds". Without the preload both
 * tables point at libc, so the figures are the method's own noise.
 */
#include <dlfcn.h>
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
static int sv[2], bsv[2], ep, ep_ready;
static struct epoll_event ev;
static char byte = 'x';
static const struct timespec zero;

#if defined(__x86_64__) || defined(__i386__)
#define TICK() __builtin_ia32_rdtsc()
#else
#define TICK() 0
#endif

#define NOINLINE __attribute__((noinline, noclone))

/* The wrapped functions, called through pointers in both modes so that
 * wrapped and direct calls cost the same indirection. */
#define FNS(X)                                                                 \
    X(pthread_mutex_lock) X(pthread_mutex_unlock) X(pthread_rwlock_rdlock)     \
    X(pthread_rwlock_wrlock) X(pthread_rwlock_unlock) X(sem_post) X(sem_wait)  \
    X(pthread_cond_signal) X(pthread_cond_broadcast) X(recv) X(read)           \
    X(nanosleep) X(epoll_wait) X(syscall)
#define FN_FIELD(name) __typeof__(&name) name;
struct fns { FNS(FN_FIELD) };
static struct fns linked, direct;

/* One operation: its body, its iterations (a fraction of n), and how many
 * wrapped calls one pass of the body makes. */
#define OPS(X)                                                                         \
    X(control_clock_gettime, 1, 0, { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); \
                                     __asm__ volatile("" : : "r"(&t) : "memory"); })      \
    X(control_clock_coarse, 1, 0, { struct timespec t; clock_gettime(CLOCK_MONOTONIC_COARSE, &t); \
                                    __asm__ volatile("" : : "r"(&t) : "memory"); })       \
    X(control_rdtsc, 1, 0, { unsigned long long t_ = TICK(); __asm__ volatile("" : : "r"(t_)); }) \
    X(control_getppid_syscall, 10, 0, syscall(SYS_getppid))                                \
    X(mutex_lock_unlock, 1, 1, { f->pthread_mutex_lock(&mutex); f->pthread_mutex_unlock(&mutex); }) \
    X(rwlock_rdlock_unlock, 1, 1, { f->pthread_rwlock_rdlock(&rwlock); f->pthread_rwlock_unlock(&rwlock); }) \
    X(rwlock_wrlock_unlock, 1, 1, { f->pthread_rwlock_wrlock(&rwlock); f->pthread_rwlock_unlock(&rwlock); }) \
    X(sem_post_wait, 1, 2, { f->sem_post(&sem); f->sem_wait(&sem); })                      \
    X(cond_signal_no_waiter, 1, 1, f->pthread_cond_signal(&cond))                          \
    X(cond_broadcast_no_waiter, 1, 1, f->pthread_cond_broadcast(&cond))                    \
    X(recv_nonblocking_with_data, 10, 1, f->recv(sv[0], &byte, 1, MSG_PEEK))              \
    X(recv_blocking_fd_with_data, 10, 1, f->recv(bsv[0], &byte, 1, MSG_PEEK))             \
    X(read_nonblocking_eagain, 10, 1, f->read(sv[1], &byte, 1))                            \
    X(nanosleep_0, 1000, 1, f->nanosleep(&zero, NULL))                                      \
    X(syscall_getpid, 10, 1, f->syscall(SYS_getpid))                                        \
    X(epoll_wait_0, 10, 1, f->epoll_wait(ep, &ev, 1, 0))                                   \
    X(epoll_wait_ready, 10, 1, f->epoll_wait(ep_ready, &ev, 1, 1000))

#define DEFINE_OP(name, div, calls, body)                                      \
    NOINLINE void op_##name(long n, const struct fns *f)                       \
    {                                                                          \
        (void)f;                                                               \
        for (long i = 0; i < n; i++) {                                         \
            body;                                                              \
            __asm__ volatile("" ::: "memory");                                 \
        }                                                                      \
    }
OPS(DEFINE_OP)

struct op {
    const char *name;
    void (*fn)(long, const struct fns *);
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

static int resolve(void)
{
#define FN_LINKED(name) linked.name = name;
    FNS(FN_LINKED)
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    if (libc == NULL)
        return -1;
#define FN_DIRECT(name) direct.name = (__typeof__(&name))dlsym(libc, #name);
    FNS(FN_DIRECT)
    /* The condition functions exist twice; the linked ones are the new. */
    direct.pthread_cond_signal = (__typeof__(&pthread_cond_signal))
        dlvsym(libc, "pthread_cond_signal", "GLIBC_2.3.2");
    direct.pthread_cond_broadcast = (__typeof__(&pthread_cond_broadcast))
        dlvsym(libc, "pthread_cond_broadcast", "GLIBC_2.3.2");
#define FN_CHECK(name) if (direct.name == NULL) return -1;
    FNS(FN_CHECK)
    return 0;
}

static double timed(const struct op *o, long iters, const struct fns *f)
{
    double t0 = now_ns();
    o->fn(iters, f);
    return (now_ns() - t0) / iters;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Blocks of wrapped and direct calls, alternating which goes first. Noise
 * only ever adds time (interrupts, another tenant on the core), so each
 * side's cost is read low in its distribution of block times (the 20th
 * percentile: the minimum alone is one lucky block); their difference is
 * what the wrapper adds per call. The median of the pairwise differences is
 * printed too. */
static void ab(const struct op *o, int rounds)
{
    long iters = 20000 / o->div > 0 ? 20000 / o->div : 1;
    size_t n = (size_t)rounds;
    double *w = malloc(sizeof(double) * n), *d = malloc(sizeof(double) * n),
           *diff = malloc(sizeof(double) * n);
    if (w == NULL || d == NULL || diff == NULL)
        goto out;
    o->fn(16, &linked);
    o->fn(16, &direct);
    for (size_t r = 0; r < n; r++) {
        if (r & 1) {
            d[r] = timed(o, iters, &direct);
            w[r] = timed(o, iters, &linked);
        } else {
            w[r] = timed(o, iters, &linked);
            d[r] = timed(o, iters, &direct);
        }
        diff[r] = w[r] - d[r];
    }
    qsort(w, n, sizeof(double), cmp_double);
    qsort(d, n, sizeof(double), cmp_double);
    qsort(diff, n, sizeof(double), cmp_double);
    double calls = o->calls ? o->calls : 1;
    printf("%s %.3f %.3f %d\n", o->name, (w[n / 5] - d[n / 5]) / calls, diff[n / 2] / calls, rounds);
out:
    free(w);
    free(d);
    free(diff);
}

int main(int argc, char **argv)
{
    int ab_mode = argc > 1 && strcmp(argv[1], "--ab") == 0;
    if (ab_mode) {
        argv++;
        argc--;
    }
    long n = argc > 1 ? atol(argv[1]) : ab_mode ? 201 : 5000000;
    const char *only = argc > 2 ? argv[2] : NULL;
    sem_init(&sem, 0, 0);
    /* A non-blocking socket as an event loop has it: it has said EAGAIN once
     * (which the recorder notes) before data came. A blocking one beside it. */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0 ||
        recv(sv[0], &byte, 1, 0) != -1 || send(sv[1], &byte, 1, 0) != 1 ||
        socketpair(AF_UNIX, SOCK_STREAM, 0, bsv) != 0 || send(bsv[1], &byte, 1, 0) != 1 ||
        (ep = epoll_create1(0)) < 0 ||
        (ep_ready = epoll_create1(0)) < 0 || resolve() != 0) {
        perror("micro: set-up");
        return 1;
    }
    /* A wait with a timeout that returns at once: a busy server's loop wait. */
    struct epoll_event readable = {.events = EPOLLIN};
    if (epoll_ctl(ep_ready, EPOLL_CTL_ADD, sv[0], &readable) != 0) {
        perror("micro: epoll_ctl");
        return 1;
    }
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        const struct op *o = &ops[k];
        if (only != NULL && strcmp(only, o->name) != 0)
            continue;
        if (ab_mode) {
            if (o->calls)
                ab(o, (int)n);
            continue;
        }
        long iters = n / o->div > 0 ? n / o->div : 1;
        o->fn(16, &linked);    /* warm: resolve symbols, fault pages in */
        double best = 0;
        for (int pass = 0; pass < 3; pass++) {
            double per = timed(o, iters, &linked);
            if (pass == 0 || per < best)
                best = per;
        }
        printf("%s %.3f %d\n", o->name, best, o->calls);
    }
    return 0;
}

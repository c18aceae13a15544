/* c_abuse.c - e2e target that attacks the recorder the way real programs do.
 * One mode per run (argv[1]); exits 0 when the target saw nothing odd.
 *
 *   eintr      a loop thread alternates 30 ms CPU bursts (sampled by the
 *              recorder's signal) with timed waits; any EINTR is a failure
 *   dlopen     dlopen/dlclose in a loop during CPU stalls (sampling must not
 *              deadlock against the loader)
 *   ringfill N an epoll loop whose N iterations each sleep 2 ms, 60 frames
 *              deep: with a 1 ms threshold, far more stalls than a small ring holds
 *   churn      10,000 short-lived threads taking a mutex
 *   blockall   the loop thread blocks every signal, then stalls on the CPU;
 *              no signal may be left pending for it to take
 *   seccomp    a loop stalls 100 ms, then installs a strict allow-list of the
 *              system calls it makes itself (kill by default), stalls again and
 *              starts a thread: it must not die of SIGSYS
 *   forkerrno  a forked child's first wrapped call (a read that succeeds, made
 *              while its dump is created) must leave errno as it was
 *   sigwait    after a few loop iterations, sigtimedwait for SIGUSR1 with a
 *              1 s timeout: it must time out (EAGAIN) after 1 s, not EINTR
 *   syscalls   a loop thread's syscall() calls, futex waits and wakes among
 *              them, must return what the kernel says, errno too
 */
#include <dlfcn.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static volatile unsigned long sink;

static void burn_cpu(double ms)
{
    double end = now_ms() + ms;
    while (now_ms() < end)
        for (int i = 0; i < 1000; i++)
            sink += (unsigned long)i * i;
}

static int eintrs;

static void check(int r, const char *what)
{
    if (r < 0 && errno == EINTR) {
        eintrs++;
        fprintf(stderr, "c_abuse: %s failed with EINTR\n", what);
    }
}

static int mode_eintr(void)
{
    int ep = epoll_create1(0);
    struct epoll_event ev;
    struct pollfd pfd = {.fd = 0, .events = 0};
    for (int round = 0; round < 40; round++) {
        burn_cpu(30);
        check(epoll_wait(ep, &ev, 1, 1), "epoll_wait");
        burn_cpu(30);
        check(poll(&pfd, 0, 1), "poll");
        struct timespec ts = {0, 1000000};
        check(nanosleep(&ts, NULL), "nanosleep");
        int r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
        if (r == EINTR) {
            eintrs++;
            fprintf(stderr, "c_abuse: clock_nanosleep failed with EINTR\n");
        }
        struct timeval tv = {0, 1000};
        check(select(0, NULL, NULL, NULL, &tv), "select");
    }
    printf("eintr: %d\n", eintrs);
    return eintrs ? 3 : 0;
}

static int mode_dlopen(void)
{
    int ep = epoll_create1(0);
    struct epoll_event ev;
    for (int round = 0; round < 20; round++) {
        epoll_wait(ep, &ev, 1, 1);
        double end = now_ms() + 40;
        while (now_ms() < end) {
            void *h = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
            if (h == NULL)
                return 4;
            dlclose(h);
            h = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
            if (h != NULL)
                dlclose(h);
        }
    }
    printf("dlopen: done\n");
    return 0;
}

/* Deep stacks make big stall records, so the small ring fills sooner. */
__attribute__((noinline)) static void sleep_deep(int depth)
{
    if (depth > 0) {
        sleep_deep(depth - 1);
        __asm__ volatile("" ::: "memory");   /* not a tail call */
        return;
    }
    usleep(2000);
}

static int mode_ringfill(int n)
{
    int ep = epoll_create1(0);
    struct epoll_event ev;
    for (int i = 0; i < n; i++) {
        epoll_wait(ep, &ev, 1, 0);
        sleep_deep(60);
    }
    epoll_wait(ep, &ev, 1, 0);
    printf("ringfill: %d iterations\n", n);
    return 0;
}

static pthread_mutex_t churn_lock = PTHREAD_MUTEX_INITIALIZER;
static long churned;

static void *churn_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&churn_lock);
    churned++;
    pthread_mutex_unlock(&churn_lock);
    return NULL;
}

static int mode_churn(void)
{
    for (int i = 0; i < 10000; i += 8) {
        pthread_t t[8];
        for (int k = 0; k < 8; k++)
            if (pthread_create(&t[k], NULL, churn_thread, NULL) != 0)
                return 5;
        for (int k = 0; k < 8; k++)
            pthread_join(t[k], NULL);
    }
    printf("churn: %ld threads\n", churned);
    return churned == 10000 ? 0 : 6;
}

static int mode_blockall(void)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    int ep = epoll_create1(0);
    struct epoll_event ev;
    for (int round = 0; round < 10; round++) {
        epoll_wait(ep, &ev, 1, 1);
        burn_cpu(60);
    }
    epoll_wait(ep, &ev, 1, 1);
    /* A program that blocks everything takes signals with sigtimedwait:
     * the recorder's must never be among them. */
    struct timespec zero = {0, 0};
    siginfo_t info;
    int got = sigtimedwait(&all, &info, &zero);
    if (got > 0) {
        printf("blockall: received signal %d from pid %d\n", got, (int)info.si_pid);
        return 7;
    }
    printf("blockall: done\n");
    return 0;
}

static void *touch_mutex(void *arg)
{
    pthread_mutex_t *m = arg;
    pthread_mutex_lock(m);
    pthread_mutex_unlock(m);
    return NULL;
}

#define ALLOW(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)

static int mode_seccomp(void)
{
    int ep = epoll_create1(0);
    struct epoll_event ev;
    for (int round = 0; round < 5; round++)
        epoll_wait(ep, &ev, 1, 1);
    usleep(100000);                       /* a stall the recording must keep */
    epoll_wait(ep, &ev, 1, 1);
    struct sock_filter allow[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        ALLOW(SYS_epoll_wait), ALLOW(SYS_epoll_pwait), ALLOW(SYS_clock_nanosleep), ALLOW(SYS_nanosleep),
        ALLOW(SYS_write), ALLOW(SYS_futex), ALLOW(SYS_mmap), ALLOW(SYS_munmap), ALLOW(SYS_mprotect),
        ALLOW(SYS_madvise), ALLOW(SYS_brk), ALLOW(SYS_clone), ALLOW(SYS_clone3), ALLOW(SYS_set_robust_list),
        ALLOW(SYS_rseq), ALLOW(SYS_rt_sigprocmask), ALLOW(SYS_exit), ALLOW(SYS_exit_group),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    };
    struct sock_fprog prog = {(unsigned short)(sizeof allow / sizeof allow[0]), allow};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        printf("seccomp: cannot install the filter: %s\n", strerror(errno));
        return 9;
    }
    for (int round = 0; round < 5; round++)
        epoll_wait(ep, &ev, 1, 1);
    usleep(100000);
    epoll_wait(ep, &ev, 1, 1);
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_t t;
    if (pthread_create(&t, NULL, touch_mutex, &m) != 0)
        return 10;
    pthread_join(t, NULL);
    printf("seccomp: done\n");
    return 0;
}

static int mode_forkerrno(void)
{
    int ep = epoll_create1(0);
    struct epoll_event ev;
    for (int round = 0; round < 5; round++)
        epoll_wait(ep, &ev, 1, 1);
    usleep(30000);
    epoll_wait(ep, &ev, 1, 1);
    int bad = 0;
    for (int child = 0; child < 4; child++) {
        int fds[2];
        if (pipe(fds) != 0 || write(fds[1], "x", 1) != 1)
            return 12;
        pid_t pid = fork();
        if (pid == 0) {
            char c;
            errno = 0;
            ssize_t n = read(fds[0], &c, 1);   /* the child's first wrapped call */
            _exit(n == 1 && errno == 0 ? 0 : 100 + errno);
        }
        int status;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            printf("forkerrno: the child's read left errno %d\n", WEXITSTATUS(status) - 100);
            bad++;
        }
        close(fds[0]);
        close(fds[1]);
    }
    printf("forkerrno: %s\n", bad ? "errno changed" : "done");
    return bad ? 11 : 0;
}

static int mode_sigwait(void)
{
    int ep = epoll_create1(0);
    struct epoll_event ev;
    for (int round = 0; round < 5; round++)
        epoll_wait(ep, &ev, 1, 1);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    struct timespec second = {1, 0};
    double start = now_ms();
    int r = sigtimedwait(&usr1, NULL, &second);
    int err = errno;
    double took = now_ms() - start;
    printf("sigwait: returned %d (%s) after %.0f ms\n", r, r < 0 ? strerror(err) : "a signal", took);
    return r < 0 && err == EAGAIN && took >= 950 ? 0 : 8;
}

static uint32_t futex_word;

/* Parks untimed on futex_word until the main thread changes it. */
static void *futex_waiter(void *arg)
{
    long *r = arg;
    while (__atomic_load_n(&futex_word, __ATOMIC_ACQUIRE) == 0) {
        errno = 0;
        *r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
        if (*r != 0 && errno != EAGAIN && errno != EINTR)
            return NULL;
    }
    *r = 0;
    return NULL;
}

#define CHECK_SYSCALL(what, call, want_r, want_errno)                           \
    do {                                                                      \
        errno = 4321;                                                         \
        long r_ = (call);                                                     \
        int e_ = errno;                                                       \
        if (r_ != (want_r) || e_ != (want_errno)) {                           \
            printf("syscalls: %s returned %ld errno %d, expected %ld errno %d\n", what, r_, e_, \
                   (long)(want_r), (int)(want_errno));                        \
            bad++;                                                            \
        }                                                                     \
    } while (0)

static int mode_syscalls(void)
{
    int ep = epoll_create1(0), bad = 0;
    struct epoll_event ev;
    for (int round = 0; round < 5; round++)
        epoll_wait(ep, &ev, 1, 1);
    uint32_t word = 0;
    CHECK_SYSCALL("getpid", syscall(SYS_getpid), getpid(), 4321);
    CHECK_SYSCALL("an unknown number", syscall(99999), -1, ENOSYS);
    CHECK_SYSCALL("a futex wait for another value", syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0),
                  -1, EAGAIN);
    struct timespec rel = {0, 60 * 1000 * 1000}, abs;
    double start = now_ms();
    CHECK_SYSCALL("a timed futex wait", syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &rel, NULL, 0),
                  -1, ETIMEDOUT);
    if (now_ms() - start < 55) {
        printf("syscalls: a 60 ms futex wait took %.1f ms\n", now_ms() - start);
        bad++;
    }
    clock_gettime(CLOCK_MONOTONIC, &abs);
    abs.tv_nsec += 30 * 1000 * 1000;
    if (abs.tv_nsec >= 1000000000) {
        abs.tv_sec++;
        abs.tv_nsec -= 1000000000;
    }
    CHECK_SYSCALL("a futex wait with a deadline",
                  syscall(SYS_futex, &word, FUTEX_WAIT_BITSET_PRIVATE, 0, &abs, NULL, ~0u), -1, ETIMEDOUT);
    CHECK_SYSCALL("a futex wake of nobody", syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1), 0, 4321);
    CHECK_SYSCALL("an unknown futex op", syscall(SYS_futex, &word, 99, 0), -1, ENOSYS);
    long waited = -1;
    pthread_t t;
    pthread_create(&t, NULL, futex_waiter, &waited);
    usleep(50000);
    __atomic_store_n(&futex_word, 1, __ATOMIC_RELEASE);
    long woke = syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1);
    pthread_join(t, NULL);
    if (woke < 0 || waited != 0) {
        printf("syscalls: a wake returned %ld, the parked thread %ld\n", woke, waited);
        bad++;
    }
    epoll_wait(ep, &ev, 1, 1);
    printf("syscalls: %s\n", bad ? "results changed" : "done");
    return bad ? 13 : 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "eintr") == 0)
        return mode_eintr();
    if (strcmp(mode, "dlopen") == 0)
        return mode_dlopen();
    if (strcmp(mode, "ringfill") == 0)
        return mode_ringfill(argc > 2 ? atoi(argv[2]) : 3000);
    if (strcmp(mode, "churn") == 0)
        return mode_churn();
    if (strcmp(mode, "blockall") == 0)
        return mode_blockall();
    if (strcmp(mode, "sigwait") == 0)
        return mode_sigwait();
    if (strcmp(mode, "seccomp") == 0)
        return mode_seccomp();
    if (strcmp(mode, "forkerrno") == 0)
        return mode_forkerrno();
    if (strcmp(mode, "syscalls") == 0)
        return mode_syscalls();
    fprintf(stderr, "usage: c_abuse eintr|dlopen|ringfill N|churn|blockall|sigwait|seccomp|forkerrno|syscalls\n");
    return 2;
}

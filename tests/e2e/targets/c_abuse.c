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
 *   blockall   the loop thread blocks every signal, then stalls on the CPU
 */
#include <dlfcn.h>
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
    printf("blockall: done\n");
    return 0;
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
    fprintf(stderr, "usage: c_abuse eintr|dlopen|ringfill N|churn|blockall\n");
    return 2;
}

/* stallgen.c - fills a dump's ring fast, for bench/run.py's "report a full
 * dump" measure: THREADS started threads, each DEPTH native frames deep, make
 * 5 ms sleeps (slow calls with their stacks at a 1 ms threshold) while the
 * main thread's epoll loop has CPU-bound 3 ms iterations (stalls with sampled
 * stacks). Runs for SECONDS.
 *
 *   stallgen SECONDS THREADS DEPTH
 */
#include <pthread.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

static double deadline;
static int depth;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) static int dive(int level)
{
    volatile int keep = level;
    if (level > 0)
        return dive(level - 1) + keep;
    struct timespec ts = {0, 5000000};
    while (now() < deadline)
        nanosleep(&ts, NULL);
    return keep;
}

static void *sleeper(void *arg)
{
    return (void *)(long)dive(depth + (int)(long)arg % 7);
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    deadline = now() + atof(argv[1]);
    int n = atoi(argv[2]);
    depth = atoi(argv[3]);
    pthread_t *t = calloc((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++)
        pthread_create(&t[i], NULL, sleeper, (void *)(long)i);
    int ep = epoll_create1(0);
    struct epoll_event ev;
    volatile unsigned long x = 0;
    while (now() < deadline) {
        epoll_wait(ep, &ev, 1, 1);
        double end = now() + 0.003;
        while (now() < end)
            x++;
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    return 0;
}

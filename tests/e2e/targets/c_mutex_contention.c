/* e2e target: C threads contending for one global mutex, in short waits.
 * THREADS threads each take stats_lock ROUNDS times in record_sample and hold
 * it HOLD_US (spinning on the clock: work done under the lock), then sleep
 * OUTSIDE_US without it. With 4 threads the lock is nearly always held, so
 * each thread spends most of its time waiting, in waits of a few ms: far
 * below the 50 ms threshold one by one, a real share of the threads' time in
 * all. Each thread measures its own waits (clock around pthread_mutex_lock);
 * prints "MUTEX-DONE waits_ms=X max_wait_ms=Y slow_waits=N elapsed_s=Z",
 * slow_waits counting those of 0.1 ms or more (the ones that blocked).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define THREADS 4
#define ROUNDS 300
#define HOLD_US 2000
#define OUTSIDE_US 500

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t samples;

struct waits {
    uint64_t total_ns, max_ns, slow;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void spin_us(unsigned us)
{
    uint64_t end = now_ns() + (uint64_t)us * 1000u;
    while (now_ns() < end)
        ;
}

static __attribute__((noinline)) void record_sample(struct waits *w)
{
    uint64_t t0 = now_ns(), waited;

    pthread_mutex_lock(&stats_lock);
    waited = now_ns() - t0;
    w->total_ns += waited;
    w->slow += waited >= 100000u;
    if (waited > w->max_ns)
        w->max_ns = waited;
    spin_us(HOLD_US);
    samples++;
    pthread_mutex_unlock(&stats_lock);
}

static void *sampler(void *arg)
{
    struct waits *w = arg;
    int i;

    for (i = 0; i < ROUNDS; i++) {
        record_sample(w);
        usleep(OUTSIDE_US);
    }
    return NULL;
}

int main(void)
{
    pthread_t t[THREADS];
    struct waits w[THREADS] = {{0}};
    uint64_t start = now_ns(), total = 0, max = 0, slow = 0;
    int i;

    for (i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, sampler, &w[i]);
    for (i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        total += w[i].total_ns;
        slow += w[i].slow;
        if (w[i].max_ns > max)
            max = w[i].max_ns;
    }
    printf("MUTEX-DONE waits_ms=%.1f max_wait_ms=%.1f slow_waits=%llu samples=%llu elapsed_s=%.2f\n",
           (double)total / 1e6, (double)max / 1e6, (unsigned long long)slow, (unsigned long long)samples,
           (double)(now_ns() - start) / 1e9);
    return 0;
}

/* e2e target: an epoll server whose loop needs a mutex a worker holds.
 * The worker thread ("worker") waits for a FLUSH request, then runs
 * flush_cache: it takes cache_lock and keeps it across a HOLD_MS usleep.
 * Every GET makes the loop take cache_lock in read_cache; a GET sent while
 * the worker flushes blocks the loop until the flush ends.
 * Protocol, one line per request, one line back: PING -> PONG, FLUSH ->
 * FLUSHING (once the worker holds cache_lock), GET -> VALUE n. Prints "LISTEN port" first;
 * its own measures on stdout as they happen:
 *   "HOLD tid=T held_ms=X"   the worker kept the lock X ms (lock to unlock);
 *   "WAIT waited_ms=X unlocked_after_ms=Y"   the loop waited X ms in
 *     pthread_mutex_lock; the worker unlocked Y ms after that wait began.
 * Ends on SIGTERM.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "line_server.h"

#define HOLD_MS 300

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t work_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cond = PTHREAD_COND_INITIALIZER;
static int flush_requested, flush_holding;
static long cache_value;
static volatile uint64_t last_unlock_ns;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static __attribute__((noinline)) void flush_cache(void)
{
    pthread_mutex_lock(&cache_lock);
    uint64_t t0 = now_ns();
    pthread_mutex_lock(&work_lock);
    flush_holding = 1;
    pthread_cond_broadcast(&work_cond);
    pthread_mutex_unlock(&work_lock);
    usleep(HOLD_MS * 1000);
    cache_value++;
    uint64_t t1 = now_ns();
    last_unlock_ns = t1;
    pthread_mutex_unlock(&cache_lock);
    printf("HOLD tid=%ld held_ms=%.1f\n", (long)syscall(SYS_gettid), (double)(t1 - t0) / 1e6);
    fflush(stdout);
}

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&work_lock);
        while (!flush_requested)
            pthread_cond_wait(&work_cond, &work_lock);
        flush_requested = 0;
        pthread_mutex_unlock(&work_lock);
        flush_cache();
    }
    return NULL;
}

static __attribute__((noinline)) long read_cache(void)
{
    uint64_t t0 = now_ns();
    pthread_mutex_lock(&cache_lock);
    uint64_t t1 = now_ns();
    long v = cache_value;
    pthread_mutex_unlock(&cache_lock);
    if (t1 - t0 >= 1000000u) {
        uint64_t unlock = last_unlock_ns;
        printf("WAIT waited_ms=%.1f unlocked_after_ms=%.1f\n", (double)(t1 - t0) / 1e6,
               unlock > t0 ? (double)(unlock - t0) / 1e6 : -1.0);
        fflush(stdout);
    }
    return v;
}

static void answer(const char *buf, char *out, size_t out_len)
{
    if (strncmp(buf, "FLUSH", 5) == 0) {
        pthread_mutex_lock(&work_lock);
        flush_requested = 1;
        flush_holding = 0;
        pthread_cond_broadcast(&work_cond);
        while (!flush_holding)
            pthread_cond_wait(&work_cond, &work_lock);
        pthread_mutex_unlock(&work_lock);
        snprintf(out, out_len, "FLUSHING\n");
    } else if (strncmp(buf, "GET", 3) == 0) {
        snprintf(out, out_len, "VALUE %ld\n", read_cache());
    } else {
        snprintf(out, out_len, "PONG\n");
    }
}

int main(void)
{
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_setname_np(t, "worker");
    return line_server_run(answer);
}

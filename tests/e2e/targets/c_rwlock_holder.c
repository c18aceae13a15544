/* e2e target: an epoll server whose loop needs an rwlock other threads hold.
 * A WRITE request has the "writer" thread run rewrite_table: it takes
 * table_lock to write and keeps it across a HOLD_MS usleep; the GET after
 * it makes the loop take table_lock to read in read_table, and block. A
 * SCAN request has both "reader" threads run scan_table: each takes
 * table_lock to read across a HOLD_MS usleep; the PUT after it makes the
 * loop take it to write in write_table, and block until both are done.
 * Protocol, one line per request, one line back: PING -> PONG, WRITE ->
 * WRITING and SCAN -> SCANNING (once the lock is held), GET -> VALUE n,
 * PUT -> PUT n. HANDOFF: the readers keep it only SHORT_SCAN_MS, the
 * writer queues for it behind them, then the loop's write_table: readers
 * hold it when the loop's wait begins, but it waits mostly for the writer
 * (glibc hands the lock to the writer that queued first) -> HANDOFF n.
 * Prints "LISTEN port" first, then its own measures:
 *   "HOLD tid=T held_ms=X"   the writer kept the lock X ms;
 *   "SCAN tid=T held_ms=X"   a reader kept it X ms;
 *   "WAIT req=R call=C waited_ms=X unlocked_after_ms=Y readers_left_after_ms=Z"
 *     for request R the loop waited X ms in pthread_rwlock_C; the last
 *     holder unlocked Y ms after that wait began, the last reader Z ms.
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
#define READERS 2
#define SHORT_SCAN_MS 25

static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t work_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cond = PTHREAD_COND_INITIALIZER;
/* Requests by generation: a thread runs its job once per new generation. */
static unsigned write_gen, scan_gen;
static int holding;                    /* threads holding table_lock for a request */
static long table_value;
static volatile uint64_t last_unlock_ns, readers_unlock_ns;
static volatile int scan_ms = HOLD_MS;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void say_holding(void)
{
    pthread_mutex_lock(&work_lock);
    holding++;
    pthread_cond_broadcast(&work_cond);
    pthread_mutex_unlock(&work_lock);
}

static __attribute__((noinline)) void rewrite_table(void)
{
    pthread_rwlock_wrlock(&table_lock);
    uint64_t t0 = now_ns();
    say_holding();
    usleep(HOLD_MS * 1000);
    table_value++;
    uint64_t t1 = now_ns();
    last_unlock_ns = t1;
    pthread_rwlock_unlock(&table_lock);
    printf("HOLD tid=%ld held_ms=%.1f\n", (long)syscall(SYS_gettid), (double)(t1 - t0) / 1e6);
    fflush(stdout);
}

static __attribute__((noinline)) void scan_table(void)
{
    int ms = scan_ms;                  /* set before the request: read before it is answered */
    pthread_rwlock_rdlock(&table_lock);
    uint64_t t0 = now_ns();
    say_holding();
    usleep(ms * 1000);
    uint64_t t1 = now_ns();
    if (t1 > last_unlock_ns)
        last_unlock_ns = t1;
    if (t1 > readers_unlock_ns)
        readers_unlock_ns = t1;
    pthread_rwlock_unlock(&table_lock);
    printf("SCAN tid=%ld held_ms=%.1f\n", (long)syscall(SYS_gettid), (double)(t1 - t0) / 1e6);
    fflush(stdout);
}

static void *run_jobs(unsigned *gen, void (*job)(void))
{
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&work_lock);
        while (*gen == seen)
            pthread_cond_wait(&work_cond, &work_lock);
        seen = *gen;
        pthread_mutex_unlock(&work_lock);
        job();
    }
    return NULL;
}

static void *writer(void *arg)
{
    (void)arg;
    return run_jobs(&write_gen, rewrite_table);
}

static void *reader(void *arg)
{
    (void)arg;
    return run_jobs(&scan_gen, scan_table);
}

/* The loop takes table_lock (lock: rdlock or wrlock) and says how long it waited. */
static long with_table(int (*lock)(pthread_rwlock_t *), const char *req, const char *call, long add)
{
    uint64_t t0 = now_ns();
    lock(&table_lock);
    uint64_t t1 = now_ns();
    table_value += add;
    long v = table_value;
    pthread_rwlock_unlock(&table_lock);
    if (t1 - t0 >= 1000000u) {
        uint64_t unlock = last_unlock_ns, readers = readers_unlock_ns;
        printf("WAIT req=%s call=%s waited_ms=%.1f unlocked_after_ms=%.1f readers_left_after_ms=%.1f\n", req,
               call, (double)(t1 - t0) / 1e6, unlock > t0 ? (double)(unlock - t0) / 1e6 : -1.0,
               readers > t0 ? (double)(readers - t0) / 1e6 : -1.0);
        fflush(stdout);
    }
    return v;
}

static __attribute__((noinline)) long read_table(void)
{
    return with_table(pthread_rwlock_rdlock, "GET", "rdlock", 0);
}

static __attribute__((noinline)) long write_table(const char *req)
{
    return with_table(pthread_rwlock_wrlock, req, "wrlock", 1);
}

/* Starts a request and returns once its holders (want of them) hold table_lock. */
static void request(unsigned *gen, int want)
{
    pthread_mutex_lock(&work_lock);
    holding = 0;
    ++*gen;
    pthread_cond_broadcast(&work_cond);
    while (holding < want)
        pthread_cond_wait(&work_cond, &work_lock);
    pthread_mutex_unlock(&work_lock);
}

static void answer(const char *buf, char *out, size_t out_len)
{
    if (strncmp(buf, "WRITE", 5) == 0) {
        request(&write_gen, 1);
        snprintf(out, out_len, "WRITING\n");
    } else if (strncmp(buf, "SCAN", 4) == 0) {
        scan_ms = HOLD_MS;
        request(&scan_gen, READERS);
        snprintf(out, out_len, "SCANNING\n");
    } else if (strncmp(buf, "GET", 3) == 0) {
        snprintf(out, out_len, "VALUE %ld\n", read_table());
    } else if (strncmp(buf, "PUT", 3) == 0) {
        snprintf(out, out_len, "PUT %ld\n", write_table("PUT"));
    } else if (strncmp(buf, "HANDOFF", 7) == 0) {
        scan_ms = SHORT_SCAN_MS;
        request(&scan_gen, READERS);
        request(&write_gen, 0);
        /* Until the writer queued: it has set glibc's writer bit in the
         * readers' word (the test target's only look inside the lock). */
        for (int i = 0; i < 1000 && !(__atomic_load_n(&table_lock.__data.__readers, __ATOMIC_RELAXED) & 2); i++)
            usleep(100);
        snprintf(out, out_len, "HANDOFF %ld\n", write_table("HANDOFF"));
    } else {
        snprintf(out, out_len, "PONG\n");
    }
}

int main(void)
{
    pthread_t t;
    pthread_create(&t, NULL, writer, NULL);
    pthread_setname_np(t, "writer");
    for (int i = 0; i < READERS; i++) {
        pthread_create(&t, NULL, reader, NULL);
        pthread_setname_np(t, "reader");
    }
    return line_server_run(answer);
}

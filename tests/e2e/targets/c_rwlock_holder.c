/* e2e target: an epoll server whose loop needs an rwlock other threads hold.
 * A WRITE request has the "writer" thread run rewrite_table: it takes
 * table_lock to write and keeps it across a HOLD_MS usleep; the GET after
 * it makes the loop take table_lock to read in read_table, and block. A
 * SCAN request has both "reader" threads run scan_table: each takes
 * table_lock to read across a HOLD_MS usleep; the PUT after it makes the
 * loop take it to write in write_table, and block until both are done.
 * Protocol, one line per request, one line back: PING -> PONG, WRITE ->
 * WRITING and SCAN -> SCANNING (once the lock is held), GET -> VALUE n,
 * PUT -> PUT n. Prints "LISTEN port" first, then its own measures:
 *   "HOLD tid=T held_ms=X"   the writer kept the lock X ms;
 *   "SCAN tid=T held_ms=X"   a reader kept it X ms;
 *   "WAIT call=C waited_ms=X unlocked_after_ms=Y"   the loop waited X ms in
 *     pthread_rwlock_C; the last holder unlocked Y ms after that wait began.
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

static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t work_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cond = PTHREAD_COND_INITIALIZER;
/* Requests by generation: a thread runs its job once per new generation. */
static unsigned write_gen, scan_gen;
static int holding;                    /* threads holding table_lock for a request */
static long table_value;
static volatile uint64_t last_unlock_ns;

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
    pthread_rwlock_rdlock(&table_lock);
    uint64_t t0 = now_ns();
    say_holding();
    usleep(HOLD_MS * 1000);
    uint64_t t1 = now_ns();
    if (t1 > last_unlock_ns)
        last_unlock_ns = t1;
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
static long with_table(int (*lock)(pthread_rwlock_t *), const char *call, long add)
{
    uint64_t t0 = now_ns();
    lock(&table_lock);
    uint64_t t1 = now_ns();
    table_value += add;
    long v = table_value;
    pthread_rwlock_unlock(&table_lock);
    if (t1 - t0 >= 1000000u) {
        uint64_t unlock = last_unlock_ns;
        printf("WAIT call=%s waited_ms=%.1f unlocked_after_ms=%.1f\n", call, (double)(t1 - t0) / 1e6,
               unlock > t0 ? (double)(unlock - t0) / 1e6 : -1.0);
        fflush(stdout);
    }
    return v;
}

static __attribute__((noinline)) long read_table(void)
{
    return with_table(pthread_rwlock_rdlock, "rdlock", 0);
}

static __attribute__((noinline)) long write_table(void)
{
    return with_table(pthread_rwlock_wrlock, "wrlock", 1);
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
        request(&scan_gen, READERS);
        snprintf(out, out_len, "SCANNING\n");
    } else if (strncmp(buf, "GET", 3) == 0) {
        snprintf(out, out_len, "VALUE %ld\n", read_table());
    } else if (strncmp(buf, "PUT", 3) == 0) {
        snprintf(out, out_len, "PUT %ld\n", write_table());
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

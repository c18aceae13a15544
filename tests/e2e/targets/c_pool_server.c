/* e2e target: a C program with its own mutex+condvar worker pool.
 *
 * POOL_THREADS worker threads (worker_main) take jobs from a queue guarded by
 * one mutex and wait on one condition variable while it is empty.  The main
 * thread submits JOBS jobs at once; each job (process_job) sleeps JOB_USEC in
 * usleep, standing for blocking work.  With 9 jobs of 100 ms on 3 workers the
 * pool is saturated for about 300 ms.  The main thread waits for every job to
 * finish (on a second condition variable), stops the workers, prints
 * "POOL-DONE jobs=9 elapsed_ms=N" and exits 0.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define POOL_THREADS 3
#define JOBS 9
#define JOB_USEC 100000

struct pool {
    pthread_mutex_t lock;
    pthread_cond_t work_ready;   /* the workers idle here */
    pthread_cond_t all_done;     /* the main thread waits here */
    int queue[JOBS];
    int head, tail;              /* queued jobs are queue[head..tail) */
    int idle;                    /* workers in their idle wait */
    int done;
    int stopping;
};

static struct pool pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .work_ready = PTHREAD_COND_INITIALIZER,
    .all_done = PTHREAD_COND_INITIALIZER,
};

static volatile int results[JOBS];

/* The blocking work; kept out of line so that it shows in the stack. */
__attribute__((noinline)) static void process_job(int job)
{
    usleep(JOB_USEC);
    results[job] = job * 2 + 1;
}

static void *worker_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        pool.idle++;
        while (pool.head == pool.tail && !pool.stopping)
            pthread_cond_wait(&pool.work_ready, &pool.lock);
        pool.idle--;
        if (pool.head == pool.tail)
            break;  /* stopping and nothing left */
        int job = pool.queue[pool.head++];
        pthread_mutex_unlock(&pool.lock);
        process_job(job);
        pthread_mutex_lock(&pool.lock);
        if (++pool.done == JOBS)
            pthread_cond_signal(&pool.all_done);
    }
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(void)
{
    pthread_t threads[POOL_THREADS];
    for (int i = 0; i < POOL_THREADS; i++) {
        if (pthread_create(&threads[i], NULL, worker_main, NULL) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    /* Every worker in its idle wait first (one counted there has released
     * the lock in pthread_cond_wait), so the pool is seen idle and exactly
     * JOBS - POOL_THREADS jobs queue: on a loaded machine a 20 ms sleep was
     * not always enough for the third worker to get there. */
    pthread_mutex_lock(&pool.lock);
    while (pool.idle < POOL_THREADS) {
        pthread_mutex_unlock(&pool.lock);
        usleep(1000);
        pthread_mutex_lock(&pool.lock);
    }

    double t0 = now_ms();
    for (int i = 0; i < JOBS; i++) {
        pool.queue[pool.tail++] = i;
        pthread_cond_signal(&pool.work_ready);
    }
    while (pool.done < JOBS)
        pthread_cond_wait(&pool.all_done, &pool.lock);
    double elapsed = now_ms() - t0;
    pool.stopping = 1;
    pthread_cond_broadcast(&pool.work_ready);
    pthread_mutex_unlock(&pool.lock);

    for (int i = 0; i < POOL_THREADS; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < JOBS; i++) {
        if (results[i] != i * 2 + 1) {
            fprintf(stderr, "job %d did not run\n", i);
            return 1;
        }
    }
    printf("POOL-DONE jobs=%d elapsed_ms=%.0f\n", JOBS, elapsed);
    return 0;
}

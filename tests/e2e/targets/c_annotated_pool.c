/* c_annotated_pool.c - e2e target: a mutex+condvar pool of 3 workers given 9
 * jobs of 100 ms at once, each marked through the annotation API.
 *
 * The truth: jobs 0-2 wait ~0 ms, 3-5 ~100 ms, 6-8 ~200 ms for a worker; each
 * runs ~100 ms. The target measures each wait itself and prints
 * "WAIT job=N ms=W" lines and "ANNOTATE active=0|1" (1 under the preload),
 * so the test compares the report with what the program saw. It runs
 * without stalltrace too: the marks are then weak NULL references.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "stalltrace/annotate.h"

#define WORKERS 3
#define JOBS 9
#define JOB_US 100000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t have_work = PTHREAD_COND_INITIALIZER;
static int queue[JOBS], head, tail, stopping;
static double submitted_at[JOBS], waited_ms[JOBS];

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void process_job(int job)
{
    usleep(JOB_US);
    (void)job;
}

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (head == tail && !stopping)
            pthread_cond_wait(&have_work, &lock);
        if (head == tail) {
            pthread_mutex_unlock(&lock);
            return NULL;
        }
        int job = queue[head++];
        pthread_mutex_unlock(&lock);
        stalltrace_task_started("jobs", (uint64_t)job + 1);
        waited_ms[job] = now_ms() - submitted_at[job];
        process_job(job);
        stalltrace_task_finished("jobs", (uint64_t)job + 1);
    }
}

int main(void)
{
    pthread_t th[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        pthread_create(&th[i], NULL, worker, NULL);
    usleep(50000);                 /* let the workers go idle first */
    pthread_mutex_lock(&lock);
    for (int j = 0; j < JOBS; j++) {
        submitted_at[j] = now_ms();
        stalltrace_task_submitted("jobs", (uint64_t)j + 1);
        queue[tail++] = j;
        pthread_cond_signal(&have_work);
    }
    pthread_mutex_unlock(&lock);
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_broadcast(&have_work);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    printf("ANNOTATE active=%d\n", stalltrace_annotations_active());
    for (int j = 0; j < JOBS; j++)
        printf("WAIT job=%d ms=%.3f\n", j, waited_ms[j]);
    printf("ANNOTATED-POOL-DONE\n");
    return 0;
}

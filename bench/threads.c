/* threads.c - resident memory of a process with N threads, for bench/run.py:
 * each thread makes a few wrapped calls (MODE "worker": a mutex, a sleep, a
 * semaphore wait; "loop": an epoll loop, which also warms the unwinder and
 * starts the recorder's watchdog), then all wait on a barrier while the main
 * thread reads /proc/self/status. Prints "VmRSS_kB RssAnon_kB RssFile_kB".
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

static pthread_barrier_t ready, done;
static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static int loop_mode;

static void *body(void *arg)
{
    (void)arg;
    if (loop_mode) {
        int ep = epoll_create1(0);
        struct epoll_event ev;
        for (int i = 0; i < 4; i++)
            epoll_wait(ep, &ev, 1, 1);
        close(ep);
    } else {
        sem_t s;
        sem_init(&s, 0, 1);
        pthread_mutex_lock(&mutex);
        pthread_mutex_unlock(&mutex);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        sem_wait(&s);
    }
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&done);
    return NULL;
}

static long field(const char *status, const char *name)
{
    const char *p = strstr(status, name);
    return p ? atol(p + strlen(name)) : -1;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1;
    loop_mode = argc > 2 && strcmp(argv[2], "loop") == 0;
    pthread_t *t = calloc((size_t)n, sizeof *t);
    pthread_barrier_init(&ready, NULL, (unsigned)n + 1);
    pthread_barrier_init(&done, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++)
        pthread_create(&t[i], NULL, body, NULL);
    pthread_barrier_wait(&ready);
    usleep(50000);    /* let the watchdog (if any) settle */
    char buf[8192];
    FILE *f = fopen("/proc/self/status", "r");
    size_t k = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[k] = 0;
    printf("%ld %ld %ld\n", field(buf, "VmRSS:"), field(buf, "RssAnon:"), field(buf, "RssFile:"));
    pthread_barrier_wait(&done);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    return 0;
}

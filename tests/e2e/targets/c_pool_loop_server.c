/* e2e target: a C epoll server that hands work to its own worker pool, for
 * `stalltrace attach` to a live server (tests/e2e/test_attach_real.py).
 *
 * One event loop (main thread, epoll) serves line requests on 127.0.0.1:0:
 * "fast" is answered at once; "batch" queues JOBS jobs for POOL_THREADS
 * workers (worker_main: a mutex+condvar queue; process_job: usleep JOB_USEC,
 * standing for blocking work) and is answered, by the loop, once the last job
 * is done (a worker writes to an eventfd the loop waits on): so the loop is
 * never blocked while the pool is saturated.  The reply is the program's own
 * truth: "batch SAT_MS", the time from the submission until the first worker
 * found the queue empty (all workers busy until then).  "quit" is answered "bye"
 * and ends the program (exit 0).  Prints "PORT N" once listening.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define POOL_THREADS 3
#define JOBS 9
#define JOB_USEC 100000

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work_ready;   /* the workers idle here */
    int queue[JOBS];
    int head, tail;              /* queued jobs are queue[head..tail) */
    int done;
    double submitted_ms, first_idle_ms;
    int done_fd;                 /* eventfd: the batch is done */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .work_ready = PTHREAD_COND_INITIALIZER};

static volatile int results[JOBS];

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The blocking work; kept out of line so that it shows in the stack. */
__attribute__((noinline)) static int process_job(int job)
{
    return usleep(JOB_USEC) == 0 ? job * 2 + 1 : -1;
}

static void *worker_main(void *unused)
{
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.head == pool.tail) {
            if (pool.submitted_ms > 0 && pool.first_idle_ms == 0)
                pool.first_idle_ms = now_ms();
            pthread_cond_wait(&pool.work_ready, &pool.lock);
        }
        int job = pool.queue[pool.head++];
        pthread_mutex_unlock(&pool.lock);
        int result = process_job(job);
        pthread_mutex_lock(&pool.lock);
        results[job] = result;
        if (++pool.done == JOBS) {
            uint64_t one = 1;
            if (write(pool.done_fd, &one, sizeof one) != sizeof one)
                abort();
        }
    }
    return unused;
}

static void submit_batch(void)
{
    pthread_mutex_lock(&pool.lock);
    pool.head = pool.tail = pool.done = 0;
    pool.first_idle_ms = 0;
    pool.submitted_ms = now_ms();
    for (int i = 0; i < JOBS; i++) {
        results[i] = 0;
        pool.queue[pool.tail++] = i;
        pthread_cond_signal(&pool.work_ready);
    }
    pthread_mutex_unlock(&pool.lock);
}

static void reply(int fd, const char *text)
{
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len)
        perror("write");
}

int main(void)
{
    pool.done_fd = eventfd(0, EFD_CLOEXEC);
    pthread_t threads[POOL_THREADS];
    for (int i = 0; i < POOL_THREADS; i++)
        if (pthread_create(&threads[i], NULL, worker_main, NULL) != 0)
            return 1;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof addr;
    if (ls < 0 || bind(ls, (struct sockaddr *)&addr, sizeof addr) || listen(ls, 8) ||
        getsockname(ls, (struct sockaddr *)&addr, &alen))
        return 1;
    printf("PORT %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    ev.data.fd = pool.done_fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, pool.done_fd, &ev);
    int client = -1, waiting = -1;          /* waiting: the client of the batch under way */
    char line[256];
    size_t used = 0;
    for (;;) {
        struct epoll_event events[4];
        int n = epoll_wait(ep, events, 4, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == ls) {
                int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
                if (c >= 0 && client >= 0) {
                    close(c);            /* one client at a time */
                } else if (c >= 0) {
                    client = c;
                    used = 0;
                    ev.data.fd = c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
            } else if (fd == pool.done_fd) {
                uint64_t v;
                if (read(pool.done_fd, &v, sizeof v) != sizeof v)
                    return 1;
                for (int j = 0; j < JOBS; j++)
                    if (results[j] != j * 2 + 1)
                        return 3;            /* a job did not run */
                char text[64];
                snprintf(text, sizeof text, "batch %.1f\n", pool.first_idle_ms - pool.submitted_ms);
                if (waiting >= 0)
                    reply(waiting, text);
                waiting = -1;
            } else {
                ssize_t k = read(fd, line + used, sizeof line - 1 - used);
                if (k <= 0) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                    close(fd);
                    client = -1;
                    continue;
                }
                used += (size_t)k;
                char *nl;
                while ((nl = memchr(line, '\n', used)) != NULL) {
                    *nl = '\0';
                    if (strcmp(line, "fast") == 0) {
                        reply(fd, "fast\n");
                    } else if (strcmp(line, "batch") == 0) {
                        waiting = fd;
                        submit_batch();
                    } else if (strcmp(line, "quit") == 0) {
                        reply(fd, "bye\n");
                        return 0;
                    } else {
                        reply(fd, "?\n");
                    }
                    used -= (size_t)(nl + 1 - line);
                    memmove(line, nl + 1, used);
                }
            }
        }
    }
}

/* attach_micro.c - wrapped calls timed inside one process, before attach and
 * after detach (bench/run.py's `attach` part): detach must leave them at plain.
 *
 * Waits for a line on stdin (a blocking read: where `stalltrace attach`
 * borrows the thread); "measure" times each operation (best of five passes)
 * and prints "name ns_per_call" for each, then "END"; "quit" ends it. The
 * calls go through the program's own GOT, as a service's do: attach points
 * those slots at the recorder's wrappers, detach points them back.
 *
 *   attach_micro            single-threaded, as started
 *   attach_micro threaded   with one idle thread of its own from the start, as a
 *                           service has: glibc takes its multi-threaded paths
 *                           (atomic locks, cancellation points) either way
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int pipe_fds[2];

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void mutex_lock_unlock(long n)
{
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&mutex);
        pthread_mutex_unlock(&mutex);
    }
}

static void cond_signal_no_waiter(long n)
{
    for (long i = 0; i < n; i++)
        pthread_cond_signal(&cond);
}

static void poll_zero_timeout(long n)
{
    struct pollfd p = {.fd = pipe_fds[0], .events = POLLIN};
    for (long i = 0; i < n; i++)
        poll(&p, 1, 0);
}

static void read_nonblocking_eagain(long n)
{
    char c;
    for (long i = 0; i < n; i++)
        if (read(pipe_fds[0], &c, 1) >= 0)
            return;
}

static const struct {
    const char *name;
    void (*run)(long);
    long n;
} ops[] = {
    {"mutex_lock_unlock", mutex_lock_unlock, 2000000},
    {"cond_signal_no_waiter", cond_signal_no_waiter, 2000000},
    {"poll_zero_timeout", poll_zero_timeout, 200000},
    {"read_nonblocking_eagain", read_nonblocking_eagain, 200000},
};

static void measure(void)
{
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        double best = 1e30;
        for (int pass = 0; pass < 5; pass++) {
            double t0 = now_ns();
            ops[k].run(ops[k].n);
            double per = (now_ns() - t0) / (double)ops[k].n;
            best = per < best ? per : best;
        }
        printf("%s %.2f\n", ops[k].name, best);
    }
    printf("END\n");
    fflush(stdout);
}

static void *idle_thread(void *arg)
{
    pause();
    return arg;
}

int main(int argc, char **argv)
{
    if (pipe(pipe_fds) != 0 || fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK) != 0)
        return 1;
    pthread_t idle;
    if (argc > 1 && strcmp(argv[1], "threaded") == 0 && pthread_create(&idle, NULL, idle_thread, NULL) != 0)
        return 1;
    char line[64];
    for (;;) {
        ssize_t n = read(0, line, sizeof line - 1);
        if (n <= 0)
            return 0;
        line[n] = '\0';
        if (strncmp(line, "measure", 7) == 0)
            measure();
        else if (strncmp(line, "quit", 4) == 0)
            return 0;
    }
}

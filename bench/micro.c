/* micro.c - cost per call of the operations the recorder wraps, in the
 * states that must stay cheap (uncontended, no waiter, nothing to read).
 * Run plain and preloaded by bench/run.py; it prints "name ns_per_call".
 */
#include <errno.h>
#include <stdlib.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

#define MEASURE(name, iterations, body)                                        \
    do {                                                                      \
        double t0_ = now_ns();                                                \
        for (long i_ = 0; i_ < (iterations); i_++) {                          \
            body;                                                             \
        }                                                                     \
        printf("%s %.2f\n", name, (now_ns() - t0_) / (iterations));           \
    } while (0)

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 5000000;
    pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    pthread_rwlock_t rwlock = PTHREAD_RWLOCK_INITIALIZER;
    pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    sem_t sem;
    sem_init(&sem, 0, 0);
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    int ep = epoll_create1(0);
    struct epoll_event ev;
    char byte = 'x';

    MEASURE("mutex_lock_unlock", n, pthread_mutex_lock(&mutex); pthread_mutex_unlock(&mutex));
    MEASURE("rwlock_rd_unlock", n, pthread_rwlock_rdlock(&rwlock); pthread_rwlock_unlock(&rwlock));
    MEASURE("sem_post_wait", n, sem_post(&sem); sem_wait(&sem));
    MEASURE("cond_signal_no_waiter", n, pthread_cond_signal(&cond));
    MEASURE("recv_nonblocking_with_data", n / 10,
            send(sv[1], &byte, 1, 0); recv(sv[0], &byte, 1, 0));
    MEASURE("epoll_wait_0", n / 10, epoll_wait(ep, &ev, 1, 0));
    return 0;
}

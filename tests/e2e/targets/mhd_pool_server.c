/* e2e target: a libmicrohttpd server on MHD's own thread pool (2 threads, each
 * its own epoll loop), for tests/e2e/test_real_mhd.py.
 *
 * MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL with MHD_OPTION_THREAD_POOL_SIZE
 * 2 (what MHD 0.9.75 supports for a pool: not with thread-per-connection): the
 * request handler runs in the pool thread that polled the connection, so a
 * slow handler blocks that thread's loop.  Routes on 127.0.0.1:0:
 *   /slow  handle_slow: usleep 200 ms, standing for blocking work; prints the
 *          program's own truth, "TRUTH slow tid=T start_ms=S ms=D" (monotonic);
 *   /      answered at once;
 *   /quit  ends the program (exit 0);
 *   /slow-quit  ends it while handle_slow sleeps in the pool thread.
 * Prints "READY port=N" once listening.
 */
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define POOL_THREADS 2
#define SLOW_USEC 200000

static int quit_pipe[2];

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* noinline: the report must name it in the stack of the stall. */
__attribute__((noinline)) static void handle_slow(void)
{
    double start = now_ms();
    usleep(SLOW_USEC);
    printf("TRUTH slow tid=%ld start_ms=%.3f ms=%.3f\n", (long)syscall(SYS_gettid), start, now_ms() - start);
    fflush(stdout);
}

static enum MHD_Result reply(struct MHD_Connection *conn, const char *body)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **req_cls)
{
    (void)cls, (void)method, (void)version, (void)upload_data, (void)upload_data_size, (void)req_cls;
    if (strcmp(url, "/slow") == 0) {
        handle_slow();
        return reply(conn, "slow\n");
    }
    if (strcmp(url, "/slow-quit") == 0) {
        /* The daemon stops while this thread is in its handler: it then
         * leaves its loop without another epoll_wait. */
        if (write(quit_pipe[1], "q", 1) != 1)
            perror("write");
        handle_slow();
        return reply(conn, "slow, bye\n");
    }
    if (strcmp(url, "/quit") == 0) {
        if (write(quit_pipe[1], "q", 1) != 1)
            perror("write");
        return reply(conn, "bye\n");
    }
    return reply(conn, "ok\n");
}

int main(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *info;
    char c;

    if (pipe(quit_pipe) != 0) {
        perror("pipe");
        return 1;
    }
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                         answer, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                         MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)POOL_THREADS, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "MHD_start_daemon failed\n");
        return 1;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("READY port=%u\n", info ? info->port : 0u);
    fflush(stdout);
    /* The main thread only waits for /quit: a pipe, not a condition variable,
     * so that it is no one's work queue. */
    while (read(quit_pipe[0], &c, 1) < 0)
        ;
    MHD_stop_daemon(d);
    return 0;
}

/* e2e target: a small epoll line server whose handler blocks on one request.
 *
 * Listens on 127.0.0.1 port 0 (an ephemeral port) and prints "PORT <n>" on
 * stdout.  Each connection sends newline-terminated requests:
 *   fast  -> answered at once with "fast"
 *   slow  -> handle_slow_request() calls usleep(200000), then answers "slow"
 *   quit  -> the server answers "bye" and exits cleanly (status 0)
 * The server also exits (status 3) after IDLE_TIMEOUT_MS without any event, so
 * it never outlives a test that forgot it.
 */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 16
#define MAX_CONNS 64
#define LINE_MAX_LEN 256
#define IDLE_TIMEOUT_MS 15000
#define SLOW_USEC 200000

struct conn {
    int fd;
    size_t len;
    char buf[LINE_MAX_LEN];
};

static struct conn conns[MAX_CONNS];

static int send_all(int fd, const char *s)
{
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t n = write(fd, s + off, len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        off += (size_t)n;
    }
    return 0;
}

static int handle_fast_request(int fd)
{
    return send_all(fd, "fast\n");
}

/* The culprit: a blocking sleep on the event loop thread.  noinline keeps it
 * a frame of its own in the stack, and the reply after usleep() keeps the
 * call from being a tail call. */
__attribute__((noinline)) static int handle_slow_request(int fd)
{
    usleep(SLOW_USEC);
    return send_all(fd, "slow\n");
}

static void close_conn(int epfd, struct conn *c)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->len = 0;
}

/* Returns 1 when the server must quit. */
static int handle_line(int fd, const char *line)
{
    if (strcmp(line, "fast") == 0)
        handle_fast_request(fd);
    else if (strcmp(line, "slow") == 0)
        handle_slow_request(fd);
    else if (strcmp(line, "quit") == 0) {
        send_all(fd, "bye\n");
        return 1;
    } else
        send_all(fd, "error unknown request\n");
    return 0;
}

/* Returns 1 when the server must quit. */
static int handle_readable(int epfd, struct conn *c)
{
    ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
    if (n <= 0) {
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            return 0;
        close_conn(epfd, c);
        return 0;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    char *start = c->buf, *nl;
    while ((nl = strchr(start, '\n')) != NULL) {
        *nl = '\0';
        if (nl > start && nl[-1] == '\r')
            nl[-1] = '\0';
        if (handle_line(c->fd, start))
            return 1;
        start = nl + 1;
    }
    c->len = strlen(start);
    memmove(c->buf, start, c->len + 1);
    if (c->len == sizeof c->buf - 1) { /* a line too long: drop the client */
        send_all(c->fd, "error line too long\n");
        close_conn(epfd, c);
    }
    return 0;
}

int main(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        perror("socket");
        return 1;
    }
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = 0;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 16) < 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &alen) < 0) {
        perror("bind/listen");
        return 1;
    }
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        perror("epoll_create1");
        return 1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    for (int i = 0; i < MAX_CONNS; i++)
        conns[i].fd = -1;

    printf("PORT %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    int quit = 0, status = 0;
    while (!quit) {
        struct epoll_event events[MAX_EVENTS];
        int n = epoll_wait(epfd, events, MAX_EVENTS, IDLE_TIMEOUT_MS);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_wait");
            return 1;
        }
        if (n == 0) {
            fprintf(stderr, "c_epoll_server: idle for %d ms, exiting\n", IDLE_TIMEOUT_MS);
            status = 3;
            break;
        }
        for (int i = 0; i < n && !quit; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (cfd < 0)
                    continue;
                struct conn *slot = NULL;
                for (int j = 0; j < MAX_CONNS; j++)
                    if (conns[j].fd < 0) {
                        slot = &conns[j];
                        break;
                    }
                if (slot == NULL) {
                    close(cfd);
                    continue;
                }
                slot->fd = cfd;
                slot->len = 0;
                struct epoll_event cev = {.events = EPOLLIN, .data.ptr = slot};
                epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &cev);
            } else {
                quit = handle_readable(epfd, c);
            }
        }
    }
    for (int j = 0; j < MAX_CONNS; j++)
        if (conns[j].fd >= 0)
            close(conns[j].fd);
    close(epfd);
    close(lfd);
    return status;
}

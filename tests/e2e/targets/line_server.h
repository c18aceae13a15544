/* line_server.h - the epoll loop the holder targets share: it listens on
 * 127.0.0.1 port 0, prints "LISTEN port", and answers each request line
 * with the target's answer(line, out, len), in the loop thread itself,
 * until SIGTERM.
 */
#ifndef E2E_LINE_SERVER_H
#define E2E_LINE_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t line_server_stopping;

static void line_server_on_term(int sig)
{
    (void)sig;
    line_server_stopping = 1;
}

typedef void line_answer_fn(const char *line, char *out, size_t out_len);

static void line_server_serve(int fd, line_answer_fn *answer)
{
    char buf[256], out[64];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n <= 0) {
        close(fd);
        return;
    }
    buf[n] = '\0';
    answer(buf, out, sizeof out);
    if (write(fd, out, strlen(out)) < 0)
        close(fd);
}

/* Returns 0 once SIGTERM came, 1 when it could not listen. */
static int line_server_run(line_answer_fn *answer)
{
    signal(SIGTERM, line_server_on_term);
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 64) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) != 0)
        return 1;
    printf("LISTEN %d\n", ntohs(a.sin_port));
    fflush(stdout);

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    while (!line_server_stopping) {
        struct epoll_event got[16];
        int k = epoll_wait(ep, got, 16, 100);
        for (int i = 0; i < k; i++) {
            int fd = got[i].data.fd;
            if (fd == ls) {
                int c = accept(ls, NULL, NULL);
                if (c >= 0) {
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
            } else {
                line_server_serve(fd, answer);
            }
        }
    }
    return 0;
}

#endif

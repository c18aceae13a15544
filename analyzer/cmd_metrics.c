/* cmd_metrics.c - `stalltrace metrics --listen ADDR:PORT DUMP...`: its
 * options, the listening socket and the stop signals; metrics_server.c serves. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmd.h"
#include "metrics_scrape.h"
#include "metrics_server.h"
#include "metrics_webconfig.h"

#define THREADS 4                  /* libmicrohttpd's pool: parsing and sending only */
#define FDS_KEPT 64                /* for reading dumps and the modules they name */

/* ---- Listening --------------------------------------------------------------- */

/* Bind to HOST:PORT ([v6]:PORT for IPv6 literals), only that address.
 * Returns the socket, or -1 after one line on stderr. */
static int listen_on(const char *spec, char *shown, size_t shown_len)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL, *ai;
    char host[256], serv[16], nhost[NI_MAXHOST], nserv[NI_MAXSERV];
    const char *colon, *h = spec;
    size_t hlen;
    int fd = -1, rc, one = 1, saved = 0;

    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');
        if (!end || end[1] != ':')
            goto bad;
        h = spec + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon)
            goto bad;
        hlen = (size_t)(colon - spec);
    }
    if (hlen == 0 || hlen >= sizeof(host) || strlen(colon + 1) == 0 || strlen(colon + 1) > 5 ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1) || atoi(colon + 1) > 65535)
        goto bad;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(serv, sizeof(serv), "%s", colon + 1);
    rc = getaddrinfo(host, serv, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "stalltrace: metrics: cannot resolve %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "stalltrace: metrics: cannot listen on %s: %s\n", spec, strerror(saved));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        getnameinfo((struct sockaddr *)&ss, sl, nhost, sizeof(nhost), nserv, sizeof(nserv),
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        snprintf(shown, shown_len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", nhost, nserv);
    else
        snprintf(shown, shown_len, "%s", spec);
    return fd;
bad:
    fprintf(stderr, "stalltrace: metrics: --listen wants ADDR:PORT (e.g. 127.0.0.1:9464), not '%s'\n", spec);
    return -1;
}

/* Connections may take every fd but FDS_KEPT: scrapes need some to read
 * dumps. Past the limit, clients wait in the backlog. */
static unsigned connection_limit(void)
{
    struct rlimit rl;
    rlim_t n = 1024;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        n = rl.rlim_cur;
    if (n > 4096)
        n = 4096;
    return n > 2 * FDS_KEPT ? (unsigned)(n - FDS_KEPT) : (unsigned)(n / 2 > 4 ? n / 2 : 4);
}

int cmd_metrics(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"timeout", required_argument, NULL, 't'},
        {"web.config.file", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen_spec = NULL, *web_file = NULL;
    char shown[NI_MAXHOST + NI_MAXSERV + 4], *end;
    unsigned timeout_s = 10;
    sigset_t stop;
    int c, sig = 0;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "l:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            listen_spec = optarg;
            break;
        case 't':
            errno = 0;
            timeout_s = (unsigned)strtoul(optarg, &end, 10);
            if (errno || *end || timeout_s < 1 || timeout_s > 3600) {
                fprintf(stderr, "stalltrace: metrics: --timeout wants whole seconds from 1 to 3600, not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'w':
            web_file = optarg;
            break;
        case 'h':
            printf("usage: stalltrace metrics --listen ADDR:PORT [--timeout S] [--web.config.file YAML] DUMP...\n"
                   "  serves GET /metrics: the OpenMetrics figures of the dumps, re-read on every\n"
                   "  scrape; quote a glob (\"/var/tmp/stalltrace/*.dump\") to pick up new processes.\n"
                   "  --timeout: an idle connection is closed after S seconds (10); a scrape\n"
                   "  being rendered is answered however long it takes.\n"
                   "  --web.config.file: TLS (tls_server_config: cert_file, key_file) and basic\n"
                   "  auth (basic_auth_users: NAME: BCRYPT-HASH) as Prometheus exporters read it\n");
            return 0;
        default:
            fprintf(stderr, "stalltrace: metrics: bad option '%s' (see stalltrace metrics --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (!listen_spec) {
        fprintf(stderr, "stalltrace: metrics: --listen ADDR:PORT is required\n");
        return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "stalltrace: metrics: no dump given\n");
        return 2;
    }
    /* Blocked in every thread from the start and taken by sigwait below:
     * a stop request is seen at any moment, even during a render. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct metrics_server_config cfg = {
        .threads = THREADS,
        .connection_limit = connection_limit(),
        .timeout_s = timeout_s,
        .scraper = scraper_new(argv + optind, argc - optind),
    };
    if (!cfg.scraper) {
        fprintf(stderr, "stalltrace: metrics: out of memory\n");
        return 2;
    }
    if (web_file) {
        char *err = NULL;
        if (!(cfg.web = web_config_load(web_file, &err))) {
            fprintf(stderr, "stalltrace: metrics: --web.config.file %s\n", err ? err : "out of memory");
            free(err);
            scraper_free(cfg.scraper);
            return 2;
        }
    }
    cfg.listen_fd = listen_on(listen_spec, shown, sizeof(shown));
    struct metrics_server *srv = cfg.listen_fd < 0 ? NULL : metrics_server_start(&cfg);
    if (!srv) {
        if (cfg.listen_fd >= 0)
            close(cfg.listen_fd);
        web_config_free(cfg.web);
        scraper_free(cfg.scraper);
        return 2;
    }
    printf("listening on %s%s\n", shown, cfg.web && cfg.web->cert_pem ? " (TLS)" : "");
    fflush(stdout);
    while (sigwait(&stop, &sig) != 0)
        ;
    /* A render in progress gets 2 s; then the process exits without tearing
     * libmicrohttpd down: its stop, racing a connection thread closing a
     * socket, once aborted the server on SIGTERM (exit -6), and the exit
     * ends its threads and closes every fd anyway. */
    metrics_server_drain(srv, 2000);
    fflush(NULL);
    _exit(0);
}

/* cmd_metrics.c - `stalltrace metrics --listen ADDR:PORT DUMP...`: a small
 * single-threaded HTTP server that re-reads the dumps on every scrape. */
#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "grow.h"
#include "cmd.h"
#include "http.h"
#include "report_util.h"

#define MAX_CONNS 16               /* beyond that, clients wait in the backlog */
#define CONN_TIMEOUT_MS 10000      /* a whole request and response */
#define LINGER_MS 2000             /* reading what a client still sends after our reply */
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* A dump file a scrape matched. Complete dumps never change again, so their
 * model is kept and reused while the file stays the same. */
struct source {
    char *path;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    struct dump *dump;             /* kept only when complete */
    struct m_process *proc;
    char *error;                   /* the last error reported for it */
    bool seen;                     /* matched by the current scrape */
};

struct server {
    char **patterns;
    int npatterns;
    struct source *sources;
    size_t nsources;
};

enum conn_state { C_READ, C_WRITE, C_LINGER };

struct conn {
    int fd;                        /* -1: free slot */
    enum conn_state state;
    char req[HTTP_MAX_REQUEST];
    size_t got;
    char *out;                     /* response: head and body */
    size_t out_len, sent;
    long long deadline_ms;
};

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Scrapes ---------------------------------------------------------------- */

static void source_drop_model(struct source *s)
{
    model_free(s->proc);
    dump_free(s->dump);
    s->proc = NULL;
    s->dump = NULL;
}

static struct source *source_for(struct server *srv, const char *path)
{
    struct source *grown;
    size_t i;

    for (i = 0; i < srv->nsources; i++)
        if (strcmp(srv->sources[i].path, path) == 0)
            return &srv->sources[i];
    if (GROW_ONE(srv->sources, srv->nsources) < 0)
        return NULL;
    grown = srv->sources;
    memset(&grown[srv->nsources], 0, sizeof(*grown));
    grown[srv->nsources].path = strdup(path);
    if (!grown[srv->nsources].path)
        return NULL;
    return &grown[srv->nsources++];
}

/* The model of one matched file: owned by the source for a complete dump,
 * else by the caller, who frees *temp_dump and the model after the scrape.
 * Returns false on a bad dump. */
static bool scrape_source(struct source *s, struct m_process **proc, struct dump **temp_dump)
{
    struct model_options opt = {.threshold_ms = -1};
    struct stat st;
    char *err = NULL;
    struct dump *d;
    bool have_st = stat(s->path, &st) == 0;

    *proc = NULL;
    *temp_dump = NULL;
    if (have_st && s->dump && st.st_dev == s->dev && st.st_ino == s->ino &&
        st.st_size == s->size && st.st_mtim.tv_sec == s->mtime.tv_sec &&
        st.st_mtim.tv_nsec == s->mtime.tv_nsec) {
        *proc = s->proc;
        return true;
    }
    source_drop_model(s);
    d = dump_open_path(s->path, &err);
    if (!d) {
        /* Say it once per error, not on every scrape: a dump being created
         * or a foreign file matched by a glob stays as it is for a while. */
        if (!s->error || !err || strcmp(s->error, err) != 0)
            fprintf(stderr, "stalltrace: metrics: skipping %s\n", err ? err : "a dump: out of memory");
        free(s->error);
        s->error = err;
        return false;
    }
    free(s->error);
    s->error = NULL;
    *proc = model_build(d, &opt);
    if (!*proc) {
        dump_free(d);
        fprintf(stderr, "stalltrace: metrics: %s: out of memory\n", s->path);
        return false;
    }
    if (d->live || !have_st) {
        *temp_dump = d;
        return true;
    }
    s->dump = d;
    s->proc = *proc;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->size = st.st_size;
    s->mtime = st.st_mtim;
    return true;
}

static void add_path(char ***paths, size_t *n, size_t *cap, const char *path)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*paths)[i], path) == 0)
            return;
    if (GROW(*paths, *cap, *n + 1, 16) < 0)
        return;
    (*paths)[*n] = strdup(path);
    if ((*paths)[*n])
        (*n)++;
}

/* The exposition of every dump the patterns match now, as a malloc'd
 * buffer; NULL when out of memory. */
static char *render(struct server *srv, size_t *len)
{
    char **paths = NULL, *body = NULL;
    size_t npaths = 0, cappaths = 0, nprocs = 0, ntemp = 0, errors = 0, i, j;
    struct m_process **procs = NULL;
    struct m_process **temp_procs = NULL;
    struct dump **temp = NULL;
    FILE *out;

    for (int k = 0; k < srv->npatterns; k++) {
        glob_t g;
        int rc = glob(srv->patterns[k], GLOB_ERR, NULL, &g);
        if (rc == 0)
            for (i = 0; i < g.gl_pathc; i++)
                add_path(&paths, &npaths, &cappaths, g.gl_pathv[i]);
        if (rc != GLOB_NOMATCH)
            globfree(&g);
    }
    procs = calloc(npaths + 1, sizeof(*procs));
    temp = calloc(npaths + 1, sizeof(*temp));
    temp_procs = calloc(npaths + 1, sizeof(*temp_procs));
    if (!procs || !temp || !temp_procs)
        goto out;
    for (i = 0; i < srv->nsources; i++)
        srv->sources[i].seen = false;
    for (i = 0; i < npaths; i++) {
        struct source *s = source_for(srv, paths[i]);
        struct m_process *p;
        struct dump *d;

        if (!s)
            goto out;
        s->seen = true;
        if (!scrape_source(s, &p, &d)) {
            errors++;
            continue;
        }
        if (d) {
            temp[ntemp] = d;
            temp_procs[ntemp++] = p;
        }
        /* One process per pid: a pid reused by a later process replaces
         * the stale dump, or the series would be duplicated. */
        for (j = 0; j < nprocs; j++)
            if (procs[j]->pid == p->pid)
                break;
        if (j == nprocs)
            procs[nprocs++] = p;
        else if (p->dump->hdr.start_real_ns > procs[j]->dump->hdr.start_real_ns)
            procs[j] = p;
    }
    /* Forget files no pattern matches any more (deleted dumps). */
    for (i = 0; i < srv->nsources;) {
        if (srv->sources[i].seen) {
            i++;
            continue;
        }
        source_drop_model(&srv->sources[i]);
        free(srv->sources[i].path);
        free(srv->sources[i].error);
        srv->sources[i] = srv->sources[--srv->nsources];
    }

    out = open_memstream(&body, len);
    if (!out)
        goto out;
    fprintf(out, "# HELP stalltrace_scrape_dumps Dumps whose figures this scrape exposes.\n"
                 "# TYPE stalltrace_scrape_dumps gauge\n"
                 "stalltrace_scrape_dumps %zu\n"
                 "# HELP stalltrace_scrape_dump_errors Files the dump patterns matched that could not be read as dumps.\n"
                 "# TYPE stalltrace_scrape_dump_errors gauge\n"
                 "stalltrace_scrape_dump_errors %zu\n",
            nprocs, errors);
    if (report_openmetrics(out, procs, nprocs, NULL) != 0 || fclose(out) != 0) {
        free(body);
        body = NULL;
    }
out:
    /* The models of live dumps belong to this scrape alone. */
    for (i = 0; i < ntemp; i++) {
        model_free(temp_procs[i]);
        dump_free(temp[i]);
    }
    free(temp_procs);
    free(procs);
    for (i = 0; i < npaths; i++)
        free(paths[i]);
    free(paths);
    free(temp);
    return body;
}

/* ---- Connections ------------------------------------------------------------ */

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->out);
    c->fd = -1;
    c->out = NULL;
    c->got = c->out_len = c->sent = 0;
}

/* Queue a response; an error status gets a one-line body saying why. */
static void conn_respond(struct conn *c, int status, char *body, size_t body_len)
{
    char head[512], msg[160];
    size_t hlen;

    if (!body) {
        snprintf(msg, sizeof(msg), "%d %s: this server serves GET /metrics only\n", status,
                 http_reason(status));
        body = msg;
        body_len = strlen(msg);
    }
    hlen = http_response_head(head, sizeof(head), status,
                              status == 200 ? CONTENT_TYPE : "text/plain; charset=utf-8", body_len);
    free(c->out);
    c->out = malloc(hlen + body_len);
    if (!c->out) {
        conn_close(c);
        return;
    }
    memcpy(c->out, head, hlen);
    memcpy(c->out + hlen, body, body_len);
    c->out_len = hlen + body_len;
    c->sent = 0;
    c->state = C_WRITE;
}

static void conn_read(struct server *srv, struct conn *c)
{
    struct http_request req;
    ssize_t r;
    long rc;

    if (c->state == C_LINGER) {
        /* Discard what the client still sends until it closes. */
        char sink[4096];
        r = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
            conn_close(c);
        return;
    }
    r = recv(c->fd, c->req + c->got, sizeof(c->req) - c->got, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        conn_close(c);             /* closed before a whole request: nobody to answer */
        return;
    }
    c->got += (size_t)r;
    rc = http_parse_request(c->req, c->got, &req);
    if (rc == 0)
        return;
    if (rc < 0) {
        conn_respond(c, (int)-rc, NULL, 0);
        return;
    }
    int status = http_route(&req);
    if (status != 200) {
        conn_respond(c, status, NULL, 0);
        return;
    }
    size_t len = 0;
    char *body = render(srv, &len);
    if (!body) {
        conn_respond(c, 500, NULL, 0);
        return;
    }
    conn_respond(c, 200, body, len);
    free(body);
}

static void conn_write(struct conn *c)
{
    ssize_t w = send(c->fd, c->out + c->sent, c->out_len - c->sent, MSG_NOSIGNAL | MSG_DONTWAIT);

    if (w < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (w < 0) {
        conn_close(c);
        return;
    }
    c->sent += (size_t)w;
    if (c->sent < c->out_len)
        return;
    /* Half-close and drain before closing: closing with unread request
     * bytes would reset the connection and could lose the response. */
    shutdown(c->fd, SHUT_WR);
    c->state = C_LINGER;
    c->deadline_ms = now_ms() + LINGER_MS;
}

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
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0)
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

/* A free slot; when all are taken, the oldest connection still reading a
 * request or lingering gives way, so idle clients cannot lock a scraper out. */
static int free_slot(struct conn *conns)
{
    int i, oldest = -1;

    for (i = 0; i < MAX_CONNS; i++) {
        if (conns[i].fd < 0)
            return i;
        if (conns[i].state != C_WRITE && (oldest < 0 || conns[i].deadline_ms < conns[oldest].deadline_ms))
            oldest = i;
    }
    if (oldest >= 0)
        conn_close(&conns[oldest]);
    return oldest;
}

static void accept_all(int lfd, struct conn *conns)
{
    for (;;) {
        int i, fd;

        fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;                /* EAGAIN, or a connection that went away */
        if ((i = free_slot(conns)) < 0) {
            close(fd);             /* every slot is sending a response */
            return;
        }
        conns[i].fd = fd;
        conns[i].state = C_READ;
        conns[i].got = 0;
        conns[i].deadline_ms = now_ms() + CONN_TIMEOUT_MS;
    }
}

/* SIGINT and SIGTERM are let in only inside ppoll (with *wait_mask), so a
 * stop request can never slip in between the check and the wait. */
static void catch_stop_signals(sigset_t *wait_mask)
{
    struct sigaction sa = {.sa_handler = on_stop};
    sigset_t block;

    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, wait_mask);
    sigdelset(wait_mask, SIGINT);
    sigdelset(wait_mask, SIGTERM);
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int serve(struct server *srv, int lfd, const sigset_t *wait_mask)
{
    struct conn conns[MAX_CONNS];
    struct pollfd pfd[MAX_CONNS + 1];
    int map[MAX_CONNS + 1];
    int i;

    for (i = 0; i < MAX_CONNS; i++) {
        conns[i].fd = -1;
        conns[i].out = NULL;
    }

    while (!stop_requested) {
        long long now = now_ms(), next = now + 60000;
        int n = 0, busy = 0;       /* slots that cannot give way */

        for (i = 0; i < MAX_CONNS; i++) {
            struct conn *c = &conns[i];
            if (c->fd < 0)
                continue;
            if (now >= c->deadline_ms) {
                if (c->state == C_READ && c->got > 0) {
                    /* Best effort: tell a slow client why, without waiting. */
                    char head[256];
                    size_t len = http_response_head(head, sizeof(head), 408, "text/plain", 0);
                    (void)send(c->fd, head, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                }
                conn_close(c);
                continue;
            }
            busy += c->state == C_WRITE;
            if (c->deadline_ms < next)
                next = c->deadline_ms;
            pfd[n].fd = c->fd;
            pfd[n].events = c->state == C_WRITE ? POLLOUT : POLLIN;
            pfd[n].revents = 0;
            map[n++] = i;
        }
        if (busy < MAX_CONNS) {
            pfd[n].fd = lfd;
            pfd[n].events = POLLIN;
            pfd[n].revents = 0;
            map[n++] = -1;
        }
        struct timespec ts = {.tv_sec = (next - now) / 1000, .tv_nsec = ((next - now) % 1000) * 1000000};
        int rc = ppoll(pfd, (nfds_t)n, &ts, wait_mask);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "stalltrace: metrics: poll: %s\n", strerror(errno));
            break;
        }
        for (i = 0; i < n; i++) {
            if (!pfd[i].revents)
                continue;
            if (map[i] < 0) {
                accept_all(lfd, conns);
                continue;
            }
            struct conn *c = &conns[map[i]];
            if (c->state == C_WRITE)
                conn_write(c);
            else
                conn_read(srv, c);
        }
    }
    for (i = 0; i < MAX_CONNS; i++)
        conn_close(&conns[i]);
    return stop_requested ? 0 : 2;
}

int cmd_metrics(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct server srv = {0};
    const char *listen_spec = NULL;
    char shown[NI_MAXHOST + NI_MAXSERV + 4];
    sigset_t wait_mask;
    int c, lfd, rc;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "l:h", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            listen_spec = optarg;
            break;
        case 'h':
            printf("usage: stalltrace metrics --listen ADDR:PORT DUMP...\n"
                   "  serves GET /metrics: the OpenMetrics figures of the dumps, re-read on every\n"
                   "  scrape; quote a glob (\"/var/tmp/stalltrace/*.dump\") to pick up new processes\n");
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
    srv.patterns = argv + optind;
    srv.npatterns = argc - optind;
    catch_stop_signals(&wait_mask);
    lfd = listen_on(listen_spec, shown, sizeof(shown));
    if (lfd < 0)
        return 2;
    printf("listening on %s\n", shown);
    fflush(stdout);
    rc = serve(&srv, lfd, &wait_mask);
    close(lfd);
    for (size_t i = 0; i < srv.nsources; i++) {
        source_drop_model(&srv.sources[i]);
        free(srv.sources[i].path);
        free(srv.sources[i].error);
    }
    free(srv.sources);
    return rc;
}

/* metrics_server.c - GET /metrics on libmicrohttpd: requests are suspended
 * while one renderer thread scrapes for all that arrived, then resumed. */
#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "metrics_server.h"

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* A rendered body shared by the responses of one batch. */
struct body {
    char *text;
    size_t len;
    int refs;
};

/* A GET /metrics waiting for (or holding) its answer. */
struct pending {
    struct MHD_Connection *conn;
    struct pending *next;
    struct body *body;             /* 200 */
    int status;                    /* 0 while waiting */
    char *message;                 /* one line, for an error status */
};

struct metrics_server {
    struct MHD_Daemon *daemon;
    struct scraper *scraper;
    struct web_config *web;
    pthread_t renderer;
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    struct pending *queue, *queue_tail;
    bool stopping, renderer_done;
};

static void body_unref(struct body *b)
{
    if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(b->text);
        free(b);
    }
}

static enum MHD_Result respond(struct MHD_Connection *c, int status, const char *type,
                               const char *text, size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)text, mode);
    enum MHD_Result rc;

    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET");
    rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

/* An error status with a one-line body saying why. */
static enum MHD_Result respond_line(struct MHD_Connection *c, int status, const char *why)
{
    char msg[512];
    int n = snprintf(msg, sizeof(msg), "%d %s\n", status, why);

    return respond(c, status, "text/plain; charset=utf-8", msg,
                   n < 0 ? 0 : (size_t)n >= sizeof(msg) ? sizeof(msg) - 1 : (size_t)n,
                   MHD_RESPMEM_MUST_COPY);
}

/* basic_auth_users: every path asks for them, as exporter-toolkit does. */
static bool authorized(struct web_config *web, struct MHD_Connection *c)
{
    char *password = NULL;
    char *user = MHD_basic_auth_get_username_password(c, &password);
    bool ok = user && password && web_config_allows(web, user, password);

    if (password) {
        explicit_bzero(password, strlen(password));
        MHD_free(password);
    }
    if (user)
        MHD_free(user);
    return ok;
}

static enum MHD_Result refuse(struct MHD_Connection *c)
{
    static const char msg[] = "401 Unauthorized\n";
    struct MHD_Response *r = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg,
                                                              MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc;

    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    rc = MHD_queue_basic_auth_fail_response(c, "stalltrace", r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    struct metrics_server *srv = cls;
    struct pending *p = *con_cls;

    (void)version;
    (void)upload;
    if (!p) {
        if (srv->web && srv->web->nusers && !authorized(srv->web, c))
            return refuse(c);
        if (strcmp(url, "/metrics") != 0)
            return respond_line(c, MHD_HTTP_NOT_FOUND, "Not Found: this server serves GET /metrics only");
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0)
            return respond_line(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                                "Method Not Allowed: this server serves GET /metrics only");
        if (!(p = calloc(1, sizeof(*p))))
            return MHD_NO;
        p->conn = c;
        *con_cls = p;
        pthread_mutex_lock(&srv->lock);
        if (srv->stopping) {
            pthread_mutex_unlock(&srv->lock);
            return respond_line(c, MHD_HTTP_SERVICE_UNAVAILABLE, "Service Unavailable: stopping");
        }
        /* Suspended before the renderer can see it, so it never resumes a
         * connection that is not suspended yet. */
        MHD_suspend_connection(c);
        if (srv->queue_tail)
            srv->queue_tail->next = p;
        else
            srv->queue = p;
        srv->queue_tail = p;
        pthread_cond_signal(&srv->wake);
        pthread_mutex_unlock(&srv->lock);
        return MHD_YES;
    }
    if (*upload_size) {            /* a GET with a body: ignored */
        *upload_size = 0;
        return MHD_YES;
    }
    if (p->status == 200)
        return respond(c, 200, CONTENT_TYPE, p->body->text, p->body->len, MHD_RESPMEM_PERSISTENT);
    if (p->status)
        return respond_line(c, p->status, p->message ? p->message : "scrape failed");
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode why)
{
    struct pending *p = *con_cls;

    (void)cls;
    (void)c;
    (void)why;
    if (!p)
        return;
    body_unref(p->body);
    free(p->message);
    free(p);
    *con_cls = NULL;
}

/* Answer a batch: one render for every request that arrived before it
 * started, so a hundred simultaneous scrapes cost one or two renders. */
static void answer(struct pending *batch, int status, struct body *body, const char *message)
{
    for (struct pending *p = batch, *next; p; p = next) {
        next = p->next;
        p->status = status;
        if (body) {
            __atomic_add_fetch(&body->refs, 1, __ATOMIC_ACQ_REL);
            p->body = body;
        }
        if (message)
            p->message = strdup(message);
        MHD_resume_connection(p->conn);
    }
}

static void *renderer_main(void *arg)
{
    struct metrics_server *srv = arg;

    pthread_mutex_lock(&srv->lock);
    for (;;) {
        while (!srv->queue && !srv->stopping)
            pthread_cond_wait(&srv->wake, &srv->lock);
        struct pending *batch = srv->queue;
        srv->queue = srv->queue_tail = NULL;
        if (srv->stopping) {
            answer(batch, MHD_HTTP_SERVICE_UNAVAILABLE, NULL, "Service Unavailable: stopping");
            break;
        }
        pthread_mutex_unlock(&srv->lock);

        struct body *body = calloc(1, sizeof(*body));
        char *error = NULL;
        if (body && scraper_render(srv->scraper, &body->text, &body->len, &error) == 0) {
            body->refs = 1;
            answer(batch, 200, body, NULL);
            body_unref(body);
        } else if (__atomic_load_n(&srv->stopping, __ATOMIC_ACQUIRE)) {
            answer(batch, MHD_HTTP_SERVICE_UNAVAILABLE, NULL, "Service Unavailable: stopping");
            free(body);
        } else {
            char msg[600];
            snprintf(msg, sizeof(msg), "scrape failed: %s", error ? error : "out of memory");
            fprintf(stderr, "stalltrace: metrics: %s\n", msg);
            answer(batch, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, msg);
            free(body);
        }
        free(error);
        pthread_mutex_lock(&srv->lock);
    }
    srv->renderer_done = true;
    pthread_cond_broadcast(&srv->done);
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    fputs("stalltrace: metrics: ", stderr);
    vfprintf(stderr, fmt, ap);
    if (!*fmt || fmt[strlen(fmt) - 1] != '\n')
        fputc('\n', stderr);
}

struct metrics_server *metrics_server_start(const struct metrics_server_config *cfg)
{
    struct metrics_server *srv = calloc(1, sizeof(*srv));

    if (!srv) {
        fprintf(stderr, "stalltrace: metrics: out of memory\n");
        return NULL;
    }
    srv->scraper = cfg->scraper;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->wake, NULL);
    pthread_cond_init(&srv->done, NULL);
    if (pthread_create(&srv->renderer, NULL, renderer_main, srv) != 0) {
        fprintf(stderr, "stalltrace: metrics: cannot start the renderer thread\n");
        free(srv);
        return NULL;
    }
    srv->web = cfg->web;
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    struct MHD_OptionItem opts[12];
    size_t n = 0;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, srv};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, cfg->listen_fd, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, cfg->threads, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, cfg->connection_limit, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, cfg->timeout_s, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, srv};
    if (cfg->web && cfg->web->cert_pem) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            fprintf(stderr, "stalltrace: metrics: this libmicrohttpd was built without TLS\n");
            metrics_server_stop(srv, 1000);
            return NULL;
        }
        flags |= MHD_USE_TLS;
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, cfg->web->cert_pem};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, cfg->web->key_pem};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    srv->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_ARRAY, opts,
                                   MHD_OPTION_END);
    if (!srv->daemon) {
        fprintf(stderr, "stalltrace: metrics: libmicrohttpd did not start: %s\n", strerror(errno));
        metrics_server_stop(srv, 1000);
        return NULL;
    }
    return srv;
}

/* New connections refused, the scrape cancelled, the renderer asked to
 * leave and waited for (at most wait_ms): whether it left. */
static bool end_renderer(struct metrics_server *srv, int wait_ms)
{
    struct timespec until;
    bool ended;

    if (srv->daemon)
        MHD_quiesce_daemon(srv->daemon);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    scraper_cancel(srv->scraper);
    pthread_mutex_lock(&srv->lock);
    __atomic_store_n(&srv->stopping, true, __ATOMIC_RELEASE);
    pthread_cond_signal(&srv->wake);
    while (!srv->renderer_done)
        if (pthread_cond_timedwait(&srv->done, &srv->lock, &until) == ETIMEDOUT)
            break;
    ended = srv->renderer_done;
    pthread_mutex_unlock(&srv->lock);
    return ended;
}

bool metrics_server_drain(struct metrics_server *srv, int wait_ms)
{
    return end_renderer(srv, wait_ms);
}

bool metrics_server_stop(struct metrics_server *srv, int wait_ms)
{
    if (!end_renderer(srv, wait_ms))
        return false;              /* a render still runs: leave it all be */
    pthread_join(srv->renderer, NULL);
    if (srv->daemon)
        MHD_stop_daemon(srv->daemon);
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->wake);
    pthread_cond_destroy(&srv->done);
    free(srv);
    return true;
}

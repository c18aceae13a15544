/* metrics_server.h - the HTTP side of `stalltrace metrics` on libmicrohttpd:
 * GET /metrics answered from scrapes one renderer thread runs. */
#ifndef STALLTRACE_METRICS_SERVER_H
#define STALLTRACE_METRICS_SERVER_H

#include "metrics_scrape.h"
#include "metrics_webconfig.h"

struct metrics_server_config {
    int listen_fd;                 /* bound and listening; the server owns it */
    unsigned threads;              /* libmicrohttpd's thread pool */
    unsigned connection_limit;     /* beyond it, clients wait in the backlog */
    unsigned timeout_s;            /* an idle connection is closed after it */
    struct scraper *scraper;
    struct web_config *web;        /* NULL: plain HTTP, no auth */
};

struct metrics_server;

/* NULL after one line on stderr. */
struct metrics_server *metrics_server_start(const struct metrics_server_config *cfg);

/* Stop taking connections, answer queued scrapes 503, wait for a render in
 * progress at most wait_ms; false when it did not end in time (the caller
 * exits without freeing what the renderer still uses). */
bool metrics_server_stop(struct metrics_server *srv, int wait_ms);
/* The same short of tearing the HTTP daemon down, for a process about to
 * exit: its threads end with it. */
bool metrics_server_drain(struct metrics_server *srv, int wait_ms);

#endif /* STALLTRACE_METRICS_SERVER_H */

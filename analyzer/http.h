/* http.h - the little HTTP/1.x the `metrics` server speaks: parsing a request
 * head from untrusted bytes, routing it, and the head of the response. */
#ifndef STALLTRACE_HTTP_H
#define STALLTRACE_HTTP_H

#include <stddef.h>

/* The most a request head (request line and headers) may take. */
#define HTTP_MAX_REQUEST 8192u

/* Request line fields, copied and NUL-terminated. */
struct http_request {
    char method[16];
    char target[1024];             /* request-target, query included */
    int minor;                     /* HTTP/1.<minor>: 0 or 1 */
};

/* Parse a request head from the first len bytes received. Returns 0 while
 * the head is incomplete (read more), the length of the head once it ended
 * with an empty line, or minus an HTTP status for a request to refuse:
 * -400 malformed, -431 head longer than HTTP_MAX_REQUEST, -414 target too
 * long, -501 method name too long, -505 not HTTP/1.0 or 1.1. */
long http_parse_request(const char *buf, size_t len, struct http_request *req);

/* The status for a parsed request: 200 for GET /metrics (query allowed),
 * 405 for another method on /metrics, 404 for any other target. */
int http_route(const struct http_request *req);

/* The reason phrase of a status this server sends. */
const char *http_reason(int status);

/* Write a response head (status line, Content-Type, Content-Length,
 * Connection: close, Allow for 405) into buf; returns its length, or 0 when
 * buf is too small. */
size_t http_response_head(char *buf, size_t cap, int status, const char *content_type,
                          size_t content_length);

#endif /* STALLTRACE_HTTP_H */

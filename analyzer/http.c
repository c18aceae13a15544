/* http.c - request parsing and response heads for the `metrics` server:
 * strict about what it accepts, since any local process can connect. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "http.h"

/* RFC 9110 token characters (method and header names). */
static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* The line starting at off: its length without the line end in *n, and the
 * offset after the '\n'; 0 when the line has not fully arrived. */
static size_t next_line(const char *buf, size_t len, size_t off, size_t *n)
{
    const char *nl = memchr(buf + off, '\n', len - off);

    if (!nl)
        return 0;
    *n = (size_t)(nl - (buf + off));
    if (*n > 0 && buf[off + *n - 1] == '\r')
        (*n)--;
    return (size_t)(nl - buf) + 1;
}

/* METHOD SP request-target SP HTTP/1.x, the line end already cut. */
static long parse_request_line(const char *s, size_t n, struct http_request *req)
{
    size_t i = 0, start;

    for (start = i; i < n && is_tchar((unsigned char)s[i]); i++)
        ;
    if (i == start || i >= n || s[i] != ' ')
        return -400;
    if (i - start >= sizeof(req->method))
        return -501;
    memcpy(req->method, s + start, i - start);
    req->method[i - start] = '\0';

    for (start = ++i; i < n && (unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f; i++)
        ;
    if (i == start || i >= n || s[i] != ' ')
        return -400;
    if (i - start >= sizeof(req->target))
        return -414;
    memcpy(req->target, s + start, i - start);
    req->target[i - start] = '\0';

    s += i + 1;
    n -= i + 1;
    if (n != 8 || memcmp(s, "HTTP/", 5) != 0 || s[6] != '.' || s[5] < '0' || s[5] > '9' ||
        s[7] < '0' || s[7] > '9')
        return -400;
    if (s[5] != '1' || (s[7] != '0' && s[7] != '1'))
        return -505;
    req->minor = s[7] - '0';
    return 0;
}

/* name ":" value, with no whitespace before the colon and no control bytes. */
static bool header_ok(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n && is_tchar((unsigned char)s[i]); i++)
        ;
    if (i == 0 || i >= n || s[i] != ':')
        return false;
    for (i++; i < n; i++)
        if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
            return false;
    return true;
}

long http_parse_request(const char *buf, size_t len, struct http_request *req)
{
    size_t off = 0, next, n, blank = 0;
    long rc;

    memset(req, 0, sizeof(*req));
    /* A robust server ignores empty lines before the request line (RFC 9112
     * 2.2); a few only, or an endless stream of them would never end. */
    while ((next = next_line(buf, len, off, &n)) != 0 && n == 0 && blank < 4) {
        off = next;
        blank++;
    }
    if (next == 0)
        return len >= HTTP_MAX_REQUEST ? -431 : 0;
    if (n == 0)
        return -400;
    /* The request line is judged as soon as it is there: no waiting for the
     * rest of a head that will be refused anyway. */
    rc = parse_request_line(buf + off, n, req);
    if (rc < 0)
        return rc;
    off = next;
    for (;;) {
        next = next_line(buf, len, off, &n);
        if (next == 0)
            return len >= HTTP_MAX_REQUEST ? -431 : 0;
        if (next > HTTP_MAX_REQUEST)
            return -431;
        if (n == 0)
            return (long)next;
        /* Obsolete line folding (a line starting with blanks) is refused. */
        if (!header_ok(buf + off, n))
            return -400;
        off = next;
    }
}

int http_route(const struct http_request *req)
{
    const char *t = req->target;
    size_t plen = strlen("/metrics");

    if (strncmp(t, "/metrics", plen) != 0 || (t[plen] != '\0' && t[plen] != '?'))
        return 404;
    return strcmp(req->method, "GET") == 0 ? 200 : 405;
}

const char *http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

size_t http_response_head(char *buf, size_t cap, int status, const char *content_type,
                          size_t content_length)
{
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "%s"
                     "Connection: close\r\n"
                     "\r\n",
                     status, http_reason(status), content_type, content_length,
                     status == 405 ? "Allow: GET\r\n" : "");

    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

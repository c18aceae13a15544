/* test_http.c - the request parser and router of `stalltrace metrics`:
 * what it accepts, what it refuses with which status, and partial input. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

static long parse(const char *s, struct http_request *req)
{
    return http_parse_request(s, strlen(s), req);
}

Test(http, prometheus_scrape)
{
    const char *s = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9464\r\n"
                    "User-Agent: Prometheus/2.42.0\r\n"
                    "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n"
                    "X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";
    struct http_request req;

    cr_assert_eq(parse(s, &req), (long)strlen(s));
    cr_assert_str_eq(req.method, "GET");
    cr_assert_str_eq(req.target, "/metrics");
    cr_assert_eq(req.minor, 1);
    cr_assert_eq(http_route(&req), 200);
}

Test(http, http10_bare_newlines_and_leading_blank_line)
{
    struct http_request req;
    const char *s = "\r\nGET /metrics?x=1 HTTP/1.0\n\n";

    cr_assert_eq(parse(s, &req), (long)strlen(s));
    cr_assert_eq(req.minor, 0);
    cr_assert_eq(http_route(&req), 200);
}

Test(http, incomplete_until_the_blank_line)
{
    const char *s = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    struct http_request req;

    for (size_t n = 0; n < strlen(s); n++)
        cr_assert_eq(http_parse_request(s, n, &req), 0, "complete after %zu bytes", n);
    cr_assert_eq(http_parse_request(s, strlen(s), &req), (long)strlen(s));
}

Test(http, body_after_the_head_is_not_part_of_it)
{
    const char *head = "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\n";
    char s[128];
    struct http_request req;

    snprintf(s, sizeof(s), "%sabc", head);
    cr_assert_eq(parse(s, &req), (long)strlen(head));
    cr_assert_eq(http_route(&req), 405);
}

Test(http, routes)
{
    struct http_request req;

    parse("GET / HTTP/1.1\r\n\r\n", &req);
    cr_assert_eq(http_route(&req), 404);
    parse("GET /metricsx HTTP/1.1\r\n\r\n", &req);
    cr_assert_eq(http_route(&req), 404);
    parse("GET /metrics/ HTTP/1.1\r\n\r\n", &req);
    cr_assert_eq(http_route(&req), 404);
    parse("HEAD /metrics HTTP/1.1\r\n\r\n", &req);
    cr_assert_eq(http_route(&req), 405);
    parse("DELETE /metrics HTTP/1.1\r\n\r\n", &req);
    cr_assert_eq(http_route(&req), 405);
    parse("get /metrics HTTP/1.1\r\n\r\n", &req);  /* methods are case-sensitive */
    cr_assert_eq(http_route(&req), 405);
}

Test(http, malformed_request_lines)
{
    static const char *bad[] = {
        "GET\r\n\r\n",
        "GET /metrics\r\n\r\n",
        "GET  /metrics HTTP/1.1\r\n\r\n",
        "GET /metrics  HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/1.1 \r\n\r\n",
        "GET /met\x01rics HTTP/1.1\r\n\r\n",
        "GET /metrics http/1.1\r\n\r\n",
        "G(T /metrics HTTP/1.1\r\n\r\n",
        " GET /metrics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
        "GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nName : space before colon\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nA: b\x01\r\n\r\n",
        "\r\n\r\n\r\n\r\n\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n",
    };
    struct http_request req;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(parse(bad[i], &req), -400, "case %zu: %s", i, bad[i]);
}

Test(http, versions)
{
    struct http_request req;

    cr_assert_eq(parse("GET /metrics HTTP/2.0\r\n\r\n", &req), -505);
    cr_assert_eq(parse("GET /metrics HTTP/1.2\r\n\r\n", &req), -505);
    cr_assert_eq(parse("GET /metrics HTTP/0.9\r\n\r\n", &req), -505);
    cr_assert_eq(parse("GET /metrics HTTP/1.10\r\n\r\n", &req), -400);
}

Test(http, rejected_early_without_waiting_for_the_head)
{
    struct http_request req;

    /* The request line alone is enough to refuse it. */
    cr_assert_eq(parse("GET /metrics SPDY/3\r\n", &req), -400);
}

Test(http, sizes)
{
    struct http_request req;
    char *s = malloc(HTTP_MAX_REQUEST + 64);
    size_t n;

    cr_assert_not_null(s);
    /* A method longer than the field. */
    cr_assert_eq(parse("ABCDEFGHIJKLMNOPQRSTUVWXYZ /metrics HTTP/1.1\r\n\r\n", &req), -501);
    /* A target longer than the field. */
    n = (size_t)sprintf(s, "GET /");
    memset(s + n, 'a', 2000);
    strcpy(s + n + 2000, " HTTP/1.1\r\n\r\n");
    cr_assert_eq(parse(s, &req), -414);
    /* Headers that never end within the limit. */
    n = (size_t)sprintf(s, "GET /metrics HTTP/1.1\r\n");
    while (n + 16 < HTTP_MAX_REQUEST + 32)
        n += (size_t)sprintf(s + n, "X-Pad: 0123456\r\n");
    cr_assert_eq(http_parse_request(s, HTTP_MAX_REQUEST, &req), -431);
    cr_assert_eq(http_parse_request(s, n, &req), -431);
    /* A request line with no end at all. */
    memset(s, 'G', HTTP_MAX_REQUEST);
    cr_assert_eq(http_parse_request(s, HTTP_MAX_REQUEST, &req), -431);
    memcpy(s, "GET /", 5);
    memset(s + 5, 'a', HTTP_MAX_REQUEST - 5);
    cr_assert_eq(http_parse_request(s, HTTP_MAX_REQUEST, &req), -431);
    free(s);
}

Test(http, nul_bytes)
{
    static const char s[] = "GET /metrics HTTP/1.1\r\nA: \0b\r\n\r\n";
    struct http_request req;

    cr_assert_eq(http_parse_request(s, sizeof(s) - 1, &req), -400);
}

Test(http, response_head)
{
    char buf[256];
    size_t n = http_response_head(buf, sizeof(buf), 405, "text/plain", 12);

    cr_assert_gt(n, 0);
    cr_assert_eq(strncmp(buf, "HTTP/1.1 405 Method Not Allowed\r\n", 33), 0);
    cr_assert_not_null(strstr(buf, "\r\nAllow: GET\r\n"));
    cr_assert_not_null(strstr(buf, "\r\nContent-Length: 12\r\n"));
    cr_assert_not_null(strstr(buf, "\r\nConnection: close\r\n\r\n"));
    cr_assert_eq(strlen(buf), n);
    n = http_response_head(buf, sizeof(buf), 200, "text/plain; version=0.0.4", 0);
    cr_assert_null(strstr(buf, "Allow:"));
    cr_assert_eq(http_response_head(buf, 16, 200, "text/plain", 0), 0);
}

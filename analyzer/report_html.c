/* report_html.c - `report --format html`: one self-contained page (no network)
 * holding the JSON report as data and the script that draws it. */
#include <stdlib.h>
#include <string.h>

#include "html_assets.h"           /* html_report_css, html_report_js */
#include "report.h"
#include "report_util.h"

static void html_text(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '&')
            fputs("&amp;", out);
        else if (*s == '<')
            fputs("&lt;", out);
        else if (*s == '>')
            fputs("&gt;", out);
        else
            fputc(*s, out);
    }
}

/* The JSON report, safe inside <script>: '<' only occurs in strings there,
 * where "\u003c" means the same, so no "</script>" can end the element. */
static void script_json(FILE *out, const char *json, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (json[i] == '<')
            fputs("\\u003c", out);
        else
            fputc(json[i], out);
    }
}

int report_html(FILE *out, struct m_process **procs, size_t n, const struct report_options *opt)
{
    char *json = NULL, title[256];
    size_t len = 0, i;
    FILE *mem = open_memstream(&json, &len);
    int rc;

    if (!mem)
        return -1;
    rc = report_json(mem, procs, n, opt);
    if (fclose(mem) != 0 || rc != 0) {
        free(json);
        return -1;
    }
    snprintf(title, sizeof(title), "stalltrace report");
    for (i = 0; i < n && i < 3; i++) {
        char name[128];
        program_name(procs[i], name, sizeof(name));
        snprintf(title + strlen(title), sizeof(title) - strlen(title), "%s %s (pid %d)", i ? "," : ":",
                 name, procs[i]->pid);
    }
    sanitize_ascii(title);

    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n", out);
    /* No request may leave the page: everything is inline. */
    fputs("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">\n", out);
    fputs("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>", out);
    html_text(out, title);
    fprintf(out, "</title>\n<style>\n%s</style>\n</head>\n<body>\n", html_report_css);
    fputs("<noscript><p>This report draws itself with JavaScript; the data is in the "
          "<code>stalltrace-data</code> element (stalltrace report --format json gives the same).</p>"
          "</noscript>\n<main id=\"app\"></main>\n", out);
    fputs("<script type=\"application/json\" id=\"stalltrace-data\">\n", out);
    script_json(out, json, len);
    free(json);
    char *views = report_html_views(procs, n);
    if (!views)
        return -1;
    fputs("</script>\n<script type=\"application/json\" id=\"stalltrace-views\">\n", out);
    script_json(out, views, strlen(views));
    free(views);
    fprintf(out, "</script>\n<script>\n%s</script>\n</body>\n</html>\n", html_report_js);
    return ferror(out) ? -1 : 0;
}

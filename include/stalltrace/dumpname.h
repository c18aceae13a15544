/* dumpname.h - how a dump file is named: the STALLTRACE_OUTPUT template (%p %e %t %%)
 * and the NAME.N.dump fallback; the recorder writes by it, `run` and `top` find by it. */
#ifndef STALLTRACE_DUMPNAME_H
#define STALLTRACE_DUMPNAME_H

#include <stddef.h>
#include <string.h>

/* The template when STALLTRACE_OUTPUT is not set. */
#define ST_DUMPNAME_DEFAULT "stalltrace.%p.dump"

/* When a name is taken the recorder tries NAME.1.dump ... NAME.99.dump
 * (PATH.1 ... for a path without ".dump"). */
#define ST_DUMPNAME_ATTEMPTS 100u

/* What each conversion of a template becomes; NULL drops it. */
struct st_dumpname_values {
    const char *pid;      /* %p */
    const char *exe;      /* %e: the executable's base name */
    const char *time;     /* %t: unix seconds */
};

/* The part of a dump name the ".N" goes after: all of it but a final ".dump". */
static inline size_t st_dumpname_stem(const char *name, size_t len)
{
    return len >= 5 && memcmp(name + len - 5, ".dump", 5) == 0 ? len - 5 : len;
}

/* Expand template into out (cap bytes, always terminated): %p %e %t by v,
 * "%%" as '%'. With glob set, the template's own characters that glob(3)
 * reads as patterns are escaped, so only the values match loosely (give
 * them as "*"). Async-signal-safe: the recorder calls it at exit. Returns
 * the length written. */
static inline size_t st_dumpname_expand(const char *tmpl, const struct st_dumpname_values *v, int glob,
                                        char *out, size_t cap)
{
    size_t n = 0;

    for (const char *p = tmpl; *p && n + 1 < cap; p++) {
        const char *value = NULL;
        if (p[0] == '%' && (p[1] == 'p' || p[1] == 'e' || p[1] == 't')) {
            value = p[1] == 'p' ? v->pid : p[1] == 'e' ? v->exe : v->time;
            for (p++; value && *value && n + 1 < cap; value++)
                out[n++] = *value;
            continue;
        }
        if (p[0] == '%' && p[1] == '%')
            p++;
        else if (glob && strchr("*?[]\\", *p) && n + 2 < cap)
            out[n++] = '\\';   /* literal in the template, literal in the glob */
        out[n++] = *p;
    }
    out[n] = '\0';
    return n;
}

/* The glob of the fallback names of a dump glob g (g's own glob, made by
 * st_dumpname_expand): "G.[0-9]*.dump" for "G.dump", else "G.[0-9]*". */
static inline size_t st_dumpname_taken_glob(const char *g, char *out, size_t cap)
{
    size_t len = strlen(g), stem = st_dumpname_stem(g, len), n = 0;

    for (size_t i = 0; i < stem && n + 1 < cap; i++)
        out[n++] = g[i];
    for (const char *p = ".[0-9]*"; *p && n + 1 < cap; p++)
        out[n++] = *p;
    for (const char *p = g + stem; *p && n + 1 < cap; p++)
        out[n++] = *p;
    out[n] = '\0';
    return n;
}

#endif /* STALLTRACE_DUMPNAME_H */

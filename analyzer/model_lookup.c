/* model_lookup.c - what the model's steps and the formats look up by id:
 * call and object-kind names, thread names, data symbols, quantiles, ms. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "model_helpers.h"

double model_hist_quantile(const uint64_t *hist, uint64_t max_ns, double q)
{
    uint64_t total = 0, cum = 0;
    unsigned b;

    for (b = 0; b < ST_HIST_BUCKETS; b++)
        total += hist[b];
    if (total == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;

    double rank = q * (double)total;
    for (b = 0; b < ST_HIST_BUCKETS; b++) {
        if (hist[b] == 0)
            continue;
        if ((double)(cum + hist[b]) >= rank) {
            double lo = (double)st_hist_bucket_floor_ns(b);
            double hi = b + 1 < ST_HIST_BUCKETS ? (double)st_hist_bucket_floor_ns(b + 1)
                                                : (max_ns > lo ? (double)max_ns : lo * 2);
            /* The largest value is known exactly: a bucket cannot reach past it. */
            if (max_ns > 0 && hi > (double)max_ns)
                hi = (double)max_ns > lo ? (double)max_ns : lo;
            double v = lo + (hi - lo) * ((rank - (double)cum) / (double)hist[b]);
            return (max_ns > 0 && v > (double)max_ns) ? (double)max_ns : v;
        }
        cum += hist[b];
    }
    return (double)max_ns;
}

const char *model_call_name(unsigned call)
{
    if (call == ST_CALL_NONE)
        return NULL;
    const char *n = dump_call_name(call);
    return n ? n : "unknown call";
}

const char *model_object_kind(unsigned kind)
{
    switch (kind) {
    case ST_OBJ_MUTEX: return "mutex";
    case ST_OBJ_RWLOCK: return "rwlock";
    case ST_OBJ_COND: return "cond";
    case ST_OBJ_SEM: return "sem";
    default: return "unknown";
    }
}

bool model_data_symbol(struct m_process *p, uint64_t addr, char *buf, size_t len, bool *py_runtime)
{
    char name[256];
    uint64_t off;

    *py_runtime = false;
    buf[0] = '\0';
    if (!sym_data_symbol(p->sym, addr, p->dump->hdr.last_update_ns, name, sizeof(name), &off))
        return false;
    /* CPython keeps the GIL and the interpreters' state in this one variable. */
    *py_runtime = strcmp(name, "_PyRuntime") == 0;
    snprintf(buf, len, "%s+0x%llx", name, (unsigned long long)off);
    return true;
}

const char *model_thread_name(const struct m_process *p, uint32_t tid)
{
    size_t i;

    for (i = 0; i < p->nthreads; i++)
        if (p->threads[i].tid == tid)
            return p->threads[i].name;
    return "";
}

void model_fmt_ms(char *buf, size_t len, double ms)
{
    if (ms >= 1000)
        snprintf(buf, len, "%.1f s", ms / 1000);
    else if (ms >= 10)
        snprintf(buf, len, "%.0f ms", ms);
    else if (ms >= 1)
        snprintf(buf, len, "%.1f ms", ms);
    else
        snprintf(buf, len, "%.2f ms", ms);
}

/* report_html_views.c - what the HTML page draws beyond the JSON report: the
 * flame graph's folded stacks (flame view and every frame), pool workers' busy spans. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "report_util.h"

/* Enough for hours of a busy pool; past it the page says the lane is partial. */
#define MAX_BUSY_SPANS 50000

/* Folded labels come from an untrusted dump: jansson wants UTF-8. */
static json_t *ascii_string(char *s)
{
    for (unsigned char *c = (unsigned char *)s; *c; c++)
        if (*c >= 0x80)
            *c = '?';
    return json_string(s);
}

static json_t *folded_json(struct m_process *p, bool all)
{
    size_t len = 0;
    char *text = report_folded_text(&p, 1, all, &len);
    json_t *j = text ? ascii_string(text) : json_string("");

    free(text);
    return j;
}

static bool is_work_queue(const struct m_pool *pool, uint64_t object)
{
    for (size_t i = 0; i < pool->nobjects; i++)
        if (pool->objects[i] == object)
            return true;
    return false;
}

static void add_span(json_t *spans, uint32_t tid, double start_s, double duration_ms)
{
    json_t *s = json_array();
    json_array_append_new(s, json_integer(tid));
    json_array_append_new(s, json_real(start_s * 1e3));
    json_array_append_new(s, json_real(duration_ms));
    json_array_append_new(spans, s);
}

/* A worker is busy while in a slow call or blocked on something other than
 * its pool's own work queue (waiting there is idling): every such record,
 * not the JSON report's longest few. */
static json_t *pool_busy_json(const struct m_process *p, const struct m_pool *pool)
{
    json_t *o = json_object(), *spans = json_array();
    size_t i, n = 0;
    bool partial = false;

    for (i = 0; i < p->nslow_calls; i++) {
        const struct m_slow_call *c = &p->slow_calls[i];
        const struct m_thread *t = thread_by_tid(p, c->tid);
        if (!t || t->pool != pool->id)
            continue;
        if (n++ >= MAX_BUSY_SPANS) {
            partial = true;
            break;
        }
        add_span(spans, c->tid, c->start_s, c->duration_ms);
    }
    for (i = 0; i < p->nlock_waits && !partial; i++) {
        const struct m_lock_wait *w = &p->lock_waits[i];
        const struct m_thread *t = thread_by_tid(p, w->tid);
        if (!t || t->pool != pool->id || is_work_queue(pool, w->object))
            continue;
        if (n++ >= MAX_BUSY_SPANS) {
            partial = true;
            break;
        }
        add_span(spans, w->tid, w->start_s, w->duration_ms);
    }
    json_object_set_new(o, "spans", spans);
    json_object_set_new(o, "partial", json_boolean(partial));
    return o;
}

char *report_html_views(struct m_process **procs, size_t n)
{
    json_t *root = json_object();
    char pid[24];

    for (size_t i = 0; i < n; i++) {
        struct m_process *p = procs[i];
        json_t *v = json_object(), *flame = json_object(), *pools = json_object();
        json_object_set_new(flame, "view", folded_json(p, false));
        json_object_set_new(flame, "all", folded_json(p, true));
        json_object_set_new(v, "flame", flame);
        for (size_t j = 0; j < p->npools; j++) {
            char id[24];
            snprintf(id, sizeof(id), "%d", p->pools[j].id);
            json_object_set_new(pools, id, pool_busy_json(p, &p->pools[j]));
        }
        json_object_set_new(v, "pools", pools);
        snprintf(pid, sizeof(pid), "%d", p->pid);
        json_object_set_new(root, pid, v);
    }
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

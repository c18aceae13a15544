/* model_sites.c - the sites step of model_build(): stalls grouped by call
 * and place (frames_place_key), worst first, each stall pointing at its own. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frames.h"
#include "model_build.h"
#include "model_helpers.h"

static bool same_site(const char *call, bool starved, const struct m_stack *key,
                      const struct m_site *site)
{
    return model_cmp_str(call, site->call) == 0 && starved == site->starved &&
           model_same_place(key, &site->key);
}

static int cmp_site_index(const void *a, const void *b, void *arg)
{
    const struct m_site *sites = arg;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    const struct m_site *x = &sites[i], *y = &sites[j];
    if (x->total_ms != y->total_ms)
        return x->total_ms > y->total_ms ? -1 : 1;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return i < j ? -1 : i > j;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    if (!s)
        return h * 31 + 7;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Agrees with same_site: equal sites hash equal. */
static uint64_t site_hash(const char *call, const struct m_stack *s)
{
    uint64_t h = hash_str(0xcbf29ce484222325ull, call);
    size_t i;

    for (i = 0; i < s->n; i++) {
        const struct sym_frame *f = s->frames[i];
        if (!f->function) {
            h = (h ^ f->address) * 0x100000001b3ull;
            continue;
        }
        h = hash_str(h, f->function);
        h = hash_str(h, f->file);
        h = hash_str(h, f->module);
        h = (h ^ (uint64_t)(unsigned)f->line) * 0x100000001b3ull;
    }
    return h;
}

int model_build_sites(struct m_process *p)
{
    size_t i, cap = 16, *table, *order, *rank;
    struct m_site *sorted;

    while (cap < p->nstalls * 2)
        cap *= 2;
    p->sites = calloc(p->nstalls ? p->nstalls : 1, sizeof(*p->sites));
    table = malloc(cap * sizeof(*table));
    if (!p->sites || !table) {
        free(table);
        return -1;
    }
    memset(table, 0xff, cap * sizeof(*table));  /* SIZE_MAX: empty */
    for (i = 0; i < p->nstalls; i++) {
        struct m_stall *st = &p->stalls[i];
        struct m_stack key;
        if (frames_place_key(&st->stack, &key) < 0) {
            free(table);
            return -1;
        }
        /* A loop kept off the CPU is one culprit, wherever it was. */
        if (st->starved)
            key.n = 0;
        const char *call = st->starved ? NULL : st->call;
        size_t j = (size_t)(site_hash(call, &key) ^ st->starved) & (cap - 1);
        while (table[j] != SIZE_MAX && !same_site(call, st->starved, &key, &p->sites[table[j]]))
            j = (j + 1) & (cap - 1);
        if (table[j] == SIZE_MAX) {
            table[j] = p->nsites;
            p->sites[p->nsites].call = call;
            p->sites[p->nsites].stack = st->stack;
            p->sites[p->nsites].key = key;
            p->sites[p->nsites].starved = st->starved;
            p->nsites++;
        } else {
            free(key.frames);
        }
        struct m_site *site = &p->sites[table[j]];
        st->site = table[j];
        site->count++;
        for (size_t k = 0; k < st->ncalls; k++)
            if (model_cmp_str(st->calls[k].call, site->call) == 0) {
                site->call_count += st->calls[k].count;
                site->call_total_ms += st->calls[k].total_ms;
            }
        site->total_ms += st->duration_ms;
        if (st->duration_ms > site->max_ms)
            site->max_ms = st->duration_ms;
    }
    free(table);

    /* Worst first; the stalls follow their site to its new place. */
    order = calloc(p->nsites ? p->nsites : 1, sizeof(*order));
    rank = calloc(p->nsites ? p->nsites : 1, sizeof(*rank));
    sorted = calloc(p->nsites ? p->nsites : 1, sizeof(*sorted));
    if (!order || !rank || !sorted) {
        free(order);
        free(rank);
        free(sorted);
        return -1;
    }
    for (i = 0; i < p->nsites; i++)
        sorted[i] = p->sites[i];
    for (i = 0; i < p->nsites; i++)
        order[i] = i;
    if (p->nsites > 1)
        qsort_r(order, p->nsites, sizeof(*order), cmp_site_index, p->sites);
    for (i = 0; i < p->nsites; i++) {
        sorted[i] = p->sites[order[i]];
        rank[order[i]] = i;
    }
    for (i = 0; i < p->nstalls; i++)
        p->stalls[i].site = rank[p->stalls[i].site];
    free(p->sites);
    p->sites = sorted;
    free(order);
    free(rank);
    return 0;
}

void model_free_sites(struct m_process *p)
{
    for (size_t i = 0; i < p->nsites; i++)
        free(p->sites[i].key.frames);
    free(p->sites);
}

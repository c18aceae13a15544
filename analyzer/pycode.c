/* pycode.c - keeps the CPython code objects a dump describes and computes a
 * frame's line from the code's location table, offline and untrusting. */
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "stalltrace/format.h"
#include "pycode.h"
#include "rbcode.h"

static char *copy_text(const uint8_t *src, size_t len)
{
    char *s = malloc(len + 1);

    if (!s)
        return NULL;
    memcpy(s, src, len);
    s[len] = '\0';
    return s;
}

int py_codes_add(struct py_codes *t, uint64_t pos, const uint8_t *rec, size_t size)
{
    struct st_rec_pycode r;
    struct py_code c = {0};

    if (size < sizeof(r))
        return 0;
    memcpy(&r, rec, sizeof(r));
    size_t names = (size_t)r.qualname_len + r.filename_len;
    if (r.code == 0 || names + r.linetable_len > size - sizeof(r))
        return 0;
    if (GROW(t->v, t->cap, t->n + 1, 64) < 0)
        return -1;
    const uint8_t *data = rec + sizeof(r);
    c.pos = pos;
    c.code = r.code;
    c.firstlineno = r.firstlineno <= (uint32_t)INT32_MAX ? (int)r.firstlineno : 0;
    c.py_version = r.py_version;
    c.language = r.language;
    c.qualname = copy_text(data, r.qualname_len);
    c.filename = copy_text(data + r.qualname_len, r.filename_len);
    if (r.linetable_len) {
        c.linetable = malloc(r.linetable_len);
        if (c.linetable) {
            memcpy(c.linetable, data + names, r.linetable_len);
            c.linetable_len = r.linetable_len;
        }
    }
    if (!c.qualname || !c.filename || (r.linetable_len && !c.linetable)) {
        free(c.qualname);
        free(c.filename);
        free(c.linetable);
        return -1;
    }
    t->v[t->n++] = c;
    return 1;
}

static int cmp_code(const void *a, const void *b)
{
    const struct py_code *x = a, *y = b;

    if (x->code != y->code)
        return x->code < y->code ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

void py_codes_finish(struct py_codes *t)
{
    if (t->n > 1)
        qsort(t->v, t->n, sizeof(*t->v), cmp_code);
}

const struct py_code *py_codes_find(const struct py_codes *t, uint64_t code, uint64_t at_pos)
{
    size_t lo = 0, hi = t->n;

    /* First record at or after (code, at_pos). */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct py_code *m = &t->v[mid];
        if (m->code < code || (m->code == code && m->pos < at_pos))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo > 0 && t->v[lo - 1].code == code)
        return &t->v[lo - 1];
    if (lo < t->n && t->v[lo].code == code)
        return &t->v[lo];
    return NULL;
}

void py_codes_free(struct py_codes *t)
{
    size_t i;

    for (i = 0; i < t->n; i++) {
        free(t->v[i].qualname);
        free(t->v[i].filename);
        free(t->v[i].linetable);
    }
    free(t->v);
    memset(t, 0, sizeof(*t));
}

/* ---- Location tables ----------------------------------------------------
 * Each entry opens with a byte whose high bit is set; bits 3-6 say how the
 * location is written, bits 0-2 hold the number of code units minus one.
 * Lines are deltas from the previous entry's line, starting at co_firstlineno.
 */
enum {
    LOC_NONE = 15,                 /* no location at all */
    LOC_LONG = 14,                 /* line delta, end line delta, column+1, end column+1 */
    LOC_NO_COLUMNS = 13,           /* line delta only */
    LOC_ONE_LINE0 = 10,            /* 10..12: line delta 0..2, then column, end column */
};

/* Far beyond any real line or column: anything larger is corrupt. */
#define LOC_LIMIT (1 << 28)

bool py_linetable_supported(uint16_t py_version)
{
    return py_version >= 0x030b && py_version <= 0x030d;
}

void py_loc_begin(struct py_loc_iter *it, const uint8_t *table, size_t len, int firstlineno)
{
    it->p = table;
    it->end = table ? table + len : table;
    it->unit = 0;
    it->line = firstlineno;
}

/* Unsigned varint: 6-bit chunks, least significant first, bit 6 says more
 * follow. Bounded so a corrupt table cannot shift past 64 bits. */
static bool read_varint(struct py_loc_iter *it, uint32_t *out)
{
    uint64_t v = 0;
    unsigned shift = 0;
    uint8_t b;

    do {
        if (it->p == it->end || shift > 30)
            return false;
        b = *it->p++;
        v |= (uint64_t)(b & 63) << shift;
        shift += 6;
    } while (b & 64);
    if (v >= LOC_LIMIT * 2ull)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* Signed varint: the lowest bit of the unsigned value is the sign. */
static bool read_svarint(struct py_loc_iter *it, int *out)
{
    uint32_t u;

    if (!read_varint(it, &u))
        return false;
    *out = (u & 1) ? -(int)(u >> 1) : (int)(u >> 1);
    return true;
}

static bool add_line(struct py_loc_iter *it, int delta)
{
    long long line = (long long)it->line + delta;

    if (line < -LOC_LIMIT || line > LOC_LIMIT)
        return false;
    it->line = (int)line;
    return true;
}

bool py_loc_next(struct py_loc_iter *it, struct py_location *loc)
{
    uint32_t a, b, c;
    int delta;

    if (!it->p || it->p == it->end || !(*it->p & 0x80))
        return false;
    uint8_t first = *it->p++;
    unsigned code = (first >> 3) & 15;

    loc->start = it->unit;
    loc->end = it->unit + (first & 7) + 1;
    if (loc->end < loc->start)
        return false;
    switch (code) {
    case LOC_NONE:
        loc->line = loc->end_line = loc->col = loc->end_col = -1;
        break;
    case LOC_LONG:
        if (!read_svarint(it, &delta) || !add_line(it, delta) || !read_varint(it, &a) ||
            !read_varint(it, &b) || !read_varint(it, &c))
            return false;
        loc->line = it->line;
        loc->end_line = it->line + (int)a;
        loc->col = (int)b - 1;
        loc->end_col = (int)c - 1;
        break;
    case LOC_NO_COLUMNS:
        if (!read_svarint(it, &delta) || !add_line(it, delta))
            return false;
        loc->line = loc->end_line = it->line;
        loc->col = loc->end_col = -1;
        break;
    case LOC_ONE_LINE0:
    case LOC_ONE_LINE0 + 1:
    case LOC_ONE_LINE0 + 2:
        if (it->end - it->p < 2 || !add_line(it, (int)code - LOC_ONE_LINE0))
            return false;
        loc->line = loc->end_line = it->line;
        loc->col = it->p[0];
        loc->end_col = it->p[1];
        it->p += 2;
        break;
    default:                       /* short form: same line, columns in one byte */
        if (it->p == it->end)
            return false;
        loc->line = loc->end_line = it->line;
        loc->col = (int)(code << 3 | ((*it->p >> 4) & 7));
        loc->end_col = loc->col + (*it->p & 15);
        it->p++;
        break;
    }
    it->unit = loc->end;
    return true;
}

int py_linetable_line(const uint8_t *table, size_t len, int firstlineno, uint32_t instr)
{
    struct py_loc_iter it;
    struct py_location loc;

    py_loc_begin(&it, table, len, firstlineno);
    while (py_loc_next(&it, &loc))
        if (instr >= loc.start && instr < loc.end)
            return loc.line;
    return -1;
}

int py_code_line(const struct py_code *c, uint32_t instr)
{
    if (c->language == ST_CODE_CRUBY) {
        int line = c->linetable && c->py_version == 0x0301 && instr != UINT32_MAX
                       ? rb_linetable_line(c->linetable, c->linetable_len, instr) : -1;
        return line > 0 ? line : c->firstlineno;
    }
    if (c->language == ST_CODE_CPYTHON && c->linetable && instr != UINT32_MAX &&
        py_linetable_supported(c->py_version)) {
        int line = py_linetable_line(c->linetable, c->linetable_len, c->firstlineno, instr);
        if (line > 0)
            return line;
    }
    return c->firstlineno;
}

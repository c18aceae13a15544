/* pycode.h - CPython code objects as a dump describes them (ST_REC_PYCODE
 * records): the table the reader keeps, and decoding of their line tables. */
#ifndef STALLTRACE_PYCODE_H
#define STALLTRACE_PYCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One ST_REC_PYCODE record, decoded. */
struct py_code {
    uint64_t pos;                  /* ring position of its record */
    uint64_t code;                 /* PyCodeObject address */
    int firstlineno;               /* 0 when unknown */
    uint16_t py_version;           /* 0x030b for 3.11, ...; Ruby's for CRuby */
    uint16_t language;             /* st_code_language */
    char *qualname;                /* NUL-terminated copies; may be empty */
    char *filename;
    uint8_t *linetable;            /* co_linetable, NULL when not kept */
    size_t linetable_len;
};

/* Every code record of a dump. A code address can be described again (the
 * object was freed and another took its place): each record applies to the
 * stacks recorded after it. */
struct py_codes {
    struct py_code *v;             /* by (code, pos) once py_codes_finish ran */
    size_t n, cap;
};

/* Decode a whole record (its 16-byte header included, size bytes) written at
 * ring position pos and keep it. 1: kept, 0: malformed, -1: out of memory. */
int py_codes_add(struct py_codes *t, uint64_t pos, const uint8_t *rec, size_t size);

/* Order the table for lookups; call once every record was added. */
void py_codes_finish(struct py_codes *t);

/* The description of code in force for a stack recorded at ring position
 * at_pos: the last record before it, else the first one after it (a record
 * can lose the race with a stack of another thread). NULL when none. */
const struct py_code *py_codes_find(const struct py_codes *t, uint64_t code, uint64_t at_pos);

void py_codes_free(struct py_codes *t);

/* ---- Location tables (PEP 657, CPython 3.11 to 3.13) ---------------------- */

/* Does py_version use the location table format decoded here? */
bool py_linetable_supported(uint16_t py_version);

/* One entry: code units [start, end) and where they come from. -1 for a
 * line or column that is not known (columns are 0-based, end exclusive). */
struct py_location {
    uint32_t start, end;
    int line, end_line;
    int col, end_col;
};

struct py_loc_iter {
    const uint8_t *p, *end;
    uint32_t unit;                 /* first code unit of the next entry */
    int line;                      /* running line: deltas add to it */
};

void py_loc_begin(struct py_loc_iter *it, const uint8_t *table, size_t len, int firstlineno);

/* The next entry; false at the end of the table or on malformed bytes. */
bool py_loc_next(struct py_loc_iter *it, struct py_location *loc);

/* The line of code unit instr (an index, as in struct st_pyframe), or -1
 * when the table does not say (no location, beyond the table, malformed). */
int py_linetable_line(const uint8_t *table, size_t len, int firstlineno, uint32_t instr);

/* The line a frame of code c is at: from its line table when it can be
 * worked out (CPython's or CRuby's, as c->language says), its first line
 * otherwise (0 when that is unknown too). */
int py_code_line(const struct py_code *c, uint32_t instr);

#endif /* STALLTRACE_PYCODE_H */

/* test_pyframes.c - CPython frames in the analyzer: location tables decoded
 * as CPython does, the code table, the reader's Python stacks, splicing. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"
#include "dump_builder.h"
#include "pycode.h"
#include "frames.h"
#include "pyframes.h"
#include "pyframes_tables.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- Location tables --------------------------------------------------- */

/* Every entry, unit by unit, must say what co_positions() said. */
static void check_positions(const char *what, const uint8_t *table, size_t len, int firstlineno,
                            const int (*pos)[4], size_t npos)
{
    struct py_loc_iter it;
    struct py_location loc;
    size_t units = 0;

    py_loc_begin(&it, table, len, firstlineno);
    while (py_loc_next(&it, &loc)) {
        cr_assert_eq(loc.start, units, "%s: entry starts at %u, expected %zu", what, loc.start, units);
        for (uint32_t u = loc.start; u < loc.end; u++) {
            cr_assert_lt(u, npos, "%s: table covers more than %zu code units", what, npos);
            int got[4] = {loc.line, loc.end_line, loc.col, loc.end_col};
            cr_assert(memcmp(got, pos[u], sizeof(got)) == 0,
                      "%s: unit %u is (%d, %d, %d, %d), co_positions says (%d, %d, %d, %d)", what,
                      u, got[0], got[1], got[2], got[3], pos[u][0], pos[u][1], pos[u][2], pos[u][3]);
        }
        units = loc.end;
    }
    cr_assert_eq(it.p, it.end, "%s: decoding stopped before the end of the table", what);
    cr_assert_eq(units, npos, "%s: %zu code units decoded, co_positions has %zu", what, units, npos);
}

/* py_linetable_line agrees with co_lines() on every code unit. */
static void check_lines(const char *what, const uint8_t *table, size_t len, int firstlineno,
                        const int (*lines)[3], size_t nlines)
{
    for (size_t i = 0; i < nlines; i++)
        for (int byte = lines[i][0]; byte < lines[i][1]; byte += 2) {
            int got = py_linetable_line(table, len, firstlineno, (uint32_t)byte / 2);
            cr_assert_eq(got, lines[i][2], "%s: unit %d on line %d, co_lines says %d", what,
                         byte / 2, got, lines[i][2]);
        }
}

#define CHECK_TABLE(tag)                                                                    \
    do {                                                                                    \
        check_positions(#tag, table_##tag, sizeof(table_##tag), FIRSTLINENO_##tag,          \
                        positions_##tag, N(positions_##tag));                               \
        check_lines(#tag, table_##tag, sizeof(table_##tag), FIRSTLINENO_##tag, lines_##tag, \
                    N(lines_##tag));                                                        \
    } while (0)

Test(pyframes, location_table_of_3_11)
{
    CHECK_TABLE(311);
}

Test(pyframes, location_table_of_3_12)
{
    CHECK_TABLE(312);
}

Test(pyframes, location_table_of_3_13)
{
    CHECK_TABLE(313);
}

Test(pyframes, location_table_without_columns)
{
    CHECK_TABLE(312_nocols);
}

Test(pyframes, line_falls_back_to_the_first_line)
{
    struct py_code c = {.firstlineno = 2, .py_version = 0x030c, .linetable = (uint8_t *)table_312,
                        .linetable_len = sizeof(table_312)};

    /* The return statement, 150 lines below. */
    cr_assert_eq(py_code_line(&c, (uint32_t)lines_312[N(lines_312) - 1][0] / 2),
                 lines_312[N(lines_312) - 1][2]);
    cr_assert_eq(py_code_line(&c, UINT32_MAX), 2);            /* instruction unknown */
    cr_assert_eq(py_code_line(&c, 100000), 2);                /* beyond the table */
    c.py_version = 0x030a;                                    /* another table format */
    cr_assert_eq(py_code_line(&c, 1), 2);
    c.py_version = 0x030c;
    c.linetable = NULL;                                       /* too long to keep */
    cr_assert_eq(py_code_line(&c, 1), 2);
    /* A unit without a location (code 15) is not line -1 in a report. */
    static const uint8_t none[] = {0xf8 | 0, 0x80 | (13 << 3), 0x06};
    c.linetable = (uint8_t *)none;
    c.linetable_len = sizeof(none);
    cr_assert_eq(py_linetable_line(none, sizeof(none), 2, 0), -1);
    cr_assert_eq(py_code_line(&c, 0), 2);
    cr_assert_eq(py_code_line(&c, 1), 5);
}

Test(pyframes, malformed_tables_stop_cleanly)
{
    /* Cut anywhere, a real table decodes a prefix and stops. */
    for (size_t len = 0; len < sizeof(table_313); len++) {
        struct py_loc_iter it;
        struct py_location loc;
        py_loc_begin(&it, table_313, len, 2);
        while (py_loc_next(&it, &loc))
            cr_assert_leq(it.p, table_313 + len);
        (void)py_linetable_line(table_313, len, 2, 7);
    }
    /* A varint that never ends, a line delta out of any range. */
    static const uint8_t endless[] = {0x80 | (13 << 3), 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f,
                                      0x7f, 0x7f, 0x7f, 0x3f};
    cr_assert_eq(py_linetable_line(endless, sizeof(endless), 2, 0), -1);
    /* Random bytes: no crash, no read past the end (ASan/valgrind see it). */
    srand(7);
    for (int round = 0; round < 2000; round++) {
        uint8_t *junk = malloc(64);
        size_t len = (size_t)(rand() % 64);
        for (size_t i = 0; i < len; i++)
            junk[i] = (uint8_t)rand();
        (void)py_linetable_line(junk, len, rand() % 1000, (uint32_t)(rand() % 100));
        free(junk);
    }
}

/* ---- Code table ------------------------------------------------------------ */

/* A whole ST_REC_PYCODE record (header included) in buf; returns its size. */
static size_t pycode_record(uint8_t *buf, uint64_t code, const char *qualname, const char *filename,
                            uint32_t firstlineno, const uint8_t *table, size_t table_len)
{
    struct st_rec_pycode r;

    memset(&r, 0, sizeof(r));
    r.hdr.type = ST_REC_PYCODE;
    r.code = code;
    r.firstlineno = firstlineno;
    r.py_version = 0x030c;
    r.qualname_len = (uint16_t)strlen(qualname);
    r.filename_len = (uint16_t)strlen(filename);
    r.linetable_len = (uint16_t)table_len;
    memcpy(buf, &r, sizeof(r));
    memcpy(buf + sizeof(r), qualname, r.qualname_len);
    memcpy(buf + sizeof(r) + r.qualname_len, filename, r.filename_len);
    if (table_len)
        memcpy(buf + sizeof(r) + r.qualname_len + r.filename_len, table, table_len);
    return sizeof(r) + r.qualname_len + r.filename_len + table_len;
}

Test(pyframes, code_table_takes_the_record_in_force)
{
    struct py_codes t = {0};
    uint8_t buf[4096];
    size_t n;

    n = pycode_record(buf, 0x1000, "old", "a.py", 1, NULL, 0);
    cr_assert_eq(py_codes_add(&t, 100, buf, n), 1);
    n = pycode_record(buf, 0x2000, "other", "b.py", 5, table_312, sizeof(table_312));
    cr_assert_eq(py_codes_add(&t, 200, buf, n), 1);
    n = pycode_record(buf, 0x1000, "new", "c.py", 9, NULL, 0);
    cr_assert_eq(py_codes_add(&t, 300, buf, n), 1);
    cr_assert_eq(py_codes_add(&t, 400, buf, n - 1), 0);       /* lengths past its end */
    cr_assert_eq(py_codes_add(&t, 400, buf, 10), 0);          /* shorter than a record */
    py_codes_finish(&t);

    cr_assert_str_eq(py_codes_find(&t, 0x1000, 250)->qualname, "old");
    cr_assert_str_eq(py_codes_find(&t, 0x1000, 350)->qualname, "new");
    cr_assert_str_eq(py_codes_find(&t, 0x1000, 50)->qualname, "old");  /* record came late */
    cr_assert_str_eq(py_codes_find(&t, 0x2000, 1000)->filename, "b.py");
    cr_assert_eq(py_codes_find(&t, 0x2000, 1000)->linetable_len, sizeof(table_312));
    cr_assert_null(py_codes_find(&t, 0x3000, 1000));
    py_codes_free(&t);
}

/* ---- The reader ------------------------------------------------------------ */

/* A stall record whose stack carries Python frames after its native ones. */
static void stall_with_python(struct dump_builder *b, uint64_t iter, const uint64_t *frames,
                              uint16_t nframes, const struct st_pyframe *py, uint16_t npy,
                              uint16_t claimed_npy)
{
    struct st_rec_stall r;
    const size_t skip = sizeof(struct st_record);
    size_t fixed = offsetof(struct st_rec_stall, stack) - skip;
    uint8_t buf[4096];
    struct st_stack s = {.nframes = nframes, .unwinder = ST_UNWIND_LIBUNWIND,
                         .npython = claimed_npy, .python = ST_PY_OK};

    memset(&r, 0, sizeof(r));
    r.tid = 42;
    r.call = ST_CALL_CLOCK_NANOSLEEP;
    r.iter_seq = iter;
    r.start_ns = iter * 1000000000ull;
    r.busy_ns = 200000000;
    memcpy(buf, (uint8_t *)&r + skip, fixed);
    memcpy(buf + fixed, &s, sizeof(s));
    memcpy(buf + fixed + sizeof(s), frames, nframes * sizeof(*frames));
    memcpy(buf + fixed + sizeof(s) + nframes * sizeof(*frames), py, npy * sizeof(*py));
    db_append(b, ST_REC_STALL, buf, fixed + sizeof(s) + nframes * sizeof(*frames) + npy * sizeof(*py));
}

static void append_pycode(struct dump_builder *b, uint64_t code, const char *qualname,
                          const char *filename, uint32_t firstlineno)
{
    uint8_t buf[4096];
    size_t n = pycode_record(buf, code, qualname, filename, firstlineno, table_312, sizeof(table_312));

    db_append(b, ST_REC_PYCODE, buf + sizeof(struct st_record), n - sizeof(struct st_record));
}

Test(pyframes, reader_decodes_python_frames_and_their_code)
{
    struct dump_builder *b = db_new(1, 1, 1 << 16);
    const uint64_t native[] = {0x1000, 0x2000, 0x3000};
    const struct st_pyframe py[] = {
        {0xa000, 1, 0}, {0xb000, UINT32_MAX, ST_PYFRAME_ENTRY},
    };
    char *err = NULL;

    db_add_thread(b, 42, "python3", ST_THREAD_LOOP);
    append_pycode(b, 0xa000, "load_config", "/srv/app.py", 2);
    append_pycode(b, 0xb000, "handle_request", "/srv/app.py", 7);
    stall_with_python(b, 1, native, 3, py, 2, 2);
    append_pycode(b, 0xa000, "Reused.code", "/srv/other.py", 40);   /* freed, address reused */
    stall_with_python(b, 2, native, 3, py, 1, 1);
    stall_with_python(b, 3, native, 3, py, 2, 3);                    /* claims more than it has */
    db_complete(b, 5000000000ull);

    struct dump *d = dump_open_mem(b->buf, b->len, "python.dump", &err);
    cr_assert_not_null(d, "%s", err ? err : "");
    cr_assert_eq(d->nevents, 2, "the torn Python stack is not an event");
    cr_assert_eq(d->dropped, 1);
    const struct dump_stack *s = &d->events[0].stack;
    cr_assert_eq(s->nframes, 3);
    cr_assert_eq(s->frames[2], 0x3000);
    cr_assert_eq(s->npython, 2);
    cr_assert_eq(s->python, ST_PY_OK);
    cr_assert_eq(s->pyframes[0].code, 0xa000);
    cr_assert_eq(s->pyframes[0].instr, 1);
    cr_assert_str_eq(s->pyframes[0].info->qualname, "load_config");
    cr_assert_eq(s->pyframes[1].flags, ST_PYFRAME_ENTRY);
    cr_assert_str_eq(s->pyframes[1].info->qualname, "handle_request");
    cr_assert_eq(s->pyframes[1].instr, UINT32_MAX);
    s = &d->events[1].stack;
    cr_assert_eq(s->npython, 1);
    cr_assert_str_eq(s->pyframes[0].info->qualname, "Reused.code");
    cr_assert_str_eq(s->pyframes[0].info->filename, "/srv/other.py");
    dump_free(d);
    db_free(b);
}

/* ---- Splicing ---------------------------------------------------------------- */

static struct sym_frame nat(const char *function)
{
    return (struct sym_frame){.function = function, .module = "python3.12", .kind = "native"};
}

static const struct py_code code_load = {.code = 0xa, .firstlineno = 3, .py_version = 0x030c,
                                         .qualname = "load_config", .filename = "/srv/app.py"};
static const struct py_code code_handle = {.code = 0xb, .firstlineno = 6, .py_version = 0x030c,
                                           .qualname = "handle_request", .filename = "/srv/app.py"};
static const struct py_code code_run = {.code = 0xc, .firstlineno = 80, .py_version = 0x030c,
                                        .qualname = "Handle._run",
                                        .filename = "/usr/lib/python3.12/asyncio/events.py"};
static const struct py_code code_main = {.code = 0xd, .firstlineno = 1, .py_version = 0x030c,
                                         .qualname = "<module>", .filename = "/srv/app.py"};

/* load_config < handle_request (entry) < Handle._run < <module> (entry). */
static const struct dump_pyframe two_runs[] = {
    {0xa, UINT32_MAX, 0, &code_load},
    {0xb, UINT32_MAX, ST_PYFRAME_ENTRY, &code_handle},
    {0xc, UINT32_MAX, 0, &code_run},
    {0xd, UINT32_MAX, ST_PYFRAME_ENTRY, &code_main},
};

/* Splice and return the stack as "a < b < c" for comparison. */
static char *splice(struct py_namer *nm, const struct sym_frame *in, size_t n,
                    const struct dump_pyframe *py, uint16_t npy, uint8_t status)
{
    const struct sym_frame **frames = malloc((n ? n : 1) * sizeof(*frames));
    struct dump_stack ds = {.nframes = (uint16_t)n, .npython = npy, .python = status, .pyframes = py};
    char *text = calloc(1, 4096);
    size_t i;

    for (i = 0; i < n; i++)
        frames[i] = &in[i];
    cr_assert_eq(py_splice(nm, &ds, &frames, &n), 0);
    for (i = 0; i < n; i++) {
        if (i)
            strcat(text, " < ");
        strcat(text, frames[i]->function ? frames[i]->function : "?");
        if (strcmp(frames[i]->kind, "python") == 0) {
            cr_assert_str_eq(frames[i]->module, "[python]");
            if (frames[i]->function)
                cr_assert_not_null(frames[i]->file);
        }
    }
    free(frames);
    return text;
}

#define EVAL "_PyEval_EvalFrameDefault"

Test(pyframes, splice_replaces_each_eval_frame_with_its_run)
{
    struct py_namer *nm = py_namer_new(false);
    struct sym_frame in[] = {nat("clock_nanosleep"), nat("time_sleep"), nat(EVAL), nat("task_step"),
                             nat(EVAL), nat("Py_RunMain")};
    char *s = splice(nm, in, N(in), two_runs, 4, ST_PY_OK);

    cr_assert_str_eq(s, "clock_nanosleep < time_sleep < load_config < handle_request < task_step"
                        " < Handle._run < <module> < Py_RunMain");
    free(s);
    /* Python frames are named once and shared between stacks. */
    struct dump_stack ds = {.npython = 1, .pyframes = two_runs};
    const struct sym_frame **f = calloc(1, sizeof(*f)), **g = calloc(1, sizeof(*g));
    size_t n = 0, m = 0;
    cr_assert_eq(py_splice(nm, &ds, &f, &n), 0);
    cr_assert_eq(py_splice(nm, &ds, &g, &m), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(f[0], g[0]);
    cr_assert_str_eq(f[0]->kind, "python");
    cr_assert_eq(f[0]->line, 3, "unknown instruction: the first line");
    free(f);
    free(g);
    py_namer_free(nm);
}

Test(pyframes, splice_when_the_counts_disagree)
{
    struct py_namer *nm = py_namer_new(false);
    char *s;

    /* One eval frame for two runs (native stack cut): it takes them all. */
    struct sym_frame one[] = {nat("clock_nanosleep"), nat(EVAL ".cold"), nat("main")};
    s = splice(nm, one, N(one), two_runs, 4, ST_PY_OK);
    cr_assert_str_eq(s, "clock_nanosleep < load_config < handle_request < Handle._run < <module> < main");
    free(s);

    /* Three eval frames for two runs (Python walk cut): the last one stays. */
    struct sym_frame three[] = {nat("clock_nanosleep"), nat(EVAL), nat("x"), nat(EVAL), nat("y"),
                                nat(EVAL), nat("main")};
    s = splice(nm, three, N(three), two_runs, 4, ST_PY_TRUNCATED);
    cr_assert_str_eq(s, "clock_nanosleep < load_config < handle_request < x < Handle._run < <module>"
                        " < y < " EVAL " < main");
    free(s);

    /* No eval frame at all (an interpreter without symbols): after the rest. */
    struct sym_frame none[] = {nat("clock_nanosleep"), nat(NULL), nat(NULL)};
    s = splice(nm, none, N(none), two_runs, 4, ST_PY_OK);
    cr_assert_str_eq(s, "clock_nanosleep < ? < ? < load_config < handle_request < Handle._run < <module>");
    free(s);

    /* A run without its entry frame (walk stopped early) still goes in. */
    s = splice(nm, one, N(one), two_runs, 1, ST_PY_IMPLAUSIBLE);
    cr_assert_str_eq(s, "clock_nanosleep < load_config < main");
    free(s);
    py_namer_free(nm);
}

Test(pyframes, splice_drops_perf_map_python_frames_it_replaces)
{
    struct py_namer *nm = py_namer_new(false);
    struct sym_frame perf = {.function = "handle_request", .module = "[python]", .kind = "python"};
    struct sym_frame in[] = {nat("clock_nanosleep"), nat(EVAL), perf, nat(EVAL), nat("main")};
    char *s = splice(nm, in, N(in), two_runs, 4, ST_PY_OK);

    cr_assert_str_eq(s, "clock_nanosleep < load_config < handle_request < Handle._run < <module> < main");
    free(s);
    py_namer_free(nm);
}

Test(pyframes, native_only_and_unsupported_versions)
{
    struct py_namer *nm = py_namer_new(true);
    struct sym_frame in[] = {nat("clock_nanosleep"), nat(EVAL), nat("main")};
    char *s = splice(nm, in, N(in), two_runs, 4, ST_PY_OK);

    cr_assert_str_eq(s, "clock_nanosleep < " EVAL " < main");
    free(s);
    cr_assert_eq(py_namer_unsupported(nm), 0);
    s = splice(nm, in, N(in), NULL, 0, ST_PY_UNSUPPORTED);
    free(s);
    cr_assert_eq(py_namer_unsupported(nm), 1);
    py_namer_free(nm);

    nm = py_namer_new(false);
    s = splice(nm, in, N(in), NULL, 0, ST_PY_UNSUPPORTED);
    cr_assert_str_eq(s, "clock_nanosleep < " EVAL " < main");
    cr_assert_eq(py_namer_unsupported(nm), 1);
    free(s);
    py_namer_free(nm);
}

Test(pyframes, frame_of_a_code_object_the_dump_lost)
{
    struct py_namer *nm = py_namer_new(false);
    const struct dump_pyframe lost = {0xdead, 4, ST_PYFRAME_ENTRY, NULL};
    const struct sym_frame *f = py_namer_frame(nm, &lost);

    cr_assert_null(f->function);
    cr_assert_str_eq(f->kind, "python");
    cr_assert_eq(f->address, 0xdead);
    cr_assert_not_null(f->note);
    py_namer_free(nm);
}

Test(pyframes, where_names_the_innermost_user_frame_and_its_caller)
{
    struct py_namer *nm = py_namer_new(false);
    const struct dump_pyframe py[] = {
        {0xc, UINT32_MAX, 0, &code_run},            /* machinery first: skipped */
        {0xa, UINT32_MAX, 0, &code_load},
        {0xc, UINT32_MAX, 0, &code_run},
        {0xb, UINT32_MAX, ST_PYFRAME_ENTRY, &code_handle},
    };
    const struct sym_frame *frames[5];
    char buf[256] = "unchanged";
    size_t i;

    frames[0] = &(struct sym_frame){.function = "clock_nanosleep", .module = "libc.so.6",
                                    .kind = "native"};
    for (i = 0; i < 4; i++)
        frames[i + 1] = py_namer_frame(nm, &py[i]);
    cr_assert(frames_is_plumbing(frames[1]));
    cr_assert_eq(frames_role(frames[2]), FRAME_USER);
    cr_assert(frames_is_plumbing(frames[0]));
    frames_where(&(struct m_stack){.n = 1, .frames = frames}, buf, sizeof(buf));
    cr_assert_str_eq(buf, "");
    frames_where(&(struct m_stack){.n = 5, .frames = frames}, buf, sizeof(buf));
    cr_assert_str_eq(buf, "load_config (app.py:3) in handle_request (app.py:6)");
    /* Only machinery: name it rather than nothing. */
    frames_where(&(struct m_stack){.n = 2, .frames = frames}, buf, sizeof(buf));
    cr_assert_str_eq(buf, "Handle._run (events.py:80)");
    py_namer_free(nm);
}

/* A C method (Kernel#sleep, ST_PYFRAME_CFUNC) is at the file and line of
 * the Ruby frame that called it, as in Ruby's backtraces, and is the
 * interpreter's code: the culprit stays the method that called it. */
Test(pyframes, ruby_c_method_is_at_its_callers_line)
{
    static const struct py_code sleep_id = {.code = 0x3a41, .py_version = 0x0301, .language = ST_CODE_CRUBY,
                                            .qualname = "sleep", .filename = ""};
    static const struct py_code load = {.code = 0x7f00a0, .firstlineno = 4, .py_version = 0x0301,
                                        .language = ST_CODE_CRUBY, .qualname = "load_report",
                                        .filename = "/srv/config.ru"};
    static const struct py_code timed = {.code = 0x7f00b0, .firstlineno = 12, .py_version = 0x0301,
                                         .language = ST_CODE_CRUBY, .qualname = "timed",
                                         .filename = "/srv/config.ru"};
    const struct dump_pyframe rb[] = {
        {0x3a41, UINT32_MAX, ST_PYFRAME_RUBY | ST_PYFRAME_CFUNC, &sleep_id},
        {0x7f00a0, UINT32_MAX, ST_PYFRAME_RUBY, &load},
        {0x3a41, UINT32_MAX, ST_PYFRAME_RUBY | ST_PYFRAME_CFUNC, &sleep_id},
        {0x7f00b0, UINT32_MAX, ST_PYFRAME_RUBY | ST_PYFRAME_ENTRY, &timed},
    };
    struct sym_frame in[] = {
        {.function = "ppoll", .module = "libc.so.6", .kind = "native"},
        {.function = "rb_vm_exec", .module = "libruby-3.1.so.3.1", .kind = "native"},
    };
    const struct sym_frame **frames = malloc(2 * sizeof(*frames));
    struct dump_stack ds = {.nframes = 2, .npython = N(rb), .python = ST_PY_OK, .pyframes = rb};
    struct py_namer *nm = py_namer_new(false);
    size_t n = 2;
    char buf[256];

    frames[0] = &in[0];
    frames[1] = &in[1];
    cr_assert_eq(py_splice(nm, &ds, &frames, &n), 0);
    cr_assert_eq(n, 5);
    cr_assert_str_eq(frames[1]->function, "sleep");
    cr_assert_str_eq(frames[1]->file, "/srv/config.ru");
    cr_assert_eq(frames[1]->line, 4);
    cr_assert(frames[1]->core_method);
    cr_assert_eq(frames_role(frames[1]), FRAME_LIBRARY);
    /* The same method called from elsewhere is another frame. */
    cr_assert_neq(frames[3], frames[1]);
    cr_assert_eq(frames[3]->line, 12);
    frames_where(&(struct m_stack){.n = n, .frames = frames}, buf, sizeof(buf));
    cr_assert_str_eq(buf, "load_report (config.ru:4) in timed (config.ru:12)");
    free(frames);
    py_namer_free(nm);
}

/* test_formats.c - the export formats (folded, chrome, openmetrics, html, pprof) on a
 * synthetic dump: their syntax, and figures that agree with the model. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "dump.h"
#include "dump_builder.h"
#include "model.h"
#include "profile.pb-c.h"
#include "report.h"

static const uint64_t stack_a[] = {0x10, 0x20, 0x30};
static const uint64_t stack_b[] = {0x11, 0x21, 0x31};

struct fixture {
    struct dump_builder *b;
    struct dump *d;
    struct m_process *p;
};

/* One loop thread named with a quote (escaping), a blocking stall and a
 * CPU-bound one with two samples of different stacks: the two the ring kept
 * of the thread's 10 stalls, which lasted `stall_ns` in all (0: a dump from
 * before the thread table had the field). */
static void build_with(struct fixture *f, uint64_t stall_ns)
{
    const char *argv[] = {"python3", "app.py"};
    char *err = NULL;

    f->b = db_new(2, 2, 8192);
    db_set_process(f->b, 4321, "/usr/bin/python3", 2, argv);
    struct st_thread *t = db_add_thread(f->b, 4321, "py\"loop", ST_THREAD_LOOP | ST_THREAD_MAIN);
    t->iterations = 1000;
    t->busy_ns = 1200000000;
    t->idle_ns = 10800000000ull;
    t->max_busy_ns = 310000000;
    t->busy_hist[st_hist_bucket(100000)] = 990;
    t->busy_hist[st_hist_bucket(300000000)] = 10;
    t->stalls = 10;
    t->stall_ns = stall_ns;
    db_stall(f->b, 4321, ST_CALL_CLOCK_NANOSLEEP, 10, 1250000000, 301200000, stack_a, 3);
    db_stall(f->b, 4321, ST_CALL_NONE, 20, 2000000000, 150000000, NULL, 0);
    db_sample(f->b, 4321, 20, 2020000000, stack_a, 3);
    db_sample(f->b, 4321, 20, 2040000000, stack_b, 3);
    db_complete(f->b, 12000000000ull);
    f->d = dump_open_mem(f->b->buf, f->b->len, "synthetic", &err);
    cr_assert_not_null(f->d, "%s", err ? err : "");
    struct model_options opt = {.threshold_ms = -1};
    f->p = model_build(f->d, &opt);
    cr_assert_not_null(f->p);
}

static void build(struct fixture *f)
{
    build_with(f, 3010000000ull);
}

static void teardown(struct fixture *f)
{
    model_free(f->p);
    dump_free(f->d);
    db_free(f->b);
}

static char *render(struct fixture *f, report_write_fn *fn)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);

    cr_assert_eq(fn(mem, &f->p, 1, NULL), 0);
    fclose(mem);
    return buf;
}

Test(formats, folded_lines_sum_to_the_stalled_time)
{
    struct fixture f;
    build(&f);
    char *out = render(&f, report_folded), *save = NULL;
    long total = 0;
    int lines = 0;

    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *sp = strrchr(line, ' ');
        cr_assert_not_null(sp, "no weight in %s", line);
        cr_assert(strncmp(line, "python3;", 8) == 0, "root frame missing: %s", line);
        total += strtol(sp + 1, NULL, 10);
        lines++;
    }
    /* 301 ms at one stack; 150 ms split over two sampled stacks (75 + 75),
     * one of which is the same frames as the first stall. */
    cr_assert_eq(total, 301 + 150, "total %ld", total);
    cr_assert(lines >= 1 && lines <= 3, "lines %d", lines);
    free(out);
    teardown(&f);
}

#define LOOP_LABELS "{pid=\"4321\",tid=\"4321\",thread=\"py\\\"loop\"} "

static void expect_stall_counters(uint64_t stall_ns, const char *count, const char *secs)
{
    struct fixture f;
    char want_count[128], want_secs[128];
    build_with(&f, stall_ns);
    char *out = render(&f, report_openmetrics);
    snprintf(want_count, sizeof want_count, "stalltrace_stalls_total" LOOP_LABELS "%s\n", count);
    snprintf(want_secs, sizeof want_secs, "stalltrace_stall_seconds_total" LOOP_LABELS "%s\n", secs);
    cr_assert(strstr(out, want_count) && strstr(out, want_secs), "want %s and %s in:\n%s",
              want_count, want_secs, out);
    free(out);
    teardown(&f);
}

/* Counters must never go down: they come from the thread table, which
 * counts every stall, not from the ring, which forgets the oldest. An
 * older dump without stall_ns falls back on the ring's two. */
Test(formats, openmetrics_stall_counters_come_from_the_thread_table)
{
    expect_stall_counters(3010000000ull, "10", "3.01");
    expect_stall_counters(0, "2", "0.4512");
}

Test(formats, openmetrics_histogram_is_cumulative_and_ends_with_eof)
{
    struct fixture f;
    build(&f);
    char *out = render(&f, report_openmetrics);
    unsigned long long prev = 0, v;
    const char *p = out;

    cr_assert(strstr(out, "thread=\"py\\\"loop\"") != NULL, "label value not escaped:\n%s", out);
    while ((p = strstr(p, "stalltrace_loop_busy_seconds_bucket{"))) {
        const char *sp = strchr(strchr(p, '}'), ' ');
        v = strtoull(sp + 1, NULL, 10);
        cr_assert(v >= prev, "bucket went down: %llu < %llu", v, prev);
        prev = v;
        p = sp;
    }
    cr_assert_eq(prev, 1000);
    cr_assert(strstr(out, "le=\"0.000128\"} 990") != NULL, "990 iterations of 100 us by 128 us:\n%s", out);
    size_t n = strlen(out);
    cr_assert(n > 6 && strcmp(out + n - 6, "# EOF\n") == 0);
    free(out);
    teardown(&f);
}

Test(formats, chrome_trace_is_json_with_complete_events)
{
    struct fixture f;
    build(&f);
    char *out = render(&f, report_chrome);
    json_error_t err;
    json_t *doc = json_loads(out, 0, &err), *e;
    size_t i, x = 0, instants = 0;

    cr_assert_not_null(doc, "%s", err.text);
    json_array_foreach(json_object_get(doc, "traceEvents"), i, e) {
        const char *ph = json_string_value(json_object_get(e, "ph"));
        cr_assert_not_null(ph);
        cr_assert(json_is_number(json_object_get(e, "ts")) && json_is_integer(json_object_get(e, "pid")) &&
                  json_is_integer(json_object_get(e, "tid")));
        if (strcmp(ph, "X") == 0) {
            x++;
            cr_assert(json_number_value(json_object_get(e, "dur")) > 0);
        }
        instants += strcmp(ph, "i") == 0;
    }
    cr_assert_eq(x, 2);
    cr_assert_eq(instants, 2);
    json_decref(doc);
    free(out);
    teardown(&f);
}

Test(formats, html_embeds_the_report_without_a_closing_script_tag)
{
    struct fixture f;
    build(&f);
    /* A thread name that tries to end the data element early. */
    snprintf(f.p->threads[0].name, sizeof(f.p->threads[0].name), "</script><b>");
    char *out = render(&f, report_html);

    cr_assert(strstr(out, "<script type=\"application/json\" id=\"stalltrace-data\">") != NULL);
    cr_assert(strstr(out, "\\u003c/script>\\u003cb>") != NULL, "the name is not escaped");
    cr_assert(strstr(out, "http://") == NULL || strstr(out, "http://www.w3.org/2000/svg") != NULL);
    free(out);
    teardown(&f);
}

/* The pprof report, gunzipped and decoded by protobuf-c: what go tool pprof
 * checks (string 0 empty, every id it refers to defined) and the model's
 * totals in microseconds. */
Test(formats, pprof_decodes_with_the_stalled_time_and_its_references)
{
    struct fixture f;
    build(&f);
    char *gz = NULL;
    size_t gz_len = 0;
    FILE *mem = open_memstream(&gz, &gz_len);
    cr_assert_eq(report_pprof(mem, &f.p, 1, NULL), 0);
    fclose(mem);

    static uint8_t raw[1 << 20];
    z_stream z = {.next_in = (uint8_t *)gz, .avail_in = (uInt)gz_len, .next_out = raw, .avail_out = sizeof(raw)};
    cr_assert_eq(inflateInit2(&z, 31), Z_OK);
    cr_assert_eq(inflate(&z, Z_FINISH), Z_STREAM_END, "not one whole gzip stream");
    inflateEnd(&z);
    Perftools__Profiles__Profile *prof = perftools__profiles__profile__unpack(NULL, z.total_out, raw);
    cr_assert_not_null(prof, "protobuf-c cannot decode it");

    cr_assert(prof->n_string_table > 0 && strcmp(prof->string_table[0], "") == 0);
    cr_assert_eq(prof->n_sample_type, 5);
    cr_assert_str_eq(prof->string_table[prof->sample_type[0]->type], "stalled");
    cr_assert_str_eq(prof->string_table[prof->sample_type[0]->unit], "microseconds");
    int64_t stalled = 0, samples = 0;
    for (size_t i = 0; i < prof->n_sample; i++) {
        const Perftools__Profiles__Sample *s = prof->sample[i];
        cr_assert_eq(s->n_value, 5);
        stalled += s->value[0];
        samples += s->value[1];
        bool pid = false;
        for (size_t j = 0; j < s->n_label; j++)
            pid |= strcmp(prof->string_table[s->label[j]->key], "pid") == 0 && s->label[j]->num == 4321;
        cr_assert(pid, "sample %zu has no pid label", i);
        for (size_t j = 0; j < s->n_location_id; j++)
            cr_assert(s->location_id[j] >= 1 && s->location_id[j] <= prof->n_location);
    }
    cr_assert_eq(stalled, 301200 + 150000, "stalled %lld us", (long long)stalled);
    cr_assert_eq(samples, 2);
    for (size_t i = 0; i < prof->n_location; i++) {
        cr_assert_eq(prof->location[i]->id, i + 1);
        cr_assert(prof->location[i]->mapping_id <= prof->n_mapping);
        for (size_t j = 0; j < prof->location[i]->n_line; j++)
            cr_assert(prof->location[i]->line[j]->function_id >= 1 &&
                      prof->location[i]->line[j]->function_id <= prof->n_function);
    }
    for (size_t i = 0; i < prof->n_function; i++)
        cr_assert(prof->function[i]->name > 0 && (size_t)prof->function[i]->name < prof->n_string_table);
    perftools__profiles__profile__free_unpacked(prof, NULL);
    free(gz);
    teardown(&f);
}

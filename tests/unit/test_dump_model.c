/* test_dump_model.c - the report model from synthetic dumps: percentiles,
 * stalls joined with samples, in-progress stalls, sites and the diagnosis. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"
#include "dump_builder.h"
#include "model.h"
#include "report.h"

Test(dump_model, percentile_interpolates_within_a_bucket)
{
    uint64_t hist[ST_HIST_BUCKETS] = {0};

    cr_assert_eq(model_hist_quantile(hist, 0, 0.5), 0);
    /* 100 values in the 5 us bucket [5000, 6000) ns. */
    hist[st_hist_bucket(5000)] = 100;
    cr_assert_float_eq(model_hist_quantile(hist, 0, 0.5), 5500, 1e-6);
    cr_assert_float_eq(model_hist_quantile(hist, 5800, 0.5), 5400, 1e-6);
    cr_assert_float_eq(model_hist_quantile(hist, 5800, 1.0), 5800, 1e-6);
}

Test(dump_model, percentiles_of_a_spread_are_within_a_bucket_width)
{
    uint64_t hist[ST_HIST_BUCKETS] = {0};
    uint64_t v;

    for (v = 1; v <= 1000; v++)              /* 1..1000 ms, one each */
        hist[st_hist_bucket(v * 1000000)]++;
    double p50 = model_hist_quantile(hist, 1000000000, 0.5) / 1e6;
    double p99 = model_hist_quantile(hist, 1000000000, 0.99) / 1e6;
    cr_assert(p50 > 500 * 0.875 && p50 < 500 * 1.125, "p50 %f", p50);
    cr_assert(p99 > 990 * 0.875 && p99 <= 1000, "p99 %f", p99);
    cr_assert_float_eq(model_hist_quantile(hist, 1000000000, 1.0) / 1e6, 1000, 1e-6);
}

static const uint64_t stack_a[] = {0x10, 0x20, 0x30};
static const uint64_t stack_b[] = {0x11, 0x21, 0x31};

static struct dump_builder *two_stalls(void)
{
    struct dump_builder *b = db_new(2, 2, 8192);
    const char *argv[] = {"python3", "app.py"};
    db_set_process(b, 4321, "/usr/bin/python3", 2, argv);
    struct st_thread *t = db_add_thread(b, 4321, "python3", ST_THREAD_LOOP | ST_THREAD_MAIN);
    t->iterations = 1000;
    t->busy_ns = 1200000000;
    t->idle_ns = 10800000000ull;
    t->max_busy_ns = 310000000;
    t->busy_hist[st_hist_bucket(100000)] = 990;
    t->busy_hist[st_hist_bucket(300000000)] = 10;
    /* A blocking call, then a CPU-bound iteration with three samples. */
    db_stall(b, 4321, ST_CALL_CLOCK_NANOSLEEP, 10, 1250000000, 301200000, stack_a, 3);
    db_stall(b, 4321, ST_CALL_NONE, 20, 2000000000, 150000000, NULL, 0);
    db_sample(b, 4321, 20, 2020000000, stack_a, 3);
    db_sample(b, 4321, 20, 2040000000, stack_b, 3);
    db_sample(b, 4321, 20, 2060000000, stack_b, 3);
    db_sample(b, 4321, 99, 2060000000, stack_a, 3);  /* another iteration */
    return b;
}

static struct m_process *build(struct dump_builder *b, struct dump **d, double threshold)
{
    char *err = NULL;
    *d = dump_open_mem(b->buf, b->len, "m.dump", &err);
    cr_assert_not_null(*d, "%s", err);
    struct model_options opt = {.threshold_ms = threshold, .perf_map_dir = "/nonexistent"};
    struct m_process *p = model_build(*d, &opt);
    cr_assert_not_null(p);
    return p;
}

Test(dump_model, stalls_samples_and_loop_figures)
{
    struct dump_builder *b = two_stalls();
    struct dump *d;
    db_complete(b, 12500000000ull);
    struct m_process *p = build(b, &d, -1);

    cr_assert_eq(p->complete, true);
    cr_assert_float_eq(p->duration_s, 12.5, 1e-9);
    cr_assert_eq(p->nthreads, 1);
    cr_assert_eq(p->threads[0].is_loop, true);
    cr_assert_float_eq(p->threads[0].loop.utilization, 0.1, 1e-9);
    cr_assert_float_eq(p->threads[0].loop.max_ms, 310, 1e-9);
    cr_assert_lt(p->threads[0].loop.p50_ms, 0.2);

    cr_assert_eq(p->nstalls, 2);
    cr_assert_str_eq(p->stalls[0].call, "clock_nanosleep");
    cr_assert_float_eq(p->stalls[0].duration_ms, 301.2, 1e-9);
    cr_assert_float_eq(p->stalls[0].start_s, 1.25, 1e-9);
    cr_assert_eq(p->stalls[0].stack.n, 3);
    cr_assert_eq(p->stalls[0].nsamples, 0);

    cr_assert_null(p->stalls[1].call);
    cr_assert_eq(p->stalls[1].nsamples, 3);
    cr_assert_float_eq(p->stalls[1].samples[0].at_ms, 20, 1e-9);
    cr_assert_float_eq(p->stalls[1].samples[2].at_ms, 60, 1e-9);
    /* The stack seen most often among its samples. */
    cr_assert_eq(p->stalls[1].stack.n, 3);
    cr_assert_eq(p->stalls[1].stack.frames[0]->address, 0x11);

    cr_assert_eq(p->nsites, 2);
    cr_assert_eq(p->ndiagnosis, 1);
    cr_assert_str_eq(p->diagnosis[0].culprit, "event_loop_blocking");
    cr_assert(strstr(p->diagnosis[0].summary, "thread 4321 (python3) was blocked 2 times for up to 301 ms"),
              "%s", p->diagnosis[0].summary);
    cr_assert(strstr(p->diagnosis[0].summary, "mostly in clock_nanosleep"), "%s", p->diagnosis[0].summary);
    model_free(p);
    dump_free(d);
    db_free(b);
}

/* Two loop threads stalled at one site (libmicrohttpd's pool threads): the
 * sentence about the worst one counts its own calls, not the site's. */
Test(dump_model, the_worst_loops_calls_are_its_own)
{
    struct dump_builder *b = db_new(2, 2, 8192);
    db_add_thread(b, 5, "MHD-worker", ST_THREAD_LOOP);
    db_add_thread(b, 6, "MHD-worker", ST_THREAD_LOOP);
    db_stall_call(b, 5, ST_CALL_USLEEP, 1, 1, 300000000, 300000000, stack_a, 3);
    db_stall(b, 5, ST_CALL_USLEEP, 1, 1000000000, 300000000, stack_a, 3);
    db_stall_call(b, 5, ST_CALL_USLEEP, 2, 1, 300000000, 300000000, stack_a, 3);
    db_stall(b, 5, ST_CALL_USLEEP, 2, 2000000000, 300000000, stack_a, 3);
    /* The other thread's one stall held two calls (two requests in one iteration). */
    db_stall_call(b, 6, ST_CALL_USLEEP, 3, 2, 200000000, 100000000, stack_a, 3);
    db_stall(b, 6, ST_CALL_USLEEP, 3, 1000000000, 200000000, stack_a, 3);
    db_complete(b, 5000000000ull);
    struct dump *d;
    struct m_process *p = build(b, &d, -1);

    cr_assert_eq(p->nsites, 1);
    cr_assert_eq(p->sites[0].call_count, 4);
    cr_assert_eq(p->ndiagnosis, 1);
    const char *summary = p->diagnosis[0].summary;
    cr_assert(strstr(summary, "thread 5 (MHD-worker) was blocked 2 times for up to 300 ms (600 ms in all)"),
              "%s", summary);
    cr_assert(strstr(summary, "mostly in 2 x usleep, 600 ms in all"), "%s", summary);
    cr_assert(strstr(summary, "1 other loop thread stalled too"), "%s", summary);
    model_free(p);
    dump_free(d);
    db_free(b);
}

/* An rwlock's readers leave no tid: the story counts them, a writer is named. */
Test(dump_model, an_rwlock_held_by_readers_counts_them_and_a_writer_is_named)
{
    struct dump_builder *b = db_new(2, 3, 8192);
    db_add_thread(b, 5, "loop", ST_THREAD_LOOP);
    db_add_thread(b, 7, "writer", 0);
    db_stall(b, 5, ST_CALL_RWLOCK_WRLOCK, 1, 1000000000, 300000000, stack_a, 3);
    db_lock_holder(b, 5, 0, 2, ST_CALL_RWLOCK_WRLOCK, ST_OBJ_RWLOCK, 0x5000, 1000500000, 299000000);
    db_stall(b, 5, ST_CALL_RWLOCK_RDLOCK, 2, 2000000000, 250000000, stack_b, 3);
    db_lock_holder(b, 5, 7, 0, ST_CALL_RWLOCK_RDLOCK, ST_OBJ_RWLOCK, 0x5000, 2000500000, 249000000);
    db_complete(b, 5000000000ull);
    struct dump *d;
    struct m_process *p = build(b, &d, -1);

    cr_assert_eq(p->nholders, 2);
    cr_assert_eq(p->holders[0].tid, 0);
    cr_assert_eq(p->holders[0].readers, 2);
    cr_assert_eq(p->holders[1].tid, 7);
    cr_assert_eq(p->holders[1].readers, 0);
    char story[600];
    model_holder_story(p, &p->holders[0], story, sizeof story);
    cr_assert(strstr(story, "waited 299 ms for the rwlock 0x5000 held by 2 readers"), "%s", story);
    model_holder_story(p, &p->holders[1], story, sizeof story);
    cr_assert(strstr(story, "held by thread 7 (writer)"), "%s", story);
    cr_assert_eq(p->nstalls, 2);
    const struct m_holder *h = model_stall_blocked_by(p, &p->stalls[0]);
    cr_assert(h != NULL && h->tid == 0 && h->readers == 2);
    model_free(p);
    dump_free(d);
    db_free(b);
}

Test(dump_model, threshold_drops_short_stalls)
{
    struct dump_builder *b = two_stalls();
    struct dump *d;
    db_complete(b, 12500000000ull);
    struct m_process *p = build(b, &d, 200);
    cr_assert_eq(p->nstalls, 1);
    cr_assert_str_eq(p->stalls[0].call, "clock_nanosleep");
    model_free(p);
    dump_free(d);
    db_free(b);
}

Test(dump_model, a_killed_process_shows_its_stall_in_progress)
{
    struct dump_builder *b = two_stalls();
    struct dump *d;
    struct st_file_header *h = db_header(b);
    struct st_thread *t = (struct st_thread *)(b->buf + h->threads_offset);
    t->live_iter_seq = 99;
    t->live_iter_start_ns = 2050000000;
    h->last_update_ns = 2550000000;          /* killed 500 ms into iteration 99 */
    struct m_process *p = build(b, &d, -1);

    cr_assert_eq(p->complete, false);
    cr_assert_eq(p->nstalls, 3);
    const struct m_stall *st = &p->stalls[2];
    cr_assert_eq(st->in_progress, true);
    cr_assert_float_eq(st->duration_ms, 500, 1e-6);
    cr_assert_eq(st->nsamples, 1);
    cr_assert_float_eq(st->samples[0].at_ms, 10, 1e-6);
    cr_assert_eq(st->stack.n, 3);

    /* And in JSON, with the fields SPEC.md promises. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    report_json(f, &p, 1, NULL);
    fclose(f);
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);
    cr_assert_not_null(doc, "%s", jerr.text);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "format")), "stalltrace-report");
    json_t *proc = json_array_get(json_object_get(doc, "processes"), 0);
    cr_assert(json_is_false(json_object_get(proc, "attached")), "a preloaded dump is not attached");
    const char *keys[] = {"pid", "exe", "argv", "duration_s", "complete", "attached", "dropped_events", "threads",
                          "stalls", "pools", "locks", "diagnosis", NULL};
    for (int i = 0; keys[i]; i++)
        cr_assert_not_null(json_object_get(proc, keys[i]), "missing %s", keys[i]);
    json_t *stall = json_array_get(json_object_get(proc, "stalls"), 2);
    cr_assert(json_is_true(json_object_get(stall, "in_progress")));
    json_t *frame = json_array_get(json_object_get(stall, "stack"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(frame, "address")), "0x10");
    cr_assert(json_is_null(json_object_get(frame, "function")));
    cr_assert_str_eq(json_string_value(json_object_get(frame, "kind")), "native");
    json_t *thread = json_array_get(json_object_get(proc, "threads"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(thread, "role")), "loop");
    cr_assert_not_null(json_object_get(json_object_get(thread, "loop"), "p99_ms"));
    json_decref(doc);
    free(text);

    /* The text report says the recording is incomplete. */
    f = open_memstream(&text, &len);
    report_text(f, &p, 1, NULL);
    fclose(f);
    cr_assert(strstr(text, "recording incomplete"), "%s", text);
    cr_assert(strstr(text, "What to look at first"), "%s", text);
    free(text);
    model_free(p);
    dump_free(d);
    db_free(b);
}

Test(dump_model, stalls_group_by_site_and_recorder_frames_are_hidden)
{
    struct dump_builder *b = db_new(2, 2, 8192);
    /* 0x7f.. lies in the recorder: its frames never reach a report. */
    db_add_module(b, "/nonexistent/libstalltrace.so", 0x7f0000000000, 0x7f0000100000, 0, ST_MODULE_SELF);
    db_add_thread(b, 5, "srv", ST_THREAD_LOOP);
    const uint64_t with_self[] = {0x7f0000000100, 0x10, 0x20};
    db_stall(b, 5, ST_CALL_RECV, 1, 1000, 40000000, with_self, 3);
    const uint64_t same[] = {0x10, 0x20};
    db_stall(b, 5, ST_CALL_RECV, 2, 2000, 60000000, same, 2);
    db_stall(b, 5, ST_CALL_RECV, 3, 3000, 500000000, stack_b, 3);
    db_complete(b, 5000000000ull);
    struct dump *d;
    struct m_process *p = build(b, &d, -1);

    cr_assert_eq(p->nstalls, 3);
    cr_assert_eq(p->stalls[0].stack.n, 2, "the recorder's frame is dropped");
    cr_assert_eq(p->stalls[0].stack.frames[0]->address, 0x10);
    cr_assert_eq(p->nsites, 2);
    /* Worst first: one 500 ms stall beats two that total 100 ms. */
    cr_assert_eq(p->sites[0].count, 1);
    cr_assert_float_eq(p->sites[0].total_ms, 500, 1e-9);
    cr_assert_eq(p->sites[1].count, 2);
    cr_assert_float_eq(p->sites[1].max_ms, 60, 1e-9);
    cr_assert_float_eq(p->sites[1].total_ms, 100, 1e-9);
    cr_assert_eq(p->stalls[0].site, 1);
    cr_assert_eq(p->stalls[2].site, 0);

    /* Two dumps, two processes. */
    struct m_process *two[2] = {p, p};
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    report_json(f, two, 2, NULL);
    fclose(f);
    json_t *doc = json_loads(text, 0, NULL);
    cr_assert_eq(json_array_size(json_object_get(doc, "processes")), 2);
    json_decref(doc);
    free(text);
    model_free(p);
    dump_free(d);
    db_free(b);
}

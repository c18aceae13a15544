/* test_dump_fuzz.c - hostile bytes: bit flips in every byte of a synthetic
 * dump must give a model or a one-line error, never a crash or a hang. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"
#include "dump_builder.h"
#include "model.h"
#include "report.h"

static struct dump_builder *sample_dump(void)
{
    static const uint64_t frames[] = {0x401000, 0x402010, 0x7f0000001000, 0x403020};
    struct dump_builder *b = db_new_objects(3, 3, 2, 2048);
    const char *argv[] = {"server", "--port", "80"};
    size_t i;

    db_set_process(b, 42, "/usr/bin/server", 3, argv);
    db_add_module(b, "/nonexistent/server", 0x400000, 0x500000, 0, ST_MODULE_MAIN);
    db_add_module(b, "/nonexistent/libstalltrace.so", 0x7f0000000000, 0x7f0000100000,
                  0x7f0000000000, ST_MODULE_SELF);
    struct st_thread *t = db_add_thread(b, 42, "server", ST_THREAD_LOOP);
    t->iterations = 100;
    t->busy_ns = 500000000;
    t->idle_ns = 500000000;
    t->max_busy_ns = 90000000;
    t->busy_hist[st_hist_bucket(1000000)] = 90;
    t->busy_hist[st_hist_bucket(90000000)] = 10;
    t->live_iter_start_ns = 100;
    db_add_thread(b, 43, "worker", 0);
    for (i = 0; i < 12; i++) {
        db_stall(b, 42, i % 3 ? ST_CALL_NONE : ST_CALL_RECV, i, i * 100000000, 30000000, frames, 4);
        db_sample(b, 42, i, i * 100000000 + 20000000, frames + (i & 1), 3);
        if (i == 5)
            db_append_torn(b, 64);
    }
    db_slow_call(b, 43, ST_CALL_SEM_WAIT, 5, 50000000, frames, 2);
    /* A work queue worker 43 idles on, and a contended mutex. */
    struct st_object *q = db_add_object(b, 0x600000, ST_OBJ_COND);
    q->members = 1;
    q->handoffs = 4;
    q->saturated_ns = 60000000;
    db_set_bit(q->member_bits, 1);
    db_set_bit(q->waker_bits, 0);
    struct st_object *m = db_add_object(b, 0x600100, ST_OBJ_MUTEX);
    m->waits = 3;
    m->wait_ns = 90000000;
    db_saturation(b, 0x600000, 10, 60000000, 1);
    db_lock_wait(b, 42, ST_CALL_MUTEX_LOCK, ST_OBJ_MUTEX, 0x600100, 20, 30000000, 1, frames, 3);
    db_header(b)->last_update_ns = 2000000000;
    return b;
}

/* Open, and if accepted, build the model and render both formats. */
static int exercise(const uint8_t *buf, size_t len)
{
    char *err = NULL;
    struct dump *d = dump_open_mem(buf, len, "fuzz.dump", &err);
    if (!d) {
        cr_assert_not_null(err);
        cr_assert(strchr(err, '\n') == NULL);
        free(err);
        return 0;
    }
    struct model_options opt = {.threshold_ms = -1, .perf_map_dir = "/nonexistent"};
    struct m_process *p = model_build(d, &opt);
    cr_assert_not_null(p);
    FILE *devnull = fopen("/dev/null", "w");
    report_json(devnull, &p, 1, NULL);
    report_text(devnull, &p, 1, NULL);
    fclose(devnull);
    model_free(p);
    dump_free(d);
    return 1;
}

Test(dump_fuzz, the_sample_dump_is_valid)
{
    struct dump_builder *b = sample_dump();
    cr_assert_eq(exercise(b->buf, b->len), 1);
    db_free(b);
}

Test(dump_fuzz, a_bit_flip_in_every_byte, .timeout = 240)
{
    struct dump_builder *b = sample_dump();
    uint8_t *copy = malloc(b->len);
    unsigned seed = 12345;
    size_t i, accepted = 0;

    for (i = 0; i < b->len; i++) {
        memcpy(copy, b->buf, b->len);
        copy[i] ^= (uint8_t)(1u << (rand_r(&seed) % 8));
        accepted += (size_t)exercise(copy, b->len);
    }
    cr_assert_gt(accepted, 0);
    free(copy);
    db_free(b);
}

Test(dump_fuzz, random_bytes_over_random_places, .timeout = 240)
{
    struct dump_builder *b = sample_dump();
    uint8_t *copy = malloc(b->len);
    unsigned seed = 777;
    int iter, k;

    for (iter = 0; iter < 4000; iter++) {
        memcpy(copy, b->buf, b->len);
        int flips = 1 + rand_r(&seed) % 8;
        for (k = 0; k < flips; k++) {
            size_t at = (size_t)rand_r(&seed) % b->len;
            /* Bias towards the header and the ring, where the checks are. */
            if (k & 1)
                at = (size_t)rand_r(&seed) % sizeof(struct st_file_header);
            copy[at] = (uint8_t)rand_r(&seed);
        }
        exercise(copy, b->len);
    }
    free(copy);
    db_free(b);
}

/* Hostile volumes: many distinct stalls, many samples of one iteration and
 * repeated iterations must stay fast (no pairwise comparisons). */
Test(dump_fuzz, many_events_stay_fast, .timeout = 60)
{
    struct dump_builder *b = db_new(1, 2, 8u << 20);
    struct st_thread *t = db_add_thread(b, 7, "loop", ST_THREAD_LOOP);
    uint64_t frames[3];
    size_t i;

    t->live_iter_start_ns = 1;
    for (i = 0; i < 30000; i++) {
        frames[0] = 0x1000 + i;
        frames[1] = 0x2000 + i % 7;
        frames[2] = 0x3000;
        db_stall(b, 7, (uint16_t)(i % 3), i % 20000, i, 30000000, frames, 3);
        db_sample(b, 7, 5, i, frames, (uint16_t)(1 + i % 3));
    }
    db_header(b)->last_update_ns = 100000000000ull;
    cr_assert_eq(exercise(b->buf, b->len), 1);
    db_free(b);
}

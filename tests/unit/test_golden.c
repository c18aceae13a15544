/* test_golden.c - the text report of a fixed recording, byte for byte against
 * tests/unit/golden/NAME.expected (normalised: no colour, addresses as 0x?). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"
#include "dump_builder.h"
#include "model.h"
#include "report.h"

#ifndef GOLDEN_DIR
#error "GOLDEN_DIR must name tests/unit/golden"
#endif

/* An express-like service: a route handler sleeping four times in one
 * iteration (twice), and one CPU-bound iteration in a JSON encoder. */
static struct dump_builder *service(void)
{
    struct dump_builder *b = db_new(2, 2, 16384);
    const char *argv[] = {"node", "server.js", "--port", "8080"};
    db_set_process(b, 4242, "/usr/bin/node", 4, argv);
    struct st_thread *t = db_add_thread(b, 4242, "node", ST_THREAD_LOOP | ST_THREAD_MAIN);
    t->iterations = 5000;
    t->busy_ns = 2500000000ull;
    t->idle_ns = 7500000000ull;
    t->max_busy_ns = 1004000000;
    t->busy_hist[st_hist_bucket(200000)] = 4997;
    t->busy_hist[st_hist_bucket(300000000)] = 1;
    t->busy_hist[st_hist_bucket(1000000000)] = 2;
    db_jitsym(b, 0x10000, 0x100, "JS:*loadReport /srv/app/report.js:15:3");
    db_jitsym(b, 0x10100, 0x100, "JS:*handleReport /srv/app/routes.js:42:5");
    db_jitsym(b, 0x10200, 0x100, "JS:*encodeCatalog /srv/app/catalog.js:7:1");
    db_jitsym(b, 0x10300, 0x100, "JS:~stringify node:internal/json:1:1");
    const uint64_t sleeping[] = {0x10010, 0x10110}, encoding[] = {0x10310, 0x10210, 0x10110};
    for (uint64_t seq = 10; seq <= 20; seq += 10) {
        uint64_t start = seq * 100000000ull;
        db_stall_call(b, 4242, ST_CALL_CLOCK_NANOSLEEP, seq, 4, 1000000000, 250100000, sleeping, 2);
        db_stall_cpu(b, 4242, seq, 1010000000, 3000000, 0);
        db_stall(b, 4242, ST_CALL_CLOCK_NANOSLEEP, seq, start, 1004000000, sleeping, 2);
    }
    db_stall_cpu(b, 4242, 30, 310000000, 299000000, 1000000);
    db_stall(b, 4242, ST_CALL_NONE, 30, 6000000000ull, 301000000, NULL, 0);
    for (int i = 0; i < 6; i++)
        db_sample(b, 4242, 30, 6000000000ull + 40000000ull * (uint64_t)(i + 1), encoding, 3);
    db_complete(b, 10000000000ull);
    return b;
}

/* A healthy Python service: its loop mostly idle, two pool workers idle on
 * their work queue, and jemalloc's background thread sleeping on its own
 * condition in timed waits (2.8 s of them, nothing anyone competed for). */
static struct dump_builder *healthy_service(void)
{
    const uint64_t s = 1000000000ull;
    struct dump_builder *b = db_new_objects(2, 4, 4, 16384);
    const char *argv[] = {"python3", "app.py"};
    db_set_process(b, 4343, "/usr/bin/python3.11", 2, argv);
    struct st_thread *t = db_add_thread(b, 4343, "python3", ST_THREAD_LOOP | ST_THREAD_MAIN);
    t->iterations = 4000;
    t->busy_ns = 200000000ull;
    t->idle_ns = 2800000000ull;
    t->max_busy_ns = 4000000;
    t->busy_hist[st_hist_bucket(50000)] = 3990;
    t->busy_hist[st_hist_bucket(3000000)] = 10;
    for (uint32_t tid = 4344; tid <= 4345; tid++) {
        struct st_thread *w = db_add_thread(b, tid, "python3", 0);
        w->start_routine = 0x4000;
        w->created_ns = 0;
        w->pool_idle_ns = 2 * s + s / 2;
    }
    struct st_thread *bg = db_add_thread(b, 4346, "jemalloc_bg_thd", 0);
    bg->created_ns = 0;
    struct st_object *q = db_add_object(b, 0xa000, ST_OBJ_COND);
    q->members = 2;
    q->handoffs = 40;
    db_set_bit(q->member_bits, 1);
    db_set_bit(q->member_bits, 2);
    db_set_bit(q->waker_bits, 0);
    struct st_object *je = db_add_object(b, 0xe000, ST_OBJ_COND);
    je->members = 1;
    je->waits = 28;
    je->wait_ns = 2800000000ull;
    je->max_wait_ns = 100000000ull;
    je->timeouts = 28;
    db_set_bit(je->member_bits, 3);
    db_set_bit(je->waker_bits, 3);
    db_complete(b, 3 * s);
    return b;
}

static struct m_process *model_of(struct dump_builder *b, struct dump **d)
{
    char *err = NULL;
    *d = dump_open_mem(b->buf, b->len, "service.dump", &err);
    cr_assert_not_null(*d, "%s", err);
    struct model_options opt = {.threshold_ms = -1, .perf_map_dir = "/nonexistent"};
    struct m_process *p = model_build(*d, &opt);
    cr_assert_not_null(p);
    return p;
}

static char *render_text(struct dump_builder *b)
{
    char *text = NULL;
    size_t len = 0;
    struct dump *d;
    struct m_process *p = model_of(b, &d);
    FILE *f = open_memstream(&text, &len);
    setenv("NO_COLOR", "1", 1);
    cr_assert_eq(report_text(f, &p, 1, NULL), 0);
    fclose(f);
    model_free(p);
    dump_free(d);
    return text;
}

/* Addresses (0x...) vary with nothing the report is about: one spelling. */
static void normalise(char *s)
{
    char *in = s, *out = s;
    while (*in) {
        if (in[0] == '0' && in[1] == 'x') {
            *out++ = '0';
            *out++ = 'x';
            *out++ = '?';
            for (in += 2; (*in >= '0' && *in <= '9') || (*in >= 'a' && *in <= 'f'); in++)
                ;
            continue;
        }
        *out++ = *in++;
    }
    *out = '\0';
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* STALLTRACE_GOLDEN_UPDATE=1 writes the expected file from what is rendered. */
static void compare(const char *name, char *got)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.expected", GOLDEN_DIR, name);
    normalise(got);
    if (getenv("STALLTRACE_GOLDEN_UPDATE")) {
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f, "cannot write %s", path);
        fputs(got, f);
        fclose(f);
    }
    char *want = read_file(path);
    cr_assert_not_null(want, "%s is missing (STALLTRACE_GOLDEN_UPDATE=1 writes it)", path);
    cr_assert_str_eq(got, want, "the text report differs from %s:\n%s", path, got);
    free(want);
}

/* README.md shows the golden report: each of its lines, indented by four. */
Test(golden, readme_shows_the_golden_report)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/text_report.expected", GOLDEN_DIR);
    char *want = read_file(path), *readme = read_file(GOLDEN_DIR "/../../../README.md");
    cr_assert(want && readme);
    for (char *line = strtok(want, "\n"); line; line = strtok(NULL, "\n")) {
        char indented[1024];
        snprintf(indented, sizeof(indented), "\n    %s\n", line);
        cr_assert(strstr(readme, indented), "README.md lacks the golden line '%s'", line);
    }
    free(want);
    free(readme);
}

Test(golden, text_report_of_a_service)
{
    struct dump_builder *b = service();
    char *text = render_text(b);
    compare("text_report", text);
    free(text);
    db_free(b);
}

Test(golden, text_report_of_a_healthy_service)
{
    struct dump_builder *b = healthy_service();
    char *text = render_text(b);
    compare("text_report_healthy", text);
    cr_assert(strstr(text, "Nothing to fix") && !strstr(text, "Locks waited for") && !strstr(text, "(CPU)"),
              "%s", text);
    free(text);
    db_free(b);
}

/* jemalloc's sleeping thread is idle, not a lock: reports leave it out. */
Test(golden, a_runtime_thread_sleeping_on_its_own_condition_is_idle)
{
    struct dump_builder *b = healthy_service();
    struct dump *d;
    struct m_process *p = model_of(b, &d);
    cr_assert_eq(p->npools, 1);
    cr_assert_eq(p->nlocks, 1, "jemalloc's condition is a lock entry (JSON keeps it)");
    cr_assert(p->locks[0].idle && !p->locks[0].culprit);
    model_free(p);
    dump_free(d);
    db_free(b);
}

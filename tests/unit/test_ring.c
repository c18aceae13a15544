/* test_ring.c - the recorder's event ring, linked directly: wrap-around,
 * concurrent writers and torn records, read back by the protocol format.h
 * documents (commit word, live window, resync on ST_RECORD_ALIGN steps). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "stalltrace/format.h"
#include "../../preload/ring.h"

struct test_rec {
    struct st_record hdr;
    uint32_t writer, seq;
    uint32_t len;          /* payload bytes after this struct */
    uint32_t sum;          /* of the payload */
    uint8_t payload[];
};

struct ring_fixture {
    uint64_t head, records;
    struct st_ring ring;
};

static void ring_init(struct ring_fixture *f, uint64_t size)
{
    memset(f, 0, sizeof *f);
    f->ring.base = calloc(1, size);
    f->ring.size = size;
    f->ring.head = &f->head;
    f->ring.records = &f->records;
}

static uint32_t put(struct ring_fixture *f, uint32_t writer, uint32_t seq, uint32_t len)
{
    uint8_t buf[sizeof(struct test_rec) + 4096];
    struct test_rec *r = (struct test_rec *)buf;
    r->writer = writer;
    r->seq = seq;
    r->len = len;
    r->sum = 0;
    for (uint32_t i = 0; i < len; i++) {
        r->payload[i] = (uint8_t)(seq * 31 + i);
        r->sum += r->payload[i];
    }
    cr_assert_eq(st_ring_put(&f->ring, ST_REC_SAMPLE, r, sizeof *r + len), 0);
    return len;
}

/* Reads every committed record in the live window; checks each one whole. */
static size_t read_all(struct ring_fixture *f, uint32_t *seqs, size_t max)
{
    uint64_t size = f->ring.size, head = f->head;
    uint64_t pos = head > size ? head - size : 0;
    size_t n = 0;
    while (pos < head) {
        struct st_record *h = (struct st_record *)(f->ring.base + (pos & (size - 1)));
        if (h->pos != pos || h->magic != ST_RECORD_MAGIC || h->size < sizeof(struct st_record) ||
            h->size % ST_RECORD_ALIGN || pos + h->size > head) {
            pos += ST_RECORD_ALIGN;         /* torn or stale: resynchronise */
            continue;
        }
        uint8_t copy[sizeof(struct test_rec) + 4096];
        cr_assert_leq(h->size, sizeof copy);
        for (uint32_t i = 0; i < h->size; i++)
            copy[i] = f->ring.base[(pos + i) & (size - 1)];
        struct test_rec *r = (struct test_rec *)copy;
        uint32_t sum = 0;
        for (uint32_t i = 0; i < r->len; i++)
            sum += r->payload[i];
        cr_assert_eq(sum, r->sum, "record at %lu is damaged", (unsigned long)pos);
        if (n < max)
            seqs[n] = r->seq;
        n++;
        pos += h->size;
    }
    return n;
}

Test(ring, records_are_aligned_and_read_back_in_order)
{
    struct ring_fixture f;
    ring_init(&f, 4096);
    for (uint32_t i = 0; i < 10; i++)
        put(&f, 0, i, i * 3);
    uint32_t seqs[16];
    cr_assert_eq(read_all(&f, seqs, 16), 10);
    for (uint32_t i = 0; i < 10; i++)
        cr_assert_eq(seqs[i], i);
    cr_assert_eq(f.head % ST_RECORD_ALIGN, 0);
    cr_assert_eq(f.records, 10);
    free(f.ring.base);
}

Test(ring, wrap_around_keeps_the_newest_and_counts_the_rest)
{
    struct ring_fixture f;
    ring_init(&f, 1024);
    uint64_t starts[500];
    for (uint32_t i = 0; i < 500; i++) {
        starts[i] = f.head;
        put(&f, 0, i, 37 + i % 50);      /* odd sizes: records straddle the end */
    }
    uint32_t seqs[600];
    size_t n = read_all(&f, seqs, 600);
    /* Exactly the records that start inside the last ring_size bytes survive. */
    size_t expected = 0;
    for (uint32_t i = 0; i < 500; i++)
        expected += starts[i] >= f.head - f.ring.size;
    cr_assert_eq(n, expected);
    cr_assert_gt(n, 5);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(seqs[i], 500 - n + i, "not the newest records, in order");
    free(f.ring.base);
}

Test(ring, a_torn_record_is_skipped_and_the_next_one_found)
{
    struct ring_fixture f;
    ring_init(&f, 4096);
    put(&f, 0, 1, 10);
    /* A writer died after reserving: space taken, header never committed. */
    uint64_t torn = __atomic_fetch_add(&f.head, 128, __ATOMIC_RELAXED);
    f.records++;
    memset(f.ring.base + torn, 0xAB, 128);
    put(&f, 0, 2, 10);
    uint32_t seqs[4];
    cr_assert_eq(read_all(&f, seqs, 4), 2);
    cr_assert_eq(seqs[0], 1);
    cr_assert_eq(seqs[1], 2);
    cr_assert_eq(f.records - 2, 1, "the torn record counts as dropped");
    free(f.ring.base);
}

Test(ring, refuses_a_record_larger_than_half_the_ring)
{
    struct ring_fixture f;
    ring_init(&f, 1024);
    uint8_t big[600] = {0};
    cr_assert_eq(st_ring_put(&f.ring, ST_REC_SAMPLE, big, sizeof big), -1);
    cr_assert_eq(f.head, 0);
    free(f.ring.base);
}

struct writer_arg {
    struct ring_fixture *f;
    uint32_t id;
};

static void *writer(void *p)
{
    struct writer_arg *a = p;
    for (uint32_t i = 0; i < 20000; i++)
        put(a->f, a->id, i, (a->id * 7 + i) % 200);
    return NULL;
}

Test(ring, concurrent_writers_never_damage_each_other)
{
    struct ring_fixture f;
    ring_init(&f, 1 << 16);
    pthread_t threads[4];
    struct writer_arg args[4];
    for (uint32_t i = 0; i < 4; i++) {
        args[i] = (struct writer_arg){&f, i};
        pthread_create(&threads[i], NULL, writer, &args[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    cr_assert_eq(f.records, 80000);
    static uint32_t seqs[80000];
    size_t n = read_all(&f, seqs, 80000);   /* checks every record's payload */
    cr_assert_gt(n, 100);
    free(f.ring.base);
}

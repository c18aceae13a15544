/* test_ring.c - the recorder's event ring, linked directly: wrap-around,
 * concurrent and lapped writers and torn records, read back by the protocol
 * format.h documents (commit word, live window, resync, damage marks). */
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
    struct st_file_header hdr;     /* the ring's counters and damage marks */
    struct st_ring ring;
};

static void ring_init(struct ring_fixture *f, uint64_t size)
{
    memset(f, 0, sizeof *f);
    f->ring.base = calloc(1, size);
    f->ring.size = size;
    f->hdr.ring_size = size;
    f->ring.head = &f->hdr.ring_head;
    f->ring.records = &f->hdr.ring_records;
    f->ring.hdr = &f->hdr;
}

static void fill(struct test_rec *r, uint32_t writer, uint32_t seq, uint32_t len)
{
    r->writer = writer;
    r->seq = seq;
    r->len = len;
    r->sum = 0;
    for (uint32_t i = 0; i < len; i++) {
        r->payload[i] = (uint8_t)(seq * 31 + i);
        r->sum += r->payload[i];
    }
}

static uint32_t put(struct ring_fixture *f, uint32_t writer, uint32_t seq, uint32_t len)
{
    uint8_t buf[sizeof(struct test_rec) + 4096];
    struct test_rec *r = (struct test_rec *)buf;
    fill(r, writer, seq, len);
    cr_assert_eq(st_ring_put(&f->ring, ST_REC_SAMPLE, r, sizeof *r + len), 0);
    return len;
}

/* The two halves of a put, for a writer delayed between them. */
static uint64_t reserve_late(struct ring_fixture *f, uint32_t len)
{
    uint64_t at;
    cr_assert_eq(st_ring_reserve(&f->ring, sizeof(struct test_rec) + len, &at), 0);
    return at;
}

static void write_late(struct ring_fixture *f, uint64_t at, uint32_t seq, uint32_t len)
{
    uint8_t buf[sizeof(struct test_rec) + 4096];
    struct test_rec *r = (struct test_rec *)buf;
    fill(r, 9, seq, len);
    st_ring_write(&f->ring, at, ST_REC_SAMPLE, r, sizeof *r + len);
}

/* Reads every committed record in the live window; checks each one whole. */
static size_t read_all(struct ring_fixture *f, uint32_t *seqs, size_t max)
{
    uint64_t size = f->ring.size, head = f->hdr.ring_head;
    uint64_t pos = head > size ? head - size : 0;
    size_t n = 0;
    while (pos < head) {
        struct st_record *h = (struct st_record *)(f->ring.base + (pos & (size - 1)));
        if (h->pos != pos || h->magic != ST_RECORD_MAGIC || h->size < sizeof(struct st_record) ||
            h->size % ST_RECORD_ALIGN || pos + h->size > head) {
            pos += ST_RECORD_ALIGN;         /* torn or stale: resynchronise */
            continue;
        }
        if (st_ring_record_suspect(&f->hdr, pos, h->size)) {
            pos += h->size;                 /* a lapped writer's bytes may be in it */
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
    cr_assert_eq(f.hdr.ring_head % ST_RECORD_ALIGN, 0);
    cr_assert_eq(f.hdr.ring_records, 10);
    free(f.ring.base);
}

Test(ring, wrap_around_keeps_the_newest_and_counts_the_rest)
{
    struct ring_fixture f;
    ring_init(&f, 1024);
    uint64_t starts[500];
    for (uint32_t i = 0; i < 500; i++) {
        starts[i] = f.hdr.ring_head;
        put(&f, 0, i, 37 + i % 50);      /* odd sizes: records straddle the end */
    }
    uint32_t seqs[600];
    size_t n = read_all(&f, seqs, 600);
    /* Exactly the records that start inside the last ring_size bytes survive. */
    size_t expected = 0;
    for (uint32_t i = 0; i < 500; i++)
        expected += starts[i] >= f.hdr.ring_head - f.ring.size;
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
    uint64_t torn = __atomic_fetch_add(&f.hdr.ring_head, 128, __ATOMIC_RELAXED);
    f.hdr.ring_records++;
    memset(f.ring.base + torn, 0xAB, 128);
    put(&f, 0, 2, 10);
    uint32_t seqs[4];
    cr_assert_eq(read_all(&f, seqs, 4), 2);
    cr_assert_eq(seqs[0], 1);
    cr_assert_eq(seqs[1], 2);
    cr_assert_eq(f.hdr.ring_records - 2, 1, "the torn record counts as dropped");
    free(f.ring.base);
}

Test(ring, refuses_a_record_larger_than_half_the_ring)
{
    struct ring_fixture f;
    ring_init(&f, 1024);
    uint8_t big[600] = {0};
    cr_assert_eq(st_ring_put(&f.ring, ST_REC_SAMPLE, big, sizeof big), -1);
    cr_assert_eq(f.hdr.ring_head, 0);
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
    cr_assert_eq(f.hdr.ring_records, 80000);
    static uint32_t seqs[80000];
    size_t n = read_all(&f, seqs, 80000);   /* checks every record's payload */
    cr_assert_gt(n, 100);
    free(f.ring.base);
}

/* A writer preempted between its reservation and its stores while others
 * write a whole ring and more: its late bytes land on committed records of
 * the newer lap. Those are rejected (dropped), the rest still read back. */
Test(ring, a_lapped_writer_cannot_hand_readers_a_damaged_record)
{
    struct ring_fixture f;
    ring_init(&f, 1024);
    uint32_t aligned = (sizeof(struct test_rec) + 200 + ST_RECORD_ALIGN - 1) & ~(ST_RECORD_ALIGN - 1);
    put(&f, 0, 0, 40);
    uint64_t at = reserve_late(&f, 200);

    uint64_t starts[100];
    uint32_t n_put = 0;
    while (f.hdr.ring_head < at + f.ring.size + 600) {
        starts[n_put] = f.hdr.ring_head;
        put(&f, 1, n_put, 24 + n_put % 40);   /* odd sizes: one straddles the late bytes */
        n_put++;
    }
    write_late(&f, at, 9999, 200);
    cr_assert_eq(f.hdr.ring_lapped, 1);

    /* Expected: the live records that share no byte with the late write. */
    uint64_t head = f.hdr.ring_head, mask = f.ring.size - 1, late_off = at & mask;
    size_t expected = 0, hit = 0;
    for (uint32_t i = 0; i < n_put; i++) {
        uint64_t end = i + 1 < n_put ? starts[i + 1] : head;
        if (starts[i] < head - f.ring.size)
            continue;
        int overlaps = ((late_off - starts[i]) & mask) < end - starts[i] ||
                       ((starts[i] - late_off) & mask) < aligned;
        expected += !overlaps;
        hit += overlaps;
    }
    cr_assert_geq(hit, 2, "the late write must cover some newer record, %zu did", hit);
    uint32_t seqs[100];
    size_t n = read_all(&f, seqs, 100);       /* checks every accepted record's payload */
    cr_assert_eq(n, expected, "%zu records read, %zu expected", n, expected);
    for (size_t i = 0; i < n; i++)
        cr_assert_neq(seqs[i], 9999, "the lapped record itself was read");
    free(f.ring.base);
}

/* More lapped writers at once than damage slots: the coarse mark still
 * rejects every record they may have damaged, and records written after
 * them read back. */
Test(ring, lapped_writers_beyond_the_slots_still_reject_damaged_records)
{
    struct ring_fixture f;
    ring_init(&f, 1024);
    uint64_t at[ST_RING_DAMAGE_SLOTS + 1];
    for (unsigned i = 0; i <= ST_RING_DAMAGE_SLOTS; i++)
        at[i] = reserve_late(&f, 48);
    for (uint32_t i = 0; f.hdr.ring_head < at[ST_RING_DAMAGE_SLOTS] + 2 * f.ring.size; i++)
        put(&f, 1, i, 24);
    uint64_t lapped_at = f.hdr.ring_head;
    for (unsigned i = 0; i <= ST_RING_DAMAGE_SLOTS; i++)
        write_late(&f, at[i], 9000 + i, 48);
    cr_assert_eq(f.hdr.ring_lapped, ST_RING_DAMAGE_SLOTS + 1);
    cr_assert_eq(f.hdr.ring_suspect_below, lapped_at);
    uint32_t seqs[64];
    cr_assert_eq(read_all(&f, seqs, 64), 0, "a record reserved before the lapped writes was read");
    for (uint32_t i = 0; i < 10; i++)
        put(&f, 2, 100 + i, 24);
    cr_assert_eq(read_all(&f, seqs, 64), 10);
    cr_assert_eq(seqs[0], 100);
    free(f.ring.base);
}

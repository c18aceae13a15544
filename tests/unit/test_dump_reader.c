/* test_dump_reader.c - the dump reader on synthetic dumps: records found,
 * wrap-around, torn records, overwritten windows, and every error message. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dump.h"
#include "dump_builder.h"

static const uint64_t frames3[] = {0x401000, 0x402010, 0x403020};

static struct dump *open_ok(struct dump_builder *b)
{
    char *err = NULL;
    struct dump *d = dump_open_mem(b->buf, b->len, "test.dump", &err);
    cr_assert_not_null(d, "reader refused a valid dump: %s", err ? err : "?");
    cr_assert_null(err);
    return d;
}

static char *open_err(const void *buf, size_t len)
{
    char *err = NULL;
    struct dump *d = dump_open_mem(buf, len, "x.dump", &err);
    cr_assert_null(d, "reader accepted a bad dump");
    cr_assert_not_null(err);
    cr_assert(strchr(err, '\n') == NULL, "error is one line: %s", err);
    return err;
}

Test(dump_reader, finds_every_record_of_a_simple_dump)
{
    struct dump_builder *b = db_new(4, 4, 4096);
    const char *argv[] = {"python3", "app.py"};
    db_set_process(b, 1234, "/usr/bin/python3.11", 2, argv);
    db_add_module(b, "/usr/bin/python3.11", 0x400000, 0x500000, 0, ST_MODULE_MAIN);
    db_add_thread(b, 1234, "python3", ST_THREAD_LOOP | ST_THREAD_MAIN);
    db_stall(b, 1234, ST_CALL_CLOCK_NANOSLEEP, 7, 1000000, 300000000, frames3, 3);
    db_sample(b, 1234, 7, 21000000, frames3, 2);
    db_append_torn(b, 96);
    uint8_t junk[40] = {1, 2, 3};
    db_append(b, 77, junk, sizeof(junk));       /* a type from the future */
    db_slow_call(b, 1235, ST_CALL_SEM_WAIT, 5, 50000000, frames3, 1);
    db_complete(b, 12500000000ull);

    struct dump *d = open_ok(b);
    cr_assert_eq(d->proc.pid, 1234);
    cr_assert_str_eq(d->proc.exe, "/usr/bin/python3.11");
    cr_assert_eq(d->argc, 2);
    cr_assert_str_eq(d->argv[1], "app.py");
    cr_assert_eq(d->nmodules, 1);
    cr_assert_eq(d->nthreads, 1);
    cr_assert_str_eq(d->threads[0].name, "python3");
    cr_assert_eq(d->nevents, 3);
    cr_assert_eq(d->accepted, 4, "unknown types are seen, not dropped");
    cr_assert_eq(d->dropped, 1, "the torn record is the one dropped");

    cr_assert_eq(d->events[0].type, ST_REC_STALL);
    cr_assert_eq(d->events[0].call, ST_CALL_CLOCK_NANOSLEEP);
    cr_assert_eq(d->events[0].iter_seq, 7);
    cr_assert_eq(d->events[0].duration_ns, 300000000);
    cr_assert_eq(d->events[0].stack.nframes, 3);
    cr_assert_eq(d->events[0].stack.frames[2], 0x403020);
    cr_assert_eq(d->events[1].type, ST_REC_SAMPLE);
    cr_assert_eq(d->events[1].at_ns, 21000000);
    cr_assert_eq(d->events[1].stack.nframes, 2);
    cr_assert_eq(d->events[2].type, ST_REC_SLOW_CALL);
    cr_assert_eq(d->events[2].tid, 1235);
    cr_assert_str_eq(dump_call_name(d->events[2].call), "sem_wait");
    dump_free(d);
    db_free(b);
}

/* Records after the ring has wrapped: the overwritten ones are dropped, the
 * one across the end of the ring reads back intact. */
Test(dump_reader, wraps_and_drops_the_overwritten_window)
{
    struct dump_builder *b = db_new(1, 1, 1024);
    uint64_t frames[40], pos[64];
    size_t n = 0, i, wrapped = 0;

    for (i = 0; i < 40; i++)
        frames[i] = 0x7f0000000000ull + i * 16;
    /* 72 + 8 * 20 = 232 -> 240 bytes a record: not a divisor of 1024. */
    for (i = 0; i < 13; i++)
        pos[n++] = db_stall(b, 1, ST_CALL_READ, i, i * 1000, 30000000 + i, frames, 20);
    struct st_file_header *h = db_header(b);
    cr_assert_gt(h->ring_head, 2 * h->ring_size);
    db_complete(b, 1000000000);

    struct dump *d = open_ok(b);
    uint64_t lo = h->ring_head - h->ring_size;
    size_t expect = 0;
    for (i = 0; i < n; i++)
        if (pos[i] >= lo)
            expect++;
    cr_assert_eq(d->nevents, expect, "found %zu records, expected %zu", d->nevents, expect);
    cr_assert_eq(d->dropped, n - expect);
    for (i = 0; i < d->nevents; i++) {
        const struct dump_event *e = &d->events[i];
        size_t k = n - expect + i;
        cr_assert_eq(e->pos, pos[k]);
        cr_assert_eq(e->iter_seq, k);
        cr_assert_eq(e->duration_ns, 30000000 + k);
        cr_assert_eq(e->stack.nframes, 20);
        cr_assert_eq(memcmp(e->stack.frames, frames, 20 * 8), 0, "frames of record %zu", k);
        if ((e->pos & 1023) + 240 > 1024)
            wrapped++;
    }
    cr_assert_geq(wrapped, 1, "one record wraps around the end of the ring");
    dump_free(d);
    db_free(b);
}

Test(dump_reader, resyncs_after_a_torn_record_in_a_wrapped_ring)
{
    struct dump_builder *b = db_new(1, 1, 1024);
    size_t i;

    for (i = 0; i < 6; i++)
        db_stall(b, 1, ST_CALL_READ, i, 0, 1, frames3, 3);
    db_append_torn(b, 160);
    for (i = 6; i < 12; i++)
        db_stall(b, 1, ST_CALL_READ, i, 0, 1, frames3, 3);
    db_complete(b, 1);
    struct dump *d = open_ok(b);
    /* 96-byte records: the window keeps 3 before the torn one and 6 after. */
    cr_assert_eq(d->nevents, 9);
    cr_assert_eq(d->events[d->nevents - 1].iter_seq, 11);
    for (i = 1; i < d->nevents; i++)
        cr_assert_gt(d->events[i].pos, d->events[i - 1].pos);
    cr_assert_eq(d->dropped, 13 - d->nevents);
    dump_free(d);
    db_free(b);
}

Test(dump_reader, hostile_counters_are_clamped_not_trusted)
{
    struct dump_builder *b = db_new(1, 1, 1024);
    db_stall(b, 1, ST_CALL_READ, 1, 0, 1, frames3, 3);
    struct st_file_header *h = db_header(b);
    h->ring_records = 0;                      /* fewer than we find */
    struct dump *d = open_ok(b);
    cr_assert_eq(d->dropped, 0);
    dump_free(d);

    h->ring_head = UINT64_MAX - 3;            /* the window is the whole ring */
    d = open_ok(b);
    cr_assert_eq(d->nevents, 0);
    dump_free(d);
    db_free(b);
}

Test(dump_reader, a_stack_longer_than_its_record_is_dropped)
{
    struct dump_builder *b = db_new(1, 1, 1024);
    db_stall(b, 1, ST_CALL_READ, 1, 0, 1, frames3, 3);
    uint64_t p = db_stall(b, 1, ST_CALL_READ, 2, 0, 1, frames3, 3);
    struct st_file_header *h = db_header(b);
    /* Claim 200 frames in a record that holds 3. */
    uint16_t lie = 200;
    memcpy(b->buf + h->ring_offset + p + offsetof(struct st_rec_stall, stack), &lie, 2);
    struct dump *d = open_ok(b);
    cr_assert_eq(d->nevents, 1);
    cr_assert_eq(d->dropped, 1);
    dump_free(d);
    db_free(b);
}

Test(dump_reader, unterminated_strings_are_kept_truncated)
{
    struct dump_builder *b = db_new(1, 1, 1024);
    struct st_process *p = db_process(b);
    struct st_thread *t = db_add_thread(b, 9, "x", 0);
    memset(p->exe, 'e', sizeof(p->exe));
    memset(p->argv, 'a', sizeof(p->argv));
    p->argc = 1000000;
    p->argv_len = 999999;
    memset(t->name, 'n', sizeof(t->name));
    struct dump *d = open_ok(b);
    cr_assert_eq(strlen(d->proc.exe), ST_EXE_MAX - 1);
    cr_assert_eq(d->argc, 1);
    cr_assert_eq(strlen(d->argv[0]), ST_ARGV_MAX);
    cr_assert_eq(strlen(d->threads[0].name), ST_NAME_MAX - 1);
    dump_free(d);
    db_free(b);
}

Test(dump_reader, error_messages)
{
    struct dump_builder *b = db_new(2, 2, 1024);
    struct st_file_header *h = db_header(b);
    char *e;

    e = open_err("hello world, this is not a dump", 31);
    cr_assert_str_eq(e, "x.dump: not a stalltrace dump (bad magic)");
    free(e);
    e = open_err("", 0);
    cr_assert(strstr(e, "not a stalltrace dump"));
    free(e);

    e = open_err(b->buf, b->len - 100);
    char want[128];
    snprintf(want, sizeof(want), "x.dump: truncated (file is %zu bytes, header says %zu)",
             b->len - 100, b->len);
    cr_assert_str_eq(e, want);
    free(e);

    h->version = 7;
    e = open_err(b->buf, b->len);
    cr_assert_str_eq(e, "x.dump: format version 7, this stalltrace reads version 1");
    free(e);
    h->version = ST_FORMAT_VERSION;

    h->modules_offset = b->len - 10;
    e = open_err(b->buf, b->len);
    cr_assert_str_eq(e, "x.dump: corrupted (modules section outside the file)");
    free(e);
    h->modules_offset = UINT64_MAX - 100;
    free(open_err(b->buf, b->len));
    h->modules_offset = 1024;
    h->module_capacity = UINT32_MAX;
    h->module_size = UINT32_MAX;              /* the product overflows 32 bits */
    e = open_err(b->buf, b->len);
    cr_assert(strstr(e, "modules section outside the file"), "%s", e);
    free(e);
    db_free(b);

    b = db_new(2, 2, 1024);
    h = db_header(b);
    h->ring_size = 1000;
    e = open_err(b->buf, b->len);
    cr_assert(strstr(e, "not a power of two"), "%s", e);
    free(e);
    h->ring_size = 1024;
    h->thread_count = 3;
    e = open_err(b->buf, b->len);
    cr_assert(strstr(e, "thread count 3 exceeds capacity 2"), "%s", e);
    free(e);
    h->thread_count = 0;
    h->endian = __builtin_bswap32(ST_ENDIAN_MARK);
    e = open_err(b->buf, b->len);
    cr_assert(strstr(e, "other byte order"), "%s", e);
    free(e);
    db_free(b);
}

Test(dump_reader, every_truncation_is_an_error)
{
    struct dump_builder *b = db_new(2, 2, 1024);
    size_t len;

    db_stall(b, 1, ST_CALL_READ, 1, 0, 1, frames3, 3);
    for (len = 0; len < b->len; len++) {
        char *err = NULL;
        struct dump *d = dump_open_mem(b->buf, len, "t.dump", &err);
        cr_assert_null(d, "accepted a dump cut at %zu bytes", len);
        cr_assert_not_null(err);
        cr_assert(strstr(err, "truncated") || strstr(err, "not a stalltrace dump"),
                  "cut at %zu: %s", len, err);
        free(err);
    }
    db_free(b);
}

/* A small dump with one stall, written to a new file at path. */
static void write_one_stall(struct dump_builder *b, char *path, uint32_t flags)
{
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    db_stall(b, 1, ST_CALL_READ, 1, 0, 1, frames3, 3);
    db_header(b)->flags |= flags;
    cr_assert_eq(db_write(b, path), 0);
}

Test(dump_reader, opens_files_and_reports_missing_ones)
{
    struct dump_builder *b = db_new(2, 2, 1024);
    char path[] = "/tmp/st_reader_XXXXXX";
    char *err = NULL;

    write_one_stall(b, path, 0);
    /* Not marked complete: read the way a live dump is read. */
    struct dump *d = dump_open_path(path, &err);
    cr_assert_not_null(d, "%s", err);
    cr_assert_eq(d->live, 1);
    cr_assert_eq(d->nevents, 1);
    dump_free(d);

    uint64_t start;
    int32_t pid;
    cr_assert_eq(dump_peek_start(path, &start, &pid), 0);
    cr_assert_eq(start, db_header(b)->start_real_ns);
    unlink(path);

    d = dump_open_path(path, &err);
    cr_assert_null(d);
    cr_assert(strstr(err, "No such file"), "%s", err);
    free(err);
    d = dump_open_path("/tmp", &err);
    cr_assert_null(d);
    cr_assert(strstr(err, "not a regular file"), "%s", err);
    free(err);
    db_free(b);
}

/* A FIFO or a link is refused without blocking in open(), and a dump larger
 * than STALLTRACE_READ_MAX_MB is refused before anything is copied. */
Test(dump_reader, refuses_fifos_links_and_dumps_over_the_limit)
{
    struct dump_builder *b = db_new(2, 2, 1024);
    char path[] = "/tmp/st_reader_XXXXXX", fifo[64], link[64];
    char *err = NULL;
    uint64_t start;
    int32_t pid;

    write_one_stall(b, path, ST_FLAG_COMPLETE);
    snprintf(fifo, sizeof fifo, "%s.fifo", path);
    snprintf(link, sizeof link, "%s.link", path);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_assert_eq(symlink(path, link), 0);

    cr_assert_null(dump_open_path(fifo, &err));
    cr_assert(strstr(err, "not a regular file"), "%s", err);
    free(err);
    cr_assert_eq(dump_peek_start(fifo, &start, &pid), -1);
    cr_assert_null(dump_open_path(link, &err));
    cr_assert(strstr(err, "symbolic link"), "%s", err);
    free(err);

    /* The builder's dump is under 1 MB: a limit of 1 MB lets it through. */
    setenv("STALLTRACE_READ_MAX_MB", "1", 1);
    cr_assert_eq(dump_read_limit(), (uint64_t)1 << 20);
    struct dump *d = dump_open_path(path, &err);
    cr_assert_not_null(d, "%s", err);
    dump_free(d);
    struct dump_builder *big = db_new(1, 1, 2u << 20);
    char bigpath[] = "/tmp/st_reader_XXXXXX";
    write_one_stall(big, bigpath, ST_FLAG_COMPLETE);
    cr_assert_null(dump_open_path(bigpath, &err));
    cr_assert(strstr(err, "STALLTRACE_READ_MAX_MB"), "%s", err);
    free(err);
    unlink(bigpath);
    db_free(big);
    setenv("STALLTRACE_READ_MAX_MB", "lots", 1);
    cr_assert_eq(dump_read_limit(), (uint64_t)DUMP_READ_MAX_MB_DEFAULT << 20);
    unsetenv("STALLTRACE_READ_MAX_MB");

    unlink(fifo);
    unlink(link);
    unlink(path);
    db_free(b);
}

/* A recorder killed between shrinking its dump's file_size and truncating
 * the file leaves bytes past file_size: they are ignored, not an error. */
Test(dump_reader, bytes_past_file_size_are_what_a_compaction_gave_back)
{
    struct dump_builder *b = db_new(2, 2, 1024);
    char path[] = "/tmp/st_reader_XXXXXX";
    char *err = NULL;

    write_one_stall(b, path, ST_FLAG_COMPLETE);
    int fd = open(path, O_WRONLY | O_APPEND);
    static const char tail[8192] = {1};
    cr_assert_eq(write(fd, tail, sizeof tail), (ssize_t)sizeof tail);
    close(fd);
    struct dump *d = dump_open_path(path, &err);
    cr_assert_not_null(d, "%s", err);
    cr_assert_eq(d->nevents, 1);
    dump_free(d);
    unlink(path);
    db_free(b);
}

/* A dump read while its writer keeps going around a small ring: every
 * record the reader accepts must be one the writer wrote whole. */
Test(dump_reader, a_live_dump_gives_only_whole_records, .timeout = 30)
{
    struct dump_builder *proto = db_new(1, 1, 4096);
    char path[] = "/tmp/st_live_XXXXXX";
    int fd = mkstemp(path);
    size_t reads = 0, seen = 0;

    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, proto->buf, proto->len), (ssize_t)proto->len);
    uint8_t *map = mmap(NULL, proto->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(map, MAP_FAILED);
    struct dump_builder live = {.buf = map, .len = proto->len, .ring_size = proto->ring_size};

    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        uint64_t frames[ST_MAX_FRAMES], i, k;
        for (i = 1; i < 3000000; i++) {
            for (k = 0; k < ST_MAX_FRAMES; k++)
                frames[k] = i * 1000 + k;
            db_stall(&live, 1, ST_CALL_READ, i, i, i * 7, frames, (uint16_t)(1 + i % 40));
        }
        _exit(0);
    }
    /* Read only once the writer has gone around the ring a few times. */
    const struct st_file_header *h = (const struct st_file_header *)map;
    while (__atomic_load_n(&h->ring_head, __ATOMIC_ACQUIRE) < 4 * proto->ring_size)
        usleep(100);
    for (int round = 0; round < 2000; round++) {
        char *err = NULL;
        struct dump *d = dump_open_path(path, &err);
        cr_assert_not_null(d, "%s", err);
        reads++;
        for (size_t e = 0; e < d->nevents; e++) {
            const struct dump_event *ev = &d->events[e];
            uint64_t i = ev->iter_seq;
            cr_assert_eq(ev->duration_ns, i * 7, "record %llu torn", (unsigned long long)i);
            cr_assert_eq(ev->stack.nframes, 1 + i % 40);
            for (size_t k = 0; k < ev->stack.nframes; k++)
                cr_assert_eq(ev->stack.frames[k], i * 1000 + k, "frame %zu of record %llu torn", k,
                             (unsigned long long)i);
            seen++;
        }
        dump_free(d);
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    munmap(map, proto->len);
    close(fd);
    unlink(path);
    db_free(proto);
    cr_assert_gt(seen, 0, "%zu reads saw no record", reads);
}

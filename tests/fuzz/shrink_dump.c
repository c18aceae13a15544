/* shrink_dump.c - makes a small fuzzing seed from a real dump: tables cut to
 * the slots in use and the ring cut to its newest bytes, the layout re-laid. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stalltrace/format.h"

static uint64_t align_up(uint64_t v)
{
    return (v + ST_SECTION_ALIGN - 1) & ~(uint64_t)(ST_SECTION_ALIGN - 1);
}

static int fail(const char *what)
{
    fprintf(stderr, "shrink_dump: %s\n", what);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 4 && !(argc == 5 && strcmp(argv[4], "--detach") == 0))
        return fail("usage: shrink_dump IN OUT MAX_RING_BYTES [--detach]");
    /* --detach: module paths point nowhere, so analysing the seed reads no
     * ELF file (libdw on libc costs the fuzzer 30 ms an input). */
    int detach = argc == 5;
    uint64_t want_ring = strtoull(argv[3], NULL, 0);
    if (want_ring < 64 || (want_ring & (want_ring - 1)))
        return fail("MAX_RING_BYTES must be a power of two of at least 64");

    FILE *f = fopen(argv[1], "rb");
    if (!f)
        return fail("cannot open the input");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    uint8_t *in = malloc((size_t)len);
    if (!in || fread(in, 1, (size_t)len, f) != (size_t)len)
        return fail("cannot read the input");
    fclose(f);

    /* The input is our own recording: check only enough not to misread it. */
    struct st_file_header h;
    if ((size_t)len < sizeof(h))
        return fail("input shorter than a header");
    memcpy(&h, in, sizeof(h));
    if (memcmp(h.magic, ST_MAGIC, 8) || h.file_size != (uint64_t)len ||
        h.module_count > h.module_capacity || h.thread_count > h.thread_capacity)
        return fail("input is not a well-formed dump");

    /* Used object slots, packed (the reader scans every slot anyway). */
    uint32_t nobj = 0;
    for (uint32_t i = 0; i < h.object_capacity; i++) {
        uint64_t addr;
        memcpy(&addr, in + h.objects_offset + (uint64_t)i * h.object_size, sizeof(addr));
        nobj += addr != 0;
    }

    /* The smallest ring that holds every byte written, up to the wish. */
    uint64_t ring = 64;
    while (ring < h.ring_head && ring < want_ring)
        ring *= 2;
    if (ring > h.ring_size)
        ring = h.ring_size;
    struct st_file_header n = h;
    /* Damage marks name offsets in the old ring: kept as the coarse mark. */
    for (unsigned i = 0; i < ST_RING_DAMAGE_SLOTS; i++) {
        uint64_t until = h.ring_damage[i].until == 1 ? h.ring_head : h.ring_damage[i].until;
        if (until > n.ring_suspect_below)
            n.ring_suspect_below = until;
        n.ring_damage[i] = (struct st_ring_damage){0, 0};
    }
    n.process_offset = align_up(sizeof(n));
    n.modules_offset = align_up(n.process_offset + h.process_size);
    n.module_capacity = h.module_count;
    n.threads_offset = align_up(n.modules_offset + (uint64_t)h.module_count * h.module_size);
    n.thread_capacity = h.thread_count;
    n.objects_offset = align_up(n.threads_offset + (uint64_t)h.thread_count * h.thread_size);
    n.object_capacity = nobj;
    n.object_count = nobj;
    /* Task queues (annotation API), packed the same way: keyed by name_hash. */
    uint32_t nq = 0;
    for (uint32_t i = 0; i < h.queue_capacity; i++) {
        uint64_t hash;
        memcpy(&hash, in + h.queues_offset + (uint64_t)i * h.queue_size, sizeof(hash));
        nq += hash != 0;
    }
    n.queues_offset = nq ? align_up(n.objects_offset + (uint64_t)nobj * h.object_size) : 0;
    n.queue_capacity = nq;
    n.queue_count = nq;
    n.ring_offset = align_up(n.objects_offset + (uint64_t)nobj * h.object_size +
                             (uint64_t)nq * h.queue_size);
    n.ring_size = ring;
    n.file_size = n.ring_offset + ring;

    uint8_t *out = calloc(1, n.file_size);
    if (!out)
        return fail("out of memory");
    memcpy(out, &n, sizeof(n));
    memcpy(out + n.process_offset, in + h.process_offset, h.process_size);
    memcpy(out + n.modules_offset, in + h.modules_offset, (size_t)h.module_count * h.module_size);
    for (uint32_t i = 0; detach && i < h.module_count; i++) {
        struct st_module m;
        uint8_t *slot = out + n.modules_offset + (uint64_t)i * h.module_size;
        memcpy(&m, slot, sizeof(m));
        char path[ST_PATH_MAX];
        snprintf(path, sizeof(path), "/nonexistent%.*s", (int)(ST_PATH_MAX - 13), m.path);
        memcpy(m.path, path, sizeof(m.path));
        memcpy(slot, &m, sizeof(m));
    }
    memcpy(out + n.threads_offset, in + h.threads_offset, (size_t)h.thread_count * h.thread_size);
    uint32_t k = 0;
    for (uint32_t i = 0; i < h.object_capacity; i++) {
        const uint8_t *slot = in + h.objects_offset + (uint64_t)i * h.object_size;
        uint64_t addr;
        memcpy(&addr, slot, sizeof(addr));
        if (addr)
            memcpy(out + n.objects_offset + (uint64_t)k++ * h.object_size, slot, h.object_size);
    }
    k = 0;
    for (uint32_t i = 0; i < h.queue_capacity; i++) {
        const uint8_t *slot = in + h.queues_offset + (uint64_t)i * h.queue_size;
        uint64_t hash;
        memcpy(&hash, slot, sizeof(hash));
        if (hash)
            memcpy(out + n.queues_offset + (uint64_t)k++ * h.queue_size, slot, h.queue_size);
    }
    /* Each byte of the newest window moves from P % old to P % new; a record
     * that straddles the window's start is left torn, as the ring would. */
    uint64_t lo = h.ring_head > ring ? h.ring_head - ring : 0;
    for (uint64_t p = lo; p < h.ring_head; p++)
        out[n.ring_offset + (p & (ring - 1))] = in[h.ring_offset + (p & (h.ring_size - 1))];

    f = fopen(argv[2], "wb");
    if (!f || fwrite(out, 1, n.file_size, f) != n.file_size || fclose(f) != 0)
        return fail("cannot write the output");
    printf("%s: %ld -> %llu bytes (ring %llu, %u modules, %u threads, %u objects, %u queues)\n",
           argv[2], len, (unsigned long long)n.file_size, (unsigned long long)ring, h.module_count,
           h.thread_count, nobj, nq);
    free(in);
    free(out);
    return 0;
}

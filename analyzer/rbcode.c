/* rbcode.c - reads a CRuby 3.1 line table (st_ruby_linetable): the
 * succinct index that maps an instruction word to its line entry. */
#include <string.h>

#include "stalltrace/format.h"
#include "rbcode.h"

#define IMM_WORDS 54u                  /* words the immediate part covers */
#define BLOCK_WORDS 512u               /* words per st_ruby_succ_block */

/* How many entries start at or before word x; -1 when the bytes lack it. */
static int rank_of(const uint8_t *index, size_t len, uint32_t x)
{
    if (x < IMM_WORDS) {
        uint64_t imm;
        if ((size_t)(x / 9 + 1) * 8 > len)
            return -1;
        memcpy(&imm, index + (x / 9) * 8, sizeof imm);
        return (int)((imm >> (7 * (x % 9))) & 0x7f);
    }
    struct st_ruby_succ_block b;
    size_t at = (IMM_WORDS / 9) * 8 + (size_t)((x - IMM_WORDS) / BLOCK_WORDS) * sizeof b;
    if (at + sizeof b > len)
        return -1;
    memcpy(&b, index + at, sizeof b);
    uint32_t bit = (x - IMM_WORDS) % BLOCK_WORDS, part = bit / 64;
    uint32_t small = part == 0 ? 0 : (uint32_t)((b.small_ranks >> (9 * (part - 1))) & 0x1ff);
    uint64_t upto = b.bits[part] << (63 - bit % 64);     /* the bits at or below x */
    return (int)(b.rank + small + (uint32_t)__builtin_popcountll(upto));
}

int rb_linetable_line(const uint8_t *table, size_t len, uint32_t word)
{
    struct st_ruby_linetable h;
    if (len < sizeof h)
        return -1;
    memcpy(&h, table, sizeof h);
    size_t lines_end = sizeof h + 4 * (size_t)h.entries, index_at = (lines_end + 7) & ~(size_t)7;
    if (h.entries == 0 || h.entries > len || lines_end > len || word >= h.iseq_size)
        return -1;
    int rank = 1;
    if (h.entries > 1) {
        if (index_at > len)
            return -1;
        rank = rank_of(table + index_at, len - index_at, word);
    }
    if (rank < 1 || (uint32_t)rank > h.entries)
        return -1;
    int32_t line;
    memcpy(&line, table + sizeof h + 4 * (size_t)(rank - 1), sizeof line);
    return line > 0 ? line : -1;
}

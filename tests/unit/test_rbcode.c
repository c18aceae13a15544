/* test_rbcode.c - CRuby 3.1 line tables (rbcode.c): tables built here from
 * entry positions the way iseq.c lays out its succinct index, then read. */
#include <criterion/criterion.h>
#include <string.h>

#include "rbcode.h"
#include "stalltrace/format.h"

/* The st_ruby_linetable of an iseq of `words` words whose entry i starts
 * at word pos[i] (ascending, pos[0] == 0) with line lines[i]. */
static size_t build(uint8_t *out, uint32_t words, const uint32_t *pos, const int32_t *lines, uint32_t n)
{
    struct st_ruby_linetable h = {words, n};
    memcpy(out, &h, sizeof h);
    memcpy(out + sizeof h, lines, 4 * n);
    size_t at = (sizeof h + 4 * n + 7) & ~(size_t)7;
    uint32_t imm = (words + 8 < 54 ? words + 8 : 54) / 9, r = 0;
    for (uint32_t j = 0; j < imm; j++) {
        uint64_t v = 0;
        for (uint32_t i = 0; i < 9; i++) {
            if (r < n && pos[r] == j * 9 + i)
                r++;
            v |= (uint64_t)r << (7 * i);
        }
        memcpy(out + at, &v, 8);
        at += 8;
    }
    uint32_t blocks = words >= 54 ? (words - 54 + 511) / 512 : 0;
    for (uint32_t k = 0; k < blocks; k++) {
        struct st_ruby_succ_block b = {.rank = r};
        uint32_t small = 0;
        for (uint32_t j = 0; j < 8; j++) {
            if (j)
                b.small_ranks |= (uint64_t)small << (9 * (j - 1));
            for (uint32_t i = 0; i < 64; i++)
                if (r < n && pos[r] == k * 512 + j * 64 + i + 54) {
                    b.bits[j] |= 1ull << i;
                    r++;
                }
            small += (uint32_t)__builtin_popcountll(b.bits[j]);
        }
        memcpy(out + at, &b, sizeof b);
        at += sizeof b;
    }
    return at;
}

/* The line of word w by the positions themselves: the last entry at or before it. */
static int expected(uint32_t w, const uint32_t *pos, const int32_t *lines, uint32_t n)
{
    int line = -1;
    for (uint32_t i = 0; i < n && pos[i] <= w; i++)
        line = lines[i];
    return line;
}

Test(rbcode, small_iseq_uses_the_immediate_part)
{
    /* load_report: `sleep 0.25` on line 4, `"report"` on line 5. */
    static const uint32_t pos[] = {0, 5, 7};
    static const int32_t lines[] = {4, 5, 6};
    uint8_t t[256];
    size_t len = build(t, 9, pos, lines, 3);
    for (uint32_t w = 0; w < 9; w++)
        cr_expect_eq(rb_linetable_line(t, len, w), expected(w, pos, lines, 3), "word %u", w);
    cr_expect_eq(rb_linetable_line(t, len, 9), -1, "beyond the iseq");
}

Test(rbcode, large_iseq_crosses_succinct_blocks)
{
    enum { WORDS = 1400, N = 120 };
    uint32_t pos[N];
    int32_t lines[N];
    for (uint32_t i = 0; i < N; i++) {
        pos[i] = i == 0 ? 0 : (i * 11 + (i % 3)) % WORDS;     /* ascending: step 11 or more */
        lines[i] = (int32_t)(10 + 2 * i);
    }
    static uint8_t t[4096];
    size_t len = build(t, WORDS, pos, lines, N);
    for (uint32_t w = 0; w < WORDS; w++)
        cr_assert_eq(rb_linetable_line(t, len, w), expected(w, pos, lines, N), "word %u", w);
}

Test(rbcode, one_entry_needs_no_index)
{
    struct {
        struct st_ruby_linetable h;
        int32_t line;
    } t = {{3, 1}, 7};
    cr_expect_eq(rb_linetable_line((const uint8_t *)&t, sizeof t, 2), 7);
}

Test(rbcode, truncated_or_hostile_tables_say_nothing)
{
    static const uint32_t pos[] = {0, 60, 600};
    static const int32_t lines[] = {1, 2, 3};
    uint8_t t[512];
    size_t len = build(t, 700, pos, lines, 3);
    cr_expect_eq(rb_linetable_line(t, len, 650), 3);
    for (size_t cut = 0; cut < len; cut++) {
        int line = rb_linetable_line(t, cut, 650);
        cr_expect(line == -1, "cut at %zu gave %d", cut, line);
    }
    struct st_ruby_linetable h = {700, 0xffffffffu};
    memcpy(t, &h, sizeof h);
    cr_expect_eq(rb_linetable_line(t, len, 10), -1, "entries beyond the table");
}

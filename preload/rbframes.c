/* rbframes.c - CRuby's control frames, walked from inside the process.
 * One layout (3.1, checked below); any other Ruby: we step aside.
 */
#include <dlfcn.h>
#include <string.h>

#include "rbframes.h"
#include "recorder.h"

/* CRuby 3.1.2's layouts on x86_64, from offsetof() on its configured
 * source tree (Debian's ruby3.1 3.1.2-7 source package, ./configure
 * --enable-shared; VM_DEBUG_BP_CHECK 0, VM_INSN_INFO_TABLE_IMPL 2,
 * USE_ISEQ_NODE_ID 1, USE_RVARGC 0 as in Debian's libruby-3.1). */
enum {
    EC_VM_STACK = 0, EC_VM_STACK_SIZE = 8, EC_CFP = 16,         /* rb_execution_context_t */
    CFP_SIZE = 64, CFP_PC = 0, CFP_ISEQ = 16, CFP_EP = 32,       /* rb_control_frame_t */
    ISEQ_FLAGS = 0, ISEQ_BODY = 16,                              /* struct rb_iseq_struct */
    BODY_ISEQ_SIZE = 4, BODY_ISEQ_ENCODED = 8,                   /* rb_iseq_constant_body */
    BODY_PATHOBJ = 64, BODY_LABEL = 80, BODY_FIRST_LINENO = 88,  /* .location */
    BODY_INSNS_INFO = 120, BODY_INSNS_SIZE = 136, BODY_SUCC_INDEX = 144,
    INSN_INFO_SIZE = 12, INSN_INFO_LINE = 0,                     /* iseq_insn_info_entry */
    RSTRING_LEN = 16, RSTRING_PTR = 24, RSTRING_EMBED = 16,      /* struct RString */
    RARRAY_EMBED = 16, RARRAY_PTR = 32,                          /* struct RArray */
};
/* Flag bits (vm_core.h, ruby/internal/core/rstring.h, rarray.h, value_type.h, imemo.h). */
#define FRAME_FLAG_FINISH 0x20u                 /* in ep[0]: the first frame of an rb_vm_exec */
#define FRAME_FLAG_CFRAME 0x80u                 /* in ep[0]: a C function's frame */
#define T_MASK 0x1fu
#define T_STRING 0x05u
#define T_ARRAY 0x07u
#define T_IMEMO 0x1au
#define IMEMO_ISEQ 7u                           /* (flags >> FL_USHIFT) & 0xf */
#define FL_USHIFT 12
#define STRING_NOEMBED (1u << 13)
#define STRING_EMBED_LEN_MASK 0x7c000u
#define STRING_EMBED_LEN_SHIFT 14
#define ARRAY_EMBED (1u << 13)
#define SUCC_IMM_WORDS 54u                      /* iseq.c's IMMEDIATE_TABLE_SIZE */
#define SUCC_BLOCK_WORDS 512u

#define MAX_LINE_ENTRIES 128u
#define LINETABLE_MAX 2048u

static struct {
    int state;                     /* 0 unknown, 1 ready, -2 a Ruby we do not know */
    int tries;
    intptr_t ec_tls_offset;        /* ruby_current_ec, from the thread pointer */
} rb;

static uintptr_t peek_word(uintptr_t src)
{
    uintptr_t v = 0;
    return st_frames_peek(&v, src, sizeof v) ? v : 0;
}

void st_rb_init(void)
{
    if (rb.state != 0 || rb.tries++ > 16)
        return;
    const int *api = dlsym(RTLD_DEFAULT, "ruby_api_version");
    if (api == NULL)
        return;                    /* not (yet) a Ruby process: look again later */
    /* A TLS symbol: dlsym gives this thread's copy. libruby is loaded with
     * the program, so its TLS is in the static block, at the same offset
     * from every thread's pointer (below it, on x86_64): a signal handler
     * finds its thread's ec without dlsym or __tls_get_addr. */
    char *slot = dlsym(RTLD_DEFAULT, "ruby_current_ec");
    intptr_t offset = slot ? slot - (char *)__builtin_thread_pointer() : 0;
    int known = api[0] == 3 && api[1] == 1 && slot != NULL && offset < 0 && offset > -(1l << 24);
#if !defined(__x86_64__)
    known = 0;                     /* the table above is x86_64's */
#endif
    uintptr_t probe;
    if (known && !st_safe_read(&probe, (uintptr_t)slot, sizeof probe))
        known = 0;                 /* process_vm_readv refused: no safe way to read */
    rb.ec_tls_offset = offset;
    __atomic_store_n(&rb.state, known ? 1 : -2, __ATOMIC_RELEASE);
}

/* A String's bytes (heap or embedded), at most cap; 0 for anything else. */
static uint32_t peek_rstring(uintptr_t str, char *out, uint32_t cap)
{
    uint64_t s[5];
    if (str < 4096 || (str & 7) || !st_frames_peek(s, str, sizeof s) || (s[0] & T_MASK) != T_STRING)
        return 0;
    if (s[0] & STRING_NOEMBED) {
        uint64_t len = s[RSTRING_LEN / 8];
        uint32_t n = len < cap ? (uint32_t)len : cap;
        return n && st_frames_peek(out, s[RSTRING_PTR / 8], n) ? n : 0;
    }
    uint32_t len = (uint32_t)((s[0] & STRING_EMBED_LEN_MASK) >> STRING_EMBED_LEN_SHIFT);
    uint32_t n = len < cap ? len : cap;
    if (n > sizeof s - RSTRING_EMBED)
        return 0;
    memcpy(out, (const char *)s + RSTRING_EMBED, n);
    return n;
}

/* location.pathobj is the path, or [path, realpath]. */
static uint32_t peek_path(uintptr_t pathobj, char *out, uint32_t cap)
{
    uint64_t flags = 0;
    if (pathobj < 4096 || (pathobj & 7) || !st_frames_peek(&flags, pathobj, sizeof flags))
        return 0;
    if ((flags & T_MASK) == T_ARRAY)
        pathobj = flags & ARRAY_EMBED ? peek_word(pathobj + RARRAY_EMBED)
                                      : peek_word(peek_word(pathobj + RARRAY_PTR));
    return peek_rstring(pathobj, out, cap);
}

/* st_ruby_linetable into out (at most LINETABLE_MAX bytes); 0 when the
 * table cannot be kept. */
static uint32_t peek_linetable(uintptr_t body, uint8_t *out)
{
    uint32_t iseq_size = 0, entries = 0;
    uintptr_t info = peek_word(body + BODY_INSNS_INFO), succ = peek_word(body + BODY_SUCC_INDEX);
    if (!st_frames_peek(&iseq_size, body + BODY_ISEQ_SIZE, sizeof iseq_size) ||
        !st_frames_peek(&entries, body + BODY_INSNS_SIZE, sizeof entries) || info == 0 ||
        entries == 0 || entries > MAX_LINE_ENTRIES || (entries > 1 && succ == 0))
        return 0;
    uint32_t imm = entries > 1 ? (iseq_size + 8 < SUCC_IMM_WORDS ? iseq_size + 8 : SUCC_IMM_WORDS) / 9 : 0;
    uint32_t blocks = entries > 1 && iseq_size >= SUCC_IMM_WORDS
                          ? (iseq_size - SUCC_IMM_WORDS + SUCC_BLOCK_WORDS - 1) / SUCC_BLOCK_WORDS : 0;
    uint32_t lines_end = (uint32_t)sizeof(struct st_ruby_linetable) + 4 * entries;
    uint32_t index_at = (lines_end + 7) & ~7u;
    uint32_t index_len = imm * 8 + blocks * (uint32_t)sizeof(struct st_ruby_succ_block);
    if (blocks > LINETABLE_MAX || index_at + index_len > LINETABLE_MAX)
        return 0;
    uint8_t raw[MAX_LINE_ENTRIES * INSN_INFO_SIZE];
    if (!st_frames_peek(raw, info, entries * INSN_INFO_SIZE))
        return 0;
    struct st_ruby_linetable h = {iseq_size, entries};
    memcpy(out, &h, sizeof h);
    for (uint32_t i = 0; i < entries; i++)
        memcpy(out + sizeof h + 4 * i, raw + i * INSN_INFO_SIZE + INSN_INFO_LINE, 4);
    memset(out + lines_end, 0, index_at - lines_end);
    if (index_len && !st_frames_peek(out + index_at, succ, index_len))
        return 0;
    return index_at + index_len;
}

/* Write the iseq's label, path and line table once per address and ring
 * lap, as note_code does for CPython's code objects. */
static void note_iseq(uintptr_t iseq, uintptr_t body)
{
    if (!st_code_first_in_lap(iseq))
        return;
    union {
        struct st_rec_pycode rec;
        uint8_t bytes[sizeof(struct st_rec_pycode) + 256 + 512 + LINETABLE_MAX];
    } buf;
    struct st_rec_pycode *r = &buf.rec;
    memset(r, 0, sizeof *r);
    char *data = (char *)(r + 1);
    uint64_t first_lineno = peek_word(body + BODY_FIRST_LINENO);
    r->code = iseq;
    r->firstlineno = (first_lineno & 1) && (int64_t)first_lineno > 0 ? (uint32_t)(first_lineno >> 1) : 0;
    r->py_version = 0x0301;
    r->language = ST_CODE_CRUBY;
    r->qualname_len = (uint16_t)peek_rstring(peek_word(body + BODY_LABEL), data, 256);
    r->filename_len = (uint16_t)peek_path(peek_word(body + BODY_PATHOBJ), data + r->qualname_len, 512);
    uint8_t *lt = (uint8_t *)data + r->qualname_len + r->filename_len;
    r->linetable_len = (uint16_t)peek_linetable(body, lt);
    st_ring_put(&st_rec.ring, ST_REC_PYCODE, r,
                sizeof *r + r->qualname_len + r->filename_len + r->linetable_len);
}

unsigned st_rb_walk(struct st_pyframe *out, unsigned max, uint8_t *status, int own_context)
{
    *status = ST_PY_NONE;
    int state = __atomic_load_n(&rb.state, __ATOMIC_ACQUIRE);
    if (state != 1) {
        if (state == -2)
            *status = ST_PY_UNSUPPORTED;
        return 0;
    }
    st_frames_own(own_context);
    uintptr_t slot = (uintptr_t)((char *)__builtin_thread_pointer() + rb.ec_tls_offset);
    uintptr_t ec = peek_word(slot), e[3];
    unsigned n = 0;
    if (ec == 0)
        goto done;                 /* a thread that runs no Ruby */
    *status = ST_PY_IMPLAUSIBLE;
    if (!st_frames_peek(e, ec, sizeof e))
        goto done;
    uintptr_t stack = e[EC_VM_STACK / 8], cfp = e[EC_CFP / 8];
    uintptr_t end = stack + e[EC_VM_STACK_SIZE / 8] * 8;
    if (e[EC_VM_STACK_SIZE / 8] > (1u << 26) || cfp < stack || cfp > end || (cfp & 7))
        goto done;
    *status = ST_PY_OK;
    /* Control frames grow down from the stack's end: the caller's is next. */
    for (unsigned steps = 0; cfp + CFP_SIZE <= end; cfp += CFP_SIZE, steps++) {
        uintptr_t f[CFP_EP / 8 + 1], flags, head[ISEQ_BODY / 8 + 1], code[2];
        if (steps > 64 * ST_MAX_PYFRAMES || !st_frames_peek(f, cfp, sizeof f) ||
            !st_frames_peek(&flags, f[CFP_EP / 8], sizeof flags)) {
            *status = ST_PY_IMPLAUSIBLE;
            break;
        }
        uintptr_t pc = f[CFP_PC / 8], iseq = f[CFP_ISEQ / 8];
        if ((flags & FRAME_FLAG_CFRAME) || iseq == 0 || pc == 0) {
            /* A C function's frame: its native frames show it. When it
             * began a VM entry, the Ruby frame inside it ends that run. */
            if ((flags & FRAME_FLAG_FINISH) && n > 0)
                out[n - 1].flags |= ST_PYFRAME_ENTRY;
            continue;
        }
        if (!st_frames_peek(head, iseq, sizeof head) || (head[0] & T_MASK) != T_IMEMO ||
            ((head[0] >> FL_USHIFT) & 0xf) != IMEMO_ISEQ ||
            !st_frames_peek(code, head[ISEQ_BODY / 8], sizeof code)) {
            *status = ST_PY_IMPLAUSIBLE;
            break;
        }
        if (n == max) {
            *status = ST_PY_TRUNCATED;
            break;
        }
        uintptr_t body = head[ISEQ_BODY / 8], encoded = code[BODY_ISEQ_ENCODED / 8];
        uint32_t iseq_size = (uint32_t)(code[0] >> 32);        /* BODY_ISEQ_SIZE */
        /* pc is past the current instruction once it started (iseq.c's calc_pos). */
        uint64_t word = pc >= encoded ? (pc - encoded) / 8 : UINT64_MAX;
        out[n].code = iseq;
        out[n].instr = word <= iseq_size ? (uint32_t)(word ? word - 1 : 0) : UINT32_MAX;
        out[n].flags = ST_PYFRAME_RUBY | (flags & FRAME_FLAG_FINISH ? ST_PYFRAME_ENTRY : 0);
        n++;
        note_iseq(iseq, body);
    }
done:
    st_frames_own(0);
    return n;
}

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
    RARRAY_EMBED = 16, RARRAY_LEN = 16, RARRAY_PTR = 32,         /* struct RArray */
    EP_ME_CREF = -16,                                            /* ep[-2]: a C frame's method entry */
    ME_DEF = 16, DEF_ORIGINAL_ID = 32,                           /* method.h: rb_method_entry_t, _definition_t */
    SYMS_LAST_ID = 0, SYMS_IDS = 16,                             /* symbol.h: rb_symbols_t */
    ID_ENTRY_UNIT = 512, LAST_OP_ID = 0xa9,                      /* symbol.c, id.h's tLAST_OP_ID */
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
#define FRAME_MAGIC_MASK 0x7fff0001u             /* in ep[0]: the frame's type */
#define FRAME_MAGIC_CFUNC 0x55550001u
#define IMEMO_MENT 6u
#define ARRAY_EMBED_LEN_SHIFT 15                /* 2 bits with USE_RVARGC 0 */
#define QNIL 8u
#define STATIC_SYM_FLAG 0x0cu                   /* RUBY_SYMBOL_FLAG; the ID is sym >> 8 */
#define SUCC_IMM_WORDS 54u                      /* iseq.c's IMMEDIATE_TABLE_SIZE */
#define SUCC_BLOCK_WORDS 512u

/* With node ids (USE_ISEQ_NODE_ID), most instructions have an entry of
 * their own: puma's handle_request has hundreds. */
#define MAX_LINE_ENTRIES 1024u
#define LINETABLE_MAX 6144u
#define ENTRIES_PER_READ 64u

static struct {
    int state;                     /* 0 unknown, 1 ready, -2 a Ruby we do not know */
    int tries;
    intptr_t ec_tls_offset;        /* ruby_current_ec, from the thread pointer */
    uintptr_t symbols;             /* ruby_global_symbols, 0 when not found */
    int symbols_state;             /* 0 not checked yet, 1 names read right, -1 never use */
} rb;

/* ruby_global_symbols is not exported: rb_id2str (exported) turns the ID
 * into its serial and jumps to get_id_serial_entry, which compares the
 * serial with symbols.last_id and loads symbols.ids 16 bytes further, both
 * RIP-relative. Only this exact code is trusted; its names are checked too
 * (symbols_read_right) before any is used. */
static uintptr_t find_global_symbols(void)
{
    static const uint8_t id2str[] = {
        0x48, 0x89, 0xf8, 0x48, 0xc1, 0xe8, 0x04,                /* mov %rdi,%rax; shr $4,%rax */
        0x48, 0x81, 0xff, 0xa9, 0x00, 0x00, 0x00,                /* cmp $tLAST_OP_ID,%rdi */
        0x0f, 0x47, 0xf8, 0x31, 0xf6, 0xe9,                      /* cmova; xor %esi,%esi; jmp */
    };
    uintptr_t f = (uintptr_t)dlsym(RTLD_DEFAULT, "rb_id2str");
    uint8_t head[sizeof id2str + 4], body[96];
    int32_t rel;
    if (!f || !st_safe_read(head, f, sizeof head) || memcmp(head, id2str, sizeof id2str) != 0)
        return 0;
    memcpy(&rel, head + sizeof id2str, sizeof rel);
    uintptr_t g = f + sizeof head + (intptr_t)rel;
    if (!st_safe_read(body, g, sizeof body))
        return 0;
    for (unsigned i = 0; i + 6 + 7 <= sizeof body; i++) {
        if (body[i] != 0x39 || body[i + 1] != 0x3d)         /* cmp %edi,last_id(%rip) */
            continue;
        int32_t d1, d2;
        memcpy(&d1, body + i + 2, sizeof d1);
        uintptr_t last_id = g + i + 6 + (intptr_t)d1;
        for (unsigned j = i + 6; j + 7 <= sizeof body && j < i + 6 + 16; j++) {
            if (body[j] != 0x48 || body[j + 1] != 0x8b || body[j + 2] != 0x3d)   /* mov ids(%rip),%rdi */
                continue;
            memcpy(&d2, body + j + 3, sizeof d2);
            if (g + j + 7 + (intptr_t)d2 == last_id + SYMS_IDS)
                return last_id - SYMS_LAST_ID;
        }
        return 0;
    }
    return 0;
}

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
    rb.symbols = known ? find_global_symbols() : 0;
    rb.symbols_state = rb.symbols ? 0 : -1;
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

/* Element i of an Array, 0 when it is none. The symbol table is shared
 * with threads that run while this one waits: always read it safely. */
static uintptr_t safe_ary_entry(uintptr_t ary, uint64_t i)
{
    uint64_t a[5], v = 0;
    if (ary < 4096 || (ary & 7) || !st_safe_read(a, ary, sizeof a) || (a[0] & T_MASK) != T_ARRAY)
        return 0;
    int embedded = (a[0] & ARRAY_EMBED) != 0;
    uint64_t len = embedded ? (a[0] >> ARRAY_EMBED_LEN_SHIFT) & 3 : a[RARRAY_LEN / 8];
    if (i >= len)
        return 0;
    if (embedded)
        return a[RARRAY_EMBED / 8 + i];
    return st_safe_read(&v, a[RARRAY_PTR / 8] + 8 * i, sizeof v) ? v : 0;
}

/* An ID's name as rb_id2str finds it (symbol.c's get_id_serial_entry):
 * ids[serial / 512][(serial % 512) * 2] is its String, the next entry its
 * Symbol, which must be the static Symbol of this very ID. 0 on anything else. */
static uint32_t id_name(uint64_t id, char *out, uint32_t cap)
{
    uint64_t serial = id > LAST_OP_ID ? id >> 4 : id;
    uint32_t last_id = 0;
    uintptr_t ids = 0;
    if (serial == 0 || !st_safe_read(&last_id, rb.symbols + SYMS_LAST_ID, sizeof last_id) ||
        serial > last_id || !st_safe_read(&ids, rb.symbols + SYMS_IDS, sizeof ids))
        return 0;
    uintptr_t chunk = safe_ary_entry(ids, serial / ID_ENTRY_UNIT);
    uint64_t at = (serial % ID_ENTRY_UNIT) * 2;
    uintptr_t str = safe_ary_entry(chunk, at), sym = safe_ary_entry(chunk, at + 1);
    if (str == 0 || str == QNIL || (sym & 0xff) != STATIC_SYM_FLAG || (sym >> 8) != id)
        return 0;
    int own = st_frames_owning();
    st_frames_own(0);
    uint32_t n = peek_rstring(str, out, cap);
    st_frames_own(own);
    return n;
}

/* The operators' IDs are their characters (symbol.c's Init_op_tbl): when
 * they read back as themselves, the table is the one we think. */
static int symbols_read_right(void)
{
    int state = __atomic_load_n(&rb.symbols_state, __ATOMIC_RELAXED);
    if (state != 0)
        return state > 0;
    uint32_t last_id = 0;
    uintptr_t ids = 0;
    if (!st_safe_read(&last_id, rb.symbols + SYMS_LAST_ID, sizeof last_id) || last_id < LAST_OP_ID ||
        !st_safe_read(&ids, rb.symbols + SYMS_IDS, sizeof ids) || ids == 0 || ids == QNIL)
        return 0;                  /* not filled in yet (before Init_sym): look again next time */
    char name[2];
    for (const char *op = "+-*<"; *op; op++)
        if (id_name((uint64_t)(unsigned char)*op, name, sizeof name) != 1 || name[0] != *op) {
            __atomic_store_n(&rb.symbols_state, -1, __ATOMIC_RELAXED);
            return 0;
        }
    __atomic_store_n(&rb.symbols_state, 1, __ATOMIC_RELAXED);
    return 1;
}

/* A C method's frame, named by its method entry's original_id as Ruby's
 * backtraces name it; its code record is keyed by that ID (IDs are small
 * numbers, never an iseq's address). 0 when it cannot be named. */
static uint64_t cfunc_id(uintptr_t ep)
{
    uintptr_t me = peek_word(ep + (uintptr_t)(intptr_t)EP_ME_CREF), flags = 0;
    if (me < 4096 || (me & 7) || !st_frames_peek(&flags, me, sizeof flags) || (flags & T_MASK) != T_IMEMO ||
        ((flags >> FL_USHIFT) & 0xf) != IMEMO_MENT)
        return 0;
    uint64_t id = peek_word(peek_word(me + ME_DEF) + DEF_ORIGINAL_ID);
    return id > 0 && id < (1ull << 40) ? id : 0;
}

static int note_cfunc(uint64_t id)
{
    if (!symbols_read_right())
        return 0;
    union {
        struct st_rec_pycode rec;
        uint8_t bytes[sizeof(struct st_rec_pycode) + 256];
    } buf;
    struct st_rec_pycode *r = &buf.rec;
    memset(r, 0, sizeof *r);
    r->qualname_len = (uint16_t)id_name(id, (char *)(r + 1), 256);
    if (r->qualname_len == 0)
        return 0;
    if (!st_code_first_in_lap(id))
        return 1;
    r->code = id;
    r->py_version = 0x0301;
    r->language = ST_CODE_CRUBY;
    st_ring_put(&st_rec.ring, ST_REC_PYCODE, r, sizeof *r + r->qualname_len);
    return 1;
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
    uint8_t raw[ENTRIES_PER_READ * INSN_INFO_SIZE];
    struct st_ruby_linetable h = {iseq_size, entries};
    memcpy(out, &h, sizeof h);
    for (uint32_t at = 0; at < entries; at += ENTRIES_PER_READ) {
        uint32_t k = entries - at < ENTRIES_PER_READ ? entries - at : ENTRIES_PER_READ;
        if (!st_frames_peek(raw, info + (uintptr_t)at * INSN_INFO_SIZE, k * INSN_INFO_SIZE))
            return 0;
        for (uint32_t i = 0; i < k; i++)
            memcpy(out + sizeof h + 4 * (at + i), raw + i * INSN_INFO_SIZE + INSN_INFO_LINE, 4);
    }
    memset(out + lines_end, 0, index_at - lines_end);
    if (index_len && !st_frames_peek(out + index_at, succ, index_len))
        return 0;
    return index_at + index_len;
}

/* Write the iseq's label, path and line table once per address and ring
 * lap, as note_code does for CPython's code objects. Not inlined: its
 * buffer is on the stack only while an iseq is noted. */
__attribute__((noinline)) static void note_iseq(uintptr_t iseq, uintptr_t body)
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
        uint64_t id = (flags & FRAME_MAGIC_MASK) == FRAME_MAGIC_CFUNC ? cfunc_id(f[CFP_EP / 8]) : 0;
        if (id != 0 && n < max && note_cfunc(id)) {
            if ((flags & FRAME_FLAG_FINISH) && n > 0)
                out[n - 1].flags |= ST_PYFRAME_ENTRY;
            out[n].code = id;
            out[n].instr = UINT32_MAX;
            out[n].flags = ST_PYFRAME_RUBY | ST_PYFRAME_CFUNC;
            n++;
            continue;
        }
        /* The outermost frame is the VM's own top frame (Init_VM's "<main>"
         * on the main thread), which Ruby's backtraces leave out. */
        if ((flags & FRAME_FLAG_CFRAME) || iseq == 0 || pc == 0 || cfp + CFP_SIZE == end) {
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

/* symbolize.c - offline symbolization: one libdwfl session per module of the
 * dump, checked against its build-id, plus perf map files for JIT code. */
#include <dlfcn.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <libiberty/demangle.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "grow.h"
#include "symbolize.h"

struct sym_module {
    struct st_module m;
    const char *name;              /* base name of m.path, or its alias */
    char *alias;                   /* the name it was run as (sym_rename_module) */
    int state;                     /* 0: not opened yet, 1: usable, -1: not */
    const char *note;              /* why it is not usable */
    Dwfl *dwfl;
    Dwfl_Module *mod;
};

/* V8 reuses code addresses and the map only grows: an address may have
 * several entries, told apart by where in the map each was written. */
struct perf_entry {
    uint64_t start, size;
    uint64_t map_end;              /* offset past its line in the map; 0: unknown */
    size_t order;                  /* position among the entries, as written */
    char *name;
};

/* Cache: many stacks share frames. Key: address + module index and exact
 * flag, and for JIT code which perf map entry named it. */
struct cache_slot {
    uint64_t addr;
    long mod;
    size_t variant;
    struct sym_frame *frame;       /* NULL: empty slot */
};

struct symbolizer {
    struct sym_module *mods;
    size_t nmods;
    int32_t pid;
    char *perf_map_dir;
    int perf_loaded;
    struct perf_entry *perf;       /* by start, then order */
    size_t nperf, perf_alloc;
    uint64_t perf_max_size;        /* how far below an address an entry may start */
    int perf_from_dump;            /* the dump had JIT symbols: no file needed */
    struct code_copy {
        uint64_t start, size, copy_of;
    } *copies;                     /* few: one per remapped range */
    size_t ncopies;
    struct cache_slot *cache;
    size_t cache_cap, cache_used;
};

static const Dwfl_Callbacks offline_callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
};

struct symbolizer *sym_new(const struct st_module *mods, size_t nmods, int32_t pid,
                           const char *perf_map_dir)
{
    struct symbolizer *s = calloc(1, sizeof(*s));
    size_t i;

    if (!s)
        return NULL;
    s->mods = calloc(nmods ? nmods : 1, sizeof(*s->mods));
    s->cache_cap = 1024;
    s->cache = calloc(s->cache_cap, sizeof(*s->cache));
    s->perf_map_dir = strdup(perf_map_dir ? perf_map_dir : "/tmp");
    if (!s->mods || !s->cache || !s->perf_map_dir) {
        sym_free(s);
        return NULL;
    }
    for (i = 0; i < nmods; i++) {
        struct sym_module *sm = &s->mods[i];
        const char *slash;

        sm->m = mods[i];
        sm->m.path[ST_PATH_MAX - 1] = '\0';
        slash = strrchr(sm->m.path, '/');
        sm->name = slash ? slash + 1 : sm->m.path;
        if (sm->m.flags & ST_MODULE_VDSO)
            sm->name = "[vdso]";
    }
    s->nmods = nmods;
    s->pid = pid;
    return s;
}

/* Open a module's file on first use and check it is the one that ran. */
static void module_open(struct sym_module *sm)
{
    const unsigned char *bits;
    GElf_Addr vaddr;
    int len;

    sm->state = -1;
    if (sm->m.flags & ST_MODULE_VDSO)
        return;
    if (sm->m.path[0] == '\0' || access(sm->m.path, R_OK) != 0) {
        sm->note = "file missing";
        return;
    }
    sm->dwfl = dwfl_begin(&offline_callbacks);
    if (!sm->dwfl) {
        sm->note = "cannot read file";
        return;
    }
    dwfl_report_begin(sm->dwfl);
    sm->mod = dwfl_report_elf(sm->dwfl, sm->name, sm->m.path, -1, sm->m.bias, false);
    dwfl_report_end(sm->dwfl, NULL, NULL);
    if (!sm->mod) {
        sm->note = "cannot read file";
        return;
    }
    /* A file replaced since the run would give silently wrong names; with
     * no build-id recorded that cannot be checked, and the frames say so. */
    if (sm->m.build_id_len == 0)
        sm->note = "no build-id: name unverified";
    if (sm->m.build_id_len > 0) {
        len = dwfl_module_build_id(sm->mod, &bits, &vaddr);
        if (len != (int)sm->m.build_id_len || memcmp(bits, sm->m.build_id, (size_t)len) != 0) {
            sm->note = "build-id mismatch";
            return;
        }
    }
    sm->state = 1;
}

/* The module holding addr: the newest one loaded by at_ns, else the oldest
 * (an event recorded before its module's slot was written). */
static long module_find(const struct symbolizer *s, uint64_t addr, uint64_t at_ns)
{
    long best = -1, oldest = -1;
    size_t i;

    for (i = 0; i < s->nmods; i++) {
        const struct st_module *m = &s->mods[i].m;
        if (addr < m->start || addr >= m->end)
            continue;
        if (m->loaded_ns <= at_ns && (best < 0 || m->loaded_ns >= s->mods[best].m.loaded_ns))
            best = (long)i;
        if (oldest < 0 || m->loaded_ns < s->mods[oldest].m.loaded_ns)
            oldest = (long)i;
    }
    return best >= 0 ? best : oldest;
}

static int perf_cmp(const void *a, const void *b)
{
    const struct perf_entry *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int perf_push(struct symbolizer *s, uint64_t start, uint64_t size, uint64_t map_end,
                     const char *name)
{
    if (GROW(s->perf, s->perf_alloc, s->nperf + 1, 256) < 0)
        return -1;
    s->perf[s->nperf].start = start;
    s->perf[s->nperf].size = size;
    s->perf[s->nperf].map_end = map_end;
    s->perf[s->nperf].order = s->nperf;
    s->perf[s->nperf].name = strdup(name);
    if (!s->perf[s->nperf].name)
        return -1;
    if (size > s->perf_max_size)
        s->perf_max_size = size;
    s->nperf++;
    return 0;
}

int sym_add_jit(struct symbolizer *s, uint64_t start, uint64_t size, const char *name,
                uint64_t map_end)
{
    s->perf_from_dump = 1;
    return perf_push(s, start, size, map_end, name);
}

int sym_add_code_copy(struct symbolizer *s, uint64_t start, uint64_t size, uint64_t copy_of)
{
    if (GROW_ONE(s->copies, s->ncopies) < 0)
        return -1;
    s->copies[s->ncopies++] = (struct code_copy){start, size, copy_of};
    return 0;
}

/* Where the module has the code an address of a copy runs; addr if none. */
static uint64_t code_copy_origin(const struct symbolizer *s, uint64_t addr)
{
    for (size_t i = 0; i < s->ncopies; i++)
        if (addr - s->copies[i].start < s->copies[i].size)
            return s->copies[i].copy_of + (addr - s->copies[i].start);
    return addr;
}

/* Read /tmp/perf-PID.map: "START SIZE name" per line, hex numbers, unless
 * the dump carried its own copy of the symbols it needs. */
static void perf_load(struct symbolizer *s)
{
    char path[4096], *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint64_t offset = 0;
    FILE *f = NULL;

    s->perf_loaded = 1;
    if (s->pid <= 0 || s->perf_from_dump)
        goto sort;
    snprintf(path, sizeof(path), "%s/perf-%d.map", s->perf_map_dir, (int)s->pid);
    f = fopen(path, "re");
    if (!f)
        goto sort;
    while ((len = getline(&line, &cap, f)) > 0) {
        unsigned long long start, size;
        int n = 0;

        offset += (uint64_t)len;
        /* A last line without its newline was still being written. */
        if (line[len - 1] != '\n' ||
            sscanf(line, "%llx %llx %n", &start, &size, &n) < 2 || n <= 0 || size == 0)
            continue;
        line[strcspn(line, "\r\n")] = '\0';
        if (perf_push(s, start, size, offset, line + n) < 0)
            break;
    }
    free(line);
    fclose(f);
sort:
    if (s->nperf > 1)
        qsort(s->perf, s->nperf, sizeof(*s->perf), perf_cmp);
}

/* The entry naming addr in a stack taken when the map was map_bytes long:
 * of those covering addr whose line ended by then, the last written (the
 * code that ran there); an entry written later is another occupant's.
 * *later tells that only such entries exist. */
static const struct perf_entry *perf_find(struct symbolizer *s, uint64_t addr, uint64_t map_bytes,
                                          bool *later)
{
    const struct perf_entry *best = NULL;
    size_t lo = 0, hi;

    *later = false;
    if (!s->perf_loaded)
        perf_load(s);
    hi = s->nperf;
    while (lo < hi) {              /* first entry starting after addr */
        size_t mid = lo + (hi - lo) / 2;
        if (s->perf[mid].start <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i > 0 && addr - s->perf[i - 1].start < s->perf_max_size; i--) {
        const struct perf_entry *p = &s->perf[i - 1];
        if (addr - p->start >= p->size)
            continue;
        if (p->map_end > map_bytes)
            *later = true;
        else if (!best || p->map_end > best->map_end ||
                 (p->map_end == best->map_end && p->order > best->order))
            best = p;
    }
    return best;
}

typedef char *(*demangle_fn)(const char *, char *, size_t *, int *);

/* Rust names as rustfilt prints them: libiberty's demangler reads both
 * manglings, drops the legacy hash and the v0 crate disambiguators (they
 * only come with DMGL_VERBOSE), and a ".llvm.N" suffix; it answers NULL for
 * anything not Rust, C++ included. */
char *sym_demangle_rust(const char *name)
{
    if (strncmp(name, "_R", 2) != 0 && strncmp(name, "_ZN", 3) != 0)
        return NULL;
    return cplus_demangle(name, DMGL_RUST);
}

/* C++ names (Node, V8, libuv embedders) are unreadable mangled. The C++
 * runtime's demangler is loaded when present, so the analyzer does not
 * link against it. */
static char *demangle(const char *name)
{
    char *rust = sym_demangle_rust(name);
    if (rust)
        return rust;

    static demangle_fn fn;
    static int tried;
    int status = -1;

    if (!tried) {
        void *lib = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_LOCAL);
        tried = 1;
        if (lib)
            *(void **)&fn = dlsym(lib, "__cxa_demangle");
    }
    if (!fn || strncmp(name, "_Z", 2) != 0)
        return NULL;
    char *out = fn(name, NULL, NULL, &status);
    if (status != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* "clock_nanosleep@GLIBC_2.2.5" -> "clock_nanosleep": users know no versions. */
static char *symbol_name(const char *fn)
{
    const char *at = strchr(fn, '@');
    char *plain = at && at != fn ? strndup(fn, (size_t)(at - fn)) : strdup(fn);
    char *readable = plain ? demangle(plain) : NULL;

    if (readable) {
        free(plain);
        return readable;
    }
    return plain;
}

static const char *die_name(Dwarf_Die *die)
{
    Dwarf_Attribute attr;
    /* Inlined instances name their function through abstract_origin. */
    if (dwarf_attr_integrate(die, DW_AT_name, &attr))
        return dwarf_formstring(&attr);
    return NULL;
}

/* Frames for the functions inlined at addr: f (the innermost, named after
 * the line table) becomes the chain inlined -> ... -> the symbol's function,
 * each caller placed at the call site recorded for its callee. */
static void expand_inlines(struct sym_module *sm, struct sym_frame *f, uint64_t addr)
{
    Dwarf_Addr bias;
    Dwarf_Die *cu = dwfl_module_addrdie(sm->mod, addr, &bias), *scopes = NULL;
    Dwarf_Files *files = NULL;
    size_t nfiles = 0;
    int n, i;

    if (!cu || (n = dwarf_getscopes(cu, addr - bias, &scopes)) <= 0)
        return;
    if (dwarf_getsrcfiles(cu, &files, &nfiles) != 0)
        files = NULL;
    struct sym_frame *inner = f;
    for (i = 0; i < n; i++) {
        Dwarf_Die *die = &scopes[i];
        Dwarf_Attribute attr;
        Dwarf_Word call_line = 0, call_file = 0;

        if (dwarf_tag(die) != DW_TAG_inlined_subroutine)
            continue;
        struct sym_frame *caller = calloc(1, sizeof(*caller));
        if (!caller)
            break;
        *caller = *inner;
        caller->function = inner->function;   /* the outermost keeps the symbol name */
        caller->file = NULL;
        caller->line = 0;
        if (dwarf_formudata(dwarf_attr(die, DW_AT_call_line, &attr), &call_line) == 0)
            caller->line = (int)call_line;
        if (files && dwarf_formudata(dwarf_attr(die, DW_AT_call_file, &attr), &call_file) == 0 &&
            call_file < nfiles) {
            const char *src = dwarf_filesrc(files, call_file, NULL, NULL);
            if (src)
                caller->file = strdup(src);
        }
        const char *name = die_name(die);
        inner->function = name ? strdup(name) : NULL;
        inner->inlined = true;
        inner->caller = caller;
        inner = caller;
    }
    free(scopes);
}

static struct sym_frame *name_in_module(struct sym_module *sm, uint64_t address, uint64_t addr)
{
    struct sym_frame *f = calloc(1, sizeof(*f));
    GElf_Off off;
    GElf_Sym sym;
    const char *fn, *src;
    Dwfl_Line *line;
    int lineno = 0;

    if (!f)
        return NULL;
    f->address = address;
    f->kind = "native";
    f->module = sm->name;
    f->hidden = (sm->m.flags & ST_MODULE_SELF) != 0;
    if (sm->state == 0)
        module_open(sm);
    if (sm->m.flags & ST_MODULE_VDSO) {
        f->function = strdup("[vdso]");
        return f;
    }
    if (sm->state < 0) {
        f->note = sm->note;
        return f;
    }
    fn = dwfl_module_addrinfo(sm->mod, addr, &off, &sym, NULL, NULL, NULL);
    if (fn)
        f->function = symbol_name(fn);
    line = dwfl_module_getsrc(sm->mod, addr);
    if (line && (src = dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL)) && lineno > 0) {
        f->file = strdup(src);
        f->line = lineno;
    }
    f->note = fn ? sm->note : "no symbol";
    expand_inlines(sm, f, addr);
    return f;
}

/* HotSpot's perf map names: "long JavaService.crunch(long)", the return
 * type, the class-qualified method and its parameter types. Named as Java's
 * stack traces say it: "JavaService.crunch". False for any other name. */
static bool split_java_name(const char *name, struct sym_frame *f)
{
    const char *space = strchr(name, ' '), *paren = strchr(name, '(');
    size_t len = strlen(name);

    if (!space || !paren || space > paren || len < 3 || name[len - 1] != ')')
        return false;
    const char *method = space + 1;
    size_t method_len = (size_t)(paren - method);
    const char *dot = memchr(method, '.', method_len);
    if (!dot || dot == method || memchr(method, ' ', method_len))
        return false;
    f->function = strndup(method, (size_t)(paren - method));
    return true;
}

/* V8's perf map names: "JS:*busyWork /srv/app.js:11:18" (older nodes say
 * "LazyCompile:" and friends; '*' optimized, '~' interpreted, '^' baseline).
 * Anything else is kept whole as the function name. */
static void split_v8_name(const char *name, struct sym_frame *f)
{
    const char *colon = strchr(name, ':'), *space, *fn, *end, *line_at = NULL;
    long line = 0;

    if (!colon || strchr(name, ' ') < colon || !(space = strchr(colon, ' '))) {
        f->function = strdup(name);
        return;
    }
    fn = colon + 1;
    if (*fn == '*' || *fn == '~' || *fn == '^')
        fn++;
    /* "file:line:col": the line is the number before the last colon. */
    end = strrchr(space + 1, ':');
    if (end && end > space + 1) {
        const char *p = end - 1;
        while (p > space + 1 && p[-1] >= '0' && p[-1] <= '9')
            p--;
        if (p > space + 1 && p[-1] == ':' && p < end) {
            line = strtol(p, NULL, 10);
            line_at = p - 1;
        }
    }
    f->function = fn < space ? strndup(fn, (size_t)(space - fn)) : strdup("(anonymous)");
    if (line_at && line > 0 && line < 1000000000) {
        f->file = strndup(space + 1, (size_t)(line_at - space - 1));
        f->line = (int)line;
    } else {
        f->file = strdup(space + 1);
    }
}

static struct sym_frame *name_outside(uint64_t address, const struct perf_entry *p, bool later)
{
    struct sym_frame *f = calloc(1, sizeof(*f));

    if (!f)
        return NULL;
    f->address = address;
    f->kind = "native";
    if (!p) {
        f->note = later ? "not in the perf map when taken" : "no module";
        return f;
    }
    f->module = "[jit]";
    f->kind = "jit";
    /* CPython's -X perf trampolines are named "py::function:file". */
    if (strncmp(p->name, "py::", 4) == 0) {
        const char *colon = strrchr(p->name + 4, ':');
        f->kind = "python";
        f->module = "[python]";
        f->function = colon ? strndup(p->name + 4, (size_t)(colon - p->name - 4)) : strdup(p->name + 4);
        if (colon && colon[1])
            f->file = strdup(colon + 1);
    } else if (!split_java_name(p->name, f)) {
        split_v8_name(p->name, f);
    }
    return f;
}

static size_t cache_hash(uint64_t addr, long mod, size_t variant, size_t cap)
{
    uint64_t h = (addr ^ ((uint64_t)mod << 48) ^ ((uint64_t)variant << 20)) * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 17) & (cap - 1);
}

static int cache_grow(struct symbolizer *s)
{
    size_t cap = s->cache_cap * 2, i;
    struct cache_slot *c = calloc(cap, sizeof(*c));

    if (!c)
        return -1;
    for (i = 0; i < s->cache_cap; i++) {
        struct cache_slot *o = &s->cache[i];
        if (!o->frame)
            continue;
        size_t j = cache_hash(o->addr, o->mod, o->variant, cap);
        while (c[j].frame)
            j = (j + 1) & (cap - 1);
        c[j] = *o;
    }
    free(s->cache);
    s->cache = c;
    s->cache_cap = cap;
    return 0;
}

const struct sym_frame *sym_lookup(struct symbolizer *s, uint64_t address, bool exact_pc,
                                   uint64_t at_ns)
{
    return sym_lookup_at(s, address, exact_pc, at_ns, SYM_WHOLE_PERF_MAP);
}

const struct sym_frame *sym_lookup_at(struct symbolizer *s, uint64_t address, bool exact_pc,
                                      uint64_t at_ns, uint64_t perf_map_bytes)
{
    /* A return address points after the call: look up the call itself. */
    uint64_t addr = exact_pc || address == 0 ? address : address - 1;
    long mod = module_find(s, addr, at_ns);
    if (mod < 0 && s->ncopies) {
        addr = code_copy_origin(s, addr);
        mod = module_find(s, addr, at_ns);
    }
    long key = mod * 2 + (exact_pc ? 1 : 0);  /* the same bytes differ as PC and as return */
    const struct perf_entry *p = NULL;
    bool later = false;
    size_t j, variant = 0;         /* JIT: 0 no entry, 1 only later ones, 2 + the entry's index */
    struct sym_frame *f;

    if (mod < 0) {
        p = perf_find(s, addr, perf_map_bytes, &later);
        variant = p ? 2 + (size_t)(p - s->perf) : later ? 1 : 0;
    }
    j = cache_hash(address, key, variant, s->cache_cap);
    while (s->cache[j].frame) {
        if (s->cache[j].addr == address && s->cache[j].mod == key && s->cache[j].variant == variant)
            return s->cache[j].frame;
        j = (j + 1) & (s->cache_cap - 1);
    }
    f = mod >= 0 ? name_in_module(&s->mods[mod], address, addr) : name_outside(address, p, later);
    if (!f)
        return NULL;
    if ((s->cache_used + 1) * 2 > s->cache_cap) {
        if (cache_grow(s) < 0)
            return f;              /* leaks one frame rather than fail */
        j = cache_hash(address, key, variant, s->cache_cap);
        while (s->cache[j].frame)
            j = (j + 1) & (s->cache_cap - 1);
    }
    s->cache[j].addr = address;
    s->cache[j].mod = key;
    s->cache[j].variant = variant;
    s->cache[j].frame = f;
    s->cache_used++;
    return f;
}

bool sym_data_symbol(struct symbolizer *s, uint64_t address, uint64_t at_ns, char *name, size_t len,
                     uint64_t *offset)
{
    long mod = module_find(s, address, at_ns);
    struct sym_module *sm;
    const char *fn;
    GElf_Off off;
    GElf_Sym sym;

    if (mod < 0)
        return false;
    sm = &s->mods[mod];
    if (sm->state == 0)
        module_open(sm);
    if (sm->state < 0)
        return false;
    /* libdwfl searches every symbol type; only a sized variable that
     * holds the address names it (not the nearest symbol before it). */
    fn = dwfl_module_addrinfo(sm->mod, address, &off, &sym, NULL, NULL, NULL);
    if (!fn || GELF_ST_TYPE(sym.st_info) != STT_OBJECT || off >= sym.st_size)
        return false;
    snprintf(name, len, "%.*s", (int)strcspn(fn, "@"), fn);
    *offset = off;
    return true;
}

int sym_rename_module(struct symbolizer *s, const char *path, const char *name)
{
    for (size_t i = 0; i < s->nmods; i++) {
        struct sym_module *sm = &s->mods[i];
        if (strcmp(sm->m.path, path) != 0)
            continue;
        char *copy = strdup(name);
        if (!copy)
            return -1;
        free(sm->alias);
        sm->alias = copy;
        sm->name = copy;
    }
    return 0;
}

bool sym_module_offset(struct symbolizer *s, uint64_t address, uint64_t at_ns, const char **module,
                       uint64_t *offset)
{
    long mod = module_find(s, address, at_ns);

    if (mod < 0 || (s->mods[mod].m.flags & ST_MODULE_VDSO))
        return false;
    *module = s->mods[mod].name;
    *offset = address - s->mods[mod].m.bias;
    return true;
}

void sym_free(struct symbolizer *s)
{
    size_t i;

    if (!s)
        return;
    for (i = 0; s->mods && i < s->nmods; i++)
        free(s->mods[i].alias);
    for (i = 0; s->cache && i < s->cache_cap; i++) {
        struct sym_frame *f = s->cache[i].frame;
        while (f) {
            struct sym_frame *next = (struct sym_frame *)f->caller;
            free((char *)f->function);
            free((char *)f->file);
            free(f);
            f = next;
        }
    }
    for (i = 0; s->mods && i < s->nmods; i++)
        if (s->mods[i].dwfl)
            dwfl_end(s->mods[i].dwfl);
    for (i = 0; i < s->nperf; i++)
        free(s->perf[i].name);
    free(s->perf);
    free(s->copies);
    free(s->cache);
    free(s->mods);
    free(s->perf_map_dir);
    free(s);
}

/* test_symbolize.c - the symbolizer on real binaries (this test and libc, mapped
 * as the recorder would store them), build-id checks, perf maps. */
#include <criterion/criterion.h>
#include <elf.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "symbolize.h"

#define MAX_MODS 64

static struct st_module mods[MAX_MODS];
static size_t nmods;

/* Find the GNU build-id note among a loaded object's program headers. */
static void read_build_id(struct dl_phdr_info *info, struct st_module *m)
{
    int i;

    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
        const uint8_t *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
            const uint8_t *name = p + sizeof(*n);
            const uint8_t *desc = name + ((n->n_namesz + 3) & ~3u);
            if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && !memcmp(name, "GNU", 4) &&
                n->n_descsz <= ST_BUILD_ID_MAX) {
                memcpy(m->build_id, desc, n->n_descsz);
                m->build_id_len = n->n_descsz;
                return;
            }
            p = desc + ((n->n_descsz + 3) & ~3u);
        }
    }
}

static int add_module(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct st_module *m = &mods[nmods];
    uint64_t lo = UINT64_MAX, hi = 0;
    int i;

    (void)size;
    (void)arg;
    if (nmods >= MAX_MODS)
        return 1;
    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        if (info->dlpi_addr + ph->p_vaddr < lo)
            lo = info->dlpi_addr + ph->p_vaddr;
        if (info->dlpi_addr + ph->p_vaddr + ph->p_memsz > hi)
            hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
    }
    if (lo >= hi)
        return 0;
    memset(m, 0, sizeof(*m));
    m->valid = 1;
    m->start = lo;
    m->end = hi;
    m->bias = info->dlpi_addr;
    if (nmods == 0) {
        ssize_t n = readlink("/proc/self/exe", m->path, sizeof(m->path) - 1);
        m->path[n > 0 ? n : 0] = '\0';
        m->flags = ST_MODULE_MAIN;
    } else if (info->dlpi_name[0] == '\0' || strstr(info->dlpi_name, "linux-vdso")) {
        snprintf(m->path, sizeof(m->path), "[vdso]");
        m->flags = ST_MODULE_VDSO;
    } else {
        snprintf(m->path, sizeof(m->path), "%s", info->dlpi_name);
    }
    read_build_id(info, m);
    nmods++;
    return 0;
}

static void load_modules(void)
{
    nmods = 0;
    dl_iterate_phdr(add_module, NULL);
    cr_assert_gt(nmods, 1);
}

static struct st_module *module_named(const char *part)
{
    size_t i;
    for (i = 0; i < nmods; i++)
        if (strstr(mods[i].path, part))
            return &mods[i];
    return NULL;
}

static void *marker_return;

enum { MARKER_LINE = __LINE__ + 2 };
__attribute__((noinline, noclone)) int stalltrace_test_marker(int x);
__attribute__((noinline, noclone)) int stalltrace_test_marker(int x)
{
    marker_return = __builtin_return_address(0);
    __asm__ volatile("" ::: "memory");
    return x * 3 + 1;
}

static int call_line;

__attribute__((noinline, noclone)) int call_marker(void);
__attribute__((noinline, noclone)) int call_marker(void)
{
    enum { CALL_LINE = __LINE__ + 1 };
    int r = stalltrace_test_marker(5);  /* the return address points after this line */
    call_line = CALL_LINE;
    __asm__ volatile("" ::: "memory");
    return r + 1;
}

Test(symbolize, names_a_function_of_this_binary_with_file_and_line)
{
    load_modules();
    struct symbolizer *s = sym_new(mods, nmods, getpid(), "/nonexistent");
    cr_assert_not_null(s);

    const struct sym_frame *f = sym_lookup(s, (uint64_t)(uintptr_t)&stalltrace_test_marker, true, 0);
    cr_assert_not_null(f);
    cr_assert_null(f->note, "note: %s", f->note);
    cr_assert_str_eq(f->function, "stalltrace_test_marker");
    cr_assert_str_eq(f->kind, "native");
    cr_assert_not_null(f->module);
    cr_assert(strstr(f->module, "test_symbolize"), "module %s", f->module);
    cr_assert_not_null(f->file);
    cr_assert(strstr(f->file, "test_symbolize.c"), "file %s", f->file);
    cr_assert(f->line >= MARKER_LINE && f->line <= MARKER_LINE + 2, "line %d (marker at %d)",
              f->line, MARKER_LINE);

    /* A return address names the line of the call, in the caller. */
    call_marker();
    f = sym_lookup(s, (uint64_t)(uintptr_t)marker_return, false, 0);
    cr_assert_str_eq(f->function, "call_marker");
    cr_assert(strstr(f->file, "test_symbolize.c"));
    cr_assert_eq(f->line, call_line, "line %d, call at %d", f->line, call_line);

    /* Cached: the same frame comes back. */
    cr_assert_eq(sym_lookup(s, (uint64_t)(uintptr_t)marker_return, false, 0), f);
    sym_free(s);
}

Test(symbolize, names_libc_functions)
{
    load_modules();
    cr_assert_not_null(module_named("libc.so"));
    struct symbolizer *s = sym_new(mods, nmods, getpid(), "/nonexistent");
    const struct sym_frame *f = sym_lookup(s, (uint64_t)(uintptr_t)&getppid, true, 0);
    cr_assert_not_null(f->function, "note: %s", f->note ? f->note : "-");
    cr_assert(strstr(f->function, "getppid"), "function %s", f->function);
    cr_assert_str_eq(f->module, "libc.so.6");
    sym_free(s);
}

Test(symbolize, a_rebuilt_or_missing_file_keeps_the_raw_address)
{
    load_modules();
    cr_assert_gt(mods[0].build_id_len, 0, "this test binary has a build-id");
    mods[0].build_id[0] ^= 0xff;
    struct symbolizer *s = sym_new(mods, nmods, getpid(), "/nonexistent");
    const struct sym_frame *f = sym_lookup(s, (uint64_t)(uintptr_t)&stalltrace_test_marker, true, 0);
    cr_assert_null(f->function);
    cr_assert_str_eq(f->note, "build-id mismatch");
    cr_assert_eq(f->address, (uint64_t)(uintptr_t)&stalltrace_test_marker);
    sym_free(s);

    load_modules();
    snprintf(mods[0].path, sizeof(mods[0].path), "/nonexistent/test_symbolize");
    s = sym_new(mods, nmods, getpid(), "/nonexistent");
    f = sym_lookup(s, (uint64_t)(uintptr_t)&stalltrace_test_marker, true, 0);
    cr_assert_null(f->function);
    cr_assert_str_eq(f->note, "file missing");
    cr_assert_str_eq(f->module, "test_symbolize");
    sym_free(s);
}

Test(symbolize, recorder_frames_are_hidden)
{
    load_modules();
    mods[0].flags |= ST_MODULE_SELF;
    struct symbolizer *s = sym_new(mods, nmods, getpid(), "/nonexistent");
    const struct sym_frame *f = sym_lookup(s, (uint64_t)(uintptr_t)&stalltrace_test_marker, true, 0);
    cr_assert_eq(f->hidden, true);
    sym_free(s);
}

Test(symbolize, jit_frames_from_a_perf_map)
{
    char dir[] = "/tmp/st_perfmap_XXXXXX", path[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/perf-4242.map", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "1000 100 py::handler:/srv/app.py\n2000 50 JS:*foo /srv/x.js:3:18\nbogus line\n"
               "4000 10 Builtin:ArgumentsAdaptorTrampoline\n5000 10 JS:~ :1:1\n");
    fclose(f);

    struct st_module none = {0};
    struct symbolizer *s = sym_new(&none, 0, 4242, dir);
    const struct sym_frame *fr = sym_lookup(s, 0x1050, false, 0);
    cr_assert_str_eq(fr->kind, "python");
    cr_assert_str_eq(fr->function, "handler");
    cr_assert_str_eq(fr->file, "/srv/app.py");
    fr = sym_lookup(s, 0x2001, false, 0);   /* looked up at 0x2000 */
    cr_assert_str_eq(fr->kind, "jit");
    cr_assert_str_eq(fr->function, "foo");
    cr_assert_str_eq(fr->file, "/srv/x.js");
    cr_assert_eq(fr->line, 3);
    cr_assert_str_eq(fr->module, "[jit]");
    fr = sym_lookup(s, 0x4001, true, 0);
    cr_assert_str_eq(fr->function, "Builtin:ArgumentsAdaptorTrampoline");
    cr_assert_null(fr->file);
    fr = sym_lookup(s, 0x5001, true, 0);
    cr_assert_str_eq(fr->function, "(anonymous)");
    fr = sym_lookup(s, 0x3000, true, 0);
    cr_assert_null(fr->function);
    cr_assert_str_eq(fr->note, "no module");
    sym_free(s);
    unlink(path);
    rmdir(dir);
}

Test(symbolize, the_newest_module_loaded_before_the_event_wins)
{
    struct st_module two[2] = {0};
    two[0].valid = two[1].valid = 1;
    two[0].start = two[1].start = 0x1000;
    two[0].end = two[1].end = 0x2000;
    snprintf(two[0].path, sizeof(two[0].path), "/nonexistent/old.so");
    snprintf(two[1].path, sizeof(two[1].path), "/nonexistent/new.so");
    two[0].loaded_ns = 10;
    two[1].loaded_ns = 100;
    struct symbolizer *s = sym_new(two, 2, 0, NULL);
    cr_assert_str_eq(sym_lookup(s, 0x1500, true, 50)->module, "old.so");
    cr_assert_str_eq(sym_lookup(s, 0x1500, true, 500)->module, "new.so");
    cr_assert_str_eq(sym_lookup(s, 0x1500, true, 5)->module, "old.so");
    sym_free(s);
}

/* V8 reuses code addresses; the perf map only grows. A frame is named by the
 * last entry written before its stack was taken (issue 21). */
Test(symbolize, a_reused_jit_address_is_named_as_it_was_when_taken)
{
    char dir[] = "/tmp/st_perfmap_XXXXXX", path[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/perf-4243.map", dir);
    const char *first = "1000 100 JS:*hasHooks node:internal/async_hooks:471:18\n";
    const char *second = "1000 80 JS:*rebuildRoutes /srv/app.js:23:5\n";
    const char *third = "f00 400 JS:*compileRoute /srv/app.js:15:3\n";  /* starts lower, covers all */
    FILE *f = fopen(path, "w");
    fprintf(f, "%s%s%s", first, second, third);
    fclose(f);
    const uint64_t after_first = strlen(first), after_second = after_first + strlen(second);

    struct st_module none = {0};
    struct symbolizer *s = sym_new(&none, 0, 4243, dir);
    /* After the second entry, in either order of lookup (the cache keeps both). */
    const struct sym_frame *fr = sym_lookup_at(s, 0x1011, true, 0, after_second);
    cr_assert_str_eq(fr->function, "rebuildRoutes");
    cr_assert_str_eq(fr->file, "/srv/app.js");
    cr_assert_eq(fr->line, 23);
    fr = sym_lookup_at(s, 0x1011, true, 0, after_first);
    cr_assert_str_eq(fr->function, "hasHooks");
    cr_assert_str_eq(sym_lookup_at(s, 0x1011, true, 0, after_second)->function, "rebuildRoutes");
    /* A line not yet complete does not count. */
    fr = sym_lookup_at(s, 0x1011, true, 0, after_second - 1);
    cr_assert_str_eq(fr->function, "hasHooks");
    /* Before any entry: unnamed, never after a later occupant. */
    fr = sym_lookup_at(s, 0x1011, true, 0, after_first - 1);
    cr_assert_null(fr->function, "named %s", fr->function);
    cr_assert_str_eq(fr->note, "not in the perf map when taken");
    fr = sym_lookup_at(s, 0x1011, true, 0, 0);
    cr_assert_null(fr->function);
    /* Beyond the second's size only the first covered it then. */
    cr_assert_str_eq(sym_lookup_at(s, 0x1090, true, 0, after_second)->function, "hasHooks");
    /* The newest entry covers from a lower start: the nearest start does not win. */
    cr_assert_str_eq(sym_lookup_at(s, 0x1011, true, 0, SYM_WHOLE_PERF_MAP)->function, "compileRoute");
    cr_assert_str_eq(sym_lookup(s, 0x1011, true, 0)->function, "compileRoute");
    sym_free(s);
    unlink(path);
    rmdir(dir);
}

/* The entries copied into the dump carry their map offsets the same way. */
Test(symbolize, jit_symbols_from_the_dump_keep_their_order)
{
    struct st_module none = {0};
    struct symbolizer *s = sym_new(&none, 0, 0, NULL);
    cr_assert_eq(sym_add_jit(s, 0x2000, 0x40, "JS:*alignPool node:buffer:160:19", 100), 0);
    cr_assert_eq(sym_add_jit(s, 0x2000, 0x40, "JS:*compileRoute /srv/app.js:15:3", 200), 0);
    cr_assert_str_eq(sym_lookup_at(s, 0x2011, false, 0, 150)->function, "alignPool");
    cr_assert_str_eq(sym_lookup_at(s, 0x2011, false, 0, 250)->function, "compileRoute");
    cr_assert_null(sym_lookup_at(s, 0x2011, false, 0, 50)->function);
    sym_free(s);
}

/* V8 maps its builtins a second time beside the JIT code: named as the
 * module's own code. */
Test(symbolize, a_copy_of_module_code_is_named_as_the_module)
{
    load_modules();
    struct symbolizer *s = sym_new(mods, nmods, getpid(), "/nonexistent");
    uint64_t marker = (uint64_t)(uintptr_t)&stalltrace_test_marker, page = marker & ~(uint64_t)0xfff;
    const uint64_t copy = 0x7e0000000000ull;
    cr_assert_eq(sym_add_code_copy(s, copy, 0x2000, page), 0);
    const struct sym_frame *f = sym_lookup(s, copy + (marker - page), true, 0);
    cr_assert_str_eq(f->function, "stalltrace_test_marker");
    cr_assert_eq(f->address, copy + (marker - page));
    cr_assert_str_eq(f->kind, "native");
    cr_assert_null(sym_lookup(s, copy + 0x3000, true, 0)->function);
    sym_free(s);
}

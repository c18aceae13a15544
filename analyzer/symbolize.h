/* symbolize.h - names the raw addresses of a dump offline, from the module
 * map stored in it (libdwfl), the vdso and perf map files of JIT code. */
#ifndef STALLTRACE_SYMBOLIZE_H
#define STALLTRACE_SYMBOLIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stalltrace/format.h"

/* One frame, named. Strings live as long as the symbolizer. */
struct sym_frame {
    uint64_t address;              /* as recorded */
    const char *function;          /* NULL when unknown: never a guessed name */
    const char *module;            /* base name of the module, "[vdso]", "[jit]", or NULL */
    const char *file;              /* source file, NULL when unknown */
    int line;                      /* 0 when unknown */
    const char *kind;              /* "native", "python" or "jit" */
    const char *note;              /* why the name is missing, or NULL */
    bool hidden;                   /* a frame of the recorder: left out of reports */
    bool inlined;                  /* inlined into `caller`, at the same address */
    bool core_method;              /* a method the interpreter has in C (Ruby's `sleep`): library code */
    const struct sym_frame *caller;/* the function this one was inlined into, or NULL */
};

struct symbolizer;

/* mods: the module table of a dump (copied); pid: for /tmp/perf-PID.map
 * (0: none). perf_map_dir: where to look for perf maps, NULL for /tmp. */
struct symbolizer *sym_new(const struct st_module *mods, size_t nmods, int32_t pid,
                           const char *perf_map_dir);

/* A JIT symbol known from the dump itself, added in the map's order; used
 * instead of the perf map file, which may be gone or belong to another
 * process by now. map_end: the offset just past its line in the map, 0 if
 * not recorded (then only the order tells which entry is newer). */
int sym_add_jit(struct symbolizer *s, uint64_t start, uint64_t size, const char *name,
                uint64_t map_end);

/* Name an address: its innermost function; follow `caller` for the
 * functions it was inlined into (outermost last). exact_pc: frame 0 of a stack (otherwise a return address,
 * looked up one byte earlier). at_ns: the event's time, to pick the module
 * loaded then when a range was reused. Never NULL except out of memory. */
const struct sym_frame *sym_lookup(struct symbolizer *s, uint64_t address, bool exact_pc,
                                   uint64_t at_ns);

/* [start, start + size) runs a module's code mapped again: the bytes at
 * copy_of + (address - start) (V8's embedded builtins, remapped). */
int sym_add_code_copy(struct symbolizer *s, uint64_t start, uint64_t size, uint64_t copy_of);

/* The same for a frame of a stack taken when the perf map was
 * perf_map_bytes long: JIT code is named by the last entry written by then,
 * and left unnamed when none covered it (the entries written later name
 * code that came after). SYM_WHOLE_PERF_MAP: the stack did not say. */
#define SYM_WHOLE_PERF_MAP UINT64_MAX
const struct sym_frame *sym_lookup_at(struct symbolizer *s, uint64_t address, bool exact_pc,
                                      uint64_t at_ns, uint64_t perf_map_bytes);

/* The data symbol (a global or static variable) that address lies in: its
 * name into name[len] and the offset into it. at_ns as for sym_lookup.
 * Returns false for the heap, stacks, and modules without a symbol table. */
bool sym_data_symbol(struct symbolizer *s, uint64_t address, uint64_t at_ns, char *name, size_t len,
                     uint64_t *offset);

/* Name the module loaded from path `name` from now on: a program run
 * through a symlink is named as it was run. */
int sym_rename_module(struct symbolizer *s, const char *path, const char *name);

/* The module whose loaded range holds address (a stripped binary's .data or
 * .bss included): its base name and the address's offset from its load
 * bias (the file's own address). False outside every module (heap, stacks). */
bool sym_module_offset(struct symbolizer *s, uint64_t address, uint64_t at_ns, const char **module,
                       uint64_t *offset);

void sym_free(struct symbolizer *s);

/* A Rust symbol (legacy _ZN...17h<hash>E or v0 _R...) as rustfilt prints it,
 * malloc'd; NULL when name is no Rust symbol. */
char *sym_demangle_rust(const char *name);

#endif /* STALLTRACE_SYMBOLIZE_H */

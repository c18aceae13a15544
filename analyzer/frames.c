/* frames.c - what a frame is to the person reading the report (plumbing,
 * a library, their own code) and how a stack's place is said. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frames.h"

/* Modules whose code is never where the user's code blocked: libc, the
 * loader, the recorder, and the interpreters that run the user's code. */
static const char *const plumbing_modules[] = {
    "libc.so", "libc-", "ld-linux", "ld-", "libpthread", "libstalltrace", "[vdso]",
    "python2", "python3", "libpython", "node", "libnode", "libuv", "libv8", "libjvm", "libjli",
    "libjava", "libnio", "libnet", "libruby", "ruby", NULL,
};
static const char *const plumbing_functions[] = {
    /* CPython's evaluation and call machinery */
    "_PyEval_", "PyEval_", "_PyObject_", "PyObject_", "_PyFunction_", "method_vectorcall",
    "cfunction_", "PyVectorcall", "_PyVectorcall", "vectorcall_", "slot_tp_", "PyGen_",
    "gen_send_ex", "_PyGen_", "do_call_core", "context_run", "task_step", "run_eval_code_obj",
    "run_mod", "pyrun_", "_PyRun_", "PyRun_", "pymain_", "Py_RunMain", "Py_BytesMain",
    "PyIter_Send",
    /* CPython's locks and GIL: the wait itself, not who waited */
    "PyThread_acquire_lock", "acquire_timed", "lock_PyThread_", "rlock_acquire", "_PySemaphore_",
    "_PyParkingLot_", "PyEvent_", "_PyMutex_", "take_gil", "drop_gil", "PyCOND_",
    "eval_frame_handle_pending", "thread_run", "pythread_wrapper", "t_bootstrap",
    /* Node: V8's builtins and entry, node's and libuv's dispatch */
    "Builtins_", "v8::", "node::", "uv_run", "uv__",
    /* HotSpot's interpreter, stubs and adapters between compiled and interpreted code */
    "Interpreter", "StubRoutines", "I2C/C2I", "JavaCalls::", "JVM_", "Java_sun_nio_", "Java_java_",
    NULL,
};
/* Python files that only dispatch the user's code: the event loop, the
 * executor, threads, and stalltrace's own hook. */
static const char *const plumbing_python_files[] = {
    "/asyncio/", "/concurrent/futures/", "/threading.py", "/runpy.py", "<frozen runpy>",
    "stalltrace_hook/", NULL,
};
/* Ruby files that only dispatch the user's code: servers, Rack, threads. */
static const char *const plumbing_ruby_files[] = {
    "/gems/puma-", "/puma/", "/gems/rack-", "/rack/", "<internal:", NULL,
};
/* Java's own classes, named as HotSpot names them: libraries the user called. */
static const char *const java_library_packages[] = {
    "java.", "javax.", "jdk.", "sun.", "com.sun.", NULL,
};
/* Where libraries live: the standard library, installed packages. */
static const char *const library_paths[] = {
    "/lib/python2", "/lib/python3", "-packages/", "<frozen ", "/node_modules/", "node:",
    "/lib/ruby/", "/gems/", "/rubygems", NULL,
};

static bool has_prefix_in(const char *s, const char *const *list)
{
    for (int i = 0; s && list[i]; i++)
        if (strncmp(s, list[i], strlen(list[i])) == 0)
            return true;
    return false;
}

static bool contains_any(const char *s, const char *const *list)
{
    for (int i = 0; s && list[i]; i++)
        if (strstr(s, list[i]))
            return true;
    return false;
}

const char *frames_basename(const char *path)
{
    const char *slash = path ? strrchr(path, '/') : NULL;
    return slash ? slash + 1 : path;
}

enum frame_role frames_role(const struct sym_frame *f)
{
    if (f->hidden)
        return FRAME_PLUMBING;
    if (strcmp(f->kind, "python") == 0 || strcmp(f->kind, "ruby") == 0) {
        if (contains_any(f->file, f->kind[0] == 'p' ? plumbing_python_files : plumbing_ruby_files))
            return FRAME_PLUMBING;
        /* At its caller's file, but the interpreter's code, as libc's is. */
        if (f->core_method)
            return FRAME_LIBRARY;
        return contains_any(f->file, library_paths) ? FRAME_LIBRARY : FRAME_USER;
    }
    if (has_prefix_in(f->function, plumbing_functions))
        return FRAME_PLUMBING;
    /* The loader's entry is linked into the executable, but not written by its author. */
    if (f->function && strcmp(f->function, "_start") == 0)
        return FRAME_PLUMBING;
    /* A JIT frame names its script in its function or, split off, in file
     * (node's own "node:internal/..." scripts are library code). */
    if (strcmp(f->kind, "jit") == 0)
        return contains_any(f->function, library_paths) || contains_any(f->file, library_paths) ||
                       has_prefix_in(f->function, java_library_packages)
                   ? FRAME_LIBRARY
                   : FRAME_USER;
    if (has_prefix_in(f->module, plumbing_modules))
        return FRAME_PLUMBING;
    /* A shared object is a library; the executable is the program itself. */
    return f->module && strstr(f->module, ".so") ? FRAME_LIBRARY : FRAME_USER;
}

bool frames_is_plumbing(const struct sym_frame *f)
{
    return frames_role(f) == FRAME_PLUMBING;
}

size_t frames_culprit(const struct m_stack *s)
{
    size_t library = SIZE_MAX, script = SIZE_MAX;

    for (size_t i = 0; i < s->n; i++) {
        const struct sym_frame *f = s->frames[i];
        if (!f->function)
            continue;
        enum frame_role role = frames_role(f);
        if (role == FRAME_USER && !f->inlined)
            return i;
        if (role == FRAME_LIBRARY && library == SIZE_MAX)
            library = i;
        if (strcmp(f->kind, "native") != 0 && script == SIZE_MAX && !has_prefix_in(f->function, plumbing_functions))
            script = i;
    }
    /* Only machinery: the innermost script frame still says more than nothing. */
    return library != SIZE_MAX ? library : script;
}

void frames_describe(const struct sym_frame *f, char *buf, size_t len)
{
    char fn[32];
    const char *name = f->function;

    if (!name) {
        snprintf(fn, sizeof(fn), "0x%llx", (unsigned long long)f->address);
        name = fn;
    }
    if (f->file && f->line > 0)
        snprintf(buf, len, "%s (%s:%d)", name, frames_basename(f->file), f->line);
    else if (f->file)
        snprintf(buf, len, "%s (%s)", name, frames_basename(f->file));
    else if (f->module && strcmp(f->module, name) != 0)
        snprintf(buf, len, "%s (%s)", name, f->module);
    else
        snprintf(buf, len, "%s", name);
}

/* Code outside every module before any named frame: JIT code with no perf map. */
static bool unnamed_jit_first(const struct m_stack *s)
{
    for (size_t i = 0; i < s->n; i++) {
        const struct sym_frame *f = s->frames[i];
        if (f->function && !frames_is_plumbing(f))
            return false;
        if (!f->module && !f->function)
            return true;
    }
    return false;
}

/* V8 ran JavaScript here (its entry or interpreter builtins are in the
 * stack) but no frame is named from the perf map: node was started without
 * the flags that name them (with --perf-basic-prof alone, the functions the
 * interpreter runs are still only its trampoline). */
static bool unnamed_v8_frames(const struct m_stack *s)
{
    bool v8 = false;
    for (size_t i = 0; i < s->n; i++) {
        const struct sym_frame *f = s->frames[i];
        if (strcmp(f->kind, "jit") == 0)
            return false;
        if (f->function && (strcmp(f->function, "Builtins_JSEntry") == 0 ||
                            strcmp(f->function, "Builtins_InterpreterEntryTrampoline") == 0))
            v8 = true;
    }
    return v8;
}

void frames_where(const struct m_stack *s, char *buf, size_t len)
{
    char a[300], b[300];
    size_t c = frames_culprit(s);

    buf[0] = '\0';
    if (c == SIZE_MAX) {
        if (unnamed_jit_first(s))
            snprintf(buf, len, "JIT-compiled code that has no name (run node with "
                               "--perf-basic-prof, or Python 3.12+ with -X perf, to name it)");
        else if (unnamed_v8_frames(s))
            snprintf(buf, len, "JavaScript whose frames have no name: node was not started with both "
                               "--perf-basic-prof and --interpreted-frames-native-stack, which name them");
        return;
    }
    frames_describe(s->frames[c], a, sizeof(a));
    snprintf(buf, len, "%s", a);
    /* Its direct caller in the user's code; a library between them (a web
     * framework dispatching to the handler) makes it nobody worth naming. */
    for (size_t i = c + 1; i < s->n; i++) {
        const struct sym_frame *f = s->frames[i];
        enum frame_role role = frames_role(f);
        /* The interpreter's own methods between them (Ruby's `each`,
         * `loop`) dispatch as the language does, not as a framework. */
        if (!f->function || f->inlined || role == FRAME_PLUMBING || f->core_method ||
            strcmp(f->kind, s->frames[c]->kind) != 0)
            continue;
        if (role == FRAME_USER) {
            frames_describe(f, b, sizeof(b));
            snprintf(buf, len, "%s in %s", a, b);
        }
        break;
    }
}

int frames_place_key(const struct m_stack *s, struct m_stack *key)
{
    size_t c = frames_culprit(s), n = 0;

    memset(key, 0, sizeof(*key));
    key->frames = calloc(s->n ? s->n : 1, sizeof(*key->frames));
    if (!key->frames)
        return -1;
    if (c == SIZE_MAX) {
        for (size_t i = 0; i < s->n; i++)
            key->frames[n++] = s->frames[i];
    } else {
        key->frames[n++] = s->frames[c];
        for (size_t i = c + 1; i < s->n; i++)
            if (s->frames[i]->function && frames_role(s->frames[i]) == FRAME_USER)
                key->frames[n++] = s->frames[i];
    }
    key->n = n;
    return 0;
}

bool frames_folded(const struct m_stack *s, size_t i)
{
    const struct sym_frame *f = s->frames[i];

    if (i > 0 && frames_is_plumbing(f))
        return true;
    if (f->function)
        return false;
    for (size_t j = 0; j < s->n; j++)
        if (s->frames[j]->function)
            return true;
    return false;
}

size_t frames_flame_view(const struct m_stack *s, bool all, const struct sym_frame **out)
{
    size_t c = frames_culprit(s), top = s->n, n = 0;

    if (all) {
        for (size_t i = 0; i < s->n; i++)
            out[n++] = s->frames[i];
        return n;
    }
    /* Outward of the culprit, frames of its own role belong to the same
     * code; the first of another role (the web framework that called the
     * handler, the runner that called main) is where the plumbing starts. */
    if (c != SIZE_MAX) {
        enum frame_role role = frames_role(s->frames[c]);
        top = c + 1;
        for (size_t i = c + 1; i < s->n; i++) {
            if (frames_folded(s, i) || s->frames[i]->inlined)
                continue;
            if (frames_role(s->frames[i]) != role && !s->frames[i]->core_method)
                break;
            top = i + 1;
        }
    }
    /* Only machinery (a libuv mutex under node's loop): folding it would
     * leave the innermost frame alone, so the named frames stay. */
    for (size_t i = 0; i < top; i++)
        if (c == SIZE_MAX ? s->frames[i]->function != NULL || !frames_folded(s, i) : !frames_folded(s, i))
            out[n++] = s->frames[i];
    return n;
}

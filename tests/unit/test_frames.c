/* test_frames.c - the flame view of frames.c on stacks as a real uvicorn and
 * a C program leave them: the program's own frames come first. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "frames.h"

#define NATIVE(fn, mod) {.function = fn, .module = mod, .kind = "native"}
#define PY(fn, path) {.function = fn, .file = path, .line = 1, .kind = "python"}
#define LIB "/usr/lib/python3/dist-packages/"

/* Innermost first, as the model stores them. */
static const struct sym_frame uvicorn[] = {
    NATIVE("clock_nanosleep", "libc.so.6"), NATIVE("PyObject_Vectorcall", "python3.11"),
    PY("render_invoice", "/srv/app.py"), NATIVE(NULL, "python3.11"), PY("block", "/srv/app.py"),
    PY("run_endpoint_function", LIB "fastapi/routing.py"), PY("Starlette.__call__", LIB "starlette/applications.py"),
    PY("RequestResponseCycle.run_asgi", LIB "uvicorn/protocols/http/h11_impl.py"),
    NATIVE("uv_run", "libuv.so.1"), PY("Runner.run", "/usr/lib/python3.11/asyncio/runners.py"),
    PY("Server.run", LIB "uvicorn/server.py"), PY("main", "/srv/app.py"), PY("<module>", "/srv/app.py"),
    NATIVE("PyEval_EvalCode", "python3.11"), NATIVE("Py_RunMain", "python3.11"),
    NATIVE("__libc_start_main", "libc.so.6"), NATIVE("_start", "python3.11"),
};

static const char *view_names(const struct sym_frame *frames, size_t n, bool all, char *buf, size_t len)
{
    const struct sym_frame *ptrs[64], *out[64];
    for (size_t i = 0; i < n; i++)
        ptrs[i] = &frames[i];
    struct m_stack s = {.n = n, .frames = ptrs};
    size_t k = frames_flame_view(&s, all, out), used = 0;
    buf[0] = '\0';
    for (size_t i = k; i-- > 0;)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? ";" : "",
                                 out[i]->function ? out[i]->function : "?");
    return buf;
}

Test(frames, the_handler_is_the_first_row_under_uvicorn)
{
    char buf[1024];
    size_t n = sizeof(uvicorn) / sizeof(uvicorn[0]);
    cr_assert_str_eq(view_names(uvicorn, n, false, buf, sizeof(buf)), "block;render_invoice;clock_nanosleep");
    view_names(uvicorn, n, true, buf, sizeof(buf));
    cr_assert(strncmp(buf, "_start;__libc_start_main;Py_RunMain;", 36) == 0, "%s", buf);
    cr_assert(strstr(buf, ";?;") != NULL, "--all-frames keeps the unnamed frame: %s", buf);
}

Test(frames, a_c_program_starts_at_main)
{
    static const struct sym_frame c[] = {
        NATIVE("nanosleep", "libc.so.6"), NATIVE("slow_path", "server"), NATIVE("main", "server"),
        NATIVE("__libc_start_call_main", "libc.so.6"), NATIVE("_start", "server"),
    };
    char buf[256];
    cr_assert_str_eq(view_names(c, 5, false, buf, sizeof(buf)), "main;slow_path;nanosleep");
}

Test(frames, only_library_code_keeps_the_library_run)
{
    static const struct sym_frame lib[] = {
        NATIVE("recv", "libc.so.6"), PY("HTTPResponse.read", "/usr/lib/python3.11/http/client.py"),
        PY("Session.get", LIB "requests/sessions.py"), NATIVE("Py_RunMain", "python3.11"),
    };
    char buf[256];
    cr_assert_str_eq(view_names(lib, 4, false, buf, sizeof(buf)), "Session.get;HTTPResponse.read;recv");
}

Test(frames, a_stack_of_machinery_keeps_its_named_frames)
{
    static const struct sym_frame node[] = {
        NATIVE("__pthread_mutex_lock", "libc.so.6"), NATIVE("uv_mutex_lock", "libuv.so.1"),
        NATIVE(NULL, "node"), NATIVE("uv_run", "libuv.so.1"), NATIVE("_start", "node"),
    };
    char buf[256];
    cr_assert_str_eq(view_names(node, 5, false, buf, sizeof(buf)), "_start;uv_run;uv_mutex_lock;__pthread_mutex_lock");
}

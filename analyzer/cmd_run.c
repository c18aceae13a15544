/* cmd_run.c - `stalltrace run`: runs a command with the recorder preloaded,
 * then finds the dumps it wrote and prints a one-screen summary of each. */
#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "report_util.h"
#include "stalltrace/dumpname.h"

static volatile pid_t child_pid;

/* A terminal's ^C already reaches the child (same process group); signals
 * sent to us alone by kill() are passed on. */
static void forward_signal(int sig, siginfo_t *info, void *ctx)
{
    (void)ctx;
    if (child_pid > 0 && info->si_code != SI_KERNEL)
        kill(child_pid, sig);
}

/* The recorder: $STALLTRACE_PRELOAD, else next to this executable in the
 * build tree, else where `meson install` puts it. */
static char *find_preload(void)
{
    static const char *rel[] = {
        "../preload/libstalltrace.so",
        "../lib/stalltrace/libstalltrace.so",
        "../lib/x86_64-linux-gnu/stalltrace/libstalltrace.so",
        NULL,
    };
    char self[PATH_MAX], path[PATH_MAX + 64], *dir, *real;
    const char *env = getenv("STALLTRACE_PRELOAD");
    ssize_t n;
    int i;

    if (env && *env) {
        if (access(env, R_OK) == 0)
            return strdup(env);
        fprintf(stderr, "stalltrace: run: STALLTRACE_PRELOAD=%s: %s\n", env, strerror(errno));
        return NULL;
    }
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return NULL;
    self[n] = '\0';
    dir = dirname(self);
    for (i = 0; rel[i]; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, rel[i]);
        if (access(path, R_OK) == 0) {
            real = realpath(path, NULL);
            return real ? real : strdup(path);
        }
    }
    return NULL;
}

/* Length of the leading sanitizer runtimes (libasan, libtsan...) in an
 * LD_PRELOAD list, separators included: they refuse to start unless first. */
static size_t sanitizer_prefix(const char *list)
{
    static const char *const names[] = {"libasan", "libclang_rt.asan", "libtsan",
                                        "libclang_rt.tsan", "libhwasan", NULL};
    size_t at = 0;

    while (list[at]) {
        size_t n = strcspn(list + at, ": "), base = n, i;
        while (base > 0 && list[at + base - 1] != '/')
            base--;
        for (i = 0; names[i]; i++)
            if (strncmp(list + at + base, names[i], strlen(names[i])) == 0)
                break;
        if (!names[i])
            break;
        at += n;
        at += strspn(list + at, ": ");
    }
    return at;
}

static int set_preload(const char *lib)
{
    const char *old = getenv("LD_PRELOAD");
    char *val;
    int rc;

    if (old && *old) {
        int first = (int)sanitizer_prefix(old);
        const char *sep = first > 0 && !strchr(": ", old[first - 1]) ? ":" : "";
        const char *rest = old + first;
        if (asprintf(&val, "%.*s%s%s%s%s", first, old, sep, lib, *rest ? ":" : "", rest) < 0)
            return -1;
    } else if (!(val = strdup(lib))) {
        return -1;
    }
    rc = setenv("LD_PRELOAD", val, 1);
    free(val);
    return rc;
}

/* The CPython start-up hook (python/stalltrace_hook/sitecustomize.py):
 * $STALLTRACE_PYTHON_HOOK, else the source tree above the build tree, else
 * where an install would put it. */
static char *find_python_hook(void)
{
    static const char *rel[] = {
        "../../python/stalltrace_hook",
        "../share/stalltrace/python",
        NULL,
    };
    char self[PATH_MAX], path[PATH_MAX + 64], *dir;
    const char *env = getenv("STALLTRACE_PYTHON_HOOK");
    ssize_t n;

    if (env && *env)
        return strdup(env);
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return NULL;
    self[n] = '\0';
    dir = dirname(self);
    for (int i = 0; rel[i]; i++) {
        snprintf(path, sizeof(path), "%s/%s/sitecustomize.py", dir, rel[i]);
        if (access(path, R_OK) == 0) {
            *strrchr(path, '/') = '\0';
            char *real = realpath(path, NULL);
            return real ? real : strdup(path);
        }
    }
    return NULL;
}

/* Prepend the hook to PYTHONPATH: its sitecustomize runs first and chains
 * to the one it hides. Without the hook file, nothing changes. */
static int enable_python_hook(void)
{
    char *hook = find_python_hook(), *val;
    const char *old = getenv("PYTHONPATH");
    int rc;

    if (!hook)
        return 0;
    if (asprintf(&val, "%s%s%s", hook, old && *old ? ":" : "", old ? old : "") < 0) {
        free(hook);
        return -1;
    }
    rc = setenv("PYTHONPATH", val, 1);
    free(val);
    free(hook);
    return rc;
}

/* Node names its JIT code in /tmp/perf-PID.map only when asked; without it
 * a stall in JavaScript shows as anonymous addresses. Functions V8 still
 * interprets (the app's cold code, run a few times) would all be one
 * Builtins_InterpreterEntryTrampoline; with --interpreted-frames-native-stack
 * each gets a trampoline copy of its own, in the map under its name.
 * NODE_OPTIONS reaches every node process the command starts, and nothing
 * else reads it. */
static int enable_jit_maps(void)
{
    static const char *const flags[] = {"--perf-basic-prof", "--interpreted-frames-native-stack"};
    const char *old = getenv("NODE_OPTIONS");
    char *val = strdup(old ? old : "");
    int rc, added = 0;

    for (size_t i = 0; val && i < sizeof flags / sizeof flags[0]; i++) {
        char *more;
        if (strstr(val, flags[i]))
            continue;
        if (asprintf(&more, "%s%s%s", val, *val ? " " : "", flags[i]) < 0)
            more = NULL;
        free(val);
        val = more;
        added |= i == 0;
    }
    if (!val)
        return -1;
    rc = setenv("NODE_OPTIONS", val, 1);
    free(val);
    /* What we asked for is ours to remove: node's recorder deletes the perf
     * map (and V8's isolate log) at exit, once the dump holds its copy. */
    if (rc == 0 && added)
        rc = setenv("STALLTRACE_RUN_JIT_MAPS", "1", 1);
    else if (rc == 0)
        unsetenv("STALLTRACE_RUN_JIT_MAPS");
    return rc;
}

/* HotSpot names its compiled code only when asked, and at exit
 * (DumpPerfMapAtExit writes /tmp/perf-PID.map, which the recorder copies into
 * the dump); its compiled frames keep a frame pointer only with
 * PreserveFramePointer, without which a stack stops at the first of them.
 * A command that is java itself gets them after its name, unless it says
 * otherwise; NULL when it is not java or already says. *map_added: the perf
 * map is ours to remove. */
static char **java_argv(char **argv, int *map_added)
{
    static const char *const flags[] = {"-XX:+UnlockDiagnosticVMOptions", "-XX:+DumpPerfMapAtExit",
                                        "-XX:+PreserveFramePointer"};
    const char *base = strrchr(argv[0], '/');
    size_t n = 0, extra = 0;

    *map_added = 0;
    if (strcmp(base ? base + 1 : argv[0], "java") != 0)
        return NULL;
    while (argv[n])
        n++;
    char **out = calloc(n + 4, sizeof(*out));
    if (!out)
        return NULL;
    out[0] = argv[0];
    for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
        bool given = false;
        /* "-XX:+Name" and "-XX:-Name" alike: the user's word on it stands. */
        for (size_t i = 1; i < n && !given; i++)
            given = strncmp(argv[i], "-XX:", 4) == 0 && strcmp(argv[i] + 5, flags[f] + 5) == 0;
        if (!given) {
            out[1 + extra++] = (char *)flags[f];
            *map_added |= f == 1;
        }
    }
    for (size_t i = 1; i <= n; i++)
        out[extra + i] = argv[i];
    return out;
}

/* What java_argv asked for, once the JVM has exited and its recorder copied
 * it: only a regular file of ours, never through a link. */
static void remove_java_perf_map(pid_t pid)
{
    char path[64];
    struct stat st;

    snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)pid);
    if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid())
        unlink(path);
}

/* The output template as a glob (dumpname.h): %p %e %t match anything. */
static char *pattern_glob(const char *pat)
{
    static const struct st_dumpname_values any = {"*", "*", "*"};
    size_t cap = strlen(pat) * 2 + 1;
    char *g = malloc(cap);

    if (g)
        st_dumpname_expand(pat, &any, 1, g, cap);
    return g;
}

/* When a dump's path is taken the recorder writes NAME.N.dump (or PATH.N):
 * the glob of those names. */
static char *taken_name_glob(const char *g)
{
    size_t cap = strlen(g) + 16;
    char *t = malloc(cap);

    if (t)
        st_dumpname_taken_glob(g, t, cap);
    return t;
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_usage(FILE *out)
{
    fprintf(out, "usage: stalltrace run [-o PATH] [--threshold MS] [--buffer-mb N] [--no-jit-maps]\n"
                 "                      [--no-python-hook] [--] CMD [ARGS...]\n");
}

int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},
        {"threshold", required_argument, NULL, 't'},
        {"buffer-mb", required_argument, NULL, 'b'},
        {"no-jit-maps", no_argument, NULL, 'J'},
        {"no-python-hook", no_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *output = NULL, *threshold = NULL, *buffer = NULL;
    struct sigaction sa, old_int, old_term;
    struct timespec t0;
    uint64_t start_real_ns;
    char *lib, *g;
    glob_t gl;
    double v;
    int c, status, rc, found = 0, jit_maps = 1, python_hook = 1;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+o:t:b:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            output = optarg;
            break;
        case 't':
            if (!parse_number(optarg, 1e9, &v)) {
                fprintf(stderr, "stalltrace: run: --threshold wants milliseconds, not '%s'\n", optarg);
                return 2;
            }
            threshold = optarg;
            break;
        case 'b':
            if (!parse_number(optarg, 1 << 20, &v) || v < 1 || v != (double)(long)v) {
                fprintf(stderr, "stalltrace: run: --buffer-mb wants a whole number of MiB, not '%s'\n",
                        optarg);
                return 2;
            }
            buffer = optarg;
            break;
        case 'J':
            jit_maps = 0;
            break;
        case 'P':
            python_hook = 0;
            break;
        case 'h':
            run_usage(stdout);
            return 0;
        default:
            fprintf(stderr, "stalltrace: run: bad option '%s'\n", argv[optind - 1]);
            run_usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "stalltrace: run: no command given\n");
        run_usage(stderr);
        return 2;
    }
    lib = find_preload();
    if (!lib) {
        if (!getenv("STALLTRACE_PRELOAD"))
            fprintf(stderr, "stalltrace: run: cannot find libstalltrace.so (set STALLTRACE_PRELOAD)\n");
        return 2;
    }
    /* -o wins, then an output the caller already set, then the default. */
    if (!output)
        output = getenv("STALLTRACE_OUTPUT");
    if (!output || !*output)
        output = ST_DUMPNAME_DEFAULT;
    if (set_preload(lib) < 0 || setenv("STALLTRACE_OUTPUT", output, 1) < 0 ||
        (threshold && setenv("STALLTRACE_THRESHOLD_MS", threshold, 1) < 0) ||
        (buffer && setenv("STALLTRACE_BUFFER_MB", buffer, 1) < 0) ||
        (jit_maps && enable_jit_maps() < 0) || (python_hook && enable_python_hook() < 0)) {
        fprintf(stderr, "stalltrace: run: cannot set the environment\n");
        free(lib);
        return 2;
    }
    free(lib);

    clock_gettime(CLOCK_REALTIME, &t0);
    start_real_ns = (uint64_t)t0.tv_sec * 1000000000u + (uint64_t)t0.tv_nsec;
    int java_map = 0;
    char **java = jit_maps ? java_argv(argv + optind, &java_map) : NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "stalltrace: run: fork: %s\n", strerror(errno));
        return 2;
    }
    if (pid == 0) {
        execvp(argv[optind], java ? java : argv + optind);
        fprintf(stderr, "stalltrace: run: %s: %s\n", argv[optind], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    child_pid = pid;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = forward_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "stalltrace: run: waitpid: %s\n", strerror(errno));
            return 2;
        }
    }
    child_pid = 0;
    free(java);
    if (java_map)
        remove_java_perf_map(pid);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    rc = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;

    /* The dumps of this run: matching the pattern, started after we did. */
    g = pattern_glob(output);
    char *taken = g ? taken_name_glob(g) : NULL;
    int globbed = g ? glob(g, 0, NULL, &gl) : GLOB_NOMATCH;
    if (taken)
        globbed = glob(taken, globbed == 0 ? GLOB_APPEND : 0, NULL, &gl) == 0 ? 0 : globbed;
    if (g && globbed == 0) {
        qsort(gl.gl_pathv, gl.gl_pathc, sizeof(char *), cmp_path);
        for (size_t k = 0; k < gl.gl_pathc; k++) {
            uint64_t started;
            int32_t dpid;
            char *path = gl.gl_pathv[k];
            if (k > 0 && strcmp(path, gl.gl_pathv[k - 1]) == 0)
                continue;          /* matched by both patterns */
            if (dump_peek_start(path, &started, &dpid) < 0 || started < start_real_ns)
                continue;
            fprintf(stderr, "stalltrace: dump written to %s\n", path);
            if (found++ == 0)
                fputc('\n', stderr);
            static const struct text_limits trimmed = {3, 6, false};
            char *one[1] = {path};
            struct report_options trim = {.limits = &trimmed};
            if (report_dumps(stderr, one, 1, report_format_find("text"), NULL, &trim) != 0)
                fputc('\n', stderr);
        }
        globfree(&gl);
    }
    free(g);
    free(taken);
    /* The recorder removes the dump of a process with no loop and no event. */
    if (!found)
        fprintf(stderr, "stalltrace: no dump matching %s: the command had no event loop and no "
                        "slow call, or the recorder was disabled or could not write there\n", output);
    return rc;
}

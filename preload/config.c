/* config.c - the STALLTRACE_* environment, read once at start-up.
 * A malformed value is reported once on stderr and replaced by its default:
 * the recorder must never make the target fail.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "recorder.h"
#include "stalltrace/dumpname.h"

#define ST_DEFAULT_THRESHOLD_MS 20
#define ST_DEFAULT_BUFFER_MB 16

/* Straight to fd 2 with a raw syscall: no stdio, no wrapper of ours. */
void st_warn(const char *msg1, const char *msg2)
{
    char buf[512];
    size_t n = 0;
    const char *parts[] = {"stalltrace: ", msg1, msg2, "\n"};
    for (unsigned i = 0; i < 4; i++)
        for (const char *p = parts[i]; p && *p && n < sizeof buf - 1; p++)
            buf[n++] = *p;
    if (buf[n - 1] != '\n')
        buf[n++] = '\n';
    int saved_errno = errno;
    (void)syscall(SYS_write, 2, buf, n);
    errno = saved_errno;
}

/* Non-negative decimal with an optional fraction; -1 when malformed. */
static double parse_number(const char *s)
{
    if (s == NULL || *s == '\0')
        return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end != '\0' || v != v || v < 0 || v > 1e9)
        return -1;
    return v;
}

static int parse_signal(const char *s)
{
    if (strncmp(s, "SIGRTMIN", 8) == 0 || strncmp(s, "SIGRTMAX", 8) == 0) {
        int base = s[6] == 'I' ? SIGRTMIN : SIGRTMAX;
        if (s[8] == '\0')
            return base;
        double off = parse_number(s + 9);
        if (off < 0 || off != (int)off)
            return -1;
        int sig = s[8] == '+' ? base + (int)off : s[8] == '-' ? base - (int)off : -1;
        return sig >= SIGRTMIN && sig <= SIGRTMAX ? sig : -1;
    }
    double v = parse_number(s);
    if (v < 0 || v != (int)v || (v != 0 && (v < 1 || v >= NSIG)))
        return -1;
    return (int)v;
}

void st_config_read(struct st_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->disabled = getenv("STALLTRACE_DISABLE") != NULL;

    const char *out = getenv("STALLTRACE_OUTPUT");
    if (out == NULL || *out == '\0' || strlen(out) >= sizeof cfg->output - 16) {
        if (out != NULL)
            st_warn("STALLTRACE_OUTPUT is empty or too long; using ", ST_DUMPNAME_DEFAULT);
        out = ST_DUMPNAME_DEFAULT;
    }
    strcpy(cfg->output, out);

    cfg->threshold_ns = (uint64_t)ST_DEFAULT_THRESHOLD_MS * 1000000u;
    const char *th = getenv("STALLTRACE_THRESHOLD_MS");
    if (th != NULL) {
        double ms = parse_number(th);
        if (ms <= 0 || ms > 3600e3)
            st_warn("STALLTRACE_THRESHOLD_MS is not a positive number of milliseconds; using 20: ", th);
        else
            cfg->threshold_ns = (uint64_t)(ms * 1e6);
    }

    cfg->buffer_bytes = (uint64_t)ST_DEFAULT_BUFFER_MB << 20;
    const char *mb = getenv("STALLTRACE_BUFFER_MB");
    if (mb != NULL) {
        double v = parse_number(mb);
        if (v < 1 || v > 4096 || v != (uint64_t)v)
            st_warn("STALLTRACE_BUFFER_MB is not a whole number from 1 to 4096; using 16: ", mb);
        else
            cfg->buffer_bytes = (uint64_t)v << 20;
    }

    cfg->sample_signal = SIGRTMAX - 4;
    const char *sig = getenv("STALLTRACE_SIGNAL");
    if (sig != NULL) {
        int v = parse_signal(sig);
        if (v < 0)
            st_warn("STALLTRACE_SIGNAL is not a signal number or SIGRTMIN+N; using the default: ", sig);
        else
            cfg->sample_signal = v;
    }

    cfg->follow_fork = 1;
    const char *ff = getenv("STALLTRACE_FOLLOW_FORK");
    if (ff != NULL) {
        if (strcmp(ff, "0") == 0)
            cfg->follow_fork = 0;
        else if (strcmp(ff, "1") != 0)
            st_warn("STALLTRACE_FOLLOW_FORK is neither 0 nor 1; using 1: ", ff);
    }
}

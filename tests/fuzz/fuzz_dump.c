/* fuzz_dump.c - libFuzzer harness for everything that reads a dump: the
 * reader, the model and every report format, on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"
#include "model.h"
#include "report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *err = NULL;
    struct dump *d;

    if (!sink && !(sink = fopen("/dev/null", "w")))
        abort();
    d = dump_open_mem(data, size, "fuzz.dump", &err);
    if (!d) {
        /* The contract: one line saying what is wrong. */
        if (!err || strchr(err, '\n'))
            abort();
        free(err);
        return 0;
    }
    /* Vary the options with the input's length, so both paths get coverage
     * without taking bytes away from the dump itself. The perf map directory
     * is one that cannot exist: only the dump's own bytes are read. */
    struct model_options opt = {
        .threshold_ms = (size >> 1) & 1 ? 50.0 : -1.0,
        .native_only = size & 1,
        .perf_map_dir = "/nonexistent-stalltrace-fuzz",
    };
    struct m_process *p = model_build(d, &opt);
    if (p) {
        struct text_limits lim = {.sites = 3, .frames = 4};
        struct report_options trimmed = {.limits = &lim};
        for (const struct report_format *f = report_formats; f->name; f++)
            f->write(sink, &p, 1, NULL);
        report_text(sink, &p, 1, &trimmed);
        fflush(sink);
        model_free(p);
    }
    dump_free(d);
    return 0;
}

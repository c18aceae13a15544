/* metrics_scrape.h - one scrape of `stalltrace metrics`: the dumps its
 * patterns match now, read one at a time, exposed as one exposition. */
#ifndef STALLTRACE_METRICS_SCRAPE_H
#define STALLTRACE_METRICS_SCRAPE_H

#include <stddef.h>

struct scraper;

/* The patterns (globs) are borrowed for the scraper's life. NULL: out of
 * memory. */
struct scraper *scraper_new(char **patterns, int npatterns);
void scraper_free(struct scraper *s);

/* Render the exposition of every dump matched now: 0 and a malloc'd *body,
 * or -1 and a malloc'd one-line *error (the scrape failed: a directory that
 * cannot be listed, no fd left, out of memory), never a partial answer.
 * Not thread-safe: one render at a time. */
int scraper_render(struct scraper *s, char **body, size_t *len, char **error);

/* Make a render in progress (another thread's) give up after the dump it
 * is reading: the server is stopping. */
void scraper_cancel(struct scraper *s);

#endif /* STALLTRACE_METRICS_SCRAPE_H */

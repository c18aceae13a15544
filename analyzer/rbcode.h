/* rbcode.h - CRuby 3.1 line tables as a dump carries them
 * (st_ruby_linetable): the line an instruction word is at, offline. */
#ifndef STALLTRACE_RBCODE_H
#define STALLTRACE_RBCODE_H

#include <stddef.h>
#include <stdint.h>

/* The line of instruction word `word` of an iseq whose table is table[len]
 * (st_ruby_linetable), or -1 when the table does not say (word beyond the
 * iseq, malformed or truncated table, a rank that names no entry). */
int rb_linetable_line(const uint8_t *table, size_t len, uint32_t word);

#endif /* STALLTRACE_RBCODE_H */

/* cmd.h - the subcommands of the stalltrace command, one file each; every
 * one returns the process exit status (0 ok, 2 bad usage or bad input; 1
 * for check and diff: a bound broken; run: the command's own status). */
#ifndef STALLTRACE_CMD_H
#define STALLTRACE_CMD_H

#include <stdio.h>

#include "report.h"

int cmd_report(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_top(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_attach(int argc, char **argv);
int cmd_detach(int argc, char **argv);

/* Load the dumps and print them in a format; NULL options are the
 * defaults. On a bad dump prints one line and returns 2. */
int report_dumps(FILE *out, char **paths, int n, const struct report_format *format,
                 const struct model_options *mopt, const struct report_options *ropt);

#endif /* STALLTRACE_CMD_H */

/*
 * cmds.h - the subcommands of the lokr tool.  Each lives in
 * tools/cmd_<name>.c, takes argv after the command word (argv[0] is the
 * command name) and returns the process exit status: 0 success, 1 failure
 * (message already on stderr), 2 usage error.
 *
 * The few helpers every subcommand needs live in tools/lokr.c.
 */
#ifndef LOKR_TOOLS_CMDS_H
#define LOKR_TOOLS_CMDS_H

#include <stdint.h>

int lokr_cmd_inspect(int argc, char **argv);
int lokr_cmd_merge(int argc, char **argv);
int lokr_cmd_factorize(int argc, char **argv);
int lokr_cmd_extract(int argc, char **argv);
int lokr_cmd_factorize_report(int argc, char **argv);
int lokr_cmd_demo(int argc, char **argv);

/* Parse a whole string as a decimal integer / a finite number; 0 on
 * success, -1 if the string is empty, has trailing junk or is out of range. */
int lokr_tool_parse_i64(const char *s, int64_t *out);
int lokr_tool_parse_double(const char *s, double *out);

/* Print "lokr <cmd>: <message>\n" on stderr and return `status`. */
int lokr_tool_fail(const char *cmd, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same for a library error about `path`: the path is printed once, even
 * when the library's message already names it. */
int lokr_tool_fail_file(const char *cmd, int status, const char *path, const char *msg);

#endif

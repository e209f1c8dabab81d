/*
 * lokr.c - the command-line tool's entry point: dispatches to the
 * subcommands of tools/cmds.h and holds their shared helpers.  Every failure
 * prints one clear line on stderr and exits nonzero (1 for bad input, 2 for
 * usage errors).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
};

static const struct command commands[] = {
    {"inspect", lokr_cmd_inspect, "inspect ADAPTER [--base BASE]... [--json]"},
    {"merge", lokr_cmd_merge,
     "merge --base BASE... --adapter FILE[:MULT]... [--dtype f32|f16|bf16] -o OUT"},
    {"factorize", lokr_cmd_factorize, "factorize DIM [IN] [--factor F] [--unbalanced]"},
    {"extract", lokr_cmd_extract,
     "extract --base BASE --tuned TUNED -o OUT [--factor F] [--unbalanced] [--rank R | --full]"},
    {"factorize-report", lokr_cmd_factorize_report,
     "factorize-report --base BASE --tuned TUNED [--params N] [--json]"},
    {"demo", lokr_cmd_demo, "demo -o DIR"},
};

static void usage(FILE *to)
{
	fprintf(to, "usage: lokr <command> [args]   (lokr <command> --help for details)\n"
	            "commands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(to, "  lokr %s\n", commands[i].usage);
}

int lokr_tool_parse_i64(const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (!*s || *end || errno)
		return -1;
	*out = v;
	return 0;
}

int lokr_tool_parse_double(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (!*s || *end || errno || !isfinite(v))
		return -1;
	*out = v;
	return 0;
}

int lokr_tool_fail(const char *cmd, int status, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "lokr %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return status;
}

int lokr_tool_fail_file(const char *cmd, int status, const char *path, const char *msg)
{
	if (strstr(msg, path))
		return lokr_tool_fail(cmd, status, "%s", msg);
	return lokr_tool_fail(cmd, status, "%s: %s", path, msg);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "lokr: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}

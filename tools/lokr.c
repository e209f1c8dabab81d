/*
 * lokr.c - the command-line tool's entry point: dispatches to the
 * subcommands of tools/cmds.h.  Every failure prints one clear line on
 * stderr and exits nonzero.
 */
#include <stdio.h>
#include <string.h>

#include "cmds.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
};

static const struct command commands[] = {
	{"inspect", lokr_cmd_inspect, "inspect ADAPTER [--base BASE] [--json]"},
	{"merge", lokr_cmd_merge,
	 "merge --base BASE --adapter FILE[:MULT]... [--dtype f32|f16|bf16] -o OUT"},
	{"factorize", lokr_cmd_factorize, "factorize DIM [--factor F] [--unbalanced]"},
};

static void usage(FILE *to)
{
	fprintf(to, "usage: lokr <command> [args]\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(to, "  %s\n", commands[i].usage);
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

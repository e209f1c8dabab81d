/*
 * lokr.c - the command-line tool: one subcommand per job, each in its own
 * function below (inspect, merge, factorize, ...).  Every failure prints one
 * clear line on stderr and exits nonzero.
 */
#include <stdio.h>
#include <string.h>

#include "lokr.h"

static void usage(FILE *to)
{
	fprintf(to, "usage: lokr <command> [args]\n"
	            "commands:\n"
	            "  inspect ADAPTER [--base BASE] [--json]\n"
	            "  merge --base BASE --adapter FILE[:MULT]... [--dtype f32|f16|bf16] -o OUT\n"
	            "  factorize DIM [--factor F] [--unbalanced]\n");
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	fprintf(stderr, "lokr: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}

/* cmd_factorize.c - `lokr factorize` (being written). */
#include <stdio.h>

#include "cmds.h"

int lokr_cmd_factorize(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "lokr factorize: not implemented yet\n");
	return 1;
}

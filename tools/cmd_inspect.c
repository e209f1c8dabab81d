/* cmd_inspect.c - `lokr inspect` (being written). */
#include <stdio.h>

#include "cmds.h"

int lokr_cmd_inspect(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "lokr inspect: not implemented yet\n");
	return 1;
}

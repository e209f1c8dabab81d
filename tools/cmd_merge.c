/* cmd_merge.c - `lokr merge` (being written). */
#include <stdio.h>

#include "cmds.h"

int lokr_cmd_merge(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "lokr merge: not implemented yet\n");
	return 1;
}

/*
 * cmds.h - the subcommands of the lokr tool.  Each lives in
 * tools/cmd_<name>.c, takes argv after the command word (argv[0] is the
 * command name) and returns the process exit status: 0 success, 1 failure
 * (message already on stderr), 2 usage error.
 */
#ifndef LOKR_TOOLS_CMDS_H
#define LOKR_TOOLS_CMDS_H

int lokr_cmd_inspect(int argc, char **argv);
int lokr_cmd_merge(int argc, char **argv);
int lokr_cmd_factorize(int argc, char **argv);

#endif

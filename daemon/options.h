/*
 * options.h - lokrd's settings: defaults, the JSON config file (--config)
 * and the command line, which wins over the file (DESIGN.md "Command line").
 */
#ifndef LOKRD_OPTIONS_H
#define LOKRD_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define LOKRD_MAX_BASES 16

typedef struct lokrd_options {
	char *base[LOKRD_MAX_BASES]; /* owned paths */
	size_t nbase;
	char *adapters_dir;   /* owned */
	char *listen_host;    /* owned; "127.0.0.1" by default */
	int listen_port;      /* 0 = ephemeral */
	char *config_path;    /* owned or NULL */
	int threads;          /* compute workers; 0 = available parallelism */
	uint64_t cache_bytes; /* adapter cache budget, bytes */
	int workers;          /* serving processes; 1 = no fork */
	lokrd_log_format log_format;

	/* Limits (the config keys of issue "limits" extend these). */
	uint64_t max_json_body;  /* bytes of a JSON request body */
	uint64_t max_upload;     /* bytes of a PUT adapter body */
	uint64_t max_elements;   /* elements of one request tensor */
	int max_inflight;        /* compute jobs admitted before 503 */
	int max_set;             /* adapters in one set */
	unsigned idle_timeout_s; /* MHD connection timeout */
	unsigned max_connections;
	unsigned max_connections_per_ip;
} lokrd_options;

/* What lokrd_options_parse asks the caller to do. */
enum {
	LOKRD_OPTIONS_RUN = 0,
	LOKRD_OPTIONS_EXIT_OK = 1, /* --help / --version printed */
	LOKRD_OPTIONS_USAGE = 2,   /* error printed on stderr, exit 2 */
};

/* Fill `o` from defaults, the config file named by --config (if any) and
 * argv.  Prints help/version/errors itself.  Returns one of the values
 * above; on RUN the caller frees with lokrd_options_free. */
int lokrd_options_parse(lokrd_options *o, int argc, char **argv);
void lokrd_options_free(lokrd_options *o);

/* Parse "123", "64K", "512M", "4G" (powers of 1024) into bytes; -1 on error. */
int lokrd_parse_size(const char *s, uint64_t *out);

#endif

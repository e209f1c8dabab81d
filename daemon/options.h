/*
 * options.h - lokrd's settings: defaults, the JSON config file (--config)
 * and the command line, which wins over the file (DESIGN.md "Command line").
 *
 * Every setting has a config key; most also have a command-line option.
 * They are one table in options.c (config_keys[]): to add a setting, add a
 * field here, a default in defaults() and a row there.  A row marked
 * reloadable is re-read on SIGHUP (lokrd_options_reload); the others need a
 * restart and SIGHUP says so.
 */
#ifndef LOKRD_OPTIONS_H
#define LOKRD_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define LOKRD_MAX_BASES 16

/* Who parallelizes compute (reliability.md §4; lokr_threading): never both. */
typedef enum lokrd_parallelism {
	LOKRD_PARALLEL_WORKERS = 0, /* --threads compute workers, OpenBLAS single-threaded */
	LOKRD_PARALLEL_BLAS,        /* one compute worker, OpenBLAS with --threads threads */
} lokrd_parallelism;

/* "workers" or "blas". */
const char *lokrd_parallelism_name(lokrd_parallelism p);

typedef struct lokrd_options {
	char *base[LOKRD_MAX_BASES]; /* owned paths */
	size_t nbase;
	char *adapters_dir;            /* owned */
	char *listen_host;             /* owned; "127.0.0.1" by default */
	int listen_port;               /* 0 = ephemeral */
	char *config_path;             /* owned or NULL */
	int threads;                   /* compute workers; 0 = available parallelism */
	uint64_t cache_bytes;          /* adapter cache budget, bytes (reloadable) */
	uint64_t merge_cache_bytes;    /* merged-tensor cache budget, bytes; 0 = off (reloadable) */
	int workers;                   /* serving processes; 1 = no fork */
	char *shm_name;                /* owned, "/"-prefixed; NULL: a sealed memfd (default) */
	lokrd_parallelism parallelism; /* who runs in parallel: workers or OpenBLAS */
	lokrd_log_format log_format;   /* reloadable */
	lokrd_log_level log_level;     /* least severe level logged (reloadable) */
	unsigned drain_timeout_s;      /* SIGTERM: bound on finishing requests (reloadable) */

	/* Limits (the config keys of issue "limits" extend these). */
	uint64_t max_json_body;  /* bytes of a JSON request body */
	uint64_t max_upload;     /* bytes of a PUT adapter body */
	uint64_t max_elements;   /* elements of one request tensor */
	int max_inflight;        /* compute jobs admitted before 503 */
	int max_set;             /* adapters in one set */
	unsigned idle_timeout_s; /* MHD connection timeout */
	unsigned max_connections;
	unsigned max_connections_per_ip;
	/* Limits and tenants of issue 6 (limits.c, tenant.c): config keys
	 * "limits", "tenants", "admin_tokens", "allow_open". */
	uint64_t max_rows;             /* input rows of one apply request */
	int max_json_depth;            /* nesting of a JSON body */
	uint64_t max_header_bytes;     /* MHD's per-connection memory (request line, headers) */
	int max_queue;                 /* pool tasks waiting before 503 */
	unsigned request_timeout_s;    /* to receive one whole request */
	uint64_t compute_deadline_ms;  /* a received request waiting longer gets 503 */
	int allow_open;                /* no tokens, yet a non-loopback listen address */
	struct lokrd_tenants *tenants; /* owned; NULL: no tokens (one open tenant) */

	/* The command line, kept (borrowed from main) so a reload can apply it
	 * again over the re-read file. */
	int argc;
	char **argv;
} lokrd_options;

/* What lokrd_options_parse asks the caller to do. */
enum {
	LOKRD_OPTIONS_RUN = 0,
	LOKRD_OPTIONS_EXIT_OK = 1, /* --help / --version printed */
	LOKRD_OPTIONS_USAGE = 2,   /* error printed on stderr, exit 2 */
	LOKRD_OPTIONS_CHECK = 3,   /* --check-config: parsed; the caller checks the rest */
};

/* Fill `o` from defaults, the config file named by --config (if any) and
 * argv (borrowed: it must outlive `o`).  Prints help/version/errors itself;
 * every config error names the file and the key.  Returns one of the
 * values above; on RUN or CHECK the caller frees with lokrd_options_free. */
int lokrd_options_parse(lokrd_options *o, int argc, char **argv);
void lokrd_options_free(lokrd_options *o);

/* SIGHUP: read the config file and the command line again and copy the
 * reloadable settings into `live` (loop thread; nothing else writes
 * `live`).  Settings that changed but need a restart are listed in
 * `restart` ("listen, threads" or ""), and are not applied.  Returns 0, or
 * -1 when the file does not parse or validate (errors on stderr; `live`
 * untouched).
 * Mind: the new settings replace `live` wholesale except the restart-only
 * fields, and the old values are freed.  A field added later is therefore
 * reloadable by default; a pointer field that something else borrows (a
 * table built from the config) must either be swapped back in reload (see
 * options.c) or be re-fetched by its users after a reload. */
int lokrd_options_reload(lokrd_options *live, char *restart, size_t restart_len);

/* Parse "123", "64K", "512M", "4G" (powers of 1024) into bytes; -1 on error. */
int lokrd_parse_size(const char *s, uint64_t *out);

#endif

/*
 * options.c - defaults, config file and command line for lokrd.
 *
 * Order: defaults, then the JSON config file (--config, found in a first
 * pass over argv), then the command line, so the command line wins.  Every
 * setting is one row of config_keys[] below, which drives both the file
 * and the command line: the same setter validates a value from either, and
 * a rejected value is reported naming the key (file) or the option (command
 * line).  Unknown keys are errors: a typo must not silently fall back to a
 * default.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "limits.h"
#include "options.h"
#include "tenant.h"

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d) {
		fputs("lokrd: out of memory\n", stderr);
		exit(1);
	}
	return d;
}

static void set_str(char **slot, const char *v)
{
	free(*slot);
	*slot = xstrdup(v);
}

int lokrd_parse_size(const char *s, uint64_t *out)
{
	if (!s || !*s || *s == '-')
		return -1;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	unsigned shift = 0;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	case 't':
	case 'T':
		shift = 40;
		end++;
		break;
	default:
		return -1;
	}
	if (*end == 'i' || *end == 'B')
		end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end)
		return -1;
	if (shift && v > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
	if (!s || !*s)
		return -1;
	errno = 0;
	char *end;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* A config value as text: strings as they are, integers in decimal, so a
 * number may be written either way in the file ("threads": 4 or "4"). */
static int scalar(const json_t *v, char *buf, size_t len)
{
	if (json_is_string(v)) {
		int n = snprintf(buf, len, "%s", json_string_value(v));
		return n < 0 || (size_t)n >= len ? -1 : 0;
	}
	if (json_is_integer(v)) {
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
		return 0;
	}
	return -1;
}

static int scalar_long(const json_t *v, long lo, long hi, long *out)
{
	char buf[64];
	return scalar(v, buf, sizeof buf) ? -1 : parse_long(buf, lo, hi, out);
}

/* ------------------------------------------------------------ setters */

/* A setter validates `v` (a JSON value from the file, or a JSON string
 * holding a command-line argument) and stores it in `o`.  It returns 0 or
 * -1; on -1 the caller prints "<key> must be <expect>" unless the row's
 * expect is NULL, in which case the setter printed its own message naming
 * `src` (the config path or "command line"). */
typedef int (*key_setter)(lokrd_options *o, const json_t *v, const char *src);

static void clear_bases(lokrd_options *o)
{
	for (size_t i = 0; i < o->nbase; i++)
		free(o->base[i]);
	o->nbase = 0;
}

static int add_base(lokrd_options *o, const char *path)
{
	if (o->nbase == LOKRD_MAX_BASES || !*path)
		return -1;
	o->base[o->nbase++] = xstrdup(path);
	return 0;
}

static int set_base(lokrd_options *o, const json_t *v, const char *src)
{
	(void)src;
	clear_bases(o);
	if (json_is_string(v))
		return add_base(o, json_string_value(v));
	if (!json_is_array(v) || json_array_size(v) == 0)
		return -1;
	size_t i;
	json_t *e;
	json_array_foreach(v, i, e)
	{
		if (!json_is_string(e) || add_base(o, json_string_value(e)))
			return -1;
	}
	return 0;
}

static int set_path(char **slot, const json_t *v)
{
	if (!json_is_string(v) || !*json_string_value(v))
		return -1;
	set_str(slot, json_string_value(v));
	return 0;
}

static int set_adapters(lokrd_options *o, const json_t *v, const char *src)
{
	(void)src;
	return set_path(&o->adapters_dir, v);
}

/* "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT". */
static int set_listen(lokrd_options *o, const json_t *v, const char *src)
{
	(void)src;
	char s[300];
	if (scalar(v, s, sizeof s))
		return -1;
	const char *colon = strrchr(s, ':');
	const char *port_s = colon ? colon + 1 : s;
	long port;
	if (parse_long(port_s, 0, 65535, &port))
		return -1;
	char host[256] = "127.0.0.1";
	if (colon && colon != s) {
		size_t n = (size_t)(colon - s);
		const char *h = s;
		if (h[0] == '[' && n >= 2 && h[n - 1] == ']') {
			h++;
			n -= 2;
		}
		if (n == 0 || n >= sizeof host)
			return -1;
		memcpy(host, h, n);
		host[n] = '\0';
	}
	set_str(&o->listen_host, host);
	o->listen_port = (int)port;
	return 0;
}

static int set_threads(lokrd_options *o, const json_t *v, const char *src)
{
	(void)src;
	long n;
	if (scalar_long(v, 0, 1024, &n))
		return -1;
	o->threads = (int)n;
	return 0;
}

static int set_workers(lokrd_options *o, const json_t *v, const char *src)
{
	(void)src;
	long n;
	if (scalar_long(v, 1, 256, &n))
		return -1;
	o->workers = (int)n;
	return 0;
}

/* 0 when `name` is a valid --shm-name: an optional leading "/", then 1..200
 * of [A-Za-z0-9._-], not only dots (shm_open's rules, kept portable). */
static int shm_name_valid(const char *name)
{
	if (!name)
		return -1;
	if (*name == '/')
		name++;
	size_t n = strlen(name);
	if (n == 0 || n > 200 || strspn(name, ".") == n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return -1;
	}
	return 0;
}

static int set_shm_name(lokrd_options *o, const json_t *v, const char *src)
{
	(void)src;
	const char *name = json_string_value(v);
	if (shm_name_valid(name))
		return -1;
	char buf[256];
	snprintf(buf, sizeof buf, "%s%s", name[0] == '/' ? "" : "/", name);
	set_str(&o->shm_name, buf);
	return 0;
}

const char *lokrd_parallelism_name(lokrd_parallelism p)
{
	return p == LOKRD_PARALLEL_BLAS ? "blas" : "workers";
}

static int set_parallelism(lokrd_options *o, const json_t *v, const char *src)
{
	(void)src;
	const char *s = json_string_value(v);
	if (s && !strcmp(s, "workers"))
		o->parallelism = LOKRD_PARALLEL_WORKERS;
	else if (s && !strcmp(s, "blas"))
		o->parallelism = LOKRD_PARALLEL_BLAS;
	else
		return -1;
	return 0;
}

static int set_merge_cache_bytes(lokrd_options *o, const json_t *v, const char *src)
{
	(void)src;
	char buf[64];
	return scalar(v, buf, sizeof buf) ? -1 : lokrd_parse_size(buf, &o->merge_cache_bytes);
}

static int set_cache_bytes(lokrd_options *o, const json_t *v, const char *src)
{
	(void)src;
	char buf[64];
	return scalar(v, buf, sizeof buf) ? -1 : lokrd_parse_size(buf, &o->cache_bytes);
}

static int set_log_format(lokrd_options *o, const json_t *v, const char *src)
{
	(void)src;
	const char *s = json_string_value(v);
	if (s && !strcmp(s, "text"))
		o->log_format = LOKRD_LOG_TEXT;
	else if (s && !strcmp(s, "json"))
		o->log_format = LOKRD_LOG_JSON;
	else
		return -1;
	return 0;
}

static int set_log_level(lokrd_options *o, const json_t *v, const char *src)
{
	(void)src;
	static const char *const names[] = {"debug", "info", "warn", "error"};
	const char *s = json_string_value(v);
	for (int i = 0; s && i < 4; i++) {
		if (!strcmp(s, names[i])) {
			o->log_level = (lokrd_log_level)i;
			return 0;
		}
	}
	return -1;
}

static int set_drain_timeout(lokrd_options *o, const json_t *v, const char *src)
{
	(void)src;
	long n;
	if (scalar_long(v, 0, 86400, &n))
		return -1;
	o->drain_timeout_s = (unsigned)n;
	return 0;
}

/* Issue 6: the "limits" object and the tenancy keys (limits.c, tenant.c;
 * they print their own errors). */
static int set_limits(lokrd_options *o, const json_t *v, const char *src)
{
	return lokrd_limits_config(o, v, src);
}

static int set_tenants(lokrd_options *o, const json_t *v, const char *src)
{
	return lokrd_tenants_config(o, "tenants", v, src);
}

static int set_admin_tokens(lokrd_options *o, const json_t *v, const char *src)
{
	return lokrd_tenants_config(o, "admin_tokens", v, src);
}

static int set_allow_open(lokrd_options *o, const json_t *v, const char *src)
{
	return lokrd_tenants_config(o, "allow_open", v, src);
}

/* ------------------------------------------------------------ the table */

typedef struct config_key {
	const char *key;    /* in the config file */
	const char *option; /* on the command line, without "--"; NULL: file only */
	key_setter set;
	const char *expect; /* "must be ..." text; NULL: the setter reports */
	int reload;         /* re-applied on SIGHUP; 0: needs a restart */
} config_key;

static const config_key config_keys[] = {
    {"base", "base", set_base, "a path or a non-empty array of at most 16 paths", 0},
    {"adapters", "adapters", set_adapters, "a directory path", 0},
    {"listen", "listen", set_listen, "\"HOST:PORT\" (port 0..65535)", 0},
    {"threads", "threads", set_threads, "an integer 0..1024 (0: the CPUs available)", 0},
    {"workers", "workers", set_workers, "an integer 1..256", 0},
    {"shm_name", "shm-name", set_shm_name,
     "a shared-memory name: optional \"/\", then 1..200 of [A-Za-z0-9._-]", 0},
    {"parallelism", "parallelism", set_parallelism, "\"workers\" or \"blas\"", 0},
    {"cache_bytes", "cache-bytes", set_cache_bytes, "a byte count (e.g. 1073741824 or \"1G\")", 1},
    {"merge_cache_bytes", "merge-cache-bytes", set_merge_cache_bytes,
     "a byte count (e.g. 268435456 or \"256M\"; 0 = off)", 1},
    {"log_format", "log-format", set_log_format, "\"text\" or \"json\"", 1},
    {"log_level", "log-level", set_log_level, "\"debug\", \"info\", \"warn\" or \"error\"", 1},
    {"drain_timeout", "drain-timeout", set_drain_timeout, "seconds, an integer 0..86400", 1},
    {"limits", NULL, set_limits, NULL, 1},
    {"tenants", NULL, set_tenants, NULL, 1},
    {"admin_tokens", NULL, set_admin_tokens, NULL, 1},
    {"allow_open", NULL, set_allow_open, NULL, 0},
};
#define NKEYS (sizeof config_keys / sizeof config_keys[0])

static void defaults(lokrd_options *o)
{
	memset(o, 0, sizeof *o);
	o->listen_host = xstrdup("127.0.0.1");
	o->listen_port = 8080;
	o->cache_bytes = (uint64_t)2 << 30;
	o->merge_cache_bytes = (uint64_t)256 << 20;
	o->workers = 1;
	o->log_level = LOKRD_LOG_INFO;
	o->drain_timeout_s = 30;
	lokrd_limits_defaults(o);
}

static int load_config(lokrd_options *o, const char *path)
{
	json_error_t jerr;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		fprintf(stderr, "lokrd: config %s:%d: %s\n", path, jerr.line, jerr.text);
		return -1;
	}
	if (!json_is_object(root)) {
		fprintf(stderr, "lokrd: config %s: the top level must be an object\n", path);
		json_decref(root);
		return -1;
	}
	const char *key;
	json_t *v;
	int rc = 0;
	json_object_foreach(root, key, v)
	{
		const config_key *k = NULL;
		for (size_t i = 0; i < NKEYS && !k; i++)
			if (!strcmp(config_keys[i].key, key))
				k = &config_keys[i];
		if (!k) {
			fprintf(stderr, "lokrd: config %s: unknown key \"%s\"\n", path, key);
			rc = -1;
		} else if (k->set(o, v, path)) {
			if (k->expect)
				fprintf(stderr, "lokrd: config %s: \"%s\" must be %s\n", path, key,
				        k->expect);
			rc = -1;
		}
		if (rc)
			break;
	}
	json_decref(root);
	return rc;
}

static void usage(FILE *to)
{
	fputs("usage: lokrd --base FILE.safetensors [--base MORE.safetensors]\n"
	      "             --adapters DIR [--listen 127.0.0.1:8080] [--config FILE.json]\n"
	      "             [--threads N] [--parallelism workers|blas] [--cache-bytes N]\n"
	      "             [--workers N] [--shm-name NAME]\n"
	      "             [--log-format json|text] [--log-level LEVEL]\n"
	      "             [--drain-timeout SECONDS]\n"
	      "       lokrd --check-config [--config FILE.json] [options]\n"
	      "       lokrd --help | --version\n"
	      "\n"
	      "  --base FILE        base model layers (safetensors); repeat for more files\n"
	      "  --adapters DIR     adapter directory, DIR/<id>.safetensors\n"
	      "  --listen ADDR      HOST:PORT to listen on (port 0: pick a free port);\n"
	      "                     default 127.0.0.1:8080\n"
	      "  --config FILE      JSON config: every option as a key (base, adapters,\n"
	      "                     listen, threads, workers, cache_bytes, log_format,\n"
	      "                     log_level, drain_timeout, limits, tenants, ...); the\n"
	      "                     command line wins.  SIGHUP re-reads it.\n"
	      "  --threads N        compute threads per process (default: CPUs available)\n"
	      "  --parallelism P    workers (default): --threads compute workers, each with\n"
	      "                     single-threaded OpenBLAS (throughput); blas: one compute\n"
	      "                     worker, OpenBLAS with --threads threads (latency)\n"
	      "  --cache-bytes N    adapter cache budget, e.g. 2G (default 2G)\n"
	      "  --merge-cache-bytes N  merged-tensor cache for repeated /v1/merge, apart\n"
	      "                     from --cache-bytes (default 256M; 0: off)\n"
	      "  --workers N        serving processes sharing the base in memory (default 1)\n"
	      "  --shm-name NAME    keep the base in the POSIX shared-memory segment NAME\n"
	      "                     (/dev/shm/NAME), shared by every lokrd started with the\n"
	      "                     same NAME and --base files; default: a private memfd\n"
	      "  --log-format F     text (default) or json, on stderr\n"
	      "  --log-level L      debug, info (default), warn or error\n"
	      "  --drain-timeout S  on SIGTERM, finish requests for at most S seconds\n"
	      "                     (default 30), then answer the rest 503\n"
	      "  --check-config     validate the config file and options, then exit\n",
	      to);
}

enum { OPT_CONFIG = 1000, OPT_HELP, OPT_VERSION, OPT_CHECK, OPT_KEY0 };

/* getopt's table: --config, --help, --version, then every row of
 * config_keys with a command-line option (val = OPT_KEY0 + row). */
static void long_options(struct option *lo)
{
	size_t n = 0;
	lo[n++] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
	lo[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
	lo[n++] = (struct option){"version", no_argument, NULL, OPT_VERSION};
	lo[n++] = (struct option){"check-config", no_argument, NULL, OPT_CHECK};
	for (size_t i = 0; i < NKEYS; i++)
		if (config_keys[i].option)
			lo[n++] = (struct option){config_keys[i].option, required_argument, NULL,
			                          OPT_KEY0 + (int)i};
	lo[n] = (struct option){NULL, 0, NULL, 0};
}

/* Defaults, file, command line.  `quiet` (reload): no help/version. */
static int parse_all(lokrd_options *o, int argc, char **argv, int quiet)
{
	struct option lo[NKEYS + 5];
	long_options(lo);
	defaults(o);
	o->argc = argc;
	o->argv = argv;
	int c;
	/* Pass 1: --help, --version, --config. */
	opterr = 0;
	optind = 0; /* glibc: 0 also resets getopt's internal state */
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == OPT_HELP && !quiet) {
			usage(stdout);
			return LOKRD_OPTIONS_EXIT_OK;
		}
		if (c == OPT_VERSION && !quiet) {
			printf("lokrd %s\n", PACKAGE_VERSION);
			return LOKRD_OPTIONS_EXIT_OK;
		}
		if (c == OPT_CONFIG)
			set_str(&o->config_path, optarg);
	}
	if (o->config_path && load_config(o, o->config_path))
		return LOKRD_OPTIONS_USAGE;
	/* Pass 2: the command line over the file. */
	opterr = !quiet;
	optind = 0;
	int cli_base = 0, bad = 0, check = 0;
	while (!bad && (c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == OPT_CONFIG || c == OPT_HELP || c == OPT_VERSION)
			continue;
		if (c == OPT_CHECK) {
			check = 1;
			continue;
		}
		if (c < OPT_KEY0 || c >= OPT_KEY0 + (int)NKEYS) {
			if (!quiet)
				usage(stderr);
			return LOKRD_OPTIONS_USAGE;
		}
		const config_key *k = &config_keys[c - OPT_KEY0];
		int rc;
		if (k->set == set_base) {
			/* --base repeats: the first replaces the file's list. */
			if (!cli_base++)
				clear_bases(o);
			rc = add_base(o, optarg);
		} else {
			json_t *v = json_string(optarg);
			rc = v ? k->set(o, v, "command line") : -1;
			json_decref(v);
		}
		if (rc) {
			if (k->expect)
				fprintf(stderr, "lokrd: invalid --%s '%s': must be %s\n", k->option,
				        optarg, k->expect);
			bad = 1;
		}
	}
	if (!bad && optind < argc) {
		fprintf(stderr, "lokrd: unexpected argument '%s'\n", argv[optind]);
		bad = 1;
	}
	if (!bad && (o->nbase == 0 || !o->adapters_dir)) {
		fprintf(stderr, "lokrd: %s is required (option or config key)\n",
		        o->nbase == 0 ? "--base" : "--adapters");
		bad = 1;
	}
	if (bad) {
		if (!quiet)
			fputs("try 'lokrd --help'\n", stderr);
		return LOKRD_OPTIONS_USAGE;
	}
	if (check && !quiet)
		return LOKRD_OPTIONS_CHECK;
	return LOKRD_OPTIONS_RUN;
}

int lokrd_options_parse(lokrd_options *o, int argc, char **argv)
{
	int rc = parse_all(o, argc, argv, 0);
	if (rc != LOKRD_OPTIONS_RUN && rc != LOKRD_OPTIONS_CHECK)
		lokrd_options_free(o);
	return rc;
}

void lokrd_options_free(lokrd_options *o)
{
	clear_bases(o);
	free(o->adapters_dir);
	free(o->listen_host);
	free(o->config_path);
	free(o->shm_name);
	lokrd_tenants_free(o->tenants);
	memset(o, 0, sizeof *o);
}

/* ------------------------------------------------------------ reload */

static int str_differs(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a && strcmp(a, b));
}

static void note(char *buf, size_t len, const char *what)
{
	size_t at = strlen(buf);
	snprintf(buf + at, len - at, "%s%s", at ? ", " : "", what);
}

#define SWAP(field)                                                                                \
	do {                                                                                       \
		__typeof__(next.field) tmp_ = next.field;                                          \
		next.field = live->field;                                                          \
		live->field = tmp_;                                                                \
	} while (0)

/*
 * The new settings replace the live ones wholesale, except the fields that
 * need a restart, which are swapped back; the old struct (now holding the
 * replaced values) is then freed.  So a setting added later is reloadable
 * unless it is swapped back here, and any pointer field that is reloaded
 * is freed from the old copy: nothing may keep a borrowed pointer into a
 * reloadable field across a SIGHUP.
 */
int lokrd_options_reload(lokrd_options *live, char *restart, size_t restart_len)
{
	restart[0] = '\0';
	lokrd_options next;
	if (parse_all(&next, live->argc, live->argv, 1) != LOKRD_OPTIONS_RUN) {
		lokrd_options_free(&next);
		return -1;
	}
	int bases_differ = next.nbase != live->nbase;
	for (size_t i = 0; !bases_differ && i < next.nbase; i++)
		bases_differ = strcmp(next.base[i], live->base[i]) != 0;
	if (bases_differ)
		note(restart, restart_len, "base");
	if (str_differs(next.adapters_dir, live->adapters_dir))
		note(restart, restart_len, "adapters");
	if (str_differs(next.listen_host, live->listen_host) ||
	    next.listen_port != live->listen_port)
		note(restart, restart_len, "listen");
	if (next.threads != live->threads)
		note(restart, restart_len, "threads");
	if (next.workers != live->workers)
		note(restart, restart_len, "workers");
	if (str_differs(next.shm_name, live->shm_name))
		note(restart, restart_len, "shm_name");
	if (next.parallelism != live->parallelism)
		note(restart, restart_len, "parallelism");
	/* Given to MHD at start. */
	if (next.idle_timeout_s != live->idle_timeout_s ||
	    next.max_connections != live->max_connections ||
	    next.max_connections_per_ip != live->max_connections_per_ip ||
	    next.max_header_bytes != live->max_header_bytes)
		note(restart, restart_len, "connection limits");
	if (next.allow_open != live->allow_open)
		note(restart, restart_len, "allow_open");
	/* The live tenants hold registries: tokens and quotas are copied into
	 * them; a changed set of tenants needs a restart. */
	if (lokrd_tenants_reload(live->tenants, next.tenants))
		note(restart, restart_len, "tenants");

	for (size_t i = 0; i < LOKRD_MAX_BASES; i++)
		SWAP(base[i]);
	SWAP(nbase);
	SWAP(adapters_dir);
	SWAP(listen_host);
	SWAP(listen_port);
	SWAP(config_path);
	SWAP(threads);
	SWAP(workers);
	SWAP(shm_name);
	SWAP(parallelism);
	SWAP(idle_timeout_s);
	SWAP(max_connections);
	SWAP(max_connections_per_ip);
	SWAP(max_header_bytes);
	SWAP(allow_open);
	SWAP(tenants);
	lokrd_options old = *live;
	*live = next;
	lokrd_options_free(&old);
	return 0;
}

/*
 * options.c - defaults, config file and command line for lokrd.
 *
 * Order: defaults, then the JSON config file (--config, found in a first
 * pass over argv), then the command line, so the command line wins.  Every
 * config key is validated with a message naming the key; unknown keys are
 * errors (a typo must not silently fall back to a default).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "options.h"

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

static int parse_int(const char *s, long lo, long hi, int *out)
{
	if (!s || !*s)
		return -1;
	errno = 0;
	char *end;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

/* "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT". */
static int parse_listen(lokrd_options *o, const char *s)
{
	const char *colon = strrchr(s, ':');
	const char *port_s = colon ? colon + 1 : s;
	int port;
	if (parse_int(port_s, 0, 65535, &port))
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
	o->listen_port = port;
	return 0;
}

static int parse_log_format(const char *s, lokrd_log_format *out)
{
	if (!strcmp(s, "text"))
		*out = LOKRD_LOG_TEXT;
	else if (!strcmp(s, "json"))
		*out = LOKRD_LOG_JSON;
	else
		return -1;
	return 0;
}

static void defaults(lokrd_options *o)
{
	memset(o, 0, sizeof *o);
	o->listen_host = xstrdup("127.0.0.1");
	o->listen_port = 8080;
	o->cache_bytes = (uint64_t)2 << 30;
	o->workers = 1;
	o->max_json_body = (uint64_t)64 << 20;
	o->max_upload = (uint64_t)2 << 30;
	o->max_elements = (uint64_t)16 << 20;
	o->max_inflight = 1024;
	o->max_set = 64;
	o->idle_timeout_s = 60;
	o->max_connections = 4000;
	o->max_connections_per_ip = 1024;
}

static void clear_bases(lokrd_options *o)
{
	for (size_t i = 0; i < o->nbase; i++)
		free(o->base[i]);
	o->nbase = 0;
}

static int add_base(lokrd_options *o, const char *path)
{
	if (o->nbase == LOKRD_MAX_BASES) {
		fprintf(stderr, "lokrd: at most %d --base files\n", LOKRD_MAX_BASES);
		return -1;
	}
	o->base[o->nbase++] = xstrdup(path);
	return 0;
}

/* A config value as a string for the shared setters: numbers accepted
 * where the command line would take digits. */
static int config_scalar(json_t *v, char *buf, size_t len)
{
	if (json_is_string(v)) {
		snprintf(buf, len, "%s", json_string_value(v));
		return 0;
	}
	if (json_is_integer(v)) {
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
		return 0;
	}
	return -1;
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
		char buf[4096];
		if (!strcmp(key, "base")) {
			clear_bases(o);
			if (json_is_string(v)) {
				rc = add_base(o, json_string_value(v));
			} else if (json_is_array(v) && json_array_size(v) > 0) {
				size_t i;
				json_t *e;
				json_array_foreach(v, i, e)
				{
					if (!json_is_string(e)) {
						rc = -1;
						break;
					}
					if (add_base(o, json_string_value(e)))
						rc = -1;
				}
			} else {
				rc = -1;
			}
			if (rc)
				fprintf(stderr,
				        "lokrd: config %s: \"base\" must be a path or a non-empty "
				        "array of paths\n",
				        path);
		} else if (!strcmp(key, "adapters")) {
			if (!json_is_string(v)) {
				fprintf(stderr, "lokrd: config %s: \"adapters\" must be a path\n",
				        path);
				rc = -1;
			} else {
				set_str(&o->adapters_dir, json_string_value(v));
			}
		} else if (!strcmp(key, "listen")) {
			if (config_scalar(v, buf, sizeof buf) || parse_listen(o, buf)) {
				fprintf(stderr,
				        "lokrd: config %s: \"listen\" must be \"HOST:PORT\"\n",
				        path);
				rc = -1;
			}
		} else if (!strcmp(key, "threads")) {
			if (config_scalar(v, buf, sizeof buf) ||
			    parse_int(buf, 0, 1024, &o->threads)) {
				fprintf(stderr, "lokrd: config %s: \"threads\" must be 0..1024\n",
				        path);
				rc = -1;
			}
		} else if (!strcmp(key, "workers")) {
			if (config_scalar(v, buf, sizeof buf) ||
			    parse_int(buf, 1, 256, &o->workers)) {
				fprintf(stderr, "lokrd: config %s: \"workers\" must be 1..256\n",
				        path);
				rc = -1;
			}
		} else if (!strcmp(key, "cache_bytes")) {
			if (config_scalar(v, buf, sizeof buf) ||
			    lokrd_parse_size(buf, &o->cache_bytes)) {
				fprintf(stderr,
				        "lokrd: config %s: \"cache_bytes\" must be a byte count "
				        "(e.g. 1073741824 or \"1G\")\n",
				        path);
				rc = -1;
			}
		} else if (!strcmp(key, "log_format")) {
			if (!json_is_string(v) ||
			    parse_log_format(json_string_value(v), &o->log_format)) {
				fprintf(stderr,
				        "lokrd: config %s: \"log_format\" must be \"text\" or "
				        "\"json\"\n",
				        path);
				rc = -1;
			}
		} else {
			fprintf(stderr, "lokrd: config %s: unknown key \"%s\"\n", path, key);
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
	      "             [--threads N] [--cache-bytes N] [--workers N]\n"
	      "             [--log-format json|text]\n"
	      "       lokrd --help | --version\n"
	      "\n"
	      "  --base FILE        base model layers (safetensors); repeat for more files\n"
	      "  --adapters DIR     adapter directory, DIR/<id>.safetensors\n"
	      "  --listen ADDR      HOST:PORT to listen on (port 0: pick a free port);\n"
	      "                     default 127.0.0.1:8080\n"
	      "  --config FILE      JSON config with the same keys (base, adapters, listen,\n"
	      "                     threads, cache_bytes, workers, log_format); the command\n"
	      "                     line wins\n"
	      "  --threads N        compute threads per process (default: CPUs available)\n"
	      "  --cache-bytes N    adapter cache budget, e.g. 2G (default 2G)\n"
	      "  --workers N        serving processes sharing the base in memory (default 1)\n"
	      "  --log-format F     text (default) or json, on stderr\n",
	      to);
}

enum {
	OPT_BASE = 1000,
	OPT_ADAPTERS,
	OPT_LISTEN,
	OPT_CONFIG,
	OPT_THREADS,
	OPT_CACHE,
	OPT_WORKERS,
	OPT_LOGFMT,
	OPT_HELP,
	OPT_VERSION
};

static const struct option long_opts[] = {
    {"base", required_argument, NULL, OPT_BASE},
    {"adapters", required_argument, NULL, OPT_ADAPTERS},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"cache-bytes", required_argument, NULL, OPT_CACHE},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"log-format", required_argument, NULL, OPT_LOGFMT},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

int lokrd_options_parse(lokrd_options *o, int argc, char **argv)
{
	defaults(o);
	int c;
	/* Pass 1: --help, --version, --config. */
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		if (c == OPT_HELP) {
			usage(stdout);
			lokrd_options_free(o);
			return LOKRD_OPTIONS_EXIT_OK;
		}
		if (c == OPT_VERSION) {
			printf("lokrd %s\n", PACKAGE_VERSION);
			lokrd_options_free(o);
			return LOKRD_OPTIONS_EXIT_OK;
		}
		if (c == OPT_CONFIG)
			set_str(&o->config_path, optarg);
	}
	if (o->config_path && load_config(o, o->config_path)) {
		lokrd_options_free(o);
		return LOKRD_OPTIONS_USAGE;
	}
	/* Pass 2: everything, the command line overriding the file. */
	opterr = 1;
	optind = 1;
	int cli_base = 0;
	const char *bad = NULL;
	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_BASE:
			if (!cli_base) {
				clear_bases(o);
				cli_base = 1;
			}
			if (add_base(o, optarg))
				bad = "--base";
			break;
		case OPT_ADAPTERS:
			set_str(&o->adapters_dir, optarg);
			break;
		case OPT_LISTEN:
			if (parse_listen(o, optarg))
				bad = "--listen (expected HOST:PORT)";
			break;
		case OPT_CONFIG:
			break;
		case OPT_THREADS:
			if (parse_int(optarg, 0, 1024, &o->threads))
				bad = "--threads (0..1024)";
			break;
		case OPT_CACHE:
			if (lokrd_parse_size(optarg, &o->cache_bytes))
				bad = "--cache-bytes (bytes, or with K/M/G suffix)";
			break;
		case OPT_WORKERS:
			if (parse_int(optarg, 1, 256, &o->workers))
				bad = "--workers (1..256)";
			break;
		case OPT_LOGFMT:
			if (parse_log_format(optarg, &o->log_format))
				bad = "--log-format (json or text)";
			break;
		default:
			usage(stderr);
			lokrd_options_free(o);
			return LOKRD_OPTIONS_USAGE;
		}
		if (bad)
			break;
	}
	if (!bad && optind < argc) {
		fprintf(stderr, "lokrd: unexpected argument '%s'\n", argv[optind]);
		bad = "";
	}
	if (!bad && (o->nbase == 0 || !o->adapters_dir)) {
		fprintf(stderr, "lokrd: %s is required\n", o->nbase == 0 ? "--base" : "--adapters");
		bad = "";
	}
	if (bad) {
		if (*bad)
			fprintf(stderr, "lokrd: invalid %s\n", bad);
		fputs("try 'lokrd --help'\n", stderr);
		lokrd_options_free(o);
		return LOKRD_OPTIONS_USAGE;
	}
	return LOKRD_OPTIONS_RUN;
}

void lokrd_options_free(lokrd_options *o)
{
	clear_bases(o);
	free(o->adapters_dir);
	free(o->listen_host);
	free(o->config_path);
	memset(o, 0, sizeof *o);
}

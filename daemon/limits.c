/*
 * limits.c - defaults and config of lokrd's limits, the token bucket and
 * the JSON depth scan (limits.h).
 *
 * The config table below is the single list of limit keys: name, where the
 * value goes, its type and its range.  A size accepts a number or a string
 * with a K/M/G suffix like --cache-bytes.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "limits.h"
#include "options.h"

void lokrd_limits_defaults(lokrd_options *o)
{
	o->max_json_body = (uint64_t)64 << 20;
	o->max_upload = (uint64_t)2 << 30;
	o->max_elements = (uint64_t)16 << 20;
	o->max_rows = 65536;
	o->max_json_depth = 32;
	o->max_header_bytes = 128 * 1024;
	o->max_inflight = 1024;
	o->max_queue = 4096;
	o->max_set = 64;
	o->idle_timeout_s = 60;
	o->request_timeout_s = 300;
	o->compute_deadline_ms = 60000;
	o->max_connections = 4000;
	o->max_connections_per_ip = 1024;
}

typedef enum { T_SIZE, T_INT } ltype;

typedef struct limit_key {
	const char *name;
	ltype type;
	size_t off;  /* offset in lokrd_options */
	size_t size; /* of the field */
	uint64_t lo, hi;
	const char *what;
} limit_key;

#define F(field) offsetof(lokrd_options, field), sizeof(((lokrd_options *)0)->field)

static const limit_key keys[] = {
    {"max_json_body", T_SIZE, F(max_json_body), 1024, (uint64_t)1 << 40, "bytes of a JSON body"},
    {"max_upload", T_SIZE, F(max_upload), 1024, (uint64_t)1 << 40, "bytes of an adapter upload"},
    {"max_elements", T_SIZE, F(max_elements), 1, (uint64_t)1 << 34, "elements of a tensor"},
    {"max_rows", T_INT, F(max_rows), 1, (uint64_t)1 << 31, "input rows of an apply request"},
    {"max_json_depth", T_INT, F(max_json_depth), 4, 2048, "nesting depth of a JSON body"},
    {"max_header_bytes", T_SIZE, F(max_header_bytes), 4096, (uint64_t)16 << 20,
     "bytes of request line and headers"},
    {"max_set", T_INT, F(max_set), 1, 4096, "adapters in one set"},
    {"max_inflight", T_INT, F(max_inflight), 1, 1 << 20, "compute requests in progress"},
    {"max_queue", T_INT, F(max_queue), 1, 1 << 20, "tasks waiting for a compute thread"},
    {"max_connections", T_INT, F(max_connections), 1, 1 << 20, "open connections"},
    {"max_connections_per_ip", T_INT, F(max_connections_per_ip), 0, 1 << 20,
     "open connections from one address (0: no limit)"},
    {"idle_timeout_s", T_INT, F(idle_timeout_s), 1, 86400, "seconds a connection may idle"},
    {"request_timeout_s", T_INT, F(request_timeout_s), 1, 86400,
     "seconds to receive a whole request"},
    {"compute_deadline_ms", T_INT, F(compute_deadline_ms), 1, (uint64_t)86400 * 1000,
     "milliseconds a request may wait for its answer"},
};

static void store(lokrd_options *o, const limit_key *k, uint64_t v)
{
	char *p = (char *)o + k->off;
	switch (k->size) {
	case 8: {
		uint64_t x = v;
		memcpy(p, &x, 8);
		break;
	}
	case 4: {
		uint32_t x = (uint32_t)v;
		memcpy(p, &x, 4);
		break;
	}
	default:
		break;
	}
}

int lokrd_limits_config(lokrd_options *o, const json_t *v, const char *path)
{
	if (!json_is_object(v)) {
		fprintf(stderr, "lokrd: config %s: \"limits\" must be an object\n", path);
		return -1;
	}
	const char *name;
	json_t *val;
	json_object_foreach((json_t *)v, name, val)
	{
		const limit_key *k = NULL;
		for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
			if (!strcmp(keys[i].name, name))
				k = &keys[i];
		if (!k) {
			fprintf(stderr, "lokrd: config %s: unknown key \"limits.%s\"\n", path,
			        name);
			return -1;
		}
		uint64_t x = 0;
		int ok = 0;
		if (json_is_integer(val) && json_integer_value(val) >= 0) {
			x = (uint64_t)json_integer_value(val);
			ok = 1;
		} else if (k->type == T_SIZE && json_is_string(val)) {
			ok = lokrd_parse_size(json_string_value(val), &x) == 0;
		}
		if (!ok || x < k->lo || x > k->hi) {
			fprintf(
			    stderr,
			    "lokrd: config %s: \"limits.%s\" (%s) must be %s from %llu to %llu\n",
			    path, name, k->what,
			    k->type == T_SIZE ? "a byte count (or \"64K\", \"1G\")" : "an integer",
			    (unsigned long long)k->lo, (unsigned long long)k->hi);
			return -1;
		}
		store(o, k, x);
	}
	return 0;
}

int lokrd_json_depth(const char *s, size_t n, int stop)
{
	int depth = 0, max = 0, in_str = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = 0;
			continue;
		}
		if (c == '"') {
			in_str = 1;
		} else if (c == '[' || c == '{') {
			if (++depth > max) {
				max = depth;
				if (max >= stop)
					return stop;
			}
		} else if ((c == ']' || c == '}') && depth > 0) {
			depth--;
		}
	}
	return max;
}

void lokrd_bucket_init(lokrd_bucket *b, double rate, double burst)
{
	b->rate = rate > 0 ? rate : 0;
	b->burst = burst >= 1 ? burst : (rate > 1 ? rate : 1);
	b->tokens = b->burst;
	b->last_ns = 0;
}

int lokrd_bucket_take(lokrd_bucket *b, uint64_t now_ns, unsigned *retry_s)
{
	if (b->rate <= 0)
		return 1;
	if (b->last_ns && now_ns > b->last_ns) {
		b->tokens += (double)(now_ns - b->last_ns) / 1e9 * b->rate;
		if (b->tokens > b->burst)
			b->tokens = b->burst;
	}
	if (!b->last_ns || now_ns > b->last_ns)
		b->last_ns = now_ns;
	if (b->tokens >= 1) {
		b->tokens -= 1;
		return 1;
	}
	double wait = (1 - b->tokens) / b->rate;
	double up = ceil(wait);
	*retry_s = up < 1 ? 1 : up > 3600 ? 3600 : (unsigned)up;
	return 0;
}

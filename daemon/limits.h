/*
 * limits.h - lokrd's request limits (issue 6, DESIGN.md "Tenancy and
 * limits"): their defaults and the "limits" object of the config file, a
 * token bucket for per-tenant request rates, and a JSON nesting-depth scan
 * that runs before jansson sees a body.
 *
 * Every limit has a sane default and a config key; they are listed in
 * README "Limits".  The limits that MHD enforces (connections, per-IP
 * connections, header bytes, idle timeout) are passed to it by http.c; the
 * rest are checked by the routes (body size, depth, elements, rows, queue)
 * and by http.c's housekeeping timer (request timeout, compute deadline).
 */
#ifndef LOKRD_LIMITS_H
#define LOKRD_LIMITS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct lokrd_options;

/* Set the defaults of every limit that lives in lokrd_options. */
void lokrd_limits_defaults(struct lokrd_options *o);

/* Apply the config file's "limits" object (`v`, borrowed) to `o`.  Unknown
 * keys and out-of-range values are errors, printed on stderr naming the key
 * and the file.  Returns 0 or -1. */
int lokrd_limits_config(struct lokrd_options *o, const json_t *v, const char *path);

/* Deepest nesting of arrays and objects in the JSON text s[0..n) (strings
 * and escapes skipped; the text need not be valid JSON).  Stops counting
 * and returns `stop` as soon as the depth reaches it. */
int lokrd_json_depth(const char *s, size_t n, int stop);

/* A token bucket: `rate` tokens per second, at most `burst` stored.  A
 * request takes one token.  Loop thread only. */
typedef struct lokrd_bucket {
	double rate;  /* tokens per second; 0 = unlimited */
	double burst; /* capacity, >= 1 */
	double tokens;
	uint64_t last_ns; /* time of the last refill */
} lokrd_bucket;

void lokrd_bucket_init(lokrd_bucket *b, double rate, double burst);
/* Take a token at time now_ns.  Returns 1, or 0 when empty with the whole
 * seconds until a token is due in *retry_s (>= 1). */
int lokrd_bucket_take(lokrd_bucket *b, uint64_t now_ns, unsigned *retry_s);

#endif

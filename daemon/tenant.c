/*
 * tenant.c - tokens, tenants, namespaces and quotas (tenant.h).
 *
 * SHA-256 and the constant-time comparison come from nettle (GnuTLS's
 * crypto core): libmicrohttpd-dev already depends on libgnutls28-dev, which
 * depends on nettle-dev, so it is on every machine that builds lokrd, and a
 * well-kept, audited implementation beats a hand-written one.
 *
 * Config (the top level of --config):
 *   "tenants": {"alice": {"tokens": ["sha256:<hex>", "a-plain-token-of-16+"],
 *                         "max_adapters": 100, "max_disk_bytes": "10G",
 *                         "max_resident_bytes": "1G",
 *                         "requests_per_second": 50, "burst": 100}, ...}
 *   "admin_tokens": ["sha256:<hex>", ...]
 *   "allow_open": false
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <nettle/memops.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"
#include "options.h"
#include "server.h"
#include "tenant.h"

void lokrd_sha256(const void *data, size_t n, uint8_t out[32])
{
	struct sha256_ctx c;
	sha256_init(&c);
	sha256_update(&c, n, data);
	sha256_digest(&c, SHA256_DIGEST_SIZE, out);
}

static int tenant_name_valid(const char *s)
{
	size_t n = strlen(s);
	return n <= LOKRD_TENANT_MAX && lokrd_id_valid(s);
}

/* ------------------------------------------------------------ config */

int lokrd_tenants_config_key(const char *key)
{
	return !strcmp(key, "tenants") || !strcmp(key, "admin_tokens") ||
	       !strcmp(key, "allow_open");
}

static lokrd_tenants *tenants_of(lokrd_options *o)
{
	if (!o->tenants) {
		o->tenants = calloc(1, sizeof *o->tenants);
		if (!o->tenants) {
			fputs("lokrd: out of memory\n", stderr);
			exit(1);
		}
	}
	return o->tenants;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* "sha256:<64 hex>" or a plain token of at least 16 bytes -> hash. */
static int token_hash(const char *s, uint8_t out[32], const char *path, const char *where)
{
	if (!strncmp(s, "sha256:", 7)) {
		const char *h = s + 7;
		if (strlen(h) != 64)
			goto bad_hex;
		for (int i = 0; i < 32; i++) {
			int a = hexval(h[2 * i]), b = hexval(h[2 * i + 1]);
			if (a < 0 || b < 0)
				goto bad_hex;
			out[i] = (uint8_t)(a * 16 + b);
		}
		return 0;
	bad_hex:
		fprintf(stderr,
		        "lokrd: config %s: %s: \"sha256:\" must be followed by 64 hex digits\n",
		        path, where);
		return -1;
	}
	if (strlen(s) < 16) {
		fprintf(stderr,
		        "lokrd: config %s: %s: a plain token must have at least 16 characters "
		        "(or give \"sha256:<hex>\" of it)\n",
		        path, where);
		return -1;
	}
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 127) {
			fprintf(stderr,
			        "lokrd: config %s: %s: a token is printable ASCII without spaces\n",
			        path, where);
			return -1;
		}
	lokrd_sha256(s, strlen(s), out);
	return 0;
}

static int token_list(const json_t *v, uint8_t (**out)[32], size_t *n, const char *path,
                      const char *where)
{
	if (!json_is_array(v) || json_array_size(v) == 0) {
		fprintf(stderr, "lokrd: config %s: %s must be a non-empty array of tokens\n", path,
		        where);
		return -1;
	}
	size_t k = json_array_size(v);
	uint8_t(*h)[32] = calloc(k, sizeof *h);
	if (!h)
		return -1;
	for (size_t i = 0; i < k; i++) {
		const char *s = json_string_value(json_array_get(v, i));
		if (!s) {
			fprintf(stderr, "lokrd: config %s: %s[%zu] must be a string\n", path, where,
			        i);
			free(h);
			return -1;
		}
		if (token_hash(s, h[i], path, where)) {
			free(h);
			return -1;
		}
	}
	free(*out);
	*out = h;
	*n = k;
	return 0;
}

static int quota_num(const json_t *v, int size, double *d, uint64_t *u)
{
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		if (u)
			*u = (uint64_t)json_integer_value(v);
		if (d)
			*d = (double)json_integer_value(v);
		return 0;
	}
	if (d && json_is_real(v) && json_real_value(v) >= 0 && json_real_value(v) < 1e9) {
		*d = json_real_value(v);
		return 0;
	}
	if (size && u && json_is_string(v))
		return lokrd_parse_size(json_string_value(v), u);
	return -1;
}

static int tenant_config(lokrd_tenant *t, const char *name, const json_t *v, const char *path)
{
	char where[128];
	snprintf(where, sizeof where, "\"tenants.%s\"", name);
	if (!tenant_name_valid(name)) {
		fprintf(stderr,
		        "lokrd: config %s: tenant name \"%.80s\" must match "
		        "[A-Za-z0-9][A-Za-z0-9._-]{0,63}\n",
		        path, name);
		return -1;
	}
	if (!json_is_object(v)) {
		fprintf(stderr, "lokrd: config %s: %s must be an object\n", path, where);
		return -1;
	}
	snprintf(t->name, sizeof t->name, "%s", name);
	const char *key;
	json_t *x;
	json_object_foreach((json_t *)v, key, x)
	{
		int bad = 0;
		if (!strcmp(key, "tokens")) {
			char w[160];
			snprintf(w, sizeof w, "%s.tokens", where);
			if (token_list(x, &t->hashes, &t->nhashes, path, w))
				return -1;
		} else if (!strcmp(key, "max_adapters")) {
			bad = quota_num(x, 0, NULL, &t->quota.max_adapters);
		} else if (!strcmp(key, "max_disk_bytes")) {
			bad = quota_num(x, 1, NULL, &t->quota.max_disk_bytes);
		} else if (!strcmp(key, "max_resident_bytes")) {
			bad = quota_num(x, 1, NULL, &t->quota.max_resident_bytes);
		} else if (!strcmp(key, "requests_per_second")) {
			bad = quota_num(x, 0, &t->quota.rps, NULL);
		} else if (!strcmp(key, "burst")) {
			bad = quota_num(x, 0, &t->quota.burst, NULL);
		} else {
			fprintf(stderr, "lokrd: config %s: unknown key \"%s\" in %s\n", path, key,
			        where);
			return -1;
		}
		if (bad) {
			fprintf(stderr, "lokrd: config %s: %s.%s must be a non-negative number%s\n",
			        path, where, key,
			        strstr(key, "bytes") ? " of bytes (or \"10G\")" : "");
			return -1;
		}
	}
	if (!t->nhashes) {
		fprintf(stderr, "lokrd: config %s: %s needs \"tokens\"\n", path, where);
		return -1;
	}
	return 0;
}

static void tenant_clear(lokrd_tenant *t)
{
	free(t->hashes);
	t->hashes = NULL;
	t->nhashes = 0;
}

int lokrd_tenants_config(lokrd_options *o, const char *key, const json_t *v, const char *path)
{
	if (!strcmp(key, "allow_open")) {
		if (!json_is_boolean(v)) {
			fprintf(stderr, "lokrd: config %s: \"allow_open\" must be true or false\n",
			        path);
			return -1;
		}
		o->allow_open = json_is_true(v);
		return 0;
	}
	lokrd_tenants *ts = tenants_of(o);
	if (!strcmp(key, "admin_tokens"))
		return token_list(v, &ts->admin, &ts->nadmin, path, "\"admin_tokens\"");
	/* "tenants" */
	if (!json_is_object(v)) {
		fprintf(stderr,
		        "lokrd: config %s: \"tenants\" must be an object of name -> "
		        "{\"tokens\", quotas}\n",
		        path);
		return -1;
	}
	for (size_t i = 0; i < ts->n; i++)
		tenant_clear(&ts->t[i]);
	free(ts->t);
	ts->t = NULL;
	ts->n = 0;
	size_t n = json_object_size(v);
	if (!n)
		return 0;
	ts->t = calloc(n, sizeof *ts->t);
	if (!ts->t)
		return -1;
	const char *name;
	json_t *x;
	json_object_foreach((json_t *)v, name, x)
	{
		lokrd_tenant *t = &ts->t[ts->n++];
		if (tenant_config(t, name, x, path))
			return -1;
	}
	/* One token, one tenant: a token listed twice would be ambiguous. */
	for (size_t a = 0; a < ts->n; a++)
		for (size_t i = 0; i < ts->t[a].nhashes; i++)
			for (size_t b = a; b < ts->n; b++)
				for (size_t k = b == a ? i + 1 : 0; k < ts->t[b].nhashes; k++)
					if (!memcmp(ts->t[a].hashes[i], ts->t[b].hashes[k], 32)) {
						fprintf(stderr,
						        "lokrd: config %s: a token is listed twice "
						        "(tenants %s and %s)\n",
						        path, ts->t[a].name, ts->t[b].name);
						return -1;
					}
	return 0;
}

void lokrd_tenants_free(lokrd_tenants *ts)
{
	if (!ts)
		return;
	for (size_t i = 0; i < ts->n; i++) {
		tenant_clear(&ts->t[i]);
		if (ts->t[i].started)
			pthread_mutex_destroy(&ts->t[i].put_mu);
	}
	free(ts->t);
	free(ts->admin);
	free(ts);
}

/* ------------------------------------------------------------ start */

static int has_tokens(const lokrd_options *o)
{
	return o->tenants && (o->tenants->n > 0 || o->tenants->nadmin > 0);
}

static int is_loopback(const char *host)
{
	if (!strcmp(host, "localhost"))
		return 1;
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		       (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return 0;
}

int lokrd_tenants_check_listen(const lokrd_options *o)
{
	if (has_tokens(o) || o->allow_open || is_loopback(o->listen_host))
		return 0;
	lokrd_log(LOKRD_LOG_ERROR,
	          "refusing to listen on %s without tokens: anyone who can reach it could read, "
	          "replace and delete adapters.  Configure \"tenants\"/\"admin_tokens\", listen "
	          "on a loopback address, or set \"allow_open\": true in the config",
	          o->listen_host);
	return -1;
}

/* Upload temp files (".put-*.tmp") that no process holds locked were left
 * by a process killed during a PUT: remove them.  A live upload, of this
 * or another lokrd sharing the directory, holds its flock. */
static void remove_stale_uploads(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (strncmp(de->d_name, ".put-", 5) || len < 9 ||
		    strcmp(de->d_name + len - 4, ".tmp"))
			continue;
		int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0 && unlinkat(dirfd(d), de->d_name, 0) == 0)
			n++;
		close(fd);
	}
	closedir(d);
	if (n)
		lokrd_log(LOKRD_LOG_INFO,
		          "removed %d upload files left by an interrupted PUT in %s", n, dir);
}

static void tenant_start(lokrd_server *s, lokrd_tenant *t, lokrd_cache_group *g)
{
	remove_stale_uploads(t->dir);
	lokrd_bucket_init(&t->bucket, t->quota.rps, t->quota.burst);
	pthread_mutex_init(&t->put_mu, NULL);
	t->started = 1;
	t->reg = lokrd_registry_new(t->dir, s->opt->cache_bytes, &s->pool, &s->metrics);
	lokrd_registry_join(t->reg, g, t->quota.max_resident_bytes);
}

int lokrd_tenants_start(lokrd_server *s)
{
	lokrd_options *o = (lokrd_options *)s->opt;
	lokrd_tenants *ts = o->tenants;
	if (!has_tokens(o)) {
		if (!ts)
			ts = tenants_of(o);
		free(ts->t);
		ts->t = calloc(1, sizeof *ts->t);
		if (!ts->t)
			return -1;
		ts->n = 1;
		ts->open = 1;
		snprintf(ts->t[0].dir, sizeof ts->t[0].dir, "%s", o->adapters_dir);
	} else {
		for (size_t i = 0; i < ts->n; i++) {
			lokrd_tenant *t = &ts->t[i];
			if (snprintf(t->dir, sizeof t->dir, "%s/%s", o->adapters_dir, t->name) >=
			    (int)sizeof t->dir) {
				lokrd_log(LOKRD_LOG_ERROR, "tenant directory path too long");
				return -1;
			}
			if (mkdir(t->dir, 0750) && errno != EEXIST) {
				lokrd_log(LOKRD_LOG_ERROR,
				          "cannot create the tenant directory %s: %s", t->dir,
				          strerror(errno));
				return -1;
			}
			struct stat st;
			if (stat(t->dir, &st) || !S_ISDIR(st.st_mode)) {
				lokrd_log(LOKRD_LOG_ERROR, "tenant directory %s is not a directory",
				          t->dir);
				return -1;
			}
		}
	}
	s->cache_group = lokrd_cache_group_new(o->cache_bytes);
	for (size_t i = 0; i < ts->n; i++)
		tenant_start(s, &ts->t[i], s->cache_group);
	s->tenants = ts;
	s->reg = ts->n ? ts->t[0].reg : NULL;
	if (!ts->open)
		lokrd_log(LOKRD_LOG_INFO, "%zu tenants, %zu admin tokens", ts->n, ts->nadmin);
	return 0;
}

void lokrd_tenants_set_base(lokrd_server *s, const lokr_base *base)
{
	for (size_t i = 0; s->tenants && i < s->tenants->n; i++)
		lokrd_registry_set_base(s->tenants->t[i].reg, base);
}

void lokrd_tenants_stop(lokrd_server *s)
{
	for (size_t i = 0; s->tenants && i < s->tenants->n; i++) {
		lokrd_registry_free(s->tenants->t[i].reg);
		s->tenants->t[i].reg = NULL;
	}
	lokrd_cache_group_free(s->cache_group);
	s->cache_group = NULL;
	s->reg = NULL;
}

int lokrd_tenants_reload(lokrd_tenants *live, lokrd_tenants *next)
{
	int next_tokens = next && (next->n > 0 || next->nadmin > 0);
	if (!live || live->open)
		return next_tokens; /* open stays open; tokens need a restart */
	if (!next_tokens || next->n != live->n)
		return 1;
	for (size_t i = 0; i < live->n; i++)
		if (strcmp(live->t[i].name, next->t[i].name))
			return 1;
	/* Same tenants: new tokens and quotas take effect now (the old hashes
	 * go with `next`, which the caller frees). */
	for (size_t i = 0; i < live->n; i++) {
		lokrd_tenant *a = &live->t[i], *b = &next->t[i];
		uint8_t(*h)[32] = a->hashes;
		size_t nh = a->nhashes;
		a->hashes = b->hashes;
		a->nhashes = b->nhashes;
		b->hashes = h;
		b->nhashes = nh;
		a->quota = b->quota;
		lokrd_bucket_init(&a->bucket, a->quota.rps, a->quota.burst);
		if (a->reg)
			lokrd_registry_set_quota(a->reg, a->quota.max_resident_bytes);
	}
	uint8_t(*adm)[32] = live->admin;
	size_t na = live->nadmin;
	live->admin = next->admin;
	live->nadmin = next->nadmin;
	next->admin = adm;
	next->nadmin = na;
	return 0;
}

/* ------------------------------------------------------------ auth */

/* Constant time over every stored hash: no early exit. */
static int match_any(const uint8_t h[32], uint8_t (*list)[32], size_t n)
{
	int found = 0;
	for (size_t i = 0; i < n; i++)
		found |= memeql_sec(h, list[i], 32);
	return found;
}

unsigned lokrd_tenants_auth(lokrd_tenants *ts, const char *authorization, const char *as_tenant,
                            lokrd_tenant **tenant, int *admin, const char **code, char *msg,
                            size_t msglen)
{
	*tenant = NULL;
	*admin = 0;
	if (ts->open) {
		*tenant = &ts->t[0];
		return 0;
	}
	if (!authorization || strncasecmp(authorization, "Bearer ", 7)) {
		*code = "unauthorized";
		snprintf(msg, msglen, "an Authorization: Bearer <token> header is required");
		return 401;
	}
	const char *tok = authorization + 7;
	while (*tok == ' ')
		tok++;
	size_t n = strlen(tok);
	while (n && tok[n - 1] == ' ')
		n--;
	uint8_t h[32];
	lokrd_sha256(tok, n, h);
	int is_admin = match_any(h, ts->admin, ts->nadmin);
	lokrd_tenant *mine = NULL;
	for (size_t i = 0; i < ts->n; i++)
		if (match_any(h, ts->t[i].hashes, ts->t[i].nhashes))
			mine = &ts->t[i];
	if (!is_admin && !mine) {
		*code = "unauthorized";
		snprintf(msg, msglen, "the bearer token is not valid");
		return 401;
	}
	if (as_tenant) {
		lokrd_tenant *named = NULL;
		for (size_t i = 0; i < ts->n; i++)
			if (!strcmp(ts->t[i].name, as_tenant))
				named = &ts->t[i];
		if (!is_admin) {
			if (named != mine) {
				*code = "forbidden";
				snprintf(msg, msglen, "this token may not act for another tenant");
				return 403;
			}
		} else if (!named) {
			*code = "tenant_not_found";
			snprintf(msg, msglen, "no tenant '%.64s'", as_tenant);
			return 404;
		}
		mine = named;
	} else if (is_admin) {
		mine = NULL;
	}
	*tenant = mine;
	*admin = is_admin;
	return 0;
}

/* ------------------------------------------------------------ usage */

int lokrd_tenant_disk_usage(const lokrd_tenant *t, const char *except_id, uint64_t *count,
                            uint64_t *bytes)
{
	*count = *bytes = 0;
	DIR *d = opendir(t->dir);
	if (!d)
		return -1;
	static const char ext[] = ".safetensors";
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len <= sizeof ext - 1 || strcmp(de->d_name + len - (sizeof ext - 1), ext))
			continue;
		char id[LOKRD_ID_MAX + 1];
		size_t idlen = len - (sizeof ext - 1);
		if (idlen > LOKRD_ID_MAX)
			continue;
		memcpy(id, de->d_name, idlen);
		id[idlen] = '\0';
		if (!lokrd_id_valid(id) || (except_id && !strcmp(id, except_id)))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, 0) || !S_ISREG(st.st_mode))
			continue;
		(*count)++;
		*bytes += (uint64_t)st.st_size;
	}
	closedir(d);
	return 0;
}

/* ------------------------------------------------------------ stats */

void lokrd_tenants_stats(lokrd_server *s, lokrd_registry_stats *st)
{
	memset(st, 0, sizeof *st);
	for (size_t i = 0; s->tenants && i < s->tenants->n; i++) {
		lokrd_registry_stats one;
		lokrd_registry_stats_get(s->tenants->t[i].reg, &one);
		st->resident_bytes += one.resident_bytes;
		st->resident += one.resident;
		st->pinned += one.pinned;
		st->known += one.known;
	}
	st->budget = s->opt->cache_bytes;
}

static void append(char *buf, size_t len, const char *tenant, const char *ids)
{
	/* ids is "a,b,c": prefix each with "tenant/" */
	size_t at = strlen(buf);
	for (const char *p = ids; *p && at + 1 < len;) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		int k = snprintf(buf + at, len - at, "%s%s%s%.*s", at ? "," : "", tenant,
		                 *tenant ? "/" : "", (int)n, p);
		if (k < 0 || (size_t)k >= len - at) {
			buf[at] = '\0';
			return;
		}
		at += (size_t)k;
		p += n + (comma ? 1 : 0);
	}
}

void lokrd_tenants_ids(lokrd_server *s, char *resident, size_t rlen, char *waiting, size_t wlen)
{
	resident[0] = waiting[0] = '\0';
	char r1[2048], w1[2048];
	for (size_t i = 0; s->tenants && i < s->tenants->n; i++) {
		lokrd_registry_ids(s->tenants->t[i].reg, r1, sizeof r1, w1, sizeof w1);
		append(resident, rlen, s->tenants->t[i].name, r1);
		append(waiting, wlen, s->tenants->t[i].name, w1);
	}
}

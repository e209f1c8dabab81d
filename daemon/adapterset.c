/*
 * adapterset.c - parsing and resolving adapter sets (adapterset.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapterset.h"

int lokrd_set_parse(const json_t *arr, int max, lokrd_set *s, char *err, size_t errlen)
{
	memset(s, 0, sizeof *s);
	s->status = 200;
	if (!arr || json_is_null(arr))
		return 0;
	if (!json_is_array(arr)) {
		snprintf(err, errlen, "\"adapters\" must be an array of {\"id\", \"multiplier\"}");
		return -1;
	}
	size_t n = json_array_size(arr);
	if (n > (size_t)max) {
		snprintf(err, errlen, "at most %d adapters in a set", max);
		return -1;
	}
	if (n == 0)
		return 0;
	s->items = calloc(n, sizeof *s->items);
	s->refs = calloc(n, sizeof *s->refs);
	if (!s->items || !s->refs) {
		snprintf(err, errlen, "out of memory");
		lokrd_set_free(s);
		return -1;
	}
	s->n = n;
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(arr, i);
		if (!json_is_object(e)) {
			snprintf(err, errlen,
			         "\"adapters\"[%zu] must be an object {\"id\", \"multiplier\"}", i);
			goto bad;
		}
		const char *key;
		json_t *v;
		json_object_foreach((json_t *)e, key, v)
		{
			if (strcmp(key, "id") && strcmp(key, "multiplier")) {
				snprintf(err, errlen, "\"adapters\"[%zu]: unknown field \"%.64s\"",
				         i, key);
				goto bad;
			}
		}
		const char *id = json_string_value(json_object_get(e, "id"));
		if (!id) {
			snprintf(err, errlen, "\"adapters\"[%zu].id must be a string", i);
			goto bad;
		}
		if (!lokrd_id_valid(id) ||
		    strlen(id) != json_string_length(json_object_get(e, "id"))) {
			snprintf(err, errlen,
			         "\"adapters\"[%zu].id is not a valid adapter id "
			         "([A-Za-z0-9][A-Za-z0-9._-]{0,127})",
			         i);
			goto bad;
		}
		snprintf(s->items[i].id, sizeof s->items[i].id, "%s", id);
		const json_t *m = json_object_get(e, "multiplier");
		double mult = 1.0;
		if (m) {
			if (!json_is_number(m)) {
				snprintf(err, errlen,
				         "\"adapters\"[%zu].multiplier must be a number", i);
				goto bad;
			}
			mult = json_number_value(m);
		}
		if (!isfinite((float)mult)) {
			snprintf(err, errlen, "\"adapters\"[%zu].multiplier must be finite", i);
			goto bad;
		}
		s->items[i].multiplier = (float)mult;
	}
	return 0;
bad:
	lokrd_set_free(s);
	return -1;
}

static void finish(lokrd_set *s)
{
	if (s->status == 200)
		for (size_t i = 0; i < s->n; i++) {
			s->refs[i].adapter = s->items[i].ver->adapter;
			s->refs[i].multiplier = s->items[i].multiplier;
		}
	s->cb(s->arg, s);
}

typedef struct lookup_ctx {
	lokrd_set *s;
	size_t i;
} lookup_ctx;

static void on_lookup(void *arg, const lokrd_lookup *res)
{
	lookup_ctx *c = arg;
	lokrd_set *s = c->s;
	size_t i = c->i;
	free(c);
	if (res->ver) {
		s->items[i].ver = res->ver;
	} else if (s->status == 200) {
		s->status = res->status;
		snprintf(s->code, sizeof s->code, "%s", res->code ? res->code : "internal");
		snprintf(s->msg, sizeof s->msg, "adapter '%s': %s", s->items[i].id,
		         res->msg ? res->msg : "failed");
	}
	if (--s->pending == 0)
		finish(s);
}

void lokrd_set_resolve(lokrd_set *s, lokrd_registry *reg, lokrd_set_cb cb, void *arg)
{
	s->cb = cb;
	s->arg = arg;
	s->status = 200;
	s->pending = s->n + 1; /* +1 so cb cannot run before the loop is over */
	for (size_t i = 0; i < s->n; i++) {
		lookup_ctx *c = malloc(sizeof *c);
		if (!c)
			abort();
		c->s = s;
		c->i = i;
		lokrd_registry_get(reg, s->items[i].id, on_lookup, c);
	}
	if (--s->pending == 0)
		finish(s);
}

void lokrd_set_free(lokrd_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		lokrd_ver_unref(s->items[i].ver);
	free(s->items);
	free(s->refs);
	s->items = NULL;
	s->refs = NULL;
	s->n = 0;
}

void lokrd_set_ids(const lokrd_set *s, char *buf, size_t len)
{
	size_t at = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < s->n && at < len; i++) {
		int k = snprintf(buf + at, len - at, "%s%s", i ? "," : "", s->items[i].id);
		if (k < 0)
			break;
		at += (size_t)k;
	}
}

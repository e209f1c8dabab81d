/*
 * tuned.c - base/tuned pairing for the extraction tools (tuned.h).
 */
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tuned.h"

int tuned_open(struct tuned_pair *p, const char *cmd, const char *base_path, const char *tuned_path)
{
	memset(p, 0, sizeof *p);
	p->base_path = base_path;
	p->tuned_path = tuned_path;
	lokr_error err = {0};
	const char *bp[1] = {base_path};
	if (lokr_base_load(bp, 1, &p->base, &err)) {
		fprintf(stderr, "lokr %s: %s (base)\n", cmd, err.msg);
		return 1;
	}
	const char *tp[1] = {tuned_path};
	if (lokr_base_load(tp, 1, &p->tuned, &err)) {
		fprintf(stderr, "lokr %s: %s (tuned)\n", cmd, err.msg);
		tuned_close(p);
		return 1;
	}
	if (lokr_base_layer_count(p->base) == 0) {
		fprintf(stderr, "lokr %s: base %s has no layers (no 2-D to 5-D .weight tensors)\n",
		        cmd, base_path);
		tuned_close(p);
		return 1;
	}
	return 0;
}

void tuned_close(struct tuned_pair *p)
{
	lokr_base_free(p->base);
	lokr_base_free(p->tuned);
	p->base = p->tuned = NULL;
}

int tuned_layer_selected(const char *name, char *const *globs, size_t nglob)
{
	if (nglob == 0)
		return 1;
	for (size_t g = 0; g < nglob; g++)
		if (fnmatch(globs[g], name, 0) == 0)
			return 1;
	return 0;
}

static void shape_str(char *buf, size_t len, const lokr_layer *l)
{
	size_t at = 0;
	buf[0] = 0;
	for (int d = 0; d < l->ndim && at + 1 < len; d++) {
		int n =
		    snprintf(buf + at, len - at, "%s%lld", d ? ", " : "(", (long long)l->shape[d]);
		if (n < 0)
			break;
		at += (size_t)n;
	}
	if (at + 1 < len)
		snprintf(buf + at, len - at, ")");
}

static int first_bad(const float *x, size_t n, size_t *at)
{
	for (size_t i = 0; i < n; i++)
		if (!isfinite(x[i])) {
			*at = i;
			return 1;
		}
	return 0;
}

int tuned_delta(const struct tuned_pair *p, const char *cmd, size_t i, float *dw,
                double *rel_change, double *dnorm)
{
	const lokr_layer *b = lokr_base_layer_at(p->base, i);
	int64_t ti = lokr_base_layer_find(p->tuned, b->name);
	char bs[96], ts[96];
	if (ti < 0) {
		fprintf(stderr, "lokr %s: tuned %s has no layer %s (base shape %s)\n", cmd,
		        p->tuned_path, b->name, (shape_str(bs, sizeof bs, b), bs));
		return 1;
	}
	const lokr_layer *t = lokr_base_layer_at(p->tuned, (size_t)ti);
	int same = b->ndim == t->ndim;
	for (int d = 0; same && d < b->ndim; d++)
		same = b->shape[d] == t->shape[d];
	if (!same) {
		shape_str(bs, sizeof bs, b);
		shape_str(ts, sizeof ts, t);
		fprintf(stderr, "lokr %s: layer %s: shape %s in base %s but %s in tuned %s\n", cmd,
		        b->name, bs, p->base_path, ts, p->tuned_path);
		return 1;
	}
	size_t n = (size_t)(b->out * b->in * b->kk), at;
	if (first_bad(b->weight, n, &at) || first_bad(t->weight, n, &at)) {
		int in_base = first_bad(b->weight, n, &at);
		const float *w = in_base ? b->weight : t->weight;
		size_t cols = (size_t)(b->in * b->kk);
		fprintf(stderr,
		        "lokr %s: layer %s: non-finite value %g at row %zu, column %zu in %s %s\n",
		        cmd, b->name, (double)w[at], at / cols, at % cols,
		        in_base ? "base" : "tuned", in_base ? p->base_path : p->tuned_path);
		return 1;
	}
	double d2 = 0, w2 = 0;
	for (size_t k = 0; k < n; k++) {
		float d = t->weight[k] - b->weight[k];
		if (!isfinite(d)) {
			fprintf(stderr,
			        "lokr %s: layer %s: tuned - base overflows float at element %zu\n",
			        cmd, b->name, k);
			return 1;
		}
		dw[k] = d;
		d2 += (double)d * d;
		w2 += (double)b->weight[k] * b->weight[k];
	}
	*dnorm = sqrt(d2);
	*rel_change = w2 > 0 ? sqrt(d2 / w2) : sqrt(d2);
	return 0;
}

size_t tuned_extra_layers(const struct tuned_pair *p)
{
	size_t extra = 0, n = lokr_base_layer_count(p->tuned);
	for (size_t i = 0; i < n; i++)
		if (lokr_base_layer_find(p->base, lokr_base_layer_at(p->tuned, i)->name) < 0)
			extra++;
	return extra;
}

int tuned_parse_i64(const char *cmd, const char *flag, const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end) {
		fprintf(stderr, "lokr %s: %s: not an integer: '%s'\n", cmd, flag, s);
		return 2;
	}
	*out = v;
	return 0;
}

int tuned_parse_double(const char *cmd, const char *flag, const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v)) {
		fprintf(stderr, "lokr %s: %s: not a finite number: '%s'\n", cmd, flag, s);
		return 2;
	}
	*out = v;
	return 0;
}

int tuned_opt(int argc, char **argv, int *i, const char *const *flags, size_t nflags,
              const char **flag, const char **val)
{
	const char *a = argv[*i];
	for (size_t f = 0; f < nflags; f++) {
		size_t fl = strlen(flags[f]);
		if (strncmp(a, flags[f], fl) != 0 || (a[fl] != 0 && a[fl] != '='))
			continue;
		*flag = flags[f];
		if (a[fl] == '=') {
			*val = a + fl + 1;
			return 1;
		}
		if (*i + 1 >= argc)
			return -1;
		*val = argv[++*i];
		return 1;
	}
	return 0;
}

char *tuned_module_name(const char *layer)
{
	size_t n = strlen(layer);
	char *s = malloc(n + sizeof "lycoris_");
	if (!s) {
		fprintf(stderr, "lokr: out of memory\n");
		exit(1);
	}
	memcpy(s, "lycoris_", 8);
	for (size_t i = 0; i <= n; i++)
		s[8 + i] = layer[i] == '.' ? '_' : layer[i];
	return s;
}

int tuned_args_init(struct tuned_args *t, int argc)
{
	memset(t, 0, sizeof *t);
	t->min_rel = 1e-6;
	t->globs = calloc((size_t)argc, sizeof *t->globs);
	return t->globs ? 0 : 1;
}

void tuned_args_free(struct tuned_args *t)
{
	free(t->globs);
	t->globs = NULL;
}

int tuned_args_next(const char *cmd, int argc, char **argv, int *i, const char *const *flags,
                    size_t nflags, const char **flag, const char **val)
{
	const char *arg = argv[*i];
	int m = tuned_opt(argc, argv, i, flags, nflags, flag, val);
	if (m == 0) {
		fprintf(stderr, "lokr %s: unknown argument '%s' (see lokr %s --help)\n", cmd, arg,
		        cmd);
		return 2;
	}
	if (m < 0) {
		fprintf(stderr, "lokr %s: %s needs a value\n", cmd, *flag);
		return 2;
	}
	return 0;
}

int tuned_args_take(struct tuned_args *t, const char *cmd, const char *flag, const char *val,
                    int *rc)
{
	*rc = 0;
	if (!strcmp(flag, "--base"))
		t->base = val;
	else if (!strcmp(flag, "--tuned"))
		t->tuned = val;
	else if (!strcmp(flag, "--layers"))
		t->globs[t->nglob++] = (char *)val;
	else if (!strcmp(flag, "--min-rel-change"))
		*rc = tuned_parse_double(cmd, flag, val, &t->min_rel);
	else
		return 0;
	return 1;
}

int tuned_prepare(const struct tuned_pair *p, const char *cmd, const struct tuned_args *t,
                  uint64_t *work, float **dw)
{
	size_t nl = lokr_base_layer_count(p->base), nsel = 0, maxel = 0;
	*work = 0;
	*dw = NULL;
	for (size_t i = 0; i < nl; i++) {
		const lokr_layer *l = lokr_base_layer_at(p->base, i);
		if (!tuned_layer_selected(l->name, t->globs, t->nglob))
			continue;
		nsel++;
		size_t el = (size_t)(l->out * l->in * l->kk);
		*work += el;
		maxel = el > maxel ? el : maxel;
	}
	if (maxel && !(*dw = malloc(maxel * sizeof **dw))) {
		fprintf(stderr, "lokr %s: out of memory\n", cmd);
		return 1;
	}
	if (nsel == 0) {
		fprintf(stderr, "lokr %s: no base layer matches --layers\n", cmd);
		return 1;
	}
	size_t extra = tuned_extra_layers(p);
	if (extra)
		fprintf(stderr,
		        "lokr %s: note: tuned has %zu layer(s) the base does not; ignored\n", cmd,
		        extra);
	return 0;
}

void tuned_fmt_dims(char *buf, size_t len, int64_t a, int64_t b, const lokr_layer *l)
{
	int n = snprintf(buf, len, "%lldx%lld", (long long)a, (long long)b);
	for (int d = 2; l && d < l->ndim && n > 0 && (size_t)n < len; d++)
		n += snprintf(buf + n, len - (size_t)n, "x%lld", (long long)l->shape[d]);
}

void tuned_fmt_shape(char *buf, size_t len, const lokr_layer *l)
{
	int n = snprintf(buf, len, "(");
	for (int d = 0; d < l->ndim && n > 0 && (size_t)n < len; d++)
		n += snprintf(buf + n, len - (size_t)n, "%s%lld", d ? ", " : "",
		              (long long)l->shape[d]);
	if (n > 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, ")");
}

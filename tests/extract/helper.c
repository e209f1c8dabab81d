/*
 * helper.c - test helper for tests/extract/extract.sh and report.sh (the `lokr extract` and
 * `lokr factorize-report` CLI tests).  Not a test itself.
 *
 *   helper mkpair DIR [nan|shape|missing]
 *       writes DIR/base.safetensors and DIR/tuned.safetensors (tuned = base +
 *       known deltas, lokr_st_write_file), optionally with one defect:
 *         blk.exact    linear 48x40, dW = W1 (6x5) (x) W2 (8x8)  (exact at factor -1)
 *         blk.lowrank  linear 64x64, dW = W1 (8x8) (x) W2 (8x8, rank 2)
 *         blk.random   linear 32x24, dW random (no Kronecker structure)
 *         net.conv     conv 16x12x3x3, dW = W1 (4x3) (x) W2 (4x4x3x3)
 *         blk.same     linear 16x16, unchanged (and blk.exact.bias unchanged)
 *   helper compare BASE TUNED MERGED
 *       per changed layer: "<name> <|merged - tuned| / |tuned - base|>"
 *   helper keys FILE
 *       "<tensor> <dtype> <shape>" per tensor, then "meta <key> <value>" lines
 *   helper perturb BASE OUT [RANK]
 *       OUT = BASE with every 2-D..5-D .weight changed by a fine-tune-like
 *       delta: a random rank-RANK (default 8) product of 1% of |W| plus 0.1%
 *       noise (all float tensors written as F32; others copied)
 *   helper report-json FILE
 *       checks the factorize-report JSON structure; prints
 *       "<layer> <factor> <unbalanced> <rel_err> <params> <budget>" per entry
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lokr.h"

static uint64_t rng = 42;

static float nrand(void)
{
	double u[2];
	for (int i = 0; i < 2; i++) {
		uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		z ^= z >> 31;
		u[i] = ((double)(z >> 11) + 0.5) / 9007199254740992.0;
	}
	return (float)(sqrt(-2 * log(u[0])) * cos(2 * M_PI * u[1]));
}

static float *randm(int64_t n, float scale)
{
	float *m = malloc((size_t)n * sizeof *m);
	if (!m)
		exit(3);
	for (int64_t i = 0; i < n; i++)
		m[i] = scale * nrand();
	return m;
}

/* dst += kron(a (m1 x n1), b (m2 x c)) on the flat (m1*m2 x n1*c) view */
static void add_kron(float *dst, const float *a, int64_t m1, int64_t n1, const float *b, int64_t m2,
                     int64_t c)
{
	for (int64_t i = 0; i < m1; i++)
		for (int64_t j = 0; j < m2; j++)
			for (int64_t k = 0; k < n1; k++)
				for (int64_t t = 0; t < c; t++)
					dst[(i * m2 + j) * (n1 * c) + k * c + t] +=
					    a[i * n1 + k] * b[j * c + t];
}

static float *copy(const float *x, int64_t n)
{
	float *m = malloc((size_t)n * sizeof *m);
	if (!m)
		exit(3);
	memcpy(m, x, (size_t)n * sizeof *m);
	return m;
}

static int mkpair(const char *dir, const char *defect)
{
	enum { N = 7 };
	lokr_st_spec b[N] = {
	    {"blk.exact.weight", "F32", 2, {48, 40}, NULL},
	    {"blk.exact.bias", "F32", 1, {48}, NULL},
	    {"blk.lowrank.weight", "F32", 2, {64, 64}, NULL},
	    {"blk.random.weight", "F32", 2, {32, 24}, NULL},
	    {"net.conv.weight", "F32", 4, {16, 12, 3, 3}, NULL},
	    {"blk.same.weight", "F32", 2, {16, 16}, NULL},
	    {"norm.weight", "F32", 1, {16}, NULL},
	};
	lokr_st_spec t[N];
	float *bw[N], *tw[N];
	for (int i = 0; i < N; i++) {
		int64_t n = 1;
		for (int d = 0; d < b[i].ndim; d++)
			n *= b[i].shape[d];
		bw[i] = randm(n, 0.1f);
		tw[i] = copy(bw[i], n);
		b[i].data = bw[i];
		t[i] = b[i];
		t[i].data = tw[i];
	}
	float *w1 = randm(6 * 5, 0.1f), *w2 = randm(8 * 8, 0.1f);
	add_kron(tw[0], w1, 6, 5, w2, 8, 8);
	free(w1);
	free(w2);
	/* rank-2 W2 */
	w1 = randm(8 * 8, 0.1f);
	float *ua = randm(8 * 2, 0.3f), *ub = randm(2 * 8, 0.3f);
	w2 = calloc(64, sizeof *w2);
	for (int x = 0; x < 8; x++)
		for (int y = 0; y < 8; y++)
			for (int l = 0; l < 2; l++)
				w2[x * 8 + y] += ua[x * 2 + l] * ub[l * 8 + y];
	add_kron(tw[2], w1, 8, 8, w2, 8, 8);
	free(w1);
	free(w2);
	free(ua);
	free(ub);
	float *r = randm(32 * 24, 0.003f);
	for (int i = 0; i < 32 * 24; i++)
		tw[3][i] += r[i];
	free(r);
	w1 = randm(4 * 3, 0.1f);
	w2 = randm(4 * 4 * 9, 0.1f);
	add_kron(tw[4], w1, 4, 3, w2, 4, 36);
	free(w1);
	free(w2);

	size_t nt = N;
	if (defect && !strcmp(defect, "nan"))
		tw[4][17] = NAN;
	else if (defect && !strcmp(defect, "shape"))
		t[3].shape[1] = 12; /* data is larger than needed; only the first 32*12 written */
	else if (defect && !strcmp(defect, "missing")) {
		t[3] = t[N - 1];
		nt = N - 1;
	} else if (defect) {
		fprintf(stderr, "helper: unknown defect %s\n", defect);
		return 2;
	}
	char bp[4096], tp[4096];
	snprintf(bp, sizeof bp, "%s/base.safetensors", dir);
	snprintf(tp, sizeof tp, "%s/tuned.safetensors", dir);
	lokr_error e = {0};
	int rc = 0;
	if (lokr_st_write_file(bp, b, N, NULL, NULL, 0, &e) ||
	    lokr_st_write_file(tp, t, nt, NULL, NULL, 0, &e)) {
		fprintf(stderr, "helper: %s\n", e.msg);
		rc = 1;
	}
	for (int i = 0; i < N; i++) {
		free(bw[i]);
		free(tw[i]);
	}
	return rc;
}

static lokr_base *load(const char *path)
{
	lokr_base *b = NULL;
	lokr_error e = {0};
	const char *p[1] = {path};
	if (lokr_base_load(p, 1, &b, &e)) {
		fprintf(stderr, "helper: %s: %s\n", path, e.msg);
		exit(1);
	}
	return b;
}

static int compare(const char *base, const char *tuned, const char *merged)
{
	lokr_base *b = load(base), *t = load(tuned), *m = load(merged);
	for (size_t i = 0; i < lokr_base_layer_count(b); i++) {
		const lokr_layer *lb = lokr_base_layer_at(b, i);
		int64_t it = lokr_base_layer_find(t, lb->name),
		        im = lokr_base_layer_find(m, lb->name);
		if (it < 0 || im < 0) {
			fprintf(stderr, "helper: layer %s missing\n", lb->name);
			return 1;
		}
		const lokr_layer *lt = lokr_base_layer_at(t, (size_t)it);
		const lokr_layer *lm = lokr_base_layer_at(m, (size_t)im);
		int64_t n = lb->out * lb->in * lb->kk;
		double num = 0, den = 0;
		for (int64_t k = 0; k < n; k++) {
			double d = (double)lt->weight[k] - lb->weight[k];
			double r = (double)lm->weight[k] - lt->weight[k];
			num += r * r;
			den += d * d;
		}
		if (den > 0)
			printf("%s %.6e\n", lb->name, sqrt(num / den));
		else
			printf("%s unchanged %s\n", lb->name, num == 0 ? "identical" : "DIFFERENT");
	}
	lokr_base_free(b);
	lokr_base_free(t);
	lokr_base_free(m);
	return 0;
}

static int keys(const char *path)
{
	lokr_st_file *f = NULL;
	lokr_error e = {0};
	if (lokr_st_open(path, &f, &e)) {
		fprintf(stderr, "helper: %s\n", e.msg);
		return 1;
	}
	for (size_t i = 0; i < lokr_st_count(f); i++) {
		const lokr_st_tensor *t = lokr_st_at(f, i);
		printf("%s %s (", t->name, t->dtype_name);
		for (int d = 0; d < t->ndim; d++)
			printf("%s%lld", d ? "," : "", (long long)t->shape[d]);
		printf(")");
		if (t->ndim == 0 && t->dtype == LOKR_DTYPE_F32) {
			float v;
			lokr_st_tensor_f32(t, &v, NULL);
			printf(" %g", (double)v);
		}
		printf("\n");
	}
	for (size_t i = 0; i < lokr_st_metadata_count(f); i++) {
		const char *k, *v;
		lokr_st_metadata_at(f, i, &k, &v);
		printf("meta %s %s\n", k, v);
	}
	lokr_st_close(f);
	return 0;
}

/* A fine-tune-like delta on every weight of BASE (see the top comment). */
static int perturb(const char *in, const char *outp, int64_t rank)
{
	lokr_st_file *f = NULL;
	lokr_error e = {0};
	if (lokr_st_open(in, &f, &e)) {
		fprintf(stderr, "helper: %s\n", e.msg);
		return 1;
	}
	size_t n = lokr_st_count(f);
	lokr_st_spec *specs = calloc(n, sizeof *specs);
	float **bufs = calloc(n, sizeof *bufs);
	if (!specs || !bufs)
		return 3;
	for (size_t i = 0; i < n; i++) {
		const lokr_st_tensor *t = lokr_st_at(f, i);
		lokr_st_spec *s = &specs[i];
		s->name = t->name;
		s->ndim = t->ndim;
		for (int d = 0; d < t->ndim; d++)
			s->shape[d] = t->shape[d];
		if (t->dtype == LOKR_DTYPE_OTHER) {
			s->dtype_name = t->dtype_name;
			s->data = t->data;
			continue;
		}
		float *w = malloc((t->nelem ? t->nelem : 1) * sizeof *w);
		if (!w || lokr_st_tensor_f32(t, w, &e))
			return 3;
		bufs[i] = w;
		s->dtype_name = "F32";
		s->data = w;
		size_t len = strlen(t->name);
		if (t->ndim < 2 || len < 7 || strcmp(t->name + len - 7, ".weight"))
			continue;
		int64_t rows = t->shape[0], cols = (int64_t)t->nelem / rows;
		double wn = 0;
		for (uint64_t k = 0; k < t->nelem; k++)
			wn += (double)w[k] * w[k];
		wn = sqrt(wn);
		float *a = randm(rows * rank, 1.0f), *b = randm(rank * cols, 1.0f);
		float *d = calloc((size_t)(rows * cols), sizeof *d);
		double dn = 0;
		for (int64_t x = 0; x < rows; x++)
			for (int64_t y = 0; y < cols; y++) {
				double acc = 0;
				for (int64_t l = 0; l < rank; l++)
					acc += (double)a[x * rank + l] * b[l * cols + y];
				d[x * cols + y] = (float)acc;
				dn += acc * acc;
			}
		double sc = dn > 0 ? 0.01 * wn / sqrt(dn) : 0;
		double noise = 0.001 * wn / sqrt((double)(rows * cols));
		for (int64_t k = 0; k < rows * cols; k++)
			w[k] += (float)(sc * d[k] + noise * nrand());
		free(a);
		free(b);
		free(d);
	}
	size_t nm = lokr_st_metadata_count(f);
	const char **mk = calloc(nm + 1, sizeof *mk), **mv = calloc(nm + 1, sizeof *mv);
	for (size_t i = 0; i < nm; i++)
		lokr_st_metadata_at(f, i, &mk[i], &mv[i]);
	int rc = lokr_st_write_file(outp, specs, n, mk, mv, nm, &e);
	if (rc)
		fprintf(stderr, "helper: %s\n", e.msg);
	for (size_t i = 0; i < n; i++)
		free(bufs[i]);
	free(bufs);
	free(specs);
	free(mk);
	free(mv);
	lokr_st_close(f);
	return rc ? 1 : 0;
}

static int report_json(const char *path)
{
	json_error_t je;
	json_t *root = json_load_file(path, 0, &je);
	if (!root) {
		fprintf(stderr, "helper: %s: %s\n", path, je.text);
		return 1;
	}
	json_t *layers = json_object_get(root, "layers"),
	       *overall = json_object_get(root, "overall");
	if (!json_is_array(layers) || !json_is_array(overall) || json_array_size(overall) != 8) {
		fprintf(stderr, "helper: bad report structure\n");
		return 1;
	}
	size_t i;
	json_t *l;
	json_array_foreach(layers, i, l)
	{
		json_t *cs = json_object_get(l, "choices");
		if (json_array_size(cs) != 8) {
			fprintf(stderr, "helper: layer without 8 choices\n");
			return 1;
		}
		size_t j;
		json_t *c;
		json_array_foreach(cs, j, c)
		{
			printf("%s %lld %d %.6e %lld %lld\n",
			       json_string_value(json_object_get(l, "name")),
			       (long long)json_integer_value(json_object_get(c, "factor")),
			       json_is_true(json_object_get(c, "unbalanced")),
			       json_real_value(json_object_get(c, "rel_err")),
			       (long long)json_integer_value(json_object_get(c, "params")),
			       (long long)json_integer_value(json_object_get(l, "budget")));
		}
	}
	json_decref(root);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "mkpair"))
		return mkpair(argv[2], argc > 3 ? argv[3] : NULL);
	if (argc == 5 && !strcmp(argv[1], "compare"))
		return compare(argv[2], argv[3], argv[4]);
	if (argc == 3 && !strcmp(argv[1], "keys"))
		return keys(argv[2]);
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "perturb"))
		return perturb(argv[2], argv[3], argc == 5 ? strtoll(argv[4], NULL, 10) : 8);
	if (argc == 3 && !strcmp(argv[1], "report-json"))
		return report_json(argv[2]);
	fprintf(stderr, "usage: helper mkpair DIR [nan|shape|missing] | compare B T M | keys F | "
	                "perturb B OUT [RANK] | report-json F\n");
	return 2;
}

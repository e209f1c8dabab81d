/*
 * testutil.h - helpers shared by the lib unit tests that build modules from
 * random factors (tests/unit/conv.c, delta.c, dora.c, merge.c).
 *
 * Random numbers: xorshift64 seeded per test file, so each file keeps its
 * own reproducible sequence.  Define TESTUTIL_SEED (a uint64_t constant)
 * before including.  Everything is static: one copy per test program.
 * Include after <cmocka.h> and "internal.h".
 */
#ifndef LOKR_TESTS_UNIT_TESTUTIL_H
#define LOKR_TESTS_UNIT_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TESTUTIL_SEED
#error "define TESTUTIL_SEED before including testutil.h"
#endif

static uint64_t rng_state = TESTUTIL_SEED;

/* Uniform in [-1, 1). */
static inline float frand(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* n values of frand() (new; free()). */
static inline float *vec_frand(size_t n)
{
	float *v = malloc(n * sizeof(float));
	assert_non_null(v);
	for (size_t e = 0; e < n; e++)
		v[e] = frand();
	return v;
}

/* n values uniform in [lo, hi) (new; free()). */
static inline float *vec_rand(size_t n, float lo, float hi)
{
	float *v = malloc(n * sizeof(float));
	assert_non_null(v);
	for (size_t e = 0; e < n; e++)
		v[e] = lo + (hi - lo) * (frand() + 1.0f) / 2.0f;
	return v;
}

/* A rows x cols matrix of frand() values (data new; module_free frees it). */
static inline lokr_mat mat_rand(int64_t rows, int64_t cols)
{
	lokr_mat x = {rows, cols, vec_frand((size_t)(rows * cols))};
	return x;
}

/* Free every factor of a module built by a test, and its DoRA vectors. */
static inline void module_free(lokr_module *m)
{
	lokr_mat *all[] = {&m->w1,        &m->w1_a,      &m->w1_b,      &m->w2,
	                   &m->w2_a,      &m->w2_b,      &m->t2,        &m->hada_w1_a,
	                   &m->hada_w1_b, &m->hada_w2_a, &m->hada_w2_b, &m->hada_t1,
	                   &m->hada_t2,   &m->up,        &m->down,      &m->mid};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		free(all[i]->data);
	free(m->dora_scale);
	free(m->dora_g);
	memset(m, 0, sizeof *m);
}

/* Build a LoKr module of random factors (module_free frees them).
 * w1r / w2r: 0 = full, > 0 = low-rank of that rank; tucker: W2 as Tucker
 * with rank w2r (core w2r*w2r x kk). */
static inline void make_lokr(lokr_module *m, int64_t m1, int64_t n1, int64_t m2, int64_t n2,
                             int64_t kk, int64_t w1r, int64_t w2r, int tucker, float scale)
{
	memset(m, 0, sizeof *m);
	m->name = "lycoris_test";
	m->algo = LOKR_ALGO_LOKR;
	m->m1 = m1, m->n1 = n1, m->m2 = m2, m->n2 = n2, m->kk = kk;
	m->out = m1 * m2, m->in = n1 * n2;
	m->scale = scale;
	if (w1r) {
		m->w1_a = mat_rand(m1, w1r);
		m->w1_b = mat_rand(w1r, n1);
		m->rank = w1r;
	} else {
		m->w1 = mat_rand(m1, n1);
	}
	if (tucker) {
		m->t2 = mat_rand(w2r * w2r, kk);
		m->w2_a = mat_rand(w2r, m2);
		m->w2_b = mat_rand(w2r, n2);
		m->tucker = 1;
		m->rank = w2r;
	} else if (w2r) {
		m->w2_a = mat_rand(m2, w2r);
		m->w2_b = mat_rand(w2r, n2 * kk);
		m->rank = w2r;
	} else {
		m->w2 = mat_rand(m2, n2 * kk);
	}
}

/* A LoRA / LoCon module of rank r; tucker: the mid core (r*r x kk). */
static inline void make_lora(lokr_module *m, int64_t out, int64_t in, int64_t kk, int64_t r,
                             int tucker, float scale)
{
	memset(m, 0, sizeof *m);
	m->name = "lora_test";
	m->algo = LOKR_ALGO_LORA;
	m->out = out, m->in = in, m->kk = kk, m->scale = scale, m->rank = r;
	m->up = mat_rand(out, r);
	if (tucker) {
		m->tucker = 1;
		m->mid = mat_rand(r * r, kk);
		m->down = mat_rand(r, in);
	} else {
		m->down = mat_rand(r, in * kk);
	}
}

/* A LoHa module with ranks r1 (first pair) and r2 (second); tucker: both
 * pairs with their cores t1, t2. */
static inline void make_loha(lokr_module *m, int64_t out, int64_t in, int64_t kk, int64_t r1,
                             int64_t r2, int tucker, float scale)
{
	memset(m, 0, sizeof *m);
	m->name = "loha_test";
	m->algo = LOKR_ALGO_LOHA;
	m->out = out, m->in = in, m->kk = kk, m->scale = scale, m->rank = r1;
	if (tucker) {
		m->tucker = 1;
		m->hada_w1_a = mat_rand(r1, out);
		m->hada_w1_b = mat_rand(r1, in);
		m->hada_t1 = mat_rand(r1 * r1, kk);
		m->hada_w2_a = mat_rand(r2, out);
		m->hada_w2_b = mat_rand(r2, in);
		m->hada_t2 = mat_rand(r2 * r2, kk);
	} else {
		m->hada_w1_a = mat_rand(out, r1);
		m->hada_w1_b = mat_rand(r1, in * kk);
		m->hada_w2_a = mat_rand(out, r2);
		m->hada_w2_b = mat_rand(r2, in * kk);
	}
}

/* max |got - exp| / max |exp| (the absolute error when exp is all zero);
 * a NaN in got propagates. */
static inline double rel_err(const float *got, const double *exp, size_t n)
{
	double num = 0, den = 0;
	for (size_t e = 0; e < n; e++) {
		double d = fabs((double)got[e] - exp[e]);
		if (!(d <= num))
			num = d;
		if (fabs(exp[e]) > den)
			den = fabs(exp[e]);
	}
	return den > 0 ? num / den : num;
}

/* A base model made of `specs` (each with data): written to a temp file,
 * loaded with lokr_base_load, the file removed.  0, or -1 with the reason on
 * stderr.  *out is new (lokr_base_free). */
static inline int base_from_specs(const lokr_st_spec *specs, size_t n, lokr_base **out)
{
	char path[] = "/tmp/lokr-unit-base-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	close(fd);
	lokr_error err = {0};
	int rc = lokr_st_write_file(path, specs, n, NULL, NULL, 0, &err);
	if (rc == 0) {
		const char *paths[] = {path};
		rc = lokr_base_load(paths, 1, out, &err);
	}
	unlink(path);
	if (rc) {
		fprintf(stderr, "setup: %s\n", err.msg);
		return -1;
	}
	return 0;
}

#endif

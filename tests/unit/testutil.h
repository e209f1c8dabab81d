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

#endif

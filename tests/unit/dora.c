/*
 * Unit tests for lib/dora.c: the DoRA vector computed from the factors
 * against dense norms of V = W0 + s dW taken here in double (dW from
 * lokr_module_delta, which tests/unit/delta.c checks against definitions),
 * for LoKr (every factor layout, both code paths: long and short W2 rows),
 * LoRA/LoCon (plain, Tucker mid) and LoHa, on both axes.
 * Error measure: rel = max|got - exp| / max|exp|.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"

#define TESTUTIL_SEED 0x243f6a8885a308d3ull
#include "testutil.h"

static void layer_make(lokr_layer *l, const lokr_module *m)
{
	memset(l, 0, sizeof *l);
	l->name = "test.layer";
	l->kind = m->kk > 1 ? LOKR_LAYER_CONV : LOKR_LAYER_LINEAR;
	l->out = m->out, l->in = m->in, l->kk = m->kk;
	l->weight = vec_rand((size_t)(m->out * m->in * m->kk), -1.0f, 1.0f);
}

/* Dense reference: g = dora_scale / (|W0 + s dW| + 2^-23) in double. */
static double *ref_g(const lokr_layer *l, const lokr_module *m)
{
	size_t out = (size_t)m->out, in = (size_t)m->in, kk = (size_t)m->kk, cols = in * kk;
	float *d = malloc(out * cols * sizeof(float));
	assert_non_null(d);
	assert_int_equal(lokr_module_delta(m, d), LOKR_OK);
	size_t len = m->dora_axis == LOKR_DORA_OUT ? out : in;
	double *n2 = calloc(len, sizeof(double));
	assert_non_null(n2);
	for (size_t o = 0; o < out; o++)
		for (size_t c = 0; c < in; c++)
			for (size_t t = 0; t < kk; t++) {
				size_t x = o * cols + c * kk + t;
				double v = (double)l->weight[x] + (double)d[x];
				n2[m->dora_axis == LOKR_DORA_OUT ? o : c] += v * v;
			}
	for (size_t x = 0; x < len; x++)
		n2[x] = m->dora_scale[x] / (sqrt(n2[x]) + 1.1920928955078125e-07);
	free(d);
	return n2;
}

static void check_dora(lokr_module *m, lokr_dora_axis axis)
{
	lokr_layer l;
	layer_make(&l, m);
	m->dora_axis = axis;
	size_t len = (size_t)(axis == LOKR_DORA_OUT ? m->out : m->in);
	free(m->dora_scale);
	m->dora_scale = vec_rand(len, 0.5f, 2.0f);
	float *g = malloc(len * sizeof(float));
	assert_non_null(g);
	lokr_error err = {0};
	int rc = lokr__dora_vector(&l, m, g, &err);
	if (rc)
		fail_msg("dora_vector: %d %s", rc, err.msg);
	double *exp = ref_g(&l, m);
	double num = 0, den = 0;
	for (size_t x = 0; x < len; x++) {
		double e = fabs((double)g[x] - exp[x]);
		if (!(e <= num))
			num = e;
		if (fabs(exp[x]) > den)
			den = fabs(exp[x]);
	}
	if (!(num / den <= 1e-6))
		fail_msg("%s %lldx%lldx%lld axis %s: rel %g", m->name, (long long)m->out,
		         (long long)m->in, (long long)m->kk, axis == LOKR_DORA_OUT ? "out" : "in",
		         num / den);
	free(exp);
	free(g);
	free((void *)l.weight);
}

static void lokr_both_axes(int64_t m1, int64_t n1, int64_t m2, int64_t n2, int64_t kk, int64_t w1r,
                           int64_t w2r, int tucker, float scale)
{
	lokr_module m;
	make_lokr(&m, m1, n1, m2, n2, kk, w1r, w2r, tucker, scale);
	check_dora(&m, LOKR_DORA_OUT);
	check_dora(&m, LOKR_DORA_IN);
	module_free(&m);
}

static void test_lokr_unbalanced(void **state)
{
	(void)state;
	lokr_both_axes(4, 4, 320, 320, 1, 0, 8, 0, 0.5f);
	lokr_both_axes(320, 4, 4, 320, 1, 0, 0, 0, 1.0f);
	lokr_both_axes(40, 4, 4, 48, 1, 0, 0, 0, 2.0f);
}

static void test_lokr_w1_lowrank(void **state)
{
	(void)state;
	lokr_both_axes(25, 4, 4, 15, 1, 8, 0, 0, 0.25f); /* W2 rows of 15: pattern path */
	lokr_both_axes(8, 8, 16, 24, 1, 3, 4, 0, 1.5f);
}

static void test_lokr_odd_blocks(void **state)
{
	(void)state;
	/* odd n1 above the flush interval; row counts not a multiple of 4 */
	lokr_both_axes(3, 37, 5, 20, 1, 0, 0, 0, 0.5f);
	lokr_both_axes(2, 19, 3, 2, 9, 0, 0, 0, 1.0f);
	lokr_both_axes(7, 1, 3, 33, 1, 0, 2, 0, 2.0f);
}

static void test_lokr_short_rows(void **state)
{
	(void)state;
	lokr_both_axes(64, 64, 5, 5, 1, 0, 0, 0, 1.0f); /* W1 larger than W2 */
	lokr_both_axes(127, 4, 1, 32, 1, 0, 0, 0, 1.0f);
	lokr_both_axes(6, 32, 8, 1, 9, 0, 0, 0, 0.5f); /* n2*kk = 9 */
	/* all T_j tiles would exceed 2^20 floats: rebuilt per row */
	lokr_both_axes(1, 512, 2100, 1, 1, 0, 0, 0, 0.75f);
}

static void test_lokr_conv(void **state)
{
	(void)state;
	lokr_both_axes(6, 4, 8, 8, 9, 0, 3, 1, 0.75f); /* Tucker 3x3 */
	lokr_both_axes(6, 4, 8, 8, 9, 2, 3, 0, 1.25f); /* both low-rank, 2-D w2_b */
	lokr_both_axes(4, 4, 12, 8, 9, 0, 0, 0, 1.0f); /* both full */
	lokr_both_axes(4, 4, 8, 8, 1, 0, 0, 0, 1.0f);  /* 1x1 */
}

static void test_lora(void **state)
{
	(void)state;
	lokr_module m;
	make_lora(&m, 160, 192, 1, 8, 0, 0.5f);
	check_dora(&m, LOKR_DORA_OUT);
	check_dora(&m, LOKR_DORA_IN);
	module_free(&m);
	make_lora(&m, 150, 40, 9, 4, 0, 2.0f); /* several row blocks, conv */
	check_dora(&m, LOKR_DORA_OUT);
	check_dora(&m, LOKR_DORA_IN);
	module_free(&m);
	make_lora(&m, 48, 32, 9, 4, 1, 0.75f); /* Tucker mid */
	check_dora(&m, LOKR_DORA_OUT);
	check_dora(&m, LOKR_DORA_IN);
	module_free(&m);
}

static void test_loha(void **state)
{
	(void)state;
	lokr_module m;
	make_loha(&m, 48, 32, 9, 4, 4, 0, 0.5f);
	check_dora(&m, LOKR_DORA_OUT);
	check_dora(&m, LOKR_DORA_IN);
	module_free(&m);
	make_loha(&m, 48, 32, 9, 3, 3, 1, 1.0f);
	check_dora(&m, LOKR_DORA_OUT);
	check_dora(&m, LOKR_DORA_IN);
	module_free(&m);
}

/* A delta that exactly cancels W0 leaves |V| = 0 and g = dora_scale / 2^-23:
 * the expansion must not go negative (NaN) there. */
static void test_zero_norm(void **state)
{
	(void)state;
	lokr_module m;
	make_lokr(&m, 2, 2, 3, 3, 1, 0, 0, 0, 1.0f);
	lokr_layer l;
	layer_make(&l, &m);
	float *w = (float *)l.weight;
	for (int i = 0; i < 4; i++)
		m.w1.data[i] = 1.0f;
	for (int x = 0; x < 6 * 6; x++) /* W0 = -kron(ones, W2) */
		w[x] = -m.w2.data[(x / 6 % 3) * 3 + x % 3];
	m.dora_axis = LOKR_DORA_OUT;
	m.dora_scale = vec_rand(6, 1.0f, 1.0f);
	float g[6];
	assert_int_equal(lokr__dora_vector(&l, &m, g, NULL), LOKR_OK);
	for (int o = 0; o < 6; o++) {
		assert_true(isfinite(g[o]));
		assert_true(g[o] > 1e6f);
	}
	free(w);
	module_free(&m);
}

static void test_errors(void **state)
{
	(void)state;
	lokr_module m;
	make_lokr(&m, 2, 2, 3, 3, 1, 0, 0, 0, 1.0f);
	lokr_layer l;
	layer_make(&l, &m);
	float g[6];
	lokr_error err = {0};
	assert_int_equal(lokr__dora_vector(&l, &m, g, &err), LOKR_EINVAL); /* no axis */
	assert_non_null(strstr(err.msg, "lycoris_test"));
	m.dora_axis = LOKR_DORA_OUT;
	assert_int_equal(lokr__dora_vector(&l, &m, g, &err), LOKR_EINVAL); /* no scale */
	m.dora_scale = vec_rand(6, 1.0f, 2.0f);
	assert_int_equal(lokr__dora_vector(&l, &m, g, &err), LOKR_OK);
	l.in = 5;
	assert_int_equal(lokr__dora_vector(&l, &m, g, &err), LOKR_EINVAL);
	assert_non_null(strstr(err.msg, "test.layer"));
	l.in = 6;
	m.w2.cols = 4;
	assert_int_equal(lokr__dora_vector(&l, &m, g, &err), LOKR_EINVAL);
	m.w2.cols = 3;
	assert_int_equal(lokr__dora_vector(NULL, &m, g, &err), LOKR_EINVAL);
	/* allocation failures surface as LOKR_ENOMEM, never a crash */
	for (long k = 0; k < 8; k++) {
		lokr__alloc_fail_after(k);
		int rc = lokr__dora_vector(&l, &m, g, &err);
		lokr__alloc_fail_after(-1);
		assert_true(rc == LOKR_ENOMEM || rc == LOKR_OK);
		if (rc == LOKR_OK)
			break;
	}
	free((void *)l.weight);
	module_free(&m);

	make_lora(&m, 8, 6, 1, 2, 0, 1.0f);
	layer_make(&l, &m);
	m.dora_axis = LOKR_DORA_IN;
	m.dora_scale = vec_rand(6, 1.0f, 2.0f);
	assert_int_equal(lokr__dora_vector(&l, &m, g, &err), LOKR_OK);
	m.down.cols = 7;
	assert_int_equal(lokr__dora_vector(&l, &m, g, &err), LOKR_EINVAL);
	free((void *)l.weight);
	module_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lokr_unbalanced),
	    cmocka_unit_test(test_lokr_w1_lowrank),
	    cmocka_unit_test(test_lokr_odd_blocks),
	    cmocka_unit_test(test_lokr_short_rows),
	    cmocka_unit_test(test_lokr_conv),
	    cmocka_unit_test(test_lora),
	    cmocka_unit_test(test_loha),
	    cmocka_unit_test(test_zero_norm),
	    cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for lib/merge.c: lokr_merge_layer against a double reference of
 * lycoris-format.md "lokrd's decisions" 1-3, on a base written to a temp
 * safetensors file, with hand-built adapters (modules filled the way the
 * loader fills them).  Reference: W0 + sum_a l_a (s dW) or
 * l_a (g .* (W0 + s dW) - W0) with g from dense double norms; s dW from
 * lokr_module_delta (checked against definitions in tests/unit/delta.c).
 * Error measure: rel = max|got - exp| / max|exp|.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"

#define TESTUTIL_SEED 0x13198a2e03707344ull
#include "testutil.h"

/* ------------------------------------------------------------ fixtures */

typedef struct fixture {
	lokr_base *base;
	size_t lin, conv; /* layer indices */
	const lokr_layer *L_lin, *L_conv;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	float *wl = vec_rand(160 * 192, -1, 1), *bl = vec_rand(160, -1, 1);
	float *wc = vec_rand(48 * 32 * 9, -1, 1);
	lokr_st_spec specs[] = {
	    {"lin.weight", "F32", 2, {160, 192}, wl},
	    {"lin.bias", "F32", 1, {160}, bl},
	    {"conv.weight", "F32", 4, {48, 32, 3, 3}, wc},
	};
	int rc = base_from_specs(specs, 3, &f->base);
	free(wl);
	free(bl);
	free(wc);
	if (rc) {
		free(f);
		return -1;
	}
	f->lin = (size_t)lokr_base_layer_find(f->base, "lin");
	f->conv = (size_t)lokr_base_layer_find(f->base, "conv");
	f->L_lin = lokr_base_layer_at(f->base, f->lin);
	f->L_conv = lokr_base_layer_at(f->base, f->conv);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	lokr_base_free(f->base);
	free(f);
	return 0;
}

/* One adapter with one module, owned here. */
typedef struct test_adapter {
	lokr_adapter a;
	lokr_module m;
} test_adapter;

static void ta_common(test_adapter *t, const lokr_layer *L, size_t layer, lokr_algo algo,
                      float scale)
{
	memset(t, 0, sizeof *t);
	t->m.name = "lycoris_test";
	t->m.layer = layer;
	t->m.algo = algo;
	t->m.out = L->out, t->m.in = L->in, t->m.kk = L->kk;
	t->m.scale = scale;
	t->a.nmodules = 1;
	t->a.modules = &t->m;
}

/* LoKr on `L` with W1 (m1 x n1) full and W2 low-rank r2 (0: full). */
static void ta_lokr(test_adapter *t, const lokr_layer *L, size_t layer, int64_t m1, int64_t n1,
                    int64_t r2, float scale)
{
	ta_common(t, L, layer, LOKR_ALGO_LOKR, scale);
	lokr_module *m = &t->m;
	m->m1 = m1, m->n1 = n1, m->m2 = L->out / m1, m->n2 = L->in / n1;
	m->w1 = mat_rand(m1, n1);
	if (r2) {
		m->w2_a = mat_rand(m->m2, r2);
		m->w2_b = mat_rand(r2, m->n2 * L->kk);
	} else {
		m->w2 = mat_rand(m->m2, m->n2 * L->kk);
	}
}

static void ta_lora(test_adapter *t, const lokr_layer *L, size_t layer, int64_t r, float scale)
{
	ta_common(t, L, layer, LOKR_ALGO_LORA, scale);
	t->m.up = mat_rand(L->out, r);
	t->m.down = mat_rand(r, L->in * L->kk);
}

static void ta_loha(test_adapter *t, const lokr_layer *L, size_t layer, int64_t r, float scale)
{
	ta_common(t, L, layer, LOKR_ALGO_LOHA, scale);
	t->m.hada_w1_a = mat_rand(L->out, r);
	t->m.hada_w1_b = mat_rand(r, L->in * L->kk);
	t->m.hada_w2_a = mat_rand(L->out, r);
	t->m.hada_w2_b = mat_rand(r, L->in * L->kk);
}

/* Add DoRA on `axis`, with g cached as the loader does. */
static void ta_dora(test_adapter *t, const lokr_layer *L, lokr_dora_axis axis)
{
	size_t len = (size_t)(axis == LOKR_DORA_OUT ? L->out : L->in);
	t->m.dora_axis = axis;
	t->m.dora_scale = vec_rand(len, 0.5f, 2.0f);
	t->m.dora_g = malloc(len * sizeof(float));
	assert_non_null(t->m.dora_g);
	assert_int_equal(lokr__dora_vector(L, &t->m, t->m.dora_g, NULL), LOKR_OK);
}

/* ------------------------------------------------------------ reference */

/* W' (or W' - W0) in double. */
static double *ref_merge(const lokr_layer *L, const lokr_adapter_ref *set, size_t nset,
                         int delta_only)
{
	size_t out = (size_t)L->out, in = (size_t)L->in, kk = (size_t)L->kk, cols = in * kk;
	size_t n = out * cols;
	double *acc = calloc(n, sizeof(double));
	float *d = malloc(n * sizeof(float));
	assert_non_null(acc);
	assert_non_null(d);
	for (size_t a = 0; a < nset; a++) {
		const lokr_module *m = &set[a].adapter->modules[0];
		double lam = set[a].multiplier;
		assert_int_equal(lokr_module_delta(m, d), LOKR_OK);
		if (m->dora_axis == LOKR_DORA_NONE) {
			for (size_t e = 0; e < n; e++)
				acc[e] += lam * d[e];
			continue;
		}
		size_t len = m->dora_axis == LOKR_DORA_OUT ? out : in;
		double *g = calloc(len, sizeof(double));
		assert_non_null(g);
		for (size_t e = 0; e < n; e++) {
			double v = (double)L->weight[e] + d[e];
			g[m->dora_axis == LOKR_DORA_OUT ? e / cols : e % cols / kk] += v * v;
		}
		for (size_t x = 0; x < len; x++)
			g[x] = m->dora_scale[x] / (sqrt(g[x]) + 1.1920928955078125e-07);
		for (size_t e = 0; e < n; e++) {
			double gx = g[m->dora_axis == LOKR_DORA_OUT ? e / cols : e % cols / kk];
			double w0 = L->weight[e];
			acc[e] += lam * (gx * (w0 + d[e]) - w0);
		}
		free(g);
	}
	if (!delta_only)
		for (size_t e = 0; e < n; e++)
			acc[e] += L->weight[e];
	free(d);
	return acc;
}

static size_t layer_elems(const lokr_layer *L)
{
	return (size_t)(L->out * L->in * L->kk);
}

/* Merge through the library and compare with the reference. */
static void check_merge(const fixture *f, size_t layer, const lokr_adapter_ref *set, size_t nset,
                        int delta_only, double bound)
{
	const lokr_layer *L = lokr_base_layer_at(f->base, layer);
	size_t n = layer_elems(L);
	float *got = malloc(n * sizeof(float));
	assert_non_null(got);
	lokr_error err = {0};
	int rc = lokr_merge_layer(f->base, layer, set, nset, delta_only, got, &err);
	if (rc)
		fail_msg("merge: %d %s", rc, err.msg);
	double *exp = ref_merge(L, set, nset, delta_only);
	double rel = rel_err(got, exp, n);
	if (!(rel <= bound))
		fail_msg("layer %s nset %zu delta_only %d: rel %g > %g", L->name, nset, delta_only,
		         rel, bound);
	free(got);
	free(exp);
}

static const float lambdas[] = {1.0f, 0.5f, 0.0f, -1.0f, 2.0f};

/* ------------------------------------------------------------------ tests */

static void test_lambda_sweep_plain(void **state)
{
	fixture *f = *state;
	test_adapter t;
	ta_lokr(&t, f->L_lin, f->lin, 40, 4, 0, 0.75f); /* 40x4 (x) 4x48 */
	for (size_t i = 0; i < 5; i++) {
		lokr_adapter_ref ref = {&t.a, lambdas[i]};
		check_merge(f, f->lin, &ref, 1, 0, 1e-6);
		check_merge(f, f->lin, &ref, 1, 1, 1e-6);
	}
	module_free(&t.m);
	ta_lokr(&t, f->L_conv, f->conv, 6, 4, 3, 1.5f);
	for (size_t i = 0; i < 5; i++) {
		lokr_adapter_ref ref = {&t.a, lambdas[i]};
		check_merge(f, f->conv, &ref, 1, 0, 1e-6);
	}
	module_free(&t.m);
}

static void test_lambda_sweep_dora(void **state)
{
	fixture *f = *state;
	for (int axis = LOKR_DORA_OUT; axis <= LOKR_DORA_IN; axis++) {
		test_adapter t;
		ta_lokr(&t, f->L_lin, f->lin, 8, 8, 4, 0.5f);
		ta_dora(&t, f->L_lin, (lokr_dora_axis)axis);
		for (size_t i = 0; i < 5; i++) {
			lokr_adapter_ref ref = {&t.a, lambdas[i]};
			check_merge(f, f->lin, &ref, 1, 0, 1e-6);
			check_merge(f, f->lin, &ref, 1, 1, 1e-5);
		}
		module_free(&t.m);
		ta_lora(&t, f->L_conv, f->conv, 4, 1.0f);
		ta_dora(&t, f->L_conv, (lokr_dora_axis)axis);
		for (size_t i = 0; i < 5; i++) {
			lokr_adapter_ref ref = {&t.a, lambdas[i]};
			check_merge(f, f->conv, &ref, 1, 0, 1e-6);
		}
		module_free(&t.m);
	}
}

/* lambda = 0 (and an empty set, or adapters without a module on the layer)
 * leave the layer bit-identical; delta_only gives exact zeros. */
static void test_untouched_is_bit_identical(void **state)
{
	fixture *f = *state;
	test_adapter t, other;
	ta_lokr(&t, f->L_lin, f->lin, 8, 8, 0, 1.0f);
	ta_dora(&t, f->L_lin, LOKR_DORA_OUT);
	ta_lora(&other, f->L_conv, f->conv, 2, 1.0f); /* only on conv */
	size_t n = layer_elems(f->L_lin);
	float *got = malloc(n * sizeof(float));
	assert_non_null(got);
	lokr_adapter_ref zero[] = {{&t.a, 0.0f}, {&other.a, 1.0f}};
	assert_int_equal(lokr_merge_layer(f->base, f->lin, zero, 2, 0, got, NULL), LOKR_OK);
	assert_memory_equal(got, f->L_lin->weight, n * sizeof(float));
	assert_int_equal(lokr_merge_layer(f->base, f->lin, NULL, 0, 0, got, NULL), LOKR_OK);
	assert_memory_equal(got, f->L_lin->weight, n * sizeof(float));
	assert_int_equal(lokr_merge_layer(f->base, f->lin, zero, 2, 1, got, NULL), LOKR_OK);
	for (size_t e = 0; e < n; e++)
		assert_true(got[e] == 0.0f);
	free(got);
	module_free(&t.m);
	module_free(&other.m);
}

/* Three adapters of different kinds on one layer: every order gives the same
 * bytes, and the sum of the individual deltas. */
static void test_several_adapters_any_order(void **state)
{
	fixture *f = *state;
	test_adapter t[3];
	ta_lokr(&t[0], f->L_conv, f->conv, 6, 4, 3, 0.75f);
	ta_dora(&t[0], f->L_conv, LOKR_DORA_OUT);
	ta_lora(&t[1], f->L_conv, f->conv, 4, 0.5f);
	ta_loha(&t[2], f->L_conv, f->conv, 2, 1.25f);
	ta_dora(&t[2], f->L_conv, LOKR_DORA_IN);
	const float lam[3] = {0.8f, -0.5f, 1.3f};
	static const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
	                                {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
	size_t n = layer_elems(f->L_conv);
	float *first = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
	assert_non_null(first);
	assert_non_null(got);
	for (int delta_only = 0; delta_only <= 1; delta_only++) {
		for (int p = 0; p < 6; p++) {
			lokr_adapter_ref set[3];
			for (int k = 0; k < 3; k++)
				set[k] = (lokr_adapter_ref){&t[perms[p][k]].a, lam[perms[p][k]]};
			assert_int_equal(lokr_merge_layer(f->base, f->conv, set, 3, delta_only,
			                                  p ? got : first, NULL),
			                 LOKR_OK);
			if (p)
				assert_memory_equal(first, got, n * sizeof(float));
			check_merge(f, f->conv, set, 3, delta_only, 1e-5);
		}
	}
	/* two adapters: also order-free */
	lokr_adapter_ref ab[2] = {{&t[0].a, 1.0f}, {&t[1].a, 1.0f}};
	lokr_adapter_ref ba[2] = {{&t[1].a, 1.0f}, {&t[0].a, 1.0f}};
	assert_int_equal(lokr_merge_layer(f->base, f->conv, ab, 2, 0, first, NULL), LOKR_OK);
	assert_int_equal(lokr_merge_layer(f->base, f->conv, ba, 2, 0, got, NULL), LOKR_OK);
	assert_memory_equal(first, got, n * sizeof(float));
	free(first);
	free(got);
	for (int k = 0; k < 3; k++)
		module_free(&t[k].m);
}

/* A module whose DoRA vector was not cached is handled the same way. */
static void test_dora_uncached(void **state)
{
	fixture *f = *state;
	test_adapter t;
	ta_lokr(&t, f->L_lin, f->lin, 40, 4, 0, 0.75f);
	ta_dora(&t, f->L_lin, LOKR_DORA_IN);
	size_t n = layer_elems(f->L_lin);
	float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
	assert_non_null(a);
	assert_non_null(b);
	lokr_adapter_ref ref = {&t.a, 0.5f};
	assert_int_equal(lokr_merge_layer(f->base, f->lin, &ref, 1, 0, a, NULL), LOKR_OK);
	free(t.m.dora_g);
	t.m.dora_g = NULL;
	assert_int_equal(lokr_merge_layer(f->base, f->lin, &ref, 1, 0, b, NULL), LOKR_OK);
	assert_memory_equal(a, b, n * sizeof(float));
	free(a);
	free(b);
	module_free(&t.m);
}

/* The LoKr fast path (one pass, no scratch) against the general path's
 * arithmetic written out here: s dW from lokr_module_delta, summed as
 * 0 + l1 d1 + l2 d2 in the canonical order (adapter address), W0 added last.
 * Bit-identical, for two adapters of different factorizations (one with a
 * low-rank W2), merged and delta, in either order, plus a single adapter. */
static void test_fast_path_bit_identical(void **state)
{
	fixture *f = *state;
	test_adapter t[2];
	ta_lokr(&t[0], f->L_lin, f->lin, 40, 4, 0, 0.75f);
	ta_lokr(&t[1], f->L_lin, f->lin, 8, 8, 3, 1.5f);
	size_t n = layer_elems(f->L_lin);
	float *d[2], *exp = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
	assert_non_null(exp);
	assert_non_null(got);
	for (int i = 0; i < 2; i++) {
		d[i] = malloc(n * sizeof(float));
		assert_non_null(d[i]);
		assert_int_equal(lokr_module_delta(&t[i].m, d[i]), LOKR_OK);
	}
	const float lam[2] = {0.8f, -1.3f};
	int lo = (uintptr_t)&t[0].a < (uintptr_t)&t[1].a ? 0 : 1, hi = 1 - lo;
	for (int delta_only = 0; delta_only < 2; delta_only++) {
		for (size_t e = 0; e < n; e++) {
			float acc = 0.0f;
			acc += lam[lo] * d[lo][e];
			acc += lam[hi] * d[hi][e];
			exp[e] = delta_only ? acc : f->L_lin->weight[e] + acc;
		}
		lokr_adapter_ref ab[2] = {{&t[0].a, lam[0]}, {&t[1].a, lam[1]}};
		lokr_adapter_ref ba[2] = {ab[1], ab[0]};
		assert_int_equal(lokr_merge_layer(f->base, f->lin, ab, 2, delta_only, got, NULL),
		                 LOKR_OK);
		assert_memory_equal(got, exp, n * sizeof(float));
		assert_int_equal(lokr_merge_layer(f->base, f->lin, ba, 2, delta_only, got, NULL),
		                 LOKR_OK);
		assert_memory_equal(got, exp, n * sizeof(float));
		for (size_t e = 0; e < n; e++) {
			float acc = 0.0f;
			acc += lam[1] * d[1][e];
			exp[e] = delta_only ? acc : f->L_lin->weight[e] + acc;
		}
		assert_int_equal(
		    lokr_merge_layer(f->base, f->lin, &ab[1], 1, delta_only, got, NULL), LOKR_OK);
		assert_memory_equal(got, exp, n * sizeof(float));
	}
	for (int i = 0; i < 2; i++) {
		free(d[i]);
		module_free(&t[i].m);
	}
	free(exp);
	free(got);
}

static void test_errors(void **state)
{
	fixture *f = *state;
	test_adapter t;
	ta_lokr(&t, f->L_lin, f->lin, 40, 4, 0, 1.0f);
	size_t n = layer_elems(f->L_lin);
	float *dst = malloc(n * sizeof(float));
	assert_non_null(dst);
	lokr_error err = {0};
	lokr_adapter_ref ref = {&t.a, 1.0f};
	size_t nl = lokr_base_layer_count(f->base);
	assert_int_equal(lokr_merge_layer(f->base, nl, &ref, 1, 0, dst, &err), LOKR_ENOTFOUND);
	assert_int_equal(lokr_merge_layer(NULL, f->lin, &ref, 1, 0, dst, &err), LOKR_EINVAL);
	assert_int_equal(lokr_merge_layer(f->base, f->lin, NULL, 1, 0, dst, &err), LOKR_EINVAL);
	lokr_adapter_ref nul = {NULL, 1.0f};
	assert_int_equal(lokr_merge_layer(f->base, f->lin, &nul, 1, 0, dst, &err), LOKR_EINVAL);
	lokr_adapter_ref nan = {&t.a, NAN};
	assert_int_equal(lokr_merge_layer(f->base, f->lin, &nan, 1, 0, dst, &err), LOKR_EINVAL);
	/* a module from an adapter loaded against another base shape */
	t.m.layer = f->conv;
	assert_int_equal(lokr_merge_layer(f->base, f->conv, &ref, 1, 0, dst, &err), LOKR_EMISMATCH);
	assert_non_null(strstr(err.msg, "lycoris_test"));
	t.m.layer = f->lin;
	t.m.w2.cols = 47; /* inconsistent factors */
	assert_int_equal(lokr_merge_layer(f->base, f->lin, &ref, 1, 0, dst, &err), LOKR_EINVAL);
	t.m.w2.cols = 48;
	for (long k = 0; k < 6; k++) {
		lokr__alloc_fail_after(k);
		int rc = lokr_merge_layer(f->base, f->lin, &ref, 1, 0, dst, &err);
		lokr__alloc_fail_after(-1);
		assert_true(rc == LOKR_ENOMEM || rc == LOKR_OK);
		if (rc == LOKR_OK)
			break;
	}
	free(dst);
	module_free(&t.m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lambda_sweep_plain),
	    cmocka_unit_test(test_lambda_sweep_dora),
	    cmocka_unit_test(test_untouched_is_bit_identical),
	    cmocka_unit_test(test_several_adapters_any_order),
	    cmocka_unit_test(test_dora_uncached),
	    cmocka_unit_test(test_fast_path_bit_identical),
	    cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

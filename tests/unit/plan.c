/* Unit tests for lib/plan.c: the planner's choices (order, expansions,
 * threshold), its description, and plan_apply against the dense references
 * (the test's own and lib/delta.c's lokr_module_delta). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include "speed_util.h"

#define TOL 1e-5

static lokr_layer layer_for(int64_t out, int64_t in)
{
	lokr_layer l;
	memset(&l, 0, sizeof l);
	l.name = "plan.layer";
	l.kind = LOKR_LAYER_LINEAR;
	l.ndim = 2;
	l.out = l.shape[0] = out;
	l.in = l.shape[1] = in;
	l.kk = 1;
	return l;
}

/* plan_apply (alpha = 1, beta = 0) for `rows` random rows vs x dW^T. */
static double apply_err(const lokr_module *m, int64_t rows, lokr_kron_w1step step)
{
	rng g = {77 + (uint64_t)rows};
	const int64_t out = m->out, in = m->in;
	double *d = ref_delta(m);
	float *x = rnd(&g, rows * in, 1.0f);
	float *y = calloc((size_t)(rows * out), sizeof *y);
	double *ref = calloc((size_t)(rows * out), sizeof *ref);
	for (int64_t n = 0; n < rows; n++)
		for (int64_t o = 0; o < out; o++)
			for (int64_t c = 0; c < in; c++)
				ref[n * out + o] += (double)x[n * in + c] * d[o * in + c];
	float *ws = calloc(lokr__plan_scratch(m->plan, step, rows) + 1, sizeof *ws);
	lokr__plan_apply(m->plan, step, rows, x, 1.0f, 0.0f, y, ws);
	double e = rel_err(y, ref, rows * out);
	free(ws);
	free(d);
	free(x);
	free(y);
	free(ref);
	return e;
}

static void plan_ok(lokr_module *m)
{
	lokr_layer l = layer_for(m->out, m->in);
	lokr_error err = {0};
	int rc = lokr__plan_module(&l, m, &err);
	if (rc != LOKR_OK)
		fail_msg("plan failed: %s", err.msg);
	assert_non_null(m->plan);
}

static void test_order_unbalanced(void **state)
{
	(void)state;
	rng g = {1};
	/* lycoris-format.md 9.19: 320x4 (x) 4x320 must pick A (W2 first) */
	lokr_module a = make_lokr(&g, 320, 4, 4, 320, 0, 0, 1.0f);
	plan_ok(&a);
	assert_int_equal(a.plan->order, LOKR_KRON_A);
	assert_true(a.plan->macs_row == 10240.0);
	/* the mirrored split (W1 4x320, W2 320x4) must pick B */
	lokr_module b = make_lokr(&g, 4, 320, 320, 4, 0, 0, 1.0f);
	plan_ok(&b);
	assert_int_equal(b.plan->order, LOKR_KRON_B);
	assert_true(b.plan->macs_row == 10240.0);
	assert_true(apply_err(&a, 3, LOKR_W1STEP_AUTO) <= TOL);
	assert_true(apply_err(&b, 3, LOKR_W1STEP_AUTO) <= TOL);
	module_free(&a);
	module_free(&b);
}

static void test_lowrank_w2_kept(void **state)
{
	(void)state;
	rng g = {2};
	/* 4x4 (x) 320x320 with W2 rank 8: keeping the factors is 16x cheaper */
	lokr_module m = make_lokr(&g, 4, 4, 320, 320, 0, 8, 2.0f);
	plan_ok(&m);
	assert_true(m.plan->w2_lowrank);
	assert_false(m.plan->w2_expanded);
	assert_null(m.plan->kf.w2);
	assert_true(m.plan->macs_row < m.plan->macs_opt[0] / 10.0);
	/* W1 sits between the two W2 factors: r (n1 n2 + m1 n1 + m1 m2) */
	assert_int_equal(m.plan->order, LOKR_KRON_S);
	assert_true(m.plan->macs_row == 8.0 * (1280 + 16 + 1280));
	for (int64_t rows = 1; rows <= 7; rows += 6)
		assert_true(apply_err(&m, rows, LOKR_W1STEP_AUTO) <= TOL);
	module_free(&m);
}

static void test_lowrank_w2_expanded(void **state)
{
	(void)state;
	rng g = {3};
	/* W2 8x8 stored at rank 7 (a foreign file): the dense W2 is cheaper */
	lokr_module m = make_lokr(&g, 40, 40, 8, 8, 0, 7, 1.0f);
	plan_ok(&m);
	assert_true(m.plan->w2_lowrank);
	assert_true(m.plan->w2_expanded);
	assert_non_null(m.plan->kf.w2);
	assert_true(lokr__plan_bytes(m.plan) >= 8 * 8 * sizeof(float));
	assert_true(apply_err(&m, 1, LOKR_W1STEP_AUTO) <= TOL);
	assert_true(apply_err(&m, 7, LOKR_W1STEP_AUTO) <= TOL);
	module_free(&m);
}

static void test_w1_lowrank(void **state)
{
	(void)state;
	rng g = {4};
	/* unbalanced + decompose_both: W1 (25 x 4) = (25 x 8)(8 x 4)?  rank must be
	 * below the dims to be a real low rank, use W1 40x48 rank 3 with W2 full */
	lokr_module m = make_lokr(&g, 40, 48, 4, 5, 3, 0, 0.5f);
	plan_ok(&m);
	assert_true(m.plan->w1_expanded);
	assert_true(lokr__plan_bytes(m.plan) >= 40 * 48 * sizeof(float));
	for (int64_t rows = 1; rows <= 7; rows += 6)
		for (int step = 0; step < 3; step++)
			assert_true(apply_err(&m, rows, (lokr_kron_w1step)step) <= TOL);
	/* both low-rank */
	lokr_module b = make_lokr(&g, 16, 16, 20, 20, 4, 8, 1.0f);
	plan_ok(&b);
	assert_true(b.plan->w1_expanded);
	assert_true(apply_err(&b, 7, LOKR_W1STEP_AUTO) <= TOL);
	module_free(&m);
	module_free(&b);
}

static void test_force_order(void **state)
{
	(void)state;
	rng g = {5};
	const int64_t shapes[][5] = {{4, 4, 320, 320, 0},
	                             {320, 4, 4, 320, 0},
	                             {40, 4, 4, 48, 0},
	                             {16, 16, 20, 20, 8},
	                             {4, 4, 320, 320, 16}};
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
		lokr_module m = make_lokr(&g, shapes[i][0], shapes[i][1], shapes[i][2],
		                          shapes[i][3], 0, shapes[i][4], 1.0f);
		plan_ok(&m);
		for (int o = 0; o < 3; o++) {
			if (o == LOKR_KRON_S && m.plan->kf.w2) {
				assert_int_equal(lokr__plan_force_order(m.plan, LOKR_KRON_S),
				                 LOKR_EINVAL);
				continue;
			}
			assert_int_equal(lokr__plan_force_order(m.plan, (lokr_kron_order)o),
			                 LOKR_OK);
			assert_int_equal(m.plan->order, o);
			assert_true(m.plan->macs_row ==
			            lokr__kron_macs(&m.plan->kf, (lokr_kron_order)o));
			for (int64_t rows = 1; rows <= 7; rows += 6)
				assert_true(apply_err(&m, rows, LOKR_W1STEP_AUTO) <= TOL);
		}
		module_free(&m);
	}
}

static void test_lora_loha(void **state)
{
	(void)state;
	rng g = {6};
	lokr_module a = make_lora(&g, 96, 80, 8, 1.0f);
	plan_ok(&a);
	assert_int_equal(a.plan->kind, LOKR_PLAN_LOWRANK);
	assert_true(a.plan->macs_row == 8.0 * (96 + 80));
	assert_true(apply_err(&a, 1, LOKR_W1STEP_AUTO) <= TOL);
	assert_true(apply_err(&a, 7, LOKR_W1STEP_AUTO) <= TOL);
	assert_int_equal(lokr__plan_force_order(a.plan, LOKR_KRON_A), LOKR_EINVAL);

	lokr_module h = make_loha(&g, 96, 80, 4, 1.0f);
	plan_ok(&h);
	assert_int_equal(h.plan->kind, LOKR_PLAN_DENSE);
	/* the cached dW is counted */
	assert_true(lokr__plan_bytes(h.plan) >= 96 * 80 * sizeof(float));
	assert_true(apply_err(&h, 1, LOKR_W1STEP_AUTO) <= TOL);
	assert_true(apply_err(&h, 7, LOKR_W1STEP_AUTO) <= TOL);
	module_free(&a);
	module_free(&h);
}

/* The plan's factored apply equals lib/delta.c's dense s*dW too (a second,
 * independently written reference), including conv-shaped Tucker modules
 * applied on the flat (out x in*kk) view. */
static void check_vs_module_delta(lokr_module *m, int64_t kk)
{
	lokr_layer l = layer_for(m->out, m->in);
	l.kind = kk > 1 ? LOKR_LAYER_CONV : LOKR_LAYER_LINEAR;
	l.kk = kk;
	lokr_error err = {0};
	if (lokr__plan_module(&l, m, &err) != LOKR_OK)
		fail_msg("plan: %s", err.msg);
	const int64_t out = m->out, w = m->in * kk, rows = 5;
	float *d = calloc((size_t)(out * w), sizeof *d);
	assert_int_equal(lokr_module_delta(m, d), LOKR_OK);
	rng g = {99};
	float *x = rnd(&g, rows * w, 1.0f);
	double *ref = calloc((size_t)(rows * out), sizeof *ref);
	for (int64_t n = 0; n < rows; n++)
		for (int64_t o = 0; o < out; o++)
			for (int64_t c = 0; c < w; c++)
				ref[n * out + o] += (double)x[n * w + c] * (double)d[o * w + c];
	float *y = calloc((size_t)(rows * out), sizeof *y);
	float *ws = calloc(lokr__plan_scratch(m->plan, LOKR_W1STEP_AUTO, rows) + 1, sizeof *ws);
	lokr__plan_apply(m->plan, LOKR_W1STEP_AUTO, rows, x, m->scale, 0.0f, y, ws);
	double e = rel_err(y, ref, rows * out);
	if (e > TOL)
		fail_msg("%s: plan apply vs lokr_module_delta rel err %g", m->name, e);
	free(d);
	free(x);
	free(ref);
	free(y);
	free(ws);
}

static void test_vs_module_delta(void **state)
{
	(void)state;
	rng g = {7};
	lokr_module a = make_lokr(&g, 8, 6, 5, 4, 0, 2, 1.5f);
	check_vs_module_delta(&a, 1);
	module_free(&a);

	/* LoKr Tucker on a 3x3 conv: W1 6x4, t2 (3*3 x 9), w2_a (3 x 8), w2_b (3 x 8) */
	lokr_module t;
	memset(&t, 0, sizeof t);
	t.name = "lycoris_tucker";
	t.algo = LOKR_ALGO_LOKR;
	t.m1 = 6, t.n1 = 4, t.m2 = 8, t.n2 = 8, t.kk = 9;
	t.out = 48, t.in = 32, t.scale = 0.75f, t.tucker = 1, t.rank = 3;
	t.w1 = rmat(&g, 6, 4, 0.5f);
	t.t2 = rmat(&g, 9, 9, 0.5f);
	t.w2_a = rmat(&g, 3, 8, 0.5f);
	t.w2_b = rmat(&g, 3, 8, 0.5f);
	check_vs_module_delta(&t, 9);
	assert_true(t.plan->tucker && t.plan->w2_expanded);
	module_free(&t);

	/* LoCon Tucker: up (48 x 3), mid (9 x 9), down (3 x 32) */
	lokr_module c;
	memset(&c, 0, sizeof c);
	c.name = "lycoris_locon_tucker";
	c.algo = LOKR_ALGO_LORA;
	c.out = 48, c.in = 32, c.kk = 9, c.scale = 1.25f, c.tucker = 1, c.rank = 3;
	c.up = rmat(&g, 48, 3, 0.5f);
	c.mid = rmat(&g, 9, 9, 0.5f);
	c.down = rmat(&g, 3, 32, 0.5f);
	check_vs_module_delta(&c, 9);
	assert_true(c.plan->tucker);
	module_free(&c);

	/* LoHa Tucker: w_a (3 x 48), w_b (3 x 32), t (9 x 9) */
	lokr_module h;
	memset(&h, 0, sizeof h);
	h.name = "lycoris_loha_tucker";
	h.algo = LOKR_ALGO_LOHA;
	h.out = 48, h.in = 32, h.kk = 9, h.scale = 0.5f, h.tucker = 1, h.rank = 3;
	h.hada_w1_a = rmat(&g, 3, 48, 0.5f);
	h.hada_w1_b = rmat(&g, 3, 32, 0.5f);
	h.hada_t1 = rmat(&g, 9, 9, 0.5f);
	h.hada_w2_a = rmat(&g, 3, 48, 0.5f);
	h.hada_w2_b = rmat(&g, 3, 32, 0.5f);
	h.hada_t2 = rmat(&g, 9, 9, 0.5f);
	check_vs_module_delta(&h, 9);
	module_free(&h);

	lokr_module p = make_loha(&g, 30, 20, 3, 2.0f);
	check_vs_module_delta(&p, 1);
	module_free(&p);
}

static void test_describe(void **state)
{
	(void)state;
	rng g = {8};
	lokr_module m = make_lokr(&g, 320, 4, 4, 320, 0, 0, 1.0f);
	char buf[512];
	assert_int_equal(lokr_plan_describe(&m, buf, sizeof buf), LOKR_EINVAL); /* no plan yet */
	plan_ok(&m);
	assert_int_equal(lokr_plan_describe(&m, buf, sizeof buf), LOKR_OK);
	assert_non_null(strstr(buf, "order A"));
	assert_non_null(strstr(buf, "10240 MACs/row"));
	assert_non_null(strstr(buf, "1638400"));
	assert_non_null(strstr(buf, "merge-and-cache"));
	/* the threshold: building W' costs out*in + 8 out*in, each row saves 10240 */
	assert_true(m.plan->merge_rows == (int64_t)ceil(9.0 * 1638400.0 / 10241.0));
	/* truncation stays NUL-terminated */
	char tiny[10];
	assert_int_equal(lokr_plan_describe(&m, tiny, sizeof tiny), LOKR_OK);
	assert_int_equal(strlen(tiny), 9);
	module_free(&m);

	lokr_module k = make_lokr(&g, 4, 4, 320, 320, 0, 8, 1.0f);
	plan_ok(&k);
	assert_int_equal(lokr_plan_describe(&k, buf, sizeof buf), LOKR_OK);
	assert_non_null(strstr(buf, "factors kept"));
	module_free(&k);
}

static void test_bad_shapes(void **state)
{
	(void)state;
	rng g = {9};
	lokr_module m = make_lokr(&g, 4, 4, 5, 5, 0, 0, 1.0f);
	lokr_layer l = layer_for(20, 21); /* in does not match */
	lokr_error err = {0};
	assert_int_equal(lokr__plan_module(&l, &m, &err), LOKR_EADAPTER);
	assert_non_null(strstr(err.msg, "lycoris_test_lokr"));
	assert_null(m.plan);
	m.w2.cols = 6; /* W2 stored shape disagrees with n2 */
	l = layer_for(20, 20);
	assert_int_equal(lokr__plan_module(&l, &m, &err), LOKR_EADAPTER);
	m.w2.cols = 5;
	module_free(&m);

	lokr_module a = make_lora(&g, 10, 12, 3, 1.0f);
	a.down.cols = 11;
	l = layer_for(10, 12);
	assert_int_equal(lokr__plan_module(&l, &a, &err), LOKR_EADAPTER);
	module_free(&a);
}

static void test_alloc_failure(void **state)
{
	(void)state;
	rng g = {10};
	lokr_module m = make_loha(&g, 64, 64, 4, 1.0f);
	lokr_layer l = layer_for(64, 64);
	for (long k = 0; k < 3; k++) {
		lokr__alloc_fail_after(k);
		int rc = lokr__plan_module(&l, &m, NULL);
		lokr__alloc_fail_after(-1);
		if (rc == LOKR_OK)
			break;
		assert_int_equal(rc, LOKR_ENOMEM);
		assert_null(m.plan);
	}
	plan_ok(&m);
	module_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_order_unbalanced),    cmocka_unit_test(test_lowrank_w2_kept),
	    cmocka_unit_test(test_lowrank_w2_expanded), cmocka_unit_test(test_w1_lowrank),
	    cmocka_unit_test(test_force_order),         cmocka_unit_test(test_lora_loha),
	    cmocka_unit_test(test_vs_module_delta),     cmocka_unit_test(test_describe),
	    cmocka_unit_test(test_bad_shapes),          cmocka_unit_test(test_alloc_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for lib/delta.c: s * dW of every LoKr, LoHa and LoRA/LoCon
 * variant against independent references written here in double: the
 * Kronecker product by its index definition, Tucker rebuilds as direct
 * triple sums, low-rank products as naive loops.  Modules are filled by hand
 * the way the adapter loader fills them (lokr.h field comments).
 * Error measure: rel = max|got - exp| / max|exp|.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"

#define TESTUTIL_SEED 0x9e3779b97f4a7c15ull
#include "testutil.h"

/* ------------------------------------------------------------- helpers */

/* Naive C = A B, A (n x r), B (r x p), in double. */
static double *ref_matmul(const lokr_mat *a, const lokr_mat *b)
{
	assert_int_equal(a->cols, b->rows);
	double *c = calloc((size_t)(a->rows * b->cols), sizeof(double));
	assert_non_null(c);
	for (int64_t i = 0; i < a->rows; i++)
		for (int64_t k = 0; k < a->cols; k++)
			for (int64_t j = 0; j < b->cols; j++)
				c[i * b->cols + j] +=
				    (double)a->data[i * a->cols + k] * b->data[k * b->cols + j];
	return c;
}

/* Tucker rebuild by definition: R[p, q*kk + k] = sum_{a,b} t[a,b,k] wa[a,p] wb[b,q],
 * t (r*r x kk), wa (r x P), wb (r x Q). */
static double *ref_tucker(const lokr_mat *t, const lokr_mat *wa, const lokr_mat *wb, int64_t kk)
{
	int64_t r = wa->rows, P = wa->cols, Q = wb->cols;
	double *R = calloc((size_t)(P * Q * kk), sizeof(double));
	assert_non_null(R);
	for (int64_t p = 0; p < P; p++)
		for (int64_t q = 0; q < Q; q++)
			for (int64_t k = 0; k < kk; k++) {
				double acc = 0;
				for (int64_t a = 0; a < r; a++)
					for (int64_t b = 0; b < r; b++)
						acc += (double)t->data[(a * r + b) * kk + k] *
						       wa->data[a * P + p] * wb->data[b * Q + q];
				R[(p * Q + q) * kk + k] = acc;
			}
	return R;
}

static double *mat_to_double(const lokr_mat *x)
{
	double *d = malloc((size_t)(x->rows * x->cols) * sizeof(double));
	assert_non_null(d);
	for (int64_t e = 0; e < x->rows * x->cols; e++)
		d[e] = x->data[e];
	return d;
}

/* Reference s * dW of a LoKr module: factors by definition, then
 * dW[i*m2 + j, k*(n2*kk) + t] = s W1[i,k] W2flat[j,t] element by element. */
static double *ref_lokr(const lokr_module *m)
{
	double *w1 = m->w1.data ? mat_to_double(&m->w1) : ref_matmul(&m->w1_a, &m->w1_b);
	double *w2;
	if (m->w2.data)
		w2 = mat_to_double(&m->w2);
	else if (m->t2.data)
		w2 = ref_tucker(&m->t2, &m->w2_a, &m->w2_b, m->kk);
	else
		w2 = ref_matmul(&m->w2_a, &m->w2_b);
	int64_t out = m->out, cols = m->in * m->kk, n2kk = m->n2 * m->kk;
	double *d = malloc((size_t)(out * cols) * sizeof(double));
	assert_non_null(d);
	for (int64_t o = 0; o < out; o++)
		for (int64_t e = 0; e < cols; e++) {
			int64_t i = o / m->m2, j = o % m->m2, k = e / n2kk, t = e % n2kk;
			d[o * cols + e] = (double)m->scale * w1[i * m->n1 + k] * w2[j * n2kk + t];
		}
	free(w1);
	free(w2);
	return d;
}

static const char *algo_label(lokr_algo a)
{
	return a == LOKR_ALGO_LOKR ? "lokr" : a == LOKR_ALGO_LOHA ? "loha" : "lora";
}

static void check_delta(lokr_module *m, double *exp, double bound)
{
	size_t n = (size_t)(m->out * m->in * m->kk);
	float *got = malloc(n * sizeof(float));
	assert_non_null(got);
	for (size_t e = 0; e < n; e++)
		got[e] = NAN; /* every element must be written */
	assert_int_equal(lokr_module_delta(m, got), LOKR_OK);
	double rel = rel_err(got, exp, n);
	if (!(rel <= bound))
		fail_msg("%s %lldx%lldx%lld: rel %g > %g", algo_label(m->algo), (long long)m->out,
		         (long long)m->in, (long long)m->kk, rel, bound);
	free(got);
	free(exp);
}

static void lokr_case(int64_t m1, int64_t n1, int64_t m2, int64_t n2, int64_t kk, int64_t w1r,
                      int64_t w2r, int tucker, double bound)
{
	lokr_module m;
	make_lokr(&m, m1, n1, m2, n2, kk, w1r, w2r, tucker, 0.75f);
	check_delta(&m, ref_lokr(&m), bound);
	module_free(&m);
}

/* --------------------------------------------------------------- LoKr */

static void test_lokr_4x4_kron_320x320_lowrank(void **state)
{
	(void)state;
	lokr_case(4, 4, 320, 320, 1, 0, 8, 0, 1e-5);
}

static void test_lokr_320x4_kron_4x320_full(void **state)
{
	(void)state;
	lokr_case(320, 4, 4, 320, 1, 0, 0, 0, 1e-6);
}

static void test_lokr_40x4_kron_4x48(void **state)
{
	(void)state;
	lokr_case(40, 4, 4, 48, 1, 0, 0, 0, 1e-6);
}

static void test_lokr_w1_lowrank_w2_full(void **state)
{
	(void)state;
	/* lokr_unbalanced_decompose_both's mid.odd: w1_a (25,8), w1_b (8,4), w2 (4,15) */
	lokr_case(25, 4, 4, 15, 1, 8, 0, 0, 1e-5);
}

static void test_lokr_both_lowrank_conv(void **state)
{
	(void)state;
	/* conv 48x32x3x3, w2_b 2-D (r, n2*kk) */
	lokr_case(6, 4, 8, 8, 9, 3, 3, 0, 1e-5);
}

static void test_lokr_tucker_3x3(void **state)
{
	(void)state;
	/* lokr_tucker: t2 (3,3,3,3), w2_a (3,8), w2_b (3,8), W1 (6,4) */
	lokr_case(6, 4, 8, 8, 9, 0, 3, 1, 1e-5);
	/* non-square, W1 low-rank too */
	lokr_case(5, 3, 7, 4, 9, 2, 4, 1, 1e-5);
}

static void test_lokr_full_conv(void **state)
{
	(void)state;
	lokr_case(4, 2, 12, 16, 9, 0, 0, 0, 1e-6);
	lokr_case(4, 4, 8, 8, 1, 0, 0, 0, 1e-6); /* 1x1 conv */
}

static void test_lokr_w1_larger_than_w2(void **state)
{
	(void)state;
	/* peft-style factor > sqrt(dim): W1 (64, 64), W2 (5, 5) */
	lokr_case(64, 64, 5, 5, 1, 0, 0, 0, 1e-6);
	lokr_case(64, 64, 5, 5, 1, 6, 2, 0, 1e-5);
}

static void test_lokr_prime(void **state)
{
	(void)state;
	/* up.prime 127x128: W1 (127,4), W2 (1,32) */
	lokr_case(127, 4, 1, 32, 1, 0, 0, 0, 1e-6);
}

static void test_lokr_factors_direct(void **state)
{
	(void)state;
	lokr_module m;
	make_lokr(&m, 3, 2, 5, 4, 9, 2, 3, 1, 1.0f);
	float w1[6], w2[5 * 36];
	assert_int_equal(lokr__lokr_factors(&m, w1, w2), LOKR_OK);
	double *e1 = ref_matmul(&m.w1_a, &m.w1_b);
	double *e2 = ref_tucker(&m.t2, &m.w2_a, &m.w2_b, 9);
	assert_true(rel_err(w1, e1, 6) <= 1e-6);
	assert_true(rel_err(w2, e2, 5 * 36) <= 1e-6);
	/* either output may be skipped */
	assert_int_equal(lokr__lokr_factors(&m, NULL, w2), LOKR_OK);
	assert_int_equal(lokr__lokr_factors(&m, w1, NULL), LOKR_OK);
	free(e1);
	free(e2);
	module_free(&m);
}

static void test_lokr_bad_shapes(void **state)
{
	(void)state;
	lokr_module m;
	float dst[16 * 16];
	make_lokr(&m, 4, 4, 4, 4, 1, 0, 0, 0, 1.0f);
	assert_int_equal(lokr_module_delta(&m, dst), LOKR_OK);
	m.out = 15; /* m1*m2 != out */
	assert_int_equal(lokr_module_delta(&m, dst), LOKR_EINVAL);
	m.out = 16;
	m.w2.cols = 5; /* W2 does not match n2*kk */
	assert_int_equal(lokr_module_delta(&m, dst), LOKR_EINVAL);
	m.w2.cols = 4;
	float *w1 = m.w1.data;
	m.w1.data = NULL; /* neither w1 nor w1_a/w1_b */
	assert_int_equal(lokr_module_delta(&m, dst), LOKR_EINVAL);
	m.w1.data = w1;
	m.kk = 0;
	assert_int_equal(lokr_module_delta(&m, dst), LOKR_EINVAL);
	m.kk = 1;
	assert_int_equal(lokr_module_delta(NULL, dst), LOKR_EINVAL);
	assert_int_equal(lokr_module_delta(&m, NULL), LOKR_EINVAL);
	m.algo = (lokr_algo)42;
	assert_int_equal(lokr_module_delta(&m, dst), LOKR_EINVAL);
	module_free(&m);

	make_lokr(&m, 2, 2, 4, 4, 9, 0, 2, 1, 1.0f);
	float big[8 * 8 * 9];
	assert_int_equal(lokr_module_delta(&m, big), LOKR_OK);
	m.t2.rows = 3; /* core is not r*r */
	assert_int_equal(lokr_module_delta(&m, big), LOKR_EINVAL);
	module_free(&m);
}

static void test_lokr_enomem(void **state)
{
	(void)state;
	lokr_module m;
	make_lokr(&m, 2, 2, 4, 4, 9, 0, 2, 1, 1.0f);
	float dst[8 * 8 * 9];
	for (long k = 0; k < 3; k++) {
		lokr__alloc_fail_after(k);
		int rc = lokr_module_delta(&m, dst);
		lokr__alloc_fail_after(-1);
		assert_int_equal(rc, LOKR_ENOMEM);
	}
	lokr__alloc_fail_after(3);
	assert_int_equal(lokr_module_delta(&m, dst), LOKR_OK);
	lokr__alloc_fail_after(-1);
	module_free(&m);
}

/* --------------------------------------------------------------- LoHa */

static double *ref_loha(const lokr_module *m)
{
	double *r1, *r2;
	if (m->hada_t1.data) {
		r1 = ref_tucker(&m->hada_t1, &m->hada_w1_a, &m->hada_w1_b, m->kk);
		r2 = ref_tucker(&m->hada_t2, &m->hada_w2_a, &m->hada_w2_b, m->kk);
	} else {
		r1 = ref_matmul(&m->hada_w1_a, &m->hada_w1_b);
		r2 = ref_matmul(&m->hada_w2_a, &m->hada_w2_b);
	}
	size_t n = (size_t)(m->out * m->in * m->kk);
	for (size_t e = 0; e < n; e++)
		r1[e] = (double)m->scale * r1[e] * r2[e];
	free(r2);
	return r1;
}

static void test_loha_plain(void **state)
{
	(void)state;
	lokr_module m;
	make_loha(&m, 160, 192, 1, 4, 4, 0, 0.5f);
	check_delta(&m, ref_loha(&m), 1e-5);
	module_free(&m);
	/* conv, ranks differing between the two terms, many row blocks */
	make_loha(&m, 48, 32, 9, 4, 3, 0, 1.25f);
	check_delta(&m, ref_loha(&m), 1e-5);
	module_free(&m);
	make_loha(&m, 700, 3, 1, 2, 2, 0, 1.0f);
	check_delta(&m, ref_loha(&m), 1e-5);
	module_free(&m);
}

static void test_loha_tucker(void **state)
{
	(void)state;
	lokr_module m;
	/* loha_tucker: hada_w1_a (3,48), hada_w1_b (3,32), hada_t1 (3,3,3,3) */
	make_loha(&m, 48, 32, 9, 3, 3, 1, 0.75f);
	check_delta(&m, ref_loha(&m), 1e-5);
	module_free(&m);
	make_loha(&m, 20, 12, 6, 2, 4, 1, 2.0f);
	check_delta(&m, ref_loha(&m), 1e-5);
	module_free(&m);
	/* several row blocks (the Tucker w_a is read transposed, offset by block) */
	make_loha(&m, 300, 40, 9, 3, 2, 1, 1.0f);
	check_delta(&m, ref_loha(&m), 1e-5);
	module_free(&m);
}

static void test_loha_bad_shapes(void **state)
{
	(void)state;
	lokr_module m;
	make_loha(&m, 8, 6, 1, 2, 2, 0, 1.0f);
	float dst[48];
	assert_int_equal(lokr_module_delta(&m, dst), LOKR_OK);
	m.hada_w2_b.cols = 5;
	assert_int_equal(lokr_module_delta(&m, dst), LOKR_EINVAL);
	module_free(&m);
	make_loha(&m, 8, 6, 9, 2, 2, 1, 1.0f);
	float dst9[8 * 6 * 9];
	assert_int_equal(lokr_module_delta(&m, dst9), LOKR_OK);
	free(m.hada_t2.data); /* only one of the two terms Tucker */
	m.hada_t2.data = NULL;
	assert_int_equal(lokr_module_delta(&m, dst9), LOKR_EINVAL);
	module_free(&m);
}

/* --------------------------------------------------------------- LoRA */

static double *ref_lora(const lokr_module *m)
{
	int64_t out = m->out, in = m->in, kk = m->kk, r = m->up.cols, cols = in * kk;
	double *d = calloc((size_t)(out * cols), sizeof(double));
	assert_non_null(d);
	for (int64_t o = 0; o < out; o++)
		for (int64_t c = 0; c < in; c++)
			for (int64_t k = 0; k < kk; k++) {
				double acc = 0;
				if (m->mid.data) {
					for (int64_t a = 0; a < r; a++)
						for (int64_t b = 0; b < r; b++)
							acc += (double)m->up.data[o * r + a] *
							       m->mid.data[(a * r + b) * kk + k] *
							       m->down.data[b * in + c];
				} else {
					for (int64_t a = 0; a < r; a++)
						acc += (double)m->up.data[o * r + a] *
						       m->down.data[a * cols + c * kk + k];
				}
				d[o * cols + c * kk + k] = (double)m->scale * acc;
			}
	return d;
}

static void test_lora_plain(void **state)
{
	(void)state;
	lokr_module m;
	make_lora(&m, 96, 80, 1, 8, 0, 0.5f);
	check_delta(&m, ref_lora(&m), 1e-5);
	module_free(&m);
	make_lora(&m, 48, 32, 9, 4, 0, 2.0f); /* LoCon conv */
	check_delta(&m, ref_lora(&m), 1e-5);
	module_free(&m);
}

static void test_lora_tucker(void **state)
{
	(void)state;
	lokr_module m;
	make_lora(&m, 48, 32, 9, 4, 1, 0.75f);
	check_delta(&m, ref_lora(&m), 1e-5);
	module_free(&m);
}

static void test_lora_bad_shapes(void **state)
{
	(void)state;
	lokr_module m;
	make_lora(&m, 8, 6, 9, 2, 1, 1.0f);
	float dst[8 * 6 * 9];
	assert_int_equal(lokr_module_delta(&m, dst), LOKR_OK);
	m.down.cols = 54; /* with a mid, down is (r x in) */
	assert_int_equal(lokr_module_delta(&m, dst), LOKR_EINVAL);
	m.down.cols = 6;
	m.up.rows = 7;
	assert_int_equal(lokr_module_delta(&m, dst), LOKR_EINVAL);
	module_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lokr_4x4_kron_320x320_lowrank),
	    cmocka_unit_test(test_lokr_320x4_kron_4x320_full),
	    cmocka_unit_test(test_lokr_40x4_kron_4x48),
	    cmocka_unit_test(test_lokr_w1_lowrank_w2_full),
	    cmocka_unit_test(test_lokr_both_lowrank_conv),
	    cmocka_unit_test(test_lokr_tucker_3x3),
	    cmocka_unit_test(test_lokr_full_conv),
	    cmocka_unit_test(test_lokr_w1_larger_than_w2),
	    cmocka_unit_test(test_lokr_prime),
	    cmocka_unit_test(test_lokr_factors_direct),
	    cmocka_unit_test(test_lokr_bad_shapes),
	    cmocka_unit_test(test_lokr_enomem),
	    cmocka_unit_test(test_loha_plain),
	    cmocka_unit_test(test_loha_tucker),
	    cmocka_unit_test(test_loha_bad_shapes),
	    cmocka_unit_test(test_lora_plain),
	    cmocka_unit_test(test_lora_tucker),
	    cmocka_unit_test(test_lora_bad_shapes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

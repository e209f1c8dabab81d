/* Unit tests for lib/kron.c: the BLAS helpers and the factored Kronecker
 * apply against a double-precision reference built from the definition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include "speed_util.h"

#define TOL 1e-5

/* naive C = alpha A op(B) + beta C in double, then compare */
static void check_mm(int nt, int64_t M, int64_t N, int64_t K, float alpha, float beta)
{
	rng r = {0x1234567ull + (uint64_t)(M * 131 + N * 17 + K)};
	float *A = rnd(&r, M * K, 1.0f);
	float *B = rnd(&r, N * K, 1.0f); /* N x K for nt, K x N for nn */
	float *C = rnd(&r, M * N, 1.0f);
	double *ref = calloc((size_t)(M * N > 0 ? M * N : 1), sizeof *ref);
	for (int64_t i = 0; i < M; i++)
		for (int64_t j = 0; j < N; j++) {
			double s = 0.0;
			for (int64_t k = 0; k < K; k++)
				s += (double)A[i * K + k] *
				     (nt ? (double)B[j * K + k] : (double)B[k * N + j]);
			ref[i * N + j] =
			    alpha * s + (beta == 0.0f ? 0.0 : beta * (double)C[i * N + j]);
		}
	if (beta == 0.0f) /* garbage that must not survive beta = 0 */
		for (int64_t i = 0; i < M * N; i++)
			C[i] = NAN;
	if (nt)
		lokr__mm_nt(M, N, K, alpha, A, K, B, K, beta, C, N);
	else
		lokr__mm_nn(M, N, K, alpha, A, K, B, N, beta, C, N);
	double e = rel_err(C, ref, M * N);
	if (e > TOL)
		fail_msg("mm_%s %lldx%lldx%lld alpha %g beta %g: rel err %g", nt ? "nt" : "nn",
		         (long long)M, (long long)N, (long long)K, alpha, beta, e);
	free(A);
	free(B);
	free(C);
	free(ref);
}

static void test_mm_helpers(void **state)
{
	(void)state;
	/* every route of the helpers: sgemv rows (M == 1, and few rows against
	 * a big B), sgemv columns (N == 1), the narrow kernel (N <= 4, K <= 256,
	 * and past it), K = 0, sgemm */
	const int64_t dims[][3] = {{1, 37, 19},   {23, 1, 19},  {1, 1, 5},     {7, 9, 11},
	                           {64, 40, 40},  {3, 5, 0},    {1, 300, 320}, {2, 50, 70},
	                           {5, 301, 333}, {8, 64, 129}, {6, 1000, 50}, {9, 7, 3},
	                           {40, 4, 4},    {5, 3, 200},  {2, 1, 7},     {7, 4, 300},
	                           {9, 4, 30},    {5, 2, 9},    {10, 8, 30},   {3, 8, 500}};
	for (int nt = 0; nt < 2; nt++)
		for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
			check_mm(nt, dims[i][0], dims[i][1], dims[i][2], 1.0f, 0.0f);
			check_mm(nt, dims[i][0], dims[i][1], dims[i][2], -0.75f, 1.0f);
		}
}

/* Factored apply vs x (W1 (x) W2)^T by the definition, for every order,
 * every W1 step, dense and low-rank W2, beta 0 and 1. */
static void check_kron(int64_t m1, int64_t n1, int64_t m2, int64_t n2, int64_t r, int64_t rows)
{
	rng g = {0xabcdefull ^ (uint64_t)(m1 * 1000003 + n1 * 1009 + m2 * 31 + n2 + r * 7 + rows)};
	lokr_module m = make_lokr(&g, m1, n1, m2, n2, 0, r, 1.0f);
	lokr_kron_factors f0 = {m1,          n1,          m2, n2,   m.w1.data, m.w2.data,
	                        m.w2_a.data, m.w2_b.data, r,  NULL, NULL,      NULL};
	/* the same factors with the plan's transposed copies */
	lokr_kron_factors f1 = f0;
	float *t2 = m.w2.data ? calloc((size_t)(m2 * n2), sizeof(float)) : NULL;
	float *ta = r ? calloc((size_t)(r * m2), sizeof(float)) : NULL;
	float *tb = r ? calloc((size_t)(r * n2), sizeof(float)) : NULL;
	for (int64_t i = 0; t2 && i < m2; i++)
		for (int64_t j = 0; j < n2; j++)
			t2[j * m2 + i] = m.w2.data[i * n2 + j];
	for (int64_t i = 0; ta && i < m2; i++)
		for (int64_t j = 0; j < r; j++)
			ta[j * m2 + i] = m.w2_a.data[i * r + j];
	for (int64_t i = 0; tb && i < r; i++)
		for (int64_t j = 0; j < n2; j++)
			tb[j * r + i] = m.w2_b.data[i * n2 + j];
	f1.w2t = t2, f1.w2at = ta, f1.w2bt = tb;
	const int64_t out = m1 * m2, in = n1 * n2;
	double *d = ref_delta(&m);
	float *x = rnd(&g, rows * in, 1.0f);
	float *y0 = rnd(&g, rows * out, 1.0f);
	float *y = calloc((size_t)(rows * out), sizeof *y);
	double *ref = calloc((size_t)(rows * out), sizeof *ref);
	const float alpha = 0.625f;
	for (int beta = 0; beta < 2; beta++) {
		for (int64_t n = 0; n < rows; n++)
			for (int64_t o = 0; o < out; o++) {
				double s = 0.0;
				for (int64_t c = 0; c < in; c++)
					s += (double)x[n * in + c] * d[o * in + c];
				ref[n * out + o] =
				    alpha * s + (beta ? (double)y0[n * out + o] : 0.0);
			}
		for (int variant = 0; variant < 6; variant++)
			for (int step = 0; step < 3; step++) {
				const lokr_kron_factors f = variant & 1 ? f1 : f0;
				const int order = variant >> 1;
				if (order == LOKR_KRON_S && f.w2)
					continue;
				size_t ns = lokr__kron_scratch(&f, (lokr_kron_order)order,
				                               (lokr_kron_w1step)step, rows);
				float *ws = calloc(ns + 1, sizeof *ws);
				for (int64_t i = 0; i < rows * out; i++)
					y[i] = beta ? y0[i] : NAN;
				lokr__kron_apply(&f, (lokr_kron_order)order, (lokr_kron_w1step)step,
				                 rows, x, alpha, (float)beta, y, ws);
				double e = rel_err(y, ref, rows * out);
				if (e > TOL)
					fail_msg("kron %lldx%lld (x) %lldx%lld r %lld rows %lld "
					         "order %c "
					         "step %d beta %d: rel err %g",
					         (long long)m1, (long long)n1, (long long)m2,
					         (long long)n2, (long long)r, (long long)rows,
					         "ABS"[order], step, beta, e);
				free(ws);
			}
	}
	free(d);
	free(x);
	free(y0);
	free(y);
	free(ref);
	free(t2);
	free(ta);
	free(tb);
	module_free(&m);
}

static void test_kron_shapes(void **state)
{
	(void)state;
	const int64_t shapes[][5] = {
	    /* m1, n1, m2, n2, r (0 = dense W2) */
	    {4, 4, 320, 320, 0},  {4, 4, 320, 320, 8}, {320, 4, 4, 320, 0}, {4, 320, 320, 4, 0},
	    {40, 4, 4, 48, 0},    {40, 4, 4, 48, 2},   {3, 2, 4, 5, 0},     {2, 3, 5, 4, 3},
	    {1, 1, 7, 9, 0},      {6, 5, 1, 1, 0},     {16, 16, 20, 20, 8}, {127, 1, 1, 32, 0},
	    {32, 24, 40, 32, 16},
	};
	const int64_t rows[] = {1, 2, 7, 9};
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
		for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
			/* the 1280x1280 shapes only at two batch sizes: the reference is slow */
			if (shapes[i][0] * shapes[i][2] > 1000 && (rows[k] == 2 || rows[k] == 9))
				continue;
			check_kron(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3],
			           shapes[i][4], rows[k]);
		}
}

/* random shapes */
static void test_kron_random(void **state)
{
	(void)state;
	rng g = {42};
	for (int t = 0; t < 40; t++) {
		int64_t m1 = 1 + (int64_t)((rng_f(&g) + 1.0f) * 6.0f);
		int64_t n1 = 1 + (int64_t)((rng_f(&g) + 1.0f) * 6.0f);
		int64_t m2 = 1 + (int64_t)((rng_f(&g) + 1.0f) * 10.0f);
		int64_t n2 = 1 + (int64_t)((rng_f(&g) + 1.0f) * 10.0f);
		int64_t r = (t & 1) ? 1 + (int64_t)((rng_f(&g) + 1.0f) * 2.0f) : 0;
		int64_t rows = 1 + (int64_t)((rng_f(&g) + 1.0f) * 5.0f);
		check_kron(m1, n1, m2, n2, r, rows);
	}
}

/* kron_dense is the definition: spot-check indices by hand */
static void test_kron_dense_indices(void **state)
{
	(void)state;
	const float w1[] = {1, 2, 3, 4, 5, 6}; /* 2 x 3 */
	const float w2[] = {1, 10, 100, 1000}; /* 2 x 2 */
	lokr_kron_factors f = {2, 3, 2, 2, w1, w2, NULL, NULL, 0, NULL, NULL, NULL};
	float d[4 * 6];
	lokr__kron_dense(&f, d);
	/* dW[i*m2 + j, k*n2 + l] = W1[i,k] W2[j,l] */
	assert_true(d[(1 * 2 + 1) * 6 + 2 * 2 + 0] == 6.0f * 100.0f);
	assert_true(d[(0 * 2 + 0) * 6 + 1 * 2 + 1] == 2.0f * 10.0f);
	assert_true(d[(1 * 2 + 0) * 6 + 0 * 2 + 1] == 4.0f * 10.0f);
}

static void test_kron_macs(void **state)
{
	(void)state;
	/* lycoris-format.md 4.2 table: 1280x1280 unbalanced factor 4 */
	lokr_kron_factors f = {
	    320, 4, 4, 320, (const float *)&f, (const float *)&f, NULL, NULL, 0, NULL, NULL, NULL};
	assert_true(lokr__kron_macs(&f, LOKR_KRON_A) == 10240.0);
	assert_true(lokr__kron_macs(&f, LOKR_KRON_B) == 819200.0);
	lokr_kron_factors b = {
	    32, 32, 40, 40, (const float *)&f, (const float *)&f, NULL, NULL, 0, NULL, NULL, NULL};
	assert_true(lokr__kron_macs(&b, LOKR_KRON_A) == 92160.0);
	assert_true(lokr__kron_macs(&b, LOKR_KRON_B) == 92160.0);
	/* low-rank W2 kept: n1 r (n2 + m2) + m1 n1 m2 */
	lokr_kron_factors l = {
	    4, 4,    320,  320, (const float *)&f, NULL, (const float *)&f, (const float *)&f,
	    8, NULL, NULL, NULL};
	assert_true(lokr__kron_macs(&l, LOKR_KRON_A) == 4.0 * 8 * 640 + 4.0 * 4 * 320);
	/* the sandwich: r (n1 n2 + m1 n1 + m1 m2) */
	assert_true(lokr__kron_macs(&l, LOKR_KRON_S) == 8.0 * (1280 + 16 + 1280));
	assert_true(lokr__kron_macs(&f, LOKR_KRON_S) == HUGE_VAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mm_helpers),  cmocka_unit_test(test_kron_dense_indices),
	    cmocka_unit_test(test_kron_macs),   cmocka_unit_test(test_kron_shapes),
	    cmocka_unit_test(test_kron_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

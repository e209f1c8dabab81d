/*
 * Unit tests for lib/extract.c: the nearest Kronecker product.
 *
 * Oracles: an exact Kronecker product must come back exactly (both solver
 * paths, linear and conv, balanced and unbalanced); an exact product with a
 * rank-r W2 (and W1) must come back with --rank r; for a random dW the
 * error must equal what a full SVD of the rearranged matrix (LAPACK
 * dgesvd, computed here independently) predicts, sqrt(sum_{i>=2} s_i^2)/|R|;
 * and the factors written as a LyCORIS file must load and merge back to
 * within the reported error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <lapacke.h>

#include "internal.h"

static uint64_t rng_state;

static double urand(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (double)(z >> 11) / 9007199254740992.0;
}

static float nrand(void)
{
	double u = urand() + 1e-12, v = urand();
	return (float)(sqrt(-2 * log(u)) * cos(2 * M_PI * v));
}

static float *randm(int64_t n)
{
	float *m = malloc((size_t)n * sizeof *m);
	assert_non_null(m);
	for (int64_t i = 0; i < n; i++)
		m[i] = nrand();
	return m;
}

/* dw (m1*m2 x n1*c) = kron(a (m1 x n1), b (m2 x c)) */
static float *kron(const float *a, int64_t m1, int64_t n1, const float *b, int64_t m2, int64_t c)
{
	float *d = malloc((size_t)(m1 * m2 * n1 * c) * sizeof *d);
	assert_non_null(d);
	for (int64_t i = 0; i < m1; i++)
		for (int64_t j = 0; j < m2; j++)
			for (int64_t k = 0; k < n1; k++)
				for (int64_t t = 0; t < c; t++)
					d[(i * m2 + j) * (n1 * c) + k * c + t] =
					    a[i * n1 + k] * b[j * c + t];
	return d;
}

/* (rows x r)(r x cols) */
static float *lowrank(int64_t rows, int64_t cols, int64_t r)
{
	float *a = randm(rows * r), *b = randm(r * cols);
	float *m = malloc((size_t)(rows * cols) * sizeof *m);
	assert_non_null(m);
	for (int64_t x = 0; x < rows; x++)
		for (int64_t y = 0; y < cols; y++) {
			double s = 0;
			for (int64_t l = 0; l < r; l++)
				s += (double)a[x * r + l] * b[l * cols + y];
			m[x * cols + y] = (float)s;
		}
	free(a);
	free(b);
	return m;
}

/* The fit's reconstruction W1 (x) W2 (flat) from its float factors. */
static float *fit_dense(const lokr_kron_fit *f)
{
	int64_t c = f->split.n2 * f->kk;
	float *w1 = malloc((size_t)(f->split.m1 * f->split.n1) * sizeof *w1);
	float *w2 = malloc((size_t)(f->split.m2 * c) * sizeof *w2);
	assert_non_null(w1);
	assert_non_null(w2);
	const lokr_mat *src[2][3] = {{&f->w1, &f->w1_a, &f->w1_b}, {&f->w2, &f->w2_a, &f->w2_b}};
	float *dst[2] = {w1, w2};
	for (int s = 0; s < 2; s++) {
		if (src[s][0]->data) {
			memcpy(dst[s], src[s][0]->data,
			       (size_t)(src[s][0]->rows * src[s][0]->cols) * sizeof(float));
			continue;
		}
		const lokr_mat *a = src[s][1], *b = src[s][2];
		assert_int_equal(a->cols, b->rows);
		for (int64_t x = 0; x < a->rows; x++)
			for (int64_t y = 0; y < b->cols; y++) {
				double acc = 0;
				for (int64_t l = 0; l < a->cols; l++)
					acc += (double)a->data[x * a->cols + l] *
					       b->data[l * b->cols + y];
				dst[s][x * b->cols + y] = (float)acc;
			}
	}
	float *d = kron(w1, f->split.m1, f->split.n1, w2, f->split.m2, c);
	free(w1);
	free(w2);
	return d;
}

static double rel_diff(const float *a, const float *b, int64_t n)
{
	double num = 0, den = 0;
	for (int64_t i = 0; i < n; i++) {
		num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
		den += (double)b[i] * b[i];
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_split_matches_lycoris(void **state)
{
	(void)state;
	lokr_kron_split s;
	assert_int_equal(lokr_extract_split(1280, 1280, 4, 0, &s), 0);
	assert_true(s.m1 == 4 && s.n1 == 4 && s.m2 == 320 && s.n2 == 320);
	assert_int_equal(lokr_extract_split(1280, 1280, 4, 1, &s), 0);
	assert_true(s.m1 == 320 && s.n1 == 4 && s.m2 == 4 && s.n2 == 320);
	assert_int_equal(lokr_extract_split(1280, 1280, -1, 1, &s), 0);
	assert_true(s.m1 == 40 && s.n1 == 32 && s.m2 == 32 && s.n2 == 40);
	/* lycoris-format.md 3.5, OR lokr_unbalanced_factorization_f4 */
	assert_int_equal(lokr_extract_split(160, 192, 4, 1, &s), 0);
	assert_true(s.m1 == 40 && s.n1 == 4 && s.m2 == 4 && s.n2 == 48);
	assert_int_equal(lokr_extract_split(127, 128, 4, 1, &s), 0);
	assert_true(s.m1 == 127 && s.n1 == 4 && s.m2 == 1 && s.n2 == 32);
	assert_int_equal(lokr_extract_split(360, 360, 16, 0, &s), 0);
	assert_true(s.m1 == 15 && s.n1 == 15 && s.m2 == 24 && s.n2 == 24);
	assert_int_not_equal(lokr_extract_split(0, 4, 4, 0, &s), 0);
}

static void test_params_and_macs(void **state)
{
	(void)state;
	/* lycoris-format.md 4.2 table: cheapest order per split */
	struct {
		int64_t out, in, f;
		int unb;
		uint64_t macs;
		int order;
	} t[] = {
	    {1280, 1280, -1, 0, 92160, -1},
	    {1280, 1280, 4, 0, 414720, -1},
	    {1280, 1280, -1, 1, 81920, LOKR_ORDER_W2_FIRST},
	    {1280, 1280, 4, 1, 10240, LOKR_ORDER_W2_FIRST},
	    {5120, 1280, -1, 0, 266240, LOKR_ORDER_W2_FIRST},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		lokr_kron_split s;
		assert_int_equal(lokr_extract_split(t[i].out, t[i].in, t[i].f, t[i].unb, &s), 0);
		int order = -2;
		assert_int_equal(lokr_extract_macs(&s, 1, 0, &order), t[i].macs);
		if (t[i].order >= 0)
			assert_int_equal(order, t[i].order);
	}
	/* factor 4 balanced, W2 320x320 at rank 8: keeping W2 factored is
	 * cheaper; the sandwich r*(n1*n2 + m1*n1 + m1*m2) is the cheapest */
	lokr_kron_split s = {4, 4, 320, 320};
	int order;
	uint64_t m = lokr_extract_macs(&s, 1, 8, &order);
	assert_int_equal(order, LOKR_ORDER_SANDWICH);
	assert_int_equal(m, 8 * (4 * 320 + 4 * 4 + 4 * 320));
	assert_string_equal(lokr_extract_order_name(order), "sandwich");
	/* rank 170 stores more than the dense W2: dense again, A and B tie */
	m = lokr_extract_macs(&s, 1, 170, &order);
	assert_int_equal(order, LOKR_ORDER_W2_FIRST);
	assert_int_equal(m, 4 * 320 * (320 + 4));
	/* conv: n2 -> n2*kk */
	assert_int_equal(lokr_extract_params(&s, 9, 0, 0), 16 + 320 * 320 * 9);
	assert_int_equal(lokr_extract_params(&s, 9, 8, 0), 16 + 8 * (320 + 320 * 9));
	/* a rank that does not save parameters keeps W2 full */
	int a, b;
	lokr_kron_split small = {2, 2, 10, 10};
	assert_int_equal(lokr_extract_lowrank(&small, 1, 5, 1, &a, &b), 0);
	assert_int_equal(b, 0);
	assert_int_equal(a, 0);
	assert_int_equal(lokr_extract_lowrank(&small, 1, 4, 1, &a, &b), 0);
	assert_int_equal(b, 1);
	assert_int_equal(lokr_extract_params(&small, 1, 4, 1), 4 + 4 * 20);
}

/* An exact product comes back to float rounding, on both solver paths. */
static void check_exact(int64_t m1, int64_t n1, int64_t m2, int64_t n2, int64_t kk, int method)
{
	int64_t c = n2 * kk;
	float *w1 = randm(m1 * n1), *w2 = randm(m2 * c);
	float *dw = kron(w1, m1, n1, w2, m2, c);
	lokr_kron_split s = {m1, n1, m2, n2};
	lokr_extract_opts o = {.method = method};
	lokr_kron_fit f;
	lokr_error e;
	assert_int_equal(lokr_extract_kron(dw, m1 * m2, n1 * n2, kk, &s, &o, &f, &e), 0);
	assert_true(f.rel_err < 1e-6);
	assert_true(f.err_nkp < 1e-6);
	assert_int_equal(f.rank, 0);
	assert_non_null(f.w1.data);
	assert_non_null(f.w2.data);
	assert_int_equal(f.w2.cols, c);
	assert_int_equal(f.params, m1 * n1 + m2 * c);
	float *back = fit_dense(&f);
	double rd = rel_diff(back, dw, m1 * m2 * n1 * c);
	assert_true(rd < 1e-6);
	/* the reported error is the real one */
	assert_true(fabs(rd - f.rel_err) < 1e-7);
	/* the factors are W1, W2 up to a scalar: W1 is parallel to w1 */
	double dotp = 0, na = 0, nb = 0;
	for (int64_t i = 0; i < m1 * n1; i++) {
		dotp += (double)w1[i] * f.w1.data[i];
		na += (double)w1[i] * w1[i];
		nb += (double)f.w1.data[i] * f.w1.data[i];
	}
	assert_true(fabs(fabs(dotp) / sqrt(na * nb) - 1) < 1e-6);
	if (method == LOKR_EXTRACT_ITERATE)
		assert_true(f.sweeps >= 1);
	free(back);
	lokr_extract_fit_free(&f);
	free(w1);
	free(w2);
	free(dw);
}

static void test_exact_roundtrip(void **state)
{
	(void)state;
	rng_state = 1;
	for (int method = LOKR_EXTRACT_GRAM; method <= LOKR_EXTRACT_ITERATE; method++) {
		check_exact(4, 4, 16, 16, 1, method); /* balanced-ish linear */
		check_exact(16, 4, 4, 16, 1, method); /* unbalanced */
		check_exact(6, 4, 8, 8, 9, method);   /* conv 3x3 */
		check_exact(1, 1, 7, 5, 1, method);   /* W1 1x1: R has one row */
		check_exact(24, 10, 1, 1, 1, method); /* W2 1x1: R has one column */
		check_exact(3, 5, 7, 2, 3, method);   /* non-square, conv1d-like */
	}
	check_exact(8, 8, 40, 40, 1, LOKR_EXTRACT_AUTO);
}

/* A product with rank-r factors comes back with rank r. */
static void test_rank_limited_recovers(void **state)
{
	(void)state;
	rng_state = 2;
	int64_t m1 = 4, n1 = 4, m2 = 24, n2 = 20, kk = 1, r = 3;
	float *w1 = randm(m1 * n1), *w2 = lowrank(m2, n2 * kk, r);
	float *dw = kron(w1, m1, n1, w2, m2, n2 * kk);
	lokr_kron_split s = {m1, n1, m2, n2};
	lokr_extract_opts o = {.rank = r, .refine = -1};
	lokr_kron_fit f;
	lokr_error e;
	assert_int_equal(lokr_extract_kron(dw, m1 * m2, n1 * n2, kk, &s, &o, &f, &e), 0);
	assert_int_equal(f.rank, r);
	assert_true(f.w2_lowrank && !f.w1_lowrank);
	assert_null(f.w2.data);
	assert_int_equal(f.w2_a.rows, m2);
	assert_int_equal(f.w2_a.cols, r);
	assert_int_equal(f.w2_b.rows, r);
	assert_int_equal(f.w2_b.cols, n2 * kk);
	assert_int_equal(f.params, m1 * n1 + r * (m2 + n2 * kk));
	assert_true(f.rel_err < 1e-6);
	float *back = fit_dense(&f);
	assert_true(rel_diff(back, dw, m1 * m2 * n1 * n2 * kk) < 1e-6);
	free(back);
	lokr_extract_fit_free(&f);
	/* one rank too few cannot be exact */
	o.rank = r - 1;
	assert_int_equal(lokr_extract_kron(dw, m1 * m2, n1 * n2, kk, &s, &o, &f, &e), 0);
	assert_true(f.rel_err > 1e-3);
	lokr_extract_fit_free(&f);
	free(w1);
	free(w2);
	free(dw);

	/* both factors low-rank (unbalanced conv: W1 16 x 12, W2 3 x 10*9) */
	m1 = 16, n1 = 12, m2 = 3, n2 = 10, kk = 9, r = 2;
	w1 = lowrank(m1, n1, r);
	w2 = lowrank(m2, n2 * kk, r);
	dw = kron(w1, m1, n1, w2, m2, n2 * kk);
	s = (lokr_kron_split){m1, n1, m2, n2};
	o = (lokr_extract_opts){.rank = r, .decompose_both = 1, .refine = -1};
	assert_int_equal(lokr_extract_kron(dw, m1 * m2, n1 * n2, kk, &s, &o, &f, &e), 0);
	assert_true(f.w1_lowrank && f.w2_lowrank);
	assert_int_equal(f.w1_a.cols, r);
	assert_int_equal(f.w1_b.cols, n1);
	assert_true(f.rel_err < 1e-6);
	lokr_extract_fit_free(&f);
	free(w1);
	free(w2);
	free(dw);
}

/* Singular values of R = rearrange(dw) by LAPACK dgesvd, the oracle. */
static double *svd_of_rearranged(const float *dw, const lokr_kron_split *s, int64_t kk,
                                 double *fro2)
{
	int64_t c = s->n2 * kk, p = s->m1 * s->n1, q = s->m2 * c, cols = s->n1 * c;
	double *r = malloc((size_t)(p * q) * sizeof *r);
	double *sv = malloc((size_t)(p < q ? p : q) * sizeof *sv);
	double *superb = malloc((size_t)(p < q ? p : q) * sizeof *superb);
	assert_non_null(r);
	*fro2 = 0;
	for (int64_t i = 0; i < s->m1; i++)
		for (int64_t k = 0; k < s->n1; k++)
			for (int64_t j = 0; j < s->m2; j++)
				for (int64_t t = 0; t < c; t++) {
					double v = dw[(i * s->m2 + j) * cols + k * c + t];
					r[(i * s->n1 + k) * q + j * c + t] = v;
					*fro2 += v * v;
				}
	assert_int_equal(LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'N', 'N', (lapack_int)p, (lapack_int)q, r,
	                                (lapack_int)q, sv, NULL, 1, NULL, 1, superb),
	                 0);
	free(r);
	free(superb);
	return sv;
}

static void check_random(int64_t out, int64_t in, int64_t kk, int64_t factor, int unb)
{
	lokr_kron_split s;
	assert_int_equal(lokr_extract_split(out, in, factor, unb, &s), 0);
	float *dw = randm(out * in * kk);
	double fro2;
	double *sv = svd_of_rearranged(dw, &s, kk, &fro2);
	int64_t p = s.m1 * s.n1, q = s.m2 * s.n2 * kk, mn = p < q ? p : q;
	double tail = 0;
	for (int64_t i = 1; i < mn; i++)
		tail += sv[i] * sv[i];
	double predicted = sqrt(tail / fro2);
	lokr_kron_fit f[2];
	lokr_error e;
	for (int m = 0; m < 2; m++) {
		lokr_extract_opts o = {.method = m ? LOKR_EXTRACT_ITERATE : LOKR_EXTRACT_GRAM};
		assert_int_equal(lokr_extract_kron(dw, out, in, kk, &s, &o, &f[m], &e), 0);
		assert_true(fabs(f[m].sigma1 - sv[0]) <= 1e-6 * sv[0]);
		assert_true(fabs(f[m].rel_err - predicted) <= 1e-5 * predicted);
		assert_true(fabs(f[m].err_nkp - predicted) <= 1e-5 * predicted);
		assert_true(fabs(f[m].norm - sqrt(fro2)) <= 1e-9 * sqrt(fro2));
		/* the oracle itself: sqrt(1 - s1^2/|R|^2) */
		assert_true(fabs(sqrt(1 - sv[0] * sv[0] / fro2) - predicted) <= 1e-9);
	}
	/* both paths find the same factors */
	float *d0 = fit_dense(&f[0]), *d1 = fit_dense(&f[1]);
	assert_true(rel_diff(d1, d0, out * in * kk) < 1e-3);
	free(d0);
	free(d1);
	lokr_extract_fit_free(&f[0]);
	lokr_extract_fit_free(&f[1]);
	free(sv);
	free(dw);
}

static void test_random_matches_svd_theory(void **state)
{
	(void)state;
	rng_state = 3;
	check_random(64, 48, 1, -1, 0);
	check_random(64, 48, 1, 4, 1);
	check_random(32, 16, 9, 4, 0);
	check_random(40, 40, 1, 8, 1);
}

/* Truncation plus refinement: never worse than plain truncation, never
 * better than the full NKP, and the rank error is monotone in r. */
static void test_truncation_error_bounds(void **state)
{
	(void)state;
	rng_state = 4;
	int64_t m1 = 4, n1 = 4, m2 = 16, n2 = 24, kk = 1;
	/* a structured delta: a rank-6 Kronecker term plus noise */
	float *w1 = randm(m1 * n1), *w2 = lowrank(m2, n2, 6);
	float *dw = kron(w1, m1, n1, w2, m2, n2);
	float *noise = randm(m1 * m2 * n1 * n2);
	for (int64_t i = 0; i < m1 * m2 * n1 * n2; i++)
		dw[i] += 0.3f * noise[i];
	lokr_kron_split s = {m1, n1, m2, n2};
	lokr_kron_fit full, plain, ref;
	lokr_error e;
	assert_int_equal(lokr_extract_kron(dw, m1 * m2, n1 * n2, kk, &s, NULL, &full, &e), 0);
	double prev = 1e9;
	for (int64_t r = 1; r <= 5; r++) {
		lokr_extract_opts o0 = {.rank = r, .refine = 0};
		lokr_extract_opts o1 = {.rank = r, .refine = 20};
		assert_int_equal(lokr_extract_kron(dw, m1 * m2, n1 * n2, kk, &s, &o0, &plain, &e),
		                 0);
		assert_int_equal(lokr_extract_kron(dw, m1 * m2, n1 * n2, kk, &s, &o1, &ref, &e), 0);
		assert_true(ref.rel_err <= plain.rel_err + 1e-7);
		assert_true(ref.rel_err >= full.rel_err - 1e-7);
		assert_true(ref.rel_err <= prev + 1e-7);
		prev = ref.rel_err;
		lokr_extract_fit_free(&plain);
		lokr_extract_fit_free(&ref);
	}
	lokr_extract_fit_free(&full);
	free(w1);
	free(w2);
	free(noise);
	free(dw);
}

static void test_bad_input(void **state)
{
	(void)state;
	float dw[16] = {0};
	lokr_kron_split s = {2, 2, 2, 2};
	lokr_kron_fit f;
	lokr_error e = {0};
	/* zero delta: zero factors, zero error */
	assert_int_equal(lokr_extract_kron(dw, 4, 4, 1, &s, NULL, &f, &e), 0);
	assert_true(f.rel_err == 0 && f.norm == 0);
	lokr_extract_fit_free(&f);
	dw[5] = NAN;
	assert_int_equal(lokr_extract_kron(dw, 4, 4, 1, &s, NULL, &f, &e), LOKR_EINVAL);
	assert_non_null(strstr(e.msg, "non-finite"));
	assert_non_null(strstr(e.msg, "row 1, column 1"));
	dw[5] = INFINITY;
	assert_int_equal(lokr_extract_kron(dw, 4, 4, 1, &s, NULL, &f, &e), LOKR_EINVAL);
	dw[5] = 1;
	lokr_kron_split bad = {2, 2, 3, 2};
	assert_int_equal(lokr_extract_kron(dw, 4, 4, 1, &bad, NULL, &f, &e), LOKR_EINVAL);
	assert_non_null(strstr(e.msg, "does not multiply out"));
	lokr_extract_opts o = {.rank = -1};
	assert_int_equal(lokr_extract_kron(dw, 4, 4, 1, &s, &o, &f, &e), LOKR_EINVAL);
	assert_int_equal(lokr_extract_kron(NULL, 4, 4, 1, &s, NULL, &f, &e), LOKR_EINVAL);
	lokr_extract_fit_free(&f);
	lokr_extract_fit_free(NULL);
}

static void test_alloc_failures(void **state)
{
	(void)state;
	rng_state = 5;
	float *dw = randm(24 * 30 * 3);
	lokr_kron_split s = {4, 5, 6, 6};
	lokr_extract_opts o = {.rank = 2, .decompose_both = 1};
	int failed = 0, ok = 0;
	for (long n = 0; n < 60; n++) {
		lokr_kron_fit f;
		lokr__alloc_fail_after(n);
		int rc = lokr_extract_kron(dw, 24, 30, 3, &s, &o, &f, NULL);
		lokr__alloc_fail_after(-1);
		if (rc == LOKR_ENOMEM)
			failed++;
		else {
			assert_int_equal(rc, 0);
			ok++;
		}
		lokr_extract_fit_free(&f);
	}
	assert_true(failed > 5);
	assert_true(ok > 0);
	free(dw);
}

/* The factors as a LyCORIS file load and merge back to the fit. */
static void test_file_loads_and_merges(void **state)
{
	(void)state;
	rng_state = 6;
	char dir[] = "/tmp/lokr-extract-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char basep[256], adp[256];
	snprintf(basep, sizeof basep, "%s/base.safetensors", dir);
	snprintf(adp, sizeof adp, "%s/adapter.safetensors", dir);
	/* base: one linear 24x20 and one conv 12x8x3x3 */
	float *wl = randm(24 * 20), *wc = randm(12 * 8 * 9);
	lokr_st_spec bs[2] = {
	    {"lin.weight", "F32", 2, {24, 20}, wl},
	    {"net.conv.weight", "F32", 4, {12, 8, 3, 3}, wc},
	};
	lokr_error e = {0};
	assert_int_equal(lokr_st_write_file(basep, bs, 2, NULL, NULL, 0, &e), 0);
	float *dl = randm(24 * 20), *dc = randm(12 * 8 * 9);
	lokr_kron_split sl, sc;
	assert_int_equal(lokr_extract_split(24, 20, 4, 1, &sl), 0);
	assert_int_equal(lokr_extract_split(12, 8, -1, 0, &sc), 0);
	lokr_kron_fit fl, fc;
	lokr_extract_opts lo = {.rank = 1};
	assert_int_equal(lokr_extract_kron(dl, 24, 20, 1, &sl, &lo, &fl, &e), 0);
	assert_int_equal(lokr_extract_kron(dc, 12, 8, 9, &sc, NULL, &fc, &e), 0);
	assert_true(fl.w2_lowrank);
	float alpha_l = (float)fl.rank, alpha_c = 1.0f;
	lokr_st_spec as[] = {
	    {"lycoris_lin.lokr_w1", "F32", 2, {fl.w1.rows, fl.w1.cols}, fl.w1.data},
	    {"lycoris_lin.lokr_w2_a", "F32", 2, {fl.w2_a.rows, fl.w2_a.cols}, fl.w2_a.data},
	    {"lycoris_lin.lokr_w2_b", "F32", 2, {fl.w2_b.rows, fl.w2_b.cols}, fl.w2_b.data},
	    {"lycoris_lin.alpha", "F32", 0, {0}, &alpha_l},
	    {"lycoris_net_conv.lokr_w1", "F32", 2, {fc.w1.rows, fc.w1.cols}, fc.w1.data},
	    {"lycoris_net_conv.lokr_w2", "F32", 4, {sc.m2, sc.n2, 3, 3}, fc.w2.data},
	    {"lycoris_net_conv.alpha", "F32", 0, {0}, &alpha_c},
	};
	assert_int_equal(lokr_st_write_file(adp, as, sizeof as / sizeof as[0], NULL, NULL, 0, &e),
	                 0);
	const char *paths[1] = {basep};
	lokr_base *base = NULL;
	assert_int_equal(lokr_base_load(paths, 1, &base, &e), 0);
	lokr_st_file *file = NULL;
	assert_int_equal(lokr_st_open(adp, &file, &e), 0);
	lokr_adapter *ad = NULL;
	int rc = lokr_adapter_load(base, file, &ad, &e);
	if (rc)
		fail_msg("adapter load: %s", e.msg);
	assert_int_equal(ad->nmodules, 2);
	const float *want[2] = {dl, dc};
	const lokr_kron_fit *fits[2] = {&fl, &fc};
	const char *names[2] = {"lin", "net.conv"};
	for (int i = 0; i < 2; i++) {
		int64_t li = lokr_base_layer_find(base, names[i]);
		assert_true(li >= 0);
		const lokr_layer *L = lokr_base_layer_at(base, (size_t)li);
		int64_t n = L->out * L->in * L->kk;
		float *got = malloc((size_t)n * sizeof *got);
		lokr_adapter_ref ref = {ad, 1.0f};
		assert_int_equal(lokr_merge_layer(base, (size_t)li, &ref, 1, 1, got, &e), 0);
		float *fd = fit_dense(fits[i]);
		assert_true(rel_diff(got, fd, n) < 1e-6);
		/* merged delta vs the true delta: the reported error */
		assert_true(fabs(rel_diff(got, want[i], n) - fits[i]->rel_err) < 1e-5);
		free(fd);
		free(got);
	}
	lokr_adapter_free(ad);
	lokr_st_close(file);
	lokr_base_free(base);
	lokr_extract_fit_free(&fl);
	lokr_extract_fit_free(&fc);
	unlink(basep);
	unlink(adp);
	rmdir(dir);
	free(wl);
	free(wc);
	free(dl);
	free(dc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_split_matches_lycoris),
	    cmocka_unit_test(test_params_and_macs),
	    cmocka_unit_test(test_exact_roundtrip),
	    cmocka_unit_test(test_rank_limited_recovers),
	    cmocka_unit_test(test_random_matches_svd_theory),
	    cmocka_unit_test(test_truncation_error_bounds),
	    cmocka_unit_test(test_bad_input),
	    cmocka_unit_test(test_alloc_failures),
	    cmocka_unit_test(test_file_loads_and_merges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

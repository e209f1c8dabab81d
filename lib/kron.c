/*
 * kron.c - factored Kronecker apply and the small BLAS helpers it rests on.
 *
 * (W1 (x) W2) x = vec_r(W1 X W2^T) with X = x viewed as (n1 x n2)
 * (lycoris-format.md 4.1).  For N contiguous rows the W2 product is one GEMM
 * over the (N*n1 x n2) view of the input (no copy); the W1 product is per
 * row, done either as N small GEMMs written straight into the output rows
 * (LOKR_W1STEP_ROWS) or as one GEMM between two permutations of contiguous
 * chunks (LOKR_W1STEP_PERMUTE): (N, n1, m2) -> (n1, N*m2), multiply, and
 * (m1, N, m2) -> (N, m1, m2) back.  Which one is cheaper depends on the call
 * overhead of a tiny sgemm versus two streaming copies; lokr__kron_w1step_pick
 * decides with a rough cost model (on the target machine the two were within
 * measurement noise of each other for the benchmark shapes).
 *
 * Kernels never allocate; callers size scratch with lokr__kron_scratch.
 */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "kron.h"

/* ---------------------------------------------------------------- BLAS */

static void zero_rows(float *C, int64_t M, int64_t N, int64_t ldc)
{
	for (int64_t i = 0; i < M; i++)
		memset(C + i * ldc, 0, (size_t)N * sizeof *C);
}

/* A few rows against a big B: OpenBLAS's sgemm packs all of B on every call
 * (perf: sgemm_incopy was 61 % of a 64-adapter batch of 4x4 (x) 320x320
 * adapters), while one sgemv per row streams B and finds it in L2/L3 for
 * the next row.  Not for B past a few MiB (the base weight: every row
 * would stream it from memory again; the base GEMM does not come here).  Hand-written
 * register-blocked kernels for the small products were tried too (bench/, 320x320 and 1280x1280
 * batches of 64 adapters) and were no faster than OpenBLAS's own small-matrix path, so the small
 * products stay with OpenBLAS. */
static int skinny(int64_t M, int64_t N, int64_t K)
{
	double nk = (double)N * (double)K;
	return M <= 8 && nk >= 16384.0 && nk <= 1048576.0; /* B of 64 KiB .. 4 MiB */
}

/* One row through sgemv: c (N) = alpha B (N x K) a + beta c, or with B^T
 * when `bt` (B then K x N).  beta = 0 is made exact (OpenBLAS scales by
 * beta, so 0 * NaN garbage would survive). */
static void gemv_row(int bt, int64_t N, int64_t K, float alpha, const float *a, const float *B,
                     int64_t ldb, float beta, float *c)
{
	if (beta == 0.0f)
		memset(c, 0, (size_t)N * sizeof *c);
	float b1 = beta == 0.0f ? 1.0f : beta;
	if (bt)
		cblas_sgemv(CblasRowMajor, CblasTrans, (int)K, (int)N, alpha, B, (int)ldb, a, 1, b1,
		            c, 1);
	else
		cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, alpha, B, (int)ldb, a, 1,
		            b1, c, 1);
}

/* C (M x 1) = alpha A (M x K) b + beta C, b with stride incb. */
static void gemv_col(int64_t M, int64_t K, float alpha, const float *A, int64_t lda, const float *b,
                     int64_t incb, float beta, float *C, int64_t ldc)
{
	if (beta == 0.0f)
		zero_rows(C, M, 1, ldc);
	cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)M, (int)K, alpha, A, (int)lda, b, (int)incb,
	            beta == 0.0f ? 1.0f : beta, C, (int)ldc);
}

/* Narrow products (N <= 4 columns: the m2 = 4 side of unbalanced factors;
 * N = 8: the rank-8 side of low-rank factors) are where OpenBLAS's small
 * path is slowest (perf: a 320x4 times 4x4 product took ~1.5 us).  With 4
 * or 8 columns a row is one vector and needs no copy; other widths up to 4
 * are copied zero-padded to 8 columns first (with that copy, 8 columns were
 * slower than OpenBLAS on 320x320 and 640x640 batches; without it, 1-3 %
 * faster).  A row of C stays in one register, four rows at a time so four
 * FMA chains run in parallel.  Cloned for x86-64-v3 (AVX2+FMA) with a
 * baseline fallback, selected by CPU features (ifunc). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define LOKR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define LOKR_CLONES
#endif

typedef float v8f __attribute__((vector_size(32)));

#define NARROW_MAX_K 256 /* B padded to K x 8 floats on the stack */

/* C (M x N) = alpha A B + beta C when N is exactly the width of vector type
 * VT: one vector per row of B and of C, no padding copy, four rows of C at a
 * time so four FMA chains run in parallel. */
#define NARROW_EXACT(VT)                                                                           \
	do {                                                                                       \
		for (int64_t i = 0; i < M; i += 4) {                                               \
			const int64_t mi = M - i < 4 ? M - i : 4;                                  \
			const float *a0 = A + i * lda;                                             \
			const float *a1 = mi > 1 ? a0 + lda : a0,                                  \
			            *a2 = mi > 2 ? a0 + 2 * lda : a0;                              \
			const float *a3 = mi > 3 ? a0 + 3 * lda : a0;                              \
			VT c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};                                 \
			for (int64_t k = 0; k < K; k++) {                                          \
				VT b;                                                              \
				memcpy(&b, B + k * ldb, sizeof b);                                 \
				c0 += a0[k] * b;                                                   \
				c1 += a1[k] * b;                                                   \
				c2 += a2[k] * b;                                                   \
				c3 += a3[k] * b;                                                   \
			}                                                                          \
			VT cs[4] = {c0, c1, c2, c3};                                               \
			for (int64_t ii = 0; ii < mi; ii++) {                                      \
				VT v = alpha * cs[ii], o;                                          \
				float *c = C + (i + ii) * ldc;                                     \
				if (beta != 0.0f) {                                                \
					memcpy(&o, c, sizeof o);                                   \
					v += o;                                                    \
				}                                                                  \
				memcpy(c, &v, sizeof v);                                           \
			}                                                                          \
		}                                                                                  \
	} while (0)

LOKR_CLONES
static void narrow_nn(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
	if (N == 4) {
		typedef float v4f __attribute__((vector_size(16)));
		NARROW_EXACT(v4f);
		return;
	}
	if (N == 8) {
		NARROW_EXACT(v8f);
		return;
	}
	v8f bp[NARROW_MAX_K];
	for (int64_t k = 0; k < K; k++) {
		float t[8] = {0};
		for (int64_t j = 0; j < N; j++)
			t[j] = B[k * ldb + j];
		memcpy(&bp[k], t, sizeof t);
	}
	int64_t i = 0;
	for (; i + 4 <= M; i += 4) {
		const float *a0 = A + i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
		v8f c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};
		for (int64_t k = 0; k < K; k++) {
			c0 += a0[k] * bp[k];
			c1 += a1[k] * bp[k];
			c2 += a2[k] * bp[k];
			c3 += a3[k] * bp[k];
		}
		v8f cs[4] = {c0, c1, c2, c3};
		for (int ii = 0; ii < 4; ii++) {
			float v[8];
			memcpy(v, &cs[ii], sizeof v);
			float *c = C + (i + ii) * ldc;
			if (beta == 0.0f)
				for (int64_t j = 0; j < N; j++)
					c[j] = alpha * v[j];
			else
				for (int64_t j = 0; j < N; j++)
					c[j] += alpha * v[j];
		}
	}
	for (; i < M; i++) {
		const float *a = A + i * lda;
		v8f c = {0};
		for (int64_t k = 0; k < K; k++)
			c += a[k] * bp[k];
		float v[8];
		memcpy(v, &c, sizeof v);
		float *cr = C + i * ldc;
		for (int64_t j = 0; j < N; j++)
			cr[j] = beta == 0.0f ? alpha * v[j] : cr[j] + alpha * v[j];
	}
}

void lokr__mm_nt(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
	if (M <= 0 || N <= 0)
		return;
	if (K <= 0) {
		if (beta == 0.0f)
			zero_rows(C, M, N, ldc);
		return;
	}
	if (M == 1 || skinny(M, N, K)) {
		for (int64_t i = 0; i < M; i++)
			gemv_row(0, N, K, alpha, A + i * lda, B, ldb, beta, C + i * ldc);
		return;
	}
	if (N == 1) {
		gemv_col(M, K, alpha, A, lda, B, 1, beta, C, ldc);
		return;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, alpha, A,
	            (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

void lokr__mm_nn(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
	if (M <= 0 || N <= 0)
		return;
	if (K <= 0) {
		if (beta == 0.0f)
			zero_rows(C, M, N, ldc);
		return;
	}
	if (M >= 2 && (N == 8 || (N <= 4 && (N == 4 || K <= NARROW_MAX_K)))) {
		narrow_nn(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
		return;
	}
	if (M == 1 || skinny(M, N, K)) {
		for (int64_t i = 0; i < M; i++)
			gemv_row(1, N, K, alpha, A + i * lda, B, ldb, beta, C + i * ldc);
		return;
	}
	if (N == 1) {
		gemv_col(M, K, alpha, A, lda, B, ldb, beta, C, ldc);
		return;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, alpha, A,
	            (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

/* ------------------------------------------------------------- kernels */

double lokr__kron_macs(const lokr_kron_factors *f, lokr_kron_order order)
{
	double m1 = (double)f->m1, n1 = (double)f->n1, m2 = (double)f->m2, n2 = (double)f->n2;
	double r = (double)f->r;
	int dense = f->w2 != NULL;
	if (order == LOKR_KRON_S)
		return dense ? HUGE_VAL : r * (n1 * n2 + m1 * n1 + m1 * m2);
	if (order == LOKR_KRON_A)
		return (dense ? n1 * n2 * m2 : n1 * r * (n2 + m2)) + m1 * n1 * m2;
	return m1 * n1 * n2 + (dense ? m1 * n2 * m2 : m1 * r * (n2 + m2));
}

/* One tiny sgemm costs about as much as streaming a few thousand floats
 * twice, so per-row calls win for a handful of rows or when a row's W1
 * product is big, and the permuted single GEMM for many rows of small
 * products.  (Forcing either on the benchmark shapes moved the total by less
 * than the run-to-run noise; tests run both.) */
lokr_kron_w1step lokr__kron_w1step_pick(const lokr_kron_factors *f, lokr_kron_order order,
                                        int64_t rows)
{
	if (rows <= 2)
		return LOKR_W1STEP_ROWS;
	/* the width of the matrix W1 multiplies, per row */
	double w = order == LOKR_KRON_A   ? (double)f->m2
	           : order == LOKR_KRON_B ? (double)f->n2
	                                  : (double)f->r;
	/* multiply-adds of one row's W1 product, and floats the two
	 * permutations move per row */
	double per_row = (double)f->m1 * (double)f->n1 * w;
	double moved = (double)(f->n1 + f->m1) * w;
	/* a small call ~ 4096 MACs of fixed cost; a moved float ~ 1 MAC */
	if (moved < LOKR_PLAN_CALL_MACS + 0.1 * per_row)
		return LOKR_W1STEP_PERMUTE;
	return LOKR_W1STEP_ROWS;
}

size_t lokr__kron_scratch(const lokr_kron_factors *f, lokr_kron_order order, lokr_kron_w1step step,
                          int64_t rows)
{
	if (step == LOKR_W1STEP_AUTO)
		step = lokr__kron_w1step_pick(f, order, rows);
	size_t N = (size_t)rows, m1 = (size_t)f->m1, n1 = (size_t)f->n1, m2 = (size_t)f->m2,
	       n2 = (size_t)f->n2, r = (size_t)f->r;
	if (order == LOKR_KRON_S) {
		size_t tu = N * (n1 + m1) * r;
		return step == LOKR_W1STEP_PERMUTE ? 2 * tu : tu;
	}
	size_t t = f->w2 ? 0 : N * (order == LOKR_KRON_A ? n1 : m1) * r;
	if (order == LOKR_KRON_A) {
		size_t mm = N * n1 * m2;
		if (step == LOKR_W1STEP_PERMUTE)
			return t + 2 * mm + N * m1 * m2;
		return t + mm;
	}
	size_t l = N * m1 * n2;
	if (step == LOKR_W1STEP_PERMUTE)
		return t + N * n1 * n2 + 2 * l;
	return t + l;
}

/* dst (b, a, c) <- src (a, b, c): a transpose of contiguous chunks of c floats. */
static void permute_chunks(const float *src, int64_t a, int64_t b, int64_t c, float *dst)
{
	size_t bytes = (size_t)c * sizeof *src;
	for (int64_t i = 0; i < a; i++)
		for (int64_t j = 0; j < b; j++)
			memcpy(dst + (j * a + i) * c, src + (i * b + j) * c, bytes);
}

/* y (b, a, c) = alpha * src (a, b, c) + beta * y, beta 0 or 1. */
static void permute_chunks_acc(const float *src, int64_t a, int64_t b, int64_t c, float alpha,
                               float beta, float *y)
{
	for (int64_t i = 0; i < a; i++)
		for (int64_t j = 0; j < b; j++) {
			const float *s = src + (i * b + j) * c;
			float *d = y + (j * a + i) * c;
			if (beta == 0.0f)
				for (int64_t k = 0; k < c; k++)
					d[k] = alpha * s[k];
			else
				for (int64_t k = 0; k < c; k++)
					d[k] += alpha * s[k];
		}
}

/* t (rows x r) = in (rows x n2) w2b^T */
static void w2b_product(const lokr_kron_factors *f, int64_t rows, const float *in, float *t)
{
	if (f->w2bt)
		lokr__mm_nn(rows, f->r, f->n2, 1.0f, in, f->n2, f->w2bt, f->r, 0.0f, t, f->r);
	else
		lokr__mm_nt(rows, f->r, f->n2, 1.0f, in, f->n2, f->w2b, f->n2, 0.0f, t, f->r);
}

/* out (rows x m2) = alpha t (rows x r) w2a^T + beta out */
static void w2a_product(const lokr_kron_factors *f, int64_t rows, const float *t, float alpha,
                        float beta, float *out)
{
	if (f->w2at)
		lokr__mm_nn(rows, f->m2, f->r, alpha, t, f->r, f->w2at, f->m2, beta, out, f->m2);
	else
		lokr__mm_nt(rows, f->m2, f->r, alpha, t, f->r, f->w2a, f->r, beta, out, f->m2);
}

/* out (rows x m) = in (rows x n) W2^T with W2 dense (m x n) or w2a w2b;
 * alpha/beta on the final product.  t: scratch (rows x r) for low rank. */
static void w2_product(const lokr_kron_factors *f, int64_t rows, const float *in, float alpha,
                       float beta, float *out, float *t)
{
	if (f->w2) {
		if (f->w2t)
			lokr__mm_nn(rows, f->m2, f->n2, alpha, in, f->n2, f->w2t, f->m2, beta, out,
			            f->m2);
		else
			lokr__mm_nt(rows, f->m2, f->n2, alpha, in, f->n2, f->w2, f->n2, beta, out,
			            f->m2);
		return;
	}
	w2b_product(f, rows, in, t);
	w2a_product(f, rows, t, alpha, beta, out);
}

void lokr__kron_apply(const lokr_kron_factors *f, lokr_kron_order order, lokr_kron_w1step step,
                      int64_t rows, const float *x, float alpha, float beta, float *y,
                      float *scratch)
{
	if (rows <= 0)
		return;
	if (step == LOKR_W1STEP_AUTO)
		step = lokr__kron_w1step_pick(f, order, rows);
	const int64_t m1 = f->m1, n1 = f->n1, m2 = f->m2, n2 = f->n2, N = rows;
	const int64_t out = m1 * m2, in = n1 * n2;
	if (order == LOKR_KRON_S) {
		const int64_t r = f->r;
		float *T = scratch;                                /* (N, n1, r) */
		float *U = T + (size_t)N * (size_t)n1 * (size_t)r; /* (N, m1, r) */
		w2b_product(f, N * n1, x, T);
		if (step == LOKR_W1STEP_ROWS) {
			for (int64_t n = 0; n < N; n++)
				lokr__mm_nn(m1, r, n1, 1.0f, f->w1, n1, T + n * n1 * r, r, 0.0f,
				            U + n * m1 * r, r);
		} else {
			float *Tp = U + (size_t)N * (size_t)m1 * (size_t)r; /* (n1, N, r) */
			float *Z = Tp + (size_t)N * (size_t)n1 * (size_t)r; /* (m1, N, r) */
			permute_chunks(T, N, n1, r, Tp);
			lokr__mm_nn(m1, N * r, n1, 1.0f, f->w1, n1, Tp, N * r, 0.0f, Z, N * r);
			permute_chunks(Z, m1, N, r, U);
		}
		w2a_product(f, N * m1, U, alpha, beta, y);
		return;
	}
	float *t = scratch;
	float *s =
	    scratch +
	    (f->w2 ? 0 : (size_t)N * (size_t)(order == LOKR_KRON_A ? n1 : m1) * (size_t)f->r);

	if (order == LOKR_KRON_A) {
		/* M (N*n1 x m2) = X_view (N*n1 x n2) W2^T */
		float *M = s;
		w2_product(f, N * n1, x, 1.0f, 0.0f, M, t);
		if (step == LOKR_W1STEP_ROWS) {
			for (int64_t n = 0; n < N; n++)
				lokr__mm_nn(m1, m2, n1, alpha, f->w1, n1, M + n * n1 * m2, m2, beta,
				            y + n * out, m2);
			return;
		}
		float *Mp = M + (size_t)N * (size_t)n1 * (size_t)m2; /* (n1, N, m2) */
		float *Z = Mp + (size_t)N * (size_t)n1 * (size_t)m2; /* (m1, N, m2) */
		permute_chunks(M, N, n1, m2, Mp);
		lokr__mm_nn(m1, N * m2, n1, 1.0f, f->w1, n1, Mp, N * m2, 0.0f, Z, N * m2);
		permute_chunks_acc(Z, m1, N, m2, alpha, beta, y);
		return;
	}

	/* order B: L (N*m1 x n2) with L_n = W1 X_n, then Y_view = L W2^T */
	if (step == LOKR_W1STEP_ROWS) {
		float *L = s;
		for (int64_t n = 0; n < N; n++)
			lokr__mm_nn(m1, n2, n1, 1.0f, f->w1, n1, x + n * in, n2, 0.0f,
			            L + n * m1 * n2, n2);
		w2_product(f, N * m1, L, alpha, beta, y, t);
		return;
	}
	float *Xp = s;                                       /* (n1, N, n2) */
	float *Z = Xp + (size_t)N * (size_t)n1 * (size_t)n2; /* (m1, N, n2) */
	float *L = Z + (size_t)N * (size_t)m1 * (size_t)n2;  /* (N, m1, n2) */
	permute_chunks(x, N, n1, n2, Xp);
	lokr__mm_nn(m1, N * n2, n1, 1.0f, f->w1, n1, Xp, N * n2, 0.0f, Z, N * n2);
	permute_chunks(Z, m1, N, n2, L);
	w2_product(f, N * m1, L, alpha, beta, y, t);
}

void lokr__kron_dense(const lokr_kron_factors *f, float *dst)
{
	const int64_t m1 = f->m1, n1 = f->n1, m2 = f->m2, n2 = f->n2;
	const int64_t in = n1 * n2;
	for (int64_t j = 0; j < m2; j++)
		for (int64_t l = 0; l < n2; l++) {
			float b;
			if (f->w2) {
				b = f->w2[j * n2 + l];
			} else {
				double acc = 0.0;
				for (int64_t q = 0; q < f->r; q++)
					acc += (double)f->w2a[j * f->r + q] *
					       (double)f->w2b[q * n2 + l];
				b = (float)acc;
			}
			for (int64_t i = 0; i < m1; i++)
				for (int64_t k = 0; k < n1; k++)
					dst[(i * m2 + j) * in + k * n2 + l] = f->w1[i * n1 + k] * b;
		}
}

/*
 * extract.c - LoKr extraction: the nearest Kronecker product of a weight
 * delta (Van Loan & Pitsianis 1993), optionally with low-rank factors, plus
 * the parameter and apply-cost arithmetic the extract/report tools print.
 *
 * The math.  For a split W1 (m1 x n1), W2 (m2 x n2*kk) of dW (out x in*kk,
 * out = m1*m2, in = n1*n2, kernel inside W2 as lycoris-format.md 3.1), the
 * rearrangement
 *
 *     R[i*n1 + k, j*(n2*kk) + t] = dW[i*m2 + j, k*(n2*kk) + t]
 *
 * maps every Kronecker product W1 (x) W2 to the rank-one matrix
 * vec(W1) vec(W2)^T and preserves the Frobenius norm.  So the best
 * Kronecker approximation is the best rank-one approximation of R: the
 * leading singular pair sigma u v^T, W1 = sqrt(sigma) u, W2 = sqrt(sigma) v,
 * with relative error sqrt(1 - sigma^2 / |R|^2).
 *
 * How the leading pair is computed.  Only one singular pair of R is needed,
 * and R is very wide or very tall (16 x 102400 for a 1280 x 1280 layer at
 * factor 4), so a full SVD (sgesdd/dgesdd) would spend most of its time on
 * vectors we throw away.  Instead, in double precision:
 *   - when min(rows, cols) of R is at most LOKR_EXTRACT_GRAM_MAX, form the
 *     small Gram matrix (R R^T or R^T R, BLAS dsyrk) and take its top
 *     eigenpair with LAPACK dsyevr (range "I", one eigenvalue).  Exact to
 *     double rounding; squaring the condition number does not hurt the
 *     *leading* pair, whose accuracy depends on the gap sigma1^2 - sigma2^2
 *     relative to sigma1^2.
 *   - above that, a block subspace iteration on BLAS (dgemm, 8 vectors,
 *     Rayleigh-Ritz on the block), whose cost per sweep is linear in the
 *     size of R, instead of the Gram product and its cubic eigensolve.
 *     Its speed depends on the spectral gap: a delta with structure (three
 *     Kronecker terms plus noise, same size as below) converged in 4 sweeps
 *     (0.7 s vs 0.8 s for Gram), pure noise needs hundreds.  Measured on one core
 *     for a random 1280 x 1280 x 3 x 3 delta at factor -1 (R 1024 x 14400):
 *     Gram 1.2 s, iteration 53 s (476 sweeps); 1280 x 1280 linear: 0.25 s
 *     vs 3.1 s.  Hence the Gram path up to a 4096 side (a 134 MB Gram
 *     matrix, about p*q*min/2 multiply-adds) and iteration only beyond.
 * LAPACK is used (not a hand-written eigensolver) because dsyevr and
 * dgesdd are robust, well-tested and already in the OpenBLAS stack.
 *
 * Low rank.  With a rank r, W2 (and, with decompose_both, W1) is truncated
 * by SVD (dgesdd) to rank r.  Truncating the NKP's W2 is the optimal W2 for
 * the NKP's W1, but not the joint optimum, so a few sweeps of alternating
 * least squares follow (W1 = R b/|b|^2, then W2 = trunc_r(R^T a/|a|^2)),
 * each of which can only lower the error.  The error reported is always
 * the exact |dW - W1 (x) W2|_F / |dW|_F of the float factors returned.
 *
 * Everything here is pure computation: no globals, thread-safe, OpenBLAS
 * threading as set by the caller.
 */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <string.h>

#include "internal.h"
#include "kron.h"

#define EXTRACT_BLOCK       8    /* subspace iteration block size */
#define EXTRACT_MAX_SWEEPS  300  /* subspace iteration limit */
#define EXTRACT_REFINE_DEF  8    /* default ALS sweeps after truncation */
#define EXTRACT_REFINE_STOP 1e-7 /* ALS stops when the error improves less (relative) */

/* ------------------------------------------------------------ arithmetic */

int lokr_extract_split(int64_t out, int64_t in, int64_t factor, int unbalanced, lokr_kron_split *s)
{
	if (!s || out <= 0 || in <= 0)
		return LOKR_EINVAL;
	int64_t out_l, out_k, in_m, in_n;
	int rc = lokr_factorize(out, factor, &out_l, &out_k);
	if (rc)
		return rc;
	rc = lokr_factorize(in, factor, &in_m, &in_n);
	if (rc)
		return rc;
	if (unbalanced) {
		int64_t t = out_l;
		out_l = out_k;
		out_k = t;
	}
	s->m1 = out_l;
	s->n1 = in_m;
	s->m2 = out_k;
	s->n2 = in_n;
	return LOKR_OK;
}

/* A factor of rows x cols stored as rank-r factors iff that stores fewer
 * parameters than the full matrix; then r < min(rows, cols) too. */
static int lowrank_pays(int64_t rows, int64_t cols, int64_t r)
{
	return r > 0 && (double)r * (double)(rows + cols) < (double)rows * (double)cols;
}

int lokr_extract_lowrank(const lokr_kron_split *s, int64_t kk, int64_t rank, int decompose_both,
                         int *w1_lowrank, int *w2_lowrank)
{
	if (!s || kk <= 0)
		return LOKR_EINVAL;
	int a = decompose_both && lowrank_pays(s->m1, s->n1, rank);
	int b = lowrank_pays(s->m2, s->n2 * kk, rank);
	if (w1_lowrank)
		*w1_lowrank = a;
	if (w2_lowrank)
		*w2_lowrank = b;
	return LOKR_OK;
}

uint64_t lokr_extract_params(const lokr_kron_split *s, int64_t kk, int64_t rank, int decompose_both)
{
	int a, b;
	if (lokr_extract_lowrank(s, kk, rank, decompose_both, &a, &b))
		return 0;
	uint64_t c = (uint64_t)(s->n2 * kk);
	uint64_t p1 = a ? (uint64_t)rank * (uint64_t)(s->m1 + s->n1) : (uint64_t)(s->m1 * s->n1);
	uint64_t p2 = b ? (uint64_t)rank * ((uint64_t)s->m2 + c) : (uint64_t)s->m2 * c;
	return p1 + p2;
}

const char *lokr_extract_order_name(int order)
{
	switch (order) {
	case LOKR_ORDER_W2_FIRST:
		return "W2-first";
	case LOKR_ORDER_W1_FIRST:
		return "W1-first";
	case LOKR_ORDER_W2_FIRST_FACTORED:
		return "W2-first(factored)";
	case LOKR_ORDER_W1_FIRST_FACTORED:
		return "W1-first(factored)";
	case LOKR_ORDER_SANDWICH:
		return "sandwich";
	default:
		return "?";
	}
}

/*
 * Multiply-adds per row of y = (W1 (x) W2) x, counted by the planner's own
 * cost model (lokr__kron_macs, lib/kron.c; lycoris-format.md 4.2) with
 * n2 -> n2*kk (a conv row is one im2col patch, 4.4), without the planner's
 * per-call overheads.  W2 either materialized (cost independent of the
 * rank) or, when low-rank pays, kept as w2_a w2_b (orders A and B on the
 * factors, and the planner's sandwich w2_b, W1, w2_a); the cheapest of the
 * (up to) five is returned and its LOKR_ORDER_* stored.
 */
uint64_t lokr_extract_macs(const lokr_kron_split *s, int64_t kk, int64_t rank, int *order)
{
	if (!s || kk <= 0)
		return 0;
	static const float dummy = 0;
	lokr_kron_factors f = {
	    .m1 = s->m1, .n1 = s->n1, .m2 = s->m2, .n2 = s->n2 * kk, .w1 = &dummy, .w2 = &dummy};
	double cost[5] = {lokr__kron_macs(&f, LOKR_KRON_A), lokr__kron_macs(&f, LOKR_KRON_B),
	                  INFINITY, INFINITY, INFINITY};
	if (lowrank_pays(s->m2, s->n2 * kk, rank)) {
		f.w2 = NULL;
		f.w2a = f.w2b = &dummy;
		f.r = rank;
		cost[2] = lokr__kron_macs(&f, LOKR_KRON_A);
		cost[3] = lokr__kron_macs(&f, LOKR_KRON_B);
		cost[4] = lokr__kron_macs(&f, LOKR_KRON_S);
	}
	int best = 0;
	for (int i = 1; i < 5; i++)
		if (cost[i] < cost[best])
			best = i;
	if (order)
		*order = best;
	return (uint64_t)cost[best];
}

/* --------------------------------------------------------- linear algebra */

/* Leading eigenpair of the symmetric n x n matrix g (row-major, upper
 * triangle used, destroyed).  vec gets n doubles. */
static int top_eigen(double *g, int64_t n, double *lambda, double *vec, lokr_error *err)
{
	lapack_int found = 0;
	lapack_int isuppz[2];
	double w[1];
	lapack_int info =
	    LAPACKE_dsyevr(LAPACK_ROW_MAJOR, 'V', 'I', 'U', (lapack_int)n, g, (lapack_int)n, 0.0,
	                   0.0, (lapack_int)n, (lapack_int)n, 0.0, &found, w, vec, 1, isuppz);
	if (info != 0 || found != 1)
		return lokr__fail(
		    err, LOKR_EINVAL,
		    "extract: LAPACK dsyevr failed (info %d) on a %lld x %lld Gram matrix",
		    (int)info, (long long)n, (long long)n);
	*lambda = w[0] > 0 ? w[0] : 0;
	return LOKR_OK;
}

/* Orthonormalize the columns of the row-major (n x k) matrix q in place. */
static int orthonormalize(double *q, int64_t n, int k, lokr_error *err)
{
	double tau[EXTRACT_BLOCK];
	lapack_int info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, (lapack_int)n, k, q, k, tau);
	if (info == 0)
		info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, (lapack_int)n, k, k, q, k, tau);
	if (info != 0)
		return lokr__fail(err, LOKR_EINVAL, "extract: LAPACK QR failed (info %d)",
		                  (int)info);
	return LOKR_OK;
}

/* Deterministic pseudo-random start (splitmix64), uniform in [-1, 1). */
static double rnd(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (double)(z >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

/*
 * Leading singular triple of R (p x q, row-major) by block subspace
 * iteration: Q <- orth(R R^T Q), stopping when sigma1 of the Ritz block
 * changes by less than 1e-11 relative (or after EXTRACT_MAX_SWEEPS).  u gets
 * p doubles, v q doubles, both unit length.
 */
static int top_pair_iterate(const double *r, int64_t p, int64_t q, double *sigma, double *u,
                            double *v, int *sweeps, lokr_error *err)
{
	int k = EXTRACT_BLOCK;
	if (k > p)
		k = (int)p;
	if (k > q)
		k = (int)q;
	double *qm = lokr__try_malloc((size_t)p * (size_t)k * sizeof *qm);
	double *z = lokr__try_malloc((size_t)q * (size_t)k * sizeof *z);
	double *g = lokr__try_malloc((size_t)k * (size_t)k * sizeof *g);
	double *w = lokr__try_malloc((size_t)k * sizeof *w);
	int rc = LOKR_OK;
	if (!qm || !z || !g || !w) {
		rc = lokr__fail(err, LOKR_ENOMEM, "extract: out of memory for subspace iteration");
		goto out;
	}
	uint64_t seed = 0x6c6f6b72ull;
	for (int64_t i = 0; i < q * k; i++)
		z[i] = rnd(&seed);
	/* Q = orth(R Z) */
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)p, k, (int)q, 1.0, r, (int)q, z,
	            k, 0.0, qm, k);
	if ((rc = orthonormalize(qm, p, k, err)))
		goto out;
	double prev = -1;
	int it;
	for (it = 1; it <= EXTRACT_MAX_SWEEPS; it++) {
		/* Z = R^T Q (q x k); the singular values of Q^T R are those of Z. */
		cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)q, k, (int)p, 1.0, r,
		            (int)q, qm, k, 0.0, z, k);
		/* Ritz: G = Z^T Z (k x k), top eigenpair */
		cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, k, (int)q, 1.0, z, k, z, k,
		            0.0, g, k);
		double lambda;
		if ((rc = top_eigen(g, k, &lambda, w, err)))
			goto out;
		double s1 = sqrt(lambda);
		int done = prev >= 0 && fabs(s1 - prev) <= 1e-11 * s1;
		if (done || it == EXTRACT_MAX_SWEEPS || s1 == 0) {
			*sigma = s1;
			/* u = Q w, v = Z w / sigma */
			cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)p, k, 1.0, qm, k, w, 1, 0.0,
			            u, 1);
			cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)q, k, s1 > 0 ? 1.0 / s1 : 0.0,
			            z, k, w, 1, 0.0, v, 1);
			break;
		}
		prev = s1;
		/* Q = orth(R Z) */
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)p, k, (int)q, 1.0, r,
		            (int)q, z, k, 0.0, qm, k);
		if ((rc = orthonormalize(qm, p, k, err)))
			goto out;
	}
	if (sweeps)
		*sweeps = it;
out:
	free(qm);
	free(z);
	free(g);
	free(w);
	return rc;
}

/* Leading singular triple of R by the Gram matrix of its smaller side. */
static int top_pair_gram(const double *r, int64_t p, int64_t q, double *sigma, double *u, double *v,
                         lokr_error *err)
{
	int64_t n = p <= q ? p : q;
	double *g = lokr__try_malloc((size_t)n * (size_t)n * sizeof *g);
	if (!g)
		return lokr__fail(err, LOKR_ENOMEM,
		                  "extract: out of memory for a %lld x %lld Gram matrix",
		                  (long long)n, (long long)n);
	if (p <= q)
		cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)p, (int)q, 1.0, r, (int)q,
		            0.0, g, (int)p);
	else
		cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)q, (int)p, 1.0, r, (int)q,
		            0.0, g, (int)q);
	double lambda;
	int rc = top_eigen(g, n, &lambda, p <= q ? u : v, err);
	free(g);
	if (rc)
		return rc;
	double s1 = sqrt(lambda);
	*sigma = s1;
	double inv = s1 > 0 ? 1.0 / s1 : 0.0;
	if (p <= q) /* v = R^T u / sigma */
		cblas_dgemv(CblasRowMajor, CblasTrans, (int)p, (int)q, inv, r, (int)q, u, 1, 0.0, v,
		            1);
	else /* u = R v / sigma */
		cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)p, (int)q, inv, r, (int)q, v, 1, 0.0,
		            u, 1);
	return LOKR_OK;
}

/*
 * Best rank-r approximation of the row-major (rows x cols) matrix m, in
 * place (m is overwritten with U_r S_r V_r^T), and the factors
 * a = U_r sqrt(S_r) (rows x r), b = sqrt(S_r) V_r^T (r x cols) if non-NULL.
 */
static int truncate_rank(double *m, int64_t rows, int64_t cols, int64_t r, double *a, double *b,
                         lokr_error *err)
{
	int64_t mn = rows < cols ? rows : cols;
	double *work = lokr__try_malloc((size_t)rows * (size_t)cols * sizeof *work);
	double *uu = lokr__try_malloc((size_t)rows * (size_t)mn * sizeof *uu);
	double *vt = lokr__try_malloc((size_t)mn * (size_t)cols * sizeof *vt);
	double *sv = lokr__try_malloc((size_t)mn * sizeof *sv);
	int rc = LOKR_OK;
	if (!work || !uu || !vt || !sv) {
		rc = lokr__fail(err, LOKR_ENOMEM, "extract: out of memory for a %lld x %lld SVD",
		                (long long)rows, (long long)cols);
		goto out;
	}
	memcpy(work, m, (size_t)rows * (size_t)cols * sizeof *work);
	lapack_int info =
	    LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)rows, (lapack_int)cols, work,
	                   (lapack_int)cols, sv, uu, (lapack_int)mn, vt, (lapack_int)cols);
	if (info != 0) {
		rc = lokr__fail(err, LOKR_EINVAL,
		                "extract: LAPACK dgesdd failed (info %d) on %lld x %lld", (int)info,
		                (long long)rows, (long long)cols);
		goto out;
	}
	for (int64_t x = 0; x < rows; x++)
		for (int64_t l = 0; l < r; l++) {
			double h = sqrt(sv[l]);
			if (a)
				a[x * r + l] = uu[x * mn + l] * h;
		}
	for (int64_t l = 0; l < r; l++) {
		double h = sqrt(sv[l]);
		if (b)
			for (int64_t y = 0; y < cols; y++)
				b[l * cols + y] = vt[l * cols + y] * h;
	}
	for (int64_t x = 0; x < rows; x++)
		for (int64_t y = 0; y < cols; y++) {
			double acc = 0;
			for (int64_t l = 0; l < r; l++)
				acc += uu[x * mn + l] * sv[l] * vt[l * cols + y];
			m[x * cols + y] = acc;
		}
out:
	free(work);
	free(uu);
	free(vt);
	free(sv);
	return rc;
}

static double dot(const double *x, const double *y, int64_t n)
{
	double s = 0;
	for (int64_t i = 0; i < n; i++)
		s += x[i] * y[i];
	return s;
}

static int mat_alloc(lokr_mat *m, int64_t rows, int64_t cols)
{
	m->rows = rows;
	m->cols = cols;
	m->data = lokr__try_malloc((size_t)rows * (size_t)cols * sizeof(float));
	return m->data ? 0 : -1;
}

void lokr_extract_fit_free(lokr_kron_fit *fit)
{
	if (!fit)
		return;
	free(fit->w1.data);
	free(fit->w1_a.data);
	free(fit->w1_b.data);
	free(fit->w2.data);
	free(fit->w2_a.data);
	free(fit->w2_b.data);
	memset(fit, 0, sizeof *fit);
}

/* ------------------------------------------------------------ the fit */

struct work {
	double *r;       /* p x q rearranged dW */
	double *a;       /* p: vec(W1) as currently stored (materialized) */
	double *b;       /* q: vec(W2) */
	double *ta;      /* p scratch */
	double *tb;      /* q scratch */
	double *fa, *fb; /* factor scratch: max(m1, m2) x r and r x max(n1, c) */
};

/* |R - a b^T|^2 = |R|^2 - 2 a^T R b + |a|^2 |b|^2 (tb scratch <- R b). */
static double resid2_fast(const struct work *w, int64_t p, int64_t q, double rn2)
{
	cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)p, (int)q, 1.0, w->r, (int)q, w->b, 1, 0.0,
	            w->ta, 1);
	double e = rn2 - 2 * dot(w->a, w->ta, p) + dot(w->a, w->a, p) * dot(w->b, w->b, q);
	return e > 0 ? e : 0;
}

/*
 * Alternating least squares after truncation: W1 <- R b/|b|^2 (truncated
 * when w1_low), W2 <- trunc_r(R^T a/|a|^2).  Each half-step solves its
 * subproblem exactly (the truncated SVD is the best rank-r fit of the
 * unconstrained minimizer, because the objective in that factor is a
 * scaled Frobenius distance to it), so the error never increases.
 */
static int refine(struct work *w, const lokr_kron_split *s, int64_t c, int64_t r, int w1_low,
                  int w2_low, int sweeps, double rn2, lokr_error *err)
{
	int64_t p = s->m1 * s->n1, q = s->m2 * c;
	double e = resid2_fast(w, p, q, rn2);
	for (int it = 0; it < sweeps; it++) {
		double bb = dot(w->b, w->b, q);
		if (bb <= 0)
			return LOKR_OK;
		double *a_new = w->ta; /* R b from resid2_fast */
		for (int64_t i = 0; i < p; i++)
			a_new[i] /= bb;
		int rc;
		if (w1_low && (rc = truncate_rank(a_new, s->m1, s->n1, r, NULL, NULL, err)))
			return rc;
		double aa = dot(a_new, a_new, p);
		if (aa <= 0)
			return LOKR_OK;
		cblas_dgemv(CblasRowMajor, CblasTrans, (int)p, (int)q, 1.0 / aa, w->r, (int)q,
		            a_new, 1, 0.0, w->tb, 1);
		if (w2_low && (rc = truncate_rank(w->tb, s->m2, c, r, NULL, NULL, err)))
			return rc;
		/* accept only an improvement (guards against rounding noise) */
		double *sa = w->a, *sb = w->b;
		memcpy(w->fa, sa, (size_t)p * sizeof(double));
		memcpy(w->fb, sb, (size_t)q * sizeof(double));
		memcpy(sa, a_new, (size_t)p * sizeof(double));
		memcpy(sb, w->tb, (size_t)q * sizeof(double));
		double e_new = resid2_fast(w, p, q, rn2);
		if (e_new > e) {
			memcpy(sa, w->fa, (size_t)p * sizeof(double));
			memcpy(sb, w->fb, (size_t)q * sizeof(double));
			return LOKR_OK;
		}
		int small = e - e_new <= EXTRACT_REFINE_STOP * e;
		e = e_new;
		if (small)
			return LOKR_OK;
	}
	return LOKR_OK;
}

/* Store the double matrix m (rows x cols) as float, full or as rank-r factors. */
static int store_factor(double *m, int64_t rows, int64_t cols, int64_t r, int low, lokr_mat *full,
                        lokr_mat *fa, lokr_mat *fb, double *sa, double *sb, lokr_error *err)
{
	if (!low) {
		if (mat_alloc(full, rows, cols))
			return lokr__fail(err, LOKR_ENOMEM, "extract: out of memory");
		for (int64_t i = 0; i < rows * cols; i++)
			full->data[i] = (float)m[i];
		return LOKR_OK;
	}
	int rc = truncate_rank(m, rows, cols, r, sa, sb, err);
	if (rc)
		return rc;
	if (mat_alloc(fa, rows, r) || mat_alloc(fb, r, cols))
		return lokr__fail(err, LOKR_ENOMEM, "extract: out of memory");
	for (int64_t i = 0; i < rows * r; i++)
		fa->data[i] = (float)sa[i];
	for (int64_t i = 0; i < r * cols; i++)
		fb->data[i] = (float)sb[i];
	return LOKR_OK;
}

/* vec of the float factor as stored (full, or the product of its factors), in double. */
static void materialize(const lokr_mat *full, const lokr_mat *fa, const lokr_mat *fb, double *dst)
{
	if (full->data) {
		for (int64_t i = 0; i < full->rows * full->cols; i++)
			dst[i] = full->data[i];
		return;
	}
	int64_t rows = fa->rows, r = fa->cols, cols = fb->cols;
	for (int64_t x = 0; x < rows; x++)
		for (int64_t y = 0; y < cols; y++) {
			double acc = 0;
			for (int64_t l = 0; l < r; l++)
				acc += (double)fa->data[x * r + l] * (double)fb->data[l * cols + y];
			dst[x * cols + y] = acc;
		}
}

int lokr_extract_kron(const float *dw, int64_t out, int64_t in, int64_t kk,
                      const lokr_kron_split *split, const lokr_extract_opts *opts,
                      lokr_kron_fit *fit, lokr_error *err)
{
	if (!fit)
		return lokr__fail(err, LOKR_EINVAL, "extract: no result struct");
	memset(fit, 0, sizeof *fit);
	if (!dw || !split)
		return lokr__fail(err, LOKR_EINVAL, "extract: NULL argument");
	const lokr_kron_split s = *split;
	int64_t c, p, q, cols, total, t1, t2;
	if (out <= 0 || in <= 0 || kk <= 0 || s.m1 <= 0 || s.n1 <= 0 || s.m2 <= 0 || s.n2 <= 0 ||
	    lokr__mul_i64(s.m1, s.m2, &t1) || t1 != out || lokr__mul_i64(s.n1, s.n2, &t2) ||
	    t2 != in)
		return lokr__fail(
		    err, LOKR_EINVAL,
		    "extract: split W1 (%lld, %lld) x W2 (%lld, %lld) does not multiply "
		    "out to a (%lld, %lld) layer",
		    (long long)s.m1, (long long)s.n1, (long long)s.m2, (long long)s.n2,
		    (long long)out, (long long)in);
	if (lokr__mul_i64(s.n2, kk, &c) || lokr__mul_i64(s.m1, s.n1, &p) ||
	    lokr__mul_i64(s.m2, c, &q) || lokr__mul_i64(in, kk, &cols) ||
	    lokr__mul_i64(out, cols, &total) || p > INT32_MAX || q > INT32_MAX ||
	    (uint64_t)total > SIZE_MAX / sizeof(double))
		return lokr__fail(err, LOKR_ERANGE,
		                  "extract: layer (%lld, %lld, kk %lld) too large", (long long)out,
		                  (long long)in, (long long)kk);
	int64_t rank = opts ? opts->rank : 0;
	int both = opts ? opts->decompose_both : 0;
	int sweeps = opts && opts->refine >= 0 ? opts->refine : EXTRACT_REFINE_DEF;
	int method = opts ? opts->method : LOKR_EXTRACT_AUTO;
	if (rank < 0)
		return lokr__fail(err, LOKR_EINVAL, "extract: negative rank %lld", (long long)rank);
	int w1_low, w2_low;
	lokr_extract_lowrank(&s, kk, rank, both, &w1_low, &w2_low);

	double n2sum = 0;
	for (int64_t x = 0; x < total; x++) {
		if (!isfinite(dw[x]))
			return lokr__fail(
			    err, LOKR_EINVAL,
			    "extract: non-finite value %g in dW at row %lld, column %lld",
			    (double)dw[x], (long long)(x / cols), (long long)(x % cols));
		n2sum += (double)dw[x] * (double)dw[x];
	}

	fit->split = s;
	fit->kk = kk;
	fit->rank = (w1_low || w2_low) ? rank : 0;
	fit->w1_lowrank = w1_low;
	fit->w2_lowrank = w2_low;
	fit->norm = sqrt(n2sum);
	fit->params = lokr_extract_params(&s, kk, rank, both);

	int64_t fmax = s.m1 > s.m2 ? s.m1 : s.m2;
	int64_t gmax = s.n1 > c ? s.n1 : c;
	int64_t rr = rank > 0 ? rank : 1;
	struct work w = {0};
	w.r = lokr__try_malloc((size_t)total * sizeof(double));
	w.a = lokr__try_malloc((size_t)p * sizeof(double));
	w.b = lokr__try_malloc((size_t)q * sizeof(double));
	w.ta = lokr__try_malloc((size_t)p * sizeof(double));
	w.tb = lokr__try_malloc((size_t)q * sizeof(double));
	w.fa = lokr__try_malloc((size_t)(fmax * rr > p ? fmax * rr : p) * sizeof(double));
	w.fb = lokr__try_malloc((size_t)(gmax * rr > q ? gmax * rr : q) * sizeof(double));
	int rc = LOKR_OK;
	if (!w.r || !w.a || !w.b || !w.ta || !w.tb || !w.fa || !w.fb) {
		rc = lokr__fail(err, LOKR_ENOMEM,
		                "extract: out of memory for a %lld x %lld rearrangement",
		                (long long)p, (long long)q);
		goto out;
	}
	/* R[i*n1 + k, j*c + t] = dW[i*m2 + j, k*c + t] */
	for (int64_t i = 0; i < s.m1; i++)
		for (int64_t k = 0; k < s.n1; k++) {
			double *row = w.r + (i * s.n1 + k) * q;
			for (int64_t j = 0; j < s.m2; j++) {
				const float *src = dw + (i * s.m2 + j) * cols + k * c;
				for (int64_t t = 0; t < c; t++)
					row[j * c + t] = src[t];
			}
		}

	double sigma = 0;
	if (n2sum > 0) {
		int64_t mn = p < q ? p : q;
		if (method == LOKR_EXTRACT_GRAM ||
		    (method == LOKR_EXTRACT_AUTO && mn <= LOKR_EXTRACT_GRAM_MAX))
			rc = top_pair_gram(w.r, p, q, &sigma, w.a, w.b, err);
		else
			rc = top_pair_iterate(w.r, p, q, &sigma, w.a, w.b, &fit->sweeps, err);
		if (rc)
			goto out;
	} else {
		memset(w.a, 0, (size_t)p * sizeof(double));
		memset(w.b, 0, (size_t)q * sizeof(double));
	}
	fit->sigma1 = sigma;
	{
		double x = n2sum > 0 ? 1.0 - sigma * sigma / n2sum : 0.0;
		fit->err_nkp = x > 0 ? sqrt(x) : 0.0;
	}
	/* Deterministic sign: the largest |entry| of u is positive. */
	{
		int64_t im = 0;
		for (int64_t i = 1; i < p; i++)
			if (fabs(w.a[i]) > fabs(w.a[im]))
				im = i;
		double sg = w.a[im] < 0 ? -1.0 : 1.0;
		double h = sqrt(sigma);
		for (int64_t i = 0; i < p; i++)
			w.a[i] *= sg * h;
		for (int64_t i = 0; i < q; i++)
			w.b[i] *= sg * h;
	}
	if (w1_low || w2_low) {
		if (w1_low && (rc = truncate_rank(w.a, s.m1, s.n1, rank, NULL, NULL, err)))
			goto out;
		if (w2_low && (rc = truncate_rank(w.b, s.m2, c, rank, NULL, NULL, err)))
			goto out;
		if ((rc = refine(&w, &s, c, rank, w1_low, w2_low, sweeps, n2sum, err)))
			goto out;
		/* balance the magnitudes of the two factors (better for f16/bf16 files) */
		double na = sqrt(dot(w.a, w.a, p)), nb = sqrt(dot(w.b, w.b, q));
		if (na > 0 && nb > 0) {
			double g = sqrt(nb / na);
			for (int64_t i = 0; i < p; i++)
				w.a[i] *= g;
			for (int64_t i = 0; i < q; i++)
				w.b[i] /= g;
		}
	}
	if ((rc = store_factor(w.a, s.m1, s.n1, rank, w1_low, &fit->w1, &fit->w1_a, &fit->w1_b,
	                       w.fa, w.fb, err)))
		goto out;
	if ((rc = store_factor(w.b, s.m2, c, rank, w2_low, &fit->w2, &fit->w2_a, &fit->w2_b, w.fa,
	                       w.fb, err)))
		goto out;

	/* Exact error of the float factors as stored. */
	materialize(&fit->w1, &fit->w1_a, &fit->w1_b, w.a);
	materialize(&fit->w2, &fit->w2_a, &fit->w2_b, w.b);
	{
		double e2 = 0;
		for (int64_t x = 0; x < p; x++) {
			const double *row = w.r + x * q;
			double ax = w.a[x];
			for (int64_t y = 0; y < q; y++) {
				double d = row[y] - ax * w.b[y];
				e2 += d * d;
			}
		}
		fit->resid = sqrt(e2);
		fit->rel_err = n2sum > 0 ? sqrt(e2 / n2sum) : 0.0;
	}
out:
	free(w.r);
	free(w.a);
	free(w.b);
	free(w.ta);
	free(w.tb);
	free(w.fa);
	free(w.fb);
	if (rc)
		lokr_extract_fit_free(fit);
	return rc;
}

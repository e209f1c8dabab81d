/*
 * delta.c - the dense delta s * dW of one adapter module, flat (out x in*kk),
 * for every stored variant (lycoris-format.md 3.1, 3.2, 6.1, 6.2):
 *
 *   LoKr  W1 (full | w1_a w1_b) (x) W2 (full | w2_a w2_b | Tucker t2, w2_a, w2_b)
 *   LoHa  (w1_a w1_b) .* (w2_a w2_b), plain or Tucker (t1, t2)
 *   LoRA  up down, or up (mid) down with a Tucker mid (LoCon)
 *
 * Factor products go through cblas_sgemm (OpenBLAS): they are small, but a
 * LoRA product is a real GEMM and there is no reason to hand-write one.  The
 * Kronecker expansion itself is a plain loop over the output, which is
 * memory-bound.  This is the exact reference the factored kernels
 * (lib/kron.c) are tested against, and what merge (lib/merge.c) adds.
 *
 * Also home of the two expansions other modules share (internal.h):
 * lokr__lokr_factors (dense W1 and W2flat) and lokr__tucker_core.
 */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "internal.h"

/* Shapes of a module come from the loader, which validated them against the
 * file; they are re-checked here because lokr_module is a public struct that
 * a caller can fill by hand, and a wrong shape would read out of bounds. */
static int mat_is(const lokr_mat *x, int64_t rows, int64_t cols)
{
	return x->data && x->rows == rows && x->cols == cols;
}

/* Every dimension handed to BLAS must fit its int. */
static int dims_ok(int64_t a, int64_t b)
{
	return a > 0 && b > 0 && a <= INT_MAX && b <= INT_MAX;
}

/* Elements of a rows x cols matrix, or 0 on overflow / non-positive dims. */
static size_t mat_elems(int64_t rows, int64_t cols)
{
	uint64_t n;
	if (rows <= 0 || cols <= 0 || lokr__mul_u64((uint64_t)rows, (uint64_t)cols, &n) ||
	    n > SIZE_MAX / sizeof(float))
		return 0;
	return (size_t)n;
}

void lokr__tucker_core(const float *t, int64_t r, const float *wb, int64_t q, int64_t kk,
                       float *dst)
{
	/* dst[a, q*kk + k] = sum_b t[a, b, k] wb[b, q]: for every a, the (q x kk)
	 * block is wb^T (q x r) times the (r x kk) slice t[a, :, :]. */
	for (int64_t a = 0; a < r; a++)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)q, (int)kk, (int)r, 1.0f,
		            wb, (int)q, t + (size_t)a * (size_t)r * (size_t)kk, (int)kk, 0.0f,
		            dst + (size_t)a * (size_t)q * (size_t)kk, (int)kk);
}

int lokr__lokr_check(const lokr_module *m)
{
	if (m->algo != LOKR_ALGO_LOKR || m->kk <= 0 || m->m1 <= 0 || m->n1 <= 0 || m->m2 <= 0 ||
	    m->n2 <= 0)
		return LOKR_EINVAL;
	int64_t out, in, n2kk;
	if (lokr__mul_i64(m->m1, m->m2, &out) || lokr__mul_i64(m->n1, m->n2, &in) ||
	    lokr__mul_i64(m->n2, m->kk, &n2kk) || out != m->out || in != m->in ||
	    !dims_ok(m->m1, m->n1) || !dims_ok(m->m2, n2kk) || !mat_elems(m->out, m->in * m->kk))
		return LOKR_EINVAL;
	if (m->w1.data) {
		if (!mat_is(&m->w1, m->m1, m->n1))
			return LOKR_EINVAL;
	} else {
		int64_t r = m->w1_a.cols;
		if (!dims_ok(r, 1) || !mat_is(&m->w1_a, m->m1, r) || !mat_is(&m->w1_b, r, m->n1))
			return LOKR_EINVAL;
	}
	if (m->w2.data) {
		if (!mat_is(&m->w2, m->m2, n2kk))
			return LOKR_EINVAL;
	} else if (m->t2.data) {
		int64_t r = m->w2_b.rows, rr;
		if (!dims_ok(r, m->kk) || lokr__mul_i64(r, r, &rr) || !mat_is(&m->t2, rr, m->kk) ||
		    !mat_is(&m->w2_a, r, m->m2) || !mat_is(&m->w2_b, r, m->n2) ||
		    !mat_elems(r, n2kk))
			return LOKR_EINVAL;
	} else {
		int64_t r = m->w2_a.cols;
		if (!dims_ok(r, 1) || !mat_is(&m->w2_a, m->m2, r) || !mat_is(&m->w2_b, r, n2kk))
			return LOKR_EINVAL;
	}
	return LOKR_OK;
}

int lokr__lokr_factors(const lokr_module *m, float *w1, float *w2)
{
	int rc = lokr__lokr_check(m);
	if (rc)
		return rc;
	const int m1 = (int)m->m1, n1 = (int)m->n1, m2 = (int)m->m2;
	const int n2kk = (int)(m->n2 * m->kk);
	if (w1) {
		if (m->w1.data) {
			memcpy(w1, m->w1.data, (size_t)m1 * (size_t)n1 * sizeof(float));
		} else {
			int r = (int)m->w1_a.cols;
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m1, n1, r, 1.0f,
			            m->w1_a.data, r, m->w1_b.data, n1, 0.0f, w1, n1);
		}
	}
	if (!w2)
		return LOKR_OK;
	if (m->w2.data) {
		memcpy(w2, m->w2.data, (size_t)m2 * (size_t)n2kk * sizeof(float));
	} else if (m->t2.data) {
		int r = (int)m->w2_b.rows;
		float *tmp = lokr__try_malloc((size_t)r * (size_t)n2kk * sizeof(float));
		if (!tmp)
			return LOKR_ENOMEM;
		lokr__tucker_core(m->t2.data, r, m->w2_b.data, m->n2, m->kk, tmp);
		/* W2flat[p, :] = sum_a w2_a[a, p] tmp[a, :]  (w2_a is r x m2) */
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m2, n2kk, r, 1.0f,
		            m->w2_a.data, m2, tmp, n2kk, 0.0f, w2, n2kk);
		free(tmp);
	} else {
		int r = (int)m->w2_a.cols;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m2, n2kk, r, 1.0f,
		            m->w2_a.data, r, m->w2_b.data, n2kk, 0.0f, w2, n2kk);
	}
	return LOKR_OK;
}

static int delta_lokr(const lokr_module *m, float *dst)
{
	int rc = lokr__lokr_check(m);
	if (rc)
		return rc;
	const size_t m1 = (size_t)m->m1, n1 = (size_t)m->n1, m2 = (size_t)m->m2;
	const size_t n2kk = (size_t)(m->n2 * m->kk), cols = n1 * n2kk;
	float *w1 = lokr__try_malloc(m1 * n1 * sizeof(float));
	float *w2 = lokr__try_malloc(m2 * n2kk * sizeof(float));
	if (!w1 || !w2) {
		rc = LOKR_ENOMEM;
		goto out;
	}
	rc = lokr__lokr_factors(m, w1, w2);
	if (rc)
		goto out;
	const float s = m->scale;
	for (size_t i = 0; i < m1; i++) {
		for (size_t j = 0; j < m2; j++) {
			float *row = dst + (i * m2 + j) * cols;
			const float *b = w2 + j * n2kk;
			for (size_t k = 0; k < n1; k++) {
				const float c = s * w1[i * n1 + k];
				float *blk = row + k * n2kk;
				for (size_t t = 0; t < n2kk; t++)
					blk[t] = c * b[t];
			}
		}
	}
out:
	free(w1);
	free(w2);
	return rc;
}

/* One Hadamard operand of LoHa, R = w_a w_b (plain) or the Tucker rebuild.
 * Rows [p0, p0 + n) of R land in dst (n x cols). */
typedef struct loha_term {
	const float *a; /* plain: (out x r); Tucker: (r x out) */
	const float *b; /* plain: w_b (r x cols); Tucker: the core product (r x cols) */
	float *owned;   /* the Tucker core product, freed by the caller */
	int r, tucker;
	int64_t out;
} loha_term;

static int loha_term_init(const lokr_module *m, const lokr_mat *wa, const lokr_mat *wb,
                          const lokr_mat *t, loha_term *term)
{
	const int64_t out = m->out, cols = m->in * m->kk;
	memset(term, 0, sizeof *term);
	term->out = out;
	if (t->data) {
		int64_t r = wb->rows, rr;
		if (!dims_ok(r, m->kk) || !dims_ok(m->in, out) || lokr__mul_i64(r, r, &rr) ||
		    !mat_is(t, rr, m->kk) || !mat_is(wa, r, out) || !mat_is(wb, r, m->in) ||
		    !mat_elems(r, cols))
			return LOKR_EINVAL;
		term->owned = lokr__try_malloc(mat_elems(r, cols) * sizeof(float));
		if (!term->owned)
			return LOKR_ENOMEM;
		lokr__tucker_core(t->data, r, wb->data, m->in, m->kk, term->owned);
		term->a = wa->data;
		term->b = term->owned;
		term->r = (int)r;
		term->tucker = 1;
	} else {
		int64_t r = wa->cols;
		if (!dims_ok(r, 1) || !mat_is(wa, out, r) || !mat_is(wb, r, cols))
			return LOKR_EINVAL;
		term->a = wa->data;
		term->b = wb->data;
		term->r = (int)r;
	}
	return LOKR_OK;
}

static void loha_term_rows(const loha_term *term, int64_t p0, int n, int cols, float *dst)
{
	if (term->tucker)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, cols, term->r, 1.0f,
		            term->a + p0, (int)term->out, term->b, cols, 0.0f, dst, cols);
	else
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, cols, term->r, 1.0f,
		            term->a + (size_t)p0 * (size_t)term->r, term->r, term->b, cols, 0.0f,
		            dst, cols);
}

/* LoHa dW is not low-rank, so it is built whole, a block of rows at a time:
 * R1 goes straight into dst, R2 into a block-sized scratch. */
static int delta_loha(const lokr_module *m, float *dst)
{
	const int64_t out = m->out, cols64 = m->in * m->kk;
	if (!dims_ok(out, cols64) || !mat_elems(out, cols64))
		return LOKR_EINVAL;
	const int cols = (int)cols64;
	loha_term t1, t2;
	memset(&t2, 0, sizeof t2);
	float *scratch = NULL;
	int rc = loha_term_init(m, &m->hada_w1_a, &m->hada_w1_b, &m->hada_t1, &t1);
	if (rc)
		return rc;
	rc = loha_term_init(m, &m->hada_w2_a, &m->hada_w2_b, &m->hada_t2, &t2);
	if (rc)
		goto out;
	if ((m->hada_t1.data != NULL) != (m->hada_t2.data != NULL)) {
		rc = LOKR_EINVAL;
		goto out;
	}
	/* About 256 KiB of scratch: large enough for an efficient GEMM. */
	int64_t block = 65536 / cols64;
	if (block < 1)
		block = 1;
	if (block > out)
		block = out;
	scratch = lokr__try_malloc((size_t)block * (size_t)cols * sizeof(float));
	if (!scratch) {
		rc = LOKR_ENOMEM;
		goto out;
	}
	const float s = m->scale;
	for (int64_t p0 = 0; p0 < out; p0 += block) {
		int n = (int)(out - p0 < block ? out - p0 : block);
		float *d = dst + (size_t)p0 * (size_t)cols;
		loha_term_rows(&t1, p0, n, cols, d);
		loha_term_rows(&t2, p0, n, cols, scratch);
		for (size_t e = 0; e < (size_t)n * (size_t)cols; e++)
			d[e] = s * d[e] * scratch[e];
	}
out:
	free(scratch);
	free(t1.owned);
	free(t2.owned);
	return rc;
}

static int delta_lora(const lokr_module *m, float *dst)
{
	const int64_t out = m->out, cols64 = m->in * m->kk;
	if (!dims_ok(out, cols64) || !mat_elems(out, cols64))
		return LOKR_EINVAL;
	const int64_t r = m->up.cols;
	const int cols = (int)cols64;
	if (!dims_ok(r, 1) || !mat_is(&m->up, out, r))
		return LOKR_EINVAL;
	const float *down = m->down.data;
	float *owned = NULL;
	if (m->mid.data) {
		int64_t rr;
		if (!dims_ok(m->kk, m->in) || lokr__mul_i64(r, r, &rr) ||
		    !mat_is(&m->mid, rr, m->kk) || !mat_is(&m->down, r, m->in))
			return LOKR_EINVAL;
		owned = lokr__try_malloc(mat_elems(r, cols64) * sizeof(float));
		if (!owned)
			return LOKR_ENOMEM;
		lokr__tucker_core(m->mid.data, r, m->down.data, m->in, m->kk, owned);
		down = owned;
	} else if (!mat_is(&m->down, r, cols64)) {
		return LOKR_EINVAL;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)out, cols, (int)r, m->scale,
	            m->up.data, (int)r, down, cols, 0.0f, dst, cols);
	free(owned);
	return LOKR_OK;
}

int lokr_module_delta(const lokr_module *m, float *dst)
{
	if (!m || !dst)
		return LOKR_EINVAL;
	switch (m->algo) {
	case LOKR_ALGO_LOKR:
		return delta_lokr(m, dst);
	case LOKR_ALGO_LOHA:
		return delta_loha(m, dst);
	case LOKR_ALGO_LORA:
		return delta_lora(m, dst);
	}
	return LOKR_EINVAL;
}

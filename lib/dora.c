/*
 * dora.c - the DoRA vector g = dora_scale / (|V| + 2^-23), V = W0 + s dW,
 * the norm taken per output row (LOKR_DORA_OUT) or per input channel over
 * all outputs and kernel taps (LOKR_DORA_IN); lycoris-format.md 5.2, 5.6.
 *
 * g does not depend on the user's strength, so the loader computes it once
 * per (layer, adapter) and merge / apply read it from m->dora_g.  For LoKr and
 * LoRA the norms come from the factors, never from a dense dW:
 *
 *   |V_o|^2 = |W0_o|^2 + 2 s <W0_o, dW_o> + s^2 |dW_o|^2
 *
 * LoKr row o = i*m2 + j:  <W0_o, dW_o> = sum_k W1[i,k] <W0_o block k, W2flat[j,:]>
 * and |dW_o|^2 = |W1[i,:]|^2 |W2flat[j,:]|^2.  LoRA: <W0_o, dW_o> = up_o . P_o
 * with P = W0 D^T (D = down, or mid*down for Tucker) and |dW_o|^2 = up_o G up_o^T,
 * G = D D^T.  The input axis is the same sums taken down the columns.  LoHa
 * dW is not low-rank, so V is built densely.
 *
 * Cost: one pass over W0, which is the only large operand, read row by row
 * as a single stream (several concurrent row streams measured much slower).
 * The inner loops are contiguous multiply-adds over a row of W0 written with
 * GCC vector extensions (8 lanes; AVX2+FMA clone on x86-64), their float
 * partial sums flushed to double every 128 elements, 16 W1 columns or 16
 * rows, because the expansion above cancels.  LoKr picks one of three row
 * kernels from the W2 row length n2*kk: one dot product per W1 column (long
 * rows), folding the row into u = sum_k W1[i,k] W0_o[k,:] (medium), or
 * full-row tiles of W1 and W2 (short rows).  LoRA's W0 D^T is a GEMM
 * (out*in*kk*r multiply-adds) and goes to cblas_sgemm one row block at a time,
 * so the block is still in cache when its norms are taken; it is
 * compute-bound, not bandwidth-bound.
 */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "internal.h"

#define DORA_EPS      1.1920928955078125e-07 /* 2^-23, float32 machine epsilon */
#define FLUSH_ELEMS   128                    /* float partials per double flush */
#define FLUSH_ROWS    16                     /* rows per flush of column accumulators */
#define FLUSH_BLOCKS  16                     /* W1 columns per flush of the row accumulator */
#define SMALL_BLOCK   16                     /* below this W2 row length, use row tiles */
#define TILE_CAP      (1u << 20)             /* floats of prebuilt T_j tiles (4 MiB) */
#define LONG_BLOCK    64  /* from this W2 row length on, one dot product per W1 column */
#define LORA_ROWBLOCK 128 /* rows of W0 per GEMM in the LoRA path */

/* The kernels are compiled twice on x86-64 with GCC: for the baseline and for
 * x86-64-v3 (AVX2 + FMA), picked at load time (ifunc).  They take pointers
 * only, so the 8-lane vector type never crosses a call boundary. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KERNEL __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define KERNEL
#endif

typedef float v8f __attribute__((vector_size(32)));
typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias));

#define LOAD8(p)     (*(const v8f_u *)(p))
#define STORE8(p, v) (*(v8f_u *)(p) = (v))
#define HSUM8(v)                                                                                   \
	((((double)(v)[0] + (v)[1]) + ((double)(v)[2] + (v)[3])) +                                 \
	 (((double)(v)[4] + (v)[5]) + ((double)(v)[6] + (v)[7])))

/* *dot += <x, w>, *sq += <x, x> over n floats. */
KERNEL static void dot_sq(const float *x, const float *w, size_t n, double *dot, double *sq)
{
	double d = 0, q = 0;
	size_t i = 0;
	while (n - i >= 16) {
		size_t end = n - i > FLUSH_ELEMS ? i + FLUSH_ELEMS : n;
		v8f d0 = {0}, d1 = {0}, q0 = {0}, q1 = {0};
		for (; end - i >= 16; i += 16) {
			v8f x0 = LOAD8(x + i), x1 = LOAD8(x + i + 8);
			d0 += x0 * LOAD8(w + i);
			d1 += x1 * LOAD8(w + i + 8);
			q0 += x0 * x0;
			q1 += x1 * x1;
		}
		v8f dd = d0 + d1, qq = q0 + q1;
		d += HSUM8(dd);
		q += HSUM8(qq);
	}
	for (; i < n; i++) {
		d += (double)x[i] * w[i];
		q += (double)x[i] * x[i];
	}
	*dot += d;
	*sq += q;
}

/* <x, x> over n floats. */
KERNEL static double sum_sq(const float *x, size_t n)
{
	double q = 0;
	size_t i = 0;
	while (n - i >= 16) {
		size_t end = n - i > FLUSH_ELEMS ? i + FLUSH_ELEMS : n;
		v8f q0 = {0}, q1 = {0};
		for (; end - i >= 16; i += 16) {
			v8f x0 = LOAD8(x + i), x1 = LOAD8(x + i + 8);
			q0 += x0 * x0;
			q1 += x1 * x1;
		}
		v8f qq = q0 + q1;
		q += HSUM8(qq);
	}
	for (; i < n; i++)
		q += (double)x[i] * x[i];
	return q;
}

/* One output row of LoKr, W2 rows of n2kk >= 8 floats: the row X (n1 x n2kk)
 * is folded into u = sum_k W1[i,k] X[k,:] (no horizontal sum per block), then
 * <W0_o, K_o> = <u, W2flat[j,:]>.  u is float within FLUSH_BLOCKS columns of
 * W1 and double (ud) across them. */
KERNEL static void row_out(const float *x, const float *w1row, const float *w2row, size_t n1,
                           size_t n2kk, float *u, double *ud, double *sq, double *cross)
{
	double q = 0;
	memset(ud, 0, n2kk * sizeof(double));
	for (size_t k0 = 0; k0 < n1; k0 += FLUSH_BLOCKS) {
		size_t k1 = n1 - k0 > FLUSH_BLOCKS ? k0 + FLUSH_BLOCKS : n1;
		memset(u, 0, n2kk * sizeof(float));
		for (size_t k = k0; k < k1; k += 2) {
			const float *x0 = x + k * n2kk;
			const float *x1 = k + 1 < k1 ? x0 + n2kk : x0;
			const float c0 = w1row[k], c1 = k + 1 < k1 ? w1row[k + 1] : 0.0f;
			/* an odd last column reads x0 twice with weight 0 */
			const float both = k + 1 < k1 ? 1.0f : 0.0f;
			v8f cv0 = (v8f){0} + c0, cv1 = (v8f){0} + c1, mv = (v8f){0} + both;
			v8f q0 = {0}, q1 = {0};
			size_t t = 0;
			for (; n2kk - t >= 8; t += 8) {
				v8f a = LOAD8(x0 + t), b = LOAD8(x1 + t);
				STORE8(u + t, LOAD8(u + t) + cv0 * a + cv1 * b);
				q0 += a * a;
				q1 += b * b;
			}
			q1 *= mv;
			v8f qq = q0 + q1;
			q += HSUM8(qq);
			for (; t < n2kk; t++) {
				u[t] += c0 * x0[t] + c1 * x1[t];
				q += (double)x0[t] * x0[t] + (double)both * x1[t] * x1[t];
			}
		}
		for (size_t t = 0; t < n2kk; t++)
			ud[t] += u[t];
	}
	double cr = 0;
	for (size_t t = 0; t < n2kk; t++)
		cr += ud[t] * w2row[t];
	*sq += q;
	*cross += cr;
}

/* Input axis, one whole row x (n1 blocks of n2kk) read front to back:
 * as += x .* x, ac[k-block] += W1[i,k] x[k-block] .* W2flat[j,:]. */
KERNEL static void acc_row(float *as, float *ac, const float *x, const float *w1row,
                           const float *w2row, size_t n1, size_t n2kk)
{
	for (size_t k = 0; k < n1; k++) {
		const v8f cv = (v8f){0} + w1row[k];
		const float *xk = x + k * n2kk;
		float *sk = as + k * n2kk, *ck = ac + k * n2kk;
		size_t t = 0;
		for (; n2kk - t >= 8; t += 8) {
			v8f a = LOAD8(xk + t);
			STORE8(sk + t, LOAD8(sk + t) + a * a);
			STORE8(ck + t, LOAD8(ck + t) + cv * (a * LOAD8(w2row + t)));
		}
		for (; t < n2kk; t++) {
			sk[t] += xk[t] * xk[t];
			ck[t] += w1row[k] * (xk[t] * w2row[t]);
		}
	}
}

/* as += x .* x over n floats. */
KERNEL static void acc_sq(float *as, const float *x, size_t n)
{
	size_t i = 0;
	for (; n - i >= 8; i += 8) {
		v8f xv = LOAD8(x + i);
		STORE8(as + i, LOAD8(as + i) + xv * xv);
	}
	for (; i < n; i++)
		as[i] += x[i] * x[i];
}

/* dst[e] += src[e] in double, then src cleared. */
static void flush(double *dst, float *src, size_t n)
{
	for (size_t e = 0; e < n; e++)
		dst[e] += src[e];
	memset(src, 0, n * sizeof(float));
}

/* Short W2 rows (n2kk < SMALL_BLOCK) are not worth a loop of their own: the
 * row K_o = W1[i,:] (x) W2flat[j,:] is R_i .* T_j with R_i = W1[i,k] repeated
 * n2kk times and T_j = W2flat[j,:] repeated n1 times, both full-row vectors.
 * R_i changes every m2 rows; all T_j are built once when they fit TILE_CAP
 * floats, else T_j is rebuilt per row. */
static void tile_r(float *r, const float *w1row, size_t n1, size_t n2kk)
{
	for (size_t k = 0; k < n1; k++)
		for (size_t t = 0; t < n2kk; t++)
			r[k * n2kk + t] = w1row[k];
}

static void tile_t(float *tj, const float *w2row, size_t n1, size_t n2kk)
{
	for (size_t k = 0; k < n1; k++)
		memcpy(tj + k * n2kk, w2row, n2kk * sizeof(float));
}

/* T_j: prebuilt, or rebuilt into the single buffer. */
static const float *tile_of(float *tt, int all_t, const float *w2row, size_t j, size_t n1,
                            size_t n2kk)
{
	if (all_t)
		return tt + j * n1 * n2kk;
	tile_t(tt, w2row, n1, n2kk);
	return tt;
}

/* *dot += <x, r .* t>, *sq += <x, x> over n floats. */
KERNEL static void dot3_sq(const float *x, const float *r, const float *t, size_t n, double *dot,
                           double *sq)
{
	double d = 0, q = 0;
	size_t i = 0;
	while (n - i >= 16) {
		size_t end = n - i > FLUSH_ELEMS ? i + FLUSH_ELEMS : n;
		v8f d0 = {0}, d1 = {0}, q0 = {0}, q1 = {0};
		for (; end - i >= 16; i += 16) {
			v8f x0 = LOAD8(x + i), x1 = LOAD8(x + i + 8);
			d0 += x0 * (LOAD8(r + i) * LOAD8(t + i));
			d1 += x1 * (LOAD8(r + i + 8) * LOAD8(t + i + 8));
			q0 += x0 * x0;
			q1 += x1 * x1;
		}
		v8f dd = d0 + d1, qq = q0 + q1;
		d += HSUM8(dd);
		q += HSUM8(qq);
	}
	for (; i < n; i++) {
		d += (double)x[i] * (r[i] * t[i]);
		q += (double)x[i] * x[i];
	}
	*dot += d;
	*sq += q;
}

/* as += x .* x, ac += x .* r .* t over n floats. */
KERNEL static void acc3(float *as, float *ac, const float *x, const float *r, const float *t,
                        size_t n)
{
	size_t i = 0;
	for (; n - i >= 8; i += 8) {
		v8f a = LOAD8(x + i);
		STORE8(as + i, LOAD8(as + i) + a * a);
		STORE8(ac + i, LOAD8(ac + i) + a * (LOAD8(r + i) * LOAD8(t + i)));
	}
	for (; i < n; i++) {
		as[i] += x[i] * x[i];
		ac[i] += x[i] * (r[i] * t[i]);
	}
}

typedef struct dora_ctx {
	const lokr_layer *layer;
	const lokr_module *m;
	size_t out, in, kk, cols; /* cols = in * kk */
	lokr_error *err;
} dora_ctx;

/* Zeroed; calloc checks count * size for overflow. */
static void *ctx_alloc(dora_ctx *c, size_t count, size_t size)
{
	(void)c;
	return lokr__try_calloc(count, size);
}

static int ctx_nomem(dora_ctx *c)
{
	return lokr__fail(c->err, LOKR_ENOMEM, "dora: module %s on layer %s: out of memory",
	                  c->m->name ? c->m->name : "?", c->layer->name ? c->layer->name : "?");
}

/* ---------------------------------------------------------------- LoKr */

static int lokr_norms(dora_ctx *c, double *nrm)
{
	const lokr_module *m = c->m;
	const size_t m1 = (size_t)m->m1, n1 = (size_t)m->n1, m2 = (size_t)m->m2;
	const size_t n2 = (size_t)m->n2, kk = c->kk, n2kk = n2 * kk, cols = c->cols;
	const double s = m->scale;
	const float *w0 = c->layer->weight;
	int rc = LOKR_OK;
	float *w1 = ctx_alloc(c, m1 * n1, sizeof(float));
	float *w2 = ctx_alloc(c, m2 * n2kk, sizeof(float));
	const int tiled = n2kk < SMALL_BLOCK;
	const int all_t = tiled && m2 <= TILE_CAP / cols;
	float *rt = tiled ? ctx_alloc(c, cols, sizeof(float)) : NULL;
	float *tt = tiled ? ctx_alloc(c, all_t ? m2 * cols : cols, sizeof(float)) : NULL;
	double *f1 = ctx_alloc(c, m1 > n1 ? m1 : n1, sizeof(double));
	double *f2 = ctx_alloc(c, m2 > n2 ? m2 : n2, sizeof(double));
	float *u = ctx_alloc(c, n2kk, sizeof(float));
	double *ud = ctx_alloc(c, n2kk, sizeof(double));
	float *as = NULL, *ac = NULL;
	double *S = NULL, *C = NULL;
	if (!w1 || !w2 || !f1 || !f2 || !u || !ud || (tiled && (!rt || !tt))) {
		rc = ctx_nomem(c);
		goto out;
	}
	rc = lokr__lokr_factors(m, w1, w2);
	if (rc) {
		rc = rc == LOKR_ENOMEM ? ctx_nomem(c)
		                       : lokr__fail(c->err, rc, "dora: module %s: bad LoKr shapes",
		                                    m->name ? m->name : "?");
		goto out;
	}
	if (all_t)
		for (size_t j = 0; j < m2; j++)
			tile_t(tt + j * cols, w2 + j * n2kk, n1, n2kk);
	if (m->dora_axis == LOKR_DORA_OUT) {
		/* f1[i] = |W1[i,:]|^2, f2[j] = |W2flat[j,:]|^2 */
		for (size_t i = 0; i < m1; i++)
			f1[i] = sum_sq(w1 + i * n1, n1);
		for (size_t j = 0; j < m2; j++)
			f2[j] = sum_sq(w2 + j * n2kk, n2kk);
		for (size_t i = 0; i < m1; i++) {
			for (size_t j = 0; j < m2; j++) {
				const size_t o = i * m2 + j;
				const float *row = w0 + o * cols, *b = w2 + j * n2kk;
				double sq = 0, cross = 0;
				if (tiled) {
					if (j == 0)
						tile_r(rt, w1 + i * n1, n1, n2kk);
					dot3_sq(row, rt, tile_of(tt, all_t, b, j, n1, n2kk), cols,
					        &cross, &sq);
				} else if (n2kk >= LONG_BLOCK) {
					for (size_t k = 0; k < n1; k++) {
						double d = 0;
						dot_sq(row + k * n2kk, b, n2kk, &d, &sq);
						cross += (double)w1[i * n1 + k] * d;
					}
				} else {
					row_out(row, w1 + i * n1, b, n1, n2kk, u, ud, &sq, &cross);
				}
				nrm[o] = sq + 2 * s * cross + s * s * f1[i] * f2[j];
			}
		}
		goto out;
	}

	/* Input axis: column sums of W0^2 and W0 .* K, row by row. */
	as = ctx_alloc(c, cols, sizeof(float));
	ac = ctx_alloc(c, cols, sizeof(float));
	S = ctx_alloc(c, cols, sizeof(double));
	C = ctx_alloc(c, cols, sizeof(double));
	if (!as || !ac || !S || !C) {
		rc = ctx_nomem(c);
		goto out;
	}
	for (size_t o = 0; o < c->out; o++) {
		const float *x = w0 + o * cols;
		const float *w1x = w1 + (o / m2) * n1, *w2x = w2 + (o % m2) * n2kk;
		if (tiled) {
			if (o % m2 == 0)
				tile_r(rt, w1x, n1, n2kk);
			acc3(as, ac, x, rt, tile_of(tt, all_t, w2x, o % m2, n1, n2kk), cols);
		} else {
			acc_row(as, ac, x, w1x, w2x, n1, n2kk);
		}
		if ((o + 1) % FLUSH_ROWS == 0 || o + 1 == c->out) {
			flush(S, as, cols);
			flush(C, ac, cols);
		}
	}
	/* f1[k] = sum_i W1[i,k]^2, f2[l] = sum_{j,tap} W2[j, l*kk + tap]^2 */
	for (size_t i = 0; i < m1; i++)
		for (size_t k = 0; k < n1; k++)
			f1[k] += (double)w1[i * n1 + k] * w1[i * n1 + k];
	for (size_t j = 0; j < m2; j++)
		for (size_t t = 0; t < n2kk; t++)
			f2[t / kk] += (double)w2[j * n2kk + t] * w2[j * n2kk + t];
	for (size_t ch = 0; ch < c->in; ch++) {
		double v = 0;
		for (size_t tap = 0; tap < kk; tap++)
			v += S[ch * kk + tap] + 2 * s * C[ch * kk + tap];
		nrm[ch] = v + s * s * f1[ch / n2] * f2[ch % n2];
	}
out:
	free(w1);
	free(w2);
	free(rt);
	free(tt);
	free(u);
	free(ud);
	free(f1);
	free(f2);
	free(as);
	free(ac);
	free(S);
	free(C);
	return rc;
}

/* ---------------------------------------------------------------- LoRA */

static int lora_norms(dora_ctx *c, double *nrm)
{
	const lokr_module *m = c->m;
	const size_t out = c->out, cols = c->cols, kk = c->kk;
	const int64_t r64 = m->up.cols;
	const double s = m->scale;
	const float *w0 = c->layer->weight;
	int rc = LOKR_OK;
	float *dmat = NULL, *blk = NULL, *accs = NULL;
	double *dd = NULL, *gram = NULL, *q = NULL, *e = NULL, *S = NULL, *upd = NULL, *ug = NULL;

	/* The same shape rules as lokr_module_delta. */
	int64_t rr;
	int bad = r64 <= 0 || r64 > 65536 || !m->up.data || m->up.rows != m->out || !m->down.data ||
	          m->down.rows != r64;
	if (!bad && m->mid.data)
		bad = lokr__mul_i64(r64, r64, &rr) || m->mid.rows != rr || m->mid.cols != m->kk ||
		      m->down.cols != m->in;
	else if (!bad)
		bad = m->down.cols != (int64_t)cols;
	if (bad)
		return lokr__fail(c->err, LOKR_EINVAL, "dora: module %s: bad LoRA shapes",
		                  m->name ? m->name : "?");
	const size_t r = (size_t)r64;
	const float *down = m->down.data;
	if (m->mid.data) {
		dmat = ctx_alloc(c, r * cols, sizeof(float));
		if (!dmat)
			return ctx_nomem(c);
		lokr__tucker_core(m->mid.data, r64, m->down.data, m->in, m->kk, dmat);
		down = dmat;
	}
	dd = ctx_alloc(c, r * cols, sizeof(double));
	gram = ctx_alloc(c, r * r, sizeof(double));
	blk =
	    ctx_alloc(c, (m->dora_axis == LOKR_DORA_OUT ? LORA_ROWBLOCK : cols), r * sizeof(float));
	if (!dd || !gram || !blk) {
		rc = ctx_nomem(c);
		goto out;
	}
	for (size_t x = 0; x < r * cols; x++)
		dd[x] = down[x];
	const float *up = m->up.data;
	/* up in double for the r x r quadratic forms (dgemm, out * r^2) */
	upd = ctx_alloc(c, out * r, sizeof(double));
	ug = ctx_alloc(c, m->dora_axis == LOKR_DORA_OUT ? out * r : 1, sizeof(double));
	if (!upd || !ug) {
		rc = ctx_nomem(c);
		goto out;
	}
	for (size_t x = 0; x < out * r; x++)
		upd[x] = up[x];

	if (m->dora_axis == LOKR_DORA_OUT) {
		/* gram = D D^T */
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)r, (int)r, (int)cols, 1.0,
		            dd, (int)cols, dd, (int)cols, 0.0, gram, (int)r);
		/* ug = up gram, so |dW_o|^2 = sum_a up[o,a] ug[o,a] */
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)out, (int)r, (int)r,
		            1.0, upd, (int)r, gram, (int)r, 0.0, ug, (int)r);
		for (size_t o0 = 0; o0 < out; o0 += LORA_ROWBLOCK) {
			size_t nb = out - o0 < LORA_ROWBLOCK ? out - o0 : LORA_ROWBLOCK;
			const float *rows = w0 + o0 * cols;
			/* blk (nb x r) = W0 rows . D^T */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)r,
			            (int)cols, 1.0f, rows, (int)cols, down, (int)cols, 0.0f, blk,
			            (int)r);
			for (size_t b = 0; b < nb; b++) {
				const float *u = up + (o0 + b) * r;
				double cross = 0, quad = 0;
				const double *uga = ug + (o0 + b) * r;
				for (size_t a = 0; a < r; a++) {
					cross += (double)u[a] * blk[b * r + a];
					quad += (double)u[a] * uga[a];
				}
				nrm[o0 + b] =
				    sum_sq(rows + b * cols, cols) + 2 * s * cross + s * s * quad;
			}
		}
		goto out;
	}

	/* Input axis: Q = up^T W0 (r x cols) and column sums of W0^2, by row blocks. */
	q = ctx_alloc(c, r * cols, sizeof(double));
	e = ctx_alloc(c, r * cols, sizeof(double));
	S = ctx_alloc(c, cols, sizeof(double));
	accs = ctx_alloc(c, cols, sizeof(float));
	if (!q || !e || !S || !accs) {
		rc = ctx_nomem(c);
		goto out;
	}
	for (size_t o0 = 0; o0 < out; o0 += LORA_ROWBLOCK) {
		size_t nb = out - o0 < LORA_ROWBLOCK ? out - o0 : LORA_ROWBLOCK;
		const float *rows = w0 + o0 * cols;
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)cols, (int)nb,
		            1.0f, up + o0 * r, (int)r, rows, (int)cols, 0.0f, blk, (int)cols);
		for (size_t x = 0; x < r * cols; x++)
			q[x] += blk[x];
		for (size_t b = 0; b < nb; b++) {
			acc_sq(accs, rows + b * cols, cols);
			if ((b + 1) % FLUSH_ROWS == 0 || b + 1 == nb)
				flush(S, accs, cols);
		}
	}
	/* gram = up^T up; e = gram D, so |dW[:, x]|^2 = sum_a D[a,x] e[a,x] */
	cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)r, (int)out, 1.0, upd,
	            (int)r, upd, (int)r, 0.0, gram, (int)r);
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)r, (int)cols, (int)r, 1.0, gram,
	            (int)r, dd, (int)cols, 0.0, e, (int)cols);
	for (size_t a = 0; a < r; a++) {
		const double *da = dd + a * cols, *qa = q + a * cols, *ea = e + a * cols;
		for (size_t x = 0; x < cols; x++)
			S[x] += da[x] * (2 * s * qa[x] + s * s * ea[x]);
	}
	for (size_t ch = 0; ch < c->in; ch++) {
		double v = 0;
		for (size_t tap = 0; tap < kk; tap++)
			v += S[ch * kk + tap];
		nrm[ch] = v;
	}
out:
	free(dmat);
	free(upd);
	free(ug);
	free(blk);
	free(accs);
	free(dd);
	free(gram);
	free(q);
	free(e);
	free(S);
	return rc;
}

/* ---------------------------------------------------------------- LoHa */

static int dense_norms(dora_ctx *c, double *nrm)
{
	const size_t out = c->out, cols = c->cols, kk = c->kk;
	float *v = ctx_alloc(c, out * cols, sizeof(float));
	if (!v)
		return ctx_nomem(c);
	int rc = lokr_module_delta(c->m, v);
	if (rc) {
		free(v);
		if (rc == LOKR_ENOMEM)
			return ctx_nomem(c);
		return lokr__fail(c->err, rc, "dora: module %s: bad %s shapes",
		                  c->m->name ? c->m->name : "?",
		                  c->m->algo == LOKR_ALGO_LOHA ? "LoHa" : "module");
	}
	const float *w0 = c->layer->weight;
	for (size_t x = 0; x < out * cols; x++)
		v[x] += w0[x];
	if (c->m->dora_axis == LOKR_DORA_OUT) {
		for (size_t o = 0; o < out; o++)
			nrm[o] = sum_sq(v + o * cols, cols);
		free(v);
		return LOKR_OK;
	}
	float *accs = ctx_alloc(c, cols, sizeof(float));
	double *S = ctx_alloc(c, cols, sizeof(double));
	if (!accs || !S) {
		free(v);
		free(accs);
		free(S);
		return ctx_nomem(c);
	}
	for (size_t o = 0; o < out; o++) {
		acc_sq(accs, v + o * cols, cols);
		if ((o + 1) % FLUSH_ROWS == 0 || o + 1 == out)
			flush(S, accs, cols);
	}
	for (size_t ch = 0; ch < c->in; ch++) {
		double t = 0;
		for (size_t tap = 0; tap < kk; tap++)
			t += S[ch * kk + tap];
		nrm[ch] = t;
	}
	free(v);
	free(accs);
	free(S);
	return LOKR_OK;
}

/* ---------------------------------------------------------------- entry */

int lokr__dora_vector(const lokr_layer *layer, const lokr_module *m, float *g, lokr_error *err)
{
	if (!layer || !m || !g)
		return lokr__fail(err, LOKR_EINVAL, "dora: NULL argument");
	const char *name = m->name ? m->name : "?", *lname = layer->name ? layer->name : "?";
	if (m->dora_axis != LOKR_DORA_OUT && m->dora_axis != LOKR_DORA_IN)
		return lokr__fail(err, LOKR_EINVAL, "dora: module %s has no DoRA axis", name);
	if (!m->dora_scale)
		return lokr__fail(err, LOKR_EINVAL, "dora: module %s has no dora_scale", name);
	uint64_t cols, total;
	if (!layer->weight || layer->out <= 0 || layer->in <= 0 || layer->kk <= 0 ||
	    layer->out != m->out || layer->in != m->in || layer->kk != m->kk ||
	    lokr__mul_u64((uint64_t)layer->in, (uint64_t)layer->kk, &cols) ||
	    lokr__mul_u64(cols, (uint64_t)layer->out, &total) || total > SIZE_MAX / sizeof(float) ||
	    cols > INT32_MAX || (uint64_t)layer->out > INT32_MAX)
		return lokr__fail(err, LOKR_EINVAL,
		                  "dora: module %s (%lld x %lld x %lld) does not fit layer %s "
		                  "(%lld x %lld x %lld)",
		                  name, (long long)m->out, (long long)m->in, (long long)m->kk,
		                  lname, (long long)layer->out, (long long)layer->in,
		                  (long long)layer->kk);
	dora_ctx c = {layer,        m,  (size_t)layer->out, (size_t)layer->in, (size_t)layer->kk,
	              (size_t)cols, err};
	const size_t len = m->dora_axis == LOKR_DORA_OUT ? c.out : c.in;
	double *nrm = lokr__try_calloc(len, sizeof(double));
	if (!nrm)
		return ctx_nomem(&c);
	int rc;
	switch (m->algo) {
	case LOKR_ALGO_LOKR:
		rc = lokr__lokr_check(m);
		if (rc) {
			rc = lokr__fail(err, rc, "dora: module %s: bad LoKr shapes", name);
			break;
		}
		rc = lokr_norms(&c, nrm);
		break;
	case LOKR_ALGO_LORA:
		rc = lora_norms(&c, nrm);
		break;
	case LOKR_ALGO_LOHA:
		rc = dense_norms(&c, nrm);
		break;
	default:
		rc = lokr__fail(err, LOKR_EINVAL, "dora: module %s: unknown algo", name);
		break;
	}
	if (rc == LOKR_OK)
		for (size_t x = 0; x < len; x++) {
			double n2 = nrm[x] > 0 ? nrm[x] : 0; /* the expansion may cancel below 0 */
			g[x] = (float)((double)m->dora_scale[x] / (sqrt(n2) + DORA_EPS));
		}
	free(nrm);
	return rc;
}

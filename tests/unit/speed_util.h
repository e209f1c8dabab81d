/*
 * speed_util.h - helpers shared by the kron, plan and exec unit tests:
 * a deterministic RNG, hand-built modules (no file loading), and naive
 * double-precision references written independently of lib/ (explicit
 * index formulas of lycoris-format.md 3.1, 5.3, 6.1, 6.2).
 */
#ifndef LOKR_SPEED_UTIL_H
#define LOKR_SPEED_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kron.h"

typedef struct rng {
	uint64_t s;
} rng;

static inline float rng_f(rng *r)
{
	r->s ^= r->s << 13;
	r->s ^= r->s >> 7;
	r->s ^= r->s << 17;
	return (float)((double)(r->s >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

static inline float *rnd(rng *r, int64_t n, float scale)
{
	float *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
	for (int64_t i = 0; i < n; i++)
		p[i] = rng_f(r) * scale;
	return p;
}

static inline lokr_mat rmat(rng *r, int64_t rows, int64_t cols, float scale)
{
	lokr_mat m = {rows, cols, rnd(r, rows * cols, scale)};
	return m;
}

/* A linear layer with random weight and bias (free with layer_free). */
static inline lokr_layer make_layer(rng *r, int64_t out, int64_t in, int with_bias)
{
	lokr_layer l;
	memset(&l, 0, sizeof l);
	l.name = "test.layer";
	l.kind = LOKR_LAYER_LINEAR;
	l.ndim = 2;
	l.shape[0] = out;
	l.shape[1] = in;
	l.out = out;
	l.in = in;
	l.kk = 1;
	l.weight = rnd(r, out * in, 1.0f / sqrtf((float)in));
	l.bias = with_bias ? rnd(r, out, 0.5f) : NULL;
	return l;
}

static inline void layer_free(lokr_layer *l)
{
	free((void *)l->weight);
	free((void *)l->bias);
}

static inline void mat_free(lokr_mat *m)
{
	free(m->data);
	m->data = NULL;
}

static inline void module_free(lokr_module *m)
{
	lokr_mat *mats[] = {&m->w1,        &m->w1_a,      &m->w1_b,      &m->w2,
	                    &m->w2_a,      &m->w2_b,      &m->t2,        &m->hada_w1_a,
	                    &m->hada_w1_b, &m->hada_w2_a, &m->hada_w2_b, &m->hada_t1,
	                    &m->hada_t2,   &m->up,        &m->down,      &m->mid};
	for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++)
		mat_free(mats[i]);
	free(m->dora_scale);
	free(m->dora_g);
	lokr__plan_free(m->plan);
	memset(m, 0, sizeof *m);
}

/* LoKr module: W1 m1 x n1 (rank r1, 0 = full), W2 m2 x n2*kk (rank r2, 0 = full). */
static inline lokr_module make_lokr(rng *r, int64_t m1, int64_t n1, int64_t m2, int64_t n2,
                                    int64_t r1, int64_t r2, float scale)
{
	lokr_module m;
	memset(&m, 0, sizeof m);
	m.name = "lycoris_test_lokr";
	m.algo = LOKR_ALGO_LOKR;
	m.out = m1 * m2;
	m.in = n1 * n2;
	m.kk = 1;
	m.m1 = m1;
	m.n1 = n1;
	m.m2 = m2;
	m.n2 = n2;
	m.scale = scale;
	m.rank = r1 ? r1 : r2;
	if (r1) {
		m.w1_a = rmat(r, m1, r1, 0.5f);
		m.w1_b = rmat(r, r1, n1, 0.5f);
	} else {
		m.w1 = rmat(r, m1, n1, 0.5f);
	}
	if (r2) {
		m.w2_a = rmat(r, m2, r2, 0.5f);
		m.w2_b = rmat(r, r2, n2, 0.5f);
	} else {
		m.w2 = rmat(r, m2, n2, 0.5f);
	}
	return m;
}

static inline lokr_module make_lora(rng *r, int64_t out, int64_t in, int64_t rank, float scale)
{
	lokr_module m;
	memset(&m, 0, sizeof m);
	m.name = "lycoris_test_lora";
	m.algo = LOKR_ALGO_LORA;
	m.out = out;
	m.in = in;
	m.kk = 1;
	m.rank = rank;
	m.scale = scale;
	m.up = rmat(r, out, rank, 0.5f);
	m.down = rmat(r, rank, in, 0.5f);
	return m;
}

static inline lokr_module make_loha(rng *r, int64_t out, int64_t in, int64_t rank, float scale)
{
	lokr_module m;
	memset(&m, 0, sizeof m);
	m.name = "lycoris_test_loha";
	m.algo = LOKR_ALGO_LOHA;
	m.out = out;
	m.in = in;
	m.kk = 1;
	m.rank = rank;
	m.scale = scale;
	m.hada_w1_a = rmat(r, out, rank, 0.5f);
	m.hada_w1_b = rmat(r, rank, in, 0.5f);
	m.hada_w2_a = rmat(r, out, rank, 0.5f);
	m.hada_w2_b = rmat(r, rank, in, 0.5f);
	return m;
}

/* A (rows x k) B (k x cols) in double. */
static inline double *ref_mm(const float *A, const float *B, int64_t rows, int64_t k, int64_t cols)
{
	double *c = calloc((size_t)(rows * cols), sizeof *c);
	for (int64_t i = 0; i < rows; i++)
		for (int64_t q = 0; q < k; q++)
			for (int64_t j = 0; j < cols; j++)
				c[i * cols + j] += (double)A[i * k + q] * (double)B[q * cols + j];
	return c;
}

/* dW (out x width), WITHOUT s, by the definitions; double. Linear/kk = 1 and
 * Tucker-free modules only (the tests build those). */
static inline double *ref_delta(const lokr_module *m)
{
	int64_t out = m->out, in = m->in * m->kk;
	double *d = calloc((size_t)(out * in), sizeof *d);
	if (m->algo == LOKR_ALGO_LOKR) {
		double *w1 = m->w1.data
		                 ? NULL
		                 : ref_mm(m->w1_a.data, m->w1_b.data, m->m1, m->w1_a.cols, m->n1);
		double *w2 = m->w2.data
		                 ? NULL
		                 : ref_mm(m->w2_a.data, m->w2_b.data, m->m2, m->w2_a.cols, m->n2);
		for (int64_t i = 0; i < m->m1; i++)
			for (int64_t j = 0; j < m->m2; j++)
				for (int64_t k = 0; k < m->n1; k++)
					for (int64_t l = 0; l < m->n2; l++) {
						double a = w1 ? w1[i * m->n1 + k]
						              : m->w1.data[i * m->n1 + k];
						double b = w2 ? w2[j * m->n2 + l]
						              : m->w2.data[j * m->n2 + l];
						d[(i * m->m2 + j) * in + k * m->n2 + l] = a * b;
					}
		free(w1);
		free(w2);
	} else if (m->algo == LOKR_ALGO_LORA) {
		free(d);
		d = ref_mm(m->up.data, m->down.data, out, m->up.cols, in);
	} else {
		double *p1 =
		    ref_mm(m->hada_w1_a.data, m->hada_w1_b.data, out, m->hada_w1_a.cols, in);
		double *p2 =
		    ref_mm(m->hada_w2_a.data, m->hada_w2_b.data, out, m->hada_w2_a.cols, in);
		for (int64_t i = 0; i < out * in; i++)
			d[i] = p1[i] * p2[i];
		free(p1);
		free(p2);
	}
	return d;
}

/* Give m a DoRA magnitude on `axis` and its cached g (computed here, in
 * double, from the dense V = W0 + s dW: the reference, not lib/dora.c). */
static inline void add_dora(rng *r, lokr_module *m, const lokr_layer *l, lokr_dora_axis axis)
{
	int64_t out = l->out, in = l->in;
	double *d = ref_delta(m);
	int64_t n = axis == LOKR_DORA_OUT ? out : in;
	m->dora_axis = axis;
	m->dora_scale = calloc((size_t)n, sizeof(float));
	m->dora_g = calloc((size_t)n, sizeof(float));
	double *norm2 = calloc((size_t)n, sizeof(double));
	for (int64_t o = 0; o < out; o++)
		for (int64_t c = 0; c < in; c++) {
			double v = (double)l->weight[o * in + c] + (double)m->scale * d[o * in + c];
			norm2[axis == LOKR_DORA_OUT ? o : c] += v * v;
		}
	for (int64_t i = 0; i < n; i++) {
		m->dora_scale[i] = (float)(sqrt(norm2[i]) * (1.0 + 0.3 * (double)rng_f(r)));
		m->dora_g[i] = (float)((double)m->dora_scale[i] / (sqrt(norm2[i]) + 0x1p-23));
	}
	free(norm2);
	free(d);
}

/* W' - W0 of one (module, multiplier) per lokrd's decisions 1-2, added into
 * acc (out x in, double). */
static inline void ref_contrib(const lokr_module *m, const lokr_layer *l, double lam, double *acc)
{
	int64_t out = l->out, in = l->in;
	double *d = ref_delta(m);
	for (int64_t o = 0; o < out; o++)
		for (int64_t c = 0; c < in; c++) {
			double w0 = l->weight[o * in + c];
			double v = w0 + (double)m->scale * d[o * in + c];
			double nw;
			if (m->dora_axis == LOKR_DORA_OUT)
				nw = w0 + lam * ((double)m->dora_g[o] * v - w0);
			else if (m->dora_axis == LOKR_DORA_IN)
				nw = w0 + lam * ((double)m->dora_g[c] * v - w0);
			else
				nw = w0 + lam * (double)m->scale * d[o * in + c];
			acc[o * in + c] += nw - w0;
		}
	free(d);
}

/* y_ref (rows x out) = x (W0 + acc)^T + b, double. */
static inline double *ref_apply(const lokr_layer *l, const double *acc, const float *x,
                                int64_t rows)
{
	int64_t out = l->out, in = l->in;
	double *y = calloc((size_t)(rows * out), sizeof *y);
	for (int64_t n = 0; n < rows; n++)
		for (int64_t o = 0; o < out; o++) {
			double s = l->bias ? l->bias[o] : 0.0;
			for (int64_t c = 0; c < in; c++)
				s += (double)x[n * in + c] * ((double)l->weight[o * in + c] +
				                              (acc ? acc[o * in + c] : 0.0));
			y[n * out + o] = s;
		}
	return y;
}

/* max |y - ref| / max |ref| (normalized error). */
static inline double rel_err(const float *y, const double *ref, int64_t n)
{
	double e = 0.0, m = 0.0;
	for (int64_t i = 0; i < n; i++) {
		double d = fabs((double)y[i] - ref[i]);
		if (isnan(d))
			return INFINITY;
		if (d > e)
			e = d;
		if (fabs(ref[i]) > m)
			m = fabs(ref[i]);
	}
	return e / (m > 0.0 ? m : 1.0);
}

static inline double rel_err_f(const float *y, const float *ref, int64_t n)
{
	double e = 0.0, m = 0.0;
	for (int64_t i = 0; i < n; i++) {
		double d = fabs((double)y[i] - (double)ref[i]);
		if (isnan(d))
			return INFINITY;
		if (d > e)
			e = d;
		if (fabs((double)ref[i]) > m)
			m = fabs((double)ref[i]);
	}
	return e / (m > 0.0 ? m : 1.0);
}

#endif /* LOKR_SPEED_UTIL_H */

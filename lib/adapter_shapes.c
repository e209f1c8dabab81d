/*
 * adapter_shapes.c - what the stored shapes of each algorithm mean.  From
 * the header alone (no data decoded yet) it infers the LoKr split m1 x n1 (x)
 * m2 x n2, ranks, Tucker cores, the LoHa and LoRA/LoCon forms, the DoRA axis
 * and the scale, and rejects every combination lycoris-format.md 9.23 lists,
 * naming the module, the tensor and both shapes.  Shapes decide everything
 * (lokrd's decision 5).
 */
#include <math.h>
#include <string.h>

#include "adapter_shapes.h"

/* -------------------------------------------------------- shape helpers */

int lokr__adapter_is_float_dtype(lokr_dtype dt)
{
	return dt == LOKR_DTYPE_F32 || dt == LOKR_DTYPE_F16 || dt == LOKR_DTYPE_BF16 ||
	       dt == LOKR_DTYPE_F64;
}

/* ndim equal to the layer's and the trailing (kernel) dims equal to it. */
static int kernel_match(const lokr_st_tensor *t, const lokr_layer *l)
{
	if (t->ndim != l->ndim || l->kind != LOKR_LAYER_CONV)
		return 0;
	for (int i = 2; i < t->ndim; i++)
		if (t->shape[i] != l->shape[i])
			return 0;
	return 1;
}

/* 2-D, or more dims that are all 1 after the first two. */
static int is_2d_like(const lokr_st_tensor *t)
{
	if (t->ndim < 2)
		return 0;
	for (int i = 2; i < t->ndim; i++)
		if (t->shape[i] != 1)
			return 0;
	return 1;
}

static void want(struct slots *s, const lokr_st_tensor *t, lokr_mat *mat, int64_t rows,
                 int64_t cols)
{
	LOKR_ASSERT(s->ndec < (int)(sizeof s->dec / sizeof s->dec[0]));
	LOKR_ASSERT((uint64_t)rows * (uint64_t)cols == t->nelem);
	mat->rows = rows;
	mat->cols = cols;
	s->dec[s->ndec].t = t;
	s->dec[s->ndec].mat = mat;
	s->ndec++;
}

/* Columns of a factor that spans the input (in*kk): 2-D (r, in*kk) or the
 * conv form (r, in, *kernel).  Returns -1 when neither. */
static int64_t flat_cols(const lokr_st_tensor *t, const lokr_layer *l)
{
	if (t->ndim == 2)
		return t->shape[1];
	if (kernel_match(t, l))
		return t->shape[1] * l->kk;
	return -1;
}

/* ------------------------------------------------------------ the scale */

/* Read alpha and set m->alpha, has_alpha, alpha_ignored and scale from the
 * rank (0 when no factor is low-rank), lycoris-format.md 3.7 and lokrd's
 * decision 4. */
int lokr__adapter_module_scale(const struct ctx *c, lokr_adapter *a, lokr_module *m,
                               const struct slots *s)
{
	const lokr_st_tensor *t = s->p[P_ALPHA];
	struct shp b;
	m->alpha = NAN;
	m->has_alpha = 0;
	if (t) {
		if (t->nelem != 1)
			return lokr__adapter_bad(c, LOKR_EADAPTER,
			                         "alpha %s must be a scalar (shape [] or [1])",
			                         lokr__adapter_shp(&b, t));
		if (!lokr__adapter_is_float_dtype(t->dtype))
			return lokr__adapter_bad(c, LOKR_EUNSUPPORTED,
			                         "alpha has dtype %s; expected a float",
			                         t->dtype_name);
		float v;
		int rc = lokr_st_tensor_f32(t, &v, c->err);
		if (rc)
			return rc;
		m->alpha = v;
		m->has_alpha = 1;
	}
	if (m->rank == 0) {
		m->scale = 1.0f;
		m->alpha_ignored = m->has_alpha;
		if (m->has_alpha)
			return lokr__adapter_warn(
			    a, c->err, "%s: alpha %g ignored (both factors full), scale 1", m->name,
			    m->alpha);
		return 0;
	}
	if (!m->has_alpha) {
		m->scale = 1.0f;
		return lokr__adapter_warn(a, c->err, "%s: no alpha, scale 1", m->name);
	}
	if (!isfinite(m->alpha))
		return lokr__adapter_bad(c, LOKR_EADAPTER,
		                         "alpha is %g, not finite, and is used (rank %lld)",
		                         m->alpha, (long long)m->rank);
	if (m->alpha == 0) {
		m->scale = 1.0f;
		return lokr__adapter_warn(a, c->err, "%s: alpha 0 read as alpha = rank, scale 1",
		                          m->name);
	}
	m->scale = (float)(m->alpha / (double)m->rank);
	return 0;
}

/* ---------------------------------------------------------------- LoKr */

int lokr__adapter_parse_lokr(const struct ctx *c, lokr_module *m, struct slots *s)
{
	const lokr_layer *l = c->layer;
	const lokr_st_tensor *w1 = s->p[P_LOKR_W1], *w1a = s->p[P_LOKR_W1_A],
	                     *w1b = s->p[P_LOKR_W1_B], *w2 = s->p[P_LOKR_W2],
	                     *w2a = s->p[P_LOKR_W2_A], *w2b = s->p[P_LOKR_W2_B],
	                     *t2 = s->p[P_LOKR_T2];
	struct shp b1, b2, b3;
	int64_t m1, n1, m2, n2, r1 = 0, r2 = 0;
	const char *w1_desc, *w2_desc;
	const lokr_st_tensor *w1_rows_t, *w1_cols_t, *w2_rows_t, *w2_cols_t;

	/* W1: full or low-rank, never both (3.2, 3.6). */
	if (w1 && (w1a || w1b))
		return lokr__adapter_bad(
		    c, LOKR_EADAPTER, "lokr_w1 %s stored together with lokr_w1_a %s / lokr_w1_b %s",
		    lokr__adapter_shp(&b1, w1), lokr__adapter_shp(&b2, w1a),
		    lokr__adapter_shp(&b3, w1b));
	if (w1) {
		if (w1->ndim != 2)
			return lokr__adapter_bad(c, LOKR_EADAPTER,
			                         "lokr_w1 %s must be 2-D (m1, n1)",
			                         lokr__adapter_shp(&b1, w1));
		m1 = w1->shape[0];
		n1 = w1->shape[1];
		w1_desc = "lokr_w1";
		w1_rows_t = w1_cols_t = w1;
	} else if (w1a || w1b) {
		if (!w1a)
			return lokr__adapter_bad(c, LOKR_EADAPTER, "lokr_w1_b %s without lokr_w1_a",
			                         lokr__adapter_shp(&b1, w1b));
		if (!w1b)
			return lokr__adapter_bad(c, LOKR_EADAPTER, "lokr_w1_a %s without lokr_w1_b",
			                         lokr__adapter_shp(&b1, w1a));
		if (w1a->ndim != 2 || w1b->ndim != 2)
			return lokr__adapter_bad(
			    c, LOKR_EADAPTER,
			    "lokr_w1_a %s and lokr_w1_b %s must be 2-D (m1, r), (r, n1)",
			    lokr__adapter_shp(&b1, w1a), lokr__adapter_shp(&b2, w1b));
		if (w1a->shape[1] != w1b->shape[0])
			return lokr__adapter_bad(
			    c, LOKR_EADAPTER,
			    "rank mismatch: lokr_w1_a %s has rank %lld, lokr_w1_b %s has "
			    "rank %lld",
			    lokr__adapter_shp(&b1, w1a), (long long)w1a->shape[1],
			    lokr__adapter_shp(&b2, w1b), (long long)w1b->shape[0]);
		m1 = w1a->shape[0];
		n1 = w1b->shape[1];
		r1 = w1b->shape[0];
		w1_desc = "lokr_w1_a/lokr_w1_b";
		w1_rows_t = w1a;
		w1_cols_t = w1b;
	} else {
		return lokr__adapter_bad(c, LOKR_EADAPTER,
		                         "no W1: neither lokr_w1 nor lokr_w1_a/lokr_w1_b");
	}

	/* W2: full, low-rank, or Tucker. */
	if (w2 && (w2a || w2b || t2))
		return lokr__adapter_bad(
		    c, LOKR_EADAPTER, "lokr_w2 %s stored together with lokr_w2_a %s / lokr_w2_b %s",
		    lokr__adapter_shp(&b1, w2), lokr__adapter_shp(&b2, w2a),
		    lokr__adapter_shp(&b3, w2b));
	if (w2) {
		if (!(w2->ndim == 2 && l->kk == 1) && !kernel_match(w2, l))
			return lokr__adapter_bad(
			    c, LOKR_EMISMATCH, "lokr_w2 %s must be (m2, n2)%s to fit the layer",
			    lokr__adapter_shp(&b1, w2),
			    l->kind == LOKR_LAYER_CONV ? " or (m2, n2, <layer kernel>)" : "");
		m2 = w2->shape[0];
		n2 = w2->shape[1];
		w2_desc = "lokr_w2";
		w2_rows_t = w2_cols_t = w2;
	} else if (w2a || w2b) {
		if (!w2a)
			return lokr__adapter_bad(c, LOKR_EADAPTER, "lokr_w2_b %s without lokr_w2_a",
			                         lokr__adapter_shp(&b1, w2b));
		if (!w2b)
			return lokr__adapter_bad(c, LOKR_EADAPTER, "lokr_w2_a %s without lokr_w2_b",
			                         lokr__adapter_shp(&b1, w2a));
		if (w2a->ndim != 2)
			return lokr__adapter_bad(c, LOKR_EADAPTER, "lokr_w2_a %s must be 2-D",
			                         lokr__adapter_shp(&b1, w2a));
		w2_desc = "lokr_w2_a/lokr_w2_b";
		if (t2) {
			if (l->kind != LOKR_LAYER_CONV)
				return lokr__adapter_bad(
				    c, LOKR_EMISMATCH, "lokr_t2 %s (Tucker core) on a linear layer",
				    lokr__adapter_shp(&b1, t2));
			if (!kernel_match(t2, l))
				return lokr__adapter_bad(
				    c, LOKR_EMISMATCH,
				    "lokr_t2 %s: kernel dims differ from the layer's",
				    lokr__adapter_shp(&b1, t2));
			if (!is_2d_like(w2b))
				return lokr__adapter_bad(
				    c, LOKR_EADAPTER,
				    "lokr_w2_b %s must be (r, n2) with a Tucker core",
				    lokr__adapter_shp(&b1, w2b));
			r2 = w2b->shape[0];
			if (w2a->shape[0] != r2 || t2->shape[0] != r2 || t2->shape[1] != r2)
				return lokr__adapter_bad(
				    c, LOKR_EADAPTER,
				    "rank mismatch: lokr_t2 %s, lokr_w2_a %s (r, m2), "
				    "lokr_w2_b %s (r, n2)",
				    lokr__adapter_shp(&b1, t2), lokr__adapter_shp(&b2, w2a),
				    lokr__adapter_shp(&b3, w2b));
			m2 = w2a->shape[1];
			n2 = w2b->shape[1];
			w2_desc = "lokr_t2/lokr_w2_a/lokr_w2_b";
		} else {
			if (w2a->shape[1] != w2b->shape[0])
				return lokr__adapter_bad(
				    c, LOKR_EADAPTER,
				    "rank mismatch: lokr_w2_a %s has rank %lld, lokr_w2_b %s "
				    "has rank %lld",
				    lokr__adapter_shp(&b1, w2a), (long long)w2a->shape[1],
				    lokr__adapter_shp(&b2, w2b), (long long)w2b->shape[0]);
			r2 = w2b->shape[0];
			m2 = w2a->shape[0];
			if (w2b->ndim == 2) {
				if (w2b->shape[1] % l->kk != 0)
					return lokr__adapter_bad(
					    c, LOKR_EMISMATCH,
					    "lokr_w2_b %s: %lld columns are not divisible by "
					    "the layer's kernel size %lld",
					    lokr__adapter_shp(&b1, w2b), (long long)w2b->shape[1],
					    (long long)l->kk);
				n2 = w2b->shape[1] / l->kk;
			} else if (kernel_match(w2b, l)) {
				n2 = w2b->shape[1];
			} else {
				return lokr__adapter_bad(
				    c, LOKR_EMISMATCH,
				    "lokr_w2_b %s must be (r, n2*kk) or (r, n2, <layer "
				    "kernel>)",
				    lokr__adapter_shp(&b1, w2b));
			}
		}
		w2_rows_t = w2a;
		w2_cols_t = w2b;
	} else if (t2) {
		return lokr__adapter_bad(c, LOKR_EADAPTER, "lokr_t2 %s without lokr_w2_a/lokr_w2_b",
		                         lokr__adapter_shp(&b1, t2));
	} else {
		return lokr__adapter_bad(c, LOKR_EADAPTER,
		                         "no W2: neither lokr_w2 nor lokr_w2_a/lokr_w2_b");
	}

	if (r1 && r2 && r1 != r2)
		return lokr__adapter_bad(
		    c, LOKR_EADAPTER,
		    "rank mismatch between W1 (lokr_w1_b %s, rank %lld) and W2 "
		    "(lokr_w2_b %s, rank %lld)",
		    lokr__adapter_shp(&b1, w1b), (long long)r1, lokr__adapter_shp(&b2, w2b),
		    (long long)r2);

	int64_t prod;
	if (lokr__mul_i64(m1, m2, &prod) || prod != l->out)
		return lokr__adapter_bad(
		    c, LOKR_EMISMATCH,
		    "W1 rows m1 = %lld (%s %s) times W2 rows m2 = %lld (%s %s) is not the "
		    "layer's out = %lld",
		    (long long)m1, w1_desc, lokr__adapter_shp(&b1, w1_rows_t), (long long)m2,
		    w2_desc, lokr__adapter_shp(&b2, w2_rows_t), (long long)l->out);
	if (lokr__mul_i64(n1, n2, &prod) || prod != l->in)
		return lokr__adapter_bad(
		    c, LOKR_EMISMATCH,
		    "W1 columns n1 = %lld (%s %s) times W2 columns n2 = %lld (%s %s) is not "
		    "the layer's in = %lld",
		    (long long)n1, w1_desc, lokr__adapter_shp(&b1, w1_cols_t), (long long)n2,
		    w2_desc, lokr__adapter_shp(&b2, w2_cols_t), (long long)l->in);

	m->m1 = m1;
	m->n1 = n1;
	m->m2 = m2;
	m->n2 = n2;
	m->rank = r1 ? r1 : r2;
	m->tucker = t2 != NULL;
	if (w1) {
		want(s, w1, &m->w1, m1, n1);
	} else {
		want(s, w1a, &m->w1_a, m1, r1);
		want(s, w1b, &m->w1_b, r1, n1);
	}
	if (w2) {
		want(s, w2, &m->w2, m2, n2 * l->kk);
	} else if (t2) {
		want(s, w2a, &m->w2_a, r2, m2);
		want(s, w2b, &m->w2_b, r2, n2);
		want(s, t2, &m->t2, r2 * r2, l->kk);
	} else {
		want(s, w2a, &m->w2_a, m2, r2);
		want(s, w2b, &m->w2_b, r2, n2 * l->kk);
	}
	return 0;
}

/* ---------------------------------------------------------------- LoHa */

static int parse_loha_pair(const struct ctx *c, int tucker, const char *name_a,
                           const lokr_st_tensor *wa, const char *name_b, const lokr_st_tensor *wb,
                           const char *name_t, const lokr_st_tensor *t, int64_t *rank)
{
	const lokr_layer *l = c->layer;
	struct shp b1, b2, b3;
	if (!wa || !wb)
		return lokr__adapter_bad(c, LOKR_EADAPTER, "%s %s and %s %s must both be present",
		                         name_a, lokr__adapter_shp(&b1, wa), name_b,
		                         lokr__adapter_shp(&b2, wb));
	if (wa->ndim != 2)
		return lokr__adapter_bad(c, LOKR_EADAPTER, "%s %s must be 2-D", name_a,
		                         lokr__adapter_shp(&b1, wa));
	if (!tucker) {
		int64_t cols = flat_cols(wb, l);
		if (wa->shape[0] != l->out || cols < 0 || cols != l->in * l->kk)
			return lokr__adapter_bad(
			    c, LOKR_EMISMATCH,
			    "%s %s and %s %s must be (out, r) and (r, in*kk) = (r, %lld)", name_a,
			    lokr__adapter_shp(&b1, wa), name_b, lokr__adapter_shp(&b2, wb),
			    (long long)(l->in * l->kk));
		if (wa->shape[1] != wb->shape[0])
			return lokr__adapter_bad(c, LOKR_EADAPTER, "rank mismatch: %s %s, %s %s",
			                         name_a, lokr__adapter_shp(&b1, wa), name_b,
			                         lokr__adapter_shp(&b2, wb));
		*rank = wb->shape[0];
		return 0;
	}
	if (!kernel_match(t, l))
		return lokr__adapter_bad(c, LOKR_EMISMATCH, "%s %s: must be (r, r, <layer kernel>)",
		                         name_t, lokr__adapter_shp(&b1, t));
	if (!is_2d_like(wb) || wa->shape[1] != l->out || wb->shape[1] != l->in)
		return lokr__adapter_bad(
		    c, LOKR_EMISMATCH,
		    "with Tucker core %s, %s %s and %s %s must be (r, out) and (r, in)", name_t,
		    name_a, lokr__adapter_shp(&b1, wa), name_b, lokr__adapter_shp(&b2, wb));
	if (wa->shape[0] != wb->shape[0] || t->shape[0] != wb->shape[0] ||
	    t->shape[1] != wb->shape[0])
		return lokr__adapter_bad(c, LOKR_EADAPTER, "rank mismatch: %s %s, %s %s, %s %s",
		                         name_t, lokr__adapter_shp(&b1, t), name_a,
		                         lokr__adapter_shp(&b2, wa), name_b,
		                         lokr__adapter_shp(&b3, wb));
	*rank = wb->shape[0];
	return 0;
}

int lokr__adapter_parse_loha(const struct ctx *c, lokr_module *m, struct slots *s)
{
	const lokr_layer *l = c->layer;
	const lokr_st_tensor *t1 = s->p[P_HADA_T1], *t2 = s->p[P_HADA_T2];
	struct shp b1, b2;
	int tucker = t1 || t2;
	if (tucker) {
		if (!t1 || !t2)
			return lokr__adapter_bad(
			    c, LOKR_EADAPTER, "hada_t1 %s and hada_t2 %s must come together",
			    lokr__adapter_shp(&b1, t1), lokr__adapter_shp(&b2, t2));
		if (l->kind != LOKR_LAYER_CONV)
			return lokr__adapter_bad(c, LOKR_EMISMATCH,
			                         "hada_t1 %s (Tucker core) on a linear layer",
			                         lokr__adapter_shp(&b1, t1));
	}
	int64_t r1, r2;
	int rc = parse_loha_pair(c, tucker, "hada_w1_a", s->p[P_HADA_W1_A], "hada_w1_b",
	                         s->p[P_HADA_W1_B], "hada_t1", t1, &r1);
	if (!rc)
		rc = parse_loha_pair(c, tucker, "hada_w2_a", s->p[P_HADA_W2_A], "hada_w2_b",
		                     s->p[P_HADA_W2_B], "hada_t2", t2, &r2);
	if (rc)
		return rc;
	if (r1 != r2)
		return lokr__adapter_bad(c, LOKR_EADAPTER,
		                         "rank mismatch: hada_w1_b %s has rank %lld, hada_w2_b "
		                         "%s has rank %lld",
		                         lokr__adapter_shp(&b1, s->p[P_HADA_W1_B]), (long long)r1,
		                         lokr__adapter_shp(&b2, s->p[P_HADA_W2_B]), (long long)r2);
	m->rank = r1;
	m->tucker = tucker;
	if (tucker) {
		want(s, s->p[P_HADA_W1_A], &m->hada_w1_a, r1, l->out);
		want(s, s->p[P_HADA_W1_B], &m->hada_w1_b, r1, l->in);
		want(s, s->p[P_HADA_W2_A], &m->hada_w2_a, r1, l->out);
		want(s, s->p[P_HADA_W2_B], &m->hada_w2_b, r1, l->in);
		want(s, t1, &m->hada_t1, r1 * r1, l->kk);
		want(s, t2, &m->hada_t2, r1 * r1, l->kk);
	} else {
		want(s, s->p[P_HADA_W1_A], &m->hada_w1_a, l->out, r1);
		want(s, s->p[P_HADA_W1_B], &m->hada_w1_b, r1, l->in * l->kk);
		want(s, s->p[P_HADA_W2_A], &m->hada_w2_a, l->out, r1);
		want(s, s->p[P_HADA_W2_B], &m->hada_w2_b, r1, l->in * l->kk);
	}
	return 0;
}

/* ------------------------------------------------------------ LoRA/LoCon */

int lokr__adapter_parse_lora(const struct ctx *c, lokr_module *m, struct slots *s)
{
	const lokr_layer *l = c->layer;
	const lokr_st_tensor *up = s->p[P_LORA_UP], *down = s->p[P_LORA_DOWN],
	                     *mid = s->p[P_LORA_MID];
	struct shp b1, b2, b3;
	if (!down)
		return lokr__adapter_bad(c, LOKR_EADAPTER,
		                         "lora_up.weight %s without lora_down.weight",
		                         lokr__adapter_shp(&b1, up));
	if (!is_2d_like(up) || up->shape[0] != l->out)
		return lokr__adapter_bad(c, LOKR_EMISMATCH,
		                         "lora_up.weight %s must be (out, r[, 1, 1])",
		                         lokr__adapter_shp(&b1, up));
	int64_t r = down->ndim >= 1 ? down->shape[0] : 0;
	if (mid) {
		if (l->kind != LOKR_LAYER_CONV)
			return lokr__adapter_bad(
			    c, LOKR_EMISMATCH, "lora_mid.weight %s (Tucker core) on a linear layer",
			    lokr__adapter_shp(&b1, mid));
		if (!kernel_match(mid, l))
			return lokr__adapter_bad(
			    c, LOKR_EMISMATCH, "lora_mid.weight %s must be (r, r, <layer kernel>)",
			    lokr__adapter_shp(&b1, mid));
		if (!is_2d_like(down) || down->shape[1] != l->in)
			return lokr__adapter_bad(
			    c, LOKR_EMISMATCH,
			    "with lora_mid.weight, lora_down.weight %s must be (r, in[, 1, 1])",
			    lokr__adapter_shp(&b1, down));
		if (up->shape[1] != r || mid->shape[0] != r || mid->shape[1] != r)
			return lokr__adapter_bad(
			    c, LOKR_EADAPTER,
			    "rank mismatch: lora_up.weight %s, lora_mid.weight %s, "
			    "lora_down.weight %s",
			    lokr__adapter_shp(&b1, up), lokr__adapter_shp(&b2, mid),
			    lokr__adapter_shp(&b3, down));
	} else {
		int64_t cols = down->ndim >= 2 ? flat_cols(down, l) : -1;
		if (cols < 0 || cols != l->in * l->kk)
			return lokr__adapter_bad(
			    c, LOKR_EMISMATCH,
			    "lora_down.weight %s must be (r, in*kk) = (r, %lld)%s",
			    lokr__adapter_shp(&b1, down), (long long)(l->in * l->kk),
			    l->kind == LOKR_LAYER_CONV ? " or (r, in, <layer kernel>)" : "");
		if (up->shape[1] != r)
			return lokr__adapter_bad(
			    c, LOKR_EADAPTER,
			    "rank mismatch: lora_up.weight %s has rank %lld, lora_down.weight "
			    "%s has rank %lld",
			    lokr__adapter_shp(&b1, up), (long long)up->shape[1],
			    lokr__adapter_shp(&b2, down), (long long)r);
	}
	m->rank = r;
	m->tucker = mid != NULL;
	want(s, up, &m->up, l->out, r);
	if (mid) {
		want(s, down, &m->down, r, l->in);
		want(s, mid, &m->mid, r * r, l->kk);
	} else {
		want(s, down, &m->down, r, l->in * l->kk);
	}
	return 0;
}

/* ---------------------------------------------------------------- DoRA */

/* The axis from the dora_scale shape alone (lycoris-format.md 5.2): 1-D
 * (out,) or (out, 1, ...) is the output axis; (1, in, 1, ...) the input axis. */
int lokr__adapter_dora_axis(const struct ctx *c, lokr_module *m, const lokr_st_tensor *t)
{
	const lokr_layer *l = c->layer;
	struct shp b;
	int rest_ones = 1;
	for (int i = 1; i < t->ndim; i++)
		if (t->shape[i] != 1)
			rest_ones = 0;
	if (t->ndim >= 1 && t->shape[0] == l->out && rest_ones) {
		m->dora_axis = LOKR_DORA_OUT;
		return 0;
	}
	if (t->ndim >= 2 && t->shape[0] == 1 && t->shape[1] == l->in) {
		int ones = 1;
		for (int i = 2; i < t->ndim; i++)
			if (t->shape[i] != 1)
				ones = 0;
		if (ones) {
			m->dora_axis = LOKR_DORA_IN;
			return 0;
		}
	}
	return lokr__adapter_bad(
	    c, LOKR_EMISMATCH,
	    "dora_scale %s matches neither the output axis (%lld, 1...) / (%lld,) nor the "
	    "input axis (1, %lld...)",
	    lokr__adapter_shp(&b, t), (long long)l->out, (long long)l->out, (long long)l->in);
}

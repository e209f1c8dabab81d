/*
 * adapter.c - the adapter model: turns an open safetensors file into a
 * validated lokr_adapter against a base model.
 *
 * Loading runs in passes so that a bad file fails before any large decode:
 *   1. group the keys by module (text before the first '.'), detect the
 *      algorithm of each module from its keys (lycoris-format.md 2.1), map it
 *      to a base layer, and check every shape, rank and the alpha
 *      (lycoris-format.md 3.6, 3.7, 5.2, 6, 9.23) from the header alone;
 *   2. decode every factor straight from the mapping into 64-byte aligned
 *      float32 buffers, rejecting NaN/Inf;
 *   3. compute the DoRA vectors (lib/dora.c) and the per-module plan
 *      (lib/plan.c).
 * Everything is all or nothing: any failure frees what was built and the
 * caller gets a message naming the module, the tensor and both shapes
 * (stored vs. layer).  Nothing here trusts metadata (lokrd's decision 5).
 */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "internal.h"

/* Parameter names we understand, per algorithm (lycoris-format.md 2.1). */
enum param {
	P_ALPHA,
	P_DORA,
	P_LOKR_W1,
	P_LOKR_W1_A,
	P_LOKR_W1_B,
	P_LOKR_W2,
	P_LOKR_W2_A,
	P_LOKR_W2_B,
	P_LOKR_T2,
	P_HADA_W1_A,
	P_HADA_W1_B,
	P_HADA_W2_A,
	P_HADA_W2_B,
	P_HADA_T1,
	P_HADA_T2,
	P_LORA_UP,
	P_LORA_DOWN,
	P_LORA_MID,
	P_COUNT
};

static const char *const param_names[P_COUNT] = {
    "alpha",     "dora_scale", "lokr_w1", "lokr_w1_a",      "lokr_w1_b",        "lokr_w2",
    "lokr_w2_a", "lokr_w2_b",  "lokr_t2", "hada_w1_a",      "hada_w1_b",        "hada_w2_a",
    "hada_w2_b", "hada_t1",    "hada_t2", "lora_up.weight", "lora_down.weight", "lora_mid.weight",
};

/* Keys of LyCORIS algorithms lokrd does not implement, with a name for the
 * message.  A module holding one of these is LOKR_EUNSUPPORTED, not an
 * unknown key. */
static const struct {
	const char *key;
	const char *algo;
} unsupported_keys[] = {
    {"diff", "full (diff)"},
    {"diff_b", "full (diff)"},
    {"w_norm", "norm"},
    {"b_norm", "norm"},
    {"oft_blocks", "OFT/BOFT"},
    {"rescale", "OFT/BOFT"},
    {"a1.weight", "GLoRA"},
    {"a2.weight", "GLoRA"},
    {"b1.weight", "GLoRA"},
    {"b2.weight", "GLoRA"},
    {"bm.weight", "GLoRA"},
    {"on_input", "(IA)^3"},
    {"weight", "(IA)^3"},
    {"lokr_t1", "LoKr lokr_t1 (never written by LyCORIS)"},
    {"bias_indices", "sparse bias"},
    {"bias_values", "sparse bias"},
    {"bias_size", "sparse bias"},
};

/* Resume-only keys of newer LyCORIS (lycoris-format.md 3.9): ignored. */
#define TRAINING_PREFIX "_lycoris_lokr_training_"

/* A factor tensor to decode in pass 2, and where it goes. */
struct decode {
	const lokr_st_tensor *t;
	lokr_mat *mat;
};

/* Per-module scratch between the passes. */
struct slots {
	size_t first, last; /* tensor index range [first, last) in the file */
	const lokr_st_tensor *p[P_COUNT];
	struct decode dec[8];
	int ndec;
	const lokr_layer *layer;
};

/* Context for messages: every one names the module and the layer shape. */
struct ctx {
	const lokr_base *base;
	const lokr_module *m;
	const lokr_layer *layer;
	lokr_error *err;
};

/* ------------------------------------------------------------ messages */

struct shp {
	char s[128];
};

static const char *shp(struct shp *b, const lokr_st_tensor *t)
{
	if (!t)
		return "(absent)";
	return lokr__shape_str(b->s, sizeof b->s, t->shape, t->ndim);
}

/* Fail with "module NAME (layer L (shape)): <message>". */
__attribute__((format(printf, 3, 4))) static int bad(const struct ctx *c, int code, const char *fmt,
                                                     ...)
{
	char what[LOKR_ERROR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (c->layer) {
		struct shp l;
		lokr__shape_str(l.s, sizeof l.s, c->layer->shape, c->layer->ndim);
		return lokr__fail(c->err, code, "module %s (layer %s %s): %s", c->m->name,
		                  c->layer->name, l.s, what);
	}
	return lokr__fail(c->err, code, "module %s: %s", c->m->name, what);
}

static char *try_strndup(const char *s, size_t n)
{
	char *p = lokr__try_malloc(n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

static int add_warning(lokr_adapter *a, lokr_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int add_warning(lokr_adapter *a, lokr_error *err, const char *fmt, ...)
{
	char buf[LOKR_ERROR_MAX];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	char **grown = lokr__try_malloc((a->nwarnings + 1) * sizeof *grown);
	char *copy = try_strndup(buf, strlen(buf));
	if (!grown || !copy) {
		free(grown);
		free(copy);
		return lokr__fail(err, LOKR_ENOMEM, "out of memory recording a warning");
	}
	if (a->nwarnings)
		memcpy(grown, a->warnings, a->nwarnings * sizeof *grown);
	free(a->warnings);
	a->warnings = grown;
	a->warnings[a->nwarnings++] = copy;
	return 0;
}

/* -------------------------------------------------------- shape helpers */

static int is_float_dtype(lokr_dtype dt)
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
static int module_scale(const struct ctx *c, lokr_adapter *a, lokr_module *m, const struct slots *s)
{
	const lokr_st_tensor *t = s->p[P_ALPHA];
	struct shp b;
	m->alpha = NAN;
	m->has_alpha = 0;
	if (t) {
		if (t->nelem != 1)
			return bad(c, LOKR_EADAPTER, "alpha %s must be a scalar (shape [] or [1])",
			           shp(&b, t));
		if (!is_float_dtype(t->dtype))
			return bad(c, LOKR_EUNSUPPORTED, "alpha has dtype %s; expected a float",
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
			return add_warning(a, c->err,
			                   "%s: alpha %g ignored (both factors full), scale 1",
			                   m->name, m->alpha);
		return 0;
	}
	if (!m->has_alpha) {
		m->scale = 1.0f;
		return add_warning(a, c->err, "%s: no alpha, scale 1", m->name);
	}
	if (!isfinite(m->alpha))
		return bad(c, LOKR_EADAPTER, "alpha is %g, not finite, and is used (rank %lld)",
		           m->alpha, (long long)m->rank);
	if (m->alpha == 0) {
		m->scale = 1.0f;
		return add_warning(a, c->err, "%s: alpha 0 read as alpha = rank, scale 1", m->name);
	}
	m->scale = (float)(m->alpha / (double)m->rank);
	return 0;
}

/* ---------------------------------------------------------------- LoKr */

static int parse_lokr(const struct ctx *c, lokr_module *m, struct slots *s)
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
		return bad(c, LOKR_EADAPTER,
		           "lokr_w1 %s stored together with lokr_w1_a %s / lokr_w1_b %s",
		           shp(&b1, w1), shp(&b2, w1a), shp(&b3, w1b));
	if (w1) {
		if (w1->ndim != 2)
			return bad(c, LOKR_EADAPTER, "lokr_w1 %s must be 2-D (m1, n1)",
			           shp(&b1, w1));
		m1 = w1->shape[0];
		n1 = w1->shape[1];
		w1_desc = "lokr_w1";
		w1_rows_t = w1_cols_t = w1;
	} else if (w1a || w1b) {
		if (!w1a)
			return bad(c, LOKR_EADAPTER, "lokr_w1_b %s without lokr_w1_a",
			           shp(&b1, w1b));
		if (!w1b)
			return bad(c, LOKR_EADAPTER, "lokr_w1_a %s without lokr_w1_b",
			           shp(&b1, w1a));
		if (w1a->ndim != 2 || w1b->ndim != 2)
			return bad(c, LOKR_EADAPTER,
			           "lokr_w1_a %s and lokr_w1_b %s must be 2-D (m1, r), (r, n1)",
			           shp(&b1, w1a), shp(&b2, w1b));
		if (w1a->shape[1] != w1b->shape[0])
			return bad(c, LOKR_EADAPTER,
			           "rank mismatch: lokr_w1_a %s has rank %lld, lokr_w1_b %s has "
			           "rank %lld",
			           shp(&b1, w1a), (long long)w1a->shape[1], shp(&b2, w1b),
			           (long long)w1b->shape[0]);
		m1 = w1a->shape[0];
		n1 = w1b->shape[1];
		r1 = w1b->shape[0];
		w1_desc = "lokr_w1_a/lokr_w1_b";
		w1_rows_t = w1a;
		w1_cols_t = w1b;
	} else {
		return bad(c, LOKR_EADAPTER, "no W1: neither lokr_w1 nor lokr_w1_a/lokr_w1_b");
	}

	/* W2: full, low-rank, or Tucker. */
	if (w2 && (w2a || w2b || t2))
		return bad(c, LOKR_EADAPTER,
		           "lokr_w2 %s stored together with lokr_w2_a %s / lokr_w2_b %s",
		           shp(&b1, w2), shp(&b2, w2a), shp(&b3, w2b));
	if (w2) {
		if (!(w2->ndim == 2 && l->kk == 1) && !kernel_match(w2, l))
			return bad(c, LOKR_EMISMATCH,
			           "lokr_w2 %s must be (m2, n2)%s to fit the layer", shp(&b1, w2),
			           l->kind == LOKR_LAYER_CONV ? " or (m2, n2, <layer kernel>)"
			                                      : "");
		m2 = w2->shape[0];
		n2 = w2->shape[1];
		w2_desc = "lokr_w2";
		w2_rows_t = w2_cols_t = w2;
	} else if (w2a || w2b) {
		if (!w2a)
			return bad(c, LOKR_EADAPTER, "lokr_w2_b %s without lokr_w2_a",
			           shp(&b1, w2b));
		if (!w2b)
			return bad(c, LOKR_EADAPTER, "lokr_w2_a %s without lokr_w2_b",
			           shp(&b1, w2a));
		if (w2a->ndim != 2)
			return bad(c, LOKR_EADAPTER, "lokr_w2_a %s must be 2-D", shp(&b1, w2a));
		w2_desc = "lokr_w2_a/lokr_w2_b";
		if (t2) {
			if (l->kind != LOKR_LAYER_CONV)
				return bad(c, LOKR_EMISMATCH,
				           "lokr_t2 %s (Tucker core) on a linear layer",
				           shp(&b1, t2));
			if (!kernel_match(t2, l))
				return bad(c, LOKR_EMISMATCH,
				           "lokr_t2 %s: kernel dims differ from the layer's",
				           shp(&b1, t2));
			if (!is_2d_like(w2b))
				return bad(c, LOKR_EADAPTER,
				           "lokr_w2_b %s must be (r, n2) with a Tucker core",
				           shp(&b1, w2b));
			r2 = w2b->shape[0];
			if (w2a->shape[0] != r2 || t2->shape[0] != r2 || t2->shape[1] != r2)
				return bad(c, LOKR_EADAPTER,
				           "rank mismatch: lokr_t2 %s, lokr_w2_a %s (r, m2), "
				           "lokr_w2_b %s (r, n2)",
				           shp(&b1, t2), shp(&b2, w2a), shp(&b3, w2b));
			m2 = w2a->shape[1];
			n2 = w2b->shape[1];
			w2_desc = "lokr_t2/lokr_w2_a/lokr_w2_b";
		} else {
			if (w2a->shape[1] != w2b->shape[0])
				return bad(
				    c, LOKR_EADAPTER,
				    "rank mismatch: lokr_w2_a %s has rank %lld, lokr_w2_b %s "
				    "has rank %lld",
				    shp(&b1, w2a), (long long)w2a->shape[1], shp(&b2, w2b),
				    (long long)w2b->shape[0]);
			r2 = w2b->shape[0];
			m2 = w2a->shape[0];
			if (w2b->ndim == 2) {
				if (w2b->shape[1] % l->kk != 0)
					return bad(
					    c, LOKR_EMISMATCH,
					    "lokr_w2_b %s: %lld columns are not divisible by "
					    "the layer's kernel size %lld",
					    shp(&b1, w2b), (long long)w2b->shape[1],
					    (long long)l->kk);
				n2 = w2b->shape[1] / l->kk;
			} else if (kernel_match(w2b, l)) {
				n2 = w2b->shape[1];
			} else {
				return bad(c, LOKR_EMISMATCH,
				           "lokr_w2_b %s must be (r, n2*kk) or (r, n2, <layer "
				           "kernel>)",
				           shp(&b1, w2b));
			}
		}
		w2_rows_t = w2a;
		w2_cols_t = w2b;
	} else if (t2) {
		return bad(c, LOKR_EADAPTER, "lokr_t2 %s without lokr_w2_a/lokr_w2_b",
		           shp(&b1, t2));
	} else {
		return bad(c, LOKR_EADAPTER, "no W2: neither lokr_w2 nor lokr_w2_a/lokr_w2_b");
	}

	if (r1 && r2 && r1 != r2)
		return bad(c, LOKR_EADAPTER,
		           "rank mismatch between W1 (lokr_w1_b %s, rank %lld) and W2 "
		           "(lokr_w2_b %s, rank %lld)",
		           shp(&b1, w1b), (long long)r1, shp(&b2, w2b), (long long)r2);

	int64_t prod;
	if (lokr__mul_i64(m1, m2, &prod) || prod != l->out)
		return bad(c, LOKR_EMISMATCH,
		           "W1 rows m1 = %lld (%s %s) times W2 rows m2 = %lld (%s %s) is not the "
		           "layer's out = %lld",
		           (long long)m1, w1_desc, shp(&b1, w1_rows_t), (long long)m2, w2_desc,
		           shp(&b2, w2_rows_t), (long long)l->out);
	if (lokr__mul_i64(n1, n2, &prod) || prod != l->in)
		return bad(c, LOKR_EMISMATCH,
		           "W1 columns n1 = %lld (%s %s) times W2 columns n2 = %lld (%s %s) is not "
		           "the layer's in = %lld",
		           (long long)n1, w1_desc, shp(&b1, w1_cols_t), (long long)n2, w2_desc,
		           shp(&b2, w2_cols_t), (long long)l->in);

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
		return bad(c, LOKR_EADAPTER, "%s %s and %s %s must both be present", name_a,
		           shp(&b1, wa), name_b, shp(&b2, wb));
	if (wa->ndim != 2)
		return bad(c, LOKR_EADAPTER, "%s %s must be 2-D", name_a, shp(&b1, wa));
	if (!tucker) {
		int64_t cols = flat_cols(wb, l);
		if (wa->shape[0] != l->out || cols < 0 || cols != l->in * l->kk)
			return bad(c, LOKR_EMISMATCH,
			           "%s %s and %s %s must be (out, r) and (r, in*kk) = (r, %lld)",
			           name_a, shp(&b1, wa), name_b, shp(&b2, wb),
			           (long long)(l->in * l->kk));
		if (wa->shape[1] != wb->shape[0])
			return bad(c, LOKR_EADAPTER, "rank mismatch: %s %s, %s %s", name_a,
			           shp(&b1, wa), name_b, shp(&b2, wb));
		*rank = wb->shape[0];
		return 0;
	}
	if (!kernel_match(t, l))
		return bad(c, LOKR_EMISMATCH, "%s %s: must be (r, r, <layer kernel>)", name_t,
		           shp(&b1, t));
	if (!is_2d_like(wb) || wa->shape[1] != l->out || wb->shape[1] != l->in)
		return bad(c, LOKR_EMISMATCH,
		           "with Tucker core %s, %s %s and %s %s must be (r, out) and (r, in)",
		           name_t, name_a, shp(&b1, wa), name_b, shp(&b2, wb));
	if (wa->shape[0] != wb->shape[0] || t->shape[0] != wb->shape[0] ||
	    t->shape[1] != wb->shape[0])
		return bad(c, LOKR_EADAPTER, "rank mismatch: %s %s, %s %s, %s %s", name_t,
		           shp(&b1, t), name_a, shp(&b2, wa), name_b, shp(&b3, wb));
	*rank = wb->shape[0];
	return 0;
}

static int parse_loha(const struct ctx *c, lokr_module *m, struct slots *s)
{
	const lokr_layer *l = c->layer;
	const lokr_st_tensor *t1 = s->p[P_HADA_T1], *t2 = s->p[P_HADA_T2];
	struct shp b1, b2;
	int tucker = t1 || t2;
	if (tucker) {
		if (!t1 || !t2)
			return bad(c, LOKR_EADAPTER, "hada_t1 %s and hada_t2 %s must come together",
			           shp(&b1, t1), shp(&b2, t2));
		if (l->kind != LOKR_LAYER_CONV)
			return bad(c, LOKR_EMISMATCH, "hada_t1 %s (Tucker core) on a linear layer",
			           shp(&b1, t1));
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
		return bad(c, LOKR_EADAPTER,
		           "rank mismatch: hada_w1_b %s has rank %lld, hada_w2_b "
		           "%s has rank %lld",
		           shp(&b1, s->p[P_HADA_W1_B]), (long long)r1, shp(&b2, s->p[P_HADA_W2_B]),
		           (long long)r2);
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

static int parse_lora(const struct ctx *c, lokr_module *m, struct slots *s)
{
	const lokr_layer *l = c->layer;
	const lokr_st_tensor *up = s->p[P_LORA_UP], *down = s->p[P_LORA_DOWN],
	                     *mid = s->p[P_LORA_MID];
	struct shp b1, b2, b3;
	if (!down)
		return bad(c, LOKR_EADAPTER, "lora_up.weight %s without lora_down.weight",
		           shp(&b1, up));
	if (!is_2d_like(up) || up->shape[0] != l->out)
		return bad(c, LOKR_EMISMATCH, "lora_up.weight %s must be (out, r[, 1, 1])",
		           shp(&b1, up));
	int64_t r = down->ndim >= 1 ? down->shape[0] : 0;
	if (mid) {
		if (l->kind != LOKR_LAYER_CONV)
			return bad(c, LOKR_EMISMATCH,
			           "lora_mid.weight %s (Tucker core) on a linear layer",
			           shp(&b1, mid));
		if (!kernel_match(mid, l))
			return bad(c, LOKR_EMISMATCH,
			           "lora_mid.weight %s must be (r, r, <layer kernel>)",
			           shp(&b1, mid));
		if (!is_2d_like(down) || down->shape[1] != l->in)
			return bad(
			    c, LOKR_EMISMATCH,
			    "with lora_mid.weight, lora_down.weight %s must be (r, in[, 1, 1])",
			    shp(&b1, down));
		if (up->shape[1] != r || mid->shape[0] != r || mid->shape[1] != r)
			return bad(c, LOKR_EADAPTER,
			           "rank mismatch: lora_up.weight %s, lora_mid.weight %s, "
			           "lora_down.weight %s",
			           shp(&b1, up), shp(&b2, mid), shp(&b3, down));
	} else {
		int64_t cols = down->ndim >= 2 ? flat_cols(down, l) : -1;
		if (cols < 0 || cols != l->in * l->kk)
			return bad(c, LOKR_EMISMATCH,
			           "lora_down.weight %s must be (r, in*kk) = (r, %lld)%s",
			           shp(&b1, down), (long long)(l->in * l->kk),
			           l->kind == LOKR_LAYER_CONV ? " or (r, in, <layer kernel>)" : "");
		if (up->shape[1] != r)
			return bad(
			    c, LOKR_EADAPTER,
			    "rank mismatch: lora_up.weight %s has rank %lld, lora_down.weight "
			    "%s has rank %lld",
			    shp(&b1, up), (long long)up->shape[1], shp(&b2, down), (long long)r);
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
static int dora_axis(const struct ctx *c, lokr_module *m, const lokr_st_tensor *t)
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
	return bad(c, LOKR_EMISMATCH,
	           "dora_scale %s matches neither the output axis (%lld, 1...) / (%lld,) nor the "
	           "input axis (1, %lld...)",
	           shp(&b, t), (long long)l->out, (long long)l->out, (long long)l->in);
}

/* -------------------------------------------------------------- passes */

enum algo_guess { GUESS_NONE = -1 };

static int param_index(const char *p)
{
	for (int i = 0; i < P_COUNT; i++)
		if (!strcmp(p, param_names[i]))
			return i;
	return -1;
}

static const char *unsupported_algo(const char *p)
{
	for (size_t i = 0; i < sizeof unsupported_keys / sizeof unsupported_keys[0]; i++)
		if (!strcmp(p, unsupported_keys[i].key))
			return unsupported_keys[i].algo;
	return NULL;
}

static int allowed(lokr_algo algo, int p)
{
	if (p == P_ALPHA || p == P_DORA)
		return 1;
	switch (algo) {
	case LOKR_ALGO_LOKR:
		return p >= P_LOKR_W1 && p <= P_LOKR_T2;
	case LOKR_ALGO_LOHA:
		return p >= P_HADA_W1_A && p <= P_HADA_T2;
	case LOKR_ALGO_LORA:
		return p >= P_LORA_UP && p <= P_LORA_MID;
	}
	return 0;
}

static int is_training_key(const char *key)
{
	const char *p = strchr(key, '.');
	p = p ? p + 1 : key;
	return !strncmp(key, TRAINING_PREFIX, strlen(TRAINING_PREFIX)) ||
	       !strncmp(p, TRAINING_PREFIX, strlen(TRAINING_PREFIX));
}

/* The param part of tensor `t` if it belongs to module `m` and is not an
 * ignored training key, else NULL. */
static const char *param_of(const lokr_module *m, const lokr_st_tensor *t)
{
	size_t len = strlen(m->name);
	if (strncmp(t->name, m->name, len) || t->name[len] != '.' || is_training_key(t->name))
		return NULL;
	return t->name + len + 1;
}

/* Pass 1 for one module: keys, algorithm, layer, shapes, alpha. */
static int module_parse(const lokr_base *base, const lokr_st_file *f, lokr_adapter *a,
                        lokr_module *m, struct slots *s, lokr_error *err)
{
	struct ctx c = {base, m, NULL, err};
	const char *unsup = NULL, *unsup_key = NULL, *unknown = NULL;

	for (size_t i = s->first; i < s->last; i++) {
		const lokr_st_tensor *t = lokr_st_at(f, i);
		const char *p = param_of(m, t);
		if (!p)
			continue;
		int idx = param_index(p);
		if (idx >= 0) {
			s->p[idx] = t;
		} else if (!unsup && (unsup = unsupported_algo(p))) {
			unsup_key = t->name;
		} else if (!unknown) {
			unknown = t->name;
		}
	}

	/* Detection in LyCORIS's order (get_module): LoCon, LoHa, then LoKr on
	 * any of its keys. */
	int algo;
	if (s->p[P_LORA_UP] || s->p[P_LORA_DOWN] || s->p[P_LORA_MID])
		algo = LOKR_ALGO_LORA;
	else if (s->p[P_HADA_W1_A] || s->p[P_HADA_W1_B] || s->p[P_HADA_W2_A] || s->p[P_HADA_W2_B] ||
	         s->p[P_HADA_T1] || s->p[P_HADA_T2])
		algo = LOKR_ALGO_LOHA;
	else if (s->p[P_LOKR_W1] || s->p[P_LOKR_W1_A] || s->p[P_LOKR_W1_B] || s->p[P_LOKR_W2] ||
	         s->p[P_LOKR_W2_A] || s->p[P_LOKR_W2_B] || s->p[P_LOKR_T2])
		algo = LOKR_ALGO_LOKR;
	else
		algo = GUESS_NONE;

	if (unsup)
		return bad(&c, LOKR_EUNSUPPORTED, "algorithm %s is not supported (key %s)", unsup,
		           unsup_key);
	if (unknown)
		return bad(&c, LOKR_EADAPTER, "unknown key %s", unknown);
	if (algo == GUESS_NONE)
		return bad(&c, LOKR_EADAPTER, "no adapter weights (only alpha/dora_scale)");
	m->algo = (lokr_algo)algo;
	for (int p = 0; p < P_COUNT; p++)
		if (s->p[p] && !allowed(m->algo, p))
			return bad(&c, LOKR_EADAPTER, "key %s does not belong to a %s module",
			           s->p[p]->name, lokr_algo_name(m->algo));
	if (algo == LOKR_ALGO_LORA && !s->p[P_LORA_UP])
		return bad(&c, LOKR_EADAPTER, "lora_down.weight without lora_up.weight");
	if (algo == LOKR_ALGO_LOHA && !s->p[P_HADA_W1_A])
		return bad(&c, LOKR_EADAPTER, "hada_* keys without hada_w1_a");

	int64_t li = lokr_base_map_module(base, m->name);
	if (li == -2)
		return bad(&c, LOKR_EMISMATCH,
		           "module name maps to two base layers (their names collide)");
	if (li < 0)
		return bad(&c, LOKR_EMISMATCH, "module name maps to no layer of the base");
	m->layer = (size_t)li;
	c.layer = s->layer = lokr_base_layer_at(base, m->layer);
	m->out = c.layer->out;
	m->in = c.layer->in;
	m->kk = c.layer->kk;

	/* Every stored tensor: decodable dtype, no zero-size factor. */
	for (int p = 0; p < P_COUNT; p++) {
		const lokr_st_tensor *t = s->p[p];
		struct shp b;
		if (!t)
			continue;
		if (!is_float_dtype(t->dtype))
			return bad(&c, LOKR_EUNSUPPORTED,
			           "%s has dtype %s; only F32, F16, BF16 and F64 are supported",
			           param_names[p], t->dtype_name);
		if (t->nelem == 0)
			return bad(&c, LOKR_EADAPTER, "%s %s is empty", param_names[p], shp(&b, t));
	}

	int rc;
	switch (m->algo) {
	case LOKR_ALGO_LOKR:
		rc = parse_lokr(&c, m, s);
		break;
	case LOKR_ALGO_LOHA:
		rc = parse_loha(&c, m, s);
		break;
	default:
		rc = parse_lora(&c, m, s);
		break;
	}
	if (rc)
		return rc;
	if (m->algo != LOKR_ALGO_LOKR && m->rank <= 0)
		return bad(&c, LOKR_EADAPTER, "rank 0");
	if (s->p[P_DORA] && (rc = dora_axis(&c, m, s->p[P_DORA])))
		return rc;
	return module_scale(&c, a, m, s);
}

/* Nonzero if any of n floats is NaN or Inf (exponent bits all ones).  Adding
 * 2^23 to the masked exponent carries into bit 31 exactly for those, so the
 * test is an and/add/or reduction that the compiler vectorizes. */
typedef uint32_t v8u __attribute__((vector_size(32)));

static int any_nonfinite(const float *p, size_t n)
{
	const v8u mask = {0x7f800000u, 0x7f800000u, 0x7f800000u, 0x7f800000u,
	                  0x7f800000u, 0x7f800000u, 0x7f800000u, 0x7f800000u};
	const v8u one = {0x00800000u, 0x00800000u, 0x00800000u, 0x00800000u,
	                 0x00800000u, 0x00800000u, 0x00800000u, 0x00800000u};
	v8u acc = {0};
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		v8u u;
		memcpy(&u, p + i, sizeof u);
		acc |= (u & mask) + one;
	}
	uint32_t r = 0;
	for (int k = 0; k < 8; k++)
		r |= acc[k];
	for (; i < n; i++) {
		uint32_t u;
		memcpy(&u, p + i, sizeof u);
		r |= (u & 0x7f800000u) + 0x00800000u;
	}
	return (r & 0x80000000u) != 0;
}

/* Decode a factor into a new 64-byte aligned buffer, in chunks so that the
 * NaN/Inf check reads the output while it is still in cache. */
static int decode_tensor(const struct ctx *c, const lokr_st_tensor *t, float **out)
{
	enum { CHUNK = 16384 };
	uint64_t bytes;
	if (lokr__mul_u64(t->nelem, sizeof(float), &bytes) || bytes > SIZE_MAX)
		return bad(c, LOKR_ERANGE, "%s is too large", t->name);
	float *d = lokr__try_aligned((size_t)bytes);
	if (!d)
		return bad(c, LOKR_ENOMEM, "out of memory decoding %s (%llu bytes)", t->name,
		           (unsigned long long)bytes);
	size_t n = (size_t)t->nelem, esize = lokr_dtype_size(t->dtype);
	for (size_t i = 0; i < n; i += CHUNK) {
		size_t k = n - i < CHUNK ? n - i : CHUNK;
		int rc = lokr_decode_f32(t->dtype, t->data + i * esize, k, d + i);
		if (rc) {
			free(d);
			return bad(c, rc, "%s: cannot decode dtype %s", t->name, t->dtype_name);
		}
		if (any_nonfinite(d + i, k)) {
			struct shp b;
			free(d);
			return bad(c, LOKR_EADAPTER, "%s %s contains NaN or Inf", t->name,
			           shp(&b, t));
		}
	}
	*out = d;
	return 0;
}

/* Pass 2 for one module: decode every factor and the DoRA magnitude. */
static int module_decode(lokr_module *m, struct slots *s, uint64_t *bytes, lokr_error *err)
{
	struct ctx c = {NULL, m, s->layer, err};
	for (int i = 0; i < s->ndec; i++) {
		int rc = decode_tensor(&c, s->dec[i].t, &s->dec[i].mat->data);
		if (rc)
			return rc;
		*bytes += s->dec[i].t->nelem * sizeof(float);
	}
	if (s->p[P_DORA]) {
		int rc = decode_tensor(&c, s->p[P_DORA], &m->dora_scale);
		if (rc)
			return rc;
		*bytes += s->p[P_DORA]->nelem * sizeof(float);
	}
	return 0;
}

static int module_stored(const lokr_st_file *f, lokr_module *m, const struct slots *s,
                         uint64_t *params, lokr_error *err)
{
	size_t n = 0;
	for (size_t i = s->first; i < s->last; i++)
		if (param_of(m, lokr_st_at(f, i)))
			n++;
	m->stored = lokr__try_calloc(n, sizeof *m->stored);
	if (!m->stored)
		return lokr__fail(err, LOKR_ENOMEM, "out of memory");
	for (size_t i = s->first; i < s->last; i++) {
		const lokr_st_tensor *t = lokr_st_at(f, i);
		const char *p = param_of(m, t);
		if (!p)
			continue;
		lokr_stored *st = &m->stored[m->nstored++];
		st->key = try_strndup(p, strlen(p));
		st->dtype = try_strndup(t->dtype_name, strlen(t->dtype_name));
		if (!st->key || !st->dtype)
			return lokr__fail(err, LOKR_ENOMEM, "out of memory");
		st->ndim = t->ndim;
		memcpy(st->shape, t->shape, sizeof st->shape);
		if (strcmp(p, "alpha"))
			*params += t->nelem;
	}
	return 0;
}

static void module_clear(lokr_module *m)
{
	lokr_mat *mats[] = {&m->w1,        &m->w1_a,      &m->w1_b,      &m->w2,
	                    &m->w2_a,      &m->w2_b,      &m->t2,        &m->hada_w1_a,
	                    &m->hada_w1_b, &m->hada_w2_a, &m->hada_w2_b, &m->hada_t1,
	                    &m->hada_t2,   &m->up,        &m->down,      &m->mid};
	for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++)
		free(mats[i]->data);
	free(m->dora_scale);
	free(m->dora_g);
	if (m->plan)
		lokr__plan_free(m->plan);
	for (size_t i = 0; i < m->nstored; i++) {
		free(m->stored[i].key);
		free(m->stored[i].dtype);
	}
	free(m->stored);
	free(m->name);
}

void lokr_adapter_free(lokr_adapter *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->nmodules; i++)
		module_clear(&a->modules[i]);
	free(a->modules);
	for (size_t i = 0; i < a->nwarnings; i++)
		free(a->warnings[i]);
	free(a->warnings);
	for (size_t i = 0; i < a->nmeta; i++) {
		free(a->meta_keys[i]);
		free(a->meta_values[i]);
	}
	free(a->meta_keys);
	free(a->meta_values);
	free(a);
}

/* Length of the module part of a key (text before the first '.'), or 0 when
 * the key has no module. */
static size_t module_len(const char *key)
{
	const char *dot = strchr(key, '.');
	return dot ? (size_t)(dot - key) : 0;
}

static int cmp_module_layer(const void *x, const void *y)
{
	const lokr_module *a = x, *b = y;
	return a->layer < b->layer ? -1 : a->layer > b->layer;
}

static int copy_metadata(const lokr_st_file *f, lokr_adapter *a, lokr_error *err)
{
	size_t n = lokr_st_metadata_count(f);
	if (!n)
		return 0;
	a->meta_keys = lokr__try_calloc(n, sizeof *a->meta_keys);
	a->meta_values = lokr__try_calloc(n, sizeof *a->meta_values);
	if (!a->meta_keys || !a->meta_values)
		return lokr__fail(err, LOKR_ENOMEM, "out of memory copying metadata");
	for (size_t i = 0; i < n; i++) {
		const char *k, *v;
		if (lokr_st_metadata_at(f, i, &k, &v))
			return lokr__fail(err, LOKR_EFORMAT, "metadata entry %zu unreadable", i);
		a->meta_keys[i] = try_strndup(k, strlen(k));
		a->meta_values[i] = try_strndup(v, strlen(v));
		a->nmeta++;
		if (!a->meta_keys[i] || !a->meta_values[i])
			return lokr__fail(err, LOKR_ENOMEM, "out of memory copying metadata");
	}
	return 0;
}

/* Group the (name-sorted) tensors into modules: fills a->modules (names
 * only) and the slots' index ranges. */
static int group_modules(const lokr_st_file *f, lokr_adapter *a, struct slots **slots_out,
                         size_t *ntraining, lokr_error *err)
{
	size_t n = lokr_st_count(f), count = 0;
	const char *prev = NULL;
	size_t prev_len = 0;
	*ntraining = 0;
	for (size_t i = 0; i < n; i++) {
		const char *key = lokr_st_at(f, i)->name;
		size_t len = module_len(key);
		if (is_training_key(key)) {
			(*ntraining)++;
			continue;
		}
		if (len == 0)
			return lokr__fail(err, LOKR_EADAPTER,
			                  "key '%s' is not of the form <module>.<param>", key);
		if (!prev || len != prev_len || memcmp(key, prev, len)) {
			count++;
			prev = key;
			prev_len = len;
		}
	}
	if (count == 0)
		return lokr__fail(err, LOKR_EADAPTER, "no adapter modules in the file");

	a->modules = lokr__try_calloc(count, sizeof *a->modules);
	struct slots *s = lokr__try_calloc(count, sizeof *s);
	if (!a->modules || !s) {
		free(s);
		return lokr__fail(err, LOKR_ENOMEM, "out of memory (%zu modules)", count);
	}
	*slots_out = s;
	prev = NULL;
	for (size_t i = 0; i < n; i++) {
		const char *key = lokr_st_at(f, i)->name;
		size_t len = module_len(key);
		if (is_training_key(key))
			continue;
		if (!prev || len != prev_len || memcmp(key, prev, len)) {
			if (a->nmodules)
				s[a->nmodules - 1].last = i;
			lokr_module *m = &a->modules[a->nmodules];
			m->name = try_strndup(key, len);
			m->alpha = NAN;
			if (!m->name)
				return lokr__fail(err, LOKR_ENOMEM, "out of memory");
			s[a->nmodules].first = i;
			a->nmodules++;
			prev = key;
			prev_len = len;
		}
	}
	s[a->nmodules - 1].last = n;
	return 0;
}

static int adapter_build(const lokr_base *base, const lokr_st_file *f, lokr_adapter *a,
                         struct slots **slots_out, lokr_error *err)
{
	size_t ntraining;
	int rc = group_modules(f, a, slots_out, &ntraining, err);
	struct slots *s = *slots_out;
	if (rc)
		return rc;

	/* Pass 1: structure, shapes and alpha of every module. */
	for (size_t i = 0; i < a->nmodules; i++)
		if ((rc = module_parse(base, f, a, &a->modules[i], &s[i], err)))
			return rc;

	/* At most one module per layer. */
	for (size_t i = 0; i < a->nmodules; i++)
		for (size_t j = i + 1; j < a->nmodules; j++)
			if (a->modules[i].layer == a->modules[j].layer) {
				return lokr__fail(
				    err, LOKR_EADAPTER, "modules %s and %s both map to layer %s",
				    a->modules[i].name, a->modules[j].name, s[i].layer->name);
			}

	/* Pass 2: decode.  Pass 3: DoRA vectors and plans. */
	uint64_t bytes = 0, params = 0, full = 0;
	for (size_t i = 0; i < a->nmodules; i++) {
		lokr_module *m = &a->modules[i];
		if ((rc = module_decode(m, &s[i], &bytes, err)))
			return rc;
		if ((rc = module_stored(f, m, &s[i], &params, err)))
			return rc;
		full += (uint64_t)m->out * (uint64_t)m->in * (uint64_t)m->kk;
	}
	for (size_t i = 0; i < a->nmodules; i++) {
		lokr_module *m = &a->modules[i];
		if (m->dora_axis == LOKR_DORA_NONE)
			continue;
		int64_t len = m->dora_axis == LOKR_DORA_OUT ? m->out : m->in;
		m->dora_g = lokr__try_aligned((size_t)len * sizeof(float));
		if (!m->dora_g)
			return lokr__fail(err, LOKR_ENOMEM, "out of memory (DoRA vector of %s)",
			                  m->name);
		if ((rc = lokr__dora_vector(s[i].layer, m, m->dora_g, err)))
			return rc;
		bytes += (uint64_t)len * sizeof(float);
	}
	for (size_t i = 0; i < a->nmodules; i++) {
		lokr_module *m = &a->modules[i];
		if ((rc = lokr__plan_module(s[i].layer, m, err)))
			return rc;
		bytes += lokr__plan_bytes(m->plan);
	}
	if ((rc = copy_metadata(f, a, err)))
		return rc;
	if (ntraining &&
	    (rc = add_warning(a, err, "ignored %zu resume-only " TRAINING_PREFIX "* keys",
	                      ntraining)))
		return rc;

	qsort(a->modules, a->nmodules, sizeof *a->modules, cmp_module_layer);
	a->resident_bytes = bytes + sizeof *a + a->nmodules * sizeof *a->modules;
	a->param_count = params;
	a->full_param_count = full;
	return 0;
}

int lokr_adapter_load(const lokr_base *base, const lokr_st_file *file, lokr_adapter **out,
                      lokr_error *err)
{
	if (out)
		*out = NULL;
	if (!base || !file || !out)
		return lokr__fail(err, LOKR_EINVAL, "lokr_adapter_load: NULL argument");
	lokr_adapter *a = lokr__try_calloc(1, sizeof *a);
	if (!a)
		return lokr__fail(err, LOKR_ENOMEM, "out of memory");
	struct slots *s = NULL;
	int rc = adapter_build(base, file, a, &s, err);
	free(s);
	if (rc) {
		lokr_adapter_free(a);
		return rc;
	}
	*out = a;
	return 0;
}

const lokr_module *lokr_adapter_module_for(const lokr_adapter *a, size_t layer)
{
	if (!a)
		return NULL;
	size_t lo = 0, hi = a->nmodules;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (a->modules[mid].layer < layer)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < a->nmodules && a->modules[lo].layer == layer ? &a->modules[lo] : NULL;
}

const char *lokr_algo_name(lokr_algo algo)
{
	switch (algo) {
	case LOKR_ALGO_LOKR:
		return "lokr";
	case LOKR_ALGO_LOHA:
		return "loha";
	case LOKR_ALGO_LORA:
		return "lora";
	}
	return "unknown";
}

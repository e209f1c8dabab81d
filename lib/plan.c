/*
 * plan.c - the planner: how each (layer, adapter module) is applied.
 *
 * Decided once when an adapter is loaded, from the shapes alone, and kept
 * read-only in module->plan (shared by every worker):
 *  - LoKr: evaluation order A (W2 first) or B (W1 first), and for a low-rank
 *    W2 whether to keep its factors or expand W2 once.  A low-rank W1 is
 *    always expanded (it is tiny); a Tucker W2 is rebuilt dense (conv only).
 *  - LoRA/LoCon: x down^T then up^T (a Tucker mid is folded into down).
 *  - LoHa: dW = (w1a w1b) .* (w2a w2b) has rank up to r^2 and cannot be
 *    factored, so it is built once here and its bytes are counted.
 *  - The merge-and-cache threshold: how many rows (over the life of a cached
 *    merged weight) make building W' = W0 + l s dW once cheaper than the
 *    factored delta on each row.  The executor does not merge (factored
 *    apply stays within a few percent of the base GEMM on this machine and a
 *    merged W' costs out x in floats per (layer, set)); the number is
 *    computed and shown so that a cache above the executor can use it.
 *
 * Cost model, in multiply-adds per input row (lycoris-format.md 4.2),
 * plus LOKR_PLAN_CALL_MACS per BLAS call (a tiny sgemm's fixed cost is about
 * 4096 multiply-adds at the small-GEMM rate) plus LOKR_PLAN_BYTE_MACS per
 * byte of factors read (at ~25 GB/s and ~25 G multiply-adds/s for the small
 * GEMMs a byte costs about one multiply-add).  Both extra terms matter only
 * when the MAC counts are close; the distinct-adapter batch (one row per
 * adapter) is the case they model.
 */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include <cblas.h>

#include "kron.h"

static int fits_blas(int64_t v)
{
	return v >= 0 && v <= (int64_t)0x7fffffff;
}

static float *plan_own(struct lokr_plan *p, size_t nfloats)
{
	int slot = 0;
	while (slot < 5 && p->own[slot])
		slot++;
	LOKR_ASSERT(slot < 5);
	float *buf = lokr__try_aligned(nfloats * sizeof(float));
	if (!buf)
		return NULL;
	p->own[slot] = buf;
	p->own_bytes += nfloats * sizeof(float);
	return buf;
}

static const char *mname(const lokr_module *m)
{
	return m->name ? m->name : "module";
}

static int bad_shape(lokr_error *err, const lokr_module *m, const char *what)
{
	return lokr__fail(err, LOKR_EADAPTER, "%s: cannot plan: %s", mname(m), what);
}

/* dst (cols x rows) = src (rows x cols)^T */
static void transpose(const float *src, int64_t rows, int64_t cols, float *dst)
{
	for (int64_t i = 0; i < rows; i++)
		for (int64_t j = 0; j < cols; j++)
			dst[j * rows + i] = src[i * cols + j];
}

/* Cost of one LoKr option: MACs per row + call and byte terms. */
static double kron_cost(const lokr_kron_factors *f, lokr_kron_order order)
{
	double calls = f->w2 ? 2.0 : 3.0;
	double bytes = 4.0 * ((double)f->m1 * (double)f->n1 +
	                      (f->w2 ? (double)f->m2 * (double)f->n2
	                             : (double)f->r * (double)(f->m2 + f->n2)));
	return lokr__kron_macs(f, order) + LOKR_PLAN_CALL_MACS * calls +
	       LOKR_PLAN_BYTE_MACS * bytes;
}

static int plan_lokr(const lokr_layer *layer, lokr_module *m, struct lokr_plan *p, lokr_error *err)
{
	lokr_kron_factors *f = &p->kf;
	if (lokr__lokr_check(m) != LOKR_OK || m->out != p->out || m->in * m->kk != p->width)
		return bad_shape(err, m, "LoKr factor shapes do not multiply out to the layer");
	f->m1 = m->m1;
	f->n1 = m->n1;
	f->m2 = m->m2;
	f->n2 = m->n2 * m->kk;

	/* W1: dense as stored, or expanded from its factors (it is tiny) */
	if (m->w1.data) {
		f->w1 = m->w1.data;
	} else {
		float *w1 = plan_own(p, (size_t)(f->m1 * f->n1));
		if (!w1 || lokr__lokr_factors(m, w1, NULL) != LOKR_OK)
			return lokr__fail(err, LOKR_ENOMEM, "%s: plan: out of memory", mname(m));
		f->w1 = w1;
		p->w1_expanded = 1;
	}

	if (m->w2.data) {
		f->w2 = m->w2.data;
	} else if (m->t2.data) {
		/* Tucker (conv only): rebuild W2flat once */
		float *w2 = plan_own(p, (size_t)(f->m2 * f->n2));
		if (!w2 || lokr__lokr_factors(m, NULL, w2) != LOKR_OK)
			return lokr__fail(err, LOKR_ENOMEM, "%s: plan: out of memory", mname(m));
		f->w2 = w2;
		p->w2_expanded = 1;
		p->w2_lowrank = 1;
		p->tucker = 1;
	} else {
		p->w2_lowrank = 1;
		f->w2a = m->w2_a.data;
		f->w2b = m->w2_b.data;
		f->r = m->w2_a.cols;
	}

	/* Cost every option; for a low-rank W2 also the expanded forms. */
	lokr_kron_factors dense = *f, lr = *f;
	int have_lr = f->w2 == NULL;
	if (have_lr) {
		dense.w2 = (const float *)f; /* any non-NULL: marks "dense" for the cost model */
		dense.r = 0;
	}
	p->macs_opt[0] = lokr__kron_macs(&dense, LOKR_KRON_A);
	p->macs_opt[1] = lokr__kron_macs(&dense, LOKR_KRON_B);
	p->macs_opt[2] = have_lr ? lokr__kron_macs(&lr, LOKR_KRON_A) : 0.0;
	p->macs_opt[3] = have_lr ? lokr__kron_macs(&lr, LOKR_KRON_B) : 0.0;
	p->macs_opt[4] = have_lr ? lokr__kron_macs(&lr, LOKR_KRON_S) : 0.0;
	double best = kron_cost(&dense, LOKR_KRON_A);
	int pick = 0;
	double c = kron_cost(&dense, LOKR_KRON_B);
	if (c < best) {
		best = c;
		pick = 1;
	}
	if (have_lr) {
		for (int o = 0; o < 3; o++) {
			c = kron_cost(&lr, (lokr_kron_order)o);
			if (c < best) {
				best = c;
				pick = 2 + o;
			}
		}
	}
	p->order = pick == 4 ? LOKR_KRON_S : (pick & 1) ? LOKR_KRON_B : LOKR_KRON_A;
	if (have_lr && pick < 2) {
		/* expanding wins: build W2 = w2a w2b once */
		float *w2 = plan_own(p, (size_t)(f->m2 * f->n2));
		if (!w2 || lokr__lokr_factors(m, NULL, w2) != LOKR_OK)
			return lokr__fail(err, LOKR_ENOMEM, "%s: plan: out of memory", mname(m));
		f->w2 = w2;
		f->w2a = f->w2b = NULL;
		f->r = 0;
		p->w2_expanded = 1;
	}
	/* transposed copies for the small products (see lokr_kron_factors);
	 * a dense W2 only when small: a big one is streamed by sgemv anyway */
	if (f->w2 && f->m2 * f->n2 <= 4096) {
		float *t = plan_own(p, (size_t)(f->m2 * f->n2));
		if (!t)
			return lokr__fail(err, LOKR_ENOMEM, "%s: plan: out of memory", mname(m));
		transpose(f->w2, f->m2, f->n2, t);
		f->w2t = t;
	} else if (!f->w2) {
		float *ta = plan_own(p, (size_t)(f->r * f->m2));
		float *tb = ta ? plan_own(p, (size_t)(f->r * f->n2)) : NULL;
		if (!tb)
			return lokr__fail(err, LOKR_ENOMEM, "%s: plan: out of memory", mname(m));
		transpose(f->w2a, f->m2, f->r, ta);
		transpose(f->w2b, f->r, f->n2, tb);
		f->w2at = ta;
		f->w2bt = tb;
	}
	p->macs_row = lokr__kron_macs(f, p->order);
	p->read_bytes = (uint64_t)(4.0 * ((double)f->m1 * (double)f->n1 +
	                                  (f->w2 ? (double)f->m2 * (double)f->n2
	                                         : (double)f->r * (double)(f->m2 + f->n2))));
	(void)layer;
	return LOKR_OK;
}

static int plan_lora(lokr_module *m, struct lokr_plan *p, lokr_error *err)
{
	int64_t r = m->up.cols;
	if (!m->up.data || !m->down.data || r <= 0 || m->up.rows != p->out || m->down.rows != r)
		return bad_shape(err, m, "LoRA up/down shapes");
	p->up = m->up.data;
	p->r = r;
	if (m->mid.data) {
		/* Tucker LoCon: down_eff[a, c*kk + k] = sum_b mid[a*r + b, k] down[b, c] */
		if (m->down.cols != m->in || m->mid.rows != r * r || m->mid.cols != m->kk)
			return bad_shape(err, m, "LoCon Tucker shapes");
		float *d = plan_own(p, (size_t)(r * p->width));
		if (!d)
			return lokr__fail(err, LOKR_ENOMEM, "%s: plan: out of memory", mname(m));
		lokr__tucker_core(m->mid.data, r, m->down.data, m->in, m->kk, d);
		p->down = d;
		p->tucker = 1;
	} else {
		if (m->down.cols != p->width)
			return bad_shape(err, m, "LoRA down width");
		p->down = m->down.data;
	}
	p->macs_row = (double)r * (double)(p->out + p->width);
	p->read_bytes = (uint64_t)(4.0 * (double)r * (double)(p->out + p->width));
	return LOKR_OK;
}

/* One Hadamard factor of LoHa into dst (out x width): a b, or with a Tucker
 * core R[p, q*kk + k] = sum_{a,b} t[a*r + b, k] wa[a, p] wb[b, q]. */
static int loha_factor(const lokr_module *m, const lokr_mat *a, const lokr_mat *b,
                       const lokr_mat *t, int64_t out, int64_t width, float *dst)
{
	if (t->data) {
		int64_t r = a->rows;
		if (!a->data || !b->data || r <= 0 || a->cols != out || b->rows != r ||
		    b->cols != m->in || t->rows != r * r || t->cols != m->kk)
			return LOKR_EADAPTER;
		float *tmp = lokr__try_malloc((size_t)r * (size_t)width * sizeof *tmp);
		if (!tmp)
			return LOKR_ENOMEM;
		lokr__tucker_core(t->data, r, b->data, m->in, m->kk, tmp);
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)width, (int)r,
		            1.0f, a->data, (int)out, tmp, (int)width, 0.0f, dst, (int)width);
		free(tmp);
		return LOKR_OK;
	}
	int64_t r = a->cols;
	if (!a->data || !b->data || r <= 0 || a->rows != out || b->rows != r || b->cols != width)
		return LOKR_EADAPTER;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)out, (int)width, (int)r, 1.0f,
	            a->data, (int)r, b->data, (int)width, 0.0f, dst, (int)width);
	return LOKR_OK;
}

static int plan_loha(lokr_module *m, struct lokr_plan *p, lokr_error *err)
{
	uint64_t n;
	if (lokr__mul_u64((uint64_t)p->out, (uint64_t)p->width, &n) || n > SIZE_MAX / 8)
		return lokr__fail(err, LOKR_ERANGE, "%s: LoHa dW of %lld x %lld is too large",
		                  mname(m), (long long)p->out, (long long)p->width);
	float *d = plan_own(p, (size_t)n);
	float *tmp = d ? lokr__try_aligned((size_t)n * sizeof *tmp) : NULL;
	if (!tmp)
		return lokr__fail(err, LOKR_ENOMEM, "%s: plan: out of memory for LoHa dW",
		                  mname(m));
	int rc = loha_factor(m, &m->hada_w1_a, &m->hada_w1_b, &m->hada_t1, p->out, p->width, d);
	if (rc == LOKR_OK)
		rc = loha_factor(m, &m->hada_w2_a, &m->hada_w2_b, &m->hada_t2, p->out, p->width,
		                 tmp);
	if (rc == LOKR_OK)
		for (size_t i = 0; i < n; i++)
			d[i] *= tmp[i];
	free(tmp);
	if (rc == LOKR_EADAPTER)
		return bad_shape(err, m, "LoHa factor shapes");
	if (rc != LOKR_OK)
		return lokr__fail(err, rc, "%s: plan: out of memory for LoHa dW", mname(m));
	p->dense = d;
	p->tucker = m->hada_t1.data != NULL;
	p->macs_row = (double)n;
	p->read_bytes = n * 4;
	return LOKR_OK;
}

/* Merge-and-cache threshold: building W' = W0 + l s dW costs about out*width
 * multiply-adds (forming dW) plus reading W0 and writing W' (8 bytes per
 * weight); after that each row saves the factored delta's cost. */
static int64_t merge_rows(const struct lokr_plan *p)
{
	double weights = (double)p->out * (double)p->width;
	double build =
	    (p->kind == LOKR_PLAN_DENSE ? 0.0 : weights) + LOKR_PLAN_BYTE_MACS * 8.0 * weights;
	double per_row = p->macs_row + 1.0;
	double rows = ceil(build / per_row);
	return rows > 9e18 ? INT64_MAX : (int64_t)rows;
}

int lokr__plan_module(const lokr_layer *layer, lokr_module *m, lokr_error *err)
{
	LOKR_ASSERT(layer && m);
	struct lokr_plan *p = lokr__try_calloc(1, sizeof *p);
	if (!p)
		return lokr__fail(err, LOKR_ENOMEM, "%s: plan: out of memory", mname(m));
	p->out = layer->out;
	int rc;
	if (lokr__mul_i64(layer->in, layer->kk, &p->width) || !fits_blas(p->out) ||
	    !fits_blas(p->width)) {
		rc = lokr__fail(err, LOKR_ERANGE, "%s: layer %s too large for BLAS", mname(m),
		                layer->name);
		goto fail;
	}
	if (m->out != layer->out || m->in != layer->in || m->kk != layer->kk) {
		rc = lokr__fail(err, LOKR_EADAPTER,
		                "%s: module dims %lld x %lld x %lld differ from layer %s", mname(m),
		                (long long)m->out, (long long)m->in, (long long)m->kk, layer->name);
		goto fail;
	}
	p->base_macs_row = (double)p->out * (double)p->width;
	switch (m->algo) {
	case LOKR_ALGO_LOKR:
		p->kind = LOKR_PLAN_KRON;
		rc = plan_lokr(layer, m, p, err);
		break;
	case LOKR_ALGO_LORA:
		p->kind = LOKR_PLAN_LOWRANK;
		rc = plan_lora(m, p, err);
		break;
	case LOKR_ALGO_LOHA:
		p->kind = LOKR_PLAN_DENSE;
		rc = plan_loha(m, p, err);
		break;
	default:
		rc = lokr__fail(err, LOKR_EUNSUPPORTED, "%s: unknown algorithm", mname(m));
		break;
	}
	if (rc != LOKR_OK)
		goto fail;
	p->merge_rows = merge_rows(p);
	lokr__plan_free(m->plan);
	m->plan = p;
	return LOKR_OK;
fail:
	lokr__plan_free(p);
	return rc;
}

void lokr__plan_free(struct lokr_plan *plan)
{
	if (!plan)
		return;
	for (int i = 0; i < 5; i++)
		free(plan->own[i]);
	free(plan);
}

uint64_t lokr__plan_bytes(const struct lokr_plan *plan)
{
	return plan ? sizeof *plan + plan->own_bytes : 0;
}

int lokr__plan_force_order(struct lokr_plan *plan, lokr_kron_order order)
{
	if (!plan || plan->kind != LOKR_PLAN_KRON ||
	    (order == LOKR_KRON_S && plan->kf.w2 != NULL) ||
	    (order != LOKR_KRON_A && order != LOKR_KRON_B && order != LOKR_KRON_S))
		return LOKR_EINVAL;
	plan->order = order;
	plan->macs_row = lokr__kron_macs(&plan->kf, order);
	plan->merge_rows = merge_rows(plan);
	return LOKR_OK;
}

size_t lokr__plan_scratch(const struct lokr_plan *plan, lokr_kron_w1step step, int64_t rows)
{
	switch (plan->kind) {
	case LOKR_PLAN_KRON:
		return lokr__kron_scratch(&plan->kf, plan->order, step, rows);
	case LOKR_PLAN_LOWRANK:
		return (size_t)rows * (size_t)plan->r;
	case LOKR_PLAN_DENSE:
		return 0;
	}
	return 0;
}

void lokr__plan_apply(const struct lokr_plan *plan, lokr_kron_w1step step, int64_t rows,
                      const float *x, float alpha, float beta, float *y, float *scratch)
{
	switch (plan->kind) {
	case LOKR_PLAN_KRON:
		lokr__kron_apply(&plan->kf, plan->order, step, rows, x, alpha, beta, y, scratch);
		return;
	case LOKR_PLAN_LOWRANK:
		lokr__mm_nt(rows, plan->r, plan->width, 1.0f, x, plan->width, plan->down,
		            plan->width, 0.0f, scratch, plan->r);
		lokr__mm_nt(rows, plan->out, plan->r, alpha, scratch, plan->r, plan->up, plan->r,
		            beta, y, plan->out);
		return;
	case LOKR_PLAN_DENSE:
		lokr__mm_nt(rows, plan->out, plan->width, alpha, x, plan->width, plan->dense,
		            plan->width, beta, y, plan->out);
		return;
	}
	LOKR_ASSERT(!"unknown plan kind");
}

/* Append to buf at *at, never past len - 1. */
static void put(char *buf, size_t len, size_t *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t len, size_t *at, const char *fmt, ...)
{
	if (*at >= len)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + *at, len - *at, fmt, ap);
	va_end(ap);
	if (n > 0)
		*at = *at + (size_t)n < len ? *at + (size_t)n : len - 1;
}

int lokr_plan_describe(const lokr_module *m, char *buf, size_t len)
{
	if (!buf || len == 0)
		return LOKR_EINVAL;
	buf[0] = '\0';
	if (!m || !m->plan)
		return LOKR_EINVAL;
	const struct lokr_plan *p = m->plan;
	size_t at = 0;
	switch (p->kind) {
	case LOKR_PLAN_KRON: {
		const lokr_kron_factors *f = &p->kf;
		put(buf, len, &at, "order %s; W1 %lldx%lld%s; W2 %lldx%lld ",
		    p->order == LOKR_KRON_A   ? "A (W2 first)"
		    : p->order == LOKR_KRON_B ? "B (W1 first)"
		                              : "S (w2_b, W1, w2_a)",
		    (long long)f->m1, (long long)f->n1,
		    p->w1_expanded ? " (expanded from factors)" : "", (long long)f->m2,
		    (long long)f->n2);
		if (p->tucker)
			put(buf, len, &at, "(rebuilt from Tucker core)");
		else if (p->w2_expanded)
			put(buf, len, &at, "(low-rank, expanded: cheaper)");
		else if (p->w2_lowrank)
			put(buf, len, &at, "(low-rank r %lld, factors kept)", (long long)f->r);
		else
			put(buf, len, &at, "(dense)");
		put(buf, len, &at, "; options A %.0f B %.0f", p->macs_opt[0], p->macs_opt[1]);
		if (p->w2_lowrank && !p->tucker)
			put(buf, len, &at, " A-lowrank %.0f B-lowrank %.0f S %.0f", p->macs_opt[2],
			    p->macs_opt[3], p->macs_opt[4]);
		break;
	}
	case LOKR_PLAN_LOWRANK:
		put(buf, len, &at, "lowrank r %lld: x down^T then up^T%s", (long long)p->r,
		    p->tucker ? " (Tucker mid folded into down)" : "");
		break;
	case LOKR_PLAN_DENSE:
		put(buf, len, &at, "dense dW cached (%.1f MiB)%s",
		    (double)p->own_bytes / (1024.0 * 1024.0), p->tucker ? ", Tucker" : "");
		break;
	}
	put(buf, len, &at,
	    "; %.0f MACs/row = %.2f%% of base %.0f; merge-and-cache wins above %lld rows",
	    p->macs_row, 100.0 * p->macs_row / (p->base_macs_row > 0 ? p->base_macs_row : 1.0),
	    p->base_macs_row, (long long)p->merge_rows);
	return LOKR_OK;
}

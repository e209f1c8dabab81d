/*
 * exec.c - the heterogeneous batch executor and lokr_apply_linear.
 *
 * One call computes one linear layer for n items (requests), each with its
 * own adapter set:
 *   1. canonicalise every set (drop multiplier 0 and adapters without a
 *      module on the layer; sort), and group items with equal sets;
 *   2. stack all rows, group by group, into one (R x in) matrix (skipped
 *      when a single item has rows: its x and y are used in place), checking
 *      that every input is finite on the way;
 *   3. ONE sgemm (sgemv for R = 1) against W0 into the (R x out) output;
 *   4. per group (segment of contiguous rows) add each adapter's factored
 *      delta with alpha = l * s, beta = 1, as GEMMs over the whole segment;
 *      DoRA per lokrd's decisions 2/3 (see lokr.h);
 *   5. add the bias while scattering the rows back to the items.
 * All scratch comes from the lokr_exec workspace, which grows up to its
 * ceiling and is reused; the only (out x in) matrix involved is LoHa's dW
 * cached by the planner.
 */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "kron.h"

struct lokr_exec {
	uint64_t max_scratch;    /* bytes, ceiling of floats + meta */
	float *fbuf;             /* 64-byte aligned float scratch */
	size_t fcap;             /* floats in fbuf */
	unsigned char *mbuf;     /* grouping tables */
	size_t mcap;             /* bytes in mbuf */
	lokr_kron_w1step w1step; /* AUTO unless a test or benchmark forces one */
	lokr_exec_stats st;
};

/* A set entry after canonicalisation. */
typedef struct cref {
	const lokr_module *m;
	float mult;
} cref;

typedef struct item_info {
	size_t group;  /* index into groups, SIZE_MAX for an item without rows */
	size_t cfirst; /* first cref */
	size_t ccount; /* crefs */
	uint64_t hash;
	int64_t row_off; /* first row in the stacked matrices */
} item_info;

typedef struct group_info {
	size_t first_item; /* an item holding the canonical set */
	int64_t rows;
	int64_t row_off;
	int64_t cursor; /* next free row while items are placed */
	int64_t in_off; /* first row in XG/UG (input-axis DoRA), -1 if none */
} group_info;

int lokr_exec_new(uint64_t max_scratch, lokr_exec **out, lokr_error *err)
{
	if (!out)
		return lokr__fail(err, LOKR_EINVAL, "lokr_exec_new: NULL output pointer");
	lokr_exec *ctx = lokr__try_calloc(1, sizeof *ctx);
	if (!ctx)
		return lokr__fail(err, LOKR_ENOMEM, "lokr_exec_new: out of memory");
	ctx->max_scratch = max_scratch ? max_scratch : LOKR_EXEC_DEFAULT_MAX_SCRATCH;
	*out = ctx;
	return LOKR_OK;
}

void lokr_exec_free(lokr_exec *ctx)
{
	if (!ctx)
		return;
	free(ctx->fbuf);
	free(ctx->mbuf);
	free(ctx);
}

void lokr_exec_stats_get(const lokr_exec *ctx, lokr_exec_stats *st)
{
	if (!ctx || !st)
		return;
	*st = ctx->st;
	st->scratch_bytes = ctx->fcap * sizeof(float) + ctx->mcap;
}

void lokr__exec_set_w1step(lokr_exec *ctx, lokr_kron_w1step step)
{
	ctx->w1step = step;
}

/* Make room for `floats` floats and `bytes` of tables under the ceiling. */
static int reserve(lokr_exec *ctx, size_t floats, size_t bytes, lokr_error *err)
{
	uint64_t total;
	if (lokr__mul_u64(floats, sizeof(float), &total) || lokr__add_u64(total, bytes, &total) ||
	    total > ctx->max_scratch)
		return lokr__fail(
		    err, LOKR_ERANGE,
		    "batch needs %zu floats + %zu bytes of scratch, over the workspace "
		    "ceiling of %llu bytes",
		    floats, bytes, (unsigned long long)ctx->max_scratch);
	if (floats > ctx->fcap) {
		/* grow by at least half again so a slowly growing batch does not
		 * reallocate every call, but never past the ceiling */
		size_t want = floats + floats / 2;
		if ((uint64_t)want * sizeof(float) + bytes > ctx->max_scratch)
			want = floats;
		float *nb = lokr__try_aligned(want * sizeof(float));
		if (!nb)
			return lokr__fail(err, LOKR_ENOMEM,
			                  "out of memory for %zu floats of scratch", want);
		free(ctx->fbuf);
		ctx->fbuf = nb;
		ctx->fcap = want;
	}
	if (bytes > ctx->mcap) {
		unsigned char *nb = lokr__try_malloc(bytes);
		if (!nb)
			return lokr__fail(err, LOKR_ENOMEM, "out of memory for batch tables");
		free(ctx->mbuf);
		ctx->mbuf = nb;
		ctx->mcap = bytes;
	}
	return LOKR_OK;
}

/* Module of adapter `a` on layer index `layer` (modules are sorted by layer,
 * at most one per layer; lokr.h). */
static const lokr_module *module_on(const lokr_adapter *a, size_t layer)
{
	size_t lo = 0, hi = a->nmodules;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		size_t l = a->modules[mid].layer;
		if (l == layer)
			return &a->modules[mid];
		if (l < layer)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int cref_less(const cref *a, const cref *b)
{
	if (a->m != b->m)
		return (uintptr_t)a->m < (uintptr_t)b->m;
	uint32_t x, y;
	memcpy(&x, &a->mult, 4);
	memcpy(&y, &b->mult, 4);
	return x < y;
}

static int cref_equal(const cref *a, const cref *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (a[i].m != b[i].m)
			return 0;
		if (memcmp(&a[i].mult, &b[i].mult, sizeof a[i].mult) != 0)
			return 0;
	}
	return 1;
}

/* Elementwise loops on GCC vector types: 8 floats per step as two 4-wide
 * vectors (SSE on baseline x86-64, no ABI change), because -O2
 * leaves these loops scalar and they are a visible share of a batch next
 * to the GEMMs (bench/: stacking, bias and DoRA passes). */
typedef float v4f __attribute__((vector_size(16)));
typedef uint32_t v4u __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f ld4(const float *p)
{
	v4f v;
	memcpy(&v, p, sizeof v);
	return v;
}

static inline void st4(float *p, v4f v)
{
	memcpy(p, &v, sizeof v);
}

/* Copy n floats (dst may be NULL: check only); 1 if any is Inf or NaN
 * (exponent all ones). */
static int copy_check(float *dst, const float *src, size_t n)
{
	const v4u expo = {0x7f800000u, 0x7f800000u, 0x7f800000u, 0x7f800000u};
	v4i badv = {0, 0, 0, 0};
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		v4u u, w;
		memcpy(&u, src + i, sizeof u);
		memcpy(&w, src + i + 4, sizeof w);
		badv |= ((u & expo) == expo) | ((w & expo) == expo);
		if (dst) {
			memcpy(dst + i, &u, sizeof u);
			memcpy(dst + i + 4, &w, sizeof w);
		}
	}
	uint32_t bad = 0;
	for (int k = 0; k < 4; k++)
		bad |= (uint32_t)badv[k];
	for (; i < n; i++) {
		uint32_t b;
		memcpy(&b, src + i, sizeof b);
		bad |= (b & 0x7f800000u) == 0x7f800000u;
		if (dst)
			dst[i] = src[i];
	}
	return bad != 0;
}

/* dst[n] = src[n] + bias for n floats (dst may equal src). */
static void add_vec(float *dst, const float *src, const float *bias, int64_t n)
{
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		st4(dst + i, ld4(src + i) + ld4(bias + i));
		st4(dst + i + 4, ld4(src + i + 4) + ld4(bias + i + 4));
	}
	for (; i < n; i++)
		dst[i] = src[i] + bias[i];
}

/* Output-axis DoRA: y += l (g .* (b + t) - b) over n floats. */
static void dora_out_row(float *y, const float *b, const float *t, const float *g, float lam,
                         int64_t n)
{
	const v4f l4 = {lam, lam, lam, lam};
	int64_t i = 0;
	for (; i + 4 <= n; i += 4) {
		v4f bo = ld4(b + i);
		st4(y + i, ld4(y + i) + l4 * (ld4(g + i) * (bo + ld4(t + i)) - bo));
	}
	for (; i < n; i++)
		y[i] += lam * (g[i] * (b[i] + t[i]) - b[i]);
}

/* Extra floats one segment of `rows` rows needs beyond the stacked X/Y. */
static size_t segment_scratch(const lokr_exec *ctx, const cref *c, size_t nc, int64_t rows,
                              int64_t in, int64_t out)
{
	size_t delta = 0, dora_out = 0;
	int dora_in = 0;
	(void)in;
	for (size_t i = 0; i < nc; i++) {
		size_t d = lokr__plan_scratch(c[i].m->plan, ctx->w1step, rows);
		if (d > delta)
			delta = d;
		if (c[i].m->dora_axis == LOKR_DORA_OUT)
			dora_out = (size_t)rows * (size_t)out;
		if (c[i].m->dora_axis == LOKR_DORA_IN)
			dora_in = 1;
	}
	size_t save = (nc > 1 && (dora_out || dora_in)) ? (size_t)rows * (size_t)out : 0;
	return delta + dora_out + save;
}

/* Y (R x out) = alpha X W0^T + beta Y, beta 0 or 1: exactly what a caller of
 * OpenBLAS would do (sgemv for one row, sgemm otherwise), so the base path
 * is the raw OpenBLAS cost (bench: base_vs_openblas). */
static void base_gemm(const lokr_layer *layer, int64_t R, const float *X, float alpha, float beta,
                      float *Y)
{
	const int in = (int)layer->in, out = (int)layer->out;
	if (R == 1) {
		if (beta == 0.0f)
			memset(Y, 0, (size_t)out * sizeof *Y);
		cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, alpha, layer->weight, in, X, 1,
		            1.0f, Y, 1);
		return;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, out, in, alpha, X, in,
	            layer->weight, in, beta, Y, out);
}

/* Add the set's contributions to Y (N x out), which holds W0 x on entry.
 * XG / UG: for each input-axis DoRA adapter of the set in order, N rows of
 * g .* x and of W0 (g .* x), computed for the whole batch in one GEMM. */
static void run_segment(lokr_exec *ctx, const lokr_layer *layer, const cref *c, size_t nc,
                        int64_t N, const float *X, float *Y, const float *XG, const float *UG,
                        float *ws)
{
	const int64_t in = layer->in, out = layer->out;
	const size_t ny = (size_t)N * (size_t)out, nx = (size_t)N * (size_t)in;
	int any_dora = 0, has_out = 0;
	for (size_t i = 0; i < nc; i++) {
		any_dora |= c[i].m->dora_axis != LOKR_DORA_NONE;
		has_out |= c[i].m->dora_axis == LOKR_DORA_OUT;
	}
	/* carve: [B save][T out-DoRA][delta scratch] */
	float *B = Y;
	float *at = ws;
	if (nc > 1 && any_dora) {
		B = at;
		memcpy(B, Y, ny * sizeof *B);
		at += ny;
	}
	float *T = has_out ? at : NULL;
	at += has_out ? ny : 0;
	float *dws = at;

	for (size_t i = 0; i < nc; i++) {
		const lokr_module *m = c[i].m;
		const float lam = c[i].mult, s = m->scale;
		ctx->st.deltas++;
		switch (m->dora_axis) {
		case LOKR_DORA_NONE:
			lokr__plan_apply(m->plan, ctx->w1step, N, X, lam * s, 1.0f, Y, dws);
			break;
		case LOKR_DORA_OUT: {
			/* y += l (g .* (B + s K x) - B) */
			lokr__plan_apply(m->plan, ctx->w1step, N, X, s, 0.0f, T, dws);
			for (int64_t n = 0; n < N; n++)
				dora_out_row(Y + n * out, B + n * out, T + n * out, m->dora_g, lam,
				             out);
			break;
		}
		case LOKR_DORA_IN: {
			/* y += l (W0 (g .* x) + s K (g .* x) - B) */
			if (B == Y)
				cblas_sscal((int)ny, 1.0f - lam, Y, 1);
			else
				cblas_saxpy((int)ny, -lam, B, 1, Y, 1);
			cblas_saxpy((int)ny, lam, UG, 1, Y, 1);
			lokr__plan_apply(m->plan, ctx->w1step, N, XG, lam * s, 1.0f, Y, dws);
			XG += nx;
			UG += ny;
			break;
		}
		}
	}
}

static void add_bias(float *y, const float *bias, int64_t rows, int64_t out)
{
	for (int64_t n = 0; n < rows; n++)
		add_vec(y + n * out, y + n * out, bias, out);
}

int lokr__exec_layer(lokr_exec *ctx, const lokr_layer *layer, size_t layer_index,
                     const lokr_batch_item *items, size_t n, lokr_error *err)
{
	if (!ctx || !layer || (n > 0 && !items))
		return lokr__fail(err, LOKR_EINVAL, "exec: NULL argument");
	if (layer->kind != LOKR_LAYER_LINEAR || layer->kk != 1)
		return lokr__fail(
		    err, LOKR_EINVAL,
		    "exec: layer %s is a conv layer; the batch executor applies linear "
		    "layers",
		    layer->name);
	const int64_t in = layer->in, out = layer->out;
	if (n > (SIZE_MAX >> 8))
		return lokr__fail(err, LOKR_ERANGE, "exec: %zu items is too many", n);

	/* validate items, count rows and set entries */
	uint64_t rows_total = 0, nref = 0;
	size_t active = 0, last_active = 0;
	for (size_t i = 0; i < n; i++) {
		const lokr_batch_item *it = &items[i];
		if (it->rows < 0 || (it->rows > 0 && (!it->x || !it->y)) ||
		    (it->nset > 0 && !it->set))
			return lokr__fail(err, LOKR_EINVAL,
			                  "exec: item %zu: negative rows or NULL x/y/set", i);
		for (size_t k = 0; k < it->nset; k++) {
			if (!it->set[k].adapter)
				return lokr__fail(err, LOKR_EINVAL,
				                  "exec: item %zu: adapter %zu is NULL", i, k);
			if (!isfinite(it->set[k].multiplier))
				return lokr__fail(err, LOKR_EINVAL,
				                  "exec: item %zu: multiplier %zu is not finite", i,
				                  k);
		}
		if (lokr__add_u64(rows_total, (uint64_t)it->rows, &rows_total) ||
		    rows_total > INT32_MAX || lokr__add_u64(nref, it->nset, &nref) ||
		    nref > SIZE_MAX / 64)
			return lokr__fail(err, LOKR_ERANGE, "exec: batch too large");
		if (it->rows > 0) {
			active++;
			last_active = i;
		}
	}
	const int64_t R = (int64_t)rows_total;
	if (R == 0)
		return LOKR_OK;
	uint64_t tmp;
	if (lokr__mul_u64((uint64_t)R, (uint64_t)(in > out ? in : out), &tmp) || tmp > INT32_MAX)
		return lokr__fail(err, LOKR_ERANGE, "exec: %lld rows x %lld is past BLAS int range",
		                  (long long)R, (long long)(in > out ? in : out));

	/* tables */
	size_t tsize = 16;
	while (tsize < 2 * n)
		tsize *= 2;
	size_t tbytes = n * sizeof(item_info) + nref * sizeof(cref) + n * sizeof(group_info) +
	                tsize * sizeof(size_t);
	int rc = reserve(ctx, 0, tbytes, err);
	if (rc != LOKR_OK)
		return rc;
	item_info *info = (item_info *)ctx->mbuf;
	cref *crefs = (cref *)(info + n);
	group_info *groups = (group_info *)(crefs + nref);
	size_t *table = (size_t *)(groups + n);

	/* canonical sets */
	size_t nc = 0;
	for (size_t i = 0; i < n; i++) {
		const lokr_batch_item *it = &items[i];
		info[i].cfirst = nc;
		for (size_t k = 0; k < it->nset; k++) {
			const lokr_module *m = module_on(it->set[k].adapter, layer_index);
			if (!m || it->set[k].multiplier == 0.0f)
				continue;
			if (!m->plan)
				return lokr__fail(err, LOKR_EINVAL, "exec: module %s has no plan",
				                  m->name);
			if (m->dora_axis != LOKR_DORA_NONE && !m->dora_g)
				return lokr__fail(err, LOKR_EINVAL,
				                  "exec: module %s has DoRA but no cached vector",
				                  m->name);
			if (m->plan->out != out || m->plan->width != in)
				return lokr__fail(
				    err, LOKR_EINVAL,
				    "exec: module %s was planned for another layer shape", m->name);
			cref c = {m, it->set[k].multiplier};
			size_t j = nc++;
			while (j > info[i].cfirst && cref_less(&c, &crefs[j - 1])) {
				crefs[j] = crefs[j - 1];
				j--;
			}
			crefs[j] = c;
		}
		info[i].ccount = nc - info[i].cfirst;
		uint64_t h = 1469598103934665603ull;
		for (size_t k = info[i].cfirst; k < nc; k++) {
			h = (h ^ (uint64_t)(uintptr_t)crefs[k].m) * 1099511628211ull;
			uint32_t b;
			memcpy(&b, &crefs[k].mult, 4);
			h = (h ^ b) * 1099511628211ull;
		}
		info[i].hash = h;
	}

	/* groups, in order of first appearance, through an open-addressing
	 * table on the set hash (O(n): a batch of many one-row requests must
	 * not pay n * groups comparisons) */
	size_t ng = 0;
	for (size_t t = 0; t < tsize; t++)
		table[t] = SIZE_MAX;
	for (size_t i = 0; i < n; i++) {
		info[i].group = SIZE_MAX;
		if (items[i].rows == 0)
			continue;
		size_t t = (size_t)info[i].hash & (tsize - 1), g;
		for (;; t = (t + 1) & (tsize - 1)) {
			g = table[t];
			if (g == SIZE_MAX) {
				g = ng++;
				table[t] = g;
				groups[g].first_item = i;
				groups[g].rows = 0;
				break;
			}
			const item_info *f = &info[groups[g].first_item];
			if (f->hash == info[i].hash && f->ccount == info[i].ccount &&
			    cref_equal(crefs + f->cfirst, crefs + info[i].cfirst, f->ccount))
				break;
		}
		info[i].group = g;
		groups[g].rows += items[i].rows;
	}
	int64_t off = 0;
	for (size_t g = 0; g < ng; g++) {
		groups[g].row_off = groups[g].cursor = off;
		off += groups[g].rows;
	}
	/* each item's first row: groups in order, items in order within a group */
	for (size_t i = 0; i < n; i++)
		if (info[i].group != SIZE_MAX) {
			group_info *gr = &groups[info[i].group];
			info[i].row_off = gr->cursor;
			gr->cursor += items[i].rows;
		}

	/* scratch */
	const int direct = active == 1;
	uint64_t fl = direct ? 0 : (uint64_t)R * (uint64_t)(in + out);
	/* input-axis DoRA: the rows g .* x of every (segment, such adapter)
	 * go through the base weight together, in one more GEMM */
	int64_t nin = 0;
	for (size_t g = 0; g < ng; g++) {
		const item_info *f = &info[groups[g].first_item];
		groups[g].in_off = -1;
		for (size_t k = 0; k < f->ccount; k++)
			if (crefs[f->cfirst + k].m->dora_axis == LOKR_DORA_IN) {
				if (groups[g].in_off < 0)
					groups[g].in_off = nin;
				nin += groups[g].rows;
			}
	}
	if (lokr__add_u64(fl, (uint64_t)nin * (uint64_t)(in + out), &fl))
		return lokr__fail(err, LOKR_ERANGE, "exec: scratch size overflows");
	size_t segmax = 0;
	for (size_t g = 0; g < ng; g++) {
		const item_info *f = &info[groups[g].first_item];
		size_t sz =
		    segment_scratch(ctx, crefs + f->cfirst, f->ccount, groups[g].rows, in, out);
		if (sz > segmax)
			segmax = sz;
	}
	if (lokr__add_u64(fl, segmax, &fl) || fl > SIZE_MAX / 8)
		return lokr__fail(err, LOKR_ERANGE, "exec: scratch size overflows");
	rc = reserve(ctx, (size_t)fl, tbytes, err);
	if (rc != LOKR_OK)
		return rc;
	/* reserve may have moved the tables */
	info = (item_info *)ctx->mbuf;
	crefs = (cref *)(info + n);
	groups = (group_info *)(crefs + nref);

	/* stack inputs (checking they are finite) */
	const float *X;
	float *Y;
	float *ws;
	if (direct) {
		const lokr_batch_item *it = &items[last_active];
		if (copy_check(NULL, it->x, (size_t)it->rows * (size_t)in))
			return lokr__fail(err, LOKR_EINVAL, "exec: item %zu: input has NaN or Inf",
			                  last_active);
		X = it->x;
		Y = it->y;
		ws = ctx->fbuf;
	} else {
		float *Xs = ctx->fbuf;
		Y = Xs + (size_t)R * (size_t)in;
		ws = Y + (size_t)R * (size_t)out;
		for (size_t i = 0; i < n; i++) {
			const lokr_batch_item *it = &items[i];
			if (it->rows == 0)
				continue;
			size_t cnt = (size_t)it->rows * (size_t)in;
			if (copy_check(Xs + (size_t)info[i].row_off * (size_t)in, it->x, cnt))
				return lokr__fail(err, LOKR_EINVAL,
				                  "exec: item %zu: input has NaN or Inf", i);
		}
		X = Xs;
	}

	/* one base GEMM for every row */
	base_gemm(layer, R, X, 1.0f, 0.0f, Y);

	float *XG = ws, *UG = ws + (size_t)nin * (size_t)in;
	ws = UG + (size_t)nin * (size_t)out;
	if (nin > 0) {
		for (size_t g = 0; g < ng; g++) {
			const item_info *f = &info[groups[g].first_item];
			if (groups[g].in_off < 0)
				continue;
			const float *xs = X + (size_t)groups[g].row_off * (size_t)in;
			float *xg = XG + (size_t)groups[g].in_off * (size_t)in;
			for (size_t k = 0; k < f->ccount; k++) {
				const lokr_module *m = crefs[f->cfirst + k].m;
				if (m->dora_axis != LOKR_DORA_IN)
					continue;
				for (int64_t r = 0; r < groups[g].rows; r++, xg += in)
					for (int64_t c = 0; c < in; c++)
						xg[c] = m->dora_g[c] * xs[r * in + c];
			}
		}
		base_gemm(layer, nin, XG, 1.0f, 0.0f, UG);
	}

	/* factored deltas per segment */
	for (size_t g = 0; g < ng; g++) {
		const item_info *f = &info[groups[g].first_item];
		if (f->ccount == 0)
			continue;
		ctx->st.segments++;
		int64_t o = groups[g].row_off;
		int64_t io = groups[g].in_off < 0 ? 0 : groups[g].in_off;
		run_segment(ctx, layer, crefs + f->cfirst, f->ccount, groups[g].rows,
		            X + (size_t)o * (size_t)in, Y + (size_t)o * (size_t)out,
		            XG + (size_t)io * (size_t)in, UG + (size_t)io * (size_t)out, ws);
	}

	/* bias and scatter */
	if (direct) {
		if (layer->bias)
			add_bias(Y, layer->bias, items[last_active].rows, out);
	} else {
		for (size_t i = 0; i < n; i++) {
			const lokr_batch_item *it = &items[i];
			if (it->rows == 0)
				continue;
			const float *src = Y + (size_t)info[i].row_off * (size_t)out;
			size_t cnt = (size_t)it->rows * (size_t)out;
			if (layer->bias) {
				for (int64_t r = 0; r < it->rows; r++)
					add_vec(it->y + r * out, src + r * out, layer->bias, out);
			} else {
				memcpy(it->y, src, cnt * sizeof(float));
			}
		}
	}
	ctx->st.calls++;
	ctx->st.rows += (uint64_t)R;
	return LOKR_OK;
}

int lokr_exec_linear(lokr_exec *ctx, const lokr_base *base, size_t layer,
                     const lokr_batch_item *items, size_t n, lokr_error *err)
{
	if (!base)
		return lokr__fail(err, LOKR_EINVAL, "exec: NULL base");
	if (layer >= lokr_base_layer_count(base))
		return lokr__fail(err, LOKR_ENOTFOUND, "exec: no layer %zu (the base has %zu)",
		                  layer, lokr_base_layer_count(base));
	return lokr__exec_layer(ctx, lokr_base_layer_at(base, layer), layer, items, n, err);
}

int lokr_apply_linear(const lokr_base *base, size_t layer, const lokr_adapter_ref *set, size_t nset,
                      const float *x, int64_t rows, float *y, lokr_error *err)
{
	lokr_exec *ctx = NULL;
	int rc = lokr_exec_new(0, &ctx, err);
	if (rc != LOKR_OK)
		return rc;
	lokr_batch_item item = {set, nset, x, rows, y};
	rc = lokr_exec_linear(ctx, base, layer, &item, 1, err);
	lokr_exec_free(ctx);
	return rc;
}

int lokr_threading_setup(lokr_threading mode, int ncores, int *workers, int *blas_threads)
{
	if (ncores < 1 || (mode != LOKR_THREADING_WORKERS && mode != LOKR_THREADING_BLAS))
		return LOKR_EINVAL;
	int w = mode == LOKR_THREADING_WORKERS ? ncores : 1;
	int b = mode == LOKR_THREADING_WORKERS ? 1 : ncores;
	openblas_set_num_threads(b);
	if (workers)
		*workers = w;
	if (blas_threads)
		*blas_threads = b;
	return LOKR_OK;
}

int lokr_blas_describe(char *buf, size_t len)
{
	int threads = openblas_get_num_threads();
	if (buf && len) {
		const char *par = "sequential";
		int p = openblas_get_parallel();
		if (p == 1)
			par = "pthreads";
		else if (p == 2)
			par = "openmp";
		snprintf(buf, len, "%s | core %s | threads %d | %s", openblas_get_config(),
		         openblas_get_corename(), threads, par);
	}
	return threads;
}

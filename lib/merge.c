/*
 * merge.c - the merged weight of one layer under an adapter set, exactly as
 * lycoris-format.md "lokrd's decisions" 1-3 state it:
 *
 *   W' = W0 + sum_a (W'_a - W0)
 *   W'_a - W0 = l s dW                       (no DoRA)
 *   W'_a - W0 = l (g .* V - W0),  V = W0 + s dW   (DoRA; g cached per module)
 *
 * Every adapter's delta is taken against the untouched base.  The deltas are
 * summed first, in a canonical order (by adapter address, then strength), and
 * W0 is added last, so the result does not depend on the order of the set
 * and a layer no adapter touches stays bit-identical to W0.
 *
 * Memory: one (out x in*kk) float scratch per call holds s dW of the module
 * being added (lokr_module_delta); everything else is per-channel.
 *
 * Fast path: when every contribution is LoKr without DoRA (the common case),
 * the Kronecker products are expanded row by row straight into dst and W0 is
 * added while the row is still in L1, in one pass over the output instead of
 * three (delta into a scratch, add into dst, add W0) and without the
 * (out x in*kk) scratch.  Per element it performs the same float operations
 * in the same order as the general path (0 + l1 x1 + l2 x2 ... then W0 +),
 * so both give bit-identical results.
 */
#include <math.h>
#include <string.h>

#include "internal.h"

typedef struct contrib {
	const lokr_adapter *adapter;
	const lokr_module *m;
	float lambda;
} contrib;

static int contrib_cmp(const void *pa, const void *pb)
{
	const contrib *a = pa, *b = pb;
	if (a->adapter != b->adapter)
		return (uintptr_t)a->adapter < (uintptr_t)b->adapter ? -1 : 1;
	if (a->lambda != b->lambda)
		return a->lambda < b->lambda ? -1 : 1;
	return 0;
}

/* dst += l (g .* (W0 + d) - W0), g along the module's axis. */
static void add_dora(const lokr_layer *L, const float *g, lokr_dora_axis axis, float lambda,
                     const float *d, float *dst)
{
	const size_t out = (size_t)L->out, in = (size_t)L->in, kk = (size_t)L->kk;
	const size_t cols = in * kk;
	const float *w0 = L->weight;
	for (size_t o = 0; o < out; o++) {
		const size_t base = o * cols;
		if (axis == LOKR_DORA_OUT) {
			const float go = g[o];
			for (size_t e = 0; e < cols; e++) {
				float v = w0[base + e] + d[base + e];
				dst[base + e] += lambda * (go * v - w0[base + e]);
			}
		} else {
			for (size_t c = 0; c < in; c++) {
				const float gc = g[c];
				for (size_t t = 0; t < kk; t++) {
					size_t e = base + c * kk + t;
					float v = w0[e] + d[e];
					dst[e] += lambda * (gc * v - w0[e]);
				}
			}
		}
	}
}

/* One LoKr contribution of the fast path: dense factors, W1 pre-scaled by s
 * exactly as lokr_module_delta scales it (c = s * w1[i, k]). */
typedef struct kron_term {
	float *sw1; /* m1 x n1: s * W1 */
	float *w2;  /* m2 x n2*kk */
	size_t m2, n1, n2kk;
	float lambda;
} kron_term;

static int fast_path_ok(const contrib *cs, size_t nc)
{
	for (size_t i = 0; i < nc; i++)
		if (cs[i].m->algo != LOKR_ALGO_LOKR || cs[i].m->dora_axis != LOKR_DORA_NONE)
			return 0;
	return 1;
}

/* dst (out x cols) = [W0 +] sum_i l_i s_i kron(W1_i, W2_i), row by row. */
static int merge_kron_rows(const lokr_layer *L, const contrib *cs, size_t nc, int delta_only,
                           float *dst, lokr_error *err)
{
	const size_t out = (size_t)L->out, cols = (size_t)L->in * (size_t)L->kk;
	kron_term *ts = lokr__try_calloc(nc, sizeof *ts);
	int rc = LOKR_OK;
	if (!ts)
		return lokr__fail(err, LOKR_ENOMEM, "merge: out of memory");
	for (size_t i = 0; i < nc && !rc; i++) {
		const lokr_module *m = cs[i].m;
		if ((rc = lokr__lokr_check(m))) {
			rc = lokr__fail(err, rc,
			                "merge: module %s on layer %s: inconsistent factors",
			                m->name ? m->name : "?", L->name ? L->name : "?");
			break;
		}
		const size_t m1 = (size_t)m->m1, n1 = (size_t)m->n1, m2 = (size_t)m->m2;
		const size_t n2kk = (size_t)(m->n2 * m->kk);
		ts[i].sw1 = lokr__try_malloc(m1 * n1 * sizeof(float));
		ts[i].w2 = lokr__try_malloc(m2 * n2kk * sizeof(float));
		ts[i].m2 = m2;
		ts[i].n1 = n1;
		ts[i].n2kk = n2kk;
		ts[i].lambda = cs[i].lambda;
		if (!ts[i].sw1 || !ts[i].w2) {
			rc = lokr__fail(err, LOKR_ENOMEM, "merge: out of memory");
			break;
		}
		if ((rc = lokr__lokr_factors(m, ts[i].sw1, ts[i].w2))) {
			rc = lokr__fail(err, rc, "merge: module %s on layer %s: %s",
			                m->name ? m->name : "?", L->name ? L->name : "?",
			                rc == LOKR_ENOMEM ? "out of memory"
			                                  : "inconsistent factors");
			break;
		}
		const float s = m->scale;
		for (size_t e = 0; e < m1 * n1; e++)
			ts[i].sw1[e] = s * ts[i].sw1[e];
	}
	if (rc)
		goto out;
	const float *w0 = L->weight;
	for (size_t o = 0; o < out; o++) {
		float *d = dst + o * cols;
		const float *w = w0 + o * cols;
		for (size_t i = 0; i < nc; i++) {
			const kron_term *t = &ts[i];
			const float *c = t->sw1 + (o / t->m2) * t->n1;
			const float *b = t->w2 + (o % t->m2) * t->n2kk;
			const float l = t->lambda;
			const int last = i + 1 == nc && !delta_only;
			for (size_t k = 0; k < t->n1; k++) {
				const float ck = c[k];
				float *blk = d + k * t->n2kk;
				const float *wb = w + k * t->n2kk;
				if (i == 0 && last)
					for (size_t e = 0; e < t->n2kk; e++)
						blk[e] = wb[e] + (0.0f + l * (ck * b[e]));
				else if (i == 0)
					for (size_t e = 0; e < t->n2kk; e++)
						blk[e] = 0.0f + l * (ck * b[e]);
				else if (last)
					for (size_t e = 0; e < t->n2kk; e++)
						blk[e] = wb[e] + (blk[e] + l * (ck * b[e]));
				else
					for (size_t e = 0; e < t->n2kk; e++)
						blk[e] += l * (ck * b[e]);
			}
		}
	}
out:
	for (size_t i = 0; i < nc; i++) {
		free(ts[i].sw1);
		free(ts[i].w2);
	}
	free(ts);
	return rc;
}

int lokr_merge_layer(const lokr_base *base, size_t layer, const lokr_adapter_ref *set, size_t nset,
                     int delta_only, float *dst, lokr_error *err)
{
	if (!base || !dst || (nset && !set))
		return lokr__fail(err, LOKR_EINVAL, "merge: NULL argument");
	size_t nlayers = lokr_base_layer_count(base);
	if (layer >= nlayers)
		return lokr__fail(err, LOKR_ENOTFOUND, "merge: no layer %zu (the base has %zu)",
		                  layer, nlayers);
	const lokr_layer *L = lokr_base_layer_at(base, layer);
	uint64_t cols, n;
	if (!L || !L->weight || L->out <= 0 || L->in <= 0 || L->kk <= 0 ||
	    lokr__mul_u64((uint64_t)L->in, (uint64_t)L->kk, &cols) ||
	    lokr__mul_u64(cols, (uint64_t)L->out, &n) || n > SIZE_MAX / sizeof(float))
		return lokr__fail(err, LOKR_ERANGE, "merge: layer %zu has an unusable shape",
		                  layer);

	contrib *cs = nset ? lokr__try_calloc(nset, sizeof *cs) : NULL;
	if (nset && !cs)
		return lokr__fail(err, LOKR_ENOMEM, "merge: out of memory");
	size_t nc = 0;
	int rc = LOKR_OK;
	for (size_t a = 0; a < nset; a++) {
		if (!set[a].adapter) {
			rc = lokr__fail(err, LOKR_EINVAL, "merge: adapter %zu of the set is NULL",
			                a);
			goto out;
		}
		if (!isfinite(set[a].multiplier)) {
			rc = lokr__fail(err, LOKR_EINVAL,
			                "merge: adapter %zu has a non-finite multiplier", a);
			goto out;
		}
		const lokr_module *m = lokr_adapter_module_for(set[a].adapter, layer);
		if (!m || set[a].multiplier == 0.0f)
			continue; /* contributes exactly nothing */
		if (m->dora_axis != LOKR_DORA_NONE && m->dora_axis != LOKR_DORA_OUT &&
		    m->dora_axis != LOKR_DORA_IN) {
			rc = lokr__fail(err, LOKR_EINVAL,
			                "merge: module %s has an unknown DoRA axis",
			                m->name ? m->name : "?");
			goto out;
		}
		if (m->out != L->out || m->in != L->in || m->kk != L->kk) {
			rc = lokr__fail(
			    err, LOKR_EMISMATCH,
			    "merge: module %s (%lld x %lld x %lld) does not fit layer %s "
			    "(%lld x %lld x %lld)",
			    m->name ? m->name : "?", (long long)m->out, (long long)m->in,
			    (long long)m->kk, L->name ? L->name : "?", (long long)L->out,
			    (long long)L->in, (long long)L->kk);
			goto out;
		}
		cs[nc++] = (contrib){set[a].adapter, m, set[a].multiplier};
	}

	if (nc == 0) {
		if (delta_only)
			memset(dst, 0, (size_t)n * sizeof(float));
		else
			memcpy(dst, L->weight, (size_t)n * sizeof(float));
		goto out;
	}
	qsort(cs, nc, sizeof *cs, contrib_cmp);
	if (fast_path_ok(cs, nc)) {
		rc = merge_kron_rows(L, cs, nc, delta_only, dst, err);
		goto out;
	}

	float *scratch = lokr__try_malloc((size_t)n * sizeof(float));
	float *gbuf = NULL;
	if (!scratch) {
		rc = lokr__fail(err, LOKR_ENOMEM, "merge: out of memory for layer %s (%llu floats)",
		                L->name ? L->name : "?", (unsigned long long)n);
		goto out;
	}
	memset(dst, 0, (size_t)n * sizeof(float));
	for (size_t i = 0; i < nc; i++) {
		const lokr_module *m = cs[i].m;
		const float lambda = cs[i].lambda;
		rc = lokr_module_delta(m, scratch);
		if (rc) {
			rc = lokr__fail(err, rc, "merge: module %s on layer %s: %s",
			                m->name ? m->name : "?", L->name ? L->name : "?",
			                rc == LOKR_ENOMEM ? "out of memory"
			                                  : "inconsistent factors");
			break;
		}
		if (m->dora_axis == LOKR_DORA_NONE) {
			for (size_t e = 0; e < (size_t)n; e++)
				dst[e] += lambda * scratch[e];
			continue;
		}
		const float *g = m->dora_g;
		if (!g) {
			/* Not cached (a module built by hand): compute it now. */
			size_t len = (size_t)(m->dora_axis == LOKR_DORA_OUT ? L->out : L->in);
			free(gbuf);
			gbuf = lokr__try_malloc(len * sizeof(float));
			if (!gbuf) {
				rc = lokr__fail(err, LOKR_ENOMEM, "merge: out of memory");
				break;
			}
			if ((rc = lokr__dora_vector(L, m, gbuf, err)))
				break;
			g = gbuf;
		}
		add_dora(L, g, m->dora_axis, lambda, scratch, dst);
	}
	if (rc == LOKR_OK && !delta_only)
		for (size_t e = 0; e < (size_t)n; e++)
			dst[e] = L->weight[e] + dst[e];
	free(scratch);
	free(gbuf);
out:
	free(cs);
	return rc;
}

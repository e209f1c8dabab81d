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

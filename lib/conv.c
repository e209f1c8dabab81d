/*
 * conv.c - adapted conv2d (NCHW, groups = 1): the layer's weight merged with
 * the adapter set (lokr_merge_layer; the base weight itself when nothing in
 * the set touches the layer), applied with stride, zero padding and dilation
 * via im2col + cblas_sgemm, plus the base bias.
 *
 * im2col works on bands of output rows so that its scratch stays near
 * COL_BUDGET floats whatever the image size; each band's GEMM writes its
 * columns of the (out x Ho*Wo) output block directly (ldc = Ho*Wo).
 * Every size is computed with overflow-checked arithmetic, because h, w and
 * batch come from a request.
 */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "internal.h"

#define COL_BUDGET (1u << 20) /* floats of im2col scratch per band (4 MiB) */

/* Output length of one spatial dim, or -1 (empty / overflow). */
static int64_t out_len(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil)
{
	int64_t eff, span, pad2;
	if (lokr__mul_i64(dil, k - 1, &eff) || __builtin_add_overflow(eff, 1, &eff) ||
	    lokr__mul_i64(pad, 2, &pad2) || __builtin_add_overflow(in, pad2, &span) || span < eff)
		return -1;
	return (span - eff) / stride + 1;
}

int lokr_conv2d_out_size(const lokr_layer *l, const lokr_conv2d_params *p, int64_t h, int64_t w,
                         int64_t *ho, int64_t *wo)
{
	if (!l || !p || !ho || !wo || l->kind != LOKR_LAYER_CONV || l->ndim != 4 || h <= 0 ||
	    w <= 0)
		return LOKR_EINVAL;
	for (int d = 0; d < 2; d++)
		if (p->stride[d] <= 0 || p->dilation[d] <= 0 || p->padding[d] < 0)
			return LOKR_EINVAL;
	int64_t a = out_len(h, l->shape[2], p->stride[0], p->padding[0], p->dilation[0]);
	int64_t b = out_len(w, l->shape[3], p->stride[1], p->padding[1], p->dilation[1]);
	if (a <= 0 || b <= 0)
		return LOKR_EINVAL;
	*ho = a;
	*wo = b;
	return LOKR_OK;
}

/* Whether any adapter of the set has a module on `layer` with a non-zero
 * strength (otherwise the base weight is used as it is). */
static int set_touches(const lokr_adapter_ref *set, size_t nset, size_t layer)
{
	for (size_t a = 0; a < nset; a++) {
		if (!set[a].adapter || !isfinite(set[a].multiplier))
			return 1; /* lokr_merge_layer reports it */
		if (set[a].multiplier != 0.0f && lokr_adapter_module_for(set[a].adapter, layer))
			return 1;
	}
	return 0;
}

/* im2col for output rows [oh0, oh0 + nrows) of image `x` (in x h x w). */
static void im2col(const float *x, const lokr_layer *L, const lokr_conv2d_params *p, int64_t h,
                   int64_t w, int64_t wo, int64_t oh0, int64_t nrows, float *col)
{
	const int64_t in = L->in, kh = L->shape[2], kw = L->shape[3];
	const int64_t ncols = nrows * wo;
	for (int64_t c = 0; c < in; c++)
		for (int64_t a = 0; a < kh; a++)
			for (int64_t b = 0; b < kw; b++) {
				float *dst = col + ((c * kh + a) * kw + b) * ncols;
				const float *img = x + c * h * w;
				for (int64_t r = 0; r < nrows; r++) {
					int64_t iy = (oh0 + r) * p->stride[0] - p->padding[0] +
					             a * p->dilation[0];
					float *d = dst + r * wo;
					if (iy < 0 || iy >= h) {
						memset(d, 0, (size_t)wo * sizeof(float));
						continue;
					}
					const float *src = img + iy * w;
					for (int64_t ox = 0; ox < wo; ox++) {
						int64_t ix = ox * p->stride[1] - p->padding[1] +
						             b * p->dilation[1];
						d[ox] = ix >= 0 && ix < w ? src[ix] : 0.0f;
					}
				}
			}
}

int lokr_apply_conv2d(const lokr_base *base, size_t layer, const lokr_adapter_ref *set, size_t nset,
                      const lokr_conv2d_params *p, const float *x, int64_t batch, int64_t h,
                      int64_t w, float *y, lokr_error *err)
{
	if (!base || !p || !x || !y || (nset && !set))
		return lokr__fail(err, LOKR_EINVAL, "conv2d: NULL argument");
	size_t nlayers = lokr_base_layer_count(base);
	if (layer >= nlayers)
		return lokr__fail(err, LOKR_ENOTFOUND, "conv2d: no layer %zu (the base has %zu)",
		                  layer, nlayers);
	const lokr_layer *L = lokr_base_layer_at(base, layer);
	const char *name = L->name ? L->name : "?";
	if (L->kind != LOKR_LAYER_CONV || L->ndim != 4)
		return lokr__fail(err, LOKR_EINVAL, "conv2d: layer %s is not a conv2d (rank %d)",
		                  name, L->ndim);
	if (batch <= 0)
		return lokr__fail(err, LOKR_EINVAL, "conv2d: layer %s: batch %lld must be positive",
		                  name, (long long)batch);
	int64_t ho, wo;
	if (lokr_conv2d_out_size(L, p, h, w, &ho, &wo))
		return lokr__fail(
		    err, LOKR_EINVAL,
		    "conv2d: layer %s: input %lldx%lld, kernel %lldx%lld, stride "
		    "(%lld, %lld), padding (%lld, %lld), dilation (%lld, %lld): invalid "
		    "parameters or empty output",
		    name, (long long)h, (long long)w, (long long)L->shape[2],
		    (long long)L->shape[3], (long long)p->stride[0], (long long)p->stride[1],
		    (long long)p->padding[0], (long long)p->padding[1], (long long)p->dilation[0],
		    (long long)p->dilation[1]);
	/* Sizes: image in*h*w, output plane ho*wo, output out*ho*wo, all * batch. */
	int64_t hw, plane, img_in, img_out, tot_in, tot_out, cols, wsize;
	if (lokr__mul_i64(h, w, &hw) || lokr__mul_i64(hw, L->in, &img_in) ||
	    lokr__mul_i64(ho, wo, &plane) || lokr__mul_i64(plane, L->out, &img_out) ||
	    lokr__mul_i64(img_in, batch, &tot_in) || lokr__mul_i64(img_out, batch, &tot_out) ||
	    lokr__mul_i64(L->in, L->kk, &cols) || lokr__mul_i64(cols, L->out, &wsize) ||
	    (uint64_t)tot_in > SIZE_MAX / sizeof(float) ||
	    (uint64_t)tot_out > SIZE_MAX / sizeof(float) || plane > INT_MAX || cols > INT_MAX ||
	    L->out > INT_MAX)
		return lokr__fail(err, LOKR_ERANGE,
		                  "conv2d: layer %s: batch %lld x %lldx%lld is too large", name,
		                  (long long)batch, (long long)h, (long long)w);

	int rc = LOKR_OK;
	float *merged = NULL, *col = NULL;
	const float *wt = L->weight;
	if (set_touches(set, nset, layer)) {
		merged = lokr__try_malloc((size_t)wsize * sizeof(float));
		if (!merged)
			return lokr__fail(err, LOKR_ENOMEM, "conv2d: layer %s: out of memory",
			                  name);
		if ((rc = lokr_merge_layer(base, layer, set, nset, 0, merged, err)))
			goto out;
		wt = merged;
	}
	int64_t band = (int64_t)COL_BUDGET / cols / wo;
	if (band < 1)
		band = 1;
	if (band > ho)
		band = ho;
	col = lokr__try_malloc((size_t)(cols * band * wo) * sizeof(float));
	if (!col) {
		rc = lokr__fail(err, LOKR_ENOMEM, "conv2d: layer %s: out of memory", name);
		goto out;
	}
	for (int64_t n = 0; n < batch; n++) {
		const float *img = x + n * img_in;
		float *outp = y + n * img_out;
		for (int64_t oh0 = 0; oh0 < ho; oh0 += band) {
			int64_t nrows = ho - oh0 < band ? ho - oh0 : band;
			int ncols = (int)(nrows * wo);
			im2col(img, L, p, h, w, wo, oh0, nrows, col);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)L->out, ncols,
			            (int)cols, 1.0f, wt, (int)cols, col, ncols, 0.0f,
			            outp + oh0 * wo, (int)plane);
		}
		if (L->bias)
			for (int64_t o = 0; o < L->out; o++)
				for (int64_t e = 0; e < plane; e++)
					outp[o * plane + e] += L->bias[o];
	}
out:
	free(merged);
	free(col);
	return rc;
}

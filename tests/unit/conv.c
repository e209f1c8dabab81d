/*
 * Unit tests for lib/conv.c: lokr_apply_conv2d against a direct convolution
 * written here as plain loops in double (stride, zero padding, dilation,
 * non-square kernels, bias), with the base weight and with an adapter merged
 * in; lokr_conv2d_out_size's rules and rejections.
 * Error measure: rel = max|got - exp| / max|exp|.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"

#define TESTUTIL_SEED 0xa4093822299f31d0ull
#include "testutil.h"

typedef struct fixture {
	lokr_base *base;
	size_t conv, conv2, lin;
	const lokr_layer *L_conv, *L_conv2;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	float *wc = vec_frand(8 * 6 * 9), *bc = vec_frand(8), *wc2 = vec_frand(5 * 3 * 2 * 3);
	float *wl = vec_frand(4 * 4);
	lokr_st_spec specs[] = {
	    {"conv.weight", "F32", 4, {8, 6, 3, 3}, wc},
	    {"conv.bias", "F32", 1, {8}, bc},
	    {"conv2.weight", "F32", 4, {5, 3, 2, 3}, wc2}, /* non-square kernel, no bias */
	    {"lin.weight", "F32", 2, {4, 4}, wl},
	};
	int rc = base_from_specs(specs, 4, &f->base);
	free(wc);
	free(bc);
	free(wc2);
	free(wl);
	if (rc) {
		free(f);
		return -1;
	}
	f->conv = (size_t)lokr_base_layer_find(f->base, "conv");
	f->conv2 = (size_t)lokr_base_layer_find(f->base, "conv2");
	f->lin = (size_t)lokr_base_layer_find(f->base, "lin");
	f->L_conv = lokr_base_layer_at(f->base, f->conv);
	f->L_conv2 = lokr_base_layer_at(f->base, f->conv2);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	lokr_base_free(f->base);
	free(f);
	return 0;
}

/* Direct convolution by definition, weight (out, in, kh, kw), in double. */
static double *ref_conv(const lokr_layer *L, const float *wt, const lokr_conv2d_params *p,
                        const float *x, int64_t batch, int64_t h, int64_t w, int64_t ho, int64_t wo)
{
	int64_t out = L->out, in = L->in, kh = L->shape[2], kw = L->shape[3];
	double *y = calloc((size_t)(batch * out * ho * wo), sizeof(double));
	assert_non_null(y);
	for (int64_t n = 0; n < batch; n++)
		for (int64_t o = 0; o < out; o++)
			for (int64_t oy = 0; oy < ho; oy++)
				for (int64_t ox = 0; ox < wo; ox++) {
					double acc = L->bias ? L->bias[o] : 0.0;
					for (int64_t c = 0; c < in; c++)
						for (int64_t a = 0; a < kh; a++)
							for (int64_t b = 0; b < kw; b++) {
								int64_t iy = oy * p->stride[0] -
								             p->padding[0] +
								             a * p->dilation[0];
								int64_t ix = ox * p->stride[1] -
								             p->padding[1] +
								             b * p->dilation[1];
								if (iy < 0 || iy >= h || ix < 0 ||
								    ix >= w)
									continue;
								acc +=
								    (double)
								        wt[((o * in + c) * kh + a) *
								               kw +
								           b] *
								    x[((n * in + c) * h + iy) * w +
								      ix];
							}
					y[((n * out + o) * ho + oy) * wo + ox] = acc;
				}
	return y;
}

static void check_conv(const fixture *f, size_t layer, const lokr_adapter_ref *set, size_t nset,
                       lokr_conv2d_params p, int64_t batch, int64_t h, int64_t w, int64_t expect_ho,
                       int64_t expect_wo)
{
	const lokr_layer *L = lokr_base_layer_at(f->base, layer);
	int64_t ho, wo;
	assert_int_equal(lokr_conv2d_out_size(L, &p, h, w, &ho, &wo), LOKR_OK);
	assert_int_equal(ho, expect_ho);
	assert_int_equal(wo, expect_wo);
	size_t nin = (size_t)(batch * L->in * h * w), nout = (size_t)(batch * L->out * ho * wo);
	float *x = vec_frand(nin), *y = malloc(nout * sizeof(float));
	assert_non_null(y);
	for (size_t e = 0; e < nout; e++)
		y[e] = NAN;
	lokr_error err = {0};
	int rc = lokr_apply_conv2d(f->base, layer, set, nset, &p, x, batch, h, w, y, &err);
	if (rc)
		fail_msg("conv2d: %d %s", rc, err.msg);
	size_t nw = (size_t)(L->out * L->in * L->kk);
	float *wt = malloc(nw * sizeof(float));
	assert_non_null(wt);
	assert_int_equal(lokr_merge_layer(f->base, layer, set, nset, 0, wt, NULL), LOKR_OK);
	double *exp = ref_conv(L, wt, &p, x, batch, h, w, ho, wo);
	double num = 0, den = 0;
	for (size_t e = 0; e < nout; e++) {
		double d = fabs((double)y[e] - exp[e]);
		if (!(d <= num))
			num = d;
		if (fabs(exp[e]) > den)
			den = fabs(exp[e]);
	}
	if (!(num / den <= 1e-5))
		fail_msg("layer %s %lldx%lld: rel %g", L->name, (long long)h, (long long)w,
		         num / den);
	free(x);
	free(y);
	free(wt);
	free(exp);
}

static void test_base_weight(void **state)
{
	fixture *f = *state;
	lokr_conv2d_params plain = {{1, 1}, {0, 0}, {1, 1}};
	check_conv(f, f->conv, NULL, 0, plain, 2, 7, 9, 5, 7);
	lokr_conv2d_params same = {{1, 1}, {1, 1}, {1, 1}};
	check_conv(f, f->conv, NULL, 0, same, 1, 6, 5, 6, 5);
}

static void test_stride_padding_dilation(void **state)
{
	fixture *f = *state;
	/* stride 2, padding 1, dilation 2: (11 + 2 - 5) / 2 + 1 = 5 */
	lokr_conv2d_params p = {{2, 2}, {1, 1}, {2, 2}};
	check_conv(f, f->conv, NULL, 0, p, 3, 11, 11, 5, 5);
	check_conv(f, f->conv, NULL, 0, p, 1, 12, 9, 5, 4);
	/* asymmetric everything, non-square kernel 2x3 */
	lokr_conv2d_params q = {{1, 3}, {0, 2}, {3, 1}};
	check_conv(f, f->conv2, NULL, 0, q, 2, 8, 10, 5, 4);
	/* padding larger than the kernel reach */
	lokr_conv2d_params r = {{3, 1}, {4, 3}, {1, 2}};
	check_conv(f, f->conv2, NULL, 0, r, 1, 4, 4, 4, 6);
}

static void test_large_image_bands(void **state)
{
	fixture *f = *state;
	/* 54 columns per im2col row: 1M floats of budget fits ~19k rows, so use a wide image
	 * whose output plane needs several bands. */
	lokr_conv2d_params p = {{1, 1}, {1, 1}, {1, 1}};
	check_conv(f, f->conv, NULL, 0, p, 1, 40, 1000, 40, 1000);
}

static void test_with_adapter(void **state)
{
	fixture *f = *state;
	const lokr_layer *L = f->L_conv;
	lokr_module m;
	memset(&m, 0, sizeof m);
	m.name = "lycoris_conv";
	m.layer = f->conv;
	m.algo = LOKR_ALGO_LOKR;
	m.out = 8, m.in = 6, m.kk = 9, m.scale = 0.5f;
	m.m1 = 2, m.n1 = 3, m.m2 = 4, m.n2 = 2;
	float w1[6], w2[4 * 18];
	for (int i = 0; i < 6; i++)
		w1[i] = frand();
	for (int i = 0; i < 72; i++)
		w2[i] = frand();
	m.w1 = (lokr_mat){2, 3, w1};
	m.w2 = (lokr_mat){4, 18, w2};
	lokr_adapter a;
	memset(&a, 0, sizeof a);
	a.nmodules = 1;
	a.modules = &m;
	lokr_adapter_ref set[] = {{&a, 1.5f}};
	lokr_conv2d_params p = {{2, 2}, {1, 1}, {2, 2}};
	check_conv(f, f->conv, set, 1, p, 2, 11, 13, 5, 6);

	/* the adapter really changes the output */
	int64_t h = 7, w = 7, ho, wo;
	assert_int_equal(lokr_conv2d_out_size(L, &p, h, w, &ho, &wo), LOKR_OK);
	size_t nin = (size_t)(L->in * h * w), nout = (size_t)(L->out * ho * wo);
	float *x = vec_frand(nin), *y0 = malloc(nout * 4), *y1 = malloc(nout * 4);
	assert_non_null(y0);
	assert_non_null(y1);
	assert_int_equal(lokr_apply_conv2d(f->base, f->conv, NULL, 0, &p, x, 1, h, w, y0, NULL),
	                 LOKR_OK);
	assert_int_equal(lokr_apply_conv2d(f->base, f->conv, set, 1, &p, x, 1, h, w, y1, NULL),
	                 LOKR_OK);
	assert_memory_not_equal(y0, y1, nout * 4);
	/* strength 0 is the base exactly */
	set[0].multiplier = 0.0f;
	assert_int_equal(lokr_apply_conv2d(f->base, f->conv, set, 1, &p, x, 1, h, w, y1, NULL),
	                 LOKR_OK);
	assert_memory_equal(y0, y1, nout * 4);
	free(x);
	free(y0);
	free(y1);
}

static void test_out_size_rejections(void **state)
{
	fixture *f = *state;
	const lokr_layer *L = f->L_conv;
	int64_t ho, wo;
	lokr_conv2d_params ok = {{1, 1}, {0, 0}, {1, 1}};
	assert_int_equal(lokr_conv2d_out_size(L, &ok, 3, 3, &ho, &wo), LOKR_OK);
	assert_true(ho == 1 && wo == 1);
	assert_int_equal(lokr_conv2d_out_size(L, &ok, 2, 3, &ho, &wo), LOKR_EINVAL); /* empty */
	assert_int_equal(lokr_conv2d_out_size(L, &ok, 0, 3, &ho, &wo), LOKR_EINVAL);
	lokr_conv2d_params bad[] = {
	    {{0, 1}, {0, 0}, {1, 1}}, {{1, -2}, {0, 0}, {1, 1}}, {{1, 1}, {-1, 0}, {1, 1}},
	    {{1, 1}, {0, 0}, {1, 0}}, {{1, 1}, {0, 0}, {-1, 1}},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(lokr_conv2d_out_size(L, &bad[i], 8, 8, &ho, &wo), LOKR_EINVAL);
	/* overflowing dilation / padding / size */
	lokr_conv2d_params huge = {{1, 1}, {0, 0}, {INT64_MAX / 2, 1}};
	assert_int_equal(lokr_conv2d_out_size(L, &huge, 8, 8, &ho, &wo), LOKR_EINVAL);
	lokr_conv2d_params hpad = {{1, 1}, {INT64_MAX / 2, 0}, {1, 1}};
	assert_int_equal(lokr_conv2d_out_size(L, &hpad, 8, 8, &ho, &wo), LOKR_EINVAL);
	/* linear layer */
	const lokr_layer *lin = lokr_base_layer_at(f->base, f->lin);
	assert_int_equal(lokr_conv2d_out_size(lin, &ok, 8, 8, &ho, &wo), LOKR_EINVAL);
	assert_int_equal(lokr_conv2d_out_size(NULL, &ok, 8, 8, &ho, &wo), LOKR_EINVAL);
}

static void test_apply_rejections(void **state)
{
	fixture *f = *state;
	float x[6 * 16], y[8 * 16];
	memset(x, 0, sizeof x);
	lokr_error err = {0};
	lokr_conv2d_params ok = {{1, 1}, {1, 1}, {1, 1}};
	assert_int_equal(lokr_apply_conv2d(f->base, f->lin, NULL, 0, &ok, x, 1, 4, 4, y, &err),
	                 LOKR_EINVAL);
	assert_non_null(strstr(err.msg, "lin"));
	lokr_conv2d_params s0 = {{0, 1}, {1, 1}, {1, 1}};
	assert_int_equal(lokr_apply_conv2d(f->base, f->conv, NULL, 0, &s0, x, 1, 4, 4, y, &err),
	                 LOKR_EINVAL);
	assert_non_null(strstr(err.msg, "stride"));
	lokr_conv2d_params nopad = {{1, 1}, {0, 0}, {1, 1}};
	assert_int_equal(lokr_apply_conv2d(f->base, f->conv, NULL, 0, &nopad, x, 1, 2, 8, y, &err),
	                 LOKR_EINVAL); /* empty output */
	assert_int_equal(lokr_apply_conv2d(f->base, f->conv, NULL, 0, &ok, x, 0, 4, 4, y, &err),
	                 LOKR_EINVAL); /* batch 0 */
	assert_int_equal(
	    lokr_apply_conv2d(f->base, f->conv, NULL, 0, &ok, x, INT64_MAX / 4, 4, 4, y, &err),
	    LOKR_ERANGE);
	size_t nl = lokr_base_layer_count(f->base);
	assert_int_equal(lokr_apply_conv2d(f->base, nl, NULL, 0, &ok, x, 1, 4, 4, y, &err),
	                 LOKR_ENOTFOUND);
	assert_int_equal(lokr_apply_conv2d(f->base, f->conv, NULL, 0, &ok, NULL, 1, 4, 4, y, &err),
	                 LOKR_EINVAL);
	lokr_adapter_ref nul = {NULL, 1.0f};
	assert_int_equal(lokr_apply_conv2d(f->base, f->conv, &nul, 1, &ok, x, 1, 4, 4, y, &err),
	                 LOKR_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_base_weight),
	    cmocka_unit_test(test_stride_padding_dilation),
	    cmocka_unit_test(test_large_image_bands),
	    cmocka_unit_test(test_with_adapter),
	    cmocka_unit_test(test_out_size_rejections),
	    cmocka_unit_test(test_apply_rejections),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

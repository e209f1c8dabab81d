/* Unit tests for lib/exec.c: the batch executor against x (W0 + sum of each
 * adapter's W'_a - W0)^T + b computed densely in double (lokrd's decisions
 * 1-3), heterogeneous batches, DoRA on both axes, input validation, the
 * scratch ceiling and allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "speed_util.h"

#define TOL   1e-5
#define LAYER 3 /* the layer index the test adapters' modules sit on */

/* An adapter holding one module on LAYER (and one on another layer, which
 * must be ignored). */
typedef struct tadapter {
	lokr_adapter a;
	lokr_module mods[2];
} tadapter;

static void adapter_wrap(tadapter *t, lokr_module m, const lokr_layer *l)
{
	memset(t, 0, sizeof *t);
	t->mods[0] = m;
	t->mods[0].layer = LAYER;
	lokr_error err = {0};
	if (lokr__plan_module(l, &t->mods[0], &err) != LOKR_OK)
		fail_msg("plan: %s", err.msg);
	/* a decoy on layer 7 (never planned: would fail if used) */
	t->mods[1].layer = 7;
	t->mods[1].name = "decoy";
	t->a.nmodules = 2;
	t->a.modules = t->mods;
}

static void adapter_free(tadapter *t)
{
	module_free(&t->mods[0]);
}

/* Reference output of one item. */
static double *item_ref(const lokr_layer *l, const lokr_batch_item *it)
{
	double *acc = calloc((size_t)(l->out * l->in), sizeof *acc);
	for (size_t k = 0; k < it->nset; k++) {
		const lokr_adapter *a = it->set[k].adapter;
		for (size_t i = 0; i < a->nmodules; i++)
			if (a->modules[i].layer == LAYER)
				ref_contrib(&a->modules[i], l, it->set[k].multiplier, acc);
	}
	double *y = ref_apply(l, acc, it->x, it->rows);
	free(acc);
	return y;
}

static void check_items(const lokr_layer *l, const lokr_batch_item *items, size_t n,
                        const char *what)
{
	for (size_t i = 0; i < n; i++) {
		if (items[i].rows == 0)
			continue;
		double *ref = item_ref(l, &items[i]);
		double e = rel_err(items[i].y, ref, items[i].rows * l->out);
		free(ref);
		if (e > TOL)
			fail_msg("%s: item %zu rel err %g", what, i, e);
	}
}

static void run(lokr_exec *ctx, const lokr_layer *l, const lokr_batch_item *items, size_t n)
{
	lokr_error err = {0};
	int rc = lokr__exec_layer(ctx, l, LAYER, items, n, &err);
	if (rc != LOKR_OK)
		fail_msg("exec: %s (%d)", err.msg, rc);
}

/* one adapter, batch 1 and 7, for the shapes the issue names */
static void test_single_adapter_shapes(void **state)
{
	(void)state;
	const int64_t shapes[][6] = {
	    /* m1, n1, m2, n2, r1, r2 */
	    {4, 4, 320, 320, 0, 0}, {320, 4, 4, 320, 0, 0},  {40, 4, 4, 48, 0, 0},
	    {4, 4, 320, 320, 0, 8}, {16, 16, 20, 20, 0, 8},  {16, 16, 20, 20, 4, 0},
	    {4, 320, 320, 4, 0, 0}, {32, 24, 10, 32, 0, 16},
	};
	lokr_exec *ctx;
	assert_int_equal(lokr_exec_new(0, &ctx, NULL), LOKR_OK);
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
		rng g = {100 + s};
		const int64_t *d = shapes[s];
		lokr_layer l = make_layer(&g, d[0] * d[2], d[1] * d[3], (int)(s & 1));
		tadapter t;
		adapter_wrap(&t, make_lokr(&g, d[0], d[1], d[2], d[3], d[4], d[5], 1.5f), &l);
		for (int forced = -1; forced < 3; forced++) {
			if (forced >= 0 && lokr__plan_force_order(
			                       t.mods[0].plan, (lokr_kron_order)forced) != LOKR_OK)
				continue; /* S needs a low-rank W2 */
			const int64_t rows_list[] = {1, 7};
			for (int ri = 0; ri < 2; ri++) {
				int64_t rows = rows_list[ri];
				lokr_adapter_ref ref = {&t.a, 0.8f};
				float *x = rnd(&g, rows * l.in, 1.0f);
				float *y = calloc((size_t)(rows * l.out), sizeof *y);
				lokr_batch_item it = {&ref, 1, x, rows, y};
				run(ctx, &l, &it, 1);
				char what[96];
				snprintf(what, sizeof what, "shape %zu order %d rows %lld", s,
				         forced, (long long)rows);
				check_items(&l, &it, 1, what);
				free(x);
				free(y);
			}
		}
		adapter_free(&t);
		layer_free(&l);
	}
	lokr_exec_free(ctx);
}

/* A mixed batch over one layer: every kind of set in one call. */
static void test_heterogeneous(void **state)
{
	(void)state;
	rng g = {7};
	const int64_t out = 160, in = 96; /* 160 = 16 x 10, 96 = 8 x 12 */
	lokr_layer l = make_layer(&g, out, in, 1);
	enum { NA = 8 };
	tadapter ad[NA];
	adapter_wrap(&ad[0], make_lokr(&g, 16, 8, 10, 12, 0, 0, 1.0f), &l); /* full */
	adapter_wrap(&ad[1], make_lokr(&g, 16, 8, 10, 12, 0, 4, 2.0f), &l); /* W2 low-rank */
	adapter_wrap(&ad[2], make_lokr(&g, 40, 4, 4, 24, 0, 0, 1.0f), &l);  /* unbalanced */
	lokr_module dout = make_lokr(&g, 10, 12, 16, 8, 0, 3, 0.5f);
	add_dora(&g, &dout, &l, LOKR_DORA_OUT);
	adapter_wrap(&ad[3], dout, &l);
	lokr_module din = make_lokr(&g, 16, 8, 10, 12, 3, 0, 1.25f);
	add_dora(&g, &din, &l, LOKR_DORA_IN);
	adapter_wrap(&ad[4], din, &l);
	adapter_wrap(&ad[5], make_lora(&g, out, in, 6, 0.75f), &l);
	adapter_wrap(&ad[6], make_loha(&g, out, in, 4, 1.5f), &l);
	lokr_module lora_dora = make_lora(&g, out, in, 4, 1.0f);
	add_dora(&g, &lora_dora, &l, LOKR_DORA_OUT);
	adapter_wrap(&ad[7], lora_dora, &l);

	lokr_adapter_ref s_a[] = {{&ad[0].a, 1.0f}};
	lokr_adapter_ref s_b[] = {{&ad[1].a, -0.7f}};
	lokr_adapter_ref s_zero[] = {{&ad[0].a, 0.0f}};
	lokr_adapter_ref s_dout[] = {{&ad[3].a, 0.6f}};
	lokr_adapter_ref s_din[] = {{&ad[4].a, 1.3f}};
	lokr_adapter_ref s_many[] = {{&ad[5].a, 1.0f}, {&ad[6].a, 0.5f}, {&ad[2].a, -1.0f}};
	lokr_adapter_ref s_mixd[] = {{&ad[0].a, 1.0f}, {&ad[3].a, 0.5f}, {&ad[4].a, 2.0f}};
	lokr_adapter_ref s_ab[] = {{&ad[0].a, 1.0f}, {&ad[1].a, 0.5f}};
	lokr_adapter_ref s_ba[] = {{&ad[1].a, 0.5f}, {&ad[0].a, 1.0f}};
	lokr_adapter_ref s_dup[] = {{&ad[2].a, 1.0f}, {&ad[2].a, 1.0f}};
	lokr_adapter_ref s_dl[] = {{&ad[7].a, 1.0f}, {&ad[3].a, 0.0f}};
	lokr_adapter_ref s_dora0[] = {{&ad[3].a, 0.0f}, {&ad[4].a, 0.0f}};
	lokr_adapter_ref s_dora1[] = {{&ad[3].a, 1.0f}};

	struct {
		const lokr_adapter_ref *set;
		size_t nset;
		int64_t rows;
	} spec[] = {
	    {s_a, 1, 3},     {s_b, 1, 1},   {NULL, 0, 2},   {s_a, 1, 2},    {s_zero, 1, 1},
	    {s_dout, 1, 4},  {s_din, 1, 2}, {s_many, 3, 3}, {s_mixd, 3, 2}, {s_a, 1, 0},
	    {s_ab, 2, 2},    {s_ba, 2, 1},  {s_dup, 2, 1},  {s_dl, 2, 2},   {s_dora0, 2, 1},
	    {s_dora1, 1, 1}, {s_b, 1, 5},
	};
	const size_t n = sizeof spec / sizeof spec[0];
	lokr_batch_item items[sizeof spec / sizeof spec[0]];
	for (size_t i = 0; i < n; i++) {
		items[i].set = spec[i].set;
		items[i].nset = spec[i].nset;
		items[i].rows = spec[i].rows;
		items[i].x = rnd(&g, spec[i].rows * in, 1.0f);
		items[i].y = calloc((size_t)(spec[i].rows * out + 1), sizeof(float));
	}
	for (int step = 0; step < 3; step++) {
		lokr_exec *ctx;
		assert_int_equal(lokr_exec_new(0, &ctx, NULL), LOKR_OK);
		lokr__exec_set_w1step(ctx, (lokr_kron_w1step)step);
		run(ctx, &l, items, n);
		check_items(&l, items, n, "heterogeneous");
		lokr_exec_stats st;
		lokr_exec_stats_get(ctx, &st);
		/* distinct non-empty sets: a, b, dout, din, many, mixd, ab(=ba), dup, dl, dora1 */
		assert_int_equal(st.segments, 10);
		assert_int_equal(st.calls, 1);
		assert_true(st.scratch_bytes > 0);

		/* the same items one by one give the same outputs */
		for (size_t i = 0; i < n; i++) {
			if (items[i].rows == 0)
				continue;
			float *y1 = calloc((size_t)(items[i].rows * out), sizeof *y1);
			lokr_batch_item one = items[i];
			one.y = y1;
			run(ctx, &l, &one, 1);
			double e = rel_err_f(y1, items[i].y, items[i].rows * out);
			if (e > 1e-6)
				fail_msg("item %zu alone differs from the batch: %g", i, e);
			free(y1);
		}
		lokr_exec_free(ctx);
	}
	for (size_t i = 0; i < n; i++) {
		free((void *)items[i].x);
		free(items[i].y);
	}
	for (int i = 0; i < NA; i++)
		adapter_free(&ad[i]);
	layer_free(&l);
}

/* DoRA's interpolation rule at the edges: l = 0 is the base, l = 1 is
 * g .* V (lycoris-format.md decisions 2). */
static void test_dora_edges(void **state)
{
	(void)state;
	rng g = {11};
	lokr_layer l = make_layer(&g, 40, 48, 0);
	for (int axis = LOKR_DORA_OUT; axis <= LOKR_DORA_IN; axis++) {
		lokr_module m = make_lokr(&g, 10, 4, 4, 12, 0, 0, 1.0f);
		add_dora(&g, &m, &l, (lokr_dora_axis)axis);
		tadapter t;
		adapter_wrap(&t, m, &l);
		float *x = rnd(&g, 2 * 48, 1.0f);
		float *y = calloc(2 * 40, sizeof *y);
		lokr_exec *ctx;
		assert_int_equal(lokr_exec_new(0, &ctx, NULL), LOKR_OK);
		lokr_adapter_ref zero = {&t.a, 0.0f};
		lokr_batch_item it = {&zero, 1, x, 2, y};
		run(ctx, &l, &it, 1);
		double *base = ref_apply(&l, NULL, x, 2);
		assert_true(rel_err(y, base, 80) <= TOL);
		/* l = 1: V scaled per channel */
		lokr_adapter_ref one = {&t.a, 1.0f};
		it.set = &one;
		run(ctx, &l, &it, 1);
		double *d = ref_delta(&t.mods[0]);
		double *acc = calloc(40 * 48, sizeof *acc);
		for (int64_t o = 0; o < 40; o++)
			for (int64_t c = 0; c < 48; c++) {
				double w0 = l.weight[o * 48 + c];
				double gv = t.mods[0].dora_g[axis == LOKR_DORA_OUT ? o : c];
				acc[o * 48 + c] = gv * (w0 + d[o * 48 + c]) - w0;
			}
		double *ref = ref_apply(&l, acc, x, 2);
		assert_true(rel_err(y, ref, 80) <= TOL);
		free(ref);
		free(acc);
		free(d);
		free(base);
		free(x);
		free(y);
		lokr_exec_free(ctx);
		adapter_free(&t);
	}
	layer_free(&l);
}

/* Many distinct adapters, one row each, plus the same adapters at 8 rows:
 * the benchmark's 64x64 case at test size. */
static void test_many_distinct(void **state)
{
	(void)state;
	rng g = {12};
	lokr_layer l = make_layer(&g, 320, 320, 1);
	enum { NA = 24 };
	tadapter ad[NA];
	lokr_adapter_ref refs[NA];
	lokr_batch_item items[NA];
	for (int i = 0; i < NA; i++) {
		int kind = i % 4;
		lokr_module m = kind == 0   ? make_lokr(&g, 16, 16, 20, 20, 0, 8, 1.0f)
		                : kind == 1 ? make_lokr(&g, 4, 4, 80, 80, 0, 16, 0.5f)
		                : kind == 2 ? make_lokr(&g, 80, 4, 4, 80, 0, 0, 1.0f)
		                            : make_lokr(&g, 4, 4, 80, 80, 0, 0, 1.0f);
		adapter_wrap(&ad[i], m, &l);
		refs[i].adapter = &ad[i].a;
		refs[i].multiplier = 1.0f - 0.1f * (float)i;
		items[i].set = &refs[i];
		items[i].nset = 1;
		items[i].rows = 1 + (i % 3 == 0 ? 7 : 0);
		items[i].x = rnd(&g, items[i].rows * 320, 1.0f);
		items[i].y = calloc((size_t)(items[i].rows * 320), sizeof(float));
	}
	lokr_exec *ctx;
	assert_int_equal(lokr_exec_new(0, &ctx, NULL), LOKR_OK);
	run(ctx, &l, items, NA);
	check_items(&l, items, NA, "many distinct");
	/* reuse: a second call with fewer rows works in the grown scratch */
	run(ctx, &l, items, 5);
	check_items(&l, items, 5, "reuse");
	lokr_exec_free(ctx);
	for (int i = 0; i < NA; i++) {
		free((void *)items[i].x);
		free(items[i].y);
		adapter_free(&ad[i]);
	}
	layer_free(&l);
}

static void test_validation(void **state)
{
	(void)state;
	rng g = {13};
	lokr_layer l = make_layer(&g, 20, 12, 1);
	tadapter t;
	adapter_wrap(&t, make_lokr(&g, 4, 3, 5, 4, 0, 0, 1.0f), &l);
	float *x = rnd(&g, 3 * 12, 1.0f);
	float y[3 * 20];
	lokr_exec *ctx;
	lokr_error err = {0};
	assert_int_equal(lokr_exec_new(0, &ctx, NULL), LOKR_OK);
	lokr_adapter_ref ref = {&t.a, 1.0f};
	lokr_batch_item it = {&ref, 1, x, 3, y};

	x[17] = NAN;
	assert_int_equal(lokr__exec_layer(ctx, &l, LAYER, &it, 1, &err), LOKR_EINVAL);
	assert_non_null(strstr(err.msg, "NaN"));
	x[17] = INFINITY;
	assert_int_equal(lokr__exec_layer(ctx, &l, LAYER, &it, 1, &err), LOKR_EINVAL);
	/* also when stacked with another item */
	lokr_batch_item two[2] = {it, it};
	two[1].y = y; /* same y is fine for validation: it fails before writing */
	assert_int_equal(lokr__exec_layer(ctx, &l, LAYER, two, 2, &err), LOKR_EINVAL);
	x[17] = 0.5f;

	ref.multiplier = NAN;
	assert_int_equal(lokr__exec_layer(ctx, &l, LAYER, &it, 1, &err), LOKR_EINVAL);
	ref.multiplier = 1.0f;
	it.rows = -1;
	assert_int_equal(lokr__exec_layer(ctx, &l, LAYER, &it, 1, &err), LOKR_EINVAL);
	it.rows = 3;
	it.x = NULL;
	assert_int_equal(lokr__exec_layer(ctx, &l, LAYER, &it, 1, &err), LOKR_EINVAL);
	it.x = x;
	lokr_adapter_ref nul = {NULL, 1.0f};
	it.set = &nul;
	assert_int_equal(lokr__exec_layer(ctx, &l, LAYER, &it, 1, &err), LOKR_EINVAL);
	it.set = &ref;
	assert_int_equal(lokr__exec_layer(NULL, &l, LAYER, &it, 1, &err), LOKR_EINVAL);
	assert_int_equal(lokr__exec_layer(ctx, NULL, LAYER, &it, 1, &err), LOKR_EINVAL);

	/* conv layer */
	lokr_layer conv = l;
	conv.kind = LOKR_LAYER_CONV;
	conv.kk = 9;
	assert_int_equal(lokr__exec_layer(ctx, &conv, LAYER, &it, 1, &err), LOKR_EINVAL);
	assert_non_null(strstr(err.msg, "conv"));

	/* DoRA flag without the cached vector */
	t.mods[0].dora_axis = LOKR_DORA_OUT;
	assert_int_equal(lokr__exec_layer(ctx, &l, LAYER, &it, 1, &err), LOKR_EINVAL);
	assert_non_null(strstr(err.msg, "DoRA"));
	t.mods[0].dora_axis = LOKR_DORA_NONE;

	/* an adapter with no module on this layer contributes nothing */
	assert_int_equal(lokr__exec_layer(ctx, &l, 7 + 1, &it, 1, &err), LOKR_OK);
	double *base = ref_apply(&l, NULL, x, 3);
	assert_true(rel_err(y, base, 60) <= TOL);
	free(base);

	/* zero items and zero rows are fine */
	assert_int_equal(lokr__exec_layer(ctx, &l, LAYER, NULL, 0, &err), LOKR_OK);
	it.rows = 0;
	assert_int_equal(lokr__exec_layer(ctx, &l, LAYER, &it, 1, &err), LOKR_OK);
	it.rows = 3;
	/* and it still works after all the failures */
	assert_int_equal(lokr__exec_layer(ctx, &l, LAYER, &it, 1, &err), LOKR_OK);
	check_items(&l, &it, 1, "after failures");

	lokr_exec_free(ctx);
	free(x);
	adapter_free(&t);
	layer_free(&l);
}

static void test_scratch_ceiling(void **state)
{
	(void)state;
	rng g = {14};
	lokr_layer l = make_layer(&g, 64, 64, 0);
	tadapter t;
	adapter_wrap(&t, make_lokr(&g, 8, 8, 8, 8, 0, 0, 1.0f), &l);
	lokr_adapter_ref ref = {&t.a, 1.0f};
	enum { N = 16 };
	lokr_batch_item items[N];
	float *x = rnd(&g, N * 64, 1.0f);
	float *y = calloc(N * 64, sizeof *y);
	for (int i = 0; i < N; i++) {
		items[i].set = &ref;
		items[i].nset = 1;
		items[i].x = x + i * 64;
		items[i].rows = 1;
		items[i].y = y + i * 64;
	}
	lokr_exec *ctx;
	lokr_error err = {0};
	/* 16 stacked rows need 16 * 128 floats = 8 KiB for X/Y alone */
	assert_int_equal(lokr_exec_new(6000, &ctx, NULL), LOKR_OK);
	assert_int_equal(lokr__exec_layer(ctx, &l, LAYER, items, N, &err), LOKR_ERANGE);
	assert_non_null(strstr(err.msg, "ceiling"));
	/* a single request fits */
	assert_int_equal(lokr__exec_layer(ctx, &l, LAYER, items, 1, &err), LOKR_OK);
	check_items(&l, items, 1, "under ceiling");
	lokr_exec_stats st;
	lokr_exec_stats_get(ctx, &st);
	assert_true(st.scratch_bytes <= 6000);
	lokr_exec_free(ctx);

	/* allocation failures: ENOMEM, then success */
	assert_int_equal(lokr_exec_new(0, &ctx, NULL), LOKR_OK);
	int failed = 0;
	for (long k = 0; k < 4; k++) {
		lokr__alloc_fail_after(k);
		int rc = lokr__exec_layer(ctx, &l, LAYER, items, N, &err);
		lokr__alloc_fail_after(-1);
		if (rc == LOKR_OK)
			break;
		assert_int_equal(rc, LOKR_ENOMEM);
		failed++;
	}
	assert_true(failed > 0);
	assert_int_equal(lokr__exec_layer(ctx, &l, LAYER, items, N, &err), LOKR_OK);
	check_items(&l, items, N, "after ENOMEM");
	lokr_exec_free(ctx);
	lokr__alloc_fail_after(0);
	assert_int_equal(lokr_exec_new(0, &ctx, &err), LOKR_ENOMEM);
	lokr__alloc_fail_after(-1);

	free(x);
	free(y);
	adapter_free(&t);
	layer_free(&l);
}

static void test_threading_and_blas(void **state)
{
	(void)state;
	int w = 0, b = 0;
	assert_int_equal(lokr_threading_setup(LOKR_THREADING_BLAS, 2, &w, &b), LOKR_OK);
	assert_int_equal(w, 1);
	assert_int_equal(b, 2);
	assert_int_equal(lokr_threading_setup(LOKR_THREADING_WORKERS, 2, &w, &b), LOKR_OK);
	assert_int_equal(w, 2);
	assert_int_equal(b, 1);
	assert_int_equal(lokr_threading_setup(LOKR_THREADING_WORKERS, 0, &w, &b), LOKR_EINVAL);
	char buf[256];
	assert_int_equal(lokr_blas_describe(buf, sizeof buf), 1);
	assert_non_null(strstr(buf, "core "));
}

/* End to end through files: a base and adapters written as safetensors,
 * loaded by lokr_base_load / lokr_adapter_load (which plan the modules and
 * compute the DoRA vectors), applied with lokr_apply_linear and with one
 * lokr_exec_linear batch, against x (W')^T + b where W' comes from
 * lokr_merge_layer (lib/merge.c, the naive dense path). */
static void write_st(const char *path, lokr_st_spec *specs, size_t n)
{
	lokr_error err = {0};
	if (lokr_st_write_file(path, specs, n, NULL, NULL, 0, &err) != LOKR_OK)
		fail_msg("write %s: %s", path, err.msg);
}

static lokr_st_spec spec2(const char *name, int64_t r, int64_t c, const float *data)
{
	lokr_st_spec sp;
	memset(&sp, 0, sizeof sp);
	sp.name = name;
	sp.dtype_name = "F32";
	sp.ndim = c ? 2 : (r ? 1 : 0);
	sp.shape[0] = r;
	sp.shape[1] = c;
	sp.data = data;
	return sp;
}

static lokr_adapter *load_adapter(const lokr_base *b, const char *path)
{
	lokr_st_file *f = NULL;
	lokr_adapter *a = NULL;
	lokr_error err = {0};
	if (lokr_st_open(path, &f, &err) != LOKR_OK)
		fail_msg("open %s: %s", path, err.msg);
	if (lokr_adapter_load(b, f, &a, &err) != LOKR_OK)
		fail_msg("load %s: %s", path, err.msg);
	lokr_st_close(f);
	return a;
}

static void test_end_to_end_vs_merge(void **state)
{
	(void)state;
	char dir[] = "/tmp/lokr-exec-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char bpath[128], a1[128], a2[128], a3[128];
	snprintf(bpath, sizeof bpath, "%s/base.safetensors", dir);
	snprintf(a1, sizeof a1, "%s/a1.safetensors", dir);
	snprintf(a2, sizeof a2, "%s/a2.safetensors", dir);
	snprintf(a3, sizeof a3, "%s/a3.safetensors", dir);
	rng g = {21};
	/* layer blk.proj: 160 x 96; another layer to be ignored */
	float *w = rnd(&g, 160 * 96, 0.1f), *b = rnd(&g, 160, 0.5f), *w2 = rnd(&g, 8 * 8, 0.1f);
	lokr_st_spec bs[] = {spec2("blk.proj.weight", 160, 96, w),
	                     spec2("blk.proj.bias", 160, 0, b),
	                     spec2("blk.other.weight", 8, 8, w2)};
	write_st(bpath, bs, 3);
	/* a1: LoKr W1 16x8 (x) W2 10x12 low-rank r 3, alpha 6 (s = 2) */
	float *w1 = rnd(&g, 16 * 8, 0.5f), *wa = rnd(&g, 10 * 3, 0.5f), *wb = rnd(&g, 3 * 12, 0.5f);
	float alpha = 6.0f;
	lokr_st_spec s1[] = {spec2("lycoris_blk_proj.lokr_w1", 16, 8, w1),
	                     spec2("lycoris_blk_proj.lokr_w2_a", 10, 3, wa),
	                     spec2("lycoris_blk_proj.lokr_w2_b", 3, 12, wb),
	                     spec2("lycoris_blk_proj.alpha", 0, 0, &alpha)};
	write_st(a1, s1, 4);
	/* a2: unbalanced LoKr 40x4 (x) 4x24 with output-axis DoRA */
	float *v1 = rnd(&g, 40 * 4, 0.5f), *v2 = rnd(&g, 4 * 24, 0.5f), *ds = rnd(&g, 160, 0.2f);
	for (int i = 0; i < 160; i++)
		ds[i] += 1.0f;
	lokr_st_spec s2[] = {spec2("lycoris_blk_proj.lokr_w1", 40, 4, v1),
	                     spec2("lycoris_blk_proj.lokr_w2", 4, 24, v2),
	                     spec2("lycoris_blk_proj.dora_scale", 160, 1, ds)};
	write_st(a2, s2, 3);
	/* a3: LoRA r 4 with input-axis DoRA */
	float *up = rnd(&g, 160 * 4, 0.3f), *dn = rnd(&g, 4 * 96, 0.3f), *di = rnd(&g, 96, 0.2f);
	for (int i = 0; i < 96; i++)
		di[i] += 1.0f;
	float al3 = 4.0f;
	lokr_st_spec s3[] = {spec2("lycoris_blk_proj.lora_up.weight", 160, 4, up),
	                     spec2("lycoris_blk_proj.lora_down.weight", 4, 96, dn),
	                     spec2("lycoris_blk_proj.alpha", 0, 0, &al3),
	                     spec2("lycoris_blk_proj.dora_scale", 1, 96, di)};
	write_st(a3, s3, 4);

	lokr_base *base = NULL;
	lokr_error err = {0};
	const char *paths[] = {bpath};
	if (lokr_base_load(paths, 1, &base, &err) != LOKR_OK)
		fail_msg("base: %s", err.msg);
	int64_t li = lokr_base_layer_find(base, "blk.proj");
	assert_true(li >= 0);
	lokr_adapter *ad[3] = {load_adapter(base, a1), load_adapter(base, a2),
	                       load_adapter(base, a3)};
	const lokr_module *m1 = lokr_adapter_module_for(ad[0], (size_t)li);
	assert_non_null(m1);
	assert_non_null(m1->plan);
	char desc[512];
	assert_int_equal(lokr_plan_describe(m1, desc, sizeof desc), LOKR_OK);

	lokr_adapter_ref sets[][3] = {
	    {{ad[0], 1.0f}},  {{ad[1], 0.7f}},
	    {{ad[2], -0.5f}}, {{ad[0], 0.5f}, {ad[1], 1.0f}, {ad[2], 1.5f}},
	    {{ad[1], 0.0f}},
	};
	const size_t nsets[] = {1, 1, 1, 3, 1};
	enum { NI = 5, ROWS = 3 };
	lokr_batch_item items[NI];
	float *ys[NI];
	float *merged = calloc(160 * 96, sizeof *merged);
	lokr_exec *ctx;
	assert_int_equal(lokr_exec_new(0, &ctx, NULL), LOKR_OK);
	for (int i = 0; i < NI; i++) {
		items[i].set = sets[i];
		items[i].nset = nsets[i];
		items[i].rows = ROWS;
		items[i].x = rnd(&g, ROWS * 96, 1.0f);
		items[i].y = calloc(ROWS * 160, sizeof(float));
		ys[i] = calloc(ROWS * 160, sizeof(float));
		/* one by one, the public single-request API */
		if (lokr_apply_linear(base, (size_t)li, sets[i], nsets[i], items[i].x, ROWS, ys[i],
		                      &err) != LOKR_OK)
			fail_msg("apply: %s", err.msg);
		/* the naive reference: merged W' */
		if (lokr_merge_layer(base, (size_t)li, sets[i], nsets[i], 0, merged, &err) !=
		    LOKR_OK)
			fail_msg("merge: %s", err.msg);
		double ref[ROWS * 160];
		for (int r = 0; r < ROWS; r++)
			for (int o = 0; o < 160; o++) {
				double acc = b[o];
				for (int c = 0; c < 96; c++)
					acc += (double)items[i].x[r * 96 + c] *
					       (double)merged[o * 96 + c];
				ref[r * 160 + o] = acc;
			}
		double e = rel_err(ys[i], ref, ROWS * 160);
		if (e > TOL)
			fail_msg("set %d: lokr_apply_linear vs merged W': rel err %g", i, e);
	}
	/* the whole batch at once equals the one-by-one results */
	if (lokr_exec_linear(ctx, base, (size_t)li, items, NI, &err) != LOKR_OK)
		fail_msg("exec: %s", err.msg);
	for (int i = 0; i < NI; i++) {
		double e = rel_err_f(items[i].y, ys[i], ROWS * 160);
		if (e > 1e-6)
			fail_msg("item %d: batch vs one by one: %g", i, e);
	}
	/* layer out of range */
	assert_int_equal(lokr_exec_linear(ctx, base, 99, items, NI, &err), LOKR_ENOTFOUND);

	lokr_exec_free(ctx);
	for (int i = 0; i < NI; i++) {
		free((void *)items[i].x);
		free(items[i].y);
		free(ys[i]);
	}
	for (int i = 0; i < 3; i++)
		lokr_adapter_free(ad[i]);
	lokr_base_free(base);
	free(merged);
	float *bufs[] = {w, b, w2, w1, wa, wb, v1, v2, ds, up, dn, di};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		free(bufs[i]);
	remove(bpath);
	remove(a1);
	remove(a2);
	remove(a3);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_single_adapter_shapes),
	    cmocka_unit_test(test_heterogeneous),
	    cmocka_unit_test(test_dora_edges),
	    cmocka_unit_test(test_many_distinct),
	    cmocka_unit_test(test_validation),
	    cmocka_unit_test(test_scratch_ceiling),
	    cmocka_unit_test(test_threading_and_blas),
	    cmocka_unit_test(test_end_to_end_vs_merge),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for lib/adapter.c: synthetic adapters, built in memory with
 * lokr_st_layout_make against the fixture base (tests/data/fixtures), for
 * every algorithm and variant, every rejection of lycoris-format.md 9.23,
 * the alpha edge cases, and allocation failures.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"

#define BASE_PATH SRCDIR "/tests/data/fixtures/base.safetensors"
#define MAXT      48

static lokr_base *base;

/* ------------------------------------------------------- file builder */

struct file {
	size_t n;
	lokr_st_spec spec[MAXT];
	char name[MAXT][128];
	void *data[MAXT];
	size_t nmeta;
	const char *mk[4], *mv[4];
};

static uint32_t rng = 12345;

static float frand(void)
{
	rng = rng * 1664525u + 1013904223u;
	return (float)(rng >> 8) / (float)(1u << 24) - 0.5f;
}

static size_t dtype_bytes(const char *dt)
{
	if (!strcmp(dt, "F64") || !strcmp(dt, "I64"))
		return 8;
	if (!strcmp(dt, "F16") || !strcmp(dt, "BF16") || !strcmp(dt, "I16"))
		return 2;
	return 4;
}

/* Add tensor "<mod>.<param>" of `dtype` with the given shape, filled with
 * `vals` (nelem floats) or random values in [-0.5, 0.5).  Returns its index. */
static size_t add_v(struct file *f, const char *mod, const char *param, const char *dtype,
                    const float *vals, int ndim, va_list ap)
{
	assert_true(f->n < MAXT);
	size_t i = f->n++;
	lokr_st_spec *s = &f->spec[i];
	snprintf(f->name[i], sizeof f->name[i], "%s%s%s", mod, *mod ? "." : "", param);
	s->name = f->name[i];
	s->dtype_name = dtype;
	s->ndim = ndim;
	size_t ne = 1;
	for (int d = 0; d < ndim; d++) {
		s->shape[d] = va_arg(ap, int);
		ne *= (size_t)s->shape[d];
	}
	float *tmp = malloc((ne ? ne : 1) * sizeof *tmp);
	for (size_t k = 0; k < ne; k++)
		tmp[k] = vals ? vals[k] : frand();
	f->data[i] = calloc(ne ? ne : 1, dtype_bytes(dtype));
	int dt = lokr_dtype_parse(dtype);
	if (dt >= 0)
		assert_int_equal(lokr_encode_f32((lokr_dtype)dt, tmp, ne, f->data[i]), 0);
	free(tmp);
	s->data = f->data[i];
	return i;
}

static size_t add(struct file *f, const char *mod, const char *param, int ndim, ...)
{
	va_list ap;
	va_start(ap, ndim);
	size_t i = add_v(f, mod, param, "F32", NULL, ndim, ap);
	va_end(ap);
	return i;
}

static size_t add_dt(struct file *f, const char *mod, const char *param, const char *dtype,
                     int ndim, ...)
{
	va_list ap;
	va_start(ap, ndim);
	size_t i = add_v(f, mod, param, dtype, NULL, ndim, ap);
	va_end(ap);
	return i;
}

static size_t add_vals(struct file *f, const char *mod, const char *param, const float *vals,
                       int ndim, ...)
{
	va_list ap;
	va_start(ap, ndim);
	size_t i = add_v(f, mod, param, "F32", vals, ndim, ap);
	va_end(ap);
	return i;
}

static size_t add_vals_dt(struct file *f, const char *mod, const char *param, const char *dtype,
                          const float *vals, int ndim, ...)
{
	va_list ap;
	va_start(ap, ndim);
	size_t i = add_v(f, mod, param, dtype, vals, ndim, ap);
	va_end(ap);
	return i;
}

/* alpha: shape [] (shape1 == 0) or [1]. */
static void add_alpha(struct file *f, const char *mod, const char *dtype, float v, int shape1)
{
	float vals[1] = {v};
	if (shape1)
		add_vals_dt(f, mod, "alpha", dtype, vals, 1, 1);
	else
		add_vals_dt(f, mod, "alpha", dtype, vals, 0);
}

static void file_free(struct file *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->data[i]);
	f->n = 0;
}

/* Serialize `f` into a fresh buffer (caller frees). */
static uint8_t *serialize(const struct file *f, size_t *len)
{
	lokr_st_layout l;
	lokr_error e = {0};
	int rc = lokr_st_layout_make(f->spec, f->n, f->mk, f->mv, f->nmeta, &l, &e);
	if (rc)
		fail_msg("layout: %s", e.msg);
	uint8_t *buf = malloc(l.total);
	memcpy(buf, l.header, l.header_len);
	for (size_t i = 0; i < f->n; i++)
		memcpy(buf + l.header_len + l.offset[i], f->spec[i].data, l.nbytes[i]);
	*len = l.total;
	lokr_st_layout_free(&l);
	return buf;
}

/* Load `f` as an adapter against the fixture base; frees f's data. */
static int load_on(const lokr_base *b, struct file *f, lokr_adapter **a, lokr_error *e)
{
	size_t len;
	uint8_t *buf = serialize(f, &len);
	lokr_st_file *st;
	int rc = lokr_st_open_memory(buf, len, "test", &st, e);
	if (rc)
		fail_msg("open: %s", e->msg);
	*a = NULL;
	memset(e, 0, sizeof *e);
	rc = lokr_adapter_load(b, st, a, e);
	lokr_st_close(st);
	free(buf);
	file_free(f);
	if (rc) {
		assert_null(*a);
		assert_int_equal(e->code, rc);
		assert_true(e->msg[0] != '\0');
	}
	return rc;
}

static int load(struct file *f, lokr_adapter **a, lokr_error *e)
{
	return load_on(base, f, a, e);
}

static lokr_adapter *load_ok(struct file *f)
{
	lokr_adapter *a;
	lokr_error e = {0};
	int rc = load(f, &a, &e);
	if (rc)
		fail_msg("expected success, got %d: %s", rc, e.msg);
	return a;
}

/* Expect a rejection with `code` whose message names `mod` (and `also`). */
static void expect_reject(struct file *f, int code, const char *mod, const char *also)
{
	lokr_adapter *a;
	lokr_error e = {0};
	int rc = load(f, &a, &e);
	if (getenv("LOKR_TEST_VERBOSE"))
		fprintf(stderr, "  rejected (%d): %s\n", rc, e.msg);
	if (rc != code)
		fail_msg("expected %d (%s), got %d: %s", code, mod, rc, e.msg);
	if (mod && !strstr(e.msg, mod))
		fail_msg("message does not name %s: %s", mod, e.msg);
	if (also && !strstr(e.msg, also))
		fail_msg("message does not contain '%s': %s", also, e.msg);
}

static const lokr_module *only(const lokr_adapter *a)
{
	assert_int_equal(a->nmodules, 1);
	return &a->modules[0];
}

static void check_split(const lokr_module *m, int64_t m1, int64_t n1, int64_t m2, int64_t n2,
                        int64_t rank, float scale)
{
	assert_int_equal(m->algo, LOKR_ALGO_LOKR);
	assert_int_equal(m->m1, m1);
	assert_int_equal(m->n1, n1);
	assert_int_equal(m->m2, m2);
	assert_int_equal(m->n2, n2);
	assert_int_equal(m->rank, rank);
	assert_float_equal(m->scale, scale, 1e-6);
}

#define MP "lycoris_mid_proj"          /* 96 x 64 linear */
#define MO "lycoris_mid_odd"           /* 100 x 60 linear */
#define UP "lycoris_up_prime"          /* 127 x 128 linear */
#define CV "lycoris_down_resnet_conv1" /* 48 x 32 x 3 x 3 */
#define SC "lycoris_up_shortcut"       /* 64 x 32 x 1 x 1 */

/* -------------------------------------------------------------- LoKr */

static void test_lokr_full_w1_lowrank_w2(void **state)
{
	(void)state;
	struct file f = {0};
	float w1[64];
	for (int i = 0; i < 64; i++)
		w1[i] = (float)i / 64.0f;
	add_vals(&f, MP, "lokr_w1", w1, 2, 8, 8);
	add(&f, MP, "lokr_w2_a", 2, 12, 4);
	add(&f, MP, "lokr_w2_b", 2, 4, 8);
	add_alpha(&f, MP, "F32", 2.0f, 0);
	f.mk[0] = "ss_network_module";
	f.mv[0] = "lycoris.kohya";
	f.nmeta = 1;
	lokr_adapter *a = load_ok(&f);
	const lokr_module *m = only(a);
	check_split(m, 8, 8, 12, 8, 4, 0.5f);
	assert_string_equal(m->name, MP);
	assert_int_equal(m->layer, (size_t)lokr_base_layer_find(base, "mid.proj"));
	assert_int_equal(m->out, 96);
	assert_int_equal(m->in, 64);
	assert_int_equal(m->kk, 1);
	assert_int_equal(m->tucker, 0);
	assert_true(m->has_alpha);
	assert_false(m->alpha_ignored);
	assert_float_equal(m->alpha, 2.0, 0);
	assert_int_equal(m->w1.rows, 8);
	assert_int_equal(m->w1.cols, 8);
	for (int i = 0; i < 64; i++)
		assert_float_equal(m->w1.data[i], w1[i], 0);
	assert_null(m->w1_a.data);
	assert_int_equal(m->w2_a.rows, 12);
	assert_int_equal(m->w2_a.cols, 4);
	assert_int_equal(m->w2_b.rows, 4);
	assert_int_equal(m->w2_b.cols, 8);
	assert_null(m->w2.data);
	assert_int_equal(m->dora_axis, LOKR_DORA_NONE);
	assert_int_equal(m->nstored, 4);
	assert_string_equal(m->stored[0].key, "alpha");
	assert_string_equal(m->stored[1].key, "lokr_w1");
	assert_string_equal(m->stored[1].dtype, "F32");
	assert_int_equal(m->stored[1].ndim, 2);
	assert_int_equal(m->stored[3].shape[1], 8);
	assert_int_equal(a->param_count, 64 + 48 + 32);
	assert_int_equal(a->full_param_count, 96 * 64);
	assert_true(a->resident_bytes >= (64 + 48 + 32) * 4);
	assert_int_equal(a->nwarnings, 0);
	assert_int_equal(a->nmeta, 1);
	assert_string_equal(a->meta_keys[0], "ss_network_module");
	assert_string_equal(a->meta_values[0], "lycoris.kohya");
	assert_ptr_equal(lokr_adapter_module_for(a, m->layer), m);
	assert_null(lokr_adapter_module_for(a, m->layer + 1));
	assert_string_equal(lokr_algo_name(m->algo), "lokr");
	lokr_adapter_free(a);
}

static void test_lokr_decompose_both(void **state)
{
	(void)state;
	struct file f = {0};
	add(&f, MP, "lokr_w1_a", 2, 8, 2);
	add(&f, MP, "lokr_w1_b", 2, 2, 8);
	add(&f, MP, "lokr_w2_a", 2, 12, 2);
	add(&f, MP, "lokr_w2_b", 2, 2, 8);
	add_alpha(&f, MP, "F32", 4.0f, 0);
	lokr_adapter *a = load_ok(&f);
	const lokr_module *m = only(a);
	check_split(m, 8, 8, 12, 8, 2, 2.0f);
	assert_int_equal(m->w1_a.rows, 8);
	assert_int_equal(m->w1_b.cols, 8);
	assert_null(m->w1.data);
	lokr_adapter_free(a);
}

/* Unbalanced with W1 low-rank and W2 full (OR lokr_unbalanced_decompose_both). */
static void test_lokr_w1_lowrank_w2_full(void **state)
{
	(void)state;
	struct file f = {0};
	add(&f, MO, "lokr_w1_a", 2, 25, 8);
	add(&f, MO, "lokr_w1_b", 2, 8, 4);
	add(&f, MO, "lokr_w2", 2, 4, 15);
	add_alpha(&f, MO, "F32", 2.0f, 0);
	lokr_adapter *a = load_ok(&f);
	check_split(only(a), 25, 4, 4, 15, 8, 0.25f);
	lokr_adapter_free(a);
}

static void test_lokr_both_full_alpha_ignored(void **state)
{
	(void)state;
	static const struct {
		const char *dtype;
		float alpha;
	} cases[] = {{"BF16", 1e10f}, {"F16", INFINITY}, {"F32", NAN}, {"F32", 4.0f}};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		struct file f = {0};
		add(&f, MP, "lokr_w1", 2, 8, 8);
		add(&f, MP, "lokr_w2", 2, 12, 8);
		add_alpha(&f, MP, cases[k].dtype, cases[k].alpha, 0);
		lokr_adapter *a = load_ok(&f);
		const lokr_module *m = only(a);
		check_split(m, 8, 8, 12, 8, 0, 1.0f);
		assert_true(m->alpha_ignored);
		assert_true(m->has_alpha);
		assert_int_equal(a->nwarnings, 1);
		assert_non_null(strstr(a->warnings[0], MP));
		assert_non_null(strstr(a->warnings[0], "ignored"));
		lokr_adapter_free(a);
	}
	/* Both full without alpha: no warning, scale 1. */
	struct file f = {0};
	add(&f, MP, "lokr_w1", 2, 8, 8);
	add(&f, MP, "lokr_w2", 2, 12, 8);
	lokr_adapter *a = load_ok(&f);
	assert_float_equal(only(a)->scale, 1.0f, 0);
	assert_false(only(a)->alpha_ignored);
	assert_false(only(a)->has_alpha);
	assert_true(isnan(only(a)->alpha));
	lokr_adapter_free(a);
}

/* peft-style: W1 larger than W2. */
static void test_lokr_w1_larger(void **state)
{
	(void)state;
	struct file f = {0};
	add(&f, MP, "lokr_w1", 2, 48, 32);
	add(&f, MP, "lokr_w2", 2, 2, 2);
	lokr_adapter *a = load_ok(&f);
	check_split(only(a), 48, 32, 2, 2, 0, 1.0f);
	lokr_adapter_free(a);

	/* Prime 127 with factorization (127, 1) and a low-rank W1. */
	f = (struct file){0};
	add(&f, UP, "lokr_w1_a", 2, 127, 2);
	add(&f, UP, "lokr_w1_b", 2, 2, 4);
	add(&f, UP, "lokr_w2", 2, 1, 32);
	add_alpha(&f, UP, "F32", 1.0f, 0);
	a = load_ok(&f);
	check_split(only(a), 127, 4, 1, 32, 2, 0.5f);
	lokr_adapter_free(a);
}

static void test_lokr_conv(void **state)
{
	(void)state;
	/* 2-D w2_b (r, n2*kk), as LyCORIS modules write it. */
	struct file f = {0};
	add(&f, CV, "lokr_w1", 2, 4, 4);
	add(&f, CV, "lokr_w2_a", 2, 12, 3);
	add(&f, CV, "lokr_w2_b", 2, 3, 72);
	add_alpha(&f, CV, "F32", 1.5f, 0);
	lokr_adapter *a = load_ok(&f);
	const lokr_module *m = only(a);
	check_split(m, 4, 4, 12, 8, 3, 0.5f);
	assert_int_equal(m->kk, 9);
	assert_int_equal(m->w2_b.rows, 3);
	assert_int_equal(m->w2_b.cols, 72);
	lokr_adapter_free(a);

	/* 4-D w2_b (r, n2, kh, kw) (LyCORIS functional API): flattened. */
	f = (struct file){0};
	add(&f, CV, "lokr_w1", 2, 4, 4);
	add(&f, CV, "lokr_w2_a", 2, 12, 3);
	size_t ib = add(&f, CV, "lokr_w2_b", 4, 3, 8, 3, 3);
	float expect[216];
	memcpy(expect, f.data[ib], sizeof expect);
	add_alpha(&f, CV, "F32", 1.5f, 0);
	a = load_ok(&f);
	m = only(a);
	check_split(m, 4, 4, 12, 8, 3, 0.5f);
	assert_int_equal(m->w2_b.cols, 72);
	assert_memory_equal(m->w2_b.data, expect, sizeof expect);
	lokr_adapter_free(a);

	/* Full 4-D W2. */
	f = (struct file){0};
	add(&f, CV, "lokr_w1", 2, 4, 4);
	add(&f, CV, "lokr_w2", 4, 12, 8, 3, 3);
	a = load_ok(&f);
	m = only(a);
	check_split(m, 4, 4, 12, 8, 0, 1.0f);
	assert_int_equal(m->w2.rows, 12);
	assert_int_equal(m->w2.cols, 72);
	lokr_adapter_free(a);

	/* 1x1 conv, both full (OR lokr_balanced up.shortcut). */
	f = (struct file){0};
	add(&f, SC, "lokr_w1", 2, 8, 4);
	add(&f, SC, "lokr_w2", 4, 8, 8, 1, 1);
	add_alpha(&f, SC, "F32", 4.0f, 0);
	a = load_ok(&f);
	m = only(a);
	check_split(m, 8, 4, 8, 8, 0, 1.0f);
	assert_true(m->alpha_ignored);
	assert_int_equal(m->kk, 1);
	lokr_adapter_free(a);
}

static void test_lokr_tucker(void **state)
{
	(void)state;
	struct file f = {0};
	add(&f, CV, "lokr_w1", 2, 4, 4);
	add(&f, CV, "lokr_t2", 4, 3, 3, 3, 3);
	add(&f, CV, "lokr_w2_a", 2, 3, 12);
	add(&f, CV, "lokr_w2_b", 2, 3, 8);
	add_alpha(&f, CV, "F32", 1.0f, 0);
	lokr_adapter *a = load_ok(&f);
	const lokr_module *m = only(a);
	check_split(m, 4, 4, 12, 8, 3, 1.0f / 3.0f);
	assert_true(m->tucker);
	assert_int_equal(m->t2.rows, 9);
	assert_int_equal(m->t2.cols, 9);
	assert_int_equal(m->w2_a.rows, 3);
	assert_int_equal(m->w2_a.cols, 12);
	assert_int_equal(m->w2_b.rows, 3);
	assert_int_equal(m->w2_b.cols, 8);
	lokr_adapter_free(a);
}

/* ----------------------------------------------------------- LoHa, LoRA */

static void test_loha(void **state)
{
	(void)state;
	struct file f = {0};
	add(&f, MP, "hada_w1_a", 2, 96, 4);
	add(&f, MP, "hada_w1_b", 2, 4, 64);
	add(&f, MP, "hada_w2_a", 2, 96, 4);
	add(&f, MP, "hada_w2_b", 2, 4, 64);
	add_alpha(&f, MP, "F32", 2.0f, 0);
	lokr_adapter *a = load_ok(&f);
	const lokr_module *m = only(a);
	assert_int_equal(m->algo, LOKR_ALGO_LOHA);
	assert_int_equal(m->rank, 4);
	assert_float_equal(m->scale, 0.5f, 0);
	assert_int_equal(m->hada_w2_b.cols, 64);
	lokr_adapter_free(a);

	/* conv without Tucker: w_b (r, in*kk). */
	f = (struct file){0};
	add(&f, CV, "hada_w1_a", 2, 48, 4);
	add(&f, CV, "hada_w1_b", 2, 4, 288);
	add(&f, CV, "hada_w2_a", 2, 48, 4);
	add(&f, CV, "hada_w2_b", 2, 4, 288);
	add_alpha(&f, CV, "F32", 8.0f, 0);
	a = load_ok(&f);
	m = only(a);
	assert_int_equal(m->rank, 4);
	assert_float_equal(m->scale, 2.0f, 0);
	assert_false(m->tucker);
	lokr_adapter_free(a);

	/* Tucker: w_a (r, out), w_b (r, in), t (r, r, kh, kw). */
	f = (struct file){0};
	add(&f, CV, "hada_t1", 4, 3, 3, 3, 3);
	add(&f, CV, "hada_w1_a", 2, 3, 48);
	add(&f, CV, "hada_w1_b", 2, 3, 32);
	add(&f, CV, "hada_t2", 4, 3, 3, 3, 3);
	add(&f, CV, "hada_w2_a", 2, 3, 48);
	add(&f, CV, "hada_w2_b", 2, 3, 32);
	add_alpha(&f, CV, "F32", 3.0f, 0);
	a = load_ok(&f);
	m = only(a);
	assert_int_equal(m->algo, LOKR_ALGO_LOHA);
	assert_true(m->tucker);
	assert_int_equal(m->rank, 3);
	assert_float_equal(m->scale, 1.0f, 0);
	assert_int_equal(m->hada_t1.rows, 9);
	assert_int_equal(m->hada_t1.cols, 9);
	assert_int_equal(m->hada_w1_a.rows, 3);
	assert_int_equal(m->hada_w1_a.cols, 48);
	assert_int_equal(m->hada_w2_b.cols, 32);
	lokr_adapter_free(a);
}

static void test_lora(void **state)
{
	(void)state;
	struct file f = {0};
	add(&f, MP, "lora_up.weight", 2, 96, 4);
	add(&f, MP, "lora_down.weight", 2, 4, 64);
	add_alpha(&f, MP, "F32", 8.0f, 0);
	lokr_adapter *a = load_ok(&f);
	const lokr_module *m = only(a);
	assert_int_equal(m->algo, LOKR_ALGO_LORA);
	assert_int_equal(m->rank, 4);
	assert_float_equal(m->scale, 2.0f, 0);
	assert_int_equal(m->up.rows, 96);
	assert_int_equal(m->down.cols, 64);
	assert_null(m->mid.data);
	lokr_adapter_free(a);

	/* LoCon: up (out, r, 1, 1), down (r, in, kh, kw). */
	f = (struct file){0};
	add(&f, CV, "lora_up.weight", 4, 48, 4, 1, 1);
	add(&f, CV, "lora_down.weight", 4, 4, 32, 3, 3);
	add_alpha(&f, CV, "F32", 1.0f, 0);
	a = load_ok(&f);
	m = only(a);
	assert_int_equal(m->rank, 4);
	assert_int_equal(m->up.rows, 48);
	assert_int_equal(m->up.cols, 4);
	assert_int_equal(m->down.rows, 4);
	assert_int_equal(m->down.cols, 288);
	lokr_adapter_free(a);

	/* LoCon Tucker: mid (r, r, kh, kw), down (r, in, 1, 1). */
	f = (struct file){0};
	add(&f, CV, "lora_up.weight", 4, 48, 3, 1, 1);
	add(&f, CV, "lora_mid.weight", 4, 3, 3, 3, 3);
	add(&f, CV, "lora_down.weight", 4, 3, 32, 1, 1);
	add_alpha(&f, CV, "F32", 3.0f, 0);
	a = load_ok(&f);
	m = only(a);
	assert_true(m->tucker);
	assert_int_equal(m->rank, 3);
	assert_float_equal(m->scale, 1.0f, 0);
	assert_int_equal(m->mid.rows, 9);
	assert_int_equal(m->mid.cols, 9);
	assert_int_equal(m->down.rows, 3);
	assert_int_equal(m->down.cols, 32);
	lokr_adapter_free(a);
}

/* Mixed algorithms in one file; modules sorted by layer. */
static void test_mixed(void **state)
{
	(void)state;
	struct file f = {0};
	add(&f, UP, "lora_up.weight", 2, 127, 2);
	add(&f, UP, "lora_down.weight", 2, 2, 128);
	add_alpha(&f, UP, "F32", 1.0f, 0);
	add(&f, MP, "lokr_w1", 2, 8, 8);
	add(&f, MP, "lokr_w2_a", 2, 12, 4);
	add(&f, MP, "lokr_w2_b", 2, 4, 8);
	add_alpha(&f, MP, "F32", 4.0f, 0);
	add(&f, "lora_unet_mid_odd", "hada_w1_a", 2, 100, 2);
	add(&f, "lora_unet_mid_odd", "hada_w1_b", 2, 2, 60);
	add(&f, "lora_unet_mid_odd", "hada_w2_a", 2, 100, 2);
	add(&f, "lora_unet_mid_odd", "hada_w2_b", 2, 2, 60);
	add_alpha(&f, "lora_unet_mid_odd", "F32", 1.0f, 0);
	lokr_adapter *a = load_ok(&f);
	assert_int_equal(a->nmodules, 3);
	for (size_t i = 1; i < a->nmodules; i++)
		assert_true(a->modules[i - 1].layer < a->modules[i].layer);
	const lokr_module *m =
	    lokr_adapter_module_for(a, (size_t)lokr_base_layer_find(base, "mid.odd"));
	assert_non_null(m);
	assert_int_equal(m->algo, LOKR_ALGO_LOHA);
	assert_float_equal(m->scale, 0.5f, 0);
	m = lokr_adapter_module_for(a, (size_t)lokr_base_layer_find(base, "up.prime"));
	assert_int_equal(m->algo, LOKR_ALGO_LORA);
	m = lokr_adapter_module_for(a, (size_t)lokr_base_layer_find(base, "mid.proj"));
	assert_int_equal(m->algo, LOKR_ALGO_LOKR);
	assert_null(
	    lokr_adapter_module_for(a, (size_t)lokr_base_layer_find(base, "down.attn.to_q")));
	assert_int_equal(a->full_param_count, 127 * 128 + 96 * 64 + 100 * 60);
	lokr_adapter_free(a);
}

/* --------------------------------------------------------------- DoRA */

/* g * |W0 + s dW| (+eps) must give back dora_scale along the axis. */
static void check_dora_g(const lokr_module *m)
{
	const lokr_layer *l = lokr_base_layer_at(base, m->layer);
	size_t cols = (size_t)(m->in * m->kk), n = (size_t)m->out * cols;
	float *d = malloc(n * sizeof *d);
	assert_int_equal(lokr_module_delta(m, d), 0);
	int64_t len = m->dora_axis == LOKR_DORA_OUT ? m->out : m->in;
	double *acc = calloc((size_t)len, sizeof *acc);
	for (int64_t o = 0; o < m->out; o++)
		for (size_t c = 0; c < cols; c++) {
			double v =
			    (double)l->weight[(size_t)o * cols + c] + d[(size_t)o * cols + c];
			acc[m->dora_axis == LOKR_DORA_OUT ? o : (int64_t)(c / (size_t)m->kk)] +=
			    v * v;
		}
	assert_non_null(m->dora_g);
	for (int64_t i = 0; i < len; i++) {
		double want = m->dora_scale[i] / (sqrt(acc[i]) + 0x1p-23);
		assert_true(fabs(m->dora_g[i] - want) <= 1e-5 * fabs(want) + 1e-7);
	}
	free(acc);
	free(d);
}

static void test_dora_axes(void **state)
{
	(void)state;
	static const struct {
		const char *mod;
		int ndim;
		int s0, s1, s2, s3;
		lokr_dora_axis axis;
	} cases[] = {
	    {MP, 2, 96, 1, 0, 0, LOKR_DORA_OUT}, {MP, 1, 96, 0, 0, 0, LOKR_DORA_OUT},
	    {MP, 2, 1, 64, 0, 0, LOKR_DORA_IN},  {CV, 4, 48, 1, 1, 1, LOKR_DORA_OUT},
	    {CV, 4, 1, 32, 1, 1, LOKR_DORA_IN},  {CV, 1, 48, 0, 0, 0, LOKR_DORA_OUT},
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		struct file f = {0};
		const char *mod = cases[k].mod;
		if (!strcmp(mod, MP)) {
			add(&f, mod, "lokr_w1", 2, 8, 8);
			add(&f, mod, "lokr_w2_a", 2, 12, 4);
			add(&f, mod, "lokr_w2_b", 2, 4, 8);
		} else {
			add(&f, mod, "lokr_w1", 2, 4, 4);
			add(&f, mod, "lokr_w2", 4, 12, 8, 3, 3);
		}
		add_alpha(&f, mod, "F32", 2.0f, 0);
		size_t i = add(&f, mod, "dora_scale", cases[k].ndim, cases[k].s0, cases[k].s1,
		               cases[k].s2, cases[k].s3);
		/* magnitudes around 1..2 */
		float *v = f.data[i];
		size_t ne = (size_t)(cases[k].s0 * (cases[k].s1 ? cases[k].s1 : 1));
		for (size_t j = 0; j < ne; j++)
			v[j] = 1.5f + v[j];
		lokr_adapter *a = load_ok(&f);
		const lokr_module *m = only(a);
		assert_int_equal(m->dora_axis, cases[k].axis);
		assert_non_null(m->dora_scale);
		check_dora_g(m);
		lokr_adapter_free(a);
	}

	/* DoRA on LoHa and LoRA too. */
	struct file f = {0};
	add(&f, MP, "lora_up.weight", 2, 96, 4);
	add(&f, MP, "lora_down.weight", 2, 4, 64);
	add_alpha(&f, MP, "F32", 4.0f, 0);
	add(&f, MP, "dora_scale", 2, 96, 1);
	lokr_adapter *a = load_ok(&f);
	assert_int_equal(only(a)->dora_axis, LOKR_DORA_OUT);
	check_dora_g(only(a));
	lokr_adapter_free(a);
}

/* -------------------------------------------------------------- alpha */

static void lowrank_mp(struct file *f)
{
	add(f, MP, "lokr_w1", 2, 8, 8);
	add(f, MP, "lokr_w2_a", 2, 12, 4);
	add(f, MP, "lokr_w2_b", 2, 4, 8);
}

static void test_alpha_cases(void **state)
{
	(void)state;
	static const struct {
		const char *dtype;
		float alpha;
		int shape1;
		float scale;
		int has;
		int warn;
	} cases[] = {
	    {"F32", 2.0f, 0, 0.5f, 1, 0},   {"F32", 2.0f, 1, 0.5f, 1, 0},
	    {"F16", 3.0f, 0, 0.75f, 1, 0},  {"BF16", 3.0f, 1, 0.75f, 1, 0},
	    {"F64", 6.0f, 0, 1.5f, 1, 0},   {"F32", 0.0f, 0, 1.0f, 1, 1},
	    {"F32", -4.0f, 0, -1.0f, 1, 0}, {"F16", 3.4641f, 0, 0.866f, 1, 0},
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		struct file f = {0};
		lowrank_mp(&f);
		add_alpha(&f, MP, cases[k].dtype, cases[k].alpha, cases[k].shape1);
		lokr_adapter *a = load_ok(&f);
		const lokr_module *m = only(a);
		assert_float_equal(m->scale, cases[k].scale, 1e-3);
		assert_int_equal(m->has_alpha, cases[k].has);
		assert_int_equal(a->nwarnings, (size_t)cases[k].warn);
		lokr_adapter_free(a);
	}
	/* fp16 alpha: the stored (rounded) value is used. */
	struct file f = {0};
	lowrank_mp(&f);
	add_alpha(&f, MP, "F16", 3.4641f, 0);
	lokr_adapter *a = load_ok(&f);
	uint16_t h;
	float back;
	float in = 3.4641f;
	lokr_encode_f32(LOKR_DTYPE_F16, &in, 1, &h);
	lokr_decode_f32(LOKR_DTYPE_F16, &h, 1, &back);
	assert_float_equal(only(a)->scale, back / 4.0f, 0);
	assert_float_equal(only(a)->alpha, back, 0);
	lokr_adapter_free(a);

	/* missing alpha: scale 1 and a warning naming the module */
	f = (struct file){0};
	lowrank_mp(&f);
	a = load_ok(&f);
	assert_float_equal(only(a)->scale, 1.0f, 0);
	assert_false(only(a)->has_alpha);
	assert_int_equal(a->nwarnings, 1);
	assert_non_null(strstr(a->warnings[0], MP));
	assert_non_null(strstr(a->warnings[0], "no alpha"));
	lokr_adapter_free(a);

	/* a used non-finite alpha is rejected */
	float bad[] = {INFINITY, -INFINITY, NAN};
	for (size_t k = 0; k < 3; k++) {
		f = (struct file){0};
		lowrank_mp(&f);
		add_alpha(&f, MP, k ? "F32" : "F16", bad[k], 0);
		expect_reject(&f, LOKR_EADAPTER, MP, "alpha");
	}
	/* F16 overflow: 1e5 becomes inf, used -> rejected */
	f = (struct file){0};
	lowrank_mp(&f);
	add_alpha(&f, MP, "F16", 1e5f, 0);
	expect_reject(&f, LOKR_EADAPTER, MP, "alpha");
	/* alpha with two elements, alpha of an integer dtype */
	f = (struct file){0};
	lowrank_mp(&f);
	add(&f, MP, "alpha", 1, 2);
	expect_reject(&f, LOKR_EADAPTER, MP, "alpha");
	f = (struct file){0};
	lowrank_mp(&f);
	add_dt(&f, MP, "alpha", "I64", 0);
	expect_reject(&f, LOKR_EUNSUPPORTED, MP, "alpha");
	/* LoHa / LoRA: no both-full exception, alpha / rank */
	f = (struct file){0};
	add(&f, MP, "lora_up.weight", 2, 96, 64);
	add(&f, MP, "lora_down.weight", 2, 64, 64);
	add_alpha(&f, MP, "F32", INFINITY, 0);
	expect_reject(&f, LOKR_EADAPTER, MP, "alpha");
}

/* ---------------------------------------------------------- rejections */

static void test_reject_lokr_shapes(void **state)
{
	(void)state;
	struct file f = {0};
	/* m1 * m2 != out */
	add(&f, MP, "lokr_w1", 2, 8, 8);
	add(&f, MP, "lokr_w2", 2, 11, 8);
	expect_reject(&f, LOKR_EMISMATCH, MP, "(96, 64)");
	/* n1 * n2 != in */
	add(&f, MP, "lokr_w1", 2, 8, 8);
	add(&f, MP, "lokr_w2_a", 2, 12, 2);
	add(&f, MP, "lokr_w2_b", 2, 2, 7);
	expect_reject(&f, LOKR_EMISMATCH, MP, "(2, 7)");
	/* w2_b columns not divisible by kk */
	add(&f, CV, "lokr_w1", 2, 4, 4);
	add(&f, CV, "lokr_w2_a", 2, 12, 3);
	add(&f, CV, "lokr_w2_b", 2, 3, 70);
	expect_reject(&f, LOKR_EMISMATCH, CV, "(3, 70)");
	/* lokr_w1 together with lokr_w1_a */
	add(&f, MP, "lokr_w1", 2, 8, 8);
	add(&f, MP, "lokr_w1_a", 2, 8, 2);
	add(&f, MP, "lokr_w1_b", 2, 2, 8);
	add(&f, MP, "lokr_w2", 2, 12, 8);
	expect_reject(&f, LOKR_EADAPTER, MP, "lokr_w1_a");
	/* lokr_w1_a without lokr_w1_b, and the reverse */
	add(&f, MP, "lokr_w1_a", 2, 8, 2);
	add(&f, MP, "lokr_w2", 2, 12, 8);
	expect_reject(&f, LOKR_EADAPTER, MP, "without lokr_w1_b");
	add(&f, MP, "lokr_w1_b", 2, 2, 8);
	add(&f, MP, "lokr_w2", 2, 12, 8);
	expect_reject(&f, LOKR_EADAPTER, MP, "without lokr_w1_a");
	/* w2_a without w2_b */
	add(&f, MP, "lokr_w1", 2, 8, 8);
	add(&f, MP, "lokr_w2_a", 2, 12, 4);
	expect_reject(&f, LOKR_EADAPTER, MP, "lokr_w2_a");
	/* rank mismatch within a pair */
	add(&f, MP, "lokr_w1", 2, 8, 8);
	add(&f, MP, "lokr_w2_a", 2, 12, 4);
	add(&f, MP, "lokr_w2_b", 2, 3, 8);
	expect_reject(&f, LOKR_EADAPTER, MP, "rank");
	add(&f, MP, "lokr_w1_a", 2, 8, 2);
	add(&f, MP, "lokr_w1_b", 2, 3, 8);
	add(&f, MP, "lokr_w2", 2, 12, 8);
	expect_reject(&f, LOKR_EADAPTER, MP, "rank");
	/* rank mismatch between w1 and w2 */
	add(&f, MP, "lokr_w1_a", 2, 8, 2);
	add(&f, MP, "lokr_w1_b", 2, 2, 8);
	add(&f, MP, "lokr_w2_a", 2, 12, 4);
	add(&f, MP, "lokr_w2_b", 2, 4, 8);
	expect_reject(&f, LOKR_EADAPTER, MP, "rank");
	/* lokr_t2 on a linear layer */
	add(&f, MP, "lokr_w1", 2, 8, 8);
	add(&f, MP, "lokr_t2", 4, 2, 2, 1, 1);
	add(&f, MP, "lokr_w2_a", 2, 2, 12);
	add(&f, MP, "lokr_w2_b", 2, 2, 8);
	expect_reject(&f, LOKR_EMISMATCH, MP, "lokr_t2");
	/* lokr_t2 with kernel dims different from the base */
	add(&f, CV, "lokr_w1", 2, 4, 4);
	add(&f, CV, "lokr_t2", 4, 3, 3, 1, 1);
	add(&f, CV, "lokr_w2_a", 2, 3, 12);
	add(&f, CV, "lokr_w2_b", 2, 3, 8);
	expect_reject(&f, LOKR_EMISMATCH, CV, "(3, 3, 1, 1)");
	/* Tucker rank mismatch */
	add(&f, CV, "lokr_w1", 2, 4, 4);
	add(&f, CV, "lokr_t2", 4, 3, 3, 3, 3);
	add(&f, CV, "lokr_w2_a", 2, 2, 12);
	add(&f, CV, "lokr_w2_b", 2, 3, 8);
	expect_reject(&f, LOKR_EADAPTER, CV, "rank");
	/* w1 not 2-D */
	add(&f, MP, "lokr_w1", 4, 8, 8, 1, 1);
	add(&f, MP, "lokr_w2", 2, 12, 8);
	expect_reject(&f, LOKR_EADAPTER, MP, "lokr_w1 (8, 8, 1, 1)");
	/* full W2 with the wrong kernel, and a 2-D full W2 on a 3x3 conv */
	add(&f, CV, "lokr_w1", 2, 4, 4);
	add(&f, CV, "lokr_w2", 4, 12, 8, 1, 1);
	expect_reject(&f, LOKR_EMISMATCH, CV, "(12, 8, 1, 1)");
	add(&f, CV, "lokr_w1", 2, 4, 4);
	add(&f, CV, "lokr_w2", 2, 12, 72);
	expect_reject(&f, LOKR_EMISMATCH, CV, "(12, 72)");
	/* 4-D w2_b whose trailing dims are not the kernel */
	add(&f, CV, "lokr_w1", 2, 4, 4);
	add(&f, CV, "lokr_w2_a", 2, 12, 3);
	add(&f, CV, "lokr_w2_b", 4, 3, 8, 9, 1);
	expect_reject(&f, LOKR_EMISMATCH, CV, "(3, 8, 9, 1)");
	/* no W2, no W1 */
	add(&f, MP, "lokr_w1", 2, 8, 8);
	expect_reject(&f, LOKR_EADAPTER, MP, "W2");
	add(&f, MP, "lokr_w2", 2, 12, 8);
	expect_reject(&f, LOKR_EADAPTER, MP, "W1");
	/* lokr_w2 with lokr_w2_a */
	add(&f, MP, "lokr_w1", 2, 8, 8);
	add(&f, MP, "lokr_w2", 2, 12, 8);
	add(&f, MP, "lokr_w2_a", 2, 12, 4);
	add(&f, MP, "lokr_w2_b", 2, 4, 8);
	expect_reject(&f, LOKR_EADAPTER, MP, "lokr_w2");
	/* an empty factor */
	add(&f, MP, "lokr_w1", 2, 8, 8);
	add(&f, MP, "lokr_w2_a", 2, 12, 0);
	add(&f, MP, "lokr_w2_b", 2, 0, 8);
	expect_reject(&f, LOKR_EADAPTER, MP, "empty");
}

static void test_reject_loha_lora_shapes(void **state)
{
	(void)state;
	struct file f = {0};
	add(&f, MP, "hada_w1_a", 2, 95, 4);
	add(&f, MP, "hada_w1_b", 2, 4, 64);
	add(&f, MP, "hada_w2_a", 2, 96, 4);
	add(&f, MP, "hada_w2_b", 2, 4, 64);
	expect_reject(&f, LOKR_EMISMATCH, MP, "(95, 4)");
	add(&f, MP, "hada_w1_a", 2, 96, 4);
	add(&f, MP, "hada_w1_b", 2, 4, 64);
	add(&f, MP, "hada_w2_a", 2, 96, 3);
	add(&f, MP, "hada_w2_b", 2, 3, 64);
	expect_reject(&f, LOKR_EADAPTER, MP, "rank");
	add(&f, MP, "hada_w1_a", 2, 96, 4);
	add(&f, MP, "hada_w1_b", 2, 4, 64);
	expect_reject(&f, LOKR_EADAPTER, MP, "hada_w2_a");
	add(&f, MP, "hada_t1", 4, 3, 3, 1, 1);
	add(&f, MP, "hada_t2", 4, 3, 3, 1, 1);
	add(&f, MP, "hada_w1_a", 2, 3, 96);
	add(&f, MP, "hada_w1_b", 2, 3, 64);
	add(&f, MP, "hada_w2_a", 2, 3, 96);
	add(&f, MP, "hada_w2_b", 2, 3, 64);
	expect_reject(&f, LOKR_EMISMATCH, MP, "linear");
	add(&f, MP, "lora_up.weight", 2, 96, 4);
	add(&f, MP, "lora_down.weight", 2, 3, 64);
	expect_reject(&f, LOKR_EADAPTER, MP, "rank");
	add(&f, MP, "lora_up.weight", 2, 96, 4);
	add(&f, MP, "lora_down.weight", 2, 4, 63);
	expect_reject(&f, LOKR_EMISMATCH, MP, "(4, 63)");
	add(&f, MP, "lora_up.weight", 2, 96, 4);
	expect_reject(&f, LOKR_EADAPTER, MP, "lora_down");
	add(&f, MP, "lora_down.weight", 2, 4, 64);
	expect_reject(&f, LOKR_EADAPTER, MP, "lora_up");
	add(&f, MP, "lora_up.weight", 2, 96, 3);
	add(&f, MP, "lora_mid.weight", 4, 3, 3, 1, 1);
	add(&f, MP, "lora_down.weight", 2, 3, 64);
	expect_reject(&f, LOKR_EMISMATCH, MP, "linear");
	add(&f, CV, "lora_up.weight", 4, 48, 3, 1, 1);
	add(&f, CV, "lora_mid.weight", 4, 3, 3, 5, 5);
	add(&f, CV, "lora_down.weight", 4, 3, 32, 1, 1);
	expect_reject(&f, LOKR_EMISMATCH, CV, "(3, 3, 5, 5)");
}

static void test_reject_dora(void **state)
{
	(void)state;
	static const int shapes[][3] = {
	    {2, 95, 1}, {2, 1, 63}, {2, 96, 64}, {1, 64, 0}, {2, 2, 64}};
	for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
		struct file f = {0};
		lowrank_mp(&f);
		add(&f, MP, "dora_scale", shapes[k][0], shapes[k][1], shapes[k][2]);
		expect_reject(&f, LOKR_EMISMATCH, MP, "dora_scale");
	}
}

static void test_reject_mapping_and_keys(void **state)
{
	(void)state;
	struct file f = {0};
	/* maps to no layer */
	add(&f, "lycoris_nope", "lokr_w1", 2, 8, 8);
	add(&f, "lycoris_nope", "lokr_w2", 2, 12, 8);
	expect_reject(&f, LOKR_EMISMATCH, "lycoris_nope", "no layer");
	/* two modules on the same layer */
	add(&f, "lora_unet_mid_proj", "lokr_w1", 2, 8, 8);
	add(&f, "lora_unet_mid_proj", "lokr_w2", 2, 12, 8);
	add(&f, MP, "lokr_w1", 2, 8, 8);
	add(&f, MP, "lokr_w2", 2, 12, 8);
	expect_reject(&f, LOKR_EADAPTER, MP, "lora_unet_mid_proj");
	/* other LyCORIS algorithms */
	static const char *const unsup[][2] = {
	    {"diff", "full"},         {"w_norm", "norm"}, {"oft_blocks", "OFT"},
	    {"a1.weight", "GLoRA"},   {"on_input", "IA"}, {"lokr_t1", "lokr_t1"},
	    {"bias_indices", "bias"},
	};
	for (size_t k = 0; k < sizeof unsup / sizeof unsup[0]; k++) {
		add(&f, MP, unsup[k][0], 2, 96, 64);
		expect_reject(&f, LOKR_EUNSUPPORTED, MP, unsup[k][1]);
	}
	/* unknown key next to a valid module */
	lowrank_mp(&f);
	add(&f, MP, "lokr_w3", 2, 1, 1);
	expect_reject(&f, LOKR_EADAPTER, MP, "lokr_w3");
	/* LoRA keys in a LoKr module -> detected as LoRA, then LoKr keys are foreign */
	lowrank_mp(&f);
	add(&f, MP, "lora_up.weight", 2, 96, 4);
	add(&f, MP, "lora_down.weight", 2, 4, 64);
	expect_reject(&f, LOKR_EADAPTER, MP, "lokr_w");
	/* key without a module */
	lowrank_mp(&f);
	add(&f, "", "junk", 1, 3);
	expect_reject(&f, LOKR_EADAPTER, NULL, "junk");
	/* only alpha */
	add_alpha(&f, MP, "F32", 1.0f, 0);
	expect_reject(&f, LOKR_EADAPTER, MP, NULL);
	/* no tensors at all */
	expect_reject(&f, LOKR_EADAPTER, NULL, "no adapter modules");
	/* integer factor */
	add(&f, MP, "lokr_w1", 2, 8, 8);
	add_dt(&f, MP, "lokr_w2", "I32", 2, 12, 8);
	expect_reject(&f, LOKR_EUNSUPPORTED, MP, "I32");
	/* NaN / Inf in a factor */
	size_t i = add(&f, MP, "lokr_w1", 2, 8, 8);
	add(&f, MP, "lokr_w2_a", 2, 12, 4);
	add(&f, MP, "lokr_w2_b", 2, 4, 8);
	((float *)f.data[i])[17] = NAN;
	expect_reject(&f, LOKR_EADAPTER, MP, "lokr_w1");
	add(&f, MP, "lokr_w1", 2, 8, 8);
	add(&f, MP, "lokr_w2_a", 2, 12, 4);
	i = add_dt(&f, MP, "lokr_w2_b", "F16", 2, 4, 8);
	((uint16_t *)f.data[i])[31] = 0x7c00; /* +inf */
	expect_reject(&f, LOKR_EADAPTER, MP, "lokr_w2_b");
	/* a bad module next to a good one rejects the whole file */
	lowrank_mp(&f);
	add(&f, MO, "lokr_w1", 2, 10, 6);
	add(&f, MO, "lokr_w2", 2, 10, 11);
	expect_reject(&f, LOKR_EMISMATCH, MO, NULL);
}

/* Keys of newer LyCORIS's resume state are ignored (lycoris-format.md 3.9). */
static void test_training_keys_ignored(void **state)
{
	(void)state;
	struct file f = {0};
	lowrank_mp(&f);
	add_alpha(&f, MP, "F32", 4.0f, 0);
	add_dt(&f, MP, "_lycoris_lokr_training_version", "I64", 0);
	add(&f, MP, "_lycoris_lokr_training_scalar", 0);
	add(&f, MP, "_lycoris_lokr_training_unfolded_w1", 2, 8, 8);
	add_dt(&f, "", "_lycoris_lokr_training_version", "I64", 0);
	lokr_adapter *a = load_ok(&f);
	const lokr_module *m = only(a);
	assert_int_equal(m->nstored, 4);
	assert_float_equal(m->scale, 1.0f, 0);
	assert_int_equal(a->nwarnings, 1);
	assert_non_null(strstr(a->warnings[0], "_lycoris_lokr_training_"));
	lokr_adapter_free(a);
	/* nothing but training keys: no modules */
	add_dt(&f, MP, "_lycoris_lokr_training_version", "I64", 0);
	expect_reject(&f, LOKR_EADAPTER, NULL, "no adapter modules");
}

/* A base whose layer names collide when mangled ("a.b" and "a_b"). */
static void test_reject_collision(void **state)
{
	(void)state;
	struct file b = {0};
	add(&b, "", "a.b.weight", 2, 4, 4);
	add(&b, "", "a_b.weight", 2, 4, 4);
	add(&b, "", "c.weight", 2, 4, 4);
	size_t len;
	uint8_t *buf = serialize(&b, &len);
	file_free(&b);
	char path[] = "/tmp/lokr-adapter-test-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
	free(buf);
	lokr_base *cb;
	lokr_error e = {0};
	const char *paths[] = {path};
	int rc = lokr_base_load(paths, 1, &cb, &e);
	unlink(path);
	if (rc)
		fail_msg("base: %s", e.msg);
	struct file f = {0};
	add(&f, "lycoris_a_b", "lokr_w1", 2, 2, 2);
	add(&f, "lycoris_a_b", "lokr_w2", 2, 2, 2);
	lokr_adapter *a;
	rc = load_on(cb, &f, &a, &e);
	assert_int_equal(rc, LOKR_EMISMATCH);
	assert_non_null(strstr(e.msg, "lycoris_a_b"));
	add(&f, "lycoris_c", "lokr_w1", 2, 2, 2);
	add(&f, "lycoris_c", "lokr_w2", 2, 2, 2);
	rc = load_on(cb, &f, &a, &e);
	assert_int_equal(rc, 0);
	lokr_adapter_free(a);
	lokr_base_free(cb);
}

/* ------------------------------------------------------ fault injection */

static void build_rich(struct file *f)
{
	lowrank_mp(f);
	add_alpha(f, MP, "F16", 2.0f, 0);
	add(f, MP, "dora_scale", 2, 96, 1);
	add(f, CV, "lora_up.weight", 4, 48, 3, 1, 1);
	add(f, CV, "lora_mid.weight", 4, 3, 3, 3, 3);
	add(f, CV, "lora_down.weight", 4, 3, 32, 1, 1);
	add(f, MO, "hada_w1_a", 2, 100, 2);
	add(f, MO, "hada_w1_b", 2, 2, 60);
	add(f, MO, "hada_w2_a", 2, 100, 2);
	add(f, MO, "hada_w2_b", 2, 2, 60);
	add(f, MO, "dora_scale", 2, 1, 60);
	add(f, MO, "_lycoris_lokr_training_scalar", 0);
	f->mk[0] = "k1";
	f->mv[0] = "v1";
	f->mk[1] = "k2";
	f->mv[1] = "v2";
	f->nmeta = 2;
}

static void test_alloc_failures(void **state)
{
	(void)state;
	struct file f = {0};
	build_rich(&f);
	size_t len;
	uint8_t *buf = serialize(&f, &len);
	file_free(&f);
	lokr_st_file *st;
	lokr_error e = {0};
	assert_int_equal(lokr_st_open_memory(buf, len, "test", &st, &e), 0);
	int succeeded = 0;
	for (long n = 0; n < 2000 && !succeeded; n++) {
		static lokr_adapter dummy;
		lokr_adapter *a = &dummy; /* must be reset to NULL */
		lokr__alloc_fail_after(n);
		int rc = lokr_adapter_load(base, st, &a, &e);
		lokr__alloc_fail_after(-1);
		if (rc == 0) {
			assert_int_equal(a->nmodules, 3);
			assert_int_equal(a->nmeta, 2);
			assert_true(n > 20); /* every allocation was failed once before */
			lokr_adapter_free(a);
			succeeded = 1;
		} else {
			assert_int_equal(rc, LOKR_ENOMEM);
			assert_null(a);
		}
	}
	assert_true(succeeded);
	lokr_st_close(st);
	free(buf);
}

static void test_null_args(void **state)
{
	(void)state;
	lokr_adapter *a;
	lokr_error e = {0};
	assert_int_equal(lokr_adapter_load(base, NULL, &a, &e), LOKR_EINVAL);
	assert_null(a);
	lokr_adapter_free(NULL);
	assert_null(lokr_adapter_module_for(NULL, 0));
	assert_string_equal(lokr_algo_name(LOKR_ALGO_LOHA), "loha");
	assert_string_equal(lokr_algo_name(LOKR_ALGO_LORA), "lora");
}

static int setup(void **state)
{
	(void)state;
	lokr_error e = {0};
	const char *paths[] = {BASE_PATH};
	if (lokr_base_load(paths, 1, &base, &e)) {
		fprintf(stderr, "base: %s\n", e.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	lokr_base_free(base);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lokr_full_w1_lowrank_w2),
	    cmocka_unit_test(test_lokr_decompose_both),
	    cmocka_unit_test(test_lokr_w1_lowrank_w2_full),
	    cmocka_unit_test(test_lokr_both_full_alpha_ignored),
	    cmocka_unit_test(test_lokr_w1_larger),
	    cmocka_unit_test(test_lokr_conv),
	    cmocka_unit_test(test_lokr_tucker),
	    cmocka_unit_test(test_loha),
	    cmocka_unit_test(test_lora),
	    cmocka_unit_test(test_mixed),
	    cmocka_unit_test(test_dora_axes),
	    cmocka_unit_test(test_alpha_cases),
	    cmocka_unit_test(test_reject_lokr_shapes),
	    cmocka_unit_test(test_reject_loha_lora_shapes),
	    cmocka_unit_test(test_reject_dora),
	    cmocka_unit_test(test_reject_mapping_and_keys),
	    cmocka_unit_test(test_training_keys_ignored),
	    cmocka_unit_test(test_reject_collision),
	    cmocka_unit_test(test_alloc_failures),
	    cmocka_unit_test(test_null_args),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

/* Unit tests for lib/st_write.c: the reference layout (order, offsets,
 * space padding to 8), header JSON escaping, write -> read round trips for
 * F32/F16/BF16/F64 with metadata, atomic replacement and argument errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/lokr-stw-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	char p[512];
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "%s/%s", tmpdir, de->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	return rmdir(tmpdir);
}

static void test_layout_order_and_padding(void **state)
{
	(void)state;
	lokr_st_spec s[6] = {
	    {.name = "b_f16", .dtype_name = "F16", .ndim = 1, .shape = {3}},
	    {.name = "a_f16", .dtype_name = "F16", .ndim = 1, .shape = {1}},
	    {.name = "z_f32", .dtype_name = "F32", .ndim = 2, .shape = {1, 2}},
	    {.name = "u8", .dtype_name = "U8", .ndim = 1, .shape = {5}},
	    {.name = "c_f64", .dtype_name = "F64", .ndim = 0},
	    {.name = "a_bf16", .dtype_name = "BF16", .ndim = 1, .shape = {2}},
	};
	lokr_st_layout l;
	lokr_error e;
	assert_int_equal(lokr_st_layout_make(s, 6, NULL, NULL, 0, &l, &e), 0);
	/* alignment descending (8, 4, 2, 2, 2, 1), then name */
	const size_t want_order[6] = {4, 2, 5, 1, 0, 3};
	for (int k = 0; k < 6; k++)
		assert_int_equal(l.order[k], want_order[k]);
	assert_int_equal(l.offset[4], 0);
	assert_int_equal(l.nbytes[4], 8);
	assert_int_equal(l.offset[2], 8);
	assert_int_equal(l.offset[5], 16);
	assert_int_equal(l.offset[1], 20);
	assert_int_equal(l.offset[0], 22);
	assert_int_equal(l.nbytes[0], 6);
	assert_int_equal(l.offset[3], 28);
	assert_int_equal(l.nbytes[3], 5);
	/* header: N little-endian, N % 8 == 0, padding is spaces, data 8-aligned */
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | l.header[i];
	assert_int_equal(n + 8, l.header_len);
	assert_int_equal(n % 8, 0);
	assert_int_equal(l.total, l.header_len + 33);
	const char *json = (const char *)l.header + 8;
	size_t jl = n;
	while (jl > 0 && json[jl - 1] == ' ')
		jl--;
	assert_true(n - jl < 8);
	assert_int_equal(json[jl - 1], '}');
	const char *want = "{\"c_f64\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]},"
	                   "\"z_f32\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[8,16]},"
	                   "\"a_bf16\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[16,20]},"
	                   "\"a_f16\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[20,22]},"
	                   "\"b_f16\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[22,28]},"
	                   "\"u8\":{\"dtype\":\"U8\",\"shape\":[5],\"data_offsets\":[28,33]}}";
	assert_int_equal(jl, strlen(want));
	assert_memory_equal(json, want, jl);
	lokr_st_layout_free(&l);
	assert_null(l.header);
}

static void test_padding_every_length(void **state)
{
	(void)state;
	/* names of length 1..16 move the JSON length through every residue */
	char name[32];
	for (int len = 1; len <= 16; len++) {
		memset(name, 'x', (size_t)len);
		name[len] = '\0';
		lokr_st_spec s = {.name = name, .dtype_name = "U8", .ndim = 1, .shape = {1}};
		lokr_st_layout l;
		assert_int_equal(lokr_st_layout_make(&s, 1, NULL, NULL, 0, &l, NULL), 0);
		assert_int_equal(l.header_len % 8, 0);
		size_t raw =
		    strlen("{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}") +
		    (size_t)len;
		assert_int_equal(l.header_len, 8 + ((raw + 7) & ~(size_t)7));
		for (size_t i = 8 + raw; i < l.header_len; i++)
			assert_int_equal(l.header[i], ' ');
		lokr_st_layout_free(&l);
	}
}

static void test_escaping_and_metadata(void **state)
{
	(void)state;
	uint8_t d[1] = {7};
	lokr_st_spec s = {
	    .name = "q\"\\\n\x01\xc3\xa9", .dtype_name = "U8", .ndim = 1, .shape = {1}, .data = d};
	const char *mk[2] = {"format", "tab\tkey"};
	const char *mv[2] = {"pt", "line\r\nbreak \x1f"};
	char path[128];
	snprintf(path, sizeof path, "%s/esc.safetensors", tmpdir);
	lokr_error e;
	assert_int_equal(lokr_st_write_file(path, &s, 1, mk, mv, 2, &e), 0);
	lokr_st_file *f;
	assert_int_equal(lokr_st_open(path, &f, &e), 0);
	assert_int_equal(lokr_st_count(f), 1);
	assert_string_equal(lokr_st_at(f, 0)->name, s.name);
	assert_int_equal(lokr_st_at(f, 0)->data[0], 7);
	assert_int_equal(lokr_st_metadata_count(f), 2);
	const char *k, *v;
	assert_int_equal(lokr_st_metadata_at(f, 1, &k, &v), 0);
	assert_string_equal(k, mk[1]);
	assert_string_equal(v, mv[1]);
	assert_string_equal(lokr_st_metadata_get(f, "format"), "pt");
	/* metadata comes first in the header, as the reference writes it */
	assert_memory_equal(lokr_st_bytes(f) + 8, "{\"__metadata__\":{\"format\":\"pt\"", 30);
	int found = 0;
	for (uint64_t i = 0; i + 6 <= lokr_st_size(f); i++)
		found |= memcmp(lokr_st_bytes(f) + i, "\\u0001", 6) == 0;
	assert_true(found);
	lokr_st_close(f);
}

static void test_roundtrip_dtypes(void **state)
{
	(void)state;
	enum { N = 37 };
	float src[N];
	for (int i = 0; i < N; i++)
		src[i] = (float)sin(i * 0.7) * powf(2.0f, (float)(i % 9) - 4);
	src[0] = 0x1p-24f; /* f16 subnormal */
	src[1] = -INFINITY;
	src[2] = 65504.0f;
	const lokr_dtype dts[4] = {LOKR_DTYPE_F32, LOKR_DTYPE_F16, LOKR_DTYPE_BF16, LOKR_DTYPE_F64};
	uint8_t enc[4][N * 8];
	lokr_st_spec s[5];
	for (int k = 0; k < 4; k++) {
		assert_int_equal(lokr_encode_f32(dts[k], src, N, enc[k]), 0);
		s[k] = (lokr_st_spec){.name = lokr_dtype_name(dts[k]),
		                      .dtype_name = lokr_dtype_name(dts[k]),
		                      .ndim = 2,
		                      .shape = {1, N},
		                      .data = enc[k]};
	}
	uint8_t alpha[2];
	float four = 4.0f;
	assert_int_equal(lokr_encode_f32(LOKR_DTYPE_BF16, &four, 1, alpha), 0);
	s[4] = (lokr_st_spec){.name = "alpha", .dtype_name = "BF16", .ndim = 0, .data = alpha};
	const char *mk[1] = {"ss_network_dim"};
	const char *mv[1] = {"16"};
	char path[128];
	snprintf(path, sizeof path, "%s/rt.safetensors", tmpdir);
	lokr_error e;
	assert_int_equal(lokr_st_write_file(path, s, 5, mk, mv, 1, &e), 0);
	lokr_st_file *f;
	assert_int_equal(lokr_st_open(path, &f, &e), 0);
	assert_int_equal(lokr_st_count(f), 5);
	assert_string_equal(lokr_st_metadata_get(f, "ss_network_dim"), "16");
	float got[N], want[N];
	for (int k = 0; k < 4; k++) {
		const lokr_st_tensor *t = lokr_st_find(f, lokr_dtype_name(dts[k]));
		assert_non_null(t);
		assert_int_equal(t->dtype, dts[k]);
		assert_int_equal(t->ndim, 2);
		assert_int_equal(t->shape[1], N);
		/* reference layout: every tensor starts at a multiple of its size */
		assert_int_equal(t->offset % lokr_dtype_size(dts[k]), 0);
		assert_memory_equal(t->data, enc[k], N * lokr_dtype_size(dts[k]));
		assert_int_equal(lokr_st_tensor_f32(t, got, &e), 0);
		assert_int_equal(lokr_decode_f32(dts[k], enc[k], N, want), 0);
		assert_memory_equal(got, want, sizeof got);
		if (dts[k] == LOKR_DTYPE_F32 || dts[k] == LOKR_DTYPE_F64)
			assert_memory_equal(got, src, sizeof got);
	}
	const lokr_st_tensor *a = lokr_st_find(f, "alpha");
	assert_int_equal(a->ndim, 0);
	assert_int_equal(lokr_st_tensor_f32(a, got, &e), 0);
	assert_true(got[0] == 4.0f);
	/* total size is what the layout says */
	lokr_st_layout l;
	assert_int_equal(lokr_st_layout_make(s, 5, mk, mv, 1, &l, &e), 0);
	assert_int_equal(l.total, lokr_st_size(f));
	assert_memory_equal(l.header, lokr_st_bytes(f), l.header_len);
	lokr_st_layout_free(&l);
	lokr_st_close(f);
	/* overwrite atomically: the new content replaces the old, no temp left */
	assert_int_equal(lokr_st_write_file(path, s + 4, 1, NULL, NULL, 0, &e), 0);
	assert_int_equal(lokr_st_open(path, &f, &e), 0);
	assert_int_equal(lokr_st_count(f), 1);
	lokr_st_close(f);
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	while ((de = readdir(d)))
		assert_null(strstr(de->d_name, ".tmp-"));
	closedir(d);
}

static void test_empty_and_zero_sized(void **state)
{
	(void)state;
	char path[128];
	snprintf(path, sizeof path, "%s/empty.safetensors", tmpdir);
	lokr_error e;
	assert_int_equal(lokr_st_write_file(path, NULL, 0, NULL, NULL, 0, &e), 0);
	lokr_st_file *f;
	assert_int_equal(lokr_st_open(path, &f, &e), 0);
	assert_int_equal(lokr_st_count(f), 0);
	assert_int_equal(lokr_st_size(f), 16); /* "{}" padded to 8 */
	lokr_st_close(f);
	lokr_st_spec z = {.name = "z", .dtype_name = "F32", .ndim = 2, .shape = {0, 5}};
	assert_int_equal(lokr_st_write_file(path, &z, 1, NULL, NULL, 0, &e), 0);
	assert_int_equal(lokr_st_open(path, &f, &e), 0);
	assert_int_equal(lokr_st_find(f, "z")->nelem, 0);
	lokr_st_close(f);
}

static void test_invalid_specs(void **state)
{
	(void)state;
	lokr_st_layout l;
	lokr_error e;
	lokr_st_spec s[2] = {{.name = "a", .dtype_name = "F32", .ndim = 1, .shape = {2}},
	                     {.name = "a", .dtype_name = "F16", .ndim = 1, .shape = {2}}};
	assert_int_equal(lokr_st_layout_make(s, 2, NULL, NULL, 0, &l, &e), LOKR_EINVAL);
	assert_non_null(strstr(e.msg, "'a' twice"));
	s[1].name = "__metadata__";
	assert_int_equal(lokr_st_layout_make(s, 2, NULL, NULL, 0, &l, &e), LOKR_EINVAL);
	s[1].name = "b";
	s[1].dtype_name = "F17";
	assert_int_equal(lokr_st_layout_make(s, 2, NULL, NULL, 0, &l, &e), LOKR_EINVAL);
	assert_non_null(strstr(e.msg, "F17"));
	s[1].dtype_name = "F4";
	s[1].shape[0] = 3; /* 12 bits */
	assert_int_equal(lokr_st_layout_make(s, 2, NULL, NULL, 0, &l, &e), LOKR_EINVAL);
	s[1].shape[0] = -1;
	s[1].dtype_name = "F16";
	assert_int_equal(lokr_st_layout_make(s, 2, NULL, NULL, 0, &l, &e), LOKR_EINVAL);
	s[1].shape[0] = INT64_MAX;
	s[1].ndim = 1;
	assert_int_equal(lokr_st_layout_make(s, 2, NULL, NULL, 0, &l, &e), LOKR_EINVAL);
	s[1].ndim = 9;
	assert_int_equal(lokr_st_layout_make(s, 2, NULL, NULL, 0, &l, &e), LOKR_EINVAL);
	s[1].ndim = 1;
	s[1].shape[0] = 2;
	s[1].name = "bad\xff";
	assert_int_equal(lokr_st_layout_make(s, 2, NULL, NULL, 0, &l, &e), LOKR_EINVAL);
	s[1].name = "b";
	const char *mk[2] = {"k", "k"}, *mv[2] = {"1", "2"};
	assert_int_equal(lokr_st_layout_make(s, 2, mk, mv, 2, &l, &e), LOKR_EINVAL);
	assert_int_equal(lokr_st_layout_make(s, 2, mk, mv, 1, &l, &e), 0);
	lokr_st_layout_free(&l);
	/* write_file needs data; a missing directory is an I/O error */
	assert_int_equal(
	    lokr_st_write_file("/nonexistent-dir/x.safetensors", s, 2, NULL, NULL, 0, &e),
	    LOKR_EINVAL);
	float buf[2] = {1, 2};
	s[0].data = s[1].data = buf;
	assert_int_equal(
	    lokr_st_write_file("/nonexistent-dir/x.safetensors", s, 2, NULL, NULL, 0, &e),
	    LOKR_EIO);
	assert_non_null(strstr(e.msg, "/nonexistent-dir/x.safetensors"));
}

static void test_alloc_failures(void **state)
{
	(void)state;
	lokr_st_spec s[3] = {{.name = "a", .dtype_name = "F32", .ndim = 1, .shape = {2}},
	                     {.name = "b", .dtype_name = "F16", .ndim = 1, .shape = {2}},
	                     {.name = "c", .dtype_name = "I64", .ndim = 0}};
	const char *mk[1] = {"k"}, *mv[1] = {"v"};
	int ok = 0;
	long n;
	for (n = 0; n < 100 && !ok; n++) {
		lokr_st_layout l;
		lokr_error e = {0};
		lokr__alloc_fail_after(n);
		int rc = lokr_st_layout_make(s, 3, mk, mv, 1, &l, &e);
		lokr__alloc_fail_after(-1);
		if (rc == 0) {
			ok = 1;
			lokr_st_layout_free(&l);
		} else {
			assert_int_equal(rc, LOKR_ENOMEM);
			assert_null(l.header);
		}
	}
	assert_true(ok && n > 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_layout_order_and_padding),
	    cmocka_unit_test(test_padding_every_length),
	    cmocka_unit_test(test_escaping_and_metadata),
	    cmocka_unit_test(test_roundtrip_dtypes),
	    cmocka_unit_test(test_empty_and_zero_sized),
	    cmocka_unit_test(test_invalid_specs),
	    cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

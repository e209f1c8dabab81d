/* Unit tests for lib/safetensors.c: every container rejection and
 * acceptance of lycoris-format.md 9.24 (built in memory and in temp files),
 * messages that name the file, tensor and values, the hostile-input corpus
 * in tests/data/bad-containers and odd-containers, and allocation failures. */
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

#ifndef SRCDIR
#define SRCDIR "."
#endif

/* A container: 8-byte N, header bytes (N of them), then data. */
static uint8_t *build(const char *hdr, size_t hlen, const void *data, size_t dlen, size_t *len)
{
	uint8_t *b = malloc(8 + hlen + dlen + 1);
	assert_non_null(b);
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
	memcpy(b + 8, hdr, hlen);
	if (dlen)
		memcpy(b + 8 + hlen, data, dlen);
	*len = 8 + hlen + dlen;
	return b;
}

/* Open `hdr` + `dlen` bytes of data (0, 1, 2, ...); expect `code`; if the
 * message must contain strings, pass them (NULL-terminated list). */
static int try_open(const char *hdr, size_t dlen, lokr_st_file **out, lokr_error *e)
{
	uint8_t data[256];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (uint8_t)i;
	assert_true(dlen <= sizeof data);
	size_t len;
	uint8_t *b = build(hdr, strlen(hdr), data, dlen, &len);
	memset(e, 0, sizeof *e);
	int rc = lokr_st_open_memory(b, len, "mem.safetensors", out, e);
	if (rc == 0) {
		/* the caller wants to look at it: keep the buffer alive by leaking
		 * into a static slot freed at the next call */
		static uint8_t *keep;
		free(keep);
		keep = b;
	} else {
		free(b);
	}
	return rc;
}

static void expect_reject(const char *hdr, size_t dlen, ...)
{
	lokr_st_file *f = (lokr_st_file *)0x1;
	lokr_error e;
	int rc = try_open(hdr, dlen, &f, &e);
	if (rc != LOKR_EFORMAT) {
		print_error("header %s: rc %d (%s), want EFORMAT\n", hdr, rc, e.msg);
		lokr_st_close(rc == 0 ? f : NULL);
		fail();
	}
	assert_null(f);
	assert_int_equal(e.code, LOKR_EFORMAT);
	assert_non_null(strstr(e.msg, "mem.safetensors"));
	va_list ap;
	va_start(ap, dlen);
	for (const char *want; (want = va_arg(ap, const char *));)
		if (!strstr(e.msg, want)) {
			print_error("header %s: message \"%s\" lacks \"%s\"\n", hdr, e.msg, want);
			va_end(ap);
			fail();
		}
	va_end(ap);
}

static lokr_st_file *expect_accept(const char *hdr, size_t dlen)
{
	lokr_st_file *f = NULL;
	lokr_error e;
	int rc = try_open(hdr, dlen, &f, &e);
	if (rc != 0) {
		print_error("header %s: rc %d: %s\n", hdr, rc, e.msg);
		fail();
	}
	return f;
}

static void test_too_small(void **state)
{
	(void)state;
	uint8_t b[8] = {2, 0, 0, 0, 0, 0, 0, 0};
	for (size_t n = 0; n < 8; n++) {
		lokr_st_file *f;
		lokr_error e = {0};
		assert_int_equal(lokr_st_open_memory(n ? b : NULL, n, "tiny", &f, &e),
		                 LOKR_EFORMAT);
		assert_non_null(strstr(e.msg, "tiny"));
		assert_null(f);
	}
}

static void test_header_length(void **state)
{
	(void)state;
	uint8_t b[64] = {0};
	lokr_st_file *f;
	lokr_error e;
	/* N > 1e8 */
	uint64_t n = 100000001;
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(n >> (8 * i));
	assert_int_equal(lokr_st_open_memory(b, sizeof b, "big", &f, &e), LOKR_EFORMAT);
	assert_non_null(strstr(e.msg, "100000001"));
	/* N = 2^64 - 1 (would overflow 8 + N) */
	memset(b, 0xff, 8);
	assert_int_equal(lokr_st_open_memory(b, sizeof b, "huge", &f, &e), LOKR_EFORMAT);
	/* N past EOF: 57 > 64 - 8 */
	memset(b, 0, 8);
	b[0] = 57;
	assert_int_equal(lokr_st_open_memory(b, sizeof b, "short", &f, &e), LOKR_EFORMAT);
	assert_non_null(strstr(e.msg, "57"));
	/* N = 0: empty header is not JSON */
	b[0] = 0;
	assert_int_equal(lokr_st_open_memory(b, 8, "zero", &f, &e), LOKR_EFORMAT);
	/* N exactly the file: "{}" with no data is a valid empty file */
	memcpy(b + 8, "{}", 2);
	b[0] = 2;
	assert_int_equal(lokr_st_open_memory(b, 10, "empty", &f, &e), 0);
	assert_int_equal(lokr_st_count(f), 0);
	assert_int_equal(lokr_st_metadata_count(f), 0);
	lokr_st_close(f);
}

static void test_json_rejections(void **state)
{
	(void)state;
	expect_reject("{\"a\":", 0, "JSON", NULL);
	expect_reject("[1]", 0, "object", NULL);
	expect_reject("  []", 0, "object", NULL);
	expect_reject("\"x\"", 0, "object", NULL);
	expect_reject("{} x", 0, "JSON", NULL);
	/* non-UTF-8: in a key, in a value, overlong, surrogate, in padding */
	expect_reject("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
	              "UTF-8", NULL);
	expect_reject("{\"__metadata__\":{\"k\":\"\xc0\xaf\"}}", 0, "UTF-8", NULL);
	expect_reject("{\"__metadata__\":{\"k\":\"\xed\xa0\x80\"}}", 0, "UTF-8", NULL);
	expect_reject("{}  \xe2\x82", 0, "UTF-8", NULL);
	/* NUL inside a string */
	expect_reject("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
	              NULL);
	/* duplicate keys: tensors and metadata */
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
	              "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]}}",
	              8, "duplicate", NULL);
	expect_reject("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate", NULL);
	expect_reject("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate", NULL);
}

static void test_header_nul_bytes(void **state)
{
	(void)state;
	/* a header padded with NUL bytes instead of spaces */
	size_t len;
	uint8_t *b = build("{}\0\0\0\0\0\0", 8, NULL, 0, &len);
	lokr_st_file *f;
	lokr_error e;
	assert_int_equal(lokr_st_open_memory(b, len, "nul", &f, &e), LOKR_EFORMAT);
	free(b);
}

static void test_entry_rejections(void **state)
{
	(void)state;
	expect_reject("{\"w\":{\"dtype\":\"F31\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w'",
	              "F31", NULL);
	expect_reject("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "f32",
	              NULL);
	expect_reject("{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype",
	              NULL);
	expect_reject("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype", NULL);
	expect_reject("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "shape", NULL);
	expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets", NULL);
	expect_reject("{\"w\":[1,2]}", 0, "'w'", NULL);
	expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
	              "shape", NULL);
	expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4,
	              "shape", NULL);
	expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4,
	              "shape", NULL);
	expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[281474976710657],"
	              "\"data_offsets\":[0,0]}}",
	              0, "shape", NULL);
	expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
	              "data_offsets", NULL);
	expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4,
	              "data_offsets", NULL);
	expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4e0]}}", 4,
	              "data_offsets", NULL);
	expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
	              "data_offsets", NULL);
	/* 9 dimensions */
	expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
	              "\"data_offsets\":[0,4]}}",
	              4, "9 dimensions", NULL);
	/* metadata */
	expect_reject("{\"__metadata__\":{\"k\":1}}", 0, "\"k\"", "not a string", NULL);
	expect_reject("{\"__metadata__\":{\"k\":null}}", 0, "not a string", NULL);
	expect_reject("{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, "not a string", NULL);
	expect_reject("{\"__metadata__\":[\"k\"]}", 0, "__metadata__", NULL);
	expect_reject("{\"__metadata__\":\"k\"}", 0, "__metadata__", NULL);
}

static void test_size_rejections(void **state)
{
	(void)state;
	/* size != shape x dtype, with the values in the message */
	expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "'w'",
	              "[0, 4]", "(2)", "8", NULL);
	expect_reject("{\"w\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24,
	              "(2, 3)", "12", NULL);
	/* END < BEGIN */
	expect_reject("{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
	              "[8, 4]", NULL);
	/* gap */
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	              "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
	              12, "'b'", "gap", "[8, 12]", NULL);
	/* first tensor not at 0 */
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap",
	              NULL);
	/* overlap */
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
	              12, "overlap", NULL);
	/* two tensors over the same bytes (the polyglot / amplification case) */
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
	              8, "overlap", NULL);
	/* trailing bytes */
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 5,
	              "trailing", NULL);
	expect_reject("{}", 1, "trailing", NULL);
	/* offsets past the data */
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 3, "'a'",
	              "past", NULL);
	expect_reject("{\"a\":{\"dtype\":\"U8\",\"shape\":[281474976710656],"
	              "\"data_offsets\":[0,281474976710656]}}",
	              3, "past", NULL);
	/* shape overflow: 2^40 * 2^40 elements */
	expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],"
	              "\"data_offsets\":[0,4]}}",
	              4, "overflow", NULL);
	/* nbits overflow: 2^62 elements (2^48 * 2^14) of 64 bits */
	expect_reject("{\"w\":{\"dtype\":\"F64\",\"shape\":[281474976710656,16384],"
	              "\"data_offsets\":[0,4]}}",
	              4, "overflow", NULL);
	/* sub-byte dtypes must end on a byte: 3 x F4 = 12 bits, 5 x F6 = 30 bits */
	expect_reject("{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, "bits",
	              NULL);
	expect_reject("{\"w\":{\"dtype\":\"F6_E2M3\",\"shape\":[5],\"data_offsets\":[0,4]}}", 4,
	              "30 bits", NULL);
}

static void test_acceptances(void **state)
{
	(void)state;
	lokr_st_file *f;
	/* leading and trailing whitespace around the JSON */
	f = expect_accept(" \t\r\n{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"
	                  " \n\t\r ",
	                  4);
	assert_int_equal(lokr_st_count(f), 1);
	lokr_st_close(f);
	/* sub-byte dtypes that end on a byte; every other dtype */
	f = expect_accept("{\"a\":{\"dtype\":\"F4\",\"shape\":[2,3],\"data_offsets\":[0,3]},"
	                  "\"b\":{\"dtype\":\"F6_E3M2\",\"shape\":[4],\"data_offsets\":[3,6]},"
	                  "\"c\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[6,14]},"
	                  "\"d\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[14,16]},"
	                  "\"e\":{\"dtype\":\"F8_E8M0\",\"shape\":[1],\"data_offsets\":[16,17]}}",
	                  17);
	assert_int_equal(lokr_st_count(f), 5);
	assert_int_equal(lokr_st_find(f, "a")->dtype, LOKR_DTYPE_OTHER);
	assert_string_equal(lokr_st_find(f, "b")->dtype_name, "F6_E3M2");
	assert_int_equal(lokr_st_find(f, "c")->nbytes, 8);
	float tmp[8];
	lokr_error e = {0};
	assert_int_equal(lokr_st_tensor_f32(lokr_st_find(f, "c"), tmp, &e), LOKR_EUNSUPPORTED);
	assert_non_null(strstr(e.msg, "C64"));
	assert_non_null(strstr(e.msg, "'c'"));
	lokr_st_close(f);
	/* scalar, zero-element tensors (several at one offset), extra fields */
	f = expect_accept("{\"z2\":{\"dtype\":\"F32\",\"shape\":[4,0],\"data_offsets\":[2,2]},"
	                  "\"alpha\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,2],"
	                  "\"extra\":{\"nested\":[1,2]},\"note\":\"x\"},"
	                  "\"z1\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[2,2]},"
	                  "\"z0\":{\"dtype\":\"I64\",\"shape\":[0,3],\"data_offsets\":[0,0]}}",
	                  2);
	assert_int_equal(lokr_st_count(f), 4);
	const lokr_st_tensor *t = lokr_st_at(f, 0);
	assert_string_equal(t->name, "alpha");
	assert_int_equal(t->ndim, 0);
	assert_int_equal(t->nelem, 1);
	assert_int_equal(t->nbytes, 2);
	assert_int_equal(t->offset, lokr_st_size(f) - 2);
	assert_string_equal(lokr_st_at(f, 1)->name, "z0");
	assert_string_equal(lokr_st_at(f, 3)->name, "z2");
	assert_int_equal(lokr_st_at(f, 3)->nelem, 0);
	assert_int_equal(lokr_st_at(f, 3)->ndim, 2);
	assert_int_equal(lokr_st_tensor_f32(lokr_st_at(f, 3), tmp, NULL), 0);
	assert_null(lokr_st_at(f, 4));
	lokr_st_close(f);
}

static void test_unpadded_misaligned(void **state)
{
	(void)state;
	/* header of odd length: F32/F64 data start at odd file offsets */
	const char *hdr = "{\"b\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[4,20]},"
	                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} ";
	if (strlen(hdr) % 2 == 0)
		hdr = "{\"b\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[4,20]},"
		      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
	assert_int_equal(strlen(hdr) % 2, 1);
	float a = -2.5f;
	double b[2] = {1.25, -1e-3};
	uint8_t data[20];
	memcpy(data, &a, 4);
	memcpy(data + 4, b, 16);
	size_t len;
	uint8_t *buf = build(hdr, strlen(hdr), data, sizeof data, &len);
	lokr_st_file *f;
	lokr_error e;
	assert_int_equal(lokr_st_open_memory(buf, len, "odd", &f, &e), 0);
	const lokr_st_tensor *ta = lokr_st_find(f, "a"), *tb = lokr_st_find(f, "b");
	assert_non_null(ta);
	assert_non_null(tb);
	assert_int_equal((uintptr_t)ta->data % 2, 1);
	float out[2];
	assert_int_equal(lokr_st_tensor_f32(ta, out, &e), 0);
	assert_true(out[0] == -2.5f);
	assert_int_equal(lokr_st_tensor_f32(tb, out, &e), 0);
	assert_true(out[0] == 1.25f && out[1] == (float)-1e-3);
	assert_ptr_equal(lokr_st_bytes(f), buf);
	assert_int_equal(lokr_st_size(f), len);
	lokr_st_close(f);
	free(buf);
}

static void test_metadata_order_and_sorting(void **state)
{
	(void)state;
	lokr_st_file *f = expect_accept(
	    "{\"zeta\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
	    "\"__metadata__\":{\"z\":\"last letter\",\"a\":\"\\u00e9\\n\",\"m\":\"\"},"
	    "\"Alpha\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]},"
	    "\"alpha\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}",
	    3);
	assert_int_equal(lokr_st_count(f), 3);
	assert_string_equal(lokr_st_at(f, 0)->name, "Alpha");
	assert_string_equal(lokr_st_at(f, 1)->name, "alpha");
	assert_string_equal(lokr_st_at(f, 2)->name, "zeta");
	assert_int_equal(lokr_st_find(f, "alpha")->data[0], 2);
	assert_int_equal(lokr_st_find(f, "zeta")->data[0], 0);
	assert_null(lokr_st_find(f, "beta"));
	assert_null(lokr_st_find(f, "__metadata__"));
	assert_int_equal(lokr_st_metadata_count(f), 3);
	const char *k, *v;
	assert_int_equal(lokr_st_metadata_at(f, 0, &k, &v), 0);
	assert_string_equal(k, "z");
	assert_string_equal(v, "last letter");
	assert_int_equal(lokr_st_metadata_at(f, 1, &k, &v), 0);
	assert_string_equal(k, "a");
	assert_string_equal(v, "\xc3\xa9\n");
	assert_int_equal(lokr_st_metadata_at(f, 3, &k, &v), LOKR_ENOTFOUND);
	assert_string_equal(lokr_st_metadata_get(f, "m"), "");
	assert_null(lokr_st_metadata_get(f, "q"));
	lokr_st_close(f);
}

static char *write_temp(const void *b, size_t len)
{
	char *path = strdup("/tmp/lokr-st-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, b, len), (ssize_t)len);
	close(fd);
	return path;
}

static void test_open_file(void **state)
{
	(void)state;
	const char *hdr = "{\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
	uint8_t data[4] = {0x80, 0x3f, 0x00, 0xc0};
	size_t len;
	uint8_t *b = build(hdr, strlen(hdr), data, 4, &len);
	char *path = write_temp(b, len);
	lokr_st_file *f;
	lokr_error e;
	assert_int_equal(lokr_st_open(path, &f, &e), 0);
	float out[2];
	assert_int_equal(lokr_st_tensor_f32(lokr_st_find(f, "w"), out, &e), 0);
	assert_true(out[0] == 1.0f && out[1] == -2.0f);
	lokr_st_close(f);
	/* trailing byte in a file: rejected, message names the path */
	b[len] = 0;
	char *path2 = write_temp(b, len + 1);
	assert_int_equal(lokr_st_open(path2, &f, &e), LOKR_EFORMAT);
	assert_non_null(strstr(e.msg, path2));
	unlink(path2);
	/* empty file */
	char *path3 = write_temp(b, 0);
	assert_int_equal(lokr_st_open(path3, &f, &e), LOKR_EFORMAT);
	assert_non_null(strstr(e.msg, path3));
	unlink(path3);
	/* missing file, directory */
	unlink(path);
	assert_int_equal(lokr_st_open(path, &f, &e), LOKR_EIO);
	assert_non_null(strstr(e.msg, path));
	assert_null(f);
	assert_int_equal(lokr_st_open("/tmp", &f, &e), LOKR_EIO);
	free(path);
	free(path2);
	free(path3);
	free(b);
}

static void test_fixture_base(void **state)
{
	(void)state;
	lokr_st_file *f;
	lokr_error e;
	assert_int_equal(lokr_st_open(SRCDIR "/tests/data/fixtures/base.safetensors", &f, &e), 0);
	assert_int_equal(lokr_st_count(f), 14);
	const lokr_st_tensor *t = lokr_st_find(f, "down.resnet.conv1.weight");
	assert_non_null(t);
	assert_int_equal(t->ndim, 4);
	assert_int_equal(t->shape[0], 48);
	assert_int_equal(t->shape[3], 3);
	assert_int_equal(t->dtype, LOKR_DTYPE_F32);
	assert_string_equal(lokr_st_metadata_get(f, "seed"), "20251204");
	for (size_t i = 1; i < lokr_st_count(f); i++)
		assert_true(strcmp(lokr_st_at(f, i - 1)->name, lokr_st_at(f, i)->name) < 0);
	lokr_st_close(f);
}

/* Every allocation of the reader may fail: the result is a clean
 * LOKR_ENOMEM (ASan/LSan check for leaks), until enough succeed. */
static void test_alloc_failures(void **state)
{
	(void)state;
	const char *hdr = "{\"__metadata__\":{\"k\":\"v\"},"
	                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	                  "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]}}";
	uint8_t data[8] = {0};
	size_t len;
	uint8_t *b = build(hdr, strlen(hdr), data, 8, &len);
	int ok = 0;
	long n;
	for (n = 0; n < 100 && !ok; n++) {
		lokr_st_file *f = NULL;
		lokr_error e = {0};
		lokr__alloc_fail_after(n);
		int rc = lokr_st_open_memory(b, len, "mem", &f, &e);
		lokr__alloc_fail_after(-1);
		if (rc == 0) {
			assert_int_equal(lokr_st_count(f), 2);
			lokr_st_close(f);
			ok = 1;
		} else {
			assert_int_equal(rc, LOKR_ENOMEM);
			assert_null(f);
			assert_true(e.msg[0] != '\0');
		}
	}
	assert_true(ok);
	assert_true(n > 1); /* at least one failure point was exercised */
	free(b);
}

static int read_whole(const char *path, uint8_t **out, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return -1;
	fseek(fp, 0, SEEK_END);
	long n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	*out = malloc((size_t)n + 1);
	*len = fread(*out, 1, (size_t)n, fp);
	fclose(fp);
	return 0;
}

/* Run every file of a corpus directory; returns how many there were. */
static int run_corpus(const char *dir, int want_ok)
{
	DIR *d = opendir(dir);
	if (!d) {
		print_error("cannot open %s\n", dir);
		fail();
	}
	int count = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strstr(de->d_name, ".safetensors"))
			continue;
		char path[1024];
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		lokr_st_file *f = NULL;
		lokr_error e = {0};
		int rc = lokr_st_open(path, &f, &e);
		if (want_ok) {
			if (rc != 0) {
				print_error("%s: %s\n", path, e.msg);
				fail();
			}
			/* every decodable tensor decodes */
			for (size_t i = 0; i < lokr_st_count(f); i++) {
				const lokr_st_tensor *t = lokr_st_at(f, i);
				if (t->dtype == LOKR_DTYPE_OTHER)
					continue;
				float *buf = malloc((size_t)t->nelem * sizeof *buf + 1);
				assert_int_equal(lokr_st_tensor_f32(t, buf, NULL), 0);
				free(buf);
			}
			lokr_st_close(f);
		} else {
			if (rc != LOKR_EFORMAT || e.msg[0] == '\0') {
				print_error("%s: rc %d, message \"%s\"\n", path, rc, e.msg);
				lokr_st_close(f);
				fail();
			}
			assert_non_null(strstr(e.msg, de->d_name));
			/* the same bytes through the memory reader agree */
			uint8_t *b = NULL;
			size_t len = 0;
			assert_int_equal(read_whole(path, &b, &len), 0);
			assert_int_equal(lokr_st_open_memory(b, len, de->d_name, &f, &e),
			                 LOKR_EFORMAT);
			free(b);
		}
		count++;
	}
	closedir(d);
	return count;
}

static void test_bad_corpus(void **state)
{
	(void)state;
	int n = run_corpus(SRCDIR "/tests/data/bad-containers", 0);
	assert_true(n >= 25);
}

static void test_odd_corpus(void **state)
{
	(void)state;
	int n = run_corpus(SRCDIR "/tests/data/odd-containers", 1);
	assert_true(n >= 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_too_small),
	    cmocka_unit_test(test_header_length),
	    cmocka_unit_test(test_json_rejections),
	    cmocka_unit_test(test_header_nul_bytes),
	    cmocka_unit_test(test_entry_rejections),
	    cmocka_unit_test(test_size_rejections),
	    cmocka_unit_test(test_acceptances),
	    cmocka_unit_test(test_unpadded_misaligned),
	    cmocka_unit_test(test_metadata_order_and_sorting),
	    cmocka_unit_test(test_open_file),
	    cmocka_unit_test(test_fixture_base),
	    cmocka_unit_test(test_alloc_failures),
	    cmocka_unit_test(test_bad_corpus),
	    cmocka_unit_test(test_odd_corpus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * tensor_json.c - the tensor codec of tensor_json.h.
 *
 * The data form is read through jansson's DOM (the request is already
 * parsed) and written by hand with "%.9g", which round-trips every float32
 * and is about twice as fast as building a jansson array (perf-limits.md
 * §7).  base64 is our own table codec: 3.3 ns per float, 80x cheaper than
 * the number text, which is why clients with large inputs should use it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_json.h"

const char *lokrd_dtype_name(lokr_dtype dt)
{
	switch (dt) {
	case LOKR_DTYPE_F32:
		return "f32";
	case LOKR_DTYPE_F16:
		return "f16";
	case LOKR_DTYPE_BF16:
		return "bf16";
	default:
		return "?";
	}
}

int lokrd_dtype_parse(const char *s)
{
	/* The names of DESIGN.md, safetensors' and torch's spellings. */
	static const struct {
		const char *name;
		lokr_dtype dt;
	} names[] = {
	    {"f32", LOKR_DTYPE_F32},   {"F32", LOKR_DTYPE_F32},   {"float32", LOKR_DTYPE_F32},
	    {"f16", LOKR_DTYPE_F16},   {"F16", LOKR_DTYPE_F16},   {"float16", LOKR_DTYPE_F16},
	    {"bf16", LOKR_DTYPE_BF16}, {"BF16", LOKR_DTYPE_BF16}, {"bfloat16", LOKR_DTYPE_BF16},
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (!strcmp(s, names[i].name))
			return (int)names[i].dt;
	return -1;
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t lokrd_b64_encoded_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

void lokrd_b64_encode(const uint8_t *s, size_t n, char *d)
{
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		*d++ = b64_alphabet[v >> 18];
		*d++ = b64_alphabet[(v >> 12) & 63];
		*d++ = b64_alphabet[(v >> 6) & 63];
		*d++ = b64_alphabet[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
		*d++ = b64_alphabet[v >> 18];
		*d++ = b64_alphabet[(v >> 12) & 63];
		*d++ = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
		*d++ = '=';
	}
}

/* Value of a base64 character, or -1. */
static inline int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long long lokrd_b64_decode(const char *src, size_t len, uint8_t *dst, size_t cap)
{
	while (len > 0 && src[len - 1] == '=')
		len--;
	if (len % 4 == 1)
		return -1;
	size_t out = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
	if (out > cap)
		return -1;
	size_t o = 0, i = 0;
	for (; i + 4 <= len; i += 4) {
		int a = b64_val((unsigned char)src[i]), b = b64_val((unsigned char)src[i + 1]),
		    c = b64_val((unsigned char)src[i + 2]), d = b64_val((unsigned char)src[i + 3]);
		if ((a | b | c | d) < 0)
			return -1;
		uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
		dst[o++] = (uint8_t)(v >> 16);
		dst[o++] = (uint8_t)(v >> 8);
		dst[o++] = (uint8_t)v;
	}
	size_t rest = len - i;
	if (rest) {
		int a = b64_val((unsigned char)src[i]), b = b64_val((unsigned char)src[i + 1]);
		int c = rest == 3 ? b64_val((unsigned char)src[i + 2]) : 0;
		if ((a | b | c) < 0)
			return -1;
		uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
		dst[o++] = (uint8_t)(v >> 16);
		if (rest == 3)
			dst[o++] = (uint8_t)(v >> 8);
	}
	return (long long)o;
}

void lokrd_tensor_free(lokrd_tensor *t)
{
	free(t->data);
	t->data = NULL;
}

static int fail(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return -1;
}

int lokrd_tensor_decode(const json_t *obj, uint64_t max_elems, lokrd_tensor *t, char *err,
                        size_t errlen)
{
	memset(t, 0, sizeof *t);
	if (!json_is_object(obj))
		return fail(err, errlen,
		            "a tensor must be an object with dtype, shape and data or b64");
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)obj, key, v)
	{
		if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data") &&
		    strcmp(key, "b64")) {
			snprintf(err, errlen, "unknown tensor field \"%s\"", key);
			return -1;
		}
	}
	const json_t *jdt = json_object_get(obj, "dtype");
	const json_t *jshape = json_object_get(obj, "shape");
	const json_t *jdata = json_object_get(obj, "data");
	const json_t *jb64 = json_object_get(obj, "b64");
	if (!!jdata == !!jb64)
		return fail(err, errlen, "a tensor needs exactly one of \"data\" and \"b64\"");
	t->form = jdata ? LOKRD_TFORM_DATA : LOKRD_TFORM_B64;
	t->dtype = LOKR_DTYPE_F32;
	if (jdt) {
		const char *s = json_string_value(jdt);
		if (!s)
			return fail(err, errlen, "\"dtype\" must be \"f32\", \"f16\" or \"bf16\"");
		int dt = lokrd_dtype_parse(s);
		if (dt >= 0)
			t->dtype = (lokr_dtype)dt;
		else {
			snprintf(err, errlen, "unsupported dtype \"%.32s\" (f32, f16 or bf16)", s);
			return -1;
		}
	} else if (jb64) {
		return fail(err, errlen, "a b64 tensor needs \"dtype\"");
	}
	if (!json_is_array(jshape) || json_array_size(jshape) < 1 ||
	    json_array_size(jshape) > LOKR_MAX_DIMS)
		return fail(err, errlen, "\"shape\" must be an array of 1 to 8 sizes");
	uint64_t n = 1;
	t->ndim = (int)json_array_size(jshape);
	for (int i = 0; i < t->ndim; i++) {
		const json_t *d = json_array_get(jshape, (size_t)i);
		if (!json_is_integer(d) || json_integer_value(d) < 0) {
			return fail(err, errlen, "\"shape\" entries must be non-negative integers");
		}
		t->shape[i] = (int64_t)json_integer_value(d);
		if (__builtin_mul_overflow(n, (uint64_t)t->shape[i], &n) || n > max_elems) {
			snprintf(err, errlen, "tensor too large (limit %llu elements)",
			         (unsigned long long)max_elems);
			return -1;
		}
	}
	t->n = n;
	if (posix_memalign((void **)&t->data, 64, (n ? n : 1) * sizeof(float)))
		return fail(err, errlen, "out of memory for the tensor");
	if (jdata) {
		if (!json_is_array(jdata) || json_array_size(jdata) != n) {
			snprintf(err, errlen,
			         "\"data\" must be a flat array of %llu numbers (shape)",
			         (unsigned long long)n);
			goto bad;
		}
		for (uint64_t i = 0; i < n; i++) {
			const json_t *e = json_array_get(jdata, i);
			if (!json_is_number(e)) {
				snprintf(err, errlen, "\"data\"[%llu] is not a number",
				         (unsigned long long)i);
				goto bad;
			}
			float f = (float)json_number_value(e);
			if (!isfinite(f)) {
				snprintf(err, errlen, "\"data\"[%llu] is not finite in float32",
				         (unsigned long long)i);
				goto bad;
			}
			t->data[i] = f;
		}
		if (t->dtype != LOKR_DTYPE_F32 && n) {
			/* The values are nominally of that dtype: round them to it. */
			uint16_t *tmp = malloc(n * 2);
			if (!tmp) {
				snprintf(err, errlen, "out of memory for the tensor");
				goto bad;
			}
			lokr_encode_f32(t->dtype, t->data, n, tmp);
			lokr_decode_f32(t->dtype, tmp, n, t->data);
			free(tmp);
			/* A value finite in f32 may overflow f16 (found by
			 * tests/fuzz/fuzz_request). */
			for (uint64_t i = 0; i < n; i++) {
				if (!isfinite(t->data[i])) {
					snprintf(err, errlen, "\"data\"[%llu] is not finite in %s",
					         (unsigned long long)i, lokrd_dtype_name(t->dtype));
					goto bad;
				}
			}
		}
	} else {
		const char *s = json_string_value(jb64);
		if (!s) {
			snprintf(err, errlen, "\"b64\" must be a string");
			goto bad;
		}
		size_t esz = lokr_dtype_size(t->dtype);
		size_t want = n * esz;
		uint8_t *raw = malloc(want ? want : 1);
		if (!raw) {
			snprintf(err, errlen, "out of memory for the tensor");
			goto bad;
		}
		long long got = lokrd_b64_decode(s, json_string_length(jb64), raw, want);
		if (got != (long long)want) {
			free(raw);
			snprintf(err, errlen,
			         "\"b64\" must be base64 of %llu bytes (%llu %s elements, "
			         "little-endian)",
			         (unsigned long long)want, (unsigned long long)n,
			         lokrd_dtype_name(t->dtype));
			goto bad;
		}
		lokr_decode_f32(t->dtype, raw, n, t->data);
		free(raw);
		for (uint64_t i = 0; i < n; i++) {
			if (!isfinite(t->data[i])) {
				snprintf(err, errlen, "element %llu of \"b64\" is not finite",
				         (unsigned long long)i);
				goto bad;
			}
		}
	}
	return 0;
bad:
	lokrd_tensor_free(t);
	return -1;
}

int lokrd_tensor_encode(lokrd_buf *b, lokrd_tform form, lokr_dtype dtype, const int64_t *shape,
                        int ndim, const float *data)
{
	uint64_t n = 1;
	for (int i = 0; i < ndim; i++)
		n *= (uint64_t)shape[i];
	lokrd_buf_printf(b, "{\"dtype\":\"%s\",\"shape\":[", lokrd_dtype_name(dtype));
	for (int i = 0; i < ndim; i++)
		lokrd_buf_printf(b, "%s%lld", i ? "," : "", (long long)shape[i]);
	if (form == LOKRD_TFORM_B64) {
		size_t esz = lokr_dtype_size(dtype);
		uint8_t *raw = malloc(n * esz + 1);
		if (!raw)
			return -1;
		lokr_encode_f32(dtype, data, n, raw);
		size_t elen = lokrd_b64_encoded_len(n * esz);
		lokrd_buf_puts(b, "],\"b64\":\"");
		char *at = lokrd_buf_reserve(b, elen);
		if (at) {
			lokrd_b64_encode(raw, n * esz, at);
			lokrd_buf_commit(b, elen);
		}
		free(raw);
		lokrd_buf_puts(b, "\"}");
		return b->failed ? -1 : 0;
	}
	lokrd_buf_puts(b, "],\"data\":[");
	float *rounded = NULL;
	if (dtype != LOKR_DTYPE_F32 && n) {
		uint16_t *tmp = malloc(n * 2);
		rounded = malloc(n * sizeof *rounded);
		if (!tmp || !rounded) {
			free(tmp);
			free(rounded);
			return -1;
		}
		lokr_encode_f32(dtype, data, n, tmp);
		lokr_decode_f32(dtype, tmp, n, rounded);
		free(tmp);
		data = rounded;
	}
	int rc = 0;
	for (uint64_t i = 0; i < n; i++) {
		if (!isfinite(data[i])) {
			rc = -2;
			break;
		}
		char *at = lokrd_buf_reserve(b, 24);
		if (!at)
			break;
		int k = snprintf(at, 24, i ? ",%.9g" : "%.9g", (double)data[i]);
		lokrd_buf_commit(b, (size_t)k);
	}
	free(rounded);
	if (rc)
		return rc;
	lokrd_buf_puts(b, "]}");
	return b->failed ? -1 : 0;
}

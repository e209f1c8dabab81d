/* Unit tests for lib/dtype.c: names, sizes, the safetensors dtype table and
 * exact F16/BF16/F64 conversion (subnormals, inf, NaN, ties to even),
 * checked against a reference built from double arithmetic and rint(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"

static float bits_f(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}
static uint32_t f_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}
static float dec16(lokr_dtype dt, uint16_t h)
{
	uint8_t b[2] = {(uint8_t)h, (uint8_t)(h >> 8)};
	float f;
	assert_int_equal(lokr_decode_f32(dt, b, 1, &f), 0);
	return f;
}
static uint16_t enc16(lokr_dtype dt, float f)
{
	uint8_t b[2];
	assert_int_equal(lokr_encode_f32(dt, &f, 1, b), 0);
	return (uint16_t)(b[0] | b[1] << 8);
}

static void test_names_sizes_parse(void **state)
{
	(void)state;
	assert_int_equal(lokr_dtype_size(LOKR_DTYPE_F32), 4);
	assert_int_equal(lokr_dtype_size(LOKR_DTYPE_F16), 2);
	assert_int_equal(lokr_dtype_size(LOKR_DTYPE_BF16), 2);
	assert_int_equal(lokr_dtype_size(LOKR_DTYPE_F64), 8);
	assert_int_equal(lokr_dtype_size(LOKR_DTYPE_OTHER), 0);
	assert_string_equal(lokr_dtype_name(LOKR_DTYPE_BF16), "BF16");
	assert_string_equal(lokr_dtype_name(LOKR_DTYPE_OTHER), "OTHER");
	assert_int_equal(lokr_dtype_parse("f16"), LOKR_DTYPE_F16);
	assert_int_equal(lokr_dtype_parse("BF16"), LOKR_DTYPE_BF16);
	assert_int_equal(lokr_dtype_parse("F64"), LOKR_DTYPE_F64);
	assert_int_equal(lokr_dtype_parse("f32"), LOKR_DTYPE_F32);
	assert_int_equal(lokr_dtype_parse("I64"), -1);
	assert_int_equal(lokr_dtype_parse(""), -1);
	assert_int_equal(lokr_dtype_parse(NULL), -1);
}

static void test_st_dtype_table(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		unsigned bits;
	} all[] = {{"BOOL", 8},    {"F4", 4},          {"F6_E2M3", 6},     {"F6_E3M2", 6},
	           {"U8", 8},      {"I8", 8},          {"F8_E5M2", 8},     {"F8_E4M3", 8},
	           {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8}, {"I16", 16},
	           {"U16", 16},    {"F16", 16},        {"BF16", 16},       {"I32", 32},
	           {"U32", 32},    {"F32", 32},        {"C64", 64},        {"F64", 64},
	           {"I64", 64},    {"U64", 64}};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
		const char *canon;
		unsigned bits;
		lokr_dtype dt;
		assert_int_equal(
		    lokr__st_dtype_lookup(all[i].s, strlen(all[i].s), &canon, &bits, &dt), 0);
		assert_string_equal(canon, all[i].s);
		assert_int_equal(bits, all[i].bits);
	}
	lokr_dtype dt;
	assert_int_equal(lokr__st_dtype_lookup("BF16", 4, NULL, NULL, &dt), 0);
	assert_int_equal(dt, LOKR_DTYPE_BF16);
	assert_int_equal(lokr__st_dtype_lookup("I64", 3, NULL, NULL, &dt), 0);
	assert_int_equal(dt, LOKR_DTYPE_OTHER);
	assert_int_equal(lokr__st_dtype_lookup("f32", 3, NULL, NULL, NULL), -1); /* case matters */
	assert_int_equal(lokr__st_dtype_lookup("F32x", 4, NULL, NULL, NULL), -1);
	assert_int_equal(lokr__st_dtype_lookup("F3", 2, NULL, NULL, NULL), -1);
	assert_int_equal(lokr__st_dtype_lookup("F16", 2, NULL, NULL, NULL), -1); /* "F1" */
}

static void test_f16_decode_known(void **state)
{
	(void)state;
	assert_true(dec16(LOKR_DTYPE_F16, 0x3c00) == 1.0f);
	assert_true(dec16(LOKR_DTYPE_F16, 0xc000) == -2.0f);
	assert_true(dec16(LOKR_DTYPE_F16, 0x7bff) == 65504.0f);
	assert_true(dec16(LOKR_DTYPE_F16, 0x0400) == 0x1p-14f);        /* min normal */
	assert_true(dec16(LOKR_DTYPE_F16, 0x0001) == 0x1p-24f);        /* min subnormal */
	assert_true(dec16(LOKR_DTYPE_F16, 0x03ff) == 1023 * 0x1p-24f); /* max subnormal */
	assert_true(dec16(LOKR_DTYPE_F16, 0x8001) == -0x1p-24f);
	assert_int_equal(f_bits(dec16(LOKR_DTYPE_F16, 0x8000)), 0x80000000u); /* -0 */
	assert_true(isinf(dec16(LOKR_DTYPE_F16, 0x7c00)) && dec16(LOKR_DTYPE_F16, 0x7c00) > 0);
	assert_true(isinf(dec16(LOKR_DTYPE_F16, 0xfc00)) && dec16(LOKR_DTYPE_F16, 0xfc00) < 0);
	assert_true(isnan(dec16(LOKR_DTYPE_F16, 0x7e00)));
	assert_true(isnan(dec16(LOKR_DTYPE_F16, 0x7c01))); /* signalling payload stays NaN */
	assert_true(signbit(dec16(LOKR_DTYPE_F16, 0xfe00)));
	assert_true(dec16(LOKR_DTYPE_F16, 0x3555) == 0x1.554p-2f);
}

/* Reference: the value of x rounded to `mant` significant bits (ties to
 * even via rint), with exponent floor `emin` (subnormals) and overflow to inf
 * at 2^(emax+1) or at the rounding threshold. */
static double ref_round(double x, int mant, int emin, double maxfinite)
{
	if (x == 0 || isnan(x) || isinf(x))
		return x;
	int e;
	frexp(fabs(x), &e); /* |x| in [2^(e-1), 2^e) */
	e -= 1;
	if (e < emin)
		e = emin;
	double ulp = ldexp(1.0, e - (mant - 1));
	double r = rint(x / ulp) * ulp;
	if (fabs(r) > maxfinite)
		return x > 0 ? INFINITY : -INFINITY;
	return r;
}

static void check_f16_encode(float x)
{
	uint16_t h = enc16(LOKR_DTYPE_F16, x);
	float back = dec16(LOKR_DTYPE_F16, h);
	if (isnan(x)) {
		assert_true(isnan(back));
		assert_int_equal(!!signbit(back), !!signbit(x));
		return;
	}
	double want = ref_round(x, 11, -14, 65504.0);
	if ((double)back != want || (want == 0 && signbit(back) != signbit(x))) {
		print_error("x=%a bits=%08x: got %04x (%a), want %a\n", (double)x, f_bits(x), h,
		            (double)back, want);
		fail();
	}
#ifdef __FLT16_MANT_DIG__
	_Float16 hw = (_Float16)x;
	uint16_t hb;
	memcpy(&hb, &hw, 2);
	if (!isnan(x))
		assert_int_equal(h, hb);
#endif
}

static void check_bf16_encode(float x)
{
	uint16_t h = enc16(LOKR_DTYPE_BF16, x);
	float back = dec16(LOKR_DTYPE_BF16, h);
	if (isnan(x)) {
		assert_true(isnan(back));
		assert_int_equal(!!signbit(back), !!signbit(x));
		return;
	}
	double want = ref_round(x, 8, -126, 0x1.fep127);
	if ((double)back != want || (want == 0 && signbit(back) != signbit(x))) {
		print_error("x=%a bits=%08x: got %04x (%a), want %a\n", (double)x, f_bits(x), h,
		            (double)back, want);
		fail();
	}
}

static void test_f16_encode_edges(void **state)
{
	(void)state;
	/* ties to even around 1.0: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 */
	assert_int_equal(enc16(LOKR_DTYPE_F16, 1.0f + 0x1p-11f), 0x3c00);
	assert_int_equal(enc16(LOKR_DTYPE_F16, 1.0f + 3 * 0x1p-11f), 0x3c02);
	assert_int_equal(enc16(LOKR_DTYPE_F16, 1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
	assert_int_equal(enc16(LOKR_DTYPE_F16, 65504.0f), 0x7bff);
	assert_int_equal(enc16(LOKR_DTYPE_F16, 65519.99f), 0x7bff);
	assert_int_equal(enc16(LOKR_DTYPE_F16, 65520.0f), 0x7c00); /* tie to even = inf */
	assert_int_equal(enc16(LOKR_DTYPE_F16, 1e10f), 0x7c00);
	assert_int_equal(enc16(LOKR_DTYPE_F16, -1e10f), 0xfc00);
	assert_int_equal(enc16(LOKR_DTYPE_F16, INFINITY), 0x7c00);
	assert_int_equal(enc16(LOKR_DTYPE_F16, -INFINITY), 0xfc00);
	assert_int_equal(enc16(LOKR_DTYPE_F16, -0.0f), 0x8000);
	/* subnormals: 2^-25 ties to 0, just above rounds to the min subnormal */
	assert_int_equal(enc16(LOKR_DTYPE_F16, 0x1p-25f), 0x0000);
	assert_int_equal(enc16(LOKR_DTYPE_F16, 0x1.000002p-25f), 0x0001);
	assert_int_equal(enc16(LOKR_DTYPE_F16, 3 * 0x1p-25f), 0x0002); /* 1.5 units: to 2 */
	assert_int_equal(enc16(LOKR_DTYPE_F16, 5 * 0x1p-25f), 0x0002); /* 2.5 units: to 2 */
	assert_int_equal(enc16(LOKR_DTYPE_F16, 0x1p-24f), 0x0001);
	assert_int_equal(enc16(LOKR_DTYPE_F16, 1023 * 0x1p-24f), 0x03ff);
	assert_int_equal(enc16(LOKR_DTYPE_F16, 1023.5f * 0x1p-24f), 0x0400); /* to min normal */
	assert_int_equal(enc16(LOKR_DTYPE_F16, 0x1p-30f), 0x0000);
	assert_int_equal(enc16(LOKR_DTYPE_F16, -0x1p-30f), 0x8000);
	uint16_t n = enc16(LOKR_DTYPE_F16, NAN);
	assert_int_equal(n & 0x7c00, 0x7c00);
	assert_int_not_equal(n & 0x3ff, 0);
	/* a NaN whose payload lives only in the low bits must not become inf */
	n = enc16(LOKR_DTYPE_F16, bits_f(0x7f800001u));
	assert_int_equal(n & 0x7c00, 0x7c00);
	assert_int_not_equal(n & 0x3ff, 0);
	assert_int_equal(enc16(LOKR_DTYPE_F16, bits_f(0xff800001u)) & 0x8000, 0x8000);
}

static void test_f16_roundtrip_all(void **state)
{
	(void)state;
	/* decode of every half against the definition of binary16 */
	for (uint32_t h = 0; h < 0x10000; h++) {
		int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
		float got = dec16(LOKR_DTYPE_F16, (uint16_t)h);
		if (e == 31) {
			assert_true(m ? isnan(got) : isinf(got));
		} else {
			double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
			assert_true((double)got == (s ? -v : v));
		}
		assert_int_equal(!!signbit(got), s);
	}
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = dec16(LOKR_DTYPE_F16, (uint16_t)h);
		if (isnan(f)) {
			assert_true((h & 0x7c00) == 0x7c00 && (h & 0x3ff));
			continue;
		}
		assert_int_equal(enc16(LOKR_DTYPE_F16, f), h);
	}
}

static void test_encode_sweep(void **state)
{
	(void)state;
	/* ~1M float bit patterns spread over the whole range, plus dense sweeps
	 * around the f16 subnormal/normal/overflow boundaries */
	for (uint64_t u = 0; u < 0x100000000ull; u += 4093) {
		check_f16_encode(bits_f((uint32_t)u));
		check_bf16_encode(bits_f((uint32_t)u));
	}
	for (uint32_t u = 0x33000000u - 4096; u < 0x33000000u + 65536; u++)
		check_f16_encode(bits_f(u));
	for (uint32_t u = 0x38800000u - 65536; u < 0x38800000u + 4096; u++)
		check_f16_encode(bits_f(u));
	for (uint32_t u = 0x477fe000u - 4096; u < 0x47800000u + 4096; u++)
		check_f16_encode(bits_f(u));
	for (uint32_t u = 0x7f7f0000u; u <= 0x7f800000u; u++)
		check_bf16_encode(bits_f(u));
}

static void test_bf16_edges(void **state)
{
	(void)state;
	assert_true(dec16(LOKR_DTYPE_BF16, 0x3f80) == 1.0f);
	assert_true(dec16(LOKR_DTYPE_BF16, 0x0001) == 0x1p-133f); /* subnormal */
	assert_true(isinf(dec16(LOKR_DTYPE_BF16, 0xff80)));
	assert_true(isnan(dec16(LOKR_DTYPE_BF16, 0x7fc0)));
	assert_int_equal(enc16(LOKR_DTYPE_BF16, 1.0f + 0x1p-8f), 0x3f80);     /* tie: even */
	assert_int_equal(enc16(LOKR_DTYPE_BF16, 1.0f + 3 * 0x1p-8f), 0x3f82); /* tie: even */
	assert_int_equal(enc16(LOKR_DTYPE_BF16, 1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
	assert_int_equal(enc16(LOKR_DTYPE_BF16, 1e10f), 0x5015);
	assert_int_equal(enc16(LOKR_DTYPE_BF16, bits_f(0x7f7fffffu)), 0x7f80); /* max -> inf */
	assert_int_equal(enc16(LOKR_DTYPE_BF16, -INFINITY), 0xff80);
	uint16_t n = enc16(LOKR_DTYPE_BF16, bits_f(0x7f800001u));
	assert_true((n & 0x7f80) == 0x7f80 && (n & 0x7f));
}

static void test_f32_f64_unaligned(void **state)
{
	(void)state;
	float src[5] = {1.5f, -0.0f, INFINITY, 0x1p-149f, 3.25e7f}, dst[5];
	uint8_t buf[1 + 5 * 8];
	/* F32 at an odd address */
	assert_int_equal(lokr_encode_f32(LOKR_DTYPE_F32, src, 5, buf + 1), 0);
	assert_int_equal(buf[1], 0x00); /* little-endian: 1.5f = 0x3fc00000 */
	assert_int_equal(buf[4], 0x3f);
	assert_int_equal(lokr_decode_f32(LOKR_DTYPE_F32, buf + 1, 5, dst), 0);
	assert_memory_equal(src, dst, sizeof src);
	/* F64 */
	assert_int_equal(lokr_encode_f32(LOKR_DTYPE_F64, src, 5, buf + 1), 0);
	assert_int_equal(buf[8], 0x3f); /* 1.5 = 0x3ff8000000000000 */
	assert_int_equal(buf[7], 0xf8);
	assert_int_equal(lokr_decode_f32(LOKR_DTYPE_F64, buf + 1, 5, dst), 0);
	assert_memory_equal(src, dst, sizeof src);
	/* F64 values outside float range decode as the float conversion does */
	double big = 1e300;
	assert_int_equal(lokr_decode_f32(LOKR_DTYPE_F64, &big, 1, dst), 0);
	assert_true(isinf(dst[0]));
	/* F16/BF16 unaligned */
	assert_int_equal(lokr_encode_f32(LOKR_DTYPE_F16, src, 2, buf + 1), 0);
	assert_int_equal(buf[1], 0x00);
	assert_int_equal(buf[2], 0x3e); /* 1.5 = 0x3e00 */
	assert_int_equal(lokr_decode_f32(LOKR_DTYPE_BF16, (const uint8_t[]){0xc0, 0x3f}, 1, dst),
	                 0);
	assert_true(dst[0] == 1.5f);
}

static void test_other_unsupported(void **state)
{
	(void)state;
	float f = 0;
	uint8_t b[8] = {0};
	assert_int_equal(lokr_decode_f32(LOKR_DTYPE_OTHER, b, 1, &f), LOKR_EUNSUPPORTED);
	assert_int_equal(lokr_encode_f32(LOKR_DTYPE_OTHER, &f, 1, b), LOKR_EUNSUPPORTED);
	assert_int_equal(lokr_decode_f32(LOKR_DTYPE_F32, NULL, 0, NULL), 0);
	assert_int_equal(lokr_decode_f32(LOKR_DTYPE_F32, NULL, 1, &f), LOKR_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names_sizes_parse), cmocka_unit_test(test_st_dtype_table),
	    cmocka_unit_test(test_f16_decode_known),  cmocka_unit_test(test_f16_encode_edges),
	    cmocka_unit_test(test_f16_roundtrip_all), cmocka_unit_test(test_encode_sweep),
	    cmocka_unit_test(test_bf16_edges),        cmocka_unit_test(test_f32_f64_unaligned),
	    cmocka_unit_test(test_other_unsupported),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

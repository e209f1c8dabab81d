/*
 * dtype.c - element types: the safetensors dtype table (bit sizes of every
 * dtype string the reference knows) and exact conversion between float32 and
 * the decodable types F32, F16, BF16 and F64.
 *
 * All loads and stores are unaligned-safe (memcpy on little-endian hosts,
 * byte assembly elsewhere): mmapped safetensors data is not aligned when the
 * header is not padded, and a typed dereference there is undefined.
 */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* Every Dtype of safetensors/src/tensor.rs with its size in bits
 * (lycoris-format.md 1.2).  The order is the reference enum's. */
static const struct {
	const char *name;
	unsigned bits;
	lokr_dtype dt;
} st_dtypes[] = {
    {"BOOL", 8, LOKR_DTYPE_OTHER},        {"F4", 4, LOKR_DTYPE_OTHER},
    {"F6_E2M3", 6, LOKR_DTYPE_OTHER},     {"F6_E3M2", 6, LOKR_DTYPE_OTHER},
    {"U8", 8, LOKR_DTYPE_OTHER},          {"I8", 8, LOKR_DTYPE_OTHER},
    {"F8_E5M2", 8, LOKR_DTYPE_OTHER},     {"F8_E4M3", 8, LOKR_DTYPE_OTHER},
    {"F8_E8M0", 8, LOKR_DTYPE_OTHER},     {"F8_E4M3FNUZ", 8, LOKR_DTYPE_OTHER},
    {"F8_E5M2FNUZ", 8, LOKR_DTYPE_OTHER}, {"I16", 16, LOKR_DTYPE_OTHER},
    {"U16", 16, LOKR_DTYPE_OTHER},        {"F16", 16, LOKR_DTYPE_F16},
    {"BF16", 16, LOKR_DTYPE_BF16},        {"I32", 32, LOKR_DTYPE_OTHER},
    {"U32", 32, LOKR_DTYPE_OTHER},        {"F32", 32, LOKR_DTYPE_F32},
    {"C64", 64, LOKR_DTYPE_OTHER},        {"F64", 64, LOKR_DTYPE_F64},
    {"I64", 64, LOKR_DTYPE_OTHER},        {"U64", 64, LOKR_DTYPE_OTHER},
};

int lokr__st_dtype_lookup(const char *s, size_t len, const char **canon, unsigned *bits,
                          lokr_dtype *dt)
{
	for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++) {
		if (strlen(st_dtypes[i].name) == len && memcmp(st_dtypes[i].name, s, len) == 0) {
			if (canon)
				*canon = st_dtypes[i].name;
			if (bits)
				*bits = st_dtypes[i].bits;
			if (dt)
				*dt = st_dtypes[i].dt;
			return 0;
		}
	}
	return -1;
}

size_t lokr_dtype_size(lokr_dtype dt)
{
	switch (dt) {
	case LOKR_DTYPE_F32:
		return 4;
	case LOKR_DTYPE_F16:
		return 2;
	case LOKR_DTYPE_BF16:
		return 2;
	case LOKR_DTYPE_F64:
		return 8;
	default:
		return 0;
	}
}

const char *lokr_dtype_name(lokr_dtype dt)
{
	switch (dt) {
	case LOKR_DTYPE_F32:
		return "F32";
	case LOKR_DTYPE_F16:
		return "F16";
	case LOKR_DTYPE_BF16:
		return "BF16";
	case LOKR_DTYPE_F64:
		return "F64";
	default:
		return "OTHER";
	}
}

int lokr_dtype_parse(const char *s)
{
	if (!s)
		return -1;
	if (strcasecmp(s, "f32") == 0)
		return LOKR_DTYPE_F32;
	if (strcasecmp(s, "f16") == 0)
		return LOKR_DTYPE_F16;
	if (strcasecmp(s, "bf16") == 0)
		return LOKR_DTYPE_BF16;
	if (strcasecmp(s, "f64") == 0)
		return LOKR_DTYPE_F64;
	return -1;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_LE 1
#else
#define HOST_LE 0
#endif

/* Unaligned little-endian loads and stores: memcpy on little-endian hosts
 * (one plain move each), byte assembly elsewhere. */
static inline uint16_t load16(const uint8_t *p)
{
	uint16_t v;
	if (HOST_LE) {
		memcpy(&v, p, 2);
		return v;
	}
	return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}
static inline uint32_t load32(const uint8_t *p)
{
	uint32_t v;
	if (HOST_LE) {
		memcpy(&v, p, 4);
		return v;
	}
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;
	if (HOST_LE) {
		memcpy(&v, p, 8);
		return v;
	}
	return (uint64_t)load32(p) | (uint64_t)load32(p + 4) << 32;
}
static inline void store16(uint8_t *p, uint16_t v)
{
	if (HOST_LE) {
		memcpy(p, &v, 2);
		return;
	}
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void store32(uint8_t *p, uint32_t v)
{
	if (HOST_LE) {
		memcpy(p, &v, 4);
		return;
	}
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void store64(uint8_t *p, uint64_t v)
{
	if (HOST_LE) {
		memcpy(p, &v, 8);
		return;
	}
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline float bits_to_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}
static inline uint32_t f32_to_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

/* IEEE binary16 -> binary32, exact for every input: subnormals are
 * normalised, inf stays inf and NaN keeps its payload (shifted) and sign.
 * Branch-free so the decode loop vectorizes: shift exponent and mantissa into
 * place and rebias; for inf/NaN rebias once more to the all-ones exponent;
 * for subnormals (and zero) compute m * 2^-24 exactly as
 * (2^-14 + m * 2^-24) - 2^-14 in float (F. Giesen's half_to_float_fast). */
static inline float f16_to_f32(uint16_t h)
{
	uint32_t o = (uint32_t)(h & 0x7fff) << 13;
	uint32_t e = o & 0x0f800000u;
	o += 0x38000000u; /* (127 - 15) << 23 */
	o += e == 0x0f800000u ? 0x38000000u : 0;
	float sub = bits_to_f32(o + 0x00800000u) - 0x1p-14f;
	o = e == 0 ? f32_to_bits(sub) : o;
	return bits_to_f32(o | (uint32_t)(h & 0x8000) << 16);
}

/* binary32 -> binary16 with round to nearest, ties to even.  Overflow gives
 * inf, NaN stays a (quiet) NaN with the sign kept, tiny values round into the
 * subnormal range or to signed zero. */
static uint16_t f32_to_f16(float f)
{
	uint32_t u = f32_to_bits(f);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
	uint32_t abs = u & 0x7fffffffu;
	if (abs >= 0x7f800000u) /* inf or NaN */
		return (uint16_t)(sign | 0x7c00 |
		                  (abs > 0x7f800000u ? 0x200 | ((abs >> 13) & 0x3ff) : 0));
	if (abs >= 0x477ff000u) /* >= 65520: rounds to inf */
		return (uint16_t)(sign | 0x7c00);
	if (abs < 0x38800000u) {       /* below 2^-14: subnormal or zero */
		if (abs < 0x33000000u) /* < 2^-25: rounds to zero (2^-25 itself ties to 0) */
			return sign;
		uint32_t exp = abs >> 23;
		uint32_t man = (abs & 0x7fffff) | 0x800000;
		/* value = man * 2^(exp-150); result unit is 2^-24 => shift by 126-exp */
		unsigned shift = 126 - exp;
		uint32_t q = man >> shift;
		uint32_t rem = man & ((1u << shift) - 1);
		uint32_t half = 1u << (shift - 1);
		if (rem > half || (rem == half && (q & 1)))
			q++;
		return (uint16_t)(sign | q);
	}
	/* normal: rebias the exponent and round the 13 dropped mantissa bits;
	 * a carry out of the mantissa correctly bumps the exponent */
	uint32_t r = abs - 0x38000000u; /* exponent - 112 in place */
	uint32_t q = r >> 13;
	uint32_t rem = r & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (q & 1)))
		q++;
	return (uint16_t)(sign | q);
}

static uint16_t f32_to_bf16(float f)
{
	uint32_t u = f32_to_bits(f);
	if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep sign and top payload, force quiet */
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fff + ((u >> 16) & 1); /* overflow past max rounds to inf, as it should */
	return (uint16_t)(u >> 16);
}

int lokr_decode_f32(lokr_dtype dt, const void *src, size_t n, float *dst)
{
	const uint8_t *p = src;
	if (n && (!src || !dst))
		return LOKR_EINVAL;
	switch (dt) {
	case LOKR_DTYPE_F32:
		if (HOST_LE) {
			if (n)
				memmove(dst, p, n * 4);
			return LOKR_OK;
		}
		for (size_t i = 0; i < n; i++)
			dst[i] = bits_to_f32(load32(p + 4 * i));
		return LOKR_OK;
	case LOKR_DTYPE_F16: {
		size_t i = 0;
		/* blocks of 8 through local arrays: a fixed trip count and no
		 * aliasing, so -O2's cheap vectorizer takes it */
		for (; i + 8 <= n; i += 8) {
			uint16_t h[8];
			float f[8];
			for (int j = 0; j < 8; j++)
				h[j] = load16(p + 2 * (i + (size_t)j));
			for (int j = 0; j < 8; j++)
				f[j] = f16_to_f32(h[j]);
			memcpy(dst + i, f, sizeof f);
		}
		for (; i < n; i++)
			dst[i] = f16_to_f32(load16(p + 2 * i));
		return LOKR_OK;
	}
	case LOKR_DTYPE_BF16:
		for (size_t i = 0; i < n; i++)
			dst[i] = bits_to_f32((uint32_t)load16(p + 2 * i) << 16);
		return LOKR_OK;
	case LOKR_DTYPE_F64:
		for (size_t i = 0; i < n; i++) {
			uint64_t u = load64(p + 8 * i);
			double d;
			memcpy(&d, &u, 8);
			dst[i] = (float)d;
		}
		return LOKR_OK;
	default:
		return LOKR_EUNSUPPORTED;
	}
}

int lokr_encode_f32(lokr_dtype dt, const float *src, size_t n, void *dst)
{
	uint8_t *p = dst;
	if (n && (!src || !dst))
		return LOKR_EINVAL;
	switch (dt) {
	case LOKR_DTYPE_F32:
		if (HOST_LE) {
			if (n)
				memmove(p, src, n * 4);
			return LOKR_OK;
		}
		for (size_t i = 0; i < n; i++)
			store32(p + 4 * i, f32_to_bits(src[i]));
		return LOKR_OK;
	case LOKR_DTYPE_F16:
		for (size_t i = 0; i < n; i++)
			store16(p + 2 * i, f32_to_f16(src[i]));
		return LOKR_OK;
	case LOKR_DTYPE_BF16:
		for (size_t i = 0; i < n; i++)
			store16(p + 2 * i, f32_to_bf16(src[i]));
		return LOKR_OK;
	case LOKR_DTYPE_F64:
		for (size_t i = 0; i < n; i++) {
			double d = src[i];
			uint64_t u;
			memcpy(&u, &d, 8);
			store64(p + 8 * i, u);
		}
		return LOKR_OK;
	default:
		return LOKR_EUNSUPPORTED;
	}
}

/*
 * factorize.c - LyCORIS's factorization(dimension, factor), the rule that
 * splits a layer dimension into the Kronecker factor sizes (lycoris-format.md
 * 3.4, LY lycoris/functional/general.py at f49d30d).
 *
 * LyCORIS walks the divisors upwards; we use the closed form, which is the
 * same function (checked against the walk for every dim 1..4999 in the
 * research note, and re-checked in tests/unit/factorize.c):
 *   - factor > 0 dividing dim: (min(factor, dim/factor), max(...));
 *   - otherwise small = the largest divisor of dim <= min(cap, isqrt(dim)),
 *     cap = factor (no cap when factor < 0), large = dim / small.
 * factor 0 therefore gives (1, dim), as LyCORIS f49d30d does (newer LyCORIS
 * rejects it); every negative factor means automatic, as in f49d30d.
 */
#include "internal.h"

/* The library refuses dims above 2^48 (no tensor dimension is that big, and
 * it keeps the divisor search below 2^24 steps). */
#define FACTORIZE_MAX_DIM ((int64_t)1 << 48)

static int64_t isqrt64(int64_t n)
{
	int64_t r = 0;
	/* binary search on r*r <= n; n <= 2^48 so r*r never overflows */
	int64_t lo = 0, hi = (int64_t)1 << 25;
	while (lo <= hi) {
		int64_t mid = lo + (hi - lo) / 2;
		if (mid * mid <= n) {
			r = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	return r;
}

int lokr_factorize(int64_t dim, int64_t factor, int64_t *small, int64_t *large)
{
	if (dim <= 0 || dim > FACTORIZE_MAX_DIM)
		return LOKR_EINVAL;
	if (factor > 0 && dim % factor == 0) {
		int64_t other = dim / factor;
		*small = factor < other ? factor : other;
		*large = factor < other ? other : factor;
		return LOKR_OK;
	}
	int64_t cap = isqrt64(dim);
	if (factor >= 0 && factor < cap)
		cap = factor;
	int64_t m = 1;
	for (int64_t d = cap; d >= 1; d--)
		if (dim % d == 0) {
			m = d;
			break;
		}
	*small = m;
	*large = dim / m;
	return LOKR_OK;
}

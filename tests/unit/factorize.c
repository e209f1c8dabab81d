/* Unit tests for lib/factorize.c: the table of lycoris-format.md 3.4 in
 * full, edge factors, and the closed form against a literal transcription of
 * LyCORIS's divisor walk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "internal.h"

/* LyCORIS f49d30d factorization(), transcribed step by step from the
 * description in lycoris-format.md 3.4 (the walk, not the closed form). */
static void walk(int64_t dim, int64_t factor, int64_t *small, int64_t *large)
{
	if (factor > 0 && dim % factor == 0) {
		int64_t m = factor, n = dim / factor;
		*small = m < n ? m : n;
		*large = m < n ? n : m;
		return;
	}
	if (factor < 0)
		factor = dim;
	int64_t m = 1, n = dim, length = dim + 1;
	while (m < n) {
		int64_t new_m = m + 1;
		while (dim % new_m != 0)
			new_m++;
		int64_t new_n = dim / new_m;
		if (new_m + new_n > length || new_m > factor)
			break;
		m = new_m;
		n = new_n;
	}
	*small = m < n ? m : n;
	*large = m < n ? n : m;
}

static void test_table(void **state)
{
	(void)state;
	static const int64_t factors[7] = {-1, 2, 4, 8, 16, 32, 64};
	static const struct {
		int64_t dim;
		int64_t pair[7][2];
	} table[] = {
	    {127, {{1, 127}, {1, 127}, {1, 127}, {1, 127}, {1, 127}, {1, 127}, {1, 127}}},
	    {128, {{8, 16}, {2, 64}, {4, 32}, {8, 16}, {8, 16}, {4, 32}, {2, 64}}},
	    {250, {{10, 25}, {2, 125}, {2, 125}, {5, 50}, {10, 25}, {10, 25}, {10, 25}}},
	    {320, {{16, 20}, {2, 160}, {4, 80}, {8, 40}, {16, 20}, {10, 32}, {5, 64}}},
	    {360, {{18, 20}, {2, 180}, {4, 90}, {8, 45}, {15, 24}, {18, 20}, {18, 20}}},
	    {640, {{20, 32}, {2, 320}, {4, 160}, {8, 80}, {16, 40}, {20, 32}, {10, 64}}},
	    {768, {{24, 32}, {2, 384}, {4, 192}, {8, 96}, {16, 48}, {24, 32}, {12, 64}}},
	    {1024, {{32, 32}, {2, 512}, {4, 256}, {8, 128}, {16, 64}, {32, 32}, {16, 64}}},
	    {1280, {{32, 40}, {2, 640}, {4, 320}, {8, 160}, {16, 80}, {32, 40}, {20, 64}}},
	    {2048, {{32, 64}, {2, 1024}, {4, 512}, {8, 256}, {16, 128}, {32, 64}, {32, 64}}},
	    {2560, {{40, 64}, {2, 1280}, {4, 640}, {8, 320}, {16, 160}, {32, 80}, {40, 64}}},
	    {3072, {{48, 64}, {2, 1536}, {4, 768}, {8, 384}, {16, 192}, {32, 96}, {48, 64}}},
	    {5120, {{64, 80}, {2, 2560}, {4, 1280}, {8, 640}, {16, 320}, {32, 160}, {64, 80}}},
	    {10240, {{80, 128}, {2, 5120}, {4, 2560}, {8, 1280}, {16, 640}, {32, 320}, {64, 160}}},
	    {12288, {{96, 128}, {2, 6144}, {4, 3072}, {8, 1536}, {16, 768}, {32, 384}, {64, 192}}},
	};
	int cells = 0;
	for (size_t r = 0; r < sizeof table / sizeof table[0]; r++)
		for (int c = 0; c < 7; c++) {
			int64_t s = 0, l = 0;
			assert_int_equal(lokr_factorize(table[r].dim, factors[c], &s, &l), 0);
			if (s != table[r].pair[c][0] || l != table[r].pair[c][1]) {
				print_error(
				    "dim %lld factor %lld: got (%lld, %lld), want (%lld, %lld)\n",
				    (long long)table[r].dim, (long long)factors[c], (long long)s,
				    (long long)l, (long long)table[r].pair[c][0],
				    (long long)table[r].pair[c][1]);
				fail();
			}
			cells++;
		}
	assert_int_equal(cells, 105);
}

/* The two cells where LyCORIS's docstring is wrong, stated on their own. */
static void test_docstring_errata(void **state)
{
	(void)state;
	int64_t s, l;
	assert_int_equal(lokr_factorize(360, -1, &s, &l), 0);
	assert_true(s == 18 && l == 20); /* docstring says (8, 45) */
	assert_int_equal(lokr_factorize(360, 16, &s, &l), 0);
	assert_true(s == 15 && l == 24); /* docstring says (12, 30) */
}

static void test_edge_factors(void **state)
{
	(void)state;
	int64_t s, l;
	/* factor 0: (1, dim) */
	assert_int_equal(lokr_factorize(320, 0, &s, &l), 0);
	assert_true(s == 1 && l == 320);
	/* factor 1 divides everything: (1, dim) */
	assert_int_equal(lokr_factorize(320, 1, &s, &l), 0);
	assert_true(s == 1 && l == 320);
	assert_int_equal(lokr_factorize(127, 1, &s, &l), 0);
	assert_true(s == 1 && l == 127);
	/* dim 1 */
	assert_int_equal(lokr_factorize(1, -1, &s, &l), 0);
	assert_true(s == 1 && l == 1);
	assert_int_equal(lokr_factorize(1, 8, &s, &l), 0);
	assert_true(s == 1 && l == 1);
	/* factor == dim, factor > dim */
	assert_int_equal(lokr_factorize(64, 64, &s, &l), 0);
	assert_true(s == 1 && l == 64);
	assert_int_equal(lokr_factorize(64, 1000, &s, &l), 0);
	assert_true(s == 8 && l == 8);
	/* a larger factor that divides ends up as `large` (320, 64) -> (5, 64) */
	assert_int_equal(lokr_factorize(320, 64, &s, &l), 0);
	assert_true(s == 5 && l == 64);
	/* any negative factor is automatic, as in LyCORIS f49d30d */
	assert_int_equal(lokr_factorize(360, -7, &s, &l), 0);
	assert_true(s == 18 && l == 20);
	/* invalid dims */
	assert_int_equal(lokr_factorize(0, -1, &s, &l), LOKR_EINVAL);
	assert_int_equal(lokr_factorize(-4, -1, &s, &l), LOKR_EINVAL);
	assert_int_equal(lokr_factorize(INT64_MAX, -1, &s, &l), LOKR_EINVAL);
	/* a large prime: (1, p); a large square */
	assert_int_equal(lokr_factorize(1000003, -1, &s, &l), 0);
	assert_true(s == 1 && l == 1000003);
	assert_int_equal(lokr_factorize((int64_t)1 << 40, -1, &s, &l), 0);
	assert_true(s == (int64_t)1 << 20 && l == (int64_t)1 << 20);
}

static void test_closed_form_equals_walk(void **state)
{
	(void)state;
	static const int64_t factors[] = {-1, 0,  1,  2,  3,  4,  5,  6,   7,
	                                  8,  12, 16, 24, 32, 48, 64, 100, 128};
	for (int64_t dim = 1; dim < 5000; dim++)
		for (size_t k = 0; k < sizeof factors / sizeof factors[0]; k++) {
			int64_t s, l, ws, wl;
			assert_int_equal(lokr_factorize(dim, factors[k], &s, &l), 0);
			walk(dim, factors[k], &ws, &wl);
			if (s != ws || l != wl) {
				print_error(
				    "dim %lld factor %lld: (%lld, %lld) vs walk (%lld, %lld)\n",
				    (long long)dim, (long long)factors[k], (long long)s,
				    (long long)l, (long long)ws, (long long)wl);
				fail();
			}
			assert_true(s * l == dim && s <= l);
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_docstring_errata),
	    cmocka_unit_test(test_edge_factors),
	    cmocka_unit_test(test_closed_form_equals_walk),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

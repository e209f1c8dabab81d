/* Unit tests for lib/error.c: status strings, messages, allocation hook. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"

static void test_strerror_every_code(void **state)
{
	(void)state;
	for (int c = 0; c >= LOKR_ERANGE; c--)
		assert_string_not_equal(lokr_strerror(c), "unknown error");
	assert_string_equal(lokr_strerror(12345), "unknown error");
}

static void test_fail_fills_message(void **state)
{
	(void)state;
	lokr_error e = {0};
	assert_int_equal(lokr__fail(&e, LOKR_EFORMAT, "tensor %s at %d", "x", 7), LOKR_EFORMAT);
	assert_int_equal(e.code, LOKR_EFORMAT);
	assert_string_equal(e.msg, "tensor x at 7");
	assert_int_equal(lokr__fail(NULL, LOKR_EIO, "ignored"), LOKR_EIO);
}

static void test_shape_str(void **state)
{
	(void)state;
	char buf[64];
	int64_t s[3] = {320, 4, 1};
	assert_string_equal(lokr__shape_str(buf, sizeof buf, s, 3), "(320, 4, 1)");
	assert_string_equal(lokr__shape_str(buf, sizeof buf, s, 0), "()");
}

static void test_alloc_fail_after(void **state)
{
	(void)state;
	lokr__alloc_fail_after(1);
	void *a = lokr__try_malloc(16);
	void *b = lokr__try_malloc(16);
	lokr__alloc_fail_after(-1);
	assert_non_null(a);
	assert_null(b);
	free(a);
	void *c = lokr__try_aligned(100);
	assert_non_null(c);
	assert_int_equal((uintptr_t)c % 64, 0);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strerror_every_code),
		cmocka_unit_test(test_fail_fills_message),
		cmocka_unit_test(test_shape_str),
		cmocka_unit_test(test_alloc_fail_after),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_error.c — the error table: every code has a distinct value, a name and
 * a message, and unknown codes are reported as such. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/cairn_error.h"

static const int all_codes[] = {
#define CODE(name, value, msg) name,
    CAIRN_ERRORS(CODE)
#undef CODE
};

static void test_codes_distinct_and_negative(void **state)
{
	(void)state;
	size_t n = sizeof(all_codes) / sizeof(all_codes[0]);
	for (size_t i = 0; i < n; i++) {
		assert_true(all_codes[i] < 0);
		for (size_t j = i + 1; j < n; j++)
			assert_int_not_equal(all_codes[i], all_codes[j]);
	}
}

static void test_messages_and_names(void **state)
{
	(void)state;
	assert_string_equal(cairn_strerror(0), "success");
	assert_string_equal(cairn_strerror(CAIRN_ECOMPACTED),
	                    "etcdserver: mvcc: required revision has been compacted");
	assert_string_equal(cairn_errname(CAIRN_ENOSPACE), "CAIRN_ENOSPACE");
	assert_string_equal(cairn_strerror(-99999), "unknown error");
	assert_string_equal(cairn_errname(12345), "CAIRN_UNKNOWN");
	for (size_t i = 0; i < sizeof(all_codes) / sizeof(all_codes[0]); i++) {
		assert_true(strlen(cairn_strerror(all_codes[i])) > 0);
		assert_true(strncmp(cairn_errname(all_codes[i]), "CAIRN_E", 7) == 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_codes_distinct_and_negative),
	    cmocka_unit_test(test_messages_and_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_server_sha256.c — SHA-256 against FIPS 180-4 test vectors, whole and
 * fed in pieces (the snapshot stream feeds it chunk by chunk). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "server/sha256.h"

static void hex(const uint8_t d[32], char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_vectors(void **state)
{
	(void)state;
	struct srv_sha256 s;
	uint8_t d[32];
	char h[65];
	srv_sha256_init(&s);
	srv_sha256_update(&s, "abc", 3);
	srv_sha256_final(&s, d);
	hex(d, h);
	assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	srv_sha256_init(&s);
	srv_sha256_final(&s, d);
	hex(d, h);
	assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	/* One million 'a', fed in uneven pieces. */
	static char a[1000];
	memset(a, 'a', sizeof(a));
	srv_sha256_init(&s);
	for (int i = 0; i < 1000; i++) {
		srv_sha256_update(&s, a, 333);
		srv_sha256_update(&s, a, 667);
	}
	srv_sha256_final(&s, d);
	hex(d, h);
	assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_vectors)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

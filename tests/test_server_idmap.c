/* test_server_idmap.c — the id map against a plain array model under random
 * puts and deletes (seeded; the seed is printed on failure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "server/idmap.h"

#define N 2000

static void test_model(void **state)
{
	(void)state;
	for (unsigned seed = 1; seed <= 20; seed++) {
		srand(seed);
		static void *model[N];
		for (int i = 0; i < N; i++)
			model[i] = NULL;
		struct srv_idmap m = {0};
		for (int op = 0; op < 20000; op++) {
			uint64_t id = (uint64_t)(rand() % (N - 1)) + 1;
			if (rand() % 3) {
				void *v = (void *)(uintptr_t)(op + 1);
				assert_int_equal(srv_idmap_put(&m, id, v), 0);
				model[id] = v;
			} else {
				void *got = srv_idmap_del(&m, id);
				if (got != model[id])
					fprintf(stderr, "seed %u op %d\n", seed, op);
				assert_ptr_equal(got, model[id]);
				model[id] = NULL;
			}
			if (op % 500 == 0) {
				size_t live = 0;
				for (int i = 1; i < N; i++) {
					assert_ptr_equal(srv_idmap_get(&m, (uint64_t)i), model[i]);
					live += model[i] != NULL;
				}
				assert_int_equal(m.len, live);
			}
		}
		srv_idmap_free(&m);
	}
	struct srv_idmap m = {0};
	assert_int_not_equal(srv_idmap_put(&m, 0, &m), 0);
	assert_null(srv_idmap_get(&m, 5));
	assert_null(srv_idmap_del(&m, 5));
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_model)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

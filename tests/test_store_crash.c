/*
 * test_store_crash.c — crash consistency: a child process applies numbered
 * batches (each: a put, a txn of several puts and a delete, the applied
 * index, sometimes a compaction and a sweep step) and reports every commit
 * through a pipe; the parent lets it commit a random number (0-7) of
 * batches, then kills it with SIGKILL at a random moment (0-3 ms later),
 * reopens the store and checks that it holds exactly the first A batches,
 * where A is the last reported batch or the one after it (killed between
 * commit and report): revision = 1 + 2A (an empty store is at revision
 * 1), every key as a replay of batches 1..A says, store_check() clean.
 * The next child continues from A.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include "tests/store_test_util.h"

#define NKEYS  37
#define CYCLES 120
#define PAD    1500

struct mk {
	bool live;
	uint64_t val; /* batch number that wrote it */
	char tag;     /* 'v' or 'w' */
	int64_t create, mod, version;
};

static void key_of(int k, char *out)
{
	snprintf(out, 8, "c%02d", k % 100);
}

static int txn_puts(uint64_t i, int out[3])
{
	int n = 0, c[3] = {(int)((i * 13 + 5) % NKEYS), (int)((i * 17 + 2) % NKEYS),
	                   (int)((i * 19 + 11) % NKEYS)};
	for (int j = 0; j < 3; j++) {
		bool dup = false;
		for (int x = 0; x < n; x++)
			dup |= out[x] == c[j];
		if (!dup)
			out[n++] = c[j];
	}
	return n;
}

static int txn_del(uint64_t i, const int *puts, int n)
{
	int d = (int)((i * 3 + 1) % NKEYS);
	for (int x = 0; x < n; x++)
		if (puts[x] == d)
			return -1;
	return d;
}

static void fill_val(char *buf, char tag, uint64_t i)
{
	memset(buf, 'p', PAD);
	int n = snprintf(buf, 32, "%c%llu:", tag, (unsigned long long)i);
	buf[n] = 'p';
	buf[PAD] = 0;
}

static void mk_put(struct mk *e, uint64_t i, char tag, int64_t rev)
{
	e->version = e->live ? e->version + 1 : 1;
	e->create = e->live ? e->create : rev;
	e->live = true;
	e->val = i;
	e->tag = tag;
	e->mod = rev;
}

/* Applies batch i to the model: revisions 2i (put) and 2i+1 (txn), the
 * empty store being at revision 1. */
static void model_apply(struct mk *m, uint64_t i)
{
	mk_put(&m[(i * 7) % NKEYS], i, 'v', (int64_t)(2 * i));
	int puts[3];
	int n = txn_puts(i, puts);
	for (int x = 0; x < n; x++)
		mk_put(&m[puts[x]], i, 'w', (int64_t)(2 * i + 1));
	int d = txn_del(i, puts, n);
	if (d >= 0)
		m[d].live = false;
}

static int child_batch(struct store *s, uint64_t i)
{
	static char val[PAD + 1];
	char key[8];
	struct store_wtxn *w;
	int rc = store_wtxn_begin(s, &w);
	if (rc)
		return rc;
	key_of((int)((i * 7) % NKEYS), key);
	fill_val(val, 'v', i);
	struct store_put_req p = {B(key), 3, B(val), PAD, 0, false, false, false};
	rc = store_put(w, &p, NULL);
	int puts[3];
	int n = txn_puts(i, puts);
	char keys[4][8], vals[3][PAD + 1];
	struct store_op ops[4];
	for (int x = 0; x < n; x++) {
		key_of(puts[x], keys[x]);
		fill_val(vals[x], 'w', i);
		ops[x] = (struct store_op){.type = STORE_OP_PUT};
		ops[x].u.put =
		    (struct store_put_req){B(keys[x]), 3, B(vals[x]), PAD, 0, false, false, false};
	}
	int d = txn_del(i, puts, n), nops = n;
	if (d >= 0) {
		key_of(d, keys[3]);
		ops[nops] = (struct store_op){.type = STORE_OP_DELETE};
		ops[nops].u.del = (struct store_delete_req){B(keys[3]), 3, NULL, 0, false};
		nops++;
	}
	struct store_txn_req t = {NULL, 0, ops, (size_t)nops, NULL, 0};
	struct store_txn_resp tr;
	if (rc == 0)
		rc = store_txn(w, &t, &tr);
	if (rc == 0)
		store_txn_resp_free(&tr);
	if (rc == 0 && i % 20 == 0 && i > 10)
		rc = store_compact(w, (int64_t)(2 * i - 9)); /* batch i-5's txn */
	if (rc == CAIRN_ECOMPACTED)
		rc = 0;
	bool done;
	if (rc == 0 && i % 5 == 0)
		rc = store_compact_step(w, 40, &done);
	if (rc == 0)
		rc = store_wtxn_set_applied(w, i);
	if (rc) {
		store_wtxn_abort(w);
		return rc;
	}
	return store_wtxn_commit(w);
}

static void child_run(const char *dir, int fd)
{
	struct store *s;
	if (tu_open(dir, &s) != 0)
		_exit(2);
	struct store_rtxn *r;
	if (store_rtxn_begin(s, &r) != 0)
		_exit(2);
	uint64_t i = store_rtxn_applied(r);
	store_rtxn_end(r);
	uint64_t ready = UINT64_MAX; /* tells the parent to start the clock */
	if (write(fd, &ready, sizeof(ready)) != sizeof(ready))
		_exit(4);
	for (;;) {
		i++;
		if (child_batch(s, i) != 0)
			_exit(3);
		if (write(fd, &i, sizeof(i)) != sizeof(i))
			_exit(4);
	}
}

static void verify(struct store *s, const struct mk *m, uint64_t a)
{
	struct store_rtxn *r;
	assert_int_equal(store_rtxn_begin(s, &r), 0);
	assert_int_equal(store_rtxn_applied(r), a);
	assert_int_equal(store_rtxn_revision(r), (int64_t)(1 + 2 * a));
	struct store_range_req req = {
	    .key = B("c"), .key_len = 1, .range_end = B("d"), .range_end_len = 1};
	struct store_range_resp resp;
	assert_int_equal(store_range(r, &req, &resp), 0);
	size_t j = 0;
	for (int k = 0; k < NKEYS; k++) {
		if (!m[k].live)
			continue;
		assert_true(j < resp.n_kvs);
		const struct store_kv *kv = &resp.kvs[j++];
		char key[8], want[PAD + 1];
		key_of(k, key);
		fill_val(want, m[k].tag, m[k].val);
		assert_memory_equal(kv->key, key, 3);
		assert_int_equal(kv->value_len, PAD);
		assert_memory_equal(kv->value, want, PAD);
		assert_int_equal(kv->version, m[k].version);
		assert_int_equal(kv->create_revision, m[k].create);
		assert_int_equal(kv->mod_revision, m[k].mod);
	}
	assert_int_equal(j, resp.n_kvs);
	store_range_resp_free(&resp);
	store_rtxn_end(r);
	assert_int_equal(tu_check(s), 0);
}

static void test_crash_prefix(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	struct mk model[NKEYS];
	memset(model, 0, sizeof(model));
	uint64_t applied = 0, seed = 12345;
	int lost_report = 0;
	for (int cycle = 0; cycle < CYCLES; cycle++) {
		int p[2];
		assert_int_equal(pipe(p), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(p[0]);
			child_run(dir, p[1]);
		}
		close(p[1]);
		uint64_t x;
		if (read(p[0], &x, sizeof(x)) != sizeof(x) || x != UINT64_MAX)
			fail_msg("cycle %d: child did not start", cycle);
		/* Let it commit a random number of batches (so that every cycle
		 * makes progress, however slow the build), then kill it at a
		 * random moment within the next few milliseconds. */
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t last = applied;
		for (uint64_t want = (seed >> 33) % 8; want > 0; want--)
			if (read(p[0], &x, sizeof(x)) == sizeof(x))
				last = x;
		struct timespec ts = {0, (long)((seed >> 13) % 3000000)};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int st;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		if (!WIFSIGNALED(st))
			fail_msg("child exited with status %d", WEXITSTATUS(st));
		while (read(p[0], &x, sizeof(x)) == sizeof(x))
			last = x;
		close(p[0]);

		struct store *s;
		assert_int_equal(tu_open(dir, &s), 0);
		struct store_rtxn *r;
		assert_int_equal(store_rtxn_begin(s, &r), 0);
		uint64_t a = store_rtxn_applied(r);
		store_rtxn_end(r);
		if (a != last && a != last + 1)
			fail_msg("cycle %d: applied %llu, last reported %llu", cycle,
			         (unsigned long long)a, (unsigned long long)last);
		lost_report += a == last + 1;
		for (uint64_t i = applied + 1; i <= a; i++)
			model_apply(model, i);
		applied = a;
		verify(s, model, a);
		store_close(s);
	}
	printf("crash: %d kill cycles, %llu batches committed, %d commits unreported\n", CYCLES,
	       (unsigned long long)applied, lost_report);
	tu_rmrf(dir);
	assert_true(applied > CYCLES);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crash_prefix),
	};
	return cmocka_run_group_tests_name("store_crash", tests, NULL, NULL);
}

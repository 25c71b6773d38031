/*
 * test_store.c — the rules of DESIGN.md §2 one by one, the limits, locking,
 * snapshots and the shared environment, on real LMDB files in temp dirs.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "tests/store_test_util.h"

struct fx {
	char *dir;
	struct store *s;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->dir = tu_tmpdir();
	if (!f->dir || tu_open(f->dir, &f->s) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (f->s)
		assert_int_equal(tu_check(f->s), 0);
	store_close(f->s);
	tu_rmrf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

#define S (((struct fx *)*state)->s)

static void expect_val(struct store *s, const char *k, int64_t rev, const char *want)
{
	char buf[256];
	int rc = tu_get(s, k, rev, buf, sizeof(buf), NULL);
	if (!want) {
		assert_int_equal(rc, CAIRN_ENOTFOUND);
		return;
	}
	assert_int_equal(rc, 0);
	assert_string_equal(buf, want);
}

/* ---- revisions and versions --------------------------------------------- */

static void test_revision_rules(void **state)
{
	assert_int_equal(tu_rev(S), 1); /* an empty store, as in etcd */
	assert_int_equal(tu_put(S, "a", "1"), 0);
	assert_int_equal(tu_rev(S), 2);
	assert_int_equal(tu_put(S, "a", "1"), 0); /* same value still bumps */
	assert_int_equal(tu_rev(S), 3);
	assert_int_equal(tu_del(S, "zz", NULL), 0); /* nothing deleted: no revision */
	assert_int_equal(tu_rev(S), 3);
	assert_int_equal(tu_del(S, "a", NULL), 1);
	assert_int_equal(tu_rev(S), 4);
	/* lease grant and compaction do not bump */
	struct store_wtxn *w;
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	assert_int_equal(store_lease_grant(w, 7, 10), 0);
	assert_int_equal(store_compact(w, 3), 0);
	assert_int_equal(store_wtxn_revision(w), 4);
	assert_int_equal(store_wtxn_commit(w), 0);
	assert_int_equal(tu_rev(S), 4);
}

/* etcd's empty store is at revision 1: reads at 0 (current) and 1 answer
 * "nothing" with header revision 1, it can be compacted to 1 (once), and
 * the first write is revision 2. */
static void test_empty_store(void **state)
{
	struct store_stats st;
	assert_int_equal(store_stats(S, &st), 0);
	assert_int_equal(st.revision, 1);
	assert_int_equal(st.compact_revision, 0);
	assert_int_equal(st.keys, 0);
	assert_int_equal(st.records, 0);

	struct store_rtxn *r;
	struct store_range_req req = {
	    .key = B("\0"), .key_len = 1, .range_end = B("\0"), .range_end_len = 1};
	struct store_range_resp resp;
	assert_int_equal(store_rtxn_begin(S, &r), 0);
	assert_int_equal(store_rtxn_revision(r), 1);
	assert_int_equal(store_rtxn_compact_revision(r), 0);
	for (int64_t rev = 0; rev <= 1; rev++) {
		req.revision = rev;
		assert_int_equal(store_range(r, &req, &resp), 0);
		assert_int_equal(resp.count, 0);
		assert_int_equal(resp.n_kvs, 0);
		assert_int_equal(resp.revision, 1);
		store_range_resp_free(&resp);
	}
	req.revision = 2;
	assert_int_equal(store_range(r, &req, &resp), CAIRN_EFUTUREREV);
	struct store_history_req hr = {
	    .key = B("\0"), .key_len = 1, .range_end = B("\0"), .range_end_len = 1, .from_rev = 1};
	struct store_history_resp hs;
	assert_int_equal(store_history(r, &hr, &hs), 0);
	assert_int_equal(hs.n_events, 0);
	assert_false(hs.more);
	assert_int_equal(hs.next_rev, 2);
	assert_int_equal(hs.revision, 1);
	store_history_resp_free(&hs);
	hr.to_rev = 2;
	assert_int_equal(store_history(r, &hr, &hs), CAIRN_EFUTUREREV);
	uint32_t h0, h1;
	int64_t hrev, crev;
	assert_int_equal(store_hash_kv(r, 0, &h0, &hrev, &crev), 0);
	assert_int_equal(hrev, 1);
	assert_int_equal(crev, 0);
	assert_int_equal(store_hash_kv(r, 1, &h1, &hrev, NULL), 0);
	assert_int_equal(hrev, 1);
	assert_int_equal(h0, h1);
	assert_int_equal(store_hash_kv(r, 2, &h1, NULL, NULL), CAIRN_EFUTUREREV);
	store_rtxn_end(r);

	/* a txn that writes nothing keeps the revision */
	struct store_wtxn *w;
	struct store_txn_req t = {0};
	struct store_txn_resp tr;
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	assert_int_equal(store_wtxn_revision(w), 1);
	assert_int_equal(store_txn(w, &t, &tr), 0);
	assert_int_equal(tr.revision, 1);
	store_txn_resp_free(&tr);
	assert_int_equal(store_wtxn_commit(w), 0);

	/* etcd: "compacted revision 1", then "required revision has been
	 * compacted" for 1 again; 2 is in the future */
	assert_int_equal(tu_compact(S, 2, true), CAIRN_EFUTUREREV);
	assert_int_equal(tu_compact(S, 1, true), 0);
	assert_int_equal(tu_compact(S, 1, true), CAIRN_ECOMPACTED);
	assert_int_equal(tu_rev(S), 1);
	assert_int_equal(tu_check(S), 0);
	char buf[16];
	assert_int_equal(tu_get(S, "k", 1, buf, sizeof(buf), NULL), CAIRN_ENOTFOUND);
	assert_int_equal(tu_get(S, "k", 0, buf, sizeof(buf), NULL), CAIRN_ENOTFOUND);

	struct store_kv kv;
	assert_int_equal(tu_put(S, "k", "v"), 0);
	assert_int_equal(tu_rev(S), 2);
	assert_int_equal(tu_get(S, "k", 0, buf, sizeof(buf), &kv), 0);
	assert_int_equal(kv.create_revision, 2);
	assert_int_equal(kv.mod_revision, 2);
	assert_int_equal(kv.version, 1);
	assert_int_equal(tu_get(S, "k", 1, buf, sizeof(buf), NULL), CAIRN_ENOTFOUND);
	assert_int_equal(store_rtxn_begin(S, &r), 0);
	assert_int_equal(store_hash_kv(r, 1, &h1, NULL, NULL), 0);
	assert_int_equal(h0, h1); /* revision 1 still hashes as empty */
	store_rtxn_end(r);
}

static void test_versions(void **state)
{
	struct store_kv kv;
	char buf[64];
	assert_int_equal(tu_put(S, "k", "v1"), 0);
	assert_int_equal(tu_put(S, "other", "x"), 0);
	assert_int_equal(tu_put(S, "k", "v2"), 0);
	assert_int_equal(tu_get(S, "k", 0, buf, sizeof(buf), &kv), 0);
	assert_int_equal(kv.create_revision, 2);
	assert_int_equal(kv.mod_revision, 4);
	assert_int_equal(kv.version, 2);
	assert_int_equal(tu_del(S, "k", NULL), 1);
	assert_int_equal(tu_put(S, "k", "v3"), 0); /* version reset after delete */
	assert_int_equal(tu_get(S, "k", 0, buf, sizeof(buf), &kv), 0);
	assert_int_equal(kv.create_revision, 6);
	assert_int_equal(kv.mod_revision, 6);
	assert_int_equal(kv.version, 1);
	/* reads at old revisions; 1 is the empty store */
	expect_val(S, "k", 1, NULL);
	expect_val(S, "k", 2, "v1");
	expect_val(S, "k", 3, "v1");
	expect_val(S, "k", 4, "v2");
	expect_val(S, "k", 5, NULL);
	expect_val(S, "k", 6, "v3");
	assert_int_equal(tu_get(S, "k", 7, buf, sizeof(buf), NULL), CAIRN_EFUTUREREV);
}

/* ---- range -------------------------------------------------------------- */

static void range(struct store *s, struct store_range_req *req, struct store_range_resp *resp,
                  struct store_rtxn **r)
{
	assert_int_equal(store_rtxn_begin(s, r), 0);
	assert_int_equal(store_range(*r, req, resp), 0);
}

static void done_range(struct store_range_resp *resp, struct store_rtxn *r)
{
	store_range_resp_free(resp);
	store_rtxn_end(r);
}

static void test_range_count_limit_sort(void **state)
{
	/* keys a..e; versions: c has 3, a 2, others 1 */
	const char *keys[] = {"a", "b", "c", "d", "e"};
	for (int i = 0; i < 5; i++)
		assert_int_equal(tu_put(S, keys[i], keys[4 - i]), 0);
	assert_int_equal(tu_put(S, "c", "z"), 0);
	assert_int_equal(tu_put(S, "c", "y"), 0);
	assert_int_equal(tu_put(S, "a", "q"), 0);
	assert_int_equal(tu_put(S, "f", "outside"), 0);
	struct store_rtxn *r;
	struct store_range_resp resp;
	struct store_range_req req = {
	    .key = B("a"), .key_len = 1, .range_end = B("f"), .range_end_len = 1, .limit = 2};
	range(S, &req, &resp, &r);
	assert_int_equal(resp.count, 5); /* regardless of limit */
	assert_int_equal(resp.n_kvs, 2);
	assert_true(resp.more);
	assert_int_equal(resp.revision, 10);
	assert_memory_equal(resp.kvs[0].key, "a", 1);
	assert_memory_equal(resp.kvs[1].key, "b", 1);
	done_range(&resp, r);

	req.limit = 5;
	range(S, &req, &resp, &r);
	assert_false(resp.more);
	assert_int_equal(resp.n_kvs, 5);
	done_range(&resp, r);

	/* a negative limit is no limit, as in etcd's mvcc */
	req.limit = -1;
	range(S, &req, &resp, &r);
	assert_false(resp.more);
	assert_int_equal(resp.n_kvs, 5);
	assert_int_equal(resp.count, 5);
	done_range(&resp, r);

	/* sort by version descending, limit 2: c (3), a (2) */
	req.limit = 2;
	req.sort_order = STORE_SORT_DESCEND;
	req.sort_target = STORE_SORT_VERSION;
	range(S, &req, &resp, &r);
	assert_int_equal(resp.n_kvs, 2);
	assert_memory_equal(resp.kvs[0].key, "c", 1);
	assert_memory_equal(resp.kvs[1].key, "a", 1);
	assert_true(resp.more);
	done_range(&resp, r);

	/* key descending */
	req.sort_target = STORE_SORT_KEY;
	req.limit = 0;
	range(S, &req, &resp, &r);
	assert_int_equal(resp.n_kvs, 5);
	assert_memory_equal(resp.kvs[0].key, "e", 1);
	assert_memory_equal(resp.kvs[4].key, "a", 1);
	done_range(&resp, r);

	/* value ascending: a=q, b=d, c=y, d=b, e=a -> e d b a c */
	req.sort_order = STORE_SORT_ASCEND;
	req.sort_target = STORE_SORT_VALUE;
	range(S, &req, &resp, &r);
	assert_memory_equal(resp.kvs[0].key, "e", 1);
	assert_memory_equal(resp.kvs[4].key, "c", 1);
	done_range(&resp, r);

	/* etcd quirk: target != KEY with order NONE sorts ascending, but only
	 * the limit+1 keys fetched in key order: a b c sorted by mod -> b c a. */
	req.sort_order = STORE_SORT_NONE;
	req.sort_target = STORE_SORT_MOD;
	req.limit = 2;
	range(S, &req, &resp, &r);
	assert_int_equal(resp.n_kvs, 2);
	assert_memory_equal(resp.kvs[0].key, "b", 1);
	assert_memory_equal(resp.kvs[1].key, "c", 1);
	done_range(&resp, r);

	/* count_only, keys_only */
	memset(&req, 0, sizeof(req));
	req.key = B("a");
	req.key_len = 1;
	req.range_end = B("\0");
	req.range_end_len = 1;
	req.count_only = true;
	range(S, &req, &resp, &r);
	assert_int_equal(resp.count, 6);
	assert_int_equal(resp.n_kvs, 0);
	assert_false(resp.more);
	done_range(&resp, r);
	req.count_only = false;
	req.keys_only = true;
	range(S, &req, &resp, &r);
	assert_int_equal(resp.n_kvs, 6);
	assert_null(resp.kvs[0].value);
	assert_int_equal(resp.kvs[0].value_len, 0);
	assert_int_equal(resp.kvs[0].version, 2);
	done_range(&resp, r);

	/* min/max filters prune kvs but not count */
	req.keys_only = false;
	req.min_mod_revision = 7;
	req.max_create_revision = 9;
	range(S, &req, &resp, &r);
	assert_int_equal(resp.count, 6);
	assert_int_equal(resp.n_kvs, 2); /* c (mod 8), a (mod 9); f created 10 */
	assert_memory_equal(resp.kvs[0].key, "a", 1);
	assert_memory_equal(resp.kvs[1].key, "c", 1);
	done_range(&resp, r);

	/* prefix and old revision */
	memset(&req, 0, sizeof(req));
	req.key = B("a");
	req.key_len = 1;
	req.range_end = B("c");
	req.range_end_len = 1;
	req.revision = 2;
	range(S, &req, &resp, &r);
	assert_int_equal(resp.count, 1);
	assert_memory_equal(resp.kvs[0].value, "e", 1);
	assert_int_equal(resp.revision, 10);
	done_range(&resp, r);

	/* errors */
	assert_int_equal(store_rtxn_begin(S, &r), 0);
	req.revision = 11;
	assert_int_equal(store_range(r, &req, &resp), CAIRN_EFUTUREREV);
	req.revision = 0;
	req.key_len = 0;
	assert_int_equal(store_range(r, &req, &resp), CAIRN_EKEYEMPTY);
	store_rtxn_end(r);
}

/* ---- compaction ------------------------------------------------------------ */

static void test_compaction(void **state)
{
	assert_int_equal(tu_put(S, "a", "1"), 0);  /* 2 */
	assert_int_equal(tu_put(S, "b", "1"), 0);  /* 3 */
	assert_int_equal(tu_put(S, "a", "2"), 0);  /* 4 */
	assert_int_equal(tu_del(S, "b", NULL), 1); /* 5 */
	assert_int_equal(tu_put(S, "c", "1"), 0);  /* 6 */
	assert_int_equal(tu_put(S, "a", "3"), 0);  /* 7 */
	struct store_rtxn *r;
	uint32_t h1, h2;
	assert_int_equal(store_rtxn_begin(S, &r), 0);
	assert_int_equal(store_hash_kv(r, 0, &h1, NULL, NULL), 0);
	store_rtxn_end(r);

	assert_int_equal(tu_compact(S, 8, false), CAIRN_EFUTUREREV);
	assert_int_equal(tu_compact(S, 5, false), 0);
	assert_int_equal(tu_compact(S, 5, false), CAIRN_ECOMPACTED);
	assert_int_equal(tu_compact(S, 4, false), CAIRN_ECOMPACTED);
	/* errors are right before the sweep ran */
	char buf[16];
	assert_int_equal(tu_get(S, "a", 4, buf, sizeof(buf), NULL), CAIRN_ECOMPACTED);
	expect_val(S, "a", 5, "2");
	expect_val(S, "b", 5, NULL);
	assert_int_equal(tu_check(S), 0);
	struct store_stats st;
	assert_int_equal(store_stats(S, &st), 0);
	assert_true(st.compaction_pending);
	assert_int_equal(st.records, 6);

	assert_int_equal(store_rtxn_begin(S, &r), 0);
	uint32_t hc1;
	int64_t crev;
	assert_int_equal(store_hash_kv(r, 0, &hc1, NULL, &crev), 0);
	assert_int_equal(crev, 5);
	store_rtxn_end(r);

	assert_int_equal(tu_compact(S, 5, false), CAIRN_ECOMPACTED);
	/* sweep in slices */
	struct store_wtxn *w;
	bool done = false;
	int steps = 0;
	while (!done) {
		assert_int_equal(store_wtxn_begin(S, &w), 0);
		assert_int_equal(store_compact_step(w, 1, &done), 0);
		assert_int_equal(store_wtxn_commit(w), 0);
		assert_int_equal(tu_check(S), 0);
		expect_val(S, "a", 5, "2");
		steps++;
	}
	assert_true(steps >= 4);
	assert_int_equal(store_stats(S, &st), 0);
	assert_false(st.compaction_pending);
	/* a@2, b@3, b@5(tombstone) gone; a@4 kept as latest <= 5 */
	assert_int_equal(st.records, 3);
	expect_val(S, "a", 5, "2");
	expect_val(S, "a", 6, "2");
	expect_val(S, "a", 7, "3");
	expect_val(S, "b", 6, NULL);
	expect_val(S, "c", 0, "1");
	assert_int_equal(store_rtxn_begin(S, &r), 0);
	assert_int_equal(store_hash_kv(r, 0, &h2, NULL, NULL), 0);
	assert_int_equal(h2, hc1); /* same whatever the sweep progress */
	assert_int_not_equal(h1, h2);
	/* HashKV below the compact revision is refused, at it is answered */
	assert_int_equal(store_hash_kv(r, 4, &h2, NULL, NULL), CAIRN_ECOMPACTED);
	assert_int_equal(store_hash_kv(r, 5, &h2, NULL, NULL), 0);
	store_rtxn_end(r);
	assert_int_equal(st.keys, 2);
}

/* ---- txn -------------------------------------------------------------------- */

static struct store_op op_put(const char *k, const char *v)
{
	struct store_op op = {.type = STORE_OP_PUT};
	op.u.put.key = B(k);
	op.u.put.key_len = strlen(k);
	op.u.put.value = B(v);
	op.u.put.value_len = strlen(v);
	op.u.put.prev_kv = true;
	return op;
}

static struct store_op op_del(const char *k, const char *end)
{
	struct store_op op = {.type = STORE_OP_DELETE};
	op.u.del.key = B(k);
	op.u.del.key_len = strlen(k);
	op.u.del.range_end = B(end);
	op.u.del.range_end_len = end ? strlen(end) : 0;
	op.u.del.prev_kv = true;
	return op;
}

static struct store_op op_range(const char *k, const char *end)
{
	struct store_op op = {.type = STORE_OP_RANGE};
	op.u.range.key = B(k);
	op.u.range.key_len = strlen(k);
	op.u.range.range_end = B(end);
	op.u.range.range_end_len = end ? strlen(end) : 0;
	return op;
}

static struct store_compare cmp_num(const char *k, enum store_cmp_target t,
                                    enum store_cmp_result res, int64_t n)
{
	struct store_compare c = {
	    .result = res, .target = t, .key = B(k), .key_len = strlen(k), .number = n};
	return c;
}

static int run_txn(struct store *s, const struct store_txn_req *t, struct store_txn_resp *resp)
{
	struct store_wtxn *w;
	int rc = store_wtxn_begin(s, &w);
	if (rc)
		return rc;
	rc = store_txn(w, t, resp);
	if (rc) {
		store_wtxn_abort(w);
		return rc;
	}
	return store_wtxn_commit(w);
}

static void test_txn_compare_missing(void **state)
{
	struct store_txn_resp resp;
	struct store_compare c[4] = {
	    cmp_num("nope", STORE_CMP_VERSION, STORE_CMP_EQUAL, 0),
	    cmp_num("nope", STORE_CMP_CREATE, STORE_CMP_EQUAL, 0),
	    cmp_num("nope", STORE_CMP_MOD, STORE_CMP_LESS, 1),
	    cmp_num("nope", STORE_CMP_LEASE, STORE_CMP_EQUAL, 0),
	};
	struct store_txn_req t = {.compares = c, .n_compares = 4};
	assert_int_equal(run_txn(S, &t, &resp), 0);
	assert_true(resp.succeeded);
	assert_int_equal(resp.revision, 1); /* nothing written: still the empty store's */
	store_txn_resp_free(&resp);
	/* a VALUE compare on a missing key always fails, even with "" */
	struct store_compare cv = {
	    .result = STORE_CMP_EQUAL, .target = STORE_CMP_VALUE, .key = B("nope"), .key_len = 4};
	t.compares = &cv;
	t.n_compares = 1;
	assert_int_equal(run_txn(S, &t, &resp), 0);
	assert_false(resp.succeeded);
	store_txn_resp_free(&resp);
	/* compare with range_end: every key must satisfy it */
	assert_int_equal(tu_put(S, "p/1", "x"), 0);
	assert_int_equal(tu_put(S, "p/2", "x"), 0);
	assert_int_equal(tu_put(S, "p/2", "y"), 0);
	struct store_compare cr = cmp_num("p/", STORE_CMP_VERSION, STORE_CMP_EQUAL, 1);
	cr.range_end = B("p0");
	cr.range_end_len = 2;
	t.compares = &cr;
	assert_int_equal(run_txn(S, &t, &resp), 0);
	assert_false(resp.succeeded);
	store_txn_resp_free(&resp);
	cr.result = STORE_CMP_LESS;
	cr.number = 3;
	assert_int_equal(run_txn(S, &t, &resp), 0);
	assert_true(resp.succeeded);
	store_txn_resp_free(&resp);
	struct store_compare cval = {.result = STORE_CMP_GREATER,
	                             .target = STORE_CMP_VALUE,
	                             .key = B("p/2"),
	                             .key_len = 3,
	                             .value = B("x"),
	                             .value_len = 1};
	t.compares = &cval;
	assert_int_equal(run_txn(S, &t, &resp), 0);
	assert_true(resp.succeeded);
	store_txn_resp_free(&resp);
	/* NOT_EQUAL: on a value, on a number, and over a range (every key) */
	cval.result = STORE_CMP_NOT_EQUAL;
	assert_int_equal(run_txn(S, &t, &resp), 0);
	assert_true(resp.succeeded); /* "y" != "x" */
	store_txn_resp_free(&resp);
	cval.value = B("y");
	assert_int_equal(run_txn(S, &t, &resp), 0);
	assert_false(resp.succeeded);
	store_txn_resp_free(&resp);
	cr.result = STORE_CMP_NOT_EQUAL;
	cr.number = 2; /* p/1 has version 1, p/2 version 2 */
	t.compares = &cr;
	assert_int_equal(run_txn(S, &t, &resp), 0);
	assert_false(resp.succeeded);
	store_txn_resp_free(&resp);
	cr.number = 3;
	assert_int_equal(run_txn(S, &t, &resp), 0);
	assert_true(resp.succeeded);
	store_txn_resp_free(&resp);
	/* a missing key compares its version as 0: NOT_EQUAL 0 fails */
	struct store_compare cm = cmp_num("nope", STORE_CMP_VERSION, STORE_CMP_NOT_EQUAL, 0);
	t.compares = &cm;
	assert_int_equal(run_txn(S, &t, &resp), 0);
	assert_false(resp.succeeded);
	store_txn_resp_free(&resp);
}

static void test_txn_nested_and_subrevs(void **state)
{
	assert_int_equal(tu_put(S, "a", "A"), 0); /* rev 2 */
	assert_int_equal(tu_put(S, "x", "0"), 0); /* rev 3 */
	/* inner txn: compare x's version == 1 (state before the outer txn,
	 * although the outer txn rewrote x first). */
	struct store_compare ic = cmp_num("x", STORE_CMP_VERSION, STORE_CMP_EQUAL, 1);
	struct store_op inner_ok[2] = {op_put("y", "inner"), op_range("a", NULL)};
	struct store_op inner_bad[1] = {op_put("z", "else")};
	struct store_txn_req inner = {&ic, 1, inner_ok, 2, inner_bad, 1};
	struct store_op outer_ops[4] = {op_put("x", "1"),
	                                op_range("x", NULL),
	                                op_del("a", NULL),
	                                {.type = STORE_OP_TXN, .u.txn = &inner}};
	struct store_compare oc = cmp_num("x", STORE_CMP_MOD, STORE_CMP_EQUAL, 3);
	struct store_txn_req outer = {&oc, 1, outer_ops, 4, NULL, 0};
	struct store_txn_resp resp;
	assert_int_equal(run_txn(S, &outer, &resp), 0);
	assert_true(resp.succeeded);
	assert_int_equal(resp.revision, 4);
	assert_int_equal(resp.n_responses, 4);
	assert_true(resp.responses[0].u.put.has_prev);
	assert_memory_equal(resp.responses[0].u.put.prev_kv.value, "0", 1);
	/* the range sees the txn's own earlier put */
	assert_int_equal(resp.responses[1].u.range.n_kvs, 1);
	assert_memory_equal(resp.responses[1].u.range.kvs[0].value, "1", 1);
	assert_int_equal(resp.responses[1].u.range.kvs[0].mod_revision, 4);
	assert_int_equal(resp.responses[2].u.del.deleted, 1);
	assert_int_equal(resp.responses[2].u.del.n_prev_kvs, 1);
	assert_memory_equal(resp.responses[2].u.del.prev_kvs[0].value, "A", 1);
	struct store_txn_resp *in = resp.responses[3].u.txn;
	assert_true(in->succeeded);
	assert_int_equal(in->n_responses, 2);
	assert_int_equal(in->responses[1].u.range.n_kvs, 0); /* a deleted by then */
	store_txn_resp_free(&resp);
	assert_int_equal(tu_rev(S), 4);

	/* events of rev 4 in op order: put x, delete a, put y */
	struct store_rtxn *r;
	assert_int_equal(store_rtxn_begin(S, &r), 0);
	struct store_history_req hr = {.key = B("\0"),
	                               .key_len = 1,
	                               .range_end = B("\0"),
	                               .range_end_len = 1,
	                               .from_rev = 4,
	                               .prev_kv = true};
	struct store_history_resp hs;
	assert_int_equal(store_history(r, &hr, &hs), 0);
	assert_int_equal(hs.n_events, 3);
	assert_int_equal(hs.events[0].type, STORE_EVENT_PUT);
	assert_memory_equal(hs.events[0].kv.key, "x", 1);
	assert_int_equal(hs.events[0].kv.version, 2);
	assert_true(hs.events[0].has_prev);
	assert_memory_equal(hs.events[0].prev_kv.value, "0", 1);
	assert_int_equal(hs.events[1].type, STORE_EVENT_DELETE);
	assert_memory_equal(hs.events[1].kv.key, "a", 1);
	assert_int_equal(hs.events[1].kv.mod_revision, 4);
	assert_int_equal(hs.events[1].sub_revision, 1);
	assert_true(hs.events[1].has_prev);
	assert_memory_equal(hs.events[1].prev_kv.value, "A", 1);
	assert_int_equal(hs.events[2].type, STORE_EVENT_PUT);
	assert_memory_equal(hs.events[2].kv.key, "y", 1);
	assert_int_equal(hs.events[2].sub_revision, 2);
	assert_false(hs.events[2].has_prev);
	store_history_resp_free(&hs);
	/* paging: limit 3 from rev 1 (the empty store: no event) then resume
	 * inside rev 4 */
	hr.from_rev = 1;
	hr.limit = 3;
	assert_int_equal(store_history(r, &hr, &hs), 0);
	assert_int_equal(hs.n_events, 3);
	assert_true(hs.more);
	assert_int_equal(hs.next_rev, 4);
	assert_int_equal(hs.next_sub, 1);
	hr.from_rev = hs.next_rev;
	hr.from_sub = hs.next_sub;
	store_history_resp_free(&hs);
	assert_int_equal(store_history(r, &hr, &hs), 0);
	assert_int_equal(hs.n_events, 2);
	assert_false(hs.more);
	assert_int_equal(hs.events[0].type, STORE_EVENT_DELETE);
	store_history_resp_free(&hs);
	hr.from_rev = 5;
	hr.from_sub = 0;
	assert_int_equal(store_history(r, &hr, &hs), 0);
	assert_int_equal(hs.n_events, 0);
	hr.from_rev = 1;
	hr.to_rev = 5;
	assert_int_equal(store_history(r, &hr, &hs), CAIRN_EFUTUREREV);
	store_rtxn_end(r);
}

static void test_txn_dupkeys(void **state)
{
	struct store_txn_resp resp;
	struct store_op two_puts[2] = {op_put("a", "1"), op_put("a", "2")};
	struct store_txn_req t = {NULL, 0, two_puts, 2, NULL, 0};
	assert_int_equal(run_txn(S, &t, &resp), CAIRN_EDUPKEY);
	struct store_op del_put[2] = {op_del("a", "c"), op_put("b", "2")};
	t.success = del_put;
	assert_int_equal(run_txn(S, &t, &resp), CAIRN_EDUPKEY);
	/* delete outside the put: fine */
	struct store_op del_put_ok[2] = {op_del("c", "d"), op_put("b", "2")};
	t.success = del_put_ok;
	assert_int_equal(run_txn(S, &t, &resp), 0);
	store_txn_resp_free(&resp);
	/* the same key in then and else of a nested txn is fine ... */
	struct store_op th[1] = {op_put("k", "then")}, el[1] = {op_put("k", "else")};
	struct store_txn_req inner = {NULL, 0, th, 1, el, 1};
	struct store_op outer_ops[1] = {{.type = STORE_OP_TXN, .u.txn = &inner}};
	t.success = outer_ops;
	t.n_success = 1;
	assert_int_equal(run_txn(S, &t, &resp), 0);
	store_txn_resp_free(&resp);
	/* ... but not beside a put of the outer level */
	struct store_op outer2[2] = {{.type = STORE_OP_TXN, .u.txn = &inner}, op_put("k", "x")};
	t.success = outer2;
	t.n_success = 2;
	assert_int_equal(run_txn(S, &t, &resp), CAIRN_EDUPKEY);
	/* an outer delete covering a nested put */
	struct store_op outer3[2] = {op_del("j", "l"), {.type = STORE_OP_TXN, .u.txn = &inner}};
	t.success = outer3;
	assert_int_equal(run_txn(S, &t, &resp), CAIRN_EDUPKEY);
	int64_t rev = tu_rev(S);
	assert_int_equal(rev, 3);
}

static void test_batch_with_failing_op(void **state)
{
	struct store_wtxn *w;
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	struct store_put_req p1 = {B("one"), 3, B("1"), 1, 0, false, false, false};
	struct store_put_req bad = {B("two"), 3, B("2"), 1, 99, false, false, false};
	struct store_put_req p3 = {B("three"), 5, B("3"), 1, 0, false, false, false};
	assert_int_equal(store_put(w, &p1, NULL), 0);
	assert_int_equal(store_put(w, &bad, NULL), CAIRN_ELEASENOTFOUND);
	/* a txn whose second op fails leaves nothing behind either */
	struct store_op ops[2] = {op_put("t1", "x"), op_put("t2", "y")};
	ops[1].u.put.lease = 42;
	struct store_txn_req t = {NULL, 0, ops, 2, NULL, 0};
	struct store_txn_resp tr;
	assert_int_equal(store_txn(w, &t, &tr), CAIRN_ELEASENOTFOUND);
	assert_int_equal(store_put(w, &p3, NULL), 0);
	assert_int_equal(store_wtxn_revision(w), 3);
	assert_int_equal(store_wtxn_set_applied(w, 10), 0);
	assert_int_equal(store_wtxn_set_meta(w, "membership", "abc", 3), 0);
	assert_int_equal(store_wtxn_commit(w), 0);
	assert_int_equal(tu_rev(S), 3);
	expect_val(S, "one", 0, "1");
	expect_val(S, "two", 0, NULL);
	expect_val(S, "t1", 0, NULL);
	expect_val(S, "three", 3, "3");
	struct store_rtxn *r;
	assert_int_equal(store_rtxn_begin(S, &r), 0);
	assert_int_equal(store_rtxn_applied(r), 10);
	const void *m;
	size_t ml;
	assert_int_equal(store_rtxn_get_meta(r, "membership", &m, &ml), 0);
	assert_int_equal(ml, 3);
	assert_memory_equal(m, "abc", 3);
	assert_int_equal(store_rtxn_get_meta(r, "nope", &m, &ml), CAIRN_ENOTFOUND);
	store_rtxn_end(r);
	/* applied never goes backwards; aborted batch leaves nothing */
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	assert_int_equal(store_wtxn_set_applied(w, 9), CAIRN_EINVAL);
	assert_int_equal(store_put(w, &p1, NULL), 0);
	store_wtxn_abort(w);
	assert_int_equal(tu_rev(S), 3);
}

/* store_wtxn_get_meta sees the batch's own writes and deletes; what it
 * sees is what store_rtxn_get_meta sees after the commit. */
static void test_wtxn_meta(void **state)
{
	struct store_wtxn *w;
	const void *m;
	size_t ml;
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	assert_int_equal(store_wtxn_get_meta(w, "cluster", &m, &ml), CAIRN_ENOTFOUND);
	assert_int_equal(store_wtxn_set_meta(w, "cluster", "one", 3), 0);
	assert_int_equal(store_wtxn_get_meta(w, "cluster", &m, &ml), 0);
	assert_int_equal(ml, 3);
	assert_memory_equal(m, "one", 3);
	assert_int_equal(store_wtxn_set_meta(w, "cluster", "second", 6), 0);
	assert_int_equal(store_wtxn_get_meta(w, "cluster", &m, &ml), 0);
	assert_int_equal(ml, 6);
	assert_memory_equal(m, "second", 6);
	assert_int_equal(store_wtxn_set_meta(w, "gone", "x", 1), 0);
	assert_int_equal(store_wtxn_set_meta(w, "gone", NULL, 0), 0);
	assert_int_equal(store_wtxn_get_meta(w, "gone", &m, &ml), CAIRN_ENOTFOUND);
	/* an empty blob is set, not missing */
	assert_int_equal(store_wtxn_set_meta(w, "empty", "", 0), 0);
	assert_int_equal(store_wtxn_get_meta(w, "empty", &m, &ml), 0);
	assert_int_equal(ml, 0);
	/* names as store_wtxn_set_meta takes them */
	char name[66];
	memset(name, 'n', 65);
	name[65] = 0;
	assert_int_equal(store_wtxn_get_meta(w, name, &m, &ml), CAIRN_EINVAL);
	assert_int_equal(store_wtxn_get_meta(w, "", &m, &ml), CAIRN_EINVAL);
	assert_int_equal(store_wtxn_get_meta(w, NULL, &m, &ml), CAIRN_EINVAL);
	name[64] = 0;
	assert_int_equal(store_wtxn_set_meta(w, name, "64", 2), 0);
	assert_int_equal(store_wtxn_get_meta(w, name, &m, &ml), 0);
	assert_memory_equal(m, "64", 2);
	/* not the store's own meta records */
	assert_int_equal(store_wtxn_get_meta(w, "rev", &m, &ml), CAIRN_ENOTFOUND);
	assert_int_equal(store_wtxn_commit(w), 0);

	struct store_rtxn *r;
	assert_int_equal(store_rtxn_begin(S, &r), 0);
	assert_int_equal(store_rtxn_get_meta(r, "cluster", &m, &ml), 0);
	assert_int_equal(ml, 6);
	assert_memory_equal(m, "second", 6);
	assert_int_equal(store_rtxn_get_meta(r, "gone", &m, &ml), CAIRN_ENOTFOUND);
	assert_int_equal(store_rtxn_get_meta(r, name, &m, &ml), 0);
	store_rtxn_end(r);

	/* a later batch starts from the committed state; an abort keeps it */
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	assert_int_equal(store_wtxn_get_meta(w, "cluster", &m, &ml), 0);
	assert_memory_equal(m, "second", 6);
	assert_int_equal(store_wtxn_set_meta(w, "cluster", NULL, 0), 0);
	assert_int_equal(store_wtxn_get_meta(w, "cluster", &m, &ml), CAIRN_ENOTFOUND);
	store_wtxn_abort(w);
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	assert_int_equal(store_wtxn_get_meta(w, "cluster", &m, &ml), 0);
	assert_memory_equal(m, "second", 6);
	store_wtxn_abort(w);
}

/* ---- leases ----------------------------------------------------------------- */

static void test_leases(void **state)
{
	struct store_wtxn *w;
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	assert_int_equal(store_lease_grant(w, 1, 30), 0);
	assert_int_equal(store_lease_grant(w, 2, 60), 0);
	assert_int_equal(store_lease_grant(w, 1, 5), CAIRN_ELEASEEXIST);
	assert_int_equal(store_lease_grant(w, 0, 5), CAIRN_EINVAL);
	assert_int_equal(store_lease_checkpoint(w, 2, 42), 0);
	assert_int_equal(store_wtxn_commit(w), 0);
	assert_int_equal(tu_put_lease(S, "a", "1", 1), 0);
	assert_int_equal(tu_put_lease(S, "b", "1", 1), 0);
	assert_int_equal(tu_put_lease(S, "c", "1", 1), 0);
	assert_int_equal(tu_put_lease(S, "c", "2", 2), 0); /* moves to lease 2 */
	assert_int_equal(tu_put_lease(S, "x", "1", 3), CAIRN_ELEASENOTFOUND);
	assert_int_equal(tu_put(S, "plain", "1"), 0);
	/* ignore_lease keeps the lease */
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	struct store_put_req il = {B("a"), 1, B("v"), 1, 0, false, false, true};
	assert_int_equal(store_put(w, &il, NULL), 0);
	struct store_put_req iv = {B("a"), 1, NULL, 0, 0, false, true, true};
	assert_int_equal(store_put(w, &iv, NULL), 0);
	assert_int_equal(store_wtxn_commit(w), 0);
	struct store_kv kv;
	char buf[8];
	assert_int_equal(tu_get(S, "a", 0, buf, sizeof(buf), &kv), 0);
	assert_int_equal(kv.lease, 1);
	assert_string_equal(buf, "v");
	assert_int_equal(kv.version, 3);

	struct store_rtxn *r;
	struct store_lease l;
	struct store_lease_keys lk;
	assert_int_equal(store_rtxn_begin(S, &r), 0);
	assert_int_equal(store_lease_lookup(r, 2, &l), 0);
	assert_int_equal(l.ttl, 60);
	assert_int_equal(l.remaining_ttl, 42);
	assert_int_equal(store_lease_lookup(r, 3, &l), CAIRN_ELEASENOTFOUND);
	assert_int_equal(store_lease_keys(r, 1, &lk), 0);
	assert_int_equal(lk.n_keys, 2);
	assert_memory_equal(lk.keys[0].key, "a", 1);
	assert_memory_equal(lk.keys[1].key, "b", 1);
	store_lease_keys_free(&lk);
	struct store_lease *ls;
	size_t nl;
	assert_int_equal(store_lease_list(r, &ls, &nl), 0);
	assert_int_equal(nl, 2);
	assert_int_equal(ls[0].id, 1);
	assert_int_equal(ls[1].id, 2);
	free(ls);
	store_rtxn_end(r);

	int64_t before = tu_rev(S), rev;
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	assert_int_equal(store_lease_revoke(w, 1, &rev), 0);
	assert_int_equal(store_lease_revoke(w, 1, &rev), CAIRN_ELEASENOTFOUND);
	assert_int_equal(store_wtxn_commit(w), 0);
	assert_int_equal(rev, before + 1); /* both keys in one revision */
	expect_val(S, "a", 0, NULL);
	expect_val(S, "b", 0, NULL);
	expect_val(S, "c", 0, "2");
	assert_int_equal(store_rtxn_begin(S, &r), 0);
	struct store_history_req hr = {
	    .key = B("a"), .key_len = 1, .range_end = B("z"), .range_end_len = 1, .from_rev = rev};
	struct store_history_resp hs;
	assert_int_equal(store_history(r, &hr, &hs), 0);
	assert_int_equal(hs.n_events, 2);
	assert_int_equal(hs.events[0].type, STORE_EVENT_DELETE);
	assert_int_equal(hs.events[1].kv.mod_revision, rev);
	store_history_resp_free(&hs);
	assert_int_equal(store_lease_keys(r, 1, &lk), CAIRN_ELEASENOTFOUND);
	store_rtxn_end(r);
	/* revoking a lease without keys: no revision */
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	assert_int_equal(store_lease_grant(w, 5, 1), 0);
	assert_int_equal(store_lease_revoke(w, 5, &rev), 0);
	assert_int_equal(store_wtxn_commit(w), 0);
	assert_int_equal(rev, before + 1);
	/* deleting a key detaches it */
	assert_int_equal(tu_del(S, "c", NULL), 1);
	assert_int_equal(store_rtxn_begin(S, &r), 0);
	assert_int_equal(store_lease_keys(r, 2, &lk), 0);
	assert_int_equal(lk.n_keys, 0);
	store_lease_keys_free(&lk);
	store_rtxn_end(r);
}

/* ---- limits ----------------------------------------------------------------- */

static void test_bad_input(void **state)
{
	assert_int_equal(tu_put(S, "k", "v"), 0);
	struct store_rtxn *r;
	uint32_t h0, h1;
	assert_int_equal(store_rtxn_begin(S, &r), 0);
	assert_int_equal(store_hash_kv(r, 0, &h0, NULL, NULL), 0);
	store_rtxn_end(r);

	struct store_wtxn *w;
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	static uint8_t big[2 << 20];
	char longkey[600];
	memset(longkey, 'k', sizeof(longkey));
	struct store_put_req p = {B(""), 0, B("v"), 1, 0, false, false, false};
	assert_int_equal(store_put(w, &p, NULL), CAIRN_EKEYEMPTY);
	p.key = B(longkey);
	p.key_len = 512;
	assert_int_equal(store_put(w, &p, NULL), CAIRN_EKEYTOOLARGE);
	p.key_len = 511; /* the largest allowed: fine */
	assert_int_equal(store_put(w, &p, NULL), 0);
	store_wtxn_abort(w);
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	p.key = B("k");
	p.key_len = 1;
	p.value = big;
	p.value_len = STORE_DEFAULT_MAX_REQUEST;
	assert_int_equal(store_put(w, &p, NULL), CAIRN_EVALUETOOLARGE);
	p.value_len = 1;
	p.ignore_value = true;
	assert_int_equal(store_put(w, &p, NULL), CAIRN_EVALUEPROVIDED);
	p.value_len = 0;
	p.key = B("missing");
	p.key_len = 7;
	assert_int_equal(store_put(w, &p, NULL), CAIRN_EKEYNOTFOUND);
	p.ignore_value = false;
	p.ignore_lease = true;
	p.lease = 3;
	assert_int_equal(store_put(w, &p, NULL), CAIRN_ELEASEPROVIDED);
	struct store_delete_req d = {B(""), 0, NULL, 0, false};
	assert_int_equal(store_delete_range(w, &d, NULL), CAIRN_EKEYEMPTY);
	/* txn limits */
	struct store_op many[129];
	for (int i = 0; i < 129; i++)
		many[i] = op_range("k", NULL);
	struct store_txn_req t = {NULL, 0, many, 129, NULL, 0};
	struct store_txn_resp tr;
	assert_int_equal(store_txn(w, &t, &tr), CAIRN_ETOOMANYOPS);
	struct store_op bigops[2] = {op_put("a", ""), op_put("b", "")};
	bigops[0].u.put.value = big;
	bigops[0].u.put.value_len = 1 << 20;
	bigops[1].u.put.value = big;
	bigops[1].u.put.value_len = 1 << 20;
	t.success = bigops;
	t.n_success = 2;
	assert_int_equal(store_txn(w, &t, &tr), CAIRN_EVALUETOOLARGE);
	assert_int_equal(store_compact(w, 5), CAIRN_EFUTUREREV);
	assert_int_equal(store_wtxn_revision(w), 2);
	assert_int_equal(store_wtxn_commit(w), 0);

	assert_int_equal(tu_rev(S), 2);
	assert_int_equal(store_rtxn_begin(S, &r), 0);
	assert_int_equal(store_hash_kv(r, 0, &h1, NULL, NULL), 0);
	store_rtxn_end(r);
	assert_int_equal(h0, h1);
}

static void test_quota_and_map_full(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	struct store *s;
	struct store_config cfg = {
	    .dir = dir, .nosync = true, .quota_bytes = 1 << 20, .map_size = 64u << 20};
	assert_int_equal(store_open(&cfg, &s), 0);
	struct store_wtxn *w;
	assert_int_equal(store_wtxn_begin(s, &w), 0);
	assert_int_equal(store_lease_grant(w, 9, 60), 0);
	assert_int_equal(store_wtxn_commit(w), 0);
	assert_int_equal(tu_put_lease(s, "leased", "l", 9), 0); /* rev 2 */
	static char val[100001];
	memset(val, 'v', sizeof(val) - 1);
	int rc = 0, n = 0;
	char key[32];
	while (rc == 0 && n < 100) {
		snprintf(key, sizeof(key), "key%03d", n);
		rc = tu_put(s, key, val);
		if (rc == 0)
			n++;
	}
	assert_int_equal(rc, CAIRN_ENOSPACE);
	assert_true(n > 3 && n < 12);
	int64_t rev = tu_rev(s);
	assert_int_equal(rev, 2 + n);
	/* a txn writing what a put could not is refused too, changing nothing */
	struct store_op tp = op_put("txnkey", val);
	struct store_txn_req tr = {.success = &tp, .n_success = 1};
	struct store_txn_resp tresp;
	assert_int_equal(run_txn(s, &tr, &tresp), CAIRN_ENOSPACE);
	assert_int_equal(tu_rev(s), rev);
	assert_int_equal(store_wtxn_begin(s, &w), 0);
	/* a revoke still works over quota: one revision deletes its key */
	int64_t rrev = 0;
	assert_int_equal(store_lease_revoke(w, 9, &rrev), 0);
	assert_int_equal(store_wtxn_commit(w), 0);
	assert_int_equal(rrev, rev + 1);
	rev++;
	char small[8];
	assert_int_equal(tu_get(s, "leased", 0, small, sizeof(small), NULL), CAIRN_ENOTFOUND);
	/* reads, deletes and compaction still work; then puts fit again */
	assert_int_equal(tu_get(s, "key000", 0, small, sizeof(small), NULL), 0);
	assert_int_equal(tu_del(s, "key", "kez"), n);
	assert_int_equal(tu_compact(s, n + 2, true), 0);
	assert_int_equal(tu_put(s, "again", "x"), 0);
	assert_int_equal(tu_check(s), 0);
	store_close(s);
	tu_rmrf(dir);

	/* MDB_MAP_FULL: a map smaller than the quota */
	cfg.quota_bytes = 64u << 20;
	cfg.map_size = 1u << 20;
	assert_int_equal(store_open(&cfg, &s), 0);
	assert_int_equal(store_wtxn_begin(s, &w), 0);
	struct store_put_req p = {B("small"), 5, B("1"), 1, 0, false, false, false};
	assert_int_equal(store_put(w, &p, NULL), 0);
	rc = 0;
	for (n = 0; rc == 0 && n < 100; n++) {
		snprintf(key, sizeof(key), "big%03d", n);
		struct store_put_req bp = {B(key), strlen(key), B(val), sizeof(val) - 1,
		                           0,      false,       false,  false};
		rc = store_put(w, &bp, NULL);
	}
	assert_int_equal(rc, CAIRN_ENOSPACE);
	/* the batch is still usable and keeps what succeeded */
	p.key = B("after");
	assert_int_equal(store_put(w, &p, NULL), 0);
	assert_int_equal(store_wtxn_commit(w), 0);
	expect_val(s, "small", 0, "1");
	expect_val(s, "after", 0, "1");
	assert_int_equal(tu_check(s), 0);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

/* Raft writes into the same batch can fill the map behind the store's size
 * estimate: the failing put returns CAIRN_ENOSPACE, the batch then either
 * still commits (mutation undone in a nested txn) or fails as a whole; the
 * store stays consistent either way and works after. */
static void test_map_full_by_raft_writes(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	struct store *s;
	struct store_config cfg = {
	    .dir = dir, .nosync = true, .quota_bytes = 64u << 20, .map_size = 2u << 20};
	assert_int_equal(store_open(&cfg, &s), 0);
	assert_int_equal(tu_put(s, "before", "1"), 0);
	struct store_wtxn *w;
	assert_int_equal(store_wtxn_begin(s, &w), 0);
	MDB_txn *t = store_wtxn_mdb(w);
	MDB_dbi log;
	assert_int_equal(mdb_dbi_open(t, "raft_log", MDB_CREATE, &log), 0);
	static char blob[100000], val[50000];
	for (uint32_t i = 0; i < 14; i++) {
		MDB_val k = {4, &i}, d = {sizeof(blob), blob};
		assert_int_equal(mdb_put(t, log, &k, &d, 0), 0);
	}
	int rc = 0, n;
	for (n = 0; rc == 0 && n < 100; n++) {
		char key[16];
		snprintf(key, sizeof(key), "k%d", n);
		struct store_put_req p = {B(key), strlen(key), B(val), sizeof(val),
		                          0,      false,       false,  false};
		rc = store_put(w, &p, NULL);
	}
	assert_int_equal(rc, CAIRN_ENOSPACE);
	rc = store_wtxn_commit(w);
	assert_true(rc == 0 || rc == CAIRN_ENOSPACE);
	assert_int_equal(tu_check(s), 0);
	expect_val(s, "before", 0, "1");
	store_close(s);
	assert_int_equal(store_open(&cfg, &s), 0);
	assert_int_equal(tu_check(s), 0);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

/* ---- lifecycle, locking, snapshots, shared env ------------------------------ */

static void test_lock_and_readonly(void **state)
{
	struct fx *f = *state;
	assert_int_equal(tu_put(S, "k", "v"), 0);
	struct store *s2;
	assert_int_equal(tu_open(f->dir, &s2), CAIRN_ELOCKED);
	/* a read-only opener in another process, beside the running writer;
	 * it sees each committed state */
	int p2c[2], c2p[2];
	assert_int_equal(pipe(p2c), 0);
	assert_int_equal(pipe(c2p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct store_config cfg = {.dir = f->dir, .read_only = true};
		struct store *ro;
		char buf[16], c;
		int ok = store_open(&cfg, &ro) == 0 && tu_get(ro, "k", 0, buf, 16, NULL) == 0 &&
		         strcmp(buf, "v") == 0;
		struct store_wtxn *w;
		ok = ok && store_wtxn_begin(ro, &w) == CAIRN_EREADONLY;
		ok = ok && write(c2p[1], "1", 1) == 1 && read(p2c[0], &c, 1) == 1;
		ok = ok && tu_get(ro, "k", 0, buf, 16, NULL) == 0 && strcmp(buf, "v2") == 0;
		ok = ok && tu_check(ro) == 0;
		store_close(ro);
		_exit(ok ? 0 : 1);
	}
	char c;
	assert_int_equal(read(c2p[0], &c, 1), 1);
	assert_int_equal(tu_put(S, "k", "v2"), 0);
	assert_int_equal(write(p2c[1], "1", 1), 1);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(p2c[0]);
	close(p2c[1]);
	close(c2p[0]);
	close(c2p[1]);
	/* reopen keeps everything */
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(tu_open(f->dir, &f->s), 0);
	expect_val(f->s, "k", 0, "v2");
	expect_val(f->s, "k", 2, "v");
	expect_val(f->s, "k", 1, NULL);
	/* read-only on a directory without a store */
	char *empty = tu_tmpdir();
	struct store_config rc = {.dir = empty, .read_only = true};
	assert_int_equal(store_open(&rc, &s2), CAIRN_ENOTFOUND);
	tu_rmrf(empty);
	free(empty);
	store_close(NULL);
}

/* A data dir of schema 1 (one index database, no "recent"): a read-only
 * opener reads index alone, a writer creates recent and writes schema 2. */
static void test_schema1_upgrade(void **state)
{
	struct fx *f = *state;
	for (int i = 0; i < 20; i++) {
		char k[16], v[16];
		snprintf(k, sizeof(k), "k%02d", i % 7);
		snprintf(v, sizeof(v), "v%d", i);
		assert_int_equal(tu_put(S, k, v), 0);
	}
	/* make it schema 1: recent's items into index, recent deleted */
	struct store_wtxn *w;
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	MDB_txn *t = store_wtxn_mdb(w);
	MDB_dbi idx, rec, meta;
	assert_int_equal(mdb_dbi_open(t, "index", MDB_DUPSORT | MDB_DUPFIXED, &idx), 0);
	assert_int_equal(mdb_dbi_open(t, "recent", MDB_DUPSORT | MDB_DUPFIXED, &rec), 0);
	assert_int_equal(mdb_dbi_open(t, "meta", 0, &meta), 0);
	MDB_cursor *c;
	assert_int_equal(mdb_cursor_open(t, rec, &c), 0);
	MDB_val k, d;
	int moved = 0;
	while (mdb_cursor_get(c, &k, &d, MDB_FIRST) == 0) {
		uint8_t kb[64], db[17];
		assert_true(k.mv_size <= sizeof(kb) && d.mv_size == sizeof(db));
		memcpy(kb, k.mv_data, k.mv_size);
		memcpy(db, d.mv_data, d.mv_size);
		MDB_val k2 = {k.mv_size, kb}, d2 = {sizeof(db), db};
		assert_int_equal(mdb_cursor_del(c, 0), 0);
		assert_int_equal(mdb_put(t, idx, &k2, &d2, 0), 0);
		moved++;
	}
	mdb_cursor_close(c);
	assert_true(moved > 0);
	assert_int_equal(mdb_drop(t, rec, 1), 0);
	uint8_t one[8] = {0, 0, 0, 0, 0, 0, 0, 1};
	MDB_val sk = {6, "schema"}, sv = {8, one};
	assert_int_equal(mdb_put(t, meta, &sk, &sv, 0), 0);
	assert_int_equal(mdb_txn_commit(t), 0);
	free(w);
	store_close(f->s);
	f->s = NULL;
	/* read-only: index alone */
	struct store_config cfg = {.dir = f->dir, .read_only = true};
	struct store *ro;
	assert_int_equal(store_open(&cfg, &ro), 0);
	expect_val(ro, "k03", 0, "v17");
	expect_val(ro, "k03", 12, "v10");
	assert_int_equal(tu_check(ro), 0);
	store_close(ro);
	/* a writer upgrades; reads and writes go on over both */
	assert_int_equal(tu_open(f->dir, &f->s), 0);
	expect_val(f->s, "k03", 0, "v17");
	for (int i = 0; i < 10; i++)
		assert_int_equal(tu_put(f->s, "k03", "new"), 0);
	expect_val(f->s, "k03", 0, "new");
	expect_val(f->s, "k03", 12, "v10");
	assert_int_equal(tu_check(f->s), 0);
	MDB_txn *rt;
	assert_int_equal(mdb_txn_begin(store_env(f->s), NULL, MDB_RDONLY, &rt), 0);
	assert_int_equal(mdb_dbi_open(rt, "meta", 0, &meta), 0);
	assert_int_equal(mdb_get(rt, meta, &sk, &sv), 0);
	assert_int_equal(sv.mv_size, 8);
	assert_int_equal(((const uint8_t *)sv.mv_data)[7], 2);
	mdb_txn_abort(rt);
}

static void test_snapshot_restore(void **state)
{
	for (int i = 0; i < 200; i++) {
		char k[16], v[16];
		snprintf(k, sizeof(k), "k%03d", i % 50);
		snprintf(v, sizeof(v), "v%d", i);
		assert_int_equal(tu_put(S, k, v), 0);
	}
	assert_int_equal(tu_compact(S, 121, false), 0);
	char path[600];
	snprintf(path, sizeof(path), "%s/snap", ((struct fx *)*state)->dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	/* a writer keeps going while the snapshot is taken */
	struct store_wtxn *w;
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	struct store_put_req p = {B("late"), 4, B("x"), 1, 0, false, false, false};
	assert_int_equal(store_put(w, &p, NULL), 0);
	assert_int_equal(store_snapshot_write(S, fd), 0);
	assert_int_equal(store_wtxn_commit(w), 0);
	lseek(fd, 0, SEEK_SET);
	char *dir2 = tu_tmpdir();
	char sub[600];
	snprintf(sub, sizeof(sub), "%s/restored", dir2);
	assert_int_equal(store_snapshot_restore(fd, sub), 0);
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(store_snapshot_restore(fd, sub), CAIRN_EEXIST);
	close(fd);
	struct store *s2;
	assert_int_equal(tu_open(sub, &s2), 0);
	assert_int_equal(tu_check(s2), 0);
	assert_int_equal(tu_rev(s2), 201);
	expect_val(s2, "late", 0, NULL);
	expect_val(s2, "k049", 0, "v199");
	struct store_rtxn *r1, *r2;
	uint32_t h1, h2;
	assert_int_equal(store_rtxn_begin(S, &r1), 0);
	assert_int_equal(store_rtxn_begin(s2, &r2), 0);
	assert_int_equal(store_hash_kv(r1, 201, &h1, NULL, NULL), 0);
	assert_int_equal(store_hash_kv(r2, 201, &h2, NULL, NULL), 0);
	assert_int_equal(h1, h2);
	assert_int_equal(store_rtxn_compact_revision(r2), 121);
	store_rtxn_end(r1);
	store_rtxn_end(r2);
	store_close(s2);
	tu_rmrf(dir2);
	free(dir2);
}

static void test_shared_env(void **state)
{
	struct fx *f = *state;
	struct store_wtxn *w;
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	MDB_txn *t = store_wtxn_mdb(w);
	MDB_dbi log;
	assert_int_equal(mdb_dbi_open(t, "raft_log", MDB_CREATE, &log), 0);
	MDB_val k = {3, "idx"}, d = {5, "entry"};
	assert_int_equal(mdb_put(t, log, &k, &d, 0), 0);
	struct store_put_req p = {B("k"), 1, B("v"), 1, 0, false, false, false};
	assert_int_equal(store_put(w, &p, NULL), 0);
	assert_int_equal(store_wtxn_set_applied(w, 1), 0);
	assert_int_equal(store_wtxn_commit(w), 0);
	store_close(f->s);
	assert_int_equal(tu_open(f->dir, &f->s), 0);
	MDB_txn *rt;
	assert_int_equal(mdb_txn_begin(store_env(f->s), NULL, MDB_RDONLY, &rt), 0);
	assert_int_equal(mdb_dbi_open(rt, "raft_log", 0, &log), 0);
	assert_int_equal(mdb_get(rt, log, &k, &d), 0);
	assert_memory_equal(d.mv_data, "entry", 5);
	mdb_txn_abort(rt);
	expect_val(f->s, "k", 0, "v");
}

/* Lazy meta sync: a commit that changed something reports that it flushed
 * (making every earlier commit durable); one that changed nothing does not,
 * nor does any commit without fsync; store_sync works in both modes. */
static void test_lazy_meta_sync(void **state)
{
	(void)state;
	for (int nosync = 0; nosync < 2; nosync++) {
		char *dir = tu_tmpdir();
		struct store_config cfg = {.dir = dir,
		                           .nosync = nosync,
		                           .lazy_meta_sync = true,
		                           .map_size = 64u << 20,
		                           .quota_bytes = 32u << 20};
		struct store *s;
		assert_int_equal(store_open(&cfg, &s), 0);
		unsigned flags = 0;
		mdb_env_get_flags(store_env(s), &flags);
		assert_true(flags & MDB_NOMETASYNC);
		struct store_wtxn *w;
		bool flushed = !nosync;
		assert_int_equal(store_wtxn_begin(s, &w), 0);
		struct store_put_req p = {B("k"), 1, B("v"), 1, 0, false, false, false};
		assert_int_equal(store_put(w, &p, NULL), 0);
		assert_int_equal(store_wtxn_commit_flushed(w, &flushed), 0);
		assert_int_equal(flushed, !nosync);
		flushed = true;
		assert_int_equal(store_wtxn_begin(s, &w), 0);
		assert_int_equal(store_wtxn_commit_flushed(w, &flushed), 0);
		assert_false(flushed); /* nothing changed: nothing written */
		assert_int_equal(store_sync(s), 0);
		store_close(s);
		assert_int_equal(tu_open(dir, &s), 0);
		expect_val(s, "k", 0, "v");
		store_close(s);
		tu_rmrf(dir);
		free(dir);
	}
}

static void test_check_detects_corruption(void **state)
{
	assert_int_equal(tu_put(S, "a", "1"), 0);
	assert_int_equal(tu_put(S, "a", "2"), 0);
	assert_int_equal(tu_check(S), 0);
	/* plant an index item without a record */
	struct store_wtxn *w;
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	MDB_txn *t = store_wtxn_mdb(w);
	MDB_dbi idx;
	assert_int_equal(mdb_dbi_open(t, "index", MDB_DUPSORT | MDB_DUPFIXED, &idx), 0);
	uint8_t item[17] = {0};
	item[7] = 9;
	MDB_val k = {1, "b"}, d = {17, item};
	assert_int_equal(mdb_put(t, idx, &k, &d, 0), 0);
	assert_int_equal(store_wtxn_commit(w), 0);
	char msg[128];
	assert_int_equal(store_check(S, msg, sizeof(msg)), CAIRN_ECORRUPT);
	assert_true(strlen(msg) > 0);
	/* repair so teardown's check passes */
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	t = store_wtxn_mdb(w);
	assert_int_equal(mdb_del(t, idx, &k, &d), 0);
	assert_int_equal(store_wtxn_commit(w), 0);
}

static uint64_t db_items(struct store *s, const char *name)
{
	struct store_wtxn *w;
	assert_int_equal(store_wtxn_begin(s, &w), 0);
	MDB_txn *t = store_wtxn_mdb(w);
	MDB_dbi d;
	MDB_stat st;
	assert_int_equal(mdb_dbi_open(t, name, MDB_DUPSORT | MDB_DUPFIXED, &d), 0);
	assert_int_equal(mdb_stat(t, d, &st), 0);
	store_wtxn_abort(w);
	return st.ms_entries;
}

/* Puts go to "recent"; a commit leaves at most tu_recent_items (3) there
 * and moves whole keys to "index"; reads see the union (store_index.c). */
static void test_index_recent_slices(void **state)
{
	char k[16], v[16];
	for (int i = 0; i < 10; i++) {
		snprintf(k, sizeof(k), "k%d", i);
		assert_int_equal(tu_put(S, k, "v"), 0);
	}
	assert_true(db_items(S, "recent") <= 3);
	assert_int_equal(db_items(S, "recent") + db_items(S, "index"), 10);
	/* many versions of one key end up split over both, in order */
	for (int i = 0; i < 9; i++) {
		snprintf(v, sizeof(v), "v%d", i);
		assert_int_equal(tu_put(S, "k5", v), 0);
	}
	char buf[16];
	/* k0..k9 at revisions 2..11 (k5 at 7), then k5 at 12..20 */
	assert_int_equal(tu_get(S, "k5", 0, buf, sizeof(buf), NULL), 0);
	assert_string_equal(buf, "v8");
	assert_int_equal(tu_get(S, "k5", 11, buf, sizeof(buf), NULL), 0);
	assert_string_equal(buf, "v");
	assert_int_equal(tu_get(S, "k5", 13, buf, sizeof(buf), NULL), 0);
	assert_string_equal(buf, "v1");
	assert_true(db_items(S, "index") > 0 && db_items(S, "recent") > 0);
	assert_int_equal(tu_check(S), 0);
}

/* store_check refuses a key whose items are not in revision order across
 * the two databases: here index's newest item of "a" also in recent. */
static void test_check_index_order(void **state)
{
	for (int i = 0; i < 6; i++)
		assert_int_equal(tu_put(S, "a", "x"), 0);
	assert_int_equal(tu_check(S), 0);
	struct store_wtxn *w;
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	MDB_txn *t = store_wtxn_mdb(w);
	MDB_dbi idx, rec;
	assert_int_equal(mdb_dbi_open(t, "index", MDB_DUPSORT | MDB_DUPFIXED, &idx), 0);
	assert_int_equal(mdb_dbi_open(t, "recent", MDB_DUPSORT | MDB_DUPFIXED, &rec), 0);
	MDB_cursor *c;
	assert_int_equal(mdb_cursor_open(t, idx, &c), 0);
	MDB_val k = {1, "a"}, d;
	assert_int_equal(mdb_cursor_get(c, &k, &d, MDB_SET), 0); /* a slice moved "a" */
	assert_int_equal(mdb_cursor_get(c, &k, &d, MDB_LAST_DUP), 0);
	uint8_t item[17];
	memcpy(item, d.mv_data, sizeof(item));
	mdb_cursor_close(c);
	k = (MDB_val){1, "a"};
	d = (MDB_val){17, item};
	assert_int_equal(mdb_put(t, rec, &k, &d, 0), 0);
	/* commit through LMDB itself: the store's commit could move it */
	assert_int_equal(mdb_txn_commit(t), 0);
	free(w);
	char msg[128];
	assert_int_equal(store_check(S, msg, sizeof(msg)), CAIRN_ECORRUPT);
	assert_non_null(strstr(msg, "after a newer one"));
	/* repair so teardown's check passes */
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	t = store_wtxn_mdb(w);
	assert_int_equal(mdb_del(t, rec, &k, &d), 0);
	assert_int_equal(mdb_txn_commit(t), 0);
	free(w);
	assert_int_equal(tu_check(S), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_revision_rules, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_index_recent_slices, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_check_index_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_schema1_upgrade, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_store, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_versions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_range_count_limit_sort, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_compaction, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_txn_compare_missing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_txn_nested_and_subrevs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_txn_dupkeys, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batch_with_failing_op, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wtxn_meta, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_leases, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
	    cmocka_unit_test(test_quota_and_map_full),
	    cmocka_unit_test(test_map_full_by_raft_writes),
	    cmocka_unit_test_setup_teardown(test_lock_and_readonly, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot_restore, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_shared_env, setup, teardown),
	    cmocka_unit_test(test_lazy_meta_sync),
	    cmocka_unit_test_setup_teardown(test_check_detects_corruption, setup, teardown),
	};
	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}

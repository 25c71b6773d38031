/*
 * test_store_model.c — model-based randomized test of the store.
 *
 * A small in-memory reference model (every version of every key kept in
 * plain arrays, etcd rules written out the naive way) receives the same
 * random operations as the store: puts (leases, ignore_value, prev_kv),
 * single and range deletes, txns with compares and nested txns (including
 * ones that must fail with EDUPKEY or a missing lease), lease grant/revoke,
 * compactions with sweep steps, reads at old revisions, history pages. After
 * every operation the whole key space is read back (through a read-only txn
 * inside the running batch) and compared with the model; batches of 1-4 ops
 * are committed or, sometimes, aborted (the model rolls back too). Between
 * batches: ranges with random sort/limit/filters, history pages, store_check
 * and, now and then, a close and reopen of the store.
 * Seeds are fixed; the seed and op number are printed on a mismatch. Each
 * seed runs with its own size of the index's "recent" database (1, 3, 40
 * items and the default), so keys' items are split between index and
 * recent in every way a commit's slice moves can leave them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/store_test_util.h"

#define NK           20
#define NL           5 /* lease ids 1..NL; NL is never granted */
#define OPS_PER_SEED 10000

struct ver {
	int64_t main, sub;
	bool tomb;
	char val[24];
	int64_t create, version, lease;
};

struct mkey {
	struct ver *v;
	size_t n, cap;
};

struct model {
	struct mkey k[NK];
	int64_t rev, compact; /* etcd's empty store: rev 1, compact 0 */
	bool lease[NL + 1];
	/* running mutation */
	int64_t main, sub;
};

static uint64_t rng_state;
static uint64_t seed_now;
static int op_now;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return n ? (uint32_t)(rng_state % n) : 0;
}

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "model mismatch: seed %llu op %d: %s (line %d)\n",         \
			        (unsigned long long)seed_now, op_now, #cond, __LINE__);            \
			fail();                                                                    \
		}                                                                                  \
	} while (0)

static void kname(int i, char *out)
{
	out[0] = 'k';
	out[1] = (char)('0' + i / 10);
	out[2] = (char)('0' + i % 10);
	out[3] = 0;
}

/* ---- model ---------------------------------------------------------------- */

static void model_free(struct model *m)
{
	for (int i = 0; i < NK; i++)
		free(m->k[i].v);
	memset(m, 0, sizeof(*m));
}

static void model_copy(struct model *dst, const struct model *src)
{
	*dst = *src;
	for (int i = 0; i < NK; i++) {
		dst->k[i].v = malloc((src->k[i].cap ? src->k[i].cap : 1) * sizeof(struct ver));
		if (src->k[i].n)
			memcpy(dst->k[i].v, src->k[i].v, src->k[i].n * sizeof(struct ver));
	}
}

/* Latest version of key i at rev (NULL if none / tombstone). */
static const struct ver *m_at(const struct model *m, int i, int64_t rev)
{
	const struct ver *best = NULL;
	for (size_t j = 0; j < m->k[i].n; j++)
		if (m->k[i].v[j].main <= rev)
			best = &m->k[i].v[j];
	return best && !best->tomb ? best : NULL;
}

static int64_t m_cur(const struct model *m)
{
	return m->sub ? m->main : m->rev;
}

static void m_begin(struct model *m)
{
	m->main = m->rev + 1;
	m->sub = 0;
}

static void m_end(struct model *m)
{
	if (m->sub)
		m->rev = m->main;
	m->sub = 0;
}

static void m_push(struct model *m, int i, const struct ver *v)
{
	struct mkey *k = &m->k[i];
	if (k->n == k->cap) {
		k->cap = k->cap ? k->cap * 2 : 8;
		k->v = realloc(k->v, k->cap * sizeof(*k->v));
	}
	k->v[k->n++] = *v;
}

static void m_put(struct model *m, int i, const char *val, int64_t lease)
{
	const struct ver *old = m_at(m, i, m_cur(m));
	struct ver v = {
	    m->main, m->sub++, false, "", old ? old->create : m->main, old ? old->version + 1 : 1,
	    lease};
	snprintf(v.val, sizeof(v.val), "%s", val);
	m_push(m, i, &v);
}

static void m_del(struct model *m, int i)
{
	struct ver v = {m->main, m->sub++, true, "", 0, 0, 0};
	m_push(m, i, &v);
}

static int key_index(const uint8_t *k);

/* ---- store helpers ------------------------------------------------------- */

/* Reads every key at rev through a read-only txn inside the batch and
 * compares with the model. */
static void compare_all(struct store_wtxn *w, const struct model *m, int64_t rev, int64_t limit)
{
	struct store_op op = {.type = STORE_OP_RANGE};
	op.u.range.key = B("k");
	op.u.range.key_len = 1;
	op.u.range.range_end = B("l");
	op.u.range.range_end_len = 1;
	op.u.range.revision = rev;
	op.u.range.limit = limit;
	struct store_txn_req t = {NULL, 0, &op, 1, NULL, 0};
	struct store_txn_resp resp;
	int rc = store_txn(w, &t, &resp);
	int64_t at = rev > 0 ? rev : m_cur(m);
	if (at > m_cur(m)) {
		CHECK(rc == CAIRN_EFUTUREREV);
		return;
	}
	if (at < m->compact) {
		CHECK(rc == CAIRN_ECOMPACTED);
		return;
	}
	CHECK(rc == 0);
	CHECK(resp.revision == m->rev);
	const struct store_range_resp *rr = &resp.responses[0].u.range;
	size_t j = 0;
	int64_t count = 0;
	for (int i = 0; i < NK; i++) {
		const struct ver *v = m_at(m, i, at);
		if (!v)
			continue;
		count++;
		if (limit && count > limit)
			continue;
		CHECK(j < rr->n_kvs);
		const struct store_kv *kv = &rr->kvs[j++];
		char name[8];
		kname(i, name);
		CHECK(kv->key_len == 3 && memcmp(kv->key, name, 3) == 0);
		CHECK(kv->value_len == strlen(v->val) &&
		      memcmp(kv->value, v->val, kv->value_len) == 0);
		CHECK(kv->create_revision == v->create);
		CHECK(kv->mod_revision == v->main);
		CHECK(kv->version == v->version);
		CHECK(kv->lease == v->lease);
	}
	CHECK(j == rr->n_kvs);
	CHECK(rr->count == count);
	CHECK(rr->more == (limit && count > limit));
	store_txn_resp_free(&resp);
}

/* A range at the current revision with a random sort, limit and min/max
 * filters, read through a committed view, against etcd's rules written out
 * naively: fetch all (or limit+1 in key order when neither sorting nor
 * filtering), filter, sort (ties by key), cut. */
struct mkv {
	int key;
	const struct ver *v;
};

static int sort_target, sort_desc;

static int mkv_cmp(const void *pa, const void *pb)
{
	const struct mkv *a = pa, *b = pb;
	int64_t x = 0, y = 0;
	int c = 0;
	switch (sort_target) {
	case STORE_SORT_VERSION:
		x = a->v->version, y = b->v->version;
		break;
	case STORE_SORT_CREATE:
		x = a->v->create, y = b->v->create;
		break;
	case STORE_SORT_MOD:
		x = a->v->main, y = b->v->main;
		break;
	case STORE_SORT_VALUE:
		c = strcmp(a->v->val, b->v->val);
		c = (c > 0) - (c < 0);
		break;
	default:
		break;
	}
	if (sort_target != STORE_SORT_VALUE)
		c = (x > y) - (x < y);
	if (sort_desc)
		c = -c;
	if (c == 0) {
		c = (a->key > b->key) - (a->key < b->key);
		if (sort_target == STORE_SORT_KEY && sort_desc)
			c = -c;
	}
	return c;
}

static void compare_sorted(struct store *s, const struct model *m)
{
	struct store_range_req req = {
	    .key = B("k"), .key_len = 1, .range_end = B("l"), .range_end_len = 1};
	req.limit = rnd(3) ? (int64_t)rnd(6) : 0;
	req.sort_order = (enum store_sort_order)rnd(3);
	req.sort_target = (enum store_sort_target)rnd(5);
	if (rnd(3) == 0)
		req.min_mod_revision = (int64_t)rnd((uint32_t)m->rev + 1);
	if (rnd(4) == 0)
		req.max_create_revision = (int64_t)rnd((uint32_t)m->rev + 1);
	struct mkv all[NK];
	size_t n = 0;
	int64_t count = 0;
	bool filters = req.min_mod_revision || req.max_create_revision;
	int64_t fetch =
	    req.sort_order == STORE_SORT_NONE && !filters && req.limit ? req.limit + 1 : 0;
	for (int i = 0; i < NK; i++) {
		const struct ver *v = m_at(m, i, m->rev);
		if (!v)
			continue;
		count++;
		if (fetch && (int64_t)n >= fetch)
			continue;
		if (req.min_mod_revision && v->main < req.min_mod_revision)
			continue;
		if (req.max_create_revision && v->create > req.max_create_revision)
			continue;
		all[n++] = (struct mkv){i, v};
	}
	int order = req.sort_order;
	if (req.sort_target != STORE_SORT_KEY && order == STORE_SORT_NONE)
		order = STORE_SORT_ASCEND;
	if (!(req.sort_target == STORE_SORT_KEY && order != STORE_SORT_DESCEND)) {
		sort_target = req.sort_target;
		sort_desc = order == STORE_SORT_DESCEND;
		qsort(all, n, sizeof(all[0]), mkv_cmp);
	}
	bool more = req.limit && (int64_t)n > req.limit;
	if (more)
		n = (size_t)req.limit;
	struct store_rtxn *r;
	struct store_range_resp resp;
	CHECK(store_rtxn_begin(s, &r) == 0);
	CHECK(store_range(r, &req, &resp) == 0);
	CHECK(resp.count == count);
	CHECK(resp.more == more);
	CHECK(resp.n_kvs == n);
	for (size_t j = 0; j < n && j < resp.n_kvs; j++) {
		CHECK(key_index(resp.kvs[j].key) == all[j].key);
		CHECK(resp.kvs[j].mod_revision == all[j].v->main);
	}
	store_range_resp_free(&resp);
	store_rtxn_end(r);
}

static int s_put(struct store_wtxn *w, int i, const char *val, int64_t lease, bool ignore_value,
                 struct store_put_resp *resp)
{
	char name[8];
	kname(i, name);
	struct store_put_req req = {B(name), 3,    B(val),       ignore_value ? 0 : strlen(val),
	                            lease,   true, ignore_value, false};
	return store_put(w, &req, resp);
}

/* ---- random operations ------------------------------------------------------ */

static void op_put(struct store_wtxn *w, struct model *m)
{
	int i = (int)rnd(NK);
	char val[24];
	snprintf(val, sizeof(val), "v%d", op_now);
	int64_t lease = rnd(4) == 0 ? (int64_t)rnd(NL) + 1 : 0;
	bool iv = rnd(10) == 0;
	const struct ver *old = m_at(m, i, m->rev);
	struct ver oldc = old ? *old : (struct ver){0};
	struct store_put_resp resp;
	int rc = s_put(w, i, val, lease, iv, &resp);
	if (iv && !old) {
		CHECK(rc == CAIRN_EKEYNOTFOUND);
		return;
	}
	if (lease && !m->lease[lease]) {
		CHECK(rc == CAIRN_ELEASENOTFOUND);
		return;
	}
	CHECK(rc == 0);
	CHECK(resp.revision == m->rev + 1);
	CHECK(resp.has_prev == (old != NULL));
	if (old)
		CHECK(resp.prev_kv.mod_revision == oldc.main &&
		      resp.prev_kv.value_len == strlen(oldc.val));
	store_put_resp_free(&resp);
	m_begin(m);
	m_put(m, i, iv ? oldc.val : val, lease);
	m_end(m);
}

static void op_delete(struct store_wtxn *w, struct model *m)
{
	int a = (int)rnd(NK), b = a + 1 + (int)rnd(5);
	char ka[8], kb[8];
	kname(a, ka);
	kname(b, kb);
	bool single = rnd(2) == 0, fromkey = rnd(8) == 0;
	struct store_delete_req req = {B(ka), 3, B(kb), single ? 0 : 3, true};
	if (fromkey) {
		req.range_end = B("\0");
		req.range_end_len = 1;
		b = NK;
	}
	if (single && !fromkey)
		b = a + 1;
	struct store_delete_resp resp;
	CHECK(store_delete_range(w, &req, &resp) == 0);
	m_begin(m);
	int64_t n = 0;
	for (int i = a; i < b && i < NK; i++) {
		const struct ver *v = m_at(m, i, m->rev);
		if (!v)
			continue;
		CHECK((size_t)n < resp.n_prev_kvs);
		CHECK(resp.prev_kvs[n].mod_revision == v->main);
		n++;
		m_del(m, i);
	}
	CHECK(resp.deleted == n);
	m_end(m);
	CHECK(resp.revision == m->rev);
	store_delete_resp_free(&resp);
}

static int bytes_cmp_str(const char *a, const struct store_compare *c)
{
	size_t al = strlen(a), n = al < c->value_len ? al : c->value_len;
	int x = n ? memcmp(a, c->value, n) : 0;
	if (x)
		return x > 0 ? 1 : -1;
	return (al > c->value_len) - (al < c->value_len);
}

static bool m_compare(const struct model *m, const struct store_compare *c, int i)
{
	const struct ver *v = m_at(m, i, m->rev);
	if (!v && c->target == STORE_CMP_VALUE)
		return false;
	struct ver zero = {0};
	if (!v)
		v = &zero;
	int x;
	switch (c->target) {
	case STORE_CMP_VALUE:
		x = bytes_cmp_str(v->val, c);
		break;
	case STORE_CMP_VERSION:
		x = (v->version > c->number) - (v->version < c->number);
		break;
	case STORE_CMP_CREATE:
		x = (v->create > c->number) - (v->create < c->number);
		break;
	case STORE_CMP_MOD:
		x = (v->main > c->number) - (v->main < c->number);
		break;
	default:
		x = (v->lease > c->number) - (v->lease < c->number);
	}
	switch (c->result) {
	case STORE_CMP_EQUAL:
		return x == 0;
	case STORE_CMP_GREATER:
		return x > 0;
	case STORE_CMP_LESS:
		return x < 0;
	default:
		return x != 0;
	}
}

/* A generated txn and the storage its pointers refer to. */
struct gtxn {
	char keys[24][8];
	char vals[24][24];
	int nk;
	struct store_compare cmp, icmp;
	int cmp_key, icmp_key;
	struct store_op succ[8], fail[4], ithen[2], ielse[2];
	size_t nsucc, nfail, nthen, nelse;
	struct store_txn_req outer, inner;
	int expect; /* expected error independent of the branch */
	bool bad_lease_in_success;
};

static const char *gkey(struct gtxn *g, int i)
{
	kname(i, g->keys[g->nk]);
	return g->keys[g->nk++];
}

static struct store_op gput(struct gtxn *g, int i, int64_t lease)
{
	struct store_op op = {.type = STORE_OP_PUT};
	op.u.put.key = B(gkey(g, i));
	op.u.put.key_len = 3;
	snprintf(g->vals[g->nk], sizeof(g->vals[0]), "t%d.%d", op_now, g->nk);
	op.u.put.value = B(g->vals[g->nk]);
	op.u.put.value_len = strlen(g->vals[g->nk]);
	op.u.put.lease = lease;
	op.u.put.prev_kv = rnd(2);
	return op;
}

static struct store_op gdel(struct gtxn *g, int a, int b)
{
	struct store_op op = {.type = STORE_OP_DELETE};
	op.u.del.key = B(gkey(g, a));
	op.u.del.key_len = 3;
	if (b > a + 1) {
		op.u.del.range_end = B(gkey(g, b));
		op.u.del.range_end_len = 3;
	}
	return op;
}

static void gcompare(struct gtxn *g, const struct model *m, struct store_compare *c, int *ki)
{
	*ki = (int)rnd(NK);
	c->key = B(gkey(g, *ki));
	c->key_len = 3;
	c->target = (enum store_cmp_target)rnd(5);
	c->result = (enum store_cmp_result)rnd(4);
	c->number = (int64_t)rnd((uint32_t)m->rev + 2);
	if (c->target == STORE_CMP_LEASE)
		c->number = rnd(3);
	if (c->target == STORE_CMP_VALUE) {
		const struct ver *v = m_at(m, *ki, m->rev);
		snprintf(g->vals[g->nk], sizeof(g->vals[0]), "%s", v && rnd(2) ? v->val : "v5");
		c->value = B(g->vals[g->nk]);
		c->value_len = strlen(g->vals[g->nk]);
		g->nk++;
	}
}

static int64_t granted_or_zero(const struct model *m)
{
	int64_t l = (int64_t)rnd(NL - 1) + 1;
	return rnd(3) == 0 && m->lease[l] ? l : 0;
}

static void gen_txn(struct gtxn *g, const struct model *m)
{
	memset(g, 0, sizeof(*g));
	gcompare(g, m, &g->cmp, &g->cmp_key);
	int used[5] = {0};
	int np = (int)rnd(3);
	for (int j = 0; j < np; j++) {
		int k = (int)rnd(5);
		if (used[k])
			continue;
		used[k] = 1;
		g->succ[g->nsucc++] = gput(g, k, granted_or_zero(m));
	}
	if (rnd(2)) {
		int a = 10 + (int)rnd(5);
		g->succ[g->nsucc++] = gdel(g, a, a + 1 + (int)rnd(15 - a));
	}
	if (rnd(3) == 0) {
		struct store_op op = {.type = STORE_OP_RANGE};
		op.u.range.key = B("k");
		op.u.range.key_len = 1;
		op.u.range.range_end = B("l");
		op.u.range.range_end_len = 1;
		g->succ[g->nsucc++] = op;
	}
	if (rnd(3) == 0) {
		gcompare(g, m, &g->icmp, &g->icmp_key);
		int t = 5 + (int)rnd(5);
		g->ithen[g->nthen++] = gput(g, t, 0);
		g->ithen[g->nthen++] = gdel(g, 15 + (int)rnd(5), 0);
		g->ielse[g->nelse++] = gput(g, rnd(2) ? t : 5 + (int)rnd(5), 0);
		g->inner =
		    (struct store_txn_req){&g->icmp, 1, g->ithen, g->nthen, g->ielse, g->nelse};
		struct store_op op = {.type = STORE_OP_TXN, .u.txn = &g->inner};
		g->succ[g->nsucc++] = op;
	}
	/* shuffle the success ops: their order is the sub revision order */
	for (size_t j = g->nsucc; j > 1; j--) {
		size_t x = rnd((uint32_t)j);
		struct store_op tmp = g->succ[j - 1];
		g->succ[j - 1] = g->succ[x];
		g->succ[x] = tmp;
	}
	int nf = (int)rnd(3);
	int usedf[5] = {0};
	for (int j = 0; j < nf; j++) {
		int k = (int)rnd(5);
		if (usedf[k])
			continue;
		usedf[k] = 1;
		g->fail[g->nfail++] = gput(g, k, 0);
	}
	int mode = (int)rnd(20);
	if (mode == 0 && g->nsucc && g->succ[0].type == STORE_OP_PUT) {
		g->succ[g->nsucc] = g->succ[0]; /* the same key twice */
		g->nsucc++;
		g->expect = CAIRN_EDUPKEY;
	} else if (mode == 1) {
		int k = (int)rnd(5);
		if (!used[k]) {
			g->succ[g->nsucc++] = gput(g, k, NL);
			g->bad_lease_in_success = true;
		}
	}
	g->outer = (struct store_txn_req){&g->cmp, 1, g->succ, g->nsucc, g->fail, g->nfail};
}

static int key_index(const uint8_t *k)
{
	return (k[1] - '0') * 10 + (k[2] - '0');
}

static void m_exec(struct model *m, const struct store_txn_req *t, bool ok,
                   const struct store_txn_resp *resp)
{
	const struct store_op *ops = ok ? t->success : t->failure;
	size_t n = ok ? t->n_success : t->n_failure;
	CHECK(resp->succeeded == ok);
	CHECK(resp->n_responses == n);
	for (size_t j = 0; j < n; j++) {
		const struct store_op *op = &ops[j];
		const struct store_op_resp *r = &resp->responses[j];
		CHECK(r->type == op->type);
		if (op->type == STORE_OP_PUT) {
			int i = key_index(op->u.put.key);
			const struct ver *old = m_at(m, i, m_cur(m));
			CHECK(r->u.put.has_prev == (op->u.put.prev_kv && old));
			char val[24];
			snprintf(val, sizeof(val), "%.*s", (int)op->u.put.value_len,
			         (const char *)op->u.put.value);
			m_put(m, i, val, op->u.put.lease);
		} else if (op->type == STORE_OP_DELETE) {
			int a = key_index(op->u.del.key);
			int b = op->u.del.range_end_len ? key_index(op->u.del.range_end) : a + 1;
			int64_t cnt = 0;
			for (int i = a; i < b; i++) {
				if (m_at(m, i, m_cur(m))) {
					m_del(m, i);
					cnt++;
				}
			}
			CHECK(r->u.del.deleted == cnt);
		} else if (op->type == STORE_OP_RANGE) {
			size_t c = 0;
			for (int i = 0; i < NK; i++) {
				const struct ver *v = m_at(m, i, m_cur(m));
				if (!v)
					continue;
				CHECK(c < r->u.range.n_kvs);
				CHECK(r->u.range.kvs[c].mod_revision == v->main);
				CHECK(r->u.range.kvs[c].version == v->version);
				c++;
			}
			CHECK(c == r->u.range.n_kvs);
		} else {
			const struct store_txn_req *in = op->u.txn;
			bool iok = m_compare(m, &in->compares[0], key_index(in->compares[0].key));
			m_exec(m, in, iok, r->u.txn);
		}
	}
}

static void op_txn(struct store_wtxn *w, struct model *m)
{
	struct gtxn *g = malloc(sizeof(*g));
	gen_txn(g, m);
	bool ok = m_compare(m, &g->cmp, g->cmp_key);
	int expect = g->expect;
	if (!expect && ok && g->bad_lease_in_success)
		expect = CAIRN_ELEASENOTFOUND;
	struct store_txn_resp resp;
	int rc = store_txn(w, &g->outer, &resp);
	CHECK(rc == expect);
	if (rc == 0) {
		m_begin(m);
		m_exec(m, &g->outer, ok, &resp);
		m_end(m);
		CHECK(resp.revision == m->rev);
		store_txn_resp_free(&resp);
	}
	free(g);
}

static void op_lease(struct store_wtxn *w, struct model *m)
{
	int64_t id = (int64_t)rnd(NL - 1) + 1;
	if (rnd(2)) {
		int rc = store_lease_grant(w, id, 10);
		CHECK(rc == (m->lease[id] ? CAIRN_ELEASEEXIST : 0));
		m->lease[id] = true;
		return;
	}
	int64_t rev;
	int rc = store_lease_revoke(w, id, &rev);
	if (!m->lease[id]) {
		CHECK(rc == CAIRN_ELEASENOTFOUND);
		return;
	}
	CHECK(rc == 0);
	m->lease[id] = false;
	m_begin(m);
	for (int i = 0; i < NK; i++) {
		const struct ver *v = m_at(m, i, m->rev);
		if (v && v->lease == id)
			m_del(m, i);
	}
	m_end(m);
	CHECK(rev == m->rev);
}

static void op_compact(struct store_wtxn *w, struct model *m)
{
	int64_t to = m->compact + (int64_t)rnd((uint32_t)(m->rev - m->compact) / 3 + 2);
	int rc = store_compact(w, to);
	if (to <= m->compact)
		CHECK(rc == CAIRN_ECOMPACTED);
	else if (to > m->rev)
		CHECK(rc == CAIRN_EFUTUREREV);
	else {
		CHECK(rc == 0);
		m->compact = to;
	}
}

static void op_sweep(struct store_wtxn *w)
{
	bool done;
	CHECK(store_compact_step(w, rnd(30), &done) == 0);
}

static size_t count_events(const struct model *m, int64_t from, int ka, int kb)
{
	size_t n = 0;
	for (int i = ka; i < kb; i++)
		for (size_t j = 0; j < m->k[i].n; j++) {
			const struct ver *v = &m->k[i].v[j];
			if (v->main < from || v->main < m->compact)
				continue;
			if (v->main == m->compact) {
				/* kept only if it is the latest <= compact and live */
				if (v->tomb ||
				    (j + 1 < m->k[i].n && m->k[i].v[j + 1].main <= m->compact))
					continue;
			}
			n++;
		}
	return n;
}

/* History of [from, rev] for all keys, paged, against the model. */
static void check_history(struct store *s, const struct model *m)
{
	int64_t lo = m->compact > 1 ? m->compact : 1;
	int64_t from = lo + (int64_t)rnd((uint32_t)(m->rev - lo + 1));
	struct store_rtxn *r;
	CHECK(store_rtxn_begin(s, &r) == 0);
	struct store_history_req req = {.key = B("k"),
	                                .key_len = 1,
	                                .range_end = B("l"),
	                                .range_end_len = 1,
	                                .from_rev = from,
	                                .limit = 1 + rnd(7),
	                                .prev_kv = true,
	                                .max_scan = rnd(3) ? 0 : 1 + rnd(10)};
	int ka = 0, kb = NK;
	if (rnd(2)) { /* a sub-range: sparse matches, max_scan pages past the rest */
		req.key = B("k05");
		req.key_len = 3;
		req.range_end = B("k09");
		req.range_end_len = 3;
		ka = 5;
		kb = 9;
	}
	size_t got = 0;
	/* expected events: every version with main in [from, rev], ordered */
	int64_t mm = -1, ms = -1;
	for (;;) {
		struct store_history_resp resp;
		CHECK(store_history(r, &req, &resp) == 0);
		for (size_t e = 0; e < resp.n_events; e++) {
			const struct store_event *ev = &resp.events[e];
			int64_t em = ev->kv.mod_revision, es = ev->sub_revision;
			CHECK(em > mm || (em == mm && es > ms));
			/* find the model version */
			int i = key_index(ev->kv.key);
			const struct ver *v = NULL;
			for (size_t j = 0; j < m->k[i].n; j++)
				if (m->k[i].v[j].main == em && m->k[i].v[j].sub == es)
					v = &m->k[i].v[j];
			CHECK(v != NULL);
			CHECK((ev->type == STORE_EVENT_DELETE) == v->tomb);
			if (!v->tomb)
				CHECK(ev->kv.version == v->version &&
				      ev->kv.value_len == strlen(v->val));
			if (em > m->compact) {
				const struct ver *p = m_at(m, i, em - 1);
				CHECK(ev->has_prev == (p != NULL));
				if (p)
					CHECK(ev->prev_kv.mod_revision == p->main);
			}
			mm = em;
			ms = es;
			got++;
		}
		/* no version was skipped between pages */
		bool more = resp.more;
		if (more) {
			req.from_rev = resp.next_rev;
			req.from_sub = resp.next_sub;
		}
		store_history_resp_free(&resp);
		if (!more)
			break;
	}
	CHECK(got == count_events(m, from, ka, kb));
	store_rtxn_end(r);
}

static void check_history_count(struct store *s, const struct model *m)
{
	int64_t from = m->compact > 1 ? m->compact : 1;
	struct store_rtxn *r;
	CHECK(store_rtxn_begin(s, &r) == 0);
	struct store_history_req req = {
	    .key = B("k"), .key_len = 1, .range_end = B("l"), .range_end_len = 1, .from_rev = from};
	struct store_history_resp resp;
	CHECK(store_history(r, &req, &resp) == 0);
	CHECK(resp.n_events == count_events(m, from, 0, NK));
	store_history_resp_free(&resp);
	if (m->compact > 1) {
		req.from_rev = m->compact - 1;
		CHECK(store_history(r, &req, &resp) == CAIRN_ECOMPACTED);
	}
	store_rtxn_end(r);
}

/* A revision to read at: mostly readable ones (around and above the compact
 * revision), some compacted, some in the future, some 0 or negative. */
static int64_t old_rev(const struct model *m)
{
	int64_t lo = rnd(8) == 0 ? 0 : m->compact > 2 ? m->compact - 2 : 0;
	return lo + (int64_t)rnd((uint32_t)(m->rev - lo) + 4) - 1;
}

static void run_seed(uint64_t seed, size_t recent_items)
{
	tu_recent_items = recent_items;
	seed_now = seed;
	rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
	char *dir = tu_tmpdir();
	struct store *s;
	CHECK(tu_open(dir, &s) == 0);
	struct model m = {.rev = 1}, saved;
	int op = 0;
	while (op < OPS_PER_SEED) {
		struct store_wtxn *w;
		CHECK(store_wtxn_begin(s, &w) == 0);
		model_copy(&saved, &m);
		int batch = 1 + (int)rnd(4);
		for (int b = 0; b < batch && op < OPS_PER_SEED; b++, op++) {
			op_now = op;
			uint32_t x = rnd(100);
			if (x < 35)
				op_put(w, &m);
			else if (x < 50)
				op_delete(w, &m);
			else if (x < 75)
				op_txn(w, &m);
			else if (x < 83)
				op_lease(w, &m);
			else if (x < 85)
				op_compact(w, &m);
			else if (x < 92)
				op_sweep(w);
			else
				compare_all(w, &m, old_rev(&m), (int64_t)rnd(4));
			compare_all(w, &m, 0, 0);
		}
		if (rnd(10) == 0) {
			store_wtxn_abort(w);
			model_free(&m);
			m = saved;
		} else {
			CHECK(store_wtxn_commit(w) == 0);
			model_free(&saved);
		}
		if (rnd(25) == 0)
			check_history(s, &m);
		if (rnd(4) == 0)
			compare_sorted(s, &m);
		if (rnd(300) == 0) {
			/* restart: everything comes back from meta, nothing rebuilt */
			store_close(s);
			CHECK(tu_open(dir, &s) == 0);
			CHECK(tu_rev(s) == m.rev);
		}
		if (rnd(100) == 0) {
			check_history_count(s, &m);
			CHECK(tu_check(s) == 0);
		}
	}
	CHECK(tu_check(s) == 0);
	/* a full sweep changes nothing readable */
	bool done = false;
	while (!done) {
		struct store_wtxn *w;
		CHECK(store_wtxn_begin(s, &w) == 0);
		CHECK(store_compact_step(w, 1000, &done) == 0);
		compare_all(w, &m, 0, 0);
		CHECK(store_wtxn_commit(w) == 0);
	}
	check_history_count(s, &m);
	CHECK(tu_check(s) == 0);
	printf("seed %llu: %d ops, revision %lld, compact %lld\n", (unsigned long long)seed, op,
	       (long long)m.rev, (long long)m.compact);
	model_free(&m);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

static void test_model_seed1(void **state)
{
	(void)state;
	run_seed(1, 1);
}

static void test_model_seed2(void **state)
{
	(void)state;
	run_seed(2, 3);
}

static void test_model_seed3(void **state)
{
	(void)state;
	run_seed(0xC0FFEE, 40);
}

static void test_model_seed4(void **state)
{
	(void)state;
	run_seed(20261126, STORE_DEFAULT_RECENT_ITEMS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_model_seed1),
	    cmocka_unit_test(test_model_seed2),
	    cmocka_unit_test(test_model_seed3),
	    cmocka_unit_test(test_model_seed4),
	};
	return cmocka_run_group_tests_name("store_model", tests, NULL, NULL);
}

/*
 * store_read.c — Range and the lease reads.
 *
 * Range follows etcd 3.5's applier (etcdserver/apply.go Range) step by step,
 * quirks included, because clients see them:
 *   1. If the request sorts (sort_order != NONE) or filters on min/max
 *      revisions, every key is fetched; otherwise at most limit+1 keys.
 *   2. `count` counts every key of the range at the revision, whatever the
 *      limit and the filters.
 *   3. The min/max filters prune the fetched keys.
 *   4. Sorting: a target other than KEY with order NONE sorts ascending;
 *      KEY ascending is the natural order. Ties are broken by key.
 *   5. Cut to `limit`; `more` says something was cut.
 * So a request with target VERSION, order NONE and limit 2 sorts the first
 * three keys by version and returns two of them, exactly like etcd.
 */
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>

struct recvec {
	struct rec *v;
	size_t n, cap;
};

static int recvec_push(struct recvec *rv, const struct rec *r)
{
	if (rv->n == rv->cap) {
		size_t cap = rv->cap ? rv->cap * 2 : 16;
		struct rec *nv = realloc(rv->v, cap * sizeof(*nv));
		if (!nv)
			return CAIRN_ENOMEM;
		rv->v = nv;
		rv->cap = cap;
	}
	rv->v[rv->n++] = *r;
	return 0;
}

static int cmp_i64(int64_t a, int64_t b)
{
	return (a > b) - (a < b);
}

static int rec_sort_cmp(const void *pa, const void *pb, void *arg)
{
	const struct rec *a = pa, *b = pb;
	const int *how = arg; /* [target, descending] */
	int c = 0;
	switch (how[0]) {
	case STORE_SORT_VERSION:
		c = cmp_i64(a->version, b->version);
		break;
	case STORE_SORT_CREATE:
		c = cmp_i64(a->create, b->create);
		break;
	case STORE_SORT_MOD:
		c = cmp_i64(a->main, b->main);
		break;
	case STORE_SORT_VALUE:
		c = bytes_cmp(a->val, a->vlen, b->val, b->vlen);
		break;
	default:
		break;
	}
	if (how[1])
		c = -c;
	if (c == 0) {
		c = bytes_cmp(a->key, a->klen, b->key, b->klen);
		if (how[0] == STORE_SORT_KEY && how[1])
			c = -c;
	}
	return c;
}

static bool range_filtered(const struct store_range_req *req, const struct rec *r)
{
	if (req->min_mod_revision && r->main < req->min_mod_revision)
		return true;
	if (req->max_mod_revision && r->main > req->max_mod_revision)
		return true;
	if (req->min_create_revision && r->create < req->min_create_revision)
		return true;
	if (req->max_create_revision && r->create > req->max_create_revision)
		return true;
	return false;
}

int view_range(const struct view *v, const struct store_range_req *req,
               struct store_range_resp *resp, struct store_mem **m)
{
	memset(resp, 0, sizeof(*resp));
	if (req->key_len == 0)
		return CAIRN_EKEYEMPTY;
	if (req->key_len > v->s->max_key)
		return CAIRN_EKEYTOOLARGE;
	if ((unsigned)req->sort_order > STORE_SORT_DESCEND ||
	    (unsigned)req->sort_target > STORE_SORT_VALUE)
		return CAIRN_EINVAL;
	int64_t rev = req->revision;
	if (rev > v->rev)
		return CAIRN_EFUTUREREV;
	if (rev <= 0)
		rev = v->rev;
	if (rev < v->compact)
		return CAIRN_ECOMPACTED;

	bool filters = req->min_mod_revision || req->max_mod_revision || req->min_create_revision ||
	               req->max_create_revision;
	int64_t fetch = 0;
	/* limit + 1 tells whether there is more; a limit of INT64_MAX has
	 * nothing more to tell (and + 1 would overflow). */
	if (req->sort_order == STORE_SORT_NONE && !filters && req->limit > 0 &&
	    req->limit < INT64_MAX)
		fetch = req->limit + 1;
	int order = req->sort_order;
	if (req->sort_target != STORE_SORT_KEY && order == STORE_SORT_NONE)
		order = STORE_SORT_ASCEND;
	else if (req->sort_target == STORE_SORT_KEY && order == STORE_SORT_ASCEND)
		order = STORE_SORT_NONE;

	struct krange kr;
	krange_init(&kr, req->key, req->key_len, req->range_end, req->range_end_len);
	/* A single key needs no walk over the keys: one lookup. */
	bool single = kr.kind == KR_SINGLE;
	struct ixk ki = {0};
	struct ixc lc = {0};
	struct recvec got = {0};
	int64_t count = 0;
	int rc = ixc_open(v->txn, v->s, &lc);
	if (rc == 0 && !single)
		rc = ixc_open(v->txn, v->s, &ki.x);
	if (rc)
		goto out;
	MDB_val k = {kr.klen, (void *)kr.key};
	int lrc = single ? 0 : ixk_first(&ki, &kr, &k);
	if (lrc && lrc != MDB_NOTFOUND) {
		rc = store_lmdb_err(lrc);
		goto out;
	}
	while (lrc == 0) {
		struct idx it;
		rc = ix_at_in(&lc, single ? 3 : ki.cur, &k, rev, &it);
		if (rc == CAIRN_ENOTFOUND)
			it.tomb = true;
		else if (rc)
			goto out;
		if (!it.tomb) {
			count++;
			if (!req->count_only && (fetch == 0 || (int64_t)got.n < fetch)) {
				struct rec r;
				rc = rec_get(v, it.main, it.sub, &r);
				if (rc)
					goto out;
				if (!range_filtered(req, &r)) {
					rc = recvec_push(&got, &r);
					if (rc)
						goto out;
				}
			}
		}
		lrc = single ? MDB_NOTFOUND : ixk_next(&ki, &k);
		if (lrc && lrc != MDB_NOTFOUND) {
			rc = store_lmdb_err(lrc);
			goto out;
		}
	}
	rc = 0;
	if (order != STORE_SORT_NONE && got.n > 1) {
		int how[2] = {req->sort_target, order == STORE_SORT_DESCEND};
		qsort_r(got.v, got.n, sizeof(*got.v), rec_sort_cmp, how);
	}
	size_t n = got.n;
	if (req->limit > 0 && n > (size_t)req->limit) {
		n = (size_t)req->limit;
		resp->more = true;
	}
	if (n) {
		resp->kvs = mem_alloc(m, n * sizeof(*resp->kvs));
		if (!resp->kvs) {
			rc = CAIRN_ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			rc = kv_out(v, m, &got.v[i], req->keys_only, &resp->kvs[i]);
			if (rc)
				goto out;
		}
	}
	resp->n_kvs = n;
	resp->count = count;
	resp->revision = v->rev;
out:
	free(got.v);
	ixc_close(&ki.x);
	ixc_close(&lc);
	if (rc) {
		memset(resp, 0, sizeof(*resp));
	}
	return rc;
}

static void rtxn_view(struct store_rtxn *r, struct view *v)
{
	v->s = r->s;
	v->txn = r->txn;
	v->rev = r->rev;
	v->compact = r->compact;
	v->copy = false;
}

int store_range(struct store_rtxn *r, const struct store_range_req *req,
                struct store_range_resp *resp)
{
	struct view v;
	struct store_mem *m = NULL;
	rtxn_view(r, &v);
	int rc = view_range(&v, req, resp, &m);
	if (rc) {
		mem_free(m);
		return rc;
	}
	resp->mem = m;
	return 0;
}

void store_range_resp_free(struct store_range_resp *resp)
{
	if (!resp)
		return;
	mem_free(resp->mem);
	memset(resp, 0, sizeof(*resp));
}

/* ---- leases --------------------------------------------------------------- */

static int lease_decode(const MDB_val *k, const MDB_val *d, struct store_lease *out)
{
	if (k->mv_size != 8)
		return CAIRN_ECORRUPT;
	out->id = (int64_t)get_u64be(k->mv_data);
	out->ttl = d->mv_size >= 8 ? (int64_t)get_u64be(d->mv_data) : 0;
	out->remaining_ttl =
	    d->mv_size >= 16 ? (int64_t)get_u64be((const uint8_t *)d->mv_data + 8) : 0;
	return 0;
}

int store_lease_lookup(struct store_rtxn *r, int64_t id, struct store_lease *out)
{
	uint8_t kb[8];
	put_u64be(kb, (uint64_t)id);
	MDB_val k = {8, kb}, d;
	int rc = mdb_get(r->txn, r->s->leases, &k, &d);
	if (rc == MDB_NOTFOUND)
		return CAIRN_ELEASENOTFOUND;
	if (rc)
		return store_lmdb_err(rc);
	return lease_decode(&k, &d, out);
}

int store_lease_list(struct store_rtxn *r, struct store_lease **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	MDB_stat st;
	int rc = mdb_stat(r->txn, r->s->leases, &st);
	if (rc)
		return store_lmdb_err(rc);
	if (st.ms_entries == 0)
		return 0;
	struct store_lease *v = malloc(st.ms_entries * sizeof(*v));
	if (!v)
		return CAIRN_ENOMEM;
	MDB_cursor *c;
	rc = mdb_cursor_open(r->txn, r->s->leases, &c);
	if (rc) {
		free(v);
		return store_lmdb_err(rc);
	}
	MDB_val k, d;
	size_t i = 0;
	int bad = 0;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0 && i < st.ms_entries && !bad;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT))
		bad = lease_decode(&k, &d, &v[i++]);
	mdb_cursor_close(c);
	if (bad || (rc && rc != MDB_NOTFOUND)) {
		free(v);
		return bad ? bad : store_lmdb_err(rc);
	}
	*out = v;
	*n = i;
	return 0;
}

int store_lease_keys(struct store_rtxn *r, int64_t id, struct store_lease_keys *out)
{
	memset(out, 0, sizeof(*out));
	struct store_lease l;
	int rc = store_lease_lookup(r, id, &l);
	if (rc)
		return rc;
	uint8_t kb[8];
	put_u64be(kb, (uint64_t)id);
	MDB_val k = {8, kb}, d;
	MDB_cursor *c;
	rc = mdb_cursor_open(r->txn, r->s->lease_keys, &c);
	if (rc)
		return store_lmdb_err(rc);
	size_t cnt = 0;
	rc = mdb_cursor_get(c, &k, &d, MDB_SET);
	if (rc == 0)
		rc = mdb_cursor_count(c, &cnt);
	if (rc == 0 && cnt) {
		out->keys = mem_alloc(&out->mem, cnt * sizeof(*out->keys));
		if (!out->keys) {
			mdb_cursor_close(c);
			return CAIRN_ENOMEM;
		}
		memset(out->keys, 0, cnt * sizeof(*out->keys));
		for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST_DUP); rc == 0 && out->n_keys < cnt;
		     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT_DUP)) {
			out->keys[out->n_keys].key = d.mv_data;
			out->keys[out->n_keys].key_len = d.mv_size;
			out->keys[out->n_keys].lease = id;
			out->n_keys++;
		}
	}
	mdb_cursor_close(c);
	if (rc && rc != MDB_NOTFOUND) {
		store_lease_keys_free(out);
		return store_lmdb_err(rc);
	}
	return 0;
}

void store_lease_keys_free(struct store_lease_keys *out)
{
	if (!out)
		return;
	mem_free(out->mem);
	memset(out, 0, sizeof(*out));
}

/*
 * store_write.c — the mutations: Put, DeleteRange, Txn, leases, compaction
 * marks.
 *
 * HOW A MUTATION RUNS
 *   mut_begin() starts it (in a nested LMDB txn when need_nested() says
 *   so); the mutation checks its request, then writes at revision
 *   main = rev + 1 with sub revisions 0, 1, ...; mut_end() writes meta
 *   "rev"/"keys" and makes it part of the batch, or undoes it on error. A
 *   failed request leaves the batch exactly as it was, and the batch's
 *   other revisions stand.
 *
 * VALIDATE, THEN WRITE
 *   Every request error (bad input, missing key or lease, quota, a txn's
 *   compares and checks — see precheck) is found before the mutation's
 *   first write. So a mutation runs straight in the batch txn and a failed
 *   request has written nothing; only when the map may be nearly full does
 *   it run in a nested txn (need_nested), so that MDB_MAP_FULL undoes just
 *   that mutation. An LMDB failure after a write outside a nested txn fails
 *   the batch (only abort remains).
 *
 *   Pointers into LMDB pages read inside a write txn die at the next write
 *   (pages are copied on write), so everything a mutation needs from the old
 *   state is read or copied before its first write.
 */
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>

static bool fatal(int rc)
{
	return rc == CAIRN_EIO || rc == CAIRN_ENOMEM || rc == CAIRN_ECORRUPT;
}

/* Whether the next mutation must run in a nested txn: when the map may be
 * close to full (or the batch close to LMDB's dirty-page limit), so that
 * MDB_MAP_FULL / MDB_TXN_FULL undo just this mutation. The bound counts the
 * committed high-water mark, what this batch may have allocated (4 pages
 * per write plus twice the bytes written) and this mutation's own guess,
 * with an eighth of the map left for raft's writes in the same txn.
 * Otherwise the mutation writes straight into the batch: nested LMDB txns
 * cost two large allocations each, and every request error is found
 * before the first write anyway (see "VALIDATE, THEN WRITE" above). */
static bool need_nested(struct store_wtxn *w, size_t est_bytes)
{
	MDB_envinfo info;
	if (mdb_env_info(w->s->env, &info) != 0)
		return true;
	uint64_t map_pages = info.me_mapsize / w->s->psize;
	uint64_t need =
	    (uint64_t)info.me_last_pgno + w->est_pages + 64 + 2 * (est_bytes / w->s->psize);
	return need + map_pages / 8 >= map_pages || w->est_pages > 60000;
}

int mut_begin(struct store_wtxn *w, size_t est_bytes)
{
	int rc = wtxn_usable(w);
	if (rc)
		return rc;
	/* The revision space ends at REV_MAX (decoders refuse anything
	 * beyond): a store there can be read, not written. Without this a
	 * write made the revision REV_MAX + 1, which every later read then
	 * took for corruption (fuzz_store_records, meta "rev" = REV_MAX). */
	if (w->rev >= REV_MAX)
		return CAIRN_ENOSPACE;
	w->nested = need_nested(w, est_bytes);
	w->cur = w->txn;
	if (w->nested) {
		rc = mdb_txn_begin(w->s->env, w->txn, 0, &w->cur);
		if (rc) {
			w->cur = w->txn;
			rc = store_lmdb_err(rc);
			if (fatal(rc))
				w->failed = rc;
			return rc;
		}
	}
	w->main = w->rev + 1;
	w->sub = 0;
	w->dkeys = 0;
	w->base_rev = w->rev;
	w->touched = false;
	return 0;
}

int w_put(struct store_wtxn *w, MDB_dbi dbi, MDB_val *k, MDB_val *d, unsigned flags)
{
	w->touched = true;
	w->est_pages += 4 + 2 * (k->mv_size + d->mv_size) / w->s->psize;
	return store_lmdb_err(mdb_put(w->cur, dbi, k, d, flags));
}

int w_del(struct store_wtxn *w, MDB_dbi dbi, MDB_val *k, MDB_val *d)
{
	w->touched = true;
	w->est_pages += 4;
	int rc = mdb_del(w->cur, dbi, k, d);
	return rc == MDB_NOTFOUND ? CAIRN_ENOTFOUND : store_lmdb_err(rc);
}

int w_cursor_del(struct store_wtxn *w, MDB_cursor *c)
{
	w->touched = true;
	w->est_pages += 4;
	return store_lmdb_err(mdb_cursor_del(c, 0));
}

static int w_meta_i64(struct store_wtxn *w, const char *name, int64_t v)
{
	uint8_t b[8];
	put_u64be(b, (uint64_t)v);
	MDB_val k = {strlen(name), (void *)name}, d = {8, b};
	return w_put(w, w->s->meta, &k, &d, 0);
}

/* Ends a mutation: on success its revision and key count go to meta and it
 * becomes part of the batch; on error it is undone. An error after a write
 * outside a nested txn (only LMDB failures get there) cannot be undone:
 * the batch fails, with that code, and only abort remains. */
int mut_end(struct store_wtxn *w, int rc)
{
	if (rc == 0 && w->sub > 0) {
		rc = w_meta_i64(w, "rev", w->main);
		if (rc == 0 && w->dkeys)
			rc = w_meta_i64(w, "keys", (int64_t)w->keys + w->dkeys);
	}
	if (rc == 0 && w->nested) {
		rc = store_lmdb_err(mdb_txn_commit(w->cur));
		w->cur = w->txn;
		if (rc) {
			/* The batch may hold part of it: only abort is safe now. */
			w->failed = rc;
			return rc;
		}
	}
	if (rc == 0) {
		if (w->sub > 0) {
			w->rev = w->main;
			w->keys = (uint64_t)((int64_t)w->keys + w->dkeys);
		}
		return 0;
	}
	if (w->nested)
		mdb_txn_abort(w->cur);
	else if (w->touched)
		w->failed = rc;
	w->cur = w->txn;
	if (fatal(rc))
		w->failed = rc;
	return rc;
}

static int64_t cur_rev(const struct store_wtxn *w)
{
	return w->sub > 0 ? w->main : w->rev;
}

static void wview(const struct store_wtxn *w, int64_t rev, struct view *v)
{
	v->s = w->s;
	v->txn = w->cur;
	v->rev = rev;
	v->compact = w->compact;
	v->copy = true;
}

static int check_key(const struct store *s, size_t kl)
{
	if (kl == 0)
		return CAIRN_EKEYEMPTY;
	if (kl > s->max_key)
		return CAIRN_EKEYTOOLARGE;
	return 0;
}

static int check_put(const struct store *s, const struct store_put_req *req)
{
	int rc = check_key(s, req->key_len);
	if (rc)
		return rc;
	if (req->ignore_value && req->value_len)
		return CAIRN_EVALUEPROVIDED;
	if (req->ignore_lease && req->lease)
		return CAIRN_ELEASEPROVIDED;
	if (req->value_len > s->max_request || req->key_len + req->value_len > s->max_request)
		return CAIRN_EVALUETOOLARGE;
	return 0;
}

static int check_quota(struct store_wtxn *w, size_t add)
{
	uint64_t used = store_pages_in_use(w->s, w->cur) * w->s->psize;
	if (used + add + 256 > w->s->quota)
		return CAIRN_ENOSPACE;
	return 0;
}

/* The live record of `key` at the mutation's current state: 0, or
 * CAIRN_ENOTFOUND if the key does not exist now. */
static int cur_state(struct store_wtxn *w, struct ixc *ic, const uint8_t *key, size_t kl,
                     struct rec *out)
{
	MDB_val k = {kl, (void *)key};
	struct idx it;
	int rc = ix_at(ic, &k, REV_MAX, &it);
	if (rc)
		return rc;
	if (it.tomb)
		return CAIRN_ENOTFOUND;
	struct view v;
	wview(w, cur_rev(w), &v);
	return rec_get(&v, it.main, it.sub, out);
}

static int lease_exists(struct store_wtxn *w, int64_t id)
{
	uint8_t kb[8];
	put_u64be(kb, (uint64_t)id);
	MDB_val k = {8, kb}, d;
	int rc = mdb_get(w->cur, w->s->leases, &k, &d);
	if (rc == MDB_NOTFOUND)
		return CAIRN_ELEASENOTFOUND;
	return store_lmdb_err(rc);
}

static int lease_key_op(struct store_wtxn *w, int64_t id, const uint8_t *key, size_t kl, bool add)
{
	uint8_t kb[8];
	put_u64be(kb, (uint64_t)id);
	MDB_val k = {8, kb}, d = {kl, (void *)key};
	int rc = add ? mdb_put(w->cur, w->s->lease_keys, &k, &d, 0)
	             : mdb_del(w->cur, w->s->lease_keys, &k, &d);
	if (!add && rc == MDB_NOTFOUND)
		return CAIRN_ECORRUPT;
	return store_lmdb_err(rc);
}

/* Appends one record (kv + index) at (main, sub++). buf holds REC_HDR bytes
 * of room, the key and the value; the header is filled here. */
static int write_rec(struct store_wtxn *w, uint8_t *buf, size_t klen, size_t vlen, bool tomb,
                     int64_t create, int64_t version, int64_t lease)
{
	memset(buf, 0, REC_HDR);
	buf[0] = tomb ? REC_TOMB : 0;
	put_u64be(buf, get_u64be(buf) | (uint64_t)klen);
	put_u64be(buf + 8, (uint64_t)create);
	put_u64be(buf + 16, (uint64_t)version);
	put_u64be(buf + 24, (uint64_t)lease);
	uint8_t rk[REVKEY], item[IDX_ITEM];
	revkey_make(rk, w->main, w->sub);
	idx_item(item, w->main, w->sub, tomb);
	MDB_val k = {REVKEY, rk}, d = {REC_HDR + klen + vlen, buf};
	int rc = w_put(w, w->s->kv, &k, &d, MDB_APPEND);
	if (rc == 0) {
		/* The key's newest item: to recent (store_index.c). */
		MDB_val ik = {klen, buf + REC_HDR}, id = {IDX_ITEM, item};
		rc = w_put(w, w->s->recent, &ik, &id, 0);
	}
	if (rc)
		return rc;
	w->sub++;
	return 0;
}

/* Writes a tombstone for a live key. */
static int del_live(struct store_wtxn *w, const uint8_t *key, size_t kl, int64_t lease)
{
	uint8_t stackbuf[REC_HDR + 512];
	uint8_t *buf = kl <= 512 ? stackbuf : malloc(REC_HDR + kl);
	if (!buf)
		return CAIRN_ENOMEM;
	memcpy(buf + REC_HDR, key, kl);
	int rc = write_rec(w, buf, kl, 0, true, 0, 0, 0);
	if (rc == 0 && lease)
		rc = lease_key_op(w, lease, buf + REC_HDR, kl, false);
	if (buf != stackbuf)
		free(buf);
	if (rc == 0)
		w->dkeys--;
	return rc;
}

static int do_put(struct store_wtxn *w, const struct store_put_req *req,
                  struct store_put_resp *resp, struct store_mem **m, bool quota)
{
	memset(resp, 0, sizeof(*resp));
	/* Outside a nested txn the batch's cursors serve every put. */
	struct ixc own, *ic = &own;
	int rc = 0;
	if (w->cur == w->txn && w->ic_open)
		ic = &w->ic;
	else
		rc = ixc_open(w->cur, w->s, &own);
	if (rc)
		return rc;
	if (ic == &own && w->cur == w->txn) {
		w->ic = own;
		w->ic_open = true;
		ic = &w->ic;
	}
	struct rec old;
	rc = cur_state(w, ic, req->key, req->key_len, &old);
	if (ic == &own)
		ixc_close(&own);
	bool exists = rc == 0;
	if (rc && rc != CAIRN_ENOTFOUND)
		return rc;
	if ((req->ignore_value || req->ignore_lease) && !exists)
		return CAIRN_EKEYNOTFOUND;
	const uint8_t *val = req->ignore_value ? old.val : req->value;
	size_t vlen = req->ignore_value ? old.vlen : req->value_len;
	int64_t lease = req->ignore_lease ? old.lease : req->lease;
	if (lease) {
		rc = lease_exists(w, lease);
		if (rc)
			return rc;
	}
	rc = quota ? check_quota(w, req->key_len + vlen) : 0;
	if (rc)
		return rc;
	if (req->prev_kv && exists) {
		struct view v;
		wview(w, cur_rev(w), &v);
		rc = kv_out(&v, m, &old, false, &resp->prev_kv);
		if (rc)
			return rc;
		resp->has_prev = true;
	}
	uint8_t stackbuf[REC_HDR + 4096];
	size_t need = REC_HDR + req->key_len + vlen;
	uint8_t *buf = need <= sizeof(stackbuf) ? stackbuf : malloc(need);
	if (!buf)
		return CAIRN_ENOMEM;
	memcpy(buf + REC_HDR, req->key, req->key_len);
	if (vlen)
		memcpy(buf + REC_HDR + req->key_len, val, vlen);
	int64_t old_lease = exists ? old.lease : 0;
	rc = write_rec(w, buf, req->key_len, vlen, false, exists ? old.create : w->main,
	               exists ? old.version + 1 : 1, lease);
	if (rc == 0 && old_lease && old_lease != lease)
		rc = lease_key_op(w, old_lease, buf + REC_HDR, req->key_len, false);
	if (rc == 0 && lease && lease != old_lease)
		rc = lease_key_op(w, lease, buf + REC_HDR, req->key_len, true);
	if (buf != stackbuf)
		free(buf);
	if (rc)
		return rc;
	if (!exists)
		w->dkeys++;
	resp->revision = w->main;
	return 0;
}

/* Live keys of a range in the current state, copied (key bytes and lease). */
struct keyvec {
	uint8_t **k;
	size_t *kl;
	int64_t *lease;
	size_t n, cap;
};

static void keyvec_free(struct keyvec *kv)
{
	for (size_t i = 0; i < kv->n; i++)
		free(kv->k[i]);
	free(kv->k);
	free(kv->kl);
	free(kv->lease);
	memset(kv, 0, sizeof(*kv));
}

static int keyvec_push(struct keyvec *kv, const void *k, size_t kl, int64_t lease)
{
	if (kv->n == kv->cap) {
		size_t cap = kv->cap ? kv->cap * 2 : 16;
		uint8_t **nk = realloc(kv->k, cap * sizeof(*nk));
		if (nk)
			kv->k = nk;
		size_t *nl = realloc(kv->kl, cap * sizeof(*nl));
		if (nl)
			kv->kl = nl;
		int64_t *ne = realloc(kv->lease, cap * sizeof(*ne));
		if (ne)
			kv->lease = ne;
		if (!nk || !nl || !ne)
			return CAIRN_ENOMEM;
		kv->cap = cap;
	}
	uint8_t *c = malloc(kl ? kl : 1);
	if (!c)
		return CAIRN_ENOMEM;
	memcpy(c, k, kl);
	kv->k[kv->n] = c;
	kv->kl[kv->n] = kl;
	kv->lease[kv->n] = lease;
	kv->n++;
	return 0;
}

static int do_delete(struct store_wtxn *w, const struct store_delete_req *req,
                     struct store_delete_resp *resp, struct store_mem **m)
{
	memset(resp, 0, sizeof(*resp));
	int rc = check_key(w->s, req->key_len);
	if (rc)
		return rc;
	struct krange kr;
	krange_init(&kr, req->key, req->key_len, req->range_end, req->range_end_len);
	struct keyvec keys = {0};
	struct store_kv *prev = NULL;
	size_t nprev = 0, capprev = 0;
	struct view v;
	wview(w, cur_rev(w), &v);
	struct ixk ki;
	struct ixc lc;
	rc = ixc_open(w->cur, w->s, &ki.x);
	if (rc)
		return rc;
	rc = ixc_open(w->cur, w->s, &lc);
	if (rc) {
		ixc_close(&ki.x);
		return rc;
	}
	MDB_val k;
	int lrc = ixk_first(&ki, &kr, &k);
	while (lrc == 0) {
		struct idx it;
		rc = ix_at_in(&lc, ki.cur, &k, REV_MAX, &it);
		if (rc)
			break;
		if (!it.tomb) {
			struct rec r;
			rc = rec_get(&v, it.main, it.sub, &r);
			if (rc == 0)
				rc = keyvec_push(&keys, r.key, r.klen, r.lease);
			if (rc == 0 && req->prev_kv) {
				if (nprev == capprev) {
					capprev = capprev ? capprev * 2 : 16;
					struct store_kv *np = realloc(prev, capprev * sizeof(*np));
					if (!np)
						rc = CAIRN_ENOMEM;
					else
						prev = np;
				}
				if (rc == 0)
					rc = kv_out(&v, m, &r, false, &prev[nprev++]);
			}
			if (rc)
				break;
		}
		lrc = ixk_next(&ki, &k);
	}
	ixc_close(&ki.x);
	ixc_close(&lc);
	if (rc == 0 && lrc && lrc != MDB_NOTFOUND)
		rc = store_lmdb_err(lrc);
	for (size_t i = 0; rc == 0 && i < keys.n; i++)
		rc = del_live(w, keys.k[i], keys.kl[i], keys.lease[i]);
	if (rc == 0 && nprev) {
		resp->prev_kvs = mem_dup(m, prev, nprev * sizeof(*prev));
		if (!resp->prev_kvs)
			rc = CAIRN_ENOMEM;
		resp->n_prev_kvs = nprev;
	}
	free(prev);
	if (rc == 0) {
		resp->deleted = (int64_t)keys.n;
		resp->revision = cur_rev(w);
	}
	keyvec_free(&keys);
	return rc;
}

/* ---- txn ------------------------------------------------------------------ */

static int check_txn(const struct store *s, const struct store_txn_req *t, size_t *bytes);

static int check_ops(const struct store *s, const struct store_op *ops, size_t n, size_t *bytes)
{
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const struct store_op *op = &ops[i];
		switch (op->type) {
		case STORE_OP_RANGE:
			rc = check_key(s, op->u.range.key_len);
			break;
		case STORE_OP_PUT:
			rc = check_put(s, &op->u.put);
			*bytes += op->u.put.key_len + op->u.put.value_len;
			break;
		case STORE_OP_DELETE:
			rc = check_key(s, op->u.del.key_len);
			break;
		case STORE_OP_TXN:
			rc = op->u.txn ? check_txn(s, op->u.txn, bytes) : CAIRN_EINVAL;
			break;
		default:
			rc = CAIRN_EINVAL;
		}
	}
	return rc;
}

static int check_txn(const struct store *s, const struct store_txn_req *t, size_t *bytes)
{
	size_t opc = t->n_compares;
	if (opc < t->n_success)
		opc = t->n_success;
	if (opc < t->n_failure)
		opc = t->n_failure;
	if (opc > s->max_txn_ops)
		return CAIRN_ETOOMANYOPS;
	for (size_t i = 0; i < t->n_compares; i++) {
		const struct store_compare *c = &t->compares[i];
		if (c->key_len == 0)
			return CAIRN_EKEYEMPTY;
		if ((unsigned)c->result > STORE_CMP_NOT_EQUAL ||
		    (unsigned)c->target > STORE_CMP_LEASE)
			return CAIRN_EINVAL;
	}
	int rc = check_ops(s, t->success, t->n_success, bytes);
	if (rc == 0)
		rc = check_ops(s, t->failure, t->n_failure, bytes);
	return rc;
}

/* etcd's checkIntervals (api/v3rpc/key.go): no key may be put twice on one
 * path through the txn, and no put may fall in a delete range of the same
 * or an enclosing level. A delete's range is [key, range_end) compared as
 * bytes — so, as in etcd, a "\0" (from-key) range_end covers no put. */
struct ivl {
	const uint8_t *b, *e;
	size_t bl, el;
};
struct ivlvec {
	struct ivl *v;
	size_t n, cap;
};
struct ptrvec {
	const struct store_put_req **v;
	size_t n, cap;
};

static int vec_grow(void **v, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : 8;
	void *nv = realloc(*v, nc * elem);
	if (!nv)
		return CAIRN_ENOMEM;
	*v = nv;
	*cap = nc;
	return 0;
}

static bool ivl_has(const struct ivlvec *dels, const struct store_put_req *p)
{
	for (size_t i = 0; i < dels->n; i++) {
		const struct ivl *iv = &dels->v[i];
		if (iv->el == 0) {
			if (bytes_cmp(iv->b, iv->bl, p->key, p->key_len) == 0)
				return true;
		} else if (bytes_cmp(iv->b, iv->bl, p->key, p->key_len) <= 0 &&
		           bytes_cmp(p->key, p->key_len, iv->e, iv->el) < 0) {
			return true;
		}
	}
	return false;
}

static bool puts_has(const struct ptrvec *puts, const struct store_put_req *p)
{
	for (size_t i = 0; i < puts->n; i++)
		if (bytes_cmp(puts->v[i]->key, puts->v[i]->key_len, p->key, p->key_len) == 0)
			return true;
	return false;
}

static int push_put(struct ptrvec *puts, const struct store_put_req *p)
{
	int rc = vec_grow((void **)&puts->v, &puts->cap, puts->n, sizeof(*puts->v));
	if (rc == 0)
		puts->v[puts->n++] = p;
	return rc;
}

static int push_ivls(struct ivlvec *dels, const struct ivlvec *from)
{
	for (size_t i = 0; i < from->n; i++) {
		int rc = vec_grow((void **)&dels->v, &dels->cap, dels->n, sizeof(*dels->v));
		if (rc)
			return rc;
		dels->v[dels->n++] = from->v[i];
	}
	return 0;
}

static int check_intervals(const struct store_op *ops, size_t n, struct ptrvec *puts,
                           struct ivlvec *dels)
{
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (ops[i].type != STORE_OP_DELETE)
			continue;
		const struct store_delete_req *d = &ops[i].u.del;
		struct ivl iv = {d->key, d->range_end, d->key_len, d->range_end_len};
		struct ivlvec one = {&iv, 1, 1};
		rc = push_ivls(dels, &one);
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (ops[i].type != STORE_OP_TXN)
			continue;
		const struct store_txn_req *t = ops[i].u.txn;
		struct ptrvec pt = {0}, pe = {0};
		struct ivlvec dt = {0}, de = {0};
		rc = check_intervals(t->success, t->n_success, &pt, &dt);
		if (rc == 0)
			rc = check_intervals(t->failure, t->n_failure, &pe, &de);
		for (size_t j = 0; j < pt.n && rc == 0; j++) {
			if (puts_has(puts, pt.v[j]) || ivl_has(dels, pt.v[j]))
				rc = CAIRN_EDUPKEY;
			else
				rc = push_put(puts, pt.v[j]);
		}
		for (size_t j = 0; j < pe.n && rc == 0; j++) {
			if ((puts_has(puts, pe.v[j]) && !puts_has(&pt, pe.v[j])) ||
			    ivl_has(dels, pe.v[j]))
				rc = CAIRN_EDUPKEY;
			else
				rc = push_put(puts, pe.v[j]);
		}
		if (rc == 0)
			rc = push_ivls(dels, &dt);
		if (rc == 0)
			rc = push_ivls(dels, &de);
		free(pt.v);
		free(pe.v);
		free(dt.v);
		free(de.v);
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (ops[i].type != STORE_OP_PUT)
			continue;
		if (puts_has(puts, &ops[i].u.put) || ivl_has(dels, &ops[i].u.put))
			rc = CAIRN_EDUPKEY;
		else
			rc = push_put(puts, &ops[i].u.put);
	}
	return rc;
}

static int check_branch_intervals(const struct store_op *ops, size_t n)
{
	struct ptrvec puts = {0};
	struct ivlvec dels = {0};
	int rc = check_intervals(ops, n, &puts, &dels);
	free(puts.v);
	free(dels.v);
	return rc;
}

static bool cmp_ok(const struct store_compare *c, const struct rec *r)
{
	int x;
	switch (c->target) {
	case STORE_CMP_VALUE:
		x = bytes_cmp(r->val, r->vlen, c->value, c->value_len);
		break;
	case STORE_CMP_VERSION:
		x = (r->version > c->number) - (r->version < c->number);
		break;
	case STORE_CMP_CREATE:
		x = (r->create > c->number) - (r->create < c->number);
		break;
	case STORE_CMP_MOD:
		x = (r->main > c->number) - (r->main < c->number);
		break;
	default:
		x = (r->lease > c->number) - (r->lease < c->number);
		break;
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

/* etcd applyCompare, at the state before the txn (base_rev). */
static int eval_compare(struct store_wtxn *w, const struct store_compare *c, bool *ok)
{
	struct view v;
	wview(w, w->base_rev, &v);
	struct krange kr;
	krange_init(&kr, c->key, c->key_len, c->range_end, c->range_end_len);
	struct ixk ki;
	struct ixc lc;
	int rc = ixc_open(w->cur, w->s, &ki.x);
	if (rc)
		return rc;
	rc = ixc_open(w->cur, w->s, &lc);
	if (rc) {
		ixc_close(&ki.x);
		return rc;
	}
	MDB_val k;
	bool any = false;
	*ok = true;
	int lrc = ixk_first(&ki, &kr, &k);
	while (lrc == 0 && *ok) {
		struct idx it;
		rc = ix_at_in(&lc, ki.cur, &k, w->base_rev, &it);
		if (rc == 0 && !it.tomb) {
			struct rec r;
			rc = rec_get(&v, it.main, it.sub, &r);
			if (rc)
				break;
			any = true;
			*ok = cmp_ok(c, &r);
		} else if (rc && rc != CAIRN_ENOTFOUND) {
			break;
		}
		rc = 0;
		lrc = ixk_next(&ki, &k);
	}
	ixc_close(&ki.x);
	ixc_close(&lc);
	if (rc)
		return rc;
	if (lrc && lrc != MDB_NOTFOUND)
		return store_lmdb_err(lrc);
	if (!any) {
		struct rec zero = {0};
		*ok = c->target != STORE_CMP_VALUE && cmp_ok(c, &zero);
	}
	return 0;
}

/* The branch each txn on the path takes, in visiting order (etcd's txnPath). */
struct path {
	bool *ok;
	size_t n, cap, next;
};

/* etcd's compareToPath + checkRequests: evaluates every compare on the
 * path against the state before the txn and checks the ops of the branches
 * taken, so that a txn that fails does so before its first write. */
static int precheck(struct store_wtxn *w, const struct store_txn_req *t, struct path *p,
                    size_t *put_bytes)
{
	bool ok = true;
	for (size_t i = 0; i < t->n_compares && ok; i++) {
		int rc = eval_compare(w, &t->compares[i], &ok);
		if (rc)
			return rc;
	}
	int rc = vec_grow((void **)&p->ok, &p->cap, p->n, sizeof(*p->ok));
	if (rc)
		return rc;
	p->ok[p->n++] = ok;
	const struct store_op *ops = ok ? t->success : t->failure;
	size_t n = ok ? t->n_success : t->n_failure;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const struct store_op *op = &ops[i];
		if (op->type == STORE_OP_RANGE) {
			int64_t rev = op->u.range.revision;
			if (rev > w->base_rev)
				rc = CAIRN_EFUTUREREV;
			else if (rev > 0 && rev < w->compact)
				rc = CAIRN_ECOMPACTED;
		} else if (op->type == STORE_OP_PUT) {
			const struct store_put_req *pr = &op->u.put;
			int64_t lease = pr->lease;
			*put_bytes += pr->key_len + pr->value_len;
			if (pr->ignore_value || pr->ignore_lease) {
				struct ixc ic;
				struct rec old;
				rc = ixc_open(w->cur, w->s, &ic);
				if (rc)
					break;
				rc = cur_state(w, &ic, pr->key, pr->key_len, &old);
				ixc_close(&ic);
				if (rc == CAIRN_ENOTFOUND)
					rc = CAIRN_EKEYNOTFOUND;
				if (rc)
					break;
				if (pr->ignore_lease)
					lease = old.lease;
				if (pr->ignore_value)
					*put_bytes += old.vlen;
			}
			if (lease)
				rc = lease_exists(w, lease);
		} else if (op->type == STORE_OP_TXN) {
			rc = precheck(w, op->u.txn, p, put_bytes);
		}
	}
	return rc;
}

static int exec_txn(struct store_wtxn *w, const struct store_txn_req *t, struct path *p,
                    struct store_txn_resp *resp, struct store_mem **m)
{
	memset(resp, 0, sizeof(*resp));
	if (p->next >= p->n)
		return CAIRN_EINVAL; /* the request changed under us */
	bool ok = p->ok[p->next++];
	const struct store_op *ops = ok ? t->success : t->failure;
	size_t n = ok ? t->n_success : t->n_failure;
	resp->succeeded = ok;
	if (n) {
		resp->responses = mem_alloc(m, n * sizeof(*resp->responses));
		if (!resp->responses)
			return CAIRN_ENOMEM;
		memset(resp->responses, 0, n * sizeof(*resp->responses));
	}
	for (size_t i = 0; i < n; i++) {
		struct store_op_resp *r = &resp->responses[i];
		struct view v;
		int rc;
		r->type = ops[i].type;
		switch (ops[i].type) {
		case STORE_OP_RANGE:
			wview(w, cur_rev(w), &v);
			rc = view_range(&v, &ops[i].u.range, &r->u.range, m);
			break;
		case STORE_OP_PUT:
			rc = do_put(w, &ops[i].u.put, &r->u.put, m, false);
			break;
		case STORE_OP_DELETE:
			rc = do_delete(w, &ops[i].u.del, &r->u.del, m);
			break;
		default:
			r->u.txn = mem_alloc(m, sizeof(*r->u.txn));
			rc = r->u.txn ? exec_txn(w, ops[i].u.txn, p, r->u.txn, m) : CAIRN_ENOMEM;
			break;
		}
		if (rc)
			return rc;
		resp->n_responses++;
	}
	resp->revision = cur_rev(w);
	return 0;
}

/* ---- public mutations ------------------------------------------------------ */

int store_put(struct store_wtxn *w, const struct store_put_req *req, struct store_put_resp *resp)
{
	struct store_put_resp local;
	struct store_mem *m = NULL;
	if (!resp)
		resp = &local;
	memset(resp, 0, sizeof(*resp));
	int rc = check_put(w->s, req);
	if (rc == 0)
		rc = mut_begin(w, req->key_len + req->value_len);
	if (rc)
		return rc;
	rc = mut_end(w, do_put(w, req, resp, &m, true));
	if (rc || resp == &local) {
		mem_free(m);
		if (rc)
			memset(resp, 0, sizeof(*resp));
		return rc;
	}
	resp->mem = m;
	return 0;
}

void store_put_resp_free(struct store_put_resp *resp)
{
	if (!resp)
		return;
	mem_free(resp->mem);
	memset(resp, 0, sizeof(*resp));
}

int store_delete_range(struct store_wtxn *w, const struct store_delete_req *req,
                       struct store_delete_resp *resp)
{
	struct store_delete_resp local;
	struct store_mem *m = NULL;
	if (!resp)
		resp = &local;
	memset(resp, 0, sizeof(*resp));
	int rc = check_key(w->s, req->key_len);
	if (rc == 0)
		rc = mut_begin(w, 0);
	if (rc)
		return rc;
	rc = mut_end(w, do_delete(w, req, resp, &m));
	if (rc || resp == &local) {
		mem_free(m);
		if (rc)
			memset(resp, 0, sizeof(*resp));
		return rc;
	}
	resp->revision = w->rev;
	resp->mem = m;
	return 0;
}

void store_delete_resp_free(struct store_delete_resp *resp)
{
	if (!resp)
		return;
	mem_free(resp->mem);
	memset(resp, 0, sizeof(*resp));
}

int store_txn(struct store_wtxn *w, const struct store_txn_req *req, struct store_txn_resp *resp)
{
	struct store_mem *m = NULL;
	size_t bytes = 0;
	memset(resp, 0, sizeof(*resp));
	int rc = check_txn(w->s, req, &bytes);
	if (rc == 0 && bytes > w->s->max_request)
		rc = CAIRN_EVALUETOOLARGE;
	if (rc == 0)
		rc = check_branch_intervals(req->success, req->n_success);
	if (rc == 0)
		rc = check_branch_intervals(req->failure, req->n_failure);
	if (rc == 0)
		rc = mut_begin(w, bytes);
	if (rc)
		return rc;
	struct path p = {0};
	size_t put_bytes = 0;
	rc = precheck(w, req, &p, &put_bytes);
	if (rc == 0 && put_bytes)
		rc = check_quota(w, put_bytes);
	if (rc == 0)
		rc = exec_txn(w, req, &p, resp, &m);
	free(p.ok);
	rc = mut_end(w, rc);
	if (rc) {
		mem_free(m);
		memset(resp, 0, sizeof(*resp));
		return rc;
	}
	resp->mem = m;
	return 0;
}

void store_txn_resp_free(struct store_txn_resp *resp)
{
	if (!resp)
		return;
	mem_free(resp->mem);
	memset(resp, 0, sizeof(*resp));
}

/* ---- leases ----------------------------------------------------------------- */

static int lease_write(struct store_wtxn *w, int64_t id, int64_t ttl, int64_t remaining)
{
	uint8_t kb[8], vb[16];
	put_u64be(kb, (uint64_t)id);
	put_u64be(vb, (uint64_t)ttl);
	put_u64be(vb + 8, (uint64_t)remaining);
	MDB_val k = {8, kb}, d = {16, vb};
	return w_put(w, w->s->leases, &k, &d, 0);
}

int store_lease_grant(struct store_wtxn *w, int64_t id, int64_t ttl)
{
	if (id <= 0 || ttl < 0)
		return CAIRN_EINVAL;
	int rc = mut_begin(w, 0);
	if (rc)
		return rc;
	rc = lease_exists(w, id);
	if (rc == 0)
		rc = CAIRN_ELEASEEXIST;
	else if (rc == CAIRN_ELEASENOTFOUND)
		rc = check_quota(w, 64);
	if (rc == 0)
		rc = lease_write(w, id, ttl, 0);
	return mut_end(w, rc);
}

int store_lease_checkpoint(struct store_wtxn *w, int64_t id, int64_t remaining_ttl)
{
	int rc = mut_begin(w, 0);
	if (rc)
		return rc;
	uint8_t kb[8];
	put_u64be(kb, (uint64_t)id);
	MDB_val k = {8, kb}, d;
	rc = mdb_get(w->cur, w->s->leases, &k, &d);
	if (rc == MDB_NOTFOUND)
		rc = CAIRN_ELEASENOTFOUND;
	else if (rc == 0 && d.mv_size != 16)
		rc = CAIRN_ECORRUPT;
	else if (rc == 0)
		rc = lease_write(w, id, (int64_t)get_u64be(d.mv_data), remaining_ttl);
	else
		rc = store_lmdb_err(rc);
	return mut_end(w, rc);
}

int store_lease_revoke(struct store_wtxn *w, int64_t id, int64_t *revision)
{
	int rc = mut_begin(w, 0);
	if (rc)
		return rc;
	rc = lease_exists(w, id);
	struct keyvec keys = {0};
	uint8_t kb[8];
	put_u64be(kb, (uint64_t)id);
	MDB_val k = {8, kb}, d;
	MDB_cursor *c = NULL;
	if (rc == 0)
		rc = store_lmdb_err(mdb_cursor_open(w->cur, w->s->lease_keys, &c));
	if (rc == 0) {
		int lrc = mdb_cursor_get(c, &k, &d, MDB_SET);
		while (lrc == 0 && rc == 0) {
			rc = keyvec_push(&keys, d.mv_data, d.mv_size, id);
			lrc = mdb_cursor_get(c, &k, &d, MDB_NEXT_DUP);
		}
		if (rc == 0 && lrc != MDB_NOTFOUND)
			rc = store_lmdb_err(lrc);
		mdb_cursor_close(c);
	}
	for (size_t i = 0; rc == 0 && i < keys.n; i++)
		rc = del_live(w, keys.k[i], keys.kl[i], id);
	keyvec_free(&keys);
	if (rc == 0) {
		k.mv_data = kb;
		k.mv_size = 8;
		rc = w_del(w, w->s->leases, &k, NULL);
	}
	rc = mut_end(w, rc);
	if (rc == 0 && revision)
		*revision = w->rev;
	return rc;
}

/* ---- compaction mark ------------------------------------------------------- */

int store_compact(struct store_wtxn *w, int64_t rev)
{
	int rc = wtxn_usable(w);
	if (rc)
		return rc;
	if (rev <= w->compact)
		return CAIRN_ECOMPACTED;
	if (rev > w->rev)
		return CAIRN_EFUTUREREV;
	rc = mut_begin(w, 0);
	if (rc)
		return rc;
	rc = w_meta_i64(w, "compact", rev);
	if (rc == 0) {
		/* Restart the sweep from the oldest record: what an earlier,
		 * lower compaction kept may go now. */
		uint8_t zero[REVKEY] = {0};
		MDB_val k = {5, "cnext"}, d = {REVKEY, zero};
		rc = w_put(w, w->s->meta, &k, &d, 0);
	}
	rc = mut_end(w, rc);
	if (rc == 0)
		w->compact = rev;
	return rc;
}

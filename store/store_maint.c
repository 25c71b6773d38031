/*
 * store_maint.c — compaction sweep, history (the watch feed), HashKV and the
 * invariant checker.
 *
 * COMPACTION
 *   store_compact() only records the compact revision C and a sweep cursor
 *   ("cnext") in meta; reads use C at once, so errors are right immediately.
 *   store_compact_step() walks kv in revision order from cnext and deletes a
 *   record (kv and index) at main <= C unless it is the key's latest record
 *   <= C and not a tombstone. Going in revision order means a tombstone goes
 *   only after the versions it hides, so every read at a revision >= C gives
 *   the same answer whatever the sweep's progress.
 */
#include "store/store_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int store_compact_step(struct store_wtxn *w, size_t max_records, bool *done)
{
	*done = false;
	int rc = mut_begin(w, max_records * 64);
	if (rc)
		return rc;
	struct store *s = w->s;
	MDB_txn *t = w->cur;
	MDB_val ck = {5, "cnext"}, cd;
	uint8_t next[REVKEY];
	MDB_cursor *kc = NULL;
	struct ixc ic = {0};
	rc = mdb_get(t, s->meta, &ck, &cd);
	if (rc == MDB_NOTFOUND) {
		*done = true;
		return mut_end(w, 0);
	}
	if (rc == 0 && cd.mv_size != REVKEY)
		rc = MDB_CORRUPTED;
	if (rc == 0) {
		memcpy(next, cd.mv_data, REVKEY);
		rc = mdb_cursor_open(t, s->kv, &kc);
	}
	rc = store_lmdb_err(rc);
	if (rc == 0)
		rc = ixc_open(t, s, &ic);
	for (size_t i = 0; rc == 0 && i < max_records; i++) {
		MDB_val k = {REVKEY, next}, d;
		int lrc = mdb_cursor_get(kc, &k, &d, MDB_SET_RANGE);
		struct rec r;
		if (lrc == 0)
			rc = rec_decode(&k, &d, &r);
		if (rc)
			break;
		if (lrc == MDB_NOTFOUND || r.main > w->compact) {
			*done = true;
			break;
		}
		if (lrc) {
			rc = store_lmdb_err(lrc);
			break;
		}
		revkey_make(next, r.main, r.sub);
		bool kept;
		rc = is_kept(&ic, &r, w->compact, &kept);
		if (rc == 0 && !kept) {
			uint8_t key[512];
			size_t kl = r.klen;
			memcpy(key, r.key, kl);
			struct idx it = {r.main, r.sub, r.tomb};
			MDB_val rk = {REVKEY, next}, ik = {kl, key};
			rc = w_del(w, s->kv, &rk, NULL);
			if (rc == 0)
				rc = ix_del(w, &ic, &ik, &it);
			if (rc == CAIRN_ENOTFOUND)
				rc = CAIRN_ECORRUPT;
		}
		/* next = this record + 1 */
		for (int j = REVKEY - 1; j >= 0 && ++next[j] == 0; j--)
			;
	}
	if (kc)
		mdb_cursor_close(kc);
	ixc_close(&ic);
	if (rc == 0 && *done) {
		rc = w_del(w, s->meta, &ck, NULL);
	} else if (rc == 0) {
		cd.mv_data = next;
		cd.mv_size = REVKEY;
		rc = w_put(w, s->meta, &ck, &cd, 0);
	}
	rc = mut_end(w, rc);
	if (rc)
		*done = false;
	return rc;
}

/* ---- history ----------------------------------------------------------- */

static bool in_range(const struct krange *kr, const uint8_t *k, size_t kl)
{
	return bytes_cmp(k, kl, kr->key, kr->klen) >= 0 && krange_cmp_end(kr, k, kl) < 0;
}

/* The record before r of the same key, if it is live. */
static int prev_of(const struct view *v, struct ixc *ic, const struct rec *r, struct rec *out,
                   bool *found)
{
	MDB_val k = {r->klen, (void *)r->key};
	struct idx cur = {r->main, r->sub, r->tomb}, it;
	*found = false;
	int rc = ix_step(ic, &k, &cur, -1, &it);
	if (rc == CAIRN_ENOTFOUND || (rc == 0 && it.tomb))
		return 0;
	if (rc)
		return rc;
	*found = true;
	return rec_get(v, it.main, it.sub, out);
}

int store_history(struct store_rtxn *r, const struct store_history_req *req,
                  struct store_history_resp *resp)
{
	memset(resp, 0, sizeof(*resp));
	struct view v = {r->s, r->txn, r->rev, r->compact, false};
	if (req->from_rev <= 0 || req->from_sub < 0 || req->to_rev < 0)
		return CAIRN_EINVAL;
	int64_t to = req->to_rev ? req->to_rev : v.rev;
	if (to > v.rev)
		return CAIRN_EFUTUREREV;
	if (req->from_rev < v.compact)
		return CAIRN_ECOMPACTED;
	resp->revision = v.rev;
	resp->compact_revision = v.compact;
	resp->next_rev = to + 1;
	if (req->from_rev > to)
		return 0;
	struct krange kr;
	krange_init(&kr, req->key, req->key_len, req->range_end, req->range_end_len);
	struct store_mem *m = NULL;
	struct store_event *ev = NULL;
	size_t n = 0, cap = 0, scanned = 0;
	MDB_cursor *kc = NULL;
	struct ixc ic = {0};
	int rc = store_lmdb_err(mdb_cursor_open(r->txn, r->s->kv, &kc));
	if (rc == 0)
		rc = ixc_open(r->txn, r->s, &ic);
	uint8_t start[REVKEY];
	revkey_make(start, req->from_rev, req->from_sub);
	MDB_val k = {REVKEY, start}, d;
	int lrc = rc ? MDB_NOTFOUND : mdb_cursor_get(kc, &k, &d, MDB_SET_RANGE);
	while (rc == 0 && lrc == 0) {
		struct rec rec;
		rc = rec_decode(&k, &d, &rec);
		if (rc || rec.main > to)
			break;
		if ((req->limit && n == req->limit) ||
		    (req->max_scan && scanned == req->max_scan)) {
			resp->more = true;
			resp->next_rev = rec.main;
			resp->next_sub = rec.sub;
			break;
		}
		scanned++;
		bool want = in_range(&kr, rec.key, rec.klen);
		if (want && rec.main <= v.compact)
			rc = is_kept(&ic, &rec, v.compact, &want);
		if (rc == 0 && want) {
			if (n == cap) {
				cap = cap ? cap * 2 : 32;
				struct store_event *ne = realloc(ev, cap * sizeof(*ne));
				if (!ne) {
					rc = CAIRN_ENOMEM;
					break;
				}
				ev = ne;
			}
			struct store_event *e = &ev[n];
			memset(e, 0, sizeof(*e));
			e->type = rec.tomb ? STORE_EVENT_DELETE : STORE_EVENT_PUT;
			e->sub_revision = rec.sub;
			rc = kv_out(&v, &m, &rec, false, &e->kv);
			if (rc == 0 && req->prev_kv && rec.main > v.compact) {
				struct rec p;
				bool found;
				rc = prev_of(&v, &ic, &rec, &p, &found);
				if (rc == 0 && found) {
					e->has_prev = true;
					rc = kv_out(&v, &m, &p, false, &e->prev_kv);
				}
			}
			n++;
		}
		if (rc == 0)
			lrc = mdb_cursor_get(kc, &k, &d, MDB_NEXT);
	}
	if (rc == 0 && lrc && lrc != MDB_NOTFOUND)
		rc = store_lmdb_err(lrc);
	if (rc == 0 && n) {
		resp->events = mem_dup(&m, ev, n * sizeof(*ev));
		if (!resp->events)
			rc = CAIRN_ENOMEM;
	}
	free(ev);
	if (kc)
		mdb_cursor_close(kc);
	ixc_close(&ic);
	if (rc) {
		mem_free(m);
		memset(resp, 0, sizeof(*resp));
		return rc;
	}
	resp->n_events = n;
	resp->mem = m;
	return 0;
}

void store_history_resp_free(struct store_history_resp *resp)
{
	if (!resp)
		return;
	mem_free(resp->mem);
	memset(resp, 0, sizeof(*resp));
}

/* ---- HashKV -------------------------------------------------------------- */

static void crc32c_table(uint32_t t[256])
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int j = 0; j < 8; j++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
		t[i] = c;
	}
}

static uint32_t crc32c_update(const uint32_t t[256], uint32_t crc, const void *p, size_t n)
{
	const uint8_t *b = p;
	crc = ~crc;
	while (n--)
		crc = t[(crc ^ *b++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

int store_hash_kv(struct store_rtxn *r, int64_t rev, uint32_t *hash, int64_t *hash_rev,
                  int64_t *compact_rev)
{
	if (rev > r->rev)
		return CAIRN_EFUTUREREV;
	if (rev <= 0)
		rev = r->rev;
	if (rev < r->compact)
		return CAIRN_ECOMPACTED;
	uint32_t t[256];
	crc32c_table(t);
	uint32_t crc = 0;
	MDB_cursor *kc = NULL;
	struct ixc ic = {0};
	int rc = store_lmdb_err(mdb_cursor_open(r->txn, r->s->kv, &kc));
	if (rc == 0)
		rc = ixc_open(r->txn, r->s, &ic);
	MDB_val k, d;
	int lrc = rc ? MDB_NOTFOUND : mdb_cursor_get(kc, &k, &d, MDB_FIRST);
	while (rc == 0 && lrc == 0) {
		struct rec rec;
		rc = rec_decode(&k, &d, &rec);
		if (rc || rec.main > rev)
			break;
		bool want = true;
		if (rec.main <= r->compact)
			rc = is_kept(&ic, &rec, r->compact, &want);
		if (rc == 0 && want) {
			crc = crc32c_update(t, crc, k.mv_data, k.mv_size);
			crc = crc32c_update(t, crc, d.mv_data, d.mv_size);
		}
		lrc = mdb_cursor_get(kc, &k, &d, MDB_NEXT);
	}
	if (rc == 0 && lrc && lrc != MDB_NOTFOUND)
		rc = store_lmdb_err(lrc);
	if (kc)
		mdb_cursor_close(kc);
	ixc_close(&ic);
	if (rc)
		return rc;
	*hash = crc;
	if (hash_rev)
		*hash_rev = rev;
	if (compact_rev)
		*compact_rev = r->compact;
	return 0;
}

/* ---- invariant checker -------------------------------------------------- */

struct chk {
	char *msg;
	size_t ml;
};

static int bad(struct chk *c, const char *fmt, ...)
{
	if (c->msg && c->ml) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->msg, c->ml, fmt, ap);
		va_end(ap);
	}
	return CAIRN_ECORRUPT;
}

static int check_kv(struct chk *c, const struct view *v, MDB_cursor *kc, struct ixc *ic,
                    const uint8_t *cnext, uint64_t *records)
{
	MDB_val k, d;
	int64_t pm = 0, ps = -1;
	int lrc;
	for (lrc = mdb_cursor_get(kc, &k, &d, MDB_FIRST); lrc == 0;
	     lrc = mdb_cursor_get(kc, &k, &d, MDB_NEXT)) {
		struct rec r;
		if (rec_decode(&k, &d, &r))
			return bad(c, "kv: undecodable record");
		(*records)++;
		/* Revision 1 is the empty store: the first write is revision 2. */
		if (r.main < 2 || r.main > v->rev)
			return bad(c, "kv: record at %lld outside [2, rev %lld]", (long long)r.main,
			           (long long)v->rev);
		if (r.main > v->compact) {
			bool ok = r.main == pm ? r.sub == ps + 1 : r.sub == 0;
			if (!ok)
				return bad(c, "kv: sub revision gap at %lld.%lld",
				           (long long)r.main, (long long)r.sub);
		} else if (!cnext || memcmp(k.mv_data, cnext, REVKEY) < 0) {
			bool kept;
			int rc = is_kept(ic, &r, v->compact, &kept);
			if (rc)
				return bad(c, "kv: record %lld.%lld has no index item",
				           (long long)r.main, (long long)r.sub);
			if (!kept)
				return bad(c, "kv: record %lld.%lld survived compaction",
				           (long long)r.main, (long long)r.sub);
		}
		pm = r.main;
		ps = r.sub;
		MDB_val ik = {r.klen, (void *)r.key};
		struct idx it = {r.main, r.sub, r.tomb};
		int which;
		if (ix_find(ic, &ik, &it, &which) != 0)
			return bad(c, "kv: record %lld.%lld has no index item", (long long)r.main,
			           (long long)r.sub);
	}
	return lrc == MDB_NOTFOUND ? 0 : store_lmdb_err(lrc);
}

static int lease_has(MDB_txn *t, MDB_dbi dbi, int64_t id, const uint8_t *key, size_t kl)
{
	uint8_t kb[8];
	put_u64be(kb, (uint64_t)id);
	MDB_val k = {8, kb}, d = {kl, (void *)key};
	if (!key)
		return mdb_get(t, dbi, &k, &d);
	MDB_cursor *c;
	int rc = mdb_cursor_open(t, dbi, &c);
	if (rc)
		return rc;
	rc = mdb_cursor_get(c, &k, &d, MDB_GET_BOTH);
	mdb_cursor_close(c);
	return rc;
}

/* One index item of a key, after `prev` (the key's item before it, if
 * have_prev): it matches its kv record, comes after prev in revision order
 * (index, then recent) and continues the key's version chain. */
static int check_item(struct chk *c, const struct view *v, const MDB_val *k, const MDB_val *d,
                      struct rec *prev, bool *have_prev)
{
	struct idx it;
	struct rec r;
	if (idx_decode(d, &it))
		return bad(c, "index: bad item (size %zu)", d->mv_size);
	if (rec_get(v, it.main, it.sub, &r) != 0 || r.tomb != it.tomb ||
	    bytes_cmp(r.key, r.klen, k->mv_data, k->mv_size) != 0)
		return bad(c, "index: item %lld.%lld does not match kv", (long long)it.main,
		           (long long)it.sub);
	if (*have_prev && (r.main < prev->main || (r.main == prev->main && r.sub <= prev->sub)))
		return bad(c, "index: item %lld.%lld of a key after a newer one", (long long)r.main,
		           (long long)r.sub);
	if (r.main > v->compact) {
		bool live_prev = *have_prev && !prev->tomb;
		if (r.tomb && !live_prev)
			return bad(c, "index: tombstone at %lld without a live version",
			           (long long)r.main);
		if (!r.tomb && live_prev &&
		    (r.version != prev->version + 1 || r.create != prev->create))
			return bad(c, "index: version chain broken at %lld", (long long)r.main);
		if (!r.tomb && !live_prev && (r.version != 1 || r.create != r.main))
			return bad(c, "index: bad create record at %lld", (long long)r.main);
	}
	*prev = r;
	*have_prev = true;
	return 0;
}

/* Every key's items, in index then in recent (store_index.c). */
static int check_index(struct chk *c, const struct view *v, struct ixc *ic, uint64_t *items,
                       uint64_t *live, uint64_t *leased)
{
	struct krange all;
	krange_init(&all, NULL, 0, (const uint8_t *)"", 1);
	struct ixk ki = {.x = *ic};
	MDB_val k;
	int lrc;
	for (lrc = ixk_first(&ki, &all, &k); lrc == 0; lrc = ixk_next(&ki, &k)) {
		struct rec prev = {0};
		bool have_prev = false;
		for (int i = 0; i < 2; i++) {
			if (!(ki.cur & (1u << i)))
				continue;
			MDB_val dk, d;
			int drc = mdb_cursor_get(ki.x.c[i], &dk, &d, MDB_FIRST_DUP);
			for (; drc == 0; drc = mdb_cursor_get(ki.x.c[i], &dk, &d, MDB_NEXT_DUP)) {
				(*items)++;
				int rc = check_item(c, v, &k, &d, &prev, &have_prev);
				if (rc)
					return rc;
			}
			if (drc != MDB_NOTFOUND)
				return store_lmdb_err(drc);
		}
		/* prev is the key's last item */
		if (!have_prev || prev.tomb)
			continue;
		(*live)++;
		if (prev.lease) {
			(*leased)++;
			if (lease_has(v->txn, v->s->leases, prev.lease, NULL, 0) != 0)
				return bad(c, "key with missing lease %lld", (long long)prev.lease);
			if (lease_has(v->txn, v->s->lease_keys, prev.lease, prev.key, prev.klen) !=
			    0)
				return bad(c, "key not in lease_keys of %lld",
				           (long long)prev.lease);
		}
	}
	return lrc == MDB_NOTFOUND ? 0 : store_lmdb_err(lrc);
}

static int check_lease_keys(struct chk *c, const struct view *v, MDB_cursor *lc, struct ixc *ic,
                            uint64_t *n)
{
	MDB_val k, d;
	int lrc;
	for (lrc = mdb_cursor_get(lc, &k, &d, MDB_FIRST); lrc == 0;
	     lrc = mdb_cursor_get(lc, &k, &d, MDB_NEXT)) {
		(*n)++;
		if (k.mv_size != 8)
			return bad(c, "lease_keys: bad lease id size %zu", k.mv_size);
		int64_t id = (int64_t)get_u64be(k.mv_data);
		if (lease_has(v->txn, v->s->leases, id, NULL, 0) != 0)
			return bad(c, "lease_keys of missing lease %lld", (long long)id);
		struct idx it;
		struct rec r;
		if (ix_at(ic, &d, v->rev, &it) != 0 || it.tomb || rec_get(v, it.main, it.sub, &r) ||
		    r.lease != id)
			return bad(c, "lease_keys entry of lease %lld is not a live key on it",
			           (long long)id);
	}
	return lrc == MDB_NOTFOUND ? 0 : store_lmdb_err(lrc);
}

/* Every lease record is what lease_write() writes: an 8-byte id > 0 and
 * 16 bytes of ttl >= 0 and remaining ttl (revoke and checkpoint refuse
 * anything else as corrupt). */
static int check_leases(struct chk *c, MDB_txn *t, MDB_dbi leases)
{
	MDB_cursor *lc;
	int lrc = mdb_cursor_open(t, leases, &lc);
	if (lrc)
		return store_lmdb_err(lrc);
	MDB_val k, d;
	int rc = 0;
	for (lrc = mdb_cursor_get(lc, &k, &d, MDB_FIRST); lrc == 0 && rc == 0;
	     lrc = mdb_cursor_get(lc, &k, &d, MDB_NEXT)) {
		if (k.mv_size != 8 || d.mv_size != 16)
			rc = bad(c, "leases: record of %zu/%zu bytes", k.mv_size, d.mv_size);
		else if ((int64_t)get_u64be(k.mv_data) <= 0 || (int64_t)get_u64be(d.mv_data) < 0)
			rc = bad(c, "leases: lease %lld with ttl %lld",
			         (long long)get_u64be(k.mv_data), (long long)get_u64be(d.mv_data));
	}
	mdb_cursor_close(lc);
	if (rc == 0 && lrc != MDB_NOTFOUND)
		rc = store_lmdb_err(lrc);
	return rc;
}

int store_check(struct store *s, char *msg, size_t msg_len)
{
	struct chk c = {msg, msg_len};
	if (msg && msg_len)
		msg[0] = 0;
	struct store_rtxn *r;
	int rc = store_rtxn_begin(s, &r);
	if (rc == CAIRN_ECORRUPT)
		return bad(&c, "meta: rev, compact, applied or keys out of range");
	if (rc)
		return rc;
	struct view v = {s, r->txn, r->rev, r->compact, false};
	int64_t schema, keys = 0;
	MDB_cursor *kc = NULL, *lc = NULL;
	struct ixc ic = {0};
	uint64_t records = 0, items = 0, live = 0, leased = 0, lk = 0;
	const uint8_t *cnext = NULL;
	MDB_val ck = {5, "cnext"}, cd;
	if (meta_get_i64(r->txn, s->meta, "schema", &schema) ||
	    (schema != SCHEMA_VERSION && !(schema == 1 && !s->has_recent))) {
		rc = bad(&c, "meta: bad schema");
		goto out;
	}
	if (v.rev < 1 || v.compact < 0 || v.compact > v.rev) {
		rc = bad(&c, "meta: rev %lld compact %lld", (long long)v.rev, (long long)v.compact);
		goto out;
	}
	if (mdb_get(r->txn, s->meta, &ck, &cd) == 0) {
		if (cd.mv_size != REVKEY) {
			rc = bad(&c, "meta: bad cnext");
			goto out;
		}
		cnext = cd.mv_data;
	}
	meta_get_i64(r->txn, s->meta, "keys", &keys);
	rc = store_lmdb_err(mdb_cursor_open(r->txn, s->kv, &kc));
	if (rc == 0)
		rc = ixc_open(r->txn, s, &ic);
	if (rc == 0)
		rc = store_lmdb_err(mdb_cursor_open(r->txn, s->lease_keys, &lc));
	if (rc == 0)
		rc = check_kv(&c, &v, kc, &ic, cnext, &records);
	if (rc == 0)
		rc = check_index(&c, &v, &ic, &items, &live, &leased);
	if (rc == 0 && items != records)
		rc = bad(&c, "index has %llu items, kv %llu records", (unsigned long long)items,
		         (unsigned long long)records);
	if (rc == 0 && live != (uint64_t)keys)
		rc = bad(&c, "meta keys %lld, live keys %llu", (long long)keys,
		         (unsigned long long)live);
	if (rc == 0)
		rc = check_leases(&c, r->txn, s->leases);
	if (rc == 0)
		rc = check_lease_keys(&c, &v, lc, &ic, &lk);
	if (rc == 0 && lk != leased)
		rc = bad(&c, "lease_keys has %llu entries, %llu leased keys",
		         (unsigned long long)lk, (unsigned long long)leased);
out:
	if (kc)
		mdb_cursor_close(kc);
	ixc_close(&ic);
	if (lc)
		mdb_cursor_close(lc);
	store_rtxn_end(r);
	return rc;
}

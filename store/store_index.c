/*
 * store_index.c — the key index, kept in two databases.
 *
 * WHY TWO
 *   Every put adds an item under its key, and keys arrive in no order: with
 *   one index database a batch of N puts dirties about N of its leaf pages,
 *   each copied, written and flushed whole. That was most of a busy
 *   member's disk writes and much of its CPU (two thirds of the pages of a
 *   1000-client put batch). So puts go to "recent", a small database of the
 *   newest items, and each commit that leaves recent above its target size
 *   moves the items of a slice of keys (the next ones after the last slice
 *   moved, wrapping around) into "index". A batch then dirties recent's few
 *   pages and one contiguous run of index pages.
 *
 * THE RULE
 *   For every key, each item in recent is newer (higher revision) than each
 *   item in index: a key's item list is its index items, then its recent
 *   items. Writes keep it: a new item is the key's newest, and a slice moves
 *   all of a key's recent items at once, appended after its index items.
 *   Which of the two holds an item is no part of the state (it differs
 *   between members and over time); what readers see is the union, in one
 *   LMDB snapshot, so a move is atomic with the commit that makes it.
 *   store_check verifies the rule.
 *
 *   A read-only opener of a data dir written before "recent" existed finds
 *   no such database and reads index alone (x->c[1] == NULL).
 */
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

void idx_item(uint8_t out[IDX_ITEM], int64_t main, int64_t sub, bool tomb)
{
	revkey_make(out, main, sub);
	out[16] = tomb ? 1 : 0;
}

int ixc_open(MDB_txn *t, const struct store *s, struct ixc *x)
{
	x->c[0] = x->c[1] = NULL;
	int rc = mdb_cursor_open(t, s->index, &x->c[0]);
	if (rc == 0 && s->has_recent)
		rc = mdb_cursor_open(t, s->recent, &x->c[1]);
	if (rc)
		ixc_close(x);
	return store_lmdb_err(rc);
}

void ixc_close(struct ixc *x)
{
	for (int i = 0; i < 2; i++) {
		if (x->c[i])
			mdb_cursor_close(x->c[i]);
		x->c[i] = NULL;
	}
}

/* The latest item of `key` with main revision <= rev: recent's newer items
 * first, then index's. */
int ix_at(struct ixc *x, const MDB_val *key, int64_t rev, struct idx *out)
{
	return ix_at_in(x, 3, key, rev, out);
}

int ix_at_in(struct ixc *x, unsigned in, const MDB_val *key, int64_t rev, struct idx *out)
{
	for (int i = 1; i >= 0; i--) {
		if (!x->c[i] || !(in & (1u << i)))
			continue;
		int rc = idx_at(x->c[i], key, rev, out);
		if (rc != CAIRN_ENOTFOUND)
			return rc;
	}
	return CAIRN_ENOTFOUND;
}

int ix_find(struct ixc *x, const MDB_val *key, const struct idx *it, int *which)
{
	uint8_t item[IDX_ITEM];
	idx_item(item, it->main, it->sub, it->tomb);
	for (int i = 0; i < 2; i++) {
		if (!x->c[i])
			continue;
		MDB_val k = *key, d = {IDX_ITEM, item};
		int rc = mdb_cursor_get(x->c[i], &k, &d, MDB_GET_BOTH);
		if (rc == 0) {
			*which = i;
			return 0;
		}
		if (rc != MDB_NOTFOUND)
			return store_lmdb_err(rc);
	}
	return CAIRN_ENOTFOUND;
}

int ix_step(struct ixc *x, const MDB_val *key, const struct idx *it, int dir, struct idx *out)
{
	int which;
	int rc = ix_find(x, key, it, &which);
	if (rc)
		return rc == CAIRN_ENOTFOUND ? CAIRN_ECORRUPT : rc;
	MDB_val k = *key, d;
	rc = mdb_cursor_get(x->c[which], &k, &d, dir > 0 ? MDB_NEXT_DUP : MDB_PREV_DUP);
	int other = dir > 0 ? 1 : 0; /* where the list goes on past this database */
	if (rc == MDB_NOTFOUND && other != which && x->c[other]) {
		k = *key;
		rc = mdb_cursor_get(x->c[other], &k, &d, MDB_SET_KEY);
		if (rc == 0 && dir < 0)
			rc = mdb_cursor_get(x->c[other], &k, &d, MDB_LAST_DUP);
	}
	if (rc)
		return store_lmdb_err(rc);
	return idx_decode(&d, out);
}

int ix_del(struct store_wtxn *w, struct ixc *x, const MDB_val *key, const struct idx *it)
{
	int which;
	int rc = ix_find(x, key, it, &which);
	if (rc)
		return rc;
	/* ix_find left that database's cursor on the item. */
	return w_cursor_del(w, x->c[which]);
}

/* ---- keys of a range, in order, over both ------------------------------ */

static int ixk_pick(struct ixk *it, MDB_val *key)
{
	it->cur = 0;
	int best = -1;
	for (int i = 0; i < 2; i++) {
		if (it->rc[i] == MDB_NOTFOUND)
			continue;
		if (it->rc[i])
			return it->rc[i];
		int c = best < 0 ? -1
		                 : bytes_cmp(it->k[i].mv_data, it->k[i].mv_size,
		                             it->k[best].mv_data, it->k[best].mv_size);
		if (c < 0) {
			best = i;
			it->cur = 1u << i;
		} else if (c == 0) {
			it->cur |= 1u << i;
		}
	}
	if (best < 0)
		return MDB_NOTFOUND;
	*key = it->k[best];
	return 0;
}

int ixk_first(struct ixk *it, const struct krange *kr, MDB_val *key)
{
	it->kr = kr;
	for (int i = 0; i < 2; i++) {
		MDB_val d;
		it->rc[i] = it->x.c[i] ? krange_first(kr, it->x.c[i], &it->k[i], &d) : MDB_NOTFOUND;
	}
	return ixk_pick(it, key);
}

int ixk_next(struct ixk *it, MDB_val *key)
{
	for (int i = 0; i < 2; i++) {
		if (!(it->cur & (1u << i)))
			continue;
		MDB_val d;
		int rc = mdb_cursor_get(it->x.c[i], &it->k[i], &d, MDB_NEXT_NODUP);
		if (rc == 0 && krange_cmp_end(it->kr, it->k[i].mv_data, it->k[i].mv_size) >= 0)
			rc = MDB_NOTFOUND;
		it->rc[i] = rc;
	}
	return ixk_pick(it, key);
}

/* ---- moving slices from recent to index ------------------------------- */

/* Moves every item of the key under c (recent) to index and deletes the
 * key from recent; then positions c at the next key (*more false past the
 * last) and remembers that key as where the next slice starts. */
static int move_key(struct store_wtxn *w, MDB_cursor *c, MDB_val *k, size_t *moved, bool *more)
{
	struct store *s = w->s;
	uint8_t key[512];
	if (k->mv_size > sizeof(key))
		return CAIRN_ECORRUPT;
	size_t kl = k->mv_size;
	memcpy(key, k->mv_data, kl);
	MDB_val d;
	int rc = mdb_cursor_get(c, k, &d, MDB_FIRST_DUP);
	while (rc == 0) {
		if (d.mv_size != IDX_ITEM)
			return CAIRN_ECORRUPT;
		uint8_t item[IDX_ITEM];
		memcpy(item, d.mv_data, IDX_ITEM);
		MDB_val ik = {kl, key}, id = {IDX_ITEM, item};
		/* Newer than every index item of the key: appended at its end
		 * (LMDB refuses with MDB_KEYEXIST if it is not). */
		rc = mdb_put(w->txn, s->index, &ik, &id, MDB_APPENDDUP);
		if (rc)
			return rc == MDB_KEYEXIST ? CAIRN_ECORRUPT : store_lmdb_err(rc);
		(*moved)++;
		rc = mdb_cursor_get(c, k, &d, MDB_NEXT_DUP);
	}
	if (rc != MDB_NOTFOUND)
		return store_lmdb_err(rc);
	MDB_val dk = {kl, key};
	rc = mdb_del(w->txn, s->recent, &dk, NULL);
	if (rc)
		return store_lmdb_err(rc);
	/* The first key after it, by a fresh lookup (the cursor's key was
	 * deleted through another handle). */
	k->mv_data = key;
	k->mv_size = kl;
	rc = mdb_cursor_get(c, k, &d, MDB_SET_RANGE);
	*more = rc == 0;
	if (rc == 0 && k->mv_size <= sizeof(s->mpos)) {
		memcpy(s->mpos, k->mv_data, k->mv_size);
		s->mpos_len = k->mv_size;
	} else if (rc == MDB_NOTFOUND) {
		s->mpos_len = 0;
	}
	return rc == MDB_NOTFOUND ? 0 : store_lmdb_err(rc);
}

int ix_rebalance(struct store_wtxn *w)
{
	struct store *s = w->s;
	if (!s->has_recent)
		return 0;
	MDB_stat st;
	int rc = mdb_stat(w->txn, s->recent, &st);
	if (rc)
		return store_lmdb_err(rc);
	if (st.ms_entries <= s->recent_target)
		return 0;
	size_t want = st.ms_entries - s->recent_target, moved = 0;
	MDB_cursor *c;
	rc = mdb_cursor_open(w->txn, s->recent, &c);
	if (rc)
		return store_lmdb_err(rc);
	MDB_val k = {s->mpos_len, s->mpos}, d;
	rc = mdb_cursor_get(c, &k, &d, s->mpos_len ? MDB_SET_RANGE : MDB_FIRST);
	if (rc == MDB_NOTFOUND) /* past the last key: wrap around */
		rc = mdb_cursor_get(c, &k, &d, MDB_FIRST);
	bool more = rc == 0;
	rc = rc == MDB_NOTFOUND ? 0 : store_lmdb_err(rc);
	while (rc == 0 && more && moved < want) {
		rc = move_key(w, c, &k, &moved, &more);
		if (rc == 0 && !more && moved < want) {
			rc = mdb_cursor_get(c, &k, &d, MDB_FIRST);
			more = rc == 0;
			rc = rc == MDB_NOTFOUND ? 0 : store_lmdb_err(rc);
		}
	}
	mdb_cursor_close(c);
	w->touched = true;
	return rc;
}

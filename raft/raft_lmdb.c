/*
 * raft_lmdb.c — the raft log and hard state in LMDB; see raft_lmdb.h for
 * the layout. All integers are big-endian so the log sorts by index.
 */
#include "raft/raft_lmdb.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct raft_lmdb {
	MDB_env *env;
	MDB_dbi log;
	MDB_dbi state;
};

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static int tr(int mdb_rc)
{
	switch (mdb_rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return CAIRN_ENOTFOUND;
	case MDB_MAP_FULL:
		return CAIRN_ENOSPACE;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
		return CAIRN_ECORRUPT;
	case ENOMEM:
		return CAIRN_ENOMEM;
	default:
		return CAIRN_EIO;
	}
}

int raft_lmdb_open(MDB_env *env, struct raft_lmdb **out)
{
	struct raft_lmdb *rl = calloc(1, sizeof(*rl));
	if (!rl)
		return CAIRN_ENOMEM;
	rl->env = env;
	unsigned int flags = 0;
	mdb_env_get_flags(env, &flags);
	bool ro = flags & MDB_RDONLY;
	MDB_txn *txn;
	int rc = mdb_txn_begin(env, NULL, ro ? MDB_RDONLY : 0, &txn);
	if (rc) {
		free(rl);
		return tr(rc);
	}
	unsigned create = ro ? 0 : MDB_CREATE;
	rc = mdb_dbi_open(txn, "raft_log", create, &rl->log);
	if (!rc)
		rc = mdb_dbi_open(txn, "raft_state", create, &rl->state);
	if (rc) {
		mdb_txn_abort(txn);
		free(rl);
		return rc == MDB_NOTFOUND ? CAIRN_ENOTFOUND : tr(rc);
	}
	rc = mdb_txn_commit(txn);
	if (rc) {
		free(rl);
		return tr(rc);
	}
	*out = rl;
	return 0;
}

void raft_lmdb_close(struct raft_lmdb *rl)
{
	free(rl); /* DBI handles belong to the env and close with it */
}

/* ---- reads (struct raft_storage) ---- */

static int read_snap(MDB_txn *txn, struct raft_lmdb *rl, struct raft_snapshot_meta *snap)
{
	memset(snap, 0, sizeof(*snap));
	MDB_val k = {4, "snap"}, v;
	int rc = mdb_get(txn, rl->state, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return tr(rc);
	const uint8_t *p = v.mv_data;
	if (v.mv_size < 32)
		return CAIRN_ECORRUPT;
	snap->index = get64(p);
	snap->term = get64(p + 8);
	uint64_t nv = get64(p + 16), nl = get64(p + 24);
	if (nv > RAFT_MAX_MEMBERS || nl > RAFT_MAX_MEMBERS || v.mv_size != 32 + 8 * (nv + nl))
		return CAIRN_ECORRUPT;
	snap->conf.n_voters = (uint32_t)nv;
	snap->conf.n_learners = (uint32_t)nl;
	for (uint64_t i = 0; i < nv; i++)
		snap->conf.voters[i] = get64(p + 32 + 8 * i);
	for (uint64_t i = 0; i < nl; i++)
		snap->conf.learners[i] = get64(p + 32 + 8 * (nv + i));
	return 0;
}

static int lm_initial_state(void *ctx, struct raft_hard_state *hs, struct raft_snapshot_meta *snap)
{
	struct raft_lmdb *rl = ctx;
	MDB_txn *txn;
	int rc = mdb_txn_begin(rl->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return tr(rc);
	memset(hs, 0, sizeof(*hs));
	MDB_val k = {4, "hard"}, v;
	rc = mdb_get(txn, rl->state, &k, &v);
	int rv = 0;
	if (rc == 0) {
		if (v.mv_size == 24) {
			hs->term = get64(v.mv_data);
			hs->vote = get64((uint8_t *)v.mv_data + 8);
			hs->commit = get64((uint8_t *)v.mv_data + 16);
		} else {
			rv = CAIRN_ECORRUPT;
		}
	} else if (rc != MDB_NOTFOUND) {
		rv = tr(rc);
	}
	if (!rv)
		rv = read_snap(txn, rl, snap);
	mdb_txn_abort(txn);
	return rv;
}

static int lm_last_index(void *ctx, uint64_t *out)
{
	struct raft_lmdb *rl = ctx;
	MDB_txn *txn;
	int rc = mdb_txn_begin(rl->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return tr(rc);
	MDB_cursor *cur;
	rc = mdb_cursor_open(txn, rl->log, &cur);
	int rv = 0;
	if (!rc) {
		MDB_val k, v;
		rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
		if (rc == 0 && k.mv_size == 8) {
			*out = get64(k.mv_data);
		} else if (rc == MDB_NOTFOUND) {
			struct raft_snapshot_meta snap;
			rv = read_snap(txn, rl, &snap);
			*out = snap.index;
		} else {
			rv = rc ? tr(rc) : CAIRN_ECORRUPT;
		}
		mdb_cursor_close(cur);
	} else {
		rv = tr(rc);
	}
	mdb_txn_abort(txn);
	return rv;
}

static int lm_entries(void *ctx, uint64_t lo, uint64_t hi, size_t max_bytes,
                      int (*cb)(void *arg, const struct raft_entry *e), void *arg)
{
	struct raft_lmdb *rl = ctx;
	MDB_txn *txn;
	int rc = mdb_txn_begin(rl->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return tr(rc);
	MDB_cursor *cur;
	if ((rc = mdb_cursor_open(txn, rl->log, &cur))) {
		mdb_txn_abort(txn);
		return tr(rc);
	}
	uint8_t kb[8];
	put64(kb, lo);
	MDB_val k = {8, kb}, v;
	size_t bytes = 0;
	int rv = 0;
	uint64_t want = lo;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); rc == 0 && want <= hi;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), want++) {
		if (k.mv_size != 8 || v.mv_size < 9 || get64(k.mv_data) != want) {
			rv = CAIRN_ECORRUPT; /* a hole in the log */
			break;
		}
		struct raft_entry e;
		e.index = want;
		e.term = get64(v.mv_data);
		e.type = ((uint8_t *)v.mv_data)[8];
		e.data.base = (uint8_t *)v.mv_data + 9;
		e.data.len = v.mv_size - 9;
		if (max_bytes && bytes && bytes + e.data.len > max_bytes)
			break;
		bytes += e.data.len;
		if ((rv = cb(arg, &e)))
			break;
	}
	if (!rv && rc && rc != MDB_NOTFOUND)
		rv = tr(rc);
	else if (!rv && rc == MDB_NOTFOUND && want == lo && lo <= hi)
		rv = CAIRN_ELOGUNAVAILABLE;
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return rv;
}

struct raft_storage raft_lmdb_storage(struct raft_lmdb *rl)
{
	struct raft_storage s = {rl, lm_initial_state, lm_last_index, lm_entries};
	return s;
}

int raft_lmdb_term(struct raft_lmdb *rl, uint64_t index, uint64_t *term)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(rl->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return tr(rc);
	uint8_t kb[8];
	put64(kb, index);
	MDB_val k = {8, kb}, v;
	rc = mdb_get(txn, rl->log, &k, &v);
	int rv = 0;
	if (rc == 0 && v.mv_size >= 9)
		*term = get64(v.mv_data);
	else
		rv = rc ? tr(rc) : CAIRN_ECORRUPT;
	mdb_txn_abort(txn);
	return rv;
}

/* ---- writes (caller's txn) ---- */

int raft_lmdb_append(struct raft_lmdb *rl, MDB_txn *txn, const struct raft_entry *ents, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t kb[8];
		put64(kb, ents[i].index);
		MDB_val k = {8, kb}, v;
		v.mv_size = 9 + ents[i].data.len;
		int rc = mdb_put(txn, rl->log, &k, &v, MDB_RESERVE);
		if (rc)
			return tr(rc);
		uint8_t *p = v.mv_data;
		put64(p, ents[i].term);
		p[8] = ents[i].type;
		if (ents[i].data.len)
			memcpy(p + 9, ents[i].data.base, ents[i].data.len);
	}
	return 0;
}

/* Deletes entries with index >= from (from_end) or <= upto (!from_end). */
static int delete_range(struct raft_lmdb *rl, MDB_txn *txn, uint64_t bound, bool from_end)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, rl->log, &cur);
	if (rc)
		return tr(rc);
	MDB_val k, v;
	if (from_end) {
		uint8_t kb[8];
		put64(kb, bound);
		k.mv_size = 8;
		k.mv_data = kb;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		while (rc == 0) {
			if ((rc = mdb_cursor_del(cur, 0)))
				break;
			rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
			if (rc == MDB_NOTFOUND || rc == EINVAL)
				rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
	} else {
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		while (rc == 0 && k.mv_size == 8 && get64(k.mv_data) <= bound) {
			if ((rc = mdb_cursor_del(cur, 0)))
				break;
			rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
			if (rc == MDB_NOTFOUND || rc == EINVAL)
				rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		}
	}
	mdb_cursor_close(cur);
	return (rc == 0 || rc == MDB_NOTFOUND || rc == EINVAL) ? 0 : tr(rc);
}

int raft_lmdb_truncate(struct raft_lmdb *rl, MDB_txn *txn, uint64_t from)
{
	return delete_range(rl, txn, from, true);
}

int raft_lmdb_set_hard_state(struct raft_lmdb *rl, MDB_txn *txn, const struct raft_hard_state *hs)
{
	uint8_t b[24];
	put64(b, hs->term);
	put64(b + 8, hs->vote);
	put64(b + 16, hs->commit);
	MDB_val k = {4, "hard"}, v = {24, b};
	return tr(mdb_put(txn, rl->state, &k, &v, 0));
}

static int write_snap(struct raft_lmdb *rl, MDB_txn *txn, const struct raft_snapshot_meta *s)
{
	uint8_t b[32 + 8 * 2 * RAFT_MAX_MEMBERS];
	put64(b, s->index);
	put64(b + 8, s->term);
	put64(b + 16, s->conf.n_voters);
	put64(b + 24, s->conf.n_learners);
	size_t off = 32;
	for (uint32_t i = 0; i < s->conf.n_voters; i++, off += 8)
		put64(b + off, s->conf.voters[i]);
	for (uint32_t i = 0; i < s->conf.n_learners; i++, off += 8)
		put64(b + off, s->conf.learners[i]);
	MDB_val k = {4, "snap"}, v = {off, b};
	return tr(mdb_put(txn, rl->state, &k, &v, 0));
}

int raft_lmdb_compact(struct raft_lmdb *rl, MDB_txn *txn, const struct raft_snapshot_meta *meta)
{
	int rv = write_snap(rl, txn, meta);
	return rv ? rv : delete_range(rl, txn, meta->index, false);
}

int raft_lmdb_write(struct raft_lmdb *rl, MDB_txn *txn, const struct raft_update *up)
{
	int rv;
	if (up->snapshot) {
		/* Installing a snapshot replaces the whole log. */
		if ((rv = write_snap(rl, txn, up->snapshot)) ||
		    (rv = delete_range(rl, txn, 0, true)))
			return rv;
	}
	if (up->truncate_from && (rv = raft_lmdb_truncate(rl, txn, up->truncate_from)))
		return rv;
	if (up->n_entries && (rv = raft_lmdb_append(rl, txn, up->entries, up->n_entries)))
		return rv;
	if (up->hard_state_changed && (rv = raft_lmdb_set_hard_state(rl, txn, &up->hard_state)))
		return rv;
	return 0;
}

static int with_own_txn(struct raft_lmdb *rl, const void *arg,
                        int (*fn)(struct raft_lmdb *, MDB_txn *, const void *))
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(rl->env, NULL, 0, &txn);
	if (rc)
		return tr(rc);
	int rv = fn(rl, txn, arg);
	if (rv) {
		mdb_txn_abort(txn);
		return rv;
	}
	return tr(mdb_txn_commit(txn));
}

static int write_fn(struct raft_lmdb *rl, MDB_txn *txn, const void *arg)
{
	return raft_lmdb_write(rl, txn, arg);
}

static int compact_fn(struct raft_lmdb *rl, MDB_txn *txn, const void *arg)
{
	return raft_lmdb_compact(rl, txn, arg);
}

int raft_lmdb_write_own(struct raft_lmdb *rl, const struct raft_update *up)
{
	return with_own_txn(rl, up, write_fn);
}

int raft_lmdb_compact_own(struct raft_lmdb *rl, const struct raft_snapshot_meta *meta)
{
	return with_own_txn(rl, meta, compact_fn);
}

/*
 * raft_lmdb.c — the raft log and hard state in LMDB (see raft_lmdb.h for
 * the layout and the transaction contract).
 *
 * Keys of raft_log are big-endian so LMDB's byte order is index order and
 * appends at the end use MDB_APPEND (no page splits in the middle).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "raft/raft_lmdb.h"

struct raft_lmdb {
	MDB_env *env;
	MDB_dbi log;
	MDB_dbi state;
};

#define ENTRY_HDR 9 /* term (8) + type (1) */

static const char KEY_HARD[] = "hard";
static const char KEY_SNAP[] = "snap";

static int xlate(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return CAIRN_ENOTFOUND;
	case MDB_MAP_FULL:
		return CAIRN_EMAPFULL;
	case ENOMEM:
		return CAIRN_ENOMEM;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
		return CAIRN_ECORRUPT;
	default:
		return CAIRN_EIO;
	}
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

int raft_lmdb_open(MDB_env *env, struct raft_lmdb **out)
{
	struct raft_lmdb *rl = calloc(1, sizeof(*rl));
	if (!rl)
		return CAIRN_ENOMEM;
	rl->env = env;
	MDB_txn *txn;
	/* A read-only env (offline inspection beside a running member) opens
	 * the databases without creating them. */
	unsigned env_flags = 0;
	mdb_env_get_flags(env, &env_flags);
	unsigned ro = env_flags & MDB_RDONLY;
	int rc = mdb_txn_begin(env, NULL, ro, &txn);
	if (rc == 0) {
		rc = mdb_dbi_open(txn, "raft_log", ro ? 0 : MDB_CREATE, &rl->log);
		if (rc == 0)
			rc = mdb_dbi_open(txn, "raft_state", ro ? 0 : MDB_CREATE, &rl->state);
		if (rc == 0)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
	}
	if (rc) {
		free(rl);
		return xlate(rc);
	}
	*out = rl;
	return 0;
}

void raft_lmdb_close(struct raft_lmdb *rl)
{
	free(rl); /* DBI handles belong to the env and close with it */
}

/* ------------------------------------------------------------------ reads */

static int read_state(MDB_txn *txn, struct raft_lmdb *rl, struct raft_hard_state *hs,
                      struct raft_snapshot_meta *snap)
{
	MDB_val k = {sizeof(KEY_HARD) - 1, (void *)KEY_HARD}, v;
	memset(hs, 0, sizeof(*hs));
	memset(snap, 0, sizeof(*snap));
	int rc = mdb_get(txn, rl->state, &k, &v);
	if (rc == 0) {
		if (v.mv_size != 24)
			return CAIRN_ECORRUPT;
		hs->term = get64(v.mv_data);
		hs->vote = get64((uint8_t *)v.mv_data + 8);
		hs->commit = get64((uint8_t *)v.mv_data + 16);
	} else if (rc != MDB_NOTFOUND) {
		return xlate(rc);
	}
	k = (MDB_val){sizeof(KEY_SNAP) - 1, (void *)KEY_SNAP};
	rc = mdb_get(txn, rl->state, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return xlate(rc);
	const uint8_t *p = v.mv_data;
	if (v.mv_size < 24)
		return CAIRN_ECORRUPT;
	snap->index = get64(p);
	snap->term = get64(p + 8);
	uint64_t nv = get64(p + 16) >> 32, nl = get64(p + 16) & 0xffffffffu;
	if (nv + nl > RAFT_MAX_MEMBERS || v.mv_size != 24 + 8 * (nv + nl))
		return CAIRN_ECORRUPT;
	snap->conf.n_voters = (uint32_t)nv;
	snap->conf.n_learners = (uint32_t)nl;
	for (uint64_t i = 0; i < nv; i++)
		snap->conf.voters[i] = get64(p + 24 + 8 * i);
	for (uint64_t i = 0; i < nl; i++)
		snap->conf.learners[i] = get64(p + 24 + 8 * (nv + i));
	return 0;
}

static int lm_initial_state(void *ctx, struct raft_hard_state *hs, struct raft_snapshot_meta *snap)
{
	struct raft_lmdb *rl = ctx;
	MDB_txn *txn;
	int rc = mdb_txn_begin(rl->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return xlate(rc);
	int rv = read_state(txn, rl, hs, snap);
	mdb_txn_abort(txn);
	return rv;
}

static int last_in(MDB_txn *txn, struct raft_lmdb *rl, uint64_t *out)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, rl->log, &c);
	if (rc)
		return xlate(rc);
	MDB_val k, v;
	rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
	mdb_cursor_close(c);
	if (rc == MDB_NOTFOUND) {
		*out = 0;
		return 0;
	}
	if (rc)
		return xlate(rc);
	if (k.mv_size != 8)
		return CAIRN_ECORRUPT;
	*out = get64(k.mv_data);
	return 0;
}

static int lm_last_index(void *ctx, uint64_t *out)
{
	struct raft_lmdb *rl = ctx;
	MDB_txn *txn;
	int rc = mdb_txn_begin(rl->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return xlate(rc);
	struct raft_hard_state hs;
	struct raft_snapshot_meta snap;
	int rv = read_state(txn, rl, &hs, &snap);
	if (rv == 0)
		rv = last_in(txn, rl, out);
	if (rv == 0 && *out < snap.index)
		*out = snap.index;
	mdb_txn_abort(txn);
	return rv;
}

static int lm_entries(void *ctx, uint64_t lo, uint64_t hi, size_t max_bytes,
                      int (*cb)(void *arg, const struct raft_entry *e), void *arg)
{
	struct raft_lmdb *rl = ctx;
	MDB_txn *txn;
	MDB_cursor *c;
	int rc = mdb_txn_begin(rl->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return xlate(rc);
	rc = mdb_cursor_open(txn, rl->log, &c);
	if (rc) {
		mdb_txn_abort(txn);
		return xlate(rc);
	}
	uint8_t kb[8];
	put64(kb, lo);
	MDB_val k = {8, kb}, v;
	size_t bytes = 0;
	int rv = 0;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
	for (uint64_t i = lo; i <= hi; i++) {
		if (rc) {
			rv = rc == MDB_NOTFOUND ? CAIRN_ELOGUNAVAILABLE : xlate(rc);
			break;
		}
		if (k.mv_size != 8 || get64(k.mv_data) != i || v.mv_size < ENTRY_HDR) {
			rv = CAIRN_ECORRUPT;
			break;
		}
		const uint8_t *p = v.mv_data;
		struct raft_entry e = {
		    .term = get64(p),
		    .index = i,
		    .type = p[8],
		    .data = {.base = p + ENTRY_HDR, .len = v.mv_size - ENTRY_HDR}};
		if (max_bytes && i > lo && bytes + e.data.len > max_bytes)
			break;
		bytes += e.data.len;
		rv = cb(arg, &e);
		if (rv)
			break;
		if (i < hi)
			rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	return rv;
}

struct raft_storage raft_lmdb_storage(struct raft_lmdb *rl)
{
	return (struct raft_storage){.ctx = rl,
	                             .initial_state = lm_initial_state,
	                             .last_index = lm_last_index,
	                             .entries = lm_entries};
}

int raft_lmdb_term(struct raft_lmdb *rl, uint64_t index, uint64_t *term)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(rl->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return xlate(rc);
	uint8_t kb[8];
	put64(kb, index);
	MDB_val k = {8, kb}, v;
	rc = mdb_get(txn, rl->log, &k, &v);
	int rv = xlate(rc);
	if (rc == 0)
		*term = v.mv_size >= ENTRY_HDR ? get64(v.mv_data) : 0;
	mdb_txn_abort(txn);
	return rv;
}

/* ----------------------------------------------------------------- writes */

int raft_lmdb_truncate(struct raft_lmdb *rl, MDB_txn *txn, uint64_t from)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, rl->log, &c);
	if (rc)
		return xlate(rc);
	uint8_t kb[8];
	put64(kb, from);
	MDB_val k = {8, kb}, v;
	/* Re-seek after each delete: portable across LMDB versions' cursor
	 * positioning after mdb_cursor_del. */
	while ((rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)) == 0) {
		rc = mdb_cursor_del(c, 0);
		if (rc)
			break;
		k = (MDB_val){8, kb};
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : xlate(rc);
}

int raft_lmdb_append(struct raft_lmdb *rl, MDB_txn *txn, const struct raft_entry *ents, size_t n)
{
	if (!n)
		return 0;
	uint64_t last;
	int rv = last_in(txn, rl, &last);
	if (rv)
		return rv;
	/* A rewrite of stored indexes replaces the suffix (§5.3). */
	if (ents[0].index <= last) {
		rv = raft_lmdb_truncate(rl, txn, ents[0].index);
		if (rv)
			return rv;
	}
	for (size_t i = 0; i < n; i++) {
		const struct raft_entry *e = &ents[i];
		uint8_t kb[8];
		put64(kb, e->index);
		MDB_val k = {8, kb}, v = {ENTRY_HDR + e->data.len, NULL};
		int rc = mdb_put(txn, rl->log, &k, &v, MDB_RESERVE | MDB_APPEND);
		if (rc)
			return xlate(rc);
		uint8_t *p = v.mv_data;
		put64(p, e->term);
		p[8] = e->type;
		if (e->data.len)
			memcpy(p + ENTRY_HDR, e->data.base, e->data.len);
	}
	return 0;
}

int raft_lmdb_set_hard_state(struct raft_lmdb *rl, MDB_txn *txn, const struct raft_hard_state *hs)
{
	uint8_t b[24];
	put64(b, hs->term);
	put64(b + 8, hs->vote);
	put64(b + 16, hs->commit);
	MDB_val k = {sizeof(KEY_HARD) - 1, (void *)KEY_HARD}, v = {sizeof(b), b};
	return xlate(mdb_put(txn, rl->state, &k, &v, 0));
}

static int set_snap(struct raft_lmdb *rl, MDB_txn *txn, const struct raft_snapshot_meta *s)
{
	const struct raft_conf *c = &s->conf;
	if (c->n_voters + c->n_learners > RAFT_MAX_MEMBERS)
		return CAIRN_EINVAL;
	uint8_t b[24 + 8 * RAFT_MAX_MEMBERS];
	put64(b, s->index);
	put64(b + 8, s->term);
	put64(b + 16, ((uint64_t)c->n_voters << 32) | c->n_learners);
	for (uint32_t i = 0; i < c->n_voters; i++)
		put64(b + 24 + 8 * i, c->voters[i]);
	for (uint32_t i = 0; i < c->n_learners; i++)
		put64(b + 24 + 8 * (c->n_voters + i), c->learners[i]);
	MDB_val k = {sizeof(KEY_SNAP) - 1, (void *)KEY_SNAP},
	        v = {24 + 8 * (size_t)(c->n_voters + c->n_learners), b};
	return xlate(mdb_put(txn, rl->state, &k, &v, 0));
}

int raft_lmdb_compact(struct raft_lmdb *rl, MDB_txn *txn, const struct raft_snapshot_meta *meta)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, rl->log, &c);
	if (rc)
		return xlate(rc);
	MDB_val k, v;
	while ((rc = mdb_cursor_get(c, &k, &v, MDB_FIRST)) == 0 && k.mv_size == 8 &&
	       get64(k.mv_data) <= meta->index) {
		rc = mdb_cursor_del(c, 0);
		if (rc)
			break;
	}
	mdb_cursor_close(c);
	if (rc && rc != MDB_NOTFOUND)
		return xlate(rc);
	return set_snap(rl, txn, meta);
}

int raft_lmdb_write(struct raft_lmdb *rl, MDB_txn *txn, const struct raft_update *up)
{
	int rv = 0;
	if (up->snapshot) {
		/* §7: the snapshot replaces the whole log. */
		rv = xlate(mdb_drop(txn, rl->log, 0));
		if (rv == 0)
			rv = set_snap(rl, txn, up->snapshot);
	}
	if (rv == 0 && up->truncate_from)
		rv = raft_lmdb_truncate(rl, txn, up->truncate_from);
	if (rv == 0)
		rv = raft_lmdb_append(rl, txn, up->entries, up->n_entries);
	if (rv == 0 && up->hard_state_changed)
		rv = raft_lmdb_set_hard_state(rl, txn, &up->hard_state);
	return rv;
}

static int own_txn(struct raft_lmdb *rl, int (*fn)(struct raft_lmdb *, MDB_txn *, const void *),
                   const void *arg)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(rl->env, NULL, 0, &txn);
	if (rc)
		return xlate(rc);
	int rv = fn(rl, txn, arg);
	if (rv) {
		mdb_txn_abort(txn);
		return rv;
	}
	rv = xlate(mdb_txn_commit(txn));
	/* A lazy meta sync environment (MDB_NOMETASYNC) has this commit
	 * durable only after the next one: its callers act on it now. */
	unsigned flags = 0;
	mdb_env_get_flags(rl->env, &flags);
	if (!rv && (flags & MDB_NOMETASYNC) && !(flags & MDB_NOSYNC))
		rv = xlate(mdb_env_sync(rl->env, 1));
	return rv;
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
	return own_txn(rl, write_fn, up);
}

int raft_lmdb_compact_own(struct raft_lmdb *rl, const struct raft_snapshot_meta *meta)
{
	return own_txn(rl, compact_fn, meta);
}

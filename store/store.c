/*
 * store.c — lifecycle, transactions, encoding helpers, snapshots and stats.
 *
 * The reads live in store_read.c, the mutations in store_write.c and the
 * maintenance (compaction, history, hash, check) in store_maint.c. The
 * on-disk format and invariants are described in store_int.h.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------- */

int store_lmdb_err(int rc)
{
	switch (rc) {
	case 0:
		return 0;
	case MDB_NOTFOUND:
		return CAIRN_ENOTFOUND;
	case MDB_MAP_FULL:
		return CAIRN_ENOSPACE;
	case MDB_TXN_FULL:
	case MDB_BAD_VALSIZE:
		return CAIRN_ETOOBIG;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
		return CAIRN_ECORRUPT;
	case MDB_VERSION_MISMATCH:
		return CAIRN_EVERSION;
	case ENOMEM:
		return CAIRN_ENOMEM;
	case EACCES:
	case EROFS:
		return CAIRN_EREADONLY;
	default:
		return CAIRN_EIO;
	}
}

void put_u64be(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

uint64_t get_u64be(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

void revkey_make(uint8_t out[REVKEY], int64_t main, int64_t sub)
{
	put_u64be(out, (uint64_t)main);
	put_u64be(out + 8, (uint64_t)sub);
}

int rec_decode(const MDB_val *k, const MDB_val *v, struct rec *r)
{
	const uint8_t *p = v->mv_data;
	if (k->mv_size != REVKEY || v->mv_size < REC_HDR)
		return CAIRN_ECORRUPT;
	uint32_t kl = (uint32_t)(get_u64be(p) & 0xffffffffu);
	if (p[0] & ~REC_TOMB || kl == 0 || kl > v->mv_size - REC_HDR)
		return CAIRN_ECORRUPT;
	r->main = (int64_t)get_u64be(k->mv_data);
	r->sub = (int64_t)get_u64be((const uint8_t *)k->mv_data + 8);
	r->tomb = p[0] & REC_TOMB;
	r->create = (int64_t)get_u64be(p + 8);
	r->version = (int64_t)get_u64be(p + 16);
	r->lease = (int64_t)get_u64be(p + 24);
	if (r->main < 1 || r->main > REV_MAX || r->sub < 0 || r->sub > REV_MAX || r->create < 0 ||
	    r->create > REV_MAX || r->version < 0 || r->version > REV_MAX)
		return CAIRN_ECORRUPT;
	r->key = p + REC_HDR;
	r->klen = kl;
	r->val = p + REC_HDR + kl;
	r->vlen = v->mv_size - REC_HDR - kl;
	return 0;
}

int idx_decode(const MDB_val *v, struct idx *out)
{
	const uint8_t *p = v->mv_data;
	if (v->mv_size != IDX_ITEM)
		return CAIRN_ECORRUPT;
	out->main = (int64_t)get_u64be(p);
	out->sub = (int64_t)get_u64be(p + 8);
	out->tomb = p[16] != 0;
	if (out->main < 1 || out->main > REV_MAX || out->sub < 0 || out->sub > REV_MAX)
		return CAIRN_ECORRUPT;
	return 0;
}

int bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	size_t n = al < bl ? al : bl;
	int c = n ? memcmp(a, b, n) : 0;
	if (c)
		return c;
	return al < bl ? -1 : al > bl;
}

void krange_init(struct krange *kr, const uint8_t *key, size_t klen, const uint8_t *end,
                 size_t elen)
{
	kr->key = key;
	kr->klen = klen;
	kr->end = end;
	kr->elen = elen;
	if (elen == 0)
		kr->kind = KR_SINGLE;
	else if (elen == 1 && end[0] == 0)
		kr->kind = KR_FROM;
	else
		kr->kind = KR_RANGE;
}

/* <0 while k is still inside the range (k >= key assumed), >=0 past it. */
int krange_cmp_end(const struct krange *kr, const uint8_t *k, size_t kl)
{
	switch (kr->kind) {
	case KR_SINGLE:
		return bytes_cmp(k, kl, kr->key, kr->klen) == 0 ? -1 : 1;
	case KR_FROM:
		return -1;
	default:
		return bytes_cmp(k, kl, kr->end, kr->elen) < 0 ? -1 : 1;
	}
}

/* Positions c at the first index key of the range. MDB_NOTFOUND if none. */
int krange_first(const struct krange *kr, MDB_cursor *c, MDB_val *k, MDB_val *v)
{
	int rc;
	if (kr->klen == 0) {
		if (kr->kind == KR_SINGLE)
			return MDB_NOTFOUND;
		rc = mdb_cursor_get(c, k, v, MDB_FIRST);
	} else {
		k->mv_data = (void *)kr->key;
		k->mv_size = kr->klen;
		rc = mdb_cursor_get(c, k, v, kr->kind == KR_SINGLE ? MDB_SET_KEY : MDB_SET_RANGE);
	}
	if (rc == 0 && krange_cmp_end(kr, k->mv_data, k->mv_size) >= 0)
		return MDB_NOTFOUND;
	return rc;
}

int rec_get(const struct view *v, int64_t main, int64_t sub, struct rec *r)
{
	uint8_t kb[REVKEY];
	revkey_make(kb, main, sub);
	MDB_val k = {REVKEY, kb}, d;
	int rc = mdb_get(v->txn, v->s->kv, &k, &d);
	if (rc == MDB_NOTFOUND)
		return CAIRN_ECORRUPT; /* the index pointed at it */
	if (rc)
		return store_lmdb_err(rc);
	return rec_decode(&k, &d, r);
}

/* The latest index item of `key` with main revision <= rev.
 * CAIRN_ENOTFOUND if there is none. Moves ic. */
int idx_at(MDB_cursor *ic, const MDB_val *key, int64_t rev, struct idx *out)
{
	MDB_val k = *key, d;
	int rc = mdb_cursor_get(ic, &k, &d, MDB_SET);
	if (rc)
		return store_lmdb_err(rc);
	rc = mdb_cursor_get(ic, &k, &d, MDB_LAST_DUP);
	if (rc)
		return store_lmdb_err(rc);
	rc = idx_decode(&d, out);
	if (rc)
		return rc;
	if (out->main <= rev)
		return 0;
	uint8_t probe[IDX_ITEM] = {0};
	put_u64be(probe, (uint64_t)rev + 1);
	d.mv_data = probe;
	d.mv_size = IDX_ITEM;
	rc = mdb_cursor_get(ic, &k, &d, MDB_GET_BOTH_RANGE);
	if (rc)
		return store_lmdb_err(rc); /* cannot be NOTFOUND: the last dup is > rev */
	rc = mdb_cursor_get(ic, &k, &d, MDB_PREV_DUP);
	if (rc)
		return store_lmdb_err(rc);
	return idx_decode(&d, out);
}

/* Whether compaction at `compact` keeps record r (main <= compact): it is
 * the key's latest record <= compact and not a tombstone. */
int is_kept(struct ixc *x, const struct rec *r, int64_t compact, bool *kept)
{
	if (r->tomb) {
		*kept = false;
		return 0;
	}
	MDB_val k = {r->klen, (void *)r->key};
	struct idx it = {r->main, r->sub, false}, nx;
	int rc = ix_step(x, &k, &it, 1, &nx);
	if (rc == CAIRN_ENOTFOUND) {
		*kept = true;
		return 0;
	}
	*kept = rc == 0 && nx.main > compact;
	return rc;
}

/* ---- response memory --------------------------------------------------- */

void *mem_alloc(struct store_mem **m, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if (n == 0)
		n = 16;
	if (!*m || (*m)->cap - (*m)->used < n) {
		size_t cap = n > 8192 ? n : 8192;
		struct store_mem *b = malloc(sizeof(*b) + cap + 16);
		if (!b)
			return NULL;
		b->data = (unsigned char *)(((uintptr_t)(b + 1) + 15) & ~(uintptr_t)15);
		b->used = 0;
		b->cap = cap;
		if (*m && n > 8192) {
			/* Keep filling the current block: link the big one behind it. */
			b->next = (*m)->next;
			(*m)->next = b;
			b->used = n;
			return b->data;
		}
		b->next = *m;
		*m = b;
	}
	void *p = (*m)->data + (*m)->used;
	(*m)->used += n;
	return p;
}

void *mem_dup(struct store_mem **m, const void *p, size_t n)
{
	void *q = mem_alloc(m, n);
	if (q && n)
		memcpy(q, p, n);
	return q;
}

void mem_free(struct store_mem *m)
{
	while (m) {
		struct store_mem *n = m->next;
		free(m);
		m = n;
	}
}

int kv_out(const struct view *v, struct store_mem **m, const struct rec *r, bool keys_only,
           struct store_kv *out)
{
	memset(out, 0, sizeof(*out));
	out->key = r->key;
	out->key_len = r->klen;
	out->mod_revision = r->main;
	if (r->tomb)
		goto copy;
	out->create_revision = r->create;
	out->version = r->version;
	out->lease = r->lease;
	if (!keys_only && r->vlen) {
		out->value = r->val;
		out->value_len = r->vlen;
	}
copy:
	if (!v->copy)
		return 0;
	out->key = mem_dup(m, r->key, r->klen);
	if (!out->key)
		return CAIRN_ENOMEM;
	if (out->value) {
		out->value = mem_dup(m, out->value, out->value_len);
		if (!out->value)
			return CAIRN_ENOMEM;
	}
	return 0;
}

int meta_get_i64(MDB_txn *t, MDB_dbi meta, const char *name, int64_t *out)
{
	MDB_val k = {strlen(name), (void *)name}, d;
	int rc = mdb_get(t, meta, &k, &d);
	if (rc)
		return store_lmdb_err(rc);
	if (d.mv_size != 8)
		return CAIRN_ECORRUPT;
	*out = (int64_t)get_u64be(d.mv_data);
	return 0;
}

int meta_put_i64(MDB_txn *t, MDB_dbi meta, const char *name, int64_t v)
{
	uint8_t b[8];
	put_u64be(b, (uint64_t)v);
	MDB_val k = {strlen(name), (void *)name}, d = {8, b};
	return store_lmdb_err(mdb_put(t, meta, &k, &d, 0));
}

/* Reads rev, compact, applied and keys. A fresh store has none of them and
 * is at revision 1, as etcd's empty store is (its first write is revision
 * 2); "rev" is written by the first mutation. */
static int meta_load(MDB_txn *t, MDB_dbi meta, int64_t *rev, int64_t *compact, uint64_t *applied,
                     uint64_t *keys)
{
	const char *names[4] = {"rev", "compact", "applied", "keys"};
	int64_t vals[4] = {1, 0, 0, 0};
	for (int i = 0; i < 4; i++) {
		int rc = meta_get_i64(t, meta, names[i], &vals[i]);
		if (rc && rc != CAIRN_ENOTFOUND)
			return rc;
	}
	/* A revision beyond REV_MAX, a compaction beyond the revision or a
	 * negative count is damage, not a state to compute with. */
	if (vals[0] < 1 || vals[0] > REV_MAX || vals[1] < 0 || vals[1] > vals[0] || vals[2] < 0 ||
	    vals[3] < 0)
		return CAIRN_ECORRUPT;
	*rev = vals[0];
	*compact = vals[1];
	if (applied)
		*applied = (uint64_t)vals[2];
	if (keys)
		*keys = (uint64_t)vals[3];
	return 0;
}

/* ---- lifecycle ---------------------------------------------------------- */

static int open_dbs(struct store *s, MDB_txn *t, unsigned flags)
{
	struct {
		const char *name;
		MDB_dbi *dbi;
		unsigned flags;
	} dbs[] = {
	    {"kv", &s->kv, 0},
	    {"index", &s->index, MDB_DUPSORT | MDB_DUPFIXED},
	    {"meta", &s->meta, 0},
	    {"leases", &s->leases, 0},
	    {"lease_keys", &s->lease_keys, MDB_DUPSORT},
	};
	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
		int rc = mdb_dbi_open(t, dbs[i].name, dbs[i].flags | flags, dbs[i].dbi);
		if (rc == MDB_NOTFOUND)
			return CAIRN_ENOTFOUND;
		if (rc)
			return store_lmdb_err(rc);
	}
	/* A schema 1 dir has no recent; a writer creates it (the upgrade),
	 * a read-only opener reads index alone. */
	int rc = mdb_dbi_open(t, "recent", MDB_DUPSORT | MDB_DUPFIXED | flags, &s->recent);
	if (rc && rc != MDB_NOTFOUND)
		return store_lmdb_err(rc);
	s->has_recent = rc == 0;
	return 0;
}

static int store_init_schema(struct store *s)
{
	MDB_txn *t;
	int rc = mdb_txn_begin(s->env, NULL, s->read_only ? MDB_RDONLY : 0, &t);
	if (rc)
		return store_lmdb_err(rc);
	rc = open_dbs(s, t, s->read_only ? 0 : MDB_CREATE);
	if (rc)
		goto fail;
	int64_t schema;
	rc = meta_get_i64(t, s->meta, "schema", &schema);
	if ((rc == CAIRN_ENOTFOUND || (rc == 0 && schema == 1)) && !s->read_only)
		rc = meta_put_i64(t, s->meta, "schema", SCHEMA_VERSION);
	else if (rc == 0 && schema != SCHEMA_VERSION && schema != 1)
		rc = CAIRN_EVERSION;
	if (rc)
		goto fail;
	return store_lmdb_err(mdb_txn_commit(t));
fail:
	mdb_txn_abort(t);
	return rc;
}

int store_open(const struct store_config *cfg, struct store **out)
{
	*out = NULL;
	if (!cfg || !cfg->dir || !*cfg->dir)
		return CAIRN_EINVAL;
	struct store *s = calloc(1, sizeof(*s));
	if (!s)
		return CAIRN_ENOMEM;
	s->lock_fd = -1;
	s->read_only = cfg->read_only;
	s->nosync = cfg->nosync;
	s->quota = cfg->quota_bytes ? cfg->quota_bytes : STORE_DEFAULT_QUOTA;
	s->max_request =
	    cfg->max_request_bytes ? cfg->max_request_bytes : STORE_DEFAULT_MAX_REQUEST;
	s->max_txn_ops = cfg->max_txn_ops ? cfg->max_txn_ops : STORE_DEFAULT_MAX_TXN_OPS;
	s->recent_target =
	    cfg->index_recent_items ? cfg->index_recent_items : STORE_DEFAULT_RECENT_ITEMS;
	uint64_t map = cfg->map_size ? cfg->map_size : STORE_DEFAULT_MAP_SIZE;
	char path[PATH_MAX];
	int rc;

	if (s->read_only) {
		snprintf(path, sizeof(path), "%s/data.mdb", cfg->dir);
		if (access(path, F_OK) != 0) {
			rc = CAIRN_ENOTFOUND;
			goto fail;
		}
	} else {
		if (mkdir(cfg->dir, 0755) != 0 && errno != EEXIST) {
			rc = CAIRN_EIO;
			goto fail;
		}
		if (snprintf(path, sizeof(path), "%s/cairn.lock", cfg->dir) >= (int)sizeof(path)) {
			rc = CAIRN_EINVAL;
			goto fail;
		}
		s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (s->lock_fd < 0) {
			rc = CAIRN_EIO;
			goto fail;
		}
		if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
			rc = errno == EWOULDBLOCK ? CAIRN_ELOCKED : CAIRN_EIO;
			goto fail;
		}
	}
	rc = store_lmdb_err(mdb_env_create(&s->env));
	if (rc)
		goto fail;
	mdb_env_set_maxdbs(s->env, STORE_MAX_DBS);
	mdb_env_set_mapsize(s->env, (size_t)map);
	mdb_env_set_maxreaders(s->env, 254);
	unsigned flags = MDB_NOTLS;
	if (s->read_only)
		flags |= MDB_RDONLY;
	if (cfg->nosync)
		flags |= MDB_NOSYNC | MDB_NOMETASYNC;
	else if (cfg->lazy_meta_sync && !s->read_only)
		flags |= MDB_NOMETASYNC;
	rc = mdb_env_open(s->env, cfg->dir, flags, 0644);
	if (rc) {
		rc = store_lmdb_err(rc);
		goto fail;
	}
	s->max_key = (size_t)mdb_env_get_maxkeysize(s->env);
	MDB_stat est;
	mdb_env_stat(s->env, &est);
	s->psize = est.ms_psize;
	rc = store_init_schema(s);
	if (rc)
		goto fail;
	*out = s;
	return 0;
fail:
	store_close(s);
	return rc;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	if (s->env)
		mdb_env_close(s->env);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s);
}

MDB_env *store_env(struct store *s)
{
	return s->env;
}

/* ---- write transactions ------------------------------------------------ */

int store_wtxn_begin(struct store *s, struct store_wtxn **out)
{
	*out = NULL;
	if (s->read_only)
		return CAIRN_EREADONLY;
	struct store_wtxn *w = calloc(1, sizeof(*w));
	if (!w)
		return CAIRN_ENOMEM;
	w->s = s;
	int rc = mdb_txn_begin(s->env, NULL, 0, &w->txn);
	if (rc) {
		free(w);
		return store_lmdb_err(rc);
	}
	w->cur = w->txn;
	rc = meta_load(w->txn, s->meta, &w->rev, &w->compact, &w->applied, &w->keys);
	if (rc) {
		store_wtxn_abort(w);
		return rc;
	}
	*out = w;
	return 0;
}

static uint64_t last_txnid(MDB_env *env)
{
	MDB_envinfo info;
	mdb_env_info(env, &info);
	return (uint64_t)info.me_last_txnid;
}

int store_wtxn_commit_flushed(struct store_wtxn *w, bool *flushed)
{
	if (flushed)
		*flushed = false;
	int rc = w->failed;
	if (rc) {
		store_wtxn_abort(w);
		return rc;
	}
	if (w->ic_open)
		ixc_close(&w->ic);
	w->ic_open = false;
	rc = ix_rebalance(w);
	if (rc) {
		store_wtxn_abort(w);
		return rc;
	}
	MDB_env *env = w->s->env;
	uint64_t before = last_txnid(env);
	rc = store_lmdb_err(mdb_txn_commit(w->txn));
	/* LMDB commits a transaction that changed nothing without writing or
	 * flushing anything, and without a new transaction id. */
	if (rc == 0 && flushed)
		*flushed = !w->s->nosync && last_txnid(env) > before;
	free(w);
	return rc;
}

int store_wtxn_commit(struct store_wtxn *w)
{
	return store_wtxn_commit_flushed(w, NULL);
}

int store_sync(struct store *s)
{
	if (s->nosync || s->read_only)
		return 0;
	return store_lmdb_err(mdb_env_sync(s->env, 1));
}

void store_wtxn_abort(struct store_wtxn *w)
{
	if (!w)
		return;
	if (w->ic_open)
		ixc_close(&w->ic);
	mdb_txn_abort(w->txn);
	free(w);
}

MDB_txn *store_wtxn_mdb(struct store_wtxn *w)
{
	return w->txn;
}

int64_t store_wtxn_revision(const struct store_wtxn *w)
{
	return w->rev;
}

int wtxn_usable(struct store_wtxn *w)
{
	if (w->failed)
		return w->failed;
	return 0;
}

/* A small meta write made directly in the batch: LMDB marks a txn whose
 * write failed as broken, so any failure fails the batch. */
static int batch_fail(struct store_wtxn *w, int rc)
{
	if (rc)
		w->failed = rc;
	return rc;
}

int store_wtxn_set_applied(struct store_wtxn *w, uint64_t index)
{
	int rc = wtxn_usable(w);
	if (rc)
		return rc;
	if (index < w->applied || index > INT64_MAX)
		return CAIRN_EINVAL;
	rc = meta_put_i64(w->txn, w->s->meta, "applied", (int64_t)index);
	if (rc == 0)
		w->applied = index;
	return batch_fail(w, rc);
}

/* The meta key of caller blob `name`: "u/" + name in kb. CAIRN_EINVAL
 * unless name has 1..64 bytes. */
static int meta_user_key(const char *name, char kb[2 + 64], MDB_val *k)
{
	size_t nl = name ? strlen(name) : 0;
	if (nl == 0 || nl > 64)
		return CAIRN_EINVAL;
	memcpy(kb, "u/", 2);
	memcpy(kb + 2, name, nl);
	k->mv_size = nl + 2;
	k->mv_data = kb;
	return 0;
}

static int meta_user_get(MDB_txn *t, MDB_dbi meta, const char *name, const void **data, size_t *len)
{
	char kb[2 + 64];
	MDB_val k, d;
	int rc = meta_user_key(name, kb, &k);
	if (rc)
		return rc;
	rc = mdb_get(t, meta, &k, &d);
	if (rc)
		return store_lmdb_err(rc);
	*data = d.mv_data;
	*len = d.mv_size;
	return 0;
}

int store_wtxn_set_meta(struct store_wtxn *w, const char *name, const void *data, size_t len)
{
	int rc = wtxn_usable(w);
	if (rc)
		return rc;
	char kb[2 + 64];
	MDB_val k, d = {len, (void *)data};
	if (meta_user_key(name, kb, &k) != 0 || len > (1u << 20) || (len && !data))
		return CAIRN_EINVAL;
	if (len == 0 && !data) {
		rc = mdb_del(w->txn, w->s->meta, &k, NULL);
		if (rc == MDB_NOTFOUND)
			rc = 0;
	} else {
		rc = mdb_put(w->txn, w->s->meta, &k, &d, 0);
	}
	return batch_fail(w, store_lmdb_err(rc));
}

int store_wtxn_get_meta(struct store_wtxn *w, const char *name, const void **data, size_t *len)
{
	int rc = wtxn_usable(w);
	if (rc)
		return rc;
	return meta_user_get(w->txn, w->s->meta, name, data, len);
}

/* ---- read transactions ------------------------------------------------- */

int store_rtxn_begin(struct store *s, struct store_rtxn **out)
{
	*out = NULL;
	struct store_rtxn *r = calloc(1, sizeof(*r));
	if (!r)
		return CAIRN_ENOMEM;
	r->s = s;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn);
	if (rc) {
		free(r);
		return store_lmdb_err(rc);
	}
	rc = meta_load(r->txn, s->meta, &r->rev, &r->compact, &r->applied, NULL);
	if (rc) {
		store_rtxn_end(r);
		return rc;
	}
	*out = r;
	return 0;
}

void store_rtxn_end(struct store_rtxn *r)
{
	if (!r)
		return;
	mdb_txn_abort(r->txn);
	free(r);
}

MDB_txn *store_rtxn_mdb(struct store_rtxn *r)
{
	return r->txn;
}

int64_t store_rtxn_revision(const struct store_rtxn *r)
{
	return r->rev;
}

int64_t store_rtxn_compact_revision(const struct store_rtxn *r)
{
	return r->compact;
}

uint64_t store_rtxn_applied(const struct store_rtxn *r)
{
	return r->applied;
}

int store_rtxn_get_meta(struct store_rtxn *r, const char *name, const void **data, size_t *len)
{
	return meta_user_get(r->txn, r->s->meta, name, data, len);
}

/* ---- snapshots and stats ------------------------------------------------ */

int store_snapshot_write(struct store *s, int fd)
{
	return store_lmdb_err(mdb_env_copyfd2(s->env, fd, MDB_CP_COMPACT));
}

int store_snapshot_restore(int fd, const char *dir)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	if (!dir || !*dir)
		return CAIRN_EINVAL;
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return CAIRN_EIO;
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	snprintf(tmp, sizeof(tmp), "%s/data.mdb.restore", dir);
	if (access(path, F_OK) == 0)
		return CAIRN_EEXIST;
	int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		return CAIRN_EIO;
	char buf[1 << 16];
	int rc = 0;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = CAIRN_EIO;
			break;
		}
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t m = write(out, buf + off, (size_t)(n - off));
			if (m < 0 && errno == EINTR)
				continue;
			if (m <= 0) {
				rc = CAIRN_EIO;
				break;
			}
			off += m;
		}
		if (rc)
			break;
	}
	if (rc == 0 && fsync(out) != 0)
		rc = CAIRN_EIO;
	close(out);
	if (rc == 0 && rename(tmp, path) != 0)
		rc = CAIRN_EIO;
	if (rc)
		unlink(tmp);
	return rc;
}

static uint64_t db_pages(MDB_txn *t, MDB_dbi d, uint64_t *entries)
{
	MDB_stat st;
	if (mdb_stat(t, d, &st) != 0)
		return 0;
	if (entries)
		*entries = st.ms_entries;
	return st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
}

uint64_t store_pages_in_use(struct store *s, MDB_txn *t)
{
	MDB_dbi dbs[6] = {s->kv, s->index, s->meta, s->leases, s->lease_keys, s->recent};
	uint64_t n = 0;
	for (int i = 0; i < (s->has_recent ? 6 : 5); i++)
		n += db_pages(t, dbs[i], NULL);
	return n;
}

int store_stats(struct store *s, struct store_stats *out)
{
	memset(out, 0, sizeof(*out));
	MDB_txn *t;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t);
	if (rc)
		return store_lmdb_err(rc);
	rc = meta_load(t, s->meta, &out->revision, &out->compact_revision, &out->applied_index,
	               &out->keys);
	MDB_envinfo info;
	MDB_stat est;
	mdb_env_info(s->env, &info);
	mdb_env_stat(s->env, &est);
	out->pages_in_use = store_pages_in_use(s, t);
	out->in_use_bytes = out->pages_in_use * est.ms_psize;
	out->db_size_bytes = ((uint64_t)info.me_last_pgno + 1) * est.ms_psize;
	db_pages(t, s->kv, &out->records);
	db_pages(t, s->leases, &out->leases);
	MDB_val k = {5, "cnext"}, d;
	out->compaction_pending = mdb_get(t, s->meta, &k, &d) == 0;
	mdb_txn_abort(t);
	return rc;
}
